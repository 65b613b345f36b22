"""The seed's NodePort Service on a dual-stack kind cluster, traced in its IPv6 dumps: the same outcomes as
IPv4, with IPv6 addresses, as issue 15 asks (the dumps come from `synth_dual_stack_nodeport`)."""

from __future__ import annotations

import ipaddress
from fractions import Fraction

import pytest
from iptables_lens import parse
from iptables_lens.kube.dual_stack import ipv6_twin
from iptables_lens.kube.synth_dual_stack import synth_dual_stack_nodeport
from iptables_lens.scenario import load_scenario, node_context
from iptables_lens.trace import NodeContext, Packet, trace
from iptables_lens.trace.context import Interface, Route

from tests.conftest import SEED

V6 = ipaddress.IPv6Address
DUMPS = synth_dual_stack_nodeport()
SCENARIO = load_scenario(SEED)


def twin_node(name: str) -> NodeContext:
    """The seed's node with every IPv4 address and route mapped to its IPv6 twin, beside the IPv4 ones."""
    v4 = node_context(SCENARIO, name)

    def twin_iface(i):
        return ipaddress.IPv6Interface(f"{ipv6_twin(str(i.ip))}/{64 if i.network.prefixlen < 32 else 128}")

    interfaces = tuple(
        Interface(i.name, i.addresses + tuple(twin_iface(a) for a in i.addresses if a.version == 4 and i.name != "lo")
                  + ((ipaddress.IPv6Interface("::1/128"),) if i.name == "lo" else ()))
        for i in v4.interfaces)
    routes = v4.routes + tuple(
        Route(twin_network(r.network), r.device, V6(ipv6_twin(str(r.via))) if r.via else None)
        for r in v4.routes if r.network.version == 4)
    return NodeContext(v4.name, interfaces, routes, v4.main_address)


def twin_network(network: ipaddress.IPv4Network) -> ipaddress.IPv6Network:
    if network.prefixlen == 0:
        return ipaddress.IPv6Network("::/0")
    if network.prefixlen == 32:
        return ipaddress.IPv6Network(f"{ipv6_twin(str(network.network_address))}/128")
    return ipaddress.IPv6Network(ipv6_twin(str(network)))


def v6(text: str) -> V6:
    return V6(ipv6_twin(text))


@pytest.fixture(scope="module")
def worker():
    return twin_node("blog-worker"), parse(DUMPS[("blog-worker", "after", 6)])


def test_an_outside_client_reaches_each_pod_with_one_half_masqueraded_through_forward(worker):
    node, dump = worker
    node_v4 = next(a.ip for i in node.interfaces if i.name == "eth0" for a in i.addresses if a.version == 4)
    result = trace(dump, Packet(v6("172.20.0.100"), v6(str(node_v4)), dport=30080), node)
    outcomes = sorted(result.outcomes, key=lambda o: o.endpoint)
    assert [(o.probability, o.endpoint, o.masquerade, o.verdict) for o in outcomes] == [
        (Fraction(1, 2), f"[{v6('10.244.1.2')}]:80", True, "ACCEPT"),
        (Fraction(1, 2), f"[{v6('10.244.2.2')}]:80", True, "ACCEPT")]
    assert all(any(s.hook == "FORWARD" for s in o.path) and not any(s.hook == "INPUT" for s in o.path)
               for o in outcomes)


def test_a_pod_calling_the_cluster_ip_is_masqueraded_only_when_it_reaches_itself(worker):
    node, dump = worker
    pod = v6("10.244.1.2")
    result = trace(dump, Packet(pod, v6("10.96.118.136"), dport=80), node)
    by_endpoint = {o.endpoint: o for o in result.outcomes}
    assert by_endpoint[f"[{pod}]:80"].masquerade is True
    assert by_endpoint[f"[{v6('10.244.2.2')}]:80"].masquerade is False


def test_a_service_without_endpoints_rejects_with_icmp6_port_unreachable():
    from iptables_lens.kube.cluster_spec import ClusterSpec, Port, ServiceSpec
    from iptables_lens.kube.dual_stack import ipv6_cluster
    from iptables_lens.kube.synth import synth_cluster
    from iptables_lens.kube.synth_scenario import WORKER_1

    empty = ServiceSpec("default", "empty", "10.96.0.50", ports=(Port(80, 80),), ip_family_policy="PreferDualStack")
    spec = ipv6_cluster(ClusterSpec((empty,), node=WORKER_1.name, node_ip=WORKER_1.address), dual_stack=True)
    dump = parse(synth_cluster(spec))
    assert dump.family == 6
    # A kind node's default route leads to the Docker network's gateway; a cluster IP is routed there.
    seed = twin_node("blog-worker")
    default = Route(ipaddress.IPv6Network("::/0"), "eth0", v6("172.20.0.1"))
    node = NodeContext(seed.name, seed.interfaces, (*seed.routes, default), seed.main_address)
    result = trace(dump, Packet(v6("10.244.1.2"), v6("10.96.0.50"), dport=80), node)
    [outcome] = result.outcomes
    assert outcome.verdict == "REJECT" and outcome.probability == 1
    assert outcome.path[-1].action == "REJECT with icmp6-port-unreachable"
    assert outcome.path[-1].chain == "KUBE-SERVICES" and outcome.path[-1].table == "filter"
