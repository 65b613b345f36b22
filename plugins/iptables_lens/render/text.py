"""Plain-text renderings for the terminal and for pages that show command output."""

from __future__ import annotations

from iptables_lens.gcpause import paused_gc
from iptables_lens.iptables.diff import DumpDiff
from iptables_lens.iptables.explain import explain_rule
from iptables_lens.iptables.fmt import format_rule
from iptables_lens.iptables.model import Chain, Dump, Table
from iptables_lens.kube.names import decode_chain, describe_family, family, service_of_comment
from iptables_lens.render.json import ExplainedChain, ExplainedRule
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
    """A chain's name (`table chain`) and what it is: built-in with its policy, or its kube-proxy family."""
    if view.builtin:
        return f"{view.table} {view.chain}", f"built-in, policy {view.policy or 'ACCEPT'}"
    if view.family:
        return f"{view.table} {view.chain}", f"kube-proxy {view.family}: {view.family_description}"
    return f"{view.table} {view.chain}", ""


def explain_views(dump: Dump, service: str | None = None, chain: str | None = None) -> list[ChainView]:
    """The chains to show, each with its explained rules. With `service`, only what concerns it, in the order
    a packet meets it; with `chain`, only chains of that name."""
    with paused_gc():
        return _explain_views(dump, service, chain)


def _explain_views(dump: Dump, service: str | None, chain: str | None) -> list[ChainView]:
    if service is not None:
        selected = service_path(dump, service)
    else:
        selected = [(t, c, None) for t in dump.tables for c in t.chains if chain is None or c.name == chain]
    views = []
    for table, ch, only in selected:
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


def service_path(dump: Dump, service: str) -> list[tuple[Table, Chain, set[int] | None]]:
    """The chains that concern `service` (`namespace/name`, or with `:port`), in the order a packet meets them:
    from the built-in chains through kube-proxy's entry chains into the Service's own chains. For shared chains
    (KUBE-SERVICES, KUBE-NODEPORTS, ...) only the rules that name the Service are kept."""
    result: list[tuple[Table, Chain, set[int] | None]] = []
    for table in dump.tables:
        owned = {c.name for c in table.chains if not c.builtin and _owned_by(c, service)}
        if not owned:
            continue
        walk = _PathWalk(table, owned, service, result)
        for chain in table.chains:
            if chain.builtin:
                walk.visit(chain)
        for name in sorted(owned - walk.seen):  # owned chains nothing reaches still belong to the Service
            walk.visit(table.chain(name))
    return result


class _PathWalk:
    """Depth-first from the built-in chains, keeping the rules on the way to a Service's own chains."""

    def __init__(self, table: Table, owned: set[str], service: str, result: list):
        self.table, self.owned, self.service, self.result = table, owned, service, result
        self.seen: set[str] = set()

    def visit(self, chain: Chain, whole: bool = False) -> None:
        if chain.name in self.seen:
            return
        self.seen.add(chain.name)
        table, owned = self.table, self.owned
        whole = whole or chain.name in owned
        keep: set[int] = set()
        onward: list[str] = []
        for rule in chain.rules:
            target = rule.target
            goes_to_owned = target is not None and target.name in owned
            if whole or goes_to_owned or _names(rule.comment, self.service):
                keep.add(rule.position)
                if target is not None and table.has_chain(target.name):
                    onward.append(target.name)
            elif target is not None and table.has_chain(target.name) and _leads_to(table, target.name, owned):
                keep.add(rule.position)
                onward.append(target.name)
        if keep:
            self.result.append((table, chain, None if whole else keep))
        for name in onward:
            # A chain the Service's own chains jump to (KUBE-MARK-MASQ) is on its path as a whole.
            self.visit(table.chain(name), whole=chain.name in owned)


def _names(comment: str | None, service: str) -> bool:
    found = service_of_comment(comment)
    return found is not None and (found == service or found.split(":")[0] == service)


def _owned_by(chain: Chain, service: str) -> bool:
    """Whether a per-Service chain belongs to `service`: its first commented rule names it."""
    if family(chain.name) not in _PER_SERVICE:
        return False
    for rule in chain.rules:
        comment = rule.comment
        if comment:
            return _names(comment, service)
    return False


_PER_SERVICE = frozenset({"KUBE-SVC", "KUBE-SVL", "KUBE-EXT", "KUBE-FW", "KUBE-SEP"})


def _leads_to(table: Table, start: str, owned: set[str], depth: int = 0) -> bool:
    """Whether a chain (KUBE-SERVICES, KUBE-NODEPORTS...) has a rule that reaches one of `owned`."""
    if depth > 4 or (start not in owned and family(start) in _PER_SERVICE):
        return False  # another Service's own chain
    for rule in table.chain(start).rules:
        target = rule.target
        if target is None or not table.has_chain(target.name):
            continue
        if target.name in owned or (not table.chain(target.name).builtin and target.name.startswith("KUBE-")
                                    and target.name.count("-") == 1 and _leads_to(table, target.name, owned, depth + 1)):
            return True
    return False


def explain_lines(views: list[ChainView]) -> list[str]:
    """Plain text for a pipe: one block per chain, one line per rule."""
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
    return lines[:-1] if lines else lines


# -- diff -----------------------------------------------------------------------------------------------------


def diff_lines(changes: DumpDiff) -> list[str]:
    lines = []
    for group in changes.services:
        lines.append(f"{group.service or 'rules of no Service'}: {group.summary}")
        for c in group.chains:
            lines.append(f"  {'+' if c.kind == 'added' else '-'} chain {c.table} {c.chain}")
        for r in group.rules:
            lines.append(f"  {'+' if r.kind == 'added' else '-'} {r.table}: {r.text}")
    if changes.noise:
        kinds = sorted({n.kind for n in changes.noise})
        lines.append(f"noise: {len(changes.noise)} difference(s) that mean nothing ({', '.join(kinds)}), folded")
    if not changes.services:
        lines.append("no change to the rules")
    return lines
