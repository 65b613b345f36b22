"""The schema of `scenario.yaml`, the facts about a cluster and its dumps, as pydantic models.

A dual-stack cluster's facts of the second family sit beside the IPv4 ones, under the same name ending in
`_v6` (`address_v6`, `pod_cidr_v6`, `cluster_ip_v6`); an endpoint or a flow is of one family, the one its
addresses are written in; a dump says which family it holds (`family: 6` for ip6tables-save's, 4 by default).

Each model checks what it can check alone (a port is a port, a ClusterIP Service has no node port);
`ScenarioMeta` checks that the facts agree with each other (every pod sits in its node's pod range). What
needs the dumps is checked in `scenario.checks`.

>>> import pathlib, yaml
>>> meta = ScenarioMeta.model_validate(yaml.safe_load(pathlib.Path("dumps/kind-nodeport/scenario.yaml").read_text()))
>>> meta.services[0].ports[0].node_port
30080
"""

from __future__ import annotations

import ipaddress
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

IPv4 = ipaddress.IPv4Address
IPv6 = ipaddress.IPv6Address
Network = ipaddress.IPv4Network
Network6 = ipaddress.IPv6Network
Address = ipaddress.IPv4Address | ipaddress.IPv6Address
AnyNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
Family = Literal[4, 6]
"""The address family of a dump, an endpoint or a flow: 4 (iptables) or 6 (ip6tables)."""
Moment = Literal["before", "after"]
"""When a dump was saved: before the scenario's change (a Service created, say) or after it."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Provenance(_Strict):
    """How the dumps were obtained: captured from a real cluster, or made by a named procedure."""

    method: Literal["captured", "procedure"]
    description: str


class Cluster(_Strict):
    name: str
    kubernetes_version: str
    iptables_version: str
    proxy_mode: Literal["iptables"] = "iptables"
    underlay_cidr: Network
    underlay_gateway: IPv4 | None = None
    """An address on the underlay that is no node (kind: the Docker network's gateway), if dumps name it."""
    pod_cidr: Network
    underlay_cidr_v6: Network6 | None = None
    underlay_gateway_v6: IPv6 | None = None
    pod_cidr_v6: Network6 | None = None

    def underlay_of(self, family: Family) -> AnyNetwork | None:
        return self.underlay_cidr if family == 4 else self.underlay_cidr_v6

    def pod_cidr_of(self, family: Family) -> AnyNetwork | None:
        return self.pod_cidr if family == 4 else self.pod_cidr_v6

    def gateway_of(self, family: Family) -> Address | None:
        return self.underlay_gateway if family == 4 else self.underlay_gateway_v6


class Node(_Strict):
    name: str
    role: Literal["control-plane", "worker"]
    address: IPv4
    pod_cidr: Network
    pod_gateway: IPv4 | None = None
    """The address the host side of each pod's veth holds; kind's CNI uses the first of the pod range."""

    address_v6: IPv6 | None = None
    pod_cidr_v6: Network6 | None = None
    pod_gateway_v6: IPv6 | None = None

    @property
    def gateway(self) -> ipaddress.IPv4Address:
        return self.pod_gateway or self.pod_cidr.network_address + 1

    def address_of(self, family: Family) -> Address | None:
        return self.address if family == 4 else self.address_v6

    def pod_cidr_of(self, family: Family) -> AnyNetwork | None:
        return self.pod_cidr if family == 4 else self.pod_cidr_v6

    def gateway_of(self, family: Family) -> Address | None:
        """The pod gateway of the family (the first address of the node's pod range unless declared)."""
        if family == 4:
            return self.gateway
        if self.pod_cidr_v6 is None:
            return None
        return self.pod_gateway_v6 or self.pod_cidr_v6.network_address + 1


class Pod(_Strict):
    name: str
    namespace: str = "default"
    node: str
    address: IPv4
    address_v6: IPv6 | None = None

    def addresses(self) -> tuple[Address, ...]:
        return (self.address,) + ((self.address_v6,) if self.address_v6 else ())


class ServicePort(_Strict):
    name: str | None = None
    protocol: Literal["TCP", "UDP", "SCTP"] = "TCP"
    port: int = Field(ge=1, le=65535)
    target_port: int = Field(ge=1, le=65535)
    node_port: int | None = Field(default=None, ge=1, le=65535)


class Endpoint(_Strict):
    address: Address
    """Of either family: an IPv6 endpoint serves the Service's `cluster_ip_v6`."""
    port: int = Field(ge=1, le=65535)
    node: str | None = None

    @property
    def target(self) -> str:
        """The endpoint as kube-proxy DNATs to it and hashes it: `addr:port`, `[addr]:port` for IPv6."""
        return f"[{self.address}]:{self.port}" if self.address.version == 6 else f"{self.address}:{self.port}"


class Service(_Strict):
    namespace: str
    name: str
    type: Literal["ClusterIP", "NodePort", "LoadBalancer"]
    cluster_ip: IPv4
    cluster_ip_v6: IPv6 | None = None
    """A dual-stack Service's IPv6 cluster IP (`ipFamilyPolicy: PreferDualStack` or `RequireDualStack`)."""
    external_traffic_policy: Literal["Cluster", "Local"] = "Cluster"
    session_affinity: Literal["None", "ClientIP"] = "None"
    ports: tuple[ServicePort, ...] = Field(min_length=1)
    endpoints: tuple[Endpoint, ...] = ()

    @model_validator(mode="after")
    def _node_ports_match_type(self) -> Service:
        for port in self.ports:
            if self.type == "ClusterIP" and port.node_port is not None:
                raise ValueError("a ClusterIP Service has no node_port")
            if self.type != "ClusterIP" and port.node_port is None:
                raise ValueError(f"a {self.type} Service needs a node_port on every port")
        for endpoint in self.endpoints:
            if endpoint.address.version == 6 and self.cluster_ip_v6 is None:
                raise ValueError(f"endpoint {endpoint.address} is IPv6, but the Service has no cluster_ip_v6")
        return self

    def cluster_ip_of(self, family: Family) -> Address | None:
        return self.cluster_ip if family == 4 else self.cluster_ip_v6

    def endpoints_of(self, family: Family) -> tuple[Endpoint, ...]:
        return tuple(e for e in self.endpoints if e.address.version == family)

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.name}"


class DumpFile(_Strict):
    file: str
    node: str
    moment: Moment
    family: Family = 4
    """4 for an iptables-save dump, 6 for an ip6tables-save one."""

    @field_validator("file")
    @classmethod
    def _plain_name(cls, value: str) -> str:
        if "/" in value or value.startswith(".") or not value.endswith(".rules"):
            raise ValueError("expected a file name in the scenario folder ending in .rules")
        return value


class Flow(_Strict):
    """A packet the scenario traces: its first packet, seen on `node`."""

    id: str = Field(pattern=r"^[a-z0-9][a-z0-9-]*$")
    title: str
    node: str
    client: str
    src: Address
    dst: Address
    protocol: Literal["tcp", "udp", "sctp"] = "tcp"
    dport: int = Field(ge=1, le=65535)
    sport: int | None = Field(default=None, ge=1, le=65535)
    returning_to: Address | None = None
    """Session affinity's returning client: within the affinity timeout the client was sent to this endpoint,
    so its address is in the `-m recent` list of that endpoint's chain. None: a first request (no list)."""

    @model_validator(mode="after")
    def _one_family(self) -> Flow:
        if self.src.version != self.dst.version:
            raise ValueError(f"src {self.src} and dst {self.dst} are of different families")
        if self.returning_to is not None and self.returning_to.version != self.src.version:
            raise ValueError(f"returning_to {self.returning_to} is not of the flow's family")
        return self

    @property
    def family(self) -> Family:
        """The flow's family, that of its addresses: it is traced in the node's dump of that family."""
        return 6 if self.src.version == 6 else 4


class Feature(_Strict):
    """The Service feature a scenario shows, for the "Service features" page: the scenario's `node` before
    and after the Service was created, and its flows, tell what the feature does to a node's rules."""

    id: str = Field(pattern=r"^[a-z0-9][a-z0-9-]*$")
    """The feature's anchor on the page."""
    title: str
    """The feature as a Service spec says it, e.g. `sessionAffinity: ClientIP`."""
    order: int
    """Where the page lists it: features in increasing order."""
    summary: str
    """What the feature does on a node, in a sentence or two (Markdown)."""
    node: str
    """The node whose before/after diff the page shows."""


class ScenarioMeta(_Strict):
    """The whole `scenario.yaml`."""

    title: str
    summary: str
    provenance: Provenance
    cluster: Cluster
    nodes: tuple[Node, ...] = Field(min_length=1)
    pods: tuple[Pod, ...] = ()
    services: tuple[Service, ...] = ()
    manifests: tuple[str, ...] = ()
    dumps: tuple[DumpFile, ...] = Field(min_length=1)
    flows: tuple[Flow, ...] = ()
    feature: Feature | None = None

    @model_validator(mode="after")
    def _facts_agree(self) -> ScenarioMeta:
        names = {n.name for n in self.nodes}
        if self.feature is not None and self.feature.node not in names:
            raise ValueError(f"feature: node {self.feature.node!r} is not one of the nodes ({', '.join(sorted(names))})")
        for kind, items in (("pods", self.pods), ("dumps", self.dumps), ("flows", self.flows)):
            for item in items:
                if item.node not in names:
                    raise ValueError(f"{kind}: node {item.node!r} is not one of the nodes ({', '.join(sorted(names))})")
        for node in self.nodes:
            if node.address not in self.cluster.underlay_cidr:
                raise ValueError(f"nodes: {node.name}'s address {node.address} is outside the underlay "
                                 f"{self.cluster.underlay_cidr}")
            if not node.pod_cidr.subnet_of(self.cluster.pod_cidr):
                raise ValueError(f"nodes: {node.name}'s pod range {node.pod_cidr} is outside the pod network "
                                 f"{self.cluster.pod_cidr}")
        for pod in self.pods:
            if pod.address not in self.node(pod.node).pod_cidr:
                raise ValueError(f"pods: {pod.name} at {pod.address} is outside {pod.node}'s pod range "
                                 f"{self.node(pod.node).pod_cidr}")
        self._ipv6_facts_agree()
        for service in self.services:
            for endpoint in service.endpoints:
                if endpoint.node is not None and endpoint.node not in names:
                    raise ValueError(f"services: endpoint {endpoint.address} names node {endpoint.node!r}, "
                                     f"which is not one of the nodes")
        files = [d.file for d in self.dumps]
        if len(set(files)) != len(files):
            raise ValueError("dumps: a file is listed twice")
        return self

    def _ipv6_facts_agree(self) -> None:
        """The IPv6 facts, checked as the IPv4 ones are: each in the range that holds it, which is declared."""
        cluster = self.cluster
        for node in self.nodes:
            if node.address_v6 is not None and not (cluster.underlay_cidr_v6 and node.address_v6 in cluster.underlay_cidr_v6):
                raise ValueError(f"nodes: {node.name}'s address_v6 {node.address_v6} is outside the underlay "
                                 f"underlay_cidr_v6 ({cluster.underlay_cidr_v6 or 'not declared'})")
            if node.pod_cidr_v6 is not None and not (cluster.pod_cidr_v6 and node.pod_cidr_v6.subnet_of(cluster.pod_cidr_v6)):
                raise ValueError(f"nodes: {node.name}'s pod_cidr_v6 {node.pod_cidr_v6} is outside the pod network "
                                 f"pod_cidr_v6 ({cluster.pod_cidr_v6 or 'not declared'})")
        for pod in self.pods:
            pod_range = self.node(pod.node).pod_cidr_v6
            if pod.address_v6 is not None and not (pod_range and pod.address_v6 in pod_range):
                raise ValueError(f"pods: {pod.name} at {pod.address_v6} is outside {pod.node}'s pod range "
                                 f"pod_cidr_v6 ({pod_range or 'not declared'})")

    def node(self, name: str) -> Node:
        return next(n for n in self.nodes if n.name == name)


def metadata_json_schema() -> dict:
    """The JSON Schema of scenario.yaml, for editors that validate YAML as it is typed."""
    schema = ScenarioMeta.model_json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "iptables-lens scenario.yaml"
    return schema
