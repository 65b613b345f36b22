"""nft scripts (`nft -f` input: `add table ...`, `flush ruleset`, knftables' dump form) are told apart from
listings: one positioned error that says what the file is and how to get a listing, not a parser's
complaint about the first word it did not expect."""

from __future__ import annotations

import pytest
from click.testing import CliRunner
from iptables_lens.cli import main
from iptables_lens.dialects import detect_dialect, nft_command_line, parse_dump, read_dump
from iptables_lens.errors import DumpError
from iptables_lens.kube.cluster_spec import ClusterSpec, mixed_spec
from iptables_lens.kube.synth_nftables import LAYOUTS, synth_nftables

from tests.conftest import REPO_ROOT
from tests.nftcorpus import corpus

SCRIPT = "is an nft script (input for `nft -f`), not a listing"
KUBE_PROXY_TRANSACTIONS = sorted((REPO_ROOT / "tests" / "data" / "kube-proxy-nftables").glob("*.nft"))
LISTING = "table ip t {\n\tchain c {\n\t\tip daddr 10.0.0.1 accept\n\t}\n}\n"


def first_command(text: str) -> tuple[int, str]:
    """The line number and text of the first line of `text` that is neither blank nor a comment."""
    for number, line in enumerate(text.splitlines(), 1):
        if line.strip() and not line.lstrip().startswith("#"):
            return number, line
    raise AssertionError("no command")


def script_error(text: str, source: str = "ruleset.nft") -> DumpError:
    with pytest.raises(DumpError) as caught:
        parse_dump(text, source)
    return caught.value


@pytest.mark.parametrize("layout", LAYOUTS)
def test_what_synth_prints_in_nftables_mode_is_read_as_a_script(layout):
    text = synth_nftables(mixed_spec(5, 2, 0), layout=layout)
    assert detect_dialect(text).name == "nft"
    error = script_error(text)
    number, line = first_command(text)
    assert (error.line, error.column, error.text) == (number, 1, line)
    assert f"`{' '.join(line.split()[:2])}` is an nft command: this {SCRIPT}" in error.message


@pytest.mark.parametrize("path", KUBE_PROXY_TRANSACTIONS, ids=lambda p: p.name)
def test_kube_proxys_expected_transactions_are_scripts_reported_at_their_first_command(path):
    error = pytest.raises(DumpError, read_dump, path).value
    number, line = first_command(path.read_text())
    assert line.startswith("add table ip")
    assert (error.source, error.line, error.column) == (str(path), number, 1)
    assert SCRIPT in error.message
    assert f"nft -f {path}" in error.message and "nft list ruleset" in error.message


@pytest.mark.parametrize("ruleset", [r for r in corpus() if not r.is_listing and r.name.startswith("fw4/")],
                         ids=lambda r: r.name)
def test_a_script_that_starts_like_a_listing_is_reported_at_its_first_command(ruleset):
    # fw4 prints `table inet fw4` and `flush table inet fw4` before the table's block.
    error = pytest.raises(DumpError, read_dump, ruleset.path).value
    lines = ruleset.text.splitlines()
    assert SCRIPT in error.message
    assert nft_command_line(lines[error.line - 1]) and not any(nft_command_line(x) for x in lines[:error.line - 1])


@pytest.mark.parametrize("text, line, command", [
    ("flush ruleset\n" + LISTING, 1, "flush ruleset"),
    (LISTING + "add rule ip t c ip saddr 10.0.0.2 drop\n", 6, "add rule"),
    ("#!/usr/sbin/nft -f\n\ndefine LAN = 10.0.0.0/8\n" + LISTING, 3, "define LAN"),
    ('include "/etc/nftables.d/*.nft"\n', 1, 'include "/etc/nftables.d/*.nft"'),
    ("add element ip t s { 10.0.0.1 }\n", 1, "add element"),
    ("delete chain ip t c\n", 1, "delete chain"),
])
def test_a_command_at_the_start_of_a_line_makes_the_file_a_script(text, line, command):
    error = script_error(text)
    assert (error.line, error.column) == (line, 1)
    assert error.message.startswith(f"`{command}` is an nft command: this {SCRIPT}")


def test_a_set_update_in_a_chain_is_a_rule_not_a_command():
    text = "table ip t {\n\tset s {\n\t\ttype ipv4_addr\n\t\tflags dynamic\n\t}\n\n\tchain c {\n" \
           "\t\tadd @s { ip saddr }\n\t}\n}\n"
    assert parse_dump(text, "listing.nft").summary() == (1, 1, 1)
    error = script_error(text.replace("add @s { ip saddr }", "add @s { ip saddr } bogus"))
    assert error.line == 8 and SCRIPT not in error.message


def test_a_listing_with_a_mistake_keeps_the_parsers_own_error():
    error = script_error(LISTING.replace("accept", "acept"))
    assert error.line == 3 and SCRIPT not in error.message


def test_the_check_command_says_a_script_is_one_and_exits_1(tmp_path):
    path = tmp_path / "kube-proxy.nft"
    path.write_text(synth_nftables(ClusterSpec(services=()), layout=LAYOUTS[0]))
    result = CliRunner().invoke(main, ["check", str(path)])
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert f"{path}:1:1: `add table` is an nft command: this {SCRIPT}" in result.output


def test_a_script_on_standard_input_is_told_to_be_saved_first():
    result = CliRunner().invoke(main, ["fmt", "-"], input="flush ruleset\n" + LISTING)
    assert result.exit_code == 1
    assert "<stdin>:1:1: `flush ruleset` is an nft command" in result.output and "nft -f FILE" in result.output


def test_naming_the_iptables_dialect_reads_a_script_as_iptables_save_text():
    result = CliRunner().invoke(main, ["check", "-", "--dialect", "iptables"], input="flush ruleset\n")
    assert result.exit_code == 1 and "'flush' outside a table" in result.output
