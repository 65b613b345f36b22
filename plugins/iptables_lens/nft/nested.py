"""The grammar of the statements that hold other statements, as nftables 1.0.6 reads and prints them:

- set and map updates: `update @aff { ip saddr timeout 1m counter }`, `add @m { ip saddr : meta mark }` (a
  map's update gives the value after ` : `, read as the map's value type);
- meters: `meter flood size 1024 { ip saddr timeout 10s limit rate 10/second }` (the one statement in the
  braces must be stateful, as nft says);
- chain bindings: `jump {`, then the bound chain's rules, one a line (or after `;`), then `}` (nft 1.0.6
  refuses a binding inside a binding: "too many levels of nesting").

The statement and rule readers are handed in by `statements`, whose grammar these are part of.
"""

from __future__ import annotations

from collections.abc import Callable

from iptables_lens.nft import exprs
from iptables_lens.nft.model import (
    BoundChain,
    BoundRule,
    ConnLimit,
    Counter,
    Expr,
    Limit,
    Meter,
    Quota,
    SetUpdate,
    Statement,
)
from iptables_lens.nft.stateful import STATEFUL, duration, number, stateful
from iptables_lens.nft.tokens import Cursor, Token

# A set's key types and, for a map, its value types (None for a set, () for a map of objects), by name.
SetTypes = dict[str, tuple[exprs.Types, exprs.Types | None]]
ReadStatement = Callable[[Cursor, str, SetTypes | None], Statement]
ReadRule = Callable[[Cursor, str, SetTypes | None], tuple[tuple[Statement, ...], str | None, int | None]]
METER_STATEMENTS = (Counter, Limit, Quota, ConnLimit)


def set_update(op: str, cur: Cursor, family: str, set_types: SetTypes | None) -> SetUpdate:
    """`OP @SET { KEY [timeout T] [stateful ...] [: VALUE] }`, the cursor past OP."""
    name = cur.name(f"the set to {op} to, @name", "@")
    cur.expect("{")
    keys, data = (set_types or {}).get(name, (None, None))
    key = exprs.set_key(cur, family, keys)
    timeout = None
    statements: list[Statement] = []
    while True:
        if cur.accept("timeout"):
            timeout = duration(cur)
        elif cur.word() in STATEFUL:
            statements.append(stateful(cur))
        else:
            break
    value: Expr | None = None
    colon = cur.peek()
    if cur.accept(":"):
        if data == ():
            raise cur.error(colon, f"map {name!r} holds objects: a rule does not {op} its elements")
        if data is None and keys is not None:
            raise cur.error(colon, f"{name!r} is a set: only a map's element has a value after ':'")
        value = exprs.set_key(cur, family, data)
    # A map's update without a value reads (as the fast path reads it), for `check` to refuse as the kernel does.
    cur.expect("}", "'}' closing the element")
    return SetUpdate(op, name, key, timeout, tuple(statements), value)  # type: ignore[arg-type]


def meter(cur: Cursor, family: str, set_types: SetTypes | None, read_statement: ReadStatement) -> Meter:
    """`meter NAME [size N] { KEY [timeout T] STATEMENT }`, the cursor past `meter` (nft lists the size it
    gives a meter written without one: 65535)."""
    name = cur.name("the meter's name")
    size = number(cur, "the meter's size", 32) if cur.accept("size") else 65535
    cur.expect("{", "'{' and the meter's key")
    key, _ = exprs.left_side(cur, family)
    timeout = duration(cur) if cur.accept("timeout") else None
    start = cur.peek()
    found = read_statement(cur, family, set_types)
    if not isinstance(found, METER_STATEMENTS):
        raise cur.error(start, "meter statement must be stateful: a counter, limit, quota or ct count")
    cur.expect("}", "'}' closing the meter (it keeps one statement)")
    return Meter(name, size, key, found, timeout)


def chain_binding(cur: Cursor, family: str, set_types: SetTypes | None, read_rule: ReadRule) -> BoundChain:
    """`jump { RULES }` or `goto { RULES }`, the cursor at jump or goto; the rules are those of the lines (or
    `;`-separated pieces) between the braces."""
    kind = cur.take("jump or goto").text
    brace = cur.expect("{")
    depth, end = 0, None
    for index in range(cur.pos, len(cur.tokens)):
        token = cur.tokens[index]
        if token.kind == "p" and token.text in "{}":
            if token.text == "}" and depth == 0:
                end = index
                break
            depth += 1 if token.text == "{" else -1
    if end is None:
        raise cur.error(brace, "a '{' this rule opens is never closed")
    closing, last = cur.tokens[end], cur.tokens[end - 1]
    if last is not brace and last.line == closing.line and not (last.kind == "p" and last.text == ";"):
        raise cur.error(closing, "expected a new line or ';' before the '}' closing the bound chain: nft reads its "
                        "last rule up to either")
    rules = []
    for group in _rule_groups(cur.tokens[cur.pos:end]):
        for first, second in zip(group, group[1:], strict=False):
            if first.kind == "w" and first.text in ("jump", "goto") and second.text == "{" and second.kind == "p":
                raise cur.error(first, "too many levels of nesting: nft 1.0.6 binds no chain inside a bound chain")
        last = group[-1]
        statements, comment, _ = read_rule(Cursor(group, cur.source, cur.lines, last.line, last.end), family,
                                           set_types)
        rules.append(BoundRule(statements, comment, group[0].line))
    cur.pos = end + 1
    return BoundChain(kind, tuple(rules))  # type: ignore[arg-type]


def _rule_groups(tokens: list[Token]) -> list[list[Token]]:
    """The tokens of each rule of a bound chain: a new rule starts on a new line or after `;`, outside braces.
    A `#` comment inside the braces is left out (nft prints no handle there)."""
    groups: list[list[Token]] = []
    group: list[Token] = []
    depth = 0
    for token in tokens:
        if token.kind == "#":
            continue
        if depth == 0 and (token.kind == "p" and token.text == ";" or group and token.line != group[-1].line):
            if group:
                groups.append(group)
            group = []
            if token.text == ";" and token.kind == "p":
                continue
        if token.kind == "p" and token.text in ("{", "}"):
            depth += 1 if token.text == "{" else -1
        group.append(token)
    if group:
        groups.append(group)
    return groups
