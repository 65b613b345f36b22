"""A dual-stack scenario: its IPv6 facts in scenario.yaml, its IPv6 dumps loaded and checked as the IPv4 ones
are, and its flows traced in their own family (issue 15), on the generated `dumps/kind-nodeport-dual-stack`."""

from __future__ import annotations

import ipaddress
import shutil
from fractions import Fraction
from pathlib import Path

import pytest
from iptables_lens.kube.synth_scenario import scenario_files
from iptables_lens.netns import can_run_kernel_lab
from iptables_lens.scenario import load_scenario, node_context, validate_scenario
from iptables_lens.scenario.flows import predict
from iptables_lens.scenario.load import read_scenario
from iptables_lens.scenario.scrub import scrub_scenario

from tests.conftest import REPO_ROOT
from tests.test_contribute import edit

DUAL = REPO_ROOT / "dumps" / "kind-nodeport-dual-stack"
V6 = ipaddress.IPv6Address


def copy(tmp_path: Path) -> Path:
    folder = tmp_path / "dual"
    shutil.copytree(DUAL, folder)
    return folder


def test_the_committed_scenario_is_the_one_synth_writes():
    assert sorted(p.name for p in DUAL.iterdir() if p.is_file()) == sorted(scenario_files("nodeport-dual-stack"))
    for name, text in scenario_files("nodeport-dual-stack").items():
        assert (DUAL / name).read_text() == text, name
    assert "ipFamilyPolicy: PreferDualStack" in (DUAL / "service.yaml").read_text()


def test_the_dual_stack_scenario_is_valid_with_a_dump_of_each_family_per_node_and_moment():
    scenario = load_scenario(DUAL)
    assert validate_scenario(DUAL) == []
    assert sorted((d.node, d.moment, d.family) for d in scenario.meta.dumps) == sorted(
        (n, m, f) for n in ("blog-worker", "blog-worker2") for m in ("before", "after") for f in (4, 6))
    assert all(scenario.dumps[d.file].family == d.family for d in scenario.meta.dumps)


@pytest.mark.parametrize("suffix, endpoints", [
    ("", ("10.244.1.2:80", "10.244.2.2:80")),
    ("-v6", ("[fd00:10:244:1::2]:80", "[fd00:10:244:2::2]:80"))])
def test_each_familys_flows_trace_in_that_familys_dump(suffix, endpoints):
    scenario = load_scenario(DUAL)
    flows = {f.id: f for f in scenario.meta.flows}

    def outcomes(flow_id):
        return {o.endpoint: (o.probability, o.masquerade, o.verdict) for o in predict(scenario, flows[flow_id + suffix]).outcomes}

    half = Fraction(1, 2)
    assert outcomes("outside-to-nodeport") == {e: (half, True, "ACCEPT") for e in endpoints}
    assert outcomes("pod-to-cluster-ip") == {e: (half, False, "ACCEPT") for e in endpoints}
    # The hairpin: only the half sent back to the calling pod itself is masqueraded.
    assert outcomes("endpoint-to-own-service") == {endpoints[0]: (half, True, "ACCEPT"),
                                                   endpoints[1]: (half, False, "ACCEPT")}


@pytest.mark.parametrize("suffix, reply", [("", "icmp-port-unreachable"), ("-v6", "icmp6-port-unreachable")])
def test_a_service_without_endpoints_rejects_in_each_family_with_its_icmp_reply(suffix, reply):
    scenario = load_scenario(DUAL)
    flow = next(f for f in scenario.meta.flows if f.id == "pod-to-no-endpoints" + suffix)
    trace = predict(scenario, flow)
    assert [(o.endpoint, o.probability, o.verdict) for o in trace.outcomes] == [(None, 1, "REJECT")]
    last = trace.outcomes[0].path[-1]
    assert (last.table, last.chain, last.action) == ("filter", "KUBE-SERVICES", f"REJECT with {reply}")


def test_a_dual_stack_node_holds_both_families_addresses_and_routes():
    node = node_context(load_scenario(DUAL), "blog-worker")
    assert node.is_local(V6("fc00:f853:ccd:e793::2")) and node.is_local(ipaddress.IPv4Address("172.20.0.2"))
    assert node.route(V6("fd00:10:244:2::7")).describe() == "fd00:10:244:2::/64 via fc00:f853:ccd:e793::3 dev eth0"
    assert node.route(V6("2001:db8::1")).describe() == "::/0 via fc00:f853:ccd:e793::1 dev eth0"
    # A pod's addresses of both families sit behind one veth, whose host side holds both gateways.
    pod_route = node.route(V6("fd00:10:244:1::2"))
    assert node.route(ipaddress.IPv4Address("10.244.1.2")).device == pod_route.device
    assert {str(a) for a in node.interface(pod_route.device).addresses} == {"10.244.1.1/32", "fd00:10:244:1::1/128"}


def test_an_ipv6_fact_outside_its_ipv6_range_is_an_error_at_its_key(tmp_path):
    folder = copy(tmp_path)
    edit(folder / "scenario.yaml", "  address_v6: fd00:10:244:1::2", "  address_v6: fd00:10:244:2::9")
    _, [problem] = read_scenario(folder)
    assert "pods: my-nginx-deployment-7c79c4bf97-2t7q4 at fd00:10:244:2::9 is outside blog-worker's pod range" in problem.message


def test_a_flow_mixing_families_is_an_error(tmp_path):
    folder = copy(tmp_path)
    edit(folder / "scenario.yaml", "dst: fd00:10:96::7688", "dst: 10.96.118.136")
    _, [problem] = read_scenario(folder)
    assert "are of different families" in problem.message and problem.line > 1


def test_a_dump_of_the_other_family_than_declared_is_an_error_at_its_family(tmp_path):
    folder = copy(tmp_path)
    shutil.copy(folder / "worker-1-after.rules", folder / "worker-1-after-v6.rules")
    _, [problem] = read_scenario(folder)
    assert problem.message == ("dumps[3].family: worker-1-after-v6.rules is an IPv4 dump (saved by iptables-save), "
                               "not IPv6")


def test_a_wrong_ipv6_cluster_ip_or_endpoint_is_found_in_the_ipv6_dumps(tmp_path):
    folder = copy(tmp_path)
    edit(folder / "scenario.yaml", "cluster_ip_v6: fd00:10:96::7688", "cluster_ip_v6: fd00:10:96::7689")
    edit(folder / "scenario.yaml", "- address: fd00:10:244:2::2", "- address: fd00:10:244:2::3")
    messages = [p.message for p in validate_scenario(folder)]
    assert any("services[0].cluster_ip_v6: worker-1-after-v6.rules line" in m and "not fd00:10:96::7689" in m
               for m in messages), messages
    assert any("worker-2-after-v6.rules has no endpoint chain" in m and "to [fd00:10:244:2::3]:80" in m
               for m in messages), messages
    # The IPv4 dumps are not checked against the IPv6 facts.
    assert not any("-after.rules" in m for m in messages), messages


def test_an_ipv6_address_on_the_underlay_that_is_no_node_is_found_in_an_ipv6_dump(tmp_path):
    folder = copy(tmp_path)
    edit(folder / "worker-1-after-v6.rules", "-A KUBE-SERVICES", "-A KUBE-SERVICES -s fc00:f853:ccd:e793::9/128")
    [problem] = validate_scenario(folder)
    assert problem.source.endswith("worker-1-after-v6.rules") and problem.text.startswith("-A KUBE-SERVICES -s fc00")
    assert problem.message == ("fc00:f853:ccd:e793::9 is on the underlay fc00:f853:ccd:e793::/64 but is no declared "
                               "node address (nodes: fc00:f853:ccd:e793::2, fc00:f853:ccd:e793::3, "
                               "fc00:f853:ccd:e793::4)")


def test_a_scrubbed_dual_stack_scenario_is_valid_and_traces_the_same(tmp_path):
    out = scrub_scenario(DUAL, tmp_path / "scrubbed", key=b"k")
    assert validate_scenario(out) == []
    text = (out / "scenario.yaml").read_text()
    assert "fd00:10:244:1::2" not in text and "fc00:f853:ccd:e793::2" not in text
    scrubbed = load_scenario(out)
    flow = next(f for f in scrubbed.meta.flows if f.id == "endpoint-to-own-service-v6")
    assert sorted(o.masquerade for o in predict(scrubbed, flow).outcomes) == [False, True]


@pytest.mark.kernel
@pytest.mark.skipif(can_run_kernel_lab() is not None, reason=str(can_run_kernel_lab()))
def test_the_kernel_check_loads_ipv6_dumps_with_ip6tables_restore():
    # iptables-restore refuses an IPv6 dump ("invalid mask `56' specified" for a /56 pod range): an empty
    # list means each IPv6 dump went to ip6tables-nft-restore and ip6tables-legacy-restore, and both took it.
    assert validate_scenario(DUAL, kernel=True) == []
