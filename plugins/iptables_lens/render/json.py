"""The JSON that `iptables-lens COMMAND --json` prints: the one place results become JSON.

Each command's output is a pydantic model (the documented contract), built from the domain objects by one
function per command (`check_output`, `trace_output`, ...); `dumps` turns a model into the text the command
prints. `iptables-lens schema --command NAME` prints the JSON Schema of a command's output, and the tests
validate every command's real output against it.

The models carry no docstrings on purpose: pydantic would copy them into the published schemas.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, Field

from iptables_lens.dialects import dialect_of
from iptables_lens.errors import DumpError
from iptables_lens.iptables.diff import ChangeKind, NoiseKind
from iptables_lens.iptables.model import Dump
from iptables_lens.kube.nft_services import OwnedBy
from iptables_lens.trace.packet import Hook, Origin, Verdict

if TYPE_CHECKING:  # the builders only read these objects; importing them would load the lab
    from iptables_lens.iptables.diff import DumpDiff
    from iptables_lens.lab.run import FlowResult
    from iptables_lens.trace.packet import Outcome, Step, Trace


class _Out(BaseModel):
    model_config = ConfigDict(extra="forbid")


class CheckedFile(_Out):
    source: str
    ok: bool
    tables: int | None
    chains: int | None
    rules: int | None
    error: str | None


class CheckOutput(_Out):
    files: list[CheckedFile]


class FmtOutput(_Out):
    source: str
    text: str


def _absent(value: object) -> bool:
    return value is None


# Fields only an nft ruleset's explanation has: left out of the output when empty, so that an iptables dump's
# JSON stays as it was.
def _nft_only() -> Any:
    return Field(default=None, exclude_if=_absent)


class ExplainedHook(_Out):
    type: str
    hook: str
    priority: str
    priority_value: int
    policy: str
    devices: list[str]
    description: str


class ExplainedRule(_Out):
    position: int
    line: int
    text: str
    summary: str
    conditions: list[str]
    action: str
    comment: str | None
    service: str | None


class ExplainedChain(_Out):
    table: str
    chain: str
    builtin: bool
    policy: str | None
    family: str | None
    family_description: str | None
    name_explained: str | None
    rules: list[ExplainedRule]
    table_family: str | None = _nft_only()
    hook: ExplainedHook | None = _nft_only()
    service: str | None = _nft_only()


class ExplainedElement(_Out):
    text: str
    meaning: str
    service: str | None
    by: OwnedBy | None
    comment: str | None


class ExplainedSet(_Out):
    table_family: str
    table: str
    name: str
    kind: str
    key: str
    data: str | None
    description: str
    flags: list[str]
    timeout: str | None
    comment: str | None
    family: str | None
    family_description: str | None
    name_explained: str | None
    service: str | None
    elements: list[ExplainedElement]


class ExplainOutput(_Out):
    source: str
    chains: list[ExplainedChain]
    sets: list[ExplainedSet] | None = _nft_only()


# A field only some dialects fill (nft's declarations and elements; what a changed or moved thing was) is left
# out of the JSON where it is None, so that an iptables diff prints what it always has.
def _optional() -> Any:
    return Field(default=None, exclude_if=lambda value: value is None)


class ChangedChain(_Out):
    kind: ChangeKind
    table: str
    chain: str
    detail: str | None = _optional()


class ChangedRule(_Out):
    kind: ChangeKind
    table: str
    chain: str
    line: int
    text: str
    detail: str | None = _optional()


class ChangedDeclaration(_Out):
    kind: ChangeKind
    table: str
    what: str
    name: str
    detail: str | None


class ChangedElement(_Out):
    kind: ChangeKind
    table: str
    set: str | None
    chain: str | None
    text: str


class ServiceChange(_Out):
    service: str | None
    summary: str
    chains: list[ChangedChain]
    rules: list[ChangedRule]
    declarations: list[ChangedDeclaration] | None = _optional()
    elements: list[ChangedElement] | None = _optional()


class NoiseItem(_Out):
    kind: NoiseKind
    where: str
    before: str
    after: str


class DiffOutput(_Out):
    before: str
    after: str
    services: list[ServiceChange]
    noise: list[NoiseItem]


class TraceStep(_Out):
    hook: Hook
    table: str | None
    chain: str | None
    rule: int | None
    line: int | None
    action: str


class TraceOutcome(_Out):
    probability: str
    verdict: Verdict
    dnat: str | None
    snat: str | None
    masquerade: bool
    delivery: str
    conntrack: str | None
    choices: list[str]
    reason: str | None
    path: list[TraceStep]


class TraceOutput(_Out):
    node: str
    origin: Origin
    packet: str
    outcomes: list[TraceOutcome]


class RenderOutput(_Out):
    written: list[str]


class Problem(_Out):
    source: str
    line: int
    column: int
    message: str


class ValidatedFolder(_Out):
    folder: str
    ok: bool
    problems: list[Problem]


class ValidateOutput(_Out):
    folders: list[ValidatedFolder]


class LabBranch(_Out):
    endpoint: str | None
    matches_outcome: int | None
    problem: str | None
    path: list[str]


class LabAffinity(_Out):
    """An affinity Service's first requests in the kernel: where the flow's own client's connections went
    (one endpoint when affinity holds), how many other clients drew an endpoint, and how many of those were
    sent elsewhere on their second connection (0 when affinity holds)."""

    same_client: dict[str, int]
    clients: int
    switched: int
    ok: bool


# `lab --json` prints one of these per flow, each on a line of its own (JSON Lines).
class LabOutput(_Out):
    flow: str
    ok: bool
    connections: int
    conntrack_entries: int
    counts: dict[str, int]
    predicted: dict[str, str]
    checks: list[str]
    branches: list[LabBranch]
    problems: list[str]
    affinity: LabAffinity | None = None


OUTPUTS: dict[str, type[BaseModel]] = {
    "check": CheckOutput,
    "fmt": FmtOutput,
    "explain": ExplainOutput,
    "diff": DiffOutput,
    "trace": TraceOutput,
    "render": RenderOutput,
    "validate": ValidateOutput,
    "lab": LabOutput,
}


def output_schema(command: str) -> dict:
    """The JSON Schema of `iptables-lens COMMAND --json`."""
    schema = OUTPUTS[command].model_json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = f"iptables-lens {command} --json"
    return schema


def dumps(output: BaseModel, indent: int | None = 2) -> str:
    """The text a command prints for `output`: indented JSON, or one line with `indent=None` (JSON Lines)."""
    return json.dumps(output.model_dump(), indent=indent)


def dumps_schema(schema: dict) -> str:
    """A JSON Schema as `iptables-lens schema` prints it: indented, keys sorted, so copies diff cleanly."""
    return json.dumps(schema, indent=2, sort_keys=True)


# -- one builder per command, from the domain objects to the command's model -------------------------------


def check_output(results: Iterable[Dump | DumpError]) -> CheckOutput:
    """`check --json`: per file, the dump's counts or the error that stopped its parse."""
    files = []
    for result in results:
        if isinstance(result, DumpError):
            files.append(CheckedFile(source=result.source, ok=False, tables=None, chains=None, rules=None,
                                     error=str(result)))
        else:
            tables, chains, rules = result.summary()
            files.append(CheckedFile(source=result.source, ok=True, tables=tables, chains=chains, rules=rules,
                                     error=None))
    return CheckOutput(files=files)


def fmt_output(dump: Dump) -> FmtOutput:
    """`fmt --json`: the dump's source and its canonical iptables-save text."""
    return FmtOutput(source=dump.source, text=dialect_of(dump).format(dump))


def explain_output(source: str, chains: Sequence[ExplainedChain],
                   sets: Sequence[ExplainedSet] | None = None) -> ExplainOutput:
    """`explain --json`: the chains `render.text.explain_views` chose, which are already this output's models,
    and for an nft ruleset its sets and maps."""
    return ExplainOutput(source=source, chains=list(chains), sets=None if sets is None else list(sets))


def diff_output(changes: DumpDiff) -> DiffOutput:
    """`diff --json`: per Service, the chains and rules added and removed (and for nft rulesets the declarations
    and elements), and the noise that was folded."""
    services = [
        ServiceChange(
            service=group.service,
            summary=group.summary,
            chains=[ChangedChain(kind=c.kind, table=c.table, chain=c.chain, detail=c.detail) for c in group.chains],
            rules=[ChangedRule(kind=r.kind, table=r.table, chain=r.chain, line=r.rule.line, text=r.text,
                               detail=r.detail) for r in group.rules],
            declarations=[ChangedDeclaration(kind=d.kind, table=d.table, what=d.what, name=d.name, detail=d.detail)
                          for d in group.declarations] if changes.has_sets else None,
            elements=[ChangedElement(kind=e.kind, table=e.table, set=e.set, chain=e.chain, text=e.text)
                      for e in group.elements] if changes.has_sets else None,
        )
        for group in changes.services
    ]
    noise = [NoiseItem(kind=n.kind, where=n.description, before=n.before, after=n.after) for n in changes.noise]
    return DiffOutput(before=changes.before.source, after=changes.after.source, services=services, noise=noise)


def trace_output(result: Trace) -> TraceOutput:
    """`trace --json`: every outcome of the packet, with its exact probability and its path."""
    return TraceOutput(node=result.node, origin=result.origin, packet=str(result.packet),
                       outcomes=[_trace_outcome(o) for o in result.outcomes])


def _trace_outcome(outcome: Outcome) -> TraceOutcome:
    return TraceOutcome(
        probability=str(outcome.probability),
        verdict=outcome.verdict,
        dnat=outcome.endpoint,
        snat=str(outcome.snat[0]) if outcome.snat else None,
        masquerade=outcome.masquerade,
        delivery=outcome.delivery,
        conntrack=str(outcome.conntrack) if outcome.conntrack else None,
        choices=list(outcome.choices),
        reason=outcome.reason,
        path=[_trace_step(s) for s in outcome.path],
    )


def _trace_step(step: Step) -> TraceStep:
    return TraceStep(hook=step.hook, table=step.table, chain=step.chain, rule=step.rule, line=step.line,
                     action=step.action)


def render_output(written: Iterable[str]) -> RenderOutput:
    """`render --json`: the files and folders it wrote, in the order it wrote them."""
    return RenderOutput(written=list(written))


def validate_output(results: Iterable[tuple[str, Sequence[DumpError]]]) -> ValidateOutput:
    """`validate --json`: per scenario folder, its problems with their positions (none when it is valid)."""
    return ValidateOutput(folders=[
        ValidatedFolder(folder=folder, ok=not problems, problems=[
            Problem(source=p.source, line=p.line, column=p.column, message=p.message) for p in problems])
        for folder, problems in results
    ])


def lab_output(result: FlowResult) -> LabOutput:
    """`lab --json`, for one flow: what the kernel did, what the tracer predicted, and where they disagree."""
    return LabOutput(
        flow=result.flow.id,
        ok=result.ok,
        connections=result.connections,
        conntrack_entries=result.conntrack_entries,
        counts=dict(sorted(result.counts.items())),
        predicted={where: str(p) for where, p in sorted(result.predicted.items())},
        checks=[str(c) for c in result.checks],
        branches=[LabBranch(endpoint=b.endpoint, matches_outcome=b.matched_outcome, problem=b.problem,
                            path=[str(s) for s in b.steps]) for b in result.branches],
        problems=list(result.problems),
        affinity=None if result.affinity is None else LabAffinity(
            same_client={str(k): v for k, v in sorted(result.affinity.same_client.items())},
            clients=result.affinity.clients, switched=result.affinity.switched, ok=result.affinity.ok),
    )
