"""Mermaid diagrams: a traced flow as a tree of steps, and the chains that carry one Service (of an iptables-save
dump, or of kube-proxy's nftables tables).

Every label is escaped character by character (Mermaid's `#code;` entities), because chain names and
comments come from dumps and may hold quotes, brackets, pipes or Mermaid syntax.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from fractions import Fraction
from typing import Protocol

from iptables_lens.iptables.model import Dump
from iptables_lens.kube.nft_services import DnatTarget, NftOwner, NftServiceIndex, kube_proxy_tables
from iptables_lens.kube.services import ServiceIndex
from iptables_lens.nft.explain.choices import shares
from iptables_lens.nft.fmtrules import format_expr
from iptables_lens.nft.model import (
    Chain,
    Element,
    Expr,
    MapLookup,
    Match,
    Nat,
    Numgen,
    Rule,
    Ruleset,
    SetLiteral,
    SetRef,
    Table,
    Verdict,
    VerdictMap,
)
from iptables_lens.trace.packet import Step, Trace

# Mermaid turns `#word;` into entity placeholders that its render() never turns back (and it reads quotes,
# pipes, brackets and backticks as syntax), so every such character becomes a named HTML entity, which the
# browser shows as the character itself.
_ENTITIES = {
    "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "#": "&num;", ";": "&semi;", "`": "&grave;",
    "|": "&vert;", "%": "&percnt;", "\\": "&bsol;", "{": "&lbrace;", "}": "&rbrace;", "[": "&lbrack;",
    "]": "&rbrack;", "(": "&lpar;", ")": "&rpar;",
}


def escape(text: str) -> str:
    """`text` with every character Mermaid could read as syntax written as a named HTML entity."""
    return "".join(_ENTITIES.get(ch, ch) for ch in text)


def label(*lines: str) -> str:
    """A quoted Mermaid label of escaped lines (joined with line breaks)."""
    return '"' + "<br>".join(escape(line) for line in lines) + '"'


def _step_text(step: Step) -> str:
    if step.table is None:
        return label(step.action)
    where = f"{step.table} {step.chain}" + (f" #{step.rule}" if step.rule else " policy")
    return label(where, step.action)


def flow_diagram(result: Trace, link: Callable[[Step], str | None] | None = None) -> str:
    """A top-down flowchart of every outcome's path, sharing the steps the outcomes have in common.

    Where the way splits, each edge carries the probability of going that way (exact fractions); where
    DNAT or SNAT happens, the edge leaving that rule carries the translation. `link(step)` gives the URL a
    rule's node links to (its anchor in the rule tables).
    """
    # The outcomes' paths as a tree: a node per distinct prefix, with the probability that passes it.
    tree: dict[tuple, dict] = {(): {"id": "start", "step": None, "children": [], "mass": Fraction(0)}}
    for outcome in result.outcomes:
        prefix: tuple = ()
        tree[()]["mass"] += outcome.probability
        for step in _with_hook_markers(outcome.path):
            key = prefix + ((step.hook, step.table, step.chain, step.rule, step.action),)
            if key not in tree:
                tree[key] = {"id": f"s{len(tree)}", "step": step, "children": [], "mass": Fraction(0)}
                tree[prefix]["children"].append(key)
            tree[key]["mass"] += outcome.probability
            prefix = key
        end_key = prefix + (("end", outcome.endpoint, outcome.verdict),)
        tree[end_key] = {"id": f"e{len(tree)}", "step": None, "outcome": outcome, "children": [],
                         "mass": outcome.probability}
        tree[prefix]["children"].append(end_key)
    # Wider boxes than Mermaid's default, so chain names do not wrap mid-word.
    lines = ['%%{init: {"flowchart": {"wrappingWidth": 420}}}%%', "flowchart TD",
             f"    start[{label(str(result.packet))}]"]
    edges: list[str] = []
    extras: list[str] = []
    for key, node in tree.items():
        if key == ():
            continue
        if "outcome" in node:
            o = node["outcome"]
            lines.append(f"    {node['id']}([{label(f'{o.verdict} ({o.probability}): {o.delivery}')}])")
        elif node["step"].action == _HOOK_MARK:
            lines.append(f"    {node['id']}{{{{{label(node['step'].hook + ' hook')}}}}}")
        else:
            step = node["step"]
            lines.append(f"    {node['id']}[{_step_text(step)}]")
            target = link(step) if link else None
            if target:
                extras.append(click(node["id"], target))
            if _translation(step.action) is not None:
                extras.append(f"    class {node['id']} nat")
    for node in tree.values():
        children = node["children"]
        for child_key in children:
            child = tree[child_key]
            parts = []
            if len(children) > 1:
                parts.append(str(child["mass"] / node["mass"]))
            step = node["step"]
            translated = _translation(step.action) if step is not None else None
            if translated is not None:
                parts.append(" → ".join(translated))
            arrow = f" -- {label('; '.join(parts))} --> " if parts else " --> "
            edges.append(f"    {node['id']}{arrow}{child['id']}")
    lines.extend(edges)
    lines.append("    classDef nat stroke-width:3px")
    lines.extend(extras)
    return "\n".join(lines) + "\n"


_HOOK_MARK = "(hook)"
_TRANSLATIONS = {"dnat": "DNAT", "redirect": "REDIRECT", "snat": "SNAT", "masquerade": "SNAT"}


def _translation(action: str) -> tuple[str, str] | None:
    """("DNAT" or "REDIRECT", the new destination) or ("SNAT", the new source address) for a step that
    translated, in either dialect's words (iptables' `DNAT to 10.244.1.2:80`, `MASQUERADE to 10.244.1.1 (random
    source port)`; nft's `dnat to 10.244.1.2:80`, `masquerade to 172.20.0.2 (fully-random)`, after the changes
    an nft rule made first, `mark 0x0 -> 0x1; dnat to ...`); None for any other step.

    >>> _translation("dnat to 10.244.1.2:80"), _translation("MASQUERADE to 10.244.1.1 (random source port)")
    (('DNAT', '10.244.1.2:80'), ('SNAT', '10.244.1.1'))
    """
    verdict = action.rsplit("; ", 1)[-1]
    word, to, target = verdict.partition(" to ")
    kind = _TRANSLATIONS.get(word.lower()) if to else None
    if kind is None:
        return None
    return kind, target.split(" (")[0] if kind == "SNAT" else target


def _with_hook_markers(path: tuple[Step, ...]) -> list[Step]:
    """The path with a marker step wherever the packet reaches a new hook."""
    marked: list[Step] = []
    hook = None
    for step in path:
        if step.hook != hook:
            hook = step.hook
            marked.append(Step(hook, None, None, None, None, _HOOK_MARK))
        marked.append(step)
    return marked


def click(node_id: str, url: str) -> str:
    """The Mermaid line that makes box `node_id` a link to `url` (every character but letters, digits and
    `/#._-` percent-encoded, so a name from a dump cannot end the quoted URL)."""
    encoded = "".join(ch if ch.isalnum() or ch in "/#._-" else f"%{ord(ch):02X}" for ch in url)
    return f'    click {node_id} href "{encoded}"'


def service_graph(dump: Dump, service: str, link: Callable[[str, str], str | None] | None = None) -> str:
    """The nat chains that carry one Service (`namespace/name[:port]`), with the jumps between them and
    the probability on each endpoint's branch."""
    from iptables_lens.iptables.values import statistic_probability

    lines = ["flowchart LR"]
    ids: dict[str, str] = {}

    def node(name: str) -> str:
        if name not in ids:
            ids[name] = f"c{len(ids)}"
            lines.append(f"    {ids[name]}[{label(name)}]")
            target = link("nat", name) if link else None
            if target:
                lines.append(click(ids[name], target))
        return ids[name]

    for chain, rules in ServiceIndex.of(dump).graph(service):
        remaining = Fraction(1)
        for rule in rules:
            target = rule.target
            assert target is not None
            text = ""
            stat = rule.match("statistic")
            if stat and stat.option("--probability"):
                p = statistic_probability(stat.option("--probability").value)  # type: ignore[union-attr]
                text = f"{p * remaining}"
                remaining = remaining * (1 - p)
            elif chain.name.startswith("KUBE-SVC-") and target.name.startswith("KUBE-SEP-"):
                text = f"{remaining}"
            arrow = f" -- {label(text)} --> " if text else " --> "
            lines.append(f"    {node(chain.name)}{arrow}{node(target.name)}")
    return "\n".join(lines) + "\n"


class RuleLink(Protocol):
    """Where a box of a Service graph links to: the rows of chain `chain` of `table` ("FAMILY NAME" for an nft
    ruleset), or its rule at `position`."""

    def __call__(self, table: str, chain: str, position: int | None = None) -> str | None: ...


def nft_service_graph(ruleset: Ruleset, service: str, link: RuleLink | None = None) -> str:
    """The chains of kube-proxy's nftables tables that carry one Service (`namespace/name[:port]`), as
    `service_graph` draws an iptables-save dump's.

    Boxes are the Service's own chains (`external-`, `firewall-`, `service-`, `local-`, `endpoint-`, from
    `kube.nft_services`), the chains they jump or go to (`mark-for-masquerade`), the chains whose verdict maps
    lead to them (`services` through the `service-ips` and `service-nodeports` elements of the Service's ports,
    `firewall-check` through `firewall-ips`, and the no-endpoint maps' `reject-chain`), and, where a chain DNATs
    through a `numgen` map (`dnat ip to numgen random mod 2 map { 0 : 10.180.0.4 . 80, ... }`), the endpoint
    each number goes to. An edge carries the map element that leads there, each `numgen` branch's share (1/N
    for random mod N), "session affinity" for the goto a returning client takes, and the rule's comment. A table's boxes sit in a box of their own when the Service has
    chains in two tables (`ip kube-proxy` and `ip6 kube-proxy`)."""
    index = NftServiceIndex.of(ruleset)
    graph = _NftGraph(index, link)
    for table in kube_proxy_tables(ruleset):
        owners = {c.name: o for c in table.chains
                  if (o := index.chain_owner(table.family, table.name, c.name)) is not None
                  and _serves(o.service_port, service)}
        leading = {name: [e for e, o in owned if _serves(o.service_port, service) and _chain_of(e.data)]
                   for name in (s.name for s in table.sets if s.is_verdict_map)
                   if (owned := index.element_owners(table.family, table.name, name))}
        # The ways in first, so that Mermaid lays the boxes out from them.
        for chain in (c for c in table.chains if c.name not in owners):
            for rule in chain.rules:
                graph.entry_rule(table, chain, rule, owners, leading)
        for chain in (c for c in table.chains if c.name in owners):
            dnat = index.dnat_targets(table.family, table.name, owners[chain.name].service_port)
            for rule in chain.rules:
                graph.own_rule(table, chain, rule, dnat)
            graph.chain(table, chain.name)
    return graph.text()


def _serves(service_port: str, service: str) -> bool:
    """Whether `service_port` (`ns/name:port`) is `service` or one of its ports (`ns/name`)."""
    return service_port == service or service_port.partition(":")[0] == service


def _chain_of(data: object) -> str | None:
    """The chain a verdict jumps or goes to, or None (for anything else)."""
    return data.target if isinstance(data, Verdict) and data.kind in ("jump", "goto") else None


class _NftGraph:
    """The boxes and edges of `nft_service_graph`, each box declared once, in the order it was met."""

    def __init__(self, index: NftServiceIndex, link: RuleLink | None):
        self.index, self.link = index, link
        self.boxes: dict[tuple[str, str, str, int | None], str] = {}  # (table, chain, endpoint, position) -> id
        self.declared: dict[str, list[str]] = {}  # table -> its boxes' lines
        self.edges: list[str] = []
        self.clicks: list[str] = []

    def _box(self, where: str, chain: str, endpoint: str = "", position: int | None = None) -> str:
        key = (where, chain, endpoint, position)
        if key not in self.boxes:
            self.boxes[key] = box = f"{'a' if endpoint else 'c'}{len(self.boxes)}"
            shape = f"([{label(endpoint)}])" if endpoint else f"[{label(chain)}]"
            self.declared.setdefault(where, []).append(f"{box}{shape}")
            target = self.link(where, chain, position) if self.link else None
            if target:
                self.clicks.append(click(box, target))
        return self.boxes[key]

    def chain(self, table: Table, name: str) -> str:
        return self._box(f"{table.family} {table.name}", name)

    def edge(self, source: str, target: str, *parts: str | None) -> None:
        text = "; ".join(p for p in parts if p)
        line = f"    {source} -- {label(text)} --> {target}" if text else f"    {source} --> {target}"
        if line not in self.edges:
            self.edges.append(line)

    def entry_rule(self, table: Table, chain: Chain, rule: Rule, owners: Mapping[str, NftOwner],
                   leading: Mapping[str, list[Element]]) -> None:
        """The edges of a rule of a chain the Service does not own: its lookups in a verdict map whose elements
        serve the Service, and its jumps and gotos to the Service's chains."""
        for stmt in rule.statements:
            if isinstance(stmt, VerdictMap) and isinstance(stmt.data, SetRef):
                for element in leading.get(stmt.data.name, ()):
                    self.edge(self.chain(table, chain.name), self.chain(table, _chain_of(element.data) or ""),
                              f"@{stmt.data.name} {format_expr(element.key)}", rule.comment)
            elif (target := _chain_of(stmt)) in owners:
                self.edge(self.chain(table, chain.name), self.chain(table, target or ""), rule.comment)

    def own_rule(self, table: Table, chain: Chain, rule: Rule, dnat: list[DnatTarget]) -> None:
        """The edges of a rule of the Service's own chain: its jumps and gotos, its verdict maps' branches (with
        a `numgen` branch's share) and the endpoints of its DNAT through a `numgen` map."""
        source = self.chain(table, chain.name)
        for stmt in rule.statements:
            if (target := _chain_of(stmt)) is not None:
                self.edge(source, self.chain(table, target), self._affinity(table, rule), rule.comment)
            elif isinstance(stmt, VerdictMap):
                elements = _elements(table, stmt.data)
                for element, share in zip(elements, _shares(stmt.key, elements), strict=True):
                    if (target := _chain_of(element.data)) is not None:
                        self.edge(source, self.chain(table, target), share or format_expr(element.key), rule.comment)
            elif (isinstance(stmt, Nat) and stmt.kind == "dnat" and isinstance(stmt.addr, MapLookup)
                  and isinstance(stmt.addr.key, Numgen)):
                elements = _elements(table, stmt.addr.data)
                endpoints = [d.endpoint for d in dnat if d.rule == rule]
                if len(endpoints) != len(elements):  # an entry that names no address and port: nothing to draw
                    continue
                where = f"{table.family} {table.name}"
                for endpoint, share in zip(endpoints, _shares(stmt.addr.key, elements), strict=True):
                    self.edge(source, self._box(where, chain.name, endpoint, rule.position), share, rule.comment)

    def _affinity(self, table: Table, rule: Rule) -> str | None:
        """"session affinity" for a rule that looks the source up in an `affinity-` set (a client sent before)."""
        for stmt in rule.statements:
            if isinstance(stmt, Match) and isinstance(stmt.right, SetRef):
                owner = self.index.chain_owner(table.family, table.name, stmt.right.name)
                if owner is not None and owner.kind == "affinity":
                    return "session affinity"
        return None

    def text(self) -> str:
        lines = ["flowchart LR"]
        several = len(self.declared) > 1
        for number, (where, boxes) in enumerate(self.declared.items()):
            if several:
                lines.append(f"    subgraph t{number}[{label(f'table {where}')}]")
            lines.extend(("        " if several else "    ") + box for box in boxes)
            if several:
                lines.append("    end")
        return "\n".join(lines + self.edges + self.clicks) + "\n"


def _elements(table: Table, data: SetLiteral | SetRef) -> tuple[Element, ...]:
    """The elements of a map written in the rule, or of the named map of `table` it refers to."""
    return data.elements if isinstance(data, SetLiteral) else table.set(data.name).elements


def _shares(key: Expr, elements: tuple[Element, ...]) -> list[str | None]:
    """Each element's share of what `numgen` draws, as text ("1/2"); None for each where the key is no numgen."""
    fractions = shares(key, elements) if isinstance(key, Numgen) else None
    return [str(f) for f in fractions] if fractions is not None else [None] * len(elements)
