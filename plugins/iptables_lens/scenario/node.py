"""A node's context (interfaces, addresses, routes) from a scenario's facts, of both families on a dual-stack
node (one that declares `address_v6`).

Nodes sit on the underlay network (`eth0`), with a default route per family via the underlay's gateway when
the scenario declares it (kind: the Docker network's gateway). Pods are wired the way kind's CNI (kindnet,
with the ptp plugin) wires them: one veth per pod whose host side holds the node's pod gateway address of
each family (`pod_gateway`, `pod_gateway_v6`, by default the first address of the node's pod range), a host
route to each local pod over its veth, and a route to every other node's pod range via that node's address.
"""

from __future__ import annotations

import ipaddress

from iptables_lens.scenario.load import Scenario
from iptables_lens.scenario.model import Address, Family
from iptables_lens.trace.context import HOST_PREFIX, Interface, Interface_, NodeContext, Route

Iface = ipaddress.IPv4Interface
_DEFAULT: dict[int, ipaddress.IPv4Network | ipaddress.IPv6Network] = {4: ipaddress.IPv4Network("0.0.0.0/0"), 6: ipaddress.IPv6Network("::/0")}


def veth_name(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> str:
    """A stable host-side interface name for the pod with `address` (at most 15 characters)."""
    return "veth" + format(int(address) & 0xFFFFFF, "06x")


def node_context(scenario: Scenario, node_name: str) -> NodeContext:
    """The context of `node_name`: its underlay addresses, its pods' veths, its routes."""
    meta = scenario.meta
    node = meta.node(node_name)
    cluster = meta.cluster
    families: tuple[Family, ...] = (4, 6) if node.address_v6 is not None else (4,)
    loopback: list[Interface_] = [Iface("127.0.0.1/8")]
    eth0: list[Interface_] = []
    routes: list[Route] = []
    for family in families:
        underlay, address = cluster.underlay_of(family), node.address_of(family)
        assert underlay is not None and address is not None  # the schema checks a node's address has its range
        eth0.append(ipaddress.ip_interface(f"{address}/{underlay.prefixlen}"))
        routes.append(Route(underlay, "eth0"))
    if 6 in families:
        loopback.append(ipaddress.IPv6Interface("::1/128"))
    # One veth per pod: a declared pod's addresses of both families share it.
    veths: dict[str, list[Address]] = {}
    for family in families:
        for address in _local_pods(scenario, node_name, family):
            veths.setdefault(veth_name(_pod_key(scenario, node_name, address)), []).append(address)
    interfaces = [Interface("lo", tuple(loopback)), Interface("eth0", tuple(eth0))]
    for name, addresses in veths.items():
        gateways = tuple(ipaddress.ip_interface(f"{node.gateway_of(_family(a))}/{HOST_PREFIX[a.version]}")
                         for a in addresses)
        interfaces.append(Interface(name, gateways))
        routes += [Route(ipaddress.ip_network(f"{a}/{HOST_PREFIX[a.version]}"), name) for a in addresses]
    for family in families:
        for other in meta.nodes:
            pods, via = other.pod_cidr_of(family), other.address_of(family)
            if other.name != node_name and pods is not None and via is not None:
                routes.append(Route(pods, "eth0", via))
    for family in families:
        gateway = cluster.gateway_of(family)
        if gateway is not None:
            routes.append(Route(_DEFAULT[family], "eth0", gateway))
    return NodeContext(node_name, tuple(interfaces), tuple(routes), node.address)


def _family(address: Address) -> Family:
    return 6 if address.version == 6 else 4


def _pod_key(scenario: Scenario, node_name: str, address: Address) -> Address:
    """The address a pod's veth is named after: its IPv4 one, if it is a declared pod with one."""
    for pod in scenario.meta.pods:
        if pod.node == node_name and address in pod.addresses():
            return pod.address
    return address


def _local_pods(scenario: Scenario, node_name: str, family: Family) -> list[Address]:
    meta = scenario.meta
    pods = meta.node(node_name).pod_cidr_of(family)
    if pods is None:
        return []
    found: set[Address] = {a for p in meta.pods if p.node == node_name for a in p.addresses() if a.version == family}
    found |= {f.src for f in meta.flows if f.src.version == family and f.src in pods}
    return sorted(found)  # type: ignore[type-var]


def local_pod_addresses(scenario: Scenario, node_name: str) -> list[ipaddress.IPv4Address]:
    """IPv4 pods on the node: the scenario's pods, and flow clients inside the node's pod range."""
    return [a for a in _local_pods(scenario, node_name, 4) if isinstance(a, ipaddress.IPv4Address)]
