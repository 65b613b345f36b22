"""The fast path: runs of canonical chain and rule lines, read many lines at a time from cached pieces.

A big dump is mostly runs of `:KUBE-... - [0:0]` and `-A CHAIN ...` lines that repeat a few pieces: `-p tcp`,
`-m tcp --dport 80`, `-j KUBE-MARK-MASQ`. `read_lines` feeds a dump's lines to the strict parser, but reads
such runs itself; any line it is not sure of goes to the strict parser, so the model and the errors are the
strict parser's (tests/test_parse_properties.py proves it on generated and damaged dumps).

It asks the strict parser two things (`LineReader`): to read one line, and to read one piece of a rule.
"""

from __future__ import annotations

import itertools
import operator
import re
from typing import Literal, Protocol

from iptables_lens.iptables import options, xtables
from iptables_lens.iptables.model import BUILTIN_CHAINS, Counters, Criterion, Family, Match, Option, Rule, Target
from iptables_lens.iptables.pending import PendingChain, PendingTable, thawed
from iptables_lens.iptables.tokens import SURELY_SHORT  # a chunk with a longer line goes to the strict parser

_OCTET = r"(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])"
_ADDRESS = rf"{_OCTET}(?:\.{_OCTET}){{3}}"
_PORT = r"(?:[1-9][0-9]{0,3}|[1-5][0-9]{4}|6[0-4][0-9]{3}|65[0-4][0-9]{2}|655[0-2][0-9]|6553[0-5])"
# The shapes of most distinct pieces of a kube-proxy dump, read without the strict parser (see
# FastPath.learn_piece); the name of the last group says which shape matched. Each is a subset of what the
# strict parser accepts for that piece in a dump of that family: an IPv6 address is shaped by the regex and
# then read (`checked`), an IPv4 one only shaped.
_SHARED_PIECES = (
    r"|-j (?P<chain>[A-Za-z0-9_][A-Za-z0-9_.-]*)"
    r'|-m comment --comment "(?P<comment>[^"\\]+)"'
    r"|-m (?P<proto>tcp|udp) (?P<port_option>--[ds]port) (?P<port>[0-9]{1,5})"
)
_V6 = r"[0-9a-f:.]{2,45}"
_SIMPLE_PIECE: dict[Family, re.Pattern[str]] = {
    4: re.compile(
        rf"(?P<flag>-[sd]) (?P<address>{_ADDRESS}(?:/(?:3[0-2]|[12]?[0-9]))?)"
        rf"|-j DNAT --to-destination (?P<endpoint>{_ADDRESS}:{_PORT})" + _SHARED_PIECES
    ),
    6: re.compile(
        rf"(?P<flag>-[sd]) (?P<address>(?P<checked>{_V6})(?:/(?:12[0-8]|1[01][0-9]|[1-9]?[0-9]))?)"
        rf"|-j DNAT --to-destination (?P<endpoint>\[(?P<endpoint_address>{_V6})\]:{_PORT})" + _SHARED_PIECES
    ),
}
_USER_CHAIN = re.compile(r":([A-Za-z0-9_][A-Za-z0-9_.-]*) - \[([0-9]{1,20}):([0-9]{1,20})\]")
_NO_COUNTS = Counters(0, 0)  # shared by the many chains declared with [0:0]
_ALL_BUILTINS = frozenset(name for chains in BUILTIN_CHAINS.values() for name in chains)
# Where rule lines are cut into pieces: before each criterion, match module and target (with the `!` that
# negates it, so not between that `!` and its option), and before the "\n" put before each line's
# `-A CHAIN` (see FastPath.read_rules).
_PIECE_BOUNDARY = re.compile(r" (?=-[sdiopfmjg] |! -[sdiopfmjg] |\n)(?<! ! )")
_CHUNK = 256  # lines cut at a time: enough to leave Python's per-call costs behind, few enough for the CPU caches
_HEAD = "\n"  # the code of a line's head; pieces get codes from _FIRST_CODE on
_FIRST_CODE = 0x21
# What the fast path knows of a piece: its one-character code, and its item (for a line's head, its chain and
# the rule's counters; None for a piece it refuses).
_Entry = tuple[str, "Criterion | Match | Target | tuple[PendingChain | None, Counters | None] | None"]
# A head with counters, as `iptables-save -c` writes it: counters of up to 20 digits (64 bits), so that a
# longer number is the strict parser's to read.
_COUNTED_HEAD = re.compile(r"\n\[([0-9]{1,20}):([0-9]{1,20})\] -A (.*)")
_CODE = operator.itemgetter(0)
_ITEM = operator.itemgetter(1)

_RuleTwin = thawed(Rule)
_CriterionTwin = thawed(Criterion)
_MatchTwin = thawed(Match)
_TargetTwin = thawed(Target)
_OptionTwin = thawed(Option)

# Keys (see FastPath.learn_piece) of pieces read without the strict parser: for a target, "-j" and its
# xtables.target_facts.
_PLAIN_TARGET_KEY = ("-j", "", False, False, False)
_COMMENT_KEY = ("-m", "comment", False)
_DNAT_PORT_KEY = ("-j", "DNAT", False, True, False)
_ADDRESS_KEYS = {"-d": ("-d",), "-s": ("-s",)}
_PORT_KEYS = {"tcp": ("-m", "tcp", False), "udp": ("-m", "udp", False)}


class LineReader(Protocol):
    """What the fast path asks of the strict parser."""

    table: PendingTable | None  # the table being read, None between tables
    family: Family  # of the dump: which pieces mean what

    def read_line(self, lineno: int, line: str) -> None:
        """Read line `lineno` (1-based) and everything it means, or raise its DumpError."""

    def read_piece(self, piece: str) -> Criterion | Match | Target | None:
        """The one criterion, match or target a piece of a rule is, or None if it is not exactly one clean item."""


def read_lines(lines: list[str], parser: LineReader) -> None:
    """Feed `lines` to `parser`, reading runs of `:CHAIN` lines and of `-A` lines (maybe with counters) here."""
    fast = FastPath(parser)
    count = len(lines)
    i = 0
    while i < count:
        line = lines[i]
        table = parser.table
        if table is not None and (line[:3] == "-A " or line[:1] == "["):
            end = i + 1
            while end < count and ((head := lines[end][:3]) == "-A " or head[:1] == "["):
                end += 1
            fast.read_rules(table, lines, i, end)
            i = end
        elif table is not None and line[:1] == ":":
            end = i + 1
            while end < count and lines[end][:1] == ":":
                end += 1
            fast.declare_chains(table, lines, i, end)
            i = end
        else:
            if line[:6] == "COMMIT":
                fast.leave()  # let the table's pieces go before the strict parser makes the table's objects
            i += 1
            parser.read_line(i, line)


class FastPath:
    """The fast path's memory while a dump is read: pieces already read, and the table's plans for shapes."""

    def __init__(self, parser: LineReader):
        self.parser = parser
        self.family = parser.family
        self.simple_piece = _SIMPLE_PIECE[parser.family]
        self.table: PendingTable | None = None
        # The (code, item) of the pieces likely to come back, the code of each key, an example item of each
        # code, and the current table's plan of each shape.
        self.pieces: dict[str, _Entry] = {}
        self.codes_by_key: dict[tuple[object, ...], str] = {}
        self.code_examples: dict[str, Criterion | Match | Target | None] = {}
        self.plans: dict[str, tuple[int, int, bool] | None] = {}

    def _enter(self, table: PendingTable) -> None:
        if table is not self.table:
            self.leave()
            self.table = table

    def leave(self) -> None:
        """Forget the table: a shape's checks depend on it, and its pieces are rarely seen in the next one."""
        self.table = None
        self.plans = {}
        self.pieces.clear()

    def declare_chains(self, table: PendingTable, lines: list[str], start: int, end: int) -> None:
        """The chain lines lines[start:end]: the common `:KUBE-SEP-... - [0:0]` without tokenizing, the others
        by the strict parser."""
        chains = table.chains
        match = _USER_CHAIN.fullmatch
        read_line = self.parser.read_line
        for lineno, line in enumerate(lines[start:end], start + 1):
            m = match(line)
            if m is not None and len(line) <= SURELY_SHORT:
                name, packets, bytes_ = m.groups()
                if (name not in chains and name not in _ALL_BUILTINS and len(name) <= xtables.MAX_CHAIN_NAME
                        and name not in xtables.KNOWN_TARGETS):
                    counters = _NO_COUNTS if packets == "0" == bytes_ else Counters(int(packets), int(bytes_))
                    chains[name] = PendingChain(name, False, None, counters, lineno)
                    continue
            read_line(lineno, line)

    def read_rules(self, table: PendingTable, lines: list[str], start: int, end: int) -> None:
        """Parse the `-A CHAIN ...` lines lines[start:end] (maybe with `[PACKETS:BYTES]` first) from cached pieces.

        A big dump is mostly such lines, and they repeat a few pieces: `-p tcp`, `-m tcp --dport 80`,
        `-j KUBE-MARK-MASQ`. Lines are cut before each `-s/-d/-i/-o/-p/-f/-m/-j/-g` (with its `!`), a chunk at
        a time, so that the cutting and the look-ups run in C rather than once per line in Python. Each
        distinct piece of a chunk is read once (learn_piece: the common shapes directly, any other by the
        strict parser), and gets a one-character code for what the rule checks need to know of it; the
        string of a line's codes, its shape, is checked once per table (plan). A line with a refused piece
        or shape, or in an undeclared chain, goes to the strict parser, which reports any problem with its
        exact column.
        """
        self._enter(table)
        table_name = table.name
        find_chain = table.chains.get
        cache, plans = self.pieces, self.plans
        read_line = self.parser.read_line
        for first in range(start, end, _CHUNK):
            chunk = lines[first : min(first + _CHUNK, end)]
            if max(map(len, chunk)) > SURELY_SHORT:
                # Rare: the strict parser checks the length of each line in turn.
                for lineno, line in enumerate(chunk, first + 1):
                    read_line(lineno, line)
                continue
            # " \n" before each line makes its `[P:B] -A CHAIN` head a piece of its own, starting with "\n".
            text = " \n" + " \n".join(chunk)
            if "\\" in text or "\t" in text:
                # The strict parser reads backslash escapes and tabs: such a line is cut as a bare `-A`, a head
                # without a chain, which sends it there.
                text = " \n" + " \n".join("-A" if "\\" in line or "\t" in line else line for line in chunk)
            pieces = _PIECE_BOUNDARY.split(text)
            del text
            # The (code, item) of each distinct piece of the chunk: the big cache is looked up once for each,
            # and this small table, quicker to look up, for each piece.
            known = set(pieces)
            new = known.difference(cache)
            known.difference_update(new)
            entries = dict(zip(known, map(cache.__getitem__, known), strict=True))
            for piece in new:
                if piece[:1] == "\n":
                    # A line's head: its item is (the chain, the rule's counters). Heads are not cached: a chain's
                    # rules are consecutive.
                    if piece[1:4] == "-A ":
                        entries[piece] = (_HEAD, (find_chain(piece[4:]), None))
                    elif counted := _COUNTED_HEAD.fullmatch(piece):
                        packets, bytes_, name = counted.groups()
                        counters = _NO_COUNTS if packets == "0" == bytes_ else Counters(int(packets), int(bytes_))
                        entries[piece] = (_HEAD, (find_chain(name), counters))
                    else:
                        entries[piece] = (_HEAD, (None, None))  # the strict parser reads the line
                else:
                    entries[piece] = self.learn_piece(piece)
            looked_up = list(map(entries.__getitem__, pieces))
            del pieces, known, new, entries
            # One shape per line (the first is that of the empty text before the first head), and one item
            # per piece.
            shapes = "".join(map(_CODE, looked_up)).split(_HEAD)
            for shape in set(shapes).difference(plans):
                plans[shape] = self.plan(table_name, shape)
            parts = tuple(map(_ITEM, looked_up))
            del looked_up
            at = 1  # where the line's head is in parts: (its chain, its counters), followed by its pieces' items
            linenos = range(first + 1, first + 1 + len(chunk))
            for lineno, line, shape in zip(linenos, chunk, itertools.islice(shapes, 1, None), strict=True):
                plan = plans[shape]
                chain, counters = parts[at]
                if plan is None or chain is None:
                    read_line(lineno, line)
                else:
                    matches_at, target_at, has_target = plan
                    rules = chain.rules
                    # Rule(...), made faster (see pending.thawed).
                    rule = _RuleTwin(
                        table_name, chain.name, len(rules) + 1, lineno, line, parts[at + 1 : at + matches_at],
                        parts[at + matches_at : at + target_at], parts[at + target_at] if has_target else None,
                        counters,
                    )
                    rule.__class__ = Rule
                    rules.append(rule)
                at += len(shape) + 1

    def learn_piece(self, piece: str) -> _Entry:
        """Parse a piece not seen in this chunk (see read_rules); its (code, item).

        The big cache keeps all but the simple shapes read here without the strict parser, of which kube-proxy
        writes most only once (an endpoint's address, its DNAT, a jump to its chain): re-reading one in a
        later chunk costs less than keeping them all. Comments are kept: one Service's name comes back
        in many rules."""
        key: tuple[object, ...] | None = None
        item: Criterion | Match | Target | Literal[False] = False
        # The shapes of most distinct pieces of a kube-proxy dump, read without tokenizing: they build what
        # the strict parser would (with the twins of the model's classes, see pending.thawed), and their keys are known.
        simple = self.simple_piece.fullmatch(piece)
        if simple is not None and self.family == 6 and simple.lastgroup in ("address", "endpoint"):
            address = simple["checked"] if simple.lastgroup == "address" else simple["endpoint_address"]
            if options.address(address, 6) is not None:
                simple = None  # shaped like an IPv6 address, but not one: the strict parser says why
        if simple is not None:
            shape = simple.lastgroup
            if shape == "address":
                item = _CriterionTwin(simple["flag"], simple["address"], False)
                item.__class__ = Criterion
                key = _ADDRESS_KEYS[simple["flag"]]
            elif shape == "endpoint":
                option = _OptionTwin("--to-destination", (simple["endpoint"],), False)
                option.__class__ = Option
                item = _TargetTwin("DNAT", False, (option,))
                item.__class__ = Target
                key = _DNAT_PORT_KEY
            elif shape == "chain" and simple["chain"] not in xtables.CHECKED_TARGETS:
                item = _TargetTwin(simple["chain"], False, ())
                item.__class__ = Target
                key = _PLAIN_TARGET_KEY
            elif shape == "comment":
                option = _OptionTwin("--comment", (simple["comment"],), False)
                option.__class__ = Option
                item = _MatchTwin("comment", (option,))
                item.__class__ = Match
                key = _COMMENT_KEY
            elif shape == "port" and int(simple["port"]) <= 65535:
                option = _OptionTwin(simple["port_option"], (simple["port"],), False)
                option.__class__ = Option
                item = _MatchTwin(simple["proto"], (option,))
                item.__class__ = Match
                key = _PORT_KEYS[simple["proto"]]
        # Kept: comments, and whatever the strict parser reads.
        keep = key is None or key is _COMMENT_KEY
        if key is None:
            item = self.parser.read_piece(piece) or False
            # What the rule checks (plan, and rule_problem through it) look at, and nothing else: rules of
            # the same shape pass or fail them alike.
            if item is False or (type(item) is Match and item.module in xtables.CHAIN_BOUND_MATCHES):
                key = ("refused",)  # the strict parser reads the line (and checks the chain, for the latter)
            elif type(item) is Criterion:
                key = (item.flag, item.value.lower(), item.negated) if item.flag == "-p" else (item.flag,)
            elif type(item) is Match:
                key = ("-m", item.module, xtables.lacks_required(item.module, item.options))
            else:
                assert type(item) is Target
                key = ("-j", *xtables.target_facts(item, self.family))
        code = self.codes_by_key.get(key)
        if code is None:
            code = self.codes_by_key[key] = chr(_FIRST_CODE + len(self.codes_by_key))
            self.code_examples[code] = item or None
        entry = (code, item or None)
        if keep:
            self.pieces[piece] = entry
        return entry

    def plan(self, table: str, shape: str) -> tuple[int, int, bool] | None:
        """Where the criteria, matches and target of a line of this shape are among its parts (offsets from its
        head: matches start, target or end, whether there is a target), or None: the strict parser reads it.

        The fast path takes the order iptables-save prints, criteria, matches, then at most one target,
        each criterion at most once, and nothing the kernel would refuse in this table."""
        criteria: list[Criterion] = []
        matches: list[Match] = []
        target: Target | None = None
        for code in shape:
            item = self.code_examples[code]
            if type(item) is Criterion and not matches and target is None:
                if any(c.flag == item.flag for c in criteria):
                    return None
                criteria.append(item)
            elif type(item) is Match and target is None:
                matches.append(item)
            elif type(item) is Target and target is None:
                target = item
            else:
                return None
        if xtables.rule_problem(table, criteria, tuple(matches), target, self.family) is not None:
            return None
        return 1 + len(criteria), 1 + len(criteria) + len(matches), target is not None

