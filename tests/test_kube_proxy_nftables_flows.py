"""kube-proxy's own nftables packet-flow tests (pkg/proxy/nftables/proxier_test.go), reproduced on the rules they
describe: for each runPacketFlowTests call kept under tests/data/kube-proxy-nftables/flows/ (one file a layout,
whose header names the commit read), the ClusterSpec of the Services and endpoints the test set up is synthesized
in that layout (`kube.synth_nftables`), listed as nft lists it (`kube.nft_listing`), read back, and each packet
traced on the fake proxier's node: it must reach the endpoints the test expects, each with probability 1/N, or
end in DROP or REJECT, or be left alone (""), and be masqueraded exactly when the test says so.

Where kube-proxy's test tracer and the kernel part ways, the kernel's semantics decide: a packet from one of the
node's own addresses ("node to ...") is sent by a local process, so it runs the output chains (filter-output-pre-dnat,
nat-output, filter-output), not the prerouting ones kube-proxy's tracer runs for every packet; and "masq" is the
masquerade nat-postrouting does, which in the main layout includes the hairpin-connections rule. Every flow ends
as the test expects under those semantics, the two masqueradeAll cases of TestInternalExternalMasquerade included
(`ClusterSpec.masquerade_all`). A run the data marks `left_out`, with the reason, is not traced (none is now);
their count is asserted, so a case dropped without a word fails.
"""

from __future__ import annotations

import ipaddress
from collections import defaultdict
from dataclasses import dataclass
from fractions import Fraction
from functools import cache
from pathlib import Path

import pytest
import yaml
from iptables_lens.kube.cluster_spec import ClusterSpec, Endpoint, Port, ServiceSpec
from iptables_lens.kube.nft_listing import synth_listing
from iptables_lens.kube.synth_nftables import LAYOUTS, Layout
from iptables_lens.nft import parse_ruleset
from iptables_lens.trace import Interface, NodeContext, Packet, Route, Trace, Tracer

from tests.test_kube_proxy_conformance import Flow  # one packetFlowTest, as the iptables mode's tests keep it

DATA = Path(__file__).parent / "data" / "kube-proxy-nftables" / "flows"

# What reading the test files gave, for each layout: the test functions that call runPacketFlowTests, their
# packets, how many of those lie in masqueradeAll runs (TestInternalExternalMasquerade's two cases of 27 flows
# each), and how many lie in runs left out.
FUNCTIONS = 10
CASES = 207
MASQUERADE_ALL = 54
LEFT_OUT = 0


@dataclass(frozen=True)
class Run:
    """One runPacketFlowTests call: the node's rules it traces through (as synth's arguments) and its flows."""

    function: str
    case: str | None
    spec: ClusterSpec | None
    options: tuple[tuple[str, tuple[str, ...]], ...]
    flows: tuple[Flow, ...]
    left_out: str | None

    @property
    def label(self) -> str:
        return self.function + (f" / {self.case}" if self.case else "")


@cache
def kept(layout: Layout) -> dict:
    return yaml.safe_load((DATA / f"{layout}.yaml").read_text())


def service(fields: dict) -> ServiceSpec:
    """A Service of the data, whose keys are ServiceSpec's fields."""
    fields = dict(fields)
    fields["ports"] = tuple(Port(**port) for port in fields.get("ports", ()))
    fields["endpoints"] = tuple(Endpoint(**endpoint) for endpoint in fields.get("endpoints", ()))
    for name in ("external_ips", "load_balancer_ips", "load_balancer_source_ranges"):
        fields[name] = tuple(fields.get(name, ()))
    return ServiceSpec(**fields)


def flows_of(run: dict) -> tuple[Flow, ...]:
    overrides = run.get("overrides", {})
    unknown = set(overrides) - {flow["name"] for flow in run["flows"]}
    assert not unknown, f"overrides of no flow: {unknown}"
    return tuple(Flow(flow["name"], flow.get("protocol", "tcp"), flow["source"], flow["destination"], flow["port"],
                      overrides.get(flow["name"], {}).get("output", flow["output"]),
                      overrides.get(flow["name"], {}).get("masq", flow["masq"]))
                 for flow in run["flows"])


def runs(layout: Layout) -> list[Run]:
    data = kept(layout)
    fake = data["fake_proxier"]
    found = []
    for test in data["tests"]:
        for run in test["runs"]:
            family = run.get("family", 4)
            defaults = fake["families"][family]
            spec, options = None, ()
            if "left_out" not in run:
                spec = ClusterSpec(tuple(service(s) for s in run["services"]), node=fake["node"],
                                   node_ip=defaults["node_ip"], pod_cidr=run.get("pod_cidr", defaults["pod_cidr"]),
                                   family=family, masquerade_all=run.get("masquerade_all", False))
                options = (("service_cidrs", tuple(defaults["service_cidrs"])),
                           ("nodeport_addresses", tuple(run.get("nodeport_addresses", defaults["nodeport_addresses"]))))
            found.append(Run(test["function"], run.get("case"), spec, options, flows_of(run), run.get("left_out")))
    return found


def fake_node(layout: Layout) -> NodeContext:
    """NewFakeProxier's network: eth0 with the test's node IPs (testNodeIPs), the loopback, and everything else
    (pods, clients) beyond eth0."""
    eth0 = tuple(ipaddress.ip_interface(address) for address in kept(layout)["fake_proxier"]["eth0"])
    lo = Interface("lo", (ipaddress.IPv4Interface("127.0.0.1/8"), ipaddress.IPv6Interface("::1/128")))
    routes = (Route(ipaddress.IPv4Network("0.0.0.0/0"), "eth0"), Route(ipaddress.IPv6Network("::/0"), "eth0"))
    return NodeContext(kept(layout)["fake_proxier"]["node"], (lo, Interface("eth0", eth0)), routes, eth0[0].ip)


def as_kube_proxy_sees_it(result: Trace) -> tuple[str, frozenset[bool], dict[str, Fraction]]:
    """A trace in the terms of kube-proxy's test: the endpoints reached (sorted, ", "-joined) else DROP or REJECT
    where every way ends so, else ""; whether each way was masqueraded; and each endpoint's probability."""
    shares: dict[str, Fraction] = defaultdict(Fraction)
    for outcome in result.outcomes:
        if outcome.endpoint:
            shares[outcome.endpoint] += outcome.probability
    masq = frozenset(outcome.masquerade for outcome in result.outcomes)
    if shares:
        return ", ".join(sorted(shares)), masq, dict(shares)
    verdicts = {outcome.verdict for outcome in result.outcomes}
    return (verdicts.pop() if verdicts in ({"DROP"}, {"REJECT"}) else ""), masq, {}


def mismatch(flow: Flow, result: Trace) -> str | None:
    """What is wrong with `result` for `flow`, or None."""
    output, masq, shares = as_kube_proxy_sees_it(result)
    expected = ", ".join(sorted(flow.output.split(", "))) if flow.output else ""
    wrong = []
    if output != expected:
        wrong.append(f"ends in {output or 'nothing'}, the test expects {expected or 'nothing'}")
    if masq != {flow.masq}:
        wrong.append(f"masquerade {sorted(masq)}, the test expects {flow.masq}")
    if shares and set(shares.values()) != {Fraction(1, len(shares))}:
        wrong.append(f"endpoints not 1/{len(shares)} each: {shares}")
    return "; ".join(wrong) or None


@pytest.mark.parametrize("layout", LAYOUTS)
def test_every_runpacketflowtests_call_is_kept_or_left_out_with_a_reason(layout: Layout) -> None:
    kept_runs = runs(layout)
    assert len({run.function for run in kept_runs}) == FUNCTIONS
    assert sum(len(run.flows) for run in kept_runs) == CASES
    left_out = [run for run in kept_runs if run.left_out]
    assert sum(len(run.flows) for run in left_out) == LEFT_OUT
    assert sum(len(run.flows) for run in kept_runs if run.spec and run.spec.masquerade_all) == MASQUERADE_ALL
    assert all(run.spec is None and len(run.left_out.split()) > 5 for run in left_out)  # type: ignore[union-attr]


def test_both_commits_expect_the_same_flows_of_services_whose_endpoints_differ_only_in_their_nodes() -> None:
    old, new = (runs(layout) for layout in LAYOUTS)
    assert [(r.label, r.flows, r.left_out) for r in old] == [(r.label, r.flows, r.left_out) for r in new]

    def without_nodes(run: Run) -> object:
        if run.spec is None:
            return None
        return [(s.key, s.ports, [e.address for e in s.endpoints]) for s in run.spec.services]

    assert [without_nodes(r) for r in old] == [without_nodes(r) for r in new]
    assert old != new  # main's tests put endpoints on nodes where v1.34's left NodeName out


@pytest.mark.parametrize("layout", LAYOUTS)
def test_the_fake_nodes_addresses_are_local_and_kube_proxys_node_ip_among_them(layout: Layout) -> None:
    node = fake_node(layout)
    for defaults in kept(layout)["fake_proxier"]["families"].values():
        assert node.is_local(ipaddress.ip_address(defaults["node_ip"]))
    assert not node.is_local(ipaddress.ip_address("203.0.113.2"))


def listed_ruleset(layout: Layout, run: Run):
    assert run.spec is not None
    return parse_ruleset(synth_listing(run.spec, layout, **dict(run.options)), f"{layout}: {run.label}")


@pytest.mark.parametrize("layout", LAYOUTS)
def test_every_traced_run_has_rules(layout: Layout) -> None:
    for run in runs(layout):
        if run.spec is not None:
            assert listed_ruleset(layout, run).summary()[2] > 20, run.label


FUNCTION_NAMES = sorted({run.function for run in runs(LAYOUTS[0])})


@pytest.mark.parametrize("function", FUNCTION_NAMES)
@pytest.mark.parametrize("layout", LAYOUTS)
def test_every_packet_ends_as_kube_proxys_test_expects(layout: Layout, function: str) -> None:
    node = fake_node(layout)
    wrong, traced = [], 0
    for run in runs(layout):
        if run.function != function or run.spec is None:
            continue
        tracer = Tracer(listed_ruleset(layout, run), node)
        for flow in run.flows:
            packet = Packet(ipaddress.ip_address(flow.source), ipaddress.ip_address(flow.destination), flow.protocol,
                            dport=flow.port)
            origin = "local" if node.is_local(packet.src) else "external"
            problem = mismatch(flow, tracer.trace(packet, origin))
            traced += 1
            if problem:
                wrong.append(f"{run.label} / {flow.name} ({flow.source} -> {flow.destination}:{flow.port}): {problem}")
    assert traced > 0
    assert wrong == []
