"""What an nft expression reads of a traced packet, and whether a match holds: the values of `nft.evaluate`.

Every value is a number, an address (`ipaddress`), a name (an interface) or a tuple of them (a concatenation),
so that a constant of the listing and what the packet gives compare directly: `tcp` is 6, `ct state new` is
the kernel's bit 8, `fib daddr type local` is RTN_LOCAL (2), the numbers of `nft.symbols`.

A selector that reads a header the packet does not have (`tcp dport` of a UDP packet, `ip saddr` of an IPv6
packet in an inet table, `meta oifname` before routing) is `ABSENT`: nft puts an implicit dependency before
such a selector, or the expression breaks the rule, so the rule does not match whatever its operator. What the
tracer cannot know (a jhash, the socket's owner, the time of day) raises `Undecided` with the reason.
"""

from __future__ import annotations

import fnmatch
import ipaddress
from collections.abc import Callable
from functools import lru_cache, partial
from typing import Any

from iptables_lens.iptables.protocols import NETBASE_NUMBERS
from iptables_lens.nft import model as m
from iptables_lens.nft import selectors as sel
from iptables_lens.nft.types import DATATYPES
from iptables_lens.trace.context import NodeContext
from iptables_lens.trace.decide import Undecided
from iptables_lens.trace.walk import State

ABSENT: Any = object()
"""What a selector reads when the packet has no such field: the rule does not match."""

# The kernel's ct state bits (NF_CT_STATE_BIT) and ct status bits (IPS_SRC_NAT, IPS_DST_NAT) for the walk's
# names of a connection's state.
_CT_STATE_BITS = {"INVALID": 1, "ESTABLISHED": 2, "RELATED": 4, "NEW": 8, "UNTRACKED": 64}
_CT_STATUS_BITS = {"SNAT": 16, "DNAT": 32}
_TCP_FLAG_BITS = {"FIN": 0x01, "SYN": 0x02, "RST": 0x04, "PSH": 0x08, "ACK": 0x10, "URG": 0x20, "ECE": 0x40,
                  "CWR": 0x80}
_TRANSPORT = frozenset({"tcp", "udp", "udplite", "sctp", "dccp"})
_NFPROTO = {4: 2, 6: 10}
_ETHERTYPE = {4: 0x0800, 6: 0x86DD}
_ARPHRD = {"lo": 772}  # every other interface of a traced node is an Ethernet one (ARPHRD_ETHER, 1)


def protocol_number(name: str) -> int:
    """IANA's number of a transport protocol the walk names ("tcp" is 6)."""
    return NETBASE_NUMBERS[name]


@lru_cache(maxsize=1 << 18)  # a 10,000-Service ruleset has some 100,000 distinct constants
def constant(c: m.Const) -> Any:
    """The value of a constant of the listing, in the form selectors read: numbers for symbols, addresses."""
    datatype = DATATYPES.get(c.type)
    value = c.value
    if datatype is None or isinstance(value, bool):
        return value
    if datatype.kind in ("ipv4", "ipv6") and isinstance(value, str):
        return ipaddress.ip_address(value)
    if isinstance(value, str) and datatype.kind in ("symbolic", "bitmask", "boolean"):
        number = datatype.number(value)
        if number is None and c.type == "inet_proto":
            number = NETBASE_NUMBERS.get(value)
        if number is not None:
            return number
    return value


class Reading:
    """What evaluating one statement may look at: the branch, the node, the value each numgen of the statement
    was given on this branch, and how to look a named set up. (A plain class: one is made for every rule a
    packet meets.)"""

    __slots__ = ("lookup", "node", "numgen", "state")

    def __init__(self, state: State, node: NodeContext, numgen: dict[sel.Numgen, int] | None = None,
                 lookup: Callable[[str], SetIndex] | None = None):
        self.state = state
        self.node = node
        self.numgen = numgen if numgen is not None else {}
        self.lookup = lookup


def read(expr: m.Expr, r: Reading) -> Any:
    """The value `expr` gives for the branch: a number, address, name, tuple, or ABSENT."""
    reader = _READERS.get(type(expr))
    if reader is None:
        raise Undecided(f"{type(expr).__name__.lower()} expressions are not modelled by the tracer")
    return reader(expr, r)


def _payload(e: sel.Payload, r: Reading) -> Any:
    p = r.state.packet
    proto, name = e.protocol, e.field
    if proto in ("ip", "ip6"):
        if p.family != (4 if proto == "ip" else 6):
            return ABSENT
        if name in ("saddr", "daddr"):
            return p.src if name == "saddr" else p.dst
        if name in ("protocol", "nexthdr"):
            return protocol_number(p.protocol)
        if name == "version":
            return p.family
        raise Undecided(f"{proto} {name} of the packet is not known to the tracer")
    if proto == "th" or proto in _TRANSPORT:
        if p.protocol not in _TRANSPORT or (proto != "th" and p.protocol != proto):
            return ABSENT
        if name in ("sport", "dport"):
            return _known(p.sport if name == "sport" else p.dport, name)
        if proto == "tcp" and name == "flags":
            return sum(_TCP_FLAG_BITS.get(f.upper(), 0) for f in p.tcp_flags)
        raise Undecided(f"{proto} {name} of the packet is not known to the tracer")
    if proto in ("icmp", "icmpv6"):
        if p.protocol != proto or (proto == "icmp") != (p.family == 4):
            return ABSENT
        if name in ("type", "code"):
            return _known(p.icmp_type if name == "type" else p.icmp_code, f"{proto} {name}")
    raise Undecided(f"{proto} {name} of the packet is not known to the tracer")


def _known(value: int | None, what: str) -> int:
    if value is None:
        raise Undecided(f"the packet's {what} is not known")
    return value


def _meta(e: sel.Meta, r: Reading) -> Any:
    s, p = r.state, r.state.packet
    key = e.key
    if key == "mark":
        return s.mark
    if key == "l4proto":
        return protocol_number(p.protocol)
    if key == "nfproto":
        return _NFPROTO[p.family]
    if key == "protocol":
        return _ETHERTYPE[p.family]
    if key in ("iif", "iifname", "oif", "oifname", "iiftype", "oiftype"):
        device = s.iif if key.startswith("i") else s.oif
        if device is None:
            return ABSENT  # no such device at this hook: nft's meta breaks the rule
        return _ARPHRD.get(device, 1) if key.endswith("type") else device
    if key == "pkttype":
        if p.dst.is_multicast:
            return 2
        return 1 if r.node.address_type(p.dst) == "BROADCAST" else 0
    raise Undecided(f"meta {key} is not known to the tracer")


def _ct(e: sel.Ct, r: Reading) -> Any:
    s = r.state
    key = e.key
    if key == "state":
        return sum(_CT_STATE_BITS.get(name, 0) for name in s.ctstate)
    if s.untracked:
        return ABSENT  # every other ct key reads a connection, which an untracked packet has not
    if key == "status":
        return sum(_CT_STATUS_BITS.get(name, 0) for name in s.ctstate)
    if key == "mark":
        return s.ctmark
    if key == "direction":
        return 0  # the traced packet is the first of its connection: the original direction
    original = e.direction != "reply"
    if key in ("saddr", "daddr", "ip saddr", "ip daddr", "ip6 saddr", "ip6 daddr"):
        family = key.split()[0] if " " in key else None
        if family is not None and (family == "ip") != (s.packet.family == 4):
            return ABSENT
        source = key.endswith("saddr")
        if original:
            return s.original.src if source else s.original.dst
        # The reply tuple is the translated packet seen the other way round.
        return s.packet.dst if source else s.packet.src
    if key in ("proto-src", "proto-dst"):
        source = key == "proto-src"
        if original:
            return s.original.sport if source else s.original.dport
        return s.packet.dport if source else s.packet.sport
    if key == "l3proto":
        return _NFPROTO[s.packet.family]
    if key == "protocol":
        return protocol_number(s.packet.protocol)
    raise Undecided(f"ct {key} is not known to the tracer")


def _fib(e: sel.Fib, r: Reading) -> Any:
    s, p = r.state, r.state.packet
    address = p.src if "saddr" in e.flags else p.dst
    interface = s.iif if "iif" in e.flags else s.oif if "oif" in e.flags else None
    if e.result == "type":
        if ("iif" in e.flags or "oif" in e.flags) and interface is None:
            return ABSENT
        return DATATYPES["fib_addrtype"].number(r.node.address_type(address, interface).lower())
    if e.result in ("oif", "oifname"):
        route = r.node.route(address)
        if route is None:
            return None  # no route: `missing`
        device = route.device
        if device == "lo" and s.iif != "lo":
            # For one of the node's own addresses the kernel's nft_fib4_eval stores no device, unless the packet
            # came in on the loopback (checked on 6.18: `fib daddr oif missing` holds for a packet from eth0).
            return None
        if interface is not None and device != interface:
            return None  # not by that interface
        return device
    raise Undecided(f"fib {e.result} is not known to the tracer")


def _numgen(e: sel.Numgen, r: Reading) -> Any:
    return r.numgen[e]


def _hash(e: sel.Hash, r: Reading) -> Any:
    raise Undecided(f"{e.kind} mod {e.mod}: which number a hash of the packet gives is not known to the tracer")


def _binop(e: m.Binop, r: Reading) -> Any:
    left, right = read(e.left, r), read(e.right, r)
    if left is ABSENT or right is ABSENT:
        return ABSENT
    op = e.op
    if op == "&":
        return left & right
    if op == "|":
        return left | right
    if op == "^":
        return left ^ right
    return left << right if op == "<<" else left >> right


def _concat(e: m.Concat, r: Reading) -> Any:
    values = []
    for item in e.items:
        value = _READERS[type(item)](item, r) if type(item) in _READERS else read(item, r)
        if value is ABSENT:
            return ABSENT
        values.append(value)
    return tuple(values)


def _const(e: m.Const, r: Reading) -> Any:
    return constant(e)


def _map_lookup(e: m.MapLookup, r: Reading) -> Any:
    key = read(e.key, r)
    if key is ABSENT:
        return ABSENT
    element = elements_of(e.data, r).find(key, r.state)
    if element is None or element.data is None:
        return ABSENT  # not in the map: the rule breaks here
    return read(element.data, r)


_READERS: dict[type, Callable[[Any, Reading], Any]] = {
    sel.Payload: _payload, sel.Meta: _meta, sel.Ct: _ct, sel.Fib: _fib, sel.Numgen: _numgen, sel.Hash: _hash,
    m.Binop: _binop, m.Concat: _concat, m.Const: _const, m.MapLookup: _map_lookup,
}


# -- matching ---------------------------------------------------------------------------------------------------


def holds(match: m.Match, r: Reading) -> bool:
    """Whether `match` holds for the branch."""
    value = read(match.left, r)
    if value is ABSENT:
        return False
    right, op = match.right, match.op
    if isinstance(right, (m.SetRef, m.SetLiteral)):
        found = elements_of(right, r).find(value, r.state) is not None
        return found if op != "!=" else not found
    if op == "in":
        return bool(value & _flags(right)) if isinstance(right, (m.Const, m.ValueList)) else _equal(value, right)
    if op == "==":
        return _equal(value, right)
    if op == "!=":
        if isinstance(right, m.ValueList) or (isinstance(right, m.Const) and _is_bitmask(right)):
            return not value & _flags(right)
        return not _equal(value, right)
    bound = constant(right) if isinstance(right, m.Const) else None
    if bound is None:
        raise Undecided(f"comparing with {op} against {type(right).__name__} is not modelled")
    return {"<": value < bound, ">": value > bound, "<=": value <= bound, ">=": value >= bound}[op]


@lru_cache(maxsize=4096)
def _network(base: Any, length: int) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
    return ipaddress.ip_network(f"{base}/{length}", strict=False)


def compile_match(match: m.Match) -> Callable[[Reading], bool]:
    """`holds` for one match, with what can be worked out once worked out: the reader of its left side and
    the constant, network or set name it is compared with. A tracer evaluates the same few matches of
    kube-proxy's chains for every packet."""
    left, right, op = match.left, match.right, match.op
    reader = _READERS.get(type(left))
    if reader is None or op not in ("==", "!="):
        return partial(holds, match)
    equal = op == "=="
    if isinstance(right, m.SetRef):
        def in_set(r: Reading) -> bool:
            value = reader(left, r)
            return value is not ABSENT and (elements_of(right, r).find(value, r.state) is not None) == equal
        return in_set
    if isinstance(right, m.Prefix):
        network = _network(constant(right.base), right.length)

        def in_network(r: Reading) -> bool:
            value = reader(left, r)
            return value is not ABSENT and _in_network(value, network) == equal
        return in_network
    if isinstance(right, m.Const) and not _is_bitmask(right):
        expected = constant(right)
        if isinstance(expected, (bool, str)):
            return partial(holds, match)  # `exists`, interface wildcards

        def is_constant(r: Reading) -> bool:
            value = reader(left, r)
            return value is not ABSENT and (value == expected) == equal
        return is_constant
    return partial(holds, match)


def _in_network(value: Any, network: ipaddress.IPv4Network | ipaddress.IPv6Network) -> bool:
    """Whether `value` is an address of the network's family inside it."""
    return getattr(value, "version", None) == network.version and value in network


def _is_bitmask(c: m.Const) -> bool:
    datatype = DATATYPES.get(c.type)
    return datatype is not None and datatype.kind == "bitmask"


def _flags(right: m.Expr) -> int:
    items = right.items if isinstance(right, m.ValueList) else (right,)
    return sum(constant(item) for item in items if isinstance(item, m.Const))


def _equal(value: Any, right: m.Expr) -> bool:
    """Whether `value` is `right`: a constant, a network, a range, a concatenation of those."""
    if isinstance(right, m.Const):
        expected = constant(right)
        if isinstance(expected, bool):
            return (value is not None) == expected  # `exists` / `missing`
        if isinstance(expected, str) and isinstance(value, str) and expected.endswith("*"):
            return fnmatch.fnmatchcase(value, expected.replace("\\*", "*"))  # an interface name's wildcard
        return value == expected
    if isinstance(right, m.Prefix):
        return _in_network(value, _network(constant(right.base), right.length))
    if isinstance(right, m.Range) and isinstance(right.low, m.Const) and isinstance(right.high, m.Const):
        low, high = constant(right.low), constant(right.high)
        try:
            return bool(low <= value <= high)
        except TypeError:  # an address of the other family
            return False
    if isinstance(right, m.Concat):
        return (isinstance(value, tuple) and len(value) == len(right.items)
                and all(_equal(v, item) for v, item in zip(value, right.items, strict=True)))
    if isinstance(right, m.ValueList):
        return value == _flags(right)
    raise Undecided(f"comparing with {type(right).__name__} is not modelled")


# -- sets and maps -------------------------------------------------------------------------------------------------


class SetIndex:
    """The elements of a set or map, found by a key: exact keys through a dict (kube-proxy's maps hold one
    element per Service port), networks, ranges and wildcards by a scan. A dynamic set (`update @set` fills it
    as packets pass) also holds the packet's key when the branch says the client is already in it (its
    `recent` names: the returning client of session affinity)."""

    def __init__(self, name: str | None, elements: tuple[m.Element, ...], dynamic: bool = False):
        self.name = name
        self.dynamic = dynamic
        self.exact: dict[Any, m.Element] = {}
        self.scanned: list[m.Element] = []
        for element in elements:
            key = _exact_key(element.key)
            if key is None:
                self.scanned.append(element)
            else:
                self.exact.setdefault(key, element)

    def find(self, key: Any, state: State) -> m.Element | None:
        """The element `key` falls in, or None."""
        element = self.exact.get(key)
        if element is not None:
            return element
        for element in self.scanned:
            if _equal(key, element.key):
                return element
        if self.dynamic and self.name in state.recent:
            return m.Element(m.Const("integer", 0))  # the returning client's own entry, as the set holds it
        return None


def _exact_key(key: m.Expr) -> Any:
    if isinstance(key, m.Const):
        value = constant(key)
        return None if isinstance(value, (str, bool)) else value
    if isinstance(key, m.Concat):
        items = tuple(_exact_key(item) for item in key.items)
        return None if any(item is None for item in items) else items
    return None


@lru_cache(maxsize=4096)
def _literal_index(literal: m.SetLiteral) -> SetIndex:
    return SetIndex(None, literal.elements)


def elements_of(container: m.SetLiteral | m.SetRef, r: Reading) -> SetIndex:
    """The index of an anonymous set written in the rule, or of a named set of the rule's table."""
    if isinstance(container, m.SetLiteral):
        return _literal_index(container)
    if r.lookup is None:
        raise Undecided(f"@{container.name}: no table to look the set up in")
    return r.lookup(container.name)
