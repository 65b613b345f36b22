"""The node a packet is traced on: its interfaces, addresses and routes.

The tracer needs to know which addresses are the node's own (for `-m addrtype --dst-type LOCAL` and to
decide between INPUT and FORWARD), where a destination is routed (the out interface for `-o`, the next hop),
and which source address MASQUERADE would pick (the out interface's first address, as the kernel's
inet_select_addr does, or the node's main address when that interface has none).
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field

IPv4 = ipaddress.IPv4Address
Network = ipaddress.IPv4Network
LOOPBACK = Network("127.0.0.0/8")


@dataclass(frozen=True)
class Interface:
    name: str
    addresses: tuple[ipaddress.IPv4Interface, ...] = ()


@dataclass(frozen=True)
class Route:
    """A route: packets to `network` leave through `device`, to `via` if set (else directly)."""

    network: Network
    device: str
    via: IPv4 | None = None

    def describe(self) -> str:
        hop = f" via {self.via}" if self.via else ""
        return f"{self.network}{hop} dev {self.device}"


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
    main_address: IPv4
    _local: frozenset[IPv4] = field(default=frozenset(), compare=False, repr=False)

    def __post_init__(self) -> None:
        local = {a.ip for i in self.interfaces for a in i.addresses}
        object.__setattr__(self, "_local", frozenset(local))

    @classmethod
    def simple(cls, name: str, address: str, extra_routes: tuple[Route, ...] = ()) -> NodeContext:
        """A node with one interface `eth0` holding `address` (ADDRESS/PREFIX) and the loopback."""
        iface = ipaddress.IPv4Interface(address)
        interfaces = (Interface("lo", (ipaddress.IPv4Interface("127.0.0.1/8"),)), Interface("eth0", (iface,)))
        routes = (Route(iface.network, "eth0"), *extra_routes)
        return cls(name, interfaces, routes, iface.ip)

    def is_local(self, address: IPv4) -> bool:
        return address in self._local or address in LOOPBACK

    def interface(self, name: str) -> Interface | None:
        return next((i for i in self.interfaces if i.name == name), None)

    def route(self, destination: IPv4) -> Route | None:
        """The most specific route to `destination` (local addresses route to `lo`), or None."""
        if self.is_local(destination):
            return Route(Network(f"{destination}/32"), "lo")
        best: Route | None = None
        for route in self.routes:
            if destination in route.network and (best is None or route.network.prefixlen > best.network.prefixlen):
                best = route
        return best

    def source_for(self, device: str, destination: IPv4) -> IPv4:
        """The source address the kernel picks on `device` towards `destination` (MASQUERADE, local sockets)."""
        iface = self.interface(device)
        if iface and iface.addresses:
            for address in iface.addresses:
                if destination in address.network:
                    return address.ip
            return iface.addresses[0].ip
        return self.main_address

    def interface_of(self, address: IPv4) -> str | None:
        """The interface a packet from `address` arrives on: the route back to it."""
        route = self.route(address)
        return route.device if route else None

    def address_type(self, address: IPv4, limit_iface: str | None = None) -> str:
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
        if address == IPv4("255.255.255.255") or any(
            a.network.prefixlen < 31 and address == a.network.broadcast_address
            for i in self.interfaces for a in i.addresses
        ):
            return "BROADCAST"
        return "UNICAST"
