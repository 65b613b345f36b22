"""The clusters the synthetic dumps are written for: Services, their ports and endpoints, and the node whose
dump it is, as kube-proxy v1.29 sees them; with the clusters the benchmarks, scale tests and scenarios use.

`kube.synth.synth_cluster(spec)` writes a `ClusterSpec`'s dump. A spec is of one IP family, as each of
kube-proxy's proxiers is: on a dual-stack node kube-proxy runs an IPv4 proxier writing `iptables` and an IPv6
one writing `ip6tables`, each seeing only its family's addresses (`kube.dual_stack` makes a spec's IPv6 side).

>>> spec = nodeport_spec(2, endpoints=3)
>>> [(s.key, s.ports[0].node_port, len(s.endpoints)) for s in spec.services]
[('bench/svc-00000', 30000, 3), ('bench/svc-00001', 30001, 3)]
"""

from __future__ import annotations

import ipaddress
import random
from dataclasses import dataclass, replace
from typing import Literal

Protocol = Literal["TCP", "UDP", "SCTP"]
# kube-proxy writes nothing for an ExternalName Service, nor for a headless one (cluster IP "None").
ServiceType = Literal["ClusterIP", "NodePort", "LoadBalancer", "ExternalName"]
HEADLESS = "None"
TrafficPolicy = Literal["Cluster", "Local"]
Affinity = Literal["None", "ClientIP"]
Family = Literal[4, 6]
# spec.ipFamilyPolicy: a SingleStack Service has a cluster IP of one family only (the cluster's first family
# unless spec.ipFamilies says otherwise), so the other family's proxier does not see it.
IPFamilyPolicy = Literal["SingleStack", "PreferDualStack", "RequireDualStack"]

POD_CIDR = "10.244.0.0/16"
# kind's dual-stack defaults: networking.podSubnet and serviceSubnet's IPv6 halves (node ranges are /64s of the
# pod subnet), and the IPv6 subnet of the Docker network "kind" its nodes are on.
POD_CIDR_V6 = "fd00:10:244::/56"
SERVICE_CIDR_V6 = "fd00:10:96::/112"
KIND_NODE_CIDR_V6 = "fc00:f853:ccd:e793::/64"
DEFAULT_AFFINITY_SECONDS = 10800  # v1.DefaultClientIPServiceAffinitySeconds
MAX_AFFINITY_SECONDS = 86400  # v1.MaxClientIPServiceAffinitySeconds
LARGE_CLUSTER_ENDPOINTS = 1000  # largeClusterEndpointsThreshold in proxier.go


def cluster_ip(index: int) -> str:
    n = 1000 + index  # leave 10.96.0.0/22 to system Services
    return f"10.96.{n // 250}.{n % 250 + 1}"


def pod_ip(index: int) -> str:
    return f"10.244.{index // 250}.{index % 250 + 2}"


@dataclass(frozen=True)
class Port:
    """One Service port. `name` is the port's name ("" for an unnamed port, as in the seed's Service)."""

    port: int = 80
    target_port: int = 8080
    protocol: Protocol = "TCP"
    name: str = ""
    node_port: int | None = None


@dataclass(frozen=True)
class Endpoint:
    """An endpoint: a pod's address (each Service port's `target_port` on it), the node it runs on, and its
    EndpointSlice conditions (a ready endpoint by default; a pod being deleted is `terminating`, and stays
    `serving` while it still passes its readiness probe). kube-proxy uses ready endpoints, falls back to
    serving-terminating ones, and never uses one that is not serving (`kube.endpoint_selection`)."""

    address: str
    node: str = ""
    ready: bool = True
    serving: bool = True
    terminating: bool = False

    def __post_init__(self) -> None:
        # The EndpointSlice controller marks a terminating pod not ready, and a ready pod serving.
        if self.ready and (self.terminating or not self.serving):
            raise ValueError(f"endpoint {self.address}: a ready endpoint is serving and not terminating")


@dataclass(frozen=True)
class ServiceSpec:
    """A Service as kube-proxy sees it.

    A LoadBalancer Service's `load_balancer_ips` are its status ingress IPs; kube-proxy v1.29 writes a
    KUBE-FW chain for it only when `load_balancer_source_ranges` is set too. Its ports may lack node ports
    (`allocateLoadBalancerNodePorts: false`). Its `health_check_node_port` counts only with
    `externalTrafficPolicy: Local`, as kube-proxy ignores it otherwise. `affinity_seconds` is
    `sessionAffinityConfig.clientIP.timeoutSeconds`.

    kube-proxy writes nothing for an ExternalName Service, nor for a headless one (`cluster_ip` `HEADLESS`):
    `proxied` is False for them.
    """

    namespace: str
    name: str
    cluster_ip: str
    ports: tuple[Port, ...] = (Port(),)
    endpoints: tuple[Endpoint, ...] = ()
    type: ServiceType = "ClusterIP"
    external_traffic_policy: TrafficPolicy = "Cluster"
    internal_traffic_policy: TrafficPolicy = "Cluster"
    session_affinity: Affinity = "None"
    affinity_seconds: int = DEFAULT_AFFINITY_SECONDS
    load_balancer_ips: tuple[str, ...] = ()
    load_balancer_source_ranges: tuple[str, ...] = ()
    external_ips: tuple[str, ...] = ()
    health_check_node_port: int | None = None
    ip_family_policy: IPFamilyPolicy = "SingleStack"

    def __post_init__(self) -> None:
        for port in self.ports:
            if self.type == "ClusterIP" and port.node_port is not None:
                raise ValueError(f"{self.key}: a {self.type} Service has no node ports")
            if self.type == "NodePort" and port.node_port is None:
                raise ValueError(f"{self.key}: a NodePort Service needs a node port on each port")
        if self.cluster_ip == HEADLESS and self.type != "ClusterIP":
            raise ValueError(f"{self.key}: only a ClusterIP Service can be headless")
        if self.load_balancer_ips and self.type != "LoadBalancer":
            raise ValueError(f"{self.key}: only a LoadBalancer Service has load balancer IPs")
        if self.external_traffic_policy == "Local" and self.type == "ClusterIP" and not self.external_ips:
            raise ValueError(f"{self.key}: externalTrafficPolicy applies to NodePort and LoadBalancer Services")
        if not 0 < self.affinity_seconds <= MAX_AFFINITY_SECONDS:
            raise ValueError(f"{self.key}: timeoutSeconds must be from 1 to {MAX_AFFINITY_SECONDS}")
        names = [p.name for p in self.ports]
        if len(names) > 1 and (len(set(names)) != len(names) or not all(names)):
            raise ValueError(f"{self.key}: the ports of a multi-port Service need distinct names")

    @property
    def proxied(self) -> bool:
        """Whether kube-proxy writes rules for the Service: not for an ExternalName or a headless one."""
        return self.type != "ExternalName" and self.cluster_ip not in (HEADLESS, "")

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.name}"

    def addresses(self) -> list[str]:
        """Every address and CIDR of the Service: cluster IP (none for a headless or ExternalName Service),
        endpoints, load balancer IPs and source ranges, external IPs."""
        own = [self.cluster_ip] if self.cluster_ip not in (HEADLESS, "") else []
        return [*own, *(e.address for e in self.endpoints), *self.load_balancer_ips,
                *self.load_balancer_source_ranges, *self.external_ips]

    def port_name(self, port: Port) -> str:
        """kube-proxy's ServicePortName string: `namespace/name`, plus `:port` for a named port."""
        return f"{self.key}:{port.name}" if port.name else self.key


@dataclass(frozen=True)
class KindNode:
    """The chains a kind node has besides kube-proxy's: Docker's embedded DNS (DNAT to 127.0.0.11 on two
    random ports, fixed here) and kind's masquerade agent."""

    gateway: str = "172.20.0.1"
    dns_tcp_port: int = 39649
    dns_udp_port: int = 59039


@dataclass(frozen=True)
class ClusterSpec:
    """Everything one node's dump of one IP family depends on: the Services, which node it is (endpoints on
    `node` are local), the node's IP (for load balancer source ranges), the cluster's pod CIDR (kube-proxy's
    local traffic detector, `--cluster-cidr`), and whether it is a kind node.

    `family` 6 is what kube-proxy's IPv6 proxier writes into `ip6tables`: every address of the spec is then
    an IPv6 one. `pod_cidr` None is kube-proxy's no-op local traffic detector (no `--cluster-cidr`, as in its
    own unit tests): no rule then tells pods from other sources.

    `large_cluster_mode`: None decides as kube-proxy does (more than 1,000 endpoints in all: the
    endpoint chains and the rules jumping to them lose their comments); True or False forces it.

    `masquerade_all` is kube-proxy's `--masquerade-all`: traffic to a cluster IP is marked for masquerade
    whatever its source, in place of the local traffic detector's rule for sources outside `pod_cidr`.
    """

    services: tuple[ServiceSpec, ...]
    node: str = "node-0"
    node_ip: str = "172.20.0.2"
    pod_cidr: str | None = POD_CIDR
    kind: KindNode | None = None
    large_cluster_mode: bool | None = None
    family: Family = 4
    masquerade_all: bool = False

    def __post_init__(self) -> None:
        if self.kind is not None and self.pod_cidr is None:
            raise ValueError("a kind node's masquerade agent needs the pod CIDR")
        # One proxier sees one family: an address of the other family is a mistake in the spec. (A colon
        # tells the families apart; the generator parses no address it does not need to.)
        v6 = self.family == 6
        for address in [self.node_ip, self.pod_cidr or ""] + [a for s in self.services for a in s.addresses()]:
            if address and (":" in address) != v6:
                raise ValueError(f"{address} is not an IPv{self.family} address, in an IPv{self.family} spec")


def is_large_cluster(spec: ClusterSpec) -> bool:
    """Whether kube-proxy would drop the per-endpoint comments: more than 1,000 endpoints over all Service
    ports (`proxier.largeClusterMode`), unless the spec forces it one way."""
    if spec.large_cluster_mode is not None:
        return spec.large_cluster_mode
    total = sum(len(s.endpoints) * len(s.ports) for s in spec.services if s.proxied)
    return total > LARGE_CLUSTER_ENDPOINTS


def kind_system_services(control_plane: str = "blog-control-plane", api_server: str = "172.20.0.4",
                         dns_pods: tuple[str, str] = ("10.244.0.2", "10.244.0.3")) -> tuple[ServiceSpec, ...]:
    """The Services every kind cluster has, as in the seed scenario: default/kubernetes (the API server on
    the control-plane node) and kube-system/kube-dns (two CoreDNS pods on the control-plane node)."""
    kubernetes = ServiceSpec("default", "kubernetes", "10.96.0.1", ports=(Port(443, 6443, name="https"),),
                             endpoints=(Endpoint(api_server, control_plane),))
    dns = ServiceSpec("kube-system", "kube-dns", "10.96.0.10",
                      ports=(Port(53, 53, "UDP", "dns"), Port(53, 53, "TCP", "dns-tcp"),
                             Port(9153, 9153, "TCP", "metrics")),
                      endpoints=tuple(Endpoint(ip, control_plane) for ip in dns_pods))
    return (kubernetes, dns)


def nodeport_spec(services: int, endpoints: int = 5, namespace: str = "bench") -> ClusterSpec:
    """The benchmarks' cluster: `services` NodePort Services (TCP 80 -> 8080, node ports from 30000), each
    with `endpoints` endpoints on other nodes (pods `pod_ip(0)`, `pod_ip(1)`, ... in turn).

    Past 1,000 endpoints kube-proxy drops the per-endpoint comments; `replace(spec, large_cluster_mode=False)`
    keeps them, as the benchmarks and the scale tests do (every rule then names its Service)."""
    specs = []
    pod = 0
    for index in range(services):
        eps = []
        for _ in range(endpoints):
            eps.append(Endpoint(pod_ip(pod), "elsewhere"))
            pod += 1
        specs.append(ServiceSpec(namespace, f"svc-{index:05d}", cluster_ip(index), type="NodePort",
                                 ports=(Port(80, 8080, node_port=30000 + index),), endpoints=tuple(eps)))
    return ClusterSpec(tuple(specs))


# The kinds synth_mixed draws from, with their weights (roughly a cluster's mix: mostly ClusterIP).
MIX_KINDS: dict[str, int] = {
    "clusterip": 35,
    "clusterip-affinity": 8,
    "multiport": 8,
    "nodeport": 15,
    "nodeport-affinity": 4,
    "nodeport-local": 8,
    "loadbalancer": 8,
    "loadbalancer-firewall": 4,
    "loadbalancer-local": 5,
    "no-endpoints": 5,
}
PODS_PER_NODE = 250  # each node's pod range is a /24 of 10.244.0.0/16
SOURCE_RANGES = ("203.0.113.0/24", "198.51.100.0/24")


def _lb_ip(index: int) -> str:
    return str(ipaddress.IPv4Address("198.18.0.1") + index)  # 198.18.0.0/15, the benchmarking range


def mixed_spec(n: int, endpoints: int = 5, seed: int = 0, namespace: str = "mix") -> ClusterSpec:
    """A seeded mix of `n` Services of every kind in `MIX_KINDS`, each with `endpoints` endpoints (none for
    the no-endpoints kind) spread at random over the cluster's nodes; the dump is node-0's.

    The first Services take each kind once, in `MIX_KINDS` order, so any `n >= len(MIX_KINDS)` has them
    all; the rest are drawn by weight. The cluster has about 200 pods a node and at least three nodes, so
    some endpoints are local to node-0 and most are not; node k's pods are 10.244.k.2 and up, which caps
    the endpoints at 64,000. Names say the kind: `mix/nodeport-local-00005`.
    """
    rng = random.Random(seed)
    kinds = list(MIX_KINDS)
    drawn = kinds[:n] + rng.choices(kinds, weights=list(MIX_KINDS.values()), k=max(0, n - len(kinds)))
    total = sum(0 if kind == "no-endpoints" else endpoints for kind in drawn)
    if total > 256 * PODS_PER_NODE:
        raise ValueError(f"{total} endpoints do not fit 256 nodes' /24 pod ranges in {POD_CIDR}")
    nodes = max(3, min(256, -(-total // 200)))  # 200 pods a node on average, up to 250 where the draw puts more
    pods_on = [0] * nodes
    next_node_port = 30000
    lb_count = 0
    fw_count = 0

    def node_port() -> int:
        nonlocal next_node_port
        next_node_port += 1
        return next_node_port - 1

    def place() -> Endpoint:
        node = rng.randrange(nodes)
        while pods_on[node] >= PODS_PER_NODE:
            node = (node + 1) % nodes
        pods_on[node] += 1
        return Endpoint(f"10.244.{node}.{pods_on[node] + 1}", f"node-{node}")

    services = []
    for index, kind in enumerate(drawn):
        eps = () if kind == "no-endpoints" else tuple(place() for _ in range(endpoints))
        base = ServiceSpec(namespace, f"{kind}-{index:05d}", cluster_ip(index), endpoints=eps)
        affinity: Affinity = "ClientIP" if kind.endswith("-affinity") else "None"
        policy: TrafficPolicy = "Local" if kind.endswith("-local") else "Cluster"
        if kind == "multiport":
            ports = (Port(80, 8080, name="http"), Port(443, 8443, name="https"), Port(53, 5353, "UDP", "dns"))
            services.append(replace(base, ports=ports))
        elif kind.startswith("clusterip"):
            services.append(replace(base, session_affinity=affinity))
        elif kind.startswith("loadbalancer"):
            ranges: tuple[str, ...] = ()
            if kind == "loadbalancer-firewall":
                # Every other firewalled Service also allows the node's own network (allowFromNode).
                ranges = SOURCE_RANGES[:1] + (("172.20.0.0/16",) if fw_count % 2 else ())
                fw_count += 1
            port = Port(80, 8080, node_port=node_port())
            health = node_port() if policy == "Local" else None
            services.append(replace(base, type="LoadBalancer", ports=(port,), external_traffic_policy=policy,
                                    load_balancer_ips=(_lb_ip(lb_count),), load_balancer_source_ranges=ranges,
                                    health_check_node_port=health))
            lb_count += 1
        else:  # nodeport, nodeport-affinity, nodeport-local, no-endpoints
            services.append(replace(base, type="NodePort", ports=(Port(80, 8080, node_port=node_port()),),
                                    external_traffic_policy=policy, session_affinity=affinity))
    return ClusterSpec(tuple(services), node="node-0", node_ip="172.20.0.2")
