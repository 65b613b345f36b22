"""`kube.nft_listing`: synth's nftables transaction as `nft list ruleset` prints it, against nft in the kernel
(loading `synth_nftables`' transaction with `nft -f` and listing it) and against the listings kept under
tests/data/kube-proxy-nftables/listings/, which nft 1.0.6 printed.

nft sorts a named set's elements when it lists them (not in hash order): the listing and nft's text are
compared byte for byte, and their readings as models (which ignore lines) must be equal too.
"""

from __future__ import annotations

import pytest
from iptables_lens.kube.cluster_spec import POD_CIDR, ClusterSpec, Endpoint, Port, ServiceSpec
from iptables_lens.kube.dual_stack import ipv6_cluster, ipv6_twin
from iptables_lens.kube.nft_listing import listed_rule, nft_listing, synth_listing
from iptables_lens.kube.synth import mixed_spec, nodeport_spec
from iptables_lens.kube.synth_nftables import (
    LAYOUTS,
    Layout,
    service_port_base,
    synth_nftables,
    synth_transaction,
)
from iptables_lens.netns import Namespace, can_run_kernel_lab
from iptables_lens.nft import parse_ruleset

from tests.test_kube_proxy_nftables_conformance import LISTINGS, TEST_ARGS, mixed_cluster, overall_spec


def fixture_spec(name: str, layout: Layout) -> tuple[ClusterSpec, dict]:
    """The spec and synth arguments each fixture under listings/ was listed from (as the conformance test makes
    them)."""
    if name == "mixed-ipv6":
        return ipv6_cluster(mixed_cluster()), {}
    return overall_spec(layout), TEST_ARGS


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("name", ["TestOverallNFTablesRules", "mixed-ipv6"])
def test_the_listing_is_what_nft_printed_for_the_fixtures(layout: Layout, name: str) -> None:
    spec, options = fixture_spec(name, layout)
    ours = synth_listing(spec, layout, **options)
    printed = (LISTINGS / f"{name}.{layout}.nft").read_text()
    assert parse_ruleset(ours).tables == parse_ruleset(printed).tables
    assert ours == printed


def test_synth_listing_lists_the_transaction_synth_writes() -> None:
    spec = mixed_spec(20, 2)
    assert synth_listing(spec, "main-edca563") == nft_listing(synth_transaction(spec, "main-edca563"))
    assert synth_transaction(spec).dump() == synth_nftables(spec)


def test_elements_are_listed_in_nfts_order_not_the_order_they_were_added() -> None:
    # list_expr_sort: a single value by its number, a concatenation by its bytes read little-endian (port first).
    services = tuple(ServiceSpec("ns", f"s{i}", ip, ports=(Port(port, 80),), endpoints=(Endpoint("10.244.1.2"),))
                     for i, (ip, port) in enumerate((("10.96.0.9", 80), ("10.96.0.10", 443), ("10.96.1.2", 53))))
    listing = synth_listing(ClusterSpec(services), service_cidrs=())
    assert "elements = { 10.96.0.9, 10.96.0.10,\n\t\t\t     10.96.1.2 }" in listing
    chains = [f"service-{service_port_base(s, s.ports[0])}" for s in services]
    assert (f"elements = {{ 10.96.1.2 . tcp . 53 : goto {chains[2]},\n"
            f"\t\t\t     10.96.0.9 . tcp . 80 : goto {chains[0]},\n"
            f"\t\t\t     10.96.0.10 . tcp . 443 : goto {chains[1]} }}") in listing


@pytest.mark.parametrize(("rule", "listed"), [
    ("ip saddr != { 203.0.113.0/25 } drop", "ip saddr != 203.0.113.0/25 drop"),
    ("ip saddr != { 10.0.0.128/25, 10.0.0.0/25, 1.2.3.5, 1.2.3.4 } drop", "ip saddr != { 1.2.3.4/31, 10.0.0.0/24 } drop"),
    ("ip saddr != { 10.0.1.0/24, 10.0.1.7 } drop", "ip saddr != { 10.0.1.0/24 } drop"),
    ("ip saddr != { 10.0.0.0/25, 10.0.0.128/26 } drop", "ip saddr != { 10.0.0.0-10.0.0.191 } drop"),
    ("ip6 saddr != { fd00::/64, 2001:db8::1 } drop", "ip6 saddr != { 2001:db8::1, fd00::/64 } drop"),
    ("mark and 0x4000 == 0 return", "meta mark & 0x00004000 == 0x00000000 return"),
    ('fib saddr type local mark set mark or 0x4000 comment "masquerade {local} mark and"',
     'fib saddr type local meta mark set meta mark | 0x00004000 comment "masquerade {local} mark and"'),
    ("update @affinity-X { ip saddr }", "update @affinity-X { ip saddr }"),
    ("meta l4proto tcp dnat ip6 addr . port to numgen random mod 2 map { 0 : fd00::1 . 80 , 1 : fd00::2 . 80 }",
     "meta l4proto tcp dnat ip6 to numgen random mod 2 map { 0 : fd00::1 . 80, 1 : fd00::2 . 80 }"),
])
def test_a_rule_is_listed_in_nfts_printed_form(rule: str, listed: str) -> None:
    assert listed_rule(rule) == listed


def test_the_cli_prints_the_listing_with_listing() -> None:
    from click.testing import CliRunner
    from iptables_lens.cli import main

    result = CliRunner().invoke(main, ["synth", "-n", "3", "--endpoints", "2", "--mode", "nftables", "--listing"])
    assert result.exit_code == 0, result.output
    assert result.output == synth_listing(nodeport_spec(3, 2))
    refused = CliRunner().invoke(main, ["synth", "-n", "3", "--listing"])
    assert refused.exit_code != 0 and "--mode nftables" in refused.output


# -- against nft in the kernel ------------------------------------------------------------------------------


# The source ranges' IPv6 twins, which kube.dual_stack does not give (it twins whole ranges only).
RANGES_V6 = {"203.0.113.0/25": "2001:db8:0:113::/65", "203.0.113.128/25": "2001:db8:0:113:8000::/65",
             "198.51.100.0/25": "2001:db8:0:100::/65", "198.51.100.128/26": "2001:db8:0:100:8000::/66",
             "192.0.2.0/24": "2001:db8:0:2::/64"}


def firewalled_cluster(family: int = 4) -> ClusterSpec:
    """Source ranges nft merges (two halves of a range, and a /26 next to a /25, which is no prefix), one holding
    the node's IP (the LB IP is then allowed too), a Local Service without local endpoints, one with no
    endpoints at all, and an affinity Service with a short timeout; on IPv6, each address's twin."""
    def a(text: str) -> str:
        return text if family == 4 else RANGES_V6.get(text) or ipv6_twin(text)

    eps = tuple(Endpoint(a(ip), node) for ip, node in (("10.244.1.2", "node-0"), ("10.244.2.2", "node-1"),
                                                       ("10.244.2.3", "node-1")))
    return ClusterSpec((
        ServiceSpec("fw", "merged", a("10.96.0.60"), type="LoadBalancer", ports=(Port(80, 8080, node_port=30060),),
                    load_balancer_ips=(a("198.18.0.9"),), endpoints=eps,
                    load_balancer_source_ranges=tuple(map(a, ("203.0.113.0/25", "203.0.113.128/25", "198.51.100.0/25",
                                                              "198.51.100.128/26", "172.20.0.0/16")))),
        ServiceSpec("fw", "local-away", a("10.96.0.61"), type="LoadBalancer", external_traffic_policy="Local",
                    ports=(Port(443, 8443, node_port=30061),), load_balancer_ips=(a("198.18.0.10"),),
                    load_balancer_source_ranges=(a("192.0.2.0/24"),), endpoints=eps[1:]),
        ServiceSpec("fw", "nothing", a("10.96.0.62"), type="NodePort", ports=(Port(80, 80, node_port=30062),)),
        ServiceSpec("fw", "sticky", a("10.96.0.63"), session_affinity="ClientIP", affinity_seconds=90,
                    ports=(Port(53, 5353, "UDP", "dns"), Port(53, 5353, "TCP", "dns-tcp")), endpoints=eps),
    ), node_ip=a("172.20.0.2"), pod_cidr=a(POD_CIDR), family=6 if family == 6 else 4)


def many_endpoints() -> ClusterSpec:
    """Twelve endpoints a Service: numgen maps past ten elements."""
    return nodeport_spec(3, 12)


# name -> (the spec, synth's arguments, the families it is listed in)
CLUSTERS = {
    "mixed": (mixed_cluster, {}, (4, 6)),
    "mix-of-every-kind": (lambda: mixed_spec(40, 3, seed=7), {}, (4, 6)),
    "firewalled": (firewalled_cluster, {}, (4,)),
    "firewalled-ipv6": (lambda: firewalled_cluster(6), {}, (6,)),
    "many-endpoints": (many_endpoints, {}, (4, 6)),
    "every-local-address": (mixed_cluster, {"every_local_address": True}, (4, 6)),
    "kube-proxy-test": (lambda: overall_spec("v1.34"), TEST_ARGS, (4,)),
}
CASES = [(name, family) for name, (_, _, families) in sorted(CLUSTERS.items()) for family in families]

kernel = pytest.mark.kernel
needs_lab = pytest.mark.skipif(can_run_kernel_lab() is not None, reason=str(can_run_kernel_lab()))


def nft_lists(transaction: str) -> str:
    """`nft list ruleset` in a fresh namespace after `nft -f` of `transaction`."""
    with Namespace("nftlisting") as ns:
        loaded = ns.run(["nft", "-f", "-"], input=transaction)
        assert loaded.ok, loaded.stderr
        return ns.run(["nft", "list", "ruleset"]).stdout


@kernel
@needs_lab
@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize(("cluster", "family"), CASES, ids=[f"{name}-ipv{family}" for name, family in CASES])
def test_the_listing_is_what_nft_lists(cluster: str, family: int, layout: Layout) -> None:
    make, options, _ = CLUSTERS[cluster]
    spec = make()
    spec = ipv6_cluster(spec) if family == 6 and spec.family == 4 else spec
    printed = nft_lists(synth_nftables(spec, layout, **options))
    ours = synth_listing(spec, layout, **options)
    assert parse_ruleset(ours).tables == parse_ruleset(printed).tables
    assert ours == printed
