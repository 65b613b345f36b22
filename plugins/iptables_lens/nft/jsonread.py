"""`nft -j list ruleset` JSON (libnftables-json(5)) -> the same ruleset model as the text listing.

The JSON is a list of objects (`{"table": ...}`, `{"chain": ...}`, `{"set": ...}`, `{"rule": ...}`,
`{"counter": ...}`, ...), each naming its family and table; they are gathered per table, rules per chain in
order. A problem is a DumpError at the line and column of the JSON object that has it: the text is decoded
fast first, and again with positions only when something is wrong.

nftables 1.0.6 leaves things out of its JSON that its text listing shows; `json_view(ruleset)` is a ruleset
as that JSON can say it, so that `json_view(parse(listing)) == parse_json(json)` for one ruleset:
- a table's and a chain's comment, a base chain's devices (its chain_print_json prints `dev` only from the
  expression a chain was declared with, which a listing read from the kernel does not have);
- a set's `dynamic` flag, `auto-merge`, the `interval` of a map's values, its `typeof` (the JSON gives the
  datatypes: `typeof ip daddr` is `type ipv4_addr`);
- element timeouts to the second, element expiries (which run down between two listings), an element's
  statements after its first, and whether a key's integer was read from a raw payload (printed in hex);
- a table's flags (1.0.6 prints freed memory for a table with one flag: its table_flags_json reads the flag's
  string after releasing the array that holds it).
"""

from __future__ import annotations

import bisect
import json
import json.decoder
import json.scanner
import re
from dataclasses import replace
from pathlib import Path

from iptables_lens.errors import DumpError
from iptables_lens.gcpause import paused_gc
from iptables_lens.nft import exprs as ex
from iptables_lens.nft import hooks
from iptables_lens.nft import jsonstatements as js
from iptables_lens.nft import types as ty
from iptables_lens.nft.check import table_problem
from iptables_lens.nft.model import (
    FAMILIES,
    Chain,
    Concat,
    Const,
    Element,
    Expr,
    Flowtable,
    Hook,
    NamedObject,
    Priority,
    Range,
    Rule,
    Ruleset,
    Set,
    SetFlag,
    Table,
)
from iptables_lens.nft.stateful import BYTE_UNITS
from iptables_lens.source import decode, read_bytes, source_name

_OBJECT_KINDS = ("counter", "quota", "limit", "ct helper", "ct timeout", "ct expectation", "secmark", "synproxy")
_SET_FLAG_ORDER: tuple[SetFlag, ...] = ("constant", "dynamic", "interval", "timeout")


class _Positioned(dict):
    __slots__ = ("offset",)


class _PositionedList(list):
    __slots__ = ("offset",)


def _positioned_decoder() -> json.JSONDecoder:
    """A decoder whose objects and arrays remember their offset in the text (slower: used only on errors)."""
    decoder = json.JSONDecoder()

    def parse_object(s_and_end, strict, scan_once, object_hook, object_pairs_hook, memo=None):
        pairs, end = json.decoder.JSONObject(s_and_end, strict, scan_once, None, list, memo)
        found = _Positioned(pairs)
        found.offset = s_and_end[1] - 1
        return found, end

    def parse_array(s_and_end, scan_once):
        values, end = json.decoder.JSONArray(s_and_end, scan_once)
        found = _PositionedList(values)
        found.offset = s_and_end[1] - 1
        return found, end

    decoder.parse_object = parse_object  # type: ignore[attr-defined]
    decoder.parse_array = parse_array  # type: ignore[attr-defined]
    decoder.scan_once = json.scanner.py_make_scanner(decoder)  # type: ignore[attr-defined]
    return decoder


def _position(text: str, offset: int) -> tuple[int, int, str]:
    line = text.count("\n", 0, offset) + 1
    start = text.rfind("\n", 0, offset) + 1
    end = text.find("\n", offset)
    shown = text[start: end if end >= 0 else len(text)]
    return line, offset - start + 1, shown


class _Reader:
    def __init__(self, source: str, text: str | None = None):
        """With `text` (and a positioned reading of it), rules and sets know the line they start on."""
        self.source = source
        self.line_starts = [0] + [m.end() for m in re.finditer("\n", text)] if text is not None else None
        self.tables: dict[tuple[str, str], dict] = {}
        self.order: list[tuple[str, str]] = []

    def _line(self, where: object) -> int:
        offset = getattr(where, "offset", None)
        if self.line_starts is None or offset is None:
            return 0
        return bisect.bisect_right(self.line_starts, offset)

    def _table(self, body: dict, where: object) -> dict:
        key = (str(body.get("family")), str(body.get("table", body.get("name"))))
        if key not in self.tables:
            raise js.JsonProblem(where, f"{key[0]} {key[1]} is not a table listed before it")
        return self.tables[key]

    def read(self, document: object) -> Ruleset:
        if not isinstance(document, dict) or not isinstance(document.get("nftables"), list):
            raise js.JsonProblem(document, 'expected {"nftables": [...]}, the output of nft -j list ruleset')
        for item in document["nftables"]:
            kind, body = js._one(item, "a ruleset object")
            if not isinstance(body, dict):
                raise js.JsonProblem(item, f"expected an object as the value of {kind!r}")
            if kind == "metainfo":
                continue
            if kind == "table":
                self._add_table(body, item)
            elif kind == "chain":
                self._table(body, item)["chains"].append(self._chain(body, item))
            elif kind in ("set", "map", "meter"):
                table = self._table(body, item)
                found = self._set(kind, body, item)
                table["sets"].append(found)
                table["set_types"][found.name] = _set_types(found)
            elif kind == "rule":
                self._rule(body, item)
            elif kind in _OBJECT_KINDS:
                self._table(body, item)["objects"].append(self._object(kind, body))
            elif kind == "flowtable":
                self._table(body, item)["flowtables"].append(self._flowtable(body, item))
            else:
                raise js.JsonProblem(item, f"unknown ruleset object {kind!r}")
        return Ruleset(self.source, tuple(self._finish(key) for key in self.order))

    def _add_table(self, body: dict, where: object) -> None:
        family, name = body.get("family"), body.get("name")
        if family not in FAMILIES or not isinstance(name, str):
            raise js.JsonProblem(where, f"expected a table's family ({', '.join(FAMILIES)}) and name")
        key = (family, name)
        if key in self.tables:
            raise js.JsonProblem(where, f"table {family} {name} is listed twice")
        self.order.append(key)
        self.tables[key] = {"body": body, "chains": [], "sets": [], "objects": [], "flowtables": [], "rules": {},
                            "set_types": {}}

    def _chain(self, body: dict, where: object) -> dict:
        family = body["family"]
        hook = None
        if "hook" in body:
            problem = hooks.hook_problem(family, body.get("type", ""), body["hook"],
                                         (body["dev"],) if "dev" in body else ())
            if problem is not None and "device" not in problem:
                raise js.JsonProblem(where, problem)
            prio = int(body.get("prio", 0))
            devices = (body["dev"],) if isinstance(body.get("dev"), str) else tuple(body.get("dev", ()))
            hook = Hook(body["type"], body["hook"], Priority(prio, hooks.priority_text(prio, family, body["hook"])),
                        body.get("policy"), devices)
        return {"name": body["name"], "hook": hook, "handle": body.get("handle")}

    def _set(self, kind: str, body: dict, where: object) -> Set:
        family = body["family"]
        raw_type = body.get("type")
        key_names = (raw_type,) if isinstance(raw_type, str) else tuple(raw_type or ())
        if not key_names or any(name not in ty.DATATYPES for name in key_names):
            raise js.JsonProblem(where, f"unknown set type {raw_type!r}")
        keys = tuple(ty.typed(name) for name in key_names)
        data_names: tuple[str, ...] = ()
        data: js.Types | None = None
        if kind == "map":
            raw_data = str(body.get("map"))
            if raw_data in _OBJECT_KINDS:
                data_names, data = (raw_data,), (ty.typed("string"),)
            else:
                data_names = tuple(raw_data.split(" . "))
                if any(name not in ty.DATATYPES for name in data_names):
                    raise js.JsonProblem(where, f"unknown map type {raw_data!r}")
                data = tuple(ty.typed(name) for name in data_names)
        flags = body.get("flags", ())
        flags = (flags,) if isinstance(flags, str) else tuple(flags)
        elements = tuple(js.element(item, keys, data, family) for item in body.get("elem", ()))
        statements = tuple(js.statement(s, family) for s in body.get("stmt", ()))
        return Set(family, body["table"], body["name"], kind, key_names, (), data_names, (), False,  # type: ignore[arg-type]
                   tuple(f for f in _SET_FLAG_ORDER if f in flags), body.get("policy"), body.get("size"),  # type: ignore[misc]
                   statements, False, _ms(body.get("timeout")), _ms(body.get("gc-interval")), body.get("comment"),
                   elements, body.get("handle"), line=self._line(body))

    def _rule(self, body: dict, where: object) -> None:
        table = self._table(body, where)
        family = body["family"]
        try:
            statements = tuple(js.statement(s, family, table["set_types"]) for s in body.get("expr", ()))
        except js.JsonProblem as problem:
            if getattr(problem.where, "offset", None) is None:
                problem.where = body  # a statement nft gave as its text: reported at its rule
            raise
        rules = table["rules"].setdefault(body["chain"], [])
        rules.append(Rule(family, body["table"], body["chain"], len(rules) + 1, statements, body.get("comment"),
                          body.get("handle"), line=self._line(body)))

    def _object(self, kind: str, body: dict) -> NamedObject:
        settings: dict[str, object]
        if kind == "counter":
            settings = {"packets": body["packets"], "bytes": body["bytes"]}
        elif kind == "quota":
            settings = {"bytes": body["bytes"], "over": bool(body.get("inv")), "used": body.get("used", 0)}
        elif kind == "limit":
            unit = body.get("rate_unit")

            settings = {"rate": body["rate"] * BYTE_UNITS.get(unit or "bytes", 1), "per": body["per"],
                        "burst": body.get("burst", 0) * BYTE_UNITS.get(body.get("burst_unit", "bytes"), 1),
                        "bytes": unit is not None, "over": bool(body.get("inv"))}
        elif kind == "secmark":
            settings = {"context": body["context"]}
        elif kind == "synproxy":
            settings = {key: body[key] for key in ("mss", "wscale") if key in body}
            if body.get("flags"):
                settings["flags"] = tuple(body["flags"])
        elif kind == "ct helper":
            settings = {"type": body["type"], "protocol": body["protocol"], "l3proto": body["l3proto"]}
        elif kind == "ct timeout":
            settings = {"protocol": body["protocol"], "l3proto": body["l3proto"]}
            if body.get("policy"):
                settings["policy"] = tuple(body["policy"].items())
        else:
            settings = {"protocol": body["protocol"], "dport": body["dport"], "timeout": body["timeout"],
                        "size": body["size"], "l3proto": body["l3proto"]}
        return NamedObject(body["family"], body["table"], kind, body["name"], tuple(settings.items()),  # type: ignore[arg-type]
                           body.get("comment"), body.get("handle"))

    def _flowtable(self, body: dict, where: object) -> Flowtable:
        prio = int(body.get("prio", 0))
        devices = body.get("dev", ())
        devices = (devices,) if isinstance(devices, str) else tuple(devices)
        return Flowtable(body["family"], body["table"], body["name"], body.get("hook", "ingress"),
                         Priority(prio, hooks.priority_text(prio, "netdev", "ingress")), devices,
                         handle=body.get("handle"))

    def _finish(self, key: tuple[str, str]) -> Table:
        pending = self.tables[key]
        family, name = key
        rules = pending["rules"]
        chains = tuple(Chain(family, name, c["name"], c["hook"], tuple(rules.pop(c["name"], ())),  # type: ignore[arg-type]
                             None, c["handle"]) for c in pending["chains"])
        if rules:
            chain = next(iter(rules))
            raise js.JsonProblem(pending["body"], f"rules of chain {chain!r}, which table {family} {name} does not list")
        body = pending["body"]
        return Table(family, name, (), None, tuple(pending["objects"]), tuple(pending["sets"]),  # type: ignore[arg-type]
                     tuple(pending["flowtables"]), chains, body.get("handle"))


def _set_types(item: Set) -> tuple[js.Types, js.Types | None]:
    """A set's key types and, for a map, its value types (() for a map of objects), as the grammar wants them."""
    keys = tuple(ty.typed(name) for name in item.key_types)
    if item.kind != "map":
        return keys, None
    return keys, tuple(ty.typed(name) for name in item.data_types if name in ty.DATATYPES)


def _ms(seconds: object) -> int | None:
    return int(seconds) * 1000 if isinstance(seconds, int) else None  # type: ignore[call-overload]


def parse_json(text: str | bytes, source: str = "<string>", *, family: int | None = None) -> Ruleset:
    """Parse `nft -j list ruleset` output into a Ruleset; DumpError at the position of the first problem.
    `family` is accepted for the dialect registry and ignored: each table names its own."""
    if isinstance(text, bytes):
        text = decode(text, source)
    try:
        document = json.loads(text)
    except json.JSONDecodeError as exc:
        line, column, shown = _position(text, exc.pos)
        raise DumpError(source, line, column, f"not JSON: {exc.msg}", shown) from None
    try:
        with paused_gc(promote_after=100_000):
            ruleset = _Reader(source).read(document)
    except (js.JsonProblem, KeyError, TypeError, ValueError) as problem:
        raise _positioned(text, source, problem) from None
    for table in ruleset.tables:
        found = table_problem(table, from_json=True)
        if found is not None:
            raise _table_problem(text, source, table)
    return ruleset


def _table_problem(text: str, source: str, table: Table) -> DumpError:
    """The DumpError for what nft refuses in `table`, at the rule or set it is found in (read again with
    positions)."""
    positioned = _Reader(source, text).read(_positioned_decoder().decode(text))
    lines = text.splitlines()
    found = table_problem(positioned.table(table.family, table.name), lines, from_json=True)
    assert found is not None
    line, column, message = found
    return DumpError(source, line, column, message, lines[line - 1] if 0 < line <= len(lines) else None)


def _positioned(text: str, source: str, first: Exception) -> DumpError:
    """The DumpError for a problem found in the fast reading, found again in a reading with positions."""
    try:
        _Reader(source).read(_positioned_decoder().decode(text))
    except js.JsonProblem as problem:
        offset = getattr(problem.where, "offset", 0)
        line, column, shown = _position(text, offset)
        return DumpError(source, line, column, str(problem), shown if len(shown) < 400 else None)
    except (KeyError, TypeError, ValueError) as problem:
        return DumpError(source, 1, 1, f"unexpected JSON: {type(problem).__name__} {problem}", None)
    return DumpError(source, 1, 1, str(first), None)


def parse_json_file(path: str | Path, source: str | None = None, *, family: int | None = None) -> Ruleset:
    name = source_name(path, source)
    return parse_json(read_bytes(path, source or str(path)), name, family=family)


# -- what the JSON can say ----------------------------------------------------------------------------------


def _plain_integers(expr: Expr) -> Expr:
    if isinstance(expr, Const) and expr.type == "xinteger":
        return Const("integer", expr.value)
    if isinstance(expr, Concat):
        return Concat(tuple(_plain_integers(item) for item in expr.items))
    if isinstance(expr, Range):
        return Range(_plain_integers(expr.low), _plain_integers(expr.high))
    return expr


def _element_view(element: Element) -> Element:
    timeout = element.timeout // 1000 * 1000 if element.timeout else None
    # The JSON keeps one statement of an element (json.c: "TODO: only one statement per element").
    return replace(element, key=_plain_integers(element.key), timeout=timeout or None, expires=None,
                   statements=element.statements[:1])


def _type_names(types: ex.Types | None) -> tuple[str, ...]:
    # nft names its hex integer "integer" too.
    return tuple("integer" if t.datatype.name == "xinteger" else t.datatype.name for t in types or ())


def _set_view(item: Set) -> Set:
    key_types = item.key_types
    data_types = item.data_types
    if item.key_typeof:
        key_types = _type_names(ex.key_types(item.key_typeof))
    if item.data_typeof:
        data_types = _type_names(ex.key_types(item.data_typeof))
    return replace(item, key_types=key_types, key_typeof=(), data_types=data_types, data_typeof=(),
                   data_interval=False, flags=tuple(f for f in item.flags if f != "dynamic"), auto_merge=False,
                   elements=tuple(_element_view(e) for e in item.elements))


def _chain_view(chain: Chain) -> Chain:
    hook = chain.hook
    if hook is not None and hook.devices:
        hook = replace(hook, devices=())
    return replace(chain, comment=None, hook=hook)


def json_view(ruleset: Ruleset) -> Ruleset:
    """`ruleset` as nftables 1.0.6's JSON can say it (see the module's docstring for what it leaves out)."""
    tables = tuple(replace(t, comment=None, flags=(), owner=None, sets=tuple(_set_view(s) for s in t.sets),
                           chains=tuple(_chain_view(c) for c in t.chains)) for t in ruleset.tables)
    return replace(ruleset, tables=tables)
