"""Every command's `--json` output, as the command prints it, follows the JSON Schema that
`iptables-lens schema --command NAME` prints: on the seed dumps, on a big synthetic dump, and for the lab
(which needs root) on a flow result made by hand."""

from __future__ import annotations

import json
import shutil
from collections import Counter
from fractions import Fraction
from functools import cache
from pathlib import Path

import jsonschema
import pytest
from click.testing import CliRunner, Result
from iptables_lens.cli import main
from iptables_lens.kube.synth import nodeport_spec, synth_cluster
from iptables_lens.render.json import OUTPUTS

from tests.conftest import REPO_ROOT, SEED, SEED_DUMPS

SCENARIOS = sorted(p.parent for p in (REPO_ROOT / "dumps").glob("*/scenario.yaml"))
SERVICE = "default/my-nginx-service"
BIG_SERVICE = "bench/svc-00042"


def invoke(*args: str) -> Result:
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


@cache
def printed_schema(command: str) -> dict:
    """The schema as `iptables-lens schema --command` prints it, checked to be a valid JSON Schema."""
    result = invoke("schema", "--command", command)
    assert result.exit_code == 0, result.output
    schema = json.loads(result.stdout)
    jsonschema.Draft202012Validator.check_schema(schema)
    return schema


def follows_schema(command: str, text: str) -> dict:
    data = json.loads(text)
    jsonschema.Draft202012Validator(printed_schema(command)).validate(data)
    return data


def json_of(command: str, *args: str, exit_code: int = 0) -> dict:
    """The object `iptables-lens COMMAND ARGS --json` prints, once it has been validated against the schema."""
    result = invoke(command, *args, "--json")
    assert result.exit_code == exit_code, result.output
    return follows_schema(command, result.stdout)


@pytest.fixture(scope="module")
def big(tmp_path_factory) -> tuple[Path, Path]:
    """A node of 300 NodePort Services with 3 endpoints each, and the same node one Service earlier."""
    folder = tmp_path_factory.mktemp("big")
    before, after = folder / "big-before.rules", folder / "big-after.rules"
    before.write_text(synth_cluster(nodeport_spec(299, 3)))
    after.write_text(synth_cluster(nodeport_spec(300, 3)))
    return before, after


def test_every_command_with_json_output_has_a_schema():
    assert set(OUTPUTS) == {"check", "fmt", "explain", "diff", "trace", "render", "validate", "lab"}


def test_the_schemas_on_the_docs_page_are_the_commands_schemas():
    page = (REPO_ROOT / "docs" / "your-dumps.md").read_text()
    for command in ("check", "fmt", "explain", "diff", "trace", "render", "validate"):
        assert f"iptables-lens schema --command {command}" in page


# -- the seed dumps -------------------------------------------------------------------------------------------


def test_check_of_the_seed_dumps_and_a_broken_one_follows_its_schema(tmp_path):
    bad = tmp_path / "bad.rules"
    bad.write_text("*nat\n-A NOPE -j ACCEPT\nCOMMIT\n")
    data = json_of("check", *map(str, SEED_DUMPS), str(bad), exit_code=1)
    assert [f["ok"] for f in data["files"]] == [True] * len(SEED_DUMPS) + [False]


@pytest.mark.parametrize("dump", SEED_DUMPS, ids=lambda p: p.name)
def test_fmt_of_a_seed_dump_follows_its_schema(dump):
    assert json_of("fmt", str(dump))["text"] == dump.read_text()


@pytest.mark.parametrize("dump", SEED_DUMPS, ids=lambda p: p.name)
def test_explain_of_a_whole_seed_dump_follows_its_schema(dump):
    data = json_of("explain", str(dump))
    assert sum(len(c["rules"]) for c in data["chains"]) == int(json_of("check", str(dump))["files"][0]["rules"])


@pytest.mark.parametrize("dump", [d for d in SEED_DUMPS if d.name.endswith("-after.rules")], ids=lambda p: p.name)
def test_explain_of_a_service_in_a_seed_dump_follows_its_schema(dump):
    data = json_of("explain", str(dump), "--service", SERVICE)
    assert any(c["chain"].startswith("KUBE-SVC-") for c in data["chains"])


@pytest.mark.parametrize("worker", ["worker-1", "worker-2"])
def test_diff_of_the_seed_dumps_follows_its_schema(worker):
    data = json_of("diff", str(SEED / f"{worker}-before.rules"), str(SEED / f"{worker}-after.rules"))
    assert SERVICE in {s["service"] for s in data["services"]} and data["noise"]


@pytest.mark.parametrize("node", [["--scenario", str(SEED), "--node", "blog-worker"], ["--local-ip", "172.20.0.2"]],
                         ids=["scenario", "local-ip"])
def test_trace_through_a_seed_dump_follows_its_schema(node):
    data = json_of("trace", str(SEED / "worker-1-after.rules"), "--src", "172.20.0.100", "--dst", "172.20.0.2",
                   "--dport", "30080", *node)
    assert sum(Fraction(o["probability"]) for o in data["outcomes"]) == 1


def test_render_of_the_seed_dumps_follows_its_schema(tmp_path):
    data = json_of("render", str(SEED / "worker-1-before.rules"), str(SEED / "worker-1-after.rules"),
                   "-o", str(tmp_path))
    assert all(Path(p).is_file() for p in data["written"])


@pytest.mark.parametrize("folder", SCENARIOS, ids=lambda p: p.name)
def test_validate_of_a_seed_scenario_follows_its_schema(folder):
    assert json_of("validate", "--no-kernel", str(folder))["folders"][0]["ok"] is True


def test_validate_of_a_broken_scenario_follows_its_schema(tmp_path):
    broken = tmp_path / "broken"
    shutil.copytree(SEED, broken)
    (broken / "worker-1-after.rules").write_text("*nat\n-A NOPE -j ACCEPT\nCOMMIT\n")
    (folder,) = json_of("validate", "--no-kernel", str(broken), exit_code=1)["folders"]
    assert folder["ok"] is False and folder["problems"]


# -- a big synthetic dump -------------------------------------------------------------------------------------


def test_check_and_fmt_of_a_big_dump_follow_their_schemas(big):
    _, after = big
    assert json_of("check", str(after))["files"][0]["ok"] is True
    assert json_of("fmt", str(after))["text"] == after.read_text()


def test_explain_of_a_big_dump_follows_its_schema(big):
    _, after = big
    assert len(json_of("explain", str(after))["chains"]) > 1000
    service = json_of("explain", str(after), "--service", BIG_SERVICE)
    assert any(BIG_SERVICE in (r["service"] or "") for c in service["chains"] for r in c["rules"])


def test_diff_of_a_big_dump_follows_its_schema(big):
    before, after = big
    data = json_of("diff", str(before), str(after))
    assert "bench/svc-00299" in {s["service"] for s in data["services"]}


def test_trace_through_a_big_dump_follows_its_schema(big):
    _, after = big
    data = json_of("trace", str(after), "--src", "172.20.0.100", "--dst", "172.20.0.2", "--dport", "30042",
                   "--local-ip", "172.20.0.2")
    assert [o["probability"] for o in data["outcomes"]] == ["1/3"] * 3


def test_render_of_a_big_dump_follows_its_schema(big, tmp_path):
    before, after = big
    assert len(json_of("render", str(before), str(after), "-o", str(tmp_path))["written"]) == 4


def test_validate_of_a_generated_scenario_follows_its_schema(tmp_path):
    folder = tmp_path / "generated"
    assert invoke("synth", "scenario", "nodeport-local", "-o", str(folder)).exit_code == 0
    assert json_of("validate", "--no-kernel", str(folder))["folders"][0]["ok"] is True


# -- the lab, which needs root: its printing, on results made by hand ----------------------------------------


def test_lab_prints_one_line_per_flow_that_follows_its_schema(monkeypatch):
    from iptables_lens import netns
    from iptables_lens.lab import run
    from iptables_lens.lab.kernel_trace import KernelStep
    from iptables_lens.lab.stats import ProportionCheck
    from iptables_lens.scenario import node_context
    from iptables_lens.trace import Packet, trace

    def results(scenario, connections, variant, flows):
        made = []
        for number, flow in enumerate(scenario.meta.flows[:2]):
            prediction = trace(scenario.dump_for(flow.node, "after"),
                               Packet(flow.src, flow.dst, flow.protocol, 40000, flow.dport),
                               node_context(scenario, flow.node))
            step = KernelStep("PREROUTING", "nat", "PREROUTING", 1, "JUMP:KUBE-SERVICES")
            branch = run.Branch(endpoint=prediction.outcomes[0].endpoint, steps=[step], monitor_lines=[],
                                handles={}, skip=frozenset(), matched_outcome=0 if number == 0 else None,
                                problem=None if number == 0 else "the kernel's path differs from the tracer's")
            check = ProportionCheck(str(prediction.outcomes[0].endpoint), prediction.outcomes[0].probability,
                                    190, 400, 0.42, 0.001)
            made.append(run.FlowResult(flow=flow, prediction=prediction, branches=[branch],
                                       counts=Counter({"10.244.2.2:80": 210, "10.244.1.2:80": 190}),
                                       checks=[check], connections=400, conntrack_entries=400))
        return made

    monkeypatch.setattr(netns, "can_run_kernel_lab", lambda: None)
    monkeypatch.setattr(run, "run_lab", results)
    result = invoke("lab", str(SEED), "--json")
    assert result.exit_code == 1, result.output  # the second flow disagrees
    lines = result.stdout.splitlines()
    assert len(lines) == 2
    flows = [follows_schema("lab", line) for line in lines]
    assert [f["ok"] for f in flows] == [True, False]
    assert list(flows[0]["counts"]) == ["10.244.1.2:80", "10.244.2.2:80"]
