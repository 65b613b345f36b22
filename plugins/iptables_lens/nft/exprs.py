"""The expression grammar of a rule: what is read (selectors), and the values it is compared with.

`selector` reads `ip daddr`, `meta l4proto`, `ct original ip saddr`, `fib daddr type`, `numgen random mod 2`
and the like, and gives the expression with the datatype of what it reads; `left_side` adds concatenations
(`ip daddr . meta l4proto . th dport`) and bitwise operations (`meta mark & 0x0000ff00`); `right_side` reads
what such an expression is compared with, typed by it: a value, prefix, range, flag list, concatenation,
anonymous set (`{ 22, 80 }`) or named set (`@cluster-ips`). Each function reads from a `Cursor` and raises
the cursor's DumpError, at the offending token, for anything it does not understand.
"""

from __future__ import annotations

from iptables_lens.nft import rareselectors as rare
from iptables_lens.nft import types as ty
from iptables_lens.nft.expressions import key_types, selector_type  # noqa: F401  (used by the grammar's callers)
from iptables_lens.nft.model import (
    Binop,
    Concat,
    Const,
    Ct,
    Element,
    Expr,
    Exthdr,
    Fib,
    Hash,
    MapLookup,
    Meta,
    Numgen,
    Payload,
    Prefix,
    Range,
    RawPayload,
    Rt,
    SetLiteral,
    SetRef,
    Socket,
    Statement,
    TcpOption,
    ValueList,
    Verdict,
)
from iptables_lens.nft.stateful import duration, stateful
from iptables_lens.nft.tokens import Cursor, Token, shown
from iptables_lens.nft.values import ValueProblem, read_integer, read_value

Types = tuple[ty.Typed, ...]
BINOPS = {"&": "&", "|": "|", "^": "^", "<<": "<<", ">>": ">>", "and": "&", "or": "|", "xor": "^",
          "lshift": "<<", "rshift": ">>"}
# How tightly each operator binds (nft's expr_binop_precedence: the lower, the tighter).
PRECEDENCE = {"<<": 1, ">>": 1, "&": 2, "^": 3, "|": 4}
VERDICTS = ("accept", "drop", "continue", "return", "jump", "goto")
_RAW_BASES = ("ll", "nh", "th", "ih")
SELECTOR_WORDS = (frozenset(ty.PAYLOAD_FIELDS) | ty.BARE_META_INPUT | frozenset(ty.EXTHDR_FIELDS)
                  | {"meta", "ct", "fib", "numgen", "jhash", "symhash", "rt", "socket", "exthdr", "osf", "ipsec"})


def integer_word(cur: Cursor, what: str, bits: int = 32) -> int:
    token = cur.take_word(what)
    try:
        return read_integer(token.text, bits, what)
    except ValueProblem as problem:
        raise cur.error(token, str(problem)) from None


def _field(cur: Cursor, fields: dict[str, ty.Typed], owner: str) -> tuple[str, ty.Typed]:
    token = cur.take_word(f"a field of {owner}")
    name = token.text
    if name not in fields:
        two = f"{name} {cur.word()}"
        if two in fields:
            cur.pos += 1
            return two, fields[two]
        raise cur.error(token, f"unknown field {name!r} of {owner}: expected one of {', '.join(fields)}")
    return name, fields[name]


def selector(cur: Cursor, family: str) -> tuple[Expr, ty.Typed] | None:
    """The selector starting at the cursor and the datatype of what it reads; None if no selector starts
    there (the cursor is left where it was)."""
    token = cur.peek()
    if token is None or token.kind != "w":
        return None
    word = token.text
    if word.startswith("@") and "," in word or word[1:] in _RAW_BASES and cur.word(1) == ",":
        return _raw_payload(cur)
    if word not in SELECTOR_WORDS:
        return None
    cur.pos += 1
    if word in ty.PAYLOAD_FIELDS:
        if word == "tcp" and cur.word() == "option":
            cur.pos += 1
            return _tcp_option(cur)
        if word == "ip" and cur.word() == "option":
            cur.pos += 1
            return rare.ip_option(cur)
        if word == "sctp" and cur.word() == "chunk":
            cur.pos += 1
            return rare.sctp_chunk(cur)
        name, typed = _field(cur, ty.PAYLOAD_FIELDS[word], word)
        return Payload(word, name), typed
    if word == "meta":
        name, typed = _field(cur, ty.META_KEYS, "meta")
        return Meta(name), typed
    if word in ty.BARE_META_INPUT:
        return Meta(word), ty.META_KEYS[word]
    if word == "ct":
        return _ct(cur, family)
    if word == "fib":
        return _fib(cur)
    if word == "osf":
        return rare.osf(cur)
    if word == "ipsec":
        return rare.ipsec(cur)
    if word == "numgen":
        mode_token = cur.take_word("random or inc")
        if mode_token.text not in ("random", "inc"):
            raise cur.error(mode_token, f"expected random or inc after numgen, got {shown(mode_token)}")
        cur.expect("mod")
        mod = integer_word(cur, "the modulus")
        offset = integer_word(cur, "the offset") if cur.accept("offset") else 0
        return Numgen("random" if mode_token.text == "random" else "inc", mod, offset), ty.INTEGER32
    if word in ("jhash", "symhash"):
        return _hash(cur, word, family)
    if word in ty.EXTHDR_FIELDS and (word != "rt" or cur.word() in ty.EXTHDR_FIELDS["rt"]):
        name, typed = _field(cur, ty.EXTHDR_FIELDS[word], word)
        return Exthdr(word, name), typed
    if word == "rt":
        rt_family = cur.word() if cur.word() in ("ip", "ip6") else None
        if rt_family:
            cur.pos += 1
        name, typed = _field(cur, ty.RT_KEYS, "rt")
        if name == "nexthop" and rt_family == "ip6":
            typed = ty.typed("ipv6_addr")
        return Rt(name, rt_family), typed
    if word == "socket":
        name, typed = _field(cur, ty.SOCKET_KEYS, "socket")
        level = integer_word(cur, "the level") if name == "cgroupv2" and cur.accept("level") else None
        return Socket(name, level), typed
    name_token = cur.take_word("an IPv6 extension header")
    if name_token.text not in ty.IPV6_EXTHDRS:
        raise cur.error(name_token, f"unknown extension header {name_token.text!r}: expected one of "
                        f"{', '.join(ty.IPV6_EXTHDRS)}")
    return Exthdr(name_token.text), ty.BOOLEAN


def _raw_payload(cur: Cursor) -> tuple[Expr, ty.Typed]:
    token = cur.take_word("a raw payload such as @nh,16,16")
    parts = [token.text]
    while cur.touching() and cur.word() == ",":
        cur.pos += 1
        if not cur.touching():
            break
        parts.append(cur.take_word("a number").text)
    text = ",".join(parts)
    pieces = text[1:].split(",")
    if len(pieces) != 3 or pieces[0] not in _RAW_BASES or not all(p.isdigit() for p in pieces[1:]):
        raise cur.error(token, f"expected a raw payload such as @nh,16,16 (base ll, nh, th or ih), got {text!r}")
    length = int(pieces[2])
    if not 0 < length <= 128:
        raise cur.error(token, f"raw payload length {length} is out of range 1-128")
    return RawPayload(pieces[0], int(pieces[1]), length), ty.typed("xinteger", length)


def _tcp_option(cur: Cursor) -> tuple[Expr, ty.Typed]:
    token = cur.take_word("a TCP option")
    fields = ty.TCP_OPTIONS.get(token.text)
    if fields is None:
        raise cur.error(token, f"unknown TCP option {token.text!r}: expected one of {', '.join(ty.TCP_OPTIONS)}")
    if cur.word() in fields:
        name, typed = _field(cur, fields, f"tcp option {token.text}")
        return TcpOption(token.text, name), typed
    return TcpOption(token.text), ty.BOOLEAN


def _ct(cur: Cursor, family: str) -> tuple[Expr, ty.Typed]:
    direction = None
    if cur.word() in ty.CT_DIRECTIONS:
        direction = cur.take("a direction").text
    if cur.word() in ty.CT_FAMILY_KEYS and family in ("ip", "ip6"):
        name = cur.take("saddr or daddr").text
        expr = Ct(name, direction, family)
        typed = selector_type(expr)
        assert typed is not None
        return expr, typed
    name, typed = _field(cur, ty.CT_KEYS, "ct")
    if direction is not None and name not in ty.CT_DIRECTIONAL:
        raise cur.error(cur.tokens[cur.pos - 1], f"ct {name} has no direction: write 'ct {name}'")
    return Ct(name, direction), typed


def _fib(cur: Cursor) -> tuple[Expr, ty.Typed]:
    flags = []
    while True:
        token = cur.take_word("a fib flag (saddr, daddr, mark, iif, oif)")
        if token.text not in ty.FIB_FLAGS:
            raise cur.error(token, f"expected a fib flag (saddr, daddr, mark, iif, oif), got {shown(token)}")
        flags.append(token.text)
        if not cur.accept("."):
            break
    token = cur.take_word("what fib gives (oif, oifname, type)")
    if token.text not in ty.FIB_RESULTS:
        raise cur.error(token, f"expected what fib gives (oif, oifname, type), got {shown(token)}")
    if ("saddr" in flags) == ("daddr" in flags):
        raise cur.error(token, "fib needs exactly one of saddr and daddr")
    return Fib(tuple(flags), token.text), ty.FIB_RESULTS[token.text]


def _hash(cur: Cursor, kind: str, family: str) -> tuple[Expr, ty.Typed]:
    expr = None
    if kind == "jhash":
        expr, _ = left_side(cur, family, binops=False)
    cur.expect("mod")
    mod = integer_word(cur, "the modulus")
    seed = integer_word(cur, "the seed") if kind == "jhash" and cur.accept("seed") else None
    offset = integer_word(cur, "the offset") if cur.accept("offset") else 0
    return Hash("jhash" if kind == "jhash" else "symhash", mod, expr, seed, offset), ty.INTEGER32


def _operand(cur: Cursor, typed: ty.Typed, family: str) -> Expr:
    """A bitwise operation's right operand: a value, or `(a | b | c)`, whose flags nft folds to a list."""
    if cur.accept("("):
        items = [_operand(cur, typed, family)]
        while cur.word() in ("|", "or"):
            cur.pos += 1
            items.append(_operand(cur, typed, family))
        cur.expect(")")
        consts = [item for item in items if isinstance(item, Const)]
        if len(consts) == len(items) and typed.datatype.kind == "bitmask":
            return ValueList(tuple(consts))
        result = items[0]
        for item in items[1:]:
            result = Binop("|", result, item)
        return result
    return value_atom(cur, typed, allow_list=True)


def left_side(cur: Cursor, family: str, binops: bool = True) -> tuple[Expr, Types]:
    """A selector, concatenation of selectors or bitwise operation on one: the expression and its types."""
    items: list[Expr] = []
    types: list[ty.Typed] = []
    while True:
        start = cur.peek()
        found = selector(cur, family)
        if found is None:
            raise cur.error(start, f"expected what to match (such as ip daddr, meta l4proto, ct state), "
                            f"got {shown(start)}")
        expr, typed = found
        if binops:
            expr = _binops(cur, expr, typed, family, 5)
        items.append(expr)
        types.append(typed)
        if not cur.accept("."):
            break
    if len(items) == 1:
        return items[0], tuple(types)
    return Concat(tuple(items)), tuple(types)


def set_key(cur: Cursor, family: str, types: Types | None) -> Expr:
    """What a set update puts in the set: selectors, concatenated, where a part may be a constant of the
    set's key type (`ip saddr . 22`)."""
    if types is None:
        return left_side(cur, family)[0]
    items: list[Expr] = []
    for index, typed in enumerate(types):
        if index:
            cur.expect(".", f"'.' and a {typed.datatype.name} (the set's key has {len(types)} parts)")
        found = selector(cur, family)
        if found is None:
            items.append(value_atom(cur, typed, allow_list=False))
        else:
            items.append(_binops(cur, found[0], found[1], family, 5))
    return items[0] if len(items) == 1 else Concat(tuple(items))


def _binops(cur: Cursor, left: Expr, typed: ty.Typed, family: str, limit: int) -> Expr:
    while True:
        op = BINOPS.get(cur.word() or "")
        if op is None or PRECEDENCE[op] > limit:
            return left
        cur.pos += 1
        operand_type = ty.INTEGER32 if op in ("<<", ">>") else typed
        right = _operand(cur, operand_type, family)
        right = _binops(cur, right, typed, family, PRECEDENCE[op] - 1)
        left = Binop(op, left, right)  # type: ignore[arg-type]


def value_expr(cur: Cursor, typed: ty.Typed, family: str, tail: ty.Typed | None = None) -> Expr:
    """What a statement sets or translates to: a selector (maybe with bitwise operations and `map`), or a
    value of `typed`. A map's values may be `typed` concatenated with `tail` (a translation's address and
    port)."""
    if cur.accept("("):
        inner = value_expr(cur, typed, family, tail)
        cur.expect(")")
        return _binops(cur, inner, typed, family, 5)
    found = selector(cur, family)
    if found is None:
        return value_atom(cur, typed, allow_list=True)
    expr, selector_type = found
    expr = _binops(cur, expr, selector_type, family, 5)
    types: Types = (selector_type,)
    if cur.word() == ".":
        items, type_list = [expr], [selector_type]
        while cur.accept("."):
            start = cur.peek()
            more = selector(cur, family)
            if more is None:
                raise cur.error(start, f"expected what to concatenate (such as tcp dport), got {shown(start)}")
            items.append(_binops(cur, more[0], more[1], family, 5))
            type_list.append(more[1])
        expr, types = Concat(tuple(items)), tuple(type_list)
    if cur.accept("map"):
        data = (typed,) if tail is None else (typed, tail)
        return MapLookup(expr, set_operand(cur, types, data, family, tail is not None))
    return expr


def set_operand(cur: Cursor, keys: Types, data: Types | None, family: str, short_data: bool = False
                ) -> SetLiteral | SetRef:
    """`@name`, or `{ ... }` with elements of `keys` (mapping to `data` if given; with `short_data`, to its
    first part alone or to all of it)."""
    token = cur.peek()
    if token is not None and token.kind == "w" and token.text.startswith("@"):
        return SetRef(cur.name("a set's name", "@"))
    if cur.accept("{"):
        return SetLiteral(elements(cur, keys, data, family, "}", short_data))
    raise cur.error(token, f"expected a set (@name or {{ ... }}), got {shown(token)}")


def right_side(cur: Cursor, types: Types, family: str) -> Expr:
    """What a left side of `types` is compared with."""
    token = cur.peek()
    if token is not None and token.kind == "p" and token.text == "{" or (
            token is not None and token.kind == "w" and token.text.startswith("@")):
        return set_operand(cur, types, None, family)
    return concat_value(cur, types)


def concat_value(cur: Cursor, types: Types, short: bool = False) -> Expr:
    """A value of `types`, with ` . ` between its parts; with `short`, the first part alone will do."""
    items = [value_atom(cur, types[0], allow_list=True)]
    for typed in types[1:]:
        if short and cur.word() != ".":
            break
        cur.expect(".", f"'.' and a {typed.datatype.name} (the key has {len(types)} parts)")
        items.append(value_atom(cur, typed, allow_list=False))
    return items[0] if len(items) == 1 else Concat(tuple(items))


def _read(cur: Cursor, token: Token, word: str, typed: ty.Typed) -> Const:
    try:
        return read_value(word, typed, token.kind == "q")
    except ValueProblem as problem:
        raise cur.error(token, str(problem)) from None


def value_atom(cur: Cursor, typed: ty.Typed, allow_list: bool) -> Expr:
    """One value of `typed`: `10.0.0.1`, `10.0.0.0/8`, `1000-2000`, `established,related`, `"eth0"`."""
    token = cur.take(f"a {typed.datatype.name}")
    if token.kind == "p" or token.kind == "#":
        raise cur.error(token, f"expected a {typed.datatype.name}, got {shown(token)}")
    word = token.text
    datatype = typed.datatype
    if token.kind == "q":
        low = _read(cur, token, word, typed)
        if cur.touching() and cur.word() == "-":
            cur.pos += 1
            high_token = cur.take(f"the end of the range, a {datatype.name}")
            if high_token.kind != "q":
                raise cur.error(high_token, f"expected a {datatype.name} in double quotes, got {shown(high_token)}")
            return Range(low, _read(cur, high_token, high_token.text, typed))
        return low
    if datatype.kind == "bitmask" and allow_list and cur.joined_comma():
        items = [_read(cur, token, word, typed)]
        while cur.joined_comma():
            cur.pos += 1
            item = cur.take_word(f"a {datatype.name}")
            items.append(_read(cur, item, item.text, typed))
        return ValueList(tuple(items))
    if datatype.kind == "bitmask" and cur.word() == "|":
        # Flags or'ed into one value, as nft lists a tcp_flag set's elements: `fin | ack`.
        result: Expr = _read(cur, token, word, typed)
        while cur.accept("|"):
            item = cur.take_word(f"a {datatype.name}")
            result = Binop("|", result, _read(cur, item, item.text, typed))
        return result
    try:
        return read_value(word, typed, False)
    except ValueProblem as problem:
        first_problem = problem
    if "/" in word and datatype.kind in ("ipv4", "ipv6"):
        base, _, length = word.partition("/")
        limit = 32 if datatype.kind == "ipv4" else 128
        if length.isdigit() and int(length) <= limit:
            return Prefix(_read(cur, token, base, typed), int(length))
        raise cur.error(token, f"expected a prefix length from 0 to {limit}, got {word!r}")
    if "-" in word[1:]:
        for at in [i for i, ch in enumerate(word) if ch == "-" and i > 0]:
            try:
                low, high = read_value(word[:at], typed, False), read_value(word[at + 1:], typed, False)
            except ValueProblem:
                continue
            return Range(low, high)
    raise cur.error(token, str(first_problem))


def verdict(cur: Cursor) -> Verdict | None:
    """accept, drop, continue, return, `jump NAME` or `goto NAME` at the cursor, or None."""
    word = cur.word()
    if word not in VERDICTS:
        return None
    cur.pos += 1
    if word in ("jump", "goto"):
        return Verdict(word, cur.name(f"the chain to {word} to"))  # type: ignore[arg-type]
    return Verdict(word)  # type: ignore[arg-type]


def _element_options(cur: Cursor, family: str) -> tuple[tuple[Statement, ...], int | None, int | None, str | None]:
    statements: list[Statement] = []
    timeout = expires = None
    comment = None
    while True:
        word = cur.word()
        if word in ("counter", "quota", "limit") and timeout is None and comment is None:
            statements.append(stateful(cur))
        elif word == "timeout" and timeout is None and expires is None and comment is None:
            cur.pos += 1
            timeout = duration(cur)
        elif word == "expires" and expires is None and comment is None:
            cur.pos += 1
            expires = duration(cur)
        elif word == "comment" and comment is None:
            cur.pos += 1
            comment = cur.quoted("the comment")
        else:
            return tuple(statements), timeout, expires, comment


def elements(cur: Cursor, keys: Types, data: Types | None, family: str, closing: str, short_data: bool = False
             ) -> tuple[Element, ...]:
    """The elements of a set (or, with `data`, a map) up to `closing`, which is consumed: `a, b : c, ...`.
    A map to `verdict` takes verdicts as data."""
    found: list[Element] = []
    if cur.accept(closing):
        return ()
    while True:
        if cur.word() == "*" and len(keys) >= 1:
            cur.pos += 1
            key: Expr = Const("catchall", "*")
        else:
            key = concat_value(cur, keys)
        statements, timeout, expires, comment = _element_options(cur, family)
        value: Expr | None = None
        if data is not None:
            cur.expect(":", "':' and the value the element maps to")
            if data[0].datatype.kind == "verdict":
                start = cur.peek()
                found_verdict = verdict(cur)
                if found_verdict is None:
                    raise cur.error(start, f"expected a verdict (accept, drop, jump CHAIN, ...), got {shown(start)}")
                value = found_verdict
            else:
                value = concat_value(cur, data, short_data)
        found.append(Element(key, value, timeout, expires, comment, statements))
        if cur.accept(closing):
            return tuple(found)
        token = cur.peek()
        if not cur.accept(","):
            raise cur.error(token, f"expected ',' or '{closing}' after an element, got {shown(token)}")

