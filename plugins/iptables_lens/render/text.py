"""Plain-text renderings for the terminal and for pages that show command output."""

from __future__ import annotations

from ..trace.packet import Outcome, Trace


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
