"""A node of an iptables-mode scenario as kube-proxy's nftables mode would program it on the same cluster: the
`ClusterSpec` the scenario's facts describe, kube-proxy v1.34's nftables tables for it (`kube.nft_listing`, no
kernel), and a flow traced through them.

`cluster_spec(scenario, node, moment, family)` reads scenario.yaml: each Service's type, cluster IP of the
family, ports, endpoints with their nodes and conditions, load balancer IPs, source ranges, external IPs,
traffic policies and session affinity; the node's address; the cluster's pod range (kube-proxy's
`--cluster-cidr`). At `before` the scenario's own Services are not there yet. Beside them are the Services
every kind cluster has and scenario.yaml does not list, the API server's `default/kubernetes` and CoreDNS's
`kube-system/kube-dns` (`kube.cluster_spec.kind_system_services`), both on the control-plane node, CoreDNS's two
pods at the second and third addresses of its pod range, as kind starts them. `undescribed` checks the spec
against the node's own iptables-save dump: kube-proxy v1.29's rules for the spec are the dump's, Service by
Service, or a line says where they part.

>>> from iptables_lens.scenario import load_scenario
>>> scenario = load_scenario("dumps/kind-session-affinity")
>>> spec = cluster_spec(scenario, "blog-worker", "after")
>>> [(s.key, s.session_affinity, s.affinity_seconds) for s in spec.services][2:]
[('default/web-affinity', 'ClientIP', 600)]
>>> undescribed(scenario, "blog-worker", "after", spec)
[]
>>> flow = scenario.meta.flows[1]
>>> sorted(affinity_sets(twin_ruleset(scenario, flow.node), flow))
['affinity-IV6OWX7Z-default/web-affinity/tcp/__10.244.2.2/8080']
"""

from __future__ import annotations

from dataclasses import dataclass

from iptables_lens.iptables.diff import diff_dumps
from iptables_lens.iptables.parse import parse
from iptables_lens.kube.cluster_spec import ClusterSpec, Endpoint, Port, ServiceSpec, kind_system_services
from iptables_lens.kube.nft_listing import synth_listing
from iptables_lens.kube.synth import synth_cluster
from iptables_lens.kube.synth_nftables import Layout
from iptables_lens.nft import parse_ruleset
from iptables_lens.nft.model import Ruleset
from iptables_lens.scenario.flows import affinity_sets
from iptables_lens.scenario.load import Scenario
from iptables_lens.scenario.model import HEADLESS, Family, Flow, Moment, Service
from iptables_lens.scenario.node import node_context
from iptables_lens.trace import Packet, Trace, trace
from iptables_lens.trace.packet import DEFAULT_SPORT

LAYOUT: Layout = "v1.34"
"""The rule layout of the twin: kube-proxy's nftables proxier of Kubernetes v1.34."""
KUBERNETES_VERSION = "v1.34"


def standing_services(scenario: Scenario) -> tuple[ServiceSpec, ...]:
    """The Services of every kind cluster, which scenario.yaml does not list, on its control-plane node (none
    without one): `default/kubernetes` and `kube-system/kube-dns`, IPv4 only (single-stack, as kubeadm makes
    them)."""
    control_plane = next((n for n in scenario.meta.nodes if n.role == "control-plane"), None)
    if control_plane is None:
        return ()
    first = control_plane.pod_cidr.network_address
    return kind_system_services(control_plane.name, str(control_plane.address), (str(first + 2), str(first + 3)))


def cluster_spec(scenario: Scenario, node: str, moment: Moment, family: Family = 4) -> ClusterSpec:
    """What kube-proxy's proxier of `family` on `node` sees at `moment`: the standing Services, then (after) the
    scenario's own, in scenario.yaml's order. A DumpError at the fact a spec cannot say: a node without an
    address of the family, an endpoint that does not serve every target port of its Service."""
    meta = scenario.meta
    where = next((i for i, n in enumerate(meta.nodes) if n.name == node), None)
    if where is None:
        raise scenario.metadata_file.problem(("nodes",), f"no node {node} to make kube-proxy's rules of")
    facts = meta.nodes[where]
    address = facts.address_of(family)
    if address is None:
        raise scenario.metadata_file.problem(("nodes", where), f"node {node} has no IPv{family} address")
    services = list(standing_services(scenario)) if family == 4 else []
    if moment == "after":
        for position, service in enumerate(meta.services):
            if family == 4 or service.cluster_ip_v6 is not None:
                services.append(_service_spec(scenario, position, service, family))
    pod_cidr = meta.cluster.pod_cidr_of(family)
    return ClusterSpec(tuple(services), node=node, node_ip=str(address),
                       pod_cidr=str(pod_cidr) if pod_cidr is not None else None, family=family)


def _service_spec(scenario: Scenario, position: int, service: Service, family: Family) -> ServiceSpec:
    if service.type == "ExternalName":
        cluster_ip = ""
    elif service.headless:
        cluster_ip = HEADLESS
    else:
        cluster_ip = str(service.cluster_ip_of(family))
    endpoints = _endpoints(scenario, position, service, family)
    try:
        return ServiceSpec(
            service.namespace, service.name, cluster_ip, type=service.type,
            ports=tuple(Port(p.port, p.target_port, p.protocol, p.name or "", p.node_port) for p in service.ports),
            endpoints=endpoints,
            external_traffic_policy=service.external_traffic_policy,
            internal_traffic_policy=service.internal_traffic_policy,
            session_affinity=service.session_affinity, affinity_seconds=service.affinity_timeout,
            load_balancer_ips=_of_family(service.load_balancer_ips, family),
            load_balancer_source_ranges=_of_family(service.load_balancer_source_ranges, family),
            external_ips=_of_family(service.external_ips, family),
            health_check_node_port=service.health_check_node_port,
            # RequireDualStack writes what PreferDualStack writes: the facts say only that both IPs are there.
            ip_family_policy="PreferDualStack" if service.cluster_ip_v6 is not None else "SingleStack")
    except ValueError as error:
        raise scenario.metadata_file.problem(("services", position), str(error)) from None


def _of_family(values: tuple, family: Family) -> tuple[str, ...]:
    return tuple(str(v) for v in values if v.version == family)


def _endpoints(scenario: Scenario, position: int, service: Service, family: Family) -> tuple[Endpoint, ...]:
    """The Service's endpoints of `family`, each once, in the order first listed; each must serve every target
    port, as a spec's endpoint does."""
    facts = service.endpoints_of(family)
    targets = {p.target_port for p in service.ports}
    found: dict[str, Endpoint] = {}
    for e in facts:
        found.setdefault(str(e.address), Endpoint(str(e.address), e.node or "", e.ready, e.serving, e.terminating))
    for address in found:
        served = {e.port for e in facts if str(e.address) == address}
        if served != targets:
            missing = ", ".join(str(p) for p in sorted(targets - served))
            raise scenario.metadata_file.problem(
                ("services", position, "endpoints"),
                f"endpoint {address} does not serve target port {missing}: kube-proxy's synthetic rules give each "
                "endpoint every target port of its Service")
    return tuple(found.values())


def undescribed(scenario: Scenario, node: str, moment: Moment, spec: ClusterSpec) -> list[str]:
    """Where the spec and the node's iptables-save dump of the spec's family at `moment` part: for each Service
    whose rules in the dump differ from those kube-proxy v1.29 writes for the spec (`kube.synth`), a line
    saying how, by Service port. Empty when they agree, or when the scenario has no such dump to compare with.
    (Rules of no Service, kind's and the kubelet's among them, are not kube-proxy's view of the facts.)"""
    dump = scenario.dump_for(node, moment, spec.family)
    if dump is None or isinstance(dump, Ruleset):
        return []
    diff = diff_dumps(dump, parse(synth_cluster(spec)))
    return [f"{group.service}: from the dump's rules to those of what scenario.yaml describes, {group.summary}"
            for group in diff.services if group.service is not None]


def twin_ruleset(scenario: Scenario, node: str, moment: Moment = "after") -> Ruleset:
    """kube-proxy's nftables tables on `node` at `moment` (layout `LAYOUT`), one per family the node has
    iptables-save dumps of, as `nft list ruleset` lists them."""
    families = sorted({d.family for d in scenario.meta.dumps if d.node == node and not d.is_ruleset}) or [4]
    listing = "".join(synth_listing(cluster_spec(scenario, node, moment, family), LAYOUT) for family in families)
    return parse_ruleset(listing, f"<kube-proxy {KUBERNETES_VERSION} nftables mode on {node}, {moment}>")


@dataclass(frozen=True)
class TwinTrace:
    """A flow traced through its node's nftables twin, with the affinity sets its client was taken to be in."""

    trace: Trace
    recent: frozenset[str]


def predict_twin(scenario: Scenario, flow: Flow, ruleset: Ruleset | None = None) -> TwinTrace:
    """Every outcome of `flow` through `ruleset` (by default its node's `twin_ruleset` after the change), on the
    node the scenario describes."""
    ruleset = ruleset if ruleset is not None else twin_ruleset(scenario, flow.node)
    packet = Packet(flow.src, flow.dst, flow.protocol, flow.sport or DEFAULT_SPORT, flow.dport)
    recent = affinity_sets(ruleset, flow)
    return TwinTrace(trace(ruleset, packet, node_context(scenario, flow.node), recent=recent), recent)
