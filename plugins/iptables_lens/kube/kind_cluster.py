"""The seed's kind cluster as the generated scenarios describe it: its nodes, and the record of a scenario (its
Services, pods, flows, the nodes whose dumps it has) that `kube.synth_scenario` writes out as a folder.

The cluster is the seed's: underlay 172.20.0.0/16 (the Docker network "kind", gateway 172.20.0.1), pods
10.244.N.0/24 on node N, Services in 10.96.0.0/12, the control-plane node blog-control-plane and the workers
blog-worker and blog-worker2, with a third worker, blog-worker3, where a scenario needs a node without
endpoints. Load balancer IPs come from the top of the Docker network (172.20.255.200 and up), as
cloud-provider-kind or MetalLB hand them out on kind.

>>> WORKER_3.name, WORKER_3.address, WORKER_3.pod_cidr
('blog-worker3', '172.20.0.5', '10.244.3.0/24')
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from iptables_lens.kube.cluster_spec import Family, ServiceSpec

KUBERNETES_VERSION = "v1.29.1"
IPTABLES_VERSION = "v1.8.9 (nf_tables)"
OUTSIDE_CLIENT = "172.20.0.100"
OUTSIDE = "a host on the underlay network, outside the cluster (an address chosen for this flow)"


@dataclass(frozen=True)
class ClusterNode:
    """A node of the cluster; `dump_prefix` ("worker-1") names the files of a node whose dumps a scenario has."""

    name: str
    role: str
    address: str
    pod_cidr: str
    dump_prefix: str = ""
    # Docker's embedded DNS listens on random ports per node container; these are fixed.
    dns_ports: tuple[int, int] = (0, 0)

    def pod(self, host: int) -> str:
        """The address of the pod range's `host`th address: `WORKER_1.pod(10)` is 10.244.1.10."""
        return self.pod_cidr.rsplit(".", 1)[0] + f".{host}"


CONTROL_PLANE = ClusterNode("blog-control-plane", "control-plane", "172.20.0.4", "10.244.0.0/24")
WORKER_1 = ClusterNode("blog-worker", "worker", "172.20.0.2", "10.244.1.0/24", "worker-1", (39649, 59039))
WORKER_2 = ClusterNode("blog-worker2", "worker", "172.20.0.3", "10.244.2.0/24", "worker-2", (43289, 41258))
WORKER_3 = ClusterNode("blog-worker3", "worker", "172.20.0.5", "10.244.3.0/24", "worker-3", (36217, 52871))


@dataclass(frozen=True)
class ScenarioPod:
    name: str
    node: ClusterNode
    address: str


@dataclass(frozen=True)
class Feature:
    """The Service feature a scenario shows (scenario.yaml's `feature:` block)."""

    id: str
    title: str
    order: int
    summary: str
    node: ClusterNode


@dataclass(frozen=True)
class ScenarioSpec:
    """A generated scenario: `services` are listed in scenario.yaml and service.yaml and added to the "after"
    dumps, with `unlisted` ones that only the dumps and service.yaml have."""

    kind: str
    title: str
    summary: str
    nodes: tuple[ClusterNode, ...]
    dumped: tuple[ClusterNode, ...]
    services: tuple[ServiceSpec, ...]
    pods: tuple[ScenarioPod, ...]
    flows: tuple[dict[str, Any], ...]
    families: tuple[Family, ...] = (4,)
    unlisted: tuple[ServiceSpec, ...] = ()
    feature: Feature | None = None
    external_names: dict[str, str] = field(default_factory=dict)
    """An ExternalName Service's key -> the DNS name it stands for."""

    @property
    def dual_stack(self) -> bool:
        return 6 in self.families


def flow(id: str, title: str, node: ClusterNode, client: str, src: str, dst: str, dport: int,
         protocol: str = "tcp", **more: Any) -> dict[str, Any]:
    """A flow as scenario.yaml writes it (`returning_to=` for session affinity's returning client)."""
    return dict(id=id, title=title, node=node.name, client=client, src=src, dst=dst, protocol=protocol, dport=dport,
                **more)


def pod_client(node: ClusterNode) -> str:
    return f"a client pod on {node.name} (an address chosen for this flow, in the node's pod range)"
