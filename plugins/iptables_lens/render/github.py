"""Problems as GitHub workflow commands, so a pull request shows each one on the line it is about.

The escaping follows the runner's own (`@actions/core`, `command.ts`): in the message `%`, CR and LF are
percent-encoded; in a property value `:` and `,` are too.

>>> print(annotation(DumpError("dumps/x/scenario.yaml", 3, 5, "services[0].name: unknown key")))
::error file=dumps/x/scenario.yaml,line=3,col=5,title=iptables-lens validate::services[0].name: unknown key
"""

from __future__ import annotations

from iptables_lens.errors import DumpError


def _data(text: str) -> str:
    return text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def _property(text: str) -> str:
    return _data(text).replace(":", "%3A").replace(",", "%2C")


def annotation(problem: DumpError, title: str = "iptables-lens validate") -> str:
    """An `::error` command for one problem: on its file, and on its line and column when it has them."""
    where = [f"file={_property(problem.source)}"]
    if problem.line:
        where += [f"line={problem.line}", f"col={problem.column}"]
    where.append(f"title={_property(title)}")
    return f"::error {','.join(where)}::{_data(problem.message)}"
