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

from iptables_lens.kube import endpoint_use
from iptables_lens.kube.cluster_spec import Endpoint, Port, ServiceSpec
from iptables_lens.kube.endpoint_use import EndpointPolicies, EndpointUse
from iptables_lens.kube.names import join_host_port


def externally_accessible(svc: ServiceSpec, port: Port) -> bool:
    """Whether anything outside the cluster IP reaches the port: a node port, a load balancer IP, an external IP."""
    return port.node_port is not None or bool(svc.load_balancer_ips or svc.external_ips)


def external_policy_local(svc: ServiceSpec, port: Port) -> bool:
    """`externalTrafficPolicy: Local` on an externally accessible port."""
    return externally_accessible(svc, port) and svc.external_traffic_policy == "Local"


def endpoint_policies(svc: ServiceSpec, port: Port) -> EndpointPolicies:
    """What of `svc`'s `port` decides which endpoint lists kube-proxy uses (with both policies Local, external
    traffic still uses the cluster-wide list: the short circuit for pods and the node itself)."""
    return EndpointPolicies(internal_local=svc.internal_traffic_policy == "Local",
                            external_local=external_policy_local(svc, port),
                            externally_accessible=externally_accessible(svc, port))


def needs_health_check(svc: ServiceSpec) -> bool:
    """Whether kube-proxy opens the Service's health check node port: a LoadBalancer Service with
    `externalTrafficPolicy: Local` (`apiservice.NeedsHealthCheck`); any other Service's is ignored."""
    return svc.type == "LoadBalancer" and svc.external_traffic_policy == "Local"


def categorize_endpoints(svc: ServiceSpec, port: Port, node: str) -> EndpointUse[Endpoint]:
    """The endpoints of `svc`'s `port` on node `node` (`kube.endpoint_use` sorts them by their conditions and
    the Service's policies), each list in kube-proxy's order: by the endpoint's `ip:port` (`[ip]:port`)
    string, as endpointslicecache sorts them."""
    endpoints = sorted(svc.endpoints, key=lambda e: join_host_port(e.address, port.target_port))
    return endpoint_use.categorize_endpoints(endpoints, node, endpoint_policies(svc, port))
