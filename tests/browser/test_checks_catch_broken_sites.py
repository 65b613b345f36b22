"""The browser checks can fail: on a site that loads Mermaid from a CDN, a diagram with broken syntax, a label
the diagram lacks, or diagram text the colour of its background, the very functions the suite asserts on
report the fault."""

from __future__ import annotations

import shutil

import pytest

from tests.browser.checks import (
    diagram_problems,
    foreign_request_problems,
    load_problems,
    mermaid_sources,
    readability_problems,
    rendered_diagram_texts,
    switch_scheme,
    visiting,
)
from tests.browser.conftest import built
from tests.conftest import REPO_ROOT
from tests.site_build import variant_config

pytestmark = pytest.mark.browser

LOCAL_MERMAID = "extra_javascript:\n  - assets/javascripts/mermaid.min.js\n"
CDN_MERMAID = "https://unpkg.com/mermaid@11/dist/mermaid.min.js"
OVERVIEW = "scenarios/kind-nodeport/"
BROKEN_DIAGRAM = "\n```mermaid\nflowchart TD\n    A-->\n```\n"


def test_a_cdn_mermaid_is_reported_as_a_request_elsewhere_and_no_diagram_renders(browser, serve, tmp_path):
    config = variant_config(tmp_path)
    text = config.read_text()
    assert LOCAL_MERMAID in text
    config.write_text(text.replace(LOCAL_MERMAID, f"extra_javascript:\n  - {CDN_MERMAID}\n"))
    site = built(tmp_path / "site", config)

    sources = mermaid_sources((site / OVERVIEW / "index.html").read_text())
    with visiting(browser, serve(site) + OVERVIEW) as visit:
        diagrams = diagram_problems(visit, sources)
        foreign = foreign_request_problems(visit)
        loading = load_problems(visit)
    assert f"request to another host: {CDN_MERMAID}" in foreign
    assert "0 of 1 Mermaid blocks rendered to an SVG" in diagrams
    assert loading  # the blocked script is a failed load, too


def test_a_diagram_with_broken_syntax_is_reported(browser, serve, tmp_path):
    docs = tmp_path / "docs"
    shutil.copytree(REPO_ROOT / "docs", docs)
    with (docs / "index.md").open("a") as home:
        home.write(BROKEN_DIAGRAM)
    config = variant_config(tmp_path)
    config.write_text(config.read_text().replace(f"docs_dir: {REPO_ROOT / 'docs'}", f"docs_dir: {docs}"))
    site = built(tmp_path / "site", config)

    sources = mermaid_sources((site / "index.html").read_text())
    assert sources == ["flowchart TD\n    A-->"]
    with visiting(browser, serve(site)) as visit:
        diagrams = diagram_problems(visit, sources)
        loading = load_problems(visit)
    assert "0 of 1 Mermaid blocks rendered to an SVG" in diagrams
    assert loading, "Mermaid's parse error reaches the console"


def test_a_diagram_missing_a_chain_label_is_reported(browser, site, site_url):
    """The label check compares against the page's own source: a chain the SVG does not show is named."""
    sources = mermaid_sources((site / OVERVIEW / "index.html").read_text())
    with visiting(browser, site_url + OVERVIEW) as visit:
        problems = diagram_problems(visit, [sources[0] + '    extra["KUBE-NOT-THERE"]\n'])
    assert problems == ["diagram 1 has no label for KUBE-NOT-THERE"]


def test_diagram_text_the_colour_of_its_background_in_dark_mode_is_reported(browser, site_url):
    with visiting(browser, site_url + OVERVIEW) as visit:
        assert len(rendered_diagram_texts(visit, 1)) == 1
        switch_scheme(visit, "dark")
        # What a diagram drawn with Mermaid's own light theme would look like on the slate page.
        visit.page.add_style_tag(content="div.mermaid { --md-mermaid-label-fg-color: #1e2129; }")
        problems = readability_problems(visit)
    assert problems and all(": contrast 1." in problem for problem in problems), problems
