"""`iptables-lens validate --format github|json`: the same problems as the text format, in the forms a workflow
and a script read."""

from __future__ import annotations

import json
import re

import pytest
from click.testing import CliRunner
from iptables_lens.cli import main
from iptables_lens.errors import DumpError
from iptables_lens.render.github import annotation
from iptables_lens.scenario import validate_scenario

from tests.conftest import SEED
from tests.test_contribute import BREAKAGES, copy_seed

ANNOTATION = re.compile(r"^::error file=(?P<file>[^,]*),line=(?P<line>\d+),col=(?P<col>\d+),"
                        r"title=iptables-lens validate::(?P<message>.*)$")


def run(*args: str):
    return CliRunner().invoke(main, ["validate", "--no-kernel", *args])


@pytest.mark.parametrize("name", BREAKAGES)
def test_github_format_prints_one_annotation_per_problem_at_its_place(tmp_path, name):
    breakage, file_name, fragment = BREAKAGES[name]
    folder = copy_seed(tmp_path)
    breakage(folder)
    expected = validate_scenario(folder)
    result = run("--format", "github", str(folder))
    assert result.exit_code == 1
    found = [ANNOTATION.match(line) for line in result.stdout.splitlines() if line.startswith("::")]
    assert all(found), result.stdout
    assert [(m["file"], int(m["line"]), int(m["col"]), m["message"]) for m in found if m] == [
        (p.source, p.line, p.column, p.message) for p in expected]
    named = [m for m in found if m and fragment in m["message"]]
    assert named and named[0]["file"].endswith(file_name) and int(named[0]["line"]) > 0


def test_github_format_on_a_sound_scenario_prints_no_annotation():
    result = run("--format", "github", str(SEED))
    assert result.exit_code == 0
    assert "::" not in result.stdout and result.stdout.strip() == f"{SEED}: ok"


def test_json_format_is_the_json_flag(tmp_path):
    folder = copy_seed(tmp_path)
    BREAKAGES["wrong node port"][0](folder)
    by_format, by_flag = run("--format", "json", str(folder)), run("--json", str(folder))
    assert by_format.exit_code == by_flag.exit_code == 1
    assert by_format.stdout == by_flag.stdout
    problems = json.loads(by_format.stdout)["folders"][0]["problems"]
    assert any("not 30081" in p["message"] for p in problems)


def test_annotations_escape_what_the_runner_would_read_as_syntax():
    problem = DumpError("dumps/a,b:c/scenario.yaml", 2, 1, "100% wrong\nsecond line: here")
    assert annotation(problem) == ("::error file=dumps/a%2Cb%3Ac/scenario.yaml,line=2,col=1,title=iptables-lens validate"
                                   "::100%25 wrong%0Asecond line: here")


def test_a_problem_without_a_position_is_annotated_on_its_file():
    assert annotation(DumpError("dumps/x", 0, 0, "cannot ask the kernel")) == (
        "::error file=dumps/x,title=iptables-lens validate::cannot ask the kernel")
