"""Text from a dump made safe in Markdown and HTML: every page's one way of writing free text (comments,
names, rules) so that nothing in it is read as markup.

>>> code("a|b <c>")
'<code>a&#124;b &#60;c&#62;</code>'
"""

from __future__ import annotations

import re

_MARKDOWN_SPECIAL = re.compile(r"[&<>\"'`*_\[\]|\\#~!{}()+]")


def text(value: str) -> str:
    """`value` as literal text in Markdown (tables included): special characters become HTML entities."""
    return _MARKDOWN_SPECIAL.sub(lambda m: f"&#{ord(m.group(0))};", value)


def code(value: str) -> str:
    """`value` as inline code, literal in Markdown and in HTML."""
    return f"<code>{text(value)}</code>"


def indent(block: str, spaces: int = 4) -> str:
    pad = " " * spaces
    return "\n".join(pad + line if line.strip() else "" for line in block.splitlines())
