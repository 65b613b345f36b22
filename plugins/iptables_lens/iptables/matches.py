"""Does a rule match a packet? Criteria and match modules, as the kernel decides them.

Each criterion flag (`-s`, `-p`, ...) and each match module (`-m tcp`, `-m statistic`, ...) has an evaluator
in a registry, as `explain` has a phrase maker per module. A module evaluator answers True or False, or a
`Split` when the match holds only with a probability (`-m statistic`); it raises `Undecided` when the result
depends on something the tracer does not have. Every module the parser knows (`xtables.KNOWN_MATCHES`) has
an evaluator or is listed in `UNDECIDED_MATCHES` with the reason, and a test keeps it so.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from fractions import Fraction
from functools import lru_cache

from iptables_lens.iptables import protocols, values
from iptables_lens.iptables.model import Criterion, Match, Option
from iptables_lens.trace.decide import Split, Undecided
from iptables_lens.trace.packet import Address, Packet


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
    address_type: Callable[[Address, str | None], str]  # NodeContext.address_type


CriterionEvaluator = Callable[[Criterion, Facts], bool]
MatchEvaluator = Callable[[Match, Facts], "bool | Split"]


def criterion_holds(c: Criterion, f: Facts) -> bool:
    """Whether criterion `c` (negation included) holds; raises Undecided when it cannot be known."""
    return CRITERION_EVALUATORS[c.flag](c, f) != c.negated


def module_result(m: Match, f: Facts) -> bool | Split:
    """Whether match module `m` holds; a Split for -m statistic; raises Undecided when it cannot be known."""
    evaluator = MATCH_EVALUATORS.get(m.module)
    if evaluator is None:
        raise Undecided(f"-m {m.module} depends on state the tracer does not have")
    return evaluator(m, f)


# -- criteria -------------------------------------------------------------------------------------------------


# A dump names the same networks, ports and marks over and over, and a trace reads them at every rule it
# passes: each text is read once.
_networks = lru_cache(maxsize=1 << 16)(values.networks)
_port_range = lru_cache(maxsize=1 << 16)(values.port_range)
_read_mark = lru_cache(maxsize=1 << 10)(values.mark)
_probability = lru_cache(maxsize=1 << 12)(values.statistic_probability)


def _in_any(address: Address, value: str) -> bool:
    return any(address in network for network in _networks(value, address.version))


def _iface_matches(pattern: str, name: str | None) -> bool:
    if name is None:
        raise Undecided(f"the interface is not known here, so '{pattern}' cannot be decided")
    if pattern.endswith("+"):
        return name.startswith(pattern[:-1])
    return name == pattern


# `-p` by number, as the kernel compares it: `-p 6`, `-p TCP` and `-p tcp` are one protocol, `all` is 0.
_protocol_number = lru_cache(maxsize=1 << 10)(protocols.protocol)


def _protocol(c: Criterion, f: Facts) -> bool:
    wanted = _protocol_number(c.value)
    return wanted == 0 or wanted == _protocol_number(f.packet.protocol)


CRITERION_EVALUATORS: dict[str, CriterionEvaluator] = {
    "-s": lambda c, f: _in_any(f.packet.src, c.value),
    "-d": lambda c, f: _in_any(f.packet.dst, c.value),
    "-p": _protocol,
    "-i": lambda c, f: _iface_matches(c.value, f.iif),
    "-o": lambda c, f: _iface_matches(c.value, f.oif),
    # The first packet of a connection is never a later fragment.
    "-f": lambda c, f: False,
}


# -- match modules --------------------------------------------------------------------------------------------


def _port_in(port: int | None, spec: str) -> bool:
    if port is None:
        return False
    low, high = _port_range(spec)
    return low <= port <= high


def _always(m: Match, f: Facts) -> bool:
    return True


def _each_option_holds(m: Match, holds: Callable[[Option], bool | None]) -> bool:
    """Whether every option of `m` holds, its negation applied; `holds` answers None for an option that tests
    nothing. Every option is looked at, so one that is not modelled is reported even after one that fails."""
    ok = True
    for o in m.options:
        r = holds(o)
        if r is not None:
            ok = ok and (r != o.negated)
    return ok


def _ports(m: Match, f: Facts) -> bool:
    p = f.packet

    def holds(o: Option) -> bool:
        if o.name == "--dport":
            return _port_in(p.dport, o.value)
        if o.name == "--sport":
            return _port_in(p.sport, o.value)
        if o.name == "--syn":
            return p.tcp_flags >= {"SYN"} and not (p.tcp_flags & {"ACK", "RST", "FIN"})
        if o.name == "--tcp-flags":
            mask, comp = (set(x.split(",")) for x in o.values)
            mask = {"SYN", "ACK", "FIN", "RST", "URG", "PSH"} if "ALL" in mask else mask
            return (p.tcp_flags & mask) == (comp - {"NONE"})
        raise Undecided(f"-m {m.module} {o.name} is not modelled")

    every = _each_option_holds(m, holds)
    return p.protocol == m.module and every


def _multiport(m: Match, f: Facts) -> bool:
    p = f.packet

    def holds(o: Option) -> bool:
        ports = o.value.split(",")
        if o.name in ("--dports", "--destination-ports"):
            return any(_port_in(p.dport, x) for x in ports)
        if o.name in ("--sports", "--source-ports"):
            return any(_port_in(p.sport, x) for x in ports)
        return any(_port_in(p.dport, x) or _port_in(p.sport, x) for x in ports)

    return _each_option_holds(m, holds)


def _addrtype(m: Match, f: Facts) -> bool:
    p = f.packet
    limit_in = m.option("--limit-iface-in") is not None
    limit_out = m.option("--limit-iface-out") is not None
    iface = f.iif if limit_in else f.oif if limit_out else None
    if (limit_in or limit_out) and iface is None:
        raise Undecided("addrtype --limit-iface-* needs the interface, which is not known at this hook")

    def holds(o: Option) -> bool | None:
        if o.name == "--src-type":
            return f.address_type(p.src, iface) in o.value.split(",")
        if o.name == "--dst-type":
            return f.address_type(p.dst, iface) in o.value.split(",")
        return None

    return _each_option_holds(m, holds)


def _conntrack(m: Match, f: Facts) -> bool:
    def holds(o: Option) -> bool:
        if o.name in ("--ctstate", "--state"):
            return bool(f.ctstate & set(o.value.split(",")))
        if o.name == "--ctproto":
            return o.value.lower() == f.packet.protocol
        if o.name == "--ctorigsrc":
            return any(f.original.src in n for n in _networks(o.value, f.original.src.version))
        if o.name == "--ctorigdst":
            return any(f.original.dst in n for n in _networks(o.value, f.original.dst.version))
        if o.name == "--ctorigdstport":
            return _port_in(f.original.dport, o.value)
        if o.name == "--ctorigsrcport":
            return _port_in(f.original.sport, o.value)
        if o.name == "--ctstatus":
            # The first packet: not yet seen a reply, not assured, not confirmed until it leaves.
            return "NONE" in o.value.split(",")
        if o.name == "--ctdir":
            return o.value == "ORIGINAL"
        raise Undecided(f"-m conntrack {o.name} is not modelled")

    return _each_option_holds(m, holds)


def _mark(m: Match, f: Facts) -> bool:
    o = m.options[0]
    return _read_mark(o.value).matches(f.mark) != o.negated


def _connmark(m: Match, f: Facts) -> bool:
    o = m.options[0]
    return _read_mark(o.value).matches(f.ctmark) != o.negated


def _statistic(m: Match, f: Facts) -> Split:
    mode = m.option("--mode")
    if mode and mode.value == "random":
        chance = m.option("--probability")
        if chance is None:
            raise Undecided("-m statistic --mode random without --probability")
        probability = _probability(chance.value)
        if chance.negated:
            probability = 1 - probability
        return Split(probability, f"picked with probability {probability}", f"passed over ({1 - probability})")
    every = m.option("--every")
    if mode and mode.value == "nth" and every:
        n = values.unsigned(every.value)
        # Over many connections each slot of the rotation comes up once in `every`.
        probability = Fraction(1, n)
        if every.negated:
            probability = 1 - probability
        return Split(probability, f"its turn in every {n} (nth mode)", "not its turn (nth mode)")
    raise Undecided("-m statistic without a mode the tracer knows")


def _recent(m: Match, f: Facts) -> bool:
    named = m.option("--name")
    list_name = named.value if named else "DEFAULT"
    for o in m.options:
        if o.name in ("--rcheck", "--update", "--remove"):
            present = list_name in f.recent
            return present != o.negated
        if o.name == "--set":
            return not o.negated
    raise Undecided("-m recent without --set/--rcheck/--update/--remove")


_ICMP_PROTOCOL = {4: 1, 6: 58}
_ANY_ICMP_TYPE = 0xFF  # "any": the kernel's icmp_type_code_match takes every type for it


def _icmp(m: Match, f: Facts) -> bool:
    """`-m icmp --icmp-type` and `-m icmp6 --icmpv6-type`: the packet is ICMP of its family, of that type, with
    a code in the range the type names (a bare type takes every code)."""
    p = f.packet
    o = m.options[0]
    kind, low, high = _icmp_type(o.value, p.family)
    code = p.icmp_code if p.icmp_code is not None else 0
    ok = _protocol_number(p.protocol) == _ICMP_PROTOCOL[p.family] and (
        kind == _ANY_ICMP_TYPE or (p.icmp_type == kind and low <= code <= high))
    return ok != o.negated


_icmp_type = lru_cache(maxsize=1 << 10)(protocols.icmp_type)


def _iprange(m: Match, f: Facts) -> bool:
    def holds(o: Option) -> bool:
        address = f.packet.src if o.name == "--src-range" else f.packet.dst
        first, last = values.address_range(o.value, address.version)
        return first <= address <= last  # type: ignore[operator]

    return _each_option_holds(m, holds)


def _pkttype(m: Match, f: Facts) -> bool:
    o = m.options[0]
    kind = f.address_type(f.packet.dst, None)
    actual = "broadcast" if kind == "BROADCAST" else "multicast" if kind == "MULTICAST" else "unicast"
    return (actual == o.value) != o.negated


MATCH_EVALUATORS: dict[str, MatchEvaluator] = {
    # They never change a rule's verdict.
    "comment": _always, "helper": _always,
    "tcp": _ports, "udp": _ports, "sctp": _ports,
    "multiport": _multiport,
    "addrtype": _addrtype,
    "conntrack": _conntrack, "state": _conntrack,
    "mark": _mark, "connmark": _connmark,
    "statistic": _statistic,
    "recent": _recent,
    "icmp": _icmp, "icmp6": _icmp,
    "iprange": _iprange,
    "pkttype": _pkttype,
}

# The modules iptables knows that the tracer leaves undecided, and why: the answer depends on something a
# trace does not have (the packets before this one, the payload, the socket, the node's other state).
_PAST_PACKETS = "counts or rates over the packets before this one"
_NOT_IN_PACKET = "a header field the traced packet does not carry"
_EXTENSION_HEADERS = "IPv6 extension headers are not modelled"
UNDECIDED_MATCHES: dict[str, str] = {
    "ah": "the IPsec AH header (SPI) is not modelled",
    "esp": "the IPsec ESP header (SPI) is not modelled",
    "policy": "IPsec policies are not part of the node",
    "bpf": "runs a BPF program over the packet's bytes",
    "u32": "reads raw bytes of the packet",
    "string": "the payload is not modelled",
    "cgroup": "the sending socket's cgroup is not known",
    "owner": "the sending socket's owner is not known",
    "socket": "whether a local socket takes the packet is not known",
    "cluster": "the node's share of the cluster hash is not known",
    "cpu": "the CPU that handles the packet is not known",
    "time": "the time the packet arrives is not known",
    "connbytes": _PAST_PACKETS,
    "connlimit": "counts the other connections of the node",
    "connlabel": "conntrack labels are not tracked",
    "hashlimit": _PAST_PACKETS,
    "limit": _PAST_PACKETS,
    "quota": _PAST_PACKETS,
    "rateest": _PAST_PACKETS,
    "nfacct": _PAST_PACKETS,
    "dscp": _NOT_IN_PACKET,
    "tos": _NOT_IN_PACKET,
    "ecn": _NOT_IN_PACKET,
    "ttl": _NOT_IN_PACKET,
    "hl": _NOT_IN_PACKET,
    "length": _NOT_IN_PACKET,
    "tcpmss": _NOT_IN_PACKET,
    "mac": "the sender's MAC address is not known",
    "osf": "reads the TCP options of the SYN",
    "dccp": "DCCP is not modelled",
    "udplite": "UDP-Lite is not modelled",
    "devgroup": "interface groups are not part of the node",
    "physdev": "bridge ports are not part of the node",
    "realm": "routing realms are not part of the node's routes",
    "rpfilter": "the reverse-path lookup is not modelled",
    "ipvs": "IPVS state is not modelled",
    "set": "ipset members are not in the dump",
    # Modules the parser learnt with IPv6 (ip6tables' own, and ipcomp).
    "ipcomp": "the IPsec IPComp header (CPI) is not modelled",
    "eui64": "the sender's MAC address is not known",
    "rt": _EXTENSION_HEADERS,
    "frag": _EXTENSION_HEADERS,
    "hbh": _EXTENSION_HEADERS,
    "dst": _EXTENSION_HEADERS,
    "ipv6header": _EXTENSION_HEADERS,
    "srh": _EXTENSION_HEADERS,
    "mh": "the mobility header is not modelled",
}
