"""Which endpoints kube-proxy uses for a Service port, whatever its mode: `proxy.CategorizeEndpoints` and the
`BaseServicePortInfo` predicates of kubernetes' pkg/proxy, shared by the iptables and nftables proxiers.

>>> from iptables_lens.kube.cluster_spec import ClusterSpec, Endpoint, Port, ServiceSpec
>>> svc = ServiceSpec("default", "web", "10.96.0.50", type="NodePort", external_traffic_policy="Local",
...                   ports=(Port(80, 8080, node_port=30080),),
...                   endpoints=(Endpoint("10.244.2.2", "node-1"), Endpoint("10.244.1.2", "node-0")))
>>> eps = categorize(ClusterSpec((svc,)), svc, svc.ports[0])
>>> [e.address for e in eps.cluster], [e.address for e in eps.local], eps.has_external
(['10.244.1.2', '10.244.2.2'], ['10.244.1.2'], True)
"""

from __future__ import annotations

from dataclasses import dataclass

from iptables_lens.kube.cluster_spec import ClusterSpec, Endpoint, Port, ServiceSpec
from iptables_lens.kube.names import join_host_port


@dataclass(frozen=True)
class PortEndpoints:
    """A Service port's endpoints as kube-proxy sorts them into policies, and what follows from them."""

    cluster: tuple[Endpoint, ...]  # for the Cluster policy chain (empty when no traffic uses it)
    local: tuple[Endpoint, ...]  # on this node, for the Local policy chain (empty when unused)
    externally_accessible: bool  # a node port, load balancer IPs or external IPs
    internal_local: bool  # internalTrafficPolicy Local
    external_local: bool  # externalTrafficPolicy Local, on an externally accessible port
    has_endpoints: bool  # any usable endpoint on any node
    has_internal: bool  # cluster IP traffic has somewhere to go
    has_external: bool  # external traffic from outside the node has somewhere to go

    @property
    def reachable(self) -> tuple[Endpoint, ...]:
        """allLocallyReachableEndpoints: every endpoint some chain of this node sends traffic to."""
        return self.cluster if self.uses_cluster else self.local

    @property
    def uses_cluster(self) -> bool:
        # Even with both policies Local, external traffic needs the cluster endpoints for the short circuit.
        return not self.internal_local or self.externally_accessible

    @property
    def uses_local(self) -> bool:
        return self.internal_local or self.external_local


def usable(endpoints: list[Endpoint]) -> list[Endpoint]:
    """The ready endpoints, or, when none is ready, the serving terminating ones."""
    ready = [e for e in endpoints if e.ready]
    return ready or [e for e in endpoints if e.serving and e.terminating]


def categorize(spec: ClusterSpec, svc: ServiceSpec, port: Port) -> PortEndpoints:
    """`proxy.CategorizeEndpoints` for `spec.node` (no topology hints). Endpoints come sorted by their
    `ip:port` (`[ip]:port`) string, as the endpoint slice cache sorts them."""
    endpoints = sorted(svc.endpoints, key=lambda e: join_host_port(e.address, port.target_port))
    accessible = bool(port.node_port or svc.load_balancer_ips or svc.external_ips)
    internal_local = svc.internal_traffic_policy == "Local"
    external_local = accessible and svc.external_traffic_policy == "Local"
    uses_cluster = not internal_local or accessible
    cluster = usable(endpoints) if uses_cluster else []
    local = usable([e for e in endpoints if e.node == spec.node]) if internal_local or external_local else []
    has_endpoints = bool(usable(endpoints))
    return PortEndpoints(
        cluster=tuple(cluster), local=tuple(local), externally_accessible=accessible,
        internal_local=internal_local, external_local=external_local, has_endpoints=has_endpoints,
        has_internal=has_endpoints and (not internal_local or bool(local)),
        has_external=has_endpoints and (not external_local or bool(local)),
    )
