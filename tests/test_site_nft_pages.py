"""The guide's pages on nftables mode (docs/walkthrough-nftables.md, docs/iptables-vs-nftables.md): every link
to a node page lands on a row, chain, set or map that page has, and a link that names a rule (`services #2`)
lands on that rule's row; the side-by-side table pairs each of kube-proxy's iptables-mode chains with what
nftables mode writes instead, on both nodes' pages.

The node pages are made as the site makes them (`render.site.scenario_pages`), without MkDocs.
"""

from __future__ import annotations

import re
from functools import cache

import pytest
from iptables_lens.render.site import scenario_pages
from iptables_lens.scenario import load_scenario

from tests.conftest import REPO_ROOT

PAGES = ("walkthrough-nftables.md", "iptables-vs-nftables.md")
LINK = re.compile(r"\[([^\]]+)\]\((scenarios/[^)#]+\.md)#([^)]+)\)")
# A label that names a rule: `KUBE-SERVICES #6`, `external-PIDQJHUF-… #1`, or `#2` after its chain's link.
RULE_LABEL = re.compile(r"(?:`?(?P<chain>[^`\s]+)`? )?#(?P<position>\d+)")


@cache
def ids_of(page: str) -> frozenset[str]:
    """The HTML ids of the generated page `page` (`scenarios/SCENARIO/NODE.md`)."""
    scenario = page.split("/")[1]
    for generated in scenario_pages(load_scenario(REPO_ROOT / "dumps" / scenario)):
        if generated.path == page:
            return frozenset(re.findall(r'id="([^"]+)"', generated.body))
    raise AssertionError(f"no page {page}")


def links(name: str) -> list[tuple[str, str, str]]:
    """(label, page, anchor) of every link of docs/`name` to an anchor of a generated page."""
    return LINK.findall((REPO_ROOT / "docs" / name).read_text())


@pytest.mark.parametrize("name", PAGES)
def test_every_link_to_a_node_page_lands_on_an_id_it_has(name):
    found = links(name)
    assert len(found) > 15
    missing = [(label, page, anchor) for label, page, anchor in found if anchor not in ids_of(page)]
    assert missing == []


@pytest.mark.parametrize("name", PAGES)
def test_a_link_that_names_a_rule_lands_on_that_rules_row(name):
    checked = 0
    for label, _page, anchor in links(name):
        named = RULE_LABEL.fullmatch(label.strip())
        if named is None:
            continue
        checked += 1
        # A rule's row is CHAIN-POSITION; the label's chain, shortened with an ellipsis, starts the chain's id.
        assert anchor.endswith(f"-{named['position']}"), (label, anchor)
        chain = named["chain"]
        if chain is not None:
            prefix = re.sub(r"[^A-Za-z0-9_.-]", "_", chain.rstrip("…"))
            assert f"-{prefix}" in anchor, (label, anchor)
    assert checked > (10 if name == "iptables-vs-nftables.md" else 0)


def test_each_row_of_the_table_links_both_modes_where_both_dumps_have_the_chains():
    text = (REPO_ROOT / "docs" / "iptables-vs-nftables.md").read_text()
    table = text.split("## What replaces what", 1)[1].split("\n## ", 1)[0]
    rows = [line for line in table.splitlines() if line.startswith("| ") and not line.startswith("| ---")][1:]
    assert len(rows) == 14
    both = 0
    for row in rows:
        iptables_cell, nft_cell, _ = [cell.strip() for cell in row.strip("|").split(" | ", 2)]
        left = LINK.findall(iptables_cell)
        right = LINK.findall(nft_cell)
        assert all(page == "scenarios/kind-nodeport/blog-worker.md" for _, page, _ in left), row
        assert all(page == "scenarios/kind-nodeport-nftables/blog-worker.md" for _, page, _ in right), row
        both += bool(left and right)
    # The rows without a link on a side are those that say the dump has nothing of the kind.
    assert both == 11
