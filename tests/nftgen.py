"""A kube-proxy nftables listing of any size, written directly in `nft list ruleset`'s format.

The layout is that of tests/data/nft/kube-proxy-overall.nft (kube-proxy's nftables mode as its
TestOverallNFTablesRules expects it: the mark-for-masquerade chain, one chain per endpoint, endpoints chosen by
`numgen random mod N vmap`), for `services` NodePort Services of `endpoints` endpoints each, the cluster the
iptables benchmarks use (tests/bench/scale.py). tests/test_nft_kernel.py checks that nft lists a small one
back byte for byte, so that the big one (too slow for nft to load in a test) is what nft would print.
"""

from __future__ import annotations

from iptables_lens.kube.names import nft_name_base
from iptables_lens.kube.synth import cluster_ip, pod_ip

NODE_IP = "172.20.0.2"
POD_CIDR = "10.244.0.0/16"
NODE_PORT_BASE = 30000

_HEAD = """table ip kube-proxy {
\tcomment "rules for kube-proxy"
"""
_BASE_CHAINS = """\tchain filter-prerouting-pre-dnat {
\t\ttype filter hook prerouting priority dstnat - 10; policy accept;
\t\tct state new jump firewall-check
\t}

\tchain filter-forward {
\t\ttype filter hook forward priority filter; policy accept;
\t\tct state new jump service-endpoints-check
\t\tct state new jump cluster-ips-check
\t}

\tchain filter-input {
\t\ttype filter hook input priority filter; policy accept;
\t\tct state new jump nodeport-endpoints-check
\t\tct state new jump service-endpoints-check
\t}

\tchain filter-output {
\t\ttype filter hook output priority filter; policy accept;
\t\tct state new jump service-endpoints-check
\t\tct state new jump cluster-ips-check
\t}

\tchain cluster-ips-check {
\t\tip daddr @cluster-ips reject comment "Reject traffic to invalid ports of ClusterIPs"
\t\tip daddr 10.96.0.0/12 drop comment "Drop traffic to unallocated ClusterIPs"
\t}

\tchain firewall-check {
\t\tip daddr . meta l4proto . th dport vmap @firewall-ips
\t}

\tchain mark-for-masquerade {
\t\tmeta mark set meta mark | 0x00004000
\t}

\tchain masquerading {
\t\tmeta mark & 0x00004000 == 0x00000000 return
\t\tmeta mark set meta mark ^ 0x00004000
\t\tmasquerade fully-random
\t}

\tchain nat-output {
\t\ttype nat hook output priority -100; policy accept;
\t\tjump services
\t}

\tchain nat-postrouting {
\t\ttype nat hook postrouting priority srcnat; policy accept;
\t\tjump masquerading
\t}

\tchain nat-prerouting {
\t\ttype nat hook prerouting priority dstnat; policy accept;
\t\tjump services
\t}

\tchain nodeport-endpoints-check {
\t\tip daddr @nodeport-ips meta l4proto . th dport vmap @no-endpoint-nodeports
\t}

\tchain reject-chain {
\t\tcomment "helper for @no-endpoint-services / @no-endpoint-nodeports"
\t\treject
\t}

\tchain services {
\t\tip daddr . meta l4proto . th dport vmap @service-ips
\t\tip daddr @nodeport-ips meta l4proto . th dport vmap @service-nodeports
\t}

\tchain service-endpoints-check {
\t\tip daddr . meta l4proto . th dport vmap @no-endpoint-services
\t}
"""


def chain_hash(name: str) -> str:
    """kube-proxy's nftables chain-name hash of `name` (`kube.names.nft_name_base`)."""
    return nft_name_base(name).partition("-")[0]


def _elements(items: list[str], per_line: int) -> str:
    text = []
    for index, item in enumerate(items):
        if index:
            text.append(",\n\t\t\t     " if index % per_line == 0 else ", ")
        text.append(item)
    return "{ " + "".join(text) + " }"


def _set(kind: str, name: str, key: str, comment: str, elements: list[str], per_line: int) -> str:
    lines = [f"\t{kind} {name} {{", f"\t\ttype {key}", f'\t\tcomment "{comment}"']
    if elements:
        lines.append(f"\t\telements = {_elements(elements, per_line)}")
    return "\n".join(lines) + "\n\t}\n"


def kube_proxy_listing(services: int, endpoints: int = 5) -> str:
    """The listing of `services` NodePort Services `bench/svc-NNNNN` (port 80/TCP, target port 8080, node port
    30000 + N) with `endpoints` endpoints each."""
    cluster_ips, service_ips, nodeports, chains = [], [], [], []
    for index in range(services):
        name = f"bench/svc-{index:05d}/tcp/http"
        ip = cluster_ip(index)
        service_chain = f"service-{chain_hash(name)}-{name}"
        external_chain = f"external-{chain_hash(name)}-{name}"
        cluster_ips.append(ip)
        service_ips.append(f"{ip} . tcp . 80 : goto {service_chain}")
        nodeports.append(f"tcp . {NODE_PORT_BASE + index} : goto {external_chain}")
        endpoint_chains = []
        for e in range(endpoints):
            pod = pod_ip(index * endpoints + e)
            endpoint = f"endpoint-{chain_hash(f'{name}__{pod}/8080')}-{name}__{pod}/8080"
            endpoint_chains.append(endpoint)
            chains.append(f"\tchain {endpoint} {{\n\t\tip saddr {pod} jump mark-for-masquerade\n"
                          f"\t\tmeta l4proto tcp dnat to {pod}:8080\n\t}}\n")
        vmap = ", ".join(f"{e} : goto {chain}" for e, chain in enumerate(endpoint_chains))
        chains.append(f"\tchain {service_chain} {{\n\t\tip daddr {ip} ip saddr != {POD_CIDR} jump mark-for-masquerade\n"
                      f"\t\tnumgen random mod {endpoints} vmap {{ {vmap} }}\n\t}}\n")
        chains.append(f"\tchain {external_chain} {{\n\t\tjump mark-for-masquerade\n"
                      f"\t\tgoto {service_chain}\n\t}}\n")
    blocks = [
        _set("set", "cluster-ips", "ipv4_addr", "Active ClusterIPs", cluster_ips, 2),
        _set("set", "nodeport-ips", "ipv4_addr", "IPs that accept NodePort traffic", [NODE_IP], 2),
        _set("map", "firewall-ips", "ipv4_addr . inet_proto . inet_service : verdict",
             "destinations that are subject to LoadBalancerSourceRanges", [], 1),
        _set("map", "no-endpoint-nodeports", "inet_proto . inet_service : verdict",
             "vmap to drop or reject packets to service nodeports with no endpoints", [], 1),
        _set("map", "no-endpoint-services", "ipv4_addr . inet_proto . inet_service : verdict",
             "vmap to drop or reject packets to services with no endpoints", [], 1),
        _set("map", "service-ips", "ipv4_addr . inet_proto . inet_service : verdict",
             "ClusterIP, ExternalIP and LoadBalancer IP traffic", service_ips, 1),
        _set("map", "service-nodeports", "inet_proto . inet_service : verdict", "NodePort traffic", nodeports, 1),
        _BASE_CHAINS,
        *chains,
    ]
    return _HEAD + "\n".join(blocks) + "}\n"
