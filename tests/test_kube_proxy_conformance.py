"""synth against kube-proxy's own unit tests, feature by feature: the same Services, endpoints and node as a test of
kube-proxy's pkg/proxy/iptables/proxier_test.go, and what that test expects (`tests/data/kube-proxy/`, each file
naming its source and commit).

Two kinds of expectation, as kube-proxy's tests have them:

- An expected iptables-restore text (TestOverallIPTablesRules): the kernel loads it in a namespace and saves it
  back, which gives iptables-save's form, and its rules must equal synth's, rule for rule, but for the deliberate
  differences in `DIFFERENCES`, each with its reason. Each feature compares the rules of its Services (kube-proxy's
  comments and chain owners tell them, `ServiceIndex`); `whole-dump` compares every KUBE-* rule. (The IPv6
  expectation of TestEnableLocalhostNodePortsIPv6, externalTrafficPolicy Local with a local endpoint, is held the
  same way in `test_kube_synth_ipv6`.)
- Packet flows (most feature tests since kube-proxy v1.26): each packet of the test, traced through synth's dump
  by the tracer on the fake proxier's node, must end where the test says (the endpoints reached, ACCEPT, DROP,
  REJECT or untouched) and be masqueraded when it says so.

Headless and ExternalName Services are not in kube-proxy's Service map at all (TestBuildServiceMapServiceHeadless,
TestBuildServiceMapServiceTypeExternalName): synth writes the same dump with them as without them.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from typing import Literal

import pytest
from iptables_lens import parse
from iptables_lens.kube import ServiceIndex
from iptables_lens.kube.cluster_spec import HEADLESS, ClusterSpec, Endpoint, Port, ServiceSpec
from iptables_lens.kube.synth import synth_cluster
from iptables_lens.netns import Namespace, can_run_kernel_lab
from iptables_lens.trace import Interface, IPv4, NodeContext, Packet, Route, Trace, Tracer

from tests.conftest import REPO_ROOT

KUBE_PROXY = REPO_ROOT / "tests" / "data" / "kube-proxy"

# NewFakeProxier: its node, node IPs and local traffic detector.
TEST_NODE = "test-hostname"
TEST_NODE_IPS = ("192.168.0.2", "192.168.1.2", "192.168.99.11")
FAKE_POD_CIDR = "10.0.0.0/8"


def fake_node(*services: ServiceSpec, pod_cidr: str | None = FAKE_POD_CIDR, masquerade_all: bool = False) -> ClusterSpec:
    """The fake proxier's node with `services`: kube-proxy's nodeIP is the first of its addresses;
    `masquerade_all` is the test's fp.masqueradeAll."""
    return ClusterSpec(services, node=TEST_NODE, node_ip=TEST_NODE_IPS[0], pod_cidr=pod_cidr,
                       masquerade_all=masquerade_all)


def fake_node_context() -> NodeContext:
    """What the tracer needs of the fake proxier's node: its addresses (testNodeIPs) and the loopback; pods and
    the outside world lie beyond eth0."""
    eth0 = tuple(ipaddress.IPv4Interface(f"{address}/24") for address in TEST_NODE_IPS)
    interfaces = (Interface("lo", (ipaddress.IPv4Interface("127.0.0.1/8"),)), Interface("eth0", eth0))
    return NodeContext(TEST_NODE, interfaces, (Route(ipaddress.IPv4Network("0.0.0.0/0"), "eth0"),),
                       IPv4(TEST_NODE_IPS[0]))


def p80(node_port: int | None = None) -> Port:
    return Port(80, 80, name="p80", node_port=node_port)


# -- TestOverallIPTablesRules ------------------------------------------------------------------------------


def overall_services() -> tuple[ServiceSpec, ...]:
    """The six Services of TestOverallIPTablesRules, in the order its expectation sorts them (by name)."""
    return (
        ServiceSpec("ns1", "svc1", "172.30.0.41", ports=(p80(),), endpoints=(Endpoint("10.180.0.1"),)),
        ServiceSpec("ns2", "svc2", "172.30.0.42", type="LoadBalancer", external_traffic_policy="Local",
                    ports=(p80(3001),), load_balancer_ips=("1.2.3.4",), external_ips=("192.168.99.22",),
                    health_check_node_port=30000, endpoints=(Endpoint("10.180.0.2"),)),
        ServiceSpec("ns3", "svc3", "172.30.0.43", type="NodePort", ports=(p80(3003),),
                    endpoints=(Endpoint("10.180.0.3"),)),
        # The test's svc4 is a NodePort Service whose port has no node port, which only a fake holds (the API
        # server always allocates one); no rule depends on the type, so a ClusterIP Service with the external IP
        # gets the same rules.
        ServiceSpec("ns4", "svc4", "172.30.0.44", ports=(p80(),), external_ips=("192.168.99.33",),
                    endpoints=(Endpoint("10.180.0.4"), Endpoint("10.180.0.5", TEST_NODE))),
        # " 203.0.113.0/25" in the test: kube-proxy trims the blank.
        ServiceSpec("ns5", "svc5", "172.30.0.45", type="LoadBalancer", ports=(p80(3002),),
                    load_balancer_ips=("5.6.7.8",), health_check_node_port=30000,
                    load_balancer_source_ranges=("203.0.113.0/25",), session_affinity="ClientIP",
                    affinity_seconds=10800, endpoints=(Endpoint("10.180.0.3"),)),
        ServiceSpec("ns6", "svc6", "172.30.0.46", ports=(p80(),)),
    )


@dataclass(frozen=True)
class Difference:
    """A deliberate difference between kube-proxy's expectation and synth: an edit of one side's rules, with why."""

    side: Literal["kube-proxy", "synth"]
    pattern: str
    replacement: str
    reason: str

    def apply(self, text: str) -> str:
        """`text` with the edit made on every line; a rule the edit empties is gone."""
        lines = (re.sub(self.pattern, self.replacement, line) for line in text.splitlines())
        return "\n".join(line for line in lines if line) + "\n"

    def applies_to(self, text: str) -> bool:
        return any(re.search(self.pattern, line) for line in text.splitlines())


DIFFERENCES = (
    Difference("synth", r" --random-fully$", "",
               "kube-proxy's fake iptables (NewFake) has no --random-fully; kind's iptables has it, and kube-proxy "
               "then adds it to its MASQUERADE rule"),
)


def edited(text: str, side: Literal["kube-proxy", "synth"]) -> str:
    for difference in DIFFERENCES:
        if difference.side == side:
            text = difference.apply(text)
    return text


# Feature -> the Services of TestOverallIPTablesRules whose rules show it ("" for every rule).
OVERALL_FEATURES = {
    "whole-dump": ("",),
    "clusterip-named-port": ("ns1/svc1",),
    "nodeport": ("ns3/svc3",),
    "loadbalancer-ingress-ip": ("ns2/svc2", "ns5/svc5"),
    "loadbalancer-source-ranges": ("ns5/svc5",),
    "external-ips": ("ns2/svc2", "ns4/svc4"),
    "session-affinity-timeout": ("ns5/svc5",),
    "external-traffic-policy-local-without-local-endpoints": ("ns2/svc2",),
    "no-endpoints-reject": ("ns6/svc6",),
}

RESTORE = {"nft": "iptables-nft-restore", "legacy": "iptables-legacy-restore"}
SAVE = {"nft": "iptables-nft-save", "legacy": "iptables-legacy-save"}
NO_KERNEL = can_run_kernel_lab()


@cache
def kernel_saved(expectation: str, variant: str) -> str:
    """The kernel's iptables-save text for a kept expectation, after the kube-proxy side's differences."""
    text = edited((KUBE_PROXY / f"{expectation}.restore").read_text(), "kube-proxy")
    with Namespace("kpconf") as namespace:
        loaded = namespace.restore(text, variant)
        assert loaded.ok, loaded.stderr
        saved = namespace.run([SAVE[variant]])
    assert saved.ok, saved.stderr
    return saved.stdout


def service_rules(text: str, services: tuple[str, ...]) -> dict[str, list[str]]:
    """Table -> the KUBE-* rules of `text` that serve one of `services` ("" for all), in order."""
    dump = parse(text)
    index = ServiceIndex.of(dump)
    found: dict[str, list[str]] = {}
    for table in dump.tables:
        if table.name not in ("filter", "nat"):
            continue
        found[table.name] = [
            rule.text for rule in table.rules if rule.chain.startswith("KUBE-")
            and any((index.service_of(rule) or "").startswith(s) for s in services)]
    return found


@pytest.mark.parametrize("variant", sorted(RESTORE))
@pytest.mark.parametrize("feature", list(OVERALL_FEATURES))
@pytest.mark.kernel
@pytest.mark.skipif(NO_KERNEL is not None, reason=str(NO_KERNEL))
def test_the_rules_equal_kube_proxys_expected_text(feature, variant):
    services = OVERALL_FEATURES[feature]
    theirs = service_rules(kernel_saved("TestOverallIPTablesRules", variant), services)
    ours = service_rules(edited(synth_cluster(fake_node(*overall_services())), "synth"), services)
    assert ours == theirs
    assert any(theirs.values()), "the feature's Services have rules in kube-proxy's expectation"


def test_every_deliberate_difference_edits_a_rule():
    # A difference that edits nothing is stale, and could hide a later change on its side.
    expectation = (KUBE_PROXY / "TestOverallIPTablesRules.restore").read_text()
    ours = synth_cluster(fake_node(*overall_services()))
    for difference in DIFFERENCES:
        assert difference.applies_to(expectation if difference.side == "kube-proxy" else ours), difference.reason


def test_the_kept_expectation_is_kube_proxys_text_for_the_six_services():
    text = (KUBE_PROXY / "TestOverallIPTablesRules.restore").read_text()
    rules = [line for line in text.splitlines() if line.startswith("-A ")]
    assert len(rules) == 62 and text.count("COMMIT") == 2
    # kube-proxy v1.29 counts nothing with nfacct (kubernetes#122812 and #125015 came later), nor does this copy's
    # fake proxier.
    assert not [rule for rule in rules if "-m nfacct" in rule]
    assert {m for m in re.findall(r"ns\d/svc\d", text)} == {f"ns{i}/svc{i}" for i in range(1, 7)}


# -- packet flows ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Flow:
    """One packetFlowTest: a packet and what kube-proxy's test expects of it."""

    name: str
    protocol: str
    source: str
    destination: str
    port: int
    output: str
    masq: bool


def kept_flows(test: str) -> dict[str, list[Flow]]:
    """Case -> its flows, from `tests/data/kube-proxy/TEST.flows` (see its header for the format)."""
    cases: dict[str, list[Flow]] = {}
    for line in (KUBE_PROXY / f"{test}.flows").read_text().splitlines():
        if line.startswith("#"):
            continue
        case, name, protocol, source, target, output, masq = (field.strip() for field in line.split(" | "))
        destination, port = target.rsplit(":", 1)
        cases.setdefault(case, []).append(Flow(name, protocol, source, destination, int(port), output,
                                               masq == "true"))
    return cases


# The filter chains kube-proxy's test tracer runs; a packet one of them ACCEPTs ends in "ACCEPT".
_TRACED_FILTER_CHAINS = {"KUBE-SERVICES", "KUBE-EXTERNAL-SERVICES", "KUBE-NODEPORTS", "KUBE-PROXY-FIREWALL"}


def as_kube_proxy_sees_it(result: Trace) -> tuple[str, bool]:
    """A trace in the terms of kube-proxy's test: the endpoints reached (", "-joined), else ACCEPT, DROP or
    REJECT when a kube-proxy filter rule decided, else nothing; and whether any branch was masqueraded."""
    masq = any(o.masquerade for o in result.outcomes)
    endpoints = sorted({o.endpoint for o in result.outcomes if o.endpoint})
    if endpoints:
        return ", ".join(endpoints), masq
    verdicts = {o.verdict for o in result.outcomes}
    if verdicts in ({"DROP"}, {"REJECT"}):
        return verdicts.pop(), masq
    accepted = any(step.table == "filter" and step.chain in _TRACED_FILTER_CHAINS and step.action == "ACCEPT"
                   for o in result.outcomes for step in o.path)
    return ("ACCEPT" if accepted else ""), masq


def one_service(ports: tuple[Port, ...], **fields) -> ServiceSpec:
    return ServiceSpec("ns1", "svc1", ports=ports, **fields)


def ready(address: str, node: str = "") -> Endpoint:
    return Endpoint(address, node)


def terminating(address: str, node: str, serving: bool = True) -> Endpoint:
    return Endpoint(address, node, ready=False, serving=serving, terminating=True)


def cluster_ip_general(case: str) -> ClusterSpec:
    svc1 = ServiceSpec("ns1", "svc1", "172.30.0.41", ports=(Port(80, 80, name="http"),),
                       endpoints=(ready("10.180.0.1", TEST_NODE),))
    ports = (Port(80, 80, name="http"), Port(443, 8443, name="https"), Port(53, 53, "UDP", "dns-udp"),
             Port(53, 5353, "TCP", "dns-tcp"), Port(53, 53, "SCTP", "dns-sctp"))
    svc2 = ServiceSpec("ns2", "svc2", "172.30.0.42", ports=ports,
                       endpoints=(ready("10.180.0.1", TEST_NODE), ready("10.180.2.1", "host2")))
    return fake_node(svc1, svc2)


def load_balancer(case: str) -> ClusterSpec:
    return fake_node(one_service((p80(3001),), cluster_ip="172.30.0.41", type="LoadBalancer",
                                 load_balancer_ips=("1.2.3.4", "5.6.7.8"),
                                 load_balancer_source_ranges=("192.168.0.0/24", "203.0.113.0/25"),
                                 endpoints=(ready("10.180.0.1"),)))


def node_ports(case: str) -> ClusterSpec:
    return fake_node(one_service((p80(3001),), cluster_ip="172.30.0.41", type="NodePort",
                                 endpoints=(ready("10.180.0.1"), ready("10.180.2.1", TEST_NODE))))


def health_check_node_port(case: str) -> ClusterSpec:
    service = one_service((p80(3001),), cluster_ip="172.30.0.42", type="LoadBalancer",
                          external_traffic_policy="Local", health_check_node_port=30000)
    return fake_node() if case == "Service deleted" else fake_node(service)


def external_traffic_policy(policy: Literal["Local", "Cluster"]) -> Callable[[str], ClusterSpec]:
    def spec(case: str) -> ClusterSpec:
        return fake_node(one_service(
            (p80(3001),), cluster_ip="172.30.0.41", type="LoadBalancer", external_traffic_policy=policy,
            external_ips=("192.168.99.11",), load_balancer_ips=("1.2.3.4",),
            health_check_node_port=30000 if policy == "Local" else None,
            endpoints=(ready("10.180.0.1"), ready("10.180.2.1", TEST_NODE))))
    return spec


def no_endpoints_reject(case: str) -> ClusterSpec:
    return fake_node(one_service((p80(3001),), cluster_ip="172.30.0.41", type="LoadBalancer",
                                 external_ips=("192.168.99.11",), load_balancer_ips=("1.2.3.4",)))


# The cases whose test deleted the endpoints before tracing again.
DELETED = ", endpoints deleted"

_ITP_ENDPOINTS = {
    "internalTrafficPolicy is cluster": ((TEST_NODE, "host1", "host2"), "Cluster"),
    "internalTrafficPolicy is local and there is one local endpoint": ((TEST_NODE, "host1", "host2"), "Local"),
    "internalTrafficPolicy is local and there are multiple local endpoints": ((TEST_NODE, TEST_NODE, "host2"),
                                                                              "Local"),
    "internalTrafficPolicy is local and there are no local endpoints": (("host0", "host1", "host2"), "Local"),
}


def internal_traffic_policy(case: str) -> ClusterSpec:
    nodes, policy = _ITP_ENDPOINTS[case.removesuffix(DELETED)]
    endpoints = () if case.endswith(DELETED) else tuple(
        ready(f"10.0.1.{i}", node) for i, node in enumerate(nodes, start=1))
    return fake_node(one_service((Port(80, 80),), cluster_ip="172.30.1.1", internal_traffic_policy=policy,
                                 endpoints=endpoints))


def _terminating_cases(elsewhere: str) -> dict[str, tuple[Endpoint, ...]]:
    """The endpoints of TestTerminatingEndpointsTrafficPolicyLocal's (elsewhere "host-1") and ...Cluster's
    ("another-host") cases."""
    if elsewhere == "host-1":
        with_ready = (ready("10.0.1.1", TEST_NODE), ready("10.0.1.2", TEST_NODE), terminating("10.0.1.3", TEST_NODE),
                      terminating("10.0.1.4", TEST_NODE, serving=False), ready("10.0.1.5", "host-1"))
        only_terminating = (terminating("10.0.1.2", TEST_NODE), terminating("10.0.1.3", TEST_NODE),
                            terminating("10.0.1.4", TEST_NODE, serving=False), ready("10.0.1.5", "host-1"))
    else:
        with_ready = (ready("10.0.1.1", TEST_NODE), ready("10.0.1.2", TEST_NODE), terminating("10.0.1.3", elsewhere),
                      terminating("10.0.1.4", elsewhere, serving=False), ready("10.0.1.5", elsewhere))
        only_terminating = (terminating("10.0.1.2", TEST_NODE), terminating("10.0.1.3", TEST_NODE),
                            terminating("10.0.1.4", elsewhere, serving=False), terminating("10.0.1.5", elsewhere))
    return {
        "ready endpoints exist": with_ready,
        "only terminating endpoints exist": only_terminating,
        "terminating endpoints on remote node": (terminating("10.0.1.5", "host-1"),),
        "no usable endpoints on any node": (terminating("10.0.1.5", TEST_NODE, serving=False),
                                            terminating("10.0.1.5", "host-1", serving=False)),
    }


def terminating_endpoints(policy: Literal["Local", "Cluster"]) -> Callable[[str], ClusterSpec]:
    cases = _terminating_cases("host-1" if policy == "Local" else "another-host")

    def spec(case: str) -> ClusterSpec:
        endpoints = () if case.endswith(DELETED) else cases[case.removesuffix(DELETED)]
        # No node port: the test's Service has none (allocateLoadBalancerNodePorts: false).
        return fake_node(one_service((Port(80, 80),), cluster_ip="172.30.1.1", type="LoadBalancer",
                                     external_traffic_policy=policy, health_check_node_port=30000,
                                     load_balancer_ips=("1.2.3.4",), endpoints=endpoints))
    return spec


def internal_external_masquerade(case: str) -> ClusterSpec:
    def service(n: int, **fields) -> ServiceSpec:
        return ServiceSpec(f"ns{n}", f"svc{n}", f"172.30.0.4{n}", type="LoadBalancer", ports=(p80(3000 + n),),
                           health_check_node_port=30000 + n,
                           endpoints=(ready(f"10.180.0.{n}", TEST_NODE), ready(f"10.180.1.{n}", "remote")),
                           **fields)
    services = (service(1, load_balancer_ips=("1.2.3.4",)),
                service(2, load_balancer_ips=("5.6.7.8",), external_traffic_policy="Local"),
                service(3, load_balancer_ips=("9.10.11.12",), internal_traffic_policy="Local"))
    no_detector = case.endswith("no LocalTrafficDetector")  # proxyutil.NewNoOpLocalDetector()
    return fake_node(*services, pod_cidr=None if no_detector else FAKE_POD_CIDR,
                     masquerade_all=case.startswith("masqueradeAll"))


# Feature -> the kube-proxy tests whose flows show it, with the spec of each test's cases.
FLOW_EVIDENCE: dict[str, tuple[tuple[str, Callable[[str], ClusterSpec]], ...]] = {
    "clusterip-named-ports": (("TestClusterIPGeneral", cluster_ip_general),),
    "udp-sctp": (("TestClusterIPGeneral", cluster_ip_general),),
    "nodeport": (("TestNodePorts", node_ports),),
    "loadbalancer-ingress-ips": (("TestLoadBalancer", load_balancer),),
    "loadbalancer-source-ranges": (("TestLoadBalancer", load_balancer),),
    "external-ips": (("TestExternalTrafficPolicyLocal", external_traffic_policy("Local")),
                     ("TestExternalTrafficPolicyCluster", external_traffic_policy("Cluster"))),
    "external-traffic-policy-local": (("TestExternalTrafficPolicyLocal", external_traffic_policy("Local")),
                                      ("TestHealthCheckNodePort", health_check_node_port),
                                      ("TestInternalExternalMasquerade", internal_external_masquerade)),
    "internal-traffic-policy-local": (("TestInternalTrafficPolicy", internal_traffic_policy),
                                      ("TestInternalExternalMasquerade", internal_external_masquerade)),
    "no-endpoints-reject-and-drop": (("TestNoEndpointsReject", no_endpoints_reject),
                                     ("TestInternalTrafficPolicy", internal_traffic_policy)),
    "terminating-endpoints": (("TestTerminatingEndpointsTrafficPolicyLocal", terminating_endpoints("Local")),
                              ("TestTerminatingEndpointsTrafficPolicyCluster", terminating_endpoints("Cluster"))),
    "masquerade-all": (("TestInternalExternalMasquerade", internal_external_masquerade),),
}

FLOW_CASES = [pytest.param(test, spec, id=f"{feature}:{test}")
              for feature, evidence in FLOW_EVIDENCE.items() for test, spec in evidence]


@pytest.mark.parametrize("test,spec_of", FLOW_CASES)
def test_every_packet_ends_as_kube_proxys_test_expects(test, spec_of):
    node = fake_node_context()
    wrong = []
    for case, flows in kept_flows(test).items():
        tracer = Tracer(parse(synth_cluster(spec_of(case))), node)
        for flow in flows:
            packet = Packet(IPv4(flow.source), IPv4(flow.destination), flow.protocol.lower(), dport=flow.port)
            origin = "local" if node.is_local(packet.src) else "external"
            output, masq = as_kube_proxy_sees_it(tracer.trace(packet, origin))
            expected = ", ".join(sorted(flow.output.split(", "))) if flow.output else ""
            if (output, masq) != (expected, flow.masq):
                wrong.append(f"{case} / {flow.name}: {output or 'nothing'} (masq {masq}), "
                             f"kube-proxy expects {expected or 'nothing'} (masq {flow.masq})")
    assert wrong == []


def test_every_case_of_the_masquerade_test_is_kept_whole():
    # TestInternalExternalMasquerade runs its 30 flows in four cases, two of them with --masquerade-all.
    cases = kept_flows("TestInternalExternalMasquerade")
    assert {case: len(flows) for case, flows in cases.items()} == {
        "base": 30, "no LocalTrafficDetector": 30, "masqueradeAll": 30, "masqueradeAll, no LocalTrafficDetector": 30}
    assert all(internal_external_masquerade(case).masquerade_all == case.startswith("masqueradeAll")
               for case in cases)


# -- TestSyncProxyRulesLargeClusterMode (run with --masquerade-all) ------------------------------------------


def large_cluster_services(stage: str) -> ClusterSpec:
    """The fake proxier (fp.masqueradeAll = true) at each stage of TestSyncProxyRulesLargeClusterMode (see
    TestSyncProxyRulesLargeClusterMode.rules)."""
    def many(second: int) -> tuple[Endpoint, ...]:
        return tuple(ready(f"10.{second}.{i % 256}.{i // 256}") for i in range(499))

    services = [ServiceSpec("ns1", "svc1", "172.30.0.41", ports=(p80(),), endpoints=many(0)),
                ServiceSpec("ns2", "svc2", "172.30.0.42", ports=(Port(8080, 8080, name="p8080"),), endpoints=many(1)),
                ServiceSpec("ns3", "svc3", "172.30.0.43", ports=(Port(8081, 8081, name="p8081"),),
                            endpoints=() if stage == "small" else tuple(ready(f"203.0.113.{n}") for n in (4, 8, 12)))]
    if stage == "svc4":
        services.append(ServiceSpec("ns4", "svc4", "172.30.0.44", ports=(Port(8082, 8082, name="p8082"),),
                                    endpoints=(ready("10.4.0.1"),)))
    return fake_node(*services, masquerade_all=True)


def large_cluster_expectations() -> dict[str, list[str]]:
    """Stage -> the endpoint rules kube-proxy's test expects then, in iptables-restore's form."""
    stages: dict[str, list[str]] = {}
    for line in (KUBE_PROXY / "TestSyncProxyRulesLargeClusterMode.rules").read_text().splitlines():
        if not line.startswith("#"):
            stage, rule = line.split(" | ")
            stages.setdefault(stage, []).append(rule)
    return stages


@pytest.mark.parametrize("stage", ["small", "large", "svc4"])
def test_the_endpoint_rules_are_counted_as_the_large_cluster_test_counts_them(stage):
    dnat = [r for r in parse(synth_cluster(large_cluster_services(stage))).table("nat").rules
            if r.chain.startswith("KUBE-SEP-") and "-j DNAT" in r.text]
    assert len(dnat) == {"small": 998, "large": 1001, "svc4": 1002}[stage]
    assert sum("--comment" in r.text for r in dnat) == (len(dnat) if stage == "small" else 0)


@pytest.mark.parametrize("variant", sorted(RESTORE))
@pytest.mark.parametrize("stage", ["small", "large", "svc4"])
@pytest.mark.kernel
@pytest.mark.skipif(NO_KERNEL is not None, reason=str(NO_KERNEL))
def test_the_endpoint_rules_equal_the_large_cluster_tests_text(stage, variant):
    theirs = large_cluster_expectations()[stage]
    chains = sorted({rule.split()[1] for rule in theirs})
    restore = "*nat\n" + "".join(f":{c} - [0:0]\n" for c in chains) + "\n".join(theirs) + "\nCOMMIT\n"
    with Namespace("kpconf") as namespace:
        loaded = namespace.restore(restore, variant)
        assert loaded.ok, loaded.stderr
        saved = namespace.run([SAVE[variant], "-t", "nat"])
    assert saved.ok, saved.stderr
    kernel = sorted(line for line in saved.stdout.splitlines() if line.startswith("-A "))
    ours = parse(synth_cluster(large_cluster_services(stage))).table("nat")
    assert sorted(r.text for r in ours.rules if r.chain in chains and "-j DNAT" in r.text) == kernel


# -- Services kube-proxy ignores ---------------------------------------------------------------------------


IGNORED = {
    # TestBuildServiceMapServiceHeadless: two headless Services, one without ports.
    "headless:TestBuildServiceMapServiceHeadless": (
        ServiceSpec("somewhere-else", "headless", HEADLESS, ports=(Port(1234, 1234, "UDP", "rpc"),)),
        ServiceSpec("somewhere-else", "headless-without-port", HEADLESS, ports=())),
    # TestBuildServiceMapServiceTypeExternalName: its cluster IP "should be ignored", and its node port too.
    "external-name:TestBuildServiceMapServiceTypeExternalName": (
        ServiceSpec("somewhere-else", "external-name", "172.30.55.4", type="ExternalName",
                    ports=(Port(1235, 1235, "UDP", "blah", node_port=5321),)),),
}


@pytest.mark.parametrize("feature", list(IGNORED))
def test_kube_proxy_writes_nothing_for_the_service(feature):
    others = overall_services()
    assert synth_cluster(fake_node(*others, *IGNORED[feature])) == synth_cluster(fake_node(*others))


def test_ignored_services_keep_their_endpoints_out_of_the_large_cluster_count():
    endpoints = tuple(ready(f"10.1.{i // 250}.{i % 250 + 1}") for i in range(1001))
    headless = ServiceSpec("ns", "headless", HEADLESS, endpoints=endpoints)
    assert synth_cluster(fake_node(*overall_services(), headless)) == synth_cluster(fake_node(*overall_services()))

