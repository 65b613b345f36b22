"""The statement grammar of a rule: matches, verdicts, and everything else nft lists in a rule.

`rule_body(cursor, family)` reads a rule line's statements, then its `comment "..."` and `# handle N`.
A statement starting with a selector is a match (`ip daddr 10.0.0.1`, `ct state established,related`,
`tcp flags syn / fin,syn,rst,ack`), a verdict map (`... vmap @service-ips`) or a change (`meta mark set ...`);
the others start with their keyword (counter, log, limit, quota, reject, snat, dnat, masquerade, redirect,
add/update/delete @set, meter, notrack, dup, fwd, tproxy, synproxy, queue, flow add, ct count, xt, verdicts,
`jump { ... }`); `nested` reads those that hold statements.
"""

from __future__ import annotations

from iptables_lens.nft import exprs, nested
from iptables_lens.nft import types as ty
from iptables_lens.nft.model import (
    Binop,
    ConnLimit,
    Const,
    Dup,
    Expr,
    Exthdr,
    Fib,
    FlowOffload,
    Fwd,
    IpOption,
    Log,
    Mangle,
    MapLookup,
    Match,
    Nat,
    Notrack,
    ObjectRef,
    Operator,
    Prefix,
    Queue,
    Range,
    Reject,
    SctpChunk,
    Statement,
    Synproxy,
    TcpOption,
    Tproxy,
    ValueList,
    VerdictMap,
    Xt,
)
from iptables_lens.nft.stateful import counter, limit, quota
from iptables_lens.nft.tokens import Cursor, Token, shown
from iptables_lens.nft.values import ValueProblem, read_value

OPERATORS: dict[str, Operator] = {"==": "==", "!=": "!=", "<": "<", ">": ">", "<=": "<=", ">=": ">=", "eq": "==",
                                  "ne": "!=", "lt": "<", "gt": ">", "le": "<=", "ge": ">="}
LOG_LEVELS = ("emerg", "alert", "crit", "err", "warn", "notice", "info", "debug", "audit")
NAT_FLAGS = ("random", "fully-random", "persistent")
REJECT_DEFAULT = {"ip": "icmp", "ip6": "icmpv6"}  # other families reject with icmpx by default
OBJECT_SETTERS = {"helper": "ct helper", "timeout": "ct timeout", "expectation": "ct expectation"}


SetTypes = nested.SetTypes | None  # the key (and value) types of the table's sets and maps, where known
# The tables iptables-nft (and ip6tables-, arptables-, ebtables-nft) keep: where nft prints the translation of
# an iptables comment match, which is nothing, between the blanks that separate statements.
IPTABLES_NFT_TABLES = frozenset({(family, name) for family in ("ip", "ip6")
                                 for name in ("filter", "nat", "mangle", "raw", "security")}
                                | {("arp", "filter"), ("bridge", "filter"), ("bridge", "nat"), ("bridge", "broute")})
_VANISHED = Xt("match", "comment")


def rule_body(cur: Cursor, family: str, set_types: SetTypes = None, vanished_comments: bool = False
              ) -> tuple[tuple[Statement, ...], str | None, int | None]:
    """A rule's statements, its comment and its handle (`set_types`: the key and value types of the table's
    sets, for a set update's constants). With `vanished_comments` (a rule of `IPTABLES_NFT_TABLES`), each
    blank more than nft puts between two statements, or after the rule's indentation, is an iptables comment
    match."""
    statements: list[Statement] = []
    comment = None
    while not cur.at_end():
        token = cur.peek()
        assert token is not None
        if vanished_comments:
            statements.extend([_VANISHED] * _blanks_before(cur, token))
        if token.kind == "#":
            break
        if token.kind == "w" and token.text == "comment":
            cur.pos += 1
            comment = cur.quoted("the rule's comment")
            break
        statements.append(statement(cur, family, set_types))
    if vanished_comments and comment is None and cur.at_end() and cur.tokens:
        last = cur.tokens[-1]
        line = cur.lines[last.line - 1]
        statements.extend([_VANISHED] * (len(line) - len(line.rstrip(" "))))
    handle = trailing_handle(cur)
    if not statements and comment is None:
        raise cur.error(cur.peek(), "a rule needs at least one statement")
    return tuple(statements), comment, handle


def _blanks_before(cur: Cursor, token: Token) -> int:
    """How many blanks more than nft prints come before `token` on its line (after `\t\t`, the first)."""
    line = cur.lines[token.line - 1]
    if cur.pos == 0:
        before = line[:token.column - 1]
        return len(before) - 2 if before.startswith("\t\t ") and not before.strip(" \t") else 0
    previous = cur.tokens[cur.pos - 1]
    if previous.line != token.line or line[previous.end - 1:token.column - 1].strip(" "):
        return 0
    return max(token.column - previous.end - 1, 0)


def trailing_handle(cur: Cursor) -> int | None:
    """The `# handle N` that ends a line of `nft -a list ruleset`, or None; DumpError for anything else left."""
    token = cur.peek()
    if token is None:
        return None
    if token.kind != "#":
        raise cur.error(token, f"unexpected {shown(token)} after the end of the rule")
    cur.pos += 1
    words = token.text[1:].split()
    if len(words) == 2 and words[0] == "handle" and words[1].isdigit():
        return int(words[1])
    return None


def statement(cur: Cursor, family: str, set_types: SetTypes = None) -> Statement:
    token = cur.peek()
    assert token is not None
    word = token.text if token.kind == "w" else ""
    if word in ("jump", "goto") and cur.word(1) == "{":
        return nested.chain_binding(cur, family, set_types, rule_body)
    found = exprs.verdict(cur)
    if found is not None:
        return found
    keyword = _KEYWORDS.get(word)
    if keyword is not None:
        cur.pos += 1
        return keyword(cur, family, set_types)
    if word == "ct":
        next_word = cur.word(1)
        if next_word == "count":
            cur.pos += 2
            over = cur.accept("over")
            return ConnLimit(exprs.integer_word(cur, "the connection count"), over)
        if next_word in OBJECT_SETTERS and cur.word(2) == "set":
            cur.pos += 3
            return ObjectRef(OBJECT_SETTERS[next_word], _object_name(cur, family))
    if word == "meta" and cur.word(1) == "secmark" and cur.word(2) == "set" and cur.word(3) != "ct":
        # nft reads `meta secmark set ct secmark` as a change of the mark, anything else as the secmark object.
        cur.pos += 3
        return ObjectRef("secmark", _object_name(cur, family))
    if token.kind != "w" or exprs.selector(_probe(cur), family) is None:
        raise cur.error(token, f"expected a statement (a match such as ip daddr 10.0.0.1, a verdict, counter, "
                        f"log, dnat, ...), got {shown(token)}")
    return _selector_statement(cur, family)


def _probe(cur: Cursor) -> Cursor:
    probe = Cursor(cur.tokens, cur.source, cur.lines, cur.end_line, cur.end_column)
    probe.pos = cur.pos
    return probe


def _selector_statement(cur: Cursor, family: str, set_types: SetTypes = None) -> Statement:
    left, types = exprs.left_side(cur, family)
    if cur.accept("set"):
        if len(types) != 1:
            raise cur.error(cur.peek(), "a concatenation cannot be set")
        return Mangle(left, exprs.value_expr(cur, types[0], family))
    if cur.accept("vmap"):
        return VerdictMap(left, exprs.set_operand(cur, types, (ty.VERDICT,), family))
    op_word = cur.word()
    op: Operator | None = OPERATORS.get(op_word or "")
    if op is not None:
        cur.pos += 1
    if isinstance(left, (Fib, Exthdr, TcpOption, IpOption, SctpChunk)) and cur.word() in ("exists", "missing"):
        # Whether the route, header or option is there at all (nft's NFTA_FIB_F_PRESENT, exthdr's F_PRESENT).
        types = (ty.BOOLEAN,)
    right = exprs.right_side(cur, types, family)
    if cur.word() == "/" and len(types) == 1 and types[0].datatype.kind == "bitmask":
        cur.pos += 1
        mask = exprs.value_atom(cur, types[0], allow_list=True)
        return Match(op or "==", Binop("&", left, mask), right)
    if op is None:
        op = "in" if _is_flags(right, types) else "=="
    return Match(op, left, right)


def _is_flags(right: Expr, types: exprs.Types) -> bool:
    return len(types) == 1 and types[0].datatype.kind == "bitmask" and isinstance(right, (Const, ValueList))


def _object_name(cur: Cursor, family: str) -> Expr:
    """An object's name in double quotes, or a map choosing it (`ip saddr map { 10.0.0.1 : "c1" }`)."""
    token = cur.peek()
    if token is not None and token.kind == "q":
        cur.pos += 1
        return Const("string", token.text)
    expr = exprs.value_expr(cur, ty.typed("string"), family)
    if not isinstance(expr, MapLookup):
        raise cur.error(token, f"expected the object's name in double quotes, got {shown(token)}")
    return expr


def _named_or(cur: Cursor, family: str, kind: str, plain) -> Statement:
    if cur.accept("name"):
        return ObjectRef(kind, _object_name(cur, family))
    return plain(cur)


def _counter(cur: Cursor, family: str, set_types: SetTypes = None) -> Statement:
    return _named_or(cur, family, "counter", counter)


def _quota(cur: Cursor, family: str, set_types: SetTypes = None) -> Statement:
    return _named_or(cur, family, "quota", quota)


def _limit(cur: Cursor, family: str, set_types: SetTypes = None) -> Statement:
    return _named_or(cur, family, "limit", limit)


def _log(cur: Cursor, family: str, set_types: SetTypes = None) -> Statement:
    prefix = level = None
    group = snaplen = threshold = None
    flags: list[str] = []
    while True:
        word = cur.word()
        if word == "prefix" and prefix is None:
            cur.pos += 1
            prefix = cur.quoted("the log prefix")
        elif word in ("group", "snaplen", "queue-threshold"):
            cur.pos += 1
            value = exprs.integer_word(cur, f"the log {word}", 32)
            if word == "group":
                group = value
            elif word == "snaplen":
                snaplen = value
            else:
                threshold = value
        elif word == "level" and level is None:
            cur.pos += 1
            token = cur.take_word("a log level")
            if token.text not in LOG_LEVELS:
                raise cur.error(token, f"expected a log level ({', '.join(LOG_LEVELS)}), got {shown(token)}")
            level = token.text
        elif word == "flags":
            cur.pos += 1
            flags.extend(_log_flags(cur))
        else:
            return Log(prefix, group, snaplen, threshold, None if level == "warn" else level, tuple(flags))


def _log_flags(cur: Cursor) -> list[str]:
    token = cur.take_word("log flags (all, tcp sequence, tcp options, ip options, skuid, ether)")
    if token.text in ("all", "skuid", "ether"):
        return [token.text]
    if token.text == "ip":
        cur.expect("options")
        return ["ip options"]
    if token.text == "tcp":
        found = []
        while True:
            option = cur.take_word("sequence or options")
            if option.text not in ("sequence", "options"):
                raise cur.error(option, f"expected sequence or options, got {shown(option)}")
            found.append(f"tcp {option.text}")
            if not (cur.touching() and cur.accept(",")):
                return found
    raise cur.error(token, f"expected log flags (all, tcp, ip options, skuid, ether), got {shown(token)}")


def _reject(cur: Cursor, family: str, set_types: SetTypes = None) -> Statement:
    if not cur.accept("with"):
        return Reject(REJECT_DEFAULT.get(family, "icmpx"), "port-unreachable")
    token = cur.take_word("icmp, icmpv6, icmpx or tcp reset")
    if token.text == "tcp":
        cur.expect("reset")
        return Reject("tcp reset")
    codes = {"icmp": "icmp_code", "icmpv6": "icmpv6_code", "icmpx": "icmpx_code"}
    if token.text not in codes:
        raise cur.error(token, f"expected icmp, icmpv6, icmpx or tcp after 'reject with', got {shown(token)}")
    cur.accept("type")
    code = cur.take_word(f"an {token.text} code")
    try:
        value = read_value(code.text, ty.typed(codes[token.text]), False)
    except ValueProblem as problem:
        raise cur.error(code, str(problem)) from None
    return Reject(token.text, str(value.value))


def _flags(cur: Cursor, allowed: tuple[str, ...]) -> tuple[str, ...]:
    """Flags joined by commas with no blank between them (`random,persistent`)."""
    found: list[str] = []
    if cur.word() in allowed:
        found.append(cur.take("a flag").text)
        while cur.touching() and cur.word() == "," and cur.word(1) in allowed:
            cur.pos += 1
            if not cur.touching():
                raise cur.error(cur.peek(), "flags are joined by commas without blanks")
            found.append(cur.take("a flag").text)
    return tuple(found)


_SERVICE = ty.typed("inet_service")
_QUEUE_NUMBER = ty.typed("integer", 16)


def _port(cur: Cursor, token: Token, text: str, typed: ty.Typed = _SERVICE) -> Expr:
    """A port or range of ports (or, with `typed`, another number or range of them)."""
    try:
        if "-" in text:
            low, _, high = text.partition("-")
            return Range(read_value(low, typed, False), read_value(high, typed, False))
        return read_value(text, typed, False)
    except ValueProblem as problem:
        raise cur.error(token, str(problem)) from None


def _address(cur: Cursor, token: Token, text: str, typed: ty.Typed) -> Expr:
    try:
        if "/" in text:
            base, _, length = text.partition("/")
            return Prefix(read_value(base, typed, False), int(length))
        if "-" in text:
            low, _, high = text.partition("-")
            return Range(read_value(low.strip("[]"), typed, False), read_value(high.strip("[]"), typed, False))
        return read_value(text, typed, False)
    except (ValueProblem, ValueError) as problem:
        raise cur.error(token, str(problem)) from None


def _split_address_port(text: str) -> tuple[str, str | None]:
    """`10.0.0.1:80` -> (10.0.0.1, 80); `[fd00::1]:80` -> (fd00::1, 80); `:80` -> ("", 80); `fd00::1` alone."""
    if text.startswith("["):
        end = text.rfind("]")
        if end > 0 and text[end + 1:end + 2] == ":":
            return text[:end + 1].replace("[", "").replace("]", ""), text[end + 2:]
        return text.replace("[", "").replace("]", ""), None
    if text.count(":") == 1:
        address, _, port = text.partition(":")
        return address, port
    return text, None


def _translation(cur: Cursor, family: str | None, table_family: str, addr_needed: bool
                 ) -> tuple[Expr | None, Expr | None]:
    typed = ty.family_address(family or (table_family if table_family in ("ip", "ip6") else None))
    token = cur.peek()
    if token is not None and token.kind == "w" and exprs.selector(_probe(cur), table_family) is not None:
        if typed is None:
            raise cur.error(token, "name the address family (ip or ip6) of a translation by map in this table")
        return exprs.value_expr(cur, typed, table_family, ty.typed("inet_service")), None
    token = cur.take_word("the address to translate to")
    address, port = _split_address_port(token.text)
    addr = None
    if address:
        if typed is None:
            raise cur.error(token, "name the address family (ip or ip6) to translate to in this table")
        addr = _address(cur, token, address, typed)
    elif addr_needed and port is None:
        raise cur.error(token, f"expected an address, got {token.text!r}")
    return addr, (_port(cur, token, port) if port is not None else None)


def _nat(kind: str):
    def read(cur: Cursor, family: str, set_types: SetTypes = None) -> Statement:
        nat_family = None
        if cur.word() in ("ip", "ip6") and kind in ("snat", "dnat"):
            nat_family = cur.take("ip or ip6").text
        prefix = cur.accept("prefix")
        addr = port = None
        if cur.accept("to"):
            addr, port = _translation(cur, nat_family, family, kind in ("snat", "dnat"))
        elif kind in ("snat", "dnat"):
            raise cur.error(cur.peek(), f"expected 'to' and the address after {kind}, got {shown(cur.peek())}")
        return Nat(kind, nat_family, addr, port, _flags(cur, NAT_FLAGS), prefix)  # type: ignore[arg-type]
    return read


def _dup(cur: Cursor, family: str, set_types: SetTypes = None) -> Statement:
    cur.expect("to")
    token = cur.take("the address or device to duplicate to")
    if token.kind == "q":
        return Dup(None, Const("string", token.text))
    typed = ty.family_address(family if family in ("ip", "ip6") else None) or ty.typed("ipv4_addr")
    addr = _address(cur, token, token.text, typed)
    device = None
    if cur.accept("device"):
        name = cur.take("the device, in double quotes")
        device = Const("string", name.text)
    return Dup(addr, device)


def _fwd(cur: Cursor, family: str, set_types: SetTypes = None) -> Statement:
    fwd_family = cur.take("ip or ip6").text if cur.word() in ("ip", "ip6") else None
    cur.expect("to")
    if fwd_family is None:
        name = cur.take("the device to forward to, in double quotes")
        return Fwd(Const("string", name.text))
    token = cur.take_word("the address to forward to")
    addr = _address(cur, token, token.text, ty.family_address(fwd_family) or ty.typed("ipv4_addr"))
    cur.expect("device")
    name = cur.take("the device, in double quotes")
    return Fwd(Const("string", name.text), fwd_family, addr)


def _tproxy(cur: Cursor, family: str, set_types: SetTypes = None) -> Statement:
    tproxy_family = cur.take("ip or ip6").text if cur.word() in ("ip", "ip6") else None
    cur.expect("to")
    addr, port = _translation(cur, tproxy_family, family, False)
    return Tproxy(tproxy_family, addr, port)


def _synproxy(cur: Cursor, family: str, set_types: SetTypes = None) -> Statement:
    if cur.accept("name"):
        return ObjectRef("synproxy", _object_name(cur, family))
    mss = exprs.integer_word(cur, "the MSS", 16) if cur.accept("mss") else None
    wscale = exprs.integer_word(cur, "the window scale", 8) if cur.accept("wscale") else None
    flags = tuple(flag for flag in ("timestamp", "sack-perm") if cur.accept(flag))
    return Synproxy(mss, wscale, flags)


def _queue(cur: Cursor, family: str, set_types: SetTypes = None) -> Statement:
    flags: tuple[str, ...] = ()
    if cur.accept("flags"):
        flags = _flags(cur, ("bypass", "fanout"))
    num = None
    to = cur.accept("to")
    if to and cur.word() is not None and exprs.selector(_probe(cur), family) is not None:
        # `queue to numgen inc mod 2`, `queue to symhash mod 2`, `queue to ip saddr map { ... }`.
        num = exprs.value_expr(cur, _QUEUE_NUMBER, family)
    elif to or cur.accept("num"):
        token = cur.take_word("the queue number")
        num = _port(cur, token, token.text, _QUEUE_NUMBER)
    return Queue(num, flags)


def _flow(cur: Cursor, family: str, set_types: SetTypes = None) -> Statement:
    if not (cur.accept("add") or cur.accept("offload")):
        raise cur.error(cur.peek(), f"expected 'add @flowtable' after flow, got {shown(cur.peek())}")
    return FlowOffload(cur.name("the flowtable, @name", "@"))


def _xt(cur: Cursor, family: str, set_types: SetTypes = None) -> Statement:
    kind = cur.take_word("match, target or watcher")
    if kind.text not in ("match", "target", "watcher"):
        raise cur.error(kind, f"expected match, target or watcher after xt, got {shown(kind)}")
    name = cur.take("the extension's name")
    return Xt(kind.text, name.text)  # type: ignore[arg-type]


def _notrack(cur: Cursor, family: str, set_types: SetTypes = None) -> Statement:
    return Notrack()


def _set_update(op: str):
    return lambda cur, family, set_types=None: nested.set_update(op, cur, family, set_types)


def _meter(cur: Cursor, family: str, set_types: SetTypes = None) -> Statement:
    return nested.meter(cur, family, set_types, statement)


_KEYWORDS = {
    "counter": _counter, "quota": _quota, "limit": _limit, "log": _log, "reject": _reject, "notrack": _notrack,
    "snat": _nat("snat"), "dnat": _nat("dnat"), "masquerade": _nat("masquerade"), "redirect": _nat("redirect"),
    "add": _set_update("add"), "update": _set_update("update"), "delete": _set_update("delete"), "dup": _dup,
    "meter": _meter,
    "fwd": _fwd, "tproxy": _tproxy, "synproxy": _synproxy, "queue": _queue, "flow": _flow, "xt": _xt,
}
