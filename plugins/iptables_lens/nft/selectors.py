"""What a rule reads of the packet, its connection and the node: the selectors of nft's expressions.

`ip daddr` is Payload("ip", "daddr"), `meta l4proto` Meta("l4proto"), `ct original ip saddr` Ct("ip saddr",
"original"); each reads a value of a datatype (`expressions.selector_type`). `expressions` holds the values they
are compared with and the statements that hold them; `model` is the namespace that names them all.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    from iptables_lens.nft.expressions import Expr


@dataclass(frozen=True, slots=True)
class Payload:
    """A header field: `ip daddr` is Payload("ip", "daddr"), `th dport` Payload("th", "dport"), `arp saddr ip`
    Payload("arp", "saddr ip")."""

    protocol: str
    field: str


@dataclass(frozen=True, slots=True)
class RawPayload:
    """Raw bits of a header: `@nh,16,16` is RawPayload("nh", 16, 16) (base ll, nh, th or ih; offset and length
    in bits)."""

    base: str
    offset: int
    length: int


@dataclass(frozen=True, slots=True)
class Meta:
    """Packet metadata: `meta l4proto`, `iifname` (printed without `meta`), `meta mark`."""

    key: str


@dataclass(frozen=True, slots=True)
class Ct:
    """Conntrack state of the packet's flow: `ct state`, `ct original ip saddr` (direction "original").
    `ct original saddr`, which iptables-nft's translations print, has the address family of its table."""

    key: str
    direction: str | None = None
    family: str | None = None


@dataclass(frozen=True, slots=True)
class Fib:
    """A routing lookup: `fib daddr type` is Fib(("daddr",), "type"); `fib saddr . iif oif` has flags
    ("saddr", "iif")."""

    flags: tuple[str, ...]
    result: str


@dataclass(frozen=True, slots=True)
class Numgen:
    """A number from 0 to mod - 1 (plus offset), random or incrementing: `numgen random mod 2`."""

    mode: Literal["random", "inc"]
    mod: int
    offset: int = 0


@dataclass(frozen=True, slots=True)
class Hash:
    """`jhash EXPR mod N [seed S] [offset O]` or `symhash mod N [offset O]`."""

    kind: Literal["jhash", "symhash"]
    mod: int
    expr: Expr | None = None
    seed: int | None = None
    offset: int = 0


@dataclass(frozen=True, slots=True)
class Rt:
    """Routing data: `rt mtu`, `rt ip nexthop` (family "ip")."""

    key: str
    family: str | None = None


@dataclass(frozen=True, slots=True)
class Socket:
    """The packet's socket: `socket transparent`, `socket mark`, `socket cgroupv2 level 1`."""

    key: str
    level: int | None = None


@dataclass(frozen=True, slots=True)
class HeaderPart:
    """A part of a header found by walking its list of parts (nft's exthdr expression): `name` is the part (an
    option, an extension header, a chunk), `field` the field read of it, or None for whether it is there."""

    name: str
    field: str | None = None


class Exthdr(HeaderPart):
    """An IPv6 extension header: `exthdr frag exists` is Exthdr("frag", None); `frag more-fragments` has a
    field."""

    __slots__ = ()


class TcpOption(HeaderPart):
    """A TCP option: `tcp option maxseg size`."""

    __slots__ = ()


class IpOption(HeaderPart):
    """An IPv4 option: `ip option rr exists` is IpOption("rr"), `ip option ra value` IpOption("ra", "value")."""

    __slots__ = ()


class SctpChunk(HeaderPart):
    """A chunk of an SCTP packet: `sctp chunk data exists` is SctpChunk("data"), `sctp chunk init
    num-inbound-streams` SctpChunk("init", "num-inbound-streams")."""

    __slots__ = ()


@dataclass(frozen=True, slots=True)
class Osf:
    """The operating system the fingerprint of a TCP SYN names: `osf name`, `osf ttl loose version`. `ttl` is how
    the packet's IP TTL is held to the fingerprint's: None (it must match), "loose" (not above it) or "skip"."""

    key: Literal["name", "version"]
    ttl: Literal["loose", "skip"] | None = None


@dataclass(frozen=True, slots=True)
class Ipsec:
    """The IPsec state a packet came in by (`ipsec in`) or leaves by (`ipsec out`): its `reqid`, `spi`, or an
    endpoint address of the tunnel (`ipsec in ip saddr`: key "saddr", family "ip"). `spnum` is the state's place
    on the packet's path (0, the first, is not printed)."""

    direction: Literal["in", "out"]
    key: Literal["reqid", "spi", "saddr", "daddr"]
    family: Literal["ip", "ip6"] | None = None
    spnum: int = 0
