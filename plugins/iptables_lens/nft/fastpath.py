"""The fast path: the rule and element lines a big kube-proxy listing is made of, read without the grammar.

A 10,000-Service listing is mostly rules of a few shapes (`ip saddr 10.244.3.7 jump mark-for-masquerade`,
`meta l4proto tcp dnat to 10.244.3.7:8080`, `numgen random mod 5 vmap { 0 : goto endpoint-..., ... }`) and
map elements (`10.96.0.10 . tcp . 53 : goto service-...`). `RuleCache.rule` reads a rule line as a sequence of
such statements, one regex each, and `fast_elements` a set's elements; a line or element list they are not
sure of goes to the grammar (`statements.rule_body`, `exprs.elements`), which gives the same model and reports
any problem. Values are read through the grammar's readers (`values.read_value`), remembered per text.
tests/test_nft_fastpath.py proves that both paths give the same model on the corpus and on generated and
damaged listings. `RuleCache.enabled = False` reads everything with the grammar.
"""

from __future__ import annotations

import re

from iptables_lens.nft import statements
from iptables_lens.nft import types as ty
from iptables_lens.nft.fmtrules import format_rule_body, handle_comment
from iptables_lens.nft.model import (
    Concat,
    Const,
    Counter,
    Element,
    Expr,
    Match,
    Nat,
    Numgen,
    Operator,
    Payload,
    Prefix,
    Rule,
    SetLiteral,
    SetRef,
    SetUpdate,
    Statement,
    Verdict,
    VerdictMap,
)
from iptables_lens.nft.tokens import NAME as _NAME
from iptables_lens.nft.tokens import Cursor, tokenize
from iptables_lens.nft.values import ValueProblem, read_value

_PIECE = re.compile(
    r"(?:(?P<addr>(?P<af>ip6?) (?P<dir>saddr|daddr) (?P<neg>!= )?(?P<value>[^\s{}(),;\"#]+))"
    rf"|(?P<verdict>jump|goto) (?P<target>{_NAME})"
    r"|(?P<fixed>accept|drop|return|continue|reject|notrack|masquerade fully-random|masquerade|ct state new"
    r"|ct state established,related|meta l4proto (?:tcp|udp|sctp)|fib (?:saddr|daddr) type local)"
    r"|(?P<dnat>dnat (?:(?P<dnat_af>ip6?) )?to (?P<dnat_to>[^\s{}(),;\"#]+))"
    r"|numgen random mod (?P<mod>[0-9]+) vmap \{ (?P<arms>[^{}]*) \}"
    r"|(?P<port>(?P<proto>tcp|udp|sctp|th) (?P<pdir>sport|dport) (?P<pneg>!= )?(?P<pval>[0-9]+))"
    rf"|update @(?P<uset>{_NAME}) \{{ (?P<ukey>ip6? saddr) \}}"
    r"|counter packets (?P<packets>[0-9]{1,20}) bytes (?P<bytes>[0-9]{1,20})"
    r"|comment \"(?P<comment>[^\"]*)\"$)"
    r"(?= |$)"
)
_ADDRESS = {"ip": ty.typed("ipv4_addr"), "ip6": ty.typed("ipv6_addr")}
_PAYLOADS = {(protocol, field): Payload(protocol, field) for protocol in ("ip", "ip6", "tcp", "udp", "sctp", "th")
             for field in ("saddr", "daddr", "sport", "dport")}
_OCTET = r"(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])"
_IPV4 = re.compile(rf"{_OCTET}(?:\.{_OCTET}){{3}}")
_ARM = re.compile(rf"([0-9]+) : (goto|jump) ({_NAME})")
_HANDLE = re.compile(r" # handle ([0-9]{1,20})$")
_ELEMENT_SPLIT = re.compile(r",\s+")
_ELEMENT_DATA = re.compile(rf"(?:(goto|jump) ({_NAME})|(accept|drop|return|continue))")
_PORT_TYPE = ty.typed("inet_service")


class RuleCache:
    """The fast path's memory while a listing is read: values and statements already read, per table."""

    def __init__(self) -> None:
        self.enabled = True
        self.family: str | None = None
        self.values: dict[tuple[str, str], Const | Prefix | None] = {}
        self.fixed: dict[str, Statement] = {}
        self.lines: dict[str, tuple[tuple[Statement, ...], str | None, int | None]] = {}
        self.pieces: dict[str, Statement | None] = {}
        self.table: object = None

    def _enter(self, table) -> None:
        if table is not self.table:
            self.table = table
            self.lines = {}
            self.pieces = {}
            if table.family != self.family:
                self.family = table.family
                self.fixed = {}

    def value(self, typed: ty.Typed, text: str) -> Const | Prefix | None:
        """The Const (or, for an address, Prefix) `text` is in `typed`, or None if the grammar would refuse it."""
        key = (typed.datatype.name, text)
        found = self.values.get(key, False)
        if found is False and typed.datatype.kind == "ipv4" and _IPV4.fullmatch(text):
            found = self.values[key] = Const("ipv4_addr", text)  # the dotted quad is already canonical
        if found is False:
            found = None
            base, slash, length = text.partition("/")
            try:
                if slash:
                    limit = 32 if typed.datatype.kind == "ipv4" else 128
                    if typed.datatype.kind in ("ipv4", "ipv6") and length.isdigit() and int(length) <= limit:
                        found = Prefix(read_value(base, typed, False), int(length))
                else:
                    found = read_value(text, typed, False)
            except ValueProblem:
                found = None
            self.values[key] = found
        return found  # type: ignore[return-value]

    def rule(self, parser, cur: Cursor | None, table, chain: str, position: int, lineno: int) -> Rule:
        """The rule on line `lineno` of chain `chain` (`cur`: its tokens, or None if not yet tokenized)."""
        line = parser.lines[lineno - 1]
        text = line.strip()
        body = None
        # In a table iptables-nft keeps, a blank more at either end is a comment match (statements.rule_body).
        plain = not table.vanished_comments or not (line.endswith(" ") or line[-len(text) - 1:-len(text)] == " ")
        if self.enabled and plain:
            self._enter(table)
            body = self.lines.get(text)
            if body is None:
                body = self._fast(text, table.family)
                if body is not None:
                    self.lines[text] = body
        if body is None:
            if cur is None:
                cur = parser.cursor(tokenize(line, lineno, parser.source), lineno)
            body = statements.rule_body(cur, table.family, table.set_types, table.vanished_comments)
            if self.enabled and plain:
                self.lines[text] = body
        found, comment, handle = body
        spelled = _spelling(line, found, comment, handle, table.family) if table.vanished_comments else None
        return Rule(table.family, table.name, chain, position, found, comment, handle, lineno, text, spelled)

    def read_rules(self, parser, lines: list[str], start: int, block) -> int:
        """Read the rule lines of `block` (a chain) from lines[start] on, as long as the fast path is sure of
        them; the index of the first line it leaves to the parser."""
        table = parser.table
        self._enter(table)
        family, table_name, chain, rules = table.family, table.name, block.name, block.rules
        memo, fast = self.lines, self._fast
        index, end = start, len(lines)
        if table.vanished_comments:
            return index  # its blanks may say something: the grammar reads its rules (RuleCache.rule)
        while index < end:
            text = lines[index].strip()
            if not text or text[0] in "}#;" or text.startswith(("type ", "comment ")) or ";" in text \
                    or "{" in text and text.count("{") != text.count("}"):
                return index
            body = memo.get(text)
            if body is None:
                body = fast(text, family)
                if body is None:
                    return index
                memo[text] = body
            found, comment, handle = body
            rules.append(Rule(family, table_name, chain, len(rules) + 1, found, comment, handle, index + 1, text))
            index += 1
        return index

    def _fast(self, text: str, family: str):
        handle = None
        if "#" in text:
            m = _HANDLE.search(text)
            if m is None:
                return None
            handle = int(m.group(1))
            text = text[: m.start()]
        found: list[Statement] = []
        comment = None
        pos, end = 0, len(text)
        match = _PIECE.match
        pieces = self.pieces
        while pos < end:
            m = match(text, pos)
            if m is None:
                return None
            stop = m.end()
            piece = m.group()
            if piece in pieces:
                stmt = pieces[piece]
            else:
                stmt = pieces[piece] = self._statement(m, family)
            if stmt is None:
                if m.group("comment") is None or not found:
                    return None
                comment = m.group("comment")
            else:
                found.append(stmt)
            pos = stop + 1
        if not found or pos != end + 1:
            return None
        return tuple(found), comment, handle

    def _statement(self, m: re.Match, family: str) -> Statement | None:
        group = m.lastgroup
        if group == "addr":
            af = m.group("af")
            if family not in ("inet", "bridge", "netdev", af):
                return None
            left = _PAYLOADS[af, m.group("dir")]
            value = m.group("value")
            op: Operator = "!=" if m.group("neg") else "=="
            if value.startswith("@"):
                return Match(op, left, SetRef(value[1:])) if len(value) > 1 else None
            right = self.value(ty.PAYLOAD_FIELDS[af][m.group("dir")], value)
            return None if right is None else Match(op, left, right)
        if group == "target":
            return Verdict(m.group("verdict"), m.group("target"))  # type: ignore[arg-type]
        if group == "fixed":
            return self._fixed(m.group("fixed"), family)
        if group == "port":
            right = self.value(_PORT_TYPE, m.group("pval"))
            if right is None:
                return None
            port_op: Operator = "!=" if m.group("pneg") else "=="
            return Match(port_op, _PAYLOADS[m.group("proto"), m.group("pdir")], right)
        if group == "dnat":
            return self._dnat(m.group("dnat_af"), m.group("dnat_to"), family)
        if group == "arms":
            return self._numgen(int(m.group("mod")), m.group("arms"))
        if group == "ukey":
            af, _, direction = m.group("ukey").partition(" ")
            return SetUpdate("update", m.group("uset"), Payload(af, direction))
        if group == "bytes":
            return Counter(int(m.group("packets")), int(m.group("bytes")))
        return None

    def _fixed(self, text: str, family: str) -> Statement:
        found = self.fixed.get(text)
        if found is None:
            tokens = tokenize(text, 1, "<fast path>")
            cur = Cursor(tokens, "<fast path>", [text], 1, len(text) + 1)
            found = statements.statement(cur, family)
            assert cur.at_end(), text
            self.fixed[text] = found
        return found

    def _dnat(self, af: str | None, target: str, family: str) -> Statement | None:
        typed = _ADDRESS.get(af or family)
        if typed is None or (af is not None and family not in ("inet", af)):
            return None
        if typed.datatype.kind == "ipv6":
            if not target.startswith("[") or "]:" not in target:
                return None
            address, _, port = target[1:].partition("]:")
        else:
            address, colon, port = target.partition(":")
            if not colon:
                return None
        addr = self.value(typed, address)
        port_value = self.value(_PORT_TYPE, port)
        if not isinstance(addr, Const) or not isinstance(port_value, Const):
            return None
        return Nat("dnat", af, addr, port_value)

    def _numgen(self, mod: int, arms: str) -> Statement | None:
        elements = []
        for arm in arms.split(", "):
            m = _ARM.fullmatch(arm)
            if m is None:
                return None
            key = self.value(ty.INTEGER32, m.group(1))
            if key is None:
                return None
            elements.append(Element(key, Verdict(m.group(2), m.group(3))))  # type: ignore[arg-type]
        if mod >= 1 << 32:
            return None
        return VerdictMap(Numgen("random", mod), SetLiteral(tuple(elements)))

    def elements(self, text: str, keys: tuple[ty.Typed, ...], data: tuple[ty.Typed, ...] | None
                 ) -> tuple[Element, ...] | None:
        """The elements written in `text` (what is between `elements = {` and its `}`), or None if the fast
        path is not sure of one of them."""
        if not self.enabled or '"' in text and data is None:
            return None
        found = []
        value = self.value
        verdicts = data is not None and data[0].datatype.kind == "verdict"
        if data is not None and not verdicts:
            return None
        for item in _ELEMENT_SPLIT.split(text.strip()):
            comment = None
            if verdicts:
                key_text, sep, data_text = item.rpartition(" : ")
                if not sep:
                    return None
                m = _ELEMENT_DATA.fullmatch(data_text)
                if m is None:
                    return None
                datum: Expr = Verdict(m.group(1), m.group(2)) if m.group(1) else Verdict(m.group(3))  # type: ignore[arg-type]
                if '"' in key_text:
                    key_text, sep, quoted = key_text.partition(' comment "')
                    if not sep or not quoted.endswith('"') or '"' in quoted[:-1]:
                        return None
                    comment = quoted[:-1]
            else:
                key_text, datum = item, None  # type: ignore[assignment]
            parts = key_text.split(" . ")
            if len(parts) != len(keys):
                return None
            consts = []
            for part, typed in zip(parts, keys, strict=True):
                const = value(typed, part)
                if not isinstance(const, Const):
                    return None
                consts.append(const)
            key: Expr = consts[0] if len(consts) == 1 else Concat(tuple(consts))
            found.append(Element(key, datum, None, None, comment))
        return tuple(found)


def _spelling(line: str, found: tuple[Statement, ...], comment: str | None, handle: int | None,
              family: str) -> str | None:
    """The statements and comment of the rule line `line` as written, if nft would print what they read as
    otherwise (an iptables extension's translation in iptables' spelling), else None. Only a line as nft lists
    it (indented by two tabs, a handle as nft prints it, no other `#` note) keeps its spelling."""
    suffix = handle_comment(handle)
    if not line.startswith("\t\t") or not line.endswith(suffix):
        return None
    written = line[2:len(line) - len(suffix)]
    if written == format_rule_body(found, comment, family) or comment is None and "#" in written:
        return None
    return written
