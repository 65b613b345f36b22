"""The generated site: every rule of every dump on a page, the diffs, the flows, escaping, determinism."""

from __future__ import annotations

import filecmp
import html as html_module
import re
from pathlib import Path

import pytest
from iptables_lens import parse_file
from iptables_lens.render.markdown import anchor_id
from iptables_lens.render.site import scenario_pages, write_pages
from iptables_lens.scenario import load_scenario

from tests.conftest import REPO_ROOT, SEED
from tests.site_build import build, variant_config

HOSTILE = REPO_ROOT / "tests" / "data" / "scenarios" / "hostile-comments"


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("site")
    result = build(folder)
    assert result.returncode == 0, result.stderr
    assert "WARNING" not in result.stderr, result.stderr
    return folder


def page(site: Path, *parts: str) -> str:
    """A built page's HTML with entities decoded, for checks on what a reader sees."""
    return html_module.unescape((site.joinpath(*parts) / "index.html").read_text())


def test_the_seed_scenario_has_an_overview_node_pages_and_flow_pages(site):
    base = site / "scenarios" / "kind-nodeport"
    assert (base / "index.html").is_file()
    assert {p.name for p in base.iterdir() if p.is_dir()} >= {"blog-worker", "blog-worker2", "flows"}
    flows = {p.name for p in (base / "flows").iterdir()}
    assert flows == {f.id for f in load_scenario(SEED).meta.flows}


@pytest.mark.parametrize("node,files", [("blog-worker", ("worker-1-before.rules", "worker-1-after.rules")),
                                        ("blog-worker2", ("worker-2-before.rules", "worker-2-after.rules"))])
def test_every_rule_of_every_dump_has_its_anchored_row(site, node, files):
    html = page(site, "scenarios", "kind-nodeport", node)
    ids = set(re.findall(r'id="([^"]+)"', html))
    for name, moment in zip(files, ("before", "after"), strict=True):
        dump = parse_file(SEED / name)
        for rule in dump.rules:
            assert anchor_id(moment, rule.table, rule.chain, rule.position) in ids, (name, rule.text)


def test_rules_are_explained_in_plain_english_with_their_family_and_line(site):
    html = page(site, "scenarios", "kind-nodeport", "blog-worker")
    row = re.search(r'id="after-nat-KUBE-NODEPORTS-1".*?</tr>', html, re.S).group(0)
    assert "30080" in row and "TCP" in row and ">89<" in row
    assert "kube-proxy family <code>KUBE-SVC</code>" in html
    assert 'KUBE-SVC- + the first 16 characters of base32(sha256("default/my-nginx-servicetcp")): it verifies' in html


def test_both_before_after_diffs_group_changes_and_flag_the_api_server_change(site):
    for node in ("blog-worker", "blog-worker2"):
        html = page(site, "scenarios", "kind-nodeport", node)
        assert "What changed" in html
        assert "default/my-nginx-service</code></strong>: 4 chain(s) added, 0 removed; 11 rule(s) added, 0 removed" in html
        assert "Unrelated real change: default/kubernetes:https" in html
        assert "Noise:" in html and "docker-dns-ports" in html
        # The textual diff is highlighted: added and removed lines carry the diff lexer's classes.
        assert '<span class="gi">' in html and '<span class="gd">' in html


def test_each_flow_has_a_diagram_whose_rule_nodes_link_to_their_table_rows(site):
    html = page(site, "scenarios", "kind-nodeport", "flows", "outside-to-nodeport")
    diagrams = re.findall(r'<pre class="mermaid"><code>(.*?)</code></pre>', html, re.S)
    assert len(diagrams) == 1
    assert "KUBE-SVC-OL4YPD43MBS7WVHD" in diagrams[0]
    links = re.findall(r'click s\d+ href "([^"]+)"', diagrams[0])
    assert links and all(link.startswith("../../blog-worker/#after-") for link in links)
    node_ids = set(re.findall(r'id="([^"]+)"', page(site, "scenarios", "kind-nodeport", "blog-worker")))
    assert {link.split("#", 1)[1] for link in links} <= node_ids


def test_the_walkthrough_evidence_is_on_the_flow_page(site):
    html = page(site, "scenarios", "kind-nodeport", "flows", "outside-to-nodeport")
    assert "What the kernel recorded" in html and "xtables-monitor" in html
    assert "filter:KUBE-FORWARD:rule" in html  # the kernel's own line, from the recording


@pytest.fixture(scope="module")
def hostile_site(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("hostile")
    result = build(folder / "site", variant_config(folder, HOSTILE))
    assert "WARNING" not in result.stderr, result.stderr
    assert result.returncode == 0, result.stderr
    return folder / "site"


def test_hostile_comments_are_shown_literally_everywhere(hostile_site):
    base = hostile_site / "scenarios" / "hostile-comments"
    pages = [p.read_text() for p in base.rglob("index.html")]
    assert len(pages) == 3
    everything = "\n".join(pages)
    for hostile in ("<script>alert(", "<img src=x", "<b>comments</b>", "<i>client</i>"):
        assert hostile not in everything, hostile
    # ... yet a reader sees every rule, comment included, exactly as the dump has it.
    shown = html_module.unescape(everything)
    for line in (HOSTILE / "node.rules").read_text().splitlines():
        if line.startswith("-A KUBE-SERVICES"):
            assert line in shown, line
    assert 'href="http://example.com"' not in everything
    node = (base / "node-a" / "index.html").read_text()
    assert node.count("<tr>") >= 8  # a pipe in a comment did not split or break the table


def test_hostile_text_in_mermaid_labels_cannot_escape_its_label(hostile_site):
    flow = (hostile_site / "scenarios" / "hostile-comments" / "flows" / "to-the-first-service" / "index.html")
    diagram = re.search(r'<pre class="mermaid"><code>(.*?)</code></pre>', flow.read_text(), re.S).group(1)
    for line in diagram.splitlines()[1:]:
        # Inside a label only named entities: no raw quote, bracket, pipe, semicolon or angle bracket.
        for label in re.findall(r'&quot;(.*?)&quot;', line):
            assert not re.search(r"[\[\]|;<>`{}]", label.replace("&lt;br&gt;", "")), label


def test_two_builds_in_a_row_are_identical(tmp_path, site):
    second = tmp_path / "again"
    result = build(second)
    assert result.returncode == 0, result.stderr
    # MkDocs stamps the sitemap with the build date (and gzip stamps its archive): only those may differ.
    stamped = {"sitemap.xml", "sitemap.xml.gz"}
    differing = []

    def walk(cmp: filecmp.dircmp, prefix: str = "") -> None:
        assert not cmp.left_only and not cmp.right_only, (cmp.left_only, cmp.right_only)
        for name in cmp.diff_files:
            differing.append(prefix + name)
        for name, sub in cmp.subdirs.items():
            walk(sub, prefix + name + "/")

    walk(filecmp.dircmp(site, second))
    assert set(differing) <= stamped, differing


def test_iptables_blocks_are_highlighted_by_the_packages_lexer(site):
    raw = (site / "walkthrough" / "index.html").read_text()
    blocks = re.findall(r'<div class="highlight"><pre>(.*?)</pre></div>', raw, re.S)
    rules = [b for b in blocks if '<span class="k">-A</span>' in b]
    assert rules, "no iptables block was highlighted"
    # Chains, options and targets get their own token classes, as the lexer names them.
    assert '<span class="nc">PREROUTING</span>' in rules[0]
    assert '<span class="na">-m</span>' in rules[0]
    assert '<span class="nf">KUBE-SERVICES</span>' in rules[0]


def test_a_bad_dump_fails_the_build_with_its_file_line_and_column(tmp_path):
    broken = tmp_path / "broken"
    broken.mkdir()
    source = HOSTILE
    (broken / "scenario.yaml").write_text((source / "scenario.yaml").read_text())
    text = (source / "node.rules").read_text().replace("-j KUBE-MARK-MASQ\nCOMMIT", "-j KUBE-MARK-MAZQ\nCOMMIT")
    (broken / "node.rules").write_text(text)
    result = build(tmp_path / "site", variant_config(tmp_path, broken))
    assert result.returncode != 0
    assert "broken/node.rules:15:" in result.stderr
    assert "jump to chain 'KUBE-MARK-MAZQ'" in result.stderr
    assert "Traceback" not in result.stderr


def test_a_bad_metadata_file_fails_the_build_with_its_key_path(tmp_path):
    broken = tmp_path / "broken"
    broken.mkdir()
    source = HOSTILE
    (broken / "scenario.yaml").write_text((source / "scenario.yaml").read_text().replace("dport: 80", "dport: 80000"))
    (broken / "node.rules").write_text((source / "node.rules").read_text())
    result = build(tmp_path / "site", variant_config(tmp_path, broken))
    assert result.returncode != 0
    assert "scenario.yaml:" in result.stderr and "flows[0].dport" in result.stderr


def test_serve_watches_the_scenarios_folder():
    from iptables_lens.mkdocs_plugin import IptablesLensPlugin

    class Server:
        watched: list[str] = []

        def watch(self, path):
            self.watched.append(path)

    plugin = IptablesLensPlugin()
    plugin.scenarios_dir = REPO_ROOT / "dumps"
    server = plugin.on_serve(Server(), config=None, builder=None)
    assert server.watched == [str(REPO_ROOT / "dumps")]


def test_an_include_that_names_no_scenario_fails_the_build_naming_it(tmp_path):
    config = variant_config(tmp_path)
    text = config.read_text()
    config.write_text(text.replace(f"      scenarios: {tmp_path / 'scenarios'}\n",
                                   f"      scenarios: {tmp_path / 'scenarios'}\n      include: [kind-nodeprot]\n"))
    result = build(tmp_path / "site", config)
    assert result.returncode != 0
    assert "include names 'kind-nodeprot'" in result.stderr
    assert "Traceback" not in result.stderr


def test_a_missing_scenarios_folder_fails_the_build_naming_it(tmp_path):
    config = variant_config(tmp_path)
    config.write_text(config.read_text().replace(f"      scenarios: {tmp_path / 'scenarios'}",
                                                 f"      scenarios: {tmp_path / 'nowhere'}"))
    result = build(tmp_path / "site", config)
    assert result.returncode != 0
    assert f"scenarios folder {tmp_path / 'nowhere'} does not exist" in result.stderr


def test_generated_pages_are_written_as_the_site_reads_them(tmp_path):
    pages = scenario_pages(load_scenario(SEED))
    write_pages(pages, tmp_path)
    for page in pages:
        assert (tmp_path / page.path).read_text(encoding="utf-8") == page.markdown
    assert not list(tmp_path.rglob("*.partial"))


# -- a dual-stack scenario --------------------------------------------------------------------------------

DUAL = REPO_ROOT / "dumps" / "kind-nodeport-dual-stack"


def test_a_dual_stack_node_page_shows_each_familys_rules_with_anchors_of_its_own(site):
    from iptables_lens.render.markdown import anchor_moment

    html = page(site, "scenarios", "kind-nodeport-dual-stack", "blog-worker")
    tabs = re.findall(r"<label[^>]*>([^<]+)</label>", html)
    assert tabs == ["Rules after (IPv4)", "Rules before (IPv4)", "What changed (IPv4)", "Rules after (IPv6)",
                    "Rules before (IPv6)", "What changed (IPv6)", "Flows"]
    ids = re.findall(r'id="([^"]+)"', html)
    assert len(ids) == len(set(ids))
    for family, suffix in ((4, ""), (6, "-v6")):
        for moment in ("before", "after"):
            dump = parse_file(DUAL / f"worker-1-{moment}{suffix}.rules")
            assert dump.family == family
            for rule in dump.rules:
                assert anchor_id(anchor_moment(moment, family), rule.table, rule.chain, rule.position) in ids
    # The IPv6 rules' DNAT to an endpoint, shown as ip6tables writes it.
    assert "--to-destination [fd00:10:244:1::2]:80" in html
    assert "worker-1-after-v6.rules" in html  # the IPv6 textual diff names its files


def test_an_ipv6_flows_page_traces_in_the_ipv6_dump_and_links_to_its_rows(site):
    html = page(site, "scenarios", "kind-nodeport-dual-stack", "flows", "outside-to-nodeport-v6")
    node_ids = set(re.findall(r'id="([^"]+)"', page(site, "scenarios", "kind-nodeport-dual-stack", "blog-worker")))
    anchors = re.findall(r'href="\.\./\.\./blog-worker/#([^"]+)"', html)
    assert anchors and all(a.startswith("after-v6-") and a in node_ids for a in anchors)
    assert "DNAT to [fd00:10:244:2::2]:80" in html
    command = re.sub(r"<[^>]+>", "", html)  # the console block is highlighted span by span
    assert ("iptables-lens trace dumps/kind-nodeport-dual-stack/worker-1-after-v6.rules --src fc00:f853:ccd:e793::64"
            in command)


def test_a_dual_stack_overview_lists_both_families_facts(site):
    html = page(site, "scenarios", "kind-nodeport-dual-stack")
    assert "IPv6 cluster IP" in html and "fd00:10:96::7688" in html
    assert "172.20.0.2, fc00:f853:ccd:e793::2" in html and "before (IPv6)" in html
    assert "10.244.1.2:80, 10.244.2.2:80, [fd00:10:244:1::2]:80, [fd00:10:244:2::2]:80" in html


def test_single_family_pages_keep_their_tabs_and_anchors():
    pages = {p.path: p.body for p in scenario_pages(load_scenario(SEED))}
    body = pages["scenarios/kind-nodeport/blog-worker.md"]
    assert '=== "Rules after the Service"' in body and '=== "What changed"' in body
    assert "(IPv4)" not in body and "-v6-" not in body
