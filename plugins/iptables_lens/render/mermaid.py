"""Mermaid diagrams: a traced flow as a tree of steps, and the chains one Service owns.

Every label is escaped character by character (Mermaid's `#code;` entities), because chain names and
comments come from dumps and may hold quotes, brackets, pipes or Mermaid syntax.
"""

from __future__ import annotations

from collections.abc import Callable
from fractions import Fraction

from iptables_lens.iptables.model import Dump
from iptables_lens.kube.services import ServiceIndex
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
                extras.append(f'    click {node["id"]} href "{_url(target)}"')
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


def _url(url: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "/#._-" else f"%{ord(ch):02X}" for ch in url)


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
                lines.append(f'    click {ids[name]} href "{_url(target)}"')
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
