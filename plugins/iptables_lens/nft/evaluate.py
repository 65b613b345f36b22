"""nftables' rule evaluation for the tracer, and an nft ruleset's base chains as the walk's base chains.

Every base chain of a table of family ip, ip6 or inet at one of the five hooks of the IP path is registered
at its own priority (`filter-prerouting-pre-dnat` at dstnat - 10 runs before `nat-prerouting` at dstnat), so
the dialect-free walk (`trace.walk`) runs it beside iptables-nft's tables of the same ruleset. A table of the
other family lets the packet by. Tables of the arp, bridge and netdev families, and chains at the ingress and
egress hooks, are not on the routed path the walk follows and are not registered.

Within a chain the rules are tried in order and a rule's statements run left to right: a match that fails ends
the rule (nft's NFT_BREAK) and the next rule is tried; a verdict (`accept`, `drop`, `jump`, `goto`, `return`,
`continue`, or one a verdict map chooses) ends the rule; a nat statement translates and accepts; `reject` ends
the packet; `meta mark set`, `ct mark set`, `update @set` and `notrack` change the branch and go on; counters,
`log` and comments change nothing. `numgen random mod N` forks the branch N ways, each with probability
exactly 1/N (an `inc` numgen too: over many connections each value has its turn once in N). What the tracer
cannot decide (`limit`, `quota`, `ct count`, a meter, a `jhash`, the socket's owner) ends the branch as
UNDECIDED with the reason; what it does not model (`queue`, `dup`, `fwd`, `tproxy`, `synproxy`, a flowtable, a
chain bound to a rule) ends it as UNSUPPORTED.

A rule that matched is one step of the path. `Step.table` is "FAMILY NAME" (`ip kube-proxy`), `Step.rule` the
rule's position in its chain, and `Step.action` nft's words for what it did: the changes it made, then its
verdict, joined by "; " ("mark 0x0 -> 0x4000", "jump mark-for-masquerade", "goto service-…" also where a
verdict map chose it, "dnat to 10.244.1.2:80", "masquerade to 172.20.0.2 (fully-random)", "reject with icmp
port-unreachable", "matched (goes on)"). `verdict_of_action` reads the verdict back, as the kernel's trace
names it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from fractions import Fraction
from functools import partial
from typing import Any, Literal

from iptables_lens.nft import model as m
from iptables_lens.nft import selectors as sel
from iptables_lens.nft.evaluate_values import ABSENT, Reading, SetIndex, compile_match, constant, holds, read
from iptables_lens.nft.evaluate_values import elements_of as _elements_of
from iptables_lens.trace.context import LOOPBACK_ADDRESS, NodeContext
from iptables_lens.trace.decide import Undecided
from iptables_lens.trace.packet import Hook, endpoint_text
from iptables_lens.trace.walk import BaseChain, Branches, ChainKind, Ending, Policy, State

HOOKS: dict[str, Hook] = {"prerouting": "PREROUTING", "input": "INPUT", "forward": "FORWARD", "output": "OUTPUT",
                          "postrouting": "POSTROUTING"}
FAMILIES_SEEN: dict[str, frozenset[int]] = {"ip": frozenset({4}), "ip6": frozenset({6}), "inet": frozenset({4, 6})}
_UNDECIDED_STATEMENTS = {m.Limit: "a rate limit", m.Quota: "a quota", m.ConnLimit: "a connection count",
                         m.Meter: "a meter"}
_UNSUPPORTED_STATEMENTS = {m.Queue: "queue", m.Dup: "dup", m.Fwd: "fwd", m.Tproxy: "tproxy",
                           m.Synproxy: "synproxy", m.FlowOffload: "flow add", m.BoundChain: "a chain bound to a rule"}

ChainEnding = Ending | Literal["RETURN"]
_ENDINGS: dict[str, ChainEnding] = {"accept": "ACCEPT", "drop": "DROP", "return": "RETURN"}
# How a rule leaves the chain walk: ("next",) tries the next rule; (verdict word, target) for a verdict;
# ("end", Ending) ends the branch there.
RuleResult = tuple[str, Any]
_NEXT: RuleResult = ("next", None)


def base_chains(ruleset: m.Ruleset) -> tuple[BaseChain, ...]:
    """The base chains of the ruleset's ip, ip6 and inet tables at the IP path's hooks, in listing order."""
    return RulesetEvaluator(ruleset).base_chains()


def verdict_of_action(action: str) -> str:
    """The verdict a rule's step ends with, in the words of nft's trace (`jump X`, `goto X`, `accept`, `drop`,
    `return`, `continue`): a nat statement accepts, `reject` drops after answering."""
    last = action.rsplit("; ", 1)[-1]
    word = last.split(" ", 1)[0]
    if word in ("jump", "goto", "accept", "drop", "return"):
        return last
    if word in ("dnat", "snat", "masquerade", "redirect"):
        return "accept"
    if word == "reject":
        return "drop"
    return "continue"


@dataclass
class TableView:
    """One table, looked up by name: its chains, and an index of each named set the first time it is used."""

    table: m.Table
    name: str = field(init=False)
    families: frozenset[int] = field(init=False)
    chains: dict[str, m.Chain] = field(init=False)
    _sets: dict[str, m.Set] = field(init=False)
    _indexes: dict[str, SetIndex] = field(init=False, default_factory=dict)

    def __post_init__(self) -> None:
        self.name = f"{self.table.family} {self.table.name}"
        self.families = FAMILIES_SEEN.get(self.table.family, frozenset())
        self.chains = {c.name: c for c in self.table.chains}
        self._sets = {s.name: s for s in self.table.sets}

    def set_index(self, name: str) -> SetIndex:
        index = self._indexes.get(name)
        if index is None:
            declared = self._sets.get(name)
            if declared is None:
                raise Undecided(f"@{name} is not a set of {self.name}")
            dynamic = "dynamic" in declared.flags or "timeout" in declared.flags
            index = self._indexes[name] = SetIndex(name, declared.elements, dynamic)
        return index


@dataclass
class RulesetEvaluator:
    """Evaluates the chains of one ruleset; set indexes are built once and kept for the next packets."""

    ruleset: m.Ruleset
    views: list[TableView] = field(init=False)
    _plans: dict[int, tuple[m.Rule, Any]] = field(init=False, default_factory=dict)

    def __post_init__(self) -> None:
        self.views = [TableView(t) for t in self.ruleset.tables if t.family in FAMILIES_SEEN]

    def base_chains(self) -> tuple[BaseChain, ...]:
        chains = []
        for view in self.views:
            for chain in view.table.chains:
                hook = chain.hook
                if hook is None or hook.hook not in HOOKS:
                    continue
                kind: ChainKind = hook.type
                policy: Policy = "DROP" if hook.policy == "drop" else "ACCEPT"
                chains.append(BaseChain(HOOKS[hook.hook], hook.priority.value, view.name, chain.name, kind, policy,
                                        partial(self.evaluate_base, view, chain.name), self.index_all))
        return tuple(chains)

    def _plan(self, rule: m.Rule) -> tuple[tuple[tuple[sel.Numgen, ...], Callable[[Reading], bool] | None], ...] | None:
        """For each statement of the rule: the numgen expressions it reads (kube-proxy's `numgen random mod N
        vmap { … }`) and, for a match, its compiled test; None the first time the rule is met. Compiling costs
        about what one evaluation does, and most of a big cluster's rules (its Services' own chains) are met
        once by a walk of every Service: only a rule met again is compiled. The rule is kept with its plan, so
        that its id is not reused while cached."""
        cached = self._plans.get(id(rule))
        if cached is None or cached[0] is not rule:
            self._plans[id(rule)] = (rule, None)
            return None
        if cached[1] is None:
            plan = tuple((_numgens_of(st), compile_match(st) if isinstance(st, m.Match) else None)
                         for st in rule.statements)
            cached = self._plans[id(rule)] = (rule, plan)
        return cached[1]

    def index_all(self) -> None:
        for view in self.views:
            for declared in view.table.sets:
                view.set_index(declared.name)

    def evaluate_base(self, view: TableView, chain: str, state: State, node: NodeContext) -> Branches:
        """Every way a branch leaves the base chain; a table of the other family lets the packet by unseen."""
        if state.packet.family not in view.families:
            return [(state, "ACCEPT")]
        return [(s, "END" if how == "RETURN" else how) for s, how in self.walk_chain(state, view, chain, node)]

    # -- one chain ------------------------------------------------------------------------------------------

    def walk_chain(self, s: State, view: TableView, name: str, node: NodeContext) -> list[tuple[State, ChainEnding]]:
        """Every way the walk leaves chain `name`: (state, END | RETURN | ACCEPT | DROP | a final ending)."""
        rules = view.chains[name].rules
        count = len(rules)
        results: list[tuple[State, ChainEnding]] = []
        # Branches still to follow: (branch, what its last rule did or None to try rule i, i). A branch is
        # followed to its end before the next is taken, so outcomes come in the order of the listing.
        stack: list[tuple[State, RuleResult | None, int]] = [(s, None, 0)]
        while stack:
            state, result, i = stack.pop()
            while True:
                if result is None:
                    if i >= count:
                        results.append((state, "END"))
                        break
                    branches = self.run_rule(view, rules[i], state, node)
                    i += 1
                    for other in reversed(branches[1:]):
                        stack.append((other[0], other[1], i))
                    state, result = branches[0]
                kind, payload = result
                if kind == "next" or kind == "continue":
                    result = None
                    continue
                if kind == "jump" or kind == "goto":
                    resumed = []
                    for sub, how in self.walk_chain(state, view, payload, node):
                        if how != "END" and how != "RETURN":
                            results.append((sub, how))
                        elif kind == "jump":
                            resumed.append(sub)
                        else:  # a goto's chain returns to the chain that called this one
                            results.append((sub, "RETURN"))
                    if not resumed:
                        break
                    for sub in reversed(resumed[1:]):
                        stack.append((sub, None, i))
                    state, result = resumed[0], None
                    continue
                results.append((state, payload if kind == "end" else _ENDINGS[kind]))
                break
        return results

    def run_rule(self, view: TableView, rule: m.Rule, state: State, node: NodeContext) -> list[tuple[State, RuleResult]]:
        """What the rule does to the branch, each way it can go (a numgen forks it)."""
        reading = Reading(state, node, {}, view.set_index)
        try:
            return self._statements(view, rule, reading, 0, [])
        except Undecided as why:
            reason = f"{view.name} {rule.chain} rule {rule.position}: {why}"
            undecided = reading.state.step(view.name, rule.chain, rule, "undecided").changed(reason=reason)
            return [(undecided, ("end", "UNDECIDED"))]

    def _statements(self, view: TableView, rule: m.Rule, r: Reading, start: int,
                    done: list[str]) -> list[tuple[State, RuleResult]]:
        """Run the rule's statements from `start` on the branch in `r`; `done` says what the earlier ones did."""
        plan = self._plan(rule)
        for index in range(start, len(rule.statements)):
            numgens, test = plan[index] if plan is not None else (_numgens_of(rule.statements[index]), None)
            if numgens:
                unset = [n for n in numgens if n not in r.numgen]
                if unset:
                    return self._fork(view, rule, r, index, done, unset[0])
            if test is not None:
                if test(r):
                    continue
                return [(r.state, _NEXT)]  # the rule broke off: it did not match
            outcome = self._statement(rule.statements[index], r, done)
            if outcome is None:
                continue
            if outcome[0] == "next":  # the rule broke off: it did not match
                return [(r.state, ("next", None))]
            return [(self._stepped(view, rule, r.state, done, outcome), outcome)]
        return [(self._stepped(view, rule, r.state, done, ("next", None)), ("next", None))]

    def _fork(self, view: TableView, rule: m.Rule, r: Reading, index: int, done: list[str],
              numgen: sel.Numgen) -> list[tuple[State, RuleResult]]:
        branches: list[tuple[State, RuleResult]] = []
        share = Fraction(1, numgen.mod)
        turn = f" (its turn once in every {numgen.mod})" if numgen.mode == "inc" else ""
        for value in range(numgen.offset, numgen.offset + numgen.mod):
            label = f"{rule.chain} rule {rule.position}: numgen {numgen.mode} mod {numgen.mod} = {value}{turn}"
            state = r.state.changed(probability=r.state.probability * share, choices=r.state.choices + (label,))
            branch = Reading(state, r.node, {**r.numgen, numgen: value}, r.lookup)
            try:
                branches += self._statements(view, rule, branch, index, list(done))
            except Undecided as why:
                reason = f"{view.name} {rule.chain} rule {rule.position}: {why}"
                undecided = branch.state.step(view.name, rule.chain, rule, "undecided").changed(reason=reason)
                branches.append((undecided, ("end", "UNDECIDED")))
        return branches

    @staticmethod
    def _stepped(view: TableView, rule: m.Rule, state: State, done: list[str], outcome: RuleResult) -> State:
        kind, payload = outcome
        if kind in ("jump", "goto"):
            done = done + [f"{kind} {payload}"]
        elif kind in ("accept", "drop", "return", "continue"):
            done = done + [kind]
        action = "; ".join(done) if done else "matched (goes on)"
        return state.step(view.name, rule.chain, rule, action)

    def _statement(self, st: m.Statement, r: Reading, done: list[str]) -> RuleResult | None:
        """What one statement does: None (go on to the next statement), ("next", None) (the rule breaks off),
        or how the rule ends. Changes to the branch are made on `r.state` and told in `done`."""
        if isinstance(st, m.Match):
            return None if holds(st, r) else ("next", None)
        if isinstance(st, m.VerdictMap):
            key = read(st.key, r)
            element = None if key is ABSENT else _elements_of(st.data, r).find(key, r.state)
            if element is None or not isinstance(element.data, m.Verdict):
                return ("next", None)
            return _verdict(element.data)
        if isinstance(st, m.Verdict):
            return _verdict(st)
        if isinstance(st, (m.Counter, m.Log)):
            return None
        if isinstance(st, m.Mangle):
            self._mangle(st, r, done)
            return None
        if isinstance(st, m.Nat):
            return self._nat(st, r, done)
        if isinstance(st, m.Reject):
            how = f"reject with {st.type} {st.code}" if st.code else f"reject with {st.type}"
            done.append(how)
            return ("end", "REJECT")
        if isinstance(st, m.SetUpdate):
            if st.op == "delete":
                r.state = r.state.changed(recent=r.state.recent - {st.set})
                done.append(f"removed from @{st.set}")
            else:
                r.state = r.state.changed(recent=r.state.recent | {st.set})
                done.append(f"added to @{st.set}")
            return None
        if isinstance(st, m.Notrack):
            r.state = r.state.changed(untracked=True, ctstate=frozenset({"UNTRACKED"}))
            done.append("notrack")
            return None
        if isinstance(st, m.ObjectRef):
            if st.kind in ("counter", "ct helper", "ct timeout", "ct expectation", "secmark"):
                return None
            raise Undecided(f"{st.kind} object: whether it lets the packet through is not known to the tracer")
        if isinstance(st, m.Xt):
            if st.name == "comment":
                return None
            if st.kind == "match":
                raise Undecided(f"iptables match {st.name} (kept by iptables-nft) is not modelled")
            done.append(f"iptables target {st.name} (not modelled)")
            return ("end", "UNSUPPORTED")
        kind = type(st)
        if kind in _UNDECIDED_STATEMENTS:
            raise Undecided(f"{_UNDECIDED_STATEMENTS[kind]}: whether it lets the packet through depends on traffic")
        what = _UNSUPPORTED_STATEMENTS.get(kind, kind.__name__)
        done.append(f"{what} (not modelled)")
        r.state = r.state.changed(reason=f"{what} is not modelled by the tracer")
        return ("end", "UNSUPPORTED")

    @staticmethod
    def _mangle(st: m.Mangle, r: Reading, done: list[str]) -> None:
        key = st.key
        if (isinstance(key, sel.Meta) or isinstance(key, sel.Ct)) and key.key == "mark":
            value = read(st.value, r)
            if value is ABSENT:
                raise Undecided("the value to set the mark to is not there")
            value &= 0xFFFFFFFF
            if isinstance(key, sel.Meta):
                done.append(f"mark {r.state.mark:#x} -> {value:#x}")
                r.state = r.state.changed(mark=value)
            else:
                done.append(f"ct mark {r.state.ctmark:#x} -> {value:#x}")
                r.state = r.state.changed(ctmark=value)
            return
        done.append("sets a field the tracer does not follow (goes on)")

    @staticmethod
    def _nat(st: m.Nat, r: Reading, done: list[str]) -> RuleResult:
        s, p, node = r.state, r.state.packet, r.node
        address, port = _nat_value(st.addr, r), _nat_value(st.port, r)
        if address is ABSENT or port is ABSENT:
            return ("next", None)  # a map without the key breaks the rule off
        if isinstance(address, tuple):  # `dnat ip to … map { … : ADDRESS . PORT }`
            address, port = address
        random_port = "fully-random" in st.flags or "random" in st.flags
        if st.kind == "dnat" or st.kind == "redirect":
            if st.kind == "redirect":
                address = LOOPBACK_ADDRESS[p.family] if s.hook == "OUTPUT" else node.source_for(s.iif or "lo", p.src)
            new = p.with_destination(address or p.dst, port)
            done.append(f"{st.kind} to {endpoint_text(new.dst, new.dport)}")
            r.state = s.changed(packet=new, dnat=(new.dst, new.dport), after_dnat=new, ctstate=s.ctstate | {"DNAT"})
            return ("end", "NAT")
        if st.kind == "snat":
            new = p.with_source(address or p.src, port, keep_port=not random_port)
            done.append(f"snat to {endpoint_text(new.src, new.sport)}")
            r.state = s.changed(packet=new, snat=(new.src, new.sport), ctstate=s.ctstate | {"SNAT"})
            return ("end", "NAT")
        ip = node.source_for(s.oif or "", p.dst)
        new = p.with_source(ip, port, keep_port=not random_port)
        flags = f" ({', '.join(st.flags)})" if st.flags else ""
        done.append(f"masquerade to {endpoint_text(ip, port)}{flags}")
        r.state = s.changed(packet=new, snat=(ip, new.sport), masquerade=True, ctstate=s.ctstate | {"SNAT"})
        return ("end", "NAT")


def _verdict(v: m.Verdict) -> RuleResult:
    return (v.kind, v.target)


def _nat_value(expr: m.Expr | None, r: Reading) -> Any:
    """The address or port a nat statement translates to: the first of a range or network, as the kernel's
    first choice; a map's value; None where the statement gives none."""
    if expr is None:
        return None
    if isinstance(expr, m.Range):
        expr = expr.low
    if isinstance(expr, m.Prefix):
        expr = expr.base
    if isinstance(expr, m.Const):
        return constant(expr)
    return read(expr, r)


_PLAIN_READS = (sel.Payload, sel.Meta, sel.Ct, sel.Fib)
_PLAIN_VALUES = (m.Const, m.Prefix, m.Range, m.SetRef, m.ValueList)


def _numgens_of(statement: m.Statement) -> tuple[sel.Numgen, ...]:
    """The numgen expressions a statement reads. The shapes of kube-proxy's rules are answered at once: a
    tracer meets tens of thousands of them in a big cluster, each once."""
    if isinstance(statement, m.Match) and isinstance(statement.left, _PLAIN_READS) \
            and isinstance(statement.right, _PLAIN_VALUES):
        return ()
    if isinstance(statement, m.VerdictMap):
        key = statement.key
        if isinstance(key, sel.Numgen):
            return (key,)
        if isinstance(key, _PLAIN_READS) or isinstance(key, m.Concat) and all(
                isinstance(item, _PLAIN_READS) for item in key.items):
            return ()
    if isinstance(statement, (m.Verdict, m.Counter, m.Log, m.Reject, m.Notrack)):
        return ()
    return tuple(_walk_numgens(statement))


def _walk_numgens(node: object):
    if isinstance(node, sel.Numgen):
        yield node
        return
    if isinstance(node, (m.Const, m.Counter, m.Log, m.Verdict, str, int, type(None))):
        return
    for name in getattr(node, "__slots__", ()):
        value = getattr(node, name, None)
        if isinstance(value, tuple):
            for item in value:
                yield from _walk_numgens(item)
        elif value is not None and not isinstance(value, (str, int, bool)):
            yield from _walk_numgens(value)
