"""Packets, the steps of a path, and the outcomes the tracer reports."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field, replace
from fractions import Fraction
from typing import Literal

IPv4 = ipaddress.IPv4Address
IPv6 = ipaddress.IPv6Address
Address = ipaddress.IPv4Address | ipaddress.IPv6Address
"""A packet's address, of either family; a dump of one family only ever meets addresses of that family."""

Hook = Literal["PREROUTING", "INPUT", "FORWARD", "OUTPUT", "POSTROUTING"]
Verdict = Literal["ACCEPT", "DROP", "REJECT", "UNDECIDED", "UNSUPPORTED"]
"""How a packet's way ends: UNDECIDED where the tracer cannot know (a rate limit, an ipset), UNSUPPORTED at a
target it does not model."""
Origin = Literal["external", "local"]
"""external: the packet arrives from the network; local: a process on the node sends it."""
HOOKS: tuple[Hook, ...] = ("PREROUTING", "INPUT", "FORWARD", "OUTPUT", "POSTROUTING")

# The iptables tables netfilter consults at each hook, in priority order (raw -300, mangle -150, nat DNAT
# -100, filter 0, security 50, nat SNAT 100): the order in which the walk runs the base chains that
# iptables/evaluate.py registers at those priorities (a test checks that the two agree).
TABLES_AT_HOOK: dict[str, tuple[str, ...]] = {
    "PREROUTING": ("raw", "mangle", "nat"),
    "INPUT": ("mangle", "filter", "security", "nat"),
    "FORWARD": ("mangle", "filter", "security"),
    "OUTPUT": ("raw", "mangle", "nat", "filter", "security"),
    "POSTROUTING": ("mangle", "nat"),
}


DEFAULT_SPORT = 40000
"""The source port of a traced packet when none is given: any ephemeral port traces the same way."""


@dataclass(frozen=True)
class Packet:
    """The first packet of a connection (a TCP SYN, a UDP datagram, an ICMP message).

    >>> Packet(IPv4("172.20.0.100"), IPv4("172.20.0.2"), dport=30080)
    Packet(tcp 172.20.0.100:40000 -> 172.20.0.2:30080)
    """

    src: Address
    dst: Address
    protocol: str = "tcp"
    sport: int | None = DEFAULT_SPORT
    dport: int | None = 80
    icmp_type: int | None = None
    icmp_code: int | None = None
    tcp_flags: frozenset[str] = field(default=frozenset({"SYN"}))

    def __repr__(self) -> str:
        return f"Packet({self})"

    def __str__(self) -> str:
        if self.protocol in ("tcp", "udp", "sctp"):
            return (f"{self.protocol} {endpoint_text(self.src, self.sport, unknown='?')} -> "
                    f"{endpoint_text(self.dst, self.dport, unknown='?')}")
        return f"{self.protocol} {self.src} -> {self.dst}"

    @property
    def family(self) -> Literal[4, 6]:
        """4 or 6."""
        return 4 if self.src.version == 4 else 6

    def with_destination(self, address: Address, port: int | None) -> Packet:
        return replace(self, dst=address, dport=self.dport if port is None else port)

    def with_source(self, address: Address, port: int | None, keep_port: bool = True) -> Packet:
        return replace(self, src=address, sport=port if port is not None else (self.sport if keep_port else None))


def _port(port: int | None) -> str:
    return "?" if port is None else str(port)


def endpoint_text(address: Address, port: int | None, unknown: str | None = None) -> str:
    """`ADDRESS:PORT`, with an IPv6 address in brackets as kube-proxy and conntrack's users write it
    (`[fd00:10:244:1::2]:80`); the address alone when there is no port, unless `unknown` stands for it.

    >>> endpoint_text(IPv4("10.244.1.2"), 80), endpoint_text(IPv6("fd00:10:244:1::2"), 80)
    ('10.244.1.2:80', '[fd00:10:244:1::2]:80')
    """
    if port is None and unknown is None:
        return str(address)
    shown = f"[{address}]" if address.version == 6 else str(address)
    return f"{shown}:{unknown if port is None else port}"


@dataclass(frozen=True)
class Step:
    """One thing that happened to the packet: a rule that matched, a policy, a routing decision."""

    hook: Hook
    table: str | None
    chain: str | None
    rule: int | None
    line: int | None
    action: str

    @property
    def anchor(self) -> str | None:
        """The rule's anchor in the generated tables (see `Rule.anchor`)."""
        if self.table and self.chain and self.rule:
            # An nft table is "FAMILY NAME": its rules' anchors join the two with a dash (`nft.model.Rule`).
            return f"{self.table.replace(' ', '-')}-{self.chain}-{self.rule}"
        return None


@dataclass(frozen=True)
class ConntrackEntry:
    """The entry the connection leaves, as `conntrack -L` prints its two tuples."""

    protocol: str
    original: tuple[Address, Address, int | None, int | None]
    reply: tuple[Address, Address, int | None, int | None]

    def __str__(self) -> str:
        def tup(t):
            if self.protocol in ("tcp", "udp", "sctp"):
                return f"src={t[0]} dst={t[1]} sport={_port(t[2])} dport={_port(t[3])}"
            return f"src={t[0]} dst={t[1]}"

        return f"{self.protocol} {tup(self.original)} {tup(self.reply)}"


VERDICTS = ("ACCEPT", "DROP", "REJECT", "UNDECIDED", "UNSUPPORTED")


@dataclass(frozen=True)
class Outcome:
    """One way the packet's story ends, with its exact probability."""

    probability: Fraction
    verdict: Verdict
    delivery: str
    packet_in: Packet
    after_dnat: Packet
    after_snat: Packet
    dnat: tuple[Address, int | None] | None
    snat: tuple[Address, int | None] | None
    masquerade: bool
    conntrack: ConntrackEntry | None
    path: tuple[Step, ...]
    choices: tuple[str, ...] = ()
    reason: str | None = None

    @property
    def endpoint(self) -> str | None:
        """`ip:port` (`[ip]:port` for IPv6) the connection was DNAT'd to, or None."""
        if self.dnat is None:
            return None
        return endpoint_text(*self.dnat)

    @property
    def chains(self) -> list[str]:
        """The chains the path passed through, in order, without repeats in a row."""
        names: list[str] = []
        for step in self.path:
            if step.chain and (not names or names[-1] != step.chain):
                names.append(step.chain)
        return names


@dataclass(frozen=True)
class Trace:
    """Everything the tracer found for one packet: outcomes whose probabilities sum to exactly 1."""

    node: str
    origin: Origin
    packet: Packet
    outcomes: tuple[Outcome, ...]
