"""Generated scenario folders in the format of `dumps/kind-nodeport/`, on the seed's kind cluster.

`scenario_files(kind)` gives a scenario's files as text (pure, for tests); `write_scenario(kind, folder)`
writes them. The cluster is the seed's: underlay 172.20.0.0/16, pods 10.244.N.0/24 on node N, Services in
10.96.0.0/12, a control-plane node and two workers (plus a third worker for "nodeport-local"). Each node's
dump has the seed's fixed chains: kind's (DOCKER_OUTPUT, DOCKER_POSTROUTING, KIND-MASQ-AGENT), the kubelet's
and kube-proxy's, and the default/kubernetes and kube-system/kube-dns Services; "before" has only those,
"after" adds the scenario's Service.

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

>>> sorted(scenario_files("clusterip"))[:3]
['scenario.yaml', 'service.yaml', 'worker-1-after.rules']
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from iptables_lens.kube.cluster_spec import (
    ClusterSpec,
    Endpoint,
    Family,
    KindNode,
    Port,
    ServiceSpec,
    kind_system_services,
)
from iptables_lens.kube.dual_stack import ipv6_cluster, ipv6_twin
from iptables_lens.kube.synth import synth_cluster

SCENARIO_KINDS = ("clusterip", "nodeport-local")
"""The single-family (IPv4) kinds."""
DUAL_STACK_KINDS = ("nodeport-dual-stack",)
"""The kinds with dumps of both families."""
KUBERNETES_VERSION = "v1.29.1"
IPTABLES_VERSION = "v1.8.9 (nf_tables)"
OUTSIDE_CLIENT = "172.20.0.100"


@dataclass(frozen=True)
class _Node:
    name: str
    role: str
    address: str
    pod_cidr: str
    dump_prefix: str = ""  # "worker-1" for the files of a node whose dumps the scenario has
    # Docker's embedded DNS listens on random ports per node container; these are fixed.
    dns_ports: tuple[int, int] = (0, 0)


CONTROL_PLANE = _Node("blog-control-plane", "control-plane", "172.20.0.4", "10.244.0.0/24")
WORKER_1 = _Node("blog-worker", "worker", "172.20.0.2", "10.244.1.0/24", "worker-1", (39649, 59039))
WORKER_2 = _Node("blog-worker2", "worker", "172.20.0.3", "10.244.2.0/24", "worker-2", (43289, 41258))
WORKER_3 = _Node("blog-worker3", "worker", "172.20.0.5", "10.244.3.0/24", "worker-3", (36217, 52871))


@dataclass(frozen=True)
class _Pod:
    name: str
    node: _Node
    address: str


@dataclass(frozen=True)
class _Scenario:
    kind: str
    title: str
    summary: str
    nodes: tuple[_Node, ...]
    dumped: tuple[_Node, ...]
    service: ServiceSpec
    pods: tuple[_Pod, ...]
    flows: tuple[dict[str, Any], ...]
    families: tuple[Family, ...] = (4,)
    others: tuple[ServiceSpec, ...] = ()  # more Services "after" adds, with no pods of their own

    @property
    def services(self) -> tuple[ServiceSpec, ...]:
        return (self.service, *self.others)

    @property
    def dual_stack(self) -> bool:
        return 6 in self.families


def _clusterip() -> _Scenario:
    pods = (_Pod("web-clusterip-0", WORKER_1, "10.244.1.2"), _Pod("web-clusterip-1", WORKER_2, "10.244.2.2"))
    service = ServiceSpec("default", "web-clusterip", "10.96.52.20", ports=(Port(80, 8080),),
                          endpoints=tuple(Endpoint(p.address, p.node.name) for p in pods))
    flows = (
        dict(id="pod-to-cluster-ip", title="A pod on blog-worker calls the Service's cluster IP", node=WORKER_1.name,
             client="a client pod on blog-worker (an address chosen for this flow, in the node's pod range)",
             src="10.244.1.10", dst=service.cluster_ip, protocol="tcp", dport=80),
        dict(id="endpoint-to-own-service", title="An endpoint pod on blog-worker2 calls its own Service",
             node=WORKER_2.name, client="the Service's own endpoint pod web-clusterip-1 on blog-worker2",
             src="10.244.2.2", dst=service.cluster_ip, protocol="tcp", dport=80),
    )
    return _Scenario(
        "clusterip", "ClusterIP Service on a three-node kind cluster (generated)",
        "Two pods behind a ClusterIP Service on port 80 (target port 8080), one on each worker of the seed's "
        "kind cluster. Each worker's rules before and after the Service was created, as kube-proxy v1.29 "
        "writes them, with the seed's kind chains (DOCKER_*, KIND-MASQ-AGENT) and the kubernetes and kube-dns "
        "Services.",
        (CONTROL_PLANE, WORKER_1, WORKER_2), (WORKER_1, WORKER_2), service, pods, flows)


def _nodeport_local() -> _Scenario:
    pods = (_Pod("web-local-0", WORKER_1, "10.244.1.2"), _Pod("web-local-1", WORKER_2, "10.244.2.2"))
    service = ServiceSpec("default", "web-local", "10.96.77.30", type="NodePort", external_traffic_policy="Local",
                          ports=(Port(80, 8080, node_port=30090),),
                          endpoints=tuple(Endpoint(p.address, p.node.name) for p in pods))
    outside = "a host on the underlay network, outside the cluster (an address chosen for this flow)"
    flows = (
        dict(id="outside-to-local-endpoint",
             title="A client outside the cluster calls the NodePort on blog-worker, which has an endpoint",
             node=WORKER_1.name, client=outside, src=OUTSIDE_CLIENT, dst=WORKER_1.address, protocol="tcp",
             dport=30090),
        dict(id="outside-to-no-local-endpoint",
             title="A client outside the cluster calls the NodePort on blog-worker3, which has no endpoint",
             node=WORKER_3.name, client=outside, src=OUTSIDE_CLIENT, dst=WORKER_3.address, protocol="tcp",
             dport=30090),
    )
    return _Scenario(
        "nodeport-local", "NodePort Service with externalTrafficPolicy Local (generated)",
        "Two pods behind a NodePort Service on port 30090 with externalTrafficPolicy: Local, on blog-worker and "
        "blog-worker2 of the seed's kind cluster with a third worker added. blog-worker's and blog-worker3's "
        "rules before and after the Service was created, as kube-proxy v1.29 writes them, with the seed's kind "
        "chains (DOCKER_*, KIND-MASQ-AGENT) and the kubernetes and kube-dns Services. A node port reaches only "
        "the node's own endpoints, keeping the client's address; blog-worker3 has none and drops the packet.",
        (CONTROL_PLANE, WORKER_1, WORKER_2, WORKER_3), (WORKER_1, WORKER_3), service, pods, flows)


# The seed's Service, dual-stack.
DUAL_STACK_NODEPORT = ServiceSpec(
    "default", "my-nginx-service", "10.96.118.136", type="NodePort", ports=(Port(80, 80, node_port=30080),),
    endpoints=(Endpoint("10.244.1.2", WORKER_1.name), Endpoint("10.244.2.2", WORKER_2.name)),
    ip_family_policy="PreferDualStack",
)
# A dual-stack Service no pod backs: kube-proxy REJECTs its connections (filter KUBE-SERVICES).
DUAL_STACK_NO_ENDPOINTS = ServiceSpec("default", "no-endpoints", "10.96.200.10", ports=(Port(80, 80),),
                                      ip_family_policy="PreferDualStack")


def _nodeport_dual_stack() -> _Scenario:
    # The seed's own Service and nginx pods, made dual-stack (kube.synth_dual_stack's Service).
    pods = (_Pod("my-nginx-deployment-7c79c4bf97-2t7q4", WORKER_1, "10.244.1.2"),
            _Pod("my-nginx-deployment-7c79c4bf97-8ktpx", WORKER_2, "10.244.2.2"))
    service = DUAL_STACK_NODEPORT
    outside = "a host on the underlay network, outside the cluster (an address chosen for this flow)"
    client = "a client pod on blog-worker (an address chosen for this flow, in the node's pod range)"
    own = f"the Service's own endpoint pod {pods[0].name} on blog-worker"
    flows: list[dict[str, Any]] = []
    for family in (4, 6):
        def address(v4: str, family: int = family) -> str:
            return v4 if family == 4 else ipv6_twin(v4)
        suffix, label = ("", "IPv4") if family == 4 else ("-v6", "IPv6")
        flows += [
            dict(id=f"outside-to-nodeport{suffix}",
                 title=f"A client outside the cluster calls the NodePort on blog-worker's {label} address",
                 node=WORKER_1.name, client=outside, src=address(OUTSIDE_CLIENT), dst=address(WORKER_1.address),
                 protocol="tcp", dport=30080),
            dict(id=f"pod-to-cluster-ip{suffix}", title=f"A pod on blog-worker calls the Service's {label} cluster IP",
                 node=WORKER_1.name, client=client, src=address("10.244.1.10"), dst=address(service.cluster_ip),
                 protocol="tcp", dport=80),
            dict(id=f"endpoint-to-own-service{suffix}",
                 title=f"An endpoint pod on blog-worker calls its own Service's {label} cluster IP",
                 node=WORKER_1.name, client=own, src=address(pods[0].address), dst=address(service.cluster_ip),
                 protocol="tcp", dport=80),
            dict(id=f"pod-to-no-endpoints{suffix}",
                 title=f"A pod on blog-worker calls the {label} cluster IP of a Service without endpoints",
                 node=WORKER_1.name, client=client, src=address("10.244.1.10"),
                 dst=address(DUAL_STACK_NO_ENDPOINTS.cluster_ip), protocol="tcp", dport=80),
        ]
    return _Scenario(
        "nodeport-dual-stack", "Dual-stack NodePort Service on a three-node kind cluster (generated)",
        "The seed's two nginx pods behind its NodePort Service on port 30080, with ipFamilyPolicy: PreferDualStack, "
        "one on each worker of the seed's kind cluster made dual-stack (kind's networking.ipFamily: dual). Each "
        "worker's iptables-save and ip6tables-save output before and after the Service was created, as kube-proxy "
        "v1.29's two proxiers write them, with the seed's kind chains (DOCKER_*, KIND-MASQ-AGENT) and the "
        "kubernetes and kube-dns Services, which are single-stack IPv4 and so only in the IPv4 rules. A second "
        "dual-stack Service, default/no-endpoints, has no pods: kube-proxy rejects its connections.",
        (CONTROL_PLANE, WORKER_1, WORKER_2), (WORKER_1, WORKER_2), service, pods, tuple(flows), (4, 6),
        (DUAL_STACK_NO_ENDPOINTS,))


_SCENARIOS = {"clusterip": _clusterip, "nodeport-local": _nodeport_local, "nodeport-dual-stack": _nodeport_dual_stack}


def _dump(scenario: _Scenario, node: _Node, moment: str, family: Family = 4) -> str:
    services = kind_system_services(CONTROL_PLANE.name, CONTROL_PLANE.address)
    if moment == "after":
        services += scenario.services
    kind = KindNode(dns_tcp_port=node.dns_ports[0], dns_udp_port=node.dns_ports[1])
    spec = ClusterSpec(services, node=node.name, node_ip=node.address, kind=kind)
    return synth_cluster(spec if family == 4 else ipv6_cluster(spec, dual_stack=True))


def _dump_file(node: _Node, moment: str, family: Family) -> str:
    return f"{node.dump_prefix}-{moment}{'-v6' if family == 6 else ''}.rules"


class _Folded(str):
    """A long text written as a folded block (`>-`), as the seed's scenario.yaml writes its summary."""


class _Dumper(yaml.SafeDumper):
    pass


_Dumper.add_representer(_Folded, lambda dumper, text: dumper.represent_scalar("tag:yaml.org,2002:str", text, style=">"))


def _metadata(scenario: _Scenario) -> str:
    service = scenario.service
    dual = scenario.dual_stack
    meta = {
        "title": scenario.title,
        "summary": _Folded(scenario.summary),
        "provenance": {
            "method": "procedure",
            "description": f"Generated by `iptables-lens synth scenario {scenario.kind}`, "
                           "following kube-proxy v1.29's rule layout",
        },
        "cluster": {
            "name": "blog", "kubernetes_version": KUBERNETES_VERSION, "iptables_version": IPTABLES_VERSION,
            "proxy_mode": "iptables", "underlay_cidr": "172.20.0.0/16",
            "underlay_gateway": "172.20.0.1", "pod_cidr": "10.244.0.0/16",
        } | ({"underlay_cidr_v6": ipv6_twin("172.20.0.0/16"), "underlay_gateway_v6": ipv6_twin("172.20.0.1"),
              "pod_cidr_v6": ipv6_twin("10.244.0.0/16")} if dual else {}),
        "nodes": [{"name": n.name, "role": n.role, "address": n.address, "pod_cidr": n.pod_cidr}
                  | ({"address_v6": ipv6_twin(n.address), "pod_cidr_v6": ipv6_twin(n.pod_cidr)} if dual else {})
                  for n in scenario.nodes],
        "pods": [{"name": p.name, "namespace": service.namespace, "node": p.node.name, "address": p.address}
                 | ({"address_v6": ipv6_twin(p.address)} if dual else {})
                 for p in scenario.pods],
        "services": [{
            "namespace": service.namespace, "name": service.name, "type": service.type,
            "cluster_ip": service.cluster_ip}
            | ({"cluster_ip_v6": ipv6_twin(service.cluster_ip)} if dual else {}) | {
            "external_traffic_policy": service.external_traffic_policy,
            "session_affinity": service.session_affinity,
            "ports": [{"protocol": p.protocol, "port": p.port, "target_port": p.target_port}
                      | ({"node_port": p.node_port} if p.node_port is not None else {}) for p in service.ports],
            "endpoints": [{"address": address, "port": p.target_port, "node": e.node}
                          for family in scenario.families for p in service.ports for e in service.endpoints
                          for address in [e.address if family == 4 else ipv6_twin(e.address)]],
        }],  # only Services with endpoints: `validate` checks each one's KUBE-SVC chain
        "manifests": ["service.yaml"],
        "dumps": [{"file": _dump_file(n, moment, family), "node": n.name, "moment": moment}
                  | ({"family": family} if dual else {})
                  for n in scenario.dumped for moment in ("before", "after") for family in scenario.families],
        "flows": list(scenario.flows),
    }
    header = (f"# Generated by `iptables-lens synth scenario {scenario.kind}`: facts about the cluster the dumps "
              "describe.\n")
    return header + yaml.dump(meta, Dumper=_Dumper, sort_keys=False, width=110, default_flow_style=False)


def _manifest(service: ServiceSpec) -> str:
    lines = ["apiVersion: v1", "kind: Service", "metadata:", f"  name: {service.name}", "spec:",
             f"  type: {service.type}"]
    if service.external_traffic_policy != "Cluster":
        lines.append(f"  externalTrafficPolicy: {service.external_traffic_policy}")
    if service.ip_family_policy != "SingleStack":
        lines.append(f"  ipFamilyPolicy: {service.ip_family_policy}")
    lines += ["  selector:", f"    app: {service.name}", "  ports:"]
    for port in service.ports:
        lines += [f"  - protocol: {port.protocol}", f"    port: {port.port}", f"    targetPort: {port.target_port}"]
        if port.node_port is not None:
            lines.append(f"    nodePort: {port.node_port}")
    return "\n".join(lines) + "\n"


def scenario_files(kind: str) -> dict[str, str]:
    """File name -> text of the scenario folder for `kind` (one of SCENARIO_KINDS or DUAL_STACK_KINDS)."""
    if kind not in _SCENARIOS:
        raise ValueError(f"unknown scenario kind {kind!r} (one of {', '.join(SCENARIO_KINDS + DUAL_STACK_KINDS)})")
    scenario = _SCENARIOS[kind]()
    files = {"scenario.yaml": _metadata(scenario),
             "service.yaml": "---\n".join(_manifest(s) for s in scenario.services)}
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
    returns the paths written."""
    files = scenario_files(kind)
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for name, text in files.items():
        write_atomically(folder / name, text)
        written.append(folder / name)
    return written
