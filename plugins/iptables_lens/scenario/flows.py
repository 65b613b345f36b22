"""A scenario's flows: what the tracer predicts for each, and where the kernel lab keeps its recording of it.

>>> from iptables_lens.scenario import load_scenario
>>> scenario = load_scenario("dumps/kind-nodeport")
>>> flow = scenario.meta.flows[0]
>>> str(predict(scenario, flow).packet)
'tcp 172.20.0.100:40000 -> 172.20.0.2:30080'
>>> recording_path(scenario, flow).relative_to(scenario.folder).as_posix()
'kernel/outside-to-nodeport.trace'
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterator
from pathlib import Path

from iptables_lens.iptables.model import Dump, Rule
from iptables_lens.iptables.values import BadValue, nat_range
from iptables_lens.kube.nft_services import NFT_FAMILIES, TABLE, NftServiceIndex
from iptables_lens.nft.model import Ruleset
from iptables_lens.scenario.load import Scenario
from iptables_lens.scenario.model import Flow, Moment
from iptables_lens.scenario.node import node_context
from iptables_lens.trace import Packet, Trace, trace
from iptables_lens.trace.packet import DEFAULT_SPORT

RECORDING_DIR = "kernel"


def predict(scenario: Scenario, flow: Flow, moment: Moment = "after") -> Trace:
    """Every outcome of `flow` through the rules of its family its node saved at `moment`; a DumpError at the
    flow's node in scenario.yaml if the node has no such dump."""
    dump = traced_dump(scenario, flow, moment)
    packet = Packet(flow.src, flow.dst, flow.protocol, flow.sport or DEFAULT_SPORT, flow.dport)
    return trace(dump, packet, node_context(scenario, flow.node), recent=recent_lists(dump, flow))


def traced_dump(scenario: Scenario, flow: Flow, moment: Moment = "after") -> Dump | Ruleset:
    """The dump the tracer reads for `flow`: its node's rules of its family saved at `moment` (an nft ruleset
    holds both families); a DumpError at the flow's node in scenario.yaml if the node has none."""
    dump = scenario.dump_for(flow.node, moment, flow.family)
    if dump is None:
        kind = f"{moment} dump" if flow.family == 4 else f"{moment} IPv6 dump (family: 6)"
        raise scenario.metadata_file.problem(_where(scenario, flow, "node"), f"flow {flow.id}: no {kind} for node "
                                                                               f"{flow.node}")
    return dump


def _where(scenario: Scenario, flow: Flow, key: str) -> tuple:
    """Where in scenario.yaml a problem with the flow's `key` is told: at the key, or at `flows` for a flow
    the file does not list (one the lab made)."""
    flows = scenario.meta.flows
    return ("flows", flows.index(flow), key) if flow in flows else ("flows",)


def recording_rules(dump: Dump) -> Iterator[tuple[str, Rule]]:
    """(list name, rule) for every nat rule that records its client in a `-m recent` list (`--set --name`)."""
    if not dump.has_table("nat"):
        return
    for rule in dump.table("nat").rules:
        recent = rule.match("recent")
        name = recent.option("--name") if recent is not None and recent.option("--set") is not None else None
        if name is not None:
            yield name.value, rule


def recent_lists(dump: Dump | Ruleset, flow: Flow) -> frozenset[str]:
    """The lists or sets a returning client (`flow.returning_to`) is in, by the names the tracer's `recent`
    takes: the `-m recent` lists of the rules that record a client as they DNAT to that endpoint (kube-proxy's
    `-m recent --set --name KUBE-SEP-...` before its DNAT, the list named after the endpoint's chain), or an nft
    ruleset's `affinity-` sets of that endpoint (`affinity_sets`). Empty for a first request."""
    if flow.returning_to is None:
        return frozenset()
    if isinstance(dump, Ruleset):
        return affinity_sets(dump, flow)
    lists = set()
    for name, rule in recording_rules(dump):
        to = rule.target.option("--to-destination") if rule.target and rule.target.name == "DNAT" else None
        if to is None:
            continue
        try:
            destination = nat_range(to.value, flow.family)
        except BadValue:
            continue  # the parser has read it already; a range kube-proxy never writes is no endpoint
        if destination.first == flow.returning_to == destination.last:
            lists.add(name)
    return frozenset(lists)


def affinity_sets(ruleset: Ruleset, flow: Flow) -> frozenset[str]:
    """The session affinity sets a returning client (`flow.returning_to`) is in: the `affinity-` set of each
    endpoint chain of kube-proxy's table of the flow's family that DNATs to that endpoint, paired by the
    Service port and endpoint its name is made of. Empty for a first request."""
    if flow.returning_to is None:
        return frozenset()
    family = NFT_FAMILIES[flow.family]
    index = NftServiceIndex.of(ruleset)
    owners = [o for o in index.owners() if index.chain_owner(family, TABLE, o.name) is o]
    found = set()
    for service_port in sorted({o.service_port for o in owners}):
        for target in index.dnat_targets(family, TABLE, service_port):
            host = target.endpoint.rpartition(":")[0].strip("[]")
            chain = index.chain_owner(family, TABLE, target.rule.chain)
            if ipaddress.ip_address(host) != flow.returning_to or chain is None or chain.kind != "endpoint":
                continue
            found |= {o.name for o in owners if o.kind == "affinity" and o.service_port == chain.service_port
                      and o.endpoint == chain.endpoint}
    return frozenset(found)


def recording_path(scenario: Scenario, flow: Flow) -> Path:
    """Where the kernel lab's recording of `flow` lives (it may not exist yet)."""
    return scenario.folder / RECORDING_DIR / f"{flow.id}.trace"
