"""A scenario in nftables mode: `nft list ruleset` listings as a scenario's dumps, checked against its facts, and
the generated `dumps/kind-nodeport-nftables`, whose listings the kernel makes (issue 17)."""

from __future__ import annotations

import shutil
from fractions import Fraction
from pathlib import Path

import pytest
from click.testing import CliRunner
from iptables_lens.cli import main
from iptables_lens.errors import DumpError
from iptables_lens.kube.nft_services import NftServiceIndex
from iptables_lens.netns import can_run_kernel_lab
from iptables_lens.nft import Ruleset
from iptables_lens.scenario import load_scenario, validate_scenario
from iptables_lens.scenario.flows import predict, recent_lists
from iptables_lens.scenario.load import read_scenario

from tests.conftest import REPO_ROOT, SEED
from tests.site_build import build, variant_config
from tests.test_contribute import edit

NFT = REPO_ROOT / "dumps" / "kind-nodeport-nftables"
SERVICE = "default/my-nginx-service"


def copy(tmp_path: Path, source: Path = NFT) -> Path:
    folder = tmp_path / source.name
    shutil.copytree(source, folder)
    return folder


def broken(tmp_path: Path, file: str, old: str, new: str) -> Path:
    """A copy of the scenario with `old` replaced by `new` in its `file`."""
    folder = copy(tmp_path)
    edit(folder / file, old, new)
    return folder


def position_of(path: Path, text: str) -> tuple[int, int]:
    """Line and column (1-based) of the first occurrence of `text` in the file."""
    for number, line in enumerate(path.read_text().splitlines(), 1):
        if text in line:
            return number, line.index(text) + 1
    raise AssertionError(f"{text!r} is not in {path}")


def problems_in(folder: Path, file: str) -> list[DumpError]:
    return [p for p in validate_scenario(folder) if Path(p.source).name == file]


# -- the folder ---------------------------------------------------------------------------------------------


def test_the_scenario_loads_its_rulesets_and_validates():
    scenario = load_scenario(NFT)
    assert scenario.meta.cluster.proxy_mode == "nftables"
    assert scenario.dumps == {}
    assert sorted(scenario.rulesets) == sorted(d.file for d in scenario.meta.dumps)
    assert all(isinstance(r, Ruleset) for r in scenario.rulesets.values())
    assert [f.id for f in scenario.meta.flows] == [
        "outside-to-nodeport", "outside-to-nodeport-on-worker2", "pod-to-cluster-ip", "node-to-own-nodeport",
        "endpoint-to-own-service", "pod-to-no-endpoints"]
    assert validate_scenario(NFT) == []


def test_a_nodes_ruleset_is_its_rules_of_either_family():
    scenario = load_scenario(NFT)
    after = scenario.dump_for("blog-worker", "after", 4)
    assert after is scenario.dump_for("blog-worker", "after", 6) is scenario.rulesets["worker-1-after.nft"]
    assert {(t.family, t.name) for t in after.tables} >= {("ip", "kube-proxy"), ("ip6", "kube-proxy")}
    assert scenario.dump_for("blog-control-plane", "after", 4) is None
    # An iptables-mode scenario's dumps stay one family each.
    seed = load_scenario(SEED)
    assert seed.dump_for("blog-worker", "after", 4) is not None and seed.dump_for("blog-worker", "after", 6) is None


def test_only_the_after_rulesets_serve_the_seeds_service_in_both_workers():
    scenario = load_scenario(NFT)
    for entry in scenario.meta.dumps:
        index = NftServiceIndex.of(scenario.rulesets[entry.file])
        served = SERVICE in index.services()
        assert served == (entry.moment == "after"), entry.file
        if served:
            endpoints = {t.endpoint for t in index.dnat_targets("ip", "kube-proxy", SERVICE)}
            assert endpoints == {"10.244.1.2:80", "10.244.2.2:80"}


def test_the_ipv6_table_has_no_service_and_serves_node_ports_on_every_local_address_but_localhost():
    ruleset = load_scenario(NFT).rulesets["worker-1-after.nft"]
    ip6 = ruleset.table("ip6", "kube-proxy")
    assert "nodeport-ips" not in {s.name for s in ip6.sets}
    assert all(not s.elements for s in ip6.sets)
    assert [r.text for r in ip6.chain("services").rules][-1] == (
        "fib daddr type local ip6 daddr != ::1 meta l4proto . th dport vmap @service-nodeports")
    assert "nodeport-ips" in {s.name for s in ruleset.table("ip", "kube-proxy").sets}


def test_the_listing_holds_the_kubelets_and_kinds_iptables_nft_tables_but_no_kube_proxy_chain_there():
    ruleset = load_scenario(NFT).rulesets["worker-2-before.nft"]
    chains = {(t.family, t.name, c.name) for t in ruleset.tables for c in t.chains}
    assert {("ip", "nat", "DOCKER_OUTPUT"), ("ip", "nat", "KIND-MASQ-AGENT"), ("ip", "mangle", "KUBE-IPTABLES-HINT"),
            ("ip", "filter", "KUBE-FIREWALL"), ("ip6", "filter", "KUBE-KUBELET-CANARY")} <= chains
    assert not any(name.startswith(("KUBE-SVC", "KUBE-SERVICES", "KUBE-PROXY")) for _, _, name in chains)


# -- contradicted facts -------------------------------------------------------------------------------------


def test_a_cluster_ip_the_ruleset_contradicts_is_a_problem_at_the_element_and_at_the_fact(tmp_path):
    folder = broken(tmp_path, "scenario.yaml", "cluster_ip: 10.96.118.136", "cluster_ip: 10.96.118.137")
    problems = problems_in(folder, "worker-1-after.nft")
    element = next(p for p in problems if "service-ips element 10.96.118.136 . tcp . 80" in p.message)
    assert (element.line, element.column) == position_of(folder / "worker-1-after.nft", "10.96.118.136 . tcp . 80")
    assert "kube-proxy writes 10.96.118.137 . tcp . 80 there" in element.message
    facts = problems_in(folder, "scenario.yaml")
    assert any("has no ip service-ips element 10.96.118.137" in p.message for p in facts)
    assert any("cluster-ips set has no 10.96.118.137" in p.message for p in facts)


def test_a_node_port_the_ruleset_contradicts_is_a_problem_at_the_service_nodeports_element(tmp_path):
    folder = broken(tmp_path, "worker-2-after.nft", "tcp . 30080 : goto", "tcp . 30081 : goto")
    (problem,) = [p for p in problems_in(folder, "worker-2-after.nft") if "service-nodeports" in p.message]
    assert (problem.line, problem.column) == position_of(folder / "worker-2-after.nft", "tcp . 30081")
    assert problem.text.strip().startswith("elements = { tcp . 30081")
    assert any(p.message.startswith("services[0].ports[0].node_port:") for p in problems_in(folder, "scenario.yaml"))


def test_an_endpoint_the_scenario_does_not_declare_is_a_problem_at_the_rule_that_dnats_to_it(tmp_path):
    folder = broken(tmp_path, "scenario.yaml", "  - address: 10.244.2.2\n", "  - address: 10.244.2.9\n")
    problems = problems_in(folder, "worker-1-after.nft")
    problem = next(p for p in problems if "DNATs" in p.message)
    assert (problem.line, problem.column) == position_of(folder / "worker-1-after.nft", "meta l4proto tcp dnat to 10.244.2.2:80")
    assert problem.message.endswith("to 10.244.2.2:80, but the scenario declares no such endpoint of it")
    assert any("DNATs default/my-nginx-service port 80/TCP to no 10.244.2.9:80" in p.message
               for p in problems_in(folder, "scenario.yaml"))


def test_an_address_on_the_underlay_that_is_no_node_is_a_problem_at_its_rule(tmp_path):
    folder = broken(tmp_path, "worker-1-before.nft", "ip saddr 172.20.0.4 jump mark-for-masquerade",
         "ip saddr 172.20.0.9 jump mark-for-masquerade")
    (problem,) = problems_in(folder, "worker-1-before.nft")
    assert (problem.line, problem.column) == position_of(folder / "worker-1-before.nft", "ip saddr 172.20.0.9")
    assert problem.message.startswith("172.20.0.9 is on the underlay 172.20.0.0/16 but is no declared node address")


def test_a_chain_name_whose_hash_does_not_verify_is_a_problem_at_the_chain(tmp_path):
    folder = copy(tmp_path)
    listing = folder / "worker-2-after.nft"
    listing.write_text(listing.read_text().replace("endpoint-NILVNJS2-", "endpoint-NILVNJS3-"))
    (problem,) = problems_in(folder, "worker-2-after.nft")
    assert (problem.line, problem.column) == position_of(folder / "worker-2-after.nft", "chain endpoint-NILVNJS3")
    assert problem.message.endswith("kube-proxy names it endpoint-NILVNJS2-default/my-nginx-service/tcp/__10.244.2.2/80")


# -- the dialect and the proxy mode -------------------------------------------------------------------------


def test_rulesets_in_an_iptables_mode_cluster_are_a_problem_at_each_file_entry(tmp_path):
    folder = broken(tmp_path, "scenario.yaml", "proxy_mode: nftables", "proxy_mode: iptables")
    scenario, problems = read_scenario(folder)
    assert scenario is not None and scenario.rulesets == {}
    assert [(p.line, p.column) for p in problems] == [position_of(folder / "scenario.yaml", d.file)
                                                      for d in scenario.meta.dumps]
    assert all("names an nft ruleset, but cluster.proxy_mode is iptables" in p.message for p in problems)


def test_iptables_save_text_in_a_ruleset_file_is_a_problem_at_its_entry(tmp_path):
    folder = copy(tmp_path)
    shutil.copy(SEED / "worker-1-after.rules", folder / "worker-1-after.nft")
    scenario, problems = read_scenario(folder)
    (problem,) = problems
    assert problem.source.endswith("scenario.yaml") and problem.message == (
        "dumps[1].file: worker-1-after.nft holds iptables rules, but cluster.proxy_mode is nftables, whose nodes' "
        "rules are nft list ruleset listings (.nft)")
    assert "worker-1-after.nft" not in scenario.rulesets


def test_a_ruleset_entry_names_no_family(tmp_path):
    folder = broken(tmp_path, "scenario.yaml", "- file: worker-1-after.nft\n  node: blog-worker\n",
         "- file: worker-1-after.nft\n  family: 6\n  node: blog-worker\n")
    scenario, problems = read_scenario(folder)
    assert scenario is None
    assert "worker-1-after.nft is an nft ruleset, which holds the tables of both families: it names no family" in (
        problems[0].message)


def test_two_rulesets_of_one_node_and_moment_are_refused(tmp_path):
    folder = broken(tmp_path, "scenario.yaml", "- file: worker-2-before.nft\n  node: blog-worker2\n",
         "- file: worker-2-before.nft\n  node: blog-worker\n")
    scenario, problems = read_scenario(folder)
    assert scenario is None
    assert "worker-1-before.nft and worker-2-before.nft are both blog-worker's IPv4 rules before" in problems[0].message


def test_a_returning_client_of_a_service_without_affinity_goes_where_a_first_request_goes(tmp_path):
    folder = broken(tmp_path, "scenario.yaml", "  dport: 30080\n", "  dport: 30080\n  returning_to: 10.244.1.2\n")
    scenario = load_scenario(folder)
    returning = scenario.meta.flows[0]
    assert recent_lists(scenario.dump_for(returning.node, "after"), returning) == frozenset()
    first = load_scenario("dumps/kind-nodeport-nftables").meta.flows[0]
    assert [(o.endpoint, o.probability) for o in predict(scenario, returning).outcomes] == [
        (o.endpoint, o.probability) for o in predict(load_scenario("dumps/kind-nodeport-nftables"), first).outcomes]


# -- the flows, as the tracer sees them ----------------------------------------------------------------------

HALF = Fraction(1, 2)
PODS = ("10.244.1.2:80", "10.244.2.2:80")


def outcomes(flow_id: str) -> dict:
    """Endpoint -> (probability, masqueraded, verdict) of the flow's outcomes."""
    scenario = load_scenario(NFT)
    trace = predict(scenario, next(f for f in scenario.meta.flows if f.id == flow_id))
    return {o.endpoint: (o.probability, o.masquerade, o.verdict) for o in trace.outcomes}


def actions(flow_id: str, endpoint: str | None) -> list[tuple[str, str, str, str]]:
    """(hook, table, chain, action) of each rule step of the flow's outcome to `endpoint`."""
    scenario = load_scenario(NFT)
    trace = predict(scenario, next(f for f in scenario.meta.flows if f.id == flow_id))
    outcome = next(o for o in trace.outcomes if o.endpoint == endpoint)
    return [(s.hook, s.table, s.chain, s.action) for s in outcome.path if s.table is not None]


@pytest.mark.parametrize("flow_id", ["outside-to-nodeport", "outside-to-nodeport-on-worker2"])
def test_an_outside_client_to_either_workers_node_port_reaches_each_pod_half_the_time_marked_and_masqueraded(flow_id):
    assert outcomes(flow_id) == {pod: (HALF, True, "ACCEPT") for pod in PODS}
    for pod in PODS:
        steps = actions(flow_id, pod)
        assert ("PREROUTING", "ip kube-proxy", "mark-for-masquerade", "mark 0x0 -> 0x4000") in steps
        assert any(hook == "FORWARD" for hook, *_ in steps) and not any(hook == "INPUT" for hook, *_ in steps)
        assert steps[-1][:3] == ("POSTROUTING", "ip kube-proxy", "masquerading")
        assert steps[-1][3].startswith("masquerade to ")


def test_a_pod_to_the_cluster_ip_is_not_masqueraded_but_in_the_hairpin_case():
    assert outcomes("pod-to-cluster-ip") == {pod: (HALF, False, "ACCEPT") for pod in PODS}
    # The endpoint on blog-worker2 calls its own Service: sent back to itself, it is masqueraded.
    assert outcomes("endpoint-to-own-service") == {"10.244.1.2:80": (HALF, False, "ACCEPT"),
                                                   "10.244.2.2:80": (HALF, True, "ACCEPT")}
    hairpin = actions("endpoint-to-own-service", "10.244.2.2:80")
    assert ("PREROUTING", "ip kube-proxy", "endpoint-NILVNJS2-default/my-nginx-service/tcp/__10.244.2.2/80",
            "jump mark-for-masquerade") in hairpin


def test_the_service_without_endpoints_is_rejected_through_no_endpoint_services():
    assert outcomes("pod-to-no-endpoints") == {None: (1, False, "REJECT")}
    steps = actions("pod-to-no-endpoints", None)
    assert steps[-2:] == [("FORWARD", "ip kube-proxy", "service-endpoints-check", "goto reject-chain"),
                          ("FORWARD", "ip kube-proxy", "reject-chain", "reject with icmp port-unreachable")]


# -- the generator and the kernel ---------------------------------------------------------------------------


@pytest.mark.kernel
@pytest.mark.skipif(can_run_kernel_lab() is not None, reason=str(can_run_kernel_lab()))
def test_the_kernel_makes_the_committed_folder_byte_for_byte(tmp_path):
    out = tmp_path / "made"
    result = CliRunner().invoke(main, ["synth", "scenario", "nodeport-nftables", "-o", str(out)],
                                catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in out.iterdir()) == sorted(p.name for p in NFT.iterdir() if p.is_file())
    for made in out.iterdir():
        assert made.read_bytes() == (NFT / made.name).read_bytes(), made.name


@pytest.mark.kernel
@pytest.mark.skipif(can_run_kernel_lab() is not None, reason=str(can_run_kernel_lab()))
def test_the_kernel_accepts_each_ruleset_and_refuses_a_broken_one(tmp_path):
    assert validate_scenario(NFT, kernel=True) == []
    folder = broken(tmp_path, "worker-1-after.nft", "jump mark-for-masquerade\n", "jump no-such-chain\n")
    kernel = [p for p in validate_scenario(folder, kernel=True) if "the kernel refuses it (nft -c -f)" in p.message]
    assert [Path(p.source).name for p in kernel] == ["worker-1-after.nft"]


def test_without_the_kernel_the_generator_says_why_and_writes_nothing(tmp_path, monkeypatch):
    import iptables_lens.netns

    monkeypatch.setattr(iptables_lens.netns, "can_run_kernel_lab", lambda: "needs root to create network namespaces")
    out = tmp_path / "made"
    result = CliRunner().invoke(main, ["synth", "scenario", "nodeport-nftables", "-o", str(out)])
    assert result.exit_code == 1 and not out.exists()
    assert "error: the kernel lists the scenario's rulesets, and asking it needs root" in result.output
    assert "Traceback" not in result.output


# -- the site -------------------------------------------------------------------------------------------------


def test_the_site_builds_with_the_scenario_and_explains_each_nodes_ruleset_and_its_diff(tmp_path):
    site = tmp_path / "site"
    result = build(site, variant_config(tmp_path, NFT))
    assert result.returncode == 0, result.stderr
    assert "WARNING" not in result.stderr, result.stderr
    base = site / "scenarios" / "kind-nodeport-nftables"
    overview = (base / "index.html").read_text()
    assert "nftables" in overview and "kind.yaml" in overview
    scenario = load_scenario(NFT)
    for node in ("blog-worker", "blog-worker2"):
        html = (base / node / "index.html").read_text()
        assert "Rules after the Service" in html and "Rules before" in html and "What changed" in html
        after = scenario.dump_for(node, "after", 4)
        index = NftServiceIndex.of(after)
        [service_chain] = [o.name for o in index.owners()
                           if o.service == "default/my-nginx-service" and o.kind == "service"]
        # The Service's chain has its explained table, anchored for links, and the diff names the Service.
        anchor = "after-ip-kube-proxy-" + service_chain.replace("/", "_")
        assert f'id="{anchor}"' in html
        assert html.count("default/my-nginx-service") >= 4
        assert "table ip6 kube-proxy" in html


def test_a_scrubbed_copy_of_the_nftables_scenario_still_validates_with_its_addresses_mapped(tmp_path):
    from iptables_lens.scenario.scrub import scrub_scenario

    out = scrub_scenario(NFT, tmp_path / "scrubbed", key=b"k" * 32)
    assert validate_scenario(out) == []
    before = (NFT / "worker-1-after.nft").read_text()
    after = (out / "worker-1-after.nft").read_text()
    assert "10.96.118.136" in before and "10.96.118.136" not in after
    assert "family" not in (out / "scenario.yaml").read_text().split("dumps:")[1]
