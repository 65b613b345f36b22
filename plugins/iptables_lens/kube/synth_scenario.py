"""Generated scenario folders in the format of `dumps/kind-nodeport/`, on the seed's kind cluster.

`scenario_files(kind)` gives a scenario's files as text (pure, for tests); `write_scenario(kind, folder)`
writes them. The cluster is the seed's: underlay 172.20.0.0/16, pods 10.244.N.0/24 on node N, Services in
10.96.0.0/12, a control-plane node and two workers (plus a third worker for "nodeport-local"). Each node's
dump has the seed's fixed chains: kind's (DOCKER_OUTPUT, DOCKER_POSTROUTING, KIND-MASQ-AGENT), the kubelet's
and kube-proxy's, and the default/kubernetes and kube-system/kube-dns Services; "before" has only those,
"after" adds the scenario's Services.

Kinds:

- "clusterip": a ClusterIP Service with two endpoints, one on each worker; dumps of both workers. Flows: a
  pod calls the cluster IP; an endpoint pod calls its own Service (half the time it is sent back to itself,
  masqueraded).
- "nodeport-local": a NodePort Service with `externalTrafficPolicy: Local` and two endpoints, on
  blog-worker and blog-worker2; dumps of blog-worker (a local endpoint) and blog-worker3 (none). Flows: an
  outside client calls each of those two workers' node port: blog-worker delivers to its own endpoint
  without masquerading, blog-worker3 drops the packet (filter KUBE-EXTERNAL-SERVICES).
- "nodeport-dual-stack": a NodePort Service (`ipFamilyPolicy: PreferDualStack`) with two endpoints, one on
  each worker, on the seed's cluster made dual-stack as kind makes it (`networking.ipFamily: dual`; every
  IPv6 address the twin of its IPv4 one, `kube.dual_stack`); each worker's `iptables-save` and
  `ip6tables-save` dumps. A second dual-stack Service, default/no-endpoints (ClusterIP), has no pods, so
  kube-proxy REJECTs its connections in filter KUBE-SERVICES; `scenario.yaml` lists only the Service with
  endpoints, whose chains `validate` checks. Flows, in each family: an outside client calls blog-worker's
  node port, a pod calls the cluster IP, an endpoint pod calls its own Service, a pod calls
  default/no-endpoints (rejected with icmp-port-unreachable, icmp6-port-unreachable). It is in
  DUAL_STACK_KINDS, not SCENARIO_KINDS.
- FEATURE_KINDS ("multiport", "loadbalancer", ...): one scenario per Service feature kube-proxy implements,
  each with a `feature:` block for the "Service features" page (`kube.feature_scenarios`).
- NFTABLES_KINDS ("nodeport-nftables"): the seed's NodePort Service on its cluster with kube-proxy in nftables
  mode, whose `nft list ruleset` listings the kernel makes (`kube.nft_scenario`): `write_scenario` needs root for
  it, and `scenario_files` does not make it.

>>> sorted(scenario_files("clusterip"))[:3]
['scenario.yaml', 'service.yaml', 'worker-1-after.rules']
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

import yaml

from iptables_lens.kube.cluster_spec import (
    HEADLESS,
    ClusterSpec,
    Endpoint,
    Family,
    KindNode,
    Port,
    ServiceSpec,
    kind_system_services,
)
from iptables_lens.kube.dual_stack import ipv6_cluster, ipv6_twin
from iptables_lens.kube.feature_scenarios import FEATURE_SCENARIOS
from iptables_lens.kube.kind_cluster import (
    CONTROL_PLANE,
    IPTABLES_VERSION,
    KUBERNETES_VERSION,
    OUTSIDE,
    OUTSIDE_CLIENT,
    WORKER_1,
    WORKER_2,
    WORKER_3,
    ClusterNode,
    Feature,
    ScenarioPod,
    ScenarioSpec,
    flow,
    pod_client,
)
from iptables_lens.kube.synth import synth_cluster

SCENARIO_KINDS = ("clusterip", "nodeport-local")
"""The single-family (IPv4) kinds of the first generated scenarios."""
DUAL_STACK_KINDS = ("nodeport-dual-stack",)
"""The kinds with dumps of both families."""
FEATURE_KINDS = tuple(FEATURE_SCENARIOS)
"""The kinds that each show one Service feature (`kube.feature_scenarios`)."""
NFTABLES_KINDS = ("nodeport-nftables",)
"""The kinds in nftables mode, whose listings the kernel makes (`kube.nft_scenario`)."""
ALL_KINDS = SCENARIO_KINDS + DUAL_STACK_KINDS + FEATURE_KINDS + NFTABLES_KINDS
__all__ = ["ALL_KINDS", "CONTROL_PLANE", "DUAL_STACK_KINDS", "DUAL_STACK_NODEPORT", "FEATURE_KINDS", "NFTABLES_KINDS",
           "SCENARIO_KINDS", "WORKER_1", "WORKER_2", "WORKER_3", "KernelNeeded", "node_spec", "scenario_spec",
           "scenario_files", "write_atomically", "write_scenario"]


class KernelNeeded(RuntimeError):
    """A generated scenario that the kernel makes, asked of a process that cannot ask the kernel (the message
    says why: not root, or a tool missing)."""


def _clusterip() -> ScenarioSpec:
    pods = (ScenarioPod("web-clusterip-0", WORKER_1, "10.244.1.2"),
            ScenarioPod("web-clusterip-1", WORKER_2, "10.244.2.2"))
    service = ServiceSpec("default", "web-clusterip", "10.96.52.20", ports=(Port(80, 8080),),
                          endpoints=tuple(Endpoint(p.address, p.node.name) for p in pods))
    flows = (
        flow("pod-to-cluster-ip", "A pod on blog-worker calls the Service's cluster IP", WORKER_1,
             pod_client(WORKER_1), "10.244.1.10", service.cluster_ip, 80),
        flow("endpoint-to-own-service", "An endpoint pod on blog-worker2 calls its own Service", WORKER_2,
             "the Service's own endpoint pod web-clusterip-1 on blog-worker2", "10.244.2.2", service.cluster_ip, 80),
    )
    feature = Feature(
        "clusterip", "`type: ClusterIP`", 10,
        "A virtual address inside the cluster. kube-proxy matches the cluster IP and port in nat `KUBE-SERVICES` and "
        "jumps to the Service's `KUBE-SVC-*` chain, which picks one endpoint at random (1/n, then 1/(n-1), ...) and "
        "jumps to its `KUBE-SEP-*` chain to DNAT to it. A packet from outside the pod network is marked for "
        "masquerading; so is an endpoint sent back to itself.", WORKER_1)
    return ScenarioSpec(
        "clusterip", "ClusterIP Service on a three-node kind cluster (generated)",
        "Two pods behind a ClusterIP Service on port 80 (target port 8080), one on each worker of the seed's "
        "kind cluster. Each worker's rules before and after the Service was created, as kube-proxy v1.29 "
        "writes them, with the seed's kind chains (DOCKER_*, KIND-MASQ-AGENT) and the kubernetes and kube-dns "
        "Services.",
        (CONTROL_PLANE, WORKER_1, WORKER_2), (WORKER_1, WORKER_2), (service,), pods, flows, feature=feature)


def _nodeport_local() -> ScenarioSpec:
    pods = (ScenarioPod("web-local-0", WORKER_1, "10.244.1.2"), ScenarioPod("web-local-1", WORKER_2, "10.244.2.2"))
    service = ServiceSpec("default", "web-local", "10.96.77.30", type="NodePort", external_traffic_policy="Local",
                          ports=(Port(80, 8080, node_port=30090),),
                          endpoints=tuple(Endpoint(p.address, p.node.name) for p in pods))
    flows = (
        flow("outside-to-local-endpoint",
             "A client outside the cluster calls the NodePort on blog-worker, which has an endpoint",
             WORKER_1, OUTSIDE, OUTSIDE_CLIENT, WORKER_1.address, 30090),
        flow("outside-to-no-local-endpoint",
             "A client outside the cluster calls the NodePort on blog-worker3, which has no endpoint",
             WORKER_3, OUTSIDE, OUTSIDE_CLIENT, WORKER_3.address, 30090),
    )
    return ScenarioSpec(
        "nodeport-local", "NodePort Service with externalTrafficPolicy Local (generated)",
        "Two pods behind a NodePort Service on port 30090 with externalTrafficPolicy: Local, on blog-worker and "
        "blog-worker2 of the seed's kind cluster with a third worker added. blog-worker's and blog-worker3's "
        "rules before and after the Service was created, as kube-proxy v1.29 writes them, with the seed's kind "
        "chains (DOCKER_*, KIND-MASQ-AGENT) and the kubernetes and kube-dns Services. A node port reaches only "
        "the node's own endpoints, keeping the client's address; blog-worker3 has none and drops the packet.",
        (CONTROL_PLANE, WORKER_1, WORKER_2, WORKER_3), (WORKER_1, WORKER_3), (service,), pods, flows)


# The seed's Service, dual-stack.
DUAL_STACK_NODEPORT = ServiceSpec(
    "default", "my-nginx-service", "10.96.118.136", type="NodePort", ports=(Port(80, 80, node_port=30080),),
    endpoints=(Endpoint("10.244.1.2", WORKER_1.name), Endpoint("10.244.2.2", WORKER_2.name)),
    ip_family_policy="PreferDualStack",
)
# A dual-stack Service no pod backs: kube-proxy REJECTs its connections (filter KUBE-SERVICES).
DUAL_STACK_NO_ENDPOINTS = ServiceSpec("default", "no-endpoints", "10.96.200.10", ports=(Port(80, 80),),
                                      ip_family_policy="PreferDualStack")


SEED_PODS = (ScenarioPod("my-nginx-deployment-7c79c4bf97-2t7q4", WORKER_1, "10.244.1.2"),
             ScenarioPod("my-nginx-deployment-7c79c4bf97-8ktpx", WORKER_2, "10.244.2.2"))
"""The seed's two nginx pods, one on each worker."""


def _nodeport_dual_stack() -> ScenarioSpec:
    # The seed's own Service and nginx pods, made dual-stack (kube.synth_dual_stack's Service).
    pods = SEED_PODS
    service = DUAL_STACK_NODEPORT
    client = pod_client(WORKER_1)
    own = f"the Service's own endpoint pod {pods[0].name} on blog-worker"
    flows: list[dict[str, Any]] = []
    for family in (4, 6):
        def address(v4: str, family: int = family) -> str:
            return v4 if family == 4 else ipv6_twin(v4)
        suffix, label = ("", "IPv4") if family == 4 else ("-v6", "IPv6")
        flows += [
            flow(f"outside-to-nodeport{suffix}",
                 f"A client outside the cluster calls the NodePort on blog-worker's {label} address", WORKER_1,
                 OUTSIDE, address(OUTSIDE_CLIENT), address(WORKER_1.address), 30080),
            flow(f"pod-to-cluster-ip{suffix}", f"A pod on blog-worker calls the Service's {label} cluster IP",
                 WORKER_1, client, address("10.244.1.10"), address(service.cluster_ip), 80),
            flow(f"endpoint-to-own-service{suffix}",
                 f"An endpoint pod on blog-worker calls its own Service's {label} cluster IP", WORKER_1, own,
                 address(pods[0].address), address(service.cluster_ip), 80),
            flow(f"pod-to-no-endpoints{suffix}",
                 f"A pod on blog-worker calls the {label} cluster IP of a Service without endpoints", WORKER_1,
                 client, address("10.244.1.10"), address(DUAL_STACK_NO_ENDPOINTS.cluster_ip), 80),
        ]
    return ScenarioSpec(
        "nodeport-dual-stack", "Dual-stack NodePort Service on a three-node kind cluster (generated)",
        "The seed's two nginx pods behind its NodePort Service on port 30080, with ipFamilyPolicy: PreferDualStack, "
        "one on each worker of the seed's kind cluster made dual-stack (kind's networking.ipFamily: dual). Each "
        "worker's iptables-save and ip6tables-save output before and after the Service was created, as kube-proxy "
        "v1.29's two proxiers write them, with the seed's kind chains (DOCKER_*, KIND-MASQ-AGENT) and the "
        "kubernetes and kube-dns Services, which are single-stack IPv4 and so only in the IPv4 rules. A second "
        "dual-stack Service, default/no-endpoints, has no pods: kube-proxy rejects its connections.",
        (CONTROL_PLANE, WORKER_1, WORKER_2), (WORKER_1, WORKER_2), (service,), pods, tuple(flows), (4, 6),
        (DUAL_STACK_NO_ENDPOINTS,))


_SCENARIOS = {"clusterip": _clusterip, "nodeport-local": _nodeport_local, "nodeport-dual-stack": _nodeport_dual_stack,
              **FEATURE_SCENARIOS}


def node_spec(scenario: ScenarioSpec, node: ClusterNode, moment: str, family: Family = 4) -> ClusterSpec:
    """The cluster `node`'s dump of `family` at `moment` ("before" or "after") is written for."""
    services = kind_system_services(CONTROL_PLANE.name, CONTROL_PLANE.address)
    if moment == "after":
        services += scenario.services + scenario.unlisted
    kind = KindNode(dns_tcp_port=node.dns_ports[0], dns_udp_port=node.dns_ports[1])
    spec = ClusterSpec(services, node=node.name, node_ip=node.address, kind=kind)
    return spec if family == 4 else ipv6_cluster(spec, dual_stack=True)


def _dump(scenario: ScenarioSpec, node: ClusterNode, moment: str, family: Family = 4) -> str:
    return synth_cluster(node_spec(scenario, node, moment, family))


def _dump_file(node: ClusterNode, moment: str, family: Family) -> str:
    return f"{node.dump_prefix}-{moment}{'-v6' if family == 6 else ''}.rules"


class Folded(str):
    """A long text that scenario.yaml writes as a folded block (`>-`), as the seed's writes its summary."""


class _Dumper(yaml.SafeDumper):
    pass


_Dumper.add_representer(Folded, lambda dumper, text: dumper.represent_scalar("tag:yaml.org,2002:str", text, style=">"))


def _endpoint_facts(endpoint: Endpoint, address: str, port: int) -> dict[str, Any]:
    conditions = {"ready": endpoint.ready, "serving": endpoint.serving, "terminating": endpoint.terminating}
    return ({"address": address, "port": port, "node": endpoint.node}
            | (conditions if conditions != {"ready": True, "serving": True, "terminating": False} else {}))


def _service_facts(scenario: ScenarioSpec, service: ServiceSpec) -> dict[str, Any]:
    """A Service as scenario.yaml writes it: what kube-proxy reads of it, defaults left out but the policies."""
    dual = scenario.dual_stack
    if service.type == "ExternalName":
        return {"namespace": service.namespace, "name": service.name, "type": service.type,
                "external_name": scenario.external_names[service.key]}
    facts: dict[str, Any] = {"namespace": service.namespace, "name": service.name, "type": service.type,
                             "cluster_ip": service.cluster_ip}
    if dual:
        facts["cluster_ip_v6"] = ipv6_twin(service.cluster_ip)
    facts["external_traffic_policy"] = service.external_traffic_policy
    if service.internal_traffic_policy != "Cluster":
        facts["internal_traffic_policy"] = service.internal_traffic_policy
    facts["session_affinity"] = service.session_affinity
    if service.session_affinity == "ClientIP":
        facts["session_affinity_timeout"] = service.affinity_seconds
    for key, values in (("load_balancer_ips", service.load_balancer_ips),
                        ("load_balancer_source_ranges", service.load_balancer_source_ranges),
                        ("external_ips", service.external_ips)):
        if values:
            facts[key] = list(values)
    if service.health_check_node_port is not None:
        facts["health_check_node_port"] = service.health_check_node_port
    facts["ports"] = [({"name": p.name} if p.name else {}) | {"protocol": p.protocol, "port": p.port,
                                                              "target_port": p.target_port}
                      | ({"node_port": p.node_port} if p.node_port is not None else {}) for p in service.ports]
    target_ports = list(dict.fromkeys(p.target_port for p in service.ports))
    facts["endpoints"] = [_endpoint_facts(e, address, port)
                          for family in scenario.families for port in target_ports for e in service.endpoints
                          for address in [e.address if family == 4 else ipv6_twin(e.address)]]
    return facts


def _metadata(scenario: ScenarioSpec) -> str:
    dual = scenario.dual_stack
    dumps = [{"file": _dump_file(n, moment, family), "node": n.name, "moment": moment}
             | ({"family": family} if dual else {})
             for n in scenario.dumped for moment in ("before", "after") for family in scenario.families]
    provenance = f"Generated by `iptables-lens synth scenario {scenario.kind}`, following kube-proxy v1.29's rule layout"
    return scenario_metadata(scenario, provenance, cluster_facts(scenario), dumps, ["service.yaml"])


def cluster_facts(scenario: ScenarioSpec, kubernetes_version: str = KUBERNETES_VERSION,
                  proxy_mode: str = "iptables") -> dict[str, Any]:
    """scenario.yaml's `cluster:` block for the seed's kind cluster (made dual-stack for a dual-stack scenario)."""
    return {
        "name": "blog", "kubernetes_version": kubernetes_version, "iptables_version": IPTABLES_VERSION,
        "proxy_mode": proxy_mode, "underlay_cidr": "172.20.0.0/16",
        "underlay_gateway": "172.20.0.1", "pod_cidr": "10.244.0.0/16",
    } | ({"underlay_cidr_v6": ipv6_twin("172.20.0.0/16"), "underlay_gateway_v6": ipv6_twin("172.20.0.1"),
          "pod_cidr_v6": ipv6_twin("10.244.0.0/16")} if scenario.dual_stack else {})


def scenario_metadata(scenario: ScenarioSpec, provenance: str, cluster: dict[str, Any], dumps: list[dict[str, Any]],
                      manifests: list[str]) -> str:
    """The text of `scenario`'s scenario.yaml, made by a procedure described in `provenance`, with the `cluster`
    facts and the `dumps` and `manifests` entries given."""
    dual = scenario.dual_stack
    namespace = scenario.services[0].namespace
    feature = scenario.feature
    meta = {
        "title": scenario.title,
        "summary": Folded(scenario.summary),
    } | ({"feature": {"id": feature.id, "title": feature.title, "order": feature.order,
                      "summary": Folded(feature.summary), "node": feature.node.name}} if feature else {}) | {
        "provenance": {"method": "procedure", "description": provenance},
        "cluster": cluster,
        "nodes": [{"name": n.name, "role": n.role, "address": n.address, "pod_cidr": n.pod_cidr}
                  | ({"address_v6": ipv6_twin(n.address), "pod_cidr_v6": ipv6_twin(n.pod_cidr)} if dual else {})
                  for n in scenario.nodes],
        "pods": [{"name": p.name, "namespace": namespace, "node": p.node.name, "address": p.address}
                 | ({"address_v6": ipv6_twin(p.address)} if dual else {})
                 for p in scenario.pods],
        "services": [_service_facts(scenario, s) for s in scenario.services],
        "manifests": manifests,
        "dumps": dumps,
        "flows": list(scenario.flows),
    }
    if not scenario.pods:
        del meta["pods"]
    header = (f"# Generated by `iptables-lens synth scenario {scenario.kind}`: facts about the cluster the dumps "
              "describe.\n")
    return header + yaml.dump(meta, Dumper=_Dumper, sort_keys=False, width=110, default_flow_style=False)


def _manifest(scenario: ScenarioSpec, service: ServiceSpec) -> str:
    lines = ["apiVersion: v1", "kind: Service", "metadata:", f"  name: {service.name}", "spec:",
             f"  type: {service.type}"]
    if service.type == "ExternalName":
        return "\n".join(lines + [f"  externalName: {scenario.external_names[service.key]}"]) + "\n"
    if service.cluster_ip == HEADLESS:
        lines.append(f"  clusterIP: {HEADLESS}")
    if service.external_traffic_policy != "Cluster":
        lines.append(f"  externalTrafficPolicy: {service.external_traffic_policy}")
    if service.health_check_node_port is not None:
        lines.append(f"  healthCheckNodePort: {service.health_check_node_port}")
    if service.internal_traffic_policy != "Cluster":
        lines.append(f"  internalTrafficPolicy: {service.internal_traffic_policy}")
    if service.ip_family_policy != "SingleStack":
        lines.append(f"  ipFamilyPolicy: {service.ip_family_policy}")
    if service.session_affinity != "None":
        lines += [f"  sessionAffinity: {service.session_affinity}", "  sessionAffinityConfig:", "    clientIP:",
                  f"      timeoutSeconds: {service.affinity_seconds}"]
    for key, values in (("loadBalancerSourceRanges", service.load_balancer_source_ranges),
                        ("externalIPs", service.external_ips)):
        if values:
            lines += [f"  {key}:"] + [f"  - {v}" for v in values]
    lines += ["  selector:", f"    app: {service.name}", "  ports:"]
    for port in service.ports:
        lines += ([f"  - name: {port.name}", f"    protocol: {port.protocol}"] if port.name
                  else [f"  - protocol: {port.protocol}"])
        lines += [f"    port: {port.port}", f"    targetPort: {port.target_port}"]
        if port.node_port is not None:
            lines.append(f"    nodePort: {port.node_port}")
    if service.load_balancer_ips:
        # Set by the load balancer controller (cloud-provider-kind, MetalLB), not by the manifest's author.
        lines += ["status:", "  loadBalancer:", "    ingress:"] + [f"    - ip: {ip}" for ip in service.load_balancer_ips]
    return "\n".join(lines) + "\n"


def _endpoint_slice(service: ServiceSpec) -> str:
    """The Service's EndpointSlice, for a Service whose endpoints' conditions are not all "ready"."""
    lines = ["# The EndpointSlice controller's view of the Service's pods (kubectl get endpointslice -o yaml, abridged).",
             "apiVersion: discovery.k8s.io/v1", "kind: EndpointSlice", "metadata:",
             f"  generateName: {service.name}-", "  labels:", f"    kubernetes.io/service-name: {service.name}",
             "addressType: IPv4", "ports:"]
    for port in service.ports:
        lines += [f"- name: \"{port.name}\"", f"  protocol: {port.protocol}", f"  port: {port.target_port}"]
    lines.append("endpoints:")
    for e in service.endpoints:
        lines += ["- addresses:", f"  - {e.address}", f"  nodeName: {e.node}", "  conditions:",
                  f"    ready: {str(e.ready).lower()}", f"    serving: {str(e.serving).lower()}",
                  f"    terminating: {str(e.terminating).lower()}"]
    return "\n".join(lines) + "\n"


def manifests_text(scenario: ScenarioSpec) -> str:
    """service.yaml: the manifest of each of the scenario's Services, with an EndpointSlice where its endpoints'
    conditions are not all ready."""
    documents = []
    for service in scenario.services + scenario.unlisted:
        documents.append(_manifest(scenario, service))
        if any(not e.ready for e in service.endpoints):
            documents.append(_endpoint_slice(service))
    return "---\n".join(documents)


def scenario_spec(kind: str) -> ScenarioSpec:
    """The scenario of `kind` (one of SCENARIO_KINDS, DUAL_STACK_KINDS or FEATURE_KINDS); ValueError for another."""
    if kind not in _SCENARIOS:
        raise ValueError(f"unknown scenario kind {kind!r} (one of {', '.join(_SCENARIOS)})")
    return _SCENARIOS[kind]()


def scenario_files(kind: str) -> dict[str, str]:
    """File name -> text of the scenario folder for `kind` (one of SCENARIO_KINDS, DUAL_STACK_KINDS or
    FEATURE_KINDS)."""
    if kind in NFTABLES_KINDS:
        raise ValueError(f"the kernel makes scenario kind {kind!r}: write_scenario writes it, as root")
    scenario = scenario_spec(kind)
    files = {"scenario.yaml": _metadata(scenario),
             "service.yaml": manifests_text(scenario)}
    for node in scenario.dumped:
        for moment in ("before", "after"):
            for family in scenario.families:
                files[_dump_file(node, moment, family)] = _dump(scenario, node, moment, family)
    return dict(sorted(files.items()))


def write_atomically(path: str | Path, text: str) -> None:
    """Write `text` to `path` through a temporary file in the same folder, so that a reader sees the old
    file or the new one, never a part."""
    path = Path(path)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "w", encoding="utf-8", newline="") as out:
            out.write(text)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def write_scenario(kind: str, folder: str | Path) -> list[Path]:
    """Write the scenario folder for `kind` (created if missing; files of the same names are replaced);
    returns the paths written. KernelNeeded for a kind in nftables mode when the kernel cannot be asked."""
    if kind in NFTABLES_KINDS:
        from iptables_lens.kube.nft_scenario import nftables_scenario_files

        files = nftables_scenario_files()
    else:
        files = scenario_files(kind)
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for name, text in files.items():
        write_atomically(folder / name, text)
        written.append(folder / name)
    return written
