"""The checks of a scenario's declared Services against a node's "after" dump: what kube-proxy v1.29 writes
for each fact, found where it writes it (`syncProxyRules` in pkg/proxy/iptables/proxier.go).

For each port of a Service kube-proxy serves, on each node, in the dumps of each family the Service has:

- the cluster IP: a nat KUBE-SERVICES rule to its KUBE-SVC chain (KUBE-SVL with `internal_traffic_policy:
  Local`); without usable endpoints a filter KUBE-SERVICES rule that REJECTs, or DROPs when the policy is Local
  and the node has none of its own;
- what reaches it from outside, to its KUBE-EXT chain (masquerading all of it unless
  `external_traffic_policy` is Local): the node port in nat KUBE-NODEPORTS, each `load_balancer_ips` and
  `external_ips` address in nat KUBE-SERVICES; where no endpoint can take it, filter KUBE-EXTERNAL-SERVICES
  REJECTs or DROPs it;
- `load_balancer_source_ranges`: a KUBE-FW chain letting exactly those ranges through, and filter
  KUBE-PROXY-FIREWALL dropping the rest; `health_check_node_port`: accepted in filter KUBE-NODEPORTS;
- the endpoints the node's kube-proxy uses (`kube.endpoint_use`: ready ones, else serving terminating ones;
  local ones under a Local policy) each have an endpoint chain that DNATs to them, the others none;
- `session_affinity: ClientIP`: the Service chains remember clients for `session_affinity_timeout` seconds;
  without it, no chain remembers them.

A headless or ExternalName Service has no rule at all. Each problem points at the fact in scenario.yaml.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from iptables_lens.errors import DumpError
from iptables_lens.iptables.model import Dump, Rule
from iptables_lens.kube.endpoint_use import EndpointPolicies, EndpointUse, categorize_endpoints
from iptables_lens.kube.names import endpoint_chain, service_chain
from iptables_lens.kube.services import ServiceIndex, rule_names
from iptables_lens.scenario.load import KeyPath, Scenario
from iptables_lens.scenario.model import Address, Endpoint, Family, Service, ServicePort

_HOST = {4: 32, 6: 128}
Problem = Callable[[KeyPath, str], DumpError]


def service_problems(scenario: Scenario, node: str, dump: Dump, path: Path, family: Family = 4
                     ) -> Iterator[DumpError]:
    """Every way `dump` (`node`'s "after" dump of `family`) disagrees with the scenario's Services."""
    rules = _Rules(dump, path.name, family)
    index: ServiceIndex | None = None
    for s_index, service in enumerate(scenario.meta.services):
        if not service.proxied:
            index = index or ServiceIndex.of(dump)
            yield from _nothing_written(scenario.metadata_file.problem, s_index, service, rules, index)
            continue
        if service.cluster_ip_of(family) is None:
            continue  # a single-stack Service is in its family's dumps only
        for p_index, port in enumerate(service.ports):
            check = _PortCheck(scenario.metadata_file.problem, ("services", s_index), service, port, p_index, node,
                               rules)
            yield from check.cluster_ip()
            yield from check.outside()
            yield from check.firewall()
            yield from check.health_check()
            yield from check.endpoints()
            yield from check.affinity()


@dataclass(frozen=True)
class _Rules:
    """A dump's chains, for looking rules up: (table, chain) -> its rules, empty if the chain is missing."""

    dump: Dump
    file: str
    family: Family

    def of(self, table: str, chain: str) -> list[Rule]:
        if not self.dump.has_table(table) or not self.dump.table(table).has_chain(chain):
            return []
        return list(self.dump.table(table).chain(chain).rules)

    def has_chain(self, chain: str) -> bool:
        return self.dump.has_table("nat") and self.dump.table("nat").has_chain(chain)

    def host(self, address: object) -> str:
        return f"{address}/{_HOST[self.family]}"


def _dport(rule: Rule) -> str | None:
    return next((o.value for m in rule.matches if (o := m.option("--dport")) is not None), None)


def _address(rule: Rule, flag: str) -> str | None:
    criterion = rule.criterion(flag)
    return criterion.value if criterion is not None and not criterion.negated else None


def _target(rule: Rule) -> str | None:
    return rule.target.name if rule.target is not None else None


def _find(rules: list[Rule], target: str | None = None, dst: str | None = None, dport: int | None = None
          ) -> Rule | None:
    """The first rule with that target, destination and destination port (None: any)."""
    for rule in rules:
        if target is not None and _target(rule) != target:
            continue
        if dst is not None and _address(rule, "-d") != dst:
            continue
        if dport is not None and _dport(rule) != str(dport):
            continue
        return rule
    return None


def _nothing_written(at: Problem, s_index: int, service: Service, rules: _Rules, index: ServiceIndex
                     ) -> Iterator[DumpError]:
    """A headless or ExternalName Service: kube-proxy skips it (`ShouldSkipService`), so no rule names it."""
    what, key = ("a headless Service", "cluster_ip") if service.headless else ("an ExternalName Service", "type")
    found = next((rule for rule in rules.dump.rules if rule_names(rule, service.key)), None)
    chains = index.chains_of(service.key)
    if found is not None:
        yield at(("services", s_index, key), f"{rules.file} line {found.line} has a rule for {service.key}, but "
                 f"kube-proxy writes none for {what}")
    elif chains:
        yield at(("services", s_index, key), f"{rules.file} has chain {chains[0][1].name} for {service.key}, but "
                 f"kube-proxy writes none for {what}")


class PortFacts:
    """What kube-proxy on `node` does with one port of a declared Service in the rules of `family`, by the
    scenario's facts: which endpoints it uses, whether traffic from inside (`has_internal`) and from outside
    (`has_external`) reaches one, through which addresses. `key` is the Service's key path in scenario.yaml,
    `at` makes a problem at a key path there."""

    def __init__(self, at: Problem, key: KeyPath, service: Service, port: ServicePort, p_index: int, node: str,
                 family: Family):
        self.at, self.key, self.service, self.port, self.p_index, self.node, self.family = (
            at, key, service, port, p_index, node, family)
        self.name = service.key + (f":{port.name}" if port.name else "")
        """kube-proxy's name of the Service port (`ServicePortName`): `ns/name`, plus `:port` if it is named."""
        self.proto = port.protocol.lower()
        self.where = f"{service.key} port {port.port}/{port.protocol}"
        self.internal_local = service.internal_traffic_policy == "Local"
        self.external_local = service.externally_accessible and service.external_traffic_policy == "Local"
        policies = EndpointPolicies(self.internal_local, self.external_local, service.externally_accessible)
        self.declared = service.endpoints_of_port(port, family)
        self.use: EndpointUse[Endpoint] = categorize_endpoints(self.declared, node, policies)
        self.has_internal = self.use.has_any and (bool(self.use.local) or not self.internal_local)
        self.has_external = self.use.has_any and (bool(self.use.local) or not self.external_local)
        self.lb_ips = [(i, a) for i, a in enumerate(service.load_balancer_ips) if a.version == family]
        self.ranges = [(i, r) for i, r in enumerate(service.load_balancer_source_ranges) if r.version == family]
        self.uses_fw = self.use.has_any and bool(self.lb_ips) and bool(service.load_balancer_source_ranges)

    def external_addresses(self) -> list[tuple[KeyPath, Address, str]]:
        """The Service's load balancer and external IPs of the family: their key path, address and kind."""
        found: list[tuple[KeyPath, Address, str]] = [(("load_balancer_ips", i), a, "load balancer IP")
                                                     for i, a in self.lb_ips]
        return found + [(("external_ips", i), a, "external IP")
                         for i, a in enumerate(self.service.external_ips) if a.version == self.family]

    def why_no_endpoint(self) -> tuple[KeyPath, str]:
        """Why no endpoint takes traffic this node cannot send to a local endpoint, and the fact to look at."""
        if not self.use.has_any:
            return self.key + ("endpoints",), "the Service has no usable endpoint"
        return self.key + ("internal_traffic_policy" if not self.has_internal else "external_traffic_policy",), (
            f"its traffic policy is Local and {self.node} has no endpoint of it")

    def unused(self, endpoint: Endpoint) -> str:
        """Why the node sends the port's traffic to none of `endpoint`."""
        if not endpoint.ready and not (endpoint.serving and endpoint.terminating):
            return "it is neither ready nor serving while terminating"
        if not endpoint.ready and any(e.ready for e in self.declared):
            return "it is terminating, and other endpoints are ready"
        return f"it runs on {endpoint.node or 'another node'}, and the Service's internal_traffic_policy is Local"


class _PortCheck(PortFacts):
    """The facts of one Service port against one iptables-save dump."""

    def __init__(self, at: Problem, key: KeyPath, service: Service, port: ServicePort, p_index: int, node: str,
                 rules: _Rules):
        super().__init__(at, key, service, port, p_index, node, rules.family)
        self.rules = rules
        self.svc, self.svl, self.ext, self.fw = (service_chain(prefix, self.name, self.proto)
                                                 for prefix in ("KUBE-SVC", "KUBE-SVL", "KUBE-EXT", "KUBE-FW"))

    def _verdict(self) -> str:
        return "REJECT" if not self.use.has_any else "DROP"

    def cluster_ip(self) -> Iterator[DumpError]:
        rules, at = self.rules, self.at
        cluster_ip = self.service.cluster_ip_of(self.family)
        ip_key = self.key + ("cluster_ip" if self.family == 4 else "cluster_ip_v6",)
        services = rules.of("nat", "KUBE-SERVICES")
        chain = self.svl if self.internal_local else self.svc
        other = self.svc if self.internal_local else self.svl
        if not self.has_internal:
            verdict = self._verdict()
            key, reason = self.why_no_endpoint()
            if _find(rules.of("filter", "KUBE-SERVICES"), verdict, rules.host(cluster_ip), self.port.port) is None:
                yield at(key, f"{rules.file} has no filter KUBE-SERVICES rule that {verdict}s {self.where} at "
                              f"{cluster_ip}, which kube-proxy writes when {reason}")
            sent = _find(services, self.svc) or _find(services, self.svl)
            if sent is not None:
                yield at(key, f"{rules.file} line {sent.line} sends {self.where} to {_target(sent)}, but {reason}")
            return
        rule = _find(services, chain)
        if rule is None:
            wrong = _find(services, other)
            if wrong is not None:
                policy = "Local" if self.internal_local else "Cluster"
                yield at(self.key + ("internal_traffic_policy",),
                         f"{rules.file} line {wrong.line} sends {self.where} to {other}, not to {chain} as "
                         f"kube-proxy does with internal_traffic_policy {policy}")
                return
            yield at(ip_key, f"{rules.file} has no KUBE-SERVICES rule jumping to {chain}, the chain kube-proxy names "
                             f"for {self.where}: is the Service name, namespace, port name or protocol right?")
            return
        destination, dport = _address(rule, "-d"), _dport(rule)
        if destination != rules.host(cluster_ip):
            yield at(ip_key, f"{rules.file} line {rule.line} sends {self.where} to {destination or 'any address'}, "
                             f"not {cluster_ip}")
        if dport != str(self.port.port):
            yield at(self.key + ("ports", self.p_index, "port"),
                     f"{rules.file} line {rule.line} matches port {dport or 'any'}, not {self.port.port}")

    def outside(self) -> Iterator[DumpError]:
        """The node port, load balancer IPs and external IPs: into KUBE-EXT, or stopped in the filter table."""
        rules, at, port = self.rules, self.at, self.port
        nodeport = _find(rules.of("nat", "KUBE-NODEPORTS"), self.ext)
        port_key = self.key + ("ports", self.p_index, "node_port")
        if port.node_port is None:
            if nodeport is not None:
                yield at(self.key + ("type",), f"{rules.file} line {nodeport.line} opens a node port for "
                                               f"{self.where}, but the Service is declared {self.service.type} without "
                                               "a node_port")
        elif self.use.has_any:
            if nodeport is None:
                yield at(port_key, f"{rules.file} has no KUBE-NODEPORTS rule for {self.where} (jumping to {self.ext})")
            elif _dport(nodeport) != str(port.node_port):
                yield at(port_key, f"{rules.file} line {nodeport.line} opens node port {_dport(nodeport) or 'any'} "
                                   f"for {self.where}, not {port.node_port}")
        lb_chain = self.fw if self.uses_fw else self.ext
        addresses = [(fact, a, kind, lb_chain if kind == "load balancer IP" else self.ext)
                     for fact, a, kind in self.external_addresses()]
        services = rules.of("nat", "KUBE-SERVICES")
        for fact, address, kind, chain in addresses:
            if self.use.has_any and _find(services, chain, rules.host(address), port.port) is None:
                yield at(self.key + fact, f"{rules.file} has no KUBE-SERVICES rule sending {self.where} at {kind} "
                                         f"{address} to {chain}")
        if not self.has_external:
            verdict = self._verdict()
            key, reason = self.why_no_endpoint()
            stopped = rules.of("filter", "KUBE-EXTERNAL-SERVICES")
            if port.node_port is not None and _find(stopped, verdict, None, port.node_port) is None:
                yield at(key, f"{rules.file} has no filter KUBE-EXTERNAL-SERVICES rule that {verdict}s {self.where} "
                              f"at node port {port.node_port}, which kube-proxy writes when {reason}")
            for _, address, kind, _ in addresses:
                if _find(stopped, verdict, rules.host(address), port.port) is None:
                    yield at(key, f"{rules.file} has no filter KUBE-EXTERNAL-SERVICES rule that {verdict}s "
                                  f"{self.where} at {kind} {address}, which kube-proxy writes when {reason}")
        if self.use.has_any and self.service.externally_accessible:
            yield from self._external_chain()

    def _external_chain(self) -> Iterator[DumpError]:
        """KUBE-EXT masquerades every packet under the Cluster policy, only the node's own under Local."""
        rules = self.rules
        if not rules.has_chain(self.ext):
            yield self.at(self.key + ("type",), f"{rules.file} has no {self.ext} chain, which kube-proxy writes for "
                                                f"{self.where} reached from outside")
            return
        masquerade_all = next((r for r in rules.of("nat", self.ext) if _target(r) == "KUBE-MARK-MASQ"
                               and r.criterion("-s") is None and r.match("addrtype") is None), None)
        key = self.key + ("external_traffic_policy",)
        if self.external_local and masquerade_all is not None:
            yield self.at(key, f"{rules.file} line {masquerade_all.line} masquerades all outside traffic to "
                               f"{self.where}, which kube-proxy does under the Cluster policy, not Local")
        elif not self.external_local and masquerade_all is None:
            yield self.at(key, f"{rules.file}'s {self.ext} does not masquerade all outside traffic to {self.where}, "
                               "which kube-proxy does under the Cluster policy")
        if self.external_local and self.use.local and not rules.has_chain(self.svl):
            yield self.at(key, f"{rules.file} has no {self.svl} chain, which kube-proxy writes for a Local policy")

    def firewall(self) -> Iterator[DumpError]:
        """The KUBE-FW chain lets exactly the source ranges through; KUBE-PROXY-FIREWALL drops the rest."""
        rules, at = self.rules, self.at
        key = self.key + ("load_balancer_source_ranges",)
        has_chain = rules.has_chain(self.fw)
        if not self.uses_fw:
            if has_chain:
                yield at(key, f"{rules.file} has a firewall chain {self.fw} for {self.where}, but the Service "
                              "declares no load_balancer_source_ranges")
            return
        if not has_chain:
            yield at(key, f"{rules.file} has no firewall chain {self.fw} for {self.where}, which kube-proxy writes "
                          "for load_balancer_source_ranges")
            return
        through = {_address(r, "-s"): r for r in rules.of("nat", self.fw) if _target(r) == self.ext}
        lb_hosts = {rules.host(a) for _, a in self.lb_ips}  # let through when a range holds the node itself
        for index, network in self.ranges:
            if str(network) not in through:
                yield at(key + (index,), f"{rules.file}'s {self.fw} does not let {network} through to {self.ext}")
        declared = {str(n) for _, n in self.ranges}
        for source, rule in through.items():
            if source not in declared and source not in lb_hosts:
                yield at(key, f"{rules.file} line {rule.line} lets {source or 'any source'} through {self.fw}, "
                              "which is no declared source range")
        drops = rules.of("filter", "KUBE-PROXY-FIREWALL")
        for index, address in self.lb_ips:
            if _find(drops, "DROP", rules.host(address), self.port.port) is None:
                yield at(self.key + ("load_balancer_ips", index),
                         f"{rules.file} has no filter KUBE-PROXY-FIREWALL rule dropping what {self.fw} does not let "
                         f"through to {address}")

    def health_check(self) -> Iterator[DumpError]:
        rules = self.rules
        accepted = [r for r in rules.of("filter", "KUBE-NODEPORTS") if _target(r) == "ACCEPT"]
        declared = self.service.health_check_node_port
        if declared is None:
            opened = next((r for r in accepted if rule_names(r, self.name)), None)
            if opened is not None:
                yield self.at(self.key + ("external_traffic_policy",),
                              f"{rules.file} line {opened.line} accepts health check node port {_dport(opened)} for "
                              f"{self.where}, but the Service declares no health_check_node_port")
        elif _find(accepted, "ACCEPT", None, declared) is None:
            yield self.at(self.key + ("health_check_node_port",),
                          f"{rules.file} has no filter KUBE-NODEPORTS rule accepting health check node port "
                          f"{declared} of {self.where}")

    def endpoints(self) -> Iterator[DumpError]:
        """The endpoints this node sends traffic to have an endpoint chain that DNATs to them; the others none."""
        rules = self.rules
        reachable = self.use.reachable
        for endpoint in self.declared:
            e_index = self.service.endpoints.index(endpoint)
            target = endpoint.target
            sep = endpoint_chain(self.name, self.proto, target)
            dnat = any(_target(r) == "DNAT" and r.target is not None
                       and (to := r.target.option("--to-destination")) is not None and to.value == target
                       for r in rules.of("nat", sep))
            if endpoint in reachable and not dnat:
                yield self.at(self.key + ("endpoints", e_index), f"{rules.file} has no endpoint chain {sep} that "
                                                                  f"DNATs {self.where} to {target}")
            elif endpoint not in reachable and rules.has_chain(sep):
                yield self.at(self.key + ("endpoints", e_index), f"{rules.file} has endpoint chain {sep} for "
                                                                  f"{target}, but kube-proxy on {self.node} sends "
                                                                  f"{self.where} no traffic there: {self.unused(endpoint)}")

    def affinity(self) -> Iterator[DumpError]:
        """ClientIP affinity: every Service chain checks `-m recent --rcheck --seconds TIMEOUT` first."""
        rules = self.rules
        for chain in (self.svc, self.svl):
            checks = [r for r in rules.of("nat", chain) if r.match("recent") is not None]
            if self.service.session_affinity != "ClientIP":
                if checks:
                    yield self.at(self.key + ("session_affinity",),
                                  f"{rules.file} line {checks[0].line} remembers clients of {self.where} (-m recent), "
                                  "which kube-proxy does for session_affinity ClientIP only")
                continue
            if not rules.has_chain(chain):
                continue
            if not checks:
                yield self.at(self.key + ("session_affinity",),
                              f"{rules.file}'s {chain} does not remember clients (-m recent), which kube-proxy "
                              "writes for session_affinity ClientIP")
                continue
            for rule in checks:
                seconds = rule.match("recent").option("--seconds")  # type: ignore[union-attr]
                if seconds is None or seconds.value != str(self.service.affinity_timeout):
                    yield self.at(self.key + ("session_affinity_timeout",),
                                  f"{rules.file} line {rule.line} remembers a client for "
                                  f"{seconds.value if seconds else 'ever'} seconds, not "
                                  f"{self.service.affinity_timeout}")
                    break
