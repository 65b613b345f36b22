"""explain, diff, render, trace, check, fmt and validate from the command line: their text, their JSON (checked
against the documented schemas; tests/test_cli_json.py checks every command's), standard input, exit codes, help,
and the progress bar on a terminal."""

from __future__ import annotations

import json
import os
import pty
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import jsonschema
import pytest
from iptables_lens.kube.synth import nodeport_spec, synth_cluster
from iptables_lens.render.json import output_schema

from tests.conftest import REPO_ROOT, SEED

AFTER = SEED / "worker-1-after.rules"
BEFORE = SEED / "worker-1-before.rules"


def run(*args: str, stdin: bytes | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "iptables_lens.cli", *args], input=stdin, capture_output=True,
                          cwd=REPO_ROOT)


def json_of(command: str, *args: str, stdin: bytes | None = None) -> dict:
    proc = run(command, *args, "--json", stdin=stdin)
    assert proc.returncode in (0, 1), proc.stderr
    data = json.loads(proc.stdout)
    jsonschema.validate(data, output_schema(command))
    return data


def test_explain_reads_standard_input_and_explains_every_rule():
    proc = run("explain", "-", stdin=AFTER.read_bytes())
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout.decode()
    assert "nat KUBE-NODEPORTS (kube-proxy KUBE-NODEPORTS" in out
    assert "#1 line 89: Only TCP to port 30080: jump to KUBE-EXT-OL4YPD43MBS7WVHD." in out
    assert out.count(" line ") == 73  # every rule of the dump, once


def test_explain_for_a_service_shows_only_its_chains_in_path_order():
    proc = run("explain", str(AFTER), "--service", "default/my-nginx-service")
    heads = [line for line in proc.stdout.decode().splitlines() if line and not line.startswith(" ")]
    chains = [h.split(" (")[0] for h in heads]
    assert chains == ["nat PREROUTING", "nat KUBE-SERVICES", "nat KUBE-SVC-OL4YPD43MBS7WVHD", "nat KUBE-MARK-MASQ",
                      "nat KUBE-SEP-ULMINKU752SDK7IQ", "nat KUBE-SEP-S4QGHWZAQRZ7NT5K", "nat KUBE-NODEPORTS",
                      "nat KUBE-EXT-OL4YPD43MBS7WVHD", "nat OUTPUT"]
    assert "kube-dns" not in proc.stdout.decode()


def test_explain_json_follows_its_schema():
    data = json_of("explain", str(AFTER), "--chain", "KUBE-SVC-OL4YPD43MBS7WVHD")
    (chain,) = data["chains"]
    assert chain["family"] == "KUBE-SVC" and chain["name_explained"].endswith("it verifies")
    assert [r["summary"] for r in chain["rules"]][1] == "Picks this branch with probability 1/2: jump to KUBE-SEP-ULMINKU752SDK7IQ."


def test_explain_of_a_service_that_is_not_there_is_invalid_input():
    proc = run("explain", str(AFTER), "--service", "default/nope")
    assert proc.returncode == 1 and b"nothing in it concerns default/nope" in proc.stderr


def test_diff_groups_by_service_and_folds_noise():
    proc = run("diff", str(BEFORE), "-", stdin=AFTER.read_bytes())
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.decode().splitlines()
    assert "default/my-nginx-service: 4 chain(s) added, 0 removed; 11 rule(s) added, 0 removed" in lines
    assert lines[-1].startswith("noise: 8 difference(s) that mean nothing (counters, docker-dns-ports, timestamps)")
    text = run("diff", str(BEFORE), str(AFTER), "--text").stdout.decode()
    assert "\n+-A KUBE-NODEPORTS -p tcp" in text and "\n--A KUBE-SEP-JUT7YNYSQHXLFUEC" in text


def test_diff_json_follows_its_schema():
    data = json_of("diff", str(BEFORE), str(AFTER))
    services = {s["service"]: s for s in data["services"]}
    assert set(services) == {"default/kubernetes:https", "default/my-nginx-service"}
    assert len(services["default/my-nginx-service"]["rules"]) == 11


def test_diff_refuses_two_standard_inputs():
    assert run("diff", "-", "-").returncode == 2


def test_trace_json_follows_its_schema():
    data = json_of("trace", str(AFTER), "--src", "172.20.0.100", "--dst", "172.20.0.2", "--dport", "30080",
                   "--scenario", str(SEED), "--node", "blog-worker")
    assert [o["probability"] for o in data["outcomes"]] == ["1/2", "1/2"]


def test_check_fmt_and_validate_json_follow_their_schemas(tmp_path):
    bad = tmp_path / "bad.rules"
    bad.write_text("*nat\n-A NOPE -j ACCEPT\nCOMMIT\n")
    data = json_of("check", str(AFTER), str(bad))
    assert [f["ok"] for f in data["files"]] == [True, False]
    assert data["files"][1]["error"].startswith(f"{bad}:2:4:")
    assert json_of("fmt", str(AFTER))["text"] == AFTER.read_text()
    assert json_of("validate", "--no-kernel", str(SEED))["folders"][0]["ok"] is True


def test_render_writes_the_sites_pages_and_a_small_site(tmp_path):
    out = tmp_path / "pages"
    data = json_of("render", str(BEFORE), str(AFTER), "-o", str(out), "--site")
    written = {Path(p).relative_to(out).as_posix() for p in data["written"]}
    assert written == {"docs/index.md", "docs/worker-1-before.md", "docs/worker-1-after.md", "docs/what-changed.md",
                       "site"}
    page = (out / "docs" / "worker-1-after.md").read_text()
    assert 'id="rules-nat-KUBE-NODEPORTS-1"' in page
    assert (out / "site" / "what-changed" / "index.html").is_file()


def test_render_reads_standard_input(tmp_path):
    proc = run("render", "-", "-o", str(tmp_path / "out"), stdin=AFTER.read_bytes())
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "out" / "stdin.md").is_file()


@pytest.mark.parametrize("command", ["check", "fmt", "explain", "diff", "trace", "render", "validate", "scrub",
                                     "lab", "schema"])
def test_every_command_has_help_with_an_example(command):
    proc = run(command, "--help")
    assert proc.returncode == 0
    assert b"Example" in proc.stdout and b"iptables-lens " + command.encode() in proc.stdout


def test_a_big_dump_shows_a_progress_bar_on_a_terminal(tmp_path):
    big = tmp_path / "big.rules"
    big.write_text(synth_cluster(replace(nodeport_spec(2_000, 5), large_cluster_mode=False)))
    assert big.stat().st_size > 4 << 20
    pid, fd = pty.fork()
    if pid == 0:  # the child: the command, on a pseudo-terminal
        os.chdir(REPO_ROOT)
        os.environ["COLUMNS"] = "100"
        os.execv(sys.executable, [sys.executable, "-m", "iptables_lens.cli", "explain", str(big), "--service",
                                  "bench/svc-00042"])
    output = b""
    while True:
        try:
            chunk = os.read(fd, 65536)
        except OSError:
            break
        if not chunk:
            break
        output += chunk
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0, output[-2000:]
    text = output.decode(errors="replace")
    assert "reading big.rules" in text and "━" in text  # the bar, drawn on the terminal
    assert "KUBE-SVC-" in text and "bench/svc-00042" in text  # and then the answer, as a table
    assert "┃" in text or "│" in text
