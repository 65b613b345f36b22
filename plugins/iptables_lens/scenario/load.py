"""A scenario is a folder under `dumps/`: a `scenario.yaml` of facts about a cluster and its dumps, `.rules`
(iptables-save) or `.nft` (`nft list ruleset`) files.

`read_scenario` is the one loader. It reads the YAML keeping where each key is written, checks it against the
schema (`scenario.model`), checks that the files it names exist and parses every dump, once, in its dialect
(detected from the content; it must be the one the cluster's `proxy_mode` writes). It gives back the
`Scenario` and every problem it met, each a `DumpError` with the file, the line and column, and in the
metadata the key path (`services[0].ports`). `load_scenario` is the same for callers that want a scenario or
an exception.

>>> scenario = load_scenario("dumps/kind-nodeport")
>>> scenario.meta.services[0].ports[0].node_port
30080
>>> scenario.metadata_file.position(("services", 0, "ports", 0, "node_port"))
(55, 20)
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from iptables_lens.dialects import dialect_of, read_dump
from iptables_lens.errors import DumpError, DumpErrors
from iptables_lens.gcpause import paused_gc
from iptables_lens.iptables.model import Dump
from iptables_lens.nft.model import Ruleset
from iptables_lens.scenario.model import DUMP_DIALECTS, DumpFile, Family, Moment, ScenarioMeta

METADATA_FILE = "scenario.yaml"

KeyPath = tuple[int | str, ...]
"""Where a value sits in scenario.yaml: `("services", 0, "ports")` is `services[0].ports`."""
AnyDump = Dump | Ruleset
"""A node's rules as a scenario holds them: an iptables-save dump, or an nft ruleset in nftables mode."""


def _key_path_text(key_path: KeyPath) -> str:
    """`("services", 0, "ports")` as a person writes it: `services[0].ports`."""
    text = ""
    for key in key_path:
        text += f"[{key}]" if isinstance(key, int) else (f".{key}" if text else str(key))
    return text or "(top level)"


@dataclass(frozen=True)
class MetadataFile:
    """`scenario.yaml` as read: its lines, and its YAML nodes, which know where each key is written."""

    path: Path
    lines: tuple[str, ...]
    root: yaml.Node | None

    def position(self, key_path: KeyPath) -> tuple[int, int]:
        """Line and column (1-based) of the value at `key_path`, or of its nearest parent that is written."""
        node = self.root
        best = (1, 1)
        for key in key_path:
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

    def problem(self, key_path: KeyPath, message: str) -> DumpError:
        """A DumpError at the value at `key_path`, its message led by the key path."""
        line, column = self.position(key_path)
        return DumpError(str(self.path), line, column, f"{_key_path_text(key_path)}: {message}",
                         _line_text(self.lines, line))


@dataclass(frozen=True, eq=False)
class Scenario:
    """A loaded scenario folder: its facts, its parsed dumps, and where each fact is written."""

    folder: Path
    meta: ScenarioMeta
    dumps: dict[str, Dump]
    """File name -> parsed iptables-save dump, in the order the metadata lists them (from `read_scenario`, those
    that parse); empty in nftables mode."""
    metadata_file: MetadataFile
    rulesets: dict[str, Ruleset] = field(default_factory=dict)
    """File name -> parsed nft ruleset, as `dumps` (nftables mode: each node's `nft list ruleset`)."""

    @property
    def name(self) -> str:
        return self.folder.name

    def dump_for(self, node: str, moment: Moment, family: Family = 4) -> AnyDump | None:
        """The rules of `node` saved at `moment` that hold `family`'s tables, if the scenario has them: in
        iptables mode the iptables-save (`family` 4) or ip6tables-save (6) dump; in nftables mode the node's one
        ruleset of that moment for either family, since it holds both `table ip kube-proxy` and `table ip6
        kube-proxy` (a caller of one family reads that family's tables of it)."""
        for d in self.meta.dumps:
            if d.node == node and d.moment == moment and d.holds(family):
                return self.rules(d.file)
        return None

    def rules(self, file: str) -> AnyDump | None:
        """The parsed rules of `file`, whatever their dialect; None if it did not parse."""
        return self.dumps[file] if file in self.dumps else self.rulesets.get(file)


def read_scenario(folder: str | Path) -> tuple[Scenario | None, list[DumpError]]:
    """The scenario in `folder` and every problem met loading it, in the order of the metadata.

    The scenario is None when `scenario.yaml` cannot be read or does not fit the schema (the problems say why).
    Otherwise a file the metadata names that does not exist, or a dump that does not parse, is a problem, and the
    scenario holds the dumps that did parse.
    """
    folder = Path(folder)
    with paused_gc():
        try:
            meta, metadata_file = _read_metadata(folder / METADATA_FILE)
        except DumpErrors as errors:
            return None, list(errors.problems)
        except DumpError as error:
            return None, [error]
        problems: list[DumpError] = []
        dumps: dict[str, Dump] = {}
        rulesets: dict[str, Ruleset] = {}
        for index, entry in enumerate(meta.dumps):
            path = folder / entry.file
            if not path.is_file():
                problems.append(metadata_file.problem(("dumps", index, "file"),
                                                      f"{entry.file!r} is not a file in {folder}"))
                continue
            mismatch = _mode_mismatch(meta, entry)
            if mismatch:
                problems.append(metadata_file.problem(("dumps", index, "file"), mismatch))
                continue
            try:
                dump = read_dump(path)
            except DumpError as error:
                problems.append(error)
                continue
            found = _content_mismatch(meta, entry, dump)
            if found:
                problems.append(metadata_file.problem(("dumps", index, found[0]), found[1]))
                continue
            if isinstance(dump, Ruleset):
                rulesets[entry.file] = dump
            else:
                dumps[entry.file] = dump
        for index, name in enumerate(meta.manifests):
            if not (folder / name).is_file():
                problems.append(metadata_file.problem(("manifests", index), f"{name!r} is not a file in {folder}"))
    return Scenario(folder, meta, dumps, metadata_file, rulesets), problems


def _mode_mismatch(meta: ScenarioMeta, entry: DumpFile) -> str | None:
    """Why the file's name says it is not what the cluster's kube-proxy mode saves, or None."""
    mode = meta.cluster.proxy_mode
    if entry.proxy_mode == mode:
        return None
    return (f"{entry.file} names {'an nft ruleset' if entry.is_ruleset else 'an iptables-save dump'}, but "
            f"cluster.proxy_mode is {mode}, whose nodes' rules are {_WHAT_MODE_SAVES[mode]}")


_WHAT_MODE_SAVES = {"iptables": "iptables-save dumps (.rules)", "nftables": "nft list ruleset listings (.nft)"}


def _content_mismatch(meta: ScenarioMeta, entry: DumpFile, dump: AnyDump) -> tuple[str, str] | None:
    """The key and the reason when the dump read from `entry` is not what its entry says: another dialect than
    the cluster's proxy mode writes (read from the content), or, of an iptables-save dump, another family."""
    mode = meta.cluster.proxy_mode
    dialect = dialect_of(dump).name
    if dialect != DUMP_DIALECTS[mode]:
        return "file", (f"{entry.file} holds {dialect} rules, but cluster.proxy_mode is {mode}, whose nodes' rules "
                        f"are {_WHAT_MODE_SAVES[mode]}")
    # A dump is read in the family its header (or first address) names; the metadata must agree.
    if isinstance(dump, Dump) and dump.family != entry.family:
        return "family", (f"{entry.file} is an IPv{dump.family} dump (saved by "
                          f"{'ip6tables' if dump.family == 6 else 'iptables'}-save), not IPv{entry.family}")
    return None


def load_scenario(folder: str | Path) -> Scenario:
    """The scenario in `folder` with its dumps parsed; DumpErrors listing every problem if it cannot be loaded.

    The metadata fits the schema and the files it names exist and parse; `validate_scenario` checks more."""
    scenario, problems = read_scenario(folder)
    if problems:
        raise DumpErrors(problems)
    assert scenario is not None
    return scenario


def find_scenarios(root: str | Path, include: Collection[str] = ()) -> list[Path]:
    """Every folder directly under `root` that has a scenario.yaml, sorted by name; only those named in
    `include`, if it names any."""
    found = sorted(p.parent for p in Path(root).glob(f"*/{METADATA_FILE}"))
    return [f for f in found if f.name in include] if include else found


def _read_metadata(path: Path) -> tuple[ScenarioMeta, MetadataFile]:
    """The facts in `path` and the file they come from; a DumpError if it cannot be read or is no YAML
    mapping, DumpErrors listing every place that does not fit the schema."""
    source = str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise DumpError(source, 0, 0, f"cannot read: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise DumpError(source, 1, 1, "metadata is not UTF-8 text") from None
    lines = tuple(text.splitlines())
    try:
        # The composed nodes keep each key's position; the loaded data is what the schema checks.
        root = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark
        line, col = (mark.line + 1, mark.column + 1) if mark else (1, 1)
        raise DumpError(source, line, col, f"invalid YAML: {exc.problem}",
                        _line_text(lines, line)) from None
    metadata_file = MetadataFile(path, lines, root)
    if not isinstance(data, dict):
        raise DumpError(source, 1, 1, "expected a mapping of keys (title, cluster, nodes, dumps, ...)")
    try:
        return ScenarioMeta.model_validate(data), metadata_file
    except ValidationError as exc:
        raise DumpErrors([metadata_file.problem(tuple(err["loc"]), _pydantic_message(err))
                          for err in exc.errors()]) from None


def _line_text(lines: tuple[str, ...], line: int) -> str | None:
    """The text of line `line` (1-based), to show under a problem; None past the end."""
    return lines[line - 1] if 0 < line <= len(lines) else None


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


__all__ = ["METADATA_FILE", "AnyDump", "KeyPath", "MetadataFile", "Scenario", "find_scenarios", "load_scenario",
           "read_scenario"]
