"""Markdown pages for a scenario: its overview and one page per node (`render.flow_page` makes a traced flow's),
and the anchors by which pages link to a rule's row in a node's tables.

Everything that comes from a dump or a metadata file (comments are free text) is written as HTML entities
where Markdown or HTML could read it as syntax, so a comment shows literally whatever it holds. The pages
are pure functions of their inputs: no dates, sorted where order means nothing.
"""

from __future__ import annotations

import posixpath
import re
from dataclasses import dataclass, field

from iptables_lens.errors import DumpError
from iptables_lens.iptables.diff import DumpDiff, ServiceChanges, diff_dumps
from iptables_lens.iptables.explain import explain_chain
from iptables_lens.iptables.fmt import format_rule
from iptables_lens.iptables.model import Dump, Table
from iptables_lens.nft.diff import diff_rulesets
from iptables_lens.nft.model import Ruleset
from iptables_lens.render.escape import code, indent, text
from iptables_lens.render.mermaid import nft_service_graph, service_graph
from iptables_lens.render.nft_tables import nft_anchor, nft_rule_tables
from iptables_lens.render.text import SIGNS
from iptables_lens.scenario.flows import predict
from iptables_lens.scenario.load import Scenario
from iptables_lens.scenario.model import Family
from iptables_lens.trace.packet import Trace


def anchor_moment(moment: str, family: int = 4) -> str:
    """The moment as a node page's anchors and big dumps' pages name it: the IPv4 dump's plainly (as before
    dual-stack scenarios, so links stay valid), the IPv6 dump's with `-v6`."""
    return moment if family == 4 else f"{moment}-v6"


def anchor_id(moment: str, table: str, chain: str, position: int | None = None) -> str:
    """A stable HTML id for a chain (or one of its rules) in a node page's tables; an nft ruleset's `table` is
    "FAMILY NAME", as the tracer's steps name it."""
    if " " in table:
        family, name = table.split(" ", 1)
        return nft_anchor(family, name, chain, position, prefix=moment)
    safe = re.sub(r"[^A-Za-z0-9_-]", "_", chain)
    return f"{moment}-{table}-{safe}" + (f"-{position}" if position is not None else "")


def rules_moment(dump: Dump | Ruleset, moment: str, family: int = 4) -> str:
    """The moment as the anchors of the node page's tables of `dump` name it: an nft ruleset holds both
    families' tables under one moment (`after`), an iptables-save dump is of one family (`anchor_moment`)."""
    return anchor_moment(moment) if isinstance(dump, Ruleset) else anchor_moment(moment, family)


@dataclass(frozen=True)
class SitePaths:
    """Where a scenario's pages live under docs/, and how one links to another.

    `locators` is filled for nodes whose dumps are big: their chains live on several pages.
    """

    scenario: str
    root: str = "scenarios"
    use_directory_urls: bool = True
    locators: dict = field(default_factory=dict, compare=False, hash=False)

    def rules_of(self, node: str, moment: str, table: str, chain: str, position: int | None = None) -> str:
        """The page that holds a chain's rule (or the chain) of a node's dump."""
        locator = self.locators.get(node)
        page = locator.page_of(moment, table, chain, position) if locator is not None else None
        return page or self.node(node)

    def large_base(self, node: str, moment: str) -> str:
        return f"{self.root}/{self.scenario}/{node}/{moment}"

    def index(self) -> str:
        return f"{self.root}/{self.scenario}/index.md"

    def node(self, node: str) -> str:
        return f"{self.root}/{self.scenario}/{node}.md"

    def flow(self, flow_id: str) -> str:
        return f"{self.root}/{self.scenario}/flows/{flow_id}.md"

    def link(self, source: str, target: str, anchor: str | None = None) -> str:
        """A Markdown link target from page `source` to page `target` (both .md paths under docs/)."""
        relative = posixpath.relpath(target, posixpath.dirname(source))
        return relative + (f"#{anchor}" if anchor else "")

    def url(self, source: str, target: str, anchor: str | None = None) -> str:
        """The URL, relative to the built page `source`, of `target` (for links MkDocs does not rewrite)."""
        page_url = self._url(source)
        target_url = self._url(target)
        relative = posixpath.relpath(target_url, page_url if page_url.endswith("/") else posixpath.dirname(page_url))
        if target_url.endswith("/") and not relative.endswith("/"):
            relative += "/"
        return relative + (f"#{anchor}" if anchor else "")

    def _url(self, md: str) -> str:
        stem = md[:-3]
        if not self.use_directory_urls:
            return stem + ".html"
        if stem.endswith("/index") or stem == "index":
            return stem[: -len("index")]
        return stem + "/"


def provenance_note(scenario: Scenario) -> str:
    """An admonition saying how the scenario's dumps were obtained: captured, or made by a procedure."""
    p = scenario.meta.provenance
    kind = "Captured from a real cluster" if p.method == "captured" else "Produced by a reproducible procedure"
    return f'!!! info "{kind}"\n\n' + indent(text(p.description)) + "\n"


# -- rule tables -----------------------------------------------------------------------------------------


def rule_tables(dump: Dump, moment: str, only_chains: set[tuple[str, str]] | None = None) -> str:
    """Every table and chain of `dump`, each rule with its position, text, meaning, line and anchor."""
    out: list[str] = []
    for table in dump.tables:
        out.append(f"#### The {table.name} table\n")
        empty = []
        for chain in table.chains:
            if only_chains is not None and (table.name, chain.name) not in only_chains:
                continue
            if not chain.rules:
                empty.append(chain)
                continue
            out.append(_chain_section(table, chain, moment))
        if empty:
            names = ", ".join(f'<a id="{anchor_id(moment, table.name, c.name)}"></a>{code(c.name)}' for c in empty)
            out.append(f"Chains with no rules: {names}.\n")
    return "\n".join(out)


def _chain_section(table: Table, chain, moment: str) -> str:
    explained = explain_chain(chain, table)
    head = f'<a id="{anchor_id(moment, table.name, chain.name)}"></a>**{code(chain.name)}**'
    if chain.builtin:
        head += f" — built-in chain, policy {code(chain.policy or 'ACCEPT')}"
    elif explained.family:
        head += f" — kube-proxy family {code(explained.family)}"
        if explained.family_description:
            head += f": {text(explained.family_description)}"
    lines = [head + "\n"]
    decoded = explained.decoded
    if decoded is not None:
        if decoded.verified:
            lines.append(f"The name is {text(decoded.explanation.split(' = ', 1)[1])}: it verifies.\n")
        else:
            lines.append(f"!!! warning \"Hash not verified\"\n\n    {text(decoded.explanation)}\n")
    lines.append("| # | Rule | What it does | Line |")
    lines.append("| ---: | --- | --- | ---: |")
    for rule, meaning in zip(chain.rules, explained.rules, strict=True):
        anchor = anchor_id(moment, table.name, chain.name, rule.position)
        lines.append(f'| <a id="{anchor}"></a>{rule.position} | {code(format_rule(rule))} | {text(meaning.summary)} | '
                     f"{rule.line} |")
    return "\n".join(lines) + "\n"


# -- the diff ------------------------------------------------------------------------------------------------


def diff_of(before: Dump | Ruleset, after: Dump | Ruleset) -> DumpDiff:
    """The semantic diff of two dumps of one dialect (`iptables.diff` for iptables-save dumps, `nft.diff` for
    nft rulesets), for `diff_section`; a DumpError naming `after` when their dialects differ."""
    if isinstance(before, Ruleset) and isinstance(after, Ruleset):
        return diff_rulesets(before, after)
    if isinstance(before, Dump) and isinstance(after, Dump):
        return diff_dumps(before, after)
    raise DumpError(after.source, 0, 0, f"cannot diff {before.source} with it: of the two, one is an nft ruleset "
                    "and the other an iptables-save dump")


def diff_section(changes: DumpDiff, declared: set[str], textual: bool = True,
                 names: tuple[str, str] | None = None) -> str:
    out: list[str] = []
    unrelated = {id(s) for s in changes.unrelated(declared)}
    for group in changes.services:
        name = group.service or "rules of no Service"
        if id(group) in unrelated:
            out.append(f'!!! warning "Unrelated real change: {text(name)}"\n')
            out.append(indent(f"This change belongs to a Service the scenario does not declare; it happened between "
                              f"the two saves for reasons of its own. {text(group.summary)}.") + "\n")
            out.append(indent(_changes_block(group)) + "\n")
        else:
            out.append(f"**{code(name)}**: {text(group.summary)}.\n")
            out.append(_changes_block(group) + "\n")
    if changes.noise:
        out.append(f'??? note "Noise: {len(changes.noise)} difference(s) that mean nothing (folded)"\n')
        rows = ["| Kind | Where | Before | After |", "| --- | --- | --- | --- |"]
        for n in changes.noise:
            rows.append(f"| {text(n.kind)} | {text(n.description)} | {code(n.before)} | {code(n.after)} |")
        out.append(indent("\n".join(rows)) + "\n")
    if textual:
        out.append('??? abstract "The textual diff"\n')
        out.append(indent(f"```diff\n{changes.textual(names=names)}```") + "\n")
    else:
        out.append("The dumps are too big for a line-by-line diff here: `iptables-lens diff --text` prints it.\n")
    return "\n".join(out)


def _changes_block(group: ServiceChanges) -> str:
    lines = [f"{SIGNS[change.kind]}{change.diff_line}" for change in group.changes()]
    return "```diff\n" + "\n".join(lines) + "\n```"


# -- flows ----------------------------------------------------------------------------------------------------


def outcome_table(result: Trace) -> str:
    rows = ["| Probability | DNAT to | Source rewritten to | Verdict | Where it ends up |",
            "| ---: | --- | --- | --- | --- |"]
    for o in result.outcomes:
        snat = (f"{o.snat[0]} (MASQUERADE)" if o.masquerade else str(o.snat[0])) if o.snat else "not rewritten"
        rows.append(f"| {o.probability} | {text(o.endpoint or 'not translated')} | {text(snat)} | {o.verdict} | "
                    f"{text(o.delivery)} |")
    return "\n".join(rows) + "\n"


# -- pages ---------------------------------------------------------------------------------------------------


def overview_page(scenario: Scenario, paths: SitePaths) -> str:
    meta = scenario.meta
    source = paths.index()
    out = [f"# {text(meta.title)}\n", text(meta.summary) + "\n", provenance_note(scenario)]
    c = meta.cluster
    out.append("## The cluster\n")
    out.append("| Fact | Value |\n| --- | --- |")
    out.append(f"| Kubernetes | {text(c.kubernetes_version)} |\n| iptables | {text(c.iptables_version)} |")
    out.append(f"| kube-proxy mode | {text(c.proxy_mode)} |\n| Underlay network | {c.underlay_cidr} |")
    out.append(f"| Pod network | {c.pod_cidr} |")
    if c.underlay_cidr_v6 is not None:
        out.append(f"| Underlay network (IPv6) | {c.underlay_cidr_v6} |")
    if c.pod_cidr_v6 is not None:
        out.append(f"| Pod network (IPv6) | {c.pod_cidr_v6} |")
    out.append("")
    out.append("| Node | Role | Address | Pod range | Dumps |\n| --- | --- | --- | --- | --- |")
    for node in meta.nodes:
        dumps = [d for d in meta.dumps if d.node == node.name]
        name = f"[{text(node.name)}]({paths.link(source, paths.node(node.name))})" if dumps else text(node.name)
        listed = ", ".join(text(d.moment) + (" (IPv6)" if d.family == 6 else "") for d in dumps) or "none"
        out.append(f"| {name} | {node.role} | {_both(node.address, node.address_v6)} | "
                   f"{_both(node.pod_cidr, node.pod_cidr_v6)} | {listed} |")
    out.append("")
    if meta.pods:
        out.append("| Pod | Namespace | Node | Address |\n| --- | --- | --- | --- |")
        for pod in meta.pods:
            out.append(f"| {text(pod.name)} | {text(pod.namespace)} | {text(pod.node)} | "
                       f"{_both(pod.address, pod.address_v6)} |")
        out.append("")
    for service in meta.services:
        out.append(f"## Service {code(service.key)}\n")
        ports = ", ".join(f"{p.port}/{p.protocol} → {p.target_port}" + (f", node port {p.node_port}" if p.node_port
                                                                        else "") for p in service.ports)
        eps = ", ".join(e.target for e in service.endpoints) or "none"
        ipv6 = f", IPv6 cluster IP {code(str(service.cluster_ip_v6))}" if service.cluster_ip_v6 else ""
        out.append(f"Type {code(service.type)}, cluster IP {code(str(service.cluster_ip))}{ipv6}, {text(ports)}; "
                   f"endpoints {text(eps)}; external traffic policy {text(service.external_traffic_policy)}.\n")
        for d in meta.dumps:
            dump = scenario.rules(d.file)
            if d.moment != "after" or dump is None:
                continue
            def chain_link(table: str, chain: str, position: int | None = None, node: str = d.node) -> str:
                return paths.url(source, paths.rules_of(node, "after", table, chain, position),
                                 anchor_id("after", table, chain, position))

            if isinstance(dump, Ruleset):
                graph, chains = nft_service_graph(dump, service.key, chain_link), "The chains of kube-proxy's tables"
            else:
                graph, chains = service_graph(dump, service.key, chain_link), "The nat chains"
            out.append(f"{chains} that carry it on {text(d.node)} (click a chain to see its rules):\n")
            out.append("```mermaid\n" + graph + "```\n")
            break
    if meta.flows:
        out.append("## Traced flows\n")
        for flow in meta.flows:
            out.append(f"- [{text(flow.title)}]({paths.link(source, paths.flow(flow.id))})")
        out.append("")
    if meta.manifests:
        out.append("## Manifests\n")
        for name in meta.manifests:
            body = (scenario.folder / name).read_text()
            out.append(f"{code(name)}:\n\n```yaml\n{body.rstrip()}\n```\n")
    return "\n".join(out)


def node_page(scenario: Scenario, node_name: str, paths: SitePaths, folder: str) -> str:
    """The page of one node: its rules after and before, what changed, and its flows. `folder` is the scenario
    folder as a reader's shell sees it from the repository, which names the dumps in the textual diff."""
    meta = scenario.meta
    node = meta.node(node_name)
    out = [f"# {text(node.name)}\n"]
    pods = [p for p in meta.pods if p.node == node.name]
    addresses = [code(str(a)) for p in pods for a in p.addresses()]
    if node.address_v6:
        where = (f"at {code(str(node.address))} and {code(str(node.address_v6))}, with pod ranges "
                 f"{code(str(node.pod_cidr))} and {code(str(node.pod_cidr_v6))}")
    else:
        where = f"at {code(str(node.address))} with pod range {code(str(node.pod_cidr))}"
    out.append(f"A {text(node.role)} node {where}" + (f", running {', '.join(addresses)}" if pods else "") + ".\n")
    out.append(provenance_note(scenario))
    after = scenario.dump_for(node.name, "after")
    before = scenario.dump_for(node.name, "before")
    declared = {s.key for s in meta.services}
    if node.name in paths.locators:
        return "\n".join(out) + _large_node_body(scenario, node.name, paths, before, after, declared)
    families = sorted({d.family for d in meta.dumps if d.node == node.name})
    for family in families:
        # A node with dumps of one family keeps the tabs' plain titles; a dual-stack one names the family.
        out += rules_tabs(scenario, node.name, family, f" (IPv{family})" if families != [4] else "", folder)
    flows = [f for f in meta.flows if f.node == node.name]
    if flows:
        out.append('=== "Flows"\n')
        body = []
        for flow in flows:
            body.append(f"**[{text(flow.title)}]({paths.link(paths.node(node.name), paths.flow(flow.id))})**\n")
            result = predict(scenario, flow)
            body.append(outcome_table(result))
        out.append(indent("\n".join(body)) + "\n")
    return "\n".join(out)


def rules_tabs(scenario: Scenario, node: str, family: Family, label: str, folder: str) -> list[str]:
    """A node page's tabs of the node's rules of `family` after and before the change, and what changed, in
    what the site knows of the rules' dialect: an iptables-save dump's explained rule tables and its semantic
    diff by Service; an nft ruleset's explained chains, sets and maps and its diff by Service. `label` ends each
    tab's title, `folder` is the scenario folder as a reader's shell sees it from the repository."""
    files: dict[str, str] = {d.moment: d.file for d in scenario.meta.dumps if d.node == node and d.holds(family)}
    before, after = (scenario.rules(files[m]) if m in files else None for m in ("before", "after"))
    out = []
    if isinstance(after, Ruleset) or isinstance(before, Ruleset):
        for moment, ruleset in (("after", after), ("before", before)):
            if isinstance(ruleset, Ruleset):
                suffix = label or (" the Service" if moment == "after" else "")
                tables = nft_rule_tables(ruleset, rules_moment(ruleset, moment), level=3)
                out += [f'=== "Rules {moment}{suffix}"\n', indent(_ruleset_intro(ruleset) + tables) + "\n"]
        if isinstance(before, Ruleset) and isinstance(after, Ruleset):
            out.append(f'=== "What changed{label}"\n')
            names = (f"{folder}/{files['before']}", f"{folder}/{files['after']}")
            declared = {s.key for s in scenario.meta.services}
            out.append(indent(diff_section(diff_of(before, after), declared, names=names)) + "\n")
        return out
    assert not isinstance(after, Ruleset) and not isinstance(before, Ruleset)
    if after is not None:
        out.append(f'=== "Rules after{label or " the Service"}"\n')
        out.append(indent(_dump_intro(after) + rule_tables(after, anchor_moment("after", family))) + "\n")
    if before is not None:
        out.append(f'=== "Rules before{label}"\n')
        out.append(indent(_dump_intro(before) + rule_tables(before, anchor_moment("before", family))) + "\n")
    if before is not None and after is not None:
        out.append(f'=== "What changed{label}"\n')
        names = (f"{folder}/{files['before']}", f"{folder}/{files['after']}")
        declared = {s.key for s in scenario.meta.services}
        out.append(indent(diff_section(diff_dumps(before, after), declared, names=names)) + "\n")
    return out


def _ruleset_intro(ruleset: Ruleset) -> str:
    tables, chains, rules = ruleset.summary()
    return f"{rules} rules in {chains} chains of {tables} tables, as `nft list ruleset` printed them.\n\n"


def _large_node_body(scenario: Scenario, node: str, paths: SitePaths, before: Dump | Ruleset | None,
                     after: Dump | Ruleset | None, declared: set[str]) -> str:
    """The node page of a node whose dumps (or nft rulesets) are big: links to their pages (render.large), the
    semantic diff by Service without the textual one, and the flows."""
    source = paths.node(node)
    kind = "rulesets" if isinstance(after or before, Ruleset) else "dumps"
    out = [f"The {kind} of this node are big, so their rules are on pages of their own, with the Services' chains "
           "grouped by Service:\n"]
    for moment, dump in (("after", after), ("before", before)):
        if dump is None or (moment == "before" and after is not None):
            continue
        link = paths.link(source, f"{paths.large_base(node, moment)}/index.md")
        out.append(f"- [The rules {moment}]({link}): {_counts(dump)}.")
    if before is not None and after is not None:
        out.append(f"- The rules before: {_counts(before)}; they are the rules after, less the changes below.")
    out.append("")
    if before is not None and after is not None:
        out.append("## What changed\n")
        out.append(diff_section(diff_of(before, after), declared, textual=False))
    flows = [f for f in scenario.meta.flows if f.node == node]
    if flows:
        out.append("## Flows\n")
        for flow in flows:
            out.append(f"**[{text(flow.title)}]({paths.link(source, paths.flow(flow.id))})**\n")
            out.append(outcome_table(predict(scenario, flow)))
    return "\n".join(out)


def _counts(dump: Dump | Ruleset) -> str:
    """"140022 rules in 70015 chains", and of an nft ruleset ", 30001 elements in 7 sets and maps"."""
    tables, chains, rules = dump.summary()
    counts = f"{rules} rules in {chains} chains"
    if isinstance(dump, Ruleset):
        sets = [item for table in dump.tables for item in table.sets]
        counts += f", {sum(len(s.elements) for s in sets)} elements in {len(sets)} sets and maps"
    return counts


def _both(v4: object, v6: object | None) -> str:
    """A fact of a dual-stack cluster's both families, `v4, v6`; the IPv4 one alone where there is no other."""
    return f"{v4}, {v6}" if v6 is not None else str(v4)


def _dump_intro(dump: Dump) -> str:
    tables, chains, rules = dump.summary()
    header = dump.header or "no header"
    return f"{rules} rules in {chains} chains of {tables} tables ({text(header.lstrip('# '))}).\n\n"


