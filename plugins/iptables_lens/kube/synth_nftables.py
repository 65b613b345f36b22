"""What kube-proxy's nftables proxier sends for a `ClusterSpec`: the transaction in the form knftables' fake
prints it (`Fake.Dump()`), for each rule layout followed here.

Sources read (kubernetes/kubernetes, Apache-2.0; the stored versions named by commit):

- `pkg/proxy/nftables/proxier.go` at b0f823e6: names and hashes (`hashAndTruncate`,
  `servicePortChainNameBase`, `servicePortEndpointChainNameBase`), and `syncProxyRules`: per Service port the
  `cluster-ips` element, a `service-ips` element `IP . proto . port : goto CHAIN` for the cluster IP (or a
  `no-endpoint-services` element `: goto reject-chain` without endpoints, `: drop` without local ones), the
  same for external and load balancer IPs (to the `external-` chain), `service-nodeports` /
  `no-endpoint-nodeports` for the node port, `firewall-ips` to a `firewall-` chain only with load balancer IPs
  *and* source ranges (`ip saddr != { RANGES[, LB IPs when a range holds the node IP] } drop`), and the
  policy chains (`service-` for Cluster, `local-` for Local) choosing endpoints with
  `numgen random mod N vmap { 0 : goto endpoint-…, … }` after one `ip saddr @affinity-… goto endpoint-…`
  per endpoint for ClientIP affinity.
- `pkg/proxy/nftables/proxier_test.go` (`TestOverallNFTablesRules`, kept under
  `tests/data/kube-proxy-nftables/`) at 81810de6 and at edca5633, and `helpers_test.go` at 803d40a5 (how the
  tests compare: blank and `#` lines dropped, lines sorted by object type, then name, rules kept in order).
- knftables v0.0.22 `fake.go` `Dump()` and `objects.go` `writeOperation`: the dump is the table, the chains,
  sets and maps (each kind sorted by name), then every chain's rules and every set's and map's elements.

Names: a Service port's chains are PREFIX + `HASH-ns/name/proto/port` and an endpoint's
`endpoint-HASH-ns/name/proto/port__IP/PORT` (an IPv6 endpoint's colons become dots), where HASH is the first 8
characters of base32(sha256(the text after the dash)); the affinity set of an endpoint is `affinity-` + the
endpoint's base. `ns1/svc1/tcp/p80` gives `ULMVA6XW`, as `TestOverallNFTablesRules` expects.

The layouts (`Layout`):

- `"v1.34"`: Kubernetes v1.34 and v1.35. The filter chains `filter-prerouting-pre-dnat` and
  `filter-output-pre-dnat` at priority -110 and `filter-input`, `filter-forward`, `filter-output` at 0 came with
  PR #132456 (CHANGELOG-1.34); a `mark-for-masquerade` chain (`mark set mark or 0x4000`) that the service
  chain (`ip daddr CLUSTER-IP ip saddr != POD-CIDR`), the `external-` chain and each endpoint chain
  (`ip saddr ENDPOINT`, the hairpin) jump to; `masquerading` clears the mark and masquerades. Read at
  proxier_test.go 81810de6 (030880a5 has the same expectations).
- `"main-edca563"`: the kubernetes main branch at edca5633, after PR #135800 (CHANGELOG-1.36: the
  `mark-for-masquerade` chain is gone, the mark is set inline) and PR #136499 (a `hairpin-connections` set of
  `ENDPOINT . ENDPOINT . proto . port` for each endpoint on this node, masqueraded in `masquerading` under
  `ct status dnat`), with one `ip daddr @cluster-ips ip saddr != POD-CIDR mark set …` rule in `services`, and
  endpoint chains only for ClientIP affinity: other Services DNAT in their service chain with
  `dnat ip addr . port to numgen random mod N map { 0 : IP . PORT , … }`, even with one endpoint (PR #140723,
  merged in July 2026, later drops the numgen for one endpoint; that layout is not followed here). Element
  comments are cut to 128 characters (knftables' CommentLengthMax). Which release first ships this layout
  was not verified.

`ClusterSpec.masquerade_all` (`--masquerade-all`) replaces the rule for sources outside the pod CIDR, and is
written with or without a pod CIDR: in v1.34 the service chain's first rule is `ip daddr CLUSTER-IP jump
mark-for-masquerade` (proxier.go read in the copy cloud-native-collection/kubernetes 3b63e86d, the stored copy
nearest 81810de6, whose non-masquerade-all rule is the one 81810de6's tests expect); in main `services` has
`ip daddr @cluster-ips mark set mark or 0x4000 comment "masquerade all clusterIP traffic"` (proxier.go read in
AustinAbro321/kubernetes 129058fc and kiarashazarnia/kubernetes 4426ed5d, main-branch copies; edca5633's own
proxier.go is not stored).

>>> from iptables_lens.kube.cluster_spec import ClusterSpec, Endpoint, Port, ServiceSpec
>>> web = ServiceSpec("default", "web", "10.96.0.50", ports=(Port(80, 8080),), endpoints=(Endpoint("10.244.1.2"),))
>>> dump = synth_nftables(ClusterSpec((web,)), layout="main-edca563")
>>> print(next(line for line in dump.splitlines() if "numgen" in line))
add rule ip kube-proxy service-PFISGYVC-default/web/tcp/ meta l4proto tcp dnat ip addr . port to numgen random mod 1 map { 0 : 10.244.1.2 . 8080 }
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from typing import Literal, get_args

from iptables_lens.kube.cluster_spec import SERVICE_CIDR_V6, ClusterSpec, Endpoint, Port, ServiceSpec
from iptables_lens.kube.endpoint_selection import categorize_endpoints, endpoint_policies
from iptables_lens.kube.names import join_host_port, nft_name_base
from iptables_lens.kube.nft_services import NFT_FAMILIES, TABLE

Layout = Literal["v1.34", "main-edca563"]
LAYOUTS: tuple[Layout, ...] = get_args(Layout)
# kind's default serviceSubnet; cluster_spec.cluster_ip() hands out addresses in it.
SERVICE_CIDR_V4 = "10.96.0.0/16"
MASQUERADE_MARK = "0x4000"  # --masquerade-bit 14, as kube-proxy's tests use
COMMENT_MAX = 128  # knftables.CommentLengthMax
TABLE_COMMENT = "rules for kube-proxy"


def service_port_base(svc: ServiceSpec, port: Port) -> str:
    """`servicePortChainNameBase`: the base of a Service port's `service-`, `local-`, `external-` and
    `firewall-` chains."""
    return nft_name_base(f"{svc.namespace}/{svc.name}/{port.protocol.lower()}/{port.name}")


def endpoint_base(svc: ServiceSpec, port: Port, address: str) -> str:
    """`servicePortEndpointChainNameBase`: the base of an endpoint's `endpoint-` chain and `affinity-` set.

    >>> from iptables_lens.kube.cluster_spec import Port, ServiceSpec
    >>> endpoint_base(ServiceSpec("ns1", "svc1", "172.30.0.41"), Port(80, 80, name="p80"), "10.180.0.1")
    '5OJB2KTY-ns1/svc1/tcp/p80__10.180.0.1/80'
    """
    ip = address.replace(":", ".")
    return nft_name_base(f"{svc.namespace}/{svc.name}/{port.protocol.lower()}/{port.name}__{ip}/{port.target_port}")


@dataclass
class Transaction:
    """The objects of one kube-proxy table, printed as knftables' `Fake.Dump()` prints them."""

    family: str
    chains: dict[str, str] = field(default_factory=dict)  # name -> " { … }" or ""
    sets: dict[str, str] = field(default_factory=dict)  # name -> " { type … }"
    maps: dict[str, str] = field(default_factory=dict)
    rules: dict[str, list[str]] = field(default_factory=dict)
    elements: dict[str, dict[str, str]] = field(default_factory=dict)  # set/map -> key -> element line

    def chain(self, name: str, spec: str = "") -> None:
        self.chains.setdefault(name, spec)
        self.rules.setdefault(name, [])

    def rule(self, chain: str, text: str, comment: str | None = None) -> None:
        self.chain(chain)
        self.rules[chain].append(text + (f' comment "{comment}"' if comment is not None else ""))

    def element(self, container: str, key: str, value: str | None = None, comment: str | None = None) -> None:
        """An element of a set or map; a key already there keeps its first element, as in a set."""
        text = key + (f' comment "{comment}"' if comment is not None else "") + (f" : {value}" if value else "")
        self.elements.setdefault(container, {}).setdefault(key, text)

    def dump(self) -> str:
        head = f"table {self.family} {TABLE}"
        lines = [f'add {head} {{ comment "{TABLE_COMMENT}" ; }}']
        lines += [f"add chain {self.family} {TABLE} {name}{self.chains[name]}" for name in sorted(self.chains)]
        lines += [f"add set {self.family} {TABLE} {name} {{{self.sets[name]} }}" for name in sorted(self.sets)]
        lines += [f"add map {self.family} {TABLE} {name} {{{self.maps[name]} }}" for name in sorted(self.maps)]
        for name in sorted(self.rules):
            lines += [f"add rule {self.family} {TABLE} {name} {rule}" for rule in self.rules[name]]
        for name in sorted(self.sets) + sorted(self.maps):
            lines += [f"add element {self.family} {TABLE} {name} {{ {text} }}"
                      for text in self.elements.get(name, {}).values()]
        return "\n".join(lines) + "\n"


@dataclass(frozen=True)
class _Words:
    """The family-dependent words of the rules: `ip` or `ip6`, and the address type."""

    ip: str
    addr: str

    @staticmethod
    def of(spec: ClusterSpec) -> _Words:
        return _Words("ip", "ipv4_addr") if spec.family == 4 else _Words("ip6", "ipv6_addr")


def _base_chains(tx: Transaction, layout: Layout) -> None:
    tx.chain("filter-prerouting-pre-dnat", " { type filter hook prerouting priority -110 ; }")
    tx.chain("filter-output-pre-dnat", " { type filter hook output priority -110 ; }")
    tx.chain("filter-forward", " { type filter hook forward priority 0 ; }")
    tx.chain("filter-input", " { type filter hook input priority 0 ; }")
    tx.chain("filter-output", " { type filter hook output priority 0 ; }")
    tx.chain("nat-prerouting", " { type nat hook prerouting priority -100 ; }")
    tx.chain("nat-output", " { type nat hook output priority -100 ; }")
    tx.chain("nat-postrouting", " { type nat hook postrouting priority 100 ; }")
    # nftablesJumpChains, in their order: which base chain jumps to which check.
    for target, source, match in (
        ("nodeport-endpoints-check", "filter-input", "ct state new "),
        ("service-endpoints-check", "filter-input", "ct state new "),
        ("service-endpoints-check", "filter-forward", "ct state new "),
        ("service-endpoints-check", "filter-output", "ct state new "),
        ("firewall-check", "filter-prerouting-pre-dnat", "ct state new "),
        ("firewall-check", "filter-output-pre-dnat", "ct state new "),
        ("services", "nat-output", ""),
        ("services", "nat-prerouting", ""),
        ("masquerading", "nat-postrouting", ""),
        ("cluster-ips-check", "filter-forward", "ct state new "),
        ("cluster-ips-check", "filter-output", "ct state new "),
    ):
        tx.chain(target)
        tx.rule(source, f"{match}jump {target}")
    if layout == "v1.34":
        tx.chain("mark-for-masquerade")


def _setup(tx: Transaction, spec: ClusterSpec, layout: Layout, service_cidrs: tuple[str, ...],
           nodeport_addresses: tuple[str, ...] | None, mark: str) -> None:
    """setupNFTables: the table's fixed chains, sets, maps and rules; `nodeport_addresses` None: node ports on
    every local address."""
    w = _Words.of(spec)
    _base_chains(tx, layout)
    tx.sets["cluster-ips"] = f' type {w.addr} ; comment "Active ClusterIPs" ;'
    if nodeport_addresses is not None:
        tx.sets["nodeport-ips"] = f' type {w.addr} ; comment "IPs that accept NodePort traffic" ;'
    proto_port = "inet_proto . inet_service"
    tx.maps["firewall-ips"] = (f" type {w.addr} . {proto_port} : verdict ; "
                               'comment "destinations that are subject to LoadBalancerSourceRanges" ;')
    tx.maps["no-endpoint-nodeports"] = (f" type {proto_port} : verdict ; comment \"vmap to drop or reject packets "
                                        'to service nodeports with no endpoints" ;')
    tx.maps["no-endpoint-services"] = (f" type {w.addr} . {proto_port} : verdict ; comment \"vmap to drop or "
                                       'reject packets to services with no endpoints" ;')
    tx.maps["service-ips"] = (f" type {w.addr} . {proto_port} : verdict ; "
                              'comment "ClusterIP, ExternalIP and LoadBalancer IP traffic" ;')
    tx.maps["service-nodeports"] = f' type {proto_port} : verdict ; comment "NodePort traffic" ;'
    tx.chain("reject-chain", ' { comment "helper for @no-endpoint-services / @no-endpoint-nodeports" ; }')
    tx.rule("reject-chain", "reject")
    tx.rule("cluster-ips-check", f"{w.ip} daddr @cluster-ips reject", "Reject traffic to invalid ports of ClusterIPs")
    if service_cidrs:
        tx.rule("cluster-ips-check", f"{w.ip} daddr {{ {', '.join(service_cidrs)} }} drop",
                "Drop traffic to unallocated ClusterIPs")
    tx.rule("firewall-check", f"{w.ip} daddr . meta l4proto . th dport vmap @firewall-ips")
    if layout == "v1.34":
        tx.rule("mark-for-masquerade", f"mark set mark or {mark}")
        tx.rule("masquerading", f"mark and {mark} == 0 return")
        tx.rule("masquerading", f"mark set mark xor {mark}")
        tx.rule("masquerading", "masquerade fully-random")
    else:
        tx.sets["hairpin-connections"] = (f" type {w.addr} . {w.addr} . {proto_port} ; "
                                          'comment "service hairpin connections" ;')
        tx.rule("masquerading", f"mark and {mark} != 0 mark set mark xor {mark} masquerade fully-random")
        tx.rule("masquerading", f"ct status dnat {w.ip} saddr . {w.ip} daddr . meta l4proto . th dport "
                                "@hairpin-connections masquerade fully-random")
        if spec.masquerade_all:
            tx.rule("services", f"{w.ip} daddr @cluster-ips mark set mark or {mark}", "masquerade all clusterIP traffic")
        elif spec.pod_cidr is not None:
            tx.rule("services", f"{w.ip} daddr @cluster-ips {w.ip} saddr != {spec.pod_cidr} mark set mark or {mark}",
                    "masquerade clusterIP traffic from outside cluster")
    tx.rule("services", f"{w.ip} daddr . meta l4proto . th dport vmap @service-ips")
    if nodeport_addresses is None:
        # nodePortAddresses.MatchAll(): any local address but localhost, which nftables mode never serves.
        no_localhost = f"{w.ip} daddr != {'127.0.0.0/8' if spec.family == 4 else '::1'}"
        tx.rule("services", f"fib daddr type local {no_localhost} meta l4proto . th dport vmap @service-nodeports")
        tx.rule("nodeport-endpoints-check", f"{no_localhost} meta l4proto . th dport vmap @no-endpoint-nodeports")
    else:
        tx.rule("services", f"{w.ip} daddr @nodeport-ips meta l4proto . th dport vmap @service-nodeports")
        tx.rule("nodeport-endpoints-check",
                f"{w.ip} daddr @nodeport-ips meta l4proto . th dport vmap @no-endpoint-nodeports")
    tx.rule("service-endpoints-check", f"{w.ip} daddr . meta l4proto . th dport vmap @no-endpoint-services")
    for address in nodeport_addresses or ():
        tx.element("nodeport-ips", address)


def synth_nftables(spec: ClusterSpec, layout: Layout = "v1.34", service_cidrs: tuple[str, ...] | None = None,
                   nodeport_addresses: tuple[str, ...] | None = None, mark: str = MASQUERADE_MARK,
                   every_local_address: bool = False) -> str:
    """The `add …` lines kube-proxy's nftables proxier of `layout` writes for `spec` on a first (full) sync,
    as knftables' `Fake.Dump()` prints them: table `ip kube-proxy` (`ip6` for a spec of family 6).

    `service_cidrs` are the cluster's Service CIDRs (`cluster-ips-check` drops traffic to unallocated
    addresses in them; default kind's: 10.96.0.0/16, or fd00:10:96::/112 for family 6; empty writes no such
    rule). `nodeport_addresses` are the node IPs NodePorts are served on (default the node IP, as
    `--nodeport-addresses primary`, the nftables mode's default, gives). `every_local_address` is kube-proxy's
    `nodePortAddresses.MatchAll()`, when `--nodeport-addresses` names no address of the table's family (the `ip6`
    table of a single-stack IPv4 node under `primary`): no `nodeport-ips` set, and the node port rules match
    `fib daddr type local` but localhost (setupNFTables at b0f823e6). Services come in the spec's order;
    the dump's order is knftables' (sorted by kind and name), so the order does not show.
    """
    return synth_transaction(spec, layout, service_cidrs, nodeport_addresses, mark, every_local_address).dump()


def synth_transaction(spec: ClusterSpec, layout: Layout = "v1.34", service_cidrs: tuple[str, ...] | None = None,
                      nodeport_addresses: tuple[str, ...] | None = None, mark: str = MASQUERADE_MARK,
                      every_local_address: bool = False) -> Transaction:
    """The `Transaction` `synth_nftables` prints (same arguments); `kube.nft_listing` prints what nft lists
    once it is loaded."""
    if service_cidrs is None:
        service_cidrs = (SERVICE_CIDR_V4 if spec.family == 4 else SERVICE_CIDR_V6,)
    if nodeport_addresses is None and not every_local_address:
        nodeport_addresses = (spec.node_ip,)
    tx = Transaction(NFT_FAMILIES[spec.family])
    _setup(tx, spec, layout, service_cidrs, None if every_local_address else nodeport_addresses, mark)
    # Neither proxier serves a headless or an ExternalName Service (ShouldSkipService, pkg/proxy/util).
    for svc in (s for s in spec.services if s.proxied):
        for port in svc.ports:
            _service_port(tx, spec, layout, svc, port, mark)
    return tx


def _service_port(tx: Transaction, spec: ClusterSpec, layout: Layout, svc: ServiceSpec, port: Port,
                  mark: str) -> None:
    """syncProxyRules for one Service port."""
    w = _Words.of(spec)
    protocol = port.protocol.lower()
    name = svc.port_name(port)
    comment = name if layout == "v1.34" else name[:COMMENT_MAX]
    base = service_port_base(svc, port)
    cluster_chain, local_chain = f"service-{base}", f"local-{base}"
    external_chain, fw_chain = f"external-{base}", f"firewall-{base}"
    eps = categorize_endpoints(svc, port, spec.node)
    policies = endpoint_policies(svc, port)
    cluster_eps, local_eps, reachable = list(eps.cluster), list(eps.local), list(eps.reachable)
    has_endpoints = eps.has_any
    # With a Local policy and no endpoint on this node, that policy's traffic has nowhere to go.
    has_internal = has_endpoints and (not policies.internal_local or bool(local_eps))
    has_external = has_endpoints and (not policies.external_local or bool(local_eps))
    external_local = policies.external_local
    internal_chain = local_chain if policies.internal_local else cluster_chain
    external_policy_chain = local_chain if external_local else cluster_chain
    uses_external_chain = has_endpoints and policies.externally_accessible
    internal_verdict = "goto reject-chain" if not has_endpoints else "drop"
    external_verdict = internal_verdict

    def key(address: str, port_number: int) -> str:
        return f"{address} . {protocol} . {port_number}"

    tx.element("cluster-ips", svc.cluster_ip)
    if has_internal:
        tx.element("service-ips", key(svc.cluster_ip, port.port), f"goto {internal_chain}")
    else:
        tx.element("no-endpoint-services", key(svc.cluster_ip, port.port), internal_verdict, comment)
    for ip in svc.external_ips:
        if has_endpoints:
            tx.element("service-ips", key(ip, port.port), f"goto {external_chain}")
        if not has_external:
            tx.element("no-endpoint-services", key(ip, port.port), external_verdict, comment)
    uses_fw = bool(svc.load_balancer_ips) and bool(svc.load_balancer_source_ranges)
    for ip in svc.load_balancer_ips:
        if has_endpoints:
            tx.element("service-ips", key(ip, port.port), f"goto {external_chain}")
        if uses_fw:
            tx.element("firewall-ips", key(ip, port.port), f"goto {fw_chain}")
    if not has_external:
        for ip in svc.load_balancer_ips:
            tx.element("no-endpoint-services", key(ip, port.port), external_verdict, comment)
    if port.node_port:
        node_port = f"{protocol} . {port.node_port}"
        if has_endpoints:
            tx.element("service-nodeports", node_port, f"goto {external_chain}")
        if not has_external:
            tx.element("no-endpoint-nodeports", node_port, external_verdict, comment)

    masquerade = "jump mark-for-masquerade" if layout == "v1.34" else f"mark set mark or {mark}"
    if cluster_eps:
        tx.chain(cluster_chain)
    if local_eps:
        tx.chain(local_chain)
    if has_internal and layout == "v1.34" and (spec.masquerade_all or spec.pod_cidr is not None):
        outside = "" if spec.masquerade_all else f"{w.ip} saddr != {spec.pod_cidr} "
        tx.rule(internal_chain, f"{w.ip} daddr {svc.cluster_ip} {outside}{masquerade}")
    if uses_external_chain:
        tx.chain(external_chain)
        if not external_local:
            tx.rule(external_chain, masquerade, None if layout == "v1.34" else "masquerade")
        else:
            if spec.pod_cidr is not None:
                tx.rule(external_chain, f"{w.ip} saddr {spec.pod_cidr} goto {cluster_chain}", "short-circuit pod traffic")
            tx.rule(external_chain, f"fib saddr type local {masquerade}", "masquerade local traffic")
            tx.rule(external_chain, f"fib saddr type local goto {cluster_chain}", "short-circuit local traffic")
        if has_external:
            tx.rule(external_chain, f"goto {external_policy_chain}")
    if uses_fw:
        node_ip = ipaddress.ip_address(spec.node_ip)
        sources = [str(ipaddress.ip_network(c.strip())) for c in svc.load_balancer_source_ranges]
        if any(node_ip in ipaddress.ip_network(c) for c in sources):
            sources += list(svc.load_balancer_ips)
        tx.chain(fw_chain)
        tx.rule(fw_chain, f"{w.ip} saddr != {{ {', '.join(sources)} }} drop")

    affinity = svc.session_affinity == "ClientIP"
    if affinity:
        for ep in reachable:
            tx.sets[f"affinity-{endpoint_base(svc, port, ep.address)}"] = (
                f" type {w.addr} ; flags dynamic,timeout ; timeout {svc.affinity_seconds}s ;")
    for chain, chosen in ((cluster_chain, cluster_eps), (local_chain, local_eps)):
        if chosen:
            _to_endpoints(tx, w, layout, svc, port, chain, chosen, protocol)
    if layout == "v1.34" or affinity:
        for ep in reachable:
            _endpoint_chain(tx, w, layout, svc, port, ep, protocol, masquerade)
    if layout != "v1.34":
        # A pod reaching itself through the Service is masqueraded by the hairpin-connections rule.
        for ep in reachable:
            if ep.node == spec.node:
                tx.element("hairpin-connections", f"{ep.address} . {ep.address} . {protocol} . {port.target_port}")


def _to_endpoints(tx: Transaction, w: _Words, layout: Layout, svc: ServiceSpec, port: Port, chain: str,
                  endpoints: list[Endpoint], protocol: str) -> None:
    """writeServiceToEndpointRules: affinity lookups first, then the random choice among the endpoints."""
    count = len(endpoints)
    if layout == "v1.34" or svc.session_affinity == "ClientIP":
        bases = [endpoint_base(svc, port, ep.address) for ep in endpoints]
        if svc.session_affinity == "ClientIP":
            for b in bases:
                tx.rule(chain, f"{w.ip} saddr @affinity-{b} goto endpoint-{b}")
        choices = " , ".join(f"{i} : goto endpoint-{b}" for i, b in enumerate(bases))
        tx.rule(chain, f"numgen random mod {count} vmap {{ {choices} }}")
        return
    choices = " , ".join(f"{i} : {ep.address} . {port.target_port}" for i, ep in enumerate(endpoints))
    tx.rule(chain, f"meta l4proto {protocol} dnat {w.ip} addr . port to numgen random mod {count} map {{ {choices} }}")


def _endpoint_chain(tx: Transaction, w: _Words, layout: Layout, svc: ServiceSpec, port: Port, ep: Endpoint,
                    protocol: str, masquerade: str) -> None:
    b = endpoint_base(svc, port, ep.address)
    chain = f"endpoint-{b}"
    tx.chain(chain)
    if layout == "v1.34":
        tx.rule(chain, f"{w.ip} saddr {ep.address} {masquerade}")
    if svc.session_affinity == "ClientIP":
        tx.rule(chain, f"update @affinity-{b} {{ {w.ip} saddr }}")
    tx.rule(chain, f"meta l4proto {protocol} dnat to {join_host_port(ep.address, port.target_port)}")
