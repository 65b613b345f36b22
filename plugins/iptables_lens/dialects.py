"""The rule languages iptables-lens reads, each plugged in through one `Dialect` record.

A dialect recognises its text, parses it into its own model, prints that model back, explains its chains,
and gives the tracer's walk its base chains. Everything else asks the registry, so a second language
(nftables' `nft list ruleset`) is a sibling package and one more `register(...)`, not a branch in callers.

>>> detect_dialect("*nat\\n:PREROUTING ACCEPT [0:0]\\nCOMMIT\\n").name
'iptables'
>>> dump = parse_dump("*filter\\n:INPUT DROP [0:0]\\nCOMMIT\\n", "example.rules")
>>> dialect_of(dump).name, [(c.table, c.hook, c.policy) for c in base_chains(dump)]
('iptables', [('filter', 'INPUT', 'DROP'), ('filter', 'FORWARD', 'ACCEPT'), ('filter', 'OUTPUT', 'ACCEPT')])
"""

from __future__ import annotations

import io
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Generic, TypeVar

from iptables_lens.errors import DumpError
from iptables_lens.iptables import evaluate as iptables_evaluate
from iptables_lens.iptables.explain import ChainExplanation, explain_chain
from iptables_lens.iptables.fmt import format_dump
from iptables_lens.iptables.model import Dump
from iptables_lens.iptables.parse import parse, parse_file
from iptables_lens.nft import Ruleset, format_ruleset, looks_like_nft, parse_ruleset, parse_ruleset_file
from iptables_lens.nft import evaluate as nft_evaluate
from iptables_lens.nft.explain import ChainExplanation as NftChainExplanation
from iptables_lens.nft.explain import explain_ruleset
from iptables_lens.source import STDIN, read_bytes, source_name
from iptables_lens.trace.walk import BaseChain

DumpT = TypeVar("DumpT")


@dataclass(frozen=True)
class Dialect(Generic[DumpT]):
    """What iptables-lens needs from one rule language.

    `detect(text)` says whether the text looks like this language (from its first lines: it is given the
    start of a file); `parse(text, source)` gives its model or raises `DumpError` with a position, and
    `parse_file(path, source)` the same for a file, read as the dialect reads big files best;
    `format(dump)` gives the text back;
    `explain(dump)` explains every chain (each dialect's `ChainExplanation`: its name, `chain`, and its
    explained `rules`); `base_chains(dump)` gives the walk the chains the kernel calls at
    each hook. `dump_type` is the model's class, by which a parsed dump finds its dialect again.
    """

    name: str
    dump_type: type[DumpT]
    detect: Callable[[str], bool]
    parse: Callable[..., DumpT]
    """(text, source, *, family=None): `family` (4 or 6) overrides what the text says, where it can say it."""
    parse_file: Callable[..., DumpT]
    """(path, source, *, family=None), as `parse`."""
    format: Callable[[DumpT], str]
    explain: Callable[[DumpT], tuple[Any, ...]]
    base_chains: Callable[[DumpT], tuple[BaseChain, ...]]


DIALECTS: dict[str, Dialect[Any]] = {}


def register(dialect: Dialect[Any]) -> None:
    """Add a dialect. The first registered is the default: text no dialect recognises goes to its parser,
    which says precisely what is wrong with it."""
    assert dialect.name not in DIALECTS, f"dialect {dialect.name!r} is registered twice"
    DIALECTS[dialect.name] = dialect


def detect_dialect(text: str, override: str | None = None) -> Dialect[Any]:
    """The dialect named `override`, or else the first whose `detect` accepts `text`, or else the default.
    ValueError for an `override` that names no dialect."""
    if override is not None:
        if override not in DIALECTS:
            raise ValueError(f"unknown dialect {override!r}: expected one of {', '.join(DIALECTS)}")
        return DIALECTS[override]
    for dialect in DIALECTS.values():
        if dialect.detect(text):
            return dialect
    return next(iter(DIALECTS.values()))


def parse_dump(text: str, source: str = "<string>", dialect: str | None = None) -> Any:
    """`text` parsed by its dialect (detected, or the one named `dialect`); DumpError on a mistake."""
    return detect_dialect(text, dialect).parse(text, source)


_SNIFF_BYTES = 1 << 16  # enough for any header comments before the first table or statement


def read_dump(path: str | Path, source: str | None = None, dialect: str | None = None,
              family: int | None = None) -> Any:
    """The dump in file `path` (`-`: standard input), parsed by its dialect (detected from its first bytes,
    or the one named `dialect`) as a dump of `family` if given; DumpError if it cannot be read or has a
    mistake."""
    name = source_name(path, source)
    if str(path) == STDIN:
        data = read_bytes(path, name)
        return detect_dialect(_sniffed(data), dialect).parse(data, name, family=family)
    try:
        with open(path, "rb") as handle:
            head = handle.read(_SNIFF_BYTES)
    except OSError:
        head = b""  # the dialect's own reading says why, with the file's name
    return detect_dialect(_sniffed(head), dialect).parse_file(Path(path), source, family=family)


def _sniffed(head: bytes) -> str:
    return head[:_SNIFF_BYTES].decode("utf-8", "replace")


def detect_bytes(data: bytes) -> Dialect[Any]:
    """The dialect of a file's bytes, detected from their start as `read_dump` detects it."""
    return detect_dialect(_sniffed(data))


def dialect_of(dump: object) -> Dialect[Any]:
    """The dialect whose model `dump` is; TypeError for anything else."""
    for dialect in DIALECTS.values():
        if isinstance(dump, dialect.dump_type):
            return dialect
    raise TypeError(f"{type(dump).__name__} is not the dump of any dialect ({', '.join(DIALECTS)})")


def base_chains(dump: object) -> tuple[BaseChain, ...]:
    """The base chains of `dump`, whatever its dialect, for the tracer's walk."""
    return dialect_of(dump).base_chains(dump)


# -- iptables -------------------------------------------------------------------------------------------------


def _looks_like_iptables_save(text: str) -> bool:
    """iptables-save text: before its first table (`*nat`) come only comments and blank lines."""
    for line in io.StringIO(text):  # lazily: a dump can be tens of megabytes
        stripped = line.strip()
        if stripped and not stripped.startswith("#"):
            return stripped.startswith("*")
    return False


def _explain_iptables(dump: Dump) -> tuple[ChainExplanation, ...]:
    return tuple(explain_chain(chain, table) for table in dump.tables for chain in table.chains)


register(Dialect(
    name="iptables",
    dump_type=Dump,
    detect=_looks_like_iptables_save,
    parse=parse,
    parse_file=parse_file,
    format=format_dump,
    explain=_explain_iptables,
    base_chains=iptables_evaluate.base_chains,
))


# -- nftables ---------------------------------------------------------------------------------------------------

# The commands of nft's language (`nft -f` input) that a listing never holds at the start of a line, and the
# objects `add`, `create`, `delete`, ... name after them: `add @set { ip saddr }` in a chain is a rule.
_NFT_COMMANDS = ("add", "create", "insert", "replace", "delete", "destroy", "flush", "reset", "rename", "list",
                 "define", "redefine", "undefine", "include")
_NFT_OBJECTS = ("table", "chain", "rule", "set", "map", "element", "ruleset", "flowtable", "counter", "quota",
                "limit", "ct", "secmark", "synproxy", "meter", "tables", "chains", "sets", "maps")
_NFT_COMMAND_LINE = re.compile(rf"[ \t]*(?:(?:{'|'.join(_NFT_COMMANDS[:-4])})[ \t]+(?:{'|'.join(_NFT_OBJECTS)})\b"
                               rf"|(?:{'|'.join(_NFT_COMMANDS[-4:])})[ \t]+\S)")


def nft_command_line(line: str) -> bool:
    """Whether `line` is a command of an nft script (`add table ip t`, `flush ruleset`, `define X = 1`,
    `include "f"`), which `nft -f` reads and `nft list ruleset` never prints."""
    return _NFT_COMMAND_LINE.match(line) is not None


def _looks_like_nft_script(head: str) -> bool:
    """An nft script: its first line that is not blank or a comment is one of nft's commands."""
    for line in io.StringIO(head):
        stripped = line.strip()
        if stripped and not stripped.startswith("#"):
            return nft_command_line(stripped)
    return False


def _looks_like_nft(head: str) -> bool:
    # A script is given to the nft dialect, whose reading of it says what it is and how to get a listing.
    return looks_like_nft(head) or _looks_like_nft_script(head)


def _script_error(error: DumpError, lines: Iterable[str]) -> DumpError:
    """`error` itself, or, when the text holds a command of nft's language at the start of a line (`add table`,
    `flush ruleset`: a listing never does), the error at the first such line that says the file is an nft
    script and how to make the listing iptables-lens reads."""
    found = next(((n, line) for n, line in enumerate(lines, 1) if line[:1].isalpha() and nft_command_line(line)),
                 None)
    if found is None:
        return error
    number, line = found[0], found[1].rstrip("\r\n")
    command = " ".join(line.split()[:2])
    shown = "FILE" if error.source in (STDIN, "<stdin>", "<string>") else error.source
    return DumpError(error.source, number, 1,
                     f"`{command}` is an nft command: this is an nft script (input for `nft -f`), not a listing. "
                     f"Load it in a scratch network namespace and list it: `ip netns add scratch && ip netns exec "
                     f"scratch nft -f {shown} && ip netns exec scratch nft list ruleset > listing.nft; ip netns "
                     f"delete scratch`, then read listing.nft", line)


def _parse_nft(text: str | bytes, source: str = "<string>", *, family: int | None = None) -> Ruleset:
    try:
        return parse_ruleset(text, source, family=family)
    except DumpError as error:
        if isinstance(text, bytes):
            text = text.decode("utf-8", "replace")
        raise _script_error(error, io.StringIO(text)) from None


def _parse_nft_file(path: str | Path, source: str | None = None, *, family: int | None = None) -> Ruleset:
    try:
        return parse_ruleset_file(path, source, family=family)
    except DumpError as error:
        try:
            with open(path, encoding="utf-8", errors="replace") as handle:
                script_error = _script_error(error, handle)  # only on an error: a second, lazy read
        except OSError:
            raise error from None
        raise script_error from None


def _explain_nft(ruleset: Ruleset) -> tuple[NftChainExplanation, ...]:
    return tuple(chain for table in explain_ruleset(ruleset) for chain in table.chains)


register(Dialect(
    name="nft",
    dump_type=Ruleset,
    detect=_looks_like_nft,
    parse=_parse_nft,
    parse_file=_parse_nft_file,
    format=format_ruleset,
    explain=_explain_nft,
    base_chains=nft_evaluate.base_chains,
))
