"""The pull-request summary: what a change to dumps/ adds, changes and removes on the site."""

from __future__ import annotations

import json
import shutil

import pytest
from click.testing import CliRunner
from iptables_lens.cli import main
from iptables_lens.kube.synth_scenario import write_scenario
from iptables_lens.render.site_changes import read_lab_results, site_changes, summary_markdown

from tests.conftest import REPO_ROOT


@pytest.fixture
def sides(tmp_path):
    """A base dumps folder with two scenarios; the head keeps one as it is, edits the other's flow title,
    adds a generated scenario and removes nothing."""
    base, head = tmp_path / "base" / "dumps", tmp_path / "head" / "dumps"
    for side in (base, head):
        for name in ("kind-nodeport", "kind-clusterip"):
            shutil.copytree(REPO_ROOT / "dumps" / name, side / name)
    metadata = head / "kind-nodeport" / "scenario.yaml"
    text = metadata.read_text()
    assert "title: A client outside the cluster" in text
    metadata.write_text(text.replace("title: A client outside the cluster", "title: Someone outside the cluster", 1))
    write_scenario("nodeport-local", head / "added-local")
    return base, head


def test_each_scenario_is_added_changed_or_unchanged_with_its_pages(sides):
    base, head = sides
    changes = {c.name: c for c in site_changes(base, head, {})}
    assert {name: c.change for name, c in changes.items()} == {
        "added-local": "added", "kind-clusterip": "unchanged", "kind-nodeport": "changed"}
    changed = {p.path: p.change for p in changes["kind-nodeport"].pages if p.change != "unchanged"}
    # The flow's own page, and the overview and node page that list it by its title.
    assert changed == {"scenarios/kind-nodeport/flows/outside-to-nodeport.md": "changed",
                       "scenarios/kind-nodeport/index.md": "changed",
                       "scenarios/kind-nodeport/blog-worker.md": "changed"}
    assert {p.change for p in changes["added-local"].pages} == {"added"}


def test_a_removed_scenario_lists_its_pages_as_removed(sides):
    base, head = sides
    shutil.rmtree(head / "kind-clusterip")
    removed = next(c for c in site_changes(base, head, {}) if c.name == "kind-clusterip")
    assert removed.change == "removed" and removed.pages and {p.change for p in removed.pages} == {"removed"}


def test_flows_carry_their_outcomes_and_the_kernel_verdict(sides, tmp_path):
    base, head = sides
    lab = tmp_path / "lab"
    lab.mkdir()
    (lab / "kind-nodeport.jsonl").write_text(json.dumps({"flow": "outside-to-nodeport", "ok": True}) + "\n"
                                             + json.dumps({"flow": "pod-to-cluster-ip", "ok": False}) + "\n")
    results = read_lab_results(lab)
    nodeport = next(c for c in site_changes(base, head, results) if c.name == "kind-nodeport")
    flows = {f.id: f for f in nodeport.flows}
    assert flows["outside-to-nodeport"].kernel == "agrees"
    assert flows["pod-to-cluster-ip"].kernel == "disagrees"
    assert flows["outside-to-nodeport"].outcomes == (
        "1/2, ACCEPT, DNAT to 10.244.1.2:80, masqueraded to 10.244.1.1",
        "1/2, ACCEPT, DNAT to 10.244.2.2:80, masqueraded to 172.20.0.2")


def test_a_scenario_that_does_not_load_says_why(sides):
    base, head = sides
    metadata = head / "kind-nodeport" / "scenario.yaml"
    metadata.write_text(metadata.read_text().replace("node_port: 30080", "node_port: 30081"))
    broken = next(c for c in site_changes(base, head, {}) if c.name == "kind-nodeport")
    assert broken.problem is not None and "not 30081" in broken.problem


def test_the_summary_names_what_changed_and_leaves_out_what_did_not(sides):
    base, head = sides
    summary = summary_markdown(site_changes(base, head, {}))
    assert "| added-local | added |" in summary and "| kind-nodeport | changed |" in summary
    assert "kind-clusterip" not in summary
    assert "Someone outside the cluster" in summary


def test_the_cli_prints_the_summary(sides):
    base, head = sides
    result = CliRunner().invoke(main, ["site-changes", str(base), str(head)])
    assert result.exit_code == 0, result.output
    assert result.output.startswith("## What this pull request changes on the site")


def test_nothing_changed_says_so(sides):
    base, _ = sides
    assert "No page of the site changes." in summary_markdown(site_changes(base, base, {}))
