"""The JSON that `iptables-lens COMMAND --json` prints, as pydantic models: the documented contract.

`iptables-lens schema --command NAME` prints the JSON Schema of a command's output, and the tests validate
every command's real output against these models.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict


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


class ExplainOutput(_Out):
    source: str
    chains: list[ExplainedChain]


class ChangedChain(_Out):
    kind: Literal["added", "removed"]
    table: str
    chain: str


class ChangedRule(_Out):
    kind: Literal["added", "removed"]
    table: str
    chain: str
    line: int
    text: str


class ServiceChange(_Out):
    service: str | None
    summary: str
    chains: list[ChangedChain]
    rules: list[ChangedRule]


class NoiseItem(_Out):
    kind: Literal["timestamps", "counters", "docker-dns-ports"]
    where: str
    before: str
    after: str


class DiffOutput(_Out):
    before: str
    after: str
    services: list[ServiceChange]
    noise: list[NoiseItem]


class TraceStep(_Out):
    hook: Literal["PREROUTING", "INPUT", "FORWARD", "OUTPUT", "POSTROUTING"]
    table: str | None
    chain: str | None
    rule: int | None
    line: int | None
    action: str


class TraceOutcome(_Out):
    probability: str
    verdict: Literal["ACCEPT", "DROP", "REJECT", "UNDECIDED", "UNSUPPORTED"]
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
    origin: Literal["external", "local"]
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


OUTPUTS: dict[str, type[BaseModel]] = {
    "check": CheckOutput,
    "fmt": FmtOutput,
    "explain": ExplainOutput,
    "diff": DiffOutput,
    "trace": TraceOutput,
    "render": RenderOutput,
    "validate": ValidateOutput,
}


def output_schema(command: str) -> dict:
    """The JSON Schema of `iptables-lens COMMAND --json`."""
    schema = OUTPUTS[command].model_json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = f"iptables-lens {command} --json"
    return schema
