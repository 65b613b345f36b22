"""What a change to `dumps/` does to the site, for the reviewer of a pull request: the scenarios, node pages and
flows it adds, changes or removes, each flow's outcomes, and whether the kernel lab agreed.

The pages of both sides are made the way the site makes them and compared as Markdown, so "changed" means
a reader would see something different.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from iptables_lens.errors import DumpError
from iptables_lens.render.markdown import text
from iptables_lens.render.site import GeneratedPage, site_pages
from iptables_lens.render.text import outcome_summary
from iptables_lens.scenario import find_scenarios
from iptables_lens.scenario.flows import predict
from iptables_lens.scenario.validate import load_checked

Change = Literal["added", "changed", "removed", "unchanged"]
KernelVerdict = Literal["agrees", "disagrees", "not run"]


@dataclass(frozen=True)
class PageChange:
    path: str
    title: str
    kind: str
    change: Change


@dataclass(frozen=True)
class FlowReport:
    id: str
    title: str
    outcomes: tuple[str, ...]
    kernel: KernelVerdict


@dataclass(frozen=True)
class ScenarioChange:
    name: str
    change: Change
    pages: tuple[PageChange, ...] = ()
    flows: tuple[FlowReport, ...] = ()
    problem: str | None = None
    """Why the new side does not load, if it does not (`validate` annotates the files)."""


def _pages(folder: Path) -> dict[str, GeneratedPage]:
    # Pages name their dumps relative to the repository the scenario folder sits in (dumps/NAME).
    repo_root = folder.parent.parent
    # A page of every scenario (the Service features) is no one scenario's: built from one, it would differ.
    return {page.path: page for page in site_pages([folder], repo_root=repo_root) if page.scenario}


def read_lab_results(folder: Path | None) -> dict[tuple[str, str], bool]:
    """(scenario, flow) -> whether the kernel agreed, from `iptables-lens lab --json` output saved as
    `folder/SCENARIO.jsonl`."""
    found: dict[tuple[str, str], bool] = {}
    if folder is None or not folder.is_dir():
        return found
    for path in sorted(folder.glob("*.jsonl")):
        for line in path.read_text().splitlines():
            if line.strip():
                result = json.loads(line)
                found[(path.stem, result["flow"])] = bool(result["ok"])
    return found


def site_changes(base: Path, head: Path, lab: dict[tuple[str, str], bool]) -> list[ScenarioChange]:
    """Scenario by scenario (sorted by name), what differs between the site made from `base` (a dumps folder)
    and the one made from `head`."""
    before = {folder.name: folder for folder in find_scenarios(base)} if base.is_dir() else {}
    after = {folder.name: folder for folder in find_scenarios(head)}
    changes = []
    for name in sorted(set(before) | set(after)):
        if name not in after:
            old = _pages_or_none(before[name])
            changes.append(ScenarioChange(name, "removed", tuple(
                PageChange(p.path, p.title, p.kind, "removed") for p in (old or {}).values())))
            continue
        try:
            new = _pages(after[name])
            scenario = load_checked(after[name])
        except DumpError as error:
            changes.append(ScenarioChange(name, "added" if name not in before else "changed", problem=str(error)))
            continue
        old = _pages_or_none(before[name]) if name in before else None
        pages = _page_changes(old or {}, new)
        flows = tuple(
            FlowReport(flow.id, flow.title, tuple(outcome_summary(o) for o in predict(scenario, flow).outcomes),
                       _verdict(lab.get((name, flow.id))))
            for flow in scenario.meta.flows)
        if name not in before:
            change: Change = "added"
        else:
            change = "changed" if any(p.change != "unchanged" for p in pages) else "unchanged"
        changes.append(ScenarioChange(name, change, pages, flows))
    return changes


def _pages_or_none(folder: Path) -> dict[str, GeneratedPage] | None:
    try:
        return _pages(folder)
    except DumpError:
        return None


def _page_changes(old: dict[str, GeneratedPage], new: dict[str, GeneratedPage]) -> tuple[PageChange, ...]:
    found = []
    for path in sorted(set(old) | set(new)):
        page = new.get(path) or old[path]
        if path not in old:
            change: Change = "added"
        elif path not in new:
            change = "removed"
        else:
            change = "unchanged" if old[path].markdown == new[path].markdown else "changed"
        found.append(PageChange(path, page.title, page.kind, change))
    return tuple(found)


def _verdict(agreed: bool | None) -> KernelVerdict:
    return "not run" if agreed is None else "agrees" if agreed else "disagrees"


_MARK = {"added": "added", "changed": "changed", "removed": "removed", "unchanged": "unchanged"}


def summary_markdown(changes: list[ScenarioChange]) -> str:
    """The job summary: a table of the scenarios, then per changed scenario its pages and flows."""
    shown = [c for c in changes if c.change != "unchanged"]
    lines = ["## What this pull request changes on the site", ""]
    if not shown:
        lines.append("No page of the site changes.")
        return "\n".join(lines) + "\n"
    lines += ["| Scenario | Change | Pages added | changed | removed | Flows | Kernel agrees |",
              "| --- | --- | ---: | ---: | ---: | ---: | --- |"]
    for c in shown:
        counts = {kind: sum(1 for p in c.pages if p.change == kind) for kind in ("added", "changed", "removed")}
        agreed = sum(1 for f in c.flows if f.kernel == "agrees")
        kernel = "does not load" if c.problem else f"{agreed} of {len(c.flows)}"
        lines.append(f"| {text(c.name)} | {c.change} | {counts['added']} | {counts['changed']} | "
                     f"{counts['removed']} | {len(c.flows)} | {kernel} |")
    for c in shown:
        lines += ["", f"### {text(c.name)} ({c.change})", ""]
        if c.problem:
            lines += ["It does not load, so the site would not build:", "", "```text", c.problem, "```"]
            continue
        pages = [p for p in c.pages if p.change != "unchanged"]
        if pages:
            lines += ["| Page | Kind | Change |", "| --- | --- | --- |"]
            lines += [f"| {text(p.title)} (`{p.path}`) | {p.kind} | {_MARK[p.change]} |" for p in pages]
        if c.flows:
            lines += ["", "| Flow | Outcomes (tracer) | Kernel lab |", "| --- | --- | --- |"]
            for f in c.flows:
                outcomes = "<br>".join(text(o) for o in f.outcomes)
                lines.append(f"| {text(f.title)} (`{f.id}`) | {outcomes} | {f.kernel} |")
    return "\n".join(lines) + "\n"
