"""Read what the kernel recorded: `xtables-monitor --trace` or `nft monitor trace` events, nft rule handles,
conntrack entries.

IPv6 flows are traced with `nft -a monitor trace`: xtables-monitor v1.8.9 `--trace -6` exits ("Parsing
nftables rule failed", after "unsupported layer 4 protocol value") at the first traced ip6 rule that matches
`-p tcp`, such as kube-proxy's KUBE-SERVICES rules. Both tools name a rule by its handle, which is all the lab
reads of an event besides its verdict.

The kernel names rules by their nf_tables handle; `nft -a list ruleset` lists each chain's rules in order
with their handles, which gives each handle its position as `iptables -L --line-numbers` counts it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from iptables_lens.iptables.model import BUILTIN_CHAINS

_TRACE = re.compile(r"^ TRACE: \d+ (?P<id>[0-9a-f]+) (?P<table>\w+):(?P<chain>[^: ]+):(?P<kind>rule|policy|return)"
                    r"(?::(?P<rest>\S*))?(?:\s+(?P<text>.*))?$")
_NFT_TRACE = re.compile(r"^trace id (?P<id>[0-9a-f]+) ip6? (?P<table>\S+) (?P<chain>\S+) "
                        r"(?:rule .*# handle (?P<handle>\d+) \(verdict (?P<verdict>[^)]*)\)|policy (?P<policy>\w+))"
                        r"(?: meta mark \S+)?\s*$")  # nft adds the packet's mark to an event once it has one
_PACKET = re.compile(r"^PACKET: \d+ (?P<id>[0-9a-f]+) (?P<fields>.*)$")
_NFT_TABLE = re.compile(r"^table (?P<family>ip6?) (?P<name>\S+) \{")
_NFT_CHAIN = re.compile(r"^\s*chain (\S+) \{")
_NFT_HANDLE = re.compile(r"# handle (\d+)\s*$")
_CONNTRACK = re.compile(
    r"^(?P<proto>tcp|udp|sctp)\s+\d+\s+(?:\d+\s+)?(?:[A-Z_]+\s+)?"
    r"src=(?P<osrc>\S+) dst=(?P<odst>\S+) sport=(?P<osport>\d+) dport=(?P<odport>\d+).*?"
    r"src=(?P<rsrc>\S+) dst=(?P<rdst>\S+) sport=(?P<rsport>\d+) dport=(?P<rdport>\d+)"
)

# xtables-monitor prints some nf_tables verdicts as their number (NFT_RETURN is -5).
_NFT_VERDICT_CODES = {"0xffffffff": "CONTINUE", "0xfffffffe": "BREAK", "0xfffffffb": "RETURN"}


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


def chain_handles(nft_listing: str, family: int = 4) -> dict[tuple[str, str], list[int]]:
    """(table, chain) -> the handles of its rules in order, from `nft -a list ruleset`, of the `family`'s
    tables (`table ip nat` for 4, `table ip6 nat` for 6: iptables-nft and ip6tables-nft each have theirs)."""
    handles: dict[tuple[str, str], list[int]] = {}
    table = chain = None
    wanted = "ip6" if family == 6 else "ip"
    for line in nft_listing.splitlines():
        m = _NFT_TABLE.match(line)
        if m:
            table, chain = (m.group("name") if m.group("family") == wanted else None), None
            continue
        if line.startswith("table "):
            table = chain = None  # another family's table (inet, arp, bridge, netdev)
            continue
        m = _NFT_CHAIN.match(line)
        if m and table:
            chain = m.group(1)
            handles[(table, chain)] = []
            continue
        h = _NFT_HANDLE.search(line)
        if h and table and chain:
            handles[(table, chain)].append(int(h.group(1)))
    return handles


def handle_positions(handles: dict[tuple[str, str], list[int]], skip: frozenset[tuple[str, str, int]] = frozenset()
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


def first_packet_steps(monitor_output: str, positions: dict[tuple[str, str, int], int],
                       skip: frozenset[tuple[str, str, int]] = frozenset(),
                       tables: frozenset[str] | None = None) -> list[KernelStep]:
    """The steps of the first traced packet in `xtables-monitor --trace` output.

    `skip` names (table, chain, handle) of rules the lab added itself (its TRACE rule); `tables`, when
    given, keeps only events of those tables (a raw table the lab created is not part of the dump).
    """
    first_id = None
    hook = "?"
    steps: list[KernelStep] = []
    for event_id, table, chain, kind, handle, verdict in _events(monitor_output):
        if first_id is None:
            first_id = event_id
        if event_id != first_id:
            continue
        if chain in BUILTIN_CHAINS.get(table, ()):
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


def _events(monitor_output: str):
    """(packet id, table, chain, rule|policy|return, handle, verdict) of each trace event, in xtables-monitor's
    verdict words (JUMP:X, ACCEPT, ...) whichever tool printed it."""
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
        m = _NFT_TRACE.match(line)
        if m and m["policy"]:
            yield m["id"], m["table"], m["chain"], "policy", None, m["policy"].upper()
        elif m:
            word, _, target = m["verdict"].partition(" ")
            verdict = f"{word.upper()}:{target}" if target else word.upper()  # "jump X" is xtables' JUMP:X
            yield m["id"], m["table"], m["chain"], "rule", int(m["handle"]), verdict


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
