"""Which of a Service port's endpoints kube-proxy v1.29 sends traffic to on a node, from their EndpointSlice
conditions and the Service's traffic policies: `proxy.CategorizeEndpoints` (pkg/proxy/topology.go), without
topology hints.

- Cluster-wide traffic goes to the ready endpoints; when none is ready anywhere, to the serving terminating
  ones (the fallback that lets a rolling update drain without refusing connections).
- Local traffic goes to the node's own ready endpoints; when it has none, to its serving terminating ones.
- A policy that the Service never uses has no endpoints: the cluster-wide list is used unless
  `internalTrafficPolicy` is Local and nothing reaches the Service from outside (which, even with
  `externalTrafficPolicy: Local`, needs the cluster-wide list for pods and the node itself); the local list
  when either policy is Local.

Both the dump generator and the checks of a scenario's facts ask it, with their own endpoint records (anything
with `ready`, `serving`, `terminating` and `node`).

>>> from iptables_lens.kube.cluster_spec import Endpoint
>>> draining = [Endpoint("10.244.1.2", "a", ready=False, terminating=True),
...             Endpoint("10.244.2.2", "b", ready=False, serving=False, terminating=True)]
>>> use = categorize_endpoints(draining, "b", EndpointPolicies(internal_local=False, external_local=False,
...                                                            externally_accessible=False))
>>> [e.address for e in use.cluster], use.local, use.has_any
(['10.244.1.2'], (), True)
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Generic, Protocol, TypeVar


class EndpointConditions(Protocol):
    @property
    def ready(self) -> bool: ...
    @property
    def serving(self) -> bool: ...
    @property
    def terminating(self) -> bool: ...
    @property
    def node(self) -> str | None: ...


E = TypeVar("E", bound=EndpointConditions)


@dataclass(frozen=True)
class EndpointPolicies:
    """What of a Service port decides which endpoint lists kube-proxy uses."""

    internal_local: bool
    """`internalTrafficPolicy: Local`."""
    external_local: bool
    """`externalTrafficPolicy: Local` on a Service reached from outside."""
    externally_accessible: bool
    """Reached by a node port, a load balancer IP or an external IP."""

    @property
    def uses_cluster_endpoints(self) -> bool:
        return not self.internal_local or self.externally_accessible

    @property
    def uses_local_endpoints(self) -> bool:
        return self.internal_local or self.external_local


@dataclass(frozen=True)
class EndpointUse(Generic[E]):
    """A Service port's endpoints as one node's kube-proxy uses them."""

    cluster: tuple[E, ...]
    """Where cluster-wide traffic goes (the KUBE-SVC chain's endpoints)."""
    local: tuple[E, ...]
    """Where local traffic goes (the KUBE-SVL chain's endpoints)."""
    has_any: bool
    """Whether any endpoint anywhere is usable; without one, kube-proxy REJECTs the Service's traffic."""

    @property
    def reachable(self) -> tuple[E, ...]:
        """Every endpoint the node sends traffic to, each once: those that get a KUBE-SEP chain."""
        return self.cluster + tuple(e for e in self.local if e not in self.cluster)


def _usable(endpoints: Sequence[E]) -> tuple[E, ...]:
    ready = tuple(e for e in endpoints if e.ready)
    return ready or tuple(e for e in endpoints if e.serving and e.terminating)


def categorize_endpoints(endpoints: Sequence[E], node: str, policies: EndpointPolicies) -> EndpointUse[E]:
    """The endpoints `node`'s kube-proxy uses for cluster-wide and for local traffic, in the given order."""
    cluster = _usable(endpoints) if policies.uses_cluster_endpoints else ()
    has_any = bool(cluster)
    local: tuple[E, ...] = ()
    if policies.uses_local_endpoints:
        has_any = has_any or bool(_usable(endpoints))
        local = _usable([e for e in endpoints if e.node == node])
    return EndpointUse(cluster, local, has_any)
