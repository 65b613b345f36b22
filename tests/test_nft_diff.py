"""The semantic diff of nft rulesets (`nft.diff`): what a Service adds to kube-proxy's nftables tables, in each
layout, named exactly and grouped under that Service; noise (handles, counters, expiry times, element order)
folded; rules moved only where their order matters; the CLI's text and JSON; the site's Markdown section.

The listings under tests/data/nft-diff/LAYOUT/ are nft 1.0.6's `nft list ruleset` of `synth_nftables` for
CLUSTERS (a kernel test checks that nft still lists them so): `before` has the API server's Service, `after`
adds `shop/web` (a NodePort Service with three endpoints, two on this node), `fewer` has `shop/web` without
its endpoint 10.244.1.3; v1.34's `after` is kept also as `nft -a` (handles) and `nft -j` (JSON) print it.
Regenerate them as root with `python -c "from tests.test_nft_diff import regenerate; regenerate()"`.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import jsonschema
import pytest
from click.testing import CliRunner
from iptables_lens.cli import main
from iptables_lens.dialects import read_dump
from iptables_lens.iptables.diff import DumpDiff
from iptables_lens.kube.cluster_spec import ClusterSpec, Endpoint, Port, ServiceSpec
from iptables_lens.kube.nft_services import NftServiceIndex
from iptables_lens.kube.synth_nftables import LAYOUTS, Layout, endpoint_base, service_port_base, synth_nftables
from iptables_lens.netns import Namespace, can_run_kernel_lab
from iptables_lens.nft import parse_ruleset
from iptables_lens.nft.diff import diff_rulesets
from iptables_lens.nft.fmtrules import format_element
from iptables_lens.nft.model import Counter, Ruleset
from iptables_lens.render.json import output_schema
from iptables_lens.render.markdown import diff_of, diff_section

from tests.conftest import REPO_ROOT

DATA = REPO_ROOT / "tests" / "data" / "nft-diff"
WEB = "shop/web"
API = ServiceSpec("default", "kubernetes", "10.96.0.1", ports=(Port(443, 6443, name="https"),),
                  endpoints=(Endpoint("172.20.0.3", "control-plane"),))
ENDPOINTS = (Endpoint("10.244.1.2", "node-0"), Endpoint("10.244.2.2", "node-1"), Endpoint("10.244.1.3", "node-0"))
WEB_SPEC = ServiceSpec("shop", "web", "10.96.0.50", type="NodePort", ports=(Port(80, 8080, node_port=30080),),
                       endpoints=ENDPOINTS)
GONE = ENDPOINTS[2]
CLUSTERS = {
    "before": ClusterSpec((API,)),
    "after": ClusterSpec((API, WEB_SPEC)),
    "fewer": ClusterSpec((API, replace(WEB_SPEC, endpoints=ENDPOINTS[:2]))),
}


def listing(layout: str, name: str) -> Path:
    return DATA / layout / f"{name}.nft"


def diff(layout: str, before: str, after: str) -> DumpDiff:
    return diff_rulesets(read_dump(listing(layout, before)), read_dump(listing(layout, after)))


def lines(changes: DumpDiff, service: str | None) -> set[str]:
    (group,) = [g for g in changes.services if g.service == service]
    return {f"{c.kind} {c.line}" for c in group.changes()}


# -- what a Service adds, in each layout --------------------------------------------------------------------


def expected_web(layout: str) -> set[str]:
    """What adding shop/web writes, from the synth's own naming and kube-proxy's layouts (not from the diff)."""
    port = WEB_SPEC.ports[0]
    base = service_port_base(WEB_SPEC, port)
    service, external = f"service-{base}", f"external-{base}"
    table = "ip kube-proxy"
    found = {f"added chain {table} {service}", f"added chain {table} {external}",
             f"added element {table} cluster-ips: 10.96.0.50",
             f"added element {table} service-ips: 10.96.0.50 . tcp . 80 : goto {service}",
             f"added element {table} service-nodeports: tcp . 30080 : goto {external}"}
    if layout == "v1.34":
        endpoints = [f"endpoint-{endpoint_base(WEB_SPEC, port, e.address)}" for e in ENDPOINTS]
        found |= {f"added chain {table} {name}" for name in endpoints}
        found |= {f"added {table} {name}: ip saddr {e.address} jump mark-for-masquerade"
                  for name, e in zip(endpoints, ENDPOINTS, strict=True)}
        found |= {f"added {table} {name}: meta l4proto tcp dnat to {e.address}:8080"
                  for name, e in zip(endpoints, ENDPOINTS, strict=True)}
        found |= {f"added {table} {service}: ip daddr 10.96.0.50 ip saddr != 10.244.0.0/16 jump mark-for-masquerade",
                  f"added {table} {external}: jump mark-for-masquerade",
                  f"added {table} {external}: goto {service}"}
        choices = ", ".join(f"{n} : goto {name}" for n, name in enumerate(sorted(endpoints)))
        found.add(f"added {table} {service}: numgen random mod 3 vmap {{ {choices} }}")
    else:
        found |= {f'added {table} {external}: meta mark set meta mark | 0x00004000 comment "masquerade"',
                  f"added {table} {external}: goto {service}"}
        local = sorted(e.address for e in ENDPOINTS if e.node == "node-0")
        found |= {f"added element {table} hairpin-connections: {a} . {a} . tcp . 8080" for a in local}
        choices = ", ".join(f"{n} : {a} . 8080" for n, a in enumerate(sorted(e.address for e in ENDPOINTS)))
        found.add(f"added {table} {service}: meta l4proto tcp dnat ip to numgen random mod 3 map {{ {choices} }}")
    return found


@pytest.mark.parametrize("layout", LAYOUTS)
def test_adding_a_service_names_exactly_its_chains_rules_and_elements(layout):
    changes = diff(layout, "before", "after")
    assert [g.service for g in changes.services] == [WEB]
    assert lines(changes, WEB) == expected_web(layout)
    assert changes.noise == []


@pytest.mark.parametrize("layout", LAYOUTS)
def test_removing_the_service_is_the_same_change_the_other_way(layout):
    changes = diff(layout, "after", "before")
    assert lines(changes, WEB) == {line.replace("added", "removed", 1) for line in expected_web(layout)}


@pytest.mark.parametrize("layout", LAYOUTS)
def test_removing_an_endpoint_is_its_services_change(layout):
    changes = diff(layout, "after", "fewer")
    assert [g.service for g in changes.services] == [WEB]
    (group,) = changes.services
    port = WEB_SPEC.ports[0]
    chain = f"endpoint-{endpoint_base(WEB_SPEC, port, GONE.address)}"
    gone = f"goto {chain}" if layout == "v1.34" else f"{GONE.address} . 8080"
    # The endpoint's entry of the numgen map went, whatever number it had.
    assert [(e.kind, e.set, e.chain, e.text.split(" : ")[1]) for e in group.elements if e.set is None] == [
        ("removed", None, f"service-{service_port_base(WEB_SPEC, port)}", gone)]
    assert sorted((r.kind, "mod 3" in r.text) for r in group.rules if "numgen" in r.text) == [
        ("added", False), ("removed", True)]
    if layout == "v1.34":
        assert [(c.kind, c.chain) for c in group.chains] == [("removed", chain)]
    else:
        assert group.chains == []
        assert [(e.kind, e.set, e.text) for e in group.elements if e.set is not None] == [
            ("removed", "hairpin-connections", f"{GONE.address} . {GONE.address} . tcp . 8080")]


def test_a_hairpin_element_serves_the_service_that_dnats_to_its_endpoint():
    index = NftServiceIndex.of(read_dump(listing("main-edca563", "after")))
    owners = index.element_owners("ip", "kube-proxy", "hairpin-connections")
    assert len(owners) == 2 and {(o.service_port, o.by) for _, o in owners} == {(WEB, "endpoint")}


# -- noise ------------------------------------------------------------------------------------------------------


def with_counters(ruleset: Ruleset, packets: int) -> Ruleset:
    """`ruleset` with a counter on every rule (as `counter packets N bytes M`) and on every map element."""
    count = Counter(packets, packets * 60)
    tables = []
    for table in ruleset.tables:
        chains = tuple(replace(c, rules=tuple(replace(r, statements=(count, *r.statements)) for r in c.rules))
                       for c in table.chains)
        sets = tuple(replace(s, elements=tuple(replace(e, statements=(count,)) for e in s.elements))
                     for s in table.sets)
        tables.append(replace(table, chains=chains, sets=sets))
    return replace(ruleset, tables=tuple(tables))


def reordered(ruleset: Ruleset) -> Ruleset:
    """`ruleset` with every set's and map's elements in the reverse order."""
    return replace(ruleset, tables=tuple(
        replace(t, sets=tuple(replace(s, elements=s.elements[::-1]) for s in t.sets)) for t in ruleset.tables))


def test_handles_counters_and_element_order_alone_give_an_empty_diff():
    plain = read_dump(listing("v1.34", "after"))
    handled = read_dump(listing("v1.34", "after.handles"))
    assert any(r.handle for r in handled.rules)
    changes = diff_rulesets(with_counters(plain, 0), reordered(with_counters(handled, 7)))
    assert changes.services == []
    assert {n.kind for n in changes.noise} == {"handles", "counters", "element-order"}
    assert "counter packets 7 bytes 420" in changes.textual()


def test_expiry_times_of_dynamic_elements_are_noise_their_comings_and_goings_are_not():
    def affinity(elements: str) -> Ruleset:
        return parse_ruleset("table ip kube-proxy {\n\tset affinity-GTK6MW7G-ns5/svc5/tcp/p80__10.180.0.3/80 {\n"
                             "\t\ttype ipv4_addr\n\t\tsize 65535\n\t\tflags dynamic,timeout\n\t\ttimeout 3h\n"
                             f"\t\telements = {{ {elements} }}\n\t}}\n}}\n")

    noise = diff_rulesets(affinity("10.0.0.9 expires 2h59m58s"), affinity("10.0.0.9 expires 1h2s"))
    assert noise.services == [] and [n.kind for n in noise.noise] == ["expires"]
    client = diff_rulesets(affinity("10.0.0.9 expires 2h59m58s"), affinity("10.0.0.9 expires 1h, 10.0.0.7 expires 3h"))
    assert [(g.service, [c.line for c in g.changes()]) for g in client.services] == [
        ("ns5/svc5:p80", ["element ip kube-proxy affinity-GTK6MW7G-ns5/svc5/tcp/p80__10.180.0.3/80: 10.0.0.7"])]


def test_the_json_listing_diffs_as_its_text_does():
    changes = diff_rulesets(read_dump(listing("v1.34", "before")), read_dump(DATA / "v1.34" / "after.json"))
    assert lines(changes, WEB) == expected_web("v1.34")


# -- declarations and order ----------------------------------------------------------------------------------


def one_chain(declaration: str, *rules: str) -> Ruleset:
    body = "".join(f"\t\t{r}\n" for r in rules)
    return parse_ruleset(f"table inet fw {{\n\tchain input {{\n\t\t{declaration}\n{body}\t}}\n}}\n")


def test_a_base_chains_policy_and_priority_changes_are_reported_as_changed():
    before = one_chain("type filter hook input priority filter; policy accept;")
    after = one_chain("type filter hook input priority filter + 5; policy drop;")
    (group,) = diff_rulesets(before, after).services
    assert [c.line for c in group.changes()] == [
        "chain inet fw input: type filter hook input priority filter; policy accept; → "
        "type filter hook input priority filter + 5; policy drop;"]
    assert group.summary == "0 chain(s) added, 0 removed, 1 changed; 0 rule(s) added, 0 removed"


def test_a_set_whose_flags_change_is_a_changed_declaration():
    def table(flags: str) -> Ruleset:
        return parse_ruleset(f"table ip t {{\n\tset s {{\n\t\ttype ipv4_addr\n\t\tflags {flags}\n\t}}\n}}\n")

    (group,) = diff_rulesets(table("interval"), table("dynamic")).services
    assert [c.line for c in group.changes()] == ["set ip t s: flags interval → flags dynamic"]


def test_a_tables_comment_is_a_change_what_its_named_counter_counts_is_noise():
    def table(comment: str, packets: int) -> Ruleset:
        return parse_ruleset(f'table ip t {{\n\tcomment "{comment}"\n\tcounter c {{\n\t\tpackets {packets} bytes 0\n'
                             "\t}\n}\n")

    changes = diff_rulesets(table("mine", 1), table("theirs", 9))
    assert [[c.line for c in g.changes()] for g in changes.services] == [
        ['table ip t: comment "mine" → comment "theirs"']]
    assert [(n.kind, n.before, n.after) for n in changes.noise] == [
        ("counters", "packets 1 bytes 0", "packets 9 bytes 0")]


HOOK = "type filter hook input priority filter; policy drop;"


def test_a_rule_moved_across_one_it_could_meet_the_same_packet_as_is_reported_moved():
    before = one_chain(HOOK, "tcp dport 22 accept", "ip saddr 10.0.0.0/8 drop")
    after = one_chain(HOOK, "ip saddr 10.0.0.0/8 drop", "tcp dport 22 accept")
    (group,) = diff_rulesets(before, after).services
    assert [(r.kind, r.text, r.detail) for r in group.rules] == [("moved", "ip saddr 10.0.0.0/8 drop",
                                                                  "was rule 2, now rule 1")]


@pytest.mark.parametrize("rules", [
    ("ip daddr 10.96.0.1 accept", "ip daddr 10.96.0.2 drop"),  # never the same packet
    ("counter", "ip saddr 10.0.0.0/8 drop"),  # counting only
], ids=["exclusive", "passive"])
def test_a_rule_moved_where_order_cannot_matter_is_no_change(rules):
    changes = diff_rulesets(one_chain(HOOK, *rules), one_chain(HOOK, *rules[::-1]))
    assert changes.services == [] and changes.noise == []
    assert "\n-\t\tip " in changes.textual()  # the listings do differ: the textual diff shows it


# -- the CLI and the site -----------------------------------------------------------------------------------


def invoke(*args: str):
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


def test_cli_diff_prints_the_services_change_and_the_unified_diff():
    result = invoke("diff", str(listing("main-edca563", "after")), str(listing("main-edca563", "fewer")), "--text")
    assert result.exit_code == 0, result.output
    out = result.stdout.splitlines()
    assert out[0] == f"{WEB}: 1 rule(s) added, 1 removed; 0 element(s) added, 2 removed"
    assert f"  - element ip kube-proxy hairpin-connections: {GONE.address} . {GONE.address} . tcp . 8080" in out
    assert f"--- {listing('main-edca563', 'after')}" in out
    assert any(line.startswith("-\t\tmeta l4proto tcp dnat ip to numgen random mod 3") for line in out)


def test_cli_diff_json_follows_the_schema_and_lists_declarations_and_elements():
    result = invoke("diff", str(listing("v1.34", "before")), str(DATA / "v1.34" / "after.json"), "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    jsonschema.Draft202012Validator(output_schema("diff")).validate(data)
    (web,) = data["services"]
    assert web["service"] == WEB and web["declarations"] == []
    assert {(e["set"], e["text"]) for e in web["elements"]} >= {("cluster-ips", "10.96.0.50")}
    assert {r["kind"] for r in web["rules"]} == {"added"} and all("detail" not in c for c in web["chains"])


def test_cli_diff_of_an_nft_ruleset_against_an_iptables_dump_is_invalid_input():
    result = CliRunner().invoke(main, ["diff", str(listing("v1.34", "after")),
                                       str(REPO_ROOT / "dumps" / "kind-nodeport" / "worker-1-after.rules")])
    assert result.exit_code == 1
    assert "one is an nft ruleset and the other an iptables-save dump" in result.stderr


def test_the_sites_diff_section_groups_an_nft_diff_by_service_and_flags_unrelated_changes():
    changes = diff_of(read_dump(listing("v1.34", "before")), read_dump(listing("v1.34", "fewer")))
    declared = diff_section(changes, {WEB}, names=("before.nft", "fewer.nft"))
    assert f"**<code>{WEB}</code>**: " in declared and "Unrelated" not in declared
    assert "+10.96.0.50 . tcp . 80 : goto service-" in declared and "    (ip kube-proxy service-ips)" in declared
    assert "--- before.nft" in declared
    assert f'warning "Unrelated real change: {WEB}"' in diff_section(changes, set())


# -- the listings are what nft prints -------------------------------------------------------------------------


def nft_listings(layout: Layout) -> dict[str, str]:
    """nft's listings of CLUSTERS in `layout`, loaded into a fresh namespace each (`.handles`: `nft -a`)."""
    found = {}
    for name, spec in CLUSTERS.items():
        with Namespace("nftdiff") as ns:
            loaded = ns.run(["nft", "-f", "-"], input=synth_nftables(spec, layout=layout))
            assert loaded.ok, loaded.stderr
            found[f"{name}.nft"] = ns.run(["nft", "list", "ruleset"]).stdout
            if layout == "v1.34" and name == "after":
                found["after.handles.nft"] = ns.run(["nft", "-a", "list", "ruleset"]).stdout
                found["after.json"] = ns.run(["nft", "-j", "list", "ruleset"]).stdout
    return found


def regenerate() -> None:
    for layout in LAYOUTS:
        (DATA / layout).mkdir(parents=True, exist_ok=True)
        for name, text in nft_listings(layout).items():
            (DATA / layout / name).write_text(text)


@pytest.mark.kernel
@pytest.mark.skipif(can_run_kernel_lab() is not None, reason=str(can_run_kernel_lab()))
@pytest.mark.parametrize("layout", LAYOUTS)
def test_the_kept_listings_are_what_nft_lists_for_the_synths_clusters(layout):
    for name, text in nft_listings(layout).items():
        assert (DATA / layout / name).read_text() == text, name


@pytest.mark.kernel
@pytest.mark.skipif(can_run_kernel_lab() is not None, reason=str(can_run_kernel_lab()))
def test_elements_nft_lists_in_another_order_than_they_were_added_in_diff_as_nothing():
    added = [f"10.96.0.{n} . tcp . 80 : drop" for n in range(20, 0, -1)]
    transaction = "add table ip t\nadd map ip t m { type ipv4_addr . inet_proto . inet_service : verdict ; }\n"
    with Namespace("nftorder") as ns:
        transaction += "".join(f"add element ip t m {{ {e} }}\n" for e in added)
        loaded = ns.run(["nft", "-f", "-"], input=transaction)
        assert loaded.ok, loaded.stderr
        listed = parse_ruleset(ns.run(["nft", "list", "ruleset"]).stdout)
    (table,) = listed.tables
    elements = table.sets[0].elements
    as_added = tuple(sorted(elements, key=lambda e: added.index(format_element(e))))
    assert as_added != elements  # nft lists them in an order of its own
    in_order = replace(listed, tables=(replace(table, sets=(replace(table.sets[0], elements=as_added),)),))
    changes = diff_rulesets(in_order, listed)
    assert changes.services == [] and [n.kind for n in changes.noise] == ["element-order"]
