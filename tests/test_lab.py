"""The kernel lab: the tracer checked against real netfilter, and the lab cleaning up after itself."""

from __future__ import annotations

import dataclasses
import os
import subprocess
from fractions import Fraction
from pathlib import Path

import pytest
from iptables_lens.dialects import read_dump
from iptables_lens.lab.run import (
    DROPPED_SAMPLES,
    Branch,
    LabRun,
    compare_branch,
    failure_of,
    read_recording,
    recording_problems,
    replayed_flows,
)
from iptables_lens.lab.stats import check_proportions
from iptables_lens.lab.topology import Lab
from iptables_lens.netns import Namespace, can_run_kernel_lab, leftover_namespaces
from iptables_lens.scenario import find_scenarios, load_scenario
from iptables_lens.scenario.flows import predict, recording_path
from iptables_lens.trace.packet import Trace

from tests.conftest import REPO_ROOT, SEED

SCENARIOS = find_scenarios(REPO_ROOT / "dumps")


def _lab_processes() -> list[str]:
    """Lab programs (agents, monitors) that are descendants of this test process."""
    parents, commands = {}, {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
            commands[int(stat.parent.name)] = (stat.parent / "cmdline").read_bytes().replace(b"\0", b" ").decode(
                errors="replace")
        except (OSError, IndexError):
            continue  # the process ended while we looked
        parents[int(stat.parent.name)] = int(fields[1])

    def ours(pid: int) -> bool:
        while pid > 1:
            pid = parents.get(pid, 0)
            if pid == os.getpid():
                return True
        return False

    return sorted(cmd for pid, cmd in commands.items()
                  if ("iptables_lens.lab.agents" in cmd or "xtables-monitor" in cmd or "monitor trace" in cmd) and ours(pid))


def _root_veths() -> set[str]:
    out = subprocess.run(["ip", "-o", "link", "show", "type", "veth"], capture_output=True, text=True).stdout
    return {line.split(":")[1].strip().split("@")[0] for line in out.splitlines()}


@pytest.fixture(scope="module")
def seed_lab_results():
    if can_run_kernel_lab() is not None:
        pytest.skip(str(can_run_kernel_lab()))
    scenario = load_scenario(SEED)
    before = (leftover_namespaces(), _root_veths(), _lab_processes())
    with Lab(scenario) as lab:
        runner = LabRun(lab, connections=400)
        results = {flow.id: runner.run_flow(flow) for flow in scenario.meta.flows}
    after = (leftover_namespaces(), _root_veths(), _lab_processes())
    return scenario, results, before, after


@pytest.mark.parametrize("flow_id", ["outside-to-nodeport", "pod-to-cluster-ip", "node-to-own-nodeport"])
@pytest.mark.kernel
def test_the_kernel_takes_the_tracers_path_hop_by_hop_and_its_nat(seed_lab_results, flow_id):
    _, results, _, _ = seed_lab_results
    _assert_agrees(results[flow_id], {"10.244.1.2:80", "10.244.2.2:80"}, 400)


def _assert_agrees(result, endpoints: set[str], connections: int) -> None:
    """The kernel took every branch the tracer predicts, hop by hop, in the proportions it predicts."""
    assert result.problems == []
    assert {b.endpoint for b in result.branches} == endpoints
    for branch in result.branches:
        assert branch.problem is None, branch.problem
        assert branch.matched_outcome is not None
        assert len(branch.steps) > 10
    assert result.connections == connections and sum(result.counts.values()) == connections
    # The kernel's NAT record of (nearly) every connection (conntrack -L is a dump of a live table).
    assert result.conntrack_entries >= 0.95 * connections
    assert all(check.ok for check in result.checks), [str(c) for c in result.checks]


@pytest.mark.kernel
def test_outside_client_is_masqueraded_to_the_address_of_the_way_out(seed_lab_results):
    _, results, _, _ = seed_lab_results
    snat = results["outside-to-nodeport"].snat_seen
    assert snat == {"10.244.2.2:80": {"172.20.0.2"}, "10.244.1.2:80": {"10.244.1.1"}}
    assert results["pod-to-cluster-ip"].snat_seen == {"10.244.2.2:80": {"10.244.1.10"},
                                                      "10.244.1.2:80": {"10.244.1.10"}}


@pytest.mark.kernel
def test_a_wrong_probability_is_caught(seed_lab_results):
    _, results, _, _ = seed_lab_results
    counts = dict(results["outside-to-nodeport"].counts)
    wrong = {"10.244.1.2:80": Fraction(1, 4), "10.244.2.2:80": Fraction(3, 4)}
    assert not all(check.ok for check in check_proportions(counts, wrong))
    right = {"10.244.1.2:80": Fraction(1, 2), "10.244.2.2:80": Fraction(1, 2)}
    assert all(check.ok for check in check_proportions(counts, right))


@pytest.mark.kernel
def test_a_wrong_hop_is_caught(seed_lab_results):
    _, results, _, _ = seed_lab_results
    result = results["outside-to-nodeport"]
    branch = result.branches[0]
    outcome = result.prediction.outcomes[branch.matched_outcome]
    # The article's mistake: the translated packet going to INPUT instead of FORWARD.
    wrong_path = tuple(dataclasses.replace(s, hook="INPUT") if s.hook == "FORWARD" else s for s in outcome.path)
    wrong = Trace(result.prediction.node, result.prediction.origin, result.prediction.packet,
                  (dataclasses.replace(outcome, path=wrong_path),))
    probe = dataclasses.replace(branch, matched_outcome=None, problem=None)
    compare_branch(probe, wrong)
    assert probe.problem is not None and "!! tracer: INPUT filter FORWARD" in probe.problem


@pytest.mark.kernel
def test_nothing_of_the_lab_is_left_after_a_run(seed_lab_results):
    _, _, before, after = seed_lab_results
    assert after == before


@pytest.mark.kernel
@pytest.mark.skipif(can_run_kernel_lab() is not None, reason=str(can_run_kernel_lab()))
def test_the_lab_cleans_up_when_a_flow_fails_midway():
    before = (leftover_namespaces(), _root_veths(), _lab_processes())
    with pytest.raises(RuntimeError, match="stop here"):
        with Lab(load_scenario(SEED)) as lab:
            assert len(leftover_namespaces()) > len(before[0])
            assert lab.pods
            raise RuntimeError("stop here")
    assert (leftover_namespaces(), _root_veths(), _lab_processes()) == before


@pytest.mark.kernel
@pytest.mark.skipif(can_run_kernel_lab() is not None, reason=str(can_run_kernel_lab()))
@pytest.mark.parametrize("variant", ["nft", "legacy"])
@pytest.mark.parametrize("path", sorted((REPO_ROOT / "dumps").glob("*/*.rules")), ids=lambda p: f"{p.parent.name}/{p.name}")
def test_every_stored_dump_loads_into_the_kernel(path: Path, variant):
    with Namespace("load") as ns:
        if read_dump(path).family == 6:  # an ip6tables-save dump loads with ip6tables-restore
            result = ns.run([f"ip6tables-{variant}-restore", "--test"], input=path.read_bytes())
        else:
            result = ns.restore(path.read_bytes(), variant, test_only=True)
    assert result.ok, result.stderr


@pytest.mark.parametrize("folder", SCENARIOS, ids=lambda p: p.name)
def test_every_flow_has_a_kernel_recording_that_agrees_with_the_tracer(folder):
    scenario = load_scenario(folder)
    for flow in replayed_flows(scenario):
        path = recording_path(scenario, flow)
        assert path.is_file(), f"no kernel recording for flow {flow.id}: run `iptables-lens lab {folder} --record`"
        assert recording_problems(scenario, flow, path.read_text()) == [], flow.id


def test_a_recording_that_disagrees_with_the_tracer_is_reported():
    scenario = load_scenario(SEED)
    flow = scenario.meta.flows[0]
    prediction = predict(scenario, flow)
    dump = scenario.dump_for(flow.node, "after")
    recorded = read_recording(recording_path(scenario, flow).read_text(), frozenset(t.name for t in dump.tables))
    steps = list(recorded[0].steps)
    steps[3] = dataclasses.replace(steps[3], rule=steps[3].rule + 1)  # one hop off by one rule
    probe = Branch(recorded[0].endpoint, steps, [], {}, frozenset())
    compare_branch(probe, prediction)
    assert probe.problem is not None and "!!" in probe.problem



def test_a_recording_without_one_of_the_tracers_branches_is_reported():
    scenario = load_scenario(SEED)
    flow = scenario.meta.flows[0]
    text = recording_path(scenario, flow).read_text()
    first, second = text.split("\n## branch ")[1:]
    assert recording_problems(scenario, flow, text) == []
    problems = recording_problems(scenario, flow, text.replace("\n## branch " + second, ""))
    assert len(problems) == 1 and "the kernel's branches go to" in problems[0]


DUAL_STACK = REPO_ROOT / "dumps" / "kind-nodeport-dual-stack"


@pytest.fixture(scope="module")
def dual_stack_lab_results():
    if can_run_kernel_lab() is not None:
        pytest.skip(str(can_run_kernel_lab()))
    scenario = load_scenario(DUAL_STACK)
    before = (leftover_namespaces(), _root_veths(), _lab_processes())
    with Lab(scenario) as lab:
        node = lab.nodes["blog-worker"]
        wiring = {"routes": node.run(["ip", "-6", "route"]).stdout,
                  "tentative": node.run(["ip", "-6", "addr", "show", "scope", "global", "tentative"]).stdout,
                  "default": [ns.run(["ip", "-6", "route", "show", "default"]).stdout
                              for ns in [*lab.nodes.values(), *lab.clients.values()]]}
        runner = LabRun(lab, connections=200)
        # Every IPv6 flow, and the IPv4 twin of the rejected one: the only IPv4 REJECT among the scenarios.
        results = {flow.id: runner.run_flow(flow) for flow in scenario.meta.flows
                   if flow.family == 6 or flow.id == "pod-to-no-endpoints"}
    after = (leftover_namespaces(), _root_veths(), _lab_processes())
    return results, wiring, before, after


@pytest.mark.kernel
def test_the_lab_wires_ipv6_like_kindnet_and_no_route_leaves_it(dual_stack_lab_results):
    _, wiring, before, after = dual_stack_lab_results
    routes = wiring["routes"]
    assert "fd00:10:244:2::/64 via fc00:f853:ccd:e793::3 dev eth0" in routes
    assert "fd00:10:244:1::2 dev vethf40102" in routes  # the endpoint pod's host route over its veth
    assert wiring["tentative"] == ""  # nodad: no global address waits on duplicate address detection
    assert set(wiring["default"]) == {""}  # no node and no outside client has an IPv6 route out
    assert after == before


@pytest.mark.parametrize("flow_id", ["outside-to-nodeport-v6", "pod-to-cluster-ip-v6", "endpoint-to-own-service-v6"])
@pytest.mark.kernel
def test_the_kernel_takes_the_tracers_ipv6_path_and_its_nat(dual_stack_lab_results, flow_id):
    results, _, _, _ = dual_stack_lab_results
    _assert_agrees(results[flow_id], {"[fd00:10:244:1::2]:80", "[fd00:10:244:2::2]:80"}, 200)


@pytest.mark.kernel
def test_ipv6_masquerade_takes_the_source_the_tracer_predicts(dual_stack_lab_results):
    results, _, _, _ = dual_stack_lab_results
    # To the local endpoint the way out is its veth, which holds the node's IPv6 pod gateway; to the other
    # node's endpoint it is eth0, with the node's underlay address.
    assert results["outside-to-nodeport-v6"].snat_seen == {"[fd00:10:244:1::2]:80": {"fd00:10:244:1::1"},
                                                          "[fd00:10:244:2::2]:80": {"fc00:f853:ccd:e793::2"}}
    assert results["endpoint-to-own-service-v6"].snat_seen == {"[fd00:10:244:1::2]:80": {"fd00:10:244:1::1"},
                                                              "[fd00:10:244:2::2]:80": {"fd00:10:244:1::2"}}


@pytest.mark.parametrize("flow_id", ["pod-to-no-endpoints", "pod-to-no-endpoints-v6"])
@pytest.mark.kernel
def test_a_service_without_endpoints_refuses_every_connection_at_once(dual_stack_lab_results, flow_id):
    results, _, _, _ = dual_stack_lab_results
    result = results[flow_id]
    assert result.ok, (result.problems, [b.problem for b in result.branches])
    # The kernel's path ends where the tracer's does: filter KUBE-SERVICES' REJECT, which nf_tables traces as
    # a drop once the ICMP(v6) port unreachable is sent.
    [branch] = result.branches
    assert branch.endpoint is None and branch.matched_outcome == 0
    last = branch.steps[-1]
    assert (last.hook, last.table, last.chain, last.verdict) == ("FORWARD", "filter", "KUBE-SERVICES", "DROP")
    # Refused (ECONNREFUSED from the ICMP(v6) port unreachable), not timed out as after a DROP.
    assert result.failures == {"refused": DROPPED_SAMPLES} and result.counts == {"none": DROPPED_SAMPLES}


def test_the_lab_expects_a_rejected_flow_refused_and_a_dropped_one_timed_out():
    dual = load_scenario(DUAL_STACK)
    local = load_scenario(REPO_ROOT / "dumps" / "kind-nodeport-local")
    flows = {(s.folder.name, f.id): (s, f) for s in (dual, local) for f in s.meta.flows}

    def failure(folder, flow_id):
        scenario, flow = flows[(folder, flow_id)]
        return failure_of(predict(scenario, flow))

    assert failure("kind-nodeport-dual-stack", "pod-to-no-endpoints-v6") == "refused"
    assert failure("kind-nodeport-dual-stack", "pod-to-no-endpoints") == "refused"
    assert failure("kind-nodeport-local", "outside-to-no-local-endpoint") == "timeout"
    assert failure("kind-nodeport-dual-stack", "pod-to-cluster-ip-v6") is None
