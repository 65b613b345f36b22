"""What the commands draw on a terminal with rich: tables, colours and a progress bar.

Piped output is plain text from `render.text`; these functions only style the same content for a person.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

from iptables_lens.render.text import chain_heading, diff_lines, trace_lines

if TYPE_CHECKING:
    from rich.console import Console

    from iptables_lens.iptables.diff import DumpDiff
    from iptables_lens.render.json import ExplainedSet
    from iptables_lens.render.text import ChainView
    from iptables_lens.trace.packet import Trace


def on_terminal() -> bool:
    """Whether standard output is a terminal (tables and colours) rather than a pipe (plain text)."""
    return sys.stdout.isatty()


def rich_console(stderr: bool = False) -> Console:
    from rich.console import Console

    return Console(stderr=stderr, highlight=False)


def escape(value: str) -> str:
    """`value` shown as it is, even if it looks like rich markup (`[bold]` in a comment)."""
    from rich.markup import escape as escape_markup

    return escape_markup(value)


@contextmanager
def progress_on_stderr(description: str) -> Iterator[None]:
    """A bar on standard error while the block runs, when standard error is a terminal; gone when it ends."""
    if not sys.stderr.isatty():
        yield
        return
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    columns = (TextColumn("{task.description}"), BarColumn(), TimeElapsedColumn())
    with Progress(*columns, transient=True, console=rich_console(stderr=True)) as progress:
        task = progress.add_task(description, total=None)
        yield
        progress.update(task, total=1, completed=1)


def print_explain(views: list[ChainView], sets: list[ExplainedSet] | None = None) -> None:
    """One table per chain: position, what each rule does over its text, and its line in the dump; then an nft
    ruleset's sets and maps, one table each: what each element means over its text, and its Service."""
    from rich.table import Table as RichTable

    console = rich_console()
    for view in views:
        name, what = chain_heading(view)
        title = f"[bold]{escape(name)}[/bold]  [cyan]{escape(what)}[/cyan]"
        table = RichTable(title=title, title_justify="left", show_lines=False, expand=True)
        table.add_column("#", justify="right", style="bold")
        table.add_column("What it does")
        table.add_column("Line", justify="right", style="dim")
        for rule in view.rules:
            table.add_row(str(rule.position), f"{rule.summary}\n[dim]{escape(rule.text)}[/dim]", str(rule.line))
        console.print(table)
        if view.name_explained:
            console.print(f"  [dim]{escape(view.name_explained)}[/dim]")
    for item in sets or []:
        what = f"kube-proxy {item.family}: {item.family_description}" if item.family else ""
        title = (f"[bold]{escape(f'{item.table_family} {item.table} {item.kind} {item.name}')}[/bold]  "
                 f"[cyan]{escape(what)}[/cyan]\n{escape(item.description)}")
        table = RichTable(title=title, title_justify="left", expand=True)
        table.add_column("Element")
        table.add_column("Service", style="bold")
        for element in item.elements:
            table.add_row(f"{escape(element.meaning)}\n[dim]{escape(element.text)}[/dim]", escape(element.service or ""))
        console.print(table)
        if item.name_explained:
            console.print(f"  [dim]{escape(item.name_explained)}[/dim]")


def print_diff(changes: DumpDiff, show_text: bool) -> None:
    """The diff's lines, added in green and removed in red, then the unified diff highlighted if asked."""
    console = rich_console()
    for line in diff_lines(changes):
        style = "green" if line.startswith("  +") else "red" if line.startswith("  -") else "bold"
        console.print(escape(line), style=style)
    if show_text:
        from rich.syntax import Syntax

        console.print(Syntax(changes.textual(), "diff", background_color="default"))


def print_trace(result: Trace) -> None:
    """The trace's lines, with the outcomes in bold and the hooks of the path in a column of their own."""
    console = rich_console()
    for line in trace_lines(result):
        if line.startswith("outcome "):
            console.print(escape(line), style="bold")
        elif line.startswith("  ") and line[2:3].isupper() and not line.startswith(("  delivery", "  branch")):
            hook, _, rest = line[2:].partition(" ")
            console.print(f"  [cyan]{hook:<11}[/cyan] {escape(rest.strip())}")
        else:
            console.print(escape(line))
