"""Reading the text of a dump, whatever its dialect: a file or standard input, as UTF-8, with a position for
the first byte that is not.

>>> decode(b"*nat\\n\\xff\\n", "x.rules")
Traceback (most recent call last):
...
iptables_lens.errors.DumpError: x.rules:2:1: byte 0xff is not valid UTF-8: dumps are UTF-8 text
    \ufffd
    ^
"""

from __future__ import annotations

import sys
from pathlib import Path

from iptables_lens.errors import DumpError

STDIN = "-"


def read_bytes(path: str | Path, name: str) -> bytes:
    """The bytes of `path` (`-`: standard input); a DumpError naming `name` if it cannot be read."""
    try:
        return sys.stdin.buffer.read() if str(path) == STDIN else Path(path).read_bytes()
    except OSError as exc:
        raise DumpError(name, 0, 0, f"cannot read: {exc.strerror or exc}") from None


def source_name(path: str | Path, source: str | None) -> str:
    """How messages name a dump read from `path`: `source` if given, `<stdin>` for `-`, else the path."""
    if source is not None:
        return source
    return "<stdin>" if str(path) == STDIN else str(path)


def decode(data: bytes, source: str) -> str:
    """`data` as UTF-8 text; a DumpError at the line and column of the first byte that is not UTF-8."""
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        line_start = data.rfind(b"\n", 0, exc.start) + 1
        column = len(data[line_start : exc.start].decode("utf-8", "replace")) + 1
        line_end = data.find(b"\n", exc.start)
        text = data[line_start : None if line_end < 0 else line_end].decode("utf-8", "replace")
        raise DumpError(
            source, line, column, f"byte 0x{data[exc.start]:02x} is not valid UTF-8: dumps are UTF-8 text", text
        ) from None


def split_lines(text: str, source: str) -> tuple[list[str], bool]:
    """The lines of a dump's text, without their line breaks, and whether the text ends with one; a
    DumpError at the first NUL byte (no dump holds one, and the restore commands read lines as C strings)."""
    nul = text.find("\0")
    if nul >= 0:
        nul_line = text.count("\n", 0, nul) + 1
        start = text.rfind("\n", 0, nul) + 1
        end = text.find("\n", nul)
        shown = text[start : None if end < 0 else end].replace("\0", "\\0")
        raise DumpError(source, nul_line, nul - start + 1, "NUL byte in the input: dumps are text", shown)
    lines = text.split("\n")
    terminated = lines[-1] == ""
    if terminated:
        lines.pop()
    return lines, terminated
