"""Plain-text renderings for the terminal and for pages that show command output."""

from __future__ import annotations

from iptables_lens.gcpause import paused_gc
from iptables_lens.iptables.diff import ChangeKind, DumpDiff
from iptables_lens.iptables.explain import explain_rule
from iptables_lens.iptables.fmt import format_rule
from iptables_lens.iptables.model import Dump
from iptables_lens.kube.names import decode_chain, describe_family, family
from iptables_lens.kube.services import PathStep, ServiceIndex
from iptables_lens.nft.model import Ruleset
from iptables_lens.render.json import ExplainedChain, ExplainedRule, ExplainedSet, ExplainOutput, explain_output
from iptables_lens.render.nft_explain import nft_explain_views, set_lines
from iptables_lens.trace.packet import Outcome, Trace


def outcome_summary(outcome: Outcome) -> str:
    parts = [f"{outcome.probability}", outcome.verdict]
    if outcome.endpoint:
        parts.append(f"DNAT to {outcome.endpoint}")
    if outcome.snat:
        how = "masqueraded to" if outcome.masquerade else "SNAT to"
        parts.append(f"{how} {outcome.snat[0]}")
    return ", ".join(parts)


def trace_lines(result: Trace) -> list[str]:
    """A readable step list per outcome."""
    lines = [f"{result.packet} on {result.node} ({result.origin}): {len(result.outcomes)} outcome(s)"]
    for number, outcome in enumerate(result.outcomes, 1):
        lines.append("")
        lines.append(f"outcome {number}: {outcome_summary(outcome)}")
        lines.append(f"  delivery: {outcome.delivery}")
        if outcome.reason:
            lines.append(f"  why: {outcome.reason}")
        for choice in outcome.choices:
            lines.append(f"  branch: {choice}")
        if outcome.conntrack:
            lines.append(f"  conntrack: {outcome.conntrack}")
        for step in outcome.path:
            where = " ".join(x for x in (step.table, step.chain) if x)
            rule = f" #{step.rule}" if step.rule else ""
            line = f" (line {step.line})" if step.line else ""
            lines.append(f"  {step.hook:<11} {where}{rule}{line}: {step.action}" if where else
                         f"  {step.hook:<11} {step.action}")
    return lines


# -- explain ------------------------------------------------------------------------------------------------


# The views `explain` shows are the models of its documented JSON: one shape for the terminal, the pipe
# and scripts.
RuleView = ExplainedRule
ChainView = ExplainedChain


def chain_heading(view: ChainView) -> tuple[str, str]:
    """A chain's name (`table chain`, `family table chain` for nft) and what it is: built-in with its policy
    (an nft base chain with its hook, type and priority), and its kube-proxy family."""
    name = f"{view.table_family} {view.table} {view.chain}" if view.table_family else f"{view.table} {view.chain}"
    family = f"kube-proxy {view.family}: {view.family_description}" if view.family else ""
    if view.hook is not None:
        return name, "; ".join(x for x in (f"base chain: {view.hook.description}", family) if x)
    if view.builtin:
        return name, f"built-in, policy {view.policy or 'ACCEPT'}"
    return name, family


def explain_views(dump: Dump | Ruleset, service: str | None = None, chain: str | None = None) -> list[ChainView]:
    """The chains to show, each with its explained rules. With `service`, only what concerns it, in the order
    a packet meets it; with `chain`, only chains of that name."""
    return explain_view(dump, service, chain).chains


def explain_view(dump: Dump | Ruleset, service: str | None = None, chain: str | None = None) -> ExplainOutput:
    """What `explain` shows of `dump`: its chains (as `explain_views`) and, for an nft ruleset, its sets and
    maps with their elements (only the Service's elements with `service`; none with `chain`)."""
    with paused_gc():
        if isinstance(dump, Ruleset):
            chains, sets = nft_explain_views(dump, service, chain)
            return explain_output(dump.source, chains, sets)
        return explain_output(dump.source, _explain_views(dump, service, chain))


def _explain_views(dump: Dump, service: str | None, chain: str | None) -> list[ChainView]:
    if service is not None:
        selected = ServiceIndex.of(dump).path(service)
    else:
        selected = [PathStep(t, c, None) for t in dump.tables for c in t.chains if chain is None or c.name == chain]
    views = []
    for step in selected:
        table, ch, only = step.table, step.chain, step.positions
        kind = family(ch.name)
        rules = []
        # Only the rules shown are explained: for one Service, two rules of a 10,000-rule KUBE-SERVICES.
        for rule in ch.rules:
            if only is not None and rule.position not in only:
                continue
            meaning = explain_rule(rule, table)
            rules.append(RuleView(position=rule.position, line=rule.line, text=format_rule(rule),
                                  summary=meaning.summary, conditions=list(meaning.conditions), action=meaning.action,
                                  comment=meaning.comment, service=meaning.service))
        decoded = decode_chain(table, ch.name)
        name_explained = None
        if decoded is not None:
            name_explained = decoded.explanation + (": it verifies" if decoded.verified else "")
        views.append(ChainView(table=table.name, chain=ch.name, builtin=ch.builtin, policy=ch.policy, family=kind,
                               family_description=describe_family(kind, table.name) if kind else None,
                               name_explained=name_explained, rules=rules))
    return views


def explain_lines(views: list[ChainView], sets: list[ExplainedSet] | None = None) -> list[str]:
    """Plain text for a pipe: one block per chain, one line per rule; then an nft ruleset's sets and maps, one
    line per element."""
    lines: list[str] = []
    for view in views:
        name, what = chain_heading(view)
        head = f"{name} ({what})" if what else name
        lines.append(head)
        if view.name_explained:
            lines.append(f"  name: {view.name_explained}")
        if not view.rules:
            lines.append("  (no rules)")
        for rule in view.rules:
            lines.append(f"  #{rule.position} line {rule.line}: {rule.summary}")
            lines.append(f"      {rule.text}")
        lines.append("")
    if sets:
        lines.extend(set_lines(sets))
    return lines[:-1] if lines else lines


# -- diff -----------------------------------------------------------------------------------------------------


# How a line of a diff marks its change: `!` (as a context diff marks a changed line) for what changed or moved.
SIGNS: dict[ChangeKind, str] = {"added": "+", "removed": "-", "changed": "!", "moved": "!"}


def diff_lines(changes: DumpDiff) -> list[str]:
    """A line per Service group with its summary, then a line per change, each in its dialect's notation."""
    lines = []
    for group in changes.services:
        lines.append(f"{group.service or 'rules of no Service'}: {group.summary}")
        for change in group.changes():
            lines.append(f"  {SIGNS[change.kind]} {change.line}")
    if changes.noise:
        kinds = sorted({n.kind for n in changes.noise})
        lines.append(f"noise: {len(changes.noise)} difference(s) that mean nothing ({', '.join(kinds)}), folded")
    if not changes.services:
        lines.append("no change to the rules")
    return lines
