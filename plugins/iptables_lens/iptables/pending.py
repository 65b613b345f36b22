"""A table while the parser reads it, and what COMMIT checks before the table becomes the model's `Table`.

The kernel refuses a table in which a rule jumps to a chain the table does not declare, or to a built-in
chain, or in which jumps form a loop; `PendingTable.bad_jump` finds the first such rule.
"""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from typing import Any

from iptables_lens.iptables import xtables
from iptables_lens.iptables.model import BUILTIN_CHAINS, Chain, Counters, Rule, Table


def thawed(cls: Any) -> Any:
    """The thawed twin of the frozen dataclass `cls`, to build many of its objects quickly.

    A frozen dataclass's `__init__` sets each field through `object.__setattr__`: a Rule costs ~0.9 us. The
    twin has the same fields and slots but is not frozen, so its `__init__` sets them directly; an object it
    makes then becomes a `cls` by taking that class (`obj.__class__ = cls`), which Python allows between
    classes with the same slots. The twins are never seen outside the parser and its fast path.
    """
    fields = [(f.name, f.type) for f in dataclasses.fields(cls)]
    twin: Any = dataclasses.make_dataclass(cls.__name__, fields, slots=True, eq=False, repr=False, match_args=False)
    assert twin.__slots__ == cls.__slots__
    return twin


_ChainTwin = thawed(Chain)


@dataclass(slots=True)
class PendingChain:
    name: str
    builtin: bool
    policy: str | None
    counters: Counters | None
    line: int
    # Finished rules: a rule's position is known when it is appended. `-I` shifts the rules after it, and
    # sets `renumber` so that the table's build gives them their final positions.
    rules: list[Rule] = field(default_factory=list)
    renumber: bool = False


@dataclass(slots=True)
class PendingTable:
    name: str
    line: int
    comments_before: tuple[str, ...]
    chains: dict[str, PendingChain] = field(default_factory=dict)

    def chain_for_rule(self, name: str) -> PendingChain | None:
        """The chain a rule appends to; a built-in chain exists even when the text does not declare it."""
        chain = self.chains.get(name)
        if chain is None and name in BUILTIN_CHAINS[self.name]:
            chain = self.chains[name] = PendingChain(name, True, "ACCEPT", Counters(0, 0), 0)
        return chain

    def add_undeclared_builtins(self) -> None:
        """Built-in chains exist even when the text does not declare them."""
        for name in BUILTIN_CHAINS[self.name]:
            if name not in self.chains:
                self.chains[name] = PendingChain(name, True, "ACCEPT", Counters(0, 0), 0)

    def bad_jump(self) -> tuple[Rule, str] | None:
        """The first rule that jumps to a chain the table does not declare, or to a built-in chain, or that
        closes a loop of jumps, with what is wrong; None if the jumps are sound.

        A quick look at the chains each chain jumps to comes first; only when it finds a problem are the rules
        walked one by one, to report the first offending rule.
        """
        graph: dict[str, tuple[str, ...]] = {}
        for chain in self.chains.values():
            if chain.rules:
                jumps = {target.name for rule in chain.rules if (target := rule.target) is not None}
                jumps.difference_update(xtables.KNOWN_TARGETS)
                if jumps:
                    graph[chain.name] = tuple(jumps)  # a tuple takes a quarter of a set's memory
        user_chains = {chain.name for chain in self.chains.values() if not chain.builtin}
        if not user_chains.issuperset(itertools.chain.from_iterable(graph.values())):
            problem = self._jump_nowhere()
            if problem is not None:
                return problem
        return self._loop() if _has_loop(graph) else None

    def _jump_nowhere(self) -> tuple[Rule, str] | None:
        for chain in self.chains.values():
            for rule in chain.rules:
                target = rule.target
                if target is not None and target.name not in xtables.KNOWN_TARGETS:
                    jumped = self.chains.get(target.name)
                    if jumped is None:
                        verb = "goto" if target.goto else "jump"
                        return rule, f"{verb} to chain {target.name!r}, which table {self.name!r} does not declare"
                    if jumped.builtin:
                        return rule, f"cannot jump to built-in chain {target.name!r}"
        return None

    def _loop(self) -> tuple[Rule, str] | None:
        """The rule that closes a loop of jumps, by a depth-first walk."""
        chains = self.chains
        state: dict[str, int] = {}  # 1: on the current path, 2: done
        for root in chains:
            if root in state:
                continue
            state[root] = 1
            stack = [(root, 0)]  # (chain, index of the next rule to look at)
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
                        return rule, f"jump to {target.name!r} makes a loop: {target.name!r} leads back to {name!r}"
                    if seen is None:
                        state[target.name] = 1
                        stack.append((name, index))
                        stack.append((target.name, 0))
                        break
                else:
                    state[name] = 2
        return None

    def build(self) -> Table:
        """The model's Table: built-in chains first, in the kernel's order (as iptables-save prints them),
        then the user chains in the order they were declared (add_undeclared_builtins first)."""
        chains = []
        for chain in self._in_order():
            rules = chain.rules
            if chain.renumber:
                rules = [r if r.position == n else replace(r, position=n) for n, r in enumerate(rules, 1)]
            # Chain(...), made faster (see thawed): there are many chains.
            built = _ChainTwin(chain.name, self.name, chain.builtin, chain.policy, chain.counters, chain.line, tuple(rules))
            built.__class__ = Chain
            chains.append(built)
            chain.rules = []  # the tuple replaces the list
        return Table(self.name, self.line, tuple(chains), self.comments_before)

    def _in_order(self) -> Iterator[PendingChain]:
        for name in BUILTIN_CHAINS[self.name]:
            yield self.chains[name]
        yield from (chain for chain in self.chains.values() if not chain.builtin)


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
