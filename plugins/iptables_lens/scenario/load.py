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
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from iptables_lens.errors import DumpError, DumpErrors
from iptables_lens.iptables.model import Dump
from iptables_lens.iptables.parse import parse_file

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
    underlay_gateway: IPv4 | None = None
    """An address on the underlay that is no node (kind: the Docker network's gateway), if dumps name it."""
    pod_cidr: Network


class Node(_Strict):
    name: str
    role: Literal["control-plane", "worker"]
    address: IPv4
    pod_cidr: Network
    pod_gateway: IPv4 | None = None
    """The address the host side of each pod's veth holds; kind's CNI uses the first of the pod range."""

    @property
    def gateway(self) -> ipaddress.IPv4Address:
        return self.pod_gateway or self.pod_cidr.network_address + 1


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
    def _facts_agree(self) -> ScenarioMeta:
        names = {n.name for n in self.nodes}
        for kind, items in (("pods", self.pods), ("dumps", self.dumps), ("flows", self.flows)):
            for item in items:
                if item.node not in names:
                    raise ValueError(f"{kind}: node {item.node!r} is not one of the nodes ({', '.join(sorted(names))})")
        for node in self.nodes:
            if node.address not in self.cluster.underlay_cidr:
                raise ValueError(f"nodes: {node.name}'s address {node.address} is outside the underlay "
                                 f"{self.cluster.underlay_cidr}")
            if not node.pod_cidr.subnet_of(self.cluster.pod_cidr):
                raise ValueError(f"nodes: {node.name}'s pod range {node.pod_cidr} is outside the pod network "
                                 f"{self.cluster.pod_cidr}")
        for pod in self.pods:
            if pod.address not in self.node(pod.node).pod_cidr:
                raise ValueError(f"pods: {pod.name} at {pod.address} is outside {pod.node}'s pod range "
                                 f"{self.node(pod.node).pod_cidr}")
        for service in self.services:
            for endpoint in service.endpoints:
                if endpoint.node is not None and endpoint.node not in names:
                    raise ValueError(f"services: endpoint {endpoint.address} names node {endpoint.node!r}, "
                                     f"which is not one of the nodes")
        files = [d.file for d in self.dumps]
        if len(set(files)) != len(files):
            raise ValueError("dumps: a file is listed twice")
        return self

    def node(self, name: str) -> Node:
        return next(n for n in self.nodes if n.name == name)


def metadata_json_schema() -> dict:
    """The JSON Schema of scenario.yaml, for editors that validate YAML as it is typed."""
    schema = ScenarioMeta.model_json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "iptables-lens scenario.yaml"
    return schema


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
        for err in exc.errors():
            loc = tuple(err["loc"])
            line, col = _yaml_position(root, loc)
            problems.append(DumpError(source, line, col, f"{_key_path(loc)}: {_pydantic_message(err)}",
                                      lines[line - 1] if 0 < line <= len(lines) else None))
        raise DumpErrors(problems) from None


def _pydantic_message(err: Any) -> str:
    """Pydantic's message, with what was found, in the words a person editing YAML needs."""
    message = err["msg"]
    if err["type"] == "extra_forbidden":
        return "unknown key (check its spelling against the schema)"
    if err["type"] == "missing":
        return "required key is missing"
    found = err.get("input")
    if found is not None and not isinstance(found, (dict, list)):
        message += f" (found {found!r})"
    return message


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
