"""A scenario is a folder under `dumps/`: a `scenario.yaml` of facts about a cluster and its `.rules` dumps.

The metadata schema is a set of pydantic models; `load_scenario` reads and checks the YAML and reports a
mistake as a `DumpError` naming the file, the line and column, and the key path (`services[0].ports`).

>>> scenario = load_scenario("dumps/kind-nodeport")
>>> scenario.meta.services[0].ports[0].node_port
30080
"""

from __future__ import annotations

import ipaddress
from functools import cached_property
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from .errors import DumpError
from .model import Dump
from .parse import parse_file

METADATA_FILE = "scenario.yaml"

IPv4 = ipaddress.IPv4Address
Network = ipaddress.IPv4Network


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Provenance(_Strict):
    """How the dumps were obtained: captured from a real cluster, or made by a named procedure."""

    method: Literal["captured", "procedure"]
    description: str


class Cluster(_Strict):
    name: str
    kubernetes_version: str
    iptables_version: str
    proxy_mode: Literal["iptables"] = "iptables"
    underlay_cidr: Network
    pod_cidr: Network


class Node(_Strict):
    name: str
    role: Literal["control-plane", "worker"]
    address: IPv4
    pod_cidr: Network


class Pod(_Strict):
    name: str
    namespace: str = "default"
    node: str
    address: IPv4


class ServicePort(_Strict):
    name: str | None = None
    protocol: Literal["TCP", "UDP", "SCTP"] = "TCP"
    port: int = Field(ge=1, le=65535)
    target_port: int = Field(ge=1, le=65535)
    node_port: int | None = Field(default=None, ge=1, le=65535)


class Endpoint(_Strict):
    address: IPv4
    port: int = Field(ge=1, le=65535)
    node: str | None = None


class Service(_Strict):
    namespace: str
    name: str
    type: Literal["ClusterIP", "NodePort", "LoadBalancer"]
    cluster_ip: IPv4
    external_traffic_policy: Literal["Cluster", "Local"] = "Cluster"
    session_affinity: Literal["None", "ClientIP"] = "None"
    ports: tuple[ServicePort, ...] = Field(min_length=1)
    endpoints: tuple[Endpoint, ...] = ()

    @model_validator(mode="after")
    def _node_ports_match_type(self) -> Service:
        for port in self.ports:
            if self.type == "ClusterIP" and port.node_port is not None:
                raise ValueError("a ClusterIP Service has no node_port")
            if self.type != "ClusterIP" and port.node_port is None:
                raise ValueError(f"a {self.type} Service needs a node_port on every port")
        return self

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.name}"


class DumpFile(_Strict):
    file: str
    node: str
    moment: Literal["before", "after"]

    @field_validator("file")
    @classmethod
    def _plain_name(cls, value: str) -> str:
        if "/" in value or value.startswith(".") or not value.endswith(".rules"):
            raise ValueError("expected a file name in the scenario folder ending in .rules")
        return value


class Flow(_Strict):
    """A packet the scenario traces: its first packet, seen on `node`."""

    id: str = Field(pattern=r"^[a-z0-9][a-z0-9-]*$")
    title: str
    node: str
    client: str
    src: IPv4
    dst: IPv4
    protocol: Literal["tcp", "udp", "sctp"] = "tcp"
    dport: int = Field(ge=1, le=65535)
    sport: int | None = Field(default=None, ge=1, le=65535)


class ScenarioMeta(_Strict):
    """The whole `scenario.yaml`."""

    title: str
    summary: str
    provenance: Provenance
    cluster: Cluster
    nodes: tuple[Node, ...] = Field(min_length=1)
    pods: tuple[Pod, ...] = ()
    services: tuple[Service, ...] = ()
    manifests: tuple[str, ...] = ()
    dumps: tuple[DumpFile, ...] = Field(min_length=1)
    flows: tuple[Flow, ...] = ()

    @model_validator(mode="after")
    def _names_refer_to_nodes(self) -> ScenarioMeta:
        names = {n.name for n in self.nodes}
        for kind, items in (("pods", self.pods), ("dumps", self.dumps), ("flows", self.flows)):
            for item in items:
                if item.node not in names:
                    raise ValueError(f"{kind}: node {item.node!r} is not one of the nodes ({', '.join(sorted(names))})")
        return self

    def node(self, name: str) -> Node:
        return next(n for n in self.nodes if n.name == name)


def _yaml_position(root: yaml.Node | None, loc: tuple[int | str, ...]) -> tuple[int, int]:
    """Line and column (1-based) of the YAML node at the pydantic error location, or of its nearest parent."""
    node = root
    best = (1, 1)
    for key in loc:
        if node is None:
            break
        best = (node.start_mark.line + 1, node.start_mark.column + 1)
        if isinstance(node, yaml.MappingNode) and isinstance(key, str):
            node = next((v for k, v in node.value if getattr(k, "value", None) == key), None)
        elif isinstance(node, yaml.SequenceNode) and isinstance(key, int) and key < len(node.value):
            node = node.value[key]
        else:
            node = None
    if node is not None:
        best = (node.start_mark.line + 1, node.start_mark.column + 1)
    return best


def _key_path(loc: tuple[int | str, ...]) -> str:
    path = ""
    for key in loc:
        path += f"[{key}]" if isinstance(key, int) else (f".{key}" if path else str(key))
    return path or "(top level)"


def read_metadata(path: Path) -> ScenarioMeta:
    """Read and validate one `scenario.yaml`; every schema problem is listed in one DumpError."""
    return _read_metadata(path)[0]


def _read_metadata(path: Path) -> tuple[ScenarioMeta, yaml.Node | None, list[str]]:
    source = str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise DumpError(source, 0, 0, f"cannot read: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise DumpError(source, 1, 1, "metadata is not UTF-8 text") from None
    lines = text.splitlines()
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark
        line, col = (mark.line + 1, mark.column + 1) if mark else (1, 1)
        raise DumpError(source, line, col, f"invalid YAML: {exc.problem}",
                        lines[line - 1] if 0 < line <= len(lines) else None) from None
    if not isinstance(data, dict):
        raise DumpError(source, 1, 1, "expected a mapping of keys (title, cluster, nodes, dumps, ...)")
    try:
        return ScenarioMeta.model_validate(data), root, lines
    except ValidationError as exc:
        problems = []
        first = None
        for err in exc.errors():
            line, col = _yaml_position(root, tuple(err["loc"]))
            first = first or (line, col)
            problems.append(f"{source}:{line}:{col}: {_key_path(tuple(err['loc']))}: {err['msg']}")
        line, col = first or (1, 1)
        message = problems[0].split(": ", 1)[1] if len(problems) == 1 else (
            f"{len(problems)} problems:\n" + "\n".join(problems)
        )
        raise DumpError(source, line, col, message, lines[line - 1] if 0 < line <= len(lines) else None) from None


class Scenario:
    """A loaded scenario folder: its metadata and, on first use, its parsed dumps."""

    def __init__(self, folder: Path, meta: ScenarioMeta):
        self.folder = folder
        self.meta = meta

    @property
    def name(self) -> str:
        return self.folder.name

    @cached_property
    def dumps(self) -> dict[str, Dump]:
        """File name -> parsed dump, in the order the metadata lists them."""
        return {d.file: parse_file(self.folder / d.file) for d in self.meta.dumps}

    def dump_for(self, node: str, moment: str) -> Dump | None:
        for d in self.meta.dumps:
            if d.node == node and d.moment == moment:
                return self.dumps[d.file]
        return None


def load_scenario(folder: str | Path) -> Scenario:
    """Read `folder/scenario.yaml` and check that the files it names exist (dumps are parsed lazily)."""
    folder = Path(folder)
    meta_path = folder / METADATA_FILE
    meta, root, lines = _read_metadata(meta_path)
    named: list[tuple[tuple[int | str, ...], str]] = [(("dumps", i, "file"), d.file) for i, d in enumerate(meta.dumps)]
    named += [(("manifests", i), m) for i, m in enumerate(meta.manifests)]
    for loc, name in named:
        if not (folder / name).is_file():
            line, col = _yaml_position(root, loc)
            raise DumpError(str(meta_path), line, col, f"{_key_path(loc)}: {name!r} is not a file in {folder}",
                            lines[line - 1] if 0 < line <= len(lines) else None)
    return Scenario(folder, meta)


def find_scenarios(root: str | Path) -> list[Path]:
    """Every folder directly under `root` that has a scenario.yaml, sorted by name."""
    root = Path(root)
    return sorted(p.parent for p in root.glob(f"*/{METADATA_FILE}"))
