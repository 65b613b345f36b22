"""`--dialect` on every command that reads dumps: detection from the content by default (iptables-save text,
`nft list ruleset` text, `nft -j list ruleset` JSON), the override and usage errors."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from iptables_lens.cli import main
from iptables_lens.netns import can_run_kernel_lab

from tests.conftest import REPO_ROOT, SEED

IPTABLES = SEED / "worker-1-after.rules"
NFT_TEXT = REPO_ROOT / "tests" / "data" / "nft" / "listed" / "kube-proxy-overall.alist"
NFT_JSON = REPO_ROOT / "tests" / "data" / "nft" / "listed" / "kube-proxy-overall.json"
DUMPS = {"iptables": IPTABLES, "nft text": NFT_TEXT, "nft json": NFT_JSON}
DIALECT_OF = {"iptables": "iptables", "nft text": "nft", "nft json": "nft"}


def argv(command: str, dump: Path, tmp_path: Path) -> list[str]:
    """The command line of `command` reading `dump` (twice for diff), with what else it requires."""
    args = {
        "check": [str(dump)],
        "fmt": [str(dump)],
        "explain": [str(dump)],
        "diff": [str(dump), str(dump)],
        "render": [str(dump), "-o", str(tmp_path / "pages")],
        "trace": [str(dump), "--src", "172.20.0.100", "--dst", "172.20.0.2", "--dport", "30080",
                  "--local-ip", "172.20.0.2"],
        "scrub": [str(dump), "-o", "-", "--key", "k"],
    }[command]
    return [command, *args]


COMMANDS = ("check", "fmt", "explain", "diff", "render", "trace", "scrub")


def invoke(args: list[str]) -> Result:
    return CliRunner().invoke(main, args)


@pytest.mark.parametrize("kind", DUMPS)
@pytest.mark.parametrize("command", COMMANDS)
def test_a_command_detects_the_dialect_from_the_content(command, kind, tmp_path):
    result = invoke(argv(command, DUMPS[kind], tmp_path))
    assert "Traceback" not in result.output
    assert result.exit_code == 0, result.output


@pytest.mark.parametrize("kind", DUMPS)
@pytest.mark.parametrize("command", COMMANDS)
def test_naming_the_dialect_the_content_has_changes_nothing(command, kind, tmp_path):
    detected = invoke(argv(command, DUMPS[kind], tmp_path / "detected"))
    named = invoke([*argv(command, DUMPS[kind], tmp_path / "named"), "--dialect", DIALECT_OF[kind]])
    assert (named.exit_code, named.output.replace("named", "detected")) == (detected.exit_code, detected.output)


@pytest.mark.parametrize("command", COMMANDS)
def test_dialect_nft_reads_iptables_save_text_as_a_listing_and_says_where_it_is_not_one(command, tmp_path):
    result = invoke([*argv(command, IPTABLES, tmp_path), "--dialect", "nft"])
    assert result.exit_code == 1 and isinstance(result.exception, SystemExit)
    assert f"{IPTABLES}:2:1: expected 'table FAMILY NAME {{' (as nft list ruleset prints), got '*mangle'" \
        in result.output


@pytest.mark.parametrize("kind", ["nft text", "nft json"])
@pytest.mark.parametrize("command", COMMANDS)
def test_dialect_iptables_reads_an_nft_listing_as_iptables_save_text(command, kind, tmp_path):
    result = invoke([*argv(command, DUMPS[kind], tmp_path), "--dialect", "iptables"])
    assert result.exit_code == 1 and isinstance(result.exception, SystemExit)
    assert f"{DUMPS[kind]}:1:1: " in result.output
    assert "expected '*TABLE'" in result.output


@pytest.mark.parametrize("command", COMMANDS)
def test_an_unknown_dialect_is_a_usage_error(command, tmp_path):
    result = invoke([*argv(command, IPTABLES, tmp_path), "--dialect", "pf"])
    assert result.exit_code == 2
    assert "Invalid value for '--dialect': 'pf' is not one of 'iptables', 'nft'" in result.output


def test_the_override_reads_a_listing_whose_first_lines_detection_cannot_see_past(tmp_path):
    # Detection reads the first 64 KiB: a listing after longer header comments looks like nothing known.
    path = tmp_path / "commented.nft"
    path.write_text("# saved by a node's backup job\n" * 3000 + NFT_TEXT.read_text())
    detected = invoke(["check", str(path)])
    assert detected.exit_code == 1 and "expected '*TABLE'" in detected.output
    named = invoke(["check", str(path), "--dialect", "nft"])
    assert named.exit_code == 0 and named.output.startswith(f"{path}: ok: 1 tables,")


def test_check_reads_a_mix_of_dialects_in_one_run():
    result = invoke(["check", str(IPTABLES), str(NFT_TEXT), str(NFT_JSON)])
    assert result.exit_code == 0
    lines = result.output.splitlines()
    assert [line.split(": ok: ")[0] for line in lines] == [str(IPTABLES), str(NFT_TEXT), str(NFT_JSON)]
    # The listing and its JSON are one ruleset.
    assert lines[1].split(": ok: ")[1] == lines[2].split(": ok: ")[1]


def test_the_dialect_applies_to_standard_input():
    result = CliRunner().invoke(main, ["fmt", "-", "--dialect", "nft"], input=NFT_JSON.read_text())
    assert result.exit_code == 0
    assert result.output == invoke(["fmt", str(NFT_JSON)]).output


def test_a_scenario_folder_takes_no_dialect(tmp_path):
    result = invoke(["scrub", str(SEED), "-o", str(tmp_path / "out"), "--dialect", "nft"])
    assert result.exit_code == 2
    assert "--dialect and --family are for one dump" in result.output
    assert not (tmp_path / "out").exists()


def test_every_command_that_reads_a_dump_documents_the_option():
    for command in COMMANDS:
        result = invoke([command, "--help"])
        assert "--dialect [iptables|nft]" in result.output, command


def nft_scenario(tmp_path: Path) -> Path:
    """The seed scenario with one of its dumps replaced by an nft listing."""
    folder = tmp_path / "nft-scenario"
    folder.mkdir()
    for path in SEED.iterdir():
        if path.is_file():
            (folder / path.name).write_bytes(path.read_bytes())
    (folder / IPTABLES.name).write_bytes(NFT_TEXT.read_bytes())
    return folder


def test_validate_says_an_nft_ruleset_in_an_iptables_mode_scenario_disagrees_with_its_proxy_mode(tmp_path):
    folder = nft_scenario(tmp_path)
    result = invoke(["validate", "--no-kernel", str(folder)])
    assert result.exit_code == 1 and isinstance(result.exception, SystemExit)
    (line,) = [line for line in result.output.splitlines() if line.startswith("error: ")]
    metadata = (folder / "scenario.yaml").read_text().splitlines()
    number = next(n for n, text in enumerate(metadata, 1) if text.strip() == f"- file: {IPTABLES.name}")
    assert line.startswith(f"error: {folder}/scenario.yaml:{number}:")
    assert line.endswith(f"{IPTABLES.name} holds nft rules, but cluster.proxy_mode is iptables, whose nodes' rules are iptables-save dumps (.rules)")


@pytest.mark.kernel
@pytest.mark.skipif(can_run_kernel_lab() is not None, reason=str(can_run_kernel_lab()))
def test_validate_does_not_hand_an_nft_ruleset_to_iptables_restore(tmp_path):
    from iptables_lens.scenario.validate import validate_scenario

    # The kernel is asked about the iptables-save dumps only: they are all sound, the nft one is named once.
    problems = validate_scenario(nft_scenario(tmp_path), kernel=True)
    assert len(problems) == 1 and f"{IPTABLES.name} holds nft rules, but cluster.proxy_mode is iptables, whose nodes' rules are iptables-save dumps (.rules)" in problems[0].message


def test_scrub_of_a_scenario_whose_ruleset_disagrees_with_its_proxy_mode_says_so(tmp_path):
    result = invoke(["scrub", str(nft_scenario(tmp_path)), "-o", str(tmp_path / "out")])
    assert result.exit_code == 1 and "holds nft rules, but cluster.proxy_mode is iptables, whose nodes' rules are iptables-save dumps (.rules)" in result.output
    assert not (tmp_path / "out").exists()
