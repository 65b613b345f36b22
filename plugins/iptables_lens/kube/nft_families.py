"""What kube-proxy's nftables mode writes in `table ip kube-proxy` and `table ip6 kube-proxy`: its fixed chains,
sets and maps, and its per-Service families, each with what it is for (`kube.names` has the same for iptables
mode's KUBE-* chains; `kube.nft_services` says which Service each object and element serves).

Read from kubernetes `pkg/proxy/nftables/proxier.go` at b0f823e6 (`nftablesBaseChains`, `nftablesJumpChains`,
`setupNFTables`, `syncProxyRules`) and its README, and from the expectations of `TestOverallNFTablesRules` at
81810de6 (v1.34) and edca5633 (main), which `kube.synth_nftables` follows. Names of both eras are here: the
older base chains `filter-prerouting` and `filter-output-post-dnat`, the newer `filter-prerouting-pre-dnat` and
`filter-output-pre-dnat`, `mark-for-masquerade` (gone in main) and `hairpin-connections` (new in main).

>>> nft_family("ip", "kube-proxy", "service-ULMVA6XW-ns1/svc1/tcp/p80"), nft_family("ip", "kube-proxy", "services")
('service-', 'services')
>>> nft_family("ip", "filter", "services") is None
True
>>> from iptables_lens.kube.nft_services import decode_name
>>> print(name_explanation(decode_name("service-ULMVA6XW-ns1/svc1/tcp/p80")))
service-ULMVA6XW-ns1/svc1/tcp/p80 = service- + the first 8 characters of base32(sha256("ns1/svc1/tcp/p80")) + "-ns1/svc1/tcp/p80": it verifies
"""

from __future__ import annotations

from iptables_lens.kube.nft_services import TABLE, NftOwner, decode_name

# The chains kube-proxy writes whatever Services there are, with what each is for.
NFT_FIXED_CHAINS: dict[str, str] = {
    "filter-prerouting-pre-dnat": "filter base chain at prerouting, before DNAT: new connections go to "
                                  "firewall-check (load balancer source ranges)",
    "filter-prerouting": "filter base chain at prerouting, before DNAT (older layouts): new connections go to "
                         "firewall-check",
    "filter-output-pre-dnat": "filter base chain at output, before DNAT: new connections from the node go to "
                              "firewall-check",
    "filter-input": "filter base chain at input: new connections to the node go to the checks for Services "
                    "without endpoints",
    "filter-forward": "filter base chain at forward: new forwarded connections go to the check for Services "
                      "without endpoints and to cluster-ips-check",
    "filter-output": "filter base chain at output: new connections from the node go to the check for Services "
                     "without endpoints (and, in newer layouts, to cluster-ips-check)",
    "filter-output-post-dnat": "filter base chain at output, after DNAT (older layouts): new connections from "
                               "the node go to cluster-ips-check",
    "nat-prerouting": "nat base chain at prerouting: every packet from the network goes to services",
    "nat-output": "nat base chain at output: every packet the node sends goes to services",
    "nat-postrouting": "nat base chain at postrouting: every packet leaving goes to masquerading",
    "services": "dispatches Service traffic: Service IPs through the verdict map service-ips, node ports through "
                "service-nodeports",
    "service-endpoints-check": "drops or rejects new connections to a Service IP whose Service has no usable "
                               "endpoints, through no-endpoint-services",
    "nodeport-endpoints-check": "drops or rejects new connections to a node port whose Service has no usable "
                                "endpoints, through no-endpoint-nodeports",
    "reject-chain": "rejects the packet; the maps of Services without endpoints go here",
    "cluster-ips-check": "rejects traffic to a cluster IP on a port no Service uses, and drops traffic to "
                         "unallocated addresses of the Service range",
    "firewall-check": "sends traffic for load balancer IPs with source ranges to their firewall chain, through "
                      "firewall-ips",
    "mark-for-masquerade": "sets the masquerade bit of the packet mark (older layouts; newer ones set it in "
                           "the rule)",
    "masquerading": "masquerades packets whose masquerade bit is set, clearing the bit (and, in newer layouts, "
                    "hairpin connections)",
}

# The sets and maps kube-proxy writes whatever Services there are, with what each holds.
NFT_FIXED_SETS: dict[str, str] = {
    "cluster-ips": "every active cluster IP",
    "nodeport-ips": "the node's addresses that accept node port traffic",
    "service-ips": "each cluster, external and load balancer IP with its protocol and port, mapped to the chain "
                   "of its Service port",
    "service-nodeports": "each node port with its protocol, mapped to the external chain of its Service port",
    "no-endpoint-services": "each Service IP, protocol and port of a Service without usable endpoints, mapped to "
                            "drop or to reject-chain",
    "no-endpoint-nodeports": "each node port of a Service without usable endpoints, mapped to drop or to "
                             "reject-chain",
    "firewall-ips": "each load balancer IP, protocol and port that has source ranges, mapped to its firewall "
                    "chain",
    "hairpin-connections": "each endpoint on this node twice (as source and destination) with protocol and "
                           "port: a pod that reaches itself through its Service, to be masqueraded",
}

# Per-Service families: the prefix of the name, with what such a chain (or set) is for.
NFT_HASHED_FAMILIES: dict[str, str] = {
    "service-": "picks an endpoint of one Service port (traffic policy Cluster)",
    "local-": "picks an endpoint on this node only, for one Service port (traffic policy Local)",
    "external-": "traffic from outside the cluster to one Service port (node port, external IP, load "
                 "balancer): marks what must be masqueraded, then hands it to the policy chain",
    "firewall-": "load balancer source ranges of one Service port: drops traffic from other sources",
    "endpoint-": "one endpoint of a Service port: records the client for session affinity where the Service has "
                 "it, and DNATs to the endpoint (older layouts also mark a pod reaching itself for masquerading)",
    "affinity-": "session affinity of one endpoint: the clients sent to it recently, each for the affinity "
                 "timeout",
}


def nft_family(table_family: str, table: str, name: str, owner: NftOwner | None = None) -> str | None:
    """The kube-proxy family of a chain, set or map `name` of table `table_family table`: the name of a fixed one
    (`services`, `service-ips`), the prefix of a per-Service one (`service-`, `endpoint-`), or None for a name
    kube-proxy does not write and for every name in another table. `owner`, where the Service index already
    decoded the name, spares decoding it again."""
    if table != TABLE or table_family not in ("ip", "ip6"):
        return None
    if name in NFT_FIXED_CHAINS or name in NFT_FIXED_SETS:
        return name
    owner = owner or decode_name(name)
    return f"{owner.kind}-" if owner is not None else None


def describe_nft_family(family: str) -> str:
    """What the family `nft_family` gave is for."""
    return NFT_FIXED_CHAINS.get(family) or NFT_FIXED_SETS.get(family) or NFT_HASHED_FAMILIES[family]


def name_explanation(owner: NftOwner) -> str:
    """How a per-Service name is made, and whether its hash verifies; a truncated name cannot be checked."""
    kind = f"{owner.kind}-"
    digest, _, text = owner.name[len(kind):].partition("-")
    if owner.verified:
        return (f'{owner.name} = {kind} + the first 8 characters of base32(sha256("{text}")) + "-{text}": '
                "it verifies")
    if text.endswith("..."):
        return f"{owner.name}: the name was cut to kube-proxy's length limit, so its hash {digest} cannot be checked"
    return f'{owner.name}: hash not verified ({digest} is not the start of base32(sha256("{text}")))'
