"""A Pygments lexer for iptables-save (and iptables-restore) text, so dumps on the site are highlighted.

Registered as the Pygments plugin `iptables` (aliases `iptables-save`, `iptables-restore`, files `*.rules`).
Every character of the input comes back in some token and none is an error, whatever the input: the text
shown is the dump, whether or not it would load.

>>> from pygments.token import Keyword, Name
>>> tokens = list(IptablesSaveLexer().get_tokens("-A INPUT -j ACCEPT\\n"))
>>> (Keyword, "-A") in tokens, (Name.Class, "INPUT") in tokens, (Keyword.Constant, "ACCEPT") in tokens
(True, True, True)
"""

from __future__ import annotations

from typing import Any, ClassVar

from pygments.lexer import RegexLexer, bygroups
from pygments.token import Comment, Keyword, Name, Number, Operator, Punctuation, String, Text, Whitespace

# Verdicts the kernel knows by name: shown as constants, not as chains to follow.
_VERDICTS = r"(?:ACCEPT|DROP|REJECT|RETURN|QUEUE)"
# Where a word ends in a rule line; a quote also ends it, since iptables-restore starts a quoted part there.
_END = r'(?=[\s"]|$)'
_OCTET = r"(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])"
IPV4 = rf"{_OCTET}(?:\.{_OCTET}){{3}}"
"""An IPv4 address, as a regular expression (the nft lexer's too)."""
_ADDRESS = rf"{IPV4}(?:/(?:{IPV4}|3[0-2]|[12]?[0-9]))?(?![\w.])"
_COMMAND = r"(?:-[AIDRNXFZPE]|--(?:append|insert|delete|replace|new-chain|delete-chain|flush|zero|policy|rename-chain))"
# `[packets:bytes]`, optional before a chain's counters and before a rule (iptables-save -c).
_COUNTERS = r"(\[)(\d+)(:)(\d+)(\])"
_COUNTER_TOKENS = (Punctuation, Number.Integer, Punctuation, Number.Integer, Punctuation)


class IptablesSaveLexer(RegexLexer):
    """Tokens: `# ...` Comment, `*table` Keyword.Namespace, `COMMIT` Keyword, chain names Name.Class, chain
    policies Keyword.Constant, `-A` and the other commands Keyword, options Name.Attribute, `!` Operator,
    match modules Name.Namespace, targets Name.Function (verdicts Keyword.Constant), addresses and numbers
    Number, quoted text String with String.Escape for backslash escapes.

    Leading and trailing newlines are kept (Pygments strips them by default), so the tokens' values put
    together give the input back, as Pygments normalises it: `\\n` line endings and a final newline.
    """

    name = "iptables"
    aliases: ClassVar[list[str]] = ["iptables", "iptables-save", "iptables-restore"]
    filenames: ClassVar[list[str]] = ["*.rules"]
    mimetypes: ClassVar[list[str]] = []
    url = "https://www.netfilter.org/projects/iptables/"

    tokens: ClassVar[dict[str, Any]] = {
        "root": [
            (r"^#[^\n]*", Comment),
            (r"^\*[^\s]*", Keyword.Namespace),
            (
                rf'^(:)([^\s"]+)([ \t]+)(-)(?:([ \t]+){_COUNTERS})?',
                bygroups(Punctuation, Name.Class, Whitespace, Punctuation, Whitespace, *_COUNTER_TOKENS),
            ),
            (
                rf'^(:)([^\s"]+)([ \t]+)([^\s"]+)(?:([ \t]+){_COUNTERS})?',
                bygroups(Punctuation, Name.Class, Whitespace, Keyword.Constant, Whitespace, *_COUNTER_TOKENS),
            ),
            (r"^COMMIT(?=\s|$)", Keyword),
            (
                rf'^(?:{_COUNTERS}([ \t]+))?({_COMMAND})(?:([ \t]+)([^\s"-][^\s"]*))?(?=\s|$)',
                bygroups(*_COUNTER_TOKENS, Whitespace, Keyword, Whitespace, Name.Class),
                "rule",
            ),
            (r"\n", Whitespace),
            (r"[^\S\n]+", Whitespace),
            (r"[^\n]+", Text),
        ],
        "rule": [
            (r"\n", Whitespace, "#pop"),
            (r"[^\S\n]+", Whitespace),
            (r'"', String.Double, "string"),
            (r"!" + _END, Operator),
            (
                rf"(-j|--jump|-g|--goto)([ \t]+)({_VERDICTS}){_END}",
                bygroups(Name.Attribute, Whitespace, Keyword.Constant),
            ),
            (r'(-j|--jump|-g|--goto)([ \t]+)([^\s"]+)', bygroups(Name.Attribute, Whitespace, Name.Function)),
            (r'(-m|--match)([ \t]+)([^\s"]+)', bygroups(Name.Attribute, Whitespace, Name.Namespace)),
            (r"(?<![^\s])--?[A-Za-z][\w-]*" + _END, Name.Attribute),
            (_ADDRESS, Number),
            (r"0[xX][0-9a-fA-F]+", Number.Hex),
            (r"\d+\.\d+", Number.Float),
            (r"\d+", Number.Integer),
            (r"[A-Za-z_][\w.+-]*", Text),
            (r"[,:/=-]", Punctuation),
            (r"[^\s\"]", Text),
        ],
        "string": [
            (r'\\[^\n]', String.Escape),
            (r'[^"\\\n]+', String.Double),
            (r'"', String.Double, "#pop"),
            # A quote left open at the end of the line: iptables-restore refuses it, the lexer shows it.
            (r"\n", Whitespace, "#pop:2"),
            (r"\\", String.Double),
        ],
    }

    def __init__(self, **options: Any) -> None:
        options.setdefault("stripnl", False)
        super().__init__(**options)
