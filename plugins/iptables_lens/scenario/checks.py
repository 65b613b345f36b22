"""The checks a reviewer would make of a loaded scenario, beyond its schema: each yields positioned problems.

- each declared Service appears in the node's "after" dumps as kube-proxy writes it: the cluster IP rule in
  KUBE-SERVICES, the node port rule in KUBE-NODEPORTS (and none for a ClusterIP Service), an endpoint chain
  that DNATs to each declared endpoint, KUBE-SVL for `externalTrafficPolicy: Local`;
- the addresses in the dumps agree with the facts: underlay addresses are nodes (or the declared gateway),
  pod addresses lie in some node's pod range;
- every hashed kube-proxy chain name verifies;
- with `kernel=True` (root), both iptables-restore variants accept every dump (`--test`).

A problem with the facts points at the key in scenario.yaml; a problem in a dump at its line.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterator
from pathlib import Path

from iptables_lens.errors import DumpError
from iptables_lens.iptables.model import Dump
from iptables_lens.kube.names import HASHED_FAMILIES, decode_chain, endpoint_chain, service_chain
from iptables_lens.scenario.load import Scenario
from iptables_lens.scenario.model import ScenarioMeta


def check_scenario(scenario: Scenario, kernel: bool = False) -> list[DumpError]:
    """Every problem the checks find in `scenario`, dump by dump in the order of the metadata, then the
    kernel's. A dump the scenario could not load is skipped (loading reported it)."""
    problems: list[DumpError] = []
    for entry in scenario.meta.dumps:
        dump = scenario.dumps.get(entry.file)
        if dump is None:
            continue
        path = scenario.folder / entry.file
        if entry.moment == "after":
            problems += _service_problems(scenario, entry.node, dump, path)
        problems += _address_problems(scenario.meta, dump, path)
        problems += _hash_problems(dump, path)
    if kernel:
        problems += _kernel_problems(scenario)
    return problems


def _in_dump(path: Path, line: int, message: str, text: str | None = None) -> DumpError:
    return DumpError(str(path), line, 1 if line else 0, message, text)


def _nat_rules(dump: Dump, chain: str):
    if not dump.has_table("nat"):
        return []
    nat = dump.table("nat")
    return list(nat.chain(chain).rules) if nat.has_chain(chain) else []


def _service_problems(scenario: Scenario, node: str, dump: Dump, path: Path) -> Iterator[DumpError]:
    at = scenario.metadata_file.problem
    nat = dump.table("nat") if dump.has_table("nat") else None
    services_rules = _nat_rules(dump, "KUBE-SERVICES")
    nodeport_rules = _nat_rules(dump, "KUBE-NODEPORTS")
    for s_index, service in enumerate(scenario.meta.services):
        for p_index, port in enumerate(service.ports):
            name = service.key + (f":{port.name}" if port.name else "")
            proto = port.protocol.lower()
            svc = service_chain("KUBE-SVC", name, proto)
            where = f"{service.key} port {port.port}/{port.protocol}"
            rule = next((r for r in services_rules if r.target and r.target.name == svc), None)
            if rule is None:
                yield at(("services", s_index, "cluster_ip"),
                         f"{path.name} has no KUBE-SERVICES rule jumping to {svc}, the chain kube-proxy names for "
                         f"{where}: is the Service name, namespace, port name or protocol right?")
            else:
                destination = rule.criterion("-d")
                dport = next((m.option("--dport") for m in rule.matches if m.option("--dport")), None)
                if destination is None or destination.value != f"{service.cluster_ip}/32":
                    yield at(("services", s_index, "cluster_ip"),
                             f"{path.name} line {rule.line} sends {where} to "
                             f"{destination.value if destination else 'any address'}, not {service.cluster_ip}")
                if dport is None or dport.value != str(port.port):
                    yield at(("services", s_index, "ports", p_index, "port"),
                             f"{path.name} line {rule.line} matches port {dport.value if dport else 'any'}, "
                             f"not {port.port}")
            ext = service_chain("KUBE-EXT", name, proto)
            nodeport = next((r for r in nodeport_rules if r.target and r.target.name == ext), None)
            if port.node_port is not None:
                if nodeport is None:
                    yield at(("services", s_index, "ports", p_index, "node_port"),
                             f"{path.name} has no KUBE-NODEPORTS rule for {where} (jumping to {ext})")
                else:
                    dport = next((m.option("--dport") for m in nodeport.matches if m.option("--dport")), None)
                    if dport is None or dport.value != str(port.node_port):
                        yield at(("services", s_index, "ports", p_index, "node_port"),
                                 f"{path.name} line {nodeport.line} opens node port "
                                 f"{dport.value if dport else 'any'} for {where}, not {port.node_port}")
            elif nodeport is not None:
                yield at(("services", s_index, "type"),
                         f"{path.name} line {nodeport.line} opens a node port for {where}, but the Service is "
                         f"declared {service.type}")
            for e_index, endpoint in enumerate(service.endpoints):
                target = f"{endpoint.address}:{endpoint.port}"
                sep = endpoint_chain(name, proto, target)
                chain = nat.chain(sep) if nat is not None and nat.has_chain(sep) else None
                dnat = chain and any(r.target and r.target.name == "DNAT"
                                     and r.target.option("--to-destination").value == target  # type: ignore[union-attr]
                                     for r in chain.rules)
                if not dnat:
                    yield at(("services", s_index, "endpoints", e_index),
                             f"{path.name} has no endpoint chain {sep} that DNATs {where} to {target}")
            if service.external_traffic_policy == "Local" and port.node_port is not None:
                local = [e for e in service.endpoints if e.node == node]
                svl = service_chain("KUBE-SVL", name, proto)
                if local and (nat is None or not nat.has_chain(svl)):
                    yield at(("services", s_index, "external_traffic_policy"),
                             f"{path.name} has no {svl} chain, which kube-proxy writes for a Local policy")


def _addresses_in(dump: Dump):
    for rule in dump.rules:
        for c in rule.criteria:
            if c.flag in ("-s", "-d"):
                for value in c.value.split(","):
                    yield rule, value
        if rule.target is not None:
            for o in rule.target.options:
                if o.name in ("--to-destination", "--to-source"):
                    yield rule, o.value.split(":")[0].split("-")[0]


def _address_problems(meta: ScenarioMeta, dump: Dump, path: Path) -> Iterator[DumpError]:
    nodes = {n.address for n in meta.nodes}
    allowed = nodes | ({meta.cluster.underlay_gateway} if meta.cluster.underlay_gateway else set())
    pod_ranges = [n.pod_cidr for n in meta.nodes]
    reported = set()
    for rule, value in _addresses_in(dump):
        network = ipaddress.IPv4Network(value, strict=False)
        if network.prefixlen != 32:
            continue
        address = network.network_address
        if address in reported:
            continue
        if address in meta.cluster.underlay_cidr and address not in allowed:
            reported.add(address)
            yield _in_dump(path, rule.line, f"{address} is on the underlay {meta.cluster.underlay_cidr} but is no "
                           f"declared node address (nodes: {', '.join(str(n) for n in sorted(nodes))})", rule.text)
        elif address in meta.cluster.pod_cidr and not any(address in r for r in pod_ranges):
            reported.add(address)
            yield _in_dump(path, rule.line, f"{address} is in the pod network but in no node's pod range", rule.text)


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
    from iptables_lens.netns import Namespace, can_run_kernel_lab

    reason = can_run_kernel_lab()
    if reason:
        yield DumpError(str(scenario.folder), 0, 0, f"cannot ask the kernel: it {reason}")
        return
    with Namespace("validate") as ns:
        for entry in scenario.meta.dumps:
            path = scenario.folder / entry.file
            if not path.is_file():
                continue
            for variant in ("nft", "legacy"):
                result = ns.restore(path.read_bytes(), variant, test_only=True)
                if not result.ok:
                    yield _in_dump(path, 0, f"the kernel refuses it (iptables-{variant}-restore --test): "
                                   f"{result.stderr.strip()}")


