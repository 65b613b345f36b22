"""The `iptables-lens` command as a user runs it: real processes, exit codes, stdout and stderr."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.conftest import REPO_ROOT, SEED_DUMPS


def run(*args: str, stdin: bytes | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "iptables_lens.cli", *args], input=stdin, capture_output=True, cwd=REPO_ROOT,
    )


def test_check_summarises_each_valid_file_and_exits_0():
    proc = run("check", *map(str, SEED_DUMPS))
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.decode().splitlines()
    assert len(lines) == 4
    assert lines[0].endswith("worker-1-after.rules: ok: 3 tables, 47 chains, 73 rules")


def test_check_reads_standard_input_from_dash():
    proc = run("check", "-", stdin=SEED_DUMPS[1].read_bytes())
    assert proc.stdout.decode() == "<stdin>: ok: 3 tables, 43 chains, 62 rules\n"


def test_check_reports_every_bad_file_with_position_and_exits_1(tmp_path):
    bad = tmp_path / "bad.rules"
    bad.write_text("*filter\n:INPUT ACCEPT [0:0]\n-A INPUT -p tcp -m tcp --dport 99999 -j ACCEPT\nCOMMIT\n")
    worse = tmp_path / "worse.rules"
    worse.write_bytes(b"*nat\n:X - [0:0]\n-A X -j NOWHERE\nCOMMIT\n")
    proc = run("check", str(bad), str(SEED_DUMPS[0]), str(worse))
    assert proc.returncode == 1
    err = proc.stderr.decode()
    assert f"{bad}:3:32: --dport: expected a port" in err
    assert f"{worse}:3:9: jump to chain 'NOWHERE'" in err
    assert "Traceback" not in err
    assert "ok: 3 tables" in proc.stdout.decode()


@pytest.mark.parametrize("text", [b"", b"\xff\xfe", b"*filter\n\x00\n", b"garbage\n"])
def test_bad_input_never_gives_a_traceback(text):
    proc = run("check", "-", stdin=text)
    assert proc.returncode == 1
    assert b"Traceback" not in proc.stderr and proc.stderr.startswith(b"error: <stdin>:")


def test_a_missing_file_is_reported_by_name_with_exit_1():
    proc = run("check", "no-such-file.rules", str(SEED_DUMPS[0]))
    assert proc.returncode == 1
    assert proc.stderr == b"error: no-such-file.rules: cannot read: No such file or directory\n"


def test_no_arguments_is_a_usage_error():
    assert run("check").returncode == 2


@pytest.mark.parametrize("path", SEED_DUMPS, ids=lambda p: p.name)
def test_fmt_prints_the_canonical_text(path):
    proc = run("fmt", str(path))
    assert proc.returncode == 0
    assert proc.stdout == path.read_bytes()


def test_fmt_canonicalises_restore_input():
    text = b'*filter\n:INPUT ACCEPT [0:0]\n-A INPUT --protocol tcp --source 10.0.0.1 -m comment --comment plain -j ACCEPT\nCOMMIT\n'
    proc = run("fmt", "-", stdin=text)
    assert proc.stdout.decode().splitlines()[4] == "-A INPUT -s 10.0.0.1 -p tcp -m comment --comment plain -j ACCEPT"


def test_trace_json_follows_the_documented_contract():
    import json

    proc = run("trace", str(SEED_DUMPS[0]), "--src", "172.20.0.100", "--dst", "172.20.0.2", "--dport", "30080",
               "--local-ip", "172.20.0.2", "--json")
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    assert data["origin"] == "external"
    outcomes = data["outcomes"]
    assert sorted((o["probability"], o["dnat"]) for o in outcomes) == [("1/2", "10.244.1.2:80"), ("1/2", "10.244.2.2:80")]
    for outcome in outcomes:
        assert outcome["verdict"] == "ACCEPT" and outcome["masquerade"] is True and outcome["snat"] == "172.20.0.2"
        for step in outcome["path"]:
            assert set(step) == {"hook", "table", "chain", "rule", "line", "action"}
            assert step["hook"] in {"PREROUTING", "INPUT", "FORWARD", "OUTPUT", "POSTROUTING"}
        policy_steps = [s for s in outcome["path"] if s["action"].startswith("policy")]
        assert policy_steps and all(s["rule"] is None for s in policy_steps)


def test_trace_origin_defaults_to_local_when_the_source_is_a_local_ip():
    import json

    proc = run("trace", str(SEED_DUMPS[0]), "--src", "172.20.0.2", "--dst", "172.20.0.2", "--dport", "30080",
               "--local-ip", "172.20.0.2", "--json")
    data = json.loads(proc.stdout)
    assert data["origin"] == "local"
    assert all(o["path"][0]["hook"] == "OUTPUT" for o in data["outcomes"])


def test_trace_rejects_a_bad_address_as_a_usage_error():
    proc = run("trace", str(SEED_DUMPS[0]), "--src", "300.1.1.1", "--dst", "172.20.0.2", "--dport", "80")
    assert proc.returncode == 2 and b"'300.1.1.1' is not an IPv4 or IPv6 address" in proc.stderr


def test_trace_names_the_bad_address_among_several_local_ips():
    proc = run("trace", str(SEED_DUMPS[0]), "--src", "172.20.0.100", "--dst", "172.20.0.2", "--dport", "80",
               "--local-ip", "172.20.0.2", "--local-ip", "fc00::zz")
    assert proc.returncode == 2 and b"'fc00::zz' is not an IPv4 or IPv6 address" in proc.stderr
    assert b"(" not in proc.stderr.split(b"Invalid value")[1]  # the address, not a Python tuple


def test_trace_takes_local_ips_of_both_families_and_uses_those_of_the_packets_family():
    proc = run("trace", str(SEED_DUMPS[0]), "--src", "172.20.0.100", "--dst", "172.20.0.2", "--dport", "30080",
               "--local-ip", "::1", "--local-ip", "fc00:f853:ccd:e793::2", "--local-ip", "172.20.0.2", "--json")
    assert proc.returncode == 0, proc.stderr
    assert b"INPUT" not in proc.stdout and b"FORWARD" in proc.stdout


def test_trace_refuses_a_source_and_destination_of_different_families():
    proc = run("trace", str(SEED_DUMPS[0]), "--src", "fc00::100", "--dst", "172.20.0.2", "--dport", "80")
    assert proc.returncode == 2 and b"must be addresses of one family" in proc.stderr


def test_trace_refuses_a_packet_of_the_other_family_than_the_dump():
    proc = run("trace", str(SEED_DUMPS[0]), "--src", "fc00::100", "--dst", "fc00::2", "--dport", "30080")
    assert proc.returncode == 2 and b"are IPv6 addresses, but the dump is IPv4" in proc.stderr
    assert b"Traceback" not in proc.stderr


HEADERLESS_IPV6 = (b"*filter\n:INPUT ACCEPT [0:0]\n"
                   b"-A INPUT -p ipv6-icmp -m icmp6 --icmpv6-type echo-request -j ACCEPT\nCOMMIT\n")


def test_family_reads_a_dump_without_header_or_address_as_the_family_it_names():
    as_ipv4 = run("check", "-", stdin=HEADERLESS_IPV6)
    as_ipv6 = run("check", "--family", "6", "-", stdin=HEADERLESS_IPV6)
    assert as_ipv4.returncode == 1 and b"in an IPv4 dump" in as_ipv4.stderr and b"Traceback" not in as_ipv4.stderr
    assert as_ipv6.returncode == 0 and b"ok: 1 tables" in as_ipv6.stdout
    explained = run("explain", "--family", "6", "-", stdin=HEADERLESS_IPV6)
    assert explained.returncode == 0 and b"ICMPv6 echo request" in explained.stdout


def test_family_accepts_only_4_or_6():
    proc = run("check", "--family", "5", "-", stdin=HEADERLESS_IPV6)
    assert proc.returncode == 2 and b"--family" in proc.stderr
