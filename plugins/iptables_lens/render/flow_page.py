"""The page of one traced flow, for a node in either mode: its outcomes, a diagram of every path, each outcome's
steps with a link to the row of every rule on the node page, the rules themselves in their dialect's
highlighting (```iptables``` or ```nftables```), the kernel lab's recording, and the command that traces it.

A step names its rule by table, chain and position (`Step.table` is `nat` in an iptables-save dump, `ip
kube-proxy` in an nft ruleset); `markdown.anchor_id` turns that into the id the node page gives the rule's
row, so the links of both dialects go where the node page put the row.
"""

from __future__ import annotations

import re
from collections.abc import Callable

from iptables_lens.iptables.fmt import format_rule as format_iptables_rule
from iptables_lens.iptables.model import Dump
from iptables_lens.nft.fmtrules import format_rule as format_nft_rule
from iptables_lens.nft.model import Ruleset
from iptables_lens.render.escape import code, indent, text
from iptables_lens.render.markdown import SitePaths, anchor_id, outcome_table, rules_moment
from iptables_lens.render.mermaid import flow_diagram
from iptables_lens.render.text import trace_lines
from iptables_lens.scenario import flows
from iptables_lens.scenario.load import Scenario
from iptables_lens.scenario.model import Flow
from iptables_lens.trace.packet import Outcome, Step

FENCE = {"iptables": "iptables", "nft": "nftables"}
"""The Pygments lexer that highlights each dialect's rules (the package registers both)."""


def step_rule_text(dump: Dump | Ruleset, step: Step) -> str | None:
    """The text of the rule a step names, as the node page shows it; None for a policy or a routing step, or a
    rule the dump does not hold."""
    if step.table is None or step.chain is None or step.rule is None:
        return None
    if isinstance(dump, Ruleset):
        family, _, name = step.table.partition(" ")
        table = next((t for t in dump.tables if (t.family, t.name) == (family, name)), None)
        chain = next((c for c in table.chains if c.name == step.chain), None) if table else None
        return next((format_nft_rule(r) for r in (chain.rules if chain else ()) if r.position == step.rule), None)
    if not dump.has_table(step.table) or not dump.table(step.table).has_chain(step.chain):
        return None
    saved = dump.table(step.table).chain(step.chain).rules
    return next((format_iptables_rule(r) for r in saved if r.position == step.rule), None)


def matched_rules(dump: Dump | Ruleset, outcome: Outcome) -> str:
    """A fenced block of the rules that matched on `outcome`'s path, in order, each once, in the dialect's own
    highlighting: an iptables-save dump's `-A` lines under their table's `*TABLE` line, an nft ruleset's rules
    each under a comment naming its table, chain and position."""
    lines: list[str] = []
    seen: set[tuple[str | None, str | None, int | None]] = set()
    table = None
    for step in outcome.path:
        where = (step.table, step.chain, step.rule)
        rule = step_rule_text(dump, step)
        if rule is None or where in seen:
            continue
        seen.add(where)
        if isinstance(dump, Ruleset):
            lines += [f"# {step.table} {step.chain}, rule {step.rule}", rule]
            continue
        if step.table != table:
            table = step.table
            lines.append(f"*{table}")
        lines.append(rule)
    dialect = "nft" if isinstance(dump, Ruleset) else "iptables"
    # A comment may hold backticks: the fence is longer than any run of them, so nothing in it ends the block.
    fence = "`" * max(3, 1 + max((len(run) for run in re.findall("`+", "\n".join(lines))), default=0))
    return f"{fence}{FENCE[dialect]}\n" + "\n".join(lines) + f"\n{fence}\n"


def step_link(paths: SitePaths, source: str, flow: Flow, moment: str) -> Callable[[Step], str | None]:
    """The URL (from the built page `source`) of the row of the rule a step names on the flow node's page, for
    the diagram; None for a routing step."""
    def link(step: Step) -> str | None:
        if step.table is None or step.chain is None:
            return None
        target = paths.rules_of(flow.node, moment, step.table, step.chain, step.rule)
        return paths.url(source, target, anchor_id(moment, step.table, step.chain, step.rule))

    return link


def steps_table(outcome: Outcome, paths: SitePaths, source: str, flow: Flow, moment: str) -> str:
    """A row per step of `outcome`: its hook, the rule (linked to its row on the node page) and what it did."""
    rows = ["| Hook | Where | What happened |", "| --- | --- | --- |"]
    for step in outcome.path:
        if step.table is None or step.chain is None:
            where = "routing"
        else:
            label = f"{step.table} {step.chain}" + (f" #{step.rule}" if step.rule else " policy")
            page = paths.rules_of(flow.node, moment, step.table, step.chain, step.rule)
            # The rows of a big dump's tables are filled in after Markdown, so links go to their chain.
            position = None if flow.node in paths.locators else step.rule
            target = paths.link(source, page, anchor_id(moment, step.table, step.chain, position))
            where = f"[{text(label)}]({target})"
        rows.append(f"| {step.hook} | {where} | {text(step.action)} |")
    return "\n".join(rows) + "\n"


def flow_page(scenario: Scenario, flow: Flow, paths: SitePaths, recording: str | None, folder: str) -> str:
    """The page of one traced flow; `folder` is the scenario folder as a reader's shell sees it from the
    repository root (for the command the page shows)."""
    source = paths.flow(flow.id)
    result = flows.predict(scenario, flow)
    dump = flows.traced_dump(scenario, flow)
    moment = rules_moment(dump, "after", flow.family)
    nft = isinstance(dump, Ruleset)
    node_link = paths.link(source, paths.node(flow.node))
    rules = "nft ruleset" if nft else ("IPv6 rules" if flow.family == 6 else "rules")
    out = [f"# {text(flow.title)}\n"]
    out.append(f"The first packet, {code(str(result.packet))}, comes from {text(flow.client)}, and is traced "
               f"through the {rules} of [{text(flow.node)}]({node_link}) as saved after the Service was created. "
               f"It starts at the {code(result.outcomes[0].path[0].hook)} hook "
               f"({'it arrives from the network' if result.origin == 'external' else 'the node sends it itself'}).\n")
    out.append("## Outcomes\n")
    out.append(outcome_table(result))
    out.append("## The path\n")
    out.append("Every box is a rule that matched, a chain's policy or a routing decision; click a rule to see it "
               "in the node's tables.\n")
    out.append("```mermaid\n" + flow_diagram(result, step_link(paths, source, flow, moment)) + "```\n")
    for number, outcome in enumerate(result.outcomes, 1):
        title = f"Outcome {number}: {outcome.probability}, " + (f"DNAT to {outcome.endpoint}" if outcome.endpoint
                                                                  else outcome.verdict)
        out.append(f'=== "{text(title)}"\n')
        body = [steps_table(outcome, paths, source, flow, moment)]
        if outcome.choices:
            body.append("Where the rules split the way, this outcome went: "
                        + "; ".join(code(choice) for choice in outcome.choices) + ".\n")
        body.append("The rules that matched, as the node's " + ("ruleset lists" if nft else "dump saves") + " them:\n")
        body.append(matched_rules(dump, outcome))
        if outcome.conntrack:
            body.append("The connection tracking entry it leaves (original tuple, then reply tuple):\n")
            body.append(f"```text\n{outcome.conntrack}\n```\n")
        out.append(indent("\n".join(body)) + "\n")
    out.append("## What the kernel recorded\n")
    if recording:
        # xtables-monitor cannot print kube-proxy's ip6 rules nor an nft ruleset's own tables, so the lab traces
        # those flows with nft's monitor.
        tool = "`nft monitor trace`" if nft or flow.family == 6 else "`xtables-monitor --trace`"
        out.append(f"The kernel lab loaded this node's {'ruleset' if nft else 'dump'} into real netfilter in a "
                   f"network namespace, sent the packet, and recorded the kernel's own trace with {tool}. The tests "
                   "check that every branch of it takes the tracer's path, hop by hop.\n")
        out.append('??? example "The kernel\'s trace"\n')
        out.append(indent(f"```text\n{recording.rstrip()}\n```") + "\n")
    else:
        out.append("There is no kernel recording for this flow yet (`iptables-lens lab --record` makes one).\n")
    out.append("## Run it yourself\n")
    dump_file = next(d.file for d in scenario.meta.dumps
                     if d.node == flow.node and d.moment == "after" and d.holds(flow.family))
    command = (f"iptables-lens trace {folder}/{dump_file} --src {flow.src} --dst {flow.dst} --dport {flow.dport}"
               + (f" --proto {flow.protocol}" if flow.protocol != "tcp" else "")
               + (f" --sport {flow.sport}" if flow.sport else "")
               + f" --scenario {folder} --node {flow.node}"
               + "".join(f" --recent {name}" for name in sorted(flows.recent_lists(dump, flow))))
    out.append("The same trace from the command line (this page's build runs it and checks its output):\n")
    out.append("```console\n$ " + command + "\n" + "\n".join(trace_lines(result)) + "\n```\n")
    return "\n".join(out)
