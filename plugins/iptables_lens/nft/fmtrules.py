"""Expressions, statements and rules -> text, as nftables 1.0.6 prints them (its src/statement.c and
src/expression.c): `meta mark set meta mark | 0x00004000`, `tcp flags syn / fin,syn,rst,ack`, `dnat to
[fd00::1]:80`, a range's ends as numbers. `fmt` prints the declarations around them.
"""

from __future__ import annotations

from iptables_lens.nft import exprs as ex
from iptables_lens.nft.model import (
    Binop,
    BoundChain,
    Concat,
    ConnLimit,
    Const,
    Counter,
    Ct,
    Dup,
    Element,
    Expr,
    Exthdr,
    Fib,
    FlowOffload,
    Fwd,
    Hash,
    IpOption,
    Ipsec,
    Limit,
    Log,
    Mangle,
    MapLookup,
    Match,
    Meta,
    Meter,
    Nat,
    Notrack,
    Numgen,
    ObjectRef,
    Osf,
    Payload,
    Prefix,
    Queue,
    Quota,
    Range,
    RawPayload,
    Reject,
    Rt,
    Rule,
    SctpChunk,
    SetLiteral,
    SetRef,
    SetUpdate,
    Socket,
    Statement,
    Synproxy,
    TcpOption,
    Tproxy,
    ValueList,
    Verdict,
    VerdictMap,
    Xt,
)
from iptables_lens.nft.stateful import rate_and_unit
from iptables_lens.nft.types import DATATYPES, UNQUALIFIED_META
from iptables_lens.nft.values import format_duration, format_number, format_value

_DEFAULT_REJECT = {"ip": "icmp", "ip6": "icmpv6"}


def handle_comment(handle: int | None) -> str:
    return f" # handle {handle}" if handle is not None else ""


# -- expressions --------------------------------------------------------------------------------------------


def format_expr(expr: Expr) -> str:
    """One expression as nft prints it."""
    kind = type(expr)
    if kind is Const:
        assert isinstance(expr, Const)
        return "*" if expr.type == "catchall" else format_value(expr)
    if kind is Payload:
        assert isinstance(expr, Payload)
        return f"{expr.protocol} {expr.field}"
    if kind is Meta:
        assert isinstance(expr, Meta)
        return expr.key if expr.key in UNQUALIFIED_META else f"meta {expr.key}"
    if kind is Concat:
        assert isinstance(expr, Concat)
        return " . ".join(format_expr(item) for item in expr.items)
    if kind is SetRef:
        assert isinstance(expr, SetRef)
        return f"@{expr.name}"
    if kind is SetLiteral:
        assert isinstance(expr, SetLiteral)
        return "{ " + ", ".join(format_element(e) for e in expr.elements) + " }"
    if kind is Verdict:
        assert isinstance(expr, Verdict)
        return f"{expr.kind} {expr.target}" if expr.target is not None else expr.kind
    if kind is Prefix:
        assert isinstance(expr, Prefix)
        return f"{format_expr(expr.base)}/{expr.length}"
    if kind is Range:
        assert isinstance(expr, Range)
        return f"{_numeric(expr.low)}-{_numeric(expr.high)}"
    if kind is ValueList:
        assert isinstance(expr, ValueList)
        return ",".join(format_expr(item) for item in expr.items)
    if kind is Binop:
        assert isinstance(expr, Binop)
        return f"{_binop_arg(expr, expr.left)} {expr.op} {_binop_arg(expr, expr.right)}"
    if kind is MapLookup:
        assert isinstance(expr, MapLookup)
        return f"{format_expr(expr.key)} map {format_expr(expr.data)}"
    return _selector(expr)


def _numeric(expr: Expr) -> str:
    """A range's end as nft prints it: numbers, not names (its range_expr_print sets NUMERIC_ALL)."""
    if isinstance(expr, Const) and isinstance(expr.value, str):
        datatype = DATATYPES[expr.type]
        number = datatype.number(expr.value) if datatype.kind in ("symbolic", "bitmask", "day") else None
        if number is not None:
            return format_number(number, datatype)
    return format_expr(expr)


def _selector(expr: Expr) -> str:
    if isinstance(expr, Ct):
        return f"ct {expr.direction} {expr.key}" if expr.direction else f"ct {expr.key}"
    if isinstance(expr, Fib):
        return f"fib {' . '.join(expr.flags)} {expr.result}"
    if isinstance(expr, Numgen):
        offset = f" offset {expr.offset}" if expr.offset else ""
        return f"numgen {expr.mode} mod {expr.mod}{offset}"
    if isinstance(expr, Hash):
        text = f"jhash {format_expr(expr.expr)} mod {expr.mod}" if expr.expr is not None else f"symhash mod {expr.mod}"
        if expr.seed is not None:
            text += f" seed 0x{expr.seed:x}"
        return text + (f" offset {expr.offset}" if expr.offset else "")
    if isinstance(expr, Rt):
        return f"rt {expr.family} {expr.key}" if expr.family else f"rt {expr.key}"
    if isinstance(expr, Socket):
        return f"socket {expr.key}" + (f" level {expr.level}" if expr.level is not None else "")
    if isinstance(expr, Exthdr):
        return f"{expr.name} {expr.field}" if expr.field else f"exthdr {expr.name}"
    if isinstance(expr, TcpOption):
        return f"tcp option {expr.name}" + (f" {expr.field}" if expr.field else "")
    if isinstance(expr, RawPayload):
        return f"@{expr.base},{expr.offset},{expr.length}"
    if isinstance(expr, IpOption):
        return f"ip option {expr.name}" + (f" {expr.field}" if expr.field else "")
    if isinstance(expr, SctpChunk):
        return f"sctp chunk {expr.name}" + (f" {expr.field}" if expr.field else "")
    if isinstance(expr, Osf):
        return f"osf {f'ttl {expr.ttl} ' if expr.ttl else ''}{expr.key}"
    if isinstance(expr, Ipsec):
        spnum = f" spnum {expr.spnum}" if expr.spnum else ""
        return f"ipsec {expr.direction}{spnum} {f'{expr.family} ' if expr.family else ''}{expr.key}"
    raise AssertionError(f"cannot print {expr!r}")


def _binop_arg(op: Binop, arg: Expr) -> str:
    if isinstance(arg, ValueList):
        return "(" + " | ".join(format_expr(item) for item in arg.items) + ")"
    text = format_expr(arg)
    if isinstance(arg, Binop) and ex.PRECEDENCE[op.op] < ex.PRECEDENCE[arg.op]:
        return f"({text})"
    return text


def format_element(element: Element) -> str:
    """One element of a set or map: `key [statements] [timeout T] [expires T] [comment "c"] [: value]`."""
    parts = [format_expr(element.key)]
    parts.extend(format_statement(s) for s in element.statements)
    if element.timeout:
        parts.append(f"timeout {format_duration(element.timeout)}")
    if element.expires:
        parts.append(f"expires {format_duration(element.expires)}")
    if element.comment is not None:
        parts.append(f'comment "{element.comment}"')
    text = " ".join(parts)
    return text if element.data is None else f"{text} : {format_expr(element.data)}"


# -- statements ---------------------------------------------------------------------------------------------


def _is_flag_compare(match: Match) -> bool:
    left = match.left
    if not (isinstance(left, Binop) and left.op == "&" and match.op in ("==", "!=")):
        return False
    typed = ex.selector_type(left.left)
    if typed is None or typed.datatype.kind != "bitmask":
        return False
    return not (isinstance(left.right, Const) and left.right == match.right)


def _match(match: Match) -> str:
    left, right = match.left, match.right
    if _is_flag_compare(match):
        assert isinstance(left, Binop)
        op = " != " if match.op == "!=" else " "
        return f"{format_expr(left.left)}{op}{format_expr(right)} / {format_expr(left.right)}"
    if match.op == "in":
        op = " "
    elif match.op == "==":
        typed = ex.selector_type(left)
        bitmask = typed is not None and typed.datatype.kind == "bitmask" and isinstance(right, Const)
        op = " == " if bitmask or isinstance(left, Binop) else " "
    else:
        op = f" {match.op} "
    return f"{format_expr(left)}{op}{format_expr(right)}"


def _log(log: Log) -> str:
    text = "log"
    if log.prefix is not None:
        text += f' prefix "{log.prefix}"'
    for word, value in (("group", log.group), ("snaplen", log.snaplen), ("queue-threshold", log.queue_threshold)):
        if value is not None:
            text += f" {word} {value}"
    if log.level is not None:
        text += f" level {log.level}"
    flags = list(log.flags)
    if flags == ["all"]:
        return text + " flags all"
    tcp = [flag[4:] for flag in flags if flag.startswith("tcp ")]
    if tcp:
        text += " flags tcp " + ",".join(tcp)
    for flag, printed in (("ip options", "ip options"), ("skuid", "skuid"), ("ether", "ether")):
        if flag in flags:
            text += f" flags {printed}"
    return text


def format_limit(limit: Limit) -> str:
    over = "over " if limit.over else ""
    if not limit.bytes:
        burst = f" burst {limit.burst} packets" if limit.burst and limit.burst != 5 else ""
        return f"limit rate {over}{limit.rate}/{limit.per}{burst}"
    rate, unit = rate_and_unit(limit.rate)
    text = f"limit rate {over}{rate} {unit}/{limit.per}"
    if limit.burst:
        amount, burst_unit = rate_and_unit(limit.burst)
        text += f" burst {amount} {burst_unit}"
    return text


def format_quota(quota: Quota, stateless: bool = False) -> str:
    amount, unit = rate_and_unit(quota.bytes)
    text = f"quota {'over ' if quota.over else ''}{amount} {unit}"
    if quota.used and not stateless:
        used, used_unit = rate_and_unit(quota.used)
        text += f" used {used} {used_unit}"
    return text


def _nat(nat: Nat) -> str:
    text: str = nat.kind
    if nat.addr is not None or nat.port is not None:
        if nat.family:
            text += f" {nat.family}"
        if nat.prefix:
            text += " prefix"
        text += " to"
    if nat.addr is not None:
        text += " " + _address(nat.addr, nat.port is not None)
    if nat.port is not None:
        text += ("" if nat.addr is not None else " ") + ":" + format_expr(nat.port)
    if nat.flags:
        text += " " + ",".join(nat.flags)
    return text


def _address(addr: Expr, bracketed: bool) -> str:
    if bracketed and isinstance(addr, Const) and addr.type == "ipv6_addr":
        return f"[{format_expr(addr)}]"
    if bracketed and isinstance(addr, Range) and isinstance(addr.low, Const) and addr.low.type == "ipv6_addr":
        return f"[{format_expr(addr.low)}]-[{format_expr(addr.high)}]"
    return format_expr(addr)


def _reject(reject: Reject, family: str) -> str:
    if reject.type == "tcp reset":
        return "reject with tcp reset"
    if reject.code == "port-unreachable" and reject.type == _DEFAULT_REJECT.get(family, "icmpx"):
        return "reject"
    return f"reject with {reject.type} {reject.code}"


def _object_ref(ref: ObjectRef) -> str:
    prefix = {"ct helper": "ct helper set ", "ct timeout": "ct timeout set ", "ct expectation": "ct expectation set ",
              "secmark": "meta secmark set "}.get(ref.kind, f"{ref.kind} name ")
    return prefix + format_expr(ref.name)


def format_statement(stmt: Statement, family: str = "inet") -> str:
    """One statement as nft prints it in a rule (`family` is the table's: it decides what `reject` means)."""
    kind = type(stmt)
    if kind is Match:
        return _match(stmt)  # type: ignore[arg-type]
    if kind is Verdict:
        return format_expr(stmt)  # type: ignore[arg-type]
    if kind is VerdictMap:
        assert isinstance(stmt, VerdictMap)
        return f"{format_expr(stmt.key)} vmap {format_expr(stmt.data)}"
    if kind is Mangle:
        assert isinstance(stmt, Mangle)
        return f"{format_expr(stmt.key)} set {format_expr(stmt.value)}"
    if kind is Counter:
        assert isinstance(stmt, Counter)
        return "counter" if stmt.packets is None else f"counter packets {stmt.packets} bytes {stmt.bytes}"
    if kind is Nat:
        return _nat(stmt)  # type: ignore[arg-type]
    if kind is SetUpdate:
        assert isinstance(stmt, SetUpdate)
        inner = [format_expr(stmt.key)]
        if stmt.timeout:
            inner.append(f"timeout {format_duration(stmt.timeout)}")
        inner.extend(format_statement(s) for s in stmt.statements)
        data = f" : {format_expr(stmt.data)}" if stmt.data is not None else ""
        return f"{stmt.op} @{stmt.set} {{ {' '.join(inner)}{data} }}"
    if kind is Reject:
        return _reject(stmt, family)  # type: ignore[arg-type]
    if kind is Log:
        return _log(stmt)  # type: ignore[arg-type]
    if kind is Limit:
        return format_limit(stmt)  # type: ignore[arg-type]
    if kind is Quota:
        return format_quota(stmt)  # type: ignore[arg-type]
    if kind is ObjectRef:
        return _object_ref(stmt)  # type: ignore[arg-type]
    return _other_statement(stmt, family)


def stateless_statement(stmt: Statement) -> str:
    """A statement as nft prints it where it keeps no state of its own (a set's, a meter's): `counter`."""
    if isinstance(stmt, Counter):
        return "counter"
    if isinstance(stmt, Quota):
        return format_quota(stmt, stateless=True)
    return format_statement(stmt)


def _other_statement(stmt: Statement, family: str) -> str:
    if isinstance(stmt, Notrack):
        return "notrack"
    if isinstance(stmt, FlowOffload):
        return f"flow add @{stmt.flowtable}"
    if isinstance(stmt, ConnLimit):
        return f"ct count {'over ' if stmt.over else ''}{stmt.count}"
    if isinstance(stmt, Xt):
        # iptables' comment match translates to a comment nft 1.0.6 does not print: it prints nothing.
        return "" if (stmt.kind, stmt.name) == ("match", "comment") else f"xt {stmt.kind} {stmt.name}"
    if isinstance(stmt, Meter):
        timeout = f" timeout {format_duration(stmt.timeout)}" if stmt.timeout else ""
        return (f"meter {stmt.name} size {stmt.size} {{ {format_expr(stmt.key)}{timeout} "
                f"{stateless_statement(stmt.statement)} }}")
    if isinstance(stmt, BoundChain):
        rules = "".join(f"\t\t\t{format_rule_body(rule.statements, rule.comment, family)}\n" for rule in stmt.rules)
        return f"{stmt.kind} {{\n{rules}\t\t}}"
    if isinstance(stmt, Dup):
        text = "dup to " + format_expr(stmt.addr if stmt.addr is not None else stmt.device)  # type: ignore[arg-type]
        return text + (f" device {format_expr(stmt.device)}" if stmt.addr is not None and stmt.device else "")
    if isinstance(stmt, Fwd):
        if stmt.family is None:
            return f"fwd to {format_expr(stmt.device)}"
        return f"fwd {stmt.family} to {format_expr(stmt.addr)} device {format_expr(stmt.device)}"  # type: ignore[arg-type]
    if isinstance(stmt, Tproxy):
        text = "tproxy" + (f" {stmt.family}" if stmt.family else "") + " to"
        if stmt.addr is not None:
            text += " " + _address(stmt.addr, stmt.port is not None)
        if stmt.port is not None:
            text += ("" if stmt.addr is not None else " ") + ":" + format_expr(stmt.port)
        return text
    if isinstance(stmt, Synproxy):
        text = "synproxy"
        if stmt.mss is not None:
            text += f" mss {stmt.mss}"
        if stmt.wscale is not None:
            text += f" wscale {stmt.wscale}"
        return text + "".join(f" {flag}" for flag in stmt.flags)
    if isinstance(stmt, Queue):
        text = "queue"
        if stmt.flags:
            text += " flags " + ",".join(stmt.flags)
        return text + " to " + (format_expr(stmt.num) if stmt.num is not None else "0")
    raise AssertionError(f"cannot print {stmt!r}")


def format_rule_body(statements: tuple[Statement, ...], comment: str | None, family: str) -> str:
    """A rule's statements and comment, as nft prints them on the rule's line."""
    text = " ".join(format_statement(s, family) for s in statements)
    return text + f' comment "{comment}"' if comment is not None else text


def format_rule(rule: Rule) -> str:
    """The rule as one line (without its indentation; a chain binding's rules on the lines after it), with its
    comment and handle."""
    return format_rule_body(rule.statements, rule.comment, rule.family) + handle_comment(rule.handle)
