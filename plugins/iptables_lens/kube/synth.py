"""Synthetic kube-proxy (v1.29, iptables mode) dumps of any size, for benchmarks, scale tests and scenarios.

The output is what `iptables-save` prints on a node after kube-proxy wrote its rules: the fixed chains of
the seed scenario's nodes (`kube.node_chains`), and per Service port the chain families, hashed names,
comments, probabilities and rule order that `syncProxyRules` in kube-proxy v1.29's pkg/proxy/iptables/proxier.go
writes, in the form iptables-save prints them back (builtin chains first, then user chains sorted by name; a
chain's rules in the order kube-proxy wrote them).

A spec of family 6 gives what `ip6tables-save` prints after kube-proxy's IPv6 proxier wrote the same kinds of
Services: the same chains and hashes, with `/128` host masks, `[addr]:port` endpoints in comments and DNAT
targets (kube-proxy hashes that string too), REJECT's `icmp6-port-unreachable`, the `recent` match's IPv6
mask, no node ports on ::1, and the IPv6 fixed chains (no martian rule, no Docker DNS).

Two entry points:

- `synth_cluster(spec)`: one node's dump for a `ClusterSpec` (see `kube.cluster_spec`) listing Services of
  any kind (ClusterIP, NodePort, LoadBalancer with or without source ranges, external IPs, either traffic
  policy Local, `sessionAffinity: ClientIP`, TCP, UDP and SCTP ports, no endpoints; headless and ExternalName
  Services, for which kube-proxy writes nothing) and their endpoints, each on a named node and with its
  conditions (which endpoints kube-proxy uses: `kube.endpoint_selection`).
  `synth_cluster(nodeport_spec(services, endpoints))` is the benchmarks' dump.
- `synth_mixed(n, endpoints, seed)`: a seeded mix of all those kinds, for scale tests.

`ClusterSpec.masquerade_all` (`--masquerade-all`) makes the first rule of a Service port's internal policy chain
mark every packet to the cluster IP (`-d CLUSTER-IP/32 -p tcp -m comment --comment "NAME cluster IP" -m tcp
--dport PORT -j KUBE-MARK-MASQ`, with or without a pod CIDR) in place of the rule for sources outside the pod
CIDR; nothing else changes (proxier.go of the fork aroradaman/kubernetes at f74a3617, the copy the conformance
data names).

Node ports start at 30000 and, past 32767, use a widened range (as a cluster with
`--service-node-port-range=30000-40000` would), since 10,000 NodePort Services do not fit the default range.

>>> text = synth_cluster(nodeport_spec(services=1, endpoints=2))
>>> "-A KUBE-NODEPORTS -p tcp -m comment --comment \\"bench/svc-00000\\" -m tcp --dport 30000" in text
True
"""

from __future__ import annotations

import ipaddress

from iptables_lens.kube import node_chains
from iptables_lens.kube.cluster_spec import (
    DEFAULT_AFFINITY_SECONDS,
    LARGE_CLUSTER_ENDPOINTS,
    MIX_KINDS,
    POD_CIDR,
    Affinity,
    ClusterSpec,
    Endpoint,
    Family,
    KindNode,
    Port,
    Protocol,
    ServiceSpec,
    ServiceType,
    TrafficPolicy,
    cluster_ip,
    is_large_cluster,
    kind_system_services,
    mixed_spec,
    nodeport_spec,
    pod_ip,
)
from iptables_lens.kube.endpoint_selection import (
    categorize_endpoints,
    endpoint_policies,
    needs_health_check,
)
from iptables_lens.kube.names import endpoint_chain, join_host_port, service_chain
from iptables_lens.kube.node_chains import FOOTER, HEADER, HEADER_V6, TableText, host_prefix
from iptables_lens.kube.node_chains import comment as _comment

# The specs are written for this module: they are importable from here too.
__all__ = [
    "DEFAULT_AFFINITY_SECONDS", "FOOTER", "HEADER", "HEADER_V6", "LARGE_CLUSTER_ENDPOINTS", "MIX_KINDS", "POD_CIDR",
    "Affinity", "ClusterSpec", "Endpoint", "KindNode", "Port", "Protocol", "ServiceSpec", "ServiceType", "TrafficPolicy",
    "cluster_ip", "is_large_cluster", "kind_system_services", "mixed_spec", "nodeport_spec", "pod_ip",
    "saved_probability", "synth_cluster", "synth_mixed",
]


def saved_probability(n: int) -> str:
    """The probability text iptables-save prints for kube-proxy's 1/n: kube-proxy writes "%0.10f", the
    kernel keeps it as a 31-bit fraction, iptables-save prints that with 11 decimals."""
    written = float(f"{1.0 / n:0.10f}")
    stored = round(0x80000000 * written)
    return f"{stored / 0x80000000:.11f}"


def _verdict(target: str, family: Family) -> str:
    # iptables-save prints REJECT's default reply, which is ICMPv6's in ip6tables.
    if target != "REJECT":
        return target
    return "REJECT --reject-with " + ("icmp-port-unreachable" if family == 4 else "icmp6-port-unreachable")


def _recent_mask(family: Family) -> str:
    """The `recent` match's default mask, which iptables-save prints: every bit of the family's address."""
    return "255.255.255.255" if family == 4 else "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff"


def _port_match(protocol: str, dport: int, between: str) -> str:
    """`-p P BETWEEN -m P --dport N`: iptables-save prints `-p` with the addresses, then the matches in the
    order they were given (kube-proxy gives the comment first, then `-m P`)."""
    return f"-p {protocol} {between} -m {protocol} --dport {dport}"


def synth_cluster(spec: ClusterSpec) -> str:
    """iptables-save text (mangle, filter, nat) for `spec.node` after kube-proxy v1.29 synced `spec`; for a
    spec of family 6, the ip6tables-save text.

    Services come in the spec's order; kube-proxy walks a Go map, so on a real node the order of the
    Services' rules within KUBE-SERVICES, KUBE-NODEPORTS and the filter chains changes from sync to sync.

    >>> web = ServiceSpec("default", "web", "10.96.0.50", ports=(Port(80, 8080),),
    ...                   endpoints=(Endpoint("10.244.1.2", "node-1"),))
    >>> text = synth_cluster(ClusterSpec((web,), node="node-1"))
    >>> print(next(line for line in text.splitlines() if "-j DNAT" in line))
    -A KUBE-SEP-PXJ2U7QYT2QW5545 -p tcp -m comment --comment "default/web" -m tcp -j DNAT --to-destination 10.244.1.2:8080
    """
    nat = node_chains.nat_table(spec)
    filter_ = node_chains.filter_table(spec.family)
    large = is_large_cluster(spec)
    for service in spec.services:
        if not service.proxied:
            continue
        for port in service.ports:
            _write_service_port(nat, filter_, spec, service, port, large)
    # Finally, tail-call to the nodePorts chain.
    node_chains.services_tail(nat, spec.family)
    node_chains.filter_tail(filter_, spec.family)
    return node_chains.saved([node_chains.MANGLE, filter_.text(), nat.text()], spec.family)


def _write_service_port(nat: TableText, filter_: TableText, spec: ClusterSpec, svc: ServiceSpec, port: Port,
                        large: bool) -> None:
    """The rules syncProxyRules writes for one Service port, in its order."""
    protocol = port.protocol.lower()
    name = svc.port_name(port)
    cluster_policy_chain = service_chain("KUBE-SVC", name, protocol)
    local_policy_chain = service_chain("KUBE-SVL", name, protocol)
    fw_chain = service_chain("KUBE-FW", name, protocol)
    external_chain = service_chain("KUBE-EXT", name, protocol)

    family = spec.family
    selection = categorize_endpoints(svc, port, spec.node)
    cluster_endpoints, local_endpoints = selection.cluster, selection.local
    has_endpoints = selection.has_any
    policies = endpoint_policies(svc, port)
    externally_accessible = policies.externally_accessible
    external_policy_local = policies.external_local
    internal_policy_local = policies.internal_local

    uses_cluster_policy_chain = bool(cluster_endpoints) and policies.uses_cluster_endpoints
    uses_local_policy_chain = bool(local_endpoints) and policies.uses_local_endpoints
    internal_chain = cluster_policy_chain
    has_internal_endpoints = has_endpoints
    if internal_policy_local:
        internal_chain = local_policy_chain
        has_internal_endpoints = bool(local_endpoints)
    external_policy_chain = cluster_policy_chain
    has_external_endpoints = has_endpoints
    if external_policy_local:
        external_policy_chain = local_policy_chain
        has_external_endpoints = bool(local_endpoints)
    # The external chain is there whenever the Service has endpoints: the short circuit for pods and the node
    # needs it even when external traffic has none.
    uses_external_chain = has_endpoints and externally_accessible
    lb_chain = external_chain
    uses_fw_chain = has_endpoints and bool(svc.load_balancer_ips) and bool(svc.load_balancer_source_ranges)
    if uses_fw_chain:
        lb_chain = fw_chain

    internal_filter = external_filter = ""
    internal_filter_comment = external_filter_comment = ""
    if not has_endpoints:
        internal_filter = external_filter = "REJECT"
        internal_filter_comment = external_filter_comment = f"{name} has no endpoints"
    else:
        if not has_internal_endpoints:
            internal_filter, internal_filter_comment = "DROP", f"{name} has no local endpoints"
        if not has_external_endpoints:
            external_filter, external_filter_comment = "DROP", f"{name} has no local endpoints"

    host = host_prefix(family)

    def to(address: str, comment: str, dport: int) -> str:
        return f"-d {address}/{host} {_port_match(protocol, dport, _comment(comment))}"

    # Capture the cluster IP.
    if has_internal_endpoints:
        nat.add("KUBE-SERVICES", f"{to(svc.cluster_ip, f'{name} cluster IP', port.port)} -j {internal_chain}")
    else:
        filter_.add("KUBE-SERVICES", f"{to(svc.cluster_ip, internal_filter_comment, port.port)} "
                                     f"-j {_verdict(internal_filter, family)}")
    # Capture external IPs.
    for ip in svc.external_ips:
        if has_endpoints:
            nat.add("KUBE-SERVICES", f"{to(ip, f'{name} external IP', port.port)} -j {external_chain}")
        if not has_external_endpoints:
            filter_.add("KUBE-EXTERNAL-SERVICES", f"{to(ip, external_filter_comment, port.port)} "
                                                  f"-j {_verdict(external_filter, family)}")
    # Capture load balancer ingress.
    for ip in svc.load_balancer_ips:
        if has_endpoints:
            nat.add("KUBE-SERVICES", f"{to(ip, f'{name} loadbalancer IP', port.port)} -j {lb_chain}")
        if uses_fw_chain:
            filter_.add("KUBE-PROXY-FIREWALL", f"{to(ip, f'{name} traffic not accepted by {fw_chain}', port.port)} "
                                               "-j DROP")
    if not has_external_endpoints:
        for ip in svc.load_balancer_ips:
            filter_.add("KUBE-EXTERNAL-SERVICES", f"{to(ip, external_filter_comment, port.port)} "
                                                  f"-j {_verdict(external_filter, family)}")
    # Capture node ports.
    if port.node_port is not None:
        if has_endpoints:
            nat.add("KUBE-NODEPORTS", f"{_port_match(protocol, port.node_port, _comment(name))} -j {external_chain}")
        if not has_external_endpoints:
            local = _comment(external_filter_comment) + " -m addrtype --dst-type LOCAL"
            filter_.add("KUBE-EXTERNAL-SERVICES", f"{_port_match(protocol, port.node_port, local)} "
                                                  f"-j {_verdict(external_filter, family)}")
    # Capture the health check node port (no matter whether the node has local endpoints).
    if svc.health_check_node_port is not None and needs_health_check(svc):
        check = _comment(f"{name} health check node port")
        filter_.add("KUBE-NODEPORTS", f"{_port_match('tcp', svc.health_check_node_port, check)} -j ACCEPT")

    # Internal traffic: --masquerade-all marks every packet to the cluster IP; otherwise off-cluster traffic is
    # masqueraded (the local detector by CIDR; the no-op detector writes no rule).
    if has_internal_endpoints and (spec.masquerade_all or spec.pod_cidr is not None):
        outside = "" if spec.masquerade_all else f"! -s {spec.pod_cidr} "
        nat.chain(internal_chain)
        nat.add(internal_chain, f"{outside}{to(svc.cluster_ip, f'{name} cluster IP', port.port)} -j KUBE-MARK-MASQ")

    # External traffic: all captured external destinations jump to the EXT chain.
    if uses_external_chain:
        nat.chain(external_chain)
        if not external_policy_local:
            nat.add(external_chain, _comment(f"masquerade traffic for {name} external destinations")
                    + " -j KUBE-MARK-MASQ")
        else:
            if spec.pod_cidr is not None:
                nat.add(external_chain, f"-s {spec.pod_cidr} " + _comment(f"pod traffic for {name} external "
                                                                           "destinations") + f" -j {cluster_policy_chain}")
            nat.add(external_chain, _comment(f"masquerade LOCAL traffic for {name} external destinations")
                    + " -m addrtype --src-type LOCAL -j KUBE-MARK-MASQ")
            nat.add(external_chain, _comment(f"route LOCAL traffic for {name} external destinations")
                    + f" -m addrtype --src-type LOCAL -j {cluster_policy_chain}")
        if has_external_endpoints:
            nat.add(external_chain, f"-j {external_policy_chain}")

    # The load balancer firewall chain.
    if uses_fw_chain:
        nat.chain(fw_chain)
        lb_comment = _comment(f"{name} loadbalancer IP")
        allow_from_node = False
        node_ip = ipaddress.ip_address(spec.node_ip)
        for cidr in svc.load_balancer_source_ranges:
            network = ipaddress.ip_network(cidr)
            nat.add(fw_chain, f"-s {network} {lb_comment} -j {external_chain}")
            allow_from_node = allow_from_node or node_ip in network
        if allow_from_node:
            for ip in svc.load_balancer_ips:
                nat.add(fw_chain, f"-s {ip}/{host} {lb_comment} -j {external_chain}")
        nat.add(fw_chain, _comment(f"other traffic to {name} will be dropped by KUBE-PROXY-FIREWALL"))

    # Endpoint `ip:port` -> its KUBE-SEP chain (hashing is most of the generator's time: do it once).
    addresses = {join_host_port(e.address, port.target_port): e.address for e in selection.reachable}
    endpoint_chains = {target: endpoint_chain(name, protocol, target) for target in addresses}
    if uses_cluster_policy_chain:
        nat.chain(cluster_policy_chain)
        _write_service_to_endpoints(nat, name, svc, port, cluster_policy_chain, cluster_endpoints, endpoint_chains,
                                    large, family)
    if uses_local_policy_chain:
        nat.chain(local_policy_chain)
        _write_service_to_endpoints(nat, name, svc, port, local_policy_chain, local_endpoints, endpoint_chains,
                                    large, family)

    # The endpoint chains.
    comment = "" if large else _comment(name) + " "
    for target, chain in endpoint_chains.items():
        nat.chain(chain)
        nat.add(chain, f"-s {addresses[target]}/{host} {comment}-j KUBE-MARK-MASQ")
        recent = (f"-m recent --set --name {chain} --mask {_recent_mask(family)} --rsource "
                  if svc.session_affinity == "ClientIP" else "")
        nat.add(chain, f"-p {protocol} {comment}{recent}-m {protocol} -j DNAT --to-destination {target}")


def _write_service_to_endpoints(nat: TableText, name: str, svc: ServiceSpec, port: Port, chain: str,
                                endpoints: tuple[Endpoint, ...], endpoint_chains: dict[str, str], large: bool,
                                family: Family) -> None:
    """writeServiceToEndpointRules: session affinity checks first, then the random pick."""
    targets = [join_host_port(e.address, port.target_port) for e in endpoints]
    if svc.session_affinity == "ClientIP":
        for target in targets:
            sep = endpoint_chains[target]
            comment = "" if large else _comment(f"{name} -> {target}") + " "
            nat.add(chain, f"{comment}-m recent --rcheck --seconds {svc.affinity_seconds} --reap --name {sep} "
                           f"--mask {_recent_mask(family)} --rsource -j {sep}")
    count = len(targets)
    for index, target in enumerate(targets):
        comment = "" if large else _comment(f"{name} -> {target}") + " "
        pick = (f"-m statistic --mode random --probability {saved_probability(count - index)} "
                if index < count - 1 else "")
        nat.add(chain, f"{comment}{pick}-j {endpoint_chains[target]}")


def synth_mixed(n: int, endpoints: int = 5, seed: int = 0, namespace: str = "mix") -> str:
    """iptables-save text for node-0 of `mixed_spec(n, endpoints, seed)`; the same arguments always give
    the same text.

    >>> text = synth_mixed(20, endpoints=2, seed=1)
    >>> all(f":{prefix}-" in text for prefix in ("KUBE-SVL", "KUBE-FW", "KUBE-EXT", "KUBE-SEP"))
    True
    """
    return synth_cluster(mixed_spec(n, endpoints, seed, namespace))
