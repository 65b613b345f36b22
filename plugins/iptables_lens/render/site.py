"""The pages a scenario contributes to the site, as Markdown strings: no MkDocs here.

>>> from iptables_lens.scenario import load_scenario
>>> pages = scenario_pages(load_scenario("dumps/kind-nodeport"))
>>> [page.path for page in pages][:3]
['scenarios/kind-nodeport/index.md', 'scenarios/kind-nodeport/blog-worker.md', 'scenarios/kind-nodeport/blog-worker2.md']
"""

from __future__ import annotations

import html
import json
import os
import re
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from iptables_lens.gcpause import paused_gc
from iptables_lens.iptables.model import Dump
from iptables_lens.nft.model import Ruleset
from iptables_lens.render.features import features_page
from iptables_lens.render.flow_page import flow_page
from iptables_lens.render.large import ChainLocator, is_large, large_dump_pages
from iptables_lens.render.markdown import SitePaths, anchor_moment, node_page, overview_page
from iptables_lens.render.nft_large import large_ruleset_pages
from iptables_lens.scenario.flows import recording_path
from iptables_lens.scenario.load import Scenario
from iptables_lens.scenario.validate import load_checked

PageKind = Literal["overview", "node", "flow", "rules", "diff", "features"]
"""A scenario's overview, a node's rules and changes, a traced flow, a part of a big dump's rules, the
changes between two dumps given without a scenario, or the Service features of every scenario that shows one."""


@dataclass(frozen=True)
class GeneratedPage:
    path: str  # under docs/
    title: str
    body: str
    scenario: str
    """The scenario the page belongs to; empty for a page of every scenario (the Service features)."""
    kind: PageKind
    in_nav: bool = True
    deferred: dict = field(default_factory=dict, compare=False)
    """Placeholder key -> what renders the HTML that replaces it after Markdown (see render.large)."""

    @property
    def markdown(self) -> str:
        """The page with its title set in front matter. MkDocs would otherwise take the title from the first
        heading's text with its entities decoded, and themes print titles without escaping: a title from a
        scenario file must arrive escaped."""
        return f"---\ntitle: {json.dumps(html.escape(self.title))}\n---\n\n{self.body}"


def site_pages(folders: list[Path], root: str = "scenarios", use_directory_urls: bool = True,
               repo_root: Path | None = None) -> list[GeneratedPage]:
    """Every page of the scenarios in `folders`, each loaded and checked first (the checks of
    `validate_scenario` but the kernel's), then the "Service features" page if a scenario shows a feature;
    DumpErrors listing the problems of the first that fails them."""
    pages: list[GeneratedPage] = []
    shown: list[tuple[Scenario, SitePaths]] = []
    for folder in folders:
        scenario = load_checked(folder)
        paths = SitePaths(scenario.name, root, use_directory_urls)
        with paused_gc():
            pages += _scenario_pages(scenario, paths, repo_root)
        shown.append((scenario, paths))
    if any(scenario.meta.feature is not None for scenario, _ in shown):
        with paused_gc():
            page = features_page(shown, root, repo_root or Path.cwd())
        pages.append(GeneratedPage(page.path, page.title, page.body, "", "features"))
    return pages


def write_pages(pages: list[GeneratedPage], folder: Path) -> None:
    """Write each page's Markdown to `folder / page.path`, each file whole or not at all (a reader never sees
    half a page)."""
    for page in pages:
        target = folder / page.path
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, partial = tempfile.mkstemp(dir=target.parent, suffix=".partial")
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(page.markdown)
        os.replace(partial, target)


def scenario_pages(scenario: Scenario, root: str = "scenarios", use_directory_urls: bool = True,
                   repo_root: Path | None = None) -> list[GeneratedPage]:
    """The overview, a page per node that has dumps, and a page per flow."""
    with paused_gc():
        return _scenario_pages(scenario, SitePaths(scenario.name, root, use_directory_urls), repo_root)


def _scenario_pages(scenario: Scenario, paths: SitePaths, repo_root: Path | None) -> list[GeneratedPage]:
    """The scenario's pages; fills `paths.locators` for its nodes with big dumps."""
    meta = scenario.meta
    folder = os.path.relpath(scenario.folder, repo_root or Path.cwd())
    nodes_with_dumps = sorted({d.node for d in meta.dumps}, key=[n.name for n in meta.nodes].index)
    large_pages = []
    for node in nodes_with_dumps:
        dumps = [(anchor_moment(d.moment, d.family), rules) for d in meta.dumps
                 if d.node == node and (rules := scenario.rules(d.file)) is not None]
        if not any(is_large(dump) for _, dump in dumps):
            continue
        locator = paths.locators[node] = ChainLocator()
        # Of a big before/after pair, the rules after are shown; the rules before are those, less the changes
        # the node page lists.
        shown = [(m, d) for m, d in dumps if m in ("after", anchor_moment("after", 6))] or dumps
        for moment, dump in shown:
            base, title = paths.large_base(node, moment), f"{node}: the rules {moment}"
            split = (large_ruleset_pages(dump, moment, base, title, locator) if isinstance(dump, Ruleset)
                     else large_dump_pages(dump, moment, base, title, locator))
            for page in split:
                large_pages.append(GeneratedPage(page.path, page.title, page.body, scenario.name, "rules",
                                                 in_nav=False, deferred=page.deferred))
    pages = [GeneratedPage(paths.index(), meta.title, overview_page(scenario, paths), scenario.name, "overview")]
    for node in nodes_with_dumps:
        pages.append(GeneratedPage(paths.node(node), f"Node {node}", node_page(scenario, node, paths, folder),
                                   scenario.name, "node"))
    for flow in meta.flows:
        recording = recording_path(scenario, flow)
        text = recording.read_text() if recording.is_file() else None
        pages.append(GeneratedPage(paths.flow(flow.id), flow.title, flow_page(scenario, flow, paths, text, folder),
                                   scenario.name, "flow"))
    return pages + large_pages


def dump_pages(dumps: list[Dump | Ruleset]) -> list[GeneratedPage]:
    """Pages for dumps that come without a scenario (`iptables-lens render`): one page of explained rule
    tables per dump (an iptables-save dump's tables, or an nft ruleset's chains, sets and maps), and, for two
    dumps of one dialect, what changed from the first to the second."""
    from iptables_lens.render.markdown import diff_of, diff_section, rule_tables, text
    from iptables_lens.render.nft_tables import nft_rule_tables

    pages = []
    for index, dump in enumerate(dumps):
        name = Path(dump.source).name or f"dump-{index + 1}"
        slug = re.sub(r"[^A-Za-z0-9_-]+", "-", Path(name).stem).strip("-") or f"dump-{index + 1}"
        tables, chains, rules = dump.summary()
        explained = nft_rule_tables(dump, "rules") if isinstance(dump, Ruleset) else rule_tables(dump, "rules")
        body = f"# {text(name)}\n\n{rules} rules in {chains} chains of {tables} tables.\n\n" + explained
        pages.append(GeneratedPage(f"{slug}.md", name, body, "dumps", "node"))
    if len(dumps) == 2:
        before, after = dumps
        body = (f"# What changed\n\nFrom {text(before.source)} to {text(after.source)}.\n\n"
                + diff_section(diff_of(before, after), set()))
        pages.append(GeneratedPage("what-changed.md", "What changed", body, "dumps", "diff"))
    index_body = "# Dumps\n\n" + "\n".join(f"- [{text(p.title)}]({p.path})" for p in pages) + "\n"
    return [GeneratedPage("index.md", "Dumps", index_body, "dumps", "overview"), *pages]
