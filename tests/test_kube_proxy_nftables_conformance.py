"""`kube.synth_nftables` against kube-proxy's own nftables unit tests, rule for rule, and against nft.

Each file `tests/data/kube-proxy-nftables/<Test>.<layout>.nft` is the expected transaction of one of kube-proxy's
tests (its header names the commit and the test's setup). The spec built here holds the test's Services,
endpoints and node; synth's transaction must equal the expectation compared as `assertNFTablesTransactionEqual`
compares (helpers_test.go: blank and `#` lines dropped, lines sorted by object type, then object name, rules
keeping their order, other lines sorted whole).

Deliberate differences between a kube-proxy test's setup and the spec that reproduces it:

- svc4 is `Type: NodePort` with no node port in kube-proxy's test; a `ServiceSpec` of type NodePort needs one,
  so svc4 is a ClusterIP Service with its external IP, which kube-proxy writes the same way (a node port of 0
  writes no `service-nodeports` element, and the external IP makes the port externally accessible).
- svc2's and svc5's health check node port (30000) is not given: the nftables proxier writes no rule for it
  (the health check server listens on it).
- svc5's source range is " 203.0.113.0/25" with a leading space (kube-proxy's regression test for
  whitespace); the spec holds it the same and synth strips it, as kube-proxy's ServiceChangeTracker does.
- The Service CIDR (172.30.0.0/16) and the NodePort addresses (192.168.0.2/32) are arguments of
  `synth_nftables`, since a `ClusterSpec` has no field for them.
"""

from __future__ import annotations

import re
from dataclasses import replace
from pathlib import Path

import pytest
from iptables_lens.kube.cluster_spec import ClusterSpec, Endpoint, Port, ServiceSpec, nodeport_spec
from iptables_lens.kube.dual_stack import ipv6_cluster
from iptables_lens.kube.names import nft_name_base as name_base
from iptables_lens.kube.synth_nftables import LAYOUTS, Layout, synth_nftables
from iptables_lens.netns import Namespace, can_run_kernel_lab

DATA = Path(__file__).parent / "data" / "kube-proxy-nftables"
LISTINGS = DATA / "listings"
TEST_NODE = "test-node"
TEST_ARGS = {"service_cidrs": ("172.30.0.0/16",), "nodeport_addresses": ("192.168.0.2",)}

# helpers_test.go's objectOrder: higher sorts earlier.
OBJECT_ORDER = {"table": 10, "chain": 9, "rule": 8, "set": 7, "map": 6, "element": 5}


def sort_transaction(text: str) -> list[str]:
    """sortNFTablesTransaction: drop blank and `#` lines, sort by object type, then name; rules keep their
    order, other lines of one object sort whole."""
    lines = [line for line in text.splitlines() if line and not line.startswith("#")]

    def key(line: str) -> tuple[int, str, str]:
        words = line.split(" ")
        kind = words[1]
        return (-OBJECT_ORDER.get(kind, 0), words[4], "" if kind == "rule" else line)

    return sorted(lines, key=key)


def dump_order(text: str) -> str:
    """A transaction's lines in the order knftables' `Fake.Dump()` writes them (objects, then rules, then
    elements), which `nft -f` needs: a rule may name a chain or set only after its `add`."""
    order = ["table", "chain", "set", "map", "rule", "element"]
    lines = [line for line in text.splitlines() if line and not line.startswith("#")]
    return "\n".join(sorted(lines, key=lambda line: order.index(line.split(" ")[1]))) + "\n"


def expectation(test: str, layout: Layout) -> str:
    return (DATA / f"{test}.{layout}.nft").read_text()


def overall_spec(layout: Layout) -> ClusterSpec:
    """TestOverallNFTablesRules' Services and endpoints; the later test puts the endpoints on nodes."""
    later = layout != "v1.34"
    here, elsewhere = TEST_NODE, "other-node" if later else ""

    def ep(address: str, node: str) -> tuple[Endpoint, ...]:
        return (Endpoint(address, node if later else ""),)

    p80 = Port(80, 80, name="p80")
    return ClusterSpec((
        ServiceSpec("ns1", "svc1", "172.30.0.41", ports=(p80,), endpoints=ep("10.180.0.1", here)),
        ServiceSpec("ns2", "svc2", "172.30.0.42", type="LoadBalancer", external_traffic_policy="Local",
                    ports=(replace(p80, node_port=3001),), load_balancer_ips=("1.2.3.4",),
                    external_ips=("192.168.99.22",), endpoints=ep("10.180.0.2", elsewhere)),
        ServiceSpec("ns3", "svc3", "172.30.0.43", type="NodePort", ports=(replace(p80, node_port=3003),),
                    endpoints=ep("10.180.0.3", here)),
        ServiceSpec("ns4", "svc4", "172.30.0.44", external_ips=("192.168.99.33",), ports=(p80,),
                    endpoints=(Endpoint("10.180.0.4", elsewhere), Endpoint("10.180.0.5", TEST_NODE))),
        ServiceSpec("ns5", "svc5", "172.30.0.45", type="LoadBalancer", ports=(replace(p80, node_port=3002),),
                    load_balancer_ips=("5.6.7.8",), load_balancer_source_ranges=(" 203.0.113.0/25",),
                    session_affinity="ClientIP", affinity_seconds=10800, endpoints=ep("10.180.0.3", here)),
        ServiceSpec("ns6", "svc6", "172.30.0.46", ports=(p80,)),
    ), node=TEST_NODE, node_ip="192.168.0.2", pod_cidr="10.0.0.0/8")


@pytest.mark.parametrize("layout", LAYOUTS)
def test_overall_rules_equal_kube_proxys_expectation(layout: Layout) -> None:
    ours = synth_nftables(overall_spec(layout), layout=layout, **TEST_ARGS)
    assert sort_transaction(ours) == sort_transaction(expectation("TestOverallNFTablesRules", layout))


def test_the_comparison_keeps_the_order_of_a_chains_rules() -> None:
    text = expectation("TestOverallNFTablesRules", "v1.34")
    swapped = text.replace("add rule ip kube-proxy masquerading mark set mark xor 0x4000\n", "")
    swapped += "add rule ip kube-proxy masquerading mark set mark xor 0x4000\n"
    assert sort_transaction(swapped) != sort_transaction(text)


def test_the_layouts_differ_where_the_sources_say() -> None:
    old, new = (synth_nftables(overall_spec(layout), layout=layout, **TEST_ARGS) for layout in LAYOUTS)
    assert "mark-for-masquerade" in old and "mark-for-masquerade" not in new
    assert "hairpin-connections" in new and "hairpin-connections" not in old
    assert "endpoint-5OJB2KTY-ns1/svc1/tcp/p80__10.180.0.1/80" in old
    assert "endpoint-5OJB2KTY" not in new  # svc1 has no affinity: no endpoint chain any more


def test_chain_names_hash_the_name_after_the_dash() -> None:
    assert name_base("ns1/svc1/tcp/p80") == "ULMVA6XW-ns1/svc1/tcp/p80"
    assert name_base("ns5/svc5/tcp/p80__10.180.0.3/80") == "GTK6MW7G-ns5/svc5/tcp/p80__10.180.0.3/80"


def test_ipv6_spec_writes_ip6_words_and_dotted_endpoint_names() -> None:
    web = ServiceSpec("default", "web", "fd00:10:96::50", ports=(Port(80, 8080),),
                      endpoints=(Endpoint("fd00:10:244:1::2", "node-0"),), session_affinity="ClientIP")
    dump = synth_nftables(ClusterSpec((web,), node_ip="fc00::2", pod_cidr="fd00:10:244::/56", family=6))
    assert dump.startswith('add table ip6 kube-proxy { comment "rules for kube-proxy" ; }\n')
    assert "endpoint-" + name_base("default/web/tcp/__fd00.10.244.1..2/8080") in dump
    assert "dnat to [fd00:10:244:1::2]:8080" in dump
    assert "ip6 saddr != fd00:10:244::/56 jump mark-for-masquerade" in dump
    assert re.search(r"^add element ip6 kube-proxy nodeport-ips \{ fc00::2 \}$", dump, re.M)


kernel = pytest.mark.kernel
needs_lab = pytest.mark.skipif(can_run_kernel_lab() is not None, reason=str(can_run_kernel_lab()))


def mixed_cluster() -> ClusterSpec:
    """Every Service kind a ClusterSpec expresses, UDP and SCTP, several ports, both policies."""
    eps = (Endpoint("10.244.1.2", "node-0"), Endpoint("10.244.2.2", "node-1"))
    return ClusterSpec((
        ServiceSpec("default", "web", "10.96.0.50", ports=(Port(80, 8080, name="http"), Port(53, 5353, "UDP", "dns"),
                                                            Port(9, 9, "SCTP", "sctp")), endpoints=eps),
        ServiceSpec("default", "local", "10.96.0.51", type="NodePort", external_traffic_policy="Local",
                    internal_traffic_policy="Local", ports=(Port(80, 8080, node_port=30080),), endpoints=eps),
        ServiceSpec("default", "lb", "10.96.0.52", type="LoadBalancer", ports=(Port(443, 8443, node_port=30443),),
                    load_balancer_ips=("198.18.0.1",), load_balancer_source_ranges=("172.20.0.0/16",),
                    session_affinity="ClientIP", endpoints=eps),
        ServiceSpec("default", "empty", "10.96.0.53", type="NodePort", external_ips=("192.0.2.7",),
                    ports=(Port(80, 80, node_port=30081),)),
    ))


def load(text: str) -> tuple[str, str]:
    """`nft -f` of a transaction in a fresh namespace; `nft list ruleset` there (empty when it failed)."""
    with Namespace("nftsynth") as ns:
        loaded = ns.run(["nft", "-f", "-"], input=text)
        assert loaded.ok, loaded.stderr
        return loaded.stderr, ns.run(["nft", "list", "ruleset"]).stdout


@kernel
@needs_lab
@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("family", [4, 6])
def test_nft_loads_every_layout_and_lists_it_back(layout: Layout, family: int) -> None:
    spec = mixed_cluster()
    spec = ipv6_cluster(spec) if family == 6 else spec
    dump = synth_nftables(spec, layout=layout)
    _, listing = load(dump)
    table = "ip" if family == 4 else "ip6"
    assert listing.startswith(f"table {table} kube-proxy {{\n")
    for chain in re.findall(r"^add chain \S+ kube-proxy (\S+)", dump, re.M):
        assert f"\tchain {chain} {{\n" in listing


@kernel
@needs_lab
@pytest.mark.parametrize("layout", LAYOUTS)
def test_nft_loads_kube_proxys_own_expectation(layout: Layout) -> None:
    _, listing = load(dump_order(expectation("TestOverallNFTablesRules", layout)))
    assert "chain service-ULMVA6XW-ns1/svc1/tcp/p80 {" in listing


@kernel
@needs_lab
@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("name", ["TestOverallNFTablesRules", "mixed-ipv6"])
def test_listing_fixtures_are_what_nft_prints(layout: Layout, name: str) -> None:
    """The fixtures under listings/ are nft 1.0.6's listing of kube-proxy's test cluster (IPv4) and of
    `mixed_cluster` on IPv6, in each layout: kept for the nft listing parser."""
    if name == "mixed-ipv6":
        dump = synth_nftables(ipv6_cluster(mixed_cluster()), layout=layout)
    else:
        dump = synth_nftables(overall_spec(layout), layout=layout, **TEST_ARGS)
    _, listing = load(dump)
    assert listing == (LISTINGS / f"{name}.{layout}.nft").read_text()


def test_nodeport_bench_cluster_has_one_element_per_node_port() -> None:
    dump = synth_nftables(nodeport_spec(20, 3))
    assert len(re.findall(r"^add element ip kube-proxy service-nodeports ", dump, re.M)) == 20


def test_cli_synth_mode_nftables_prints_the_layouts_transaction() -> None:
    from click.testing import CliRunner
    from iptables_lens.cli import main

    result = CliRunner().invoke(main, ["synth", "-n", "3", "--endpoints", "2", "--mode", "nftables",
                                       "--layout", "main-edca563"])
    assert result.exit_code == 0, result.output
    assert result.output == synth_nftables(nodeport_spec(3, 2), layout="main-edca563")


def test_terminating_endpoints_serve_only_when_no_endpoint_is_ready() -> None:
    web = ServiceSpec("default", "web", "10.96.0.50", ports=(Port(80, 8080),),
                      endpoints=(Endpoint("10.244.1.2", ready=False, serving=True, terminating=True),
                                 Endpoint("10.244.1.3", ready=False, serving=False, terminating=True)))
    dump = synth_nftables(ClusterSpec((web,)), layout="main-edca563")
    assert "map { 0 : 10.244.1.2 . 8080 }" in dump
    gone = replace(web, endpoints=web.endpoints[1:])
    assert 'comment "default/web" : goto reject-chain' in synth_nftables(ClusterSpec((gone,)))
