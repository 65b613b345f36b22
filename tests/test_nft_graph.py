"""The scenario overview's Service graph of an nft ruleset (`render.mermaid.nft_service_graph`): its boxes and
edges are those a reading of the listing's text gives, apart from the package; the shares of `numgen` are
exact; every box links to its rows on the node page; whatever a comment holds stays in its label."""

from __future__ import annotations

import html
import re
from fractions import Fraction
from pathlib import Path

import pytest
from iptables_lens.dialects import read_dump
from iptables_lens.kube.cluster_spec import ClusterSpec, Endpoint, Port, ServiceSpec
from iptables_lens.kube.nft_listing import synth_listing
from iptables_lens.nft import parse_ruleset
from iptables_lens.render.markdown import SitePaths, node_page, overview_page
from iptables_lens.render.mermaid import nft_service_graph
from iptables_lens.render.nft_tables import nft_rule_tables
from iptables_lens.scenario import load_scenario

from tests.conftest import REPO_ROOT

SCENARIO = REPO_ROOT / "dumps" / "kind-nodeport-nftables"
WORKER = SCENARIO / "worker-1-after.nft"
LISTINGS = REPO_ROOT / "tests" / "data" / "kube-proxy-nftables" / "listings"
NGINX = "default/my-nginx-service"

Edge = tuple[str, str, str]


def _blocks(kind: str, text: str) -> dict[str, str]:
    return dict(re.findall(rf"^\t{kind} (\S+) \{{\n(.*?)^\t\}}", text, re.S | re.M))


def _labelled(*parts: str | None) -> str:
    return "; ".join(p for p in parts if p)


def listing_graph(listing: str, service: str) -> tuple[set[str], set[Edge]]:
    """The boxes and edges of `service`'s graph read from the text of `table ip kube-proxy` and `table ip6
    kube-proxy` with regular expressions (the boxes by name: a listing here has the Service in one table)."""
    boxes: set[str] = set()
    edges: set[Edge] = set()
    for table in re.findall(r"^table ip6? kube-proxy \{\n(.*?)^\}", listing, re.S | re.M):
        found = table_graph(table, service)
        boxes |= found[0]
        edges |= found[1]
    return boxes, edges


def table_graph(table: str, service: str) -> tuple[set[str], set[Edge]]:
    """The Service's chains are those named `KIND-HASH-NS/NAME/...`; a map element that goes to one of them (or
    whose comment names the Service) leads there from each chain that looks the map up; its chains' jumps and
    gotos, `numgen random mod N` branches (1/N each, to a chain or, in a dnat map, to an address) are edges."""
    chains, maps = _blocks("chain", table), _blocks("map", table)
    own = {name for name in chains if re.fullmatch(rf"[a-z]+-[A-Z0-9]{{8}}-{re.escape(service)}/.*", name)}
    edges: set[Edge] = set()
    for name, body in maps.items():
        listed = re.search(r"elements = \{ (.*?) \}\n", body, re.S)
        for element in re.split(r",\s+", listed.group(1)) if listed else ():
            key, _, verdict = element.partition(" : ")
            comment = re.search(r' comment "([^"]*)"', key)
            key = re.sub(r' comment "[^"]*"', "", key)
            kind, _, target = verdict.partition(" ")
            named = comment is not None and comment.group(1).partition(":")[0] == service
            if kind in ("goto", "jump") and (target in own or named):
                edges |= {(chain, target, f"@{name} {key}") for chain, lines in chains.items()
                          if f"vmap @{name}" in lines}
    for chain in own:
        for line in chains[chain].strip().splitlines():
            comment = re.search(r' comment "([^"]*)"$', line)
            why = comment.group(1) if comment else None
            numgen = re.search(r"numgen random mod (\d+) v?map \{ (.*?) \}", line)
            if numgen:
                share = str(Fraction(1, int(numgen.group(1))))
                for branch in numgen.group(2).split(", "):
                    to = branch.partition(" : ")[2]
                    address, _, port = to.partition(" . ")
                    target = to.split()[-1] if to.startswith(("goto ", "jump ")) else (
                        f"[{address}]:{port}" if ":" in address else f"{address}:{port}")
                    edges.add((chain, target, _labelled(share, why)))
                continue
            affinity = "session affinity" if " @affinity-" in line else None
            edges |= {(chain, target, _labelled(affinity, why)) for target in re.findall(r"\b(?:jump|goto) (\S+)", line)}
    return own | {end for edge in edges for end in edge[:2]}, edges


def drawn(graph: str) -> tuple[set[str], set[Edge]]:
    """The boxes (their labels, as the reader sees them) and edges of a Mermaid flowchart."""
    boxes = {box: html.unescape(text) for box, text in re.findall(r'^ +(\w+)\(?\["(.*?)"\]\)?$', graph, re.M)}
    edges = {(boxes[a], boxes[b], html.unescape(text or ""))
             for a, text, b in re.findall(r'^ +(\w+) (?:-- "(.*?)" )?--> (\w+)$', graph, re.M)}
    return set(boxes.values()), edges


def services_of(listing: str) -> list[str]:
    named = re.findall(r"chain [a-z]+-[A-Z0-9]{8}-([^/\s]+/[^/\s]+)/", listing)
    commented = re.findall(r'comment "([^"/]+/[^":]+)(?::[^"]*)?" : goto', listing)
    return sorted(set(named) | set(commented))


CASES = [(path, service) for path in (WORKER, *sorted(LISTINGS.glob("*.nft")))
         for service in services_of(path.read_text())]


@pytest.mark.parametrize(("path", "service"), CASES, ids=[f"{p.parent.name}/{p.name}:{s}" for p, s in CASES])
def test_the_graph_has_exactly_the_chains_and_edges_the_listing_gives(path: Path, service: str):
    graph = nft_service_graph(read_dump(path), service)
    assert drawn(graph) == listing_graph(path.read_text(), service)


def test_the_scenario_nodeport_service_reaches_each_pod_with_probability_one_half():
    boxes, edges = drawn(nft_service_graph(read_dump(WORKER), NGINX))
    assert {(source, label) for source, target, label in edges if target.startswith("endpoint-")} == {
        ("service-PIDQJHUF-default/my-nginx-service/tcp/", "1/2")}
    assert sorted(target for _, target, label in edges if label == "1/2") == [
        "endpoint-GRRSYFIP-default/my-nginx-service/tcp/__10.244.1.2/80",
        "endpoint-NILVNJS2-default/my-nginx-service/tcp/__10.244.2.2/80"]
    assert ("services", "external-PIDQJHUF-default/my-nginx-service/tcp/", "@service-nodeports tcp . 30080") in edges
    assert ("services", "service-PIDQJHUF-default/my-nginx-service/tcp/",
            "@service-ips 10.96.118.136 . tcp . 80") in edges


def test_a_dnat_through_a_numgen_map_branches_straight_to_each_address_with_its_share():
    path = LISTINGS / "TestOverallNFTablesRules.main-edca563.nft"
    _, edges = drawn(nft_service_graph(read_dump(path), "ns4/svc4"))
    assert {(target, label) for source, target, label in edges if source == "service-LAUZTJTB-ns4/svc4/tcp/p80"} == {
        ("10.180.0.4:80", "1/2"), ("10.180.0.5:80", "1/2")}


def _ids(page: str) -> set[str]:
    return set(re.findall(r'id="([^"]+)"', page))


def _clicks(graph: str) -> list[str]:
    return re.findall(r'^ +click \w+ href "([^"]*)"$', graph, re.M)


def test_every_box_of_the_overview_graphs_links_to_an_anchor_on_the_node_page():
    scenario = load_scenario(SCENARIO)
    paths = SitePaths(scenario.name)
    overview = overview_page(scenario, paths)
    graphs = re.findall(r"```mermaid\n(.*?)```", overview, re.S)
    assert len(graphs) == len(scenario.meta.services) and all("--> " in graph for graph in graphs)
    node = "blog-worker"
    anchors = _ids(node_page(scenario, node, paths, "dumps/kind-nodeport-nftables"))
    for graph in graphs:
        boxes = re.findall(r"^ +(\w+)\(?\[", graph, re.M)
        links = _clicks(graph)
        assert len(links) == len(boxes)
        for link in links:
            page, _, anchor = link.partition("#")
            assert page == paths.url(paths.index(), paths.node(node)) and anchor in anchors, link


def test_an_address_box_links_to_the_rule_that_dnats_to_it():
    ruleset = read_dump(LISTINGS / "TestOverallNFTablesRules.main-edca563.nft")
    anchors = _ids(nft_rule_tables(ruleset, "after"))
    from iptables_lens.render.markdown import anchor_id

    def link(table: str, chain: str, position: int | None = None) -> str:
        return "#" + anchor_id("after", table, chain, position)

    graph = nft_service_graph(ruleset, "ns4/svc4", link)
    address = re.search(r'^ +(\w+)\(\["10\.180\.0\.4:80"\]\)$', graph, re.M).group(1)
    target = re.search(rf'^ +click {address} href "#([^"]*)"$', graph, re.M).group(1)
    assert target == "after-ip-kube-proxy-service-LAUZTJTB-ns4_svc4_tcp_p80-1" and target in anchors
    assert all(link[1:] in anchors for link in _clicks(graph))


HOSTILE = 'a]) --> x[<b>b</b>] | #35; click c0 href javascript:alert(1) %%{init: {}}%% `c` (d) {e} &amp;'


def test_a_hostile_comment_stays_the_text_of_its_label():
    listing = WORKER.read_text().replace(
        "\t\tgoto service-PIDQJHUF-default/my-nginx-service/tcp/\n",
        f'\t\tgoto service-PIDQJHUF-default/my-nginx-service/tcp/ comment "{HOSTILE}"\n')
    graph = nft_service_graph(parse_ruleset(listing), NGINX, lambda table, chain, position=None: f"#{chain}")
    _, edges = drawn(graph)
    assert ("external-PIDQJHUF-default/my-nginx-service/tcp/", "service-PIDQJHUF-default/my-nginx-service/tcp/",
            HOSTILE) in edges
    # Inside a label, only letters and the entities that stand for what Mermaid or HTML would read as syntax.
    text = r'"(?:&[a-z]+;|[^"\]\[|#;`(){}<>%&])*"'
    syntax = re.compile(rf'^(flowchart LR| +\w+\(?\[{text}\]\)?| +\w+ (-- {text} )?--> \w+'
                        r'| +click \w+ href "[A-Za-z0-9/#._%-]*")$')
    assert [line for line in graph.splitlines() if not syntax.match(line)] == []


def test_a_service_in_both_families_gets_a_box_of_chains_per_table():
    web4 = ServiceSpec("default", "web", "10.96.0.50", ports=(Port(80, 8080),), endpoints=(Endpoint("10.244.1.2"),))
    web6 = ServiceSpec("default", "web", "fd00:10:96::50", ports=(Port(80, 8080),),
                       endpoints=(Endpoint("fd00:10:244:1::2"),))
    listing = synth_listing(ClusterSpec((web4,))) + synth_listing(ClusterSpec((web6,), family=6,
                                                                              node_ip="fd00:172:20::2",
                                                                              pod_cidr="fd00:10:244::/56"))
    graph = nft_service_graph(parse_ruleset(listing), "default/web")
    tables = re.findall(r'^    subgraph (t\d+)\["table (ip6?) kube-proxy"\]\n(.*?)^    end$', graph, re.S | re.M)
    assert [family for _, family, _ in tables] == ["ip", "ip6"]
    boxes = [set(re.findall(r'\["([^"]+)"\]', body)) for _, _, body in tables]
    ip, ip6 = ({name for name in names if not name.startswith("endpoint-")} for names in boxes)
    assert ip == ip6 and {name.split("-")[0] for name in ip} == {"services", "service", "mark"}
    assert [name.rpartition("__")[2] for names in boxes for name in sorted(names) if name.startswith("endpoint-")] == [
        "10.244.1.2/8080", "fd00.10.244.1..2/8080"]
