"""Session affinity in the kernel: the `-m recent` lists of a node, and the clients that test them.

kube-proxy's ClientIP affinity keeps, per endpoint, a `recent` list named after the endpoint's chain
(`-m recent --set --name KUBE-SEP-...` beside its DNAT) and sends a client found in one of them
(`--rcheck --seconds T --reap`) back to that endpoint. xt_recent shows each list of a network namespace as
`/proc/net/xt_recent/NAME` there, which takes `+ADDRESS` (add), `-ADDRESS` (remove) and `/` (empty it): so
the lab empties a node's lists before a first request is traced or sampled, and puts a returning client
(`Flow.returning_to`) in its endpoint's lists first.

An affinity Service's first request is checked twice: one client's connections all reach one endpoint (the one
its first connection drew), and many clients' first connections spread over the endpoints as the tracer's
probabilities say. Those clients are addresses the lab adds to the flow's client namespace, beside the flow's
own, each traced by the tracer too: only those whose prediction is the flow's take part.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import shlex
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from fractions import Fraction

from iptables_lens.iptables.model import Dump
from iptables_lens.netns import Namespace
from iptables_lens.nft.model import Ruleset, SetUpdate
from iptables_lens.scenario.flows import predict, recording_rules
from iptables_lens.scenario.load import Scenario
from iptables_lens.scenario.model import Address, Family, Flow, Moment, ScenarioMeta
from iptables_lens.trace import Trace
from iptables_lens.trace.packet import Outcome, endpoint_text

RECENT_DIR = "/proc/net/xt_recent"


@dataclass
class AffinityCheck:
    """What the kernel did with an affinity Service's first requests: where one client's connections went, and
    how many other clients' first connections were drawn (their spread is the flow's proportion check)."""

    same_client: Counter = field(default_factory=Counter)
    """Endpoint -> connections of the flow's own client that reached it: one endpoint when affinity holds."""
    clients: int = 0
    """Clients whose first connection was a draw (0: the client is the node itself, which has no others)."""
    switched: int = 0
    """Clients whose second connection went elsewhere than their first."""

    @property
    def ok(self) -> bool:
        return len(self.same_client) == 1 and self.switched == 0


def recorded_lists(dump: Dump | Ruleset) -> frozenset[str]:
    """The names of the `recent` lists the dump's nat rules add clients to (`--set --name NAME`); of an nft
    ruleset, the dynamic sets its rules add clients to (`update @SET { ip saddr }`), as "FAMILY TABLE SET"."""
    if isinstance(dump, Ruleset):
        return frozenset(f"{rule.family} {rule.table} {st.set}" for rule in dump.rules for st in rule.statements
                         if isinstance(st, SetUpdate) and st.op != "delete")
    return frozenset(name for name, _ in recording_rules(dump))


def reset_recent(node: Namespace, lists: frozenset[str], returning: frozenset[str], client: Address) -> None:
    """Empty every list in `lists` (from `recorded_lists`) on the node, then put `client` in those of
    `returning` (the names `scenario.flows.recent_lists` gives: a `-m recent` list, or an nft set's own name)."""
    if not lists:
        return
    if any(" " in name for name in lists):  # an nft ruleset's sets, "FAMILY TABLE SET"
        script = [f"flush set {name}\n" for name in sorted(lists)]
        # The element takes the set's own timeout, as kube-proxy's `update @set { ip saddr }` gives it.
        script += [f"add element {name} {{ {client} }}\n" for name in sorted(lists)
                   if name.rsplit(" ", 1)[1] in returning]
        result = node.run(["nft", "-f", "-"], input="".join(script))
    else:
        script = [f"echo / > {shlex.quote(f'{RECENT_DIR}/{name}')}" for name in sorted(lists)]
        script += [f"echo +{client} > {shlex.quote(f'{RECENT_DIR}/{name}')}" for name in sorted(returning)]
        result = node.run(["sh", "-ec", "; ".join(script)])
    if not result.ok:
        raise RuntimeError(f"cannot set the recent lists in {node.name}: {result.stderr.strip()}")


def is_first_request_to_affinity(dump: Dump | Ruleset, flow: Flow, prediction: Trace) -> bool:
    """Whether `flow` is a first request (no `returning_to`) to endpoints that remember their clients: a rule
    on the way to one of them adds the client to a `recent` list (kube-proxy's `--set` beside its DNAT), or to
    an nft ruleset's dynamic set (its `update @affinity-… { ip saddr }`)."""
    if flow.returning_to is not None:
        return False
    if isinstance(dump, Ruleset):
        return any(action.startswith("added to @") for o in prediction.outcomes for s in o.path
                   for action in s.action.split("; "))
    if not dump.has_table("nat"):
        return False
    nat = dump.table("nat")
    for outcome in prediction.outcomes:
        for step in outcome.path:
            if step.table != "nat" or step.chain is None or step.rule is None or not nat.has_chain(step.chain):
                continue
            recent = nat.chain(step.chain).rules[step.rule - 1].match("recent")
            if recent is not None and recent.option("--set") is not None:
                return True
    return False


def destination_of(outcome: Outcome) -> str:
    """Where the tracer delivers a connection: the endpoint it is DNAT'd to, or the address and port of a
    process on the node, or "none" when it is never delivered."""
    if outcome.verdict != "ACCEPT":
        return "none"
    if outcome.endpoint is not None:
        return outcome.endpoint
    return endpoint_text(outcome.after_dnat.dst, outcome.after_dnat.dport)


def destinations(prediction: Trace) -> dict[str, Fraction]:
    """Destination -> its probability, summed over the outcomes that deliver there."""
    summed: dict[str, Fraction] = {}
    for outcome in prediction.outcomes:
        key = destination_of(outcome)
        summed[key] = summed.get(key, Fraction(0)) + outcome.probability
    return summed


def other_clients(scenario: Scenario, flow: Flow, moment: Moment, count: int) -> dict[Address, Trace]:
    """Up to `count` addresses for more clients like the flow's (next to its address, in the same network:
    the underlay, its node's pod range, or beyond the gateway), each with its prediction, which is the flow's
    (the same destinations with the same probabilities). None for a client that is a node."""
    meta = scenario.meta
    if any(flow.src in (n.address, n.address_v6) for n in meta.nodes):
        return {}
    network = _network_of(meta, flow.src)
    used = _named_addresses(meta)
    candidates = []
    for address in _after(flow.src, network):
        if address not in used:
            candidates.append(address)
        if len(candidates) == count:
            break
    # The tracer sees the new clients as the lab wires them: a pod's addresses are pods of its node.
    extra = tuple(flow.model_copy(update={"id": f"{flow.id}-client-{i}", "src": a}) for i, a in enumerate(candidates))
    wider = dataclasses.replace(scenario, meta=meta.model_copy(update={"flows": meta.flows + extra}))
    expected = destinations(predict(scenario, flow, moment))
    chosen = {}
    for client in extra:
        prediction = predict(wider, client, moment)
        if destinations(prediction) == expected:
            chosen[client.src] = prediction
    return chosen


def _network_of(meta: ScenarioMeta, address: Address):
    family: Family = 6 if address.version == 6 else 4
    for node in meta.nodes:
        pods = node.pod_cidr_of(family)
        if pods is not None and address in pods:
            return pods
    underlay = meta.cluster.underlay_of(family)
    if underlay is not None and address in underlay:
        return underlay
    return ipaddress.ip_network(f"{address}/{24 if family == 4 else 120}", strict=False)


def _after(address: Address, network) -> Iterator[Address]:
    """The addresses after `address` in `network`, short of its broadcast address."""
    last = network.broadcast_address
    current = address + 1
    while current < last:
        yield current
        current += 1


def _named_addresses(meta: ScenarioMeta) -> set[Address]:
    """Every address scenario.yaml names or implies: nodes, their pod gateways, pods, endpoints, flows."""
    named: set[Address] = set()
    for family in (4, 6):
        gateway = meta.cluster.gateway_of(family)  # type: ignore[arg-type]
        named |= {gateway} if gateway is not None else set()
        for node in meta.nodes:
            named |= {a for a in (node.address_of(family), node.gateway_of(family)) if a is not None}  # type: ignore[arg-type]
    for pod in meta.pods:
        named |= set(pod.addresses())
    for service in meta.services:
        named |= {e.address for e in service.endpoints}
    for flow in meta.flows:
        named |= {a for a in (flow.src, flow.dst, flow.returning_to) if a is not None}
    return named
