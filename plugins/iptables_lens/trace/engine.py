"""Walk a packet through a dump's rules as netfilter does, branch by branch.

The walk follows the hooks of the packet's path (PREROUTING, then INPUT or FORWARD, then POSTROUTING;
or OUTPUT then POSTROUTING for a packet the node sends), consults the tables at each hook in the kernel's
order, and within a chain follows jumps (which come back) and gotos (which return to the caller's caller).
The nat table is consulted for the first packet of a connection only; after DNAT the route is looked up
again, so a packet translated to a pod's address is forwarded, not delivered locally.

Where a match splits the way (`-m statistic`) the walk forks, and each branch carries its exact
probability; the outcomes of a trace add up to exactly 1.
"""

from __future__ import annotations

import heapq
import ipaddress
from dataclasses import dataclass, field
from fractions import Fraction

from iptables_lens.iptables.matches import Facts, Split, Undecided, criterion_holds, module_result
from iptables_lens.iptables.model import Chain, Dump, Rule, Table
from iptables_lens.trace.context import NodeContext
from iptables_lens.trace.packet import TABLES_AT_HOOK, ConntrackEntry, IPv4, Outcome, Packet, Step, Trace

END = "END"  # fell off the end of a chain
RETURN = "RETURN"
NAT_DONE = "NAT"  # a NAT target: the nat table is done at this hook, the packet goes on
CONTINUING_TARGETS = frozenset({"LOG", "NFLOG", "ULOG", "TRACE", "AUDIT", "NOTRACK", "CT", "MARK", "CONNMARK"})
NAT_TARGETS = frozenset({"DNAT", "SNAT", "MASQUERADE", "REDIRECT"})
TERMINAL_VERDICTS = frozenset({"ACCEPT", "DROP", "REJECT"})
INDEXED_CHAIN_SIZE = 32  # chains this long are scanned through an index (see RuleIndex)


@dataclass(frozen=True)
class State:
    """One branch of the walk: the packet as it is now, and everything that happened to it."""

    packet: Packet
    original: Packet
    hook: str = "PREROUTING"
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
    dnat: tuple[IPv4, int | None] | None = None
    snat: tuple[IPv4, int | None] | None = None
    masquerade: bool = False
    after_dnat: Packet | None = None
    reason: str | None = None

    def step(self, table: str | None, chain: str | None, rule: Rule | None, action: str) -> State:
        s = Step(self.hook, table, chain, rule.position if rule else None, rule.line if rule else None, action)
        return _changed(self, steps=self.steps + (s,))


def _changed(state: State, **changes) -> State:
    """A copy of `state` with `changes`. dataclasses.replace costs about 4 us a call and one trace makes
    hundreds; copying the instance's dict is eight times cheaper and the copy stays frozen."""
    copy = object.__new__(State)
    fields = copy.__dict__
    fields.update(state.__dict__)
    fields.update(changes)
    return copy


class RuleIndex:
    """Candidate rules of a long chain for a packet, in chain order.

    A rule with `-d ADDRESS/32` can only match packets to that address, and a rule with `-p P` and a single
    `--dport N` only packets to that port: such rules are filed under their address or (protocol, port),
    the rest stay in a list of rules every packet must look at. Candidates are the three lists merged in
    position order, so the walk sees exactly the rules a full scan would find matching, in the same order.
    """

    def __init__(self, chain: Chain):
        self.by_destination: dict[IPv4, list[Rule]] = {}
        self.by_port: dict[tuple[str, int], list[Rule]] = {}
        self.general: list[Rule] = []
        for rule in chain.rules:
            destination = self._single_destination(rule)
            if destination is not None:
                self.by_destination.setdefault(destination, []).append(rule)
                continue
            port = self._single_port(rule)
            if port is not None:
                self.by_port.setdefault(port, []).append(rule)
            else:
                self.general.append(rule)

    @staticmethod
    def _single_destination(rule: Rule) -> IPv4 | None:
        for c in rule.criteria:
            if c.flag == "-d" and not c.negated and c.value.endswith("/32") and "," not in c.value:
                return IPv4(c.value[:-3])
        return None

    @staticmethod
    def _single_port(rule: Rule) -> tuple[str, int] | None:
        proto = next((c for c in rule.criteria if c.flag == "-p" and not c.negated), None)
        if proto is None:
            return None
        for m in rule.matches:
            if m.module == proto.value:
                o = m.option("--dport")
                if o is not None and not o.negated and o.value.isdigit():
                    return proto.value, int(o.value)
        return None

    def candidates(self, packet: Packet) -> list[Rule]:
        lists = [self.general,
                 self.by_destination.get(packet.dst, []),
                 self.by_port.get((packet.protocol, packet.dport or -1), [])]
        lists = [rules for rules in lists if rules]
        if len(lists) == 1:
            return lists[0]
        return list(heapq.merge(*lists, key=lambda r: r.position))


@dataclass
class Tracer:
    """Traces packets through one dump on one node. Reuse it for many packets: long chains are indexed
    the first time they are walked (`index_all()` does it up front)."""

    dump: Dump
    node: NodeContext
    _indexes: dict[tuple[str, str], RuleIndex] = field(default_factory=dict)

    def index_all(self) -> None:
        for table in self.dump.tables:
            for chain in table.chains:
                if len(chain.rules) >= INDEXED_CHAIN_SIZE:
                    self._indexes[(table.name, chain.name)] = RuleIndex(chain)

    def _rules(self, table: Table, chain: Chain, packet: Packet) -> tuple[Rule, ...] | list[Rule]:
        if len(chain.rules) < INDEXED_CHAIN_SIZE:
            return chain.rules
        key = (table.name, chain.name)
        index = self._indexes.get(key)
        if index is None:
            index = self._indexes[key] = RuleIndex(chain)
        return index.candidates(packet)

    # -- one chain --------------------------------------------------------------------------------

    def _facts(self, s: State) -> Facts:
        return Facts(s.packet, s.original, s.hook, s.iif, s.oif, s.mark, s.ctmark, s.ctstate, s.recent,
                     self.node.address_type)

    def _match(self, rule: Rule, s: State) -> list[tuple[State, bool]]:
        """The branches of evaluating `rule` on `s`: [(state, matched)]; raises Undecided."""
        facts = self._facts(s)
        for c in rule.criteria:
            if not criterion_holds(c, facts):
                return [(s, False)]
        branches: list[tuple[State, bool]] = [(s, True)]
        for m in rule.matches:
            still: list[tuple[State, bool]] = []
            for state, matched in branches:
                if not matched:
                    still.append((state, False))
                    continue
                result = module_result(m, facts if state is s else self._facts(state))
                if isinstance(result, Split):
                    where = f"{rule.chain} rule {rule.position}"
                    if result.probability > 0:
                        still.append((_changed(state, probability=state.probability * result.probability,
                                              choices=state.choices + (f"{where}: {result.label}",)), True))
                    if result.probability < 1:
                        rest = 1 - result.probability
                        still.append((_changed(state, probability=state.probability * rest,
                                              choices=state.choices + (f"{where}: {result.otherwise}",)), False))
                else:
                    still.append((state, result))
            branches = still
        return branches

    def walk_chain(self, s: State, table: Table, chain_name: str) -> list[tuple[State, str]]:
        """Every way the walk leaves `chain_name`: (state, END | RETURN | a verdict | NAT_DONE)."""
        chain = table.chain(chain_name)
        rules = self._rules(table, chain, s.packet)
        results: list[tuple[State, str]] = []
        # Work items: a branch and the index of the next rule to look at, maybe with that rule's
        # match already decided (after a split).
        work: list[tuple[State, int, bool | None]] = [(s, 0, None)]
        while work:
            state, i, decided = work.pop()
            while True:
                if i >= len(rules):
                    results.append((state, END))
                    break
                rule = rules[i]
                if decided is None:
                    try:
                        branches = self._match(rule, state)
                    except Undecided as why:
                        reason = f"{table.name} {chain.name} rule {rule.position}: {why}"
                        results.append((_changed(state.step(table.name, chain.name, rule, "undecided"),
                                                reason=reason), "UNDECIDED"))
                        break
                    for other, other_matched in branches[1:]:
                        work.append((other, i, other_matched))
                    state, matched = branches[0]
                else:
                    matched, decided = decided, None
                i += 1
                if not matched:
                    continue
                outcome = self._apply(state, table, chain, rule)
                if outcome is None:  # a rule without a target, or one that lets the packet go on
                    continue
                if isinstance(outcome, State):
                    state = outcome
                    continue
                # A jump or goto came back with its branches; anything else ends this branch here.
                kind, payload = outcome
                if kind == "jump":
                    for sub_state, how in payload:
                        if how in (END, RETURN):
                            work.append((sub_state, i, None))
                        else:
                            results.append((sub_state, how))
                elif kind == "goto":
                    for sub_state, how in payload:
                        results.append((sub_state, END if how in (END, RETURN) else how))
                else:
                    results.extend(payload)
                break
        return results

    def _apply(self, s: State, table: Table, chain: Chain, rule: Rule):
        """What the rule's target does: None (go on), a new State (go on, changed), or (kind, branches)."""
        target = rule.target
        if target is None:
            return s.step(table.name, chain.name, rule, "matched (no target, counts only)")
        name = target.name
        if table.has_chain(name):
            verb = "goto" if target.goto else "jump to"
            entered = s.step(table.name, chain.name, rule, f"{verb} {name}")
            return ("goto" if target.goto else "jump"), self.walk_chain(entered, table, name)
        if name in TERMINAL_VERDICTS:
            return "end", [(s.step(table.name, chain.name, rule, name), name)]
        if name == "RETURN":
            return "end", [(s.step(table.name, chain.name, rule, "RETURN"), RETURN)]
        if name == "MARK":
            mark = _apply_mark(s.mark, target)
            return _changed(s.step(table.name, chain.name, rule, f"mark {s.mark:#x} -> {mark:#x}"), mark=mark)
        if name == "CONNMARK":
            return self._connmark(s, table, chain, rule)
        if name in ("NOTRACK",) or (name == "CT" and target.option("--notrack")):
            return _changed(s.step(table.name, chain.name, rule, "not tracked by conntrack"), untracked=True,
                           ctstate=frozenset({"UNTRACKED"}))
        if name in CONTINUING_TARGETS:
            return s.step(table.name, chain.name, rule, f"{name} (goes on)")
        if name in NAT_TARGETS:
            return "end", [(self._nat(s, table, chain, rule), NAT_DONE)]
        reason = f"{table.name} {chain.name} rule {rule.position}: target {name} is not modelled"
        return "end", [(_changed(s.step(table.name, chain.name, rule, f"{name} (unsupported)"), reason=reason),
                        "UNSUPPORTED")]

    def _connmark(self, s: State, table: Table, chain: Chain, rule: Rule):
        target = rule.target
        assert target is not None
        nfmask = _mask(target, "--nfmask", "--mask")
        ctmask = _mask(target, "--ctmask", "--mask")
        if target.option("--save-mark"):
            ctmark = (s.ctmark & ~ctmask & 0xFFFFFFFF) ^ (s.mark & nfmask)
            return _changed(s.step(table.name, chain.name, rule, f"connmark saved {ctmark:#x}"), ctmark=ctmark)
        if target.option("--restore-mark"):
            mark = (s.mark & ~nfmask & 0xFFFFFFFF) ^ (s.ctmark & ctmask)
            return _changed(s.step(table.name, chain.name, rule, f"mark restored {mark:#x}"), mark=mark)
        ctmark = _apply_mark(s.ctmark, target)
        return _changed(s.step(table.name, chain.name, rule, f"connmark {s.ctmark:#x} -> {ctmark:#x}"), ctmark=ctmark)

    def _nat(self, s: State, table: Table, chain: Chain, rule: Rule) -> State:
        target = rule.target
        assert target is not None
        name = target.name
        p = s.packet
        if name == "DNAT":
            ip, port = _nat_address(target.option("--to-destination").value)  # type: ignore[union-attr]
            new = p.with_destination(ip, port)
            return _changed(s.step(table.name, chain.name, rule, f"DNAT to {_endpoint(ip, new.dport)}"), packet=new,
                           dnat=(ip, new.dport), after_dnat=new, ctstate=s.ctstate | {"DNAT"})
        if name == "REDIRECT":
            if s.hook == "OUTPUT":
                ip = IPv4("127.0.0.1")
            else:
                ip = self.node.source_for(s.iif or "lo", p.src)
            ports = target.option("--to-ports")
            port = int(ports.value.split("-")[0]) if ports else p.dport
            new = p.with_destination(ip, port)
            return _changed(s.step(table.name, chain.name, rule, f"REDIRECT to {_endpoint(ip, port)}"), packet=new,
                           dnat=(ip, port), after_dnat=new, ctstate=s.ctstate | {"DNAT"})
        if name == "SNAT":
            ip, port = _nat_address(target.option("--to-source").value)  # type: ignore[union-attr]
            random_port = target.option("--random-fully") is not None
            new = p.with_source(ip, port, keep_port=not random_port)
            return _changed(s.step(table.name, chain.name, rule, f"SNAT to {_endpoint(ip, new.sport)}"), packet=new,
                           snat=(ip, new.sport), ctstate=s.ctstate | {"SNAT"})
        # MASQUERADE: the source address the kernel would pick on the way out.
        ip = self.node.source_for(s.oif or "", p.dst)
        random_port = target.option("--random-fully") is not None or target.option("--random") is not None
        new = p.with_source(ip, None, keep_port=not random_port)
        how = " (random source port)" if random_port else ""
        return _changed(s.step(table.name, chain.name, rule, f"MASQUERADE to {ip}{how}"), packet=new,
                       snat=(ip, new.sport), masquerade=True, ctstate=s.ctstate | {"SNAT"})

    # -- hooks and the path -----------------------------------------------------------------------

    def run_hook(
        self, states: list[State], hook: str, skip_nat: bool = False
    ) -> tuple[list[State], list[tuple[State, str]]]:
        """Pass branches through every table at `hook`: (branches that go on, branches that ended)."""
        ended: list[tuple[State, str]] = []
        for table_name in TABLES_AT_HOOK[hook]:
            if not self.dump.has_table(table_name):
                continue
            table = self.dump.table(table_name)
            if not table.has_chain(hook):
                continue
            chain = table.chain(hook)
            # nat sees only the first packet of a tracked connection, once.
            passing = [s for s in states if table_name == "nat" and (skip_nat or s.untracked)]
            going_on: list[State] = []
            for state in states:
                if passing and state in passing:
                    continue
                entered = _changed(state, hook=hook)
                for result, how in self.walk_chain(entered, table, hook):
                    if how in (END, RETURN):
                        policy = chain.policy or "ACCEPT"
                        result = result.step(table_name, hook, None, f"policy {policy}")
                        how = policy
                    if how in ("ACCEPT", NAT_DONE):
                        going_on.append(result)
                    else:
                        ended.append((result, how))
            states = going_on + passing
            if hook == "OUTPUT" and table_name == "nat":
                # The kernel looks the route up again right after nat OUTPUT when DNAT changed the
                # destination (ip_route_me_harder), so filter OUTPUT already sees the new way out.
                states = self._reroute_translated(states, ended)
        return states, ended

    def _reroute_translated(self, states: list[State], ended: list[tuple[State, str]]) -> list[State]:
        rerouted = []
        for s in states:
            if s.dnat is None:
                rerouted.append(s)
                continue
            again = self._route(s)
            if again is None:
                ended.append((_changed(s, reason=f"no route to {s.packet.dst}"), "DROP"))
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
        return _changed(s, oif=route.device).step(None, None, None, action)

    def trace(self, packet: Packet, origin: str = "external", recent: frozenset[str] = frozenset()) -> Trace:
        """Every outcome of `packet` on this node. `origin` is "external" (it arrives from the network, on
        the interface the route back to its source uses) or "local" (a process on the node sends it)."""
        if origin not in ("external", "local"):
            raise ValueError(f"origin must be 'external' or 'local', not {origin!r}")
        start = State(packet, packet, recent=recent)
        finished: list[tuple[State, str, str]] = []
        if origin == "external":
            iif = self.node.interface_of(packet.src)
            start = _changed(start, iif=iif, hook="PREROUTING").step(None, None, None, f"arrives on {iif}")
            self._inbound([start], finished, skip_nat=False)
        else:
            self._outbound(start, finished)
        outcomes = tuple(self._outcome(s, verdict, delivery) for s, verdict, delivery in finished)
        total = sum((o.probability for o in outcomes), Fraction(0))
        assert total == 1, f"outcome probabilities add up to {total}, not 1"
        return Trace(self.node.name, origin, packet, outcomes)

    def _finish_ended(self, ended: list[tuple[State, str]], finished: list) -> None:
        for s, how in ended:
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
                accepted, ended = self.run_hook([_changed(routed, oif=None)], "INPUT", skip_nat)
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
        routed = self._route(_changed(start, hook="OUTPUT"))
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
                looped = _changed(s, iif="lo", oif=None).step(None, None, None, "loops back in on lo")
                self._inbound([looped], finished, skip_nat=True)
            else:
                finished.append((s.step(None, None, None, "sent out"), "ACCEPT", self._sent_to(s)))

    def _sent_to(self, s: State) -> str:
        route = self.node.route(s.packet.dst)
        hop = f" via {route.via}" if route and route.via else ""
        return f"forwarded to {s.packet.dst}{hop} on {s.oif}"

    def _outcome(self, s: State, verdict: str, delivery: str) -> Outcome:
        final = s.packet
        after_dnat = s.after_dnat or s.original.with_destination(final.dst, final.dport)
        entry = None
        if not s.untracked and verdict in ("ACCEPT",):
            entry = ConntrackEntry(
                final.protocol,
                (s.original.src, s.original.dst, s.original.sport, s.original.dport),
                (final.dst, final.src, final.dport, final.sport),
            )
        return Outcome(s.probability, verdict if verdict in ("ACCEPT", "DROP", "REJECT", "UNDECIDED", "UNSUPPORTED")
                       else "ACCEPT", delivery, s.original, after_dnat, final, s.dnat, s.snat, s.masquerade, entry,
                       s.steps, s.choices, s.reason)


def _apply_mark(value: int, target) -> int:
    for o in target.options:
        bits, _, mask_text = o.value.partition("/")
        number = int(bits, 0)
        mask = int(mask_text, 0) if mask_text else 0xFFFFFFFF
        if o.name == "--set-xmark":
            return (value & ~mask & 0xFFFFFFFF) ^ number
        if o.name == "--set-mark":
            return (value & ~mask & 0xFFFFFFFF) | number
        if o.name == "--and-mark":
            return value & number
        if o.name == "--or-mark":
            return value | number
        if o.name == "--xor-mark":
            return value ^ number
    return value


def _mask(target, *names: str) -> int:
    for name in names:
        o = target.option(name)
        if o is not None:
            return int(o.value, 0)
    return 0xFFFFFFFF


def _nat_address(value: str) -> tuple[IPv4, int | None]:
    """The address (and port) a NAT target rewrites to; the first of a range, as the kernel's first choice."""
    host, _, ports = value.partition(":")
    ip = IPv4(host.split("-")[0]) if host else IPv4("0.0.0.0")
    port = int(ports.split("-")[0]) if ports else None
    return ip, port


def _endpoint(ip: IPv4, port: int | None) -> str:
    return f"{ip}:{port}" if port is not None else str(ip)


def trace(dump: Dump, packet: Packet, node: NodeContext, origin: str | None = None,
          recent: frozenset[str] = frozenset()) -> Trace:
    """Trace `packet` through `dump` on `node`. `origin` defaults to "local" when the packet's source is
    one of the node's addresses, else "external"."""
    if origin is None:
        origin = "local" if node.is_local(packet.src) else "external"
    return Tracer(dump, node).trace(packet, origin, recent)


def parse_ip(value: str) -> IPv4:
    return ipaddress.IPv4Address(value)
