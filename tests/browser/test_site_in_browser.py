"""The built site in a real browser: every page loads cleanly and offline, diagrams render and link to their
rules, tabs, search, the diff's colours, dark mode, and hostile comments stay text.

Screenshots of the walkthrough, a node page and its diff, in light and dark mode, are saved to
build/screenshots/ for a person to look at.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import pytest
from iptables_lens.scenario import load_scenario

from tests.browser.checks import (
    SCHEMES,
    Visit,
    diagram_problems,
    diff_colour_problems,
    foreign_request_problems,
    load_problems,
    mermaid_sources,
    readability_problems,
    rendered_diagram_texts,
    settle,
    switch_scheme,
    visiting,
)
from tests.browser.conftest import HOSTILE
from tests.conftest import SEED

pytestmark = pytest.mark.browser

WALKTHROUGH = "walkthrough/"
NODE = "scenarios/kind-nodeport/blog-worker/"
OVERVIEW = "scenarios/kind-nodeport/"
NFT_OVERVIEW = "scenarios/kind-nodeport-nftables/"
FLOWS = [f"scenarios/kind-nodeport/flows/{flow.id}/" for flow in load_scenario(SEED).meta.flows]
NODE_TABS = ["Rules after the Service", "Rules before", "What changed", "Flows"]


def page_paths(site: Path) -> list[str]:
    """Every page of a built site, as a path relative to its root ("" for the home page)."""
    return sorted(f"{page.parent.relative_to(site).as_posix()}/".removeprefix("./")
                  for page in site.rglob("index.html"))


@dataclass
class PageReport:
    load: list[str]
    foreign: list[str]
    diagrams: list[str]
    diagram_count: int


@pytest.fixture(scope="module")
def crawl(browser, site, site_url) -> dict[str, PageReport]:
    """Each page opened once, with what went wrong on it."""
    reports = {}
    for path in page_paths(site):
        sources = mermaid_sources((site / path / "index.html").read_text())
        with visiting(browser, site_url + path) as visit:
            diagrams = diagram_problems(visit, sources)
            settle(visit)
            reports[path] = PageReport(load_problems(visit), foreign_request_problems(visit), diagrams, len(sources))
    return reports


def problems_by_page(crawl: dict[str, PageReport], kind: str) -> dict[str, list[str]]:
    return {path: getattr(report, kind) for path, report in crawl.items() if getattr(report, kind)}


def test_the_crawl_opens_every_page_of_the_guide_and_the_scenario(crawl):
    assert {"", WALKTHROUGH, OVERVIEW, NODE, *FLOWS} <= crawl.keys()


def test_every_page_loads_with_no_console_error_and_no_failed_request(crawl):
    assert problems_by_page(crawl, "load") == {}


def test_no_page_asks_any_host_but_127_0_0_1(crawl):
    assert problems_by_page(crawl, "foreign") == {}


def test_every_mermaid_block_renders_to_an_svg_labelled_with_its_chains(crawl):
    assert {path for path, report in crawl.items() if report.diagram_count} >= {OVERVIEW, *FLOWS}
    assert problems_by_page(crawl, "diagrams") == {}


def wait_for_diagrams(visit: Visit, count: int) -> None:
    assert len(rendered_diagram_texts(visit, count)) == count, load_problems(visit)


def show_tab(visit: Visit, title: str):
    """Click a content tab by its title; returns the tab's block."""
    visit.page.locator(".tabbed-labels > label").get_by_text(title, exact=True).click()
    return visit.page.locator(".tabbed-content > .tabbed-block").nth(NODE_TABS.index(title))


# Something each tab of the node page shows, and no other tab does.
NODE_TAB_CONTENT = {
    "Rules after the Service": "tr:has([id='after-nat-KUBE-NODEPORTS-1'])",
    "Rules before": "tr:has([id='before-nat-KUBE-SERVICES-1'])",
    "What changed": "span.gi",
    "Flows": "a[href='../flows/outside-to-nodeport/']",
}


def test_the_node_page_tabs_switch_between_rules_after_and_before_the_diff_and_the_flows(browser, site_url):
    with visiting(browser, site_url + NODE) as visit:
        assert visit.page.locator(".tabbed-labels > label").all_inner_texts() == NODE_TABS
        blocks = visit.page.locator(".tabbed-content > .tabbed-block")
        for title in NODE_TABS:
            block = show_tab(visit, title)
            assert block.is_visible(), title
            assert [blocks.nth(i).is_visible() for i in range(len(NODE_TABS))].count(True) == 1, title
            assert block.locator(NODE_TAB_CONTENT[title]).first.is_visible(), title
        assert load_problems(visit) == []


_RULE_LINKS = """() => [...document.querySelector("div.mermaid").shadowRoot.querySelectorAll("a")]
  .map(a => a.getAttribute("xlink:href") || a.getAttribute("href"))"""


@pytest.mark.parametrize("flow", FLOWS)
def test_a_flow_diagram_node_links_to_its_rule_row_in_the_node_page_table(browser, site_url, flow):
    with visiting(browser, site_url + flow) as visit:
        wait_for_diagrams(visit, 1)
        links = visit.page.evaluate(_RULE_LINKS)
        # The first node for a numbered rule of a KUBE- chain: "nat KUBE-SERVICES #6".
        index, link = next((i, link) for i, link in enumerate(links)
                           if re.search(r"#after-\w+-KUBE-[A-Z0-9-]+-\d+$", link))
        table, chain, position = re.search(r"#after-(\w+)-(KUBE-[A-Z0-9-]+)-(\d+)$", link).groups()
        node = visit.page.locator("div.mermaid a").nth(index)
        assert f"{table} {chain} #{position}" in node.text_content()
        node.click()
        visit.page.wait_for_url(f"**/{link.rsplit('/', 1)[-1]}")
        assert visit.page.url == site_url + NODE + link.rsplit("/", 1)[-1]
        row = visit.page.locator("tr", has=visit.page.locator(f"[id='after-{table}-{chain}-{position}']"))
        assert row.is_visible()
        assert row.evaluate("row => { const box = row.getBoundingClientRect(); "
                            "return box.bottom > 0 && box.top < window.innerHeight; }")
        assert f"-A {chain} " in row.inner_text()
        assert load_problems(visit) == []


_NGINX_NFT = "default/my-nginx-service/tcp/"
_CHAIN_HEAD = """(id) => { const head = document.getElementById(id).closest("p"); const box = head.getBoundingClientRect();
  return {text: head.innerText, shown: head.getClientRects().length > 0,
          inView: box.bottom > 0 && box.top < window.innerHeight}; }"""


def test_the_nft_overview_graph_draws_kube_proxys_chains_and_a_box_opens_the_chains_rows(browser, site, site_url):
    sources = mermaid_sources((site / NFT_OVERVIEW / "index.html").read_text())
    assert len(sources) == 2 and f"service-PIDQJHUF-{_NGINX_NFT}" in sources[0]
    with visiting(browser, site_url + NFT_OVERVIEW) as visit:
        assert diagram_problems(visit, sources) == []
        text = rendered_diagram_texts(visit, 2)[0]
        for shown in (f"external-PIDQJHUF-{_NGINX_NFT}", f"endpoint-NILVNJS2-{_NGINX_NFT}__10.244.2.2/80",
                      "@service-nodeports tcp . 30080", "@service-ips 10.96.118.136 . tcp . 80", "1/2"):
            assert shown in text, shown
        chain = f"external-PIDQJHUF-{_NGINX_NFT}"
        anchor = "after-ip-kube-proxy-external-PIDQJHUF-default_my-nginx-service_tcp_"
        visit.page.locator("div.mermaid").first.locator("a", has_text=chain).first.click()
        visit.page.wait_for_url(f"**/#{anchor}")
        assert visit.page.url == site_url + NFT_OVERVIEW + "blog-worker/#" + anchor
        visit.page.wait_for_function("(id) => document.getElementById(id) && "
                                     "document.getElementById(id).closest('p').getClientRects().length > 0", arg=anchor)
        head = visit.page.evaluate(_CHAIN_HEAD, anchor)
        assert head["shown"] and head["inView"] and head["text"].startswith(chain), head
        rows = visit.page.locator("table", has=visit.page.locator(f"[id='{anchor}-2']"))
        assert rows.is_visible() and f"goto service-PIDQJHUF-{_NGINX_NFT}" in rows.inner_text()
        assert load_problems(visit) == []


@pytest.mark.parametrize("query, page_title", [("KUBE-NODEPORTS", "NodePort, step by step"),
                                                ("30080", "NodePort Service on a three-node kind cluster"),
                                                ("10.244.1.2", "blog-worker")])
def test_the_site_search_finds(browser, site_url, query, page_title):
    with visiting(browser, site_url + WALKTHROUGH) as visit:
        search = visit.page.locator("input.md-search__input")
        search.fill(query)
        search.press("End")  # Material searches on keyup: one search, for the whole query
        results = visit.page.locator(".md-search-result__item")
        results.first.wait_for()
        assert any(query.lower() in text.lower() for text in results.all_inner_texts())
        titles = visit.page.locator(".md-search-result__item h1").all_inner_texts()
        assert page_title in titles
        assert load_problems(visit) == []


@pytest.mark.parametrize("scheme", SCHEMES)
def test_the_diff_shows_added_and_removed_lines_in_different_colours(browser, site_url, scheme):
    with visiting(browser, site_url + NODE) as visit:
        switch_scheme(visit, scheme)
        show_tab(visit, "What changed")
        assert diff_colour_problems(visit) == []


@pytest.mark.parametrize("path", [OVERVIEW, NFT_OVERVIEW, *FLOWS])
def test_dark_and_light_mode_toggle_and_the_diagrams_stay_readable(browser, site, site_url, path):
    with visiting(browser, site_url + path) as visit:
        wait_for_diagrams(visit, len(mermaid_sources((site / path / "index.html").read_text())))
        assert visit.page.get_attribute("body", "data-md-color-scheme") == "default"
        assert readability_problems(visit) == []
        switch_scheme(visit, "dark")
        assert readability_problems(visit) == []
        switch_scheme(visit, "light")
        assert readability_problems(visit) == []
        assert load_problems(visit) == []


def screenshot(visit: Visit, folder: Path, name: str, *, full_page: bool = False) -> Path:
    target = folder / f"{name}.png"
    target.unlink(missing_ok=True)
    # Transitions finished: a tab just clicked shows its underline in place, not half-way.
    visit.page.screenshot(path=target, full_page=full_page, animations="disabled")
    # A page that painted nothing compresses to a few kilobytes; these hold text, tables and colours.
    assert target.is_file() and target.stat().st_size > 20_000, target
    return target


def test_screenshots_of_the_walkthrough_the_node_page_and_its_diff_in_light_and_dark_mode(
        browser, site_url, screenshots):
    saved = []
    for scheme in SCHEMES:
        with visiting(browser, site_url + WALKTHROUGH) as visit:
            switch_scheme(visit, scheme)
            saved.append(screenshot(visit, screenshots, f"walkthrough-{scheme}", full_page=True))
        with visiting(browser, site_url + NODE) as visit:
            switch_scheme(visit, scheme)
            saved.append(screenshot(visit, screenshots, f"node-{scheme}"))
            block = show_tab(visit, "What changed")
            block.locator(".highlight").first.scroll_into_view_if_needed()
            saved.append(screenshot(visit, screenshots, f"diff-{scheme}"))
    assert sorted(path.name for path in saved) == sorted(
        f"{page}-{scheme}.png" for page in ("walkthrough", "node", "diff") for scheme in SCHEMES)


# What a reader of each hostile page must see, character for character.
HOSTILE_TEXT = {
    "scenarios/hostile-comments/": ['Hostile <b>comments</b> | `and` "quotes"',
                                    "Rules whose comments hold <script>alert(1)</script>, quotes"],
    "scenarios/hostile-comments/node-a/": [line for line in (HOSTILE / "node.rules").read_text().splitlines()
                                           if line.startswith("-A KUBE-SERVICES -d ")],
    "scenarios/hostile-comments/flows/to-the-first-service/": ['A <i>client</i> calls 10.96.0.1 | "first"',
                                                               "comes from a client <script>alert(3)</script>,"],
}

# What an injected comment would have left in the page had it been taken for HTML or Markdown.
_INJECTED = """() => ({
  scripts: [...document.querySelectorAll("script:not([src])")].filter(s => s.textContent.includes("alert(")).length,
  elements: document.querySelectorAll("img[src='x'], [onerror]").length
    + [...document.querySelectorAll("b, i")].filter(e => ["comments", "client"].includes(e.textContent)).length,
  links: document.querySelectorAll("a[href^='http://example.com'], a[href^='javascript:']").length,
  svgLinks: [...document.querySelectorAll("div.mermaid")].flatMap(host =>
    [...host.shadowRoot.querySelectorAll("a")].map(a => a.getAttribute("xlink:href") || a.getAttribute("href"))),
})"""


@pytest.mark.parametrize("path", HOSTILE_TEXT)
def test_hostile_comments_open_no_dialog_run_no_script_and_are_shown_literally(
        browser, hostile_site, hostile_url, path):
    sources = mermaid_sources((hostile_site / path / "index.html").read_text())
    with visiting(browser, hostile_url + path) as visit:
        assert diagram_problems(visit, sources) == []
        settle(visit)
        assert visit.dialogs == []
        injected = visit.page.evaluate(_INJECTED)
        assert (injected["scripts"], injected["elements"], injected["links"]) == (0, 0, 0)
        assert all(not link.startswith(("javascript:", "http")) for link in injected["svgLinks"])
        shown = visit.page.locator("article").inner_text()
        for text in HOSTILE_TEXT[path]:
            assert text in shown
        assert load_problems(visit) + foreign_request_problems(visit) == []
