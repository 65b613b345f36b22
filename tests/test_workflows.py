"""The GitHub workflows run what exists, and the test job runs at least what the README's test command runs."""

from __future__ import annotations

import pytest
from iptables_lens.cli import main as cli_main

from tests.workflow_check import (
    REPO_ROOT,
    load_workflow,
    nox_sessions,
    readme_test_command,
    sessions_of,
    sessions_run_on_push,
    workflow_problems,
)

WORKFLOWS = sorted((REPO_ROOT / ".github" / "workflows").glob("*.yml"))
CLI_COMMANDS = set(cli_main.commands)


def test_there_are_workflows():
    assert {p.name for p in WORKFLOWS} >= {"ci.yml", "dumps.yml"}


@pytest.mark.parametrize("path", WORKFLOWS, ids=lambda p: p.name)
def test_every_step_runs_a_nox_session_and_command_that_exist(path):
    assert workflow_problems(load_workflow(path), nox_sessions(), CLI_COMMANDS) == []


def test_the_ci_workflow_runs_every_session_of_the_readme_test_command():
    sessions = nox_sessions()
    wanted = sessions_of(readme_test_command(), sessions)
    assert wanted >= {"tests", "browser", "docs"}
    ci = load_workflow(REPO_ROOT / ".github" / "workflows" / "ci.yml")
    assert sessions_run_on_push(ci, sessions) >= wanted
    assert {"push", "pull_request"} <= set(ci["on"])


def test_a_workflow_naming_a_missing_nox_session_is_caught():
    broken = {"jobs": {"test": {"strategy": {"matrix": {"session": ["tests", "unit-tests"]}}, "steps": [
        {"run": "nox -s ${{ matrix.session }}"},
        {"run": "nox -s typo-check"},
        {"run": "iptables-lens valdate dumps/x"},
    ]}}}
    problems = workflow_problems(broken, nox_sessions(), CLI_COMMANDS)
    assert problems == [
        "job test: runs `nox -s unit-tests`, but noxfile.py has no session 'unit-tests'",
        "job test: runs `nox -s typo-check`, but noxfile.py has no session 'typo-check'",
        "job test: runs `iptables-lens valdate`, which is no iptables-lens command",
    ]


def test_a_test_job_that_runs_less_than_the_readme_is_caught():
    sessions = nox_sessions()
    partial = {"jobs": {"test": {"strategy": {"matrix": {"session": ["tests", "docs"]}},
                                 "steps": [{"run": "nox -s ${{ matrix.session }}"}]}}}
    assert sessions_of(readme_test_command(), sessions) - sessions_run_on_push(partial, sessions) == {"browser"}


def test_session_names_come_from_the_noxfile():
    sessions = nox_sessions()
    assert sessions["tests"].tags == ("test",)
    assert "lint" in sessions and sessions["lint"].tags == ()
