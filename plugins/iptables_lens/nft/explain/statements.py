"""A phrase for every kind of statement a rule can hold, in `STATEMENTS`: whether it tests the packet (a
condition: the rule goes on only if it holds) or does something to it (an action), and its words.

>>> from iptables_lens.nft.model import Binop, Const, Mangle, Meta
>>> role, phrase = STATEMENTS[Mangle]
>>> role, phrase(Mangle(Meta("mark"), Binop("|", Meta("mark"), Const("mark", 0x4000))), None)
('action', 'sets bit 0x00004000 of the packet mark')
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal

from iptables_lens.iptables.explain.words import join_and, join_or
from iptables_lens.nft.explain.choices import choice, lead
from iptables_lens.nft.explain.conditions import connlimit_phrase, limit_phrase, match_phrase, quota_phrase
from iptables_lens.nft.explain.place import Place
from iptables_lens.nft.explain.words import noun, value_words
from iptables_lens.nft.model import (
    Binop,
    BoundChain,
    Concat,
    ConnLimit,
    Const,
    Counter,
    Ct,
    Dup,
    Expr,
    FlowOffload,
    Fwd,
    Limit,
    Log,
    Mangle,
    MapLookup,
    Match,
    Meta,
    Meter,
    Nat,
    Notrack,
    ObjectRef,
    Prefix,
    Queue,
    Quota,
    Range,
    Reject,
    SetRef,
    SetUpdate,
    Synproxy,
    Tproxy,
    Verdict,
    VerdictMap,
    Xt,
)
from iptables_lens.nft.values import format_duration

Role = Literal["condition", "action"]

# -- verdicts -------------------------------------------------------------------------------------------------


def verdict_phrase(verdict: Verdict, place: Place | None) -> str:
    """What a rule's verdict does: "accepts the packet", "jump to services", "returns to the calling chain"."""
    if verdict.kind == "accept":
        return "accepts the packet (this base chain is done with it)"
    if verdict.kind == "drop":
        return "drops the packet"
    if verdict.kind == "continue":
        return "goes on to the next rule"
    if verdict.kind == "return":
        hook = place.chain.hook if place is not None else None
        if hook is not None:
            return f"ends the base chain: its policy {hook.policy or 'accept'} decides"
        return "returns to the calling chain"
    if verdict.kind == "goto":
        return f"goes to {verdict.target} and does not come back here"
    return f"jump to {verdict.target}"


def _vmap(stmt: VerdictMap, place: Place | None) -> str:
    if isinstance(stmt.data, SetRef):
        return (f"looks up {noun(stmt.key)} in the verdict map {stmt.data.name} and does what its element says "
                "(nothing, if none matches)")
    return choice(stmt.key, stmt.data.elements, value_words)


# -- changes to the packet --------------------------------------------------------------------------------------


def _bits(value: Expr) -> str:
    number = value.value if isinstance(value, Const) else None
    one = isinstance(number, int) and number > 0 and number & (number - 1) == 0
    return f"{'bit' if one else 'bits'} {value_words(value)}"


def _mangle(stmt: Mangle, place: Place | None) -> str:
    key, value = stmt.key, stmt.value
    subject = noun(key)
    if isinstance(key, Meta) and key.key == "nftrace":
        return "turns on tracing for the packet (`nft monitor trace` shows its path)"
    if isinstance(value, Binop) and value.left == key and value.op in ("|", "^", "&"):
        bits = value.right
        if value.op == "|":
            return f"sets {_bits(bits)} of {subject}"
        if value.op == "^":
            return f"flips {_bits(bits)} of {subject} (XOR: set bits are cleared)"
        return f"keeps only {_bits(bits)} of {subject}, clearing the others (AND)"
    if isinstance(key, (Meta, Ct)) and key.key == "mark" and isinstance(value, (Meta, Ct)) and value.key == "mark":
        return f"copies {noun(value)} to {subject}"
    return f"sets {subject} to {value_words(value)}"


def _host_port(addr: Expr | None, port: Expr | None) -> str:
    """`10.0.0.1:80`, `[fd00::1]:80`, `10.0.0.1 to 10.0.0.5`, `port 8080`: where NAT sends the packet."""
    if isinstance(addr, Concat) and len(addr.items) == 2 and port is None:
        addr, port = addr.items
    host = value_words(addr) if addr is not None else ""
    if isinstance(addr, Const) and addr.type == "ipv6_addr" and port is not None:
        host = f"[{host}]"
    if port is None:
        return host
    ports = value_words(port)
    return f"{host}:{ports}" if host else f"port {ports}"


_NAT_FLAGS = {"random": "ports chosen at random", "fully-random": "ports chosen fully at random",
              "persistent": "the same address for a client every time"}


def _nat(stmt: Nat, place: Place | None) -> str:
    flags = f", {join_and([_NAT_FLAGS[f] for f in stmt.flags])}" if stmt.flags else ""
    if stmt.kind == "masquerade":
        ports = f", source port from {value_words(stmt.port)}" if stmt.port is not None else ""
        return ("masquerades: the source becomes the address of the interface the packet leaves by"
                f"{ports}{flags}")
    if stmt.kind == "redirect":
        to = f" port {value_words(stmt.port)}" if stmt.port is not None else ""
        return f"redirects the packet to this node{to}{flags}"
    what = stmt.kind.upper()
    if isinstance(stmt.addr, MapLookup):
        lookup = stmt.addr
        if isinstance(lookup.data, SetRef):
            return f"{what} to what {noun(lookup.key)} maps to in the map {lookup.data.name}{flags}"
        picked = lead(lookup.key, lookup.data.elements)
        targets = [_host_port(e.data, stmt.port) for e in lookup.data.elements if e.data is not None]
        if picked == "the only one, with probability 1" and len(targets) == 1:
            return f"{what} to {targets[0]} (the only choice, so with probability 1){flags}"
        if picked is not None:
            return f"{what} to {picked}: {join_or(targets)}{flags}"
        return f"{what} " + choice(lookup.key, lookup.data.elements, lambda data: "to " + _host_port(data, stmt.port)) + flags
    if stmt.prefix and isinstance(stmt.addr, Prefix):
        return f"{what}, mapping the network onto {value_words(stmt.addr)} address for address{flags}"
    return f"{what} to {_host_port(stmt.addr, stmt.port)}{flags}"


_REJECT_WITH = {"icmp": "ICMP", "icmpv6": "ICMPv6", "icmpx": "ICMP or ICMPv6 (as fits the packet)"}


def _reject(stmt: Reject, place: Place | None) -> str:
    if stmt.type == "tcp reset":
        return "rejects with a TCP reset"
    code = (stmt.code or "port-unreachable").replace("-", " ")
    return f"rejects with {_REJECT_WITH[stmt.type]} {code}"


def _set_update(stmt: SetUpdate, place: Place | None) -> str:
    key = noun(stmt.key)
    where = f"the set {stmt.set}" if stmt.data is None else f"the map {stmt.set}"
    if stmt.op == "delete":
        return f"removes {key} from {where}"
    if stmt.data is not None:
        items = stmt.data.items if isinstance(stmt.data, Concat) else (stmt.data,)
        value = value_words(stmt.data) if all(isinstance(i, Const) for i in items) else noun(stmt.data)
        key = f"{key}, mapped to {value},"
    timeout = f" for {format_duration(stmt.timeout)}" if stmt.timeout else ""
    kept = [phrase_of(s, place)[1] for s in stmt.statements]
    per_element = f", with what it keeps per element: {join_and(kept)}" if kept else ""
    if stmt.op == "add":
        return f"adds {key} to {where}{timeout} (if it is not there yet){per_element}"
    return f"adds {key} to {where}{timeout}, or restarts its timeout if it is there{per_element}"


# -- what goes on beside the packet -----------------------------------------------------------------------------


def _counter(stmt: Counter, place: Place | None) -> str:
    if stmt.packets is None:
        return "counts the packet"
    return f"counts the packet ({stmt.packets} packets, {stmt.bytes} bytes so far)"


_LOG_FLAGS = {"tcp sequence": "TCP sequence numbers", "tcp options": "TCP options", "ip options": "IP options",
              "skuid": "the sending socket's user", "ether": "the link-layer header", "all": "every detail"}


def _log(stmt: Log, place: Place | None) -> str:
    if stmt.group is not None:
        text = f"sends the packet to log group {stmt.group} (nflog)"
    else:
        text = "logs the packet to the kernel log" + (f" at level {stmt.level}" if stmt.level else "")
    if stmt.prefix is not None:
        text += f' with prefix "{stmt.prefix}"'
    if stmt.snaplen is not None:
        text += f", copying {stmt.snaplen} bytes"
    if stmt.queue_threshold is not None:
        text += f", {stmt.queue_threshold} at a time"
    if stmt.flags:
        text += f", with {join_and([_LOG_FLAGS[f] for f in stmt.flags])}"
    return text + ", and goes on"


_OBJECTS = {"counter": "counts the packet in the named counter {}", "quota": "only within the named quota {}",
            "limit": "only within the named limit {}", "ct helper": "gives the connection the helper {}",
            "ct timeout": "gives the connection the timeout policy {}",
            "ct expectation": "sets up the expectation {} for the connection",
            "secmark": "sets the packet's security mark from the object {}",
            "synproxy": "answers the TCP handshake with the SYN proxy settings {}"}


def _object_ref(stmt: ObjectRef, place: Place | None) -> str:
    name = stmt.name
    if isinstance(name, MapLookup):
        if isinstance(name.data, SetRef):
            chosen = f"that {noun(name.key)} selects in the map {name.data.name}"
        else:
            pairs = [f"{value_words(e.key)} → {value_words(e.data)}" for e in name.data.elements if e.data is not None]
            chosen = f"that {noun(name.key)} selects ({', '.join(pairs)})"
        return _OBJECTS[stmt.kind].format(chosen)
    return _OBJECTS[stmt.kind].format(str(name.value) if isinstance(name, Const) else value_words(name))


def _dup(stmt: Dup, place: Place | None) -> str:
    if stmt.addr is None:
        return f"sends a copy of the packet out of device {value_words(stmt.device)}"  # type: ignore[arg-type]
    device = f" by device {value_words(stmt.device)}" if stmt.device is not None else ""
    return f"sends a copy of the packet to {value_words(stmt.addr)}{device}"


def _fwd(stmt: Fwd, place: Place | None) -> str:
    if stmt.addr is None:
        return f"sends the packet out of device {value_words(stmt.device)}"
    return f"sends the packet to {value_words(stmt.addr)} by device {value_words(stmt.device)}"


def _tproxy(stmt: Tproxy, place: Place | None) -> str:
    return f"hands the packet to a local socket at {_host_port(stmt.addr, stmt.port)} (transparent proxy)"


_SYNPROXY_FLAGS = {"timestamp": "timestamps", "sack-perm": "selective acknowledgements"}


def _synproxy(stmt: Synproxy, place: Place | None) -> str:
    details = ([f"MSS {stmt.mss}"] if stmt.mss is not None else []) + (
        [f"window scale {stmt.wscale}"] if stmt.wscale is not None else []) + [_SYNPROXY_FLAGS[f] for f in stmt.flags]
    return "answers the TCP handshake itself (SYN proxy" + (f": {join_and(details)}" if details else "") + ")"


_QUEUE_FLAGS = {"bypass": "accepted if no program listens", "fanout": "spread over the queues by CPU"}


def _queue(stmt: Queue, place: Place | None) -> str:
    number = stmt.num if stmt.num is not None else Const("integer", 0)
    which = f"queues {value_words(number)}" if isinstance(number, Range) else f"queue {value_words(number)}"
    flags = f" ({join_and([_QUEUE_FLAGS[f] for f in stmt.flags])})" if stmt.flags else ""
    return f"hands the packet to a program through userspace {which}{flags}"


def _xt(stmt: Xt, place: Place | None) -> str:
    if (stmt.kind, stmt.name) == ("match", "comment"):
        return "carries an iptables comment (iptables-nft keeps it; nft's listing does not show it)"
    if stmt.kind == "match":
        return (f"only if the iptables match {stmt.name} holds (iptables-nft keeps it as it is: nft cannot show "
                "what it tests)")
    what = "target" if stmt.kind == "target" else "watcher"
    return f"applies the iptables {what} {stmt.name} (iptables-nft keeps it as it is: nft cannot show what it does)"


def _meter(stmt: Meter, place: Place | None) -> str:
    kept = f", each kept {format_duration(stmt.timeout)}" if stmt.timeout else ""
    each = noun(stmt.key).removeprefix("the ")
    return (f"{phrase_of(stmt.statement, None)[1]}, for each {each} apart (the meter {stmt.name} keeps up to "
            f"{stmt.size} of them{kept})")


def _bound_chain(stmt: BoundChain, place: Place | None) -> str:
    head = "jump to a chain bound to this rule" if stmt.kind == "jump" else (
        "goes to a chain bound to this rule (and does not come back here)")
    if not stmt.rules:
        return f"{head}, which has no rules"
    rules = "; ".join(f"({number}) {sentence(rule.statements, None)[2]}" for number, rule in enumerate(stmt.rules, 1))
    count = "one rule" if len(stmt.rules) == 1 else f"{len(stmt.rules)} rules"
    return f"{head}, with {count}: {rules}"


def _condition(explain: Callable[[Any], str]) -> Callable[[Any, Place | None], str]:
    return lambda stmt, place: explain(stmt)


STATEMENTS: dict[type, tuple[Role, Callable[[Any, Place | None], str]]] = {
    Match: ("condition", lambda stmt, place: match_phrase(stmt, place)),
    Limit: ("condition", _condition(limit_phrase)),
    Quota: ("condition", _condition(quota_phrase)),
    ConnLimit: ("condition", _condition(connlimit_phrase)),
    Verdict: ("action", verdict_phrase),
    VerdictMap: ("action", _vmap),
    Mangle: ("action", _mangle),
    Nat: ("action", _nat),
    Reject: ("action", _reject),
    SetUpdate: ("action", _set_update),
    Counter: ("action", _counter),
    Log: ("action", _log),
    ObjectRef: ("action", _object_ref),
    Notrack: ("action", lambda stmt, place: "exempts the packet from connection tracking"),
    Dup: ("action", _dup),
    Fwd: ("action", _fwd),
    Tproxy: ("action", _tproxy),
    Synproxy: ("action", _synproxy),
    Queue: ("action", _queue),
    FlowOffload: ("action", lambda stmt, place: f"offloads the connection to the flowtable {stmt.flowtable}: its "
                  "later packets skip the rules"),
    Xt: ("action", _xt),
    Meter: ("action", _meter),
    BoundChain: ("action", _bound_chain),
}
"""Every statement kind of the model, with its role and its phrase (given the statement and its rule's place)."""

_CONDITION_OBJECTS = ("quota", "limit")
_NOTHING_ELSE = "nothing else happens; the packet goes on to the next rule"


def phrase_of(stmt: Any, place: Place | None) -> tuple[Role, str]:
    """The role and phrase of one statement of a rule at `place` (None: a statement kept in a set's element or
    in a chain bound to the rule)."""
    role, explain = STATEMENTS[type(stmt)]
    if isinstance(stmt, ObjectRef) and stmt.kind in _CONDITION_OBJECTS or isinstance(stmt, Xt) and stmt.kind == "match" \
            and stmt.name != "comment" or isinstance(stmt, Meter) and STATEMENTS[type(stmt.statement)][0] == "condition":
        role = "condition"
    return role, explain(stmt, place)


def sentence(statements: tuple[Any, ...], place: Place | None) -> tuple[list[str], list[str], str]:
    """A rule's statements in words: what it tests, what it does, and the two as one sentence (no capital, no
    full stop), each action after the conditions before it: "only TCP: accepts the packet"."""
    conditions: list[str] = []
    actions: list[str] = []
    parts: list[str] = []
    pending: list[str] = []
    for stmt in statements:
        role, phrase = phrase_of(stmt, place)
        if role == "condition":
            conditions.append(phrase)
            pending.append(phrase)
            continue
        actions.append(phrase)
        if pending:
            # Conditions after an action test the packet only once the action is done: "…, then only if …".
            lead = ", ".join(pending)
            parts.append(f"{lead}: {phrase}" if not parts else f"then, {lead}: {phrase}")
            pending = []
        else:
            parts.append(phrase if not parts else f"then {phrase}")
    if pending or not actions:
        lead = ", ".join(pending)
        parts.append(f"{lead}: {_NOTHING_ELSE}" if not parts else f"then, {lead}: {_NOTHING_ELSE}")
    return conditions, actions, ", ".join(parts)

