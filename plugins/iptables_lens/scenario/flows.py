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

from pathlib import Path

from iptables_lens.scenario.load import Scenario
from iptables_lens.scenario.model import Flow, Moment
from iptables_lens.scenario.node import node_context
from iptables_lens.trace import Packet, Trace, trace
from iptables_lens.trace.packet import DEFAULT_SPORT

RECORDING_DIR = "kernel"


def predict(scenario: Scenario, flow: Flow, moment: Moment = "after") -> Trace:
    """Every outcome of `flow` through the rules of its family its node saved at `moment`; a DumpError at the
    flow's node in scenario.yaml if the node has no such dump."""
    dump = scenario.dump_for(flow.node, moment, flow.family)
    if dump is None:
        flows = scenario.meta.flows
        where = ("flows", flows.index(flow), "node") if flow in flows else ("flows",)
        kind = f"{moment} dump" if flow.family == 4 else f"{moment} IPv6 dump (family: 6)"
        raise scenario.metadata_file.problem(where, f"flow {flow.id}: no {kind} for node {flow.node}")
    packet = Packet(flow.src, flow.dst, flow.protocol, flow.sport or DEFAULT_SPORT, flow.dport)
    return trace(dump, packet, node_context(scenario, flow.node))


def recording_path(scenario: Scenario, flow: Flow) -> Path:
    """Where the kernel lab's recording of `flow` lives (it may not exist yet)."""
    return scenario.folder / RECORDING_DIR / f"{flow.id}.trace"
