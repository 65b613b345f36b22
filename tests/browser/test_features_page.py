"""The "Service features" page in a real browser: it loads offline and cleanly, and each link of its table lands
on the row of the rule it names, in view, on the node page (opening the content tab that holds the row).

The site is built with copies of the site's scenarios given feature blocks (tests/test_features_page.py), so
the table has features of both families and one kube-proxy writes nothing for.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.browser.checks import TARGET_ROW, foreign_request_problems, load_problems, settle, visiting
from tests.browser.conftest import built, serving
from tests.test_features_page import FEATURES_URL, feature_site_config

pytestmark = pytest.mark.browser

# A rule's row on a node page: after[-v6]-TABLE-CHAIN-POSITION.
ROW_ANCHOR = re.compile(r"after(?:-v6)?-(?:nat|filter)-(.+)-(\d+)")

@pytest.fixture(scope="module")
def features_site(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("browser-features")
    return built(folder / "site", feature_site_config(folder))


@pytest.fixture(scope="module")
def features_url(features_site) -> Iterator[str]:
    with serving(features_site) as url:
        yield url


def test_the_features_page_loads_offline_with_no_console_error(browser, features_url):
    with visiting(browser, features_url + FEATURES_URL) as visit:
        settle(visit)
        assert visit.page.title().startswith("Service features")
        assert visit.page.locator("table").first.locator("tbody tr").count() == 5
        assert load_problems(visit) == []
        assert foreign_request_problems(visit) == []


def _rule_links(browser, url: str) -> list[tuple[str, str]]:
    """(href, text) of every link to a rule's row in the table's cells (`#N`, not a chain's)."""
    with visiting(browser, url) as visit:
        links = visit.page.locator("table").first.locator("tbody td a")
        found = [(links.nth(i).get_attribute("href"), links.nth(i).inner_text()) for i in range(links.count())]
    return [(href, label) for href, label in found if label.startswith("#")]


def test_clicking_a_cell_lands_on_its_rule_row_in_view(browser, features_url):
    links = _rule_links(browser, features_url + FEATURES_URL)
    # One of each kind: an IPv4 row in the first tab, an IPv6 row in a later tab, and a filter table row.
    wanted = {"ipv4": lambda h: "#after-nat-" in h, "ipv6": lambda h: "#after-v6-" in h,
              "filter": lambda h: "#after-filter-" in h}
    chosen = {kind: next(link for link in links if test(link[0])) for kind, test in wanted.items()}
    for kind, (href, label) in chosen.items():
        with visiting(browser, features_url + FEATURES_URL) as visit:
            page = visit.page
            page.locator(f"table a[href='{href}']").first.click()
            anchor = href.rsplit("#", 1)[1]
            page.wait_for_url(f"**#{anchor}")
            page.wait_for_function("() => document.querySelector(':target') && "
                                   "document.querySelector(':target').closest('tr').getClientRects().length > 0")
            row = page.evaluate(TARGET_ROW)
            assert row["id"] == anchor, kind
            assert row["shown"] and row["inView"], (kind, row)
            chain, position = ROW_ANCHOR.fullmatch(anchor).groups()
            assert f"-A {chain} " in row["text"], (kind, row["text"])
            assert row["text"].split()[0] == position == label.lstrip("#"), (kind, row["text"])
            assert load_problems(visit) == []


def test_every_rule_link_of_the_table_names_a_row_the_node_page_shows_when_opened(browser, features_url):
    links = _rule_links(browser, features_url + FEATURES_URL)
    assert len(links) > 40
    base = features_url + FEATURES_URL
    by_page: dict[str, list[str]] = {}
    with visiting(browser, base) as visit:
        for href, _ in links:
            absolute = visit.page.evaluate("href => new URL(href, document.baseURI).href", href)
            page_url, anchor = absolute.split("#", 1)
            by_page.setdefault(page_url, []).append(anchor)
    for page_url, anchors in by_page.items():
        # The first anchor loads the page; the others change only its fragment, as an in-page link does.
        with visiting(browser, f"{page_url}#{anchors[0]}") as visit:
            for anchor in anchors:
                visit.page.goto(f"{page_url}#{anchor}")
                visit.page.wait_for_function(
                    "id => { const t = document.querySelector(':target');"
                    " return t && t.id === id && t.closest('tr').getClientRects().length > 0; }", arg=anchor)
                row = visit.page.evaluate(TARGET_ROW)
                assert row["id"] == anchor and row["inView"], (page_url, anchor, row)
                assert f"-A {ROW_ANCHOR.fullmatch(anchor).group(1)} " in row["text"], (anchor, row["text"])
            assert load_problems(visit) == []


_TARGET_IN_TAB = """() => {
  const target = document.querySelector(":target");
  if (!target) return null;
  const block = target.closest(".tabbed-block");
  if (!block) return {id: target.id, tab: null};
  const index = Array.from(block.parentElement.children).indexOf(block);
  const label = block.closest(".tabbed-set").querySelectorAll(".tabbed-labels > label")[index];
  const box = target.getBoundingClientRect();
  const header = document.querySelector(".md-header").getBoundingClientRect().bottom;
  return {id: target.id, tab: label.innerText.trim(), shown: block.getClientRects().length > 0,
          inView: box.top >= header - 1 && box.top < window.innerHeight};
}"""


def test_clicking_an_nftables_cell_opens_its_feature_s_nftables_tab_at_what_it_counts(browser, features_url):
    with visiting(browser, features_url + FEATURES_URL) as visit:
        links = visit.page.locator("table").nth(1).locator("tbody td a")
        hrefs = [links.nth(i).get_attribute("href") for i in range(links.count())]
    # One link to a set's elements and one to a family of per-Service chains, each in a tab shown second.
    chosen = [next(h for h in hrefs if h.endswith("-nft-service-ips")), next(h for h in hrefs if h.endswith("-nft-endpoint"))]
    for href in chosen:
        with visiting(browser, features_url + FEATURES_URL) as visit:
            page = visit.page
            page.locator(f"table a[href='{href}']").first.click()
            page.wait_for_url(f"**{href}")
            page.wait_for_function("() => { const t = document.querySelector(':target');"
                                   " return t && t.closest('.tabbed-block').getClientRects().length > 0; }")
            found = page.evaluate(_TARGET_IN_TAB)
            assert found["id"] == href.removeprefix("#") and found["tab"] == "nftables mode", found
            assert found["shown"] and found["inView"], found
            assert load_problems(visit) == []
