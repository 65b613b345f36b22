"""The checks of a scenario's declared Services against a node's "after" nft ruleset: what kube-proxy's nftables
proxier writes for each fact, found through the Service index of its tables (`kube.nft_services`), as
`scenario.service_checks` finds it in an iptables-save dump (`syncProxyRules` in pkg/proxy/nftables/proxier.go;
the layouts of `kube.synth_nftables`).

For each port of a Service kube-proxy serves, in `table ip kube-proxy` (and `table ip6 kube-proxy` for a
Service with an IPv6 cluster IP):

- its cluster IP is in the `cluster-ips` set; the node sends traffic from inside to an endpoint (`service-ips`
  element `IP . proto . port : goto service-…`, `local-…` with `internal_traffic_policy: Local`), or else
  stops it (`no-endpoint-services` element `: goto reject-chain`, or `: drop` when only the policy keeps it
  from an endpoint);
- its node port, load balancer IPs and external IPs go to its `external-…` chain (`service-nodeports` and
  `service-ips` elements) or are stopped (`no-endpoint-nodeports`, `no-endpoint-services`);
- the endpoints the node uses (`kube.endpoint_use`) are those its chains DNAT to (`endpoint-` chains, or the
  entries of a numgen map), and no others.

A headless or ExternalName Service has no chain, set or element. A fact with nothing for it in the ruleset is a
problem at the fact in scenario.yaml; an element or rule of the Service that says something else is a problem
where it is written in the listing.
"""

from __future__ import annotations

from collections.abc import Iterator

from iptables_lens.errors import DumpError
from iptables_lens.kube.nft_services import TABLE, NftServiceIndex
from iptables_lens.nft.fmtrules import format_element
from iptables_lens.nft.model import Concat, Const, Element, Expr, Table, Verdict
from iptables_lens.scenario.load import KeyPath, Scenario
from iptables_lens.scenario.model import Family
from iptables_lens.scenario.nft_checks import Listing
from iptables_lens.scenario.service_checks import PortFacts

Key = tuple[str, ...]
"""An element's key as text, item by item: `("10.96.0.1", "tcp", "443")`."""
_FAMILIES: dict[str, Family] = {"ip": 4, "ip6": 6}


def _key(expr: Expr) -> Key:
    items = expr.items if isinstance(expr, Concat) else (expr,)
    return tuple(str(item.value) if isinstance(item, Const) else "?" for item in items)


def _verdict(element: Element) -> str:
    data = element.data
    if isinstance(data, Verdict):
        return f"{data.kind} {data.target}" if data.target else data.kind
    return "?"


def nft_service_problems(scenario: Scenario, node: str, index: NftServiceIndex, listing: Listing,
                         tables: tuple[Table, ...]) -> Iterator[DumpError]:
    """Every way kube-proxy's `tables` of `node`'s "after" ruleset disagree with the scenario's Services."""
    at = scenario.metadata_file.problem
    for s_index, service in enumerate(scenario.meta.services):
        if not service.proxied:
            chains, elements = index.of_service(service.key)
            named = [o.name for o in chains] + [f"an element of {key[2]}" for key in elements]
            if named:
                what, key = ("a headless", "cluster_ip") if service.headless else ("an ExternalName", "type")
                yield at(("services", s_index, key), f"{listing.path.name} has {named[0]} for {service.key}, but "
                                                     f"kube-proxy writes nothing for {what} Service")
            continue
        for family_name, family in _FAMILIES.items():
            cluster_ip = service.cluster_ip_of(family)
            if cluster_ip is None:
                continue
            table = next((t for t in tables if t.family == family_name), None)
            ip_key = ("services", s_index, "cluster_ip" if family == 4 else "cluster_ip_v6")
            if table is None:
                yield at(ip_key, f"{listing.path.name} has no table {family_name} {TABLE}, where kube-proxy writes "
                                 f"{service.key}'s IPv{family} rules")
                continue
            cluster_ips = {_key(e.key) for e in table.set("cluster-ips").elements} if _has_set(table, "cluster-ips") else set()
            if (str(cluster_ip),) not in cluster_ips:
                yield at(ip_key, f"{listing.path.name}'s {family_name} cluster-ips set has no {cluster_ip}, which "
                                 "kube-proxy adds for every Service's cluster IP")
            for p_index, port in enumerate(service.ports):
                check = _NftPortCheck(at, ("services", s_index), service, port, p_index, node, family)
                yield from check.problems(index, listing, table)


def _has_set(table: Table, name: str) -> bool:
    return any(item.name == name for item in table.sets)


class _NftPortCheck(PortFacts):
    """The facts of one Service port against one kube-proxy table."""

    def _expected(self) -> dict[str, dict[Key, tuple[KeyPath, str, str]]]:
        """Set or map name -> key of each element kube-proxy writes there for the port -> (the fact's key path,
        the verdict it has, what it is)."""
        proto, port = self.proto, str(self.port.port)
        ip_key = self.key + ("cluster_ip" if self.family == 4 else "cluster_ip_v6",)
        cluster_ip = str(self.service.cluster_ip_of(self.family))
        stop = "goto reject-chain" if not self.use.has_any else "drop"
        expected: dict[str, dict[Key, tuple[KeyPath, str, str]]] = {
            name: {} for name in ("service-ips", "no-endpoint-services", "service-nodeports", "no-endpoint-nodeports")}
        internal = "local" if self.internal_local else "service"
        if self.has_internal:
            expected["service-ips"][(cluster_ip, proto, port)] = (ip_key, f"goto {internal}-", "cluster IP")
        else:
            expected["no-endpoint-services"][(cluster_ip, proto, port)] = (ip_key, stop, "cluster IP")
        for fact, address, kind in self.external_addresses():
            if self.use.has_any:
                expected["service-ips"][(str(address), proto, port)] = (self.key + fact, "goto external-", kind)
            if not self.has_external:
                expected["no-endpoint-services"][(str(address), proto, port)] = (self.key + fact, stop, kind)
        node_port = self.port.node_port
        if node_port is not None:
            fact = self.key + ("ports", self.p_index, "node_port")
            if self.use.has_any:
                expected["service-nodeports"][(proto, str(node_port))] = (fact, "goto external-", "node port")
            if not self.has_external:
                expected["no-endpoint-nodeports"][(proto, str(node_port))] = (fact, stop, "node port")
        return expected

    def problems(self, index: NftServiceIndex, listing: Listing, table: Table) -> Iterator[DumpError]:
        file = listing.path.name
        for name, wanted in self._expected().items():
            item = next((s for s in table.sets if s.name == name), None)
            owned = [e for e, o in index.element_owners(table.family, table.name, name) if o.service_port == self.name]
            found = {_key(e.key): e for e in owned}
            for key, (fact, verdict, kind) in wanted.items():
                element = found.get(key)
                if element is None:
                    yield self.at(fact, f"{file} has no {table.family} {name} element {' . '.join(key)} for "
                                        f"{self.where}'s {kind}, which kube-proxy writes ({verdict}…)")
                elif item is not None and not _verdict(element).startswith(verdict):
                    yield listing.element(item, element, f"{name} element {format_element(element)} of {self.where}: "
                                                         f"kube-proxy writes {verdict}… for its {kind}")
            for key, element in found.items():
                if item is not None and key not in wanted:
                    yield listing.element(item, element, self._unexpected(name, element, wanted))
        yield from self._endpoint_problems(index, listing, table)

    def _unexpected(self, name: str, element: Element, wanted: dict[Key, tuple[KeyPath, str, str]]) -> str:
        text = f"{name} element {format_element(element)} serves {self.where}"
        if wanted:
            return text + f", but by the scenario's facts kube-proxy writes {', '.join(' . '.join(k) for k in wanted)} there"
        return text + f", but by the scenario's facts kube-proxy writes no {name} element for it"

    def _endpoint_problems(self, index: NftServiceIndex, listing: Listing, table: Table) -> Iterator[DumpError]:
        targets = index.dnat_targets(table.family, table.name, self.name)
        sent = {t.endpoint for t in targets}
        reachable = {e.target: e for e in self.use.reachable}
        for endpoint in self.declared:
            e_index = self.service.endpoints.index(endpoint)
            if endpoint.target in reachable and endpoint.target not in sent:
                yield self.at(self.key + ("endpoints", e_index),
                              f"{listing.path.name} DNATs {self.where} to no {endpoint.target} (no endpoint chain nor "
                              f"numgen map entry), but kube-proxy on {self.node} sends it traffic there")
        declared = {e.target: e for e in self.declared}
        for target in targets:
            if target.endpoint in reachable:
                continue
            if target.endpoint in declared:
                why = f"kube-proxy on {self.node} sends it none: {self.unused(declared[target.endpoint])}"
            else:
                why = "the scenario declares no such endpoint of it"
            yield listing.rule(target.rule, f"{target.rule.chain} DNATs {self.where} to {target.endpoint}, but {why}")
