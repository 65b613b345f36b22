"""A big scenario renders usefully: split pages, an index, and a search that finds what a reader looks for."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from iptables_lens.kube.synth import cluster_ip, pod_ip
from iptables_lens.render.large import ROWS_PER_PART

from tests.bench.scale import write_scale_scenario
from tests.site_build import built_site

SERVICES = 400  # 10,800 rules: big enough to be split


@pytest.fixture(scope="module")
def big_site(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("big")
    return built_site(folder, write_scale_scenario(folder / "scale-400", SERVICES))


def _rows(html: str) -> int:
    return html.count("<tr>")


def test_no_page_holds_more_than_a_part_or_a_hundred_services(big_site):
    base = big_site / "scenarios" / "scale-400" / "node-a" / "after"
    pages = list(base.rglob("index.html"))
    assert len(pages) >= 1 + SERVICES // 100
    services_pages = [p for p in pages if p.parent.name.startswith("services-")]
    assert len(services_pages) == SERVICES // 100
    for page in pages:
        html = page.read_text()
        assert _rows(html) <= max(ROWS_PER_PART, 100 * 30), page
        assert len(html) < 2_000_000


def test_every_rule_of_the_big_dump_is_on_some_page(big_site):
    base = big_site / "scenarios" / "scale-400" / "node-a" / "after"
    ids = set()
    for page in base.rglob("index.html"):
        ids |= set(re.findall(r'id="(after-[^"]+-\d+)"', page.read_text()))
    text = (big_site.parent / "scenarios" / "scale-400" / "node-after.rules").read_text()
    assert len(ids) == sum(1 for line in text.splitlines() if line.startswith("-A "))


def test_the_search_finds_a_service_a_chain_and_an_address(big_site):
    index = json.loads((big_site / "search" / "search_index.json").read_text())
    docs = index["docs"]

    def found(term: str) -> list[str]:
        return [d["location"] for d in docs if term in d["title"] or term in d["text"]]

    service = "bench/svc-00123"
    assert any("services-2" in loc for loc in found(service))
    chain = next(re.finditer(r"KUBE-SVC-[A-Z2-7]{16}", "".join(d["text"] for d in docs if service in d["title"])))
    assert found(chain.group(0))
    assert found(cluster_ip(123)) and found(pod_ip(123 * 5))


def test_the_node_page_links_to_the_split_rules_and_keeps_the_diff(big_site):
    html = (big_site / "scenarios" / "scale-400" / "node-a" / "index.html").read_text()
    assert 'href="after/"' in html
    assert "bench/svc-00399" in html  # the one Service the two dumps differ by
    assert "iptables-lens diff --text" in html
