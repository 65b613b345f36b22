"""A node's context (interfaces, addresses, routes) from a scenario's facts.

Nodes sit on the underlay network (`eth0`). Pods are wired the way kind's CNI (kindnet, with the ptp
plugin) wires them: one veth per pod whose host side holds the node's pod gateway address (`pod_gateway`,
by default the first address of the node's pod range), a /32 route to each local pod over its veth, and a
route to every other node's pod range via that node's address.
"""

from __future__ import annotations

import ipaddress

from iptables_lens.scenario.load import Scenario
from iptables_lens.trace.context import Interface, NodeContext, Route

Iface = ipaddress.IPv4Interface


def veth_name(address: ipaddress.IPv4Address) -> str:
    """A stable host-side interface name for the pod with `address` (at most 15 characters)."""
    return "veth" + format(int(address) & 0xFFFFFF, "06x")


def node_context(scenario: Scenario, node_name: str) -> NodeContext:
    """The context of `node_name`: its underlay address, its pods' veths, its routes."""
    meta = scenario.meta
    node = meta.node(node_name)
    underlay = meta.cluster.underlay_cidr
    interfaces = [
        Interface("lo", (Iface("127.0.0.1/8"),)),
        Interface("eth0", (Iface(f"{node.address}/{underlay.prefixlen}"),)),
    ]
    routes = [Route(underlay, "eth0")]
    gateway = node.gateway
    for address in local_pod_addresses(scenario, node_name):
        name = veth_name(address)
        interfaces.append(Interface(name, (Iface(f"{gateway}/32"),)))
        routes.append(Route(ipaddress.IPv4Network(f"{address}/32"), name))
    for other in meta.nodes:
        if other.name != node_name:
            routes.append(Route(other.pod_cidr, "eth0", other.address))
    return NodeContext(node_name, tuple(interfaces), tuple(routes), node.address)


def local_pod_addresses(scenario: Scenario, node_name: str) -> list[ipaddress.IPv4Address]:
    """Pods on the node: the scenario's pods, and flow clients inside the node's pod range."""
    meta = scenario.meta
    node = meta.node(node_name)
    found = {p.address for p in meta.pods if p.node == node_name}
    found |= {f.src for f in meta.flows if f.src in node.pod_cidr}
    return sorted(found)
