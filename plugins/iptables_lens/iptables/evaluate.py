"""iptables' chain evaluation for the tracer, and iptables' tables as the walk's base chains.

Within a chain the rules are tried in order; a jump comes back to the next rule when the called chain runs
out or RETURNs, a goto returns to the caller's caller. A target ends the chain (ACCEPT, DROP, REJECT, a NAT
target), changes the branch and goes on (MARK, CONNMARK, NOTRACK, LOG...), or is reported as not modelled.
Matches are decided by `iptables.matches`; where one splits the way (`-m statistic`) the branch forks.

Each table's built-in chains are registered at the hooks and priorities the kernel gives that table, so the
walk (`trace.walk`) runs them without knowing they are iptables'.
"""

from __future__ import annotations

import heapq
import ipaddress
from dataclasses import dataclass, field
from functools import partial
from typing import Final, Literal

from iptables_lens.iptables import protocols, values
from iptables_lens.iptables.matches import Facts, Split, Undecided, criterion_holds, module_result
from iptables_lens.iptables.model import BUILTIN_CHAINS, Chain, Dump, Rule, Table
from iptables_lens.trace.context import LOOPBACK_ADDRESS, NodeContext
from iptables_lens.trace.packet import Address, Hook, Packet, endpoint_text
from iptables_lens.trace.walk import BaseChain, Branches, ChainKind, Ending, Policy, Priority, State

RETURN: Final = "RETURN"
CONTINUING_TARGETS = frozenset({"LOG", "NFLOG", "ULOG", "TRACE", "AUDIT", "NOTRACK", "CT", "MARK", "CONNMARK"})
NAT_TARGETS = frozenset({"DNAT", "SNAT", "MASQUERADE", "REDIRECT"})
TERMINAL_VERDICTS = frozenset({"ACCEPT", "DROP", "REJECT"})
INDEXED_CHAIN_SIZE = 32  # chains this long are scanned through an index (see RuleIndex)

# How a branch leaves a chain: as it leaves a base chain, or by RETURN (back to the caller).
ChainEnding = Ending | Literal["RETURN"]

# Where each table hooks in, and at which priority. The kernel's tables register at NF_IP_PRI_RAW (-300),
# NF_IP_PRI_MANGLE (-150), NF_IP_PRI_FILTER (0) and NF_IP_PRI_SECURITY (50); nat at NF_IP_PRI_NAT_DST (-100)
# where it changes destinations (PREROUTING, OUTPUT) and NF_IP_PRI_NAT_SRC (100) where it changes sources
# (INPUT, POSTROUTING): include/uapi/linux/netfilter_ipv4.h, enum nf_ip_hook_priorities, and the
# .priority of each net/ipv4/netfilter/iptable_*.c. iptables-nft creates the same built-in chains with the
# same numbers (iptables/nft.c, xtables_ipv4), except security at 150, after nat INPUT; we follow the kernel's
# own tables. Its mangle OUTPUT is of type route: the kernel routes again when mangle changed the packet.
TABLE_PRIORITIES: dict[str, dict[Hook, Priority]] = {
    "raw": {hook: Priority.RAW for hook in ("PREROUTING", "OUTPUT")},
    "mangle": {hook: Priority.MANGLE for hook in ("PREROUTING", "INPUT", "FORWARD", "OUTPUT", "POSTROUTING")},
    "nat": {"PREROUTING": Priority.DSTNAT, "OUTPUT": Priority.DSTNAT,
            "INPUT": Priority.SRCNAT, "POSTROUTING": Priority.SRCNAT},
    "filter": {hook: Priority.FILTER for hook in ("INPUT", "FORWARD", "OUTPUT")},
    "security": {hook: Priority.SECURITY for hook in ("INPUT", "FORWARD", "OUTPUT")},
}
assert all(set(hooks) == set(BUILTIN_CHAINS[table]) for table, hooks in TABLE_PRIORITIES.items())


def chain_kind(table: str, hook: Hook) -> ChainKind:
    """What kind of base chain the table's built-in chain at `hook` is, as iptables-nft declares it."""
    if table == "nat":
        return "nat"
    if table == "mangle" and hook == "OUTPUT":
        return "route"
    return "filter"


# (hook, priority, kind) of each table's built-in chains, worked out once: base chains are made for every trace.
_REGISTRATIONS = {table: tuple((hook, priority, chain_kind(table, hook)) for hook, priority in hooks.items())
                  for table, hooks in TABLE_PRIORITIES.items()}


def base_chains(dump: Dump) -> tuple[BaseChain, ...]:
    """The built-in chains of the dump's tables, as the walk's base chains, in file order."""
    return TableEvaluator(dump).base_chains()


class RuleIndex:
    """Candidate rules of a long chain for a packet, in chain order.

    A rule with `-d ADDRESS/32` can only match packets to that address, and a rule with `-p P` and a single
    `--dport N` only packets to that port: such rules are filed under their address or (protocol, port),
    the rest stay in a list of rules every packet must look at. Candidates are the three lists merged in
    position order, so the walk sees exactly the rules a full scan would find matching, in the same order.
    """

    def __init__(self, chain: Chain):
        self.by_destination: dict[Address, list[Rule]] = {}
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
    def _single_destination(rule: Rule) -> Address | None:
        for c in rule.criteria:
            if c.flag == "-d" and not c.negated and "," not in c.value and c.value.endswith(("/32", "/128")):
                address = ipaddress.ip_address(c.value.rsplit("/", 1)[0])
                if c.value.endswith(f"/{32 if address.version == 4 else 128}"):
                    return address
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
class TableEvaluator:
    """Evaluates the chains of one dump. Long chains are indexed the first time they are walked
    (`index_all()` does it up front), and the index is kept for the next packets."""

    dump: Dump
    _indexes: dict[tuple[str, str], RuleIndex] = field(default_factory=dict)

    def base_chains(self) -> tuple[BaseChain, ...]:
        chains = []
        for table in self.dump.tables:
            for hook, priority, kind in _REGISTRATIONS[table.name]:
                if not table.has_chain(hook):
                    continue
                policy: Policy = "DROP" if table.chain(hook).policy == "DROP" else "ACCEPT"
                chains.append(BaseChain(hook, priority, table.name, hook, kind, policy,
                                        partial(self.evaluate_base, table, hook), self.index_all))
        return tuple(chains)

    def index_all(self) -> None:
        for table in self.dump.tables:
            for chain in table.chains:
                if len(chain.rules) >= INDEXED_CHAIN_SIZE and (table.name, chain.name) not in self._indexes:
                    self._indexes[(table.name, chain.name)] = RuleIndex(chain)

    def evaluate_base(self, table: Table, hook: str, state: State, node: NodeContext) -> Branches:
        """Every way a branch leaves the base chain `hook` of `table`; a RETURN there leaves it as running
        out of rules does, to the policy."""
        return [(s, "END" if how == RETURN else how) for s, how in self.walk_chain(state, table, hook, node)]

    def _rules(self, table: Table, chain: Chain, packet: Packet) -> tuple[Rule, ...] | list[Rule]:
        if len(chain.rules) < INDEXED_CHAIN_SIZE:
            return chain.rules
        key = (table.name, chain.name)
        index = self._indexes.get(key)
        if index is None:
            index = self._indexes[key] = RuleIndex(chain)
        return index.candidates(packet)

    # -- one chain --------------------------------------------------------------------------------

    @staticmethod
    def _facts(s: State, node: NodeContext) -> Facts:
        return Facts(s.packet, s.original, s.hook, s.iif, s.oif, s.mark, s.ctmark, s.ctstate, s.recent,
                     node.address_type)

    def _match(self, rule: Rule, s: State, node: NodeContext) -> list[tuple[State, bool]]:
        """The branches of evaluating `rule` on `s`: [(state, matched)]; raises Undecided."""
        facts = self._facts(s, node)
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
                result = module_result(m, facts if state is s else self._facts(state, node))
                if isinstance(result, Split):
                    where = f"{rule.chain} rule {rule.position}"
                    if result.probability > 0:
                        still.append((state.changed(probability=state.probability * result.probability,
                                                    choices=state.choices + (f"{where}: {result.label}",)), True))
                    if result.probability < 1:
                        rest = 1 - result.probability
                        still.append((state.changed(probability=state.probability * rest,
                                                    choices=state.choices + (f"{where}: {result.otherwise}",)), False))
                else:
                    still.append((state, result))
            branches = still
        return branches

    def walk_chain(self, s: State, table: Table, chain_name: str, node: NodeContext) -> list[tuple[State, ChainEnding]]:
        """Every way the walk leaves `chain_name`: (state, END | RETURN | a verdict | NAT)."""
        chain = table.chain(chain_name)
        rules = self._rules(table, chain, s.packet)
        results: list[tuple[State, ChainEnding]] = []
        # Work items: a branch and the index of the next rule to look at, maybe with that rule's
        # match already decided (after a split).
        work: list[tuple[State, int, bool | None]] = [(s, 0, None)]
        while work:
            state, i, decided = work.pop()
            while True:
                if i >= len(rules):
                    results.append((state, "END"))
                    break
                rule = rules[i]
                if decided is None:
                    try:
                        branches = self._match(rule, state, node)
                    except Undecided as why:
                        reason = f"{table.name} {chain.name} rule {rule.position}: {why}"
                        results.append((state.step(table.name, chain.name, rule, "undecided").changed(reason=reason),
                                        "UNDECIDED"))
                        break
                    for other, other_matched in branches[1:]:
                        work.append((other, i, other_matched))
                    state, matched = branches[0]
                else:
                    matched, decided = decided, None
                i += 1
                if not matched:
                    continue
                outcome = self._apply(state, table, chain, rule, node)
                if outcome is None:  # a rule without a target, or one that lets the packet go on
                    continue
                if isinstance(outcome, State):
                    state = outcome
                    continue
                # A jump or goto came back with its branches; anything else ends this branch here.
                kind, payload = outcome
                if kind == "jump":
                    for sub_state, how in payload:
                        if how in ("END", RETURN):
                            work.append((sub_state, i, None))
                        else:
                            results.append((sub_state, how))
                elif kind == "goto":
                    for sub_state, how in payload:
                        results.append((sub_state, "END" if how in ("END", RETURN) else how))
                else:
                    results.extend(payload)
                break
        return results

    def _apply(self, s: State, table: Table, chain: Chain, rule: Rule, node: NodeContext):
        """What the rule's target does: None (go on), a new State (go on, changed), or (kind, branches)."""
        target = rule.target
        if target is None:
            return s.step(table.name, chain.name, rule, "matched (no target, counts only)")
        name = target.name
        if table.has_chain(name):
            verb = "goto" if target.goto else "jump to"
            entered = s.step(table.name, chain.name, rule, f"{verb} {name}")
            return ("goto" if target.goto else "jump"), self.walk_chain(entered, table, name, node)
        if name == "REJECT":
            reply = target.option("--reject-with")
            how = reply.value if reply is not None else protocols.REJECT_DEFAULT[s.packet.family]
            return "end", [(s.step(table.name, chain.name, rule, f"REJECT with {how}"), name)]
        if name in TERMINAL_VERDICTS:
            return "end", [(s.step(table.name, chain.name, rule, name), name)]
        if name == "RETURN":
            return "end", [(s.step(table.name, chain.name, rule, "RETURN"), RETURN)]
        if name == "MARK":
            mark = _apply_mark(s.mark, target)
            return s.step(table.name, chain.name, rule, f"mark {s.mark:#x} -> {mark:#x}").changed(mark=mark)
        if name == "CONNMARK":
            return self._connmark(s, table, chain, rule)
        if name in ("NOTRACK",) or (name == "CT" and target.option("--notrack")):
            return s.step(table.name, chain.name, rule, "not tracked by conntrack").changed(
                untracked=True, ctstate=frozenset({"UNTRACKED"}))
        if name in CONTINUING_TARGETS:
            return s.step(table.name, chain.name, rule, f"{name} (goes on)")
        if name in NAT_TARGETS:
            return "end", [(self._nat(s, table, chain, rule, node), "NAT")]
        reason = f"{table.name} {chain.name} rule {rule.position}: target {name} is not modelled"
        return "end", [(s.step(table.name, chain.name, rule, f"{name} (unsupported)").changed(reason=reason),
                        "UNSUPPORTED")]

    @staticmethod
    def _connmark(s: State, table: Table, chain: Chain, rule: Rule) -> State:
        target = rule.target
        assert target is not None
        nfmask = _mask(target, "--nfmask", "--mask")
        ctmask = _mask(target, "--ctmask", "--mask")
        if target.option("--save-mark"):
            ctmark = (s.ctmark & ~ctmask & 0xFFFFFFFF) ^ (s.mark & nfmask)
            return s.step(table.name, chain.name, rule, f"connmark saved {ctmark:#x}").changed(ctmark=ctmark)
        if target.option("--restore-mark"):
            mark = (s.mark & ~nfmask & 0xFFFFFFFF) ^ (s.ctmark & ctmask)
            return s.step(table.name, chain.name, rule, f"mark restored {mark:#x}").changed(mark=mark)
        ctmark = _apply_mark(s.ctmark, target)
        return s.step(table.name, chain.name, rule, f"connmark {s.ctmark:#x} -> {ctmark:#x}").changed(ctmark=ctmark)

    @staticmethod
    def _nat(s: State, table: Table, chain: Chain, rule: Rule, node: NodeContext) -> State:
        target = rule.target
        assert target is not None
        name = target.name
        p = s.packet
        if name == "DNAT":
            ip, port = _nat_address(target.option("--to-destination").value, p.dst)  # type: ignore[union-attr]
            new = p.with_destination(ip, port)
            return s.step(table.name, chain.name, rule, f"DNAT to {endpoint_text(ip, new.dport)}").changed(
                packet=new, dnat=(ip, new.dport), after_dnat=new, ctstate=s.ctstate | {"DNAT"})
        if name == "REDIRECT":
            if s.hook == "OUTPUT":
                # A locally sent packet is redirected to the loopback address of its family.
                ip = LOOPBACK_ADDRESS[p.family]
            else:
                ip = node.source_for(s.iif or "lo", p.src)
            ports = target.option("--to-ports")
            port = int(ports.value.split("-")[0]) if ports else p.dport
            new = p.with_destination(ip, port)
            return s.step(table.name, chain.name, rule, f"REDIRECT to {endpoint_text(ip, port)}").changed(
                packet=new, dnat=(ip, port), after_dnat=new, ctstate=s.ctstate | {"DNAT"})
        if name == "SNAT":
            ip, port = _nat_address(target.option("--to-source").value, p.src)  # type: ignore[union-attr]
            random_port = target.option("--random-fully") is not None
            new = p.with_source(ip, port, keep_port=not random_port)
            return s.step(table.name, chain.name, rule, f"SNAT to {endpoint_text(ip, new.sport)}").changed(
                packet=new, snat=(ip, new.sport), ctstate=s.ctstate | {"SNAT"})
        # MASQUERADE: the source address the kernel would pick on the way out.
        ip = node.source_for(s.oif or "", p.dst)
        random_port = target.option("--random-fully") is not None or target.option("--random") is not None
        new = p.with_source(ip, None, keep_port=not random_port)
        how = " (random source port)" if random_port else ""
        return s.step(table.name, chain.name, rule, f"MASQUERADE to {ip}{how}").changed(
            packet=new, snat=(ip, new.sport), masquerade=True, ctstate=s.ctstate | {"SNAT"})


def _apply_mark(value: int, target) -> int:
    for o in target.options:
        number, mask = values.mark(o.value)
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
            return values.unsigned(o.value)
    return values.U32_MAX


def _nat_address(value: str, unchanged: Address) -> tuple[Address, int | None]:
    """The address (and port) a NAT target rewrites to: the first of a range, as the kernel's first choice;
    `unchanged` when the target gives only ports (`--to-destination :8080`)."""
    first, _, ports = values.nat_range(value, unchanged.version)
    return first or unchanged, ports[0] if ports else None
