"""One generated scenario per Service feature (issue 16): each folder is what `synth scenario` writes, it
validates, its flows' traced outcomes are what tells the feature apart, and a fact its dumps contradict is a
problem at that fact in scenario.yaml."""

from __future__ import annotations

import shutil
from fractions import Fraction
from pathlib import Path

import pytest
import yaml
from iptables_lens.kube.cluster_spec import Endpoint
from iptables_lens.kube.endpoint_use import EndpointPolicies, categorize_endpoints
from iptables_lens.kube.synth_scenario import FEATURE_KINDS, scenario_files
from iptables_lens.scenario import find_scenarios, load_scenario, validate_scenario
from iptables_lens.scenario.flows import predict
from iptables_lens.scenario.load import read_scenario
from iptables_lens.scenario.model import Service
from iptables_lens.trace import Trace

from tests.conftest import REPO_ROOT
from tests.test_contribute import edit

DUMPS = REPO_ROOT / "dumps"
WITH_FEATURE = ("clusterip", *FEATURE_KINDS)
HALF = Fraction(1, 2)


def traced(kind: str, flow_id: str) -> Trace:
    scenario = load_scenario(DUMPS / f"kind-{kind}")
    return predict(scenario, next(f for f in scenario.meta.flows if f.id == flow_id))


def shares(result: Trace) -> dict[str | None, Fraction]:
    """Endpoint (None: not DNATed) -> its probability."""
    found: dict[str | None, Fraction] = {}
    for outcome in result.outcomes:
        found[outcome.endpoint] = found.get(outcome.endpoint, Fraction(0)) + outcome.probability
    return found


def only(result: Trace):
    [outcome] = result.outcomes
    assert outcome.probability == 1
    return outcome


def copy(tmp_path: Path, kind: str) -> Path:
    folder = tmp_path / kind
    shutil.copytree(DUMPS / f"kind-{kind}", folder)
    return folder


# -- the folders ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", WITH_FEATURE)
def test_the_committed_scenario_is_the_one_synth_writes(kind):
    folder = DUMPS / f"kind-{kind}"
    files = scenario_files(kind)
    assert sorted(p.name for p in folder.iterdir() if p.is_file()) == sorted(files)
    for name, text in files.items():
        assert (folder / name).read_text() == text, name


@pytest.mark.parametrize("kind", WITH_FEATURE)
def test_a_feature_scenario_validates_and_shows_its_feature_on_a_node_with_both_dumps(kind):
    folder = DUMPS / f"kind-{kind}"
    assert validate_scenario(folder) == []
    meta = load_scenario(folder).meta
    assert meta.feature is not None
    assert {(d.node, d.moment) for d in meta.dumps} >= {(meta.feature.node, "before"), (meta.feature.node, "after")}


def test_each_feature_has_its_own_anchor_and_place_on_the_page():
    features = [f for folder in find_scenarios(DUMPS) if (f := load_scenario(folder).meta.feature) is not None]
    assert len(features) >= len(WITH_FEATURE)
    assert len({f.id for f in features}) == len({f.order for f in features}) == len(features)


def test_a_scenario_that_adds_rules_adds_only_its_services_rules():
    for kind in FEATURE_KINDS:
        scenario = load_scenario(DUMPS / f"kind-{kind}")
        keys = [s.key for s in scenario.meta.services]
        for dump in scenario.meta.dumps:
            if dump.moment != "after":
                continue
            after = (scenario.folder / dump.file).read_text().splitlines()
            before = (scenario.folder / dump.file.replace("after", "before")).read_text().splitlines()
            added = [line for line in after if line not in before]
            chains = {line.split()[0][1:] for line in added if line.startswith(":")}
            assert set(before) <= set(after), kind
            def chain(line: str) -> str:
                return line.split()[1] if line.startswith("-A ") else line.split()[0][1:]
            assert all(any(k in line for k in keys) or chain(line) in chains for line in added), (kind, added)


def test_kube_proxy_writes_nothing_for_headless_and_externalname_services():
    scenario = load_scenario(DUMPS / "kind-headless-externalname")
    assert {s.type for s in scenario.meta.services} == {"ClusterIP", "ExternalName"}
    assert scenario.meta.services[0].headless and not scenario.meta.services[0].proxied
    folder = scenario.folder
    assert (folder / "worker-1-after.rules").read_text() == (folder / "worker-1-before.rules").read_text()
    # The one flow: a pod reaches a headless Service's pod at its own address, untouched.
    outcome = only(traced("headless-externalname", "pod-to-headless-pod"))
    assert outcome.verdict == "ACCEPT" and outcome.dnat is None and not outcome.masquerade


# -- the flows that tell each feature apart -------------------------------------------------------------------


@pytest.mark.parametrize(("flow_id", "target"), [("pod-to-http", 8080), ("pod-to-https", 8443), ("pod-to-quic", 8443)])
def test_each_named_port_balances_over_both_endpoints_at_its_target_port(flow_id, target):
    assert shares(traced("multiport", flow_id)) == {f"10.244.1.2:{target}": HALF, f"10.244.2.2:{target}": HALF}


def test_each_named_port_and_protocol_has_a_service_chain_of_its_own():
    chains = [{c for o in traced("multiport", f).outcomes for c in o.chains if c.startswith("KUBE-SVC-")}
              for f in ("pod-to-http", "pod-to-https", "pod-to-quic")]
    assert all(len(c) == 1 for c in chains) and len(set.union(*chains)) == 3


@pytest.mark.parametrize("flow_id", ["outside-to-lb-ip", "outside-to-nodeport"])
def test_the_load_balancer_ip_and_the_node_port_reach_any_endpoint_masqueraded(flow_id):
    result = traced("loadbalancer", flow_id)
    assert shares(result) == {"10.244.1.2:8080": HALF, "10.244.2.2:8080": HALF}
    assert all(o.masquerade and o.verdict == "ACCEPT" for o in result.outcomes)
    assert all(any(c.startswith("KUBE-EXT-") for c in o.chains) for o in result.outcomes)


def test_a_client_inside_the_source_ranges_reaches_the_load_balancer_ip():
    result = traced("loadbalancer-source-ranges", "allowed-client-to-lb-ip")
    assert shares(result) == {"10.244.1.2:8080": HALF, "10.244.2.2:8080": HALF}
    assert all(any(c.startswith("KUBE-FW-") for c in o.chains) for o in result.outcomes)


def test_a_client_outside_the_source_ranges_is_dropped_by_the_proxy_firewall():
    outcome = only(traced("loadbalancer-source-ranges", "other-client-to-lb-ip"))
    assert outcome.verdict == "DROP" and outcome.endpoint is None
    assert outcome.delivery == "dropped at filter KUBE-PROXY-FIREWALL rule 1"


def test_the_source_ranges_leave_the_node_port_open_to_every_client():
    result = traced("loadbalancer-source-ranges", "other-client-to-nodeport")
    assert shares(result) == {"10.244.1.2:8080": HALF, "10.244.2.2:8080": HALF}


def test_an_external_ip_reaches_any_endpoint_masqueraded():
    result = traced("external-ips", "outside-to-external-ip")
    assert shares(result) == {"10.244.1.2:8080": HALF, "10.244.2.2:8080": HALF}
    assert all(o.masquerade for o in result.outcomes)


def test_a_first_request_is_balanced_and_a_returning_client_goes_back_to_its_endpoint():
    assert shares(traced("session-affinity", "first-request")) == {"10.244.1.2:8080": HALF, "10.244.2.2:8080": HALF}
    outcome = only(traced("session-affinity", "returning-client"))
    assert outcome.endpoint == "10.244.2.2:8080" and outcome.verdict == "ACCEPT"


def test_affinity_remembers_a_client_for_the_declared_timeout():
    text = (DUMPS / "kind-session-affinity" / "worker-1-after.rules").read_text()
    assert text.count("--rcheck --seconds 600 --reap") == 2 and "10800" not in text


def test_a_local_policy_load_balancer_ip_delivers_to_the_nodes_own_endpoint_keeping_the_client_address():
    outcome = only(traced("loadbalancer-local", "outside-to-local-endpoint"))
    assert outcome.endpoint == "10.244.1.2:8080" and outcome.verdict == "ACCEPT"
    assert not outcome.masquerade and outcome.snat is None


def test_a_local_policy_load_balancer_ip_on_a_node_without_endpoints_is_dropped():
    outcome = only(traced("loadbalancer-local", "outside-to-no-local-endpoint"))
    assert outcome.verdict == "DROP" and outcome.delivery == "dropped at filter KUBE-EXTERNAL-SERVICES rule 1"


def test_the_health_check_node_port_is_accepted_on_a_node_without_endpoints():
    outcome = only(traced("loadbalancer-local", "health-check"))
    assert outcome.verdict == "ACCEPT" and outcome.endpoint is None
    assert outcome.delivery.startswith("a local process on blog-worker3")
    assert any(s.table == "filter" and s.chain == "KUBE-NODEPORTS" and s.action == "ACCEPT" for s in outcome.path)


def test_internal_traffic_policy_local_sends_a_pod_only_to_its_nodes_endpoint():
    outcome = only(traced("internal-traffic-local", "pod-on-node-with-local-endpoint"))
    assert outcome.endpoint == "10.244.1.2:8080" and not outcome.masquerade


def test_internal_traffic_policy_local_drops_a_pod_on_a_node_without_endpoints():
    outcome = only(traced("internal-traffic-local", "pod-on-node-without-local-endpoint"))
    assert outcome.verdict == "DROP" and outcome.delivery == "dropped at filter KUBE-SERVICES rule 1"


@pytest.mark.parametrize(("flow_id", "verdict", "where"), [
    ("pod-to-no-endpoints", "REJECT", "rejected at filter KUBE-SERVICES"),
    ("outside-to-no-endpoints", "REJECT", "rejected at filter KUBE-EXTERNAL-SERVICES"),
    ("outside-to-no-local-endpoint", "DROP", "dropped at filter KUBE-EXTERNAL-SERVICES"),
])
def test_a_service_without_endpoints_is_rejected_and_one_without_local_ones_dropped(flow_id, verdict, where):
    outcome = only(traced("no-endpoints", flow_id))
    assert outcome.verdict == verdict and outcome.delivery.startswith(where) and outcome.endpoint is None


def test_a_pod_still_reaches_the_local_policy_service_on_another_node():
    assert only(traced("no-endpoints", "pod-to-no-local-endpoint")).endpoint == "10.244.2.2:8080"


def test_when_every_endpoint_terminates_traffic_goes_only_to_the_serving_one():
    outcome = only(traced("terminating-endpoints", "pod-to-draining-service"))
    assert outcome.endpoint == "10.244.1.2:8080" and outcome.verdict == "ACCEPT"


@pytest.mark.parametrize(("flow_id", "endpoints"), [
    ("pod-to-udp-service", ("10.244.1.2:5514", "10.244.2.2:5514")),
    ("pod-to-sctp-service", ("10.244.1.3:3868", "10.244.2.3:3868")),
])
def test_udp_and_sctp_services_balance_like_tcp(flow_id, endpoints):
    result = traced("udp-sctp", flow_id)
    assert shares(result) == dict.fromkeys(endpoints, HALF)
    assert {o.packet_in.protocol for o in result.outcomes} == {flow_id.split("-")[2]}


# -- which endpoints kube-proxy uses --------------------------------------------------------------------------

CLUSTER = EndpointPolicies(internal_local=False, external_local=False, externally_accessible=False)


def test_ready_endpoints_are_used_and_terminating_ones_only_when_none_is_ready():
    ready, draining = Endpoint("10.244.1.2", "a"), Endpoint("10.244.2.2", "b", ready=False, terminating=True)
    assert categorize_endpoints([ready, draining], "a", CLUSTER).cluster == (ready,)
    assert categorize_endpoints([draining], "a", CLUSTER).cluster == (draining,)
    gone = Endpoint("10.244.2.2", "b", ready=False, serving=False, terminating=True)
    assert not categorize_endpoints([gone], "a", CLUSTER).has_any


def test_internal_traffic_policy_local_uses_only_the_nodes_endpoints_and_still_knows_others_exist():
    elsewhere = Endpoint("10.244.2.2", "b")
    use = categorize_endpoints([elsewhere], "a", EndpointPolicies(True, False, False))
    assert use.cluster == () and use.local == () and use.has_any and use.reachable == ()


# -- facts the dumps contradict -------------------------------------------------------------------------------


def problems_at(folder: Path, key_line: str) -> list:
    """The validation problems, checked to point at the line of scenario.yaml that holds `key_line`."""
    problems = validate_scenario(folder)
    lines = (folder / "scenario.yaml").read_text().splitlines()
    line = next(i for i, text in enumerate(lines, 1) if text.strip() == key_line)
    return [p for p in problems if p.source.endswith("scenario.yaml") and p.line == line and p.column > 0]


# kind, (old, new) text in scenario.yaml, the line the problem points at, a fragment of its message.
FACTS = {
    "wrong load balancer IP": ("loadbalancer", ("- 172.20.255.200", "- 172.20.255.209"), "- 172.20.255.209",
                               "at load balancer IP 172.20.255.209"),
    "source range not in the dump": ("loadbalancer-source-ranges", ("- 172.20.100.0/24", "- 172.20.101.0/24"),
                                     "- 172.20.101.0/24", "does not let 172.20.101.0/24 through"),
    "wrong external IP": ("external-ips", ("- 172.20.255.210", "- 172.20.255.211"), "- 172.20.255.211",
                          "at external IP 172.20.255.211"),
    "wrong affinity timeout": ("session-affinity", ("session_affinity_timeout: 600", "session_affinity_timeout: 601"),
                               "session_affinity_timeout: 601", "remembers a client for 600 seconds, not 601"),
    "no affinity declared": ("session-affinity", ("session_affinity: ClientIP\n  session_affinity_timeout: 600",
                                                  "session_affinity: None"),
                             "session_affinity: None", "which kube-proxy does for session_affinity ClientIP only"),
    "wrong health check node port": ("loadbalancer-local", ("health_check_node_port: 31102",
                                                            "health_check_node_port: 31103"),
                                     "health_check_node_port: 31103", "accepting health check node port 31103"),
    # The key removed, the problem is at the Service, where the key would be.
    "internal policy declared Cluster": ("internal-traffic-local", ("  internal_traffic_policy: Local\n", ""),
                                         "- namespace: default", "not to KUBE-SVC-"),
    "terminating endpoint declared serving": ("terminating-endpoints", ("    serving: false", "    serving: true"),
                                              "- address: 10.244.2.2", "has no endpoint chain"),
    "endpoint declared neither ready nor serving": (
        "clusterip", ("    node: blog-worker2\n", "    node: blog-worker2\n    ready: false\n    serving: false\n"),
        "- address: 10.244.2.2", "neither ready nor serving while terminating"),
    "proxied Service declared headless": ("clusterip", ("cluster_ip: 10.96.52.20", "cluster_ip: None"),
                                          "cluster_ip: None", "kube-proxy writes none for a headless Service"),
    "Service misnamed": ("no-endpoints", ("  name: web-no-local\n", "  name: web-no-local-too\n"),
                         "cluster_ip: 10.96.67.20", "no KUBE-SERVICES rule jumping to"),
}


@pytest.mark.parametrize("name", FACTS)
def test_a_fact_the_dumps_contradict_is_a_problem_at_that_fact(tmp_path, name):
    kind, (old, new), key_line, fragment = FACTS[name]
    folder = copy(tmp_path, kind)
    edit(folder / "scenario.yaml", old, new)
    found = problems_at(folder, key_line)
    assert any(fragment in p.message for p in found), [str(p) for p in validate_scenario(folder)]


def test_an_externalname_service_with_rules_in_the_dumps_is_a_problem_at_its_type(tmp_path):
    folder = copy(tmp_path, "clusterip")
    data = yaml.safe_load((folder / "scenario.yaml").read_text())
    service = data["services"][0]
    data["services"][0] = {"namespace": service["namespace"], "name": service["name"], "type": "ExternalName",
                           "external_name": "www.example.com"}
    (folder / "scenario.yaml").write_text(yaml.safe_dump(data, sort_keys=False))
    problem = next(p for p in validate_scenario(folder) if "ExternalName" in p.message)
    assert problem.text is not None and problem.text.strip() == "type: ExternalName"
    assert "has a rule for default/web-clusterip, but kube-proxy writes none for an ExternalName Service" in problem.message


def test_a_service_declared_without_endpoints_that_the_dumps_send_to_is_a_problem_at_its_endpoints(tmp_path):
    folder = copy(tmp_path, "clusterip")
    data = yaml.safe_load((folder / "scenario.yaml").read_text())
    data["services"][0]["endpoints"] = []
    (folder / "scenario.yaml").write_text(yaml.safe_dump(data, sort_keys=False))
    found = problems_at(folder, "endpoints: []")
    assert any("sends default/web-clusterip port 80/TCP to KUBE-SVC-" in p.message
               and "but the Service has no usable endpoint" in p.message for p in found), found
    assert any("has no filter KUBE-SERVICES rule that REJECTs" in p.message for p in found), found


# A Service spec the API server would refuse: the schema's error, at the Service.
SPECS = {
    "health check node port on a ClusterIP Service": ("clusterip", ("session_affinity: None",
                                                                    "session_affinity: None\n  health_check_node_port: 31000"),
                                                      "has a health_check_node_port"),
    "headless NodePort Service": ("loadbalancer", ("cluster_ip: 10.96.61.10", "cluster_ip: None"),
                                  "a headless Service (cluster_ip: None) is of type ClusterIP"),
    "affinity timeout without ClientIP": ("clusterip", ("session_affinity: None",
                                                        "session_affinity: None\n  session_affinity_timeout: 60"),
                                          "session_affinity_timeout needs session_affinity ClientIP"),
    "serving endpoint that is neither ready nor terminating": (
        "clusterip", ("    node: blog-worker2\n", "    node: blog-worker2\n    ready: false\n"),
        "serving and not terminating, so it is ready"),
    "endpoint at no target port": ("clusterip", ("    port: 8080\n    node: blog-worker2", "    port: 8081\n    node: blog-worker2"),
                                   "its port is no port's target_port"),
    "NodePort Service port without a node port": ("nodeport-local", ("    node_port: 30090\n", ""),
                                                  "a NodePort Service needs a node_port on every port"),
    "source ranges on a NodePort Service": ("nodeport-local", ("external_traffic_policy: Local",
                                                                "external_traffic_policy: Local\n  load_balancer_source_ranges:"
                                                                "\n  - 172.20.0.0/16"),
                                            "only a LoadBalancer Service has load_balancer_ips"),
}


@pytest.mark.parametrize("name", SPECS)
def test_a_service_spec_the_api_server_refuses_is_a_schema_error_at_the_service(tmp_path, name):
    kind, (old, new), fragment = SPECS[name]
    folder = copy(tmp_path, kind)
    edit(folder / "scenario.yaml", old, new)
    scenario, problems = read_scenario(folder)
    assert scenario is None
    [problem] = problems
    assert fragment in problem.message and problem.message.startswith("services[0]")
    assert problem.line > 1 and problem.column > 0


def test_a_load_balancer_without_node_ports_is_a_valid_service():
    # allocateLoadBalancerNodePorts: false: the load balancer IP alone reaches the Service.
    service = Service.model_validate({"namespace": "default", "name": "lb", "type": "LoadBalancer",
                                      "cluster_ip": "10.96.0.50", "load_balancer_ips": ["172.20.255.200"],
                                      "ports": [{"port": 80, "target_port": 8080}]})
    assert service.externally_accessible and service.ports[0].node_port is None
