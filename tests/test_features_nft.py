"""Each feature in kube-proxy's nftables mode: the cluster a scenario's facts describe (`scenario.nft_twin`), what
kube-proxy v1.34's nftables proxier writes for the feature on its node, and the feature's flows traced through
those rules, which must end as they end in iptables mode.
"""

from __future__ import annotations

import html as html_module
import ipaddress
import re
import shutil
from dataclasses import replace
from pathlib import Path

import markdown
import pytest
import yaml
from iptables_lens.errors import DumpError
from iptables_lens.kube.cluster_spec import HEADLESS, ClusterSpec, Endpoint, Port, ServiceSpec
from iptables_lens.kube.nft_families import nft_family
from iptables_lens.kube.nft_listing import synth_listing
from iptables_lens.kube.synth_scenario import DUAL_STACK_KINDS, FEATURE_KINDS, SCENARIO_KINDS, node_spec, scenario_spec
from iptables_lens.nft import parse_ruleset
from iptables_lens.nft.diff import diff_rulesets
from iptables_lens.nft.fmtrules import format_element
from iptables_lens.render.features_nft import NftFeature, nft_changes, nft_feature, nft_section
from iptables_lens.scenario import load_scenario
from iptables_lens.scenario.flows import predict
from iptables_lens.scenario.model import Feature, Flow
from iptables_lens.scenario.nft_twin import (
    affinity_sets,
    cluster_spec,
    predict_twin,
    twin_ruleset,
    undescribed,
)

from tests.conftest import REPO_ROOT, SEED

DUMPS = REPO_ROOT / "dumps"
GENERATED = SCENARIO_KINDS + DUAL_STACK_KINDS + FEATURE_KINDS
FEATURE_FOLDERS = sorted(p.parent for p in DUMPS.glob("*/scenario.yaml") if "feature:" in p.read_text())

# Flows whose outcomes differ between the modes, with the reason (scenario/flow -> why). None of the feature
# scenarios' flows does; `test_nftables_mode_rejects_a_cluster_ip_s_unused_port` shows where the modes part.
MODES_DIFFER: dict[str, str] = {}


# -- the cluster the facts describe -----------------------------------------------------------------------------


@pytest.mark.parametrize("kind", GENERATED)
def test_the_spec_of_a_generated_scenario_s_facts_is_the_one_its_dumps_were_written_for(kind):
    made = scenario_spec(kind)
    scenario = load_scenario(DUMPS / f"kind-{kind}")
    unlisted = {s.key for s in made.unlisted}
    for node in made.dumped:
        for moment in ("before", "after"):
            for family in made.families:
                written = node_spec(made, node, moment, family)
                # kind's own chains are not kube-proxy's, and a Service scenario.yaml does not list is in no fact.
                expected = replace(written, kind=None,
                                   services=tuple(s for s in written.services if s.key not in unlisted))
                assert cluster_spec(scenario, node.name, moment, family) == expected, (node.name, moment, family)


@pytest.mark.parametrize("kind", GENERATED)
def test_the_facts_of_a_generated_scenario_describe_its_dumps_but_for_unlisted_services(kind):
    made = scenario_spec(kind)
    scenario = load_scenario(DUMPS / f"kind-{kind}")
    unlisted = sorted(s.key for s in made.unlisted)
    for node in made.dumped:
        for moment in ("before", "after"):
            for family in made.families:
                found = undescribed(scenario, node.name, moment, cluster_spec(scenario, node.name, moment, family))
                expected = unlisted if moment == "after" else []
                assert [line.split(":")[0] for line in found] == expected, (node.name, moment, family, found)


def test_the_seed_s_facts_describe_its_rules_after_and_not_the_api_server_it_had_before():
    seed = load_scenario(SEED)
    for node in ("blog-worker", "blog-worker2"):
        assert undescribed(seed, node, "after", cluster_spec(seed, node, "after")) == []
        before = undescribed(seed, node, "before", cluster_spec(seed, node, "before"))
        # Between the two captures the API server's endpoint moved from 172.20.0.3 to 172.20.0.4.
        assert [line.split(": ")[0] for line in before] == ["default/kubernetes:https"]


def test_an_endpoint_that_serves_only_some_target_ports_is_a_dump_error_at_its_service(tmp_path):
    folder = tmp_path / "multiport"
    shutil.copytree(DUMPS / "kind-multiport", folder)
    meta = yaml.safe_load((folder / "scenario.yaml").read_text())
    endpoints = meta["services"][0]["endpoints"]
    meta["services"][0]["endpoints"] = [e for e in endpoints if not (e["address"] == "10.244.2.2" and e["port"] == 8443)]
    (folder / "scenario.yaml").write_text(yaml.safe_dump(meta, sort_keys=False))
    with pytest.raises(DumpError) as caught:
        cluster_spec(load_scenario(folder), "blog-worker", "after")
    assert caught.value.message.startswith("services[0].endpoints: endpoint 10.244.2.2 does not serve target port 8443")
    assert caught.value.source == str(folder / "scenario.yaml")


def test_a_node_the_facts_do_not_name_is_a_dump_error():
    with pytest.raises(DumpError) as caught:
        cluster_spec(load_scenario(SEED), "blog-worker9", "after")
    assert "no node blog-worker9" in caught.value.message


def test_synth_s_nftables_rules_leave_out_a_headless_and_an_externalname_service():
    # ShouldSkipService (pkg/proxy/util) keeps both from either proxier.
    headless = ServiceSpec("default", "headless", HEADLESS, ports=(Port(80, 8080),), endpoints=(Endpoint("10.244.1.2"),))
    external = ServiceSpec("default", "external", "", type="ExternalName", ports=())
    web = ServiceSpec("default", "web", "10.96.0.50", ports=(Port(80, 8080),), endpoints=(Endpoint("10.244.1.2"),))
    alone = synth_listing(ClusterSpec((web,)))
    assert synth_listing(ClusterSpec((headless, web, external))) == alone
    assert "default/web" in alone


# -- what the feature writes ----------------------------------------------------------------------------------


def _names(ruleset, kind: str) -> set[tuple[str, str]]:
    return {(f"{t.family} {t.name}", item.name) for t in ruleset.tables for item in getattr(t, kind)}


def _elements(ruleset) -> set[tuple[str, str]]:
    return {(item.name, format_element(e)) for t in ruleset.tables for item in t.sets for e in item.elements}


@pytest.mark.parametrize("folder", FEATURE_FOLDERS, ids=lambda p: p.name)
def test_the_nftables_changes_are_what_the_listing_after_has_and_the_one_before_lacks(folder):
    scenario = load_scenario(folder)
    node = scenario.meta.feature.node
    before, after = twin_ruleset(scenario, node, "before"), twin_ruleset(scenario, node, "after")
    written = [w for c in nft_changes(diff_rulesets(before, after)) for w in c.written]
    assert all(w.kind == "added" for w in written)
    assert {(w.table, w.name) for w in written if w.what == "chain"} == _names(after, "chains") - _names(before, "chains")
    assert {(w.table, w.name) for w in written if w.what == "set"} == _names(after, "sets") - _names(before, "sets")
    assert {(w.name, w.text) for w in written if w.what == "element"} == _elements(after) - _elements(before)
    new_chains = {c.name: c for t in after.tables for c in t.chains if (f"{t.family} {t.name}", c.name) in
                  _names(after, "chains") - _names(before, "chains")}
    assert sum(1 for w in written if w.what == "rule") == sum(len(c.rules) for c in new_chains.values())


@pytest.mark.parametrize("folder", FEATURE_FOLDERS, ids=lambda p: p.name)
def test_every_place_is_where_kube_proxy_s_families_file_it_and_every_element_has_its_service_port(folder):
    scenario = load_scenario(folder)
    declared = {s.key for s in scenario.meta.services}
    for changes in nft_feature(scenario).places:
        for w in changes.written:
            family, _, table = w.table.partition(" ")
            found = nft_family(family, table, w.name)
            assert changes.place == (found + "*" if found.endswith("-") else found)
            assert w.service_port is not None and w.service_port.split(":")[0] in declared, w
            if w.what == "element":
                assert w.tied_by, w


def test_multiport_s_elements_are_tied_each_to_its_own_port():
    nft = nft_feature(load_scenario(DUMPS / "kind-multiport"))
    service_ips = next(c for c in nft.places if c.place == "service-ips")
    by_port = {w.service_port: w.text for w in service_ips.written}
    assert by_port.keys() == {f"default/web-multiport:{name}" for name in ("http", "https", "quic")}
    assert " . udp . 443 : goto service-" in by_port["default/web-multiport:quic"]
    assert by_port["default/web-multiport:quic"].endswith("/udp/quic")


def test_a_feature_kube_proxy_writes_nothing_for_has_no_nftables_change_either():
    nft = nft_feature(load_scenario(DUMPS / "kind-headless-externalname"))
    assert nft.problems == [] and nft.places == []
    assert not any(group.changes() for group in nft.diff.services if list(group.changes()))


# -- flows in both modes -----------------------------------------------------------------------------------------


def _facts(trace) -> list[tuple]:
    return sorted((str(o.probability), o.endpoint, o.verdict, o.masquerade) for o in trace.outcomes)


def test_every_flow_of_every_feature_scenario_ends_the_same_in_both_modes():
    differ, flows = {}, 0
    for folder in FEATURE_FOLDERS:
        scenario = load_scenario(folder)
        nft = nft_feature(scenario)
        assert nft.problems == [], folder.name
        for flow in scenario.meta.flows:
            flows += 1
            iptables, nftables = _facts(predict(scenario, flow)), _facts(nft.flows[flow.id].trace)
            if iptables != nftables:
                differ[f"{folder.name}/{flow.id}"] = (iptables, nftables)
    assert flows >= len(FEATURE_FOLDERS) > 10
    assert differ.keys() == MODES_DIFFER.keys(), differ


def test_nftables_mode_rejects_a_cluster_ip_s_unused_port_where_iptables_mode_routes_it_on():
    # pkg/proxy/nftables/proxier.go (setupNFTables): "reject traffic to invalid ports of ClusterIPs", in
    # cluster-ips-check; iptables mode has no rule for a port no Service uses, so the packet is routed as it is.
    scenario = load_scenario(DUMPS / "kind-multiport")
    flow = Flow(id="unused-port", title="a pod calls the cluster IP on a port no Service uses", node="blog-worker",
                client="a pod", src="10.244.1.10", dst="10.96.60.10", dport=8080)
    [iptables] = predict(scenario, flow).outcomes
    [nftables] = predict_twin(scenario, flow).trace.outcomes
    assert iptables.verdict == "ACCEPT" and iptables.endpoint is None
    assert nftables.verdict == "REJECT" and "cluster-ips-check" in nftables.delivery


def test_a_returning_client_is_in_the_affinity_set_of_the_endpoint_it_returns_to_and_goes_back_there():
    scenario = load_scenario(DUMPS / "kind-session-affinity")
    first, returning = scenario.meta.flows
    ruleset = twin_ruleset(scenario, returning.node)
    [name] = affinity_sets(ruleset, returning)
    assert name.startswith("affinity-") and name.endswith("__10.244.2.2/8080")
    assert name in {s.name for t in ruleset.tables for s in t.sets}
    assert affinity_sets(ruleset, first) == frozenset()
    assert _facts(predict_twin(scenario, returning, ruleset).trace) == [("1", "10.244.2.2:8080", "ACCEPT", False)]
    elsewhere = returning.model_copy(update={"returning_to": ipaddress.ip_address("10.244.1.99")})
    assert affinity_sets(ruleset, elsewhere) == frozenset()
    assert [p for p, *_ in _facts(predict_twin(scenario, elsewhere, ruleset).trace)] == ["1/2", "1/2"]


def test_a_scenario_whose_dumps_serve_an_undescribed_service_gets_no_nftables_rules():
    nft = nft_feature(_with_feature(DUMPS / "kind-nodeport-dual-stack"))
    assert nft.diff is None and nft.flows == {}
    assert nft.problems and all("default/no-endpoints" in line for line in nft.problems)


def _with_feature(folder: Path):
    scenario = load_scenario(folder)
    feature = Feature(id="f", title="f", order=1, summary="f", node=scenario.meta.dumps[0].node)
    return type(scenario)(scenario.folder, scenario.meta.model_copy(update={"feature": feature}), scenario.dumps,
                          scenario.metadata_file, scenario.rulesets)


# -- escaping ------------------------------------------------------------------------------------------------------

_HOSTILE_AFTER = """\
table ip kube-proxy {
\tmap service-ips {
\t\ttype ipv4_addr . inet_proto . inet_service : verdict
\t\telements = { 10.96.0.9 . tcp . 80 comment "<script>alert(1)</script> ```" : goto service-AAAAAAAA-x/y/tcp/ }
\t}

\tchain service-AAAAAAAA-x/y/tcp/ {
\t\tip daddr 10.96.0.9 drop comment "<img src=x onerror=alert(2)> ```` | *x*"
\t}
}
"""


def test_comments_from_the_ruleset_stay_literal_and_inside_their_blocks():
    after = parse_ruleset(_HOSTILE_AFTER)
    before = parse_ruleset("table ip kube-proxy {\n\tmap service-ips {\n\t\ttype ipv4_addr . inet_proto . "
                           "inet_service : verdict\n\t}\n}\n")
    diff = diff_rulesets(before, after)
    page = nft_section("hostile", NftFeature("node-a", diff, nft_changes(diff)))
    html = markdown.markdown(page, extensions=["admonition", "tables", "md_in_html", "pymdownx.details",
                                               "pymdownx.highlight", "pymdownx.superfences"])
    assert "<script>" not in html and "<img src" not in html
    shown = html_module.unescape(re.sub(r"<[^>]+>", "", html))
    assert 'comment "<script>alert(1)</script> ```" : goto service-AAAAAAAA-x/y/tcp/' in shown
    # The chain and its rule stay in one code block, whole, backticks and all.
    blocks = re.findall(r'<div class="highlight"><pre>.*?</pre></div>', html, re.S)
    chain = next(b for b in blocks if "chain service-AAAAAAAA" in re.sub(r"<[^>]+>", "", b))
    assert "````" in re.sub(r"<[^>]+>", "", chain) and "onerror" in re.sub(r"<[^>]+>", "", chain)
