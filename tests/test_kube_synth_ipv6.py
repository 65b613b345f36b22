"""The synthetic IPv6 dumps: what kube-proxy v1.29's IPv6 proxier writes, in ip6tables-save's form.

Held to kube-proxy's own unit test for IPv6 (its expectation, loaded by the kernel and saved back), to the kernel
(both ip6tables back ends load every generated dump and save it back unchanged) and to the IPv4 generator (the
same cluster gives the same chains). The parser does not read IPv6 yet: the tests that need it are marked.
"""

from __future__ import annotations

import re
import subprocess
import sys
from dataclasses import replace

import pytest
from iptables_lens import format_dump, parse
from iptables_lens.kube.cluster_spec import (
    ClusterSpec,
    Endpoint,
    KindNode,
    Port,
    ServiceSpec,
    mixed_spec,
    nodeport_spec,
)
from iptables_lens.kube.dual_stack import ipv6_cluster, ipv6_twin
from iptables_lens.kube.synth import synth_cluster
from iptables_lens.netns import Namespace, can_run_kernel_lab, missing_tools

from tests.conftest import REPO_ROOT
from tests.test_synth import SEED_NODE, chain_rules, chains_named, edge_case_spec, service_features_spec, table_text

KUBE_PROXY_IPV6 = REPO_ROOT / "tests" / "data" / "kube-proxy" / "TestEnableLocalhostNodePortsIPv6.restore"

RESTORE6 = {"nft": "ip6tables-nft-restore", "legacy": "ip6tables-legacy-restore"}
SAVE6 = {"nft": "ip6tables-nft-save", "legacy": "ip6tables-legacy-save"}
_MISSING = missing_tools(*RESTORE6.values(), *SAVE6.values())
NO_KERNEL = can_run_kernel_lab() or (f"needs {', '.join(_MISSING)}" if _MISSING else None)


def kube_proxy_test_spec() -> ClusterSpec:
    """The cluster of kube-proxy's TestEnableLocalhostNodePortsIPv6: no local traffic detector, one NodePort
    Service with externalTrafficPolicy Local, an endpoint on no node and one on the test's node."""
    service = ServiceSpec("ns1", "svc1", "fd00:ab34::20", type="NodePort", external_traffic_policy="Local",
                          ports=(Port(80, 80, name="p80", node_port=30001),),
                          endpoints=(Endpoint("ff06::c1"), Endpoint("ff06::c2", "test-hostname")))
    return ClusterSpec((service,), node="test-hostname", node_ip="fd00::1", pod_cidr=None, family=6)


CASES = {
    "edge-cases": lambda: synth_cluster(ipv6_cluster(edge_case_spec())),
    "kube-proxy-unit-test": lambda: synth_cluster(kube_proxy_test_spec()),
    "mixed": lambda: synth_cluster(ipv6_cluster(mixed_spec(300, 3, seed=7))),
    "mixed-large-cluster": lambda: synth_cluster(ipv6_cluster(mixed_spec(500, 3, seed=2))),
    "nodeports": lambda: synth_cluster(ipv6_cluster(nodeport_spec(40, 2))),
    "seed-node": lambda: synth_cluster(ipv6_cluster(SEED_NODE)),
    "service-features": lambda: synth_cluster(ipv6_cluster(service_features_spec())),
}


def without_comments(text: str) -> dict[str, list[str]]:
    """Table -> its lines, without the `#` lines (back ends differ in the header and the order of tables)."""
    tables: dict[str, list[str]] = {}
    current: list[str] = []
    for line in text.splitlines():
        if line.startswith("*"):
            current = tables.setdefault(line[1:], [])
        if not line.startswith("#"):
            current.append(line)
    return tables


def restore6(namespace: Namespace, text: str, variant: str, test_only: bool = False):
    argv = [RESTORE6[variant]] + (["--test"] if test_only else [])
    return namespace.run(argv, input=text)


# -- the kernel ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("variant", ["nft", "legacy"])
@pytest.mark.parametrize("case", sorted(CASES))
@pytest.mark.kernel
@pytest.mark.skipif(NO_KERNEL is not None, reason=str(NO_KERNEL))
def test_ip6tables_restore_accepts_the_generated_ipv6_dumps(case, variant):
    with Namespace("synth6") as namespace:
        loaded = restore6(namespace, CASES[case](), variant, test_only=True)
    assert loaded.ok, loaded.stderr


@pytest.mark.parametrize("variant", ["nft", "legacy"])
@pytest.mark.parametrize("case", sorted(CASES))
@pytest.mark.kernel
@pytest.mark.skipif(NO_KERNEL is not None, reason=str(NO_KERNEL))
def test_ip6tables_save_prints_the_generated_rules_back_unchanged(case, variant):
    text = CASES[case]()
    with Namespace("synth6") as namespace:
        loaded = restore6(namespace, text, variant)
        assert loaded.ok, loaded.stderr
        saved = namespace.run([SAVE6[variant]])
    assert saved.ok, saved.stderr
    assert without_comments(saved.stdout) == without_comments(text)


# -- kube-proxy's own expectation ------------------------------------------------------------------------


@pytest.mark.parametrize("variant", ["nft", "legacy"])
@pytest.mark.kernel
@pytest.mark.skipif(NO_KERNEL is not None, reason=str(NO_KERNEL))
def test_the_rules_equal_kube_proxys_unit_test_expectation_for_an_ipv6_nodeport_service(variant):
    # kube-proxy's test holds what it writes (iptables-restore's input); the kernel turns it into what
    # ip6tables-save prints, which is what the generator writes.
    with Namespace("kp6") as namespace:
        loaded = restore6(namespace, KUBE_PROXY_IPV6.read_text(), variant)
        assert loaded.ok, loaded.stderr
        saved = without_comments(namespace.run([SAVE6[variant]]).stdout)
    ours = without_comments(synth_cluster(kube_proxy_test_spec()))
    theirs_nat = [line for line in saved["nat"] if line.startswith("-A ")]
    ours_nat = [line for line in ours["nat"] if line.startswith("-A KUBE-")]
    # kube-proxy's fake iptables has no --random-fully: that rule is the one difference.
    assert [line.removesuffix(" --random-fully") for line in ours_nat] == theirs_nat
    assert [line for line in saved["filter"] if line.startswith("-A ")] == chain_rules(
        "\n".join(ours["filter"]), "KUBE-FORWARD")
    assert len(theirs_nat) == 17


# -- what differs from IPv4 ------------------------------------------------------------------------------


def test_the_seed_nodes_service_chains_keep_their_ipv4_names_and_its_endpoint_chains_change():
    four, six = synth_cluster(SEED_NODE), synth_cluster(ipv6_cluster(SEED_NODE))
    for prefix in ("KUBE-SVC-", "KUBE-EXT-"):
        assert chains_named(six, prefix) == chains_named(four, prefix)
    # An endpoint chain hashes the endpoint, which is another string in IPv6.
    assert not set(chains_named(six, "KUBE-SEP-")) & set(chains_named(four, "KUBE-SEP-"))
    assert len(chains_named(six, "KUBE-SEP-")) == len(chains_named(four, "KUBE-SEP-"))


def test_ipv6_rules_show_endpoints_as_bracketed_address_and_port_with_128_bit_host_masks():
    text = synth_cluster(ipv6_cluster(SEED_NODE))
    svc = "KUBE-SVC-OL4YPD43MBS7WVHD"
    assert chain_rules(text, svc) == [
        f"-A {svc} ! -s fd00:10:244::/56 -d fd00:10:96::7688/128 -p tcp -m comment --comment "
        '"default/my-nginx-service cluster IP" -m tcp --dport 80 -j KUBE-MARK-MASQ',
        f'-A {svc} -m comment --comment "default/my-nginx-service -> [fd00:10:244:1::2]:80" -m statistic --mode '
        "random --probability 0.50000000000 -j KUBE-SEP-O56SWDBDBH2Z743T",
        f'-A {svc} -m comment --comment "default/my-nginx-service -> [fd00:10:244:2::2]:80" '
        "-j KUBE-SEP-DIRUDSH75JG7XAEK",
    ]
    assert chain_rules(text, "KUBE-SEP-O56SWDBDBH2Z743T") == [
        '-A KUBE-SEP-O56SWDBDBH2Z743T -s fd00:10:244:1::2/128 -m comment --comment "default/my-nginx-service" '
        "-j KUBE-MARK-MASQ",
        '-A KUBE-SEP-O56SWDBDBH2Z743T -p tcp -m comment --comment "default/my-nginx-service" -m tcp -j DNAT '
        "--to-destination [fd00:10:244:1::2]:80",
    ]


def test_ipv6_endpoints_are_written_in_the_order_of_their_bracketed_strings():
    service = ServiceSpec("default", "web", "fd00:10:96::50", ports=(Port(80, 8080),),
                          endpoints=(Endpoint("fd00:10:244:1::2"), Endpoint("fd00:10:244:1::10"),
                                     Endpoint("fd00:10:244::9")))
    text = synth_cluster(ClusterSpec((service,), node_ip="fc00:f853:ccd:e793::2", pod_cidr="fd00:10:244::/56",
                                     family=6))
    [svc] = chains_named(text, "KUBE-SVC-")
    order = [re.search(r"-> \[([0-9a-f:]+)\]:", r).group(1) for r in chain_rules(text, svc)[1:]]
    # "[fd00:10:244:1::10]" < "[fd00:10:244:1::2]" < "[fd00:10:244::9]" as strings (':' sorts after digits).
    assert order == ["fd00:10:244:1::10", "fd00:10:244:1::2", "fd00:10:244::9"]


def test_node_ports_are_not_reachable_on_the_ipv6_loopback():
    [last] = [r for r in chain_rules(table_text(synth_cluster(ipv6_cluster(SEED_NODE)), "nat"), "KUBE-SERVICES")
              if "KUBE-NODEPORTS" in r]
    assert last == ('-A KUBE-SERVICES ! -d ::1/128 -m comment --comment "kubernetes service nodeports; NOTE: this '
                    'must be the last rule in this chain" -m addrtype --dst-type LOCAL -j KUBE-NODEPORTS')


def test_ip6tables_has_an_empty_kube_firewall_jumped_to_first():
    filter_ = table_text(synth_cluster(ipv6_cluster(SEED_NODE)), "filter")
    assert ":KUBE-FIREWALL - [0:0]" in filter_ and chain_rules(filter_, "KUBE-FIREWALL") == []
    assert chain_rules(filter_, "INPUT")[0] == "-A INPUT -j KUBE-FIREWALL"
    assert chain_rules(filter_, "OUTPUT")[0] == "-A OUTPUT -j KUBE-FIREWALL"
    assert "127.0.0.0/8" not in filter_


def test_a_kind_nodes_ipv6_nat_table_has_the_masquerade_agent_and_no_docker_dns():
    nat = table_text(synth_cluster(ipv6_cluster(SEED_NODE)), "nat")
    assert chains_named(nat, "DOCKER") == []
    assert chain_rules(nat, "KIND-MASQ-AGENT")[0] == (
        '-A KIND-MASQ-AGENT -d fd00:10:244::/56 -m comment --comment "kind-masq-agent: local traffic is not subject '
        'to MASQUERADE" -j RETURN')
    assert [r.split(" -j ")[-1] for r in chain_rules(nat, "POSTROUTING")] == ["KUBE-POSTROUTING", "KIND-MASQ-AGENT"]


def test_a_service_without_endpoints_is_rejected_with_icmpv6_port_unreachable():
    service = ServiceSpec("default", "web", "fd00:10:96::50", type="NodePort", ports=(Port(80, 8080, node_port=30100),))
    filter_ = table_text(synth_cluster(ClusterSpec((service,), node_ip="fc00:f853:ccd:e793::2",
                                                   pod_cidr="fd00:10:244::/56", family=6)), "filter")
    assert chain_rules(filter_, "KUBE-SERVICES") == [
        '-A KUBE-SERVICES -d fd00:10:96::50/128 -p tcp -m comment --comment "default/web has no endpoints" -m tcp '
        "--dport 80 -j REJECT --reject-with icmp6-port-unreachable"]
    assert chain_rules(filter_, "KUBE-EXTERNAL-SERVICES")[0].endswith(
        "--dport 30100 -j REJECT --reject-with icmp6-port-unreachable")


def test_client_ip_affinity_remembers_the_whole_ipv6_source_address():
    service = ServiceSpec("default", "web", "10.96.0.50", session_affinity="ClientIP",
                          endpoints=(Endpoint("10.244.1.2", "node-1"),))
    text = synth_cluster(ipv6_cluster(ClusterSpec((service,))))
    mask = "--mask ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff --rsource"
    [sep] = chains_named(text, "KUBE-SEP-")
    [svc] = chains_named(text, "KUBE-SVC-")
    assert f"--reap --name {sep} {mask} -j {sep}" in chain_rules(text, svc)[1]
    assert f"-m recent --set --name {sep} {mask} -m tcp -j DNAT" in chain_rules(text, sep)[1]


def test_the_firewall_lets_an_ipv6_node_in_when_a_source_range_holds_its_address():
    service = ServiceSpec("default", "web", "10.96.0.50", type="LoadBalancer", ports=(Port(80, 8080, node_port=30100),),
                          load_balancer_ips=("198.18.0.1",), load_balancer_source_ranges=("172.20.0.0/16",),
                          endpoints=(Endpoint("10.244.1.2", "node-1"),))
    text = synth_cluster(ipv6_cluster(ClusterSpec((service,))))
    [fw] = chains_named(text, "KUBE-FW-")
    assert [r.split(" -m ")[0] for r in chain_rules(text, fw)] == [
        f"-A {fw} -s fc00:f853:ccd:e793::/64", f"-A {fw} -s 2001:2::1/128", f"-A {fw}"]


def test_without_a_local_traffic_detector_no_rule_tells_pods_apart():
    text = synth_cluster(kube_proxy_test_spec())
    assert " -s fd00" not in text and "pod traffic for" not in text
    assert chain_rules(text, "KUBE-SVC-XPGD46QRK7WJZT7O")[0].startswith(
        '-A KUBE-SVC-XPGD46QRK7WJZT7O -m comment --comment "ns1/svc1:p80 -> [ff06::c1]:80"')


# -- the spec -------------------------------------------------------------------------------------------


def test_an_ipv6_spec_refuses_an_ipv4_address_and_the_reverse():
    service = ServiceSpec("default", "web", "10.96.0.50", endpoints=(Endpoint("fd00:10:244::2"),))
    with pytest.raises(ValueError, match="fd00:10:244::2 is not an IPv4 address"):
        ClusterSpec((service,))
    with pytest.raises(ValueError, match="172.20.0.2 is not an IPv6 address"):
        ClusterSpec((), pod_cidr="fd00:10:244::/56", family=6)


def test_a_kind_node_needs_the_pod_cidr_for_its_masquerade_agent():
    with pytest.raises(ValueError, match="masquerade agent"):
        ClusterSpec((), pod_cidr=None, kind=KindNode())


def test_twins_keep_each_pods_node_range_and_each_address_in_its_range():
    assert ipv6_twin("10.244.3.17") == "fd00:10:244:3::11"
    assert ipv6_twin("10.244.3.0/24") == "fd00:10:244:3::/64"
    assert ipv6_twin("10.96.0.10") == "fd00:10:96::a"
    assert ipv6_twin("172.20.0.4") == "fc00:f853:ccd:e793::4"
    assert ipv6_twin("203.0.113.0/24") == "2001:db8:0:113::/64"
    with pytest.raises(ValueError, match="none of the ranges"):
        ipv6_twin("8.8.8.8")
    with pytest.raises(ValueError, match="no IPv6 twin"):
        ipv6_twin("10.244.0.0/23")


def test_the_ipv6_side_of_a_dual_stack_cluster_drops_single_stack_services():
    dual = replace(SEED_NODE, services=tuple(replace(s, ip_family_policy="PreferDualStack") if s.name ==
                                             "my-nginx-service" else s for s in SEED_NODE.services))
    assert [s.key for s in ipv6_cluster(dual, dual_stack=True).services] == ["default/my-nginx-service"]
    assert len(ipv6_cluster(dual).services) == 3


def test_the_ipv6_twin_keeps_each_endpoints_conditions_and_node_and_a_headless_services_none():
    going = Endpoint("10.244.1.2", "node-1", ready=False, serving=True, terminating=True)
    six = ipv6_cluster(ClusterSpec((ServiceSpec("default", "web", "10.96.0.50", endpoints=(going,)),
                                    ServiceSpec("default", "headless", "None", endpoints=(going,)))))
    assert [s.endpoints[0] for s in six.services] == [replace(going, address="fd00:10:244:1::2")] * 2
    assert six.services[1].cluster_ip == "None"


# -- the parser (not yet) -------------------------------------------------------------------------------


@pytest.mark.parametrize("case", sorted(CASES))
def test_generated_ipv6_dumps_parse_and_format_back_byte_for_byte(case):
    text = CASES[case]()
    assert format_dump(parse(text)) == text


# -- the command -----------------------------------------------------------------------------------------


def test_synth_family_6_prints_the_ipv6_twin_of_the_nodeport_cluster():
    proc = subprocess.run([sys.executable, "-m", "iptables_lens.cli", "synth", "-n", "3", "--endpoints", "2",
                           "--family", "6"], capture_output=True, text=True, cwd=REPO_ROOT)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == synth_cluster(ipv6_cluster(nodeport_spec(3, 2)))
    assert proc.stdout.startswith("# Generated by ip6tables-save v1.8.9 (nf_tables)")
