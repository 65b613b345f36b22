"""The kernel lab on every kind of flow the Service features bring: UDP, SCTP, load balancer and external IPs,
clients beyond the gateway, session affinity, and connections the node answers itself.

The scenarios are written here (`tests.lab_scenarios`), on a two-node dual-stack cluster, so that each test
sees one capability; each test can fail: a broken dump, a missing listener or a wrong checksum would make it.
"""

from __future__ import annotations

import ipaddress
import re
import sys
from pathlib import Path

import pytest
from iptables_lens.kube.cluster_spec import Port, ServiceSpec
from iptables_lens.lab import sctp
from iptables_lens.lab.kernel_trace import conntrack_lines
from iptables_lens.lab.run import DROPPED_SAMPLES, FlowResult, LabRun, recording_problems, recording_text
from iptables_lens.lab.topology import Lab
from iptables_lens.netns import can_run_kernel_lab
from iptables_lens.scenario import load_scenario

from tests.lab_scenarios import BOTH_PODS, OUTSIDE, flow, write_scenario

CONNECTIONS = 60
SERVICES = (
    ServiceSpec("lab", "dns", "10.96.0.53", ports=(Port(53, 5353, "UDP"),), endpoints=BOTH_PODS),
    ServiceSpec("lab", "dns-none", "10.96.0.54", ports=(Port(53, 5353, "UDP"),)),
    ServiceSpec("lab", "signal", "10.96.0.132", type="NodePort", ports=(Port(9000, 9000, "SCTP", node_port=30132),),
                endpoints=BOTH_PODS),
    ServiceSpec("lab", "signal-none", "10.96.0.133", ports=(Port(9000, 9000, "SCTP"),)),
    ServiceSpec("lab", "lb", "10.96.0.80", type="LoadBalancer", ports=(Port(80, 8080, node_port=30080),),
                endpoints=BOTH_PODS, load_balancer_ips=("198.18.0.200", "172.20.255.200"),
                external_ips=("198.51.100.10",)),
    ServiceSpec("lab", "firewalled", "10.96.0.81", type="LoadBalancer", ports=(Port(80, 8080, node_port=30081),),
                endpoints=BOTH_PODS, load_balancer_ips=("198.18.0.201",),
                load_balancer_source_ranges=("203.0.113.0/24",)),
    ServiceSpec("lab", "sticky", "10.96.0.90", type="NodePort", ports=(Port(80, 8080, node_port=30090),),
                endpoints=BOTH_PODS, session_affinity="ClientIP"),
    ServiceSpec("lab", "local", "10.96.0.82", type="LoadBalancer", ports=(Port(80, 8080, node_port=30082),),
                endpoints=BOTH_PODS[:1], load_balancer_ips=("198.18.0.202",), external_traffic_policy="Local",
                health_check_node_port=32082),
)
POD = "10.244.1.10"  # a client pod on node-a
FLOWS = [
    *(flow("pod-to-udp", "node-a", POD, "10.96.0.53", 53, "udp", family) for family in (4, 6)),
    flow("pod-to-udp-without-endpoints", "node-a", POD, "10.96.0.54", 53, "udp"),
    *(flow("pod-to-sctp", "node-a", POD, "10.96.0.132", 9000, "sctp", family) for family in (4, 6)),
    *(flow("outside-to-sctp-node-port", "node-a", OUTSIDE, "172.20.0.2", 30132, "sctp", family) for family in (4, 6)),
    *(flow("pod-to-sctp-without-endpoints", "node-a", POD, "10.96.0.133", 9000, "sctp", family) for family in (4, 6)),
    flow("outside-to-load-balancer-ip", "node-a", OUTSIDE, "198.18.0.200", 80),
    # MetalLB's layer 2 mode: an address of the nodes' own network, which one node answers ARP for.
    flow("outside-to-load-balancer-ip-on-the-underlay", "node-b", OUTSIDE, "172.20.255.200", 80),
    flow("outside-to-external-ip", "node-b", OUTSIDE, "198.51.100.10", 80),
    *(flow("inside-the-source-ranges", "node-a", "203.0.113.7", "198.18.0.201", 80, family=family)
      for family in (4, 6)),
    flow("outside-the-source-ranges", "node-a", OUTSIDE, "198.18.0.201", 80),
    *(flow("first-request", "node-a", POD, "10.96.0.90", 80, family=family) for family in (4, 6)),
    flow("outside-first-request", "node-a", OUTSIDE, "172.20.0.2", 30090),
    *(flow("returning-client", "node-a", "10.244.1.11", "10.96.0.90", 80, family=family, returning_to="10.244.2.2")
      for family in (4, 6)),
    *(flow("health-check-node-port", "node-b", OUTSIDE, "172.20.0.3", 32082, family=family) for family in (4, 6)),
]
ENDPOINTS = {4: ("10.244.1.2", "10.244.2.2"), 6: ("[fd00:10:244:1::2]", "[fd00:10:244:2::2]")}

@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    if can_run_kernel_lab() is not None:
        pytest.skip(str(can_run_kernel_lab()))
    scenario = load_scenario(write_scenario(tmp_path_factory.mktemp("features") / "features", SERVICES, FLOWS))
    with Lab(scenario) as built:
        yield built


def _run(lab: Lab, flow_id: str) -> FlowResult:
    result = LabRun(lab, connections=CONNECTIONS).run_flow(next(f for f in lab.scenario.meta.flows if f.id == flow_id))
    assert result.ok, (result.problems, [b.problem for b in result.branches], [str(c) for c in result.checks])
    # What `--record` would write replays against the tracer without root, as the stored recordings do.
    assert recording_problems(lab.scenario, result.flow, recording_text(result, "test")) == []
    return result


def _assert_balanced(result: FlowResult, port: int, family: int) -> None:
    """Both endpoints traced, hop by hop as the tracer says, and every connection in conntrack."""
    assert {b.endpoint for b in result.branches} == {f"{address}:{port}" for address in ENDPOINTS[family]}
    assert all(b.matched_outcome is not None and len(b.steps) > 5 for b in result.branches)
    assert result.connections == sum(result.counts.values()) == CONNECTIONS
    assert result.conntrack_entries >= 0.95 * CONNECTIONS


# -- UDP ------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("family", [4, 6])
@pytest.mark.kernel
def test_udp_datagrams_take_the_tracers_path_to_both_endpoints(lab, family):
    result = _run(lab, "pod-to-udp" if family == 4 else "pod-to-udp-v6")
    _assert_balanced(result, 5353, family)
    # Each pod saw the client pod's own address: nothing masquerades pod traffic to a cluster IP.
    assert result.snat_seen == {f"{address}:5353": {str(result.flow.src)} for address in ENDPOINTS[family]}


@pytest.mark.kernel
def test_udp_to_a_service_without_endpoints_is_refused(lab):
    result = _run(lab, "pod-to-udp-without-endpoints")
    # The ICMP port unreachable of filter KUBE-SERVICES' REJECT, seen by the connected UDP socket.
    assert result.failures == {"refused": DROPPED_SAMPLES}
    assert [b.steps[-1].chain for b in result.branches] == ["KUBE-SERVICES"]


# -- SCTP -----------------------------------------------------------------------------------------------------


def test_crc32c_gives_the_rfc_3720_check_values():
    # RFC 3720 appendix B.4: the CRC32c of 32 bytes of zeros, of ones, ascending and descending, with the
    # bytes as they go on the wire; and the catalogue's check value of "123456789".
    vectors = {bytes(32): "aa 36 91 8a", b"\xff" * 32: "43 ab a8 62", bytes(range(32)): "4e 79 dd 46",
               bytes(range(31, -1, -1)): "5c db 3f 11"}
    for data, wire in vectors.items():
        assert sctp.crc32c(data).to_bytes(4, "little").hex(" ") == wire
    assert sctp.crc32c(b"123456789") == 0xE3069283


def test_an_sctp_packet_carries_its_checksum_and_a_changed_byte_breaks_it():
    packet = sctp.build(40000, 9000, 0, sctp.init_chunk(7))
    assert sctp.checksum_ok(packet)
    assert not sctp.checksum_ok(packet[:20] + bytes([packet[20] ^ 1]) + packet[21:])


@pytest.mark.parametrize("family", [4, 6])
@pytest.mark.kernel
def test_sctp_associations_take_the_tracers_path_and_are_established_in_conntrack(lab, family):
    suffix = "" if family == 4 else "-v6"
    result = _run(lab, f"pod-to-sctp{suffix}")
    _assert_balanced(result, 9000, family)
    outside = _run(lab, f"outside-to-sctp-node-port{suffix}")
    _assert_balanced(outside, 9000, family)
    # Masqueraded as the tracer says: to the local pod as the node's pod gateway, to the other node's as the
    # node's underlay address.
    gateway, node = ("10.244.1.1", "172.20.0.2") if family == 4 else ("fd00:10:244:1::1", "fc00:f853:ccd:e793::2")
    local, remote = ENDPOINTS[family]
    assert outside.snat_seen == {f"{local}:9000": {gateway}, f"{remote}:9000": {node}}
    # The agents finish the four-way handshake, so conntrack holds established associations.
    listing = lab.nodes["node-a"].run(["conntrack", "-L", "-p", "sctp", "-f", "ipv6" if family == 6 else "ipv4"])
    assert re.search(r"^sctp .* ESTABLISHED .*\[ASSURED\]", listing.stdout, re.M), listing.stdout


@pytest.mark.parametrize("family", [4, 6])
@pytest.mark.kernel
def test_sctp_to_a_service_without_endpoints_is_refused(lab, family):
    result = _run(lab, "pod-to-sctp-without-endpoints" + ("" if family == 4 else "-v6"))
    assert result.failures == {"refused": DROPPED_SAMPLES}


_SEND_INIT = """
import socket, sys
from iptables_lens.lab import sctp
packet = sctp.build(int(sys.argv[2]), 9000, 0, sctp.init_chunk(1234))
if sys.argv[3] == "bad":
    packet = packet[:8] + bytes(4) + packet[12:]
raw = socket.socket(socket.AF_INET, socket.SOCK_RAW, 132)
raw.bind((sys.argv[1], 0))
raw.sendto(packet, ("10.96.0.132", 0))
"""


@pytest.mark.kernel
def test_conntrack_follows_an_init_only_with_a_right_checksum(lab):
    node, pod = lab.nodes["node-a"], lab.namespace_of(ipaddress.ip_address(POD))
    node.run(["conntrack", "-F"])
    for sport, checksum in ((41001, "good"), (41002, "bad")):
        sent = pod.run([sys.executable, "-c", _SEND_INIT, POD, str(sport), checksum])
        assert sent.ok, sent.stderr
    entries = conntrack_lines(node.run(["conntrack", "-L", "-p", "sctp"]).stdout)
    # The good INIT is tracked and DNAT'd to an endpoint; the bad one is INVALID, so nat never sees it.
    assert [(e.original[2], e.reply[0]) for e in entries if e.original[0] == POD] in (
        [(41001, "10.244.1.2")], [(41001, "10.244.2.2")])


# -- destinations no host holds, clients beyond the gateway ---------------------------------------------------


@pytest.mark.parametrize("flow_id", ["outside-to-load-balancer-ip", "outside-to-load-balancer-ip-on-the-underlay",
                                     "outside-to-external-ip"])
@pytest.mark.kernel
def test_an_outside_client_reaches_a_load_balancer_or_external_ip_through_the_flows_node(lab, flow_id):
    result = _run(lab, flow_id)
    _assert_balanced(result, 8080, 4)
    # Every connection came in through the flow's node: it masqueraded each (externalTrafficPolicy Cluster).
    node = lab.scenario.meta.node(result.flow.node)
    assert str(node.address) in {s for sources in result.snat_seen.values() for s in sources}


@pytest.mark.parametrize("family", [4, 6])
@pytest.mark.kernel
def test_a_client_beyond_the_gateway_inside_the_source_ranges_gets_in(lab, family):
    result = _run(lab, "inside-the-source-ranges" + ("" if family == 4 else "-v6"))
    _assert_balanced(result, 8080, family)
    assert lab.beyond_gateway is not None and lab.namespace_of(result.flow.src) is lab.beyond_gateway


@pytest.mark.kernel
def test_a_client_outside_the_source_ranges_is_dropped_by_the_firewall(lab):
    result = _run(lab, "outside-the-source-ranges")
    assert result.failures == {"timeout": DROPPED_SAMPLES}
    assert [(b.steps[-1].chain, b.steps[-1].verdict) for b in result.branches] == [("KUBE-PROXY-FIREWALL", "DROP")]


# -- session affinity ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("flow_id, family", [("first-request", 4), ("first-request-v6", 6),
                                             ("outside-first-request", 4)])
@pytest.mark.kernel
def test_one_client_keeps_its_endpoint_and_many_clients_are_balanced(lab, flow_id, family):
    # The other clients are addresses beside the flow's: in its pod's namespace, or on the underlay.
    result = _run(lab, flow_id)
    assert {b.endpoint for b in result.branches} == {f"{address}:8080" for address in ENDPOINTS[family]}
    affinity = result.affinity
    assert affinity is not None and affinity.ok
    [(endpoint, count)] = affinity.same_client.items()
    assert endpoint in result.counts and count >= 10
    # Each other client's first connection was a draw, counted and checked against the tracer's 1/2.
    assert affinity.clients == sum(result.counts.values()) >= 15
    assert set(result.counts) == {f"{address}:8080" for address in ENDPOINTS[family]}


@pytest.mark.parametrize("family", [4, 6])
@pytest.mark.kernel
def test_a_returning_client_reaches_its_endpoint_on_every_connection(lab, family):
    result = _run(lab, "returning-client" + ("" if family == 4 else "-v6"))
    returning = f"{ENDPOINTS[family][1]}:8080"
    assert [b.endpoint for b in result.branches] == [returning]
    # The kernel left the Service's chain by the endpoint's affinity check (its --rcheck), as the tracer did.
    [jump] = [s for s in result.branches[0].steps if s.chain.startswith("KUBE-SVC-")]
    rule = lab.scenario.dump_for("node-a", "after", family).table("nat").chain(jump.chain).rules[jump.rule - 1]
    assert "--rcheck" in rule.text and jump.verdict == f"JUMP:{rule.target.name}"
    assert dict(result.counts) == {returning: CONNECTIONS}


def _without_affinity_checks(text: str) -> str:
    return "".join(line for line in text.splitlines(keepends=True) if "--rcheck" not in line)


def _one_list_for_all_clients(text: str) -> str:
    return re.sub(r"--mask \S+", lambda m: "--mask ::" if ":" in m.group(0) else "--mask 0.0.0.0", text)


@pytest.mark.parametrize("edit, failed", [(_without_affinity_checks, "same client"),
                                          (_one_list_for_all_clients, "balance")])
@pytest.mark.kernel
@pytest.mark.skipif(can_run_kernel_lab() is not None, reason=str(can_run_kernel_lab()))
def test_a_dump_that_breaks_affinity_fails_the_check(tmp_path: Path, edit, failed):
    folder = write_scenario(tmp_path / "broken", SERVICES[6:7], [flow("first-request", "node-a", POD, "10.96.0.90", 80)],
                            edit=edit)
    with Lab(load_scenario(folder)) as lab:
        result = LabRun(lab, connections=CONNECTIONS).run_flow(lab.scenario.meta.flows[0])
    assert not result.ok and result.affinity is not None
    if failed == "same client":
        # Without --rcheck every connection is a new draw: one client reaches both endpoints.
        assert len(result.affinity.same_client) == 2
        assert any(p.startswith("session affinity: one client's") for p in result.problems)
    else:
        # A mask of no bits makes every client one entry: all clients follow the first client's draw.
        assert len(result.affinity.same_client) == 1 and len(result.counts) == 1
        assert not all(check.ok for check in result.checks)


# -- the node's own listener ----------------------------------------------------------------------------------


@pytest.mark.parametrize("family", [4, 6])
@pytest.mark.kernel
def test_the_health_check_node_port_is_answered_by_the_node_itself(lab, family):
    result = _run(lab, "health-check-node-port" + ("" if family == 4 else "-v6"))
    node = lab.scenario.meta.node("node-b").address_of(family)
    address = f"[{node}]" if family == 6 else str(node)
    assert dict(result.counts) == {f"{address}:32082": CONNECTIONS}
    [branch] = result.branches
    assert branch.endpoint is None
    # Accepted by filter KUBE-NODEPORTS' health check rule on the way in, and given to the node's listener.
    assert [(s.hook, s.chain, s.verdict) for s in branch.steps if s.table == "filter"][-1] == (
        "INPUT", "KUBE-NODEPORTS", "ACCEPT")
