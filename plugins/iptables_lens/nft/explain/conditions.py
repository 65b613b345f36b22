"""Phrases for what a rule tests: a match (`ip daddr 10.0.0.1` is "only to 10.0.0.1"), a rate limit, a quota,
a connection count, an iptables match iptables-nft kept.

Addresses, ports and interfaces read as where the packet goes ("only TCP to port 22", "not from 10.0.0.0/8");
protocols and connection states as what the packet is ("only new connections"); anything else as "only if
NOUN is VALUE", with the selector's own noun.
"""

from __future__ import annotations

from iptables_lens.iptables.explain.words import join_and, join_or
from iptables_lens.nft.explain.place import Place
from iptables_lens.nft.explain.words import (
    CT_STATES,
    noun,
    typed_kind,
    value_words,
)
from iptables_lens.nft.model import (
    Binop,
    ConnLimit,
    Const,
    Ct,
    Expr,
    Fib,
    Limit,
    Match,
    Meta,
    Payload,
    Prefix,
    Quota,
    Range,
    SetLiteral,
    SetRef,
    ValueList,
)
from iptables_lens.nft.stateful import rate_and_unit

_OPERATORS = {"==": "is", "!=": "is not", "<": "is below", ">": "is above", "<=": "is at most", ">=": "is at least"}
_ADDRESS_FIELDS = {"saddr": "from", "daddr": "to", "saddr ip": "from", "daddr ip": "to"}
_PORT_FIELDS = {"sport": "from", "dport": "to"}
_INTERFACES = {"iif": "arriving on", "iifname": "arriving on", "oif": "leaving by", "oifname": "leaving by"}
_PROTOCOL_SELECTORS = {("meta", "l4proto"), ("ip", "protocol"), ("ip6", "nexthdr"), ("meta", "nfproto"),
                       ("ct", "protocol"), ("ct", "l3proto")}
_ADDRESS_TYPES = {"local": "an address of this node", "unicast": "a unicast address",
                  "broadcast": "a broadcast address", "multicast": "a multicast address",
                  "anycast": "an anycast address", "blackhole": "a blackhole address",
                  "unreachable": "an unreachable address", "prohibit": "a prohibited address",
                  "unspec": "an address of no type"}
# kube-proxy's families whose `saddr` network is the pod network (its local-traffic detector).
_POD_NETWORK_FAMILIES = ("service-", "local-", "external-", "services")


def _only(match: Match) -> str:
    return "not" if match.op == "!=" else "only"


def _selector_key(expr: Expr) -> tuple[str, str] | None:
    if isinstance(expr, Payload):
        return expr.protocol, expr.field
    if isinstance(expr, Meta):
        return "meta", expr.key
    if isinstance(expr, Ct):
        return "ct", expr.key
    return None


def _is_single(right: Expr) -> bool:
    return not isinstance(right, (SetLiteral, ValueList, Prefix, Range)) and not (
        isinstance(right, Const) and isinstance(right.value, str) and "*" in right.value)


def _address(match: Match, place: Place | None) -> str:
    """The address or network a match names, with what it is to kube-proxy where the rule's place says."""
    right = match.right
    text = value_words(right)
    family = place.family if place is not None else None
    if isinstance(match.left, Payload) and match.left.field == "saddr" and family is not None:
        if isinstance(right, Prefix) and family in _POD_NETWORK_FAMILIES:
            return f"the pod network {text}"
        if family == "endpoint-" and isinstance(right, Const) and place is not None \
                and str(right.value) in place.dnat_addresses:
            return f"the endpoint's own address {text}"
    return text


def _interface(right: Expr) -> str:
    if isinstance(right, Const) and isinstance(right.value, str) and right.value.endswith("*"):
        return f"an interface whose name starts with {right.value[:-1]}"
    return f"interface {value_words(right)}"


def _bit_test(match: Match) -> str | None:
    """`meta mark & 0x4000 == 0`: which bits of the selector must be set or clear."""
    left, right = match.left, match.right
    if not (isinstance(left, Binop) and left.op == "&" and isinstance(left.right, Const)
            and isinstance(right, Const) and isinstance(left.right.value, int) and isinstance(right.value, int)):
        return None
    mask, value, subject = left.right.value, right.value, noun(left.left)
    one = mask > 0 and mask & (mask - 1) == 0
    words = f"{'bit' if one else 'bits'} {value_words(left.right)} of {subject}"
    if value == 0:
        if match.op == "==":
            return f"only if {words} {'is' if one else 'are all'} clear"
        return f"only if {words} is set" if one else f"only if any of {words} is set"
    if value == mask and match.op == "==":
        return f"only if {words} {'is' if one else 'are all'} set"
    return None


def _flag_test(match: Match) -> str | None:
    """`tcp flags & (fin | syn | rst | ack) == syn`: of these flags, exactly these are set."""
    left = match.left
    if not (isinstance(left, Binop) and left.op == "&" and typed_kind(left.left) == "bitmask"):
        return None
    examined = left.right.items if isinstance(left.right, ValueList) else (left.right,)
    required = match.right.items if isinstance(match.right, ValueList) else (match.right,)
    wanted = [value_words(r) for r in required if not (isinstance(r, Const) and r.value == 0)]
    which = f"exactly {join_and(wanted)}" if wanted else "none"
    verb = "is" if len(wanted) == 1 else "are"
    head = "only if" if match.op != "!=" else "only if not"
    return f"{head}, of {noun(left.left)} {join_and([value_words(e) for e in examined])}, {which} {verb} set"


def _constants(right: Expr) -> list[Const] | None:
    """The constants a right-hand side lists (one, a flag list, or an anonymous set of constants), or None."""
    items = right.items if isinstance(right, ValueList) else (
        [e.key for e in right.elements] if isinstance(right, SetLiteral) else [right])
    found = [item for item in items if isinstance(item, Const)]
    return found if len(found) == len(items) else None


def _states(match: Match, key: str) -> str | None:
    constants = _constants(match.right)
    if constants is None:
        return None
    values = [str(c.value) for c in constants]
    words = [value_words(c) for c in constants]
    only = _only(match)
    if key == "state" and all(v in ("new", "established", "related") for v in values):
        return f"{only} {join_or(words)} connections"
    if key == "state":
        phrase = {"invalid": "invalid packets (conntrack cannot place them in a connection)",
                  "untracked": "untracked packets (exempt from connection tracking)"}
        return f"{only} {join_or([phrase.get(v, CT_STATES.get(v, v) + ' connections') for v in values])}"
    if key == "status":
        return f"{only} {join_or(words)} connections"
    return f"{only} packets in the {join_or(words)} direction of their connection"


def _fib(match: Match) -> str | None:
    left, right = match.left, match.right
    assert isinstance(left, Fib)
    if left.result in ("oif", "oifname") and isinstance(right, Const) and isinstance(right.value, bool):
        has = right.value == (match.op != "!=")
        keys = join_and([{"saddr": "the source address", "daddr": "the destination address", "mark": "the mark",
                          "iif": "the input interface", "oif": "the output interface"}[f] for f in left.flags])
        return f"only if the routing table has {'a' if has else 'no'} route for {keys}"
    constants = _constants(right)
    if left.result == "type" and left.flags in (("saddr",), ("daddr",)) and constants is not None:
        names = [str(c.value) for c in constants]
        if all(n in _ADDRESS_TYPES for n in names):
            direction = "from" if left.flags == ("saddr",) else "to"
            return f"{_only(match)} {direction} {join_or([_ADDRESS_TYPES[n] for n in names])}"
    return None


def match_phrase(match: Match, place: Place | None) -> str:
    """What a match asks of the packet: "only TCP to port 22", "not from the pod network 10.0.0.0/8"."""
    left, right = match.left, match.right
    if isinstance(right, SetRef):
        return _set_membership(match, right.name)
    special = _bit_test(match) or _flag_test(match) or (_fib(match) if isinstance(left, Fib) else None)
    if special is not None:
        return special
    key = _selector_key(left)
    if key is not None and match.op in ("==", "!=", "in"):
        protocol, field = key
        if protocol == "ct" and field in ("state", "status", "direction"):
            states = _states(match, field)
            if states is not None:
                return states
        if key in _PROTOCOL_SELECTORS:
            return f"{_only(match)} {value_words(right)}"
        if protocol == "meta" and field in _INTERFACES:
            return f"{_only(match)} {_INTERFACES[field]} {_interface(right)}"
        if isinstance(left, Payload) and field in _ADDRESS_FIELDS:
            return f"{_only(match)} {_ADDRESS_FIELDS[field]} {_address(match, place)}"
        if isinstance(left, Payload) and field in _PORT_FIELDS:
            ports = f"{_PORT_FIELDS[field]} {'port' if _is_single(right) else 'ports'} {value_words(right)}"
            if protocol == "th":
                return f"{_only(match)} {ports}"
            # `tcp dport != 22` still asks for TCP: the header it reads must be there.
            proto = value_words(Const("inet_proto", protocol))
            return f"only {proto} {ports}" if match.op != "!=" else f"only {proto}, not {ports}"
    if isinstance(right, Const) and isinstance(right.value, bool) and typed_kind(left) == "boolean":
        has = right.value == (match.op != "!=")
        return f"only packets {'with' if has else 'without'} {noun(left)}"
    return _generic(match)


def _generic(match: Match) -> str:
    left, right = match.left, match.right
    if match.op == "in":
        return f"only if {noun(left)} has {value_words(right)} set"
    if isinstance(right, SetLiteral):
        verb = "is one of" if match.op == "==" else "is none of"
        return f"only if {noun(left)} {verb} {value_words(right)}"
    return f"only if {noun(left)} {_OPERATORS[match.op]} {value_words(right)}"


def _set_membership(match: Match, name: str) -> str:
    left = match.left
    inside = "in" if match.op != "!=" else "not in"
    key = _selector_key(left)
    if isinstance(left, Payload) and key is not None and key[1] in _ADDRESS_FIELDS:
        return f"{_only(match)} {_ADDRESS_FIELDS[key[1]]} an address in the set {name}"
    verb = "are" if noun(left).count(",") or " and " in noun(left) else "is"
    return f"only if {noun(left)} {verb} {inside} the set {name}"


# -- the other statements that test something ---------------------------------------------------------------


def _per(amount: int, per: str, in_bytes: bool) -> str:
    if not in_bytes:
        return f"{amount} packet{'s' if amount != 1 else ''} per {per}"
    number, unit = rate_and_unit(amount)
    return f"{number} {unit} per {per}"


def limit_phrase(limit: Limit) -> str:
    """`limit rate 10/second`: "only up to 10 packets per second (bursts of 5)"."""
    rate = _per(limit.rate, limit.per, limit.bytes)
    if limit.burst:
        size = f"{limit.burst} packets" if not limit.bytes else " ".join(map(str, rate_and_unit(limit.burst)))
        rate += f", in bursts of up to {size}"
    return f"only beyond {rate}" if limit.over else f"only up to {rate}"


def quota_phrase(quota: Quota) -> str:
    """`quota 10 mbytes`: "only until 10 mbytes have passed"."""
    amount = " ".join(map(str, rate_and_unit(quota.bytes)))
    used = f" ({' '.join(map(str, rate_and_unit(quota.used)))} used so far)" if quota.used else ""
    if quota.over:
        return f"only once more than {amount} have passed this rule{used}"
    return f"only until {amount} have passed this rule{used}"


def connlimit_phrase(limit: ConnLimit) -> str:
    """`ct count over 10`: how many connections this rule counts must be open."""
    if limit.over:
        return f"only while more than {limit.count} of the connections this rule counts are open"
    return f"only while at most {limit.count} of the connections this rule counts are open"

