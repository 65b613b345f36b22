"""How a line of an nft listing splits into tokens, and the cursor the grammar reads them with.

A token is a quoted string (`"eth0"`, its text without the quotes: nft strings hold no double quote), one of
the punctuation marks `{ } ( ) , ;`, or a word: any other run of non-blank characters (`10.0.0.1:80`,
`@cluster-ips`, `!=`, `service-ULMVA6XW-ns1/svc1/tcp/p80`). Each token keeps its line and columns, so that a
mistake is reported where it is, and so that the grammar can tell `established,related` (one flag list: the
comma touches both words) from `{ 22, 80 }` (two elements).
"""

from __future__ import annotations

import re

from iptables_lens.errors import DumpError

# kind: "q" quoted string, "p" punctuation, "w" word, "#" a comment to the end of the line.
_TOKEN = re.compile(r'"([^"]*)"|([{}(),;])|(#.*)|([^\s{}(),;"#][^\s{}(),;"]*)|(")')
_KINDS = (None, "q", "p", "#", "w", '"')
# What nft reads as a name without quotes (its scanner's `string`): a letter, `_` or `.`, then letters,
# digits, `/`, `-`, `_` and `.`.
NAME = r"[A-Za-z_.][A-Za-z0-9/_.-]*"
_NAME = re.compile(NAME)


class Token:
    """One token: its kind ("q", "p", "w" or "#"), its text, its line, and its 1-based columns [column, end)."""

    __slots__ = ("kind", "text", "line", "column", "end")

    def __init__(self, kind: str, text: str, line: int, column: int, end: int):
        self.kind, self.text, self.line, self.column, self.end = kind, text, line, column, end

    def __repr__(self) -> str:
        return f"Token({self.kind!r}, {self.text!r}, {self.line}:{self.column})"


def tokenize(line: str, lineno: int, source: str) -> list[Token]:
    """The tokens of one line; DumpError at a double quote that opens a string the line never closes."""
    tokens = []
    for match in _TOKEN.finditer(line):
        kind = _KINDS[match.lastindex or 0]
        if kind == '"':
            raise DumpError(source, lineno, match.start() + 1,
                            "unterminated string: a '\"' opens text that the line never closes", line)
        assert kind is not None
        text = match.group(match.lastindex or 0)
        tokens.append(Token(kind, text, lineno, match.start() + 1, match.end() + 1))
    return tokens


class Cursor:
    """The tokens of one statement list (a rule, a declaration, an `elements = { ... }` spanning lines), read
    left to right. `error` makes the DumpError for a token, with its line's text."""

    __slots__ = ("tokens", "pos", "source", "lines", "end_line", "end_column")

    def __init__(self, tokens: list[Token], source: str, lines: list[str], end_line: int, end_column: int):
        self.tokens = tokens
        self.pos = 0
        self.source = source
        self.lines = lines
        self.end_line, self.end_column = end_line, end_column

    def peek(self, ahead: int = 0) -> Token | None:
        index = self.pos + ahead
        return self.tokens[index] if index < len(self.tokens) else None

    def word(self, ahead: int = 0) -> str | None:
        """The text of a word or punctuation mark `ahead` tokens on (not of a quoted string), or None."""
        index = self.pos + ahead
        if index < len(self.tokens):
            token = self.tokens[index]
            if token.kind != "q":
                return token.text
        return None

    def at_end(self) -> bool:
        return self.pos >= len(self.tokens)

    def take(self, what: str) -> Token:
        """The next token; a DumpError saying `what` was expected if there is none."""
        if self.pos >= len(self.tokens):
            raise self.error(None, f"expected {what}, but the line ends")
        token = self.tokens[self.pos]
        self.pos += 1
        return token

    def take_word(self, what: str) -> Token:
        token = self.take(what)
        if token.kind != "w":
            raise self.error(token, f"expected {what}, got {_shown(token)}")
        return token

    def expect(self, text: str, what: str | None = None) -> Token:
        """The next token, which must be the word or mark `text`."""
        token = self.take(what or repr(text))
        if token.text != text or token.kind == "q":
            raise self.error(token, f"expected {what or repr(text)}, got {_shown(token)}")
        return token

    def accept(self, text: str) -> bool:
        """Whether the next token is the word or mark `text`; it is consumed if so."""
        if self.pos < len(self.tokens):
            token = self.tokens[self.pos]
            if token.text == text and token.kind != "q":
                self.pos += 1
                return True
        return False

    def touching(self) -> bool:
        """Whether the next token starts where the previous one ends (`a,b`, `"10:00"-"12:00"`)."""
        if 0 < self.pos < len(self.tokens):
            before, token = self.tokens[self.pos - 1], self.tokens[self.pos]
            return before.line == token.line and before.end == token.column
        return False

    def name(self, what: str, prefix: str = "") -> str:
        """The next token as a name (a table's, chain's, set's...): a word nft reads unquoted, after
        `prefix` (`@` for a set), or a quoted string."""
        token = self.take(what)
        if token.kind == "q" and not prefix:
            return token.text
        text = token.text
        if token.kind != "w" or not text.startswith(prefix) or not _NAME.fullmatch(text[len(prefix):]):
            raise self.error(token, f"expected {what}, got {_shown(token)} (an unquoted name is a letter, _ or ., "
                             "then letters, digits, /, -, _ and .)")
        return text[len(prefix):]

    def quoted(self, what: str) -> str:
        """The text of the next token, which must be a string in double quotes (`what` it is, for the error)."""
        token = self.take(f"{what}, in double quotes")
        if token.kind != "q":
            raise self.error(token, f"expected {what} in double quotes, got {_shown(token)}")
        return token.text

    def joined_comma(self) -> bool:
        """Whether the next token is a comma touching the tokens on both sides (`established,related`)."""
        index = self.pos
        tokens = self.tokens
        if not (0 < index < len(tokens) - 1):
            return False
        before, comma, after = tokens[index - 1], tokens[index], tokens[index + 1]
        return (comma.kind == "p" and comma.text == "," and before.line == comma.line == after.line
                and before.end == comma.column and comma.end == after.column)

    def error(self, token: Token | None, message: str) -> DumpError:
        """A DumpError at `token` (None: at the end of the statement)."""
        if token is None:
            line, column = self.end_line, self.end_column
        else:
            line, column = token.line, token.column
        text = self.lines[line - 1] if 0 < line <= len(self.lines) else ""
        return DumpError(self.source, line, column, message, text)


def _shown(token: Token) -> str:
    if token.kind == "q":
        return f'the string "{token.text}"'
    if token.kind == "#":
        return "a comment"
    return repr(token.text)


def shown(token: Token | None) -> str:
    """How a message names a token: `'accept'`, `the string "eth0"`, or the end of the line."""
    return "the end of the line" if token is None else _shown(token)
