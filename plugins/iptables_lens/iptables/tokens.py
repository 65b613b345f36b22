"""How iptables-restore reads a line: how long it may be, and how it splits into words.

Words are separated by spaces and tabs; double quotes group words into one, and a backslash inside quotes
takes the next character literally (`"a \\"b\\""` is the word `a "b"`). A word that holds a quoted part
is `quoted`, so that `"-j"` is text, not an option.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from iptables_lens.errors import DumpError

MAX_LINE_BYTES = 1 << 20
# A line of at most this many characters is surely within MAX_LINE_BYTES: a character is at most 4 bytes of
# UTF-8. Only a longer line needs encoding to be measured.
SURELY_SHORT = MAX_LINE_BYTES // 4

# A token is a run of non-blank, non-quote characters, or such a run followed by a quoted part, which
# ends the token (iptables-restore's add_param_to_argv works the same way).
_TOKEN = re.compile(r'[^ \t"]*"((?:[^"\\]|\\.)*)"|[^ \t"]+')
_UNESCAPE = re.compile(r"\\(.)")


@dataclass(slots=True)
class Token:
    value: str
    column: int  # 1-based
    quoted: bool = False


def tokenize(line: str, source: str = "<string>", lineno: int = 1) -> list[Token]:
    """Split one line into tokens the way iptables-restore does; DumpError on an unterminated quote."""
    tokens: list[Token] = []
    pos = 0
    for m in _TOKEN.finditer(line):
        gap = line[pos : m.start()]
        if '"' in gap:
            break
        pos = m.end()
        text = m.group(0)
        if m.group(1) is not None:
            prefix = text[: text.index('"')]
            inner = m.group(1)
            if "\\" in inner:
                inner = _UNESCAPE.sub(r"\1", inner)
            tokens.append(Token(prefix + inner, m.start() + 1, True))
        else:
            tokens.append(Token(text, m.start() + 1))
    rest = line[pos:]
    if '"' in rest:
        col = pos + rest.index('"') + 1
        raise DumpError(source, lineno, col, "unterminated quote: a '\"' opens text that never closes", line)
    return tokens
