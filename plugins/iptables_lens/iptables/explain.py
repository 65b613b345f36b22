"""Plain English for rules: what each criterion and match asks of a packet, and what the target does.

The site's rule tables and the CLI show these phrases next to the rule text. They are plain text; whoever
puts them in HTML or Markdown escapes them.

>>> from iptables_lens import parse_file
>>> nat = parse_file("dumps/kind-nodeport/worker-1-after.rules").table("nat")
>>> rule = nat.chain("KUBE-NODEPORTS").rules[0]
>>> explanation = explain_rule(rule, nat)
>>> explanation.conditions
('only TCP', 'only to port 30080')
>>> explanation.summary
'Only TCP to port 30080: jump to KUBE-EXT-OL4YPD43MBS7WVHD.'
>>> explanation.service
'default/my-nginx-service'
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from fractions import Fraction
from math import floor

from iptables_lens import kube
from iptables_lens.iptables import xtables
from iptables_lens.iptables.fmt import format_option
from iptables_lens.iptables.model import Chain, Criterion, Match, Option, Rule, Table, Target


@dataclass(frozen=True, slots=True)
class RuleExplanation:
    """What one rule does, in words.

    `conditions` has a phrase for each thing the rule tests (the comment is not one), in the order the kernel
    tests them: address, interface and protocol criteria first, then match modules in rule order. `action`
    says what the target does, and `summary` is one sentence made of both.
    """

    conditions: tuple[str, ...]
    action: str
    summary: str
    comment: str | None
    family: str | None
    service: str | None


@dataclass(frozen=True, slots=True)
class ChainExplanation:
    """A chain in words: its kube-proxy family (None for chains kube-proxy does not write), what that
    family is for, the Service its hashed name was decoded to, and each rule's explanation in order."""

    chain: str
    family: str | None
    family_description: str | None
    decoded: kube.ChainName | None
    rules: tuple[RuleExplanation, ...]


def explain_chain(chain: Chain, table: Table) -> ChainExplanation:
    """Explain every rule of `chain`, which belongs to `table`."""
    family = kube.family(chain.name)
    return ChainExplanation(
        chain=chain.name,
        family=family,
        family_description=kube.describe_family(family, table.name) if family else None,
        decoded=kube.decode_chain(table, chain.name),
        rules=tuple(explain_rule(rule, table) for rule in chain.rules),
    )


def explain_rule(rule: Rule, table: Table) -> RuleExplanation:
    """Explain `rule`, which belongs to `table` (some phrases depend on the rule's neighbours).

    Never raises for a rule the parser accepted: a match module or target without an explanation here is
    shown as its own text followed by "(not explained)".
    """
    conditions = [_criterion_phrase(c, rule, table) for c in rule.criteria]
    protocol = next((i for i, c in enumerate(rule.criteria) if c.flag == "-p" and _is_positive_protocol(c)), None)
    for match in rule.matches:
        conditions.extend(_match_phrases(match))
    action = _action(rule, table)
    comment = rule.comment
    return RuleExplanation(
        conditions=tuple(conditions),
        action=action,
        summary=_summary(conditions, protocol, action),
        comment=comment,
        family=kube.family(rule.chain),
        service=kube.service_of_comment(comment),
    )


def statistic_probability(printed: str) -> Fraction:
    """The probability a `-m statistic --mode random --probability` value stands for, as a fraction.

    The kernel keeps the probability as a 31-bit fraction (x / 2**31) and iptables-save prints that with 11
    decimals, so 1/3 comes back as 0.33333333349. The simplest fraction within 2**-31 of the kept value is
    the one the rule's author wrote.

    >>> statistic_probability("0.33333333349"), statistic_probability("0.50000000000")
    (Fraction(1, 3), Fraction(1, 2))
    """
    # iptables reads the value with strtod and keeps lround(value * 2**31): a float, rounded half up.
    kept = Fraction(floor(float(printed) * _STATISTIC_SCALE + 0.5), _STATISTIC_SCALE)
    step = Fraction(1, _STATISTIC_SCALE)
    return _simplest_between(max(kept - step, Fraction(0)), min(kept + step, Fraction(1)))


_STATISTIC_SCALE = 1 << 31


def _simplest_between(low: Fraction, high: Fraction) -> Fraction:
    """The fraction with the smallest denominator in [low, high] (0 <= low <= high), by continued fractions."""
    whole = floor(low)
    if whole == low:
        return Fraction(whole)
    if whole + 1 <= high:
        return Fraction(whole + 1)
    return whole + 1 / _simplest_between(1 / (high - whole), 1 / (low - whole))


# -- criteria -----------------------------------------------------------------------------------------------

_PROTOCOL_NAMES = {"ipv6-icmp": "ICMPv6", "icmpv6": "ICMPv6", "udplite": "UDP-Lite"}


def _protocol_name(value: str) -> str:
    lowered = value.lower()
    if value.isdigit():
        return f"protocol {value}"
    return _PROTOCOL_NAMES.get(lowered, lowered.upper())


def _is_positive_protocol(criterion: Criterion) -> bool:
    return not criterion.negated and criterion.value.lower() not in ("all", "0")


def _criterion_phrase(criterion: Criterion, rule: Rule, table: Table) -> str:
    flag, value, negated = criterion.flag, criterion.value, criterion.negated
    only = "not" if negated else "only"
    if flag == "-p":
        if value.lower() in ("all", "0"):
            return "no packet (not any protocol)" if negated else "any protocol"
        return f"{only} {_protocol_name(value)}"
    if flag in ("-s", "-d"):
        direction = "from" if flag == "-s" else "to"
        return f"{only} {direction} {_addresses(criterion, rule, table)}"
    if flag == "-i":
        return f"{only} arriving on {_interface(value)}"
    if flag == "-o":
        return f"{only} leaving by {_interface(value)}"
    # -f: the kernel matches fragments after the first, which carry no ports.
    return "not a second or later fragment" if negated else "only second and later fragments"


def _interface(name: str) -> str:
    if name == "+":
        return "any interface"
    if name.endswith("+"):
        return f"an interface whose name starts with {name[:-1]}"
    return f"interface {name}"


def _plain_address(value: str) -> str:
    for host_mask in ("/32", "/255.255.255.255"):
        if value.endswith(host_mask):
            return value[: -len(host_mask)]
    return value


def _addresses(criterion: Criterion, rule: Rule, table: Table) -> str:
    values = criterion.value.split(",")
    if len(values) == 1:
        name = _address_name(criterion, rule, table)
        if name:
            return name
    return _join_or([_plain_address(v) for v in values])


def _address_name(criterion: Criterion, rule: Rule, table: Table) -> str | None:
    """A name for the address when the rule's place says what it is, e.g. the pod network."""
    value = criterion.value
    if value == "0.0.0.0/0":
        return "anywhere"
    if value == "127.0.0.0/8":
        return "the loopback network 127.0.0.0/8"
    if criterion.flag != "-s" or table.name != "nat" or rule.target is None:
        return None
    chain_family = kube.family(rule.chain)
    target = rule.target.name
    is_network = "/" in value and _plain_address(value) == value
    # kube-proxy's local-traffic detector writes the pod range (--cluster-cidr, or the node's pod CIDR) as
    # `! -s RANGE -j KUBE-MARK-MASQ` in a Service chain, and as `-s RANGE -j KUBE-SVC-...` in an external
    # chain with externalTrafficPolicy: Local.
    if is_network and chain_family in ("KUBE-SERVICES", "KUBE-SVC", "KUBE-EXT"):
        if target == "KUBE-MARK-MASQ" or kube.family(target) == "KUBE-SVC":
            return f"the pod network {value}"
    # kube-proxy masquerades a pod that reaches itself through its Service (hairpin): the endpoint chain
    # marks packets whose source is the endpoint it DNATs to.
    if chain_family == "KUBE-SEP" and target == "KUBE-MARK-MASQ" and not is_network:
        host = _plain_address(value)
        if host in _dnat_hosts(table, rule.chain):
            return f"the endpoint's own address {host}"
    return None


def _dnat_hosts(table: Table, chain: str) -> set[str]:
    if not table.has_chain(chain):
        return set()
    hosts = set()
    for rule in table.chain(chain).rules:
        if rule.target is not None and rule.target.name == "DNAT":
            to = rule.target.option("--to-destination")
            if to is not None:
                hosts.add(to.value.partition(":")[0])
    return hosts


# -- match modules ------------------------------------------------------------------------------------------

MatchExplainer = Callable[[Match], list[str]]


def _match_phrases(match: Match) -> list[str]:
    explainer = _MATCH_EXPLAINERS.get(match.module)
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


def _port_span(value: str) -> tuple[str, bool]:
    """("80", False) or ("1000 to 2000", True) for one port or range."""
    if ":" not in value:
        return value, False
    low, _, high = value.partition(":")
    return f"{low or '0'} to {high or '65535'}", True


def _ports(value: str) -> str:
    spans = [_port_span(part) for part in value.split(",")]
    if len(spans) == 1 and not spans[0][1]:
        return f"port {spans[0][0]}"
    return f"ports {_join_or([text for text, _ in spans])}"


def _port_match(match: Match) -> list[str]:
    def explain(option: Option) -> str | None:
        name = option.name
        if name in ("--dport", "--destination-port", "--dports", "--destination-ports"):
            return f"{_only(option)} to {_ports(option.value)}"
        if name in ("--sport", "--source-port", "--sports", "--source-ports"):
            return f"{_only(option)} from {_ports(option.value)}"
        if name == "--ports":
            return f"{_only(option)} from or to {_ports(option.value)}"
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
        return f"{only} {_join_or([_CONNECTION_STATES[s] for s in states])} connections"
    if len(states) == 1 and states[0] == "INVALID":
        return f"{only} invalid packets (conntrack cannot tie them to a connection)"
    if len(states) == 1 and states[0] == "UNTRACKED":
        return f"{only} untracked packets (exempt from connection tracking)"
    names = [_CONNECTION_STATES.get(s) or _PACKET_STATES.get(s) or s for s in states]
    return f"{only} packets in conntrack state {_join_or(names)}"


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
            return f"{only} connections with status {_join_or(statuses)}"
        if name == "--ctproto":
            return f"{only} {_protocol_name(option.value)} connections"
        if name in _CONNTRACK_TUPLES:
            return f"{only} connections {_CONNTRACK_TUPLES[name]} {_plain_address(option.value)}"
        if name in _CONNTRACK_PORTS:
            return f"{only} connections {_CONNTRACK_PORTS[name]} {_ports(option.value)}"
        if name == "--ctdir":
            direction = "original (client to server)" if option.value == "ORIGINAL" else "reply (server to client)"
            return f"{only} packets in the {direction} direction"
        if name == "--ctexpire":
            span, _ = _port_span(option.value)
            return f"{only} connections that expire in {span} seconds"
        return None

    return _explain_options(match, explain)


def _number(text: str) -> int:
    """A mark or mask as iptables reads it (strtoul with base 0: hex, octal or decimal)."""
    try:
        return int(text, 0)
    except ValueError:
        # "010" is octal to strtoul but not to int(..., 0).
        return int(text, 8) if text.isdigit() and all(ch in "01234567" for ch in text) else int(text, 10)


def _mark_spec(value: str) -> str:
    mark, _, mask = value.partition("/")
    if not mask or _number(mask) == 0xFFFFFFFF:
        return mark
    return f"{mark} (mask {mask})"


def _mark_match(match: Match) -> list[str]:
    def explain(option: Option) -> str | None:
        if option.name != "--mark":
            return None
        if option.negated:
            return f"not marked {_mark_spec(option.value)}"
        return f"only packets marked {_mark_spec(option.value)}"

    return _explain_options(match, explain)


def _connmark_match(match: Match) -> list[str]:
    def explain(option: Option) -> str | None:
        if option.name != "--mark":
            return None
        if option.negated:
            return f"not in a connection marked {_mark_spec(option.value)}"
        return f"only connections marked {_mark_spec(option.value)}"

    return _explain_options(match, explain)


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
        kinds = _join_or([_ADDRESS_TYPES.get(t, t) for t in option.value.split(",")])
        verb = "is not" if option.negated else "is"
        return f"only if the {end} {verb} {kinds}{limit}"

    return _explain_options(match, explain, skip=frozenset({"--limit-iface-in", "--limit-iface-out"}))


def _statistic_match(match: Match) -> list[str]:
    mode = match.option("--mode")
    probability = match.option("--probability")
    every = match.option("--every")
    if mode is not None and mode.value == "random" and probability is not None:
        chance = statistic_probability(probability.value)
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
    masked = f" (masked with {mask.value})" if mask is not None and mask.value != "255.255.255.255" else ""
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


def _duration(seconds: str) -> str:
    if not seconds.isdigit():
        return f"{seconds} seconds"
    value = int(seconds)
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
        low, _, high = option.value.partition("-")
        return f"{_only(option)} {direction} addresses {low} to {high}"

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


_MATCH_EXPLAINERS: dict[str, MatchExplainer] = {
    "tcp": _port_match, "udp": _port_match, "sctp": _port_match, "dccp": _port_match, "udplite": _port_match,
    "multiport": _port_match,
    "conntrack": _conntrack_match, "state": _conntrack_match,
    "mark": _mark_match, "connmark": _connmark_match,
    "addrtype": _addrtype_match,
    "statistic": _statistic_match,
    "recent": _recent_match,
    "icmp": _icmp_match,
    "limit": _limit_match,
    "iprange": _iprange_match,
    "pkttype": _pkttype_match,
    "comment": _comment_match,
}


# -- targets ------------------------------------------------------------------------------------------------


def _action(rule: Rule, table: Table) -> str:
    target = rule.target
    if target is None:
        return "counts the packet (no target) and goes on to the next rule"
    if target.goto:
        return f"goes to {target.name} and does not come back here"
    explainer = _TARGET_EXPLAINERS.get(target.name)
    if explainer is not None:
        return explainer(target, rule, table)
    if target.name in xtables.KNOWN_TARGETS or target.options:
        return _target_not_explained(target, target.options)
    return f"jump to {target.name}"


def _target_not_explained(target: Target, options: Sequence[Option]) -> str:
    return " ".join(["-j", target.name, *(format_option(o) for o in options)]) + " (not explained)"


def _with_unknown(action: str, target: Target, known: set[str]) -> str:
    """`action`, followed by the target's options it does not account for, so none go unmentioned."""
    unknown = [o for o in target.options if o.name not in known]
    if not unknown:
        return action
    return f"{action}; {' '.join(format_option(o) for o in unknown)} (not explained)"


def _return(target: Target, rule: Rule, table: Table) -> str:
    if table.has_chain(rule.chain):
        chain = table.chain(rule.chain)
        if chain.builtin:
            return f"ends the built-in chain {chain.name}: its policy {chain.policy} decides"
    return "returns to the calling chain"


def _mark_change(option: Option, subject: str) -> str | None:
    """What a MARK or CONNMARK option does to `subject` ("packet mark" or "connection mark")."""
    value, _, mask = option.value.partition("/")
    if option.name == "--set-xmark":
        # The kernel computes mark = (mark AND NOT mask) XOR value.
        bits, keep = _number(value), _number(mask) if mask else 0xFFFFFFFF
        if keep == 0xFFFFFFFF:
            return f"sets the {subject} to {value}"
        if keep == 0:
            return f"flips bits {value} of the {subject} (XOR)" if bits else f"leaves the {subject} unchanged"
        if bits == 0:
            return f"clears bits {mask} of the {subject}"
        if bits == keep:
            return f"sets bits {value} of the {subject}"
        if bits & ~keep == 0:
            return f"sets the bits {mask} of the {subject} to {value}"
        return f"sets the {subject} to ({subject} AND NOT {mask}) XOR {value}"
    if option.name == "--set-mark":
        if mask:
            return f"sets the bits {mask} of the {subject} to {value}"
        return f"sets the {subject} to {value}"
    if option.name == "--and-mark":
        return f"keeps only bits {value} of the {subject} (AND)"
    if option.name == "--or-mark":
        return f"sets bits {value} of the {subject} (OR)"
    if option.name == "--xor-mark":
        return f"flips bits {value} of the {subject} (XOR)"
    return None


def _bits_set(option: Option) -> int | None:
    """The bits a MARK option turns on without touching others (kube-proxy's way of marking), or None."""
    value, _, mask = option.value.partition("/")
    if option.name == "--or-mark" or (option.name == "--set-xmark" and mask and _number(mask) == _number(value)):
        return _number(value)
    return None


def _bits_flipped(option: Option) -> int | None:
    value, _, mask = option.value.partition("/")
    if option.name == "--xor-mark" or (option.name == "--set-xmark" and mask and _number(mask) == 0):
        return _number(value)
    return None


def _only_marked_reach(rule: Rule, table: Table, bits: int) -> bool:
    """Whether an earlier rule of the chain returns every packet that lacks `bits`, as kube-proxy writes
    KUBE-POSTROUTING, so the rule sees only packets that carry them."""
    for earlier in table.chain(rule.chain).rules[: rule.position - 1]:
        mark = earlier.match("mark")
        test = mark.option("--mark") if mark is not None else None
        if earlier.target is None or earlier.target.name != "RETURN" or test is None or not test.negated:
            continue
        value, _, mask = test.value.partition("/")
        if not earlier.criteria and len(earlier.matches) == 1 and _number(value) == bits == _number(mask or "0"):
            return True
    return False


def _mark(target: Target, rule: Rule, table: Table) -> str:
    if len(target.options) != 1:
        return _target_not_explained(target, target.options)
    option = target.options[0]
    change = _mark_change(option, "packet mark")
    if change is None:
        return _target_not_explained(target, target.options)
    bits = _bits_set(option)
    if bits is not None and rule.chain == "KUBE-MARK-MASQ":
        return f"marks the packet with {option.value.partition('/')[0]} so it is masqueraded on the way out"
    if bits is not None and rule.chain == "KUBE-MARK-DROP":
        return f"marks the packet with {option.value.partition('/')[0]} so it is dropped"
    flipped = _bits_flipped(option)
    if (flipped and rule.chain == "KUBE-POSTROUTING" and table.has_chain(rule.chain)
            and _only_marked_reach(rule, table, flipped)):
        # kube-proxy clears its mark with an XOR, knowing the bit is set here, so that a packet that passes
        # through the stack again is not masqueraded a second time.
        return (f"clears the masquerade mark {option.value.partition('/')[0]} (an XOR: only marked packets reach "
                "this rule), so the packet is not masqueraded again")
    return change


def _connmark(target: Target, rule: Rule, table: Table) -> str:
    masks = {o.name: o.value for o in target.options if o.name in ("--mask", "--nfmask", "--ctmask")}
    mask_text = ", ".join(f"{name.lstrip('-')} {value}" for name, value in masks.items())
    masked = f" ({mask_text})" if mask_text else ""
    actions = []
    for option in target.options:
        if option.name == "--save-mark":
            actions.append(f"copies the packet mark to the connection mark{masked}")
        elif option.name == "--restore-mark":
            actions.append(f"copies the connection mark to the packet mark{masked}")
        elif option.name not in masks:
            change = _mark_change(option, "connection mark")
            if change is None:
                return _target_not_explained(target, target.options)
            actions.append(change)
    if len(actions) != 1:
        return _target_not_explained(target, target.options)
    return actions[0]


def _port_randomness(target: Target) -> str:
    if target.option("--random-fully"):
        return ", with fully random source ports"
    if target.option("--random"):
        return ", with random ports"
    return ""


def _dnat(target: Target, rule: Rule, table: Table) -> str:
    to = target.option("--to-destination")
    if to is None:
        return _target_not_explained(target, target.options)
    if to.value.startswith(":"):
        action = f"DNAT to port {to.value[1:]} (address unchanged)"
    else:
        action = f"DNAT to {to.value}"
    if target.option("--persistent"):
        action += ", the same address for a client every time"
    return _with_unknown(action + _port_randomness(target), target,
                         {"--to-destination", "--random", "--persistent"})


def _snat(target: Target, rule: Rule, table: Table) -> str:
    to = target.option("--to-source")
    if to is None:
        return _target_not_explained(target, target.options)
    action = f"SNAT to {to.value}"
    if target.option("--persistent"):
        action += ", the same address for a client every time"
    return _with_unknown(action + _port_randomness(target), target,
                         {"--to-source", "--random", "--random-fully", "--persistent"})


def _masquerade(target: Target, rule: Rule, table: Table) -> str:
    action = "masquerades: rewrites the source to the address of the interface the packet leaves by"
    ports = target.option("--to-ports")
    if ports is not None:
        action += f", source port from {ports.value}"
    return _with_unknown(action + _port_randomness(target), target, {"--to-ports", "--random", "--random-fully"})


def _redirect(target: Target, rule: Rule, table: Table) -> str:
    ports = target.option("--to-ports")
    action = "redirects to this node (the address of the interface it came in by)"
    if ports is not None:
        action += f", port {ports.value}"
    return _with_unknown(action + _port_randomness(target), target, {"--to-ports", "--random"})


_REJECT_REPLIES = {
    "icmp-net-unreachable": "ICMP network unreachable",
    "icmp-host-unreachable": "ICMP host unreachable",
    "icmp-port-unreachable": "ICMP port unreachable",
    "icmp-proto-unreachable": "ICMP protocol unreachable",
    "icmp-net-prohibited": "ICMP network prohibited",
    "icmp-host-prohibited": "ICMP host prohibited",
    "icmp-admin-prohibited": "ICMP administratively prohibited",
    "tcp-reset": "a TCP reset",
}


def _reject(target: Target, rule: Rule, table: Table) -> str:
    reply = target.option("--reject-with")
    kind = reply.value if reply is not None else "icmp-port-unreachable"
    return _with_unknown(f"rejects: drops and answers with {_REJECT_REPLIES.get(kind, kind)}", target, {"--reject-with"})


_LOG_LEVELS = ("emerg", "alert", "crit", "error", "warning", "notice", "info", "debug")
_LOG_FLAGS = {
    "--log-tcp-sequence": "TCP sequence numbers", "--log-tcp-options": "TCP options",
    "--log-ip-options": "IP options", "--log-uid": "the sending process's user", "--log-macdecode": "MAC addresses",
}


def _log(target: Target, rule: Rule, table: Table) -> str:
    action = "logs the packet to the kernel log"
    prefix = target.option("--log-prefix")
    if prefix is not None:
        action += f' with prefix "{prefix.value}"'
    level = target.option("--log-level")
    if level is not None:
        name = _LOG_LEVELS[int(level.value)] if level.value.isdigit() and int(level.value) < 8 else level.value
        action += f" at level {name}"
    extras = [text for flag, text in _LOG_FLAGS.items() if target.option(flag)]
    if extras:
        action += f", including {_join_and(extras)}"
    action += ", and goes on to the next rule"
    return _with_unknown(action, target, {"--log-prefix", "--log-level", *_LOG_FLAGS})


def _nflog(target: Target, rule: Rule, table: Table) -> str:
    group = target.option("--nflog-group")
    action = f"sends a copy of the packet to netlink log group {group.value if group is not None else '0'}"
    prefix = target.option("--nflog-prefix")
    if prefix is not None:
        action += f' with prefix "{prefix.value}"'
    size = target.option("--nflog-size") or target.option("--nflog-range")
    if size is not None:
        action += f" (first {size.value} bytes)"
    threshold = target.option("--nflog-threshold")
    if threshold is not None:
        action += f", queued in batches of {threshold.value}"
    action += ", and goes on to the next rule"
    return _with_unknown(action, target, {"--nflog-group", "--nflog-prefix", "--nflog-size", "--nflog-range",
                                          "--nflog-threshold"})


_NOTRACK = "exempts the packet from connection tracking"


def _ct(target: Target, rule: Rule, table: Table) -> str:
    parts = []
    if target.option("--notrack"):
        parts.append(_NOTRACK)
    helper = target.option("--helper")
    if helper is not None:
        parts.append(f"assigns the connection tracking helper {helper.value}")
    zone = target.option("--zone")
    if zone is not None:
        parts.append(f"tracks the connection in conntrack zone {zone.value}")
    timeout = target.option("--timeout")
    if timeout is not None:
        parts.append(f"applies the conntrack timeout policy {timeout.value}")
    if not parts:
        return _target_not_explained(target, target.options)
    return _with_unknown(_join_and(parts), target, {"--notrack", "--helper", "--zone", "--timeout"})


def _fixed(text: str) -> Callable[[Target, Rule, Table], str]:
    def explain(target: Target, rule: Rule, table: Table) -> str:
        return _with_unknown(text, target, set())

    return explain


_TARGET_EXPLAINERS: dict[str, Callable[[Target, Rule, Table], str]] = {
    "ACCEPT": _fixed("accepts"),
    "DROP": _fixed("drops"),
    "RETURN": _return,
    "QUEUE": _fixed("queues the packet to a user-space program"),
    "MARK": _mark,
    "CONNMARK": _connmark,
    "DNAT": _dnat,
    "SNAT": _snat,
    "MASQUERADE": _masquerade,
    "REDIRECT": _redirect,
    "REJECT": _reject,
    "LOG": _log,
    "NFLOG": _nflog,
    "NOTRACK": _fixed(_NOTRACK),
    "CT": _ct,
    "TRACE": _fixed("traces the packet: the kernel reports each rule it passes"),
}



# -- the summary sentence -----------------------------------------------------------------------------------


def _summary(conditions: list[str], protocol: int | None, action: str) -> str:
    """One sentence: "Only TCP to 10.96.0.1 port 443, not from the pod network 10.244.0.0/16: jump to X."

    Address, port and interface phrases read as an extension of the protocol ("only TCP to port 80"), so
    they follow it without their own "only", grouped by direction ("from A port 5 to B port 80"); the other
    phrases are listed after, in rule order.
    """
    if not conditions:
        return _capitalized(action) + "."
    rest = list(conditions)
    lead = [rest.pop(protocol)] if protocol is not None else []
    by_direction: dict[str, list[str]] = {}
    for phrase in list(rest):
        direction = next((d for d in ("from", "to", "arriving", "leaving") if phrase.startswith(f"only {d} ")), None)
        if direction is None:
            continue
        rest.remove(phrase)
        pieces = by_direction.setdefault(direction, [])
        piece = phrase[len("only "):]
        port = f"{direction} port"
        if piece.startswith(port) and pieces and all(" port" not in p for p in pieces):
            # "to 10.96.0.1" and "to port 443" read as "to 10.96.0.1 port 443".
            piece = piece[len(direction) + 1 :]
        pieces.append(piece)
    extension = [piece for pieces in by_direction.values() for piece in pieces]
    head = " ".join(lead + extension)
    if head and not lead:
        head = "only " + head
    parts = [head, *rest] if head else rest
    separator = "; " if any("," in p for p in parts) else ", "
    return f"{_capitalized(separator.join(parts))}: {action}."


def _capitalized(text: str) -> str:
    return text[:1].upper() + text[1:]


def _join_or(items: Sequence[str]) -> str:
    return _join(items, "or")


def _join_and(items: Sequence[str]) -> str:
    return _join(items, "and")


def _join(items: Sequence[str], word: str) -> str:
    if len(items) <= 1:
        return "".join(items)
    return f"{', '.join(items[:-1])} {word} {items[-1]}"
