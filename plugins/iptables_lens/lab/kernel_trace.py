"""Read what the kernel recorded: `xtables-monitor --trace` or `nft monitor trace` events, nft rule handles,
conntrack entries.

IPv6 flows of an iptables scenario are traced with `nft -a monitor trace`: xtables-monitor v1.8.9 `--trace -6`
exits ("Parsing nftables rule failed", after "unsupported layer 4 protocol value") at the first traced ip6 rule
that matches `-p tcp`, such as kube-proxy's KUBE-SERVICES rules. An nft ruleset's flows are traced with
`nft -a monitor trace` too. Both tools name a rule by its handle, which is all the lab reads of an event besides
its verdict.

The kernel names rules by their nf_tables handle; `nft -a list ruleset`, read by the nft parser
(`nft.model.Rule.handle`), lists each chain's rules in order with their handles, which gives each handle its
position as `iptables -L --line-numbers` counts it and as the tracer's steps number an nft chain's rules.

What `nft -a monitor trace` prints, as checked with nft 1.0.6 on Linux 6.18 (`tests/test_lab_nft_trace.py`
keeps the checks), one line an event, `trace id ID FAMILY TABLE CHAIN ` and then:
- `packet: ...` as the packet enters a base chain, which the lab does not need;
- `rule RULE # handle N (verdict V)` for each rule whose matches all matched, RULE as `nft -a list` prints it
  (its comment may hold any text, even "(verdict x) # handle 9": the handle is the last one on the line);
  `unknown rule handle N (verdict V)` when nft cannot find the rule;
- `policy accept` or `policy drop` when a base chain runs out of rules, then ` meta mark 0x...` once the
  packet has a mark.
V is `continue` for a rule without a verdict (a counter, `meta mark set`, `update @set`, `ct mark set`);
`jump X` and `goto X`, also where a verdict map chose X (`ip daddr . meta l4proto . th dport vmap @m`) or a
`numgen random mod 2 vmap { 0 : goto A, 1 : goto B }` did, naming the branch taken; `accept` for a nat
statement (`dnat to`, `snat to`, `masquerade`, `redirect to`); `drop` for `reject` in any form (the answer is
sent first); `return`, `accept`, `drop` for those verdicts written out. A rule that does not match, a verdict
map lookup that finds no element, and a regular chain that runs out of rules (the walk goes back to the rule
after the jump) print nothing; `return` in a base chain is followed by the chain's policy. Names are printed
as the kernel holds them, unquoted (nft's trace_print_hdr; kube-proxy's chain names hold "/" and "__", and a
name made over netlink may hold a space), so the lab reads them as the listing declares them, the longest
table and chain that fit, rather than by splitting on spaces.

At one hook and priority the base chain registered last runs first (the kernel puts a new hook before those
of its priority; checked for nat and filter chains, in one transaction and in two): kube-proxy's `nat-prerouting`
runs before iptables-nft's `nat PREROUTING`, both at dstnat, on a node where kube-proxy came last.

An nft `nat` chain sees no packet of a network namespace until some rule there uses connection tracking (a `ct`
expression or a nat statement): kube-proxy's rulesets have both. The lab's own table, which sets `meta nftrace`,
matches addresses, ports and TCP flags only, and does not turn connection tracking on (checked: with it alone
a nat chain's rules stay untraced).
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass

from iptables_lens.iptables.model import BUILTIN_CHAINS, Dump
from iptables_lens.kube.nft_services import NFT_FAMILIES
from iptables_lens.nft import parse_ruleset
from iptables_lens.nft.evaluate import verdict_of_action
from iptables_lens.nft.model import Ruleset

_TRACE = re.compile(r"^ TRACE: \d+ (?P<id>[0-9a-f]+) (?P<table>\w+):(?P<chain>[^: ]+):(?P<kind>rule|policy|return)"
                    r"(?::(?P<rest>\S*))?(?:\s+(?P<text>.*))?$")
_NFT_EVENT = re.compile(r"^trace id (?P<id>[0-9a-f]+) (?P<family>\S+) (?P<rest>.*)$")
# nft adds the packet's mark to a policy event once it has one.
_NFT_RULE = re.compile(r"(?:# handle |^unknown rule handle )(?P<handle>\d+) \(verdict (?P<verdict>.*)\)"
                       r"(?: meta mark \S+)?\s*$")
_NFT_POLICY = re.compile(r"^(?P<policy>accept|drop)\b")
_NFT_KINDS = ("rule ", "unknown rule handle ", "policy ", "verdict ", "packet: ", "conntrack: ")
_PACKET = re.compile(r"^PACKET: \d+ (?P<id>[0-9a-f]+) (?P<fields>.*)$")
_CONNTRACK = re.compile(
    r"^(?P<proto>tcp|udp|sctp)\s+\d+\s+(?:\d+\s+)?(?:[A-Z_]+\s+)?"
    r"src=(?P<osrc>\S+) dst=(?P<odst>\S+) sport=(?P<osport>\d+) dport=(?P<odport>\d+).*?"
    r"src=(?P<rsrc>\S+) dst=(?P<rdst>\S+) sport=(?P<rsport>\d+) dport=(?P<rdport>\d+)"
)

# xtables-monitor prints some nf_tables verdicts as their number (NFT_RETURN is -5).
_NFT_VERDICT_CODES = {"0xffffffff": "CONTINUE", "0xfffffffe": "BREAK", "0xfffffffb": "RETURN"}

Handles = dict[tuple[str, str], list[int]]
"""(table, chain) -> the handles of the chain's rules in order."""


@dataclass(frozen=True)
class KernelStep:
    """One event of the kernel's trace, with the rule's position instead of its handle."""

    hook: str
    table: str
    chain: str
    rule: int | None  # None for a chain's policy
    verdict: str  # JUMP:X, GOTO:X, CONTINUE, ACCEPT, DROP, RETURN, or the policy

    def __str__(self) -> str:
        where = f"#{self.rule}" if self.rule is not None else "policy"
        return f"{self.hook} {self.table} {self.chain} {where}: {self.verdict}"


@dataclass(frozen=True)
class ConntrackLine:
    protocol: str
    original: tuple[str, str, int, int]
    reply: tuple[str, str, int, int]


@dataclass(frozen=True)
class TracedNames:
    """How the kernel's trace names the tables of a node's dump (bare for an iptables dump, "FAMILY NAME" for
    an nft ruleset), and an nft ruleset's base chains with their hooks (None for an iptables dump, whose
    base chains iptables names)."""

    tables: frozenset[str]
    hooks: dict[tuple[str, str], str] | None

    @classmethod
    def of(cls, dump: Dump | Ruleset) -> TracedNames:
        if isinstance(dump, Ruleset):
            return cls(frozenset(table_name(t.family, t.name) for t in dump.tables), base_chain_hooks(dump))
        return cls(frozenset(t.name for t in dump.tables), None)


def chain_handles(nft_listing: str, family: int | None = 4, leave_out: frozenset[str] = frozenset()) -> Handles:
    """(table, chain) -> the handles of its rules in order, from `nft -a list ruleset`.

    `family` 4 or 6: the tables of that family (`table ip nat` for 4, `table ip6 nat` for 6: iptables-nft and
    ip6tables-nft each have theirs), named as iptables-save names them (`nat`). None: the tables of every
    family, named "FAMILY NAME" as the tracer's steps through an nft ruleset name them (`ip kube-proxy`), but
    those in `leave_out` (the lab's own)."""
    return ruleset_handles(parse_ruleset(nft_listing, "nft -a list ruleset"), family, leave_out)


def ruleset_handles(ruleset: Ruleset, family: int | None = None, leave_out: frozenset[str] = frozenset()) -> Handles:
    """`chain_handles` of a ruleset already read."""
    wanted = NFT_FAMILIES.get(family) if family is not None else None
    handles: Handles = {}
    for table in ruleset.tables:
        name = table_name(table.family, table.name, family)
        if (wanted is not None and table.family != wanted) or name in leave_out:
            continue
        for chain in table.chains:
            handles[(name, chain.name)] = [r.handle for r in chain.rules if r.handle is not None]
    return handles


def table_name(family: str, name: str, dialect_family: int | None = None) -> str:
    """How a kernel step names a table: bare (`nat`) for an iptables dump of family `dialect_family`, "FAMILY
    NAME" (`ip kube-proxy`) for an nft ruleset (`dialect_family` None), as the tracer's steps name them."""
    return name if dialect_family is not None else f"{family} {name}"


def base_chain_hooks(ruleset: Ruleset) -> dict[tuple[str, str], str]:
    """(table, chain) -> the hook (PREROUTING, ...) of each base chain of the ruleset, tables named as
    `chain_handles(..., None)` names them: where the kernel's trace of an nft ruleset enters a hook."""
    return {(table_name(t.family, t.name), c.name): c.hook.hook.upper()
            for t in ruleset.tables for c in t.chains if c.hook is not None}


def handle_positions(handles: Handles, skip: frozenset[tuple[str, str, int]] = frozenset()
                     ) -> dict[tuple[str, str, int], int]:
    """(table, chain, handle) -> position, not counting the rules in `skip` (the lab's own TRACE rule)."""
    positions = {}
    for (table, chain), numbers in handles.items():
        position = 0
        for handle in numbers:
            if (table, chain, handle) in skip:
                continue
            position += 1
            positions[(table, chain, handle)] = position
    return positions


def first_packet_steps(monitor_output: str, handles: Handles, skip: frozenset[tuple[str, str, int]] = frozenset(),
                       tables: frozenset[str] | None = None,
                       hooks: Mapping[tuple[str, str], str] | None = None) -> list[KernelStep]:
    """The steps of the first traced packet in `xtables-monitor --trace` or `nft -a monitor trace` output.

    `handles` (from `chain_handles`) also says how tables are named: bare for an iptables dump, "FAMILY NAME"
    for an nft ruleset. `skip` names (table, chain, handle) of rules the lab added itself (its TRACE
    rule); `tables`, when given, keeps only events of those tables (a raw table or a trace table the lab
    created is not part of the dump). `hooks` gives an nft ruleset's base chains and their hooks
    (`base_chain_hooks`); without it, a chain is a base chain when iptables names it so (nat PREROUTING).
    """
    first_id = None
    hook = "?"
    steps: list[KernelStep] = []
    positions = handle_positions(handles, skip)
    for event_id, table, chain, kind, handle, verdict in _events(monitor_output, set(handles)):
        if first_id is None:
            first_id = event_id
        if event_id != first_id:
            continue
        if hooks is not None:
            hook = hooks.get((table, chain), hook)
        elif chain in BUILTIN_CHAINS.get(table, ()):
            hook = chain
        if tables is not None and table not in tables:
            continue
        if kind == "return":
            continue  # the end of a user chain: implied by the next event
        if kind == "policy":
            steps.append(KernelStep(hook, table, chain, None, f"policy {verdict}"))
            continue
        assert handle is not None
        if (table, chain, handle) in skip:
            continue
        position = positions.get((table, chain, handle))
        if position is None:
            raise ValueError(f"the kernel traced {table} {chain} handle {handle}, which `nft -a list` does not show")
        steps.append(KernelStep(hook, table, chain, position, verdict))
    return steps


Event = tuple[str, str, str, str, "int | None", str]
"""(packet id, table, chain, rule|policy|return, handle, verdict) of one trace event."""
Names = dict[tuple[str | None, str], tuple[str, str]]
"""(family or None for any, "TABLE CHAIN" as nft's trace prints them) -> (table, chain) as the lab names them."""


def _names(known: set[tuple[str, str]]) -> Names:
    """How nft's trace prints each (table, chain) of `known`: a table named "FAMILY NAME" (an nft ruleset's)
    is printed as FAMILY, then NAME; a bare one (an iptables dump's; no space in it) follows any family."""
    names: Names = {}
    for table, chain in known:
        family, _, name = table.partition(" ")
        names[(family, f"{name} {chain}") if name else (None, f"{table} {chain}")] = (table, chain)
    return names


def _events(monitor_output: str, known: set[tuple[str, str]]) -> Iterator[Event]:
    """Each trace event, in xtables-monitor's verdict words (JUMP:X, ACCEPT, ...) whichever tool printed it;
    `known`: the (table, chain) names of the listing, by which nft's events are read."""
    names = _names(known)
    for line in monitor_output.splitlines():
        m = _TRACE.match(line)
        if m:
            kind, rest = m.group("kind"), m.group("rest") or ""
            if kind == "rule":
                handle_text, _, verdict = rest.partition(":")
                yield m["id"], m["table"], m["chain"], kind, int(handle_text, 16), _NFT_VERDICT_CODES.get(verdict, verdict)
            else:
                yield m["id"], m["table"], m["chain"], kind, None, rest
            continue
        event = _nft_event(line, names)
        if event is not None:
            yield event


def _nft_event(line: str, names: Names) -> Event | None:
    """One line of `nft -a monitor trace` as an event; None for a packet's or conntrack's line, or another
    line."""
    m = _NFT_EVENT.match(line)
    if m is None:
        return None
    where = _where(m["family"], m["rest"], names)
    if where is None:
        return None
    table, chain, what = where
    if what.startswith("policy "):
        policy = _NFT_POLICY.match(what[len("policy "):])
        return (m["id"], table, chain, "policy", None, policy["policy"].upper()) if policy else None
    if what.startswith("verdict "):
        return m["id"], table, chain, "return", None, what[len("verdict "):].split(" meta mark ")[0].strip()
    rule = _NFT_RULE.search(what) if what.startswith(("rule ", "unknown rule handle ")) else None
    if rule is None:
        return None  # a packet's or conntrack's line
    word, _, target = rule["verdict"].partition(" ")
    verdict = f"{word.upper()}:{target}" if target else word.upper()  # "jump X" is xtables' JUMP:X
    return m["id"], table, chain, "rule", int(rule["handle"]), verdict


def _where(family: str, rest: str, names: Names) -> tuple[str, str, str] | None:
    """(table, chain, what follows them) of an event's text after its family: the longest table and chain of
    the listing it starts with, as the lab names them; failing that (a table the lab does not know), its first
    two words."""
    best = None
    for space, char in enumerate(rest):
        if char != " " or not rest.startswith(_NFT_KINDS, space + 1):
            continue
        head = rest[:space]
        found = names.get((family, head)) or names.get((None, head))
        if found is not None:
            best = (*found, rest[space + 1:])
    if best is not None:
        return best
    words = rest.split(" ", 2)
    return (f"{family} {words[0]}", words[1], words[2]) if len(words) == 3 else None


def conntrack_lines(output: str) -> list[ConntrackLine]:
    """Entries of `conntrack -L` output."""
    entries = []
    for line in output.splitlines():
        m = _CONNTRACK.match(line)
        if m:
            entries.append(ConntrackLine(
                m.group("proto"),
                (m.group("osrc"), m.group("odst"), int(m.group("osport")), int(m.group("odport"))),
                (m.group("rsrc"), m.group("rdst"), int(m.group("rsport")), int(m.group("rdport"))),
            ))
    return entries


def tracer_steps(path) -> list[KernelStep]:
    """A tracer outcome's path in the kernel trace's terms, to compare the two."""
    steps = []
    for step in path:
        if step.table is None:
            continue
        action = step.action
        if action.startswith("policy "):
            verdict = action
        elif " " in step.table:  # an nft ruleset's table, "ip kube-proxy": iptables' have no space
            word, _, target = verdict_of_action(action).partition(" ")
            verdict = f"{word.upper()}:{target}" if target else word.upper()
        elif action.startswith("jump to "):
            verdict = f"JUMP:{action[len('jump to '):]}"
        elif action.startswith("goto "):
            verdict = f"GOTO:{action[len('goto '):]}"
        elif action in ("ACCEPT", "DROP", "RETURN"):
            verdict = action
        elif action.startswith("REJECT"):
            verdict = "DROP"  # REJECT sends its answer, then the kernel drops the packet
        elif action.startswith(("DNAT to", "SNAT to", "MASQUERADE", "REDIRECT")):
            verdict = "ACCEPT"  # a NAT target ends the nat table with an accept
        else:
            verdict = "CONTINUE"
        steps.append(KernelStep(step.hook, step.table, step.chain, step.rule, verdict))
    return steps
