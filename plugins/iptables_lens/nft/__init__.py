"""The nftables dialect: `nft list ruleset` text and `nft -j list ruleset` JSON, read into one model.

`parse_ruleset(text)` reads either (JSON when the text starts with `{`), `format_ruleset(ruleset)` prints the
text listing back. `looks_like_nft(head)` tells such text from the start of a file.

>>> ruleset = parse_ruleset('table ip t {\\n\\tchain c {\\n\\t\\tjump d\\n\\t}\\n\\n\\tchain d {\\n\\t}\\n}\\n')
>>> ruleset.summary(), format_ruleset(ruleset).splitlines()[2]
((1, 2, 1), '\\t\\tjump d')
"""

from __future__ import annotations

import re
from pathlib import Path

from iptables_lens.nft.fmt import format_ruleset
from iptables_lens.nft.jsonread import parse_json
from iptables_lens.nft.model import Ruleset
from iptables_lens.nft.parse import parse
from iptables_lens.source import decode, read_bytes, source_name

_JSON_START = re.compile(r'\s*\{\s*"nftables"\s*:')

__all__ = ["Ruleset", "format_ruleset", "looks_like_nft", "parse_ruleset", "parse_ruleset_file"]


def looks_like_nft(head: str) -> bool:
    """Whether text starting with `head` is an nft listing (its first line that is not blank or a comment
    starts with `table `) or nft's JSON (`{"nftables": ...`)."""
    if _JSON_START.match(head):
        return True
    for line in head.splitlines():
        stripped = line.strip()
        if stripped and not stripped.startswith("#"):
            return stripped.startswith("table ")
    return False


def parse_ruleset(text: str | bytes, source: str = "<string>", *, family: int | None = None) -> Ruleset:
    """A listing or its JSON as a Ruleset; DumpError with the position of the first problem. `family` is
    ignored: an nft table names its own."""
    if isinstance(text, bytes):
        text = decode(text, source)
    if text.lstrip()[:1] == "{":
        return parse_json(text, source)
    return parse(text, source)


def parse_ruleset_file(path: str | Path, source: str | None = None, *, family: int | None = None) -> Ruleset:
    """`parse_ruleset` of a file (`-`: standard input); DumpError naming it if it cannot be read."""
    name = source_name(path, source)
    return parse_ruleset(read_bytes(path, source or str(path)), name)
