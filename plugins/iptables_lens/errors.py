"""The one exception type for bad input, with the position of the mistake."""

from __future__ import annotations


class DumpError(ValueError):
    """A mistake in user input (a dump or a scenario file), with where it is.

    `str(error)` is `SOURCE:LINE:COL: message`, then the offending line and a caret under the column,
    the format compilers use, so editors and CI logs can jump to it.
    """

    def __init__(self, source: str, line: int, column: int, message: str, text: str | None = None):
        self.source = source
        self.line = line
        self.column = column
        self.message = message
        self.text = text
        super().__init__(self.__str__())

    def __str__(self) -> str:
        # A problem with the file as a whole (it cannot be read) has no position.
        where = f"{self.source}:{self.line}:{self.column}" if self.line else self.source
        head = f"{where}: {self.message}"
        if self.text is None:
            return head
        shown = self.text if len(self.text) <= 400 else self.text[:400] + "..."
        caret_at = min(self.column, len(shown) + 1)
        # Tabs keep their width under the caret, so it points at the right character.
        pad = "".join("\t" if ch == "\t" else " " for ch in shown[: caret_at - 1])
        return f"{head}\n    {shown}\n    {pad}^"

    def __reduce__(self):  # keeps the error picklable (pytest-xdist, multiprocessing)
        return (type(self), (self.source, self.line, self.column, self.message, self.text))


class DumpErrors(DumpError):
    """Several mistakes found at once (a validation lists them all); behaves as the first for position."""

    def __init__(self, problems: list[DumpError]):
        assert problems, "DumpErrors needs at least one problem"
        self.problems = problems
        first = problems[0]
        super().__init__(first.source, first.line, first.column, first.message, first.text)

    def __str__(self) -> str:
        return "\n".join(DumpError.__str__(p) for p in self.problems)

    def __reduce__(self):
        return (type(self), (self.problems,))
