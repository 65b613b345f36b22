"""libnftables-json(5) expressions and statements -> the model, typed as the text grammar types them.

Each reader takes the decoded JSON and the datatypes the context expects, and raises `JsonProblem` naming the
JSON object it cannot read; `jsonread` turns that into a DumpError at the object's position. Constants go
through the text grammar's value readers (`values.read_value`), so that `16384` for a mark and `0x00004000`
in a listing are the same Const.
"""

from __future__ import annotations

from iptables_lens.errors import DumpError
from iptables_lens.nft import exprs as ex
from iptables_lens.nft import nested, statements
from iptables_lens.nft import types as ty
from iptables_lens.nft.model import (
    Binop,
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
from iptables_lens.nft.stateful import BYTE_UNITS
from iptables_lens.nft.tokens import Cursor, shown, tokenize
from iptables_lens.nft.values import ValueProblem, read_value

Types = tuple[ty.Typed, ...]
VERDICT_WORDS = ("accept", "drop", "continue", "return", "jump", "goto")
OBJECT_REFS = {"counter": "counter", "quota": "quota", "limit": "limit", "ct helper": "ct helper",
               "ct timeout": "ct timeout", "ct expectation": "ct expectation", "secmark": "secmark",
               "synproxy": "synproxy"}


class JsonProblem(ValueError):
    """A JSON value the reader cannot read: `where` is the innermost object or list holding it."""

    def __init__(self, where: object, message: str):
        super().__init__(message)
        self.where = where


def _one(obj: object, what: str) -> tuple[str, object]:
    if not isinstance(obj, dict) or len(obj) != 1:
        raise JsonProblem(obj, f"expected {what}: an object with one key")
    return next(iter(obj.items()))


def scalar(value: object, typed: ty.Typed, where: object) -> Const:
    """A JSON number, string or boolean as a Const of `typed`."""
    if isinstance(value, bool):
        word = "exists" if value else "missing"
    elif isinstance(value, int):
        word = str(value)
    elif isinstance(value, str):
        word = value
    else:
        raise JsonProblem(where, f"expected a {typed.datatype.name}, got {value!r}")
    quoted = typed.datatype.quoted or (typed.datatype.kind == "ifindex" and isinstance(value, str))
    try:
        return read_value(word, typed, quoted and typed.datatype.kind != "day")
    except ValueProblem as problem:
        raise JsonProblem(where, str(problem)) from None


def selector(obj: object, family: str) -> tuple[Expr, ty.Typed] | None:
    """A JSON selector (`{"payload": ...}`, `{"meta": ...}`, ...) and its datatype; None for anything else."""
    if not isinstance(obj, dict) or len(obj) != 1:
        return None
    key, body = next(iter(obj.items()))
    expr: Expr
    if key == "payload" and isinstance(body, dict):
        if "protocol" in body:
            expr = Payload(str(body["protocol"]), str(body.get("field")))
            if expr.protocol not in ty.PAYLOAD_FIELDS or expr.field not in ty.PAYLOAD_FIELDS[expr.protocol]:
                raise JsonProblem(obj, f"unknown payload field {expr.protocol} {expr.field}")
        else:
            expr = RawPayload(str(body.get("base")), int(body.get("offset", 0)), int(body.get("len", 0)))
    elif key == "meta" and isinstance(body, dict):
        expr = Meta(str(body.get("key")))
    elif key == "ct" and isinstance(body, dict):
        ct_key = str(body.get("key"))
        expr = Ct(ct_key, body.get("dir"), family if ct_key in ty.CT_FAMILY_KEYS else None)
    elif key == "fib" and isinstance(body, dict):
        flags = body.get("flags", [])
        expr = Fib(tuple(flags) if isinstance(flags, list) else (str(flags),), str(body.get("result")))
    elif key == "numgen" and isinstance(body, dict):
        expr = Numgen(body.get("mode"), int(body.get("mod", 0)), int(body.get("offset", 0)))  # type: ignore[arg-type]
    elif key in ("jhash", "symhash") and isinstance(body, dict):
        inner = expression(body["expr"], family, None, obj)[0] if "expr" in body else None
        expr = Hash(key, int(body.get("mod", 0)), inner, body.get("seed"), int(body.get("offset", 0)))  # type: ignore[arg-type]
    elif key == "rt" and isinstance(body, dict):
        expr = Rt(str(body.get("key")), body.get("family"))
    elif key == "socket" and isinstance(body, dict):
        expr = Socket(str(body.get("key")))
    elif key == "exthdr" and isinstance(body, dict):
        expr = Exthdr(str(body.get("name")), body.get("field"))
    elif key == "tcp option" and isinstance(body, dict):
        expr = TcpOption(str(body.get("name")), body.get("field"))
    elif key == "ip option" and isinstance(body, dict):
        expr = IpOption(str(body.get("name")), body.get("field"))
    elif key == "sctp chunk" and isinstance(body, dict):
        expr = SctpChunk(str(body.get("name")), body.get("field"))
    elif key == "osf" and isinstance(body, dict):
        expr = Osf(body.get("key"), body.get("ttl"))  # type: ignore[arg-type]
    elif key == "ipsec" and isinstance(body, dict):
        expr = Ipsec(body.get("dir"), body.get("key"), body.get("family"), int(body.get("spnum", 0)))  # type: ignore[arg-type]
    else:
        return None
    try:
        typed = ex.selector_type(expr)
    except KeyError:
        typed = None
    if typed is None:
        raise JsonProblem(obj, f"unknown {key} {body!r}")
    return expr, typed


def expression(obj: object, family: str, types: Types | None, where: object) -> tuple[Expr, Types]:
    """A JSON expression; constants are read as `types` (the context's)."""
    found = selector(obj, family)
    if found is not None:
        return found[0], (found[1],)
    if isinstance(obj, dict) and len(obj) == 1:
        key, body = next(iter(obj.items()))
        if key == "concat" and isinstance(body, list):
            items: list[Expr] = []
            found_types: list[ty.Typed] = []
            for index, item in enumerate(body):
                sub = (types[index],) if types is not None and index < len(types) else None
                expr, item_types = expression(item, family, sub, obj)
                items.append(expr)
                found_types.extend(item_types)
            return Concat(tuple(items)), tuple(found_types)
        if key in ex.BINOPS and isinstance(body, list) and len(body) == 2:
            left, left_types = expression(body[0], family, types, obj)
            operand = (ty.INTEGER32,) if key in ("<<", ">>") else left_types
            right, _ = expression(body[1], family, operand, obj)
            return Binop(key, left, right), left_types  # type: ignore[arg-type]
        if key == "map" and isinstance(body, dict):
            key_expr, key_types = expression(body.get("key"), family, None, obj)
            data = set_operand(body.get("data"), family, key_types, types, obj)
            return MapLookup(key_expr, data), types or ()
    if types is None:
        raise JsonProblem(where, f"expected an expression such as a payload, meta or ct, got {obj!r}")
    return value(obj, types, where), types


def value(obj: object, types: Types, where: object) -> Expr:
    """A JSON value of `types`: a constant, prefix, range, list of flags or concatenation."""
    if isinstance(obj, dict) and len(obj) == 1:
        key, body = next(iter(obj.items()))
        if key == "prefix" and isinstance(body, dict):
            return Prefix(scalar(body.get("addr"), types[0], obj), int(body.get("len", -1)))
        if key == "range" and isinstance(body, list) and len(body) == 2:
            return Range(value(body[0], types, obj), value(body[1], types, obj))
        if key == "concat" and isinstance(body, list):
            if len(body) > len(types):
                raise JsonProblem(obj, f"a value of {len(types)} parts has {len(body)}")
            return Concat(tuple(value(item, (typed,), obj) for item, typed in zip(body, types, strict=False)))
        if key == "|" and isinstance(body, list) and len(body) == 2 and types[0].datatype.kind == "bitmask":
            return Binop("|", value(body[0], types, obj), value(body[1], types, obj))
    if isinstance(obj, list):
        return ValueList(tuple(scalar(item, types[0], obj) for item in obj))
    return scalar(obj, types[0], where)


def verdict(obj: object) -> Verdict | None:
    if isinstance(obj, dict) and len(obj) == 1:
        key, body = next(iter(obj.items()))
        if key in VERDICT_WORDS:
            target = body.get("target") if isinstance(body, dict) else None
            return Verdict(key, target)  # type: ignore[arg-type]
    return None


def element(obj: object, keys: Types, data: Types | None, family: str) -> Element:
    """One JSON element of a set (`value`, `{"elem": {...}}`) or map (`[key, value]`)."""
    data_value: Expr | None = None
    if data is not None:
        if not isinstance(obj, list) or len(obj) != 2:
            raise JsonProblem(obj, "expected a map element: [key, value]")
        obj, raw_data = obj
        if data[0].datatype.kind == "verdict":
            found = verdict(raw_data)
            if found is None:
                raise JsonProblem(raw_data, f"expected a verdict, got {raw_data!r}")
            data_value = found
        else:
            data_value = value(raw_data, data, raw_data)
    timeout = expires = None
    comment = None
    statements: list[Statement] = []
    if isinstance(obj, dict) and "elem" in obj and isinstance(obj["elem"], dict):
        body = obj["elem"]
        timeout = body["timeout"] * 1000 if "timeout" in body else None
        expires = body["expires"] * 1000 if "expires" in body else None
        comment = body.get("comment")
        for name in ("counter", "quota", "limit"):
            if name in body:
                statements.append(statement({name: body[name]}, family))
        obj = body.get("val")
    key: Expr = Const("catchall", "*") if obj == "*" else value(obj, keys, obj)
    return Element(key, data_value, timeout, expires, comment, tuple(statements))


def set_operand(obj: object, family: str, keys: Types, data: Types | None, where: object) -> SetLiteral | SetRef:
    if isinstance(obj, str) and obj.startswith("@"):
        return SetRef(obj[1:])
    if isinstance(obj, dict) and isinstance(obj.get("set"), list) and len(obj) == 1:
        return SetLiteral(tuple(element(item, keys, data, family) for item in obj["set"]))
    raise JsonProblem(where, f"expected a set (\"@name\" or {{\"set\": [...]}}), got {obj!r}")


def _match(body: dict, family: str, where: object) -> Statement:
    left, types = expression(body.get("left"), family, None, where)
    right_obj = body.get("right")
    op = body.get("op")
    if op not in ("==", "!=", "<", ">", "<=", ">=", "in"):
        raise JsonProblem(where, f"unknown operator {op!r}")
    if isinstance(left, (Fib, Exthdr, TcpOption, IpOption, SctpChunk)) and isinstance(right_obj, bool):
        types = (ty.BOOLEAN,)
    right: Expr
    if isinstance(right_obj, str) and right_obj.startswith("@") or isinstance(right_obj, dict) and "set" in right_obj:
        right = set_operand(right_obj, family, types, None, where)
    else:
        right = value(right_obj, types, where)
    return Match(op, left, right)


def _nat(kind: str, body: object, family: str, where: object) -> Statement:
    if body is None:
        return Nat(kind)  # type: ignore[arg-type]
    assert isinstance(body, dict)
    nat_family = body.get("family")
    address = ty.family_address(nat_family or (family if family in ("ip", "ip6") else None))
    addr = port = None
    if "addr" in body:
        raw = body["addr"]
        if isinstance(raw, dict) and "map" in raw:
            addr, _ = expression(raw, family, (address, ty.typed("inet_service")) if address else None, where)
        else:
            assert address is not None
            addr = value(raw, (address,), where)
    if "port" in body:
        port = value(body["port"], (ty.typed("inet_service"),), where)
    flags = body.get("flags", ())
    # netmap comes with `prefix`, which the text shows instead.
    flags = tuple(f for f in ((flags,) if isinstance(flags, str) else flags) if f != "netmap")
    type_flags = body.get("type_flags", ())
    prefix = "prefix" in ((type_flags,) if isinstance(type_flags, str) else type_flags)
    return Nat(kind, nat_family, addr, port, flags, prefix)  # type: ignore[arg-type]


def _size(amount: object, unit: object) -> int:
    return int(amount) * BYTE_UNITS.get(str(unit), 1)  # type: ignore[call-overload]


def _named(kind: str, body: object, family: str, where: object) -> Statement | None:
    if isinstance(body, str):
        return ObjectRef(kind, Const("string", body))
    if isinstance(body, dict) and "map" in body:
        expr, _ = expression(body, family, (ty.typed("string"),), where)
        return ObjectRef(kind, expr)
    return None


SetTypes = nested.SetTypes | None


def text_statement(text: str, family: str, set_types: SetTypes, where: object) -> Statement:
    """A statement nft 1.0.6 has no JSON form for, which its JSON gives as its text (`"jump {\\n...}"`, `"update
    @m { ip saddr : 0x1 }"`), read with the listing's grammar."""
    lines = text.split("\n")
    tokens = [token for number, line in enumerate(lines, 1) for token in tokenize(line, number, "<json>")]
    if not tokens:
        raise JsonProblem(where, "expected a statement, got an empty string")
    cur = Cursor(tokens, "<json>", lines, tokens[-1].line, tokens[-1].end)
    try:
        found = statements.statement(cur, family, set_types)
        if not cur.at_end():
            raise cur.error(cur.peek(), f"unexpected {shown(cur.peek())} after the statement")
    except DumpError as error:
        raise JsonProblem(where, f"{error.message} (in the statement's text {text!r})") from None
    return found


def _timed(raw: object) -> tuple[object, int | None]:
    """A set element or meter key, and its timeout in milliseconds (`{"elem": {"val": ..., "timeout": 10}}`)."""
    if isinstance(raw, dict) and isinstance(raw.get("elem"), dict):
        return raw["elem"].get("val"), raw["elem"].get("timeout", 0) * 1000 or None
    return raw, None


def statement(obj: object, family: str, set_types: SetTypes = None) -> Statement:
    """One JSON statement of a rule (`set_types`: the key and value types of the table's sets, for a set
    update)."""
    if isinstance(obj, str):
        return text_statement(obj, family, set_types, obj)
    key, body = _one(obj, "a statement")
    found = verdict(obj)
    if found is not None:
        return found
    if key == "match" and isinstance(body, dict):
        return _match(body, family, obj)
    if key in ("vmap",) and isinstance(body, dict):
        key_expr, types = expression(body.get("key"), family, None, obj)
        return VerdictMap(key_expr, set_operand(body.get("data"), family, types, (ty.VERDICT,), obj))
    if key == "mangle" and isinstance(body, dict):
        target, types = expression(body.get("key"), family, None, obj)
        new, _ = expression(body.get("value"), family, types, obj)
        return Mangle(target, new)
    if key in OBJECT_REFS and (named := _named(OBJECT_REFS[key], body, family, obj)) is not None:
        return named
    if key == "counter":
        return Counter() if body is None else Counter(body["packets"], body["bytes"])  # type: ignore[index]
    if key == "quota" and isinstance(body, dict):
        return Quota(_size(body["val"], body["val_unit"]), _size(body.get("used", 0), body.get("used_unit", "bytes")),
                     bool(body.get("inv")))
    if key == "limit" and isinstance(body, dict):
        is_bytes = "rate_unit" in body
        return Limit(_size(body["rate"], body.get("rate_unit", "bytes")), body["per"],
                     _size(body.get("burst", 0), body.get("burst_unit", "bytes")), is_bytes, bool(body.get("inv")))
    if key == "log":
        body = body if isinstance(body, dict) else {}
        flags = body.get("flags", ())
        return Log(body.get("prefix"), body.get("group"), body.get("snaplen"), body.get("queue-threshold"),
                   body.get("level"), (flags,) if isinstance(flags, str) else tuple(flags))
    if key in ("snat", "dnat", "masquerade", "redirect"):
        return _nat(key, body, family, obj)
    return _other(key, body, family, obj, set_types)


def _other(key: str, body: object, family: str, where: object, set_types: SetTypes) -> Statement:
    if key == "reject":
        if body is None:
            return Reject({"ip": "icmp", "ip6": "icmpv6"}.get(family, "icmpx"), "port-unreachable")
        assert isinstance(body, dict)
        return Reject(body["type"], body.get("expr"))
    if key == "set" and isinstance(body, dict):
        raw, timeout = _timed(body.get("elem"))
        name = str(body["set"]).lstrip("@")
        elem, _ = expression(raw, family, (set_types or {}).get(name, (None,))[0], where)
        stmts = tuple(statement(s, family) for s in body.get("stmt", ()))
        return SetUpdate(body["op"], name, elem, timeout, stmts)
    if key == "meter" and isinstance(body, dict):
        raw, timeout = _timed(body.get("key"))
        return Meter(str(body["name"]), int(body["size"]), expression(raw, family, None, where)[0],
                     statement(body["stmt"], family), timeout)
    if key == "notrack":
        return Notrack()
    if key == "xt" and isinstance(body, dict):
        return Xt(body["type"], body["name"])
    if key == "flow" and isinstance(body, dict):
        return FlowOffload(str(body["flowtable"]).lstrip("@"))
    if key == "ct count" and isinstance(body, dict):
        return ConnLimit(body["val"], bool(body.get("inv")))
    if key == "dup":
        if body is None:
            raise JsonProblem(where, "dup needs an address")
        assert isinstance(body, dict)
        addr = value(body["addr"], (ty.family_address(family) or ty.typed("ipv4_addr"),), where)
        device = Const("string", body["dev"]) if "dev" in body else None
        return Dup(addr, device)
    if key == "fwd" and isinstance(body, dict):
        if "addr" in body:
            address = ty.family_address(body.get("family")) or ty.typed("ipv4_addr")
            return Fwd(Const("string", body["dev"]), body.get("family"), value(body["addr"], (address,), where))
        return Fwd(Const("string", body["dev"]))
    if key == "tproxy" and isinstance(body, dict):
        tproxy_address = ty.family_address(body.get("family") or (family if family in ("ip", "ip6") else None))
        tproxy_addr = value(body["addr"], (tproxy_address,), where) if "addr" in body and tproxy_address else None
        port = value(body["port"], (ty.typed("inet_service"),), where) if "port" in body else None
        return Tproxy(body.get("family"), tproxy_addr, port)
    if key == "synproxy":
        body = body or {}
        assert isinstance(body, dict)
        return Synproxy(body.get("mss"), body.get("wscale"), tuple(body.get("flags", ())))
    if key == "queue":
        body = body or {}
        assert isinstance(body, dict)
        flags = body.get("flags", ())
        num = expression(body["num"], family, (ty.typed("integer", 16),), where)[0] if "num" in body else None
        return Queue(num, (flags,) if isinstance(flags, str) else tuple(flags))
    raise JsonProblem(where, f"unknown statement {key!r}")
