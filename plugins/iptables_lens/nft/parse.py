"""`nft list ruleset` text (and `nft -a list ruleset`) -> the ruleset model. The only code that reads it.

The listing is read as nft prints it: one declaration or rule per line, blocks opened by `{` at the end of a
line and closed by a line `}`, a set's `elements = { ... }` and a chain binding's `jump { ... }` the things
that span lines. Blank lines, indentation and `#` comments are free (but in the tables iptables-nft keeps,
where nft leaves blanks for a comment match: `statements.rule_body`); `# handle N` at the end of a line is
the handle `nft -a` shows.
Everything else is checked: each word where it stands, each value against the datatype of what it is
compared with, each name a rule uses against the table's chains, sets, maps, objects and flowtables
(`check`). Every problem is a `DumpError` with the line and column of the offending text.

What nft accepts beyond its own listing (its `add rule ...` commands, `define`, `include`, several
statements on a line with `;`) is refused with a positioned error, as is a table, chain or set declared
twice (nft merges them): this reads listings, which never hold them.

>>> ruleset = parse('table ip t {\\n\\tchain c {\\n\\t\\tip daddr 10.0.0.1 tcp dport 80 accept\\n\\t}\\n}\\n')
>>> rule = ruleset.table("ip", "t").chain("c").rules[0]
>>> [type(s).__name__ for s in rule.statements], rule.statements[0].right
(['Match', 'Match', 'Verdict'], Const(type='ipv4_addr', value='10.0.0.1'))
"""

from __future__ import annotations

import re
from pathlib import Path

from iptables_lens.errors import DumpError
from iptables_lens.gcpause import paused_gc
from iptables_lens.nft import check, declarations, statements
from iptables_lens.nft.fastpath import RuleCache
from iptables_lens.nft.model import (
    FAMILIES,
    Chain,
    Flowtable,
    Hook,
    NamedObject,
    Priority,
    Rule,
    Ruleset,
    Table,
)
from iptables_lens.nft.setblocks import Block, PendingTable, SetLines
from iptables_lens.nft.tokens import NAME, Cursor, Token, shown, tokenize
from iptables_lens.source import decode, read_bytes, source_name, split_lines

_CHAIN_HEADER = re.compile(rf"chain ({NAME}) \{{")
_CHAIN_LINE = re.compile(rf"\tchain ({NAME}) \{{")  # a chain's first line, as nft prints it
_BLOCKS = ("chain", "set", "map", "meter", "flowtable", "counter", "quota", "limit", "secmark", "synproxy", "ct")
_PROMOTE_AFTER = 100_000  # new objects, in the collector's count, after which a ruleset is a big one


class ListingParser(SetLines):
    """Reads the lines of a listing in order; `finish` gives the Ruleset."""

    def __init__(self, source: str, lines: list[str]):
        self.source = source
        self.lines = lines
        self.tables: list[Table] = []
        self.seen_tables: dict[tuple[str, str], int] = {}
        self.table: PendingTable | None = None
        self.block: Block | None = None
        self.rules = RuleCache()

    # -- helpers ---------------------------------------------------------------------------------------------

    def error(self, lineno: int, column: int, message: str) -> DumpError:
        """The one way this parser reports a problem: where it is, what is wrong, and the line."""
        return DumpError(self.source, lineno, column, message, self.lines[lineno - 1])

    def cursor(self, tokens: list[Token], lineno: int) -> Cursor:
        line = self.lines[lineno - 1]
        return Cursor(tokens, self.source, self.lines, lineno, len(line.rstrip()) + 1)

    def _header(self, cur: Cursor, what: str) -> tuple[str, int | None, str | None]:
        """`NAME {` [# handle N [progname P]]: the name, handle and owner."""
        name = cur.name(f"the {what}'s name")
        cur.expect("{", f"'{{' after the {what}'s name")
        handle, owner = None, None
        comment = cur.peek()
        if comment is not None and comment.kind == "#":
            cur.pos += 1
            words = comment.text[1:].split()
            if words[:1] == ["handle"] and len(words) >= 2 and words[1].isdigit():
                handle = int(words[1])
                words = words[2:]
            if words[:1] == ["progname"] and len(words) == 2:
                owner = words[1]
        elif comment is not None:
            raise cur.error(comment, f"unexpected {shown(comment)} after '{{': a declaration's body starts on the "
                            "next line")
        return name, handle, owner

    # -- lines -----------------------------------------------------------------------------------------------

    def read_line(self, lineno: int, line: str) -> None:
        stripped = line.strip()
        block = self.block
        if not stripped or stripped[0] == "#":
            if not stripped and block is not None and block.elements is not None:
                raise self.error(lineno, 1, "a blank line inside `elements = { ... }`: nft refuses it")
            return
        # The common lines are recognised before tokenizing: closing braces, rules, chain headers, elements.
        if block is not None:
            if block.elements is not None:
                self._element_line(block, lineno, line)
                return
            if block.pending is not None:
                self._continued_rule(block, tokenize(line, lineno, self.source), lineno)
                return
            if stripped == "}":
                self._finish_block()
                return
            if block.kind == "chain" and not stripped.startswith(("type ", "comment ")) and ";" not in stripped \
                    and stripped.count("{") == stripped.count("}"):
                table = self.table
                assert table is not None
                block.rules.append(self.rules.rule(self, None, table, block.name, len(block.rules) + 1, lineno))
                return
        elif self.table is not None:
            if stripped == "}":
                self._finish_table()
                return
            m = _CHAIN_HEADER.fullmatch(stripped)
            if m is not None:
                self._open_block("chain", m.group(1), lineno, None, lineno, line.find(m.group(1)) + 1)
                return
        tokens = tokenize(line, lineno, self.source)
        cur = self.cursor(tokens, lineno)
        if block is not None:
            self._block_line(cur, lineno)
        elif self.table is not None:
            self._table_line(cur, lineno)
        else:
            self._top_line(cur)

    def _top_line(self, cur: Cursor) -> None:
        token = cur.take("table")
        if token.text != "table" or token.kind != "w":
            raise cur.error(token, f"expected 'table FAMILY NAME {{' (as nft list ruleset prints), got {shown(token)}")
        family_token = cur.take_word("the table's family")
        if family_token.text not in FAMILIES:
            raise cur.error(family_token, f"expected the table's family ({', '.join(FAMILIES)}), got "
                            f"{shown(family_token)}")
        name_token = cur.peek()
        name, handle, owner = self._header(cur, "table")
        key = (family_token.text, name)
        if key in self.seen_tables:
            raise cur.error(name_token, f"table {family_token.text} {name} is declared twice (first on line "
                            f"{self.seen_tables[key]})")
        self.seen_tables[key] = token.line
        self.table = PendingTable(family_token.text, name, token.line, handle, owner,  # type: ignore[arg-type]
                                  vanished_comments=(family_token.text, name) in statements.IPTABLES_NFT_TABLES)

    def _table_line(self, cur: Cursor, lineno: int) -> None:
        table = self.table
        assert table is not None
        token = cur.take("a declaration")
        word = token.text if token.kind in ("w", "p") else ""
        if word == "}":
            self._end_of_line(cur)
            self._finish_table()
            return
        if word == "flags":
            flags = []
            while True:
                flag = cur.take_word("a table flag (dormant, owner)")
                if flag.text not in ("dormant", "owner"):
                    raise cur.error(flag, f"expected a table flag (dormant, owner), got {shown(flag)}")
                flags.append(flag.text)
                if not cur.accept(","):
                    break
            table.flags = tuple(flags)
            self._end_of_line(cur)
            return
        if word == "comment":
            if table.comment is not None:
                raise cur.error(token, "a table's comment is given twice: nft takes it only once")
            table.comment = cur.quoted("the table's comment")
            self._end_of_line(cur)
            return
        if word not in _BLOCKS:
            raise cur.error(token, f"expected a chain, set, map, flowtable or object in table {table.family} "
                            f"{table.name}, or '}}', got {shown(token)}")
        kind = word
        if word == "ct":
            sub = cur.take_word("helper, timeout or expectation")
            if sub.text not in declarations.CT_OBJECT_KINDS:
                raise cur.error(sub, f"expected ct helper, ct timeout or ct expectation, got {shown(sub)}")
            kind = f"ct {sub.text}"
        name_token = cur.peek()
        name, handle, _ = self._header(cur, kind)
        assert name_token is not None
        self._open_block(kind, name, lineno, handle, name_token.line, name_token.column)

    def _open_block(self, kind: str, name: str, lineno: int, handle: int | None, line: int, column: int) -> None:
        table = self.table
        assert table is not None
        key = f"{'set' if kind in ('set', 'map', 'meter') else kind} {name}"
        if key in table.names:
            raise self.error(line, column, f"{kind} {name!r} is declared twice in table {table.family} {table.name} "
                             f"(first on line {table.names[key]})")
        table.names[key] = line
        self.block = Block(kind, name, lineno, handle)

    def _block_line(self, cur: Cursor, lineno: int) -> None:
        block = self.block
        assert block is not None
        if cur.word() == "}":
            cur.pos += 1
            self._end_of_line(cur)
            self._finish_block()
            return
        if block.kind == "chain":
            self._chain_line(cur, block, lineno)
        elif block.kind in ("set", "map", "meter"):
            self._set_line(cur, block)
        elif block.kind == "flowtable":
            declarations.flowtable_line(cur, block.seen)
            self._end_of_line(cur)
        else:
            if cur.word() == "comment":
                cur.pos += 1
                if "comment" in block.seen or len(block.seen) > 0:
                    raise cur.error(cur.tokens[0], "an object's comment comes first in its body")
                block.seen["comment"] = cur.quoted("the comment")
            else:
                before = set(block.seen)
                start = cur.peek()
                declarations.object_settings(block.kind, cur, block.seen)
                # nft reads a synproxy's settings in one order, each once; the others' again, last one wins.
                if block.kind == "synproxy" and len(block.seen) == len(before):
                    raise cur.error(start, f"{shown(start)} is given twice in {block.kind} {block.name!r}")
            cur.accept(";")
            self._end_of_line(cur)

    def _chain_line(self, cur: Cursor, block: Block, lineno: int) -> None:
        table = self.table
        assert table is not None
        word = cur.word()
        if word == "comment" and not block.rules and "hook" not in block.seen and "comment" not in block.seen \
                and cur.peek(1) is not None and cur.peek(1).kind == "q" and len(cur.tokens) == 2:  # type: ignore[union-attr]
            cur.pos += 1
            block.seen["comment"] = cur.quoted("the chain's comment")
            return
        if _open_braces(cur.tokens) > 0:
            # A hand-written rule's `{ ... }` may go on over the next lines, as nft reads it.
            block.pending = []
            self._continued_rule(block, cur.tokens, lineno)
            return
        if word == "type" and "hook" not in block.seen:
            cur.pos += 1
            block.seen["hook"] = declarations.base_chain(cur, table.family)
            rest = cur.tokens[cur.pos:]
            if rest and rest[0].kind != "#":
                # nft reads what follows the hook's `;` as rules (`... priority 0; accept;`).
                self._rules(rest, block, lineno)
            return
        self._rules(cur.tokens, block, lineno)

    def _continued_rule(self, block: Block, tokens: list[Token], lineno: int) -> None:
        assert block.pending is not None
        block.pending.extend(tokens)
        if _open_braces(block.pending) <= 0:
            tokens, block.pending = block.pending, None
            self._rules(tokens, block, tokens[0].line)

    def _rules(self, tokens: list[Token], block: Block, lineno: int) -> None:
        """The rules of a chain line (or of the lines a rule's braces span): one, or several separated by `;`
        outside braces, as nft also reads them. A `#` comment before the last line of a rule is left out."""
        table = self.table
        assert table is not None
        if not any(t.kind == "p" and t.text == ";" for t in tokens) and tokens[-1].line == lineno:
            cur = self.cursor(tokens, lineno)
            block.rules.append(self.rules.rule(self, cur, table, block.name, len(block.rules) + 1, lineno))
            return
        group: list[Token] = []
        depth, last = 0, tokens[-1]
        for token in [*tokens, None]:
            if token is None or depth == 0 and token.kind == "p" and token.text == ";":
                if group:
                    end = group[-1]
                    cur = Cursor(group, self.source, self.lines, end.line, end.end)
                    stmts, comment, handle = statements.rule_body(cur, table.family, table.set_types,
                                                                  table.vanished_comments)
                    text = " ".join(t.text if t.kind != "q" else f'"{t.text}"' for t in group if t.kind != "#")
                    block.rules.append(Rule(table.family, table.name, block.name, len(block.rules) + 1, stmts,
                                            comment, handle, group[0].line, text))
                group = []
            elif token.kind != "#" or token is last:
                if token.kind == "p" and token.text in ("{", "}"):
                    depth += 1 if token.text == "{" else -1
                group.append(token)

    def _finish_block(self) -> None:
        block, table = self.block, self.table
        assert block is not None and table is not None
        seen = block.seen
        family, name = table.family, table.name
        if block.kind == "chain":
            hook = seen.get("hook")
            assert hook is None or isinstance(hook, Hook)
            table.chains.append(Chain(family, name, block.name, hook, tuple(block.rules),
                                      seen.get("comment"), block.handle, block.line))  # type: ignore[arg-type]
        elif block.kind in ("set", "map", "meter"):
            table.sets.append(self._build_set(block))
            data = seen.get("data_types") if block.kind == "map" else None
            table.set_types[block.name] = (seen["key_types"], data)
        elif block.kind == "flowtable":
            if "hook" not in seen:
                raise self.error(block.line, 1, f"flowtable {block.name!r} has no hook")
            priority = seen["priority"]
            assert isinstance(priority, Priority)
            table.flowtables.append(Flowtable(
                family, name, block.name, str(seen["hook"]), priority, seen.get("devices", ()),  # type: ignore[arg-type]
                bool(seen.get("offload")), bool(seen.get("counter")), block.handle, block.line))
        else:
            comment = seen.pop("comment", None)
            missing = [key for key in declarations.REQUIRED_SETTINGS.get(block.kind, ()) if key not in seen]
            if missing:
                raise self.error(block.line, 1, f"{block.kind} {block.name!r} has no {missing[0]}")
            table.objects.append(NamedObject(family, name, block.kind, block.name,  # type: ignore[arg-type]
                                             tuple(seen.items()), comment, block.handle, block.line))  # type: ignore[arg-type]
        self.block = None

    def _finish_table(self) -> None:
        pending = self.table
        assert pending is not None
        table = Table(pending.family, pending.name, pending.flags, pending.comment, tuple(pending.objects),
                      tuple(pending.sets), tuple(pending.flowtables), tuple(pending.chains), pending.handle,
                      pending.owner, pending.line)
        problem = check.table_problem(table, self.lines)
        if problem is not None:
            line, column, message = problem
            raise self.error(line, column, message)
        self.tables.append(table)
        self.table = None

    def finish(self) -> Ruleset:
        if self.block is not None and self.block.pending:
            first = self.block.pending[0]
            raise self.error(first.line, first.column, "a '{' this rule opens is never closed")
        if self.block is not None:
            raise self.error(self.block.line, 1, f"{self.block.kind} {self.block.name!r} is never closed: "
                             "expected '}'")
        if self.table is not None:
            raise self.error(self.table.line, 1, f"table {self.table.family} {self.table.name} is never closed: "
                             "expected '}'")
        return Ruleset(self.source, tuple(self.tables))


def _open_braces(tokens: list[Token]) -> int:
    return sum(1 if t.text == "{" else -1 if t.text == "}" else 0 for t in tokens if t.kind == "p")


def parse(text: str | bytes, source: str = "<string>", *, fast: bool = True, family: int | None = None) -> Ruleset:
    """Parse `nft list ruleset` text into a Ruleset; DumpError on the first problem. `family` is accepted for
    the dialect registry and ignored: each table names its own. `fast=False` reads every rule with the
    grammar alone (the reference the rule cache is tested against)."""
    if isinstance(text, bytes):
        text = decode(text, source)
    lines, _ = split_lines(text, source)
    del text
    parser = ListingParser(source, lines)
    parser.rules.enabled = fast
    read_line, read_rules = parser.read_line, parser.rules.read_rules
    index, count = 0, len(lines)
    with paused_gc(promote_after=_PROMOTE_AFTER):
        while index < count:
            block = parser.block
            if fast and block is not None and block.kind == "chain" and block.elements is None \
                    and block.pending is None:
                # Runs of rule lines are read by the fast path; it leaves the others to read_line.
                index = read_rules(parser, lines, index, block)
                if index == count:
                    break
                if lines[index] == "\t}":
                    parser._finish_block()
                    index += 1
                    continue
            elif fast and block is None and parser.table is not None:
                line = lines[index]
                if not line:
                    index += 1
                    continue
                header = _CHAIN_LINE.fullmatch(line)
                if header is not None:
                    parser._open_block("chain", header.group(1), index + 1, None, index + 1, 8)
                    index += 1
                    continue
            read_line(index + 1, lines[index])
            index += 1
        return parser.finish()


def parse_file(path: str | Path, source: str | None = None, *, fast: bool = True,
               family: int | None = None) -> Ruleset:
    """Read and parse a listing file; `-` reads standard input. OSError is turned into a DumpError."""
    name = source_name(path, source)
    return parse(read_bytes(path, source or str(path)), name, fast=fast, family=family)


__all__ = ["parse", "parse_file", "ListingParser", "statements", "Chain"]
