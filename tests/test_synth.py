"""The synthetic dumps: what kube-proxy v1.29 would write for each kind of Service, in iptables-save's form.

The generator follows syncProxyRules in kube-proxy v1.29's pkg/proxy/iptables/proxier.go; these tests hold it
to the seed scenario's real dumps, to the parser, to the kernel (both iptables back ends) and to the tracer.
"""

from __future__ import annotations

import hashlib
import re
import subprocess
import sys
from dataclasses import replace
from fractions import Fraction
from ipaddress import IPv4Network

import pytest
from iptables_lens import format_dump, parse
from iptables_lens.kube import decode_chain, endpoint_chain, family
from iptables_lens.kube.synth import (
    MIX_KINDS,
    ClusterSpec,
    Endpoint,
    KindNode,
    Port,
    ServiceSpec,
    is_large_cluster,
    kind_system_services,
    mixed_spec,
    nodeport_spec,
    synth_cluster,
    synth_mixed,
)
from iptables_lens.kube.synth_scenario import SCENARIO_KINDS, scenario_files, write_atomically, write_scenario
from iptables_lens.lab.run import LabRun
from iptables_lens.lab.topology import Lab
from iptables_lens.netns import Namespace, can_run_kernel_lab
from iptables_lens.scenario import Scenario, load_scenario
from iptables_lens.scenario.flows import predict
from iptables_lens.trace import IPv4, NodeContext, Packet, Route, trace

from tests.conftest import REPO_ROOT, SEED

MY_NGINX = ServiceSpec(
    "default", "my-nginx-service", "10.96.118.136", type="NodePort", ports=(Port(80, 80, node_port=30080),),
    endpoints=(Endpoint("10.244.1.2", "blog-worker"), Endpoint("10.244.2.2", "blog-worker2")),
)
SEED_NODE = ClusterSpec(kind_system_services() + (MY_NGINX,), node="blog-worker", node_ip="172.20.0.2",
                        kind=KindNode())


def web(**changes) -> ServiceSpec:
    """A Service with two endpoints, one on the dump's node (node-0) and one elsewhere, changed as asked."""
    base = dict(namespace="default", name="web", cluster_ip="10.96.0.50", ports=(Port(80, 8080),),
                endpoints=(Endpoint("10.244.0.2", "node-0"), Endpoint("10.244.1.2", "node-1")))
    base.update(changes)
    return ServiceSpec(**base)


def dump_of(*services: ServiceSpec, node: str = "node-0") -> str:
    return synth_cluster(ClusterSpec(services, node=node))


def chain_rules(text: str, chain: str) -> list[str]:
    return [line for line in text.splitlines() if line.startswith(f"-A {chain} ")]


def table_text(text: str, table: str) -> str:
    return text.split(f"*{table}\n", 1)[1].split("COMMIT", 1)[0]


def chains_named(text: str, prefix: str) -> list[str]:
    return sorted({m for m in re.findall(r"^:(\S+) ", text, re.M) if m.startswith(prefix)})


def edge_case_spec() -> ClusterSpec:
    """Policy and affinity combinations the mix does not draw, each once with a local endpoint on the dump's
    node and once without."""
    lb = dict(type="LoadBalancer", ports=(Port(80, 8080, node_port=30200),), load_balancer_ips=("198.18.0.9",))
    services = [
        web(name="both-local", type="NodePort", ports=(Port(80, 8080, node_port=30100),),
            internal_traffic_policy="Local", external_traffic_policy="Local", session_affinity="ClientIP"),
        web(name="internal-local", internal_traffic_policy="Local", external_ips=("192.0.2.7",)),
        web(name="external-ip-local", external_ips=("192.0.2.8",), external_traffic_policy="Local"),
        web(name="lb-no-endpoints", endpoints=(), load_balancer_source_ranges=("203.0.113.0/24",), **lb),
        web(name="lb-local-firewall", external_traffic_policy="Local", health_check_node_port=30201,
            load_balancer_source_ranges=("172.20.0.0/16",), **lb),
        web(name="udp", ports=(Port(53, 5353, "UDP", node_port=30300),), type="NodePort", endpoints=()),
    ]
    elsewhere = [replace(s, name=f"{s.name}-elsewhere", endpoints=tuple(replace(e, node="node-1") for e in s.endpoints),
                         ports=tuple(replace(p, node_port=p.node_port and p.node_port + 1000) for p in s.ports),
                         load_balancer_ips=("198.18.0.10",) if s.load_balancer_ips else (),
                         health_check_node_port=s.health_check_node_port and s.health_check_node_port + 1000)
                 for s in services]
    both = [replace(s, cluster_ip=f"10.96.0.{100 + i}") for i, s in enumerate(services + elsewhere)]
    return ClusterSpec(tuple(both), node="node-0")


def edge_cases() -> str:
    return synth_cluster(edge_case_spec())


def service_features_spec() -> ClusterSpec:
    """The Service features the edge cases lack: terminating endpoints (used when no ready one is left, on the
    node and elsewhere; never when not serving), UDP and SCTP ports, two ingress IPs and a load balancer without
    node ports, external IPs under either policy, an affinity timeout, and the Services kube-proxy ignores."""
    going, gone = dict(ready=False, serving=True, terminating=True), dict(ready=False, serving=False, terminating=True)
    services = [
        web(name="terminating-here", type="NodePort", ports=(Port(80, 8080, node_port=30400),),
            external_traffic_policy="Local",
            endpoints=(Endpoint("10.244.0.5", "node-0", **going), Endpoint("10.244.1.5", "node-1"))),
        web(name="terminating-only", endpoints=(Endpoint("10.244.0.6", "node-0", **going),
                                                Endpoint("10.244.1.6", "node-1", **going),
                                                Endpoint("10.244.1.7", "node-1", **gone))),
        web(name="not-serving", endpoints=(Endpoint("10.244.1.8", "node-1", **gone),)),
        web(name="internal-local-terminating", internal_traffic_policy="Local",
            endpoints=(Endpoint("10.244.0.9", "node-0", **going), Endpoint("10.244.1.9", "node-1"))),
        web(name="dns", ports=(Port(53, 5353, "UDP", "dns"), Port(53, 5353, "TCP", "dns-tcp"),
                               Port(9, 9, "SCTP", "discard"))),
        web(name="lb-two-ips", type="LoadBalancer", ports=(Port(443, 8443, name="https"),),
            load_balancer_ips=("198.18.0.20", "198.18.0.21"), load_balancer_source_ranges=("203.0.113.0/24",
                                                                                          "172.20.0.0/16")),
        web(name="external-ips", external_ips=("192.0.2.20", "192.0.2.21"), external_traffic_policy="Local",
            type="NodePort", ports=(Port(80, 8080, node_port=30401),)),
        web(name="affinity-timeout", session_affinity="ClientIP", affinity_seconds=60),
        web(name="headless", cluster_ip="None"),
        web(name="external-name", cluster_ip="", type="ExternalName", endpoints=()),
    ]
    return ClusterSpec(tuple(replace(s, cluster_ip=f"10.96.1.{100 + i}") if s.proxied else s
                             for i, s in enumerate(services)), node="node-0")


# Dumps that exercise every kind of rule the generator writes.
CASES = {
    "edge-cases": edge_cases,
    "service-features": lambda: synth_cluster(service_features_spec()),
    "mixed": lambda: synth_mixed(300, 3, seed=7),
    "mixed-large-cluster": lambda: synth_mixed(500, 3, seed=2),
    "seed-node": lambda: synth_cluster(SEED_NODE),
    "nodeports": lambda: synth_cluster(nodeport_spec(40, 2)),
    "masquerade-all": lambda: synth_cluster(replace(mixed_spec(60, 2, seed=4), masquerade_all=True)),
    "scenario-clusterip": lambda: scenario_files("clusterip")["worker-2-after.rules"],
    "scenario-nodeport-local": lambda: scenario_files("nodeport-local")["worker-3-after.rules"],
}


# -- form -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("case", sorted(CASES))
def test_generated_dumps_parse_and_format_back_byte_for_byte(case):
    text = CASES[case]()
    assert format_dump(parse(text)) == text


def test_the_output_depends_only_on_the_spec():
    assert synth_mixed(200, 3, seed=5) == synth_mixed(200, 3, seed=5)
    assert synth_mixed(200, 3, seed=5) != synth_mixed(200, 3, seed=6)


def test_the_benchmarks_nodeport_dump_still_writes_the_same_bytes():
    digest = hashlib.sha256(synth_cluster(nodeport_spec(120, 4)).encode()).hexdigest()
    assert digest == "6f86394196378e2b79fb295be8f3085191f41c3da716ed58a7901ceec6e22fec"


def test_the_nodeport_spec_writes_what_the_old_nodeport_only_generator_wrote_while_endpoint_orders_agree():
    # The digest of the old `synth_dump(450, 2)`: two endpoints a Service never straddle
    # 10.244.x.9/10.244.x.10, where its numeric order and kube-proxy's string order part.
    digest = hashlib.sha256(synth_cluster(nodeport_spec(450, 2)).encode()).hexdigest()
    assert digest == "7e9bbe29e34c8441b4666bd22b955767bfab8d4ec2f688c968c5472f5e1bee2d"


def test_past_1000_endpoints_the_endpoint_rules_lose_their_comments_as_in_kube_proxy():
    small, large = nodeport_spec(500, 2), nodeport_spec(501, 2)
    assert not is_large_cluster(small) and is_large_cluster(large)
    text = synth_cluster(large)
    sep = chains_named(text, "KUBE-SEP-")[0]
    assert all("--comment" not in rule for rule in chain_rules(text, sep))
    svc = chains_named(text, "KUBE-SVC-")[0]
    first, *picks = chain_rules(text, svc)
    assert "cluster IP" in first and all("--comment" not in rule for rule in picks)
    assert "--comment" in chain_rules(text, chains_named(text, "KUBE-EXT-")[0])[0]


# -- the seed: real kube-proxy v1.29 output ---------------------------------------------------------------


def test_a_nodeport_services_rules_equal_the_seeds_for_my_nginx_service():
    seed = (SEED / "worker-1-after.rules").read_text()
    ours = dump_of(MY_NGINX, node="blog-worker")
    name = "default/my-nginx-service"
    per_service = {c for c in re.findall(r"^:(KUBE-(?:SVC|EXT|SEP)-\S+) ", ours, re.M)}
    assert per_service == {"KUBE-SVC-OL4YPD43MBS7WVHD", "KUBE-EXT-OL4YPD43MBS7WVHD",
                           "KUBE-SEP-ULMINKU752SDK7IQ", "KUBE-SEP-S4QGHWZAQRZ7NT5K"}
    for chain in per_service:
        assert chain_rules(ours, chain) == chain_rules(seed, chain), chain
    for chain in ("KUBE-SERVICES", "KUBE-NODEPORTS"):
        mine = [r for r in chain_rules(table_text(ours, "nat"), chain) if name in r]
        theirs = [r for r in chain_rules(table_text(seed, "nat"), chain) if name in r]
        assert mine == theirs and mine, chain


def test_the_seed_nodes_whole_dump_is_reproduced_but_for_counters_and_times():
    seed = (SEED / "worker-1-after.rules").read_text()
    without_counters = re.sub(r"\[\d+:\d+\]", "[0:0]", seed)
    times = re.compile(r" on \w{3} \w{3} \d+ [\d:]+ \d{4}$", re.M)
    assert times.sub("", synth_cluster(SEED_NODE)) == times.sub("", without_counters)


# -- the kernel ------------------------------------------------------------------------------------------

def _tables(text: str) -> dict[str, str]:
    """Table name -> its text without iptables-save's comment lines (back ends print tables in any order)."""
    tables: dict[str, list[str]] = {}
    for line in text.splitlines():
        if line.startswith("*"):
            current = tables.setdefault(line, [])
        if not line.startswith("#"):
            current.append(line)
    return {name: "\n".join(lines) for name, lines in tables.items()}


@pytest.mark.parametrize("variant", ["nft", "legacy"])
@pytest.mark.parametrize("case", sorted(CASES))
@pytest.mark.kernel
@pytest.mark.skipif(can_run_kernel_lab() is not None, reason=str(can_run_kernel_lab()))
def test_the_kernel_accepts_the_generated_dumps(case, variant):
    with Namespace("synth") as namespace:
        loaded = namespace.restore(CASES[case](), variant, test_only=True)
    assert loaded.ok, loaded.stderr


@pytest.mark.parametrize("variant,save", [("nft", "iptables-nft-save"), ("legacy", "iptables-legacy-save")])
@pytest.mark.parametrize("case", sorted(CASES))
@pytest.mark.kernel
@pytest.mark.skipif(can_run_kernel_lab() is not None, reason=str(can_run_kernel_lab()))
def test_the_kernel_saves_the_generated_rules_back_unchanged(case, variant, save):
    text = CASES[case]()
    with Namespace("synth") as namespace:
        loaded = namespace.restore(text, variant)
        assert loaded.ok, loaded.stderr
        saved = namespace.run([save])
    assert saved.ok, saved.stderr
    assert _tables(saved.stdout) == _tables(text)


# -- names ------------------------------------------------------------------------------------------------


def test_every_hashed_chain_name_verifies_against_its_service():
    dump = parse(synth_mixed(120, 3, seed=3))
    nat = dump.table("nat")
    hashed = [c.name for c in nat.chains if family(c.name) in ("KUBE-SVC", "KUBE-SVL", "KUBE-EXT", "KUBE-FW",
                                                                 "KUBE-SEP")]
    assert {family(c) for c in hashed} == {"KUBE-SVC", "KUBE-SVL", "KUBE-EXT", "KUBE-FW", "KUBE-SEP"}
    unverified = [c for c in hashed if not decode_chain(nat, c).verified]
    assert unverified == []


def test_endpoints_are_written_in_the_order_of_their_ip_port_strings():
    text = dump_of(web(endpoints=(Endpoint("10.244.1.2"), Endpoint("10.244.1.10"), Endpoint("10.244.0.9"))))
    svc = chains_named(text, "KUBE-SVC-")[0]
    order = [re.search(r"-> ([\d.]+):", r).group(1) for r in chain_rules(text, svc)[1:]]
    assert order == ["10.244.0.9", "10.244.1.10", "10.244.1.2"]


# -- each kind's characteristic rules ---------------------------------------------------------------------


def test_a_clusterip_service_has_no_external_chain_and_no_node_port():
    text = dump_of(web())
    assert chains_named(text, "KUBE-EXT-") == [] and chain_rules(text, "KUBE-NODEPORTS") == []
    svc = chains_named(text, "KUBE-SVC-")[0]
    assert chain_rules(text, svc)[0].startswith(f"-A {svc} ! -s 10.244.0.0/16 -d 10.96.0.50/32 -p tcp")
    assert "--probability 0.50000000000" in chain_rules(text, svc)[1]


def test_local_policy_sends_outside_traffic_to_the_local_endpoints_only():
    text = dump_of(web(type="NodePort", ports=(Port(80, 8080, node_port=30100),), external_traffic_policy="Local"))
    [svl] = chains_named(text, "KUBE-SVL-")
    [ext] = chains_named(text, "KUBE-EXT-")
    svc = svl.replace("KUBE-SVL", "KUBE-SVC")
    local = endpoint_chain("default/web", "tcp", "10.244.0.2:8080")
    assert chain_rules(text, svl) == [f'-A {svl} -m comment --comment "default/web -> 10.244.0.2:8080" -j {local}']
    assert chain_rules(text, ext) == [
        f'-A {ext} -s 10.244.0.0/16 -m comment --comment "pod traffic for default/web external destinations" '
        f"-j {svc}",
        f'-A {ext} -m comment --comment "masquerade LOCAL traffic for default/web external destinations" '
        "-m addrtype --src-type LOCAL -j KUBE-MARK-MASQ",
        f'-A {ext} -m comment --comment "route LOCAL traffic for default/web external destinations" '
        f"-m addrtype --src-type LOCAL -j {svc}",
        f"-A {ext} -j {svl}",
    ]
    assert len(chain_rules(text, svc)) == 3  # the masquerade rule and both endpoints: pods use them all


def test_local_policy_on_a_node_without_local_endpoints_drops_outside_traffic():
    service = web(type="LoadBalancer", ports=(Port(80, 8080, node_port=30100),), external_traffic_policy="Local",
                  load_balancer_ips=("198.18.0.1",), health_check_node_port=30101)
    text = dump_of(service, node="node-7")
    assert chains_named(text, "KUBE-SVL-") == []
    [ext] = chains_named(text, "KUBE-EXT-")
    assert len(chain_rules(text, ext)) == 3 and "route LOCAL" in chain_rules(text, ext)[-1]
    assert chain_rules(table_text(text, "filter"), "KUBE-EXTERNAL-SERVICES") == [
        '-A KUBE-EXTERNAL-SERVICES -d 198.18.0.1/32 -p tcp -m comment --comment "default/web has no local '
        'endpoints" -m tcp --dport 80 -j DROP',
        '-A KUBE-EXTERNAL-SERVICES -p tcp -m comment --comment "default/web has no local endpoints" '
        "-m addrtype --dst-type LOCAL -m tcp --dport 30100 -j DROP",
    ]


def test_a_local_policy_load_balancer_opens_its_health_check_node_port_in_the_filter_table():
    service = web(type="LoadBalancer", ports=(Port(80, 8080, node_port=30100),), external_traffic_policy="Local",
                  load_balancer_ips=("198.18.0.1",), health_check_node_port=30101)
    assert chain_rules(table_text(dump_of(service), "filter"), "KUBE-NODEPORTS") == [
        '-A KUBE-NODEPORTS -p tcp -m comment --comment "default/web health check node port" -m tcp --dport 30101 '
        "-j ACCEPT"]


def test_a_load_balancer_ip_jumps_to_the_external_chain():
    text = dump_of(web(type="LoadBalancer", ports=(Port(80, 8080, node_port=30100),),
                       load_balancer_ips=("198.18.0.1",)))
    [ext] = chains_named(text, "KUBE-EXT-")
    assert f'-A KUBE-SERVICES -d 198.18.0.1/32 -p tcp -m comment --comment "default/web loadbalancer IP" -m tcp ' \
           f"--dport 80 -j {ext}" in text
    assert chains_named(text, "KUBE-FW-") == []  # v1.29 writes KUBE-FW only for loadBalancerSourceRanges


def test_a_load_balancer_with_source_ranges_goes_through_a_firewall_chain():
    text = dump_of(web(type="LoadBalancer", ports=(Port(80, 8080, node_port=30100),),
                       load_balancer_ips=("198.18.0.1",), load_balancer_source_ranges=("203.0.113.0/24",)))
    [fw] = chains_named(text, "KUBE-FW-")
    ext = fw.replace("KUBE-FW", "KUBE-EXT")
    assert f"--comment \"default/web loadbalancer IP\" -m tcp --dport 80 -j {fw}" in text
    assert chain_rules(text, fw) == [
        f'-A {fw} -s 203.0.113.0/24 -m comment --comment "default/web loadbalancer IP" -j {ext}',
        f'-A {fw} -m comment --comment "other traffic to default/web will be dropped by KUBE-PROXY-FIREWALL"',
    ]
    assert chain_rules(table_text(text, "filter"), "KUBE-PROXY-FIREWALL") == [
        f'-A KUBE-PROXY-FIREWALL -d 198.18.0.1/32 -p tcp -m comment --comment "default/web traffic not accepted by '
        f'{fw}" -m tcp --dport 80 -j DROP']


def test_the_firewall_lets_the_node_in_when_a_source_range_holds_its_address():
    text = dump_of(web(type="LoadBalancer", ports=(Port(80, 8080, node_port=30100),),
                       load_balancer_ips=("198.18.0.1",), load_balancer_source_ranges=("172.20.0.0/16",)))
    [fw] = chains_named(text, "KUBE-FW-")
    assert [r.split(" -m ")[0] for r in chain_rules(text, fw)] == [
        f"-A {fw} -s 172.20.0.0/16", f"-A {fw} -s 198.18.0.1/32", f"-A {fw}"]


def test_an_external_ip_jumps_to_the_external_chain():
    text = dump_of(web(external_ips=("192.0.2.7",)))
    [ext] = chains_named(text, "KUBE-EXT-")
    assert f'-d 192.0.2.7/32 -p tcp -m comment --comment "default/web external IP" -m tcp --dport 80 -j {ext}' in text


def test_client_ip_affinity_checks_recent_lists_before_the_random_pick():
    text = dump_of(web(session_affinity="ClientIP"))
    svc = chains_named(text, "KUBE-SVC-")[0]
    seps = sorted(chains_named(text, "KUBE-SEP-"), key=lambda c: text.index(f"-j {c}"))
    rules = chain_rules(text, svc)[1:]
    assert [r.split(" -m ", 2)[2].split(" -j ")[0] for r in rules[:2]] == [
        f"recent --rcheck --seconds 10800 --reap --name {sep} --mask 255.255.255.255 --rsource" for sep in seps]
    assert "statistic" in rules[2] and "statistic" not in rules[3]
    for sep in seps:
        assert f"-m recent --set --name {sep} --mask 255.255.255.255 --rsource -m tcp -j DNAT" in \
            chain_rules(text, sep)[1]


def test_a_service_without_endpoints_is_rejected_in_the_filter_table_only():
    text = dump_of(web(type="NodePort", ports=(Port(80, 8080, node_port=30100),), endpoints=()))
    assert "default/web" not in table_text(text, "nat")
    filter_ = table_text(text, "filter")
    assert chain_rules(filter_, "KUBE-SERVICES") == [
        '-A KUBE-SERVICES -d 10.96.0.50/32 -p tcp -m comment --comment "default/web has no endpoints" -m tcp '
        "--dport 80 -j REJECT --reject-with icmp-port-unreachable"]
    assert chain_rules(filter_, "KUBE-EXTERNAL-SERVICES") == [
        '-A KUBE-EXTERNAL-SERVICES -p tcp -m comment --comment "default/web has no endpoints" -m addrtype '
        "--dst-type LOCAL -m tcp --dport 30100 -j REJECT --reject-with icmp-port-unreachable"]


def test_internal_policy_local_without_local_endpoints_drops_cluster_ip_traffic():
    text = dump_of(web(internal_traffic_policy="Local"), node="node-7")
    assert "default/web" not in table_text(text, "nat")
    assert chain_rules(table_text(text, "filter"), "KUBE-SERVICES") == [
        '-A KUBE-SERVICES -d 10.96.0.50/32 -p tcp -m comment --comment "default/web has no local endpoints" -m tcp '
        "--dport 80 -j DROP"]


def test_with_both_policies_local_pods_still_reach_every_endpoint_through_the_external_chain():
    text = dump_of(web(type="NodePort", ports=(Port(80, 8080, node_port=30100),), internal_traffic_policy="Local",
                       external_traffic_policy="Local"), node="node-7")
    [svc] = chains_named(text, "KUBE-SVC-")
    [ext] = chains_named(text, "KUBE-EXT-")
    assert len(chain_rules(text, svc)) == 2 and f"-j {svc}" in chain_rules(text, ext)[0]
    assert "has no local endpoints" in chain_rules(table_text(text, "filter"), "KUBE-SERVICES")[0]


def test_a_named_port_is_part_of_the_service_port_name():
    text = dump_of(web(ports=(Port(80, 8080, name="http"), Port(53, 5353, "UDP", "dns"))))
    assert '--comment "default/web:http cluster IP" -m tcp --dport 80' in text
    assert '-p udp -m comment --comment "default/web:dns" -m udp -j DNAT --to-destination 10.244.0.2:5353' in text


def _going(address: str, node: str) -> Endpoint:
    return Endpoint(address, node, ready=False, serving=True, terminating=True)


def test_with_no_ready_endpoint_left_the_service_uses_its_serving_terminating_ones():
    text = dump_of(web(endpoints=(_going("10.244.0.2", "node-0"), _going("10.244.1.2", "node-1"))))
    [svc] = chains_named(text, "KUBE-SVC-")
    assert [r.split("-> ")[1].split('"')[0] for r in chain_rules(text, svc)[1:]] == ["10.244.0.2:8080",
                                                                                      "10.244.1.2:8080"]


def test_a_ready_endpoint_keeps_the_terminating_ones_out():
    text = dump_of(web(endpoints=(_going("10.244.0.2", "node-0"), Endpoint("10.244.1.2", "node-1"))))
    assert "10.244.0.2" not in text and len(chains_named(text, "KUBE-SEP-")) == 1


def test_local_policy_falls_back_to_the_nodes_terminating_endpoint_while_others_are_ready():
    text = dump_of(web(type="NodePort", ports=(Port(80, 8080, node_port=30100),), external_traffic_policy="Local",
                       endpoints=(_going("10.244.0.2", "node-0"), Endpoint("10.244.1.2", "node-1"))))
    [svl] = chains_named(text, "KUBE-SVL-")
    [svc] = chains_named(text, "KUBE-SVC-")
    assert "-> 10.244.0.2:8080" in chain_rules(text, svl)[0] and len(chain_rules(text, svl)) == 1
    assert "-> 10.244.1.2:8080" in chain_rules(text, svc)[1] and len(chain_rules(text, svc)) == 2
    assert len(chains_named(text, "KUBE-SEP-")) == 2  # both are reachable from this node


def test_an_endpoint_that_is_not_serving_is_never_used():
    gone = Endpoint("10.244.0.2", "node-0", ready=False, serving=False, terminating=True)
    text = dump_of(web(endpoints=(gone,)))
    assert chains_named(text, "KUBE-SEP-") == [] and "default/web has no endpoints" in table_text(text, "filter")


def test_a_ready_endpoint_cannot_be_terminating_or_not_serving():
    with pytest.raises(ValueError, match="a ready endpoint is serving and not terminating"):
        Endpoint("10.244.0.2", terminating=True)
    with pytest.raises(ValueError, match="a ready endpoint is serving"):
        Endpoint("10.244.0.2", serving=False)


def test_headless_and_external_name_services_write_nothing_and_hold_no_address():
    headless = web(name="headless", cluster_ip="None")
    external = web(name="external", cluster_ip="", type="ExternalName")
    assert dump_of(headless, external) == dump_of()
    assert headless.addresses() == ["10.244.0.2", "10.244.1.2"] and not headless.proxied
    with pytest.raises(ValueError, match="only a ClusterIP Service can be headless"):
        web(cluster_ip="None", type="NodePort", ports=(Port(80, 8080, node_port=30100),))


def test_only_a_local_policy_load_balancer_opens_its_health_check_node_port():
    lb = dict(type="LoadBalancer", ports=(Port(80, 8080, node_port=30100),), load_balancer_ips=("198.18.0.1",),
              health_check_node_port=30101)
    assert chain_rules(table_text(dump_of(web(**lb)), "filter"), "KUBE-NODEPORTS") == []
    assert len(chain_rules(table_text(dump_of(web(external_traffic_policy="Local", **lb)), "filter"),
                           "KUBE-NODEPORTS")) == 1


def test_a_load_balancer_without_node_ports_is_reached_at_its_ingress_ips_only():
    text = dump_of(web(type="LoadBalancer", load_balancer_ips=("198.18.0.1", "198.18.0.2")))
    [ext] = chains_named(text, "KUBE-EXT-")
    assert chain_rules(text, "KUBE-NODEPORTS") == []
    assert [r.split()[3] for r in chain_rules(table_text(text, "nat"), "KUBE-SERVICES") if ext in r] == [
        "198.18.0.1/32", "198.18.0.2/32"]


def test_udp_and_sctp_ports_match_their_protocol():
    text = dump_of(web(ports=(Port(53, 5353, "UDP", "dns"), Port(9, 9, "SCTP", "discard"))))
    assert '-p udp -m comment --comment "default/web:dns cluster IP" -m udp --dport 53' in text
    assert '-p sctp -m comment --comment "default/web:discard" -m sctp -j DNAT --to-destination 10.244.0.2:9' in text


def test_an_affinity_timeout_is_from_one_second_to_a_day():
    assert "--rcheck --seconds 60 --reap" in dump_of(web(session_affinity="ClientIP", affinity_seconds=60))
    with pytest.raises(ValueError, match="timeoutSeconds must be from 1 to 86400"):
        web(session_affinity="ClientIP", affinity_seconds=86401)


def test_the_mix_has_every_kind_and_endpoints_on_and_off_the_node():
    spec = mixed_spec(len(MIX_KINDS), 4, seed=1)
    assert [s.name.rsplit("-", 1)[0] for s in spec.services] == list(MIX_KINDS)
    nodes = [e.node for s in mixed_spec(200, 4, seed=1).services for e in s.endpoints]
    assert nodes.count("node-0") > 0 and len(set(nodes)) >= 3


def test_a_kind_node_has_the_seeds_docker_and_masquerade_agent_chains():
    text = synth_cluster(ClusterSpec((), kind=KindNode(dns_tcp_port=1111, dns_udp_port=2222)))
    assert chains_named(text, "DOCKER_") == ["DOCKER_OUTPUT", "DOCKER_POSTROUTING"]
    assert "-j DNAT --to-destination 127.0.0.11:1111" in text and "--sport 2222 -j SNAT" in text
    assert len(chain_rules(text, "KIND-MASQ-AGENT")) == 2


# -- the tracer on generated dumps ------------------------------------------------------------------------


def test_every_service_traced_in_a_mixed_dump_ends_with_probabilities_adding_up_to_one():
    spec = mixed_spec(60, 3, seed=4)
    dump = parse(synth_cluster(spec))
    node = NodeContext.simple("node-0", "172.20.0.2/16", (Route(IPv4Network("10.244.0.0/16"), "eth0",
                                                                  IPv4("172.20.0.3")),))
    endpoint_counts = []
    for service in spec.services:
        for port in service.ports:
            packets = [Packet(IPv4("10.244.9.9"), IPv4(service.cluster_ip), port.protocol.lower(), 40000, port.port)]
            if port.node_port:
                packets.append(Packet(IPv4("172.20.0.100"), IPv4("172.20.0.2"), "tcp", 40000, port.node_port))
            for packet in packets:
                result = trace(dump, packet, node)
                assert sum((o.probability for o in result.outcomes), Fraction(0)) == 1
                endpoint_counts.append(len({o.endpoint for o in result.outcomes if o.endpoint}))
    assert max(endpoint_counts) == 3 and 0 in endpoint_counts  # spread over all endpoints; some dropped


# -- generated scenarios ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def scenarios(tmp_path_factory) -> dict[str, Scenario]:
    root = tmp_path_factory.mktemp("scenarios")
    for kind in SCENARIO_KINDS:
        write_scenario(kind, root / kind)
    return {kind: load_scenario(root / kind) for kind in SCENARIO_KINDS}


@pytest.mark.parametrize("kind", SCENARIO_KINDS)
def test_a_generated_scenario_is_a_valid_scenario_folder_made_by_a_procedure(scenarios, kind):
    scenario = scenarios[kind]
    assert scenario.meta.provenance.method == "procedure"
    assert scenario.meta.provenance.description == (
        f"Generated by `iptables-lens synth scenario {kind}`, following kube-proxy v1.29's rule layout")
    assert sorted(p.name for p in scenario.folder.iterdir()) == sorted(
        ["scenario.yaml", "service.yaml"] + [d.file for d in scenario.meta.dumps])
    assert len(scenario.dumps) == 4 and len({d.node for d in scenario.meta.dumps}) == 2


@pytest.mark.parametrize("kind", SCENARIO_KINDS)
def test_a_generated_scenarios_after_dumps_add_only_its_services_rules(scenarios, kind):
    scenario = scenarios[kind]
    service = scenario.meta.services[0].key
    for dump in scenario.meta.dumps:
        if dump.moment == "before":
            continue
        after = (scenario.folder / dump.file).read_text().splitlines()
        before = (scenario.folder / dump.file.replace("after", "before")).read_text().splitlines()
        added = [line for line in after if line not in before]
        chains = {line.split()[0][1:] for line in added if line.startswith(":")}
        assert set(before) <= set(after)
        assert added and all(service in line or line.split()[0][1:] in chains
                             or any(f"-j {c}" in line for c in chains) for line in added), added


def test_a_local_policy_node_port_delivers_to_the_nodes_own_endpoint_keeping_the_client_address(scenarios):
    scenario = scenarios["nodeport-local"]
    flow = next(f for f in scenario.meta.flows if f.id == "outside-to-local-endpoint")
    [outcome] = predict(scenario, flow).outcomes
    assert outcome.endpoint == "10.244.1.2:8080" and outcome.verdict == "ACCEPT"
    assert not outcome.masquerade and outcome.snat is None


def test_a_local_policy_node_port_on_a_node_without_local_endpoints_is_dropped(scenarios):
    scenario = scenarios["nodeport-local"]
    flow = next(f for f in scenario.meta.flows if f.id == "outside-to-no-local-endpoint")
    [outcome] = predict(scenario, flow).outcomes
    assert outcome.verdict == "DROP" and outcome.endpoint is None
    assert outcome.delivery == "dropped at filter KUBE-EXTERNAL-SERVICES rule 1"


def test_an_endpoint_calling_its_own_cluster_ip_is_masqueraded_only_when_sent_back_to_itself(scenarios):
    scenario = scenarios["clusterip"]
    flow = next(f for f in scenario.meta.flows if f.id == "endpoint-to-own-service")
    outcomes = {o.endpoint: o for o in predict(scenario, flow).outcomes}
    assert {e: o.probability for e, o in outcomes.items()} == {"10.244.1.2:8080": Fraction(1, 2),
                                                               "10.244.2.2:8080": Fraction(1, 2)}
    assert outcomes["10.244.2.2:8080"].masquerade and not outcomes["10.244.1.2:8080"].masquerade


@pytest.mark.kernel
@pytest.mark.skipif(can_run_kernel_lab() is not None, reason=str(can_run_kernel_lab()))
def test_the_kernel_agrees_with_the_tracer_on_the_generated_scenarios(scenarios):
    results = []
    for kind in SCENARIO_KINDS:
        with Lab(scenarios[kind]) as lab:
            runner = LabRun(lab, connections=60)
            for flow in scenarios[kind].meta.flows:
                results.append(runner.run_flow(flow))
    assert len(results) == 4
    for result in results:
        assert result.ok, (result.flow.id, result.problems, [b.problem for b in result.branches])
    dropped = next(r for r in results if r.flow.id == "outside-to-no-local-endpoint")
    # The kernel dropped it where the tracer says, and every connection timed out.
    assert [b.endpoint for b in dropped.branches] == [None]
    assert dict(dropped.counts) == {"none": dropped.connections}


# -- the command ------------------------------------------------------------------------------------------


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "iptables_lens.cli", *args], capture_output=True, text=True,
                          cwd=REPO_ROOT)


def test_synth_prints_nodeport_services_by_default():
    proc = run("synth", "-n", "3", "--endpoints", "2")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == synth_cluster(nodeport_spec(3, 2))


def test_synth_mix_writes_the_seeded_mix_to_the_output_file_and_nothing_else(tmp_path):
    out = tmp_path / "mix.rules"
    proc = run("synth", "-n", "40", "--endpoints", "2", "--mix", "--seed", "3", "-o", str(out))
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "" and out.read_text() == synth_mixed(40, 2, seed=3)
    assert [p.name for p in tmp_path.iterdir()] == ["mix.rules"]


def test_synth_without_a_count_is_a_usage_error():
    proc = run("synth")
    assert proc.returncode == 2 and "-n is required" in proc.stderr


def test_synth_scenario_writes_a_scenario_folder(tmp_path):
    proc = run("synth", "scenario", "nodeport-local", "-o", str(tmp_path / "local"))
    assert proc.returncode == 0, proc.stderr
    scenario = load_scenario(tmp_path / "local")
    assert len(proc.stdout.splitlines()) == 6 and scenario.meta.services[0].external_traffic_policy == "Local"


def test_an_interrupted_atomic_write_keeps_the_old_file_and_leaves_no_temporary_file(tmp_path):
    out = tmp_path / "dump.rules"
    out.write_text("old\n")
    with pytest.raises(TypeError):
        write_atomically(out, 42)  # type: ignore[arg-type]
    assert out.read_text() == "old\n" and [p.name for p in tmp_path.iterdir()] == ["dump.rules"]
