"""iptables-save text -> the dump model. The only code that reads dump text.

One pass over the lines, no backtracking. Lines are tokenized exactly as `iptables-restore` does it
(double quotes group words, a backslash inside quotes takes the next character literally, `!` negates the
option after it). Every problem raises `DumpError` with the line and column of the offending text.

A big dump is mostly runs of `:CHAIN` and `-A CHAIN ...` lines that repeat a few shapes; a fast path reads
those runs many lines at a time (see `_Parser.fast_rules`) and hands any line it is not sure of to the full
parser, so that it gives the same model and the same errors.

>>> dump = parse('*filter\\n:INPUT ACCEPT [0:0]\\n-A INPUT -p tcp -m tcp --dport 22 -j ACCEPT\\nCOMMIT\\n')
>>> rule = dump.table("filter").chain("INPUT").rules[0]
>>> rule.match("tcp").option("--dport").values, rule.target.name
(('22',), 'ACCEPT')
"""

from __future__ import annotations

import dataclasses
import gc
import itertools
import operator
import re
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

from iptables_lens.errors import DumpError
from iptables_lens.gcpause import paused_gc
from iptables_lens.iptables import xtables
from iptables_lens.iptables.model import (
    BUILTIN_CHAINS,
    Chain,
    Counters,
    Criterion,
    Dump,
    Match,
    Option,
    Rule,
    Table,
    Target,
)

MAX_LINE_BYTES = 1 << 20
MAX_CHAIN_NAME = 28  # XT_EXTENSION_MAXNAMELEN - 1: what both iptables variants accept

# A token is a run of non-blank, non-quote characters, or such a run followed by a quoted part, which
# ends the token (iptables-restore's add_param_to_argv works the same way).
_TOKEN = re.compile(r'[^ \t"]*"((?:[^"\\]|\\.)*)"|[^ \t"]+')
_UNESCAPE = re.compile(r"\\(.)")
_COUNTERS = re.compile(r"^\[([0-9]{1,20}):([0-9]{1,20})\]$")  # 64-bit counters have at most 20 digits
_OCTET = r"(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])"
_ADDRESS = rf"{_OCTET}(?:\.{_OCTET}){{3}}"
_PORT = r"(?:[1-9][0-9]{0,3}|[1-5][0-9]{4}|6[0-4][0-9]{3}|65[0-4][0-9]{2}|655[0-2][0-9]|6553[0-5])"
# The shapes of most distinct pieces of a kube-proxy dump, which the fast path reads without the scanner
# (see _Parser.learn_piece); the name of the last group says which shape matched.
_SIMPLE_PIECE = re.compile(
    rf"(?P<flag>-[sd]) (?P<address>{_ADDRESS}(?:/(?:3[0-2]|[12]?[0-9]))?)"
    rf"|-j DNAT --to-destination (?P<endpoint>{_ADDRESS}:{_PORT})"
    r"|-j (?P<chain>[A-Za-z0-9_][A-Za-z0-9_.-]*)"
    r'|-m comment --comment "(?P<comment>[^"\\]+)"'
    r"|-m (?P<proto>tcp|udp) (?P<port_option>--[ds]port) (?P<port>[0-9]{1,5})"
)
_USER_CHAIN = re.compile(r":([A-Za-z0-9_][A-Za-z0-9_.-]*) - \[([0-9]{1,20}):([0-9]{1,20})\]$")
_NO_COUNTS = Counters(0, 0)  # shared by the many chains declared with [0:0]
_ALL_BUILTINS = frozenset(name for chains in BUILTIN_CHAINS.values() for name in chains)
# Where the fast path cuts rule lines into pieces: before each criterion, match module and target (with the
# `!` that negates it, so not between that `!` and its option), and before the "\n" that it puts before
# each line's `-A CHAIN` (see _Parser.fast_rules).
_PIECE_BOUNDARY = re.compile(r" (?=-[sdiopfmjg] |! -[sdiopfmjg] |\n)(?<! ! )")
_CHUNK = 256  # lines cut at a time: enough to leave Python's per-call costs behind, few enough for the CPU caches
_LONG_LINE = MAX_LINE_BYTES // 4  # a line this long (in characters) may be over MAX_LINE_BYTES in UTF-8
_HEAD = "\n"  # the code of a line's head; pieces get codes from _FIRST_CODE on
_FIRST_CODE = 0x21
# Targets that rule_problem checks by name; any other target passes or fails its checks as any other does.
_CHECKED_TARGETS = frozenset(xtables.TARGET_TABLES) | xtables.NAT_FORBIDDEN_TARGETS | frozenset(xtables.REQUIRED_OPTIONS)
# What the fast path knows of a piece: its one-character code, and its item (for a line's head, its chain and
# the rule's counters; None for a piece it refuses).
_Entry = tuple[str, "Criterion | Match | Target | tuple[_PendingChain | None, Counters | None] | None"]
# A head with counters, as `iptables-save -c` writes it: counters of up to 20 digits (64 bits), so that a
# longer number is the full parser's to read.
_COUNTED_HEAD = re.compile(r"\n\[([0-9]{1,20}):([0-9]{1,20})\] -A (.*)")
_CODE = operator.itemgetter(0)
_ITEM = operator.itemgetter(1)
_PROMOTE_AFTER = 100_000  # new objects, in the collector's count, after which parse promotes them (see parse)


def _thawed(cls: Any) -> Any:
    """The thawed twin of the frozen dataclass `cls`, to build many of its objects quickly.

    A frozen dataclass's `__init__` sets each field through `object.__setattr__`: a Rule costs ~0.9 us. The
    twin has the same fields and slots but is not frozen, so its `__init__` sets them directly; an object it
    makes then becomes a `cls` by taking that class (`obj.__class__ = cls`), which Python allows between
    classes with the same slots. The twin is never seen outside the parser.
    """
    fields = [(f.name, f.type) for f in dataclasses.fields(cls)]
    twin: Any = dataclasses.make_dataclass(cls.__name__, fields, slots=True, eq=False, repr=False, match_args=False)
    assert twin.__slots__ == cls.__slots__
    return twin


_RuleTwin = _thawed(Rule)
_ChainTwin = _thawed(Chain)
_CriterionTwin = _thawed(Criterion)
_MatchTwin = _thawed(Match)
_TargetTwin = _thawed(Target)
_OptionTwin = _thawed(Option)

# Keys (see _Parser.learn_piece) of pieces the fast path reads without the scanner.
_PLAIN_TARGET_KEY = ("-j", "", False, False)
_COMMENT_KEY = ("-m", "comment", False)
_DNAT_PORT_KEY = ("-j", "DNAT", False, True)
_ADDRESS_KEYS = {"-d": ("-d",), "-s": ("-s",)}
_PORT_KEYS = {"tcp": ("-m", "tcp", False), "udp": ("-m", "udp", False)}


@dataclass(slots=True)
class Token:
    value: str
    column: int  # 1-based
    quoted: bool = False


def tokenize(line: str, source: str = "<string>", lineno: int = 1) -> list[Token]:
    """Split one line into tokens the way iptables-restore does; DumpError on an unterminated quote."""
    tokens: list[Token] = []
    pos = 0
    for m in _TOKEN.finditer(line):
        gap = line[pos : m.start()]
        if '"' in gap:
            break
        pos = m.end()
        text = m.group(0)
        if m.group(1) is not None:
            prefix = text[: text.index('"')]
            inner = m.group(1)
            if "\\" in inner:
                inner = _UNESCAPE.sub(r"\1", inner)
            tokens.append(Token(prefix + inner, m.start() + 1, True))
        else:
            tokens.append(Token(text, m.start() + 1))
    rest = line[pos:]
    if '"' in rest:
        col = pos + rest.index('"') + 1
        raise DumpError(source, lineno, col, "unterminated quote: a '\"' opens text that never closes", line)
    return tokens


@dataclass(slots=True)
class _Loaded:
    """A match module or the target as the scanner loads it, while its options are still coming."""

    name: str
    spec: dict[str, xtables.Validator] | None  # None: a module whose options are not checked
    options: list[Option]
    column: int
    is_target: bool
    goto: bool = False


@dataclass(slots=True)
class _PendingChain:
    name: str
    builtin: bool
    policy: str | None
    counters: Counters | None
    line: int
    # Finished rules: a rule's position is known when it is appended. `-I` shifts the rules after it, and
    # sets `renumber` so that commit gives them their final positions.
    rules: list[Rule] = field(default_factory=list)
    renumber: bool = False


@dataclass(slots=True)
class _PendingTable:
    name: str
    line: int
    comments_before: tuple[str, ...]
    chains: dict[str, _PendingChain] = field(default_factory=dict)


class _Parser:
    def __init__(self, source: str):
        self.source = source
        self.tables: list[Table] = []
        self.seen_tables: set[str] = set()
        self.comments: list[str] = []
        self.table: _PendingTable | None = None
        # Identical options and matches are shared between rules: a big dump repeats `-m tcp` and
        # `--mode random` hundreds of thousands of times.
        self.shared: dict[object, object] = {}
        # The fast path's caches (see fast_rules and learn_piece): the (code, item) of the pieces likely to
        # come back, the code of each key, an example item of each code, and the current table's plan of
        # each shape.
        self.pieces: dict[str, _Entry] = {}
        self.codes_by_key: dict[tuple[object, ...], str] = {}
        self.code_examples: dict[str, Criterion | Match | Target | None] = {}
        self.plans: dict[str, tuple[int, int, bool] | None] = {}

    def error(self, lineno: int, column: int, message: str, text: str) -> DumpError:
        return DumpError(self.source, lineno, column, message, text)

    def share(self, obj):
        return self.shared.setdefault(obj, obj)

    # -- lines ---------------------------------------------------------------------------------------

    # Off in tests that check the fast path against the full parser.
    fast_path = True

    def run(self, lines: list[str]) -> Dump:
        count = len(lines)
        fast = self.fast_path
        i = 0
        while i < count:
            line = lines[i]
            # A dump is mostly runs of chain lines and of rule lines: each run is read in one go.
            if fast and (line[:3] == "-A " or line[:1] == "[") and self.table is not None:
                end = i + 1
                while end < count and ((head := lines[end][:3]) == "-A " or head[:1] == "["):
                    end += 1
                self.fast_rules(lines, i, end)
                i = end
            elif fast and line[:1] == ":" and self.table is not None:
                end = i + 1
                while end < count and lines[end][:1] == ":":
                    end += 1
                self.declare_chains(lines, i, end)
                i = end
            else:
                i += 1
                self.feed_line(i, line)
        return self.finish(count, lines[-1] if lines else "")

    def feed_line(self, lineno: int, line: str) -> None:
        if len(line) > _LONG_LINE and len(line.encode()) > MAX_LINE_BYTES:
            raise self.error(lineno, 1, "line is longer than 1 MiB", line[:80])
        self.feed(lineno, line)

    def feed(self, lineno: int, line: str) -> None:
        if not line or line.isspace():
            return
        first = line[0]
        if first == "#":
            if self.table is None and self.tables and not self.comments and not line.startswith("# Generated by"):
                # After COMMIT and before the next table's header: "# Completed on" closes the last table.
                last = self.tables[-1]
                self.tables[-1] = replace(last, comments_after=last.comments_after + (line,))
            else:
                self.comments.append(line)
        elif first == "*":
            self.start_table(lineno, line)
        elif self.table is None:
            word = line.split()[0]
            raise self.error(
                lineno, len(line) - len(line.lstrip()) + 1,
                f"{word!r} outside a table: expected '*TABLE' (e.g. '*filter') before chains and rules", line,
            )
        elif first == ":":
            self.declare_chain(lineno, line)
        elif line.rstrip() == "COMMIT":
            self.commit(lineno, line)
        else:
            self.rule_line(lineno, line)

    def start_table(self, lineno: int, line: str) -> None:
        if self.table is not None:
            raise self.error(
                lineno, 1, f"table {self.table.name!r} (line {self.table.line}) ends without COMMIT", line
            )
        name = line[1:].strip()
        if name not in BUILTIN_CHAINS:
            raise self.error(
                lineno, 2, f"unknown table {name!r}: expected one of {', '.join(BUILTIN_CHAINS)}", line
            )
        if name in self.seen_tables:
            raise self.error(lineno, 2, f"table {name!r} appears twice in one dump", line)
        self.seen_tables.add(name)
        self.table = _PendingTable(name, lineno, tuple(self.comments))
        self.plans = {}  # a shape's checks depend on the table
        self.comments = []

    def parse_counters(self, token: Token, lineno: int, line: str) -> Counters:
        m = _COUNTERS.match(token.value)
        if not m:
            raise self.error(lineno, token.column, f"expected counters '[PACKETS:BYTES]', got {token.value!r}", line)
        return Counters(int(m.group(1)), int(m.group(2)))

    def check_chain_name(self, token: Token, lineno: int, line: str) -> str:
        name = token.value
        if not name or name[0] in "-!" or token.quoted:
            raise self.error(lineno, token.column, f"invalid chain name {name!r}", line)
        if len(name) > MAX_CHAIN_NAME:
            raise self.error(
                lineno, token.column, f"chain name {name!r} is longer than {MAX_CHAIN_NAME} characters", line
            )
        if name in xtables.KNOWN_TARGETS:
            raise self.error(lineno, token.column, f"chain name {name!r} clashes with the target of that name", line)
        return name

    def add_chain(self, lineno: int, column: int, line: str, chain: _PendingChain) -> None:
        assert self.table is not None
        existing = self.table.chains.get(chain.name)
        if existing is not None:
            raise self.error(
                lineno, column, f"chain {chain.name!r} is declared twice (first on line {existing.line})", line
            )
        self.table.chains[chain.name] = chain

    def declare_chains(self, lines: list[str], start: int, end: int) -> None:
        """The chain lines lines[start:end]: the common `:KUBE-SEP-... - [0:0]` without tokenizing, the others
        by declare_chain."""
        assert self.table is not None
        chains = self.table.chains
        match = _USER_CHAIN.match
        for lineno, line in enumerate(lines[start:end], start + 1):
            m = match(line)
            if m is not None and len(line) <= _LONG_LINE:
                name, packets, bytes_ = m.groups()
                if (name not in chains and name not in _ALL_BUILTINS and len(name) <= MAX_CHAIN_NAME
                        and name not in xtables.KNOWN_TARGETS):
                    counters = _NO_COUNTS if packets == "0" == bytes_ else Counters(int(packets), int(bytes_))
                    chains[name] = _PendingChain(name, False, None, counters, lineno)
                    continue
            self.feed_line(lineno, line)

    def declare_chain(self, lineno: int, line: str) -> None:
        assert self.table is not None
        tokens = tokenize(line[1:], self.source, lineno)
        for t in tokens:
            t.column += 1
        if not tokens:
            raise self.error(lineno, 2, "expected a chain name after ':'", line)
        name_token = tokens[0]
        builtins = BUILTIN_CHAINS[self.table.name]
        name = name_token.value
        builtin = name in builtins
        if not builtin:
            if any(name in chains for chains in BUILTIN_CHAINS.values()):
                raise self.error(
                    lineno, name_token.column,
                    f"{name!r} is a built-in chain of other tables, not of {self.table.name!r} "
                    f"(which has {', '.join(builtins)})", line,
                )
            self.check_chain_name(name_token, lineno, line)
        if len(tokens) < 2:
            raise self.error(lineno, len(line) + 1, f"expected a policy after chain {name!r} (ACCEPT, DROP or -)", line)
        policy_token = tokens[1]
        policy: str | None = policy_token.value
        if builtin:
            if policy not in ("ACCEPT", "DROP", "-"):
                raise self.error(
                    lineno, policy_token.column,
                    f"invalid policy {policy!r} for built-in chain {name!r}: expected ACCEPT or DROP", line,
                )
            if policy == "-":
                policy = None
        elif policy != "-":
            raise self.error(
                lineno, policy_token.column,
                f"user-defined chain {name!r} cannot have a policy: expected '-', got {policy!r}", line,
            )
        else:
            policy = None
        counters: Counters | None = None
        if len(tokens) >= 3:
            counters = self.parse_counters(tokens[2], lineno, line)
        if len(tokens) > 3:
            raise self.error(lineno, tokens[3].column, f"unexpected text after the chain's counters: {tokens[3].value!r}", line)
        existing = self.table.chains.get(name)
        if builtin and existing is not None:
            # Declaring a built-in chain again only sets its policy again; both iptables variants allow it.
            existing.policy, existing.counters = policy, counters
            return
        self.add_chain(lineno, name_token.column, line, _PendingChain(name, builtin, policy, counters, lineno))

    def commit(self, lineno: int, line: str) -> None:
        assert self.table is not None
        pending = self.table
        table_name = pending.name
        # Built-in chains exist even when the text does not declare them.
        for name in BUILTIN_CHAINS[table_name]:
            if name not in pending.chains:
                pending.chains[name] = _PendingChain(name, True, "ACCEPT", Counters(0, 0), 0)
        # The pieces seen in this table are rarely seen in the next: let their memory go before the table's
        # objects are made.
        self.pieces.clear()
        self.shared.clear()
        # Jumps must go to declared user chains and make no loop. A quick look at the chains each chain jumps
        # to comes first; only when it finds a problem do check_jumps and check_loops look rule by rule, to
        # report the first offending rule.
        graph: dict[str, tuple[str, ...]] = {}
        for chain in pending.chains.values():
            if chain.rules:
                jumps = {target.name for rule in chain.rules if (target := rule.target) is not None}
                jumps.difference_update(xtables.KNOWN_TARGETS)
                if jumps:
                    graph[chain.name] = tuple(jumps)  # a tuple takes a quarter of a set's memory
        user_chains = {chain.name for chain in pending.chains.values() if not chain.builtin}
        if not user_chains.issuperset(itertools.chain.from_iterable(graph.values())):
            self.check_jumps(pending)
        if _has_loop(graph):
            self.check_loops(pending)
        chains = []
        # Built-in chains first, in the kernel's order, as iptables-save prints them.
        builtins = BUILTIN_CHAINS[table_name]
        ordered = [pending.chains[name] for name in builtins]
        ordered += [chain for chain in pending.chains.values() if not chain.builtin]
        for chain in ordered:
            rules = chain.rules
            if chain.renumber:
                rules = [r if r.position == n else replace(r, position=n) for n, r in enumerate(rules, 1)]
            # Chain(...), made faster (see _thawed): there are many chains.
            built = _ChainTwin(chain.name, table_name, chain.builtin, chain.policy, chain.counters, chain.line, tuple(rules))
            built.__class__ = Chain
            chains.append(built)
            chain.rules = []  # the tuple replaces the list
        self.tables.append(Table(table_name, pending.line, tuple(chains), pending.comments_before))
        self.table = None

    # -- rules ---------------------------------------------------------------------------------------

    def rule_line(self, lineno: int, line: str) -> None:
        assert self.table is not None
        tokens = tokenize(line, self.source, lineno)
        counters = None
        if tokens and tokens[0].value.startswith("["):
            counters = self.parse_counters(tokens[0], lineno, line)
            tokens = tokens[1:]
        if not tokens:
            raise self.error(lineno, len(line) + 1, "expected a command such as '-A CHAIN' after the counters", line)
        command = tokens[0]
        cmd = command.value
        if cmd in ("-N", "--new-chain", "--new"):
            if len(tokens) != 2:
                col = tokens[2].column if len(tokens) > 2 else len(line) + 1
                raise self.error(lineno, col, "expected exactly one chain name after -N", line)
            name = self.check_chain_name(tokens[1], lineno, line)
            if name in BUILTIN_CHAINS[self.table.name]:
                raise self.error(lineno, tokens[1].column, f"{name!r} is a built-in chain", line)
            self.add_chain(lineno, tokens[1].column, line, _PendingChain(name, False, None, counters, lineno))
            return
        if cmd not in ("-A", "--append", "-I", "--insert"):
            raise self.error(
                lineno, command.column,
                f"expected a rule ('-A CHAIN ...' or '-I CHAIN ...'), a chain (':CHAIN POLICY') or COMMIT, got {cmd!r}",
                line,
            )
        if len(tokens) < 2:
            raise self.error(lineno, len(line) + 1, f"expected a chain name after {cmd}", line)
        chain_token = tokens[1]
        chain = self.chain_for_rule(chain_token.value)
        if chain is None:
            raise self.error(
                lineno, chain_token.column,
                f"rule in chain {chain_token.value!r}, which table {self.table.name!r} does not declare", line,
            )
        rest_start = 2
        insert_at = None
        if cmd in ("-I", "--insert"):
            insert_at = 1
            if len(tokens) > 2 and tokens[2].value.isdigit() and not tokens[2].quoted:
                insert_at = int(tokens[2].value)
                rest_start = 3
                if insert_at < 1 or insert_at > len(chain.rules) + 1:
                    raise self.error(
                        lineno, tokens[2].column,
                        f"cannot insert at position {insert_at}: chain {chain.name!r} has {len(chain.rules)} rules",
                        line,
                    )
        criteria, matches, target = self.scan(tokens, rest_start, lineno, line)
        built_matches = tuple(self.share(Match(m.name, tuple(m.options))) for m in matches)
        built_target = self.share(Target(target.name, target.goto, tuple(target.options))) if target else None
        problem = rule_problem(self.table.name, criteria, built_matches, built_target)
        if problem is not None:
            message, index = problem
            column = matches[index].column if index is not None else target.column if target else 1
            raise self.error(lineno, column, message, line)
        rules = chain.rules
        position = len(rules) + 1 if insert_at is None else insert_at
        rule = Rule(
            self.table.name, chain.name, position, lineno, line, tuple(criteria), built_matches, built_target, counters
        )
        if insert_at is None:
            rules.append(rule)
        else:
            rules.insert(insert_at - 1, rule)
            chain.renumber = True

    def chain_for_rule(self, name: str) -> _PendingChain | None:
        """The chain a rule appends to; a built-in chain exists even when the text does not declare it."""
        assert self.table is not None
        chain = self.table.chains.get(name)
        if chain is None and name in BUILTIN_CHAINS[self.table.name]:
            chain = self.table.chains[name] = _PendingChain(name, True, "ACCEPT", Counters(0, 0), 0)
        return chain

    # -- the fast path for runs of `-A` lines ----------------------------------------------------------

    def fast_rules(self, lines: list[str], start: int, end: int) -> None:
        """Parse the `-A CHAIN ...` lines lines[start:end] (maybe with `[PACKETS:BYTES]` first) from cached pieces.

        A big dump is mostly such lines, and they repeat a few pieces: `-p tcp`, `-m tcp --dport 80`,
        `-j KUBE-MARK-MASQ`. Lines are cut before each `-s/-d/-i/-o/-p/-f/-m/-j/-g` (with its `!`), a chunk at
        a time, so that the cutting and the look-ups run in C rather than once per line in Python. Each
        distinct piece of a chunk is read once (learn_piece: the common shapes directly, any other by the
        full scanner), and gets a one-character code for what the rule checks need to know of it; the
        string of a line's codes, its shape, is checked once per table (plan). A line with a refused piece
        or shape, or in an undeclared chain, goes to the full parser, which reports any problem with its
        exact column.
        """
        assert self.table is not None
        table = self.table.name
        find_chain = self.table.chains.get
        cache, plans = self.pieces, self.plans
        for first in range(start, end, _CHUNK):
            chunk = lines[first : min(first + _CHUNK, end)]
            if max(map(len, chunk)) > _LONG_LINE:
                # Rare: the full parser checks the length of each line in turn.
                for lineno, line in enumerate(chunk, first + 1):
                    self.feed_line(lineno, line)
                continue
            # " \n" before each line makes its `[P:B] -A CHAIN` head a piece of its own, starting with "\n".
            text = " \n" + " \n".join(chunk)
            if "\\" in text or "\t" in text:
                # The full parser reads backslash escapes and tabs: such a line is cut as a bare `-A`, a head
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
                        entries[piece] = (_HEAD, (None, None))  # the full parser reads the line
                else:
                    entries[piece] = self.learn_piece(piece)
            looked_up = list(map(entries.__getitem__, pieces))
            del pieces, known, new, entries
            # One shape per line (the first is that of the empty text before the first head), and one item
            # per piece.
            shapes = "".join(map(_CODE, looked_up)).split(_HEAD)
            for shape in set(shapes).difference(plans):
                plans[shape] = self.plan(shape)
            parts = tuple(map(_ITEM, looked_up))
            del looked_up
            at = 1  # where the line's head is in parts: (its chain, its counters), followed by its pieces' items
            linenos = range(first + 1, first + 1 + len(chunk))
            for lineno, line, shape in zip(linenos, chunk, itertools.islice(shapes, 1, None), strict=True):
                plan = plans[shape]
                chain, counters = parts[at]
                if plan is None or chain is None:
                    self.rule_line(lineno, line)
                else:
                    matches_at, target_at, has_target = plan
                    rules = chain.rules
                    # Rule(...), made faster (see _thawed).
                    rule = _RuleTwin(
                        table, chain.name, len(rules) + 1, lineno, line, parts[at + 1 : at + matches_at],
                        parts[at + matches_at : at + target_at], parts[at + target_at] if has_target else None,
                        counters,
                    )
                    rule.__class__ = Rule
                    rules.append(rule)
                at += len(shape) + 1

    def learn_piece(self, piece: str) -> _Entry:
        """Parse a piece not seen in this chunk (see fast_rules); its (code, item).

        The big cache keeps all but the simple shapes read here without the scanner, of which kube-proxy
        writes most only once (an endpoint's address, its DNAT, a jump to its chain): re-reading one in a
        later chunk costs less than keeping them all. Comments are kept: one Service's name comes back
        in many rules."""
        key: tuple[object, ...] | None = None
        item: Criterion | Match | Target | Literal[False] = False
        # The shapes of most distinct pieces of a kube-proxy dump, read without tokenizing: they build what
        # the scanner would (with the twins of the model's classes, see _thawed), and their keys are known.
        simple = _SIMPLE_PIECE.fullmatch(piece)
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
            elif shape == "chain" and simple["chain"] not in _CHECKED_TARGETS:
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
        # Kept: comments, and whatever the scanner reads.
        keep = key is None or key is _COMMENT_KEY
        if key is None:
            item = self.scan_piece(piece)
            # What the rule checks (plan, and rule_problem through it) look at, and nothing else: rules of
            # the same shape pass or fail them alike.
            if item is False:
                key = ("refused",)
            elif type(item) is Criterion:
                proto = None if item.negated else item.value.lower()
                key = (item.flag, proto) if item.flag == "-p" else (item.flag,)
            elif type(item) is Match:
                key = ("-m", item.module, _lacks_required(item.module, item.options))
            else:
                assert type(item) is Target
                name = item.name if item.name in _CHECKED_TARGETS else ""
                key = ("-j", name, _lacks_required(item.name, item.options), _rewrites_ports(item))
        code = self.codes_by_key.get(key)
        if code is None:
            code = self.codes_by_key[key] = chr(_FIRST_CODE + len(self.codes_by_key))
            self.code_examples[code] = item or None
        entry = (code, item or None)
        if keep:
            self.pieces[piece] = entry
        return entry

    def plan(self, shape: str) -> tuple[int, int, bool] | None:
        """Where the criteria, matches and target of a line of this shape are among its parts (offsets from its
        head: matches start, target or end, whether there is a target), or None: the full parser reads it.

        The fast path takes the order iptables-save prints, criteria, matches, then at most one target,
        each criterion at most once, and nothing the kernel would refuse in this table."""
        assert self.table is not None
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
        if rule_problem(self.table.name, criteria, tuple(matches), target) is not None:
            return None
        return 1 + len(criteria), 1 + len(criteria) + len(matches), target is not None

    def scan_piece(self, piece: str) -> Criterion | Match | Target | Literal[False]:
        """One Criterion, Match or Target parsed from a piece of a rule, or False if it is not one clean piece."""
        if piece.count('"') % 2:
            return False
        try:
            tokens = tokenize(piece)
            criteria, matches, target = self.scan(tokens, 0, 0, piece)
        except DumpError:
            return False
        if len(criteria) + len(matches) + (target is not None) != 1:
            return False
        if criteria:
            return criteria[0]
        if matches:
            m = matches[0]
            return self.share(Match(m.name, tuple(m.options)))
        assert target is not None
        return self.share(Target(target.name, target.goto, tuple(target.options)))

    def scan(
        self, tokens: list[Token], start: int, lineno: int, line: str
    ) -> tuple[list[Criterion], list[_Loaded], _Loaded | None]:
        """Walk a rule's options as iptables' getopt loop does: criteria, match modules, the target."""
        criteria: list[Criterion] = []
        matches: list[_Loaded] = []
        target: _Loaded | None = None
        owners: list[_Loaded] = []
        i = start
        n = len(tokens)
        share = self.share
        while i < n:
            tok = tokens[i]
            negated = False
            if tok.value == "!" and not tok.quoted:
                negated = True
                i += 1
                if i == n:
                    raise self.error(lineno, tok.column, "'!' at the end of the rule: expected an option after it", line)
                tok = tokens[i]
            value = tok.value
            if tok.quoted or not value.startswith("-") or len(value) < 2:
                raise self.error(lineno, tok.column, f"unexpected argument {value!r}: expected an option", line)
            flag = xtables.CRITERION_FLAGS.get(value)
            if flag is not None:
                if any(c.flag == flag for c in criteria):
                    raise self.error(lineno, tok.column, f"{flag} given twice in one rule", line)
                if flag == "-f":
                    criteria.append(share(Criterion("-f", "", negated)))
                    i += 1
                    continue
                if i + 1 >= n:
                    raise self.error(lineno, len(line) + 1, f"option {value} needs an argument", line)
                arg = tokens[i + 1]
                if arg.value == "!" and not arg.quoted:
                    raise self.error(
                        lineno, arg.column, f"'!' after {value} is no longer accepted: write '! {value} ...'", line
                    )
                problem = xtables.check_criterion(flag, arg.value)
                if problem:
                    raise self.error(lineno, arg.column, f"{value}: {problem}", line)
                criteria.append(share(Criterion(flag, arg.value, negated)))  # type: ignore[arg-type]
                i += 2
                continue
            if value in ("-m", "--match", "-j", "--jump", "-g", "--goto"):
                if negated:
                    raise self.error(lineno, tokens[i - 1].column, f"'!' cannot negate {value}", line)
                if i + 1 >= n:
                    raise self.error(lineno, len(line) + 1, f"option {value} needs an argument", line)
                name_token = tokens[i + 1]
                name = name_token.value
                if value in ("-m", "--match"):
                    if name not in xtables.KNOWN_MATCHES:
                        raise self.error(lineno, name_token.column, f"unknown match module {name!r}", line)
                    owner = _Loaded(name, xtables.MATCH_OPTIONS.get(name), [], name_token.column, False)
                    matches.append(owner)
                else:
                    if target is not None:
                        raise self.error(lineno, tok.column, "a rule has at most one target (-j or -g)", line)
                    if not name or name.startswith("-"):
                        raise self.error(lineno, name_token.column, f"expected a target name after {value}, got {name!r}", line)
                    goto = value in ("-g", "--goto")
                    if goto and name in xtables.KNOWN_TARGETS:
                        raise self.error(lineno, name_token.column, f"-g needs a chain, not the target {name!r}", line)
                    if name in xtables.KNOWN_TARGETS:
                        spec = xtables.TARGET_OPTIONS.get(name)
                    else:
                        spec = {}  # a jump to a user chain takes no options
                    owner = target = _Loaded(name, spec, [], name_token.column, True, goto)
                owners.append(owner)
                i += 2
                continue
            # An option of a match module or of the target: iptables hands it to the most recently loaded
            # extension that knows it, so `--dport` may follow another module.
            holder: _Loaded | None = None
            for candidate in reversed(owners):
                spec = candidate.spec
                if spec is None:
                    if candidate is owners[-1]:
                        holder = candidate
                        break
                    continue
                if value in spec:
                    holder = candidate
                    break
            if holder is None:
                where = f" for {', '.join(o.name for o in owners)}" if owners else " (no match module or target loaded)"
                raise self.error(lineno, tok.column, f"unknown option {value}{where}", line)
            validator = holder.spec[value] if holder.spec is not None else None
            wanted = xtables.arity(validator) if validator is not None else None
            if wanted is not None:
                # getopt hands an option exactly its arguments, even one that starts with a dash.
                j = i + 1 + wanted
                if j > n:
                    raise self.error(lineno, len(line) + 1, f"option {value} needs {wanted} argument(s)", line)
            else:
                j = i + 1
                while j < n:
                    t = tokens[j]
                    if not t.quoted and (t.value == "!" or (t.value.startswith("-") and len(t.value) > 1)):
                        break
                    j += 1
            values = tuple(t.value for t in tokens[i + 1 : j])
            if validator is not None:
                problem = validator(values)
                if problem:
                    column = tokens[i + 1].column if j > i + 1 else tok.column
                    raise self.error(lineno, column, f"{value}: {problem}", line)
            if negated and (holder.is_target or value in _NOT_NEGATABLE):
                raise self.error(lineno, tokens[i - 1].column, f"option {value} cannot be negated with '!'", line)
            holder.options.append(share(Option(value, values, negated)))
            i = j
        return criteria, matches, target

    def check_jumps(self, pending: _PendingTable) -> None:
        """Report the first rule that jumps to a chain the table does not declare, or to a built-in chain."""
        for chain in pending.chains.values():
            for r in chain.rules:
                target = r.target
                if target is not None and target.name not in xtables.KNOWN_TARGETS:
                    jumped = pending.chains.get(target.name)
                    if jumped is None:
                        verb = "goto" if target.goto else "jump"
                        raise self.error(
                            r.line, _target_column(r.text),
                            f"{verb} to chain {target.name!r}, which table {pending.name!r} does not declare", r.text,
                        )
                    if jumped.builtin:
                        raise self.error(
                            r.line, _target_column(r.text), f"cannot jump to built-in chain {target.name!r}", r.text
                        )

    def check_loops(self, pending: _PendingTable) -> None:
        """The kernel refuses a table whose jumps form a loop: find one and report the rule that closes it."""
        chains = pending.chains
        state: dict[str, int] = {}  # 1: on the current path, 2: done
        for root in chains:
            if root in state:
                continue
            state[root] = 1
            # Depth-first, with an explicit stack of (chain, index of the next rule to look at).
            stack = [(root, 0)]
            while stack:
                name, index = stack.pop()
                rules = chains[name].rules
                while index < len(rules):
                    rule = rules[index]
                    index += 1
                    target = rule.target
                    if target is None or target.name not in chains:
                        continue
                    seen = state.get(target.name)
                    if seen == 1:
                        raise self.error(
                            rule.line, _target_column(rule.text),
                            f"jump to {target.name!r} makes a loop: {target.name!r} leads back to {name!r}", rule.text,
                        )
                    if seen is None:
                        state[target.name] = 1
                        stack.append((name, index))
                        stack.append((target.name, 0))
                        break
                else:
                    state[name] = 2

    def finish(self, lineno: int, last_line: str) -> Dump:
        if self.table is not None:
            raise self.error(
                lineno, len(last_line) + 1,
                f"table {self.table.name!r} (line {self.table.line}) is never committed: expected COMMIT", last_line,
            )
        if not self.tables:
            raise self.error(max(lineno, 1), 1, "no table in the input: expected iptables-save output", last_line)
        return Dump(self.source, tuple(self.tables), tuple(self.comments))


def rule_problem(
    table: str, criteria: list[Criterion], matches: tuple[Match, ...], target: Target | None
) -> tuple[str, int | None] | None:
    """What the kernel would refuse in a rule as a whole, as (message, index of the match to point at, or
    None for the target); None if nothing."""
    proto = next((c for c in criteria if c.flag == "-p"), None)
    proto_name = None if proto is None or proto.negated else proto.value.lower()
    for index, match in enumerate(matches):
        needed = xtables.MODULE_PROTOCOLS.get(match.module)
        if needed is not None and proto_name not in needed:
            return f"match module {match.module!r} needs '-p {'/'.join(sorted(needed))}' on the same rule", index
        if _lacks_required(match.module, match.options):
            return f"{match.module} needs {' or '.join(xtables.REQUIRED_OPTIONS[match.module])}", index
    if target is None:
        return None
    name = target.name
    allowed = xtables.TARGET_TABLES.get(name)
    if allowed and table not in allowed:
        return f"target {name} is only valid in the {'/'.join(sorted(allowed))} table, not in {table!r}", None
    if table == "nat" and name in xtables.NAT_FORBIDDEN_TARGETS:
        return f"the nat table does not filter: {name} is not allowed there (use filter)", None
    if _lacks_required(name, target.options):
        return f"{name} needs {' or '.join(xtables.REQUIRED_OPTIONS[name])}", None
    if _rewrites_ports(target) and proto_name not in xtables.PORT_PROTOCOLS:
        return f"{name} with a port needs '-p tcp', udp, sctp or dccp on the same rule", None
    return None


def _lacks_required(name: str, options: tuple[Option, ...]) -> bool:
    """Whether a match module or target misses all of the options of which it needs one."""
    required = xtables.REQUIRED_OPTIONS.get(name)
    if not required:
        return False
    return not any(o.name in required for o in options)


def _rewrites_ports(target: Target) -> bool:
    return any(
        (o.name in ("--to-destination", "--to-source") and ":" in o.value) or o.name == "--to-ports"
        for o in target.options
    )


def _has_loop(graph: dict[str, tuple[str, ...]]) -> bool:
    """Whether the jumps between chains (chain -> the user chains it jumps to; chains that jump nowhere are
    left out) form a loop: a depth-first walk that meets a chain on its own path."""
    # A chain that jumps only to chains that jump nowhere is on no loop. Dropping those, round after round,
    # leaves little or nothing to walk (a kube-proxy table is five jumps deep); the rounds are capped, since
    # a long line of chains would need as many rounds as it has chains.
    for _ in range(8):
        nodes = set(graph)
        kept = {name: jumps for name, jumps in graph.items() if not nodes.isdisjoint(jumps)}
        if len(kept) == len(graph):
            break
        graph = kept
    done: set[str] = set()
    for root in graph:
        if root in done:
            continue
        path = {root}
        stack = [(root, iter(graph[root]))]
        while stack:
            name, successors = stack[-1]
            for successor in successors:
                if successor in path:
                    return True
                if successor not in done and successor in graph:
                    path.add(successor)
                    stack.append((successor, iter(graph[successor])))
                    break
            else:
                stack.pop()
                path.discard(name)
                done.add(name)
    return False


def _target_column(line: str) -> int:
    """Column of the target name in a rule line (found again only when an error needs it)."""
    tokens = tokenize(line)
    for index in range(len(tokens) - 2, -1, -1):
        if tokens[index].value in ("-j", "--jump", "-g", "--goto") and not tokens[index].quoted:
            return tokens[index + 1].column
    return 1


_NOT_NEGATABLE = frozenset({"--comment", "--mode", "--name", "--seconds", "--reap", "--rsource", "--rdest",
                            "--limit-burst", "--limit-iface-in", "--limit-iface-out"})


def _decode(data: bytes, source: str) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        line_start = data.rfind(b"\n", 0, exc.start) + 1
        column = len(data[line_start : exc.start].decode("utf-8", "replace")) + 1
        line_end = data.find(b"\n", exc.start)
        text = data[line_start : None if line_end < 0 else line_end].decode("utf-8", "replace")
        raise DumpError(
            source, line, column, f"byte 0x{data[exc.start]:02x} is not valid UTF-8: dumps are UTF-8 text", text
        ) from None


def parse(text: str | bytes, source: str = "<string>") -> Dump:
    """Parse iptables-save (or iptables-restore) text into a `Dump`; `DumpError` on the first problem."""
    if isinstance(text, bytes):
        text = _decode(text, source)
    if not text or text.isspace():
        raise DumpError(source, 1, 1, "empty input: expected iptables-save output", "")
    nul = text.find("\0")
    if nul >= 0:
        nul_line = text.count("\n", 0, nul) + 1
        start = text.rfind("\n", 0, nul) + 1
        end = text.find("\n", nul)
        shown = text[start : None if end < 0 else end].replace("\0", "\\0")
        raise DumpError(source, nul_line, nul - start + 1, "NUL byte in the input: dumps are text", shown)
    lines = text.split("\n")
    # The rules keep their lines; the whole text is not needed any more. (parse_file passes the text it read
    # to no one else, so this frees it.)
    del text
    if lines and lines[-1] == "":
        lines.pop()
    # The model is acyclic, so the cycle collector has nothing to find; left on, it rescans the growing
    # heap again and again while a big dump is read, which costs about a third of the parse.
    with paused_gc():
        dump = _Parser(source).run(lines)
        # Resumed as it is, the collector would walk all of a big dump's new objects at its next run, and again
        # at the one after (~0.3 s each for 10,000 Services), to learn what they already say: they live as
        # long as the dump. Freezing and unfreezing puts every tracked object in the oldest generation without
        # walking any. Other objects moved there are still collected, at the next full collection; that delay
        # is only worth it after a big dump, when the new objects are nearly all the dump's.
        if gc.get_count()[0] > _PROMOTE_AFTER:
            gc.freeze()
            gc.unfreeze()
    return dump


def parse_file(path: str | Path, source: str | None = None) -> Dump:
    """Read and parse a dump file; `-` reads standard input. OSError is turned into a DumpError."""
    name = source or str(path)
    # The bytes are handed over, not kept here: parse frees them once decoded, and the text once split.
    return parse(_read(path, name), "<stdin>" if str(path) == "-" and source is None else name)


def _read(path: str | Path, name: str) -> bytes:
    import sys

    try:
        return sys.stdin.buffer.read() if str(path) == "-" else Path(path).read_bytes()
    except OSError as exc:
        raise DumpError(name, 0, 0, f"cannot read: {exc.strerror or exc}") from None
