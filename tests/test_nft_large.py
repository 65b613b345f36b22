"""A big nft ruleset renders as a big iptables-save dump does: an index page with the shared chains, sets and maps
(big maps in pages of elements, each element with its Service), pages of Services with the chains named after
each, every chain, rule and element on exactly one page, and a node page with the diff by Service but no
textual diff. The thresholds are lowered here (`render.large`'s module constants) to split a small ruleset; the
site is built with a ruleset big enough under the real ones."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from iptables_lens.dialects import read_dump
from iptables_lens.kube.nft_services import NftServiceIndex
from iptables_lens.kube.synth import cluster_ip, pod_ip
from iptables_lens.nft.fmtrules import format_element
from iptables_lens.nft.parse import parse
from iptables_lens.render import large
from iptables_lens.render.escape import text as literal
from iptables_lens.render.large import ChainLocator, Page, is_large
from iptables_lens.render.nft_large import large_ruleset_pages
from iptables_lens.render.nft_tables import nft_anchor, nft_set_anchor
from iptables_lens.render.site import scenario_pages
from iptables_lens.scenario import load_scenario

from tests.bench.scale import nodeport_listing, write_nft_scale_scenario
from tests.site_build import built_site

SERVICES, ENDPOINTS = 30, 2
BASE = "scenarios/s/node/after"
OVERALL = Path(__file__).parent / "data" / "kube-proxy-nftables" / "listings" / "TestOverallNFTablesRules.v1.34.nft"


@pytest.fixture
def small_parts(monkeypatch):
    """Pages of 7 Services and parts of 9 rows, for rulesets of over 50 rows."""
    monkeypatch.setattr(large, "SERVICES_PER_PAGE", 7)
    monkeypatch.setattr(large, "ROWS_PER_PART", 9)
    monkeypatch.setattr(large, "LARGE_DUMP_ROWS", 50)


def ruleset(services: int = SERVICES, extra: str = ""):
    text = nodeport_listing(services, ENDPOINTS)
    if extra:
        text = text.replace('"vmap to drop or reject packets to services with no endpoints"\n',
                            f'"vmap to drop or reject packets to services with no endpoints"\n\t\telements = {{ {extra} }}\n')
    return parse(text, "big.nft")


def rendered(pages: list[Page]) -> dict[str, str]:
    """Each page's Markdown with its deferred tables filled in, as the site does after Markdown."""
    return {page.path: large.PLACEHOLDER_PATTERN.sub(lambda m, p=page: p.deferred[m.group(1)](), page.body)
            for page in pages}


def pages_of(rules, locator: ChainLocator | None = None) -> dict[str, str]:
    return rendered(large_ruleset_pages(rules, "after", BASE, "node: the rules after", locator or ChainLocator()))


def test_a_ruleset_is_large_by_its_rules_and_its_elements(small_parts):
    few_rules = parse("table ip t {\n\tset s {\n\t\ttype ipv4_addr\n\t\telements = { "
                      + ", ".join(f"10.0.0.{i}" for i in range(1, 52)) + " }\n\t}\n}\n", "s.nft")
    assert few_rules.summary()[2] == 0 and is_large(few_rules)
    assert not is_large(parse("table ip t {\n\tset s {\n\t\ttype ipv4_addr\n\t\telements = { 10.0.0.1 }\n\t}\n}\n"))
    assert is_large(ruleset())


def test_services_pages_hold_each_services_chains_under_its_heading(small_parts):
    rules = ruleset()
    pages = pages_of(rules)
    services = [p for p in pages if "/services-" in p]
    assert len(services) == -(-SERVICES // 7)
    index = NftServiceIndex.of(rules)
    for service, objects in index.by_service().items():
        (page,) = [p for p in services if f"## {literal(service)}\n" in pages[p]]
        section = pages[page].split(f"## {literal(service)}\n")[1].split("\n## ")[0]
        for family, table, name in objects.named:
            assert f'id="{nft_anchor(family, table, name, prefix="after")}"' in section
        assert f"in service-ips: {cluster_ip(int(service[-5:]))} . tcp . 80" in section
        assert f"in service-nodeports: tcp . {30000 + int(service[-5:])}" in section


def test_every_rule_chain_and_element_is_on_exactly_one_page(small_parts):
    rules = ruleset()
    pages = pages_of(rules)
    ids = [i for body in pages.values() for i in re.findall(r'id="(after-[^"]+)"', body)]
    (table,) = rules.tables
    expected = [nft_anchor("ip", "kube-proxy", chain.name, position, "after") for chain in table.chains
                for position in (None, *(rule.position for rule in chain.rules))]
    # A set cut into parts is named, with its anchor, at the head of each part.
    parts = [nft_set_anchor("ip", "kube-proxy", item.name, "after")
             for item in table.sets for _ in range(max(1, -(-len(item.elements) // 9)))]
    assert sorted(ids) == sorted(expected + parts)
    rows = [row for body in pages.values() for row in re.findall(r"<tr><td><code>(.*?)</code></td>", body)]
    elements = [literal(format_element(e)) for item in table.sets for e in item.elements]
    assert sorted(rows) == sorted(elements)


def test_big_maps_are_cut_into_pages_of_elements_each_naming_its_service(small_parts):
    pages = pages_of(ruleset())
    parts = sorted((p for p in pages if "ip-kube-proxy-set-service-ips-" in p), key=lambda p: int(p[-4:-3]))
    assert len(parts) == -(-SERVICES // 9)
    index = pages[f"{BASE}/index.md"]
    for number, path in enumerate(parts, 1):
        first = (number - 1) * 9 + 1
        assert f"- [elements {first} to {min(first + 8, SERVICES)}]({Path(path).name})" in index
        rows = re.findall(r"<tr><td><code>[^<]* : goto service-\w{8}-(bench/svc-\d+)/tcp/http</code></td><td>.*?"
                          r"</td><td>(.*?)</td></tr>", pages[path])
        assert len(rows) == min(9, SERVICES - first + 1)
        for service, serves in rows:
            assert serves == f"<code>{service}:http</code> (by the chain it leads to)"


def test_the_locator_finds_each_chain_on_its_page(small_parts):
    rules = ruleset()
    locator = ChainLocator()
    pages = pages_of(rules, locator)
    for chain in rules.tables[0].chains:
        page = locator.page_of("after", "ip kube-proxy", chain.name)
        assert page is not None
        assert f'id="{nft_anchor("ip", "kube-proxy", chain.name, prefix="after")}"' in pages[page]


def test_links_between_the_pages_point_at_pages_that_exist(small_parts):
    pages = pages_of(ruleset())
    for path, body in pages.items():
        for target in re.findall(r"\]\(([^)#]+\.md)\)", body):
            assert f"{Path(path).parent}/{target}" in pages, (path, target)


def test_what_a_ruleset_says_is_shown_literally_on_its_pages(small_parts):
    hostile = '10.96.0.9 . tcp . 81 comment "x/<script>*y*</script>|[z](u):p" : drop'
    pages = pages_of(ruleset(extra=hostile))
    everything = "\n".join(pages.values())
    assert "<script>" not in everything and "[z](u)" not in everything and "*y*" not in everything
    (services,) = [body for body in pages.values() if "## x/" in body]
    assert f"## {literal('x/<script>*y*</script>|[z](u)')}\n" in services
    assert "no-endpoint-services: 10.96.0.9 . tcp . 81" in services


def test_the_index_groups_elements_by_service_in_one_pass_as_of_service_does():
    index = NftServiceIndex.of(read_dump(OVERALL))
    grouped = index.by_service()
    assert sorted(grouped) == index.services()
    for service, objects in grouped.items():
        chains, elements = index.of_service(service)
        assert [name for _, _, name in objects.named] == [o.name for o in chains]
        assert objects.elements == elements


def test_a_big_pairs_node_page_links_to_its_pages_and_diffs_by_service_only(tmp_path, monkeypatch):
    monkeypatch.setattr(large, "LARGE_DUMP_ROWS", 50)
    scenario = load_scenario(write_nft_scale_scenario(tmp_path / "scale-nft", 12, ENDPOINTS))
    pages = {page.path: page for page in scenario_pages(scenario)}
    node = pages["scenarios/scale-nft/node-a.md"].body
    assert "[The rules after](node-a/after/index.md)" in node
    assert "**<code>bench/svc-00011:http</code>**" in node and "bench/svc-00010" not in node
    assert "```diff\n+chain" in node and "The textual diff" not in node
    assert len(node) < 10_000
    assert "scenarios/scale-nft/node-a/after/services-1.md" in pages
    assert not any("/node-a/before/" in path for path in pages)


# -- the site ------------------------------------------------------------------------------------------------


SITE_SERVICES = 520  # 520 x 7 chains, 7,280 rules, and maps of 520 elements: split under the real thresholds


@pytest.fixture(scope="module")
def big_site(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("bignft")
    return built_site(folder, write_nft_scale_scenario(folder / "scale-nft", SITE_SERVICES))


def test_the_site_builds_strictly_with_every_rule_and_element_on_one_page(big_site):
    base = big_site / "scenarios" / "scale-nft" / "node-a" / "after"
    pages = {p: p.read_text() for p in base.rglob("index.html")}
    assert sum(1 for p in pages if p.parent.name.startswith("services-")) == -(-SITE_SERVICES // 100)
    assert sum(1 for p in pages if p.parent.name.startswith("ip-kube-proxy-set-service-ips-")) == 2
    assert all(len(body) < 2_000_000 for body in pages.values())
    ids = [i for body in pages.values() for i in re.findall(r'id="(after-ip-kube-proxy-[^"]+-\d+)"', body)]
    listing = read_dump(big_site.parent / "scale-nft" / "node-after.nft")
    assert len(ids) == len(set(ids)) == listing.summary()[2]
    rows = sum(len(re.findall(r"<tr><td><code>", body)) for body in pages.values())
    assert rows == sum(len(item.elements) for item in listing.tables[0].sets)


def test_the_search_finds_a_service_its_chain_its_cluster_ip_and_its_endpoint(big_site):
    docs = json.loads((big_site / "search" / "search_index.json").read_text())["docs"]

    def found(term: str) -> list[str]:
        return [d["location"] for d in docs if term in d["title"] or term in d["text"]]

    assert any("services-2" in location for location in found("bench/svc-00123"))
    section = "".join(d["text"] for d in docs if "bench/svc-00123" in d["title"])
    assert re.search(r"service-[A-Z2-7]{8}-bench/svc-00123/tcp/http", section)
    assert cluster_ip(123) in section and pod_ip(123 * 5) in section


def test_the_node_page_links_to_the_split_rules_and_keeps_the_diff(big_site):
    html = (big_site / "scenarios" / "scale-nft" / "node-a" / "index.html").read_text()
    assert 'href="after/"' in html
    assert f"bench/svc-{SITE_SERVICES - 1:05d}" in html
    assert "iptables-lens diff --text" in html
