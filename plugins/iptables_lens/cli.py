"""The `iptables-lens` command: thin glue from arguments to the core, and exit codes.

Exit codes: 0 success, 1 invalid input (the errors are on stderr), 2 usage error.
"""

from __future__ import annotations

import sys

import click

from .errors import DumpError
from .fmt import format_dump
from .parse import parse_file

EXIT_INVALID = 1


def _fail(error: DumpError) -> None:
    click.echo(f"error: {error}", err=True)


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(package_name="iptables-lens")
def main() -> None:
    """Explain, trace and diff kube-proxy's iptables-save dumps.

    Exit status: 0 success, 1 invalid input, 2 usage error.
    """


@main.command()
@click.argument("files", nargs=-1, required=True, type=click.Path(dir_okay=False, allow_dash=True))
def check(files: tuple[str, ...]) -> None:
    """Parse and check each dump; print one summary line per file.

    FILE may be - to read standard input.

    \b
    Example:
      iptables-lens check dumps/kind-nodeport/worker-1-after.rules
      iptables-save | iptables-lens check -
    """
    failed = False
    for path in files:
        try:
            dump = parse_file(path)
        except DumpError as error:
            _fail(error)
            failed = True
            continue
        tables, chains, rules = dump.summary()
        click.echo(f"{dump.source}: ok: {tables} tables, {chains} chains, {rules} rules")
    if failed:
        sys.exit(EXIT_INVALID)


@main.command()
@click.argument("file", type=click.Path(dir_okay=False, allow_dash=True))
def fmt(file: str) -> None:
    """Print a dump as canonical iptables-save text.

    \b
    Example:
      iptables-lens fmt dumps/kind-nodeport/worker-1-after.rules
    """
    try:
        dump = parse_file(file)
    except DumpError as error:
        _fail(error)
        sys.exit(EXIT_INVALID)
    click.echo(format_dump(dump), nl=False)


if __name__ == "__main__":  # pragma: no cover
    main()
