"""Walk a packet through the base chains of a ruleset as netfilter does, branch by branch.

The walk follows the hooks of the packet's path (PREROUTING, then INPUT or FORWARD, then POSTROUTING; or
OUTPUT then POSTROUTING for a packet the node sends) and at each hook runs every base chain registered
there, in priority order. It does not know which rule language a base chain came from: a `BaseChain` is a
hook, a priority, a kind, a policy and a function that evaluates the chain's rules (a dialect gives them,
see `iptables_lens.dialects`). An accept ends only that base chain and the packet goes on to the next; a
drop or a reject ends the packet. Chains of kind nat see only the first packet of a tracked connection; after
a nat or route chain at OUTPUT translated the destination, the route is looked up again, and after
PREROUTING the route decides between INPUT and FORWARD, so a packet translated to a pod's address is
forwarded, not delivered locally.

Where a rule splits the way (`-m statistic`) the walk forks, and each branch carries its exact probability;
the outcomes of a trace add up to exactly 1.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from enum import IntEnum
from fractions import Fraction
from typing import Literal, NamedTuple, Protocol, get_args

from iptables_lens.trace.context import NodeContext
from iptables_lens.trace.packet import (
    HOOKS,
    Address,
    ConntrackEntry,
    Hook,
    Origin,
    Outcome,
    Packet,
    Step,
    Trace,
    Verdict,
)


class Priority(IntEnum):
    """Netfilter's named priorities of base chains at a hook: lower runs first. The numbers are the kernel's
    (include/uapi/linux/netfilter_ipv4.h, enum nf_ip_hook_priorities: NF_IP_PRI_RAW -300, NF_IP_PRI_MANGLE
    -150, NF_IP_PRI_NAT_DST -100, NF_IP_PRI_FILTER 0, NF_IP_PRI_SECURITY 50, NF_IP_PRI_NAT_SRC 100), and nft
    names them raw, mangle, dstnat, filter, security and srcnat. Connection tracking runs between raw and
    mangle (NF_IP_PRI_CONNTRACK -200), which is why raw can exempt a packet from it."""

    RAW = -300
    MANGLE = -150
    DSTNAT = -100
    FILTER = 0
    SECURITY = 50
    SRCNAT = 100


# filter: rules decide a verdict. nat: rules translate addresses, only for the first packet of a connection.
# route: a filter chain at OUTPUT after which a changed packet is routed again (iptables' mangle OUTPUT).
ChainKind = Literal["filter", "nat", "route"]

# How a branch leaves a base chain. END: it ran out of rules, the chain's policy decides. ACCEPT: this base
# chain lets it go on. NAT: translated, the chain is done and the packet goes on. DROP and REJECT end the
# packet; UNDECIDED (a match the tracer cannot know) and UNSUPPORTED (a target it does not model) end the
# branch with a reason.
Ending = Literal["END", "ACCEPT", "NAT", "DROP", "REJECT", "UNDECIDED", "UNSUPPORTED"]
Policy = Literal["ACCEPT", "DROP"]


class RulePlace(Protocol):
    """Where a rule is, for a step of the path: its position in its chain and its line in the source."""

    @property
    def position(self) -> int: ...

    @property
    def line(self) -> int: ...


@dataclass(frozen=True)
class State:
    """One branch of the walk: the packet as it is now, and everything that happened to it."""

    packet: Packet
    original: Packet
    hook: Hook = "PREROUTING"
    iif: str | None = None
    oif: str | None = None
    mark: int = 0
    ctmark: int = 0
    untracked: bool = False
    ctstate: frozenset[str] = frozenset({"NEW"})
    recent: frozenset[str] = frozenset()
    probability: Fraction = Fraction(1)
    steps: tuple[Step, ...] = ()
    choices: tuple[str, ...] = ()
    dnat: tuple[Address, int | None] | None = None
    snat: tuple[Address, int | None] | None = None
    masquerade: bool = False
    after_dnat: Packet | None = None
    nat_hook: Hook | None = None
    """The hook at which a nat chain translated the branch, if one did."""
    reason: str | None = None

    def changed(self, **changes) -> State:
        """A copy with `changes`. dataclasses.replace costs about 4 us a call and one trace makes hundreds;
        copying the instance's dict is eight times cheaper and the copy stays frozen."""
        copy = object.__new__(State)
        fields = copy.__dict__
        fields.update(self.__dict__)
        fields.update(changes)
        return copy

    def step(self, table: str | None, chain: str | None, rule: RulePlace | None, action: str) -> State:
        """A copy with one more step on its path."""
        s = Step(self.hook, table, chain, rule.position if rule else None, rule.line if rule else None, action)
        return self.changed(steps=self.steps + (s,))


Branches = list[tuple[State, Ending]]
_VERDICTS: frozenset[str] = frozenset(get_args(Verdict))


def _no_preparation() -> None:
    pass


class BaseChain(NamedTuple):
    """A chain the kernel calls at a hook, whatever the rule language.

    `evaluate(state, node)` gives every way a branch leaves the chain, with how it ends. `prepare()` does
    once the work that makes many traces fast (iptables indexes its long chains); the walk never needs it.
    (A named tuple rather than a frozen dataclass: every Tracer makes its dump's base chains, and a named
    tuple is made four times faster.)
    """

    hook: Hook
    priority: int
    table: str
    name: str
    kind: ChainKind
    policy: Policy
    evaluate: Callable[[State, NodeContext], Branches]
    prepare: Callable[[], None] = _no_preparation


def at_hooks(chains: tuple[BaseChain, ...]) -> dict[Hook, tuple[BaseChain, ...]]:
    """The base chains of each hook in the order the kernel runs them: by priority, then the last registered
    first (the kernel puts a new hook before those of its priority; `chains` come in the order they were
    registered, as a listing gives them)."""
    by_hook: dict[Hook, list[BaseChain]] = {hook: [] for hook in HOOKS}
    for chain in sorted(reversed(chains), key=_priority):
        by_hook[chain.hook].append(chain)
    return {hook: tuple(chains) for hook, chains in by_hook.items()}


def _priority(chain: BaseChain) -> int:
    return chain.priority


@dataclass
class Tracer:
    """Traces packets through one dump on one node. Reuse it for many packets: the dialect's preparation
    (iptables indexes long chains the first time they are walked) is kept; `index_all()` does it up front."""

    dump: object
    node: NodeContext
    _at_hook: dict[Hook, tuple[BaseChain, ...]] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        # The registry imports every dialect, and the dialects import this module for State and BaseChain:
        # the walk looks the dump's dialect up when it is used, so that it never imports a dialect itself.
        from iptables_lens.dialects import base_chains

        self._at_hook = at_hooks(base_chains(self.dump))

    def index_all(self) -> None:
        """Prepare every base chain now rather than on the first packet that needs it."""
        for prepare in dict.fromkeys(c.prepare for chains in self._at_hook.values() for c in chains):
            prepare()

    # -- hooks and the path -----------------------------------------------------------------------

    def run_hook(
        self, states: list[State], hook: Hook, skip_nat: bool = False
    ) -> tuple[list[State], list[tuple[State, Ending]]]:
        """Pass branches through every base chain at `hook`: (branches that go on, branches that ended)."""
        ended: list[tuple[State, Ending]] = []
        for chain in self._at_hook[hook]:
            nat = chain.kind == "nat"
            going_on: list[State] = []
            passing: list[State] = []
            # At OUTPUT the kernel looks the route up again right after a nat or route chain changed the
            # destination (ip_route_me_harder), so filter OUTPUT already sees the new way out.
            translated: list[bool] | None = [] if hook == "OUTPUT" and chain.kind != "filter" else None
            for state in states:
                # nat sees only the first packet of a tracked connection, once. The kernel runs a hook's nat
                # chains (an nft ruleset may have several, beside iptables-nft's nat table) only until one
                # sets up the translation (nf_nat_inet_fn), so the later ones do not see a translated branch.
                if nat and (skip_nat or state.untracked or state.nat_hook == hook):
                    passing.append(state)
                    continue
                for result, how in chain.evaluate(state.changed(hook=hook), self.node):
                    if how == "END":
                        result = result.step(chain.table, chain.name, None, f"policy {chain.policy}")
                        how = chain.policy
                    if how in ("ACCEPT", "NAT"):
                        if how == "NAT":
                            result = result.changed(nat_hook=hook)
                        going_on.append(result)
                        if translated is not None:
                            translated.append(result.dnat is not None and result.dnat != state.dnat)
                    else:
                        ended.append((result, how))
            states = going_on + passing
            if translated is not None:
                states = self._route_again(states, translated, ended)
        return states, ended

    def _route_again(self, states: list[State], translated: list[bool], ended: list[tuple[State, Ending]]) -> list[State]:
        """`states` with those marked in `translated` routed again (those left without a route end). The states
        beyond `translated` passed the chain by, untouched."""
        rerouted = []
        for i, s in enumerate(states):
            if i >= len(translated) or not translated[i]:
                rerouted.append(s)
                continue
            again = self._route(s)
            if again is None:
                ended.append((s.changed(reason=f"no route to {s.packet.dst}"), "DROP"))
            else:
                rerouted.append(again)
        return rerouted

    def _route(self, s: State) -> State | None:
        route = self.node.route(s.packet.dst)
        if route is None:
            return None
        hop = f" via {route.via}" if route.via else ""
        action = f"route to {s.packet.dst}: dev {route.device}{hop}"
        if route.device == "lo":
            action = f"route to {s.packet.dst}: local address"
        return s.changed(oif=route.device).step(None, None, None, action)

    def trace(self, packet: Packet, origin: Origin = "external", recent: frozenset[str] = frozenset()) -> Trace:
        """Every outcome of `packet` on this node. `origin` is "external" (it arrives from the network, on
        the interface the route back to its source uses) or "local" (a process on the node sends it)."""
        if origin not in ("external", "local"):
            raise ValueError(f"origin must be 'external' or 'local', not {origin!r}")
        start = State(packet, packet, recent=recent)
        finished: list[tuple[State, Verdict, str]] = []
        if origin == "external":
            iif = self.node.interface_of(packet.src)
            start = start.changed(iif=iif, hook="PREROUTING").step(None, None, None, f"arrives on {iif}")
            self._inbound([start], finished, skip_nat=False)
        else:
            self._outbound(start, finished)
        outcomes = tuple(self._outcome(s, verdict, delivery) for s, verdict, delivery in finished)
        total = sum((o.probability for o in outcomes), Fraction(0))
        assert total == 1, f"outcome probabilities add up to {total}, not 1"
        return Trace(self.node.name, origin, packet, outcomes)

    def _finish_ended(self, ended: list[tuple[State, Ending]], finished: list) -> None:
        for s, how in ended:
            # A chain that ended the packet ended it with a verdict: END and NAT carry on at the hook.
            assert how in _VERDICTS, f"a packet cannot end with {how}"
            last = s.steps[-1] if s.steps else None
            where = f"{last.table} {last.chain} rule {last.rule}" if last and last.rule else (
                f"{last.table} {last.chain} policy" if last else "")
            if how == "DROP" and s.reason and s.reason.startswith("no route"):
                delivery = s.reason
            else:
                delivery = {"DROP": f"dropped at {where}", "REJECT": f"rejected at {where}"}.get(how, s.reason or how)
            finished.append((s, how, delivery))

    def _inbound(self, states: list[State], finished: list, skip_nat: bool) -> None:
        states, ended = self.run_hook(states, "PREROUTING", skip_nat)
        self._finish_ended(ended, finished)
        for s in states:
            routed = self._route(s)
            if routed is None:
                finished.append((s, "DROP", f"no route to {s.packet.dst}"))
                continue
            if routed.oif == "lo":
                accepted, ended = self.run_hook([routed.changed(oif=None)], "INPUT", skip_nat)
                self._finish_ended(ended, finished)
                for a in accepted:
                    where = f"{a.packet.dst}:{a.packet.dport}" if a.packet.dport else str(a.packet.dst)
                    finished.append((a.step(None, None, None, "delivered to a local process"), "ACCEPT",
                                     f"a local process on {self.node.name} ({where})"))
                continue
            accepted, ended = self.run_hook([routed], "FORWARD")
            self._finish_ended(ended, finished)
            sent, ended = self.run_hook(accepted, "POSTROUTING", skip_nat)
            self._finish_ended(ended, finished)
            for a in sent:
                finished.append((a.step(None, None, None, "sent out"), "ACCEPT", self._sent_to(a)))

    def _outbound(self, start: State, finished: list) -> None:
        routed = self._route(start.changed(hook="OUTPUT"))
        if routed is None:
            finished.append((start, "DROP", f"no route to {start.packet.dst}"))
            return
        states, ended = self.run_hook([routed], "OUTPUT")
        self._finish_ended(ended, finished)
        sent, ended = self.run_hook(states, "POSTROUTING")
        self._finish_ended(ended, finished)
        for s in sent:
            if s.oif == "lo":
                # Over the loopback the packet comes in again: PREROUTING and INPUT, but the connection is
                # already tracked, so nat is not consulted a second time.
                looped = s.changed(iif="lo", oif=None).step(None, None, None, "loops back in on lo")
                self._inbound([looped], finished, skip_nat=True)
            else:
                finished.append((s.step(None, None, None, "sent out"), "ACCEPT", self._sent_to(s)))

    def _sent_to(self, s: State) -> str:
        route = self.node.route(s.packet.dst)
        hop = f" via {route.via}" if route and route.via else ""
        return f"forwarded to {s.packet.dst}{hop} on {s.oif}"

    def _outcome(self, s: State, verdict: Verdict, delivery: str) -> Outcome:
        final = s.packet
        after_dnat = s.after_dnat or s.original.with_destination(final.dst, final.dport)
        entry = None
        if not s.untracked and verdict in ("ACCEPT",):
            entry = ConntrackEntry(
                final.protocol,
                (s.original.src, s.original.dst, s.original.sport, s.original.dport),
                (final.dst, final.src, final.dport, final.sport),
            )
        return Outcome(s.probability, verdict, delivery, s.original, after_dnat, final, s.dnat, s.snat, s.masquerade, entry,
                       s.steps, s.choices, s.reason)


def trace(dump: object, packet: Packet, node: NodeContext, origin: Origin | None = None,
          recent: frozenset[str] = frozenset()) -> Trace:
    """Trace `packet` through `dump` (of any registered dialect) on `node`. `origin` defaults to "local"
    when the packet's source is one of the node's addresses, else "external". To trace many packets through
    one dump, make a `Tracer` once and call its `trace`."""
    if origin is None:
        origin = "local" if node.is_local(packet.src) else "external"
    return Tracer(dump, node).trace(packet, origin, recent)
