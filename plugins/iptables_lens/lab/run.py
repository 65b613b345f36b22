"""Run a scenario's flows through the real kernel and compare with the tracer.

For each flow the lab
1. traces single connections (a TRACE rule in the raw table of the flow's family on its node, read with
   `xtables-monitor --trace`, or `nft monitor trace` for an IPv6 flow: see `kernel_trace`) until it has seen
   every branch the tracer predicts, and checks each kernel path against the tracer's, hop by hop;
2. opens many connections and reads the NAT the kernel applied from `conntrack -L` (`-f ipv6` for an IPv6
   flow): every DNAT destination and SNAT source must be one the tracer predicts, and the counts per
   destination must be consistent with the tracer's probabilities (see `stats`).
"""

from __future__ import annotations

import ipaddress
import json
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

from iptables_lens.lab.kernel_trace import (
    KernelStep,
    chain_handles,
    conntrack_lines,
    first_packet_steps,
    handle_positions,
    tracer_steps,
)
from iptables_lens.lab.stats import ProportionCheck, check_proportions
from iptables_lens.lab.topology import Lab, LabError
from iptables_lens.scenario.flows import predict, recording_path
from iptables_lens.scenario.load import Scenario
from iptables_lens.scenario.model import Flow
from iptables_lens.trace import IPv4, Outcome
from iptables_lens.trace.packet import Trace, endpoint_text

TRACED_SPORT_BASE = 42000  # single traced connections use 42000, 42001, ...
SAMPLED_SPORT_BASE = 50000  # the many sampled connections use 50000, 50001, ...
DROPPED_SAMPLES = 10  # connections opened for a flow the tracer says is (sometimes) dropped


@dataclass
class Branch:
    """One path the kernel took, as it recorded it, and the tracer outcome it matches (if any)."""

    endpoint: str | None
    steps: list[KernelStep]
    monitor_lines: list[str]
    handles: dict[tuple[str, str], list[int]]
    skip: frozenset[tuple[str, str, int]]
    matched_outcome: int | None = None
    problem: str | None = None


@dataclass
class FlowResult:
    flow: Flow
    prediction: Trace
    branches: list[Branch] = field(default_factory=list)
    counts: Counter = field(default_factory=Counter)
    failures: Counter = field(default_factory=Counter)  # how sampled connections failed: refused, timeout, other
    snat_seen: dict[str, set[str]] = field(default_factory=dict)
    checks: list[ProportionCheck] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    connections: int = 0
    conntrack_entries: int = 0

    @property
    def ok(self) -> bool:
        return not self.problems and all(c.ok for c in self.checks) and all(b.problem is None for b in self.branches)


def compare_branch(branch: Branch, prediction: Trace) -> None:
    """Find the predicted outcome whose path is the kernel's, hop by hop; say what differs otherwise."""
    candidates = [(i, o) for i, o in enumerate(prediction.outcomes) if o.endpoint == branch.endpoint]
    for index, outcome in candidates or list(enumerate(prediction.outcomes)):
        if tracer_steps(outcome.path) == branch.steps:
            branch.matched_outcome = index
            branch.problem = None
            return
    if not candidates:
        branch.problem = f"the kernel sent the connection to {branch.endpoint}, which the tracer does not predict"
        return
    expected = tracer_steps(candidates[0][1].path)
    branch.problem = "the kernel's path differs from the tracer's:\n" + _diff(expected, branch.steps)


def _diff(expected: list[KernelStep], actual: list[KernelStep]) -> str:
    lines = []
    for i in range(max(len(expected), len(actual))):
        e = str(expected[i]) if i < len(expected) else "(nothing)"
        a = str(actual[i]) if i < len(actual) else "(nothing)"
        mark = "  " if e == a else "!!"
        lines.append(f"{mark} tracer: {e:<70} kernel: {a}")
    return "\n".join(lines)


def _dnat_of(steps: list[KernelStep], monitor_lines: list[str]) -> str | None:
    for line in monitor_lines:
        for target in ("-j DNAT --to-destination ", " dnat to "):  # xtables-monitor's words, nft's
            if target in line:
                return line.split(target, 1)[1].split()[0]
    return None


class LabRun:
    """Runs flows in a built `Lab`."""

    def __init__(self, lab: Lab, connections: int = 400, max_traced: int = 40):
        self.lab = lab
        self.connections = connections
        self.max_traced = max_traced

    def _client(self, flow: Flow, count: int, sport: int | None = None, timeout: float = 5) -> list[dict]:
        ns = self.lab.namespace_of(flow.src)
        argv = [sys.executable, "-m", "iptables_lens.lab.agents", "client", str(flow.src), str(flow.dst),
                str(flow.dport), str(count), str(sport) if sport is not None else "-", str(timeout)]
        result = ns.run(argv, timeout=300)
        if not result.ok:
            raise LabError(f"flow {flow.id}: the client failed: {result.stderr.strip()}")
        return json.loads(result.stdout)

    def _trace_one(self, flow: Flow, sport: int, origin: str) -> Branch:
        node = self.lab.nodes[flow.node]
        chain = "OUTPUT" if origin == "local" else "PREROUTING"
        # Only the connection's first packet (for TCP, the SYN): later packets skip nat and would muddle it.
        first = ["--syn"] if flow.protocol == "tcp" else []
        rule = ["-p", flow.protocol, "-s", str(flow.src), "-d", str(flow.dst), "-m", flow.protocol,
                "--sport", str(sport), "--dport", str(flow.dport), *first, "-j", "TRACE"]
        iptables = "ip6tables-nft" if flow.family == 6 else "iptables-nft"
        added = node.run([iptables, "-t", "raw", "-I", chain, "1", *rule])
        if not added.ok:
            raise LabError(f"cannot add the TRACE rule: {added.stderr.strip()}")
        try:
            handles = chain_handles(node.run(["nft", "-a", "list", "ruleset"]).stdout, flow.family)
            trace_handle = handles[("raw", chain)][0]
            skip = frozenset({("raw", chain, trace_handle)})
            tracer = ["nft", "-a", "monitor", "trace"] if flow.family == 6 else ["xtables-monitor", "--trace"]
            monitor = subprocess.Popen(["ip", "netns", "exec", node.name, *tracer],
                                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
            try:
                time.sleep(0.3)  # let the monitor subscribe before the packet goes
                self._client(flow, 1, sport, timeout=2)
                time.sleep(0.3)
            finally:
                monitor.terminate()
                output, _ = monitor.communicate(timeout=10)
        finally:
            node.run([iptables, "-t", "raw", "-D", chain, *rule])
        dump = self.lab.scenario.dump_for(flow.node, self.lab.moment, flow.family)
        assert dump is not None
        tables = frozenset(t.name for t in dump.tables)
        positions = handle_positions(handles, skip)
        steps = first_packet_steps(output, positions, skip, tables)
        lines = _first_packet_lines(output)
        return Branch(_dnat_of(steps, lines), steps, lines, handles, skip)

    def run_flow(self, flow: Flow) -> FlowResult:
        prediction = predict(self.lab.scenario, flow, self.lab.moment)
        result = FlowResult(flow, prediction)
        node = self.lab.nodes[flow.node]
        node.run(["conntrack", "-F"])
        predicted_endpoints = {o.endpoint for o in prediction.outcomes}
        seen: set[str | None] = set()
        for attempt in range(self.max_traced):
            branch = self._trace_one(flow, TRACED_SPORT_BASE + attempt, prediction.origin)
            if not branch.steps:
                result.problems.append("the kernel recorded no trace for the flow's first packet")
                break
            if branch.endpoint in seen:
                continue
            seen.add(branch.endpoint)
            compare_branch(branch, prediction)
            result.branches.append(branch)
            if predicted_endpoints <= seen:
                break
        missing = predicted_endpoints - seen
        if missing and not result.problems:
            result.problems.append(f"in {self.max_traced} traced connections the kernel never took the predicted "
                                   f"branch(es) to {', '.join(sorted(str(m) for m in missing))}")
        node.run(["conntrack", "-F"])
        # Connections the tracer says are dropped time out: a few, with a short wait, tell as much as many.
        drops = any(o.verdict != "ACCEPT" for o in prediction.outcomes)
        count = self.connections if not drops else min(self.connections, DROPPED_SAMPLES)
        expected_failure = failure_of(prediction)
        answers = self._client(flow, count, SAMPLED_SPORT_BASE, timeout=_client_timeout(drops, expected_failure))
        failed = [a for a in answers if "error" in a]
        result.failures.update(a.get("failure", "other") for a in failed)
        if failed and not drops:
            result.problems.append(f"{len(failed)} of {len(answers)} connections failed: {failed[0]['error']}")
        wrong = [a for a in failed if expected_failure and a.get("failure") != expected_failure]
        if wrong:
            result.problems.append(f"{len(wrong)} of {len(answers)} connections failed with {wrong[0]['error']!r}; "
                                   f"the tracer says they are {'refused' if expected_failure == 'refused' else 'dropped'}")
        result.counts["none"] = len(failed) if drops else 0
        if not result.counts["none"]:
            del result.counts["none"]
        result.connections = len(answers)
        family = ["-f", "ipv6"] if flow.family == 6 else []  # conntrack -L lists IPv4 only unless told
        entries = conntrack_lines(node.run(["conntrack", "-L", "-p", flow.protocol, *family]).stdout)
        # The kernel's NAT record of each sampled connection, by its source port.
        recorded = {e.original[2]: e for e in entries
                    if e.original[:2] == (str(flow.src), str(flow.dst)) and e.original[3] == flow.dport
                    and SAMPLED_SPORT_BASE <= e.original[2] < SAMPLED_SPORT_BASE + self.connections}
        by_endpoint = {o.endpoint: o for o in prediction.outcomes}
        answered = [a for a in answers if "error" not in a]
        for answer in answered:
            port = by_endpoint_port(prediction, answer["server"]) or flow.dport
            endpoint = endpoint_text(ipaddress.ip_address(answer["server"]), port)
            result.counts[endpoint] += 1  # where the kernel delivered it: the pod that answered
            peer = answer["peer"].rsplit(":", 1)[0]
            entry = recorded.get(answer["sport"])
            if entry is not None:
                translated = endpoint_text(ipaddress.ip_address(entry.reply[0]), entry.reply[2])
                if translated != endpoint:
                    result.problems.append(f"conntrack says connection {answer['sport']} went to {translated}, but "
                                           f"{endpoint} answered it")
                result.snat_seen.setdefault(translated, set()).add(entry.reply[1])
            outcome = by_endpoint.get(endpoint)
            if outcome is not None:
                expected = str(outcome.snat[0]) if outcome.snat else str(flow.src)
                if peer != expected:
                    result.problems.append(f"the pod at {endpoint} saw the client as {peer}; the tracer says {expected}")
                    break
        for endpoint, sources in result.snat_seen.items():
            outcome = by_endpoint.get(endpoint)
            if outcome is None:
                continue  # reported by the proportion check: observed but not predicted
            expected = str(outcome.snat[0]) if outcome.snat else str(flow.src)
            if sources != {expected}:
                result.problems.append(f"to {endpoint} the kernel rewrote the source to {', '.join(sorted(sources))}; "
                                       f"the tracer says {expected}")
        result.conntrack_entries = len(recorded)
        # conntrack -L is a dump of a live table, not a snapshot: allow for an entry it skipped.
        if answered and len(recorded) < 0.95 * len(answered) and not drops:
            result.problems.append(f"{len(answered)} connections were answered but conntrack lists only "
                                   f"{len(recorded)} of them")
        predicted = {o.endpoint or "none": o.probability for o in prediction.outcomes}
        result.checks = check_proportions(dict(result.counts), predicted)
        return result


def _client_timeout(drops: bool, expected_failure: str | None) -> float:
    """Seconds a sampled connection may take. A rejected one needs more than a dropped one: in the lab the
    ICMPv6 error to a pod's first SYN comes back while connect() still holds the socket, and TCP discards it
    (nstat's TcpExtLockDroppedIcmps counts it), so the refusal comes with the SYN resent after 1 s; an IPv4
    host also rate-limits its port unreachables (net.ipv4.icmp_ratelimit), which the resent SYN outlasts."""
    if expected_failure == "refused":
        return 3
    return 1 if drops else 5


def failure_of(prediction: Trace) -> str | None:
    """How the client sees a connection the tracer never delivers: "refused" when every outcome REJECTs
    (the kernel answers with ICMP(v6) port unreachable, so connect() fails with ECONNREFUSED at once),
    "timeout" when every one DROPs; None when some are delivered or the two mix."""
    verdicts = {o.verdict for o in prediction.outcomes}
    if verdicts == {"REJECT"}:
        return "refused"
    if verdicts == {"DROP"}:
        return "timeout"
    return None


def by_endpoint_port(prediction: Trace, address: str) -> int | None:
    """The DNAT port the tracer predicts for connections that reached `address`."""
    for outcome in prediction.outcomes:
        if outcome.dnat and str(outcome.dnat[0]) == address:
            return outcome.dnat[1]
    return None


def _first_packet_lines(output: str) -> list[str]:
    """The monitor's lines for the first traced packet, with its random packet id kept as printed."""
    lines = []
    first = None
    for line in output.splitlines():
        parts = line.split()
        if len(parts) < 3 or parts[0] not in ("PACKET:", "TRACE:", "trace"):  # "trace id ID": nft monitor
            continue
        if first is None:
            first = parts[2]
        if parts[2] == first:
            lines.append(line)
    return lines


def run_lab(scenario: Scenario, connections: int = 400, variant: str = "nft",
            flows: list[str] | None = None) -> list[FlowResult]:
    """Each flow's result in the kernel, of both families."""
    results = []
    with Lab(scenario, variant=variant) as lab:
        runner = LabRun(lab, connections)
        for flow in replayed_flows(scenario):
            if flows and flow.id not in flows:
                continue
            results.append(runner.run_flow(flow))
    return results


def replayed_flows(scenario: Scenario) -> list[Flow]:
    """The flows the lab replays in the kernel: every flow, IPv4 and IPv6."""
    return list(scenario.meta.flows)


# -- recordings ---------------------------------------------------------------------------------------


def recording_text(result: FlowResult, kernel: str) -> str:
    """What the kernel recorded for a flow, in a form `read_recording` turns back into kernel paths."""
    flow = result.flow
    lines = [
        f"# Kernel trace of flow {flow.id!r}: {flow.title}",
        f"# {flow.protocol} {flow.src} -> {flow.dst}:{flow.dport} on {flow.node}; recorded by `iptables-lens lab`",
        f"# with {'nft -a monitor trace (ip6tables-nft' if flow.family == 6 else 'xtables-monitor --trace (iptables-nft'}) "
        f"on Linux {kernel}. One section per branch the kernel took.",
    ]
    for branch in sorted(result.branches, key=lambda b: b.endpoint or ""):
        lines.append(f"## branch {branch.endpoint}")
        lines.append("### handles " + json.dumps(
            {f"{t} {c}": h for (t, c), h in sorted(branch.handles.items())}, separators=(",", ":")))
        lines.append("### skip " + json.dumps(sorted(f"{t} {c} {h}" for t, c, h in branch.skip)))
        lines.extend(branch.monitor_lines)
    return "\n".join(lines) + "\n"


@dataclass(frozen=True)
class RecordedBranch:
    endpoint: str | None
    steps: list[KernelStep]
    monitor_lines: list[str]


def read_recording(text: str, tables: frozenset[str]) -> list[RecordedBranch]:
    branches = []
    sections = text.split("\n## branch ")[1:]
    for section in sections:
        head, _, body = section.partition("\n")
        endpoint = None if head == "None" else head
        body_lines = body.splitlines()
        handles_line = next(x for x in body_lines if x.startswith("### handles "))
        skip_line = next(x for x in body_lines if x.startswith("### skip "))
        handles = {tuple(k.split(" ", 1)): v for k, v in json.loads(handles_line[12:]).items()}
        skip = frozenset((t, c, int(h)) for t, c, h in (x.split(" ") for x in json.loads(skip_line[9:])))
        monitor = [x for x in body_lines if not x.startswith("###")]
        positions = handle_positions(handles, skip)  # type: ignore[arg-type]
        steps = first_packet_steps("\n".join(monitor), positions, skip, tables)
        branches.append(RecordedBranch(endpoint, steps, monitor))
    return branches


def write_recording(scenario: Scenario, result: FlowResult) -> Path:
    kernel = subprocess.run(["uname", "-r"], capture_output=True, text=True).stdout.strip()
    path = recording_path(scenario, result.flow)
    path.parent.mkdir(exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(recording_text(result, kernel))
    tmp.replace(path)
    return path


def outcome_for(prediction: Trace, endpoint: str | None) -> Outcome | None:
    return next((o for o in prediction.outcomes if o.endpoint == endpoint), None)


__all__ = ["Branch", "FlowResult", "Fraction", "IPv4", "LabRun", "read_recording", "run_lab",
           "write_recording"]
