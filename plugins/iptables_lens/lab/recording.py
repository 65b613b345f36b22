"""A flow's kernel recording, `dumps/SCENARIO/kernel/FLOW.trace`: what the kernel's trace said of each branch
it took, kept so that tests without root can check the tracer against the kernel.

One section per branch (`## branch ENDPOINT`, `None` for a connection that no rule DNATs: dropped, rejected or
delivered to the node itself), with the nf_tables handles of every chain at the time (`### handles`), the
lab's own rules to leave out (`### skip`), and the monitor's lines for the flow's first packet.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from iptables_lens.lab.kernel_trace import KernelStep, first_packet_steps
from iptables_lens.scenario.flows import recording_path
from iptables_lens.scenario.load import Scenario

if TYPE_CHECKING:
    from iptables_lens.lab.run import FlowResult


def recording_text(result: FlowResult, kernel: str) -> str:
    """What the kernel recorded for a flow, in a form `read_recording` turns back into kernel paths."""
    flow = result.flow
    returning = f"; the client was in {flow.returning_to}'s recent list" if flow.returning_to else ""
    lines = [
        f"# Kernel trace of flow {flow.id!r}: {flow.title}",
        f"# {flow.protocol} {flow.src} -> {flow.dst}:{flow.dport} on {flow.node}{returning}; recorded by "
        "`iptables-lens lab`",
        f"# with {_tool(result)} on Linux {kernel}. One section per branch the kernel took.",
    ]
    for branch in sorted(result.branches, key=lambda b: b.endpoint or ""):
        lines.append(f"## branch {branch.endpoint}")
        lines.append("### handles " + json.dumps(
            {f"{t} {c}": h for (t, c), h in sorted(branch.handles.items())}, separators=(",", ":")))
        lines.append("### skip " + json.dumps(sorted(f"{t} {c} {h}" for t, c, h in branch.skip)))
        lines.extend(branch.monitor_lines)
    return "\n".join(lines) + "\n"


def _tool(result: FlowResult) -> str:
    """How the flow's packets were traced, as the branches say (a result made without any: the iptables way)."""
    tools = {b.tool for b in result.branches if b.tool}
    if tools:
        return " and ".join(sorted(tools))
    return "nft -a monitor trace (ip6tables-nft)" if result.flow.family == 6 else "xtables-monitor --trace (iptables-nft)"


@dataclass(frozen=True)
class RecordedBranch:
    endpoint: str | None
    steps: list[KernelStep]
    monitor_lines: list[str]


def read_recording(text: str, tables: frozenset[str], hooks: Mapping[tuple[str, str], str] | None = None
                   ) -> list[RecordedBranch]:
    """The branches of a recording, each with the kernel's path in the tables `tables` (the dump's, as
    `TracedNames` names them); `hooks`: an nft ruleset's base chains (`TracedNames.hooks`)."""
    branches = []
    sections = text.split("\n## branch ")[1:]
    for section in sections:
        head, _, body = section.partition("\n")
        endpoint = None if head == "None" else head
        body_lines = body.splitlines()
        handles_line = next(x for x in body_lines if x.startswith("### handles "))
        skip_line = next(x for x in body_lines if x.startswith("### skip "))
        handles = {_table_chain(k, tables): v for k, v in json.loads(handles_line[12:]).items()}
        skip = frozenset((*_table_chain(x.rsplit(" ", 1)[0], tables), int(x.rsplit(" ", 1)[1]))
                         for x in json.loads(skip_line[9:]))
        monitor = [x for x in body_lines if not x.startswith("###")]
        steps = first_packet_steps("\n".join(monitor), handles, skip, tables, hooks)
        branches.append(RecordedBranch(endpoint, steps, monitor))
    return branches


def _table_chain(key: str, tables: frozenset[str]) -> tuple[str, str]:
    """The (table, chain) a recording writes as "TABLE CHAIN": the table one of `tables` it starts with (an nft
    ruleset's, "ip kube-proxy", has a space), else its first word (iptables' tables have none)."""
    for table in sorted(tables, key=len, reverse=True):
        if key.startswith(f"{table} "):
            return table, key[len(table) + 1:]
    table, _, chain = key.partition(" ")
    return table, chain


def write_recording(scenario: Scenario, result: FlowResult) -> Path:
    """Write the flow's recording (atomically) where `scenario.flows.recording_path` says."""
    kernel = subprocess.run(["uname", "-r"], capture_output=True, text=True).stdout.strip()
    path = recording_path(scenario, result.flow)
    path.parent.mkdir(exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(recording_text(result, kernel))
    tmp.replace(path)
    return path
