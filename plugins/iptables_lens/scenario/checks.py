"""The checks a reviewer would make of a loaded scenario, beyond its schema: each yields positioned problems.

- each declared Service appears in the node's "after" dumps as kube-proxy writes it (`scenario.service_checks`:
  its cluster IP, node ports, load balancer and external IPs, source ranges, health check node port, the
  endpoints the node uses and no others, its traffic policies and session affinity), and a headless or
  ExternalName Service not at all;
- the addresses in the dumps agree with the facts: underlay addresses are nodes (or the declared gateway, or a
  Service's load balancer or external IP), pod addresses lie in some node's pod range;
- every hashed kube-proxy chain name verifies;
- with `kernel=True` (root), both iptables-restore variants accept every dump (`--test`), the ip6tables ones
  each IPv6 dump;
- an nftables-mode scenario's rulesets get the same checks from `scenario.nft_checks` (`nft -c -f` the kernel's).

An IPv6 dump (`family: 6`) is checked against the IPv6 facts: the Service's `cluster_ip_v6` (a /128), its
IPv6 endpoints, DNATed to `[address]:port`, and the `_v6` ranges.

A problem with the facts points at the key in scenario.yaml; a problem in a dump at its line.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterator
from pathlib import Path

from iptables_lens.dialects import detect_bytes
from iptables_lens.errors import DumpError
from iptables_lens.iptables.model import Dump
from iptables_lens.kube.names import HASHED_FAMILIES, decode_chain
from iptables_lens.scenario.load import Scenario
from iptables_lens.scenario.model import Address, Family, ScenarioMeta
from iptables_lens.scenario.nft_checks import kernel_ruleset_problems, ruleset_problems
from iptables_lens.scenario.service_checks import service_problems

_HOST = {4: 32, 6: 128}
_RESTORE = {4: {"nft": "iptables-nft-restore", "legacy": "iptables-legacy-restore"},
            6: {"nft": "ip6tables-nft-restore", "legacy": "ip6tables-legacy-restore"}}


def check_scenario(scenario: Scenario, kernel: bool = False) -> list[DumpError]:
    """Every problem the checks find in `scenario`, dump by dump in the order of the metadata, then the
    kernel's. A dump the scenario could not load is skipped (loading reported it). An nft ruleset is checked by
    `scenario.nft_checks`."""
    problems: list[DumpError] = []
    for entry in scenario.meta.dumps:
        if entry.file in scenario.rulesets:
            problems += ruleset_problems(scenario, entry, scenario.rulesets[entry.file])
        dump = scenario.dumps.get(entry.file)
        if dump is None:
            continue
        path = scenario.folder / entry.file
        if entry.moment == "after":
            problems += service_problems(scenario, entry.node, dump, path, entry.family)
        problems += _address_problems(scenario.meta, dump, path, entry.family)
        problems += _hash_problems(dump, path)
    if kernel:
        problems += _kernel_problems(scenario)
    return problems


def _in_dump(path: Path, line: int, message: str, text: str | None = None) -> DumpError:
    return DumpError(str(path), line, 1 if line else 0, message, text)


def _addresses_in(dump: Dump):
    for rule in dump.rules:
        for c in rule.criteria:
            if c.flag in ("-s", "-d"):
                for value in c.value.split(","):
                    yield rule, value
        if rule.target is not None:
            for o in rule.target.options:
                if o.name in ("--to-destination", "--to-source"):
                    yield rule, _nat_address(o.value)


def _nat_address(value: str) -> str:
    """The first address of a NAT target's range: `10.0.0.1-10.0.0.9:80` and `[fd00::1]-[fd00::9]:80`."""
    if value.startswith("["):
        return value[1:].split("]")[0]
    return value.split(":")[0].split("-")[0]


class AddressFacts:
    """Where the scenario's facts allow an address of a dump to be: on the underlay only as a node, the
    declared gateway, or a Service's load balancer or external IP; in the pod network only in a node's range."""

    def __init__(self, meta: ScenarioMeta):
        self.meta = meta

    def problem(self, address: Address) -> str | None:
        """What is wrong with `address` (of either family) being in a dump, or None."""
        family: Family = 6 if address.version == 6 else 4
        meta, cluster = self.meta, self.meta.cluster
        underlay, pod_network, gateway = cluster.underlay_of(family), cluster.pod_cidr_of(family), cluster.gateway_of(family)
        nodes = {a for a in (n.address_of(family) for n in meta.nodes) if a is not None}
        if underlay is not None and address in underlay:
            # A load balancer or external IP is often an underlay address no node holds (MetalLB, cloud-provider-kind).
            services = {a for s in meta.services for a in (*s.load_balancer_ips, *s.external_ips)}
            if address in nodes or address in services or address == gateway:
                return None
            return (f"{address} is on the underlay {underlay} but is no declared node address (nodes: "
                    f"{', '.join(str(n) for n in sorted(nodes))})")
        pod_ranges = [r for r in (n.pod_cidr_of(family) for n in meta.nodes) if r is not None]
        if pod_network is not None and address in pod_network and not any(address in r for r in pod_ranges):
            return f"{address} is in the pod network but in no node's pod range"
        return None


def _address_problems(meta: ScenarioMeta, dump: Dump, path: Path, family: Family = 4) -> Iterator[DumpError]:
    facts = AddressFacts(meta)
    reported = set()
    for rule, value in _addresses_in(dump):
        network = ipaddress.ip_network(value, strict=False)
        if network.prefixlen != _HOST[family]:
            continue
        address = network.network_address
        problem = facts.problem(address) if address not in reported else None
        if problem is not None:
            reported.add(address)
            yield _in_dump(path, rule.line, problem, rule.text)


def _hash_problems(dump: Dump, path: Path) -> Iterator[DumpError]:
    for table in dump.tables:
        for chain in table.chains:
            if chain.builtin or not any(chain.name.startswith(f"{f}-") for f in HASHED_FAMILIES):
                continue
            decoded = decode_chain(table, chain.name)
            if decoded is not None and not decoded.verified:
                yield _in_dump(path, chain.line, f"chain {chain.name}: its hash does not verify against any Service "
                               f"and protocol its rules name ({decoded.service_port or 'none'})")


def _kernel_problems(scenario: Scenario) -> Iterator[DumpError]:
    from iptables_lens.netns import Namespace, can_run_kernel_lab, missing_tools

    rulesets = [entry for entry in scenario.meta.dumps if entry.is_ruleset]
    families = {entry.family for entry in scenario.meta.dumps if not entry.is_ruleset}
    missing = missing_tools(*(c for f in sorted(families) for c in _RESTORE[f].values()),
                            *(["nft"] if rulesets else []))
    reason = can_run_kernel_lab() or (f"needs {', '.join(missing)}" if missing else None)
    if reason:
        yield DumpError(str(scenario.folder), 0, 0, f"cannot ask the kernel: it {reason}")
        return
    yield from kernel_ruleset_problems(scenario, rulesets)
    with Namespace("validate") as ns:
        for entry in scenario.meta.dumps:
            if entry.is_ruleset:
                continue
            path = scenario.folder / entry.file
            if not path.is_file():
                continue
            text = path.read_bytes()
            if detect_bytes(text).name != "iptables":
                continue  # loading said that scenarios do not hold it yet; iptables-restore has nothing to add
            for command in _RESTORE[entry.family].values():
                result = ns.run([command, "--test"], input=text)
                if not result.ok:
                    yield _in_dump(path, 0, f"the kernel refuses it ({command} --test): "
                                   f"{result.stderr.strip()}")


