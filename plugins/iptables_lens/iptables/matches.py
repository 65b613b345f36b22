"""Does a rule match a packet? Criteria and match modules, as the kernel decides them.

`evaluate` answers with a list of branches, because some matches split the way: `-m statistic` matches
with a probability, and a match the tracer cannot decide (`-m limit`, an ipset's members) is reported as
such instead of being guessed.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from fractions import Fraction

from iptables_lens.iptables.model import Criterion, Match, Rule
from iptables_lens.trace.packet import ICMP_TYPES, IPv4, Packet

# Matches that never change the verdict of a rule.
ALWAYS = frozenset({"comment", "helper"})


@dataclass(frozen=True)
class Facts:
    """What a match may look at besides the packet itself."""

    packet: Packet
    original: Packet
    hook: str
    iif: str | None
    oif: str | None
    mark: int
    ctmark: int
    ctstate: frozenset[str]  # NEW, ESTABLISHED, ..., plus DNAT / SNAT once translated
    recent: frozenset[str]
    address_type: object  # callable(address, limit_iface) -> str


class Undecided(Exception):
    """A match whose result the tracer cannot know; the message says which and why."""


@dataclass(frozen=True)
class Split:
    """A match that holds with `probability` (and not otherwise), with a label for each side."""

    probability: Fraction
    label: str
    otherwise: str


def _network(value: str) -> ipaddress.IPv4Network:
    return ipaddress.IPv4Network(value, strict=False)


def _in_any(address: IPv4, value: str) -> bool:
    return any(address in _network(v) for v in value.split(","))


def _iface_matches(pattern: str, name: str | None) -> bool:
    if name is None:
        raise Undecided(f"the interface is not known here, so '{pattern}' cannot be decided")
    if pattern.endswith("+"):
        return name.startswith(pattern[:-1])
    return name == pattern


def criterion_holds(c: Criterion, f: Facts) -> bool:
    p = f.packet
    if c.flag == "-s":
        result = _in_any(p.src, c.value)
    elif c.flag == "-d":
        result = _in_any(p.dst, c.value)
    elif c.flag == "-p":
        result = c.value.lower() in ("all", "0") or c.value.lower() == p.protocol or _proto_number(c.value) == p.protocol
    elif c.flag == "-i":
        result = _iface_matches(c.value, f.iif)
    elif c.flag == "-o":
        result = _iface_matches(c.value, f.oif)
    elif c.flag == "-f":
        result = False  # the first packet of a connection is never a later fragment
    else:  # pragma: no cover - the parser knows no other flag
        raise AssertionError(c.flag)
    return result != c.negated


def _proto_number(value: str) -> str | None:
    return {"6": "tcp", "17": "udp", "1": "icmp", "132": "sctp"}.get(value)


def _port_in(port: int | None, spec: str) -> bool:
    if port is None:
        return False
    lo, sep, hi = spec.partition(":")
    low = int(lo) if lo else 0
    high = int(hi) if sep and hi else (65535 if sep else low)
    return low <= port <= high


def _mark_matches(value: int, spec: str) -> bool:
    want, _, mask = spec.partition("/")
    mask_value = int(mask, 0) if mask else 0xFFFFFFFF
    return (value & mask_value) == int(want, 0)


def _nominal(probability: str) -> Fraction:
    """The probability the rule's author meant. The kernel keeps `--probability` as a 31-bit fraction
    (iptables-save prints that with 11 decimals, 1/3 as 0.33333333349); the simplest fraction within that
    precision is the one meant."""
    exact = Fraction(round(float(probability) * 0x80000000), 0x80000000)
    simple = exact.limit_denominator(10_000)
    return simple if abs(simple - exact) <= Fraction(1, 0x80000000) else exact


def module_result(rule: Rule, m: Match, f: Facts) -> bool | Split:
    """Whether match module `m` holds; a Split for -m statistic; raises Undecided when it cannot be known."""
    name = m.module
    p = f.packet
    if name in ALWAYS:
        return True
    if name in ("tcp", "udp", "sctp"):
        ok = p.protocol == name
        for o in m.options:
            if o.name == "--dport":
                r = _port_in(p.dport, o.value)
            elif o.name == "--sport":
                r = _port_in(p.sport, o.value)
            elif o.name == "--syn":
                r = p.tcp_flags >= {"SYN"} and not (p.tcp_flags & {"ACK", "RST", "FIN"})
            elif o.name == "--tcp-flags":
                mask, comp = (set(x.split(",")) for x in o.values)
                mask = {"SYN", "ACK", "FIN", "RST", "URG", "PSH"} if "ALL" in mask else mask
                r = (p.tcp_flags & mask) == (comp - {"NONE"})
            else:
                raise Undecided(f"-m {name} {o.name} is not modelled")
            ok = ok and (r != o.negated)
        return ok
    if name == "multiport":
        ok = True
        for o in m.options:
            ports = o.value.split(",")
            if o.name in ("--dports", "--destination-ports"):
                r = any(_port_in(p.dport, x) for x in ports)
            elif o.name in ("--sports", "--source-ports"):
                r = any(_port_in(p.sport, x) for x in ports)
            else:
                r = any(_port_in(p.dport, x) or _port_in(p.sport, x) for x in ports)
            ok = ok and (r != o.negated)
        return ok
    if name == "addrtype":
        limit_in = m.option("--limit-iface-in") is not None
        limit_out = m.option("--limit-iface-out") is not None
        iface = f.iif if limit_in else f.oif if limit_out else None
        if (limit_in or limit_out) and iface is None:
            raise Undecided("addrtype --limit-iface-* needs the interface, which is not known at this hook")
        ok = True
        for o in m.options:
            if o.name == "--src-type":
                r = f.address_type(p.src, iface) in o.value.split(",")  # type: ignore[operator]
            elif o.name == "--dst-type":
                r = f.address_type(p.dst, iface) in o.value.split(",")  # type: ignore[operator]
            else:
                continue
            ok = ok and (r != o.negated)
        return ok
    if name in ("conntrack", "state"):
        ok = True
        for o in m.options:
            if o.name in ("--ctstate", "--state"):
                r = bool(f.ctstate & set(o.value.split(",")))
            elif o.name == "--ctproto":
                r = o.value.lower() == p.protocol
            elif o.name == "--ctorigsrc":
                r = f.original.src in _network(o.value)
            elif o.name == "--ctorigdst":
                r = f.original.dst in _network(o.value)
            elif o.name == "--ctorigdstport":
                r = _port_in(f.original.dport, o.value)
            elif o.name == "--ctorigsrcport":
                r = _port_in(f.original.sport, o.value)
            elif o.name == "--ctstatus":
                # The first packet: not yet seen a reply, not assured, not confirmed until it leaves.
                r = "NONE" in o.value.split(",")
            elif o.name == "--ctdir":
                r = o.value == "ORIGINAL"
            else:
                raise Undecided(f"-m conntrack {o.name} is not modelled")
            ok = ok and (r != o.negated)
        return ok
    if name == "mark":
        o = m.options[0]
        return _mark_matches(f.mark, o.value) != o.negated
    if name == "connmark":
        o = m.options[0]
        return _mark_matches(f.ctmark, o.value) != o.negated
    if name == "statistic":
        mode = m.option("--mode")
        if mode and mode.value == "random":
            chance = m.option("--probability")
            if chance is None:
                raise Undecided("-m statistic --mode random without --probability")
            probability = _nominal(chance.value)
            if chance.negated:
                probability = 1 - probability
            return Split(probability, f"picked with probability {probability}", f"passed over ({1 - probability})")
        every = m.option("--every")
        if mode and mode.value == "nth" and every:
            n = int(every.value, 0)
            # Over many connections each slot of the rotation comes up once in `every`.
            probability = Fraction(1, n)
            if every.negated:
                probability = 1 - probability
            return Split(probability, f"its turn in every {n} (nth mode)", "not its turn (nth mode)")
        raise Undecided("-m statistic without a mode the tracer knows")
    if name == "recent":
        list_name = (m.option("--name").value if m.option("--name") else "DEFAULT")  # type: ignore[union-attr]
        for o in m.options:
            if o.name in ("--rcheck", "--update", "--remove"):
                present = list_name in f.recent
                return present != o.negated
            if o.name == "--set":
                return not o.negated
        raise Undecided("-m recent without --set/--rcheck/--update/--remove")
    if name == "icmp":
        o = m.options[0]
        want_type, want_code = _icmp_spec(o.value)
        ok = p.protocol == "icmp" and (want_type is None or p.icmp_type == want_type) and (
            want_code is None or p.icmp_code == want_code)
        return ok != o.negated
    if name == "iprange":
        ok = True
        for o in m.options:
            lo, _, hi = o.value.partition("-")
            address = p.src if o.name == "--src-range" else p.dst
            r = IPv4(lo) <= address <= IPv4(hi or lo)
            ok = ok and (r != o.negated)
        return ok
    if name == "pkttype":
        o = m.options[0]
        kind = f.address_type(p.dst, None)  # type: ignore[operator]
        actual = "broadcast" if kind == "BROADCAST" else "multicast" if kind == "MULTICAST" else "unicast"
        return (actual == o.value) != o.negated
    raise Undecided(f"-m {name} depends on state the tracer does not have")


def _icmp_spec(value: str) -> tuple[int | None, int | None]:
    if value in ICMP_TYPES:
        return ICMP_TYPES[value]
    kind, _, code = value.partition("/")
    return int(kind), (int(code) if code else None)
