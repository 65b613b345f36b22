"""The schema of `scenario.yaml`, the facts about a cluster and its dumps, as pydantic models.

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
Network = ipaddress.IPv4Network
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


class Node(_Strict):
    name: str
    role: Literal["control-plane", "worker"]
    address: IPv4
    pod_cidr: Network
    pod_gateway: IPv4 | None = None
    """The address the host side of each pod's veth holds; kind's CNI uses the first of the pod range."""

    @property
    def gateway(self) -> ipaddress.IPv4Address:
        return self.pod_gateway or self.pod_cidr.network_address + 1


class Pod(_Strict):
    name: str
    namespace: str = "default"
    node: str
    address: IPv4


class ServicePort(_Strict):
    name: str | None = None
    protocol: Literal["TCP", "UDP", "SCTP"] = "TCP"
    port: int = Field(ge=1, le=65535)
    target_port: int = Field(ge=1, le=65535)
    node_port: int | None = Field(default=None, ge=1, le=65535)


class Endpoint(_Strict):
    address: IPv4
    port: int = Field(ge=1, le=65535)
    node: str | None = None


class Service(_Strict):
    namespace: str
    name: str
    type: Literal["ClusterIP", "NodePort", "LoadBalancer"]
    cluster_ip: IPv4
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
        return self

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.name}"


class DumpFile(_Strict):
    file: str
    node: str
    moment: Moment

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
    src: IPv4
    dst: IPv4
    protocol: Literal["tcp", "udp", "sctp"] = "tcp"
    dport: int = Field(ge=1, le=65535)
    sport: int | None = Field(default=None, ge=1, le=65535)


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

    @model_validator(mode="after")
    def _facts_agree(self) -> ScenarioMeta:
        names = {n.name for n in self.nodes}
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
        for service in self.services:
            for endpoint in service.endpoints:
                if endpoint.node is not None and endpoint.node not in names:
                    raise ValueError(f"services: endpoint {endpoint.address} names node {endpoint.node!r}, "
                                     f"which is not one of the nodes")
        files = [d.file for d in self.dumps]
        if len(set(files)) != len(files):
            raise ValueError("dumps: a file is listed twice")
        return self

    def node(self, name: str) -> Node:
        return next(n for n in self.nodes if n.name == name)


def metadata_json_schema() -> dict:
    """The JSON Schema of scenario.yaml, for editors that validate YAML as it is typed."""
    schema = ScenarioMeta.model_json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "iptables-lens scenario.yaml"
    return schema
