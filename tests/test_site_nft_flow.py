"""The flow page of a node in nftables mode: every rule it links to is a row of the node page that shows the rule
the tracer says matched, its rules are quoted in nft's own highlighting, and its diagram splits where numgen does.

The scenario is dumps/kind-nodeport-nftables, whose first flow is the NodePort walkthrough's.
"""

from __future__ import annotations

import re

import pytest
from iptables_lens.dialects import parse_dump
from iptables_lens.nft.fmtrules import format_rule
from iptables_lens.nft.model import Ruleset
from iptables_lens.render import escape as md
from iptables_lens.render.flow_page import matched_rules
from iptables_lens.render.site import scenario_pages
from iptables_lens.scenario import load_scenario
from iptables_lens.trace.packet import Outcome, Step

from tests.conftest import REPO_ROOT

NFT = REPO_ROOT / "dumps" / "kind-nodeport-nftables"
@pytest.fixture
def pages() -> dict[str, str]:
    scenario = load_scenario(NFT)
    assert [f.id for f in scenario.meta.flows][:1] == ["outside-to-nodeport"]
    return {page.path: page.body for page in scenario_pages(scenario)}


def _flow_and_node(pages: dict[str, str]) -> tuple[str, str]:
    base = "scenarios/kind-nodeport-nftables"
    return pages[f"{base}/flows/outside-to-nodeport.md"], pages[f"{base}/blog-worker.md"]


def test_every_rule_link_of_the_flow_page_is_a_row_of_the_node_page_showing_the_rule_the_tracer_names(pages):
    flow_page, node_page = _flow_and_node(pages)
    ids = set(re.findall(r'id="([^"]+)"', node_page))
    links = re.findall(r"\]\(\.\./blog-worker\.md#([^)]+)\)", flow_page)
    clicks = re.findall(r'click s\d+ href "\.\./\.\./blog-worker/#([^"]+)"', flow_page)
    assert links and clicks
    assert set(links) | set(clicks) <= ids
    ruleset = load_scenario(NFT).dump_for("blog-worker", "after")
    assert isinstance(ruleset, Ruleset)
    # Each row a step links to shows that step's rule: the link's label names table, chain and position.
    named = re.findall(r"\| \[([^\]]+) &#35;(\d+)\]\(\.\./blog-worker\.md#([^)]+)\)", flow_page)
    assert len(named) > 10
    for label, position, anchor in named:
        where, chain = (part.replace("&#95;", "_") for part in label.rsplit(" ", 1))
        family, table = where.split(" ")
        rule = next(r for r in ruleset.table(family, table).chain(chain).rules if r.position == int(position))
        row = re.search(rf'<a id="{re.escape(anchor)}"></a>{position} \| (<code>.*?</code>) \|', node_page)
        assert row is not None, anchor
        assert row.group(1) == md.code(format_rule(rule)), (anchor, row.group(1))


def test_the_step_anchors_carry_the_moment_prefix_of_the_node_page(pages):
    flow_page, node_page = _flow_and_node(pages)
    assert 'id="after-ip-kube-proxy-services-2"' in node_page
    assert "](../blog-worker.md#after-ip-kube-proxy-services-2)" in flow_page
    assert '"../../blog-worker/#after-ip-kube-proxy-endpoint-NILVNJS2-default_my-nginx-service_tcp___10.244.2.2_80-2"' \
        in flow_page


def test_the_rules_are_quoted_with_the_nftables_lexer_each_under_its_table_and_chain(pages):
    flow_page, _ = _flow_and_node(pages)
    blocks = re.findall(r"```nftables\n(.*?)```", flow_page, re.S)
    assert len(blocks) == 2  # one per outcome
    lines = [line.strip() for line in blocks[1].splitlines() if line.strip()]
    assert lines[:2] == ["# ip kube-proxy filter-prerouting-pre-dnat, rule 1", "ct state new jump firewall-check"]
    assert "numgen random mod 2 vmap { 0 : goto endpoint-GRRSYFIP-default/my-nginx-service/tcp/__10.244.1.2/80, " \
           "1 : goto endpoint-NILVNJS2-default/my-nginx-service/tcp/__10.244.2.2/80 }" in lines
    assert lines[-2:] == ["# ip kube-proxy masquerading, rule 3", "masquerade fully-random"]


def test_the_numgen_choice_splits_the_diagram_in_halves_and_names_the_way_each_outcome_went(pages):
    flow_page, _ = _flow_and_node(pages)
    diagram = re.search(r"```mermaid\n(.*?)```", flow_page, re.S).group(1)
    boxes = dict(re.findall(r"    (s\d+)\[\"(.*?)\"\]", diagram))
    numgen = [box for box, label in boxes.items() if label.startswith("ip kube-proxy service-PIDQJHUF-")]
    assert len(numgen) == 2
    for box in numgen:
        assert re.search(rf"    s\d+ -- \"1/2\" --> {box}\n", diagram), box
    # The nat boxes are marked and the translations ride on the edges, in nft's words as in iptables'.
    assert '-- "DNAT → 10.244.2.2:80" -->' in diagram and '-- "SNAT → 172.20.0.2" -->' in diagram
    assert len(re.findall(r"    class s\d+ nat", diagram)) == 4
    assert "this outcome went: <code>service-PIDQJHUF-default/my-nginx-service/tcp/ rule 2: numgen random mod 2 = 1" \
        in flow_page


def test_diagram_labels_escape_what_the_ruleset_names(pages):
    flow_page, _ = _flow_and_node(pages)
    diagram = re.search(r"```mermaid\n(.*?)```", flow_page, re.S).group(1)
    labels = re.findall(r'\["(.*?)"\]', diagram)
    assert any("/my-nginx-service/tcp/__10.244.1.2/80" in label for label in labels)
    for label in labels:
        # Only named entities: no raw quote, bracket, pipe, semicolon, hash or angle bracket.
        assert not re.search(r"[\[\]|;<>`{}\"#()]", re.sub(r"&\w+;", "", label.replace("<br>", ""))), label


def test_the_page_says_how_to_trace_it_from_the_command_line(pages):
    flow_page, _ = _flow_and_node(pages)
    assert "through the nft ruleset of [blog-worker](../blog-worker.md)" in flow_page
    command = re.search(r"\$ iptables-lens trace (\S+) ", flow_page).group(1)
    assert command.endswith("kind-nodeport-nftables/worker-1-after.nft")


def test_a_comment_full_of_backticks_cannot_end_the_block_of_rules():
    dump = parse_dump('*nat\n:PREROUTING ACCEPT [0:0]\n-A PREROUTING -m comment --comment "````" -j ACCEPT\nCOMMIT\n')
    step = Step("PREROUTING", "nat", "PREROUTING", 1, 3, "ACCEPT")
    block = matched_rules(dump, Outcome(1, "ACCEPT", "", None, None, None, None, None, False, None, (step,), ()))  # type: ignore[arg-type]
    fence = block.split("iptables", 1)[0]
    assert fence == "`````" and block.rstrip().endswith("\n" + fence)
    assert '-A PREROUTING -m comment --comment "````" -j ACCEPT' in block


def test_the_rules_of_a_scenario_in_iptables_mode_are_quoted_with_the_iptables_lexer():
    scenario = load_scenario(REPO_ROOT / "dumps" / "kind-nodeport")
    page = next(p.body for p in scenario_pages(scenario) if p.path.endswith("/outside-to-nodeport.md"))
    block = re.search(r"```iptables\n(.*?)```", page, re.S).group(1).splitlines()
    assert [line.strip() for line in block[:2]] == [
        "*nat", '-A PREROUTING -m comment --comment "kubernetes service portals" -j KUBE-SERVICES']
    assert 'this outcome went: <code>KUBE-SVC-OL4YPD43MBS7WVHD rule 2: picked with probability 1/2</code>' in page
