"""Which endpoints kube-proxy v1.29 uses for a Service port on a node: the Service's traffic policies as
`proxy.BaseServicePortInfo` reads them, and `proxy.CategorizeEndpoints` (pkg/proxy/topology.go) without topology
hints, which no `ClusterSpec` carries.

- Cluster traffic policy uses the ready endpoints; when there are none anywhere, the serving-terminating ones
  (a pod being deleted that still passes its readiness probe). A not-serving endpoint is never used.
- Local traffic policy uses the node's own ready endpoints; when it has none, its own serving-terminating ones.
- The Service "has endpoints" (else kube-proxy REJECTs its traffic) when any endpoint either policy could use
  exists anywhere in the cluster.

>>> from iptables_lens.kube.cluster_spec import Endpoint, Port, ServiceSpec
>>> going = Endpoint("10.244.1.2", "node-1", ready=False, serving=True, terminating=True)
>>> gone = Endpoint("10.244.2.2", "node-2", ready=False, serving=False, terminating=True)
>>> svc = ServiceSpec("default", "web", "10.96.0.50", endpoints=(going, gone))
>>> [e.address for e in categorize_endpoints(svc, svc.ports[0], "node-0").cluster]
['10.244.1.2']
"""

from __future__ import annotations

from dataclasses import dataclass

from iptables_lens.kube.cluster_spec import Endpoint, Port, ServiceSpec
from iptables_lens.kube.names import join_host_port


@dataclass(frozen=True)
class EndpointSelection:
    """The endpoints of one Service port as one node's kube-proxy sorts them: `cluster` for Cluster traffic
    policy and `local` for Local (each empty when the policy is not used), `reachable` (those this node writes a
    KUBE-SEP chain for), and `has_any` (some endpoint is usable somewhere in the cluster)."""

    cluster: tuple[Endpoint, ...]
    local: tuple[Endpoint, ...]
    reachable: tuple[Endpoint, ...]
    has_any: bool


def externally_accessible(svc: ServiceSpec, port: Port) -> bool:
    """Whether anything outside the cluster IP reaches the port: a node port, a load balancer IP, an external IP."""
    return port.node_port is not None or bool(svc.load_balancer_ips or svc.external_ips)


def external_policy_local(svc: ServiceSpec, port: Port) -> bool:
    """`externalTrafficPolicy: Local` on an externally accessible port."""
    return externally_accessible(svc, port) and svc.external_traffic_policy == "Local"


def uses_cluster_endpoints(svc: ServiceSpec, port: Port) -> bool:
    """Whether some traffic to the port uses Cluster traffic policy. With both policies Local, external traffic
    still does: the short circuit for pods and the node itself sends it to every endpoint."""
    return svc.internal_traffic_policy != "Local" or externally_accessible(svc, port)


def uses_local_endpoints(svc: ServiceSpec, port: Port) -> bool:
    """Whether some traffic to the port uses Local traffic policy."""
    return svc.internal_traffic_policy == "Local" or external_policy_local(svc, port)


def needs_health_check(svc: ServiceSpec) -> bool:
    """Whether kube-proxy opens the Service's health check node port: a LoadBalancer Service with
    `externalTrafficPolicy: Local` (`apiservice.NeedsHealthCheck`); any other Service's is ignored."""
    return svc.type == "LoadBalancer" and svc.external_traffic_policy == "Local"


def _serving_terminating(endpoint: Endpoint) -> bool:
    return endpoint.serving and endpoint.terminating


def categorize_endpoints(svc: ServiceSpec, port: Port, node: str) -> EndpointSelection:
    """The endpoints of `svc`'s `port` on node `node`, each list in kube-proxy's order: by the endpoint's
    `ip:port` (`[ip]:port`) string, as endpointslicecache sorts them."""
    endpoints = sorted(svc.endpoints, key=lambda e: join_host_port(e.address, port.target_port))
    cluster: list[Endpoint] = []
    has_any = False
    if uses_cluster_endpoints(svc, port):
        cluster = [e for e in endpoints if e.ready] or [e for e in endpoints if _serving_terminating(e)]
        has_any = bool(cluster)
    if not uses_local_endpoints(svc, port):
        return EndpointSelection(tuple(cluster), (), tuple(cluster), has_any)
    has_any = has_any or any(e.ready or _serving_terminating(e) for e in endpoints)
    mine = [e for e in endpoints if e.node == node]
    local = [e for e in mine if e.ready] or [e for e in mine if _serving_terminating(e)]
    if not uses_cluster_endpoints(svc, port):
        return EndpointSelection((), tuple(local), tuple(local), has_any)
    # Local ready endpoints are among the cluster's; serving-terminating ones may not be.
    reachable = cluster + [e for e in local if e not in cluster]
    return EndpointSelection(tuple(cluster), tuple(local), tuple(reachable), has_any)
