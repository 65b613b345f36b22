"""The lines of a table's set, map and meter blocks, and the records the listing parser keeps while it reads
a table: `SetLines` is the part of `parse.ListingParser` that reads `type`, `typeof`, `flags`, `timeout`,
`elements = { ... }` and the like, and builds the Set.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from iptables_lens.errors import DumpError
from iptables_lens.nft import declarations, exprs
from iptables_lens.nft import types as ty
from iptables_lens.nft.fastpath import RuleCache
from iptables_lens.nft.model import Chain, Element, Family, Flowtable, NamedObject, Rule, Set
from iptables_lens.nft.tokens import Cursor, Token, shown, tokenize

_QUOTED = re.compile(r'"[^"]*"')


@dataclass
class Block:
    """A declaration being read: its kind ("chain", "set", "ct helper", ...), name, line, handle, and what its
    lines said so far."""

    kind: str
    name: str
    line: int
    handle: int | None
    seen: dict[str, Any] = field(default_factory=dict)  # what the block's lines said, by setting
    rules: list[Rule] = field(default_factory=list)
    elements: list[tuple[int, str]] | None = None  # the lines of an `elements = { ... }` being read
    pending: list[Token] | None = None  # the tokens of a rule whose `{ ... }` goes on to the next lines


@dataclass
class PendingTable:
    family: Family
    name: str
    line: int
    handle: int | None
    owner: str | None
    flags: tuple[str, ...] = ()
    comment: str | None = None
    objects: list[NamedObject] = field(default_factory=list)
    sets: list[Set] = field(default_factory=list)
    flowtables: list[Flowtable] = field(default_factory=list)
    chains: list[Chain] = field(default_factory=list)
    names: dict[str, int] = field(default_factory=dict)  # "kind name" -> the line declaring it
    # set name -> its key's datatypes, and a map's value datatypes (None for a set)
    set_types: dict[str, tuple] = field(default_factory=dict)
    vanished_comments: bool = False  # whether it is a table iptables-nft keeps (`statements.rule_body`)



class SetLines:
    """Reading a set's block, for the listing parser, which supplies what is declared here."""

    source: str
    lines: list[str]
    table: PendingTable | None
    rules: RuleCache

    def error(self, lineno: int, column: int, message: str) -> DumpError:
        raise NotImplementedError

    def _end_of_line(self, cur: Cursor) -> None:
        token = cur.peek()
        if token is not None and token.kind != "#":
            raise cur.error(token, f"unexpected {shown(token)}: expected the end of the line")

    # -- blocks ----------------------------------------------------------------------------------------------

    def _set_line(self, cur: Cursor, block: Block) -> None:
        table = self.table
        assert table is not None
        seen = block.seen
        token = cur.take("a set property")
        word = token.text if token.kind == "w" else ""
        # A property given again replaces the first, as in nft; elements given again add to the first.
        if word in ("type", "typeof"):
            self._set_key(cur, block, word, table.family)
        elif word == "flags":
            seen["flags"] = declarations.set_flags(cur)
        elif word == "policy":
            policy = cur.take_word("performance or memory")
            if policy.text not in ("performance", "memory"):
                raise cur.error(policy, f"expected the policy performance or memory, got {shown(policy)}")
            seen["policy"] = policy.text
        elif word == "size":
            seen["size"] = exprs.integer_word(cur, "the size", 32)
        elif word in ("timeout", "gc-interval"):
            seen[word] = declarations.duration(cur)
        elif word == "auto-merge":
            seen["auto-merge"] = True
        elif word == "comment":
            if "comment" in seen:
                raise cur.error(token, "a set's comment is given twice: nft takes it only once")
            seen["comment"] = cur.quoted("the set's comment")
        elif word in ("counter", "quota", "limit"):
            cur.pos -= 1
            seen["statements"] = seen.get("statements", ()) + declarations.set_statements(cur)  # type: ignore[operator]
        elif word == "elements":
            if "key" not in seen:
                raise cur.error(token, "a set's elements come after its type")
            cur.expect("=")
            brace = cur.expect("{")
            block.elements = []
            self._element_line(block, token.line, self.lines[token.line - 1], brace.end - 1)
            return
        else:
            raise cur.error(token, f"expected a set property (type, typeof, flags, policy, size, timeout, "
                            f"gc-interval, auto-merge, comment, elements) or '}}', got {shown(token)}")
        self._end_of_line(cur)

    def _set_key(self, cur: Cursor, block: Block, word: str, family: str) -> None:
        seen = block.seen
        if word == "type":
            seen["key"] = declarations.type_names(cur, "a datatype")
            seen["key_types"] = tuple(ty.typed(name) for name in seen["key"])  # type: ignore[union-attr]
        else:
            expr, types = exprs.left_side(cur, family, binops=False)
            seen["key"] = (expr,)
            seen["key_types"] = types
            seen["typeof"] = True
        if block.kind == "map":
            cur.expect(":", "':' and the type of the map's values")
            seen["interval_data"] = cur.accept("interval")
            data_word = cur.word()
            if data_word in ty.OBJECT_MAP_TYPES or (data_word == "ct" and cur.word(1) in declarations.CT_OBJECT_KINDS):
                name = cur.take("an object type").text
                if name == "ct":
                    name = f"ct {cur.take_word('helper, timeout or expectation').text}"
                seen["data"] = (name,)
                seen["data_types"] = ()
            elif word == "type":
                seen["data"] = declarations.type_names(cur, "a datatype")
                seen["data_types"] = tuple(ty.typed(name) for name in seen["data"])  # type: ignore[union-attr]
            else:
                start = cur.peek()
                if cur.word() == "verdict":
                    cur.pos += 1
                    seen["data"], seen["data_types"] = ("verdict",), (ty.VERDICT,)
                else:
                    expr, types = exprs.left_side(cur, family, binops=False)
                    if start is None:
                        raise cur.error(start, "expected the type of the map's values")
                    seen["data"], seen["data_types"] = (expr,), types
        elif cur.word() == ":":
            raise cur.error(cur.peek(), f"a {block.kind} has no values: only a map maps its keys to values")

    def _element_line(self, block: Block, lineno: int, line: str, start: int = 0) -> None:
        """One more line of `elements = { ... }`; the elements are read once the `}` closing them is seen."""
        assert block.elements is not None
        block.elements.append((lineno, line[start:] if start else line))
        if "}" in _QUOTED.sub("", line[start:]):
            self._read_elements(block)

    def _read_elements(self, block: Block) -> None:
        table = self.table
        assert table is not None and block.elements is not None
        seen = block.seen
        pieces = block.elements
        block.elements = None
        data = seen["data_types"] if block.kind == "map" and seen.get("data_types") else None
        if block.kind == "map" and not seen.get("data_types"):
            data = (ty.typed("string"),)  # an object map's values are the objects' names
        text = " ".join(piece for _, piece in pieces)
        inner, closing, rest = text.rpartition("}")
        found = None
        if closing and not rest.strip() and inner.strip():
            found = self.rules.elements(inner, seen["key_types"], data)  # type: ignore[arg-type]
        if found is None:
            tokens = []
            for lineno, piece in pieces:
                line = self.lines[lineno - 1]
                offset = len(line) - len(piece)
                for token in tokenize(piece, lineno, self.source):
                    token.column += offset
                    token.end += offset
                    tokens.append(token)
            last = tokens[-1]
            cur = Cursor(tokens, self.source, self.lines, last.line, last.end)
            if cur.word() == "}":
                raise cur.error(cur.peek(), "expected an element before '}': nft refuses `elements = { }`")
            found = exprs.elements(cur, seen["key_types"], data, table.family, "}")  # type: ignore[arg-type]
            trailing = cur.peek()
            if trailing is not None and trailing.kind != "#":
                raise cur.error(trailing, f"unexpected {shown(trailing)} after the elements")
        seen["elements"] = seen.get("elements", ()) + found  # type: ignore[operator]

    # -- finishing -------------------------------------------------------------------------------------------

    def _build_set(self, block: Block) -> Set:
        table = self.table
        assert table is not None
        seen = block.seen
        if "key" not in seen:
            raise self.error(block.line, 1, f"{block.kind} {block.name!r} has no type")
        if block.kind == "map" and "data" not in seen:
            raise self.error(block.line, 1, f"map {block.name!r} has no value type")
        typeof = bool(seen.get("typeof"))
        key, data = seen["key"], seen.get("data", ())
        data_is_expr = bool(data) and not isinstance(data[0], str)  # type: ignore[index]
        elements: tuple[Element, ...] = seen.get("elements", ())  # type: ignore[assignment]
        flags = set(seen.get("flags", ()))  # type: ignore[arg-type]
        if seen.get("timeout"):
            flags.add("timeout")  # implied by a timeout, which nft then lists without the flag
        ordered = tuple(flag for flag in declarations.SET_FLAGS if flag in flags)
        return Set(
            table.family, table.name, block.name, block.kind,  # type: ignore[arg-type]
            () if typeof else key, key if typeof else (),  # type: ignore[arg-type]
            () if data_is_expr else data, data if data_is_expr else (),  # type: ignore[arg-type]
            bool(seen.get("interval_data")), ordered, seen.get("policy"),  # type: ignore[arg-type]
            seen.get("size"), seen.get("statements", ()), bool(seen.get("auto-merge")),  # type: ignore[arg-type]
            seen.get("timeout"), seen.get("gc-interval"), seen.get("comment"), elements,  # type: ignore[arg-type]
            block.handle, block.line)

