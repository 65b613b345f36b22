"""The node a packet is traced on: its interfaces, addresses and routes, of both families.

The tracer needs to know which addresses are the node's own (for `-m addrtype --dst-type LOCAL` and to
decide between INPUT and FORWARD), where a destination is routed (the out interface for `-o`, the next hop),
and which source address MASQUERADE would pick. For IPv4 that is the out interface's first address in the
destination's subnet, else its first address, as the kernel's inet_select_addr does; for IPv6 the kernel's
ipv6_dev_get_saddr follows RFC 6724, of which the rules that decide on a node's interfaces are: the same
scope as the destination, then the longest prefix in common with it.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field

IPv4 = ipaddress.IPv4Address
Address = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network
Interface_ = ipaddress.IPv4Interface | ipaddress.IPv6Interface
LOOPBACK: dict[int, Network] = {4: ipaddress.IPv4Network("127.0.0.0/8"), 6: ipaddress.IPv6Network("::1/128")}
LOOPBACK_ADDRESS: dict[int, Address] = {4: ipaddress.IPv4Address("127.0.0.1"), 6: ipaddress.IPv6Address("::1")}
HOST_PREFIX = {4: 32, 6: 128}


@dataclass(frozen=True)
class Interface:
    name: str
    addresses: tuple[Interface_, ...] = ()


@dataclass(frozen=True)
class Route:
    """A route: packets to `network` leave through `device`, to `via` if set (else directly)."""

    network: Network
    device: str
    via: Address | None = None

    def describe(self) -> str:
        hop = f" via {self.via}" if self.via else ""
        return f"{self.network}{hop} dev {self.device}"


def _common_prefix(a: Address, b: Address) -> int:
    bits = HOST_PREFIX[a.version]
    return bits - (int(a) ^ int(b)).bit_length()


def _scope(address: Address) -> int:
    """RFC 6724's scope, coarsely: link-local below global (the only two a node's interfaces hold here)."""
    return 0 if address.is_link_local or address.is_loopback else 1


@dataclass(frozen=True)
class NodeContext:
    """What the tracer knows about the node besides its rules.

    >>> node = NodeContext.simple("node-a", "192.0.2.10/24")
    >>> node.is_local(IPv4("192.0.2.10")), node.route(IPv4("192.0.2.99")).device
    (True, 'eth0')
    """

    name: str
    interfaces: tuple[Interface, ...]
    routes: tuple[Route, ...]
    main_address: Address
    """The node's address (of its main family) when an interface has none of the family asked for."""
    _local: frozenset[Address] = field(default=frozenset(), compare=False, repr=False)
    _by_name: dict[str, Interface] = field(default_factory=dict, compare=False, repr=False)

    def __post_init__(self) -> None:
        local = {a.ip for i in self.interfaces for a in i.addresses}
        object.__setattr__(self, "_local", frozenset(local))
        object.__setattr__(self, "_by_name", {i.name: i for i in reversed(self.interfaces)})

    @classmethod
    def simple(cls, name: str, address: str, extra_routes: tuple[Route, ...] = ()) -> NodeContext:
        """A node with one interface `eth0` holding `address` (ADDRESS/PREFIX, of either family) and the
        loopback."""
        iface = ipaddress.ip_interface(address)
        interfaces = (Interface("lo", (ipaddress.IPv4Interface("127.0.0.1/8"), ipaddress.IPv6Interface("::1/128"))),
                      Interface("eth0", (iface,)))
        routes = (Route(iface.network, "eth0"), *extra_routes)
        return cls(name, interfaces, routes, iface.ip)

    @classmethod
    def with_addresses(cls, name: str, addresses: tuple[Address, ...]) -> NodeContext:
        """A node known only by its addresses (of either family, or both, as a dual-stack node has): they sit
        on `eth0`, beside the loopback, and everything that is not local leaves through `eth0`.

        >>> node = NodeContext.with_addresses("n", (IPv4("172.20.0.2"), ipaddress.IPv6Address("fc00::2")))
        >>> node.route(ipaddress.IPv6Address("fd00::9")).describe(), node.is_local(ipaddress.IPv6Address("::1"))
        ('::/0 dev eth0', True)
        """
        on_eth0 = tuple(ipaddress.ip_interface(f"{a}/{HOST_PREFIX[a.version]}") for a in addresses)
        interfaces = (Interface("lo", (ipaddress.IPv4Interface("127.0.0.1/8"), ipaddress.IPv6Interface("::1/128"))),
                      Interface("eth0", on_eth0))
        families = sorted({a.version for a in addresses}) or [4]
        routes = tuple(Route(ipaddress.ip_network("0.0.0.0/0" if v == 4 else "::/0"), "eth0") for v in families)
        return cls(name, interfaces, routes, addresses[0] if addresses else IPv4("0.0.0.0"))

    def is_local(self, address: Address) -> bool:
        return address in self._local or address in LOOPBACK[address.version]

    def interface(self, name: str) -> Interface | None:
        return self._by_name.get(name)

    def route(self, destination: Address) -> Route | None:
        """The most specific route to `destination` (local addresses route to `lo`), or None."""
        if self.is_local(destination):
            return Route(ipaddress.ip_network(f"{destination}/{HOST_PREFIX[destination.version]}"), "lo")
        best: Route | None = None
        for route in self.routes:
            if (route.network.version == destination.version and destination in route.network
                    and (best is None or route.network.prefixlen > best.network.prefixlen)):
                best = route
        return best

    def source_for(self, device: str, destination: Address) -> Address:
        """The source address the kernel picks on `device` towards `destination` (MASQUERADE, local sockets)."""
        iface = self.interface(device)
        own = [a for a in (iface.addresses if iface else ()) if a.version == destination.version]
        if destination.version == 6:
            # RFC 6724 rules 2 (the destination's scope) and 8 (longest matching prefix); ties keep the order
            # the addresses were added in, as the kernel's list does.
            if own:
                return max(own, key=lambda a: (_scope(a.ip) == _scope(destination),
                                               _common_prefix(a.ip, destination))).ip
        else:
            for address in own:
                if destination in address.network:
                    return address.ip
            if own:
                return own[0].ip
        return self._main_address(destination.version)

    def _main_address(self, version: int) -> Address:
        if self.main_address.version == version:
            return self.main_address
        return next((a.ip for i in self.interfaces if i.name != "lo" for a in i.addresses if a.version == version),
                    self.main_address)

    def interface_of(self, address: Address) -> str | None:
        """The interface a packet from `address` arrives on: the route back to it."""
        route = self.route(address)
        return route.device if route else None

    def address_type(self, address: Address, limit_iface: str | None = None) -> str:
        """The routing type of an address, as `-m addrtype` sees it: LOCAL, BROADCAST, MULTICAST, UNICAST..."""
        if limit_iface is not None:
            iface = self.interface(limit_iface)
            if iface and any(a.ip == address for a in iface.addresses):
                return "LOCAL"
        elif self.is_local(address):
            return "LOCAL"
        if address.is_multicast:
            return "MULTICAST"
        if int(address) == 0:
            return "UNSPEC"
        if address.version == 4 and (address == IPv4("255.255.255.255") or any(
            a.version == 4 and a.network.prefixlen < 31 and address == a.network.broadcast_address
            for i in self.interfaces for a in i.addresses
        )):
            return "BROADCAST"
        return "UNICAST"
