"""Sybil set-up shared by the hand-written pages and the generated ones.

Python blocks (plain code, `>>>` doctests, and `<!-- invisible-code-block: python -->` set-up blocks) run in
one namespace per page. A `console` block runs each `$ iptables-lens ...` command in a shell from the repository
root and compares what it prints (stdout, then stderr) with the lines that follow it in the block. A
non-zero exit status is printed as a last line `[exit status N]`, so a page that shows an error shows the
status too. Commands that do not start with `iptables-lens` (kubectl, iptables-save) are shown, not run.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from sybil import Example, Sybil
from sybil.parsers.markdown import CodeBlockParser, PythonCodeBlockParser, SkipParser

REPO_ROOT = Path(__file__).resolve().parent.parent
PROMPT = "$ "


def split_console(text: str) -> list[tuple[str, list[str]]]:
    """[(command, expected output lines)] for each `$ ` prompt in a console block."""
    commands: list[tuple[str, list[str]]] = []
    for line in text.splitlines():
        if line.startswith(PROMPT):
            commands.append((line[len(PROMPT):], []))
        elif commands:
            commands[-1][1].append(line)
    return commands


def _normalise(lines: list[str]) -> list[str]:
    out = [line.rstrip() for line in lines]
    while out and not out[-1]:
        out.pop()
    return out


def run_console_command(command: str) -> list[str]:
    # The console script installed beside this interpreter comes first, so a page runs the code under test.
    path = os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])
    env = dict(os.environ, PATH=path, COLUMNS="100", NO_COLOR="1", TERM="dumb")
    proc = subprocess.run(
        ["bash", "-o", "pipefail", "-c", command], cwd=REPO_ROOT, env=env, capture_output=True, text=True,
        timeout=300,
    )
    lines = proc.stdout.splitlines() + proc.stderr.splitlines()
    if proc.returncode:
        lines.append(f"[exit status {proc.returncode}]")
    return _normalise(lines)


def evaluate_console(example: Example) -> str | None:
    for command, expected in split_console(str(example.parsed)):
        if not command.startswith("iptables-lens"):
            continue
        actual = run_console_command(command)
        want = _normalise(expected)
        if actual != want:
            return (
                f"`{command}` printed:\n" + "\n".join(actual)
                + "\n\nbut the page expects:\n" + "\n".join(want)
            )
    return None


def _run_from_repo_root(namespace: dict) -> None:
    os.chdir(REPO_ROOT)


def page_examples(path: str, patterns: list[str]) -> Sybil:
    return Sybil(
        parsers=[
            PythonCodeBlockParser(),
            CodeBlockParser(language="console", evaluator=evaluate_console),
            SkipParser(),
        ],
        path=str(REPO_ROOT / path),
        patterns=patterns,
        setup=_run_from_repo_root,
    )
