"""The IPv6 side of the synthetic clusters: every IPv4 address of a `ClusterSpec` has an IPv6 twin in kind's
dual-stack ranges, so one spec gives a cluster of either family, or both halves of a dual-stack one.

On a dual-stack kind cluster a node, a pod and a dual-stack Service have one address of each family; kind
numbers both the same way (node N's pods are 10.244.N.0/24 and fd00:10:244:N::/64, and the first pod on a node
is .2 and ::2 in both), so the twins below keep each address's place:

| IPv4 range | IPv6 twin | what it holds |
| --- | --- | --- |
| 10.244.0.0/16, node ranges /24 | fd00:10:244::/56, node ranges /64 | pods (kind's podSubnet) |
| 10.96.0.0/12 | fd00:10:96::/112 | Service cluster IPs (kind's serviceSubnet) |
| 172.20.0.0/16 | fc00:f853:ccd:e793::/64 | the kind nodes' Docker network (the seed's underlay) |
| 198.18.0.0/15 | 2001:2::/48 | load balancer IPs (both benchmarking ranges, RFC 2544 and RFC 5180) |
| 192.0.2.0/24, 198.51.100.0/24, 203.0.113.0/24 | 2001:db8:0:2::/64, 2001:db8:0:100::/64, 2001:db8:0:113::/64 | documentation ranges (RFC 3849) |

>>> ipv6_twin("10.244.1.2"), ipv6_twin("10.96.118.136"), ipv6_twin("172.20.0.2"), ipv6_twin("10.244.1.0/24")
('fd00:10:244:1::2', 'fd00:10:96::7688', 'fc00:f853:ccd:e793::2', 'fd00:10:244:1::/64')
"""

from __future__ import annotations

import ipaddress
from dataclasses import replace

from iptables_lens.kube.cluster_spec import (
    HEADLESS,
    KIND_NODE_CIDR_V6,
    POD_CIDR,
    POD_CIDR_V6,
    SERVICE_CIDR_V6,
    ClusterSpec,
    ServiceSpec,
)

_V4 = ipaddress.IPv4Network
_V6 = ipaddress.IPv6Network

# IPv4 range -> its IPv6 twin, kept in place by offset (the host part of the IPv4 address is the IPv6 one's).
_BY_OFFSET: tuple[tuple[_V4, _V6], ...] = (
    (_V4("10.96.0.0/12"), _V6(SERVICE_CIDR_V6)),
    (_V4("172.20.0.0/16"), _V6(KIND_NODE_CIDR_V6)),
    (_V4("198.18.0.0/15"), _V6("2001:2::/48")),
    (_V4("192.0.2.0/24"), _V6("2001:db8:0:2::/64")),
    (_V4("198.51.100.0/24"), _V6("2001:db8:0:100::/64")),
    (_V4("203.0.113.0/24"), _V6("2001:db8:0:113::/64")),
)
# Pods: the third octet picks the node's /64, the fourth is the host in it.
_PODS, _PODS_V6 = _V4(POD_CIDR), _V6(POD_CIDR_V6)


def _address_twin(address: ipaddress.IPv4Address) -> ipaddress.IPv6Address:
    if address in _PODS:
        node, host = divmod(int(address) - int(_PODS.network_address), 256)
        return _PODS_V6.network_address + (node << 64) + host
    for v4, v6 in _BY_OFFSET:
        if address in v4:
            offset = int(address) - int(v4.network_address)
            if offset >= v6.num_addresses:
                raise ValueError(f"{address} has no twin in {v6}: it is past the IPv6 range's size")
            return v6.network_address + offset
    raise ValueError(f"{address} is in none of the ranges with an IPv6 twin ({POD_CIDR}, "
                     + ", ".join(str(v4) for v4, _ in _BY_OFFSET) + ")")


def ipv6_twin(text: str) -> str:
    """The IPv6 twin of an IPv4 address or CIDR (see the table above); a CIDR must be one of the ranges itself
    or a node's /24 of the pod range."""
    if "/" not in text:
        return str(_address_twin(ipaddress.IPv4Address(text)))
    network = ipaddress.IPv4Network(text)
    if network == _PODS:
        return str(_PODS_V6)
    if network.subnet_of(_PODS) and network.prefixlen == 24:
        return f"{_address_twin(network.network_address)}/64"
    for v4, v6 in _BY_OFFSET:
        if network == v4:
            return str(v6)
    raise ValueError(f"{text} has no IPv6 twin: only the ranges themselves and the pods' node /24s do")


def ipv6_service(service: ServiceSpec) -> ServiceSpec:
    """The Service as kube-proxy's IPv6 proxier sees it: every address its IPv6 twin (a headless Service's
    "None" and an ExternalName Service's empty cluster IP stay), each endpoint's conditions and node kept."""
    cluster_ip = service.cluster_ip if service.cluster_ip in (HEADLESS, "") else ipv6_twin(service.cluster_ip)
    return replace(
        service, cluster_ip=cluster_ip,
        endpoints=tuple(replace(e, address=ipv6_twin(e.address)) for e in service.endpoints),
        load_balancer_ips=tuple(map(ipv6_twin, service.load_balancer_ips)),
        load_balancer_source_ranges=tuple(map(ipv6_twin, service.load_balancer_source_ranges)),
        external_ips=tuple(map(ipv6_twin, service.external_ips)))


def ipv6_cluster(spec: ClusterSpec, dual_stack: bool = False) -> ClusterSpec:
    """The IPv6 spec of an IPv4 one: the same node and Services with their IPv6 twins.

    `dual_stack` False: the cluster is IPv6 only, every Service is IPv6. True: the IPv6 side of a dual-stack
    cluster whose first family is IPv4, where a SingleStack Service (as kubeadm's kube-dns and the API server's
    default/kubernetes are) has an IPv4 cluster IP only and is not in `ip6tables` at all.

    >>> from iptables_lens.kube.cluster_spec import nodeport_spec
    >>> six = ipv6_cluster(nodeport_spec(1, endpoints=1))
    >>> six.family, six.node_ip, six.pod_cidr, six.services[0].cluster_ip, six.services[0].endpoints[0].address
    (6, 'fc00:f853:ccd:e793::2', 'fd00:10:244::/56', 'fd00:10:96::401', 'fd00:10:244::2')
    """
    if spec.family != 4:
        raise ValueError("ipv6_cluster takes an IPv4 spec")
    services = [s for s in spec.services if not dual_stack or s.ip_family_policy != "SingleStack"]
    return replace(spec, family=6, node_ip=ipv6_twin(spec.node_ip),
                   pod_cidr=ipv6_twin(spec.pod_cidr) if spec.pod_cidr else None,
                   services=tuple(map(ipv6_service, services)))
