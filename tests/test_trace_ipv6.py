"""The tracer's node and packets in IPv6: addresses, routes, the source MASQUERADE picks, endpoints."""

from __future__ import annotations

import ipaddress

from iptables_lens.trace import IPv4, NodeContext, Packet
from iptables_lens.trace.context import Interface, Route
from iptables_lens.trace.packet import endpoint_text

V6 = ipaddress.IPv6Address


def dual_stack_node() -> NodeContext:
    """A kind node on fc00:f853:ccd:e793::/64 with a pod veth, as a dual-stack node has them."""
    eth0 = (ipaddress.IPv4Interface("172.20.0.2/16"), ipaddress.IPv6Interface("fc00:f853:ccd:e793::2/64"),
            ipaddress.IPv6Interface("fe80::42:acff:fe14:2/64"))
    veth = (ipaddress.IPv4Interface("10.244.1.1/32"), ipaddress.IPv6Interface("fd00:10:244:1::1/128"))
    return NodeContext(
        "blog-worker",
        (Interface("lo", (ipaddress.IPv4Interface("127.0.0.1/8"), ipaddress.IPv6Interface("::1/128"))),
         Interface("eth0", eth0), Interface("veth1", veth)),
        (Route(ipaddress.IPv4Network("172.20.0.0/16"), "eth0"), Route(ipaddress.IPv6Network("fc00:f853:ccd:e793::/64"), "eth0"),
         Route(ipaddress.IPv6Network("fd00:10:244:1::2/128"), "veth1"),
         Route(ipaddress.IPv6Network("fd00:10:244:2::/64"), "eth0", V6("fc00:f853:ccd:e793::3")),
         Route(ipaddress.IPv4Network("0.0.0.0/0"), "eth0", IPv4("172.20.0.1"))),
        IPv4("172.20.0.2"))


def test_routes_are_chosen_within_the_destinations_family():
    node = dual_stack_node()
    assert node.route(V6("fd00:10:244:2::5")).via == V6("fc00:f853:ccd:e793::3")
    assert node.route(V6("fd00:10:244:1::2")).device == "veth1"
    assert node.route(V6("2001:db8::1")) is None  # the IPv4 default route does not carry IPv6
    assert node.route(IPv4("8.8.8.8")).device == "eth0"


def test_the_nodes_own_ipv6_addresses_and_the_loopback_are_local():
    node = dual_stack_node()
    assert node.is_local(V6("fc00:f853:ccd:e793::2")) and node.is_local(V6("::1"))
    assert node.route(V6("::1")).device == "lo"
    assert not node.is_local(V6("fc00:f853:ccd:e793::3"))
    assert node.address_type(V6("fc00:f853:ccd:e793::2")) == "LOCAL"
    assert node.address_type(V6("ff02::1")) == "MULTICAST"
    assert node.address_type(V6("fc00:f853:ccd:e793::ffff")) == "UNICAST"  # IPv6 has no broadcast


def test_masquerade_picks_a_global_address_of_the_family_sharing_the_longest_prefix():
    node = dual_stack_node()
    assert node.source_for("eth0", V6("fd00:10:244:2::5")) == V6("fc00:f853:ccd:e793::2")
    assert node.source_for("eth0", V6("fe80::1")) == V6("fe80::42:acff:fe14:2")
    assert node.source_for("veth1", V6("fd00:10:244:1::2")) == V6("fd00:10:244:1::1")
    assert node.source_for("eth0", IPv4("172.20.0.3")) == IPv4("172.20.0.2")


def test_an_interface_without_an_address_of_the_family_falls_back_to_the_nodes_address_of_it():
    node = dual_stack_node()
    assert node.source_for("tunl0", V6("fd00:10:244:2::5")) == V6("fc00:f853:ccd:e793::2")
    assert node.source_for("tunl0", IPv4("10.0.0.1")) == IPv4("172.20.0.2")


def test_a_node_known_only_by_addresses_routes_each_family_out_of_eth0():
    node = NodeContext.with_addresses("n", (IPv4("172.20.0.2"), V6("fc00::2")))
    assert node.route(V6("fd00::9")).device == "eth0" and node.route(IPv4("10.0.0.9")).device == "eth0"
    assert node.is_local(V6("fc00::2")) and node.is_local(IPv4("127.0.0.5"))
    only_v4 = NodeContext.with_addresses("n", (IPv4("172.20.0.2"),))
    assert only_v4.route(V6("fd00::9")) is None


def test_ipv6_endpoints_are_written_in_brackets():
    assert endpoint_text(V6("fd00:10:244:1::2"), 80) == "[fd00:10:244:1::2]:80"
    assert endpoint_text(V6("fd00:10:244:1::2"), None) == "fd00:10:244:1::2"
    packet = Packet(V6("fc00:f853:ccd:e793::64"), V6("fc00:f853:ccd:e793::2"), dport=30080)
    assert str(packet) == "tcp [fc00:f853:ccd:e793::64]:40000 -> [fc00:f853:ccd:e793::2]:30080"
    assert packet.family == 6
