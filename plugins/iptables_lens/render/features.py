"""The "Service features" page: every scenario that shows a Service feature (`feature:` in its scenario.yaml),
in the feature's `order`, as a table of what each feature makes kube-proxy write where, and a section each.

What a feature writes is read from the semantic diff (`iptables.diff`) of its node's dumps before and after the
Service was created, keeping the changes of the scenario's own Services and the rules of no Service (changes
of other Services, such as the API server's endpoint moving between two saves, are not the feature's). Each
changed chain is filed under the place kube-proxy writes it: a chain every Service shares (`nat
KUBE-SERVICES`), or a family of per-Service chains (`nat KUBE-SVC-*`), as `kube.names.family` names it.

>>> from iptables_lens.scenario import load_scenario
>>> for changes in feature_changes(load_scenario("dumps/kind-nodeport")):
...     print(f"{changes.place}: {changes.summary}")
nat KUBE-SERVICES: 1 rule
nat KUBE-NODEPORTS: 1 rule
nat KUBE-EXT-*: 1 chain, 2 rules
nat KUBE-SVC-*: 1 chain, 3 rules
nat KUBE-SEP-*: 2 chains, 4 rules
"""

from __future__ import annotations

import os
import re
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from iptables_lens.iptables.diff import ChangeKind, DumpDiff, diff_dumps
from iptables_lens.kube.names import HASHED_FAMILIES, family
from iptables_lens.render.features_nft import (
    NftFeature,
    change_summary,
    nft_feature,
    nft_flow_lines,
    nft_section,
    nft_table,
)
from iptables_lens.render.markdown import (
    SitePaths,
    anchor_id,
    anchor_moment,
    code,
    diff_section,
    indent,
    outcome_table,
    provenance_note,
    text,
)
from iptables_lens.scenario.flows import predict, recording_path
from iptables_lens.scenario.load import Scenario
from iptables_lens.scenario.model import Family, Feature

PAGE = "service-features.md"
"""The page's path under the generated pages' root."""
TITLE = "Service features"


@dataclass(frozen=True)
class Place:
    """Where kube-proxy writes: a chain of a table that every Service shares (`chains` is its name,
    `KUBE-SERVICES`), or a family of per-Service chains (`chains` is the family and a star, `KUBE-SVC-*`)."""

    table: str
    chains: str

    def __str__(self) -> str:
        return f"{self.table} {self.chains}"

    @property
    def per_service(self) -> bool:
        return self.chains.endswith("-*")


def place_of(table: str, chain: str) -> Place:
    """The place a chain of `table` is: its family of per-Service chains, or the chain itself."""
    found = family(chain)
    return Place(table, f"{found}-*") if found in HASHED_FAMILIES else Place(table, chain)


# The columns of the table, in the order a packet meets them (as on the chain families' page); places a diff
# holds that are not listed here follow, by table and name.
PLACE_ORDER = tuple(Place(table, chains) for table, chains in (
    ("nat", "KUBE-SERVICES"), ("nat", "KUBE-NODEPORTS"), ("nat", "KUBE-EXT-*"), ("nat", "KUBE-FW-*"),
    ("nat", "KUBE-SVC-*"), ("nat", "KUBE-SVL-*"), ("nat", "KUBE-SEP-*"), ("nat", "KUBE-MARK-MASQ"),
    ("nat", "KUBE-POSTROUTING"), ("filter", "KUBE-PROXY-FIREWALL"), ("filter", "KUBE-SERVICES"),
    ("filter", "KUBE-EXTERNAL-SERVICES"), ("filter", "KUBE-NODEPORTS"), ("filter", "KUBE-FORWARD")))


def _place_key(place: Place) -> tuple[int, str, str]:
    return (PLACE_ORDER.index(place) if place in PLACE_ORDER else len(PLACE_ORDER), place.table, place.chains)


@dataclass(frozen=True)
class Written:
    """One chain or rule the feature adds to (or removes from) its node's rules of one family."""

    kind: ChangeKind
    family: Family
    table: str
    chain: str
    position: int | None
    """The rule's position in its chain, in the dump after (added) or before (removed); None: the chain."""
    text: str
    """The rule as iptables-save writes it, without counters; for a chain, its `:NAME - [0:0]` line."""

    @property
    def moment(self) -> str:
        """The moment of the node page's tables that show it (`after`, `before`, `after-v6`, ...)."""
        return anchor_moment("after" if self.kind == "added" else "before", self.family)

    @property
    def anchor(self) -> str:
        """The id of its row (or of its chain) on the node page: `after-nat-KUBE-SERVICES-5`."""
        return anchor_id(self.moment, self.table, self.chain, self.position)


@dataclass(frozen=True)
class PlaceChanges:
    """What a feature writes at one place, chains first, then rules in the order of their chains."""

    place: Place
    written: tuple[Written, ...]

    @property
    def summary(self) -> str:
        """`1 chain, 3 rules`; what was removed follows, `1 rule removed`."""
        counts = Counter((w.kind, "chain" if w.position is None else "rule") for w in self.written)
        return change_summary(counts, (("chain", "chain"), ("rule", "rule")))


@dataclass(frozen=True)
class NodeDiff:
    """The feature's node before and after, in one family, with the files the dumps come from."""

    family: Family
    diff: DumpDiff
    before_file: str
    after_file: str


def feature_diffs(scenario: Scenario) -> list[NodeDiff]:
    """The diff of the feature's node in each family it has dumps before and after of; a DumpError at the
    feature's node in scenario.yaml if it has none."""
    feature = _feature(scenario)
    files = {(d.moment, d.family): d.file for d in scenario.meta.dumps if d.node == feature.node}
    found = []
    for fam in (4, 6):
        if ("before", fam) in files and ("after", fam) in files:
            before, after = scenario.dumps[files["before", fam]], scenario.dumps[files["after", fam]]
            found.append(NodeDiff(fam, diff_dumps(before, after), files["before", fam], files["after", fam]))
    if not found:
        raise scenario.metadata_file.problem(("feature", "node"), f"the feature's node {feature.node} needs a "
                                             "dump before and one after the Service was created, to show its diff")
    return found


def feature_changes(scenario: Scenario, diffs: list[NodeDiff] | None = None) -> list[PlaceChanges]:
    """What the scenario's feature writes on its node, place by place in the table's column order: the changes
    of the scenario's Services and the rules of no Service (`diffs`: `feature_diffs(scenario)` if not given)."""
    by_place: dict[Place, list[Written]] = {}
    declared = {service.key for service in scenario.meta.services}
    for node_diff in diffs if diffs is not None else feature_diffs(scenario):
        unrelated = {id(group) for group in node_diff.diff.unrelated(declared)}
        for group in node_diff.diff.services:
            if group.service is not None and id(group) in unrelated:
                continue
            for chain in group.chains:
                written = Written(chain.kind, node_diff.family, chain.table, chain.chain, None,
                                  f":{chain.chain} - [0:0]")
                by_place.setdefault(place_of(chain.table, chain.chain), []).append(written)
            for rule in group.rules:
                written = Written(rule.kind, node_diff.family, rule.table, rule.chain, rule.rule.position, rule.text)
                by_place.setdefault(place_of(rule.table, rule.chain), []).append(written)
    return [PlaceChanges(place, tuple(sorted(by_place[place], key=_written_key)))
            for place in sorted(by_place, key=_place_key)]


def _written_key(w: Written) -> tuple:
    return (w.family, w.chain, w.position is not None, w.kind != "added", w.position or 0)


def _feature(scenario: Scenario) -> Feature:
    feature = scenario.meta.feature
    assert feature is not None, f"{scenario.name} shows no feature"
    return feature


# -- the page ---------------------------------------------------------------------------------------------------

_CODE_SPAN = re.compile(r"`([^`]+)`")


def prose(value: str) -> str:
    """A feature's title or summary as Markdown: its `code spans` are kept, everything else is literal text."""
    out, last = [], 0
    for match in _CODE_SPAN.finditer(value):
        out.append(text(value[last:match.start()]) + code(match.group(1)))
        last = match.end()
    return "".join(out) + text(value[last:])


@dataclass(frozen=True)
class _Shown:
    scenario: Scenario
    paths: SitePaths
    folder: str
    diffs: list[NodeDiff]
    changes: list[PlaceChanges]
    nft: NftFeature

    @property
    def feature(self) -> Feature:
        return _feature(self.scenario)


@dataclass(frozen=True)
class FeaturesPage:
    path: str
    title: str
    body: str


def features_page(scenarios: list[tuple[Scenario, SitePaths]], root: str, repo_root: Path) -> FeaturesPage:
    """The "Service features" page of the scenarios that show a feature; each scenario comes with the paths
    its pages were made with (which know where the rules of big dumps are). `repo_root` is where a reader's
    shell stands, for the dump names and the example. A DumpError if two features share an id or a feature's
    node lacks its before and after dumps."""
    source = f"{root}/{PAGE}"
    shown: list[_Shown] = []
    ids: dict[str, str] = {}
    for scenario, paths in scenarios:
        feature = scenario.meta.feature
        if feature is None:
            continue
        if feature.id in ids:
            raise scenario.metadata_file.problem(("feature", "id"), f"feature id {feature.id!r} is taken by "
                                                 f"scenario {ids[feature.id]}")
        ids[feature.id] = scenario.name
        diffs = feature_diffs(scenario)
        folder = os.path.relpath(scenario.folder, repo_root)
        shown.append(_Shown(scenario, paths, folder, diffs, feature_changes(scenario, diffs), nft_feature(scenario)))
    shown.sort(key=lambda s: (s.feature.order, s.feature.id))
    columns = sorted({c.place for s in shown for c in s.changes}, key=_place_key)
    out = [f"# {TITLE}\n", _INTRO, _table(shown, columns, source), _AFTER_TABLE]
    if shown:
        out += [_NFT_TABLE, nft_table([(s.feature.id, prose(s.feature.title), s.nft) for s in shown])]
    out.append(_HOW_MADE)
    for item in shown:
        out.append(_section(item, source))
    if shown:
        out.append(_example(shown[0]))
    return FeaturesPage(source, TITLE, "\n".join(out))


_INTRO = """\
A Service's spec says what it wants (a node port, a load balancer, session affinity, a traffic policy), and
kube-proxy turns each of these into rules on every node. This page takes the features one at a time. Each
comes from a scenario that creates a Service showing it, with one node's rules saved before and after the
Service was created: what the feature adds is the difference.

The table has a row per feature and a column per place kube-proxy writes to: the chains every Service shares,
such as `nat KUBE-SERVICES`, and the families of chains it makes for each Service port, such as
`nat KUBE-SVC-*`. A cell counts the chains and rules the feature adds there. Its links land on those rules in
the node's tables: `#3` is the third rule of its chain, and a chain's first characters link to the chain.
"""

_AFTER_TABLE = """\
An empty cell means the feature writes nothing there. On a real cluster another Service can change between the
two saves (the API server's endpoint, say): that is not the feature's doing, so the table leaves it out, and
the diffs below flag it as an unrelated change.
"""

_NFT_TABLE = """\
## The same features in nftables mode

In nftables mode (`--proxy-mode nftables`, kind's `kubeProxyMode: nftables`; iptables mode stays the default)
kube-proxy writes one table, `ip kube-proxy`, in which a Service port is mostly elements of shared maps and
sets rather than rules of shared chains: `service-ips` sends its cluster, external and load balancer IPs to its
chain, `service-nodeports` its node port, and `no-endpoint-services` and `no-endpoint-nodeports` reject or drop
what has no endpoint to go to. The chains and sets of its own are named after it, as in iptables mode, with the
Service port in words after the hash: `service-*` and `local-*` pick an endpoint, `external-*` takes outside
traffic and marks what must be masqueraded, `firewall-*` drops sources outside the load balancer's source
ranges, `endpoint-*` DNATs, and an `affinity-*` set remembers an endpoint's recent clients.

This table has a row per feature and a column per such place. A cell counts what the feature adds there, in
kube-proxy v1.34's nftables mode on the same node, and links to it in the feature's section below (its
"nftables mode" tab). These rules are synth's rendering of the same cluster, not a capture (see below).
"""

_HOW_MADE = """\
## How these rules were made

A scenario marked *captured* was saved with `iptables-save` on a real kind cluster running Kubernetes v1.29.
A scenario marked *generated* was written by `iptables-lens synth`, which follows kube-proxy v1.29's
`syncProxyRules`; its tests check it, rule for rule, against the expected output of kube-proxy's own unit
tests (`pkg/proxy/iptables/proxier_test.go`), and its title says "(generated)". Either way, the kernel lab
loads the rules into real netfilter and replays the flows; a flow's page shows the kernel's own trace where one
was recorded.

The nftables-mode rules of every feature are generated, whatever its scenario: `iptables-lens synth --mode
nftables --listing` writes what kube-proxy v1.34's nftables proxier sends for the cluster the scenario's facts
describe (its Services, their ports, endpoints and nodes, the node's address and the pod range), as `nft list
ruleset` lists it once loaded. Its tests check the transaction against the expected output of kube-proxy's own
unit tests (`pkg/proxy/nftables/proxier_test.go`), and the listing against what nft prints once the kernel has
loaded it. Before they are used here, the facts are checked against the dumps: kube-proxy v1.29's iptables
rules for them must be those the node saved after the change, Service by Service; where they are not, the
section says so and shows no nftables rules. These nftables rules have not been through the kernel lab.

Each section below gives a feature's scenario, what changed on its node in each mode, and the packets that tell
the feature apart, each traced to its outcomes in both modes: the probability of each endpoint, the verdict and
the address translation.
"""


def _table(shown: list[_Shown], columns: list[Place], source: str) -> str:
    if not shown:
        return "No scenario shows a feature yet.\n"
    head = ["Feature"] + [f"{text(place.table)} {code(place.chains)}" for place in columns]
    rows = ["| " + " | ".join(head) + " |", "| " + " | ".join("---" for _ in head) + " |"]
    for item in shown:
        feature = item.feature
        by_place = {c.place: c for c in item.changes}
        # A title is a spec's words, mostly code: kept on one line, it is not broken mid-word.
        first = f'<span style="white-space: nowrap">[{prose(feature.title)}](#{feature.id})</span><br>{_made(item.scenario)}'
        cells = [first] + [_cell(by_place.get(place), item, source) for place in columns]
        rows.append("| " + " | ".join(cells) + " |")
    return "## The features at a glance\n\n" + "\n".join(rows) + "\n"


def _made(scenario: Scenario) -> str:
    return "*captured*" if scenario.meta.provenance.method == "captured" else "*generated*"


def _link(item: _Shown, source: str, w: Written) -> str | None:
    """The link from the page to `w`'s row on its node's page, or None where the node page does not show it
    (what a big dump had before)."""
    node = item.feature.node
    large = node in item.paths.locators
    if large and w.kind == "removed":
        return None
    page = item.paths.rules_of(node, w.moment, w.table, w.chain, w.position)
    # The rows of a big dump's tables are filled in after Markdown, so links go to their chain.
    position = None if large else w.position
    return item.paths.link(source, page, anchor_id(w.moment, w.table, w.chain, position))


def _cell(changes: PlaceChanges | None, item: _Shown, source: str) -> str:
    if changes is None:
        return ""
    groups: dict[tuple[Family, str], list[Written]] = {}
    for w in changes.written:
        groups.setdefault((w.family, w.chain), []).append(w)
    short = _short_names([chain for _, chain in groups]) if changes.place.per_service else {}
    two_families = len({fam for fam, _ in groups}) > 1
    lines = [f"**{changes.summary}**"]
    for (fam, chain), written in groups.items():
        parts = [f"IPv{fam}:"] if two_families else []
        if chain in short:
            first = written[0]
            target = _link(item, source, Written(first.kind, fam, first.table, chain, None, ""))
            label = text(short[chain])
            # Hashed names are base32 letters and digits: safe in a link title.
            parts.append(f'[{label}]({target} "{chain}")' if target else label)
        for w in written:
            if w.position is None:
                continue
            label = f"#{w.position}" if w.kind == "added" else f"−#{w.position}"
            target = _link(item, source, w)
            parts.append(f"[{label}]({target})" if target else label)
        lines.append(" ".join(parts))
    return "<br>".join(line for line in lines if line)


def _short_names(chains: list[str]) -> dict[str, str]:
    """Per-Service chains by the first characters of their hashes, as few as tell them apart (at least 4)."""
    hashes = {chain: chain.rsplit("-", 1)[1] for chain in chains}
    for length in range(4, 17):
        prefixes = {h[:length] for h in hashes.values()}
        if len(prefixes) == len(set(hashes.values())):
            break
    return {chain: h[:length] + ("…" if length < len(h) else "") for chain, h in hashes.items()}


def _section(item: _Shown, source: str) -> str:
    scenario, feature, paths = item.scenario, item.feature, item.paths
    node_page = paths.link(source, paths.node(feature.node))
    out = [f"## {prose(feature.title)} {{#{feature.id}}}\n"]
    out.append(f"From the scenario [{text(scenario.meta.title)}]({paths.link(source, paths.index())}), "
               f"node [{text(feature.node)}]({node_page}) ({_made(scenario)}).\n")
    out.append(prose(feature.summary) + "\n")
    out.append(provenance_note(scenario))
    declared = {service.key for service in scenario.meta.services}
    node = feature.node
    if not item.changes:
        out.append(f"kube-proxy writes nothing for this Service: no rule or chain of {text(node)} changed for it, "
                   "as the diff shows.\n")
    iptables_mode = []
    for node_diff in item.diffs:
        label = f" (IPv{node_diff.family})" if len(item.diffs) > 1 else ""
        iptables_mode.append(f"**What changed on {text(node)}{label}**\n")
        textual = node not in paths.locators
        names = (f"{item.folder}/{node_diff.before_file}", f"{item.folder}/{node_diff.after_file}")
        iptables_mode.append(diff_section(node_diff.diff, declared, textual=textual, names=names))
    out.append('=== "iptables mode"\n')
    out.append(indent("\n".join(iptables_mode)) + "\n")
    out.append('=== "nftables mode"\n')
    out.append(indent(nft_section(feature.id, item.nft)) + "\n")
    flows = scenario.meta.flows
    if flows:
        out.append("**Its flows**\n")
    for flow in flows:
        recorded = " (the kernel's trace is recorded)" if recording_path(scenario, flow).is_file() else ""
        out.append(f"[{text(flow.title)}]({paths.link(source, paths.flow(flow.id))}){recorded}:\n")
        iptables = predict(scenario, flow)
        out.append(outcome_table(iptables))
        if flow.id in item.nft.flows:
            out.append(nft_flow_lines(flow, iptables, item.nft.flows[flow.id]))
    return "\n".join(out)


def _example(item: _Shown) -> str:
    """The page's Python example, which the docs' tests run: the places the first feature writes to."""
    lines = [f"{c.place}: {c.summary}" for c in item.changes]
    if any("`" in line for line in lines):
        return ""  # a name with backticks would end the code block; no kube-proxy name has one
    first = item.changes[0] if item.changes else None
    anchors = repr([w.anchor for w in first.written]) if first else ""
    return "\n".join([
        "## From Python\n",
        f"What the first feature, {prose(item.feature.title)}, writes, place by place, as this page reads it "
        "from the diff (run from the repository's root):\n",
        "```python",
        ">>> from iptables_lens.render.features import feature_changes",
        ">>> from iptables_lens.scenario import load_scenario",
        f">>> changes = feature_changes(load_scenario({item.folder!r}))",
        ">>> for place in changes:",
        '...     print(f"{place.place}: {place.summary}")',
        *lines,
        *([">>> [written.anchor for written in changes[0].written]", anchors] if first else []),
        "",
        "```",
        "",
    ])
