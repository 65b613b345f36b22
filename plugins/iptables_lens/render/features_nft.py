"""The nftables side of the "Service features" page: what kube-proxy's nftables mode (Kubernetes v1.34) writes
for each feature on the same node, and the feature's flows traced through those rules.

The rules are synth's, not a capture: `scenario.nft_twin` makes the cluster the scenario's facts describe and
lists kube-proxy's `table ip kube-proxy` for it before and after the scenario's Services (`kube.nft_listing`),
and the semantic diff (`nft.diff`) groups what changed by Service port (`kube.nft_services`). Each change is
filed under the place kube-proxy writes it, as `kube.nft_families` names it: a set or map every Service shares
(`service-ips`), or a family of per-Service chains or sets (`service-*`, `affinity-*`).

>>> from iptables_lens.scenario import load_scenario
>>> nft = nft_feature(load_scenario("dumps/kind-nodeport"))
>>> for changes in nft.places:
...     print(f"{changes.place}: {changes.summary}")
service-ips: 1 element
service-nodeports: 1 element
external-*: 1 chain, 2 rules
service-*: 1 chain, 2 rules
endpoint-*: 2 chains, 4 rules
cluster-ips: 1 element
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field, replace
from typing import Literal

from iptables_lens.iptables.diff import ChainChange, Change, ChangeKind, DeclarationChange, DumpDiff, ElementChange
from iptables_lens.kube.nft_families import describe_nft_family, nft_family
from iptables_lens.kube.nft_services import OWNED_BY_WORDS, NftServiceIndex
from iptables_lens.nft.diff import diff_rulesets
from iptables_lens.nft.fmt import format_table
from iptables_lens.nft.fmtrules import format_element
from iptables_lens.nft.model import Ruleset, Table
from iptables_lens.render.escape import code, indent, text
from iptables_lens.render.markdown import outcome_table
from iptables_lens.scenario.load import Scenario
from iptables_lens.scenario.model import Flow
from iptables_lens.scenario.nft_twin import (
    KUBERNETES_VERSION,
    TwinTrace,
    cluster_spec,
    predict_twin,
    twin_ruleset,
    undescribed,
)
from iptables_lens.trace.packet import Outcome, Trace

What = Literal["chain", "set", "rule", "element"]
_WORDS: tuple[tuple[What, str], ...] = (("chain", "chain"), ("set", "set"), ("rule", "rule"), ("element", "element"))

# The places in the order a packet meets them: the load balancer firewall before DNAT, then the nat chains from
# the Service's address to its endpoint, then the filter checks after DNAT. Places a diff holds that are not
# listed here follow, by name.
NFT_PLACE_ORDER = ("firewall-ips", "firewall-*", "service-ips", "service-nodeports", "external-*", "service-*",
                   "local-*", "affinity-*", "endpoint-*", "no-endpoint-services", "no-endpoint-nodeports",
                   "cluster-ips")


def change_summary(counts: Counter[tuple[ChangeKind, str]], words: tuple[tuple[str, str], ...]) -> str:
    """`1 chain, 3 rules`, then what was removed: `1 rule removed`; `counts` by (kind, thing), `words` the
    things in order with the word for each."""
    def part(kind: ChangeKind) -> str:
        return ", ".join(_count(counts[kind, thing], word) for thing, word in words if counts[kind, thing])
    added, removed = part("added"), part("removed")
    return "; ".join(p for p in (added, removed + " removed" if removed else "") if p)


def _count(number: int, word: str) -> str:
    return f"{number} {word}" + ("s" if number != 1 else "")


@dataclass(frozen=True)
class NftWritten:
    """One chain, set, rule or element the feature adds to (or removes from) kube-proxy's table `table`
    (`ip kube-proxy`): `name` is the chain or set it is or is in, `text` the rule or element as nft lists it,
    `service_port` what it serves (None: no Service), `tied_by` how an element was tied to it."""

    kind: ChangeKind
    what: What
    table: str
    name: str
    text: str
    service_port: str | None
    tied_by: str | None = None


@dataclass(frozen=True)
class NftPlaceChanges:
    """What a feature writes at one place (`service-ips`, `endpoint-*`), in the diff's order."""

    place: str
    written: tuple[NftWritten, ...]

    @property
    def summary(self) -> str:
        """`1 chain, 2 rules`, `2 elements`; what was removed follows."""
        return change_summary(Counter((w.kind, w.what) for w in self.written), _WORDS)

    @property
    def slug(self) -> str:
        """The place in an HTML id: `service-ips`, `service` for the family `service-*`."""
        return re.sub(r"[^a-z0-9-]", "-", self.place.removesuffix("-*"))


@dataclass(frozen=True)
class NftFeature:
    """A feature's node in nftables mode: the diff of kube-proxy's tables before and after the scenario's
    Services, its changes by place, and each flow traced (by flow id). `problems` says why none of it is made:
    the node's iptables rules serve what the scenario's facts do not describe."""

    node: str
    diff: DumpDiff | None = None
    places: list[NftPlaceChanges] = field(default_factory=list)
    flows: dict[str, TwinTrace] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)


def nft_feature(scenario: Scenario) -> NftFeature:
    """The feature of `scenario` in nftables mode (its `feature:` node, and the nodes of its flows), or, when the
    facts do not describe those nodes' iptables rules (`nft_twin.undescribed`), the reasons it cannot be made."""
    feature = scenario.meta.feature
    assert feature is not None, f"{scenario.name} shows no feature"
    nodes = list(dict.fromkeys([feature.node] + [f.node for f in scenario.meta.flows]))
    problems = []
    for node in nodes:
        families = sorted({d.family for d in scenario.meta.dumps if d.node == node and not d.is_ruleset})
        for family in families:
            problems += [f"{node}: {line}" for line in
                         undescribed(scenario, node, "after", cluster_spec(scenario, node, "after", family))]
    if problems:
        return NftFeature(feature.node, problems=problems)
    before = twin_ruleset(scenario, feature.node, "before")
    rulesets = {node: twin_ruleset(scenario, node) for node in nodes}
    diff = diff_rulesets(before, rulesets[feature.node])
    flows = {flow.id: predict_twin(scenario, flow, rulesets[flow.node]) for flow in scenario.meta.flows}
    return NftFeature(feature.node, diff, nft_changes(diff), flows)


def nft_changes(diff: DumpDiff) -> list[NftPlaceChanges]:
    """The changes of an nft diff of kube-proxy's tables by place, in `NFT_PLACE_ORDER`; each element with the
    way the Service index tied it to its Service port (asked of the ruleset that has it)."""
    indexes = {"added": NftServiceIndex.of(diff.after), "removed": NftServiceIndex.of(diff.before)}
    by_place: dict[str, list[NftWritten]] = {}
    for group in diff.services:
        for change in group.changes():
            written = _written(change, group.service, indexes)
            if written is not None:
                by_place.setdefault(_place(written), []).append(written)
    return [NftPlaceChanges(place, tuple(by_place[place])) for place in sorted(by_place, key=_place_key)]


def _written(change: Change, service_port: str | None, indexes: dict[str, NftServiceIndex]) -> NftWritten | None:
    kind = change.kind
    if kind not in ("added", "removed"):
        return None  # a chain's declaration changed, or a rule moved: kube-proxy makes neither for a new Service
    if isinstance(change, ChainChange):
        return NftWritten(kind, "chain", change.table, change.chain, change.chain, service_port)
    if isinstance(change, DeclarationChange):
        return NftWritten(kind, "set", change.table, change.name, change.name, service_port)
    if isinstance(change, ElementChange):
        if change.set is None:  # an element of a set written in a rule
            return NftWritten(kind, "element", change.table, change.chain or "", change.text, service_port,
                              "by the rule it is written in")
        family, _, table = change.table.partition(" ")
        owners = indexes[kind].element_owners(family, table, change.set)
        by = next((o.by for e, o in owners if format_element(e) == change.text), None)
        return NftWritten(kind, "element", change.table, change.set, change.text, service_port,
                          OWNED_BY_WORDS[by] if by else None)
    return NftWritten(kind, "rule", change.table, change.chain, change.text, service_port)


def _place(w: NftWritten) -> str:
    family, _, table = w.table.partition(" ")
    found = nft_family(family, table, w.name) or w.name
    return found + "*" if found.endswith("-") else found


def _place_key(place: str) -> tuple[int, str]:
    return (NFT_PLACE_ORDER.index(place) if place in NFT_PLACE_ORDER else len(NFT_PLACE_ORDER), place)


# -- the page's parts ---------------------------------------------------------------------------------------------


def place_anchor(feature_id: str, changes: NftPlaceChanges) -> str:
    """The id, in the feature's nftables tab, of the first thing written at the place."""
    return f"{feature_id}-nft-{changes.slug}"


def fenced(language: str, body: str) -> str:
    """`body` as a fenced code block. No line of a listing starts with backticks (a table's line starts with a
    word, a chain's or set's with a tab, a rule's with two), so nothing in one, a comment's backticks included,
    can close the fence."""
    return f"```{language}\n{body.rstrip(chr(10))}\n```"


def nft_table(shown: list[tuple[str, str, NftFeature]]) -> str:
    """The second table of the page: a row per feature (id, its title as Markdown, its nftables side), a column
    per place kube-proxy's nftables mode writes to, each cell counting what the feature writes there and
    linking to it in the feature's section."""
    columns = sorted({c.place for _, _, nft in shown for c in nft.places}, key=_place_key)
    head = ["Feature"] + [f'<span title="{text(_describe(place))}">{code(place)}</span>' for place in columns]
    rows = ["| " + " | ".join(head) + " |", "| " + " | ".join("---" for _ in head) + " |"]
    for feature_id, title, nft in shown:
        by_place = {c.place: c for c in nft.places}
        first = f'<span style="white-space: nowrap">[{title}](#{feature_id}-nftables)</span>'
        if nft.problems:
            first += "<br>*not made*"
        cells = [first] + [_cell(feature_id, by_place.get(place)) for place in columns]
        rows.append("| " + " | ".join(cells) + " |")
    return "\n".join(rows) + "\n"


def _describe(place: str) -> str:
    name = place.removesuffix("*")
    try:
        return describe_nft_family(name)
    except KeyError:
        return "a name kube-proxy's nftables mode is not known to write"


def _cell(feature_id: str, changes: NftPlaceChanges | None) -> str:
    if changes is None:
        return ""
    return f"[{text(changes.summary)}](#{place_anchor(feature_id, changes)})"


NOTE_TITLE = "nftables mode: synth's rules for the same cluster, not a captured dump"


def nft_section(feature_id: str, nft: NftFeature) -> str:
    """The feature's "nftables mode" tab: what the diff of kube-proxy's tables holds, place by place."""
    out = [f'<span id="{feature_id}-nftables"></span>']
    out.append(f'!!! note "{NOTE_TITLE}"\n')
    out.append(indent(
        f"What kube-proxy {KUBERNETES_VERSION}'s nftables proxier writes on {text(nft.node)} for the cluster this "
        "scenario's facts describe (its Services, their endpoints and nodes, the node's address and the pod "
        "range), before and after the scenario's Services, as `iptables-lens synth --mode nftables --listing` "
        "renders it: what `nft list ruleset` lists once kube-proxy's transaction is loaded. No cluster ran it, and "
        "it is kube-proxy's table only: kind's and the kubelet's own chains, which such a node keeps in "
        "iptables-nft, are left out.") + "\n")
    if nft.problems:
        out.append("Not made: the node's iptables rules serve what scenario.yaml does not describe, so synth's "
                   "rules would be of another cluster.\n")
        out += [f"- {text(line)}" for line in nft.problems]
        return "\n".join(out) + "\n"
    if not nft.places:
        out.append("kube-proxy's nftables mode writes nothing for it either: its table is the same before and "
                   "after.\n")
    anchors = {c.place: place_anchor(feature_id, c) for c in nft.places}
    elements = [w for c in nft.places for w in c.written if w.what == "element"]
    if elements:
        out.append("**Elements of kube-proxy's sets and maps**\n")
        out.append(_element_table(elements, anchors))
    # No textual diff of the two listings: the elements and the chains and sets as listed above are all of it.
    out += _objects(nft, anchors)
    return "\n".join(out)


def _element_table(elements: list[NftWritten], anchors: dict[str, str]) -> str:
    rows = ["| Set or map | Element | Service port | Tied to it |", "| --- | --- | --- | --- |"]
    placed: set[str] = set()
    for w in elements:
        place = _place(w)
        where = code(w.name) + ("" if w.kind == "added" else " (removed)")
        if place not in placed:
            placed.add(place)
            where = f'<span id="{anchors[place]}"></span>{where}'
        port = code(w.service_port) if w.service_port else "no Service"
        rows.append(f"| {where} | {code(w.text)} | {port} | {text(w.tied_by or '')} |")
    return "\n".join(rows) + "\n"


def _objects(nft: NftFeature, anchors: dict[str, str]) -> list[str]:
    """Per Service port, the chains and sets it gained (or lost), listed as nft lists them, with the rules
    added to (or removed from) chains it kept."""
    assert nft.diff is not None
    out: list[str] = []
    placed: set[str] = {_place(w) for c in nft.places for w in c.written if w.what == "element"}
    by_port: dict[str | None, list[NftWritten]] = {}
    for c in nft.places:
        for w in c.written:
            if w.what != "element":
                by_port.setdefault(w.service_port, []).append(w)
    if by_port:
        out.append("**Chains, sets and rules**\n")
    for port in sorted(by_port, key=lambda p: (p is None, p or "")):
        written = by_port[port]
        spans = ""
        for place in dict.fromkeys(_place(w) for w in written):
            if place not in placed:
                placed.add(place)
                spans += f'<span id="{anchors[place]}"></span>'
        summary = change_summary(Counter((w.kind, w.what) for w in written), _WORDS)
        out.append(f"{spans}**{code(port) if port else 'No Service'}**: {text(summary)}.\n")
        for kind, ruleset in (("added", nft.diff.after), ("removed", nft.diff.before)):
            block = _listing(ruleset, [w for w in written if w.kind == kind])
            if block:
                out.append(("" if kind == "added" else "Removed:\n\n") + fenced("nft", block) + "\n")
    return out


def _listing(ruleset: Ruleset, written: list[NftWritten]) -> str:
    """The chains and sets in `written` as `nft list ruleset` lists them in `ruleset`, each table's apart; then
    each rule of `written` in a chain not among them, after the name of its chain."""
    whole = {(w.table, w.name) for w in written if w.what in ("chain", "set")}
    parts = []
    for table in ruleset.tables:
        where = f"{table.family} {table.name}"
        chains = tuple(c for c in table.chains if (where, c.name) in whole)
        sets = tuple(s for s in table.sets if (where, s.name) in whole)
        if chains or sets:
            parts.append(format_table(replace(Table(table.family, table.name), chains=chains, sets=sets)))
    for w in written:
        if w.what == "rule" and (w.table, w.name) not in whole:
            parts.append(f"# {w.table} chain {w.name}\n\t{w.text}\n")
    return "".join(parts)


# -- flows --------------------------------------------------------------------------------------------------------


def outcome_facts(outcome: Outcome) -> tuple:
    """What of an outcome both modes must agree on: its probability, endpoint, verdict, and source rewrite."""
    return (outcome.probability, outcome.endpoint, outcome.verdict, outcome.masquerade,
            outcome.snat[0] if outcome.snat else None)


def same_outcomes(first: Trace, second: Trace) -> bool:
    return sorted(map(outcome_facts, first.outcomes), key=str) == sorted(map(outcome_facts, second.outcomes), key=str)


def nft_flow_lines(flow: Flow, iptables: Trace, twin: TwinTrace) -> str:
    """Beside a flow's iptables outcomes: its outcomes in nftables mode, and whether they are the same."""
    agree = same_outcomes(iptables, twin.trace)
    verdict = ("the same outcomes as in iptables mode (probability, endpoint, verdict and source rewrite)" if agree
               else "other outcomes than in iptables mode")
    affinity = ""
    if twin.recent:
        affinity = (" Its client is taken to be in " + ", ".join(code(name) for name in sorted(twin.recent))
                    + ", the affinity set of the endpoint it was sent to.")
    elif flow.returning_to is not None:
        affinity = f" No affinity set holds the endpoint {code(str(flow.returning_to))} it returns to."
    return (f"In nftables mode ({KUBERNETES_VERSION}, synth's rules): {verdict}.{affinity}\n\n"
            + outcome_table(twin.trace))
