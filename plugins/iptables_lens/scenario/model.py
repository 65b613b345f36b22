"""The schema of `scenario.yaml`, the facts about a cluster and its dumps, as pydantic models.

A dual-stack cluster's facts of the second family sit beside the IPv4 ones, under the same name ending in
`_v6` (`address_v6`, `pod_cidr_v6`, `cluster_ip_v6`); an endpoint or a flow is of one family, the one its
addresses are written in; a dump says which family it holds (`family: 6` for ip6tables-save's, 4 by default).

A cluster whose kube-proxy runs in nftables mode (`proxy_mode: nftables`) has `nft list ruleset` listings as
dumps (`.nft` files), one per node and moment: a ruleset holds the tables of both families (`table ip
kube-proxy` and `table ip6 kube-proxy`), so its entry names no family. An iptables-mode cluster has
iptables-save dumps (`.rules` files).

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
ProxyMode = Literal["iptables", "nftables"]
"""kube-proxy's mode, which decides what a node's dumps are: iptables-save text, or nft rulesets."""
DUMP_SUFFIXES: dict[ProxyMode, str] = {"iptables": ".rules", "nftables": ".nft"}
DUMP_DIALECTS: dict[ProxyMode, str] = {"iptables": "iptables", "nftables": "nft"}
"""The dialect (`dialects.DIALECTS`) of the dumps of each proxy mode."""


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
    proxy_mode: ProxyMode = "iptables"
    """What the dumps are: iptables-save text (`.rules`) in iptables mode, `nft list ruleset` listings (`.nft`)
    in nftables mode."""
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
    """The pod's port: the endpoint serves each of the Service's ports whose `target_port` it is."""
    node: str | None = None
    ready: bool = True
    """The EndpointSlice conditions kube-proxy reads: a pod passing its readiness probe is `serving`; one being
    deleted is `terminating`; `ready` is serving and not terminating (or anything, with
    `publishNotReadyAddresses`). kube-proxy uses the ready endpoints, and only when none is ready the serving
    terminating ones."""
    serving: bool = True
    terminating: bool = False

    @model_validator(mode="after")
    def _conditions_agree(self) -> Endpoint:
        # The EndpointSlice controller sets ready = publishNotReadyAddresses or (serving and not terminating).
        if self.serving and not self.terminating and not self.ready:
            raise ValueError(f"endpoint {self.address}: serving and not terminating, so it is ready")
        return self

    @property
    def target(self) -> str:
        """The endpoint as kube-proxy DNATs to it and hashes it: `addr:port`, `[addr]:port` for IPv6."""
        return f"[{self.address}]:{self.port}" if self.address.version == 6 else f"{self.address}:{self.port}"


ServiceType = Literal["ClusterIP", "NodePort", "LoadBalancer", "ExternalName"]
HEADLESS = "None"
"""A headless Service's `cluster_ip`, as `spec.clusterIP` writes it."""
DEFAULT_AFFINITY_TIMEOUT = 10800
"""`sessionAffinityConfig.clientIP.timeoutSeconds` when a ClientIP Service does not say (three hours)."""
TrafficPolicy = Literal["Cluster", "Local"]


class Service(_Strict):
    """A Service as its spec and status say, with its endpoints. kube-proxy writes nothing for a headless
    Service (`cluster_ip: None`) nor for an ExternalName one (`external_name`, no cluster IP)."""

    namespace: str
    name: str
    type: ServiceType
    cluster_ip: IPv4 | Literal["None"] | None = None
    """The cluster IP; `None` (the word) for a headless Service; absent for an ExternalName one."""
    cluster_ip_v6: IPv6 | None = None
    """A dual-stack Service's IPv6 cluster IP (`ipFamilyPolicy: PreferDualStack` or `RequireDualStack`)."""
    external_name: str | None = None
    """An ExternalName Service's DNS name (`spec.externalName`)."""
    external_traffic_policy: TrafficPolicy = "Cluster"
    internal_traffic_policy: TrafficPolicy = "Cluster"
    session_affinity: Literal["None", "ClientIP"] = "None"
    session_affinity_timeout: int | None = Field(default=None, ge=1, le=86400)
    """`sessionAffinityConfig.clientIP.timeoutSeconds` of a ClientIP Service; absent: 10800."""
    load_balancer_ips: tuple[Address, ...] = ()
    """A LoadBalancer Service's ingress IPs (`status.loadBalancer.ingress[].ip`)."""
    load_balancer_source_ranges: tuple[AnyNetwork, ...] = ()
    """The only clients a LoadBalancer Service's ingress IPs accept (`spec.loadBalancerSourceRanges`)."""
    external_ips: tuple[Address, ...] = ()
    """Addresses routed to the nodes that the Service answers on (`spec.externalIPs`)."""
    health_check_node_port: int | None = Field(default=None, ge=1, le=65535)
    """The node port a load balancer asks which nodes have local endpoints (LoadBalancer, externalTrafficPolicy
    Local)."""
    ports: tuple[ServicePort, ...] = ()
    endpoints: tuple[Endpoint, ...] = ()

    @model_validator(mode="after")
    def _spec_is_valid(self) -> Service:
        # As the API server's validation would, for what kube-proxy reads.
        if self.type == "ExternalName":
            if self.external_name is None or self.cluster_ip is not None or self.endpoints:
                raise ValueError("an ExternalName Service has an external_name, and no cluster_ip nor endpoints")
        elif self.external_name is not None:
            raise ValueError(f"a {self.type} Service has no external_name (only an ExternalName one has)")
        elif self.cluster_ip is None:
            raise ValueError(f"a {self.type} Service has a cluster_ip (None, the word, for a headless one)")
        if self.headless and self.type != "ClusterIP":
            raise ValueError(f"a headless Service (cluster_ip: None) is of type ClusterIP, not {self.type}")
        if self.proxied and not self.ports:
            raise ValueError("a Service kube-proxy serves has at least one port")
        names = [p.name for p in self.ports]
        if len(names) > 1 and (None in names or len(set(names)) != len(names)):
            raise ValueError("the ports of a Service with several ports have distinct names")
        for port in self.ports:
            if self.type == "ClusterIP" and port.node_port is not None:
                raise ValueError("a ClusterIP Service has no node_port")
            # A LoadBalancer Service may go without (allocateLoadBalancerNodePorts: false).
            if self.type == "NodePort" and port.node_port is None:
                raise ValueError("a NodePort Service needs a node_port on every port")
        if self.type != "LoadBalancer" and (self.load_balancer_ips or self.load_balancer_source_ranges):
            raise ValueError("only a LoadBalancer Service has load_balancer_ips and load_balancer_source_ranges")
        if self.external_traffic_policy == "Local" and not self.externally_accessible:
            raise ValueError("external_traffic_policy Local needs a NodePort or LoadBalancer Service, or external_ips")
        local_lb = self.type == "LoadBalancer" and self.external_traffic_policy == "Local"
        if local_lb != (self.health_check_node_port is not None):
            raise ValueError("a LoadBalancer Service with external_traffic_policy Local has a health_check_node_port, "
                             "and no other Service has one")
        if self.session_affinity_timeout is not None and self.session_affinity != "ClientIP":
            raise ValueError("session_affinity_timeout needs session_affinity ClientIP")
        targets = {p.target_port for p in self.ports}
        for endpoint in self.endpoints:
            if endpoint.address.version == 6 and self.cluster_ip_v6 is None:
                raise ValueError(f"endpoint {endpoint.address} is IPv6, but the Service has no cluster_ip_v6")
            if endpoint.port not in targets:
                raise ValueError(f"endpoint {endpoint.target}: its port is no port's target_port "
                                 f"({', '.join(str(t) for t in sorted(targets))})")
        return self

    @property
    def headless(self) -> bool:
        return self.cluster_ip == HEADLESS

    @property
    def proxied(self) -> bool:
        """Whether kube-proxy writes rules for the Service: it skips headless and ExternalName Services."""
        return not self.headless and self.type != "ExternalName"

    @property
    def externally_accessible(self) -> bool:
        """Reached from outside the cluster: by a node port, a load balancer IP or an external IP."""
        return self.type in ("NodePort", "LoadBalancer") or bool(self.external_ips)

    @property
    def affinity_timeout(self) -> int:
        """The seconds a ClientIP Service remembers a client's endpoint."""
        return self.session_affinity_timeout or DEFAULT_AFFINITY_TIMEOUT

    def cluster_ip_of(self, family: Family) -> Address | None:
        """The cluster IP of `family`; None for a Service without one (headless, ExternalName, single-stack)."""
        if family == 6:
            return self.cluster_ip_v6
        return self.cluster_ip if isinstance(self.cluster_ip, IPv4) else None

    def endpoints_of(self, family: Family) -> tuple[Endpoint, ...]:
        return tuple(e for e in self.endpoints if e.address.version == family)

    def endpoints_of_port(self, port: ServicePort, family: Family) -> tuple[Endpoint, ...]:
        """The endpoints of `family` that serve `port`: those at its target port."""
        return tuple(e for e in self.endpoints_of(family) if e.port == port.target_port)

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.name}"


class DumpFile(_Strict):
    file: str
    """A file in the scenario folder: `NAME.rules` (iptables-save) or `NAME.nft` (`nft list ruleset`)."""
    node: str
    moment: Moment
    family: Family = 4
    """4 for an iptables-save dump, 6 for an ip6tables-save one; an nft ruleset holds both and names none."""

    @field_validator("file")
    @classmethod
    def _plain_name(cls, value: str) -> str:
        if "/" in value or value.startswith(".") or not value.endswith(tuple(DUMP_SUFFIXES.values())):
            raise ValueError("expected a file name in the scenario folder ending in .rules (iptables-save) or .nft "
                             "(nft list ruleset)")
        return value

    @model_validator(mode="after")
    def _ruleset_names_no_family(self) -> DumpFile:
        if self.is_ruleset and "family" in self.model_fields_set:
            raise ValueError(f"{self.file} is an nft ruleset, which holds the tables of both families: it names no "
                             "family")
        return self

    @property
    def is_ruleset(self) -> bool:
        """Whether the file is an `nft list ruleset` listing, which holds both families' tables."""
        return self.file.endswith(DUMP_SUFFIXES["nftables"])

    @property
    def proxy_mode(self) -> ProxyMode:
        """The kube-proxy mode whose dumps the file's name says it is."""
        return "nftables" if self.is_ruleset else "iptables"

    def holds(self, family: Family) -> bool:
        """Whether the dump holds the tables of `family`: an nft ruleset holds both."""
        return self.is_ruleset or self.family == family


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
        self._one_dump_per_moment()
        return self

    def _one_dump_per_moment(self) -> None:
        """A node has one dump of each family at each moment (an nft ruleset is both families' dump)."""
        seen: dict[tuple[str, Moment, Family], str] = {}
        families: tuple[Family, ...] = (4, 6)
        for dump in self.dumps:
            for family in families:
                if not dump.holds(family):
                    continue
                key = (dump.node, dump.moment, family)
                if key in seen:
                    raise ValueError(f"dumps: {seen[key]} and {dump.file} are both {dump.node}'s IPv{family} rules "
                                     f"{dump.moment}")
                seen[key] = dump.file

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
