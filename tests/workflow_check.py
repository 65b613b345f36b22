"""What the GitHub workflows run, checked against what the project has.

A step that names a nox session or an `iptables-lens` command that does not exist fails only on GitHub, after
a push; these checks find it here. The test job must also run at least what the README's test command runs.
"""

from __future__ import annotations

import ast
import re
import shlex
from dataclasses import dataclass
from pathlib import Path

import yaml

REPO_ROOT = Path(__file__).resolve().parent.parent
_NOX_SESSION = re.compile(r"\bnox\s+-s\s+(\"[^\"]+\"|'[^']+'|\S+)")
_NOX_TAG = re.compile(r"\bnox\s+-t\s+(\S+)")
_CLI_COMMAND = re.compile(r"\biptables-lens\s+([a-z][a-z-]*)")
_EXPRESSION = re.compile(r"\$\{\{\s*matrix\.(\w+)\s*\}\}")


@dataclass(frozen=True)
class NoxSession:
    name: str
    tags: tuple[str, ...]


def nox_sessions(noxfile: Path = REPO_ROOT / "noxfile.py") -> dict[str, NoxSession]:
    """The sessions noxfile.py declares, read from its source (the tests do not install nox)."""
    sessions = {}
    for node in ast.parse(noxfile.read_text()).body:
        if not isinstance(node, ast.FunctionDef):
            continue
        for decorator in node.decorator_list:
            call = decorator if isinstance(decorator, ast.Call) else None
            target = call.func if call else decorator
            if ast.unparse(target) != "nox.session":
                continue
            keywords = {k.arg: ast.literal_eval(k.value) for k in (call.keywords if call else [])}
            name = keywords.get("name", node.name)
            sessions[name] = NoxSession(name, tuple(keywords.get("tags", ())))
    return sessions


def readme_test_command(readme: Path = REPO_ROOT / "README.md") -> str:
    """The line after the `<!-- test-command -->` marker's opening fence, as .ci/run reads it."""
    lines = readme.read_text().splitlines()
    start = lines.index("<!-- test-command -->")
    fence = next(i for i in range(start + 1, len(lines)) if lines[i].startswith("```"))
    return lines[fence + 1]


def sessions_of(command: str, sessions: dict[str, NoxSession]) -> set[str]:
    """The nox sessions a shell command runs (`nox -s NAME`, `nox -t TAG`)."""
    named = {shlex.split(m)[0] for m in _NOX_SESSION.findall(command)}
    for tag in _NOX_TAG.findall(command):
        named |= {s.name for s in sessions.values() if tag in s.tags}
    return named


def _expanded(run: str, job: dict) -> list[str]:
    """A step's script once for each value of each matrix variable it names."""
    matrix = (job.get("strategy") or {}).get("matrix") or {}
    scripts = [run]
    for name in set(_EXPRESSION.findall(run)):
        placeholder = f"${{{{ matrix.{name} }}}}"
        scripts = [s.replace(placeholder, str(value)) for s in scripts for value in matrix.get(name, [])]
    return scripts


def _step_scripts(job: dict) -> list[str]:
    """The run scripts of a job's steps, with the variables their env sets from expressions put in."""
    scripts = []
    for step in job.get("steps", []):
        run = step.get("run")
        if not run:
            continue
        for variable, value in (step.get("env") or {}).items():
            run = run.replace(f'"${variable}"', str(value)).replace(f"${variable}", str(value))
        scripts += _expanded(run, job)
    return scripts


def workflow_problems(workflow: dict, sessions: dict[str, NoxSession], commands: set[str]) -> list[str]:
    """Each nox session or iptables-lens command a workflow's steps name but the project lacks."""
    problems = []
    for job_id, job in (workflow.get("jobs") or {}).items():
        for script in _step_scripts(job):
            for name in sorted(sessions_of(script, {}) - set(sessions)):
                problems.append(f"job {job_id}: runs `nox -s {name}`, but noxfile.py has no session {name!r}")
            for command in sorted(set(_CLI_COMMAND.findall(script)) - commands):
                problems.append(f"job {job_id}: runs `iptables-lens {command}`, which is no iptables-lens command")
    return problems


def sessions_run_on_push(workflow: dict, sessions: dict[str, NoxSession]) -> set[str]:
    """The nox sessions a workflow's jobs run, all jobs together."""
    found: set[str] = set()
    for job in (workflow.get("jobs") or {}).values():
        for script in _step_scripts(job):
            found |= sessions_of(script, sessions)
    return found


def load_workflow(path: Path) -> dict:
    data = yaml.safe_load(path.read_text())
    # YAML 1.1 reads the key `on` as True.
    if True in data:
        data["on"] = data.pop(True)
    return data
