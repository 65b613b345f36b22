"""Phrases for match modules: one explainer per module, in `MATCH_EXPLAINERS`.

An explainer gets the match and returns a phrase for each thing it tests ("only to port 80"); an option it
does not know becomes a phrase of its own that shows the option's text followed by "(not explained)", so
nothing a rule tests goes unmentioned. Values are read through `values`, as the parser checked them.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from iptables_lens.iptables import protocols, values
from iptables_lens.iptables.explain.words import join_and, join_or, plain_address, protocol_name
from iptables_lens.iptables.fmt import format_option
from iptables_lens.iptables.model import Match, Option

MatchExplainer = Callable[[Match], list[str]]


def match_phrases(match: Match) -> list[str]:
    """The phrases for one match module: one per option it tests, as a rule's conditions list them."""
    explainer = MATCH_EXPLAINERS.get(match.module)
    if explainer is None:
        return [_not_explained(match, match.options)]
    return explainer(match)


def _not_explained(match: Match, options: Sequence[Option]) -> str:
    text = " ".join(["-m", match.module, *(format_option(o) for o in options)])
    return f"{text} (not explained)"


def _explain_options(
    match: Match, explain_option: Callable[[Option], str | None], skip: frozenset[str] = frozenset()
) -> list[str]:
    """One phrase per option that `explain_option` knows; the options it does not know make one more phrase,
    so that nothing the rule tests goes unmentioned."""
    phrases: list[str] = []
    unknown: list[Option] = []
    for option in match.options:
        if option.name in skip:
            continue
        phrase = explain_option(option)
        if phrase is None:
            unknown.append(option)
        else:
            phrases.append(phrase)
    if unknown:
        phrases.append(_not_explained(match, unknown))
    return phrases


def _only(option: Option) -> str:
    return "not" if option.negated else "only"


def _span(written: str, low: int, high: int) -> str:
    """"80", or "1000 to 2000" for what was written as a range (a missing end read as iptables reads it)."""
    return f"{low} to {high}" if ":" in written else str(low)


def _ports(value: str, module: str) -> str | None:
    """"port 80", "ports 80 or 1000 to 2000"; None if the value is no port (a module whose options the
    parser does not check)."""
    try:
        spans = values.port_list(value) if module == "multiport" else (values.port_range(value),)
    except values.BadValue:
        return None
    texts = [_span(written, low, high) for written, (low, high) in zip(value.split(","), spans, strict=True)]
    if len(texts) == 1 and ":" not in value:
        return f"port {texts[0]}"
    return f"ports {join_or(texts)}"


_PORT_DIRECTIONS = {
    "--dport": "to", "--destination-port": "to", "--dports": "to", "--destination-ports": "to",
    "--sport": "from", "--source-port": "from", "--sports": "from", "--source-ports": "from",
    "--ports": "from or to",
}


def _port_match(match: Match) -> list[str]:
    def explain(option: Option) -> str | None:
        name = option.name
        if name in _PORT_DIRECTIONS:
            ports = _ports(option.value, match.module)
            return f"{_only(option)} {_PORT_DIRECTIONS[name]} {ports}" if ports else None
        if name == "--syn":
            return f"{_only(option)} connection openings (SYN set, ACK, RST and FIN clear)"
        if name == "--tcp-flags" and len(option.values) == 2:
            examined, required = option.values
            which = "none" if required == "NONE" else f"exactly {required}"
            return f"{_only(option)} if {which} of the TCP flags {examined} are set"
        if name == "--tcp-option":
            return f"{_only(option)} TCP packets carrying option {option.value}"
        return None

    return _explain_options(match, explain)


_CONNECTION_STATES = {
    "NEW": "new",
    "ESTABLISHED": "established",
    "RELATED": "related",
    "DNAT": "destination-NATed",
    "SNAT": "source-NATed",
}
_PACKET_STATES = {"INVALID": "invalid", "UNTRACKED": "untracked"}


def _states(option: Option) -> str:
    states = option.value.split(",")
    only = _only(option)
    if all(s in _CONNECTION_STATES for s in states):
        return f"{only} {join_or([_CONNECTION_STATES[s] for s in states])} connections"
    if len(states) == 1 and states[0] == "INVALID":
        return f"{only} invalid packets (conntrack cannot tie them to a connection)"
    if len(states) == 1 and states[0] == "UNTRACKED":
        return f"{only} untracked packets (exempt from connection tracking)"
    names = [_CONNECTION_STATES.get(s) or _PACKET_STATES.get(s) or s for s in states]
    return f"{only} packets in conntrack state {join_or(names)}"


_CONNTRACK_STATUS = {
    "NONE": "no status yet",
    "EXPECTED": "expected by a helper",
    "SEEN_REPLY": "seen a reply",
    "ASSURED": "assured",
    "CONFIRMED": "confirmed",
}

_CONNTRACK_TUPLES = {
    "--ctorigsrc": "originally from", "--ctorigdst": "originally to",
    "--ctreplsrc": "with replies from", "--ctrepldst": "with replies to",
}
_CONNTRACK_PORTS = {
    "--ctorigsrcport": "originally from", "--ctorigdstport": "originally to",
    "--ctreplsrcport": "with replies from", "--ctrepldstport": "with replies to",
}


def _conntrack_match(match: Match) -> list[str]:
    def explain(option: Option) -> str | None:
        name, only = option.name, _only(option)
        if name in ("--ctstate", "--state"):
            return _states(option)
        if name == "--ctstatus":
            statuses = [_CONNTRACK_STATUS.get(s, s) for s in option.value.split(",")]
            return f"{only} connections with status {join_or(statuses)}"
        if name == "--ctproto":
            return f"{only} {protocol_name(option.value)} connections"
        if name in _CONNTRACK_TUPLES:
            return f"{only} connections {_CONNTRACK_TUPLES[name]} {plain_address(option.value)}"
        if name in _CONNTRACK_PORTS:
            ports = _ports(option.value, match.module)
            return f"{only} connections {_CONNTRACK_PORTS[name]} {ports}" if ports else None
        if name == "--ctdir":
            direction = "original (client to server)" if option.value == "ORIGINAL" else "reply (server to client)"
            return f"{only} packets in the {direction} direction"
        if name == "--ctexpire":
            span = _span(option.value, *values.unsigned_range(option.value))
            return f"{only} connections that expire in {span} seconds"
        return None

    return _explain_options(match, explain)


def _mark_spec(value: str) -> str:
    """The mark as written, with its mask unless the mask is all ones."""
    mark, _, mask = value.partition("/")
    if values.mark(value).mask == values.U32_MAX:
        return mark
    return f"{mark} (mask {mask})"


def _mark_test(marked: str, not_marked: str) -> MatchExplainer:
    """The explainer of `-m mark` and `-m connmark`: the same `--mark` test, of the packet's or the connection's mark."""

    def explain_match(match: Match) -> list[str]:
        def explain(option: Option) -> str | None:
            if option.name != "--mark":
                return None
            return f"{not_marked if option.negated else marked} {_mark_spec(option.value)}"

        return _explain_options(match, explain)

    return explain_match


_mark_match = _mark_test("only packets marked", "not marked")
_connmark_match = _mark_test("only connections marked", "not in a connection marked")


_ADDRESS_TYPES = {
    "LOCAL": "one of this node's addresses",
    "UNICAST": "a unicast address",
    "BROADCAST": "a broadcast address",
    "ANYCAST": "an anycast address",
    "MULTICAST": "a multicast address",
    "BLACKHOLE": "an address routed to a blackhole",
    "UNREACHABLE": "an address routed as unreachable",
    "PROHIBIT": "an address routed as prohibited",
    "THROW": "an address with a throw route",
    "NAT": "a NAT address",
    "XRESOLVE": "an address for an external resolver",
    "UNSPEC": "an unspecified address",
}


def _addrtype_match(match: Match) -> list[str]:
    limit = ""
    if match.option("--limit-iface-in"):
        limit = " (looked up for the interface the packet came in by)"
    elif match.option("--limit-iface-out"):
        limit = " (looked up for the interface the packet leaves by)"

    def explain(option: Option) -> str | None:
        if option.name not in ("--src-type", "--dst-type"):
            return None
        end = "source" if option.name == "--src-type" else "destination"
        kinds = join_or([_ADDRESS_TYPES.get(t, t) for t in option.value.split(",")])
        verb = "is not" if option.negated else "is"
        return f"only if the {end} {verb} {kinds}{limit}"

    return _explain_options(match, explain, skip=frozenset({"--limit-iface-in", "--limit-iface-out"}))


def _statistic_match(match: Match) -> list[str]:
    mode = match.option("--mode")
    probability = match.option("--probability")
    every = match.option("--every")
    if mode is not None and mode.value == "random" and probability is not None:
        chance = values.statistic_probability(probability.value)
        if probability.negated:
            return [f"picks this branch with probability {1 - chance} (the printed {chance}, negated)"]
        return [f"picks this branch with probability {chance}"]
    if mode is not None and mode.value == "nth" and every is not None:
        packet = match.option("--packet")
        start = f" (the counter starts at {packet.value})" if packet is not None else ""
        verb = "skips" if every.negated else "picks"
        return [f"{verb} one packet in every {every.value}{start}"]
    return [_not_explained(match, match.options)]


def _recent_match(match: Match) -> list[str]:
    name_option = match.option("--name")
    list_name = name_option.value if name_option is not None else "DEFAULT"
    end = "destination" if match.option("--rdest") else "source"
    purpose = " for session affinity" if list_name.startswith("KUBE-SEP-") else ""
    seconds = match.option("--seconds")
    within = f" in the last {_duration(seconds.value)}" if seconds is not None else ""
    hits = match.option("--hitcount")
    times = f" at least {hits.value} times" if hits is not None else ""
    mask = match.option("--mask")
    # A mask of all ones masks nothing: 255.255.255.255 (kube-proxy's IPv4 mask), ffff:...:ffff (its IPv6 one).
    masked = f" (masked with {mask.value})" if mask is not None and not _all_ones(mask.value) else ""
    ttl = " with the same TTL" if match.option("--rttl") else ""
    seen = f"the {end} address{masked} was seen in the recent list {list_name}{times}{within}{ttl}"
    # --reap only purges old entries from the list; it does not change which packets match.
    handled = {"--name", "--rsource", "--rdest", "--seconds", "--hitcount", "--mask", "--rttl", "--reap"}
    phrases = []
    for option in match.options:
        if option.name == "--set":
            if option.negated:
                phrases.append(f"records the {end} address in the recent list {list_name}, then never matches")
            else:
                phrases.append(f"records the {end} address{masked} in the recent list {list_name}{purpose}")
        elif option.name == "--rcheck":
            phrases.append(f"{_only(option)} if {seen}{purpose}")
        elif option.name == "--update":
            phrases.append(f"{_only(option)} if {seen}, refreshing its time{purpose}")
        elif option.name == "--remove":
            phrases.append(f"{_only(option)} if {seen}, removing it from the list{purpose}")
        elif option.name not in handled:
            phrases.append(_not_explained(match, [option]))
    return phrases


def _all_ones(mask: str) -> bool:
    try:
        address = values.address(mask, values.address_family(mask))
    except values.BadValue:
        return False
    return int(address) == (1 << address.max_prefixlen) - 1


def _duration(seconds: str) -> str:
    """"60 seconds (1 minute)", "5 seconds": the number as written, and what it comes to."""
    value = values.unsigned(seconds)
    for unit, size in (("day", 86400), ("hour", 3600), ("minute", 60)):
        if value >= size and value % size == 0:
            count = value // size
            return f"{seconds} seconds ({count} {unit}{'s' if count != 1 else ''})"
    return f"{seconds} second{'s' if value != 1 else ''}"


_ICMP_TYPES = {
    "0": "echo reply", "3": "destination unreachable", "4": "source quench", "5": "redirect",
    "8": "echo request", "9": "router advertisement", "10": "router solicitation", "11": "time exceeded",
    "12": "parameter problem", "13": "timestamp request", "14": "timestamp reply",
}
_UNREACHABLE_CODES = {
    "0": "network unreachable", "1": "host unreachable", "2": "protocol unreachable", "3": "port unreachable",
    "4": "fragmentation needed", "9": "network prohibited", "10": "host prohibited", "13": "administratively prohibited",
}


def _icmp_match(match: Match) -> list[str]:
    def explain(option: Option) -> str | None:
        if option.name != "--icmp-type":
            return None
        only = _only(option)
        value = option.value
        if value == "any":
            return f"{only} ICMP of any type"
        kind, _, code = value.partition("/")
        if not kind.isdigit():
            return f"{only} ICMP {value.replace('-', ' ')}"
        name = _ICMP_TYPES.get(kind)
        if code:
            code_name = _UNREACHABLE_CODES.get(code) if kind == "3" else None
            described = f" ({code_name})" if code_name else f" ({name})" if name else ""
            return f"{only} ICMP type {kind} code {code}{described}"
        return f"{only} ICMP type {kind} ({name})" if name else f"{only} ICMP type {kind}"

    return _explain_options(match, explain)


def _icmpv6_match(match: Match) -> list[str]:
    def explain(option: Option) -> str | None:
        if option.name != "--icmpv6-type":
            return None
        kind, low, high = protocols.icmp_type(option.value, 6)
        named = [name for name, *entry in protocols.ICMPV6_NAMES if entry == [kind, low, high]]
        codes = "" if (low, high) == (0, 0xFF) else f" code {low}" if low == high else f" codes {low} to {high}"
        numbers = f"type {kind}{codes}"
        if named:
            return f"{_only(option)} ICMPv6 {named[0].replace('-', ' ')} ({numbers})"
        return f"{_only(option)} ICMPv6 {numbers}"

    return _explain_options(match, explain)


def _hop_limit_match(match: Match) -> list[str]:
    def explain(option: Option) -> str | None:
        test = {"--hl-eq": "", "--hl": "", "--hl-lt": "below ", "--hl-gt": "above "}.get(option.name)
        if test is None:
            return None
        return f"{_only(option)} with hop limit {test}{option.value}"

    return _explain_options(match, explain)


def _extension_header(header: str, phrases: dict[str, str]) -> MatchExplainer:
    """An IPv6 extension-header match: "only packets with <header>", then a phrase for each option, from
    `phrases` (`{}` is the option's value, a range `A:B` read as "A to B")."""

    def explain_match(match: Match) -> list[str]:
        def explain(option: Option) -> str | None:
            phrase = phrases.get(option.name)
            if phrase is None:
                return None
            return f"{_only(option)} {phrase.format(option.value.replace(':', ' to '))}"

        return [f"only packets with {header}", *_explain_options(match, explain)]

    return explain_match


_fragment_match = _extension_header("a fragment header", {
    "--fragid": "fragment id {}", "--fraglen": "fragment header length {}", "--fragres": "reserved fields set",
    "--fragfirst": "the first fragment", "--fragmore": "fragments with more to follow",
    "--fraglast": "the last fragment",
})
_routing_match = _extension_header("a routing header", {
    "--rt-type": "routing type {}", "--rt-segsleft": "{} segments left", "--rt-len": "routing header length {}",
    "--rt-0-res": "reserved field set", "--rt-0-addrs": "via addresses {}", "--rt-0-not-strict": "(addresses in any order)",
})
_hop_by_hop_match = _extension_header("a hop-by-hop options header", {
    "--hbh-len": "header length {}", "--hbh-opts": "options {}",
})
_destination_options_match = _extension_header("a destination options header", {
    "--dst-len": "header length {}", "--dst-opts": "options {}",
})
_mobility_match = _extension_header("a mobility header", {"--mh-type": "message type {}"})
_authentication_match = _extension_header("an IPsec AH header", {
    "--ahspi": "SPI {}", "--ahlen": "AH length {}", "--ahres": "reserved field set",
})
_segment_routing_match = _extension_header("a segment routing header", {
    f"--srh-{field}-{test}": f"{words} {relation}{{}}"
    for field, words in (("hdr-len", "header length"), ("segs-left", "segments left"), ("last-entry", "last entry"))
    for test, relation in (("eq", ""), ("gt", "above "), ("lt", "below "))
} | {"--srh-next-hdr": "next header {}", "--srh-tag": "tag {}", "--srh-psid": "previous SID {}",
     "--srh-nsid": "next SID {}", "--srh-lsid": "last SID {}"})


def _ipv6header_match(match: Match) -> list[str]:
    soft = match.option("--soft") is not None

    def explain(option: Option) -> str | None:
        if option.name != "--header":
            return None
        headers = join_and(option.value.split(","))
        if soft:  # the kernel tests each header named: all present, or (negated) all absent
            return f"only packets with {'none' if option.negated else 'all'} of the extension headers {headers}"
        return f"{_only(option)} packets with exactly the extension headers {headers}"

    return _explain_options(match, explain, skip=frozenset({"--soft"}))


def _eui64_match(match: Match) -> list[str]:
    return ["only if the source address ends in the EUI-64 made of the sender's MAC address"]


_RATE_UNITS = {
    "s": "second", "sec": "second", "second": "second",
    "m": "minute", "min": "minute", "minute": "minute",
    "h": "hour", "hour": "hour",
    "d": "day", "day": "day",
}


def _limit_match(match: Match) -> list[str]:
    limit = match.option("--limit")
    burst = match.option("--limit-burst")
    count, _, unit = (limit.value if limit is not None else "3/hour").partition("/")
    per = _RATE_UNITS.get(unit or "s", unit)
    bursts = f" (in bursts of up to {burst.value if burst is not None else '5'})"
    negated = limit is not None and limit.negated
    phrase = (f"only above {count} packets per {per}" if negated else f"only up to {count} packets per {per}") + bursts
    unknown = [o for o in match.options if o.name not in ("--limit", "--limit-burst")]
    return [phrase, _not_explained(match, unknown)] if unknown else [phrase]


def _iprange_match(match: Match) -> list[str]:
    def explain(option: Option) -> str | None:
        direction = {"--src-range": "from", "--dst-range": "to"}.get(option.name)
        if direction is None:
            return None
        first, last = values.address_range(option.value, values.address_family(option.value))
        if "-" not in option.value:
            return f"{_only(option)} {direction} address {first}"
        return f"{_only(option)} {direction} addresses {first} to {last}"

    return _explain_options(match, explain)


def _pkttype_match(match: Match) -> list[str]:
    def explain(option: Option) -> str | None:
        if option.name != "--pkt-type":
            return None
        return f"{_only(option)} {option.value} packets (by link-layer address)"

    return _explain_options(match, explain)


def _comment_match(match: Match) -> list[str]:
    # The comment is shown on its own (RuleExplanation.comment); it tests nothing.
    return []


MATCH_EXPLAINERS: dict[str, MatchExplainer] = {
    "tcp": _port_match, "udp": _port_match, "sctp": _port_match, "dccp": _port_match, "udplite": _port_match,
    "multiport": _port_match,
    "conntrack": _conntrack_match, "state": _conntrack_match,
    "mark": _mark_match, "connmark": _connmark_match,
    "addrtype": _addrtype_match,
    "statistic": _statistic_match,
    "recent": _recent_match,
    "icmp": _icmp_match,
    "icmp6": _icmpv6_match,
    "hl": _hop_limit_match,
    "frag": _fragment_match,
    "rt": _routing_match,
    "hbh": _hop_by_hop_match,
    "dst": _destination_options_match,
    "mh": _mobility_match,
    "ah": _authentication_match,
    "srh": _segment_routing_match,
    "ipv6header": _ipv6header_match,
    "eui64": _eui64_match,
    "limit": _limit_match,
    "iprange": _iprange_match,
    "pkttype": _pkttype_match,
    "comment": _comment_match,
}
