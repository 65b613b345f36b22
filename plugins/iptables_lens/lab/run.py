"""Run a scenario's flows through the real kernel and compare with the tracer.

For each flow (TCP, UDP or SCTP: see `agents`) the lab
1. traces single connections (a TRACE rule in the raw table of the flow's family on its node, read with
   `xtables-monitor --trace`, or `nft monitor trace` for an IPv6 flow: see `kernel_trace`) until it has seen
   every branch the tracer predicts, and checks each kernel path against the tracer's, hop by hop;
2. opens many connections and reads the NAT the kernel applied from `conntrack -L` (`-f ipv6` for an IPv6
   flow): every DNAT destination and SNAT source must be one the tracer predicts, and the counts per
   destination must be consistent with the tracer's probabilities (see `stats`).

Before each traced connection and each round of connections the node forgets the earlier ones (conntrack
flushed) and its session affinity lists are set as the flow says (see `affinity`): empty for a first
request, the client in its endpoint's list for a returning one. An affinity Service's first request is
sampled from one client (every connection to one endpoint) and from many (their first connections spread as
the tracer's probabilities say).
"""

from __future__ import annotations

import ipaddress
import json
import sys
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from fractions import Fraction

from iptables_lens.lab.affinity import (
    AffinityCheck,
    destination_of,
    destinations,
    is_first_request_to_affinity,
    other_clients,
    recorded_lists,
    reset_recent,
)
from iptables_lens.lab.kernel_trace import (
    KernelStep,
    TracedNames,
    conntrack_lines,
    first_packet_steps,
    tracer_steps,
)
from iptables_lens.lab.recording import read_recording, recording_text, write_recording
from iptables_lens.lab.stats import ProportionCheck, check_proportions
from iptables_lens.lab.topology import Lab, LabError
from iptables_lens.lab.tracing import trace_iptables, trace_nft
from iptables_lens.nft.model import Ruleset
from iptables_lens.scenario.flows import predict, recent_lists, traced_dump
from iptables_lens.scenario.load import Scenario
from iptables_lens.scenario.model import Address, Flow
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
    tool: str = ""
    """How the kernel traced it (`tracing.KernelTrace.tool`)."""


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
    affinity: AffinityCheck | None = None
    """For an affinity Service's first request: one client's endpoints and how many clients drew one."""

    @property
    def ok(self) -> bool:
        return not self.problems and all(c.ok for c in self.checks) and all(b.problem is None for b in self.branches)

    @property
    def predicted(self) -> dict[str, Fraction]:
        """Where the tracer delivers the flow's connections (an endpoint, a process on the node, "none"), with
        the probabilities the counts are checked against."""
        return destinations(self.prediction)


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

    def _client(self, flow: Flow, count: int, sport: int | None = None, timeout: float = 5,
                sources: list[Address] | None = None, together: bool = False) -> list[dict]:
        ns = self.lab.namespace_of(flow.src)
        argv = [sys.executable, "-m", "iptables_lens.lab.agents", "client", flow.protocol,
                ",".join(str(s) for s in sources or [flow.src]), str(flow.dst), str(flow.dport), str(count),
                str(sport) if sport is not None else "-", str(timeout), *(["together"] if together else [])]
        result = ns.run(argv, timeout=600)
        if not result.ok:
            raise LabError(f"flow {flow.id}: the client failed: {result.stderr.strip()}")
        return json.loads(result.stdout)

    def _trace_one(self, flow: Flow, sport: int, origin: str, wait: float = 2) -> Branch:
        """One connection traced on the flow's node; `wait`: how long its client waits for an answer."""
        dump = self.lab.scenario.dump_for(flow.node, self.lab.moment, flow.family)
        assert dump is not None
        way = trace_nft if isinstance(dump, Ruleset) else trace_iptables
        kernel = way(self.lab.nodes[flow.node], flow, sport, origin == "local",
                     lambda: self._client(flow, 1, sport, timeout=wait))
        names = TracedNames.of(dump)
        steps = first_packet_steps(kernel.output, kernel.handles, kernel.skip, names.tables, names.hooks)
        lines = _first_packet_lines(kernel.output)
        # An nft rule may DNAT through a map (`dnat ip addr . port to numgen random mod 2 map { … }`), whose
        # trace names no destination: conntrack's entry of the connection does.
        endpoint = self._translated(flow, sport) if isinstance(dump, Ruleset) else _dnat_of(steps, lines)
        return Branch(endpoint, steps, lines, kernel.handles, kernel.skip, tool=kernel.tool)

    def _translated(self, flow: Flow, sport: int) -> str | None:
        """Where conntrack says the connection from the flow's client's port `sport` was DNATed to; None when
        it was not translated, or left no entry (dropped or rejected before conntrack confirmed it)."""
        node = self.lab.nodes[flow.node]
        family = ["-f", "ipv6"] if flow.family == 6 else []
        for entry in conntrack_lines(node.run(["conntrack", "-L", "-p", flow.protocol, *family]).stdout):
            if entry.original == (str(flow.src), str(flow.dst), sport, flow.dport):
                if (entry.reply[0], entry.reply[2]) == (entry.original[1], entry.original[3]):
                    return None
                return endpoint_text(ipaddress.ip_address(entry.reply[0]), entry.reply[2])
        return None

    def run_flow(self, flow: Flow) -> FlowResult:
        """Trace the flow's first packet until every predicted branch is seen, then open connections: many
        from the flow's client, or for an affinity Service's first request, from one client and from many."""
        prediction = predict(self.lab.scenario, flow, self.lab.moment)
        result = FlowResult(flow, prediction)
        node = self.lab.nodes[flow.node]
        dump = traced_dump(self.lab.scenario, flow, self.lab.moment)
        lists = recorded_lists(dump)
        returning = recent_lists(dump, flow)

        def fresh_node() -> None:
            """No connection of an earlier one, and the client in no recent list but those of its endpoint."""
            node.run(["conntrack", "-F"])
            reset_recent(node, lists, returning, flow.src)

        self.lab.route_client_to(flow.src, flow.dst, flow.node)
        self._trace_branches(flow, result, fresh_node)
        fresh_node()
        if is_first_request_to_affinity(dump, flow, prediction):
            self._sample_affinity(flow, result, fresh_node)
        else:
            self._sample(flow, result)
        result.checks = check_proportions(dict(result.counts), result.predicted)
        return result

    def _trace_branches(self, flow: Flow, result: FlowResult, fresh_node: Callable[[], None]) -> None:
        """Trace single connections until the kernel took every branch the tracer predicts (or gave up),
        keeping each new branch compared with the tracer's path."""
        prediction = result.prediction
        predicted_endpoints = {o.endpoint for o in prediction.outcomes}
        seen: set[str | None] = set()
        # A connection that will time out is traced all the same as soon as it is sent: no use waiting long.
        wait = 1 if failure_of(prediction) == "timeout" else 2
        for attempt in range(self.max_traced):
            fresh_node()  # each traced first request draws anew
            branch = self._trace_one(flow, TRACED_SPORT_BASE + attempt, prediction.origin, wait)
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

    def _sample(self, flow: Flow, result: FlowResult) -> None:
        """Many connections from the flow's client: where each went, in the proportions the tracer predicts."""
        prediction = result.prediction
        # Connections the tracer says are dropped time out: a few, with a short wait, tell as much as many.
        drops = any(o.verdict != "ACCEPT" for o in prediction.outcomes)
        count = self.connections if not drops else min(self.connections, DROPPED_SAMPLES)
        expected_failure = failure_of(prediction)
        # Connections that all time out wait together; refused ones one after the other, since a host sends
        # only so many ICMP errors a second to one client (the refusal of the later ones comes with a resend).
        answers = self._client(flow, count, SAMPLED_SPORT_BASE, timeout=_client_timeout(drops, expected_failure),
                               together=expected_failure == "timeout")
        failed = [a for a in answers if "error" in a]
        result.failures.update(a.get("failure", "other") for a in failed)
        if failed and not drops:
            result.problems.append(f"{len(failed)} of {len(answers)} connections failed: {failed[0]['error']}")
        wrong = [a for a in failed if expected_failure and a.get("failure") != expected_failure]
        if wrong:
            result.problems.append(f"{len(wrong)} of {len(answers)} connections failed with {wrong[0]['error']!r}; "
                                   f"the tracer says they are {'refused' if expected_failure == 'refused' else 'dropped'}")
        if drops and failed:
            result.counts["none"] = len(failed)
        result.connections = len(answers)
        answered = [a for a in answers if "error" not in a]
        delivered = self._check_answers(flow, result, answered, {flow.src: prediction})
        result.counts.update(delivered.values())
        if answered and result.conntrack_entries < 0.95 * len(answered) and not drops:
            # conntrack -L is a dump of a live table, not a snapshot: allow for an entry it skipped.
            result.problems.append(f"{len(answered)} connections were answered but conntrack lists only "
                                   f"{result.conntrack_entries} of them")

    def _sample_affinity(self, flow: Flow, result: FlowResult, fresh_node: Callable[[], None]) -> None:
        """An affinity Service's first requests: the flow's client many times (one endpoint for all), then
        other clients twice each (the first connection a draw, counted; the second to the same endpoint)."""
        check = result.affinity = AffinityCheck()
        repeats = max(10, self.connections // 4)
        answers = self._client(flow, repeats, SAMPLED_SPORT_BASE)
        answered = [a for a in answers if "error" not in a]
        check.same_client.update(self._check_answers(flow, result, answered, {flow.src: result.prediction}).values())
        if len(check.same_client) > 1:
            result.problems.append(f"session affinity: one client's {len(answered)} connections reached "
                                   f"{len(check.same_client)} endpoints ({_counted(check.same_client)}), not one")
        clients = other_clients(self.lab.scenario, flow, self.lab.moment, max(20, self.connections // 4))
        if clients:
            fresh_node()
            sources = sorted(clients, key=int)
            self.lab.add_client_addresses(flow.src, sources)
            try:
                more = self._client(flow, 2, SAMPLED_SPORT_BASE, sources=sources)
            finally:
                self.lab.remove_client_addresses(flow.src, sources)
            answers += more
            more_answered = [a for a in more if "error" not in a]
            answered += more_answered
            by_client = self._check_answers(flow, result, more_answered, clients)
            for source in sources:
                first = by_client.get((str(source), SAMPLED_SPORT_BASE))
                second = by_client.get((str(source), SAMPLED_SPORT_BASE + 1))
                if first is not None:
                    result.counts[first] += 1
                    check.clients += 1
                if first is not None and second is not None and second != first:
                    check.switched += 1
            if check.switched:
                result.problems.append(f"session affinity: {check.switched} of {check.clients} clients' second "
                                       "connection reached another endpoint than their first")
        else:
            result.counts.update(check.same_client)  # the node is the only client: its draw is all there is
        failed = [a for a in answers if "error" in a]
        result.failures.update(a.get("failure", "other") for a in failed)
        if failed:
            result.problems.append(f"{len(failed)} of {len(answers)} connections failed: {failed[0]['error']}")
        result.connections = len(answers)
        if answered and result.conntrack_entries < 0.95 * len(answered):
            result.problems.append(f"{len(answered)} connections were answered but conntrack lists only "
                                   f"{result.conntrack_entries} of them")

    def _check_answers(self, flow: Flow, result: FlowResult, answered: list[dict],
                       predictions: dict[Address, Trace]) -> dict[tuple[str, int], str]:
        """Where each answered connection was delivered (by client address and port), checked against
        conntrack's record of its NAT and against the source the server saw; adds to `result`'s problems."""
        node = self.lab.nodes[flow.node]
        family = ["-f", "ipv6"] if flow.family == 6 else []  # conntrack -L lists IPv4 only unless told
        entries = conntrack_lines(node.run(["conntrack", "-L", "-p", flow.protocol, *family]).stdout)
        sources = {str(s) for s in predictions}
        recorded = {(e.original[0], e.original[2]): e for e in entries
                    if e.original[0] in sources and e.original[1] == str(flow.dst) and e.original[3] == flow.dport}
        delivered: dict[tuple[str, int], str] = {}
        snat_problems = 0
        for answer in answered:
            source = answer["src"]
            prediction = predictions[ipaddress.ip_address(source)]
            port = by_endpoint_port(prediction, answer["server"]) or flow.dport
            endpoint = endpoint_text(ipaddress.ip_address(answer["server"]), port)
            delivered[(source, answer["sport"])] = endpoint  # where the kernel delivered it: who answered
            entry = recorded.get((source, answer["sport"]))
            if entry is not None:
                result.conntrack_entries += 1
                translated = endpoint_text(ipaddress.ip_address(entry.reply[0]), entry.reply[2])
                if translated != endpoint:
                    result.problems.append(f"conntrack says connection {source}:{answer['sport']} went to "
                                           f"{translated}, but {endpoint} answered it")
                result.snat_seen.setdefault(translated, set()).add(entry.reply[1])
            outcome = next((o for o in prediction.outcomes if destination_of(o) == endpoint), None)
            if outcome is None:
                continue  # reported by the proportion check: observed but not predicted
            expected = str(outcome.snat[0]) if outcome.snat else source
            peer = answer["peer"].rsplit(":", 1)[0]
            if peer != expected and not snat_problems:
                snat_problems += 1
                result.problems.append(f"the server at {endpoint} saw the client as {peer}; the tracer says {expected}")
            if entry is not None and entry.reply[1] != expected and not snat_problems:
                snat_problems += 1
                result.problems.append(f"to {endpoint} the kernel rewrote the source {source} to {entry.reply[1]}; "
                                       f"the tracer says {expected}")
        return delivered


def _counted(counts: Counter) -> str:
    return ", ".join(f"{key}: {n}" for key, n in sorted(counts.items()))


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


def recording_problems(scenario: Scenario, flow: Flow, text: str) -> list[str]:
    """What in `text`, a kernel recording of `flow`, disagrees with the tracer on the scenario's "after"
    dumps: a branch the tracer does not predict or one the kernel never took, a hop that differs. Needs no
    root: tests replay every stored recording this way."""
    prediction = predict(scenario, flow)
    dump = scenario.dump_for(flow.node, "after", flow.family)
    assert dump is not None  # predict checked it
    names = TracedNames.of(dump)
    recorded = read_recording(text, names.tables, names.hooks)
    problems = []
    kernel, tracer = {b.endpoint for b in recorded}, {o.endpoint for o in prediction.outcomes}
    if kernel != tracer:
        problems.append(f"the kernel's branches go to {sorted(map(str, kernel))}, the tracer's to "
                        f"{sorted(map(str, tracer))}")
    for branch in recorded:
        probe = Branch(branch.endpoint, branch.steps, branch.monitor_lines, {}, frozenset())
        compare_branch(probe, prediction)
        if probe.problem is not None:
            problems.append(f"branch {branch.endpoint}: {probe.problem}")
    return problems


def replayed_flows(scenario: Scenario) -> list[Flow]:
    """The flows the lab replays in the kernel: every flow, IPv4 and IPv6."""
    return list(scenario.meta.flows)


def outcome_for(prediction: Trace, endpoint: str | None) -> Outcome | None:
    return next((o for o in prediction.outcomes if o.endpoint == endpoint), None)


__all__ = ["Branch", "FlowResult", "Fraction", "IPv4", "LabRun", "read_recording", "recording_problems",
           "recording_text", "run_lab", "write_recording"]
