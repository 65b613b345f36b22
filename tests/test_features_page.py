"""The "Service features" page: a row per feature in its order, each cell linking to the rows of the rules the
feature adds on its node's page, a section per feature with its diff and flows, and dump text kept literal.

The scenarios here are copies of the site's, each given a `feature:` block in a temporary folder (the
generated scenarios under dumps/ are synth's to write), beside the seed, whose block is its own.
"""

from __future__ import annotations

import html as html_module
import re
import shutil
from collections import Counter
from pathlib import Path
from urllib.parse import urljoin, urlsplit

import pytest
import yaml
from iptables_lens.errors import DumpError
from iptables_lens.iptables.diff import diff_dumps
from iptables_lens.kube.services import ServiceIndex, names_service
from iptables_lens.render.features import PAGE, feature_changes
from iptables_lens.render.features_nft import nft_feature
from iptables_lens.render.site import site_pages
from iptables_lens.scenario import load_scenario
from iptables_lens.scenario.flows import predict

from tests.conftest import REPO_ROOT, SEED
from tests.site_build import build, variant_config

DUMPS = REPO_ROOT / "dumps"
HOSTILE = REPO_ROOT / "tests" / "data" / "scenarios" / "hostile-comments"
FEATURES_URL = f"scenarios/{PAGE.removesuffix('.md')}/"

# Folder -> the feature block it is given. Orders differ from the folders' sorted order on purpose.
FEATURES = {
    "kind-clusterip": {"id": "clusterip", "title": "`type: ClusterIP`", "order": 10, "node": "blog-worker",
                       "summary": "A cluster IP and nothing else."},
    "kind-nodeport-local": {"id": "etp-local", "title": "`externalTrafficPolicy: Local`", "order": 30,
                            "node": "blog-worker3", "summary": "Outside traffic stays on the node it reaches."},
    "a-dual-stack": {"id": "dual-stack", "title": "`ipFamilyPolicy: PreferDualStack`", "order": 40,
                     "node": "blog-worker", "summary": "The same rules in both families."},
    "b-nothing": {"id": "nothing", "title": "`type: ExternalName`", "order": 50, "node": "blog-worker",
                  "summary": "kube-proxy has nothing to do."},
}
ORDER = ["clusterip", "nodeport", "etp-local", "dual-stack", "nothing"]


def with_feature(source: Path, target: Path, feature: dict, edit=None) -> Path:
    """A copy of the scenario `source` at `target` whose scenario.yaml has `feature` (and `edit` applied)."""
    shutil.copytree(source, target, symlinks=True)
    metadata = target / "scenario.yaml"
    meta = yaml.safe_load(metadata.read_text())
    meta["feature"] = feature
    if edit is not None:
        edit(meta, target)
    metadata.write_text(yaml.safe_dump(meta, sort_keys=False, allow_unicode=True))
    return target


def _nothing_changes(meta: dict, folder: Path) -> None:
    """No Service, and every node's rules after are its rules before: a feature kube-proxy writes nothing for."""
    meta["services"] = []
    for entry in meta["dumps"]:
        if entry["moment"] == "after":
            before = entry["file"].replace("-after", "-before")
            shutil.copyfile(folder / before, folder / entry["file"])
    shutil.rmtree(folder / "kernel", ignore_errors=True)


def feature_scenarios(folder: Path) -> list[Path]:
    """The scenarios of FEATURES, made under `folder` (the seed is not among them)."""
    sources = {"kind-clusterip": DUMPS / "kind-clusterip", "kind-nodeport-local": DUMPS / "kind-nodeport-local",
               "a-dual-stack": DUMPS / "kind-nodeport-dual-stack", "b-nothing": DUMPS / "kind-clusterip"}
    folder.mkdir(parents=True, exist_ok=True)
    return [with_feature(sources[name], folder / name, feature, _nothing_changes if name == "b-nothing" else None)
            for name, feature in FEATURES.items()]


def feature_site_config(folder: Path) -> Path:
    """An mkdocs.yml whose scenarios are the seed and the scenarios of FEATURES."""
    return variant_config(folder, *feature_scenarios(folder / "made"))


@pytest.fixture(scope="module")
def made(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("features")
    config = feature_site_config(folder)
    result = build(folder / "site", config)
    assert result.returncode == 0, result.stderr
    assert "WARNING" not in result.stderr, result.stderr
    return folder


@pytest.fixture(scope="module")
def site(made) -> Path:
    return made / "site"


@pytest.fixture(scope="module")
def scenarios(made) -> dict[str, object]:
    """Feature id -> its scenario, loaded from the folders the site was built from."""
    loaded = [load_scenario(folder) for folder in sorted((made / "scenarios").iterdir())]
    return {s.meta.feature.id: s for s in loaded if s.meta.feature is not None}


def built_page(site: Path, url: str) -> str:
    return (site / url / "index.html").read_text()


def features_html(site: Path) -> str:
    return built_page(site, FEATURES_URL)


def table_rows(page_html: str) -> list[str]:
    table = re.search(r'<h2 id="the-features-at-a-glance">.*?<table>(.*?)</table>', page_html, re.S).group(1)
    return re.findall(r"<tr>(.*?)</tr>", table.split("</thead>")[1], re.S)


def cell_links(row: str) -> list[str]:
    cells = re.findall(r"<td[^>]*>(.*?)</td>", row, re.S)
    return [html_module.unescape(href) for cell in cells[1:] for href in re.findall(r'href="([^"]+)"', cell)]


def element_row(page_html: str, element_id: str) -> str | None:
    """The table row that holds the element with `element_id`, or None."""
    for row in re.findall(r"<tr>(.*?)</tr>", page_html, re.S):
        if f'id="{element_id}"' in row:
            return row
    return None


def visible_text(fragment: str) -> str:
    return html_module.unescape(re.sub(r"<[^>]+>", "", fragment))


# -- the table -------------------------------------------------------------------------------------------------


def test_the_table_has_a_row_per_feature_in_their_order(site):
    rows = table_rows(features_html(site))
    firsts = [re.search(r'href="#([^"]+)"', row).group(1) for row in rows]
    assert firsts == ORDER


def test_the_sections_come_in_the_features_order_each_under_its_id(site):
    ids = re.findall(r'<h2 id="([^"]+)"', features_html(site))
    assert [i for i in ids if i in ORDER] == ORDER
    assert ids.index("the-features-at-a-glance") < ids.index(ORDER[0])


def test_every_cell_link_lands_on_an_anchor_of_the_node_page(site):
    base = f"http://site/{FEATURES_URL}"
    checked = 0
    for row in table_rows(features_html(site)):
        for href in cell_links(row):
            url = urlsplit(urljoin(base, href))
            target = built_page(site, url.path.strip("/"))
            assert f'id="{url.fragment}"' in target, href
            checked += 1
    assert checked > 40


def _added_rules_of_the_features_services(scenario) -> set[tuple[int, str, str, int]]:
    """(family, table, chain, position) of each rule of the feature node's dumps after that is not in its chain
    before (as many times), and that serves a Service the scenario declares or none: an oracle apart from the
    page's code, reading the dumps' texts."""
    feature = scenario.meta.feature
    declared = {s.key for s in scenario.meta.services}
    found = set()
    for family in (4, 6):
        before, after = (scenario.dump_for(feature.node, m, family) for m in ("before", "after"))
        if before is None or after is None:
            continue
        index = ServiceIndex.of(after)
        for table in after.tables:
            for chain in table.chains:
                old = Counter()
                if before.has_table(table.name) and before.table(table.name).has_chain(chain.name):
                    old = Counter(r.text.split("] ", 1)[-1] for r in before.table(table.name).chain(chain.name).rules)
                for rule in chain.rules:
                    text = rule.text.split("] ", 1)[-1]
                    if old[text]:
                        old[text] -= 1
                        continue
                    service = index.service_of(rule)
                    if chain.name.startswith("DOCKER_"):
                        continue  # Docker's DNS ports: noise
                    if service is None or any(names_service(service, key) for key in declared):
                        found.add((family, table.name, chain.name, rule.position))
    return found


_ROW_ANCHOR = re.compile(r"^(after|before)(-v6)?-(\w+)-(.+)-(\d+)$")


def test_the_cells_link_exactly_the_rules_the_feature_adds_each_to_its_row(site, scenarios):
    rows = dict(zip(ORDER, table_rows(features_html(site)), strict=True))
    for feature_id, scenario in scenarios.items():
        node_page = built_page(site, f"scenarios/{scenario.name}/{scenario.meta.feature.node}")
        linked = set()
        for href in cell_links(rows[feature_id]):
            anchor = href.split("#", 1)[1]
            match = _ROW_ANCHOR.match(anchor)
            if match is None:
                continue  # a chain's link
            moment, v6, table, chain, position = match.groups()
            assert moment == "after", (feature_id, anchor)
            family = 6 if v6 else 4
            rule = scenario.dump_for(scenario.meta.feature.node, "after", family).table(table).chain(chain).rules[
                int(position) - 1]
            row = element_row(node_page, anchor)
            assert row is not None, anchor
            assert rule.text.split("] ", 1)[-1] in visible_text(row), (anchor, rule.text)
            linked.add((family, table, chain, int(position)))
        assert linked == _added_rules_of_the_features_services(scenario), feature_id


def test_a_cell_counts_what_it_links(site):
    for row in table_rows(features_html(site)):
        for cell in re.findall(r"<td[^>]*>(.*?)</td>", row, re.S)[1:]:
            if not cell.strip():
                continue
            summary = visible_text(re.search(r"<strong>(.*?)</strong>", cell).group(1))
            rules = len(re.findall(r">#\d+<", cell))
            chains = len(re.findall(r'title="KUBE-', cell))
            expected = ", ".join(part for part in (
                f"{chains} chain{'s' if chains != 1 else ''}" if chains else "",
                f"{rules} rule{'s' if rules != 1 else ''}" if rules else "") if part)
            assert summary == expected, cell


def test_the_columns_are_the_places_the_diffs_hold_in_packet_order(site, scenarios):
    header = re.search(r"<thead>(.*?)</thead>", features_html(site), re.S).group(1)
    columns = [visible_text(th) for th in re.findall(r"<th[^>]*>(.*?)</th>", header, re.S)][1:]
    assert columns[:3] == ["nat KUBE-SERVICES", "nat KUBE-NODEPORTS", "nat KUBE-EXT-*"]
    assert set(columns) == {str(c.place) for s in scenarios.values() for c in feature_changes(s)}
    # blog-worker3 has no local endpoint of the Local Service: its outside traffic is dropped in filter.
    assert columns[-3:] == ["nat KUBE-SVC-*", "nat KUBE-SEP-*", "filter KUBE-EXTERNAL-SERVICES"]


def test_the_dual_stack_feature_links_the_ipv6_rows_too(site):
    row = dict(zip(ORDER, table_rows(features_html(site)), strict=True))["dual-stack"]
    anchors = {href.split("#", 1)[1] for href in cell_links(row)}
    assert any(a.startswith("after-v6-nat-KUBE-SEP-") for a in anchors)
    assert any(a.startswith("after-nat-KUBE-SEP-") for a in anchors)
    assert "IPv6:" in visible_text(row)


# -- the sections ----------------------------------------------------------------------------------------------


def section(page_html: str, feature_id: str) -> str:
    return re.search(rf'<h2 id="{feature_id}">(.*?)(?=<h2 )', page_html, re.S).group(1)


def test_each_section_shows_its_summary_diff_and_each_flow_with_its_outcomes(site, scenarios):
    page_html = features_html(site)
    for feature_id, scenario in scenarios.items():
        body = section(page_html, feature_id)
        text = visible_text(body)
        assert scenario.meta.feature.summary.replace("`", "") in text
        assert "What changed on" in text and "The textual diff" in text
        for flow in scenario.meta.flows:
            assert f'href="../{scenario.name}/flows/{flow.id}/"' in body, flow.id
            flow_text = text.split(flow.title, 1)[1]
            for outcome in predict(scenario, flow).outcomes:
                assert str(outcome.probability) in flow_text and outcome.verdict in flow_text
                if outcome.endpoint:
                    assert outcome.endpoint in flow_text


def test_a_feature_kube_proxy_writes_nothing_for_says_so_and_shows_its_empty_diff(site):
    page_html = features_html(site)
    body = section(page_html, "nothing")
    assert "kube-proxy writes nothing for this Service" in visible_text(body)
    assert "The textual diff" in visible_text(body)
    assert '<span class="gi">+-A' not in body and '<span class="gd">--A' not in body
    row = dict(zip(ORDER, table_rows(page_html), strict=True))["nothing"]
    assert cell_links(row) == []


def test_the_seed_is_labelled_captured_and_the_copies_of_generated_scenarios_generated(site):
    rows = dict(zip(ORDER, table_rows(features_html(site)), strict=True))
    assert "<em>captured</em>" in rows["nodeport"]
    assert all("<em>generated</em>" in rows[i] for i in ORDER if i != "nodeport")


def test_the_page_is_in_the_navigation_before_the_scenarios_and_linked_from_the_guide(site):
    home = built_page(site, "")
    nav = home[home.index('<nav class="md-nav md-nav--primary"'):]
    assert nav.index(f'href="{FEATURES_URL}"') < nav.index('href="scenarios/kind-nodeport/"')
    assert f'href="../{FEATURES_URL}' in built_page(site, "kube-proxy-chains")


def test_the_features_page_is_no_scenario_s_page_in_the_pull_request_summary(made):
    from iptables_lens.render.site_changes import site_changes

    folder = made / "scenarios"
    changes = site_changes(folder, folder, {})
    assert all(p.path != f"scenarios/{PAGE}" for c in changes for p in c.pages)


# -- nftables mode -----------------------------------------------------------------------------------------------


def nft_rows(page_html: str) -> list[str]:
    table = re.search(r'<h2 id="the-same-features-in-nftables-mode">.*?<table>(.*?)</table>', page_html, re.S).group(1)
    return re.findall(r"<tr>(.*?)</tr>", table.split("</thead>")[1], re.S)


def nft_tab(page_html: str, feature_id: str) -> str:
    """The "nftables mode" tab of a feature's section: from its anchor to the section's flows (or its end)."""
    body = section(page_html, feature_id)
    start = body.index(f'id="{feature_id}-nftables"')
    return body[start:body.find("<strong>Its flows</strong>", start) % (len(body) + 1)]


def test_the_nftables_table_has_a_row_per_feature_in_their_order_each_linking_its_tab(site):
    firsts = [re.search(r'href="#([^"]+)"', row).group(1) for row in nft_rows(features_html(site))]
    assert firsts == [f"{feature_id}-nftables" for feature_id in ORDER]


def test_each_nftables_cell_lands_in_its_feature_s_nftables_tab(site):
    page_html = features_html(site)
    checked = 0
    for feature_id, row in zip(ORDER, nft_rows(page_html), strict=True):
        tab = nft_tab(page_html, feature_id)
        assert 'tabbed-block' not in tab.split(f'id="{feature_id}-nftables"')[0]
        for href in cell_links(row):
            assert f'id="{href.removeprefix("#")}"' in tab, (feature_id, href)
            checked += 1
    assert checked > 10


def test_an_nftables_cell_counts_the_elements_and_chains_its_tab_shows(site):
    page_html = features_html(site)
    header = re.search(r'<h2 id="the-same-features-in-nftables-mode">.*?<thead>(.*?)</thead>', page_html, re.S).group(1)
    places = [visible_text(th) for th in re.findall(r"<th[^>]*>(.*?)</th>", header, re.S)][1:]
    checked = 0
    for feature_id, row in zip(ORDER, nft_rows(page_html), strict=True):
        tab = visible_text(nft_tab(page_html, feature_id))
        cells = [visible_text(c) for c in re.findall(r"<td[^>]*>(.*?)</td>", row, re.S)[1:]]
        for place, cell in zip(places, cells, strict=True):
            counts = dict((word.rstrip("s"), int(n)) for n, word in re.findall(r"(\d+) (\w+)", cell))
            if place.endswith("-*") and place != "affinity-*":
                assert counts.get("chain", 0) == len(re.findall(rf"^\s*chain {re.escape(place[:-1])}", tab, re.M))
                checked += 1
            elif "element" in counts:
                rows = re.findall(rf"^{re.escape(place)}\n", tab, re.M)
                assert counts["element"] == len(rows), (feature_id, place, cell)
                checked += 1
    assert checked > 10


def _ends(trace) -> list[tuple]:
    return sorted((str(o.probability), o.endpoint, o.verdict, o.masquerade) for o in trace.outcomes)


def test_each_flow_shows_its_nftables_outcomes_beside_its_iptables_ones_and_whether_they_agree(site, scenarios):
    page_html = features_html(site)
    agreed = set()
    for feature_id, scenario in scenarios.items():
        nft = nft_feature(scenario)
        text = visible_text(section(page_html, feature_id))
        for flow in scenario.meta.flows:
            after = text.split(flow.title, 1)[1]
            if not nft.flows:
                assert "In nftables mode" not in after, (feature_id, flow.id)
                continue
            shown = after.split("In nftables mode", 1)[1]
            same = _ends(predict(scenario, flow)) == _ends(nft.flows[flow.id].trace)
            agreed.add(same)
            words = "the same outcomes as in iptables mode" if same else "other outcomes than in iptables mode"
            assert shown.lstrip().startswith(f"(v1.34, synth's rules): {words}"), (feature_id, flow.id)
            for outcome in nft.flows[flow.id].trace.outcomes:
                assert str(outcome.probability) in shown and outcome.delivery in shown
    # The copy whose Service is gone sends its flows to a cluster IP no Service has: nftables mode drops them.
    assert agreed == {True, False}


def test_a_feature_whose_facts_do_not_describe_its_dumps_says_why_it_has_no_nftables_rules(site):
    page_html = features_html(site)
    tab = visible_text(nft_tab(page_html, "dual-stack"))
    assert "Not made" in tab and "default/no-endpoints" in tab
    row = dict(zip(ORDER, nft_rows(page_html), strict=True))["dual-stack"]
    assert "not made" in visible_text(row) and len(cell_links(row)) == 0


def test_a_feature_kube_proxy_writes_nothing_for_says_so_in_nftables_mode_too(site):
    tab = visible_text(nft_tab(features_html(site), "nothing"))
    assert "kube-proxy's nftables mode writes nothing for it either" in tab
    assert "not a captured dump" in tab


# -- escaping and mistakes ---------------------------------------------------------------------------------------


def _hostile_before(meta: dict, folder: Path) -> None:
    """A dump before for the hostile scenario's node: its rules less two of KUBE-SERVICES."""
    lines = (folder / "node.rules").read_text().splitlines()
    kept = [line for line in lines if not re.match(r"-A KUBE-SERVICES -d 10\.96\.0\.[45]/32", line)]
    (folder / "before.rules").write_text("\n".join(kept) + "\n")
    meta["dumps"].append({"file": "before.rules", "node": "node-a", "moment": "before"})


HOSTILE_FEATURE = {"id": "hostile", "title": "<script>alert(7)</script> `sessionAffinity: ClientIP` | x", "order": 1,
                   "node": "node-a",
                   "summary": "<img src=x onerror=alert(8)> [click](javascript:alert(9)) **bold** `a <b>code</b>`"}


@pytest.fixture(scope="module")
def hostile_site(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("features-hostile")
    scenario = with_feature(HOSTILE, folder / "made" / "hostile-feature", HOSTILE_FEATURE, _hostile_before)
    result = build(folder / "site", variant_config(folder, scenario))
    assert result.returncode == 0, result.stderr
    return folder / "site"


def test_feature_text_and_dump_comments_stay_literal(hostile_site):
    page_html = features_html(hostile_site)
    for hostile in ("<script>alert(", "<img src=x", "href=\"javascript:", "<b>code</b>", "<strong>bold"):
        assert hostile not in page_html, hostile
    shown = visible_text(page_html)
    assert "<script>alert(7)</script>" in shown and "**bold**" in shown
    assert "<code>sessionAffinity: ClientIP</code>" in page_html
    assert "<code>a &lt;b&gt;code&lt;/b&gt;</code>" in page_html or "<code>a &#60;b&#62;code&#60;/b&#62;</code>" in page_html
    # The two rules the feature adds hold hostile comments; the diff shows them as text.
    assert "<img src=x onerror=alert(2)> & [link](http://example.com) {#id}" in shown


def test_the_hostile_rows_still_link_to_their_rows(hostile_site):
    page_html = features_html(hostile_site)
    row = table_rows(page_html)[0]
    anchors = [href.split("#", 1)[1] for href in cell_links(row)]
    assert anchors == ["after-nat-KUBE-SERVICES-4", "after-nat-KUBE-SERVICES-5"]
    node_page = built_page(hostile_site, "scenarios/hostile-feature/node-a")
    assert all(element_row(node_page, anchor) for anchor in anchors)


def test_two_features_with_one_id_are_a_dump_error_at_the_second_id(tmp_path):
    first = with_feature(DUMPS / "kind-clusterip", tmp_path / "a", FEATURES["kind-clusterip"])
    second = with_feature(DUMPS / "kind-nodeport-local", tmp_path / "b", FEATURES["kind-clusterip"])
    with pytest.raises(DumpError) as caught:
        site_pages([first, second], repo_root=tmp_path)
    assert caught.value.source == str(second / "scenario.yaml")
    assert "feature.id" in caught.value.message and "taken by scenario a" in caught.value.message
    assert caught.value.text.strip() == "id: clusterip"


def test_a_feature_node_without_dumps_before_and_after_is_a_dump_error(tmp_path):
    feature = dict(FEATURES["kind-clusterip"], node="blog-control-plane")
    folder = with_feature(DUMPS / "kind-clusterip", tmp_path / "a", feature)
    with pytest.raises(DumpError) as caught:
        site_pages([folder], repo_root=tmp_path)
    assert caught.value.message.startswith("feature.node: the feature's node blog-control-plane needs a dump")
    assert caught.value.text.strip() == "node: blog-control-plane"


def test_no_feature_no_page(tmp_path):
    pages = site_pages([DUMPS / "kind-nodeport-local"], repo_root=REPO_ROOT)
    assert all(page.kind != "features" for page in pages)


# -- the Python API --------------------------------------------------------------------------------------------


def test_feature_changes_of_the_seed_are_its_service_s_and_none_of_the_api_server_s():
    changes = feature_changes(load_scenario(SEED))
    texts = [w.text for c in changes for w in c.written if w.position is not None]
    assert len(texts) == 11 and all("default/kubernetes" not in t for t in texts)
    seed = load_scenario(SEED)
    diff = diff_dumps(seed.dump_for("blog-worker", "before"), seed.dump_for("blog-worker", "after"))
    nginx = next(g for g in diff.services if g.service == "default/my-nginx-service")
    assert sorted(texts) == sorted(r.text for r in nginx.rules)
