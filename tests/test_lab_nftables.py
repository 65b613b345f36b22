"""The kernel lab on the scenario in nftables mode, in every layout of kube-proxy's tables followed here: the
committed `dumps/kind-nodeport-nftables` (layout "v1.34") and its twin in layout "main-edca563", which the
kernel makes in a temporary folder (`kube.nft_scenario.nftables_scenario_files`), as the lab needs root either
way. A committed second folder would hold the same cluster twice, with pages and recordings of its own, for
what only kube-proxy's layout changes."""

from __future__ import annotations

from fractions import Fraction

import pytest
from iptables_lens.kube.nft_scenario import nftables_scenario_files
from iptables_lens.kube.synth_nftables import LAYOUTS
from iptables_lens.lab.run import DROPPED_SAMPLES, LabRun, recording_problems, recording_text
from iptables_lens.lab.topology import Lab
from iptables_lens.netns import can_run_kernel_lab, leftover_namespaces
from iptables_lens.scenario import load_scenario, validate_scenario

from tests.conftest import REPO_ROOT

NFT = REPO_ROOT / "dumps" / "kind-nodeport-nftables"
CONNECTIONS = 200
PODS = {"10.244.1.2:80", "10.244.2.2:80"}

pytestmark = pytest.mark.kernel


@pytest.fixture(scope="module", params=LAYOUTS)
def lab_results(request, tmp_path_factory):
    """Every flow of the scenario in the layout, run in the kernel: (scenario, results by flow, namespaces
    before and after)."""
    if can_run_kernel_lab() is not None:
        pytest.skip(str(can_run_kernel_lab()))
    folder = NFT
    if request.param != "v1.34":
        folder = tmp_path_factory.mktemp(request.param) / NFT.name
        folder.mkdir()
        for name, text in nftables_scenario_files(request.param).items():
            (folder / name).write_text(text)
    scenario = load_scenario(folder)
    assert validate_scenario(folder) == []
    before = leftover_namespaces()
    with Lab(scenario) as lab:
        runner = LabRun(lab, connections=CONNECTIONS)
        results = {flow.id: runner.run_flow(flow) for flow in scenario.meta.flows}
    return scenario, results, before, leftover_namespaces()


def test_the_twin_differs_from_the_committed_folder_only_in_kube_proxys_tables(lab_results):
    scenario, _, _, _ = lab_results
    ruleset = scenario.rulesets["worker-1-after.nft"]
    chains = {c.name for c in ruleset.table("ip", "kube-proxy").chains}
    # v1.34 marks for masquerade in a chain of its own; main-edca563 marks inline and has a hairpin set.
    assert ("mark-for-masquerade" in chains) == (scenario.folder == NFT)
    sets = {s.name for s in ruleset.table("ip", "kube-proxy").sets}
    assert ("hairpin-connections" in sets) == (scenario.folder != NFT)


def test_the_kernel_agrees_with_the_tracer_on_every_flow_hop_by_hop(lab_results):
    scenario, results, _, _ = lab_results
    assert set(results) == {f.id for f in scenario.meta.flows}
    for flow_id, result in results.items():
        assert result.problems == [], flow_id
        assert {b.endpoint for b in result.branches} == {o.endpoint for o in result.prediction.outcomes}, flow_id
        for branch in result.branches:
            assert branch.problem is None, (flow_id, branch.problem)
            assert branch.matched_outcome is not None and len(branch.steps) >= 5
            assert all(step.table.startswith(("ip ", "inet ")) for step in branch.steps)
        assert all(check.ok for check in result.checks), (flow_id, [str(c) for c in result.checks])


@pytest.mark.parametrize("flow_id", ["outside-to-nodeport", "outside-to-nodeport-on-worker2", "pod-to-cluster-ip",
                                     "node-to-own-nodeport", "endpoint-to-own-service"])
def test_each_pod_gets_half_the_connections_and_conntrack_records_them(lab_results, flow_id):
    _, results, _, _ = lab_results
    result = results[flow_id]
    assert result.predicted == {pod: Fraction(1, 2) for pod in PODS}
    assert result.connections == CONNECTIONS and sum(result.counts.values()) == CONNECTIONS
    assert set(result.counts) == PODS
    assert result.conntrack_entries >= 0.95 * CONNECTIONS


def test_an_outside_client_is_masqueraded_to_the_address_of_the_way_out_on_either_worker(lab_results):
    _, results, _, _ = lab_results
    # Through FORWARD: to the local pod out of its veth (the node's pod gateway), to the other out of eth0.
    assert results["outside-to-nodeport"].snat_seen == {"10.244.1.2:80": {"10.244.1.1"},
                                                        "10.244.2.2:80": {"172.20.0.2"}}
    assert results["outside-to-nodeport-on-worker2"].snat_seen == {"10.244.1.2:80": {"172.20.0.3"},
                                                                   "10.244.2.2:80": {"10.244.2.1"}}
    for flow_id in ("outside-to-nodeport", "outside-to-nodeport-on-worker2"):
        for branch in results[flow_id].branches:
            assert {s.hook for s in branch.steps} == {"PREROUTING", "FORWARD", "POSTROUTING"}


def test_a_pod_to_the_cluster_ip_is_masqueraded_only_when_sent_back_to_itself(lab_results):
    _, results, _, _ = lab_results
    assert results["pod-to-cluster-ip"].snat_seen == {pod: {"10.244.1.10"} for pod in PODS}
    assert results["endpoint-to-own-service"].snat_seen == {"10.244.1.2:80": {"10.244.2.2"},
                                                            "10.244.2.2:80": {"10.244.2.1"}}


def test_the_service_without_endpoints_refuses_every_connection_at_its_reject(lab_results):
    _, results, _, _ = lab_results
    result = results["pod-to-no-endpoints"]
    [branch] = result.branches
    last = branch.steps[-1]
    assert (branch.endpoint, last.hook, last.table, last.chain, last.verdict) == (
        None, "FORWARD", "ip kube-proxy", "reject-chain", "DROP")
    assert result.failures == {"refused": DROPPED_SAMPLES} and result.counts == {"none": DROPPED_SAMPLES}


def test_each_flows_recording_replays_without_root(lab_results):
    scenario, results, _, _ = lab_results
    for flow_id, result in results.items():
        text = recording_text(result, "test")
        assert "nft -a monitor trace (table inet iptables-lens-trace)" in text
        assert recording_problems(scenario, result.flow, text) == [], flow_id


def test_nothing_of_the_lab_is_left(lab_results):
    _, _, before, after = lab_results
    assert after == before


def test_the_lab_command_runs_an_nft_scenarios_flow_with_the_same_flags_and_json():
    import json

    from click.testing import CliRunner
    from iptables_lens.cli import main

    if can_run_kernel_lab() is not None:
        pytest.skip(str(can_run_kernel_lab()))
    result = CliRunner().invoke(main, ["lab", str(NFT), "--flow", "pod-to-cluster-ip", "--connections", "40",
                                       "--json"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    [line] = result.output.splitlines()
    printed = json.loads(line)
    assert (printed["flow"], printed["ok"], printed["connections"]) == ("pod-to-cluster-ip", True, 40)
    assert {b["endpoint"] for b in printed["branches"]} == PODS
    # Not masqueraded: the kernel's path leaves `masquerading` at its first rule, the unmarked packet's return.
    assert all("POSTROUTING ip kube-proxy masquerading #1: RETURN" in b["path"] for b in printed["branches"])
