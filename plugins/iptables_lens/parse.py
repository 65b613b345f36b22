"""iptables-save text -> the dump model. The only code that reads dump text.

One pass over the lines, no backtracking. Lines are tokenized exactly as `iptables-restore` does it
(double quotes group words, a backslash inside quotes takes the next character literally, `!` negates the
option after it). Every problem raises `DumpError` with the line and column of the offending text.

>>> dump = parse('*filter\\n:INPUT ACCEPT [0:0]\\n-A INPUT -p tcp -m tcp --dport 22 -j ACCEPT\\nCOMMIT\\n')
>>> rule = dump.table("filter").chain("INPUT").rules[0]
>>> rule.match("tcp").option("--dport").values, rule.target.name
(('22',), 'ACCEPT')
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Literal

from . import xtables
from .errors import DumpError
from .gcpause import paused_gc
from .model import BUILTIN_CHAINS, Chain, Counters, Criterion, Dump, Match, Option, Rule, Table, Target

MAX_LINE_BYTES = 1 << 20
MAX_CHAIN_NAME = 28  # XT_EXTENSION_MAXNAMELEN - 1: what both iptables variants accept

# A token is a run of non-blank, non-quote characters, or such a run followed by a quoted part, which
# ends the token (iptables-restore's add_param_to_argv works the same way).
_TOKEN = re.compile(r'[^ \t"]*"((?:[^"\\]|\\.)*)"|[^ \t"]+')
_UNESCAPE = re.compile(r"\\(.)")
_COUNTERS = re.compile(r"^\[(\d+):(\d+)\]$")
_OCTET = r"(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])"
_SIMPLE_ADDRESS = re.compile(rf"{_OCTET}(?:\.{_OCTET}){{3}}(?:/(?:3[0-2]|[12]?[0-9]))?$")
_SIMPLE_ENDPOINT = re.compile(rf"{_OCTET}(?:\.{_OCTET}){{3}}:(?:[1-9][0-9]{{0,3}}|[1-5][0-9]{{4}}|6[0-4][0-9]{{3}}|65[0-4][0-9]{{2}}|655[0-2][0-9]|6553[0-5])$")
_SIMPLE_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]*$")
_USER_CHAIN = re.compile(r":([A-Za-z0-9_][A-Za-z0-9_.-]*) - \[([0-9]+):([0-9]+)\]$")
_ALL_BUILTINS = frozenset(name for chains in BUILTIN_CHAINS.values() for name in chains)
# Where a canonical rule line is cut into pieces: before each criterion, match module and target.
_PIECE_BOUNDARY = re.compile(r" (?=(?:! )?-[sdiopfmjg] )")


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
class _PendingRule:
    line: int
    text: str
    criteria: tuple[Criterion, ...]
    matches: tuple[Match, ...]
    target: Target | None
    counters: Counters | None


@dataclass(slots=True)
class _PendingChain:
    name: str
    builtin: bool
    policy: str | None
    counters: Counters | None
    line: int
    rules: list[_PendingRule] = field(default_factory=list)


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
        # Rule pieces already parsed (see fast_rule): text -> Criterion, Match, Target, or False.
        self.pieces: dict[str, Criterion | Match | Target | Literal[False]] = {}

    def error(self, lineno: int, column: int, message: str, text: str) -> DumpError:
        return DumpError(self.source, lineno, column, message, text)

    def share(self, obj):
        return self.shared.setdefault(obj, obj)

    # -- lines ---------------------------------------------------------------------------------------

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

    def declare_chain(self, lineno: int, line: str) -> None:
        assert self.table is not None
        m = _USER_CHAIN.match(line)
        if m and m.group(1) not in self.table.chains and m.group(1) not in _ALL_BUILTINS:
            # The common case, `:KUBE-SEP-... - [0:0]`, without tokenizing.
            name = m.group(1)
            if len(name) <= MAX_CHAIN_NAME and name not in xtables.KNOWN_TARGETS:
                self.table.chains[name] = _PendingChain(
                    name, False, None, Counters(int(m.group(2)), int(m.group(3))), lineno
                )
                return
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
        chains = []
        for chain in pending.chains.values():
            for r in chain.rules:
                target = r.target
                if target is not None and target.name not in xtables.KNOWN_TARGETS:
                    jumped = pending.chains.get(target.name)
                    if jumped is None:
                        verb = "goto" if target.goto else "jump"
                        raise self.error(
                            r.line, _target_column(r.text),
                            f"{verb} to chain {target.name!r}, which table {table_name!r} does not declare", r.text,
                        )
                    if jumped.builtin:
                        raise self.error(
                            r.line, _target_column(r.text), f"cannot jump to built-in chain {target.name!r}", r.text
                        )
        self.check_loops(pending)
        # Built-in chains first, in the kernel's order, as iptables-save prints them.
        builtins = BUILTIN_CHAINS[table_name]
        ordered = [pending.chains[name] for name in builtins]
        ordered += [chain for chain in pending.chains.values() if not chain.builtin]
        for chain in ordered:
            rules = []
            for position, r in enumerate(chain.rules, 1):
                rules.append(Rule(
                    table_name, chain.name, position, r.line, r.text, r.criteria, r.matches, r.target, r.counters
                ))
            chains.append(Chain(chain.name, table_name, chain.builtin, chain.policy, chain.counters, chain.line, tuple(rules)))
        self.tables.append(Table(table_name, pending.line, tuple(chains), pending.comments_before))
        self.table = None

    # -- rules ---------------------------------------------------------------------------------------

    def rule_line(self, lineno: int, line: str) -> None:
        assert self.table is not None
        if line.startswith("-A ") and "\\" not in line and "\t" not in line and self.fast_rule(lineno, line):
            return
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
        rule = _PendingRule(lineno, line, tuple(criteria), built_matches, built_target, counters)
        if insert_at is None:
            chain.rules.append(rule)
        else:
            chain.rules.insert(insert_at - 1, rule)

    def chain_for_rule(self, name: str) -> _PendingChain | None:
        """The chain a rule appends to; a built-in chain exists even when the text does not declare it."""
        assert self.table is not None
        chain = self.table.chains.get(name)
        if chain is None and name in BUILTIN_CHAINS[self.table.name]:
            chain = self.table.chains[name] = _PendingChain(name, True, "ACCEPT", Counters(0, 0), 0)
        return chain

    def fast_rule(self, lineno: int, line: str) -> bool:
        """Parse a canonical `-A CHAIN ...` line from cached pieces; False means "use the full parser".

        The line is cut before each `-s/-d/-i/-o/-p/-f/-m/-j/-g` (with its `!`), and each piece is parsed once
        by the full scanner and remembered: a big dump repeats `-p tcp`, `-m tcp --dport 80` and
        `-j KUBE-MARK-MASQ` thousands of times. Any piece the scanner refuses, or a rule with a problem,
        goes back to the full parser, which reports it with its exact column.
        """
        assert self.table is not None
        head, _, rest = line[3:].partition(" ")
        chain = self.table.chains.get(head)
        if chain is None:
            return False
        criteria: list[Criterion] = []
        matches: list[Match] = []
        target: Target | None = None
        if rest:
            pieces = self.pieces
            for piece in _PIECE_BOUNDARY.split(rest):
                item = pieces.get(piece)
                if item is None:
                    item = pieces[piece] = self.scan_piece(piece)
                if item is False:
                    return False
                if type(item) is Criterion:
                    criteria.append(item)
                elif type(item) is Match:
                    matches.append(item)
                elif target is None:
                    target = item  # type: ignore[assignment]
                else:
                    return False
            if len(criteria) > 1 and len({c.flag for c in criteria}) != len(criteria):
                return False
        built_matches = tuple(matches)
        if rule_problem(self.table.name, criteria, built_matches, target) is not None:
            return False
        chain.rules.append(_PendingRule(lineno, line, tuple(criteria), built_matches, target, None))
        return True

    def scan_piece(self, piece: str) -> Criterion | Match | Target | Literal[False]:
        """One Criterion, Match or Target parsed from a piece of a rule, or False if it is not one clean piece."""
        if piece.count('"') % 2:
            return False
        # The three shapes that make most unique pieces of a kube-proxy dump, read without tokenizing.
        kind = piece[:3]
        if kind in ("-d ", "-s ") and _SIMPLE_ADDRESS.match(piece, 3):
            return Criterion(piece[:2], piece[3:], False)  # type: ignore[arg-type]
        if kind == "-j " and _SIMPLE_NAME.match(piece, 3):
            name = piece[3:]
            if name not in xtables.REQUIRED_OPTIONS:
                return Target(name)
        elif piece.startswith('-m comment --comment "') and piece.endswith('"') and len(piece) > 23:
            text = piece[22:-1]
            if '"' not in text:
                return Match("comment", (Option("--comment", (text,)),))
        elif piece.startswith("-j DNAT --to-destination ") and _SIMPLE_ENDPOINT.match(piece, 25):
            return Target("DNAT", False, (Option("--to-destination", (piece[25:],)),))
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
        required = xtables.REQUIRED_OPTIONS.get(match.module)
        if required and not any(o.name in required for o in match.options):
            return f"{match.module} needs {' or '.join(required)}", index
    if target is None:
        return None
    name = target.name
    allowed = xtables.TARGET_TABLES.get(name)
    if allowed and table not in allowed:
        return f"target {name} is only valid in the {'/'.join(sorted(allowed))} table, not in {table!r}", None
    if table == "nat" and name in xtables.NAT_FORBIDDEN_TARGETS:
        return f"the nat table does not filter: {name} is not allowed there (use filter)", None
    required = xtables.REQUIRED_OPTIONS.get(name)
    if required and not any(o.name in required for o in target.options):
        return f"{name} needs {' or '.join(required)}", None
    rewrites_ports = any(
        (o.name in ("--to-destination", "--to-source") and ":" in o.value) or o.name == "--to-ports"
        for o in target.options
    )
    if rewrites_ports and proto_name not in xtables.PORT_PROTOCOLS:
        return f"{name} with a port needs '-p tcp', udp, sctp or dccp on the same rule", None
    return None


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
    if not text.strip():
        raise DumpError(source, 1, 1, "empty input: expected iptables-save output", "")
    nul = text.find("\0")
    if nul >= 0:
        nul_line = text.count("\n", 0, nul) + 1
        start = text.rfind("\n", 0, nul) + 1
        end = text.find("\n", nul)
        shown = text[start : None if end < 0 else end].replace("\0", "\\0")
        raise DumpError(source, nul_line, nul - start + 1, "NUL byte in the input: dumps are text", shown)
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    parser = _Parser(source)
    lineno = 0
    line = ""
    # The model is acyclic, so the cycle collector has nothing to find; left on, it rescans the growing
    # heap again and again while a big dump is read, which costs about a third of the parse.
    with paused_gc():
        for lineno, line in enumerate(lines, 1):
            if len(line) > MAX_LINE_BYTES // 4 and len(line.encode()) > MAX_LINE_BYTES:
                raise DumpError(source, lineno, 1, "line is longer than 1 MiB", line[:80])
            parser.feed(lineno, line)
        return parser.finish(lineno, line)


def parse_file(path: str | Path, source: str | None = None) -> Dump:
    """Read and parse a dump file; `-` reads standard input. OSError is turned into a DumpError."""
    import sys

    name = source or str(path)
    try:
        data = sys.stdin.buffer.read() if str(path) == "-" else Path(path).read_bytes()
    except OSError as exc:
        raise DumpError(name, 0, 0, f"cannot read: {exc.strerror or exc}") from None
    return parse(data, "<stdin>" if str(path) == "-" and source is None else name)
