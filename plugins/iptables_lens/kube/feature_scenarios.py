"""One generated scenario per Service feature kube-proxy v1.29 implements in iptables mode, on the seed's kind
cluster (`kube.kind_cluster`), each with the flows that tell the feature apart; `kube.synth_scenario` writes
them as folders (`iptables-lens synth scenario KIND`, into `dumps/kind-KIND/`).

Each scenario's `feature` names the node whose before/after diff shows the feature on the "Service features"
page. Its Services are in the default namespace, its pods at 10.244.N.2 (and .3) on worker N, its clients at
10.244.N.10 (a pod) or 172.20.0.100 (a host on the Docker network, outside the cluster).

>>> sorted(FEATURE_SCENARIOS)[:3]
['external-ips', 'headless-externalname', 'internal-traffic-local']
>>> FEATURE_SCENARIOS["session-affinity"]().services[0].affinity_seconds
600
"""

from __future__ import annotations

from collections.abc import Callable

from iptables_lens.kube.cluster_spec import HEADLESS, Endpoint, Port, ServiceSpec
from iptables_lens.kube.kind_cluster import (
    CONTROL_PLANE,
    OUTSIDE,
    OUTSIDE_CLIENT,
    WORKER_1,
    WORKER_2,
    WORKER_3,
    ClusterNode,
    Feature,
    ScenarioPod,
    ScenarioSpec,
    flow,
    pod_client,
)

WORKERS = (CONTROL_PLANE, WORKER_1, WORKER_2)
WITH_WORKER_3 = (CONTROL_PLANE, WORKER_1, WORKER_2, WORKER_3)
GENERATED = ("as kube-proxy v1.29 writes them, with the seed's kind chains (DOCKER_*, KIND-MASQ-AGENT) and the "
             "kubernetes and kube-dns Services")


def _pods(app: str, host: int = 2, nodes: tuple[ClusterNode, ...] = (WORKER_1, WORKER_2)) -> tuple[ScenarioPod, ...]:
    """`app`'s pods, `app-0` on the first node and so on, each at the `host`th address of its node's range."""
    return tuple(ScenarioPod(f"{app}-{i}", node, node.pod(host)) for i, node in enumerate(nodes))


def _endpoints(pods: tuple[ScenarioPod, ...]) -> tuple[Endpoint, ...]:
    return tuple(Endpoint(p.address, p.node.name) for p in pods)


def _multiport() -> ScenarioSpec:
    pods = _pods("web-multiport")
    service = ServiceSpec("default", "web-multiport", "10.96.60.10", endpoints=_endpoints(pods), ports=(
        Port(80, 8080, "TCP", "http"), Port(443, 8443, "TCP", "https"), Port(443, 8443, "UDP", "quic")))
    client, src = pod_client(WORKER_1), WORKER_1.pod(10)
    flows = (
        flow("pod-to-http", "A pod on blog-worker calls the Service's http port, 80/TCP", WORKER_1, client, src,
             service.cluster_ip, 80),
        flow("pod-to-https", "A pod on blog-worker calls the Service's https port, 443/TCP", WORKER_1, client, src,
             service.cluster_ip, 443),
        flow("pod-to-quic", "A pod on blog-worker calls the Service's quic port, 443/UDP", WORKER_1, client, src,
             service.cluster_ip, 443, "udp"),
    )
    feature = Feature(
        "multiport", "Several named ports", 15,
        "Each port is a Service port of its own: kube-proxy hashes the Service's name with the port's name and "
        "protocol into its chain names, so http, https and quic each get a `KUBE-SVC-*` chain and, per endpoint, a "
        "`KUBE-SEP-*` chain DNATing to that port's target port. 443/TCP and 443/UDP share a number but not a chain.",
        WORKER_1)
    return ScenarioSpec(
        "multiport", "ClusterIP Service with several named ports (generated)",
        "Two web pods behind a ClusterIP Service with three named ports: http (80/TCP to 8080), https (443/TCP to "
        "8443) and quic (443/UDP to 8443, HTTP/3), one pod on each worker of the seed's kind cluster. "
        f"blog-worker's rules before and after the Service was created, {GENERATED}.",
        WORKERS, (WORKER_1,), (service,), pods, flows, feature=feature)


def _loadbalancer() -> ScenarioSpec:
    pods = _pods("web-lb")
    service = ServiceSpec("default", "web-lb", "10.96.61.10", type="LoadBalancer", endpoints=_endpoints(pods),
                          ports=(Port(80, 8080, node_port=30100),), load_balancer_ips=("172.20.255.200",))
    flows = (
        flow("outside-to-lb-ip", "A client outside the cluster calls the load balancer IP, announced by blog-worker",
             WORKER_1, OUTSIDE, OUTSIDE_CLIENT, "172.20.255.200", 80),
        flow("outside-to-nodeport", "A client outside the cluster calls the Service's node port on blog-worker",
             WORKER_1, OUTSIDE, OUTSIDE_CLIENT, WORKER_1.address, 30100),
    )
    feature = Feature(
        "loadbalancer", "`type: LoadBalancer`", 30,
        "A LoadBalancer Service is a NodePort Service whose ingress IP kube-proxy also matches, in nat "
        "`KUBE-SERVICES`, jumping to the same `KUBE-EXT-*` chain as the node port: the packet is marked for "
        "masquerading and sent to any endpoint in the cluster.", WORKER_1)
    return ScenarioSpec(
        "loadbalancer", "LoadBalancer Service with an ingress IP (generated)",
        "Two web pods behind a LoadBalancer Service on port 80 (node port 30100), one on each worker of the "
        "seed's kind cluster. Its ingress IP, 172.20.255.200, comes from the top of the kind Docker network, as "
        "cloud-provider-kind or MetalLB hand them out; MetalLB in layer 2 mode answers for it from one node, here "
        f"blog-worker. blog-worker's rules before and after the Service was created, {GENERATED}.",
        WORKERS, (WORKER_1,), (service,), pods, flows, feature=feature)


def _source_ranges() -> ScenarioSpec:
    pods = _pods("web-lb-ranges")
    lb_ip = "172.20.255.201"
    service = ServiceSpec("default", "web-lb-ranges", "10.96.62.10", type="LoadBalancer", endpoints=_endpoints(pods),
                          ports=(Port(80, 8080, node_port=30101),), load_balancer_ips=(lb_ip,),
                          load_balancer_source_ranges=("172.20.100.0/24",))
    inside = "a host on the underlay network inside the source range 172.20.100.0/24 (an address chosen for this flow)"
    flows = (
        flow("allowed-client-to-lb-ip", "A client inside the source ranges calls the load balancer IP", WORKER_1,
             inside, "172.20.100.10", lb_ip, 80),
        flow("other-client-to-lb-ip", "A client outside the source ranges calls the load balancer IP", WORKER_1,
             OUTSIDE, OUTSIDE_CLIENT, lb_ip, 80),
        flow("other-client-to-nodeport", "A client outside the source ranges calls the Service's node port",
             WORKER_1, OUTSIDE, OUTSIDE_CLIENT, WORKER_1.address, 30101),
    )
    feature = Feature(
        "loadbalancer-source-ranges", "`loadBalancerSourceRanges`", 40,
        "The load balancer IP's rule jumps to a `KUBE-FW-*` chain first, which lets each source range through to "
        "`KUBE-EXT-*`; anything else falls through and filter `KUBE-PROXY-FIREWALL` drops it. The ranges guard the "
        "load balancer IP only: the node port stays open to every client.", WORKER_1)
    return ScenarioSpec(
        "loadbalancer-source-ranges", "LoadBalancer Service with loadBalancerSourceRanges (generated)",
        "Two web pods behind a LoadBalancer Service on port 80 (node port 30101, ingress IP 172.20.255.201) that "
        "accepts clients from 172.20.100.0/24 only, one pod on each worker of the seed's kind cluster. The range "
        "and both clients are on the kind Docker network, so that they reach the nodes without routing. "
        f"blog-worker's rules before and after the Service was created, {GENERATED}.",
        WORKERS, (WORKER_1,), (service,), pods, flows, feature=feature)


def _external_ips() -> ScenarioSpec:
    pods = _pods("web-external-ip")
    external_ip = "172.20.255.210"
    service = ServiceSpec("default", "web-external-ip", "10.96.63.10", endpoints=_endpoints(pods),
                          ports=(Port(80, 8080),), external_ips=(external_ip,))
    flows = (
        flow("outside-to-external-ip", "A client outside the cluster calls the external IP, routed to blog-worker",
             WORKER_1, OUTSIDE, OUTSIDE_CLIENT, external_ip, 80),
    )
    feature = Feature(
        "external-ips", "`externalIPs`", 50,
        "kube-proxy matches each external IP and port in nat `KUBE-SERVICES` and jumps to the Service's `KUBE-EXT-*` "
        "chain, as for a node port: the packet is marked for masquerading and sent to any endpoint. Getting the "
        "address to a node is the network's job, not kube-proxy's.", WORKER_1)
    return ScenarioSpec(
        "external-ips", "ClusterIP Service with an external IP (generated)",
        "Two web pods behind a ClusterIP Service on port 80 with the external IP 172.20.255.210, an address of the "
        "kind Docker network routed to the nodes, one pod on each worker of the seed's kind cluster. blog-worker's "
        f"rules before and after the Service was created, {GENERATED}.",
        WORKERS, (WORKER_1,), (service,), pods, flows, feature=feature)


def _session_affinity() -> ScenarioSpec:
    pods = _pods("web-affinity")
    service = ServiceSpec("default", "web-affinity", "10.96.64.10", endpoints=_endpoints(pods), ports=(Port(80, 8080),),
                          session_affinity="ClientIP", affinity_seconds=600)
    client, src = pod_client(WORKER_1), WORKER_1.pod(10)
    flows = (
        flow("first-request", "A pod on blog-worker calls the Service for the first time", WORKER_1, client, src,
             service.cluster_ip, 80),
        flow("returning-client", "The same pod calls again within 600 seconds, after it was sent to web-affinity-1",
             WORKER_1, client, src, service.cluster_ip, 80, returning_to=pods[1].address),
    )
    feature = Feature(
        "session-affinity", "`sessionAffinity: ClientIP`", 60,
        "Each endpoint chain records the client's address in a `recent` list named after it as it DNATs; the "
        "Service chain first checks those lists (`--rcheck --seconds 600`) and sends a client seen within the "
        "timeout back to the same endpoint. A new client is balanced as usual.", WORKER_1)
    return ScenarioSpec(
        "session-affinity", "ClusterIP Service with sessionAffinity ClientIP (generated)",
        "Two web pods behind a ClusterIP Service on port 80 with sessionAffinity: ClientIP and a timeout of 600 "
        "seconds, one pod on each worker of the seed's kind cluster. blog-worker's rules before and after the "
        f"Service was created, {GENERATED}.",
        WORKERS, (WORKER_1,), (service,), pods, flows, feature=feature)


def _loadbalancer_local() -> ScenarioSpec:
    pods = _pods("web-lb-local")
    lb_ip = "172.20.255.202"
    service = ServiceSpec("default", "web-lb-local", "10.96.65.10", type="LoadBalancer", endpoints=_endpoints(pods),
                          ports=(Port(80, 8080, node_port=30102),), load_balancer_ips=(lb_ip,),
                          external_traffic_policy="Local", health_check_node_port=31102)
    checker = "the load balancer's health checker, a host on the underlay network (an address chosen for this flow)"
    flows = (
        flow("outside-to-local-endpoint", "A client outside the cluster calls the load balancer IP on blog-worker, "
             "which has an endpoint", WORKER_1, OUTSIDE, OUTSIDE_CLIENT, lb_ip, 80),
        flow("outside-to-no-local-endpoint", "A client outside the cluster calls the load balancer IP on "
             "blog-worker3, which has no endpoint", WORKER_3, OUTSIDE, OUTSIDE_CLIENT, lb_ip, 80),
        flow("health-check", "The load balancer asks blog-worker3's health check node port whether it has "
             "endpoints", WORKER_3, checker, OUTSIDE_CLIENT, WORKER_3.address, 31102),
    )
    feature = Feature(
        "external-traffic-policy-local", "`externalTrafficPolicy: Local`", 70,
        "Outside traffic goes only to the node's own endpoints, through a `KUBE-SVL-*` chain, and keeps the client's "
        "address: `KUBE-EXT-*` masquerades only what the node itself sends. A node without an endpoint drops it in "
        "filter `KUBE-EXTERNAL-SERVICES`; filter `KUBE-NODEPORTS` accepts the health check node port, where "
        "kube-proxy tells the load balancer which nodes have endpoints.", WORKER_1)
    return ScenarioSpec(
        "loadbalancer-local", "LoadBalancer Service with externalTrafficPolicy Local (generated)",
        "Two web pods behind a LoadBalancer Service on port 80 (node port 30102, ingress IP 172.20.255.202, health "
        "check node port 31102) with externalTrafficPolicy: Local, on blog-worker and blog-worker2 of the seed's "
        "kind cluster with a third worker added. blog-worker's and blog-worker3's rules before and after the "
        f"Service was created, {GENERATED}.",
        WITH_WORKER_3, (WORKER_1, WORKER_3), (service,), pods, flows, feature=feature)


def _internal_traffic_local() -> ScenarioSpec:
    pods = _pods("web-internal-local")
    service = ServiceSpec("default", "web-internal-local", "10.96.66.10", endpoints=_endpoints(pods),
                          ports=(Port(80, 8080),), internal_traffic_policy="Local")
    flows = (
        flow("pod-on-node-with-local-endpoint", "A pod on blog-worker, which has an endpoint, calls the cluster IP",
             WORKER_1, pod_client(WORKER_1), WORKER_1.pod(10), service.cluster_ip, 80),
        flow("pod-on-node-without-local-endpoint", "A pod on blog-worker3, which has no endpoint, calls the cluster "
             "IP", WORKER_3, pod_client(WORKER_3), WORKER_3.pod(10), service.cluster_ip, 80),
    )
    feature = Feature(
        "internal-traffic-policy-local", "`internalTrafficPolicy: Local`", 80,
        "The cluster IP's rule jumps to a `KUBE-SVL-*` chain that holds only the node's own endpoints; a node without "
        "one has no such rule, and filter `KUBE-SERVICES` drops the pod's packet instead.", WORKER_1)
    return ScenarioSpec(
        "internal-traffic-local", "ClusterIP Service with internalTrafficPolicy Local (generated)",
        "Two web pods behind a ClusterIP Service on port 80 with internalTrafficPolicy: Local, on blog-worker and "
        "blog-worker2 of the seed's kind cluster with a third worker added. blog-worker's and blog-worker3's rules "
        f"before and after the Service was created, {GENERATED}.",
        WITH_WORKER_3, (WORKER_1, WORKER_3), (service,), pods, flows, feature=feature)


def _no_endpoints() -> ScenarioSpec:
    pods = _pods("web-no-local", nodes=(WORKER_2,))
    empty = ServiceSpec("default", "web-no-endpoints", "10.96.67.10", type="NodePort",
                        ports=(Port(80, 8080, node_port=30103),))
    elsewhere = ServiceSpec("default", "web-no-local", "10.96.67.20", type="NodePort", endpoints=_endpoints(pods),
                            ports=(Port(80, 8080, node_port=30104),), external_traffic_policy="Local")
    client, src = pod_client(WORKER_1), WORKER_1.pod(10)
    flows = (
        flow("pod-to-no-endpoints", "A pod on blog-worker calls the cluster IP of the Service without endpoints",
             WORKER_1, client, src, empty.cluster_ip, 80),
        flow("outside-to-no-endpoints", "A client outside the cluster calls the node port of the Service without "
             "endpoints", WORKER_1, OUTSIDE, OUTSIDE_CLIENT, WORKER_1.address, 30103),
        flow("outside-to-no-local-endpoint", "A client outside the cluster calls the node port of the Local Service "
             "on blog-worker, which has no endpoint of it", WORKER_1, OUTSIDE, OUTSIDE_CLIENT, WORKER_1.address, 30104),
        flow("pod-to-no-local-endpoint", "A pod on blog-worker calls the cluster IP of the Local Service", WORKER_1,
             client, src, elsewhere.cluster_ip, 80),
    )
    feature = Feature(
        "no-endpoints", "No endpoints", 90,
        "A Service with no usable endpoint anywhere gets no nat rule: filter `KUBE-SERVICES` REJECTs its cluster "
        "IP and filter `KUBE-EXTERNAL-SERVICES` its node port, so clients are refused at once. A Service whose "
        "endpoints are all on other nodes under externalTrafficPolicy: Local is DROPped instead, and only what "
        "comes from outside: pods still reach it.",
        WORKER_1)
    return ScenarioSpec(
        "no-endpoints", "NodePort Services without endpoints, and without local ones (generated)",
        "Two NodePort Services on the seed's kind cluster: web-no-endpoints (node port 30103) selects no pod, and "
        "web-no-local (node port 30104, externalTrafficPolicy: Local) has its only pod on blog-worker2. "
        f"blog-worker's rules before and after the Services were created, {GENERATED}.",
        WORKERS, (WORKER_1,), (empty, elsewhere), pods, flows, feature=feature)


def _terminating_endpoints() -> ScenarioSpec:
    pods = _pods("web-draining")
    service = ServiceSpec("default", "web-draining", "10.96.68.10", ports=(Port(80, 8080),), endpoints=(
        Endpoint(pods[0].address, WORKER_1.name, ready=False, serving=True, terminating=True),
        Endpoint(pods[1].address, WORKER_2.name, ready=False, serving=False, terminating=True)))
    flows = (
        flow("pod-to-draining-service", "A pod on blog-worker2 calls the Service while both its pods terminate",
             WORKER_2, pod_client(WORKER_2), WORKER_2.pod(10), service.cluster_ip, 80),
    )
    feature = Feature(
        "terminating-endpoints", "Terminating endpoints", 100,
        "When no endpoint is ready, kube-proxy falls back to the terminating endpoints that still pass their "
        "readiness probe (serving), so a Service being rolled over keeps answering: its chains hold only "
        "web-draining-0, and the terminating pod that no longer serves gets no endpoint chain at all.", WORKER_2)
    return ScenarioSpec(
        "terminating-endpoints", "ClusterIP Service whose pods are all terminating (generated)",
        "A ClusterIP Service on port 80 whose two pods are being deleted: web-draining-0 on blog-worker still "
        "serves, web-draining-1 on blog-worker2 no longer does. blog-worker2's rules before and after the "
        f"Service was created, {GENERATED}.",
        WORKERS, (WORKER_2,), (service,), pods, flows, feature=feature)


def _udp_sctp() -> ScenarioSpec:
    syslog_pods, diameter_pods = _pods("syslog"), _pods("diameter", host=3)
    syslog = ServiceSpec("default", "syslog", "10.96.69.10", ports=(Port(514, 5514, "UDP"),),
                         endpoints=_endpoints(syslog_pods))
    diameter = ServiceSpec("default", "diameter", "10.96.69.20", ports=(Port(3868, 3868, "SCTP"),),
                           endpoints=_endpoints(diameter_pods))
    client, src = pod_client(WORKER_1), WORKER_1.pod(10)
    flows = (
        flow("pod-to-udp-service", "A pod on blog-worker sends a datagram to the syslog Service, 514/UDP", WORKER_1,
             client, src, syslog.cluster_ip, 514, "udp"),
        flow("pod-to-sctp-service", "A pod on blog-worker opens an association to the diameter Service, 3868/SCTP",
             WORKER_1, client, src, diameter.cluster_ip, 3868, "sctp"),
    )
    feature = Feature(
        "udp-sctp", "UDP and SCTP", 110,
        "The same chains as for TCP, with `-p udp` or `-p sctp` and the protocol in every chain's hash. The "
        "first packet of a UDP flow or an SCTP association is balanced; conntrack sends the rest after it.",
        WORKER_1)
    return ScenarioSpec(
        "udp-sctp", "UDP and SCTP Services (generated)",
        "Two ClusterIP Services on the seed's kind cluster, each with a pod on each worker: syslog on 514/UDP "
        "(target port 5514) and diameter on 3868/SCTP. blog-worker's rules before and after the Services were "
        f"created, {GENERATED}.",
        WORKERS, (WORKER_1,), (syslog, diameter), syslog_pods + diameter_pods, flows, feature=feature)


def _headless_externalname() -> ScenarioSpec:
    pods = _pods("web-headless")
    headless = ServiceSpec("default", "web-headless", HEADLESS, ports=(Port(80, 8080),), endpoints=_endpoints(pods))
    external = ServiceSpec("default", "web-external-name", "", type="ExternalName", ports=())
    flows = (
        flow("pod-to-headless-pod", "A pod on blog-worker calls web-headless-1 at the address DNS gives for "
             "web-headless", WORKER_1, pod_client(WORKER_1), WORKER_1.pod(10), pods[1].address, 8080),
    )
    feature = Feature(
        "headless-externalname", "Headless and ExternalName", 120,
        "kube-proxy writes nothing for either: a headless Service (clusterIP: None) is only DNS records of its "
        "pods' addresses, an ExternalName Service only a CNAME. The rules after equal the rules before, and a "
        "pod that calls a headless Service's pod reaches it unchanged.", WORKER_1)
    return ScenarioSpec(
        "headless-externalname", "Headless and ExternalName Services (generated)",
        "A headless Service, web-headless, with a pod on each worker of the seed's kind cluster, and an "
        "ExternalName Service, web-external-name, standing for www.example.com. blog-worker's rules before and "
        f"after the Services were created, {GENERATED}: the same.",
        WORKERS, (WORKER_1,), (headless, external), pods, flows, feature=feature,
        external_names={external.key: "www.example.com"})


FEATURE_SCENARIOS: dict[str, Callable[[], ScenarioSpec]] = {
    "multiport": _multiport,
    "loadbalancer": _loadbalancer,
    "loadbalancer-source-ranges": _source_ranges,
    "external-ips": _external_ips,
    "session-affinity": _session_affinity,
    "loadbalancer-local": _loadbalancer_local,
    "internal-traffic-local": _internal_traffic_local,
    "no-endpoints": _no_endpoints,
    "terminating-endpoints": _terminating_endpoints,
    "udp-sctp": _udp_sctp,
    "headless-externalname": _headless_externalname,
}
"""Kind -> its scenario, in the order of the features page."""
