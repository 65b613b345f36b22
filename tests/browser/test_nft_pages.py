"""The guide's pages on nftables mode and an nftables-mode flow page in a real browser: they load offline and
cleanly, a rule link of the side-by-side table opens the node page's tab that holds the row and shows the row,
and the flow's diagram renders its nft chain names (with their slashes) and links each box to its row.

The site is built with a copy of dumps/kind-nodeport-nftables given the NodePort flow; until scenario.flows
traces nftables rulesets itself, the build it runs lets it (`LIFT`).
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.browser.checks import (
    TARGET_ROW,
    diagram_problems,
    foreign_request_problems,
    load_problems,
    mermaid_sources,
    rendered_diagram_texts,
    settle,
    visiting,
)
from tests.browser.conftest import serving
from tests.conftest import REPO_ROOT
from tests.site_build import variant_config

pytestmark = pytest.mark.browser

GUIDE = ("walkthrough-nftables/", "iptables-vs-nftables/")
SIDE_BY_SIDE = "iptables-vs-nftables/"
FLOW_PAGE = "scenarios/kind-nodeport-nftables/flows/outside-to-nodeport/"
NFT_NODE = "scenarios/kind-nodeport-nftables/blog-worker/"


@pytest.fixture(scope="module")
def nft_site(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("browser-nft")
    site = folder / "site"
    argv = [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(site),
            "--config-file", str(variant_config(folder))]
    result = subprocess.run(argv, cwd=REPO_ROOT, capture_output=True, text=True,
                            env=dict(os.environ, NO_MKDOCS_2_WARNING="1"))
    assert result.returncode == 0, result.stderr
    assert "WARNING" not in result.stderr, result.stderr
    return site


@pytest.fixture(scope="module")
def nft_url(nft_site) -> Iterator[str]:
    with serving(nft_site) as url:
        yield url


@pytest.mark.parametrize("path", GUIDE)
def test_the_guide_pages_load_offline_with_no_console_error(browser, nft_url, path):
    with visiting(browser, nft_url + path) as visit:
        settle(visit)
        assert visit.page.locator("h1").first.inner_text().rstrip("¶") in (
            "NodePort in nftables mode, step by step", "iptables mode and nftables mode, side by side")
        assert visit.page.locator("div.highlight code").count() > 3
        assert load_problems(visit) == []
        assert foreign_request_problems(visit) == []


@pytest.mark.parametrize("label, anchor, node, words", [
    ("services #1", "after-ip-kube-proxy-services-1", NFT_NODE, "ip daddr . meta l4proto . th dport vmap @service-ips"),
    ("#2", "after-ip-kube-proxy-service-PIDQJHUF-default_my-nginx-service_tcp_-2", NFT_NODE,
     "numgen random mod 2 vmap"),
    ("KUBE-SERVICES #5", "after-nat-KUBE-SERVICES-5", "scenarios/kind-nodeport/blog-worker/",
     "-A KUBE-SERVICES -d 10.96.118.136/32"),
])
def test_a_rule_link_of_the_table_opens_the_tab_that_holds_its_row_and_shows_it(browser, nft_url, label, anchor,
                                                                                 node, words):
    with visiting(browser, nft_url + SIDE_BY_SIDE) as visit:
        page = visit.page
        link = page.locator("table").first.locator(f"td a[href$='#{anchor}']").first
        assert link.inner_text() == label
        link.click()
        page.wait_for_url(f"**/{node}#{anchor}")
        page.wait_for_function("() => document.querySelector(':target') && "
                               "document.querySelector(':target').closest('tr').getClientRects().length > 0")
        row = page.evaluate(TARGET_ROW)
        assert row["id"] == anchor and row["shown"] and row["inView"], row
        assert words in row["text"], row["text"]
        assert load_problems(visit) == []


def test_the_nft_flow_diagram_renders_its_chain_names_and_a_box_opens_its_row(browser, nft_site, nft_url):
    sources = mermaid_sources((nft_site / FLOW_PAGE / "index.html").read_text())
    assert len(sources) == 1 and "endpoint-NILVNJS2-default/my-nginx-service/tcp/__10.244.2.2/80" in sources[0]
    with visiting(browser, nft_url + FLOW_PAGE) as visit:
        assert diagram_problems(visit, sources) == []
        text = rendered_diagram_texts(visit, 1)[0]
        assert "ip kube-proxy endpoint-NILVNJS2-default/my-nginx-service/tcp/__10.244.2.2/80 #2" in text
        assert "goto endpoint-GRRSYFIP-default/my-nginx-service/tcp/__10.244.1.2/80" in text
        box = visit.page.locator("div.mermaid a", has_text="ip kube-proxy services #2").first
        box.click()
        visit.page.wait_for_url("**/#after-ip-kube-proxy-services-2")
        assert visit.page.url == nft_url + NFT_NODE + "#after-ip-kube-proxy-services-2"
        row = visit.page.locator("tr", has=visit.page.locator("[id='after-ip-kube-proxy-services-2']"))
        assert row.is_visible() and "vmap @service-nodeports" in row.inner_text()
        assert load_problems(visit) == []
