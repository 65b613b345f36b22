"""One reader for each kind of option value, and the parser, explain and the tracer agreeing through it."""

from __future__ import annotations

from fractions import Fraction
from ipaddress import IPv4Address

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st
from iptables_lens import DumpError, parse
from iptables_lens.iptables import values, xtables
from iptables_lens.iptables.explain import explain_rule
from iptables_lens.iptables.fmt import quote
from iptables_lens.iptables.model import BUILTIN_CHAINS
from iptables_lens.iptables.values import U32_MAX, BadValue, Mark


def filter_rule(rule: str) -> str:
    return f"*filter\n:INPUT ACCEPT [0:0]\n-A INPUT {rule}\nCOMMIT\n"


# -- numbers and marks: strtoul with base 0 ------------------------------------------------------------------


@pytest.mark.parametrize(("text", "number"), [
    ("10", 10), ("010", 8), ("0", 0), ("0x1f", 31), ("0X1F", 31), ("+7", 7), (" 7", 7), ("4294967295", U32_MAX),
])
def test_a_number_is_read_as_strtoul_with_base_0_reads_it(text, number):
    assert values.unsigned(text) == number


@pytest.mark.parametrize("text", ["", "08", "0x", "0x1g", "-1", "1 ", "1.5", "²", "٣", "4294967296", "9" * 5000])
def test_a_number_strtoul_would_not_read_in_full_or_out_of_range_is_a_bad_value(text):
    with pytest.raises(BadValue):
        values.unsigned(text)


@pytest.mark.parametrize(("text", "mark"), [
    ("0x4000/0x4000", Mark(0x4000, 0x4000)), ("010", Mark(8, U32_MAX)), ("0x1/0", Mark(1, 0)),
    ("0xffffffff/0xffffffff", Mark(U32_MAX, U32_MAX)),
])
def test_a_mark_is_a_value_and_a_mask_read_as_strtoul_reads_them(text, mark):
    assert values.mark(text) == mark


@pytest.mark.parametrize("text", ["0x1g", "99999999999", "1/", "/1", "1/2/3", "0x100000000", "-1", "1/-1"])
def test_a_mark_iptables_refuses_is_a_bad_value(text):
    with pytest.raises(BadValue):
        values.mark(text)


def test_a_mark_matches_as_the_kernel_tests_it():
    assert values.mark("0x4000/0x4000").matches(0x4001)
    assert not values.mark("0x4000/0x4000").matches(0x0001)


def test_a_mark_in_octal_parses_as_iptables_reads_it():
    """Regression: `--mark 010` made parse() raise a bare ValueError (int("010", 0) refuses it)."""
    dump = parse(filter_rule("-m mark --mark 010 -j ACCEPT"))
    table = dump.table("filter")
    rule = table.chain("INPUT").rules[0]
    assert values.mark(rule.match("mark").option("--mark").value) == Mark(8, U32_MAX)
    assert explain_rule(rule, table).conditions == ("only packets marked 010",)


@pytest.mark.parametrize("bad", ["0x1g", "99999999999"])
def test_a_mark_iptables_refuses_is_a_dump_error_at_the_value(bad):
    text = filter_rule(f"-m mark --mark {bad} -j ACCEPT")
    with pytest.raises(DumpError) as caught:
        parse(text, "node.rules")
    line = text.splitlines()[2]
    assert (caught.value.line, caught.value.column) == (3, line.index(bad) + 1)
    assert caught.value.message.startswith("--mark: ")


def test_check_reports_a_bad_mark_with_its_position_and_no_traceback(tmp_path):
    import subprocess
    import sys

    bad = tmp_path / "bad.rules"
    bad.write_text(filter_rule("-m mark --mark 0x1g -j ACCEPT"))
    proc = subprocess.run([sys.executable, "-m", "iptables_lens.cli", "check", str(bad)], capture_output=True, text=True)
    assert proc.returncode == 1
    assert f"{bad}:3:25: --mark: expected VALUE[/MASK] as numbers" in proc.stderr
    assert "Traceback" not in proc.stderr


# -- probabilities: libxt_statistic keeps lround(2**31 * p) -----------------------------------------------------


@pytest.mark.parametrize(("printed", "kept"), [
    ("0.5", 1 << 30), ("1", 1 << 31), ("0", 0), ("0.33333333349", 715827883), ("0.0000999900", 214727),
    ("0x1p-1", 1 << 30), ("2.3283064365386963e-10", 1),  # half a step rounds away from zero, as lround does
])
def test_the_kernel_keeps_lround_of_two_to_the_31_times_the_probability(printed, kept):
    assert values.statistic_kept(printed) == kept


@pytest.mark.parametrize("printed", ["", "nan", "inf", "1.5", "-0.1", "0.5.", "0,5", "0.1_5", "½"])
def test_a_probability_strtod_would_not_read_or_out_of_0_to_1_is_a_bad_value(printed):
    with pytest.raises(BadValue):
        values.probability(printed)


def test_every_probability_kube_proxy_writes_reads_back_as_one_in_n():
    # kube-proxy writes 1/n with 10 decimals, iptables keeps lround(2**31 * p) and iptables-save prints
    # that with 11: the reader must give 1/n back, whether it reads what was written or what was printed.
    for n in range(1, 20_001):
        written = f"{1 / n:0.10f}"
        printed = f"{values.statistic_kept(written) / 2**31:.11f}"
        assert values.statistic_probability(written) == Fraction(1, n), written
        assert values.statistic_probability(printed) == Fraction(1, n), printed


PROBABILITY_1_IN_10001 = "0.00009999"  # iptables keeps 214727 / 2**31 for it, as for 1/10001


def test_a_probability_of_1_in_10001_reads_as_1_in_10001():
    assert values.statistic_probability(PROBABILITY_1_IN_10001) == Fraction(1, 10001)


def test_explain_reads_a_probability_of_1_in_10001_as_1_in_10001():
    dump = parse(filter_rule(f"-m statistic --mode random --probability {PROBABILITY_1_IN_10001} -j ACCEPT"))
    table = dump.table("filter")
    assert explain_rule(table.chain("INPUT").rules[0], table).conditions == (
        "picks this branch with probability 1/10001",
    )


SPLIT_1_IN_10001 = f"""*nat
:PREROUTING ACCEPT [0:0]
:INPUT ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
:POSTROUTING ACCEPT [0:0]
:KUBE-SERVICES - [0:0]
:KUBE-SVC-AAAAAAAAAAAAAAAA - [0:0]
:KUBE-SEP-AAAAAAAAAAAAAAAA - [0:0]
:KUBE-SEP-BBBBBBBBBBBBBBBB - [0:0]
-A PREROUTING -m comment --comment "kubernetes service portals" -j KUBE-SERVICES
-A KUBE-SERVICES -d 10.96.0.10/32 -p tcp -m comment --comment "default/big:http cluster IP" -m tcp --dport 80 -j KUBE-SVC-AAAAAAAAAAAAAAAA
-A KUBE-SVC-AAAAAAAAAAAAAAAA -m comment --comment "default/big:http -> 10.244.1.2:80" -m statistic --mode random --probability {PROBABILITY_1_IN_10001} -j KUBE-SEP-AAAAAAAAAAAAAAAA
-A KUBE-SVC-AAAAAAAAAAAAAAAA -m comment --comment "default/big:http -> 10.244.2.2:80" -j KUBE-SEP-BBBBBBBBBBBBBBBB
-A KUBE-SEP-AAAAAAAAAAAAAAAA -p tcp -m comment --comment "default/big:http" -m tcp -j DNAT --to-destination 10.244.1.2:80
-A KUBE-SEP-BBBBBBBBBBBBBBBB -p tcp -m comment --comment "default/big:http" -m tcp -j DNAT --to-destination 10.244.2.2:80
COMMIT
"""


def test_the_tracer_reads_a_probability_of_1_in_10001_as_1_in_10001():
    from iptables_lens.trace import IPv4, NodeContext, Packet, trace

    node = NodeContext.simple("node", "192.0.2.10/24", ())
    result = trace(parse(SPLIT_1_IN_10001), Packet(IPv4("192.0.2.50"), IPv4("10.96.0.10"), dport=80), node, "external")
    assert sorted(o.probability for o in result.outcomes) == [Fraction(1, 10001), Fraction(10000, 10001)]


def test_the_service_diagram_reads_a_probability_of_1_in_10001_as_1_in_10001():
    from iptables_lens.render.mermaid import service_graph

    graph = service_graph(parse(SPLIT_1_IN_10001), "default/big:http")
    assert "1/10001" in graph and "10000/10001" in graph


# -- ports -------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("text", "span"), [("80", (80, 80)), ("1000:2000", (1000, 2000)), (":90", (0, 90)),
                                            ("80:", (80, 65535)), (":", (0, 65535)), ("80:80", (80, 80))])
def test_a_port_range_is_low_and_high(text, span):
    assert values.port_range(text) == span


@pytest.mark.parametrize("text", ["", "65536", "0x50", "http", "90:80", "1:2:3", "²", "-1"])
def test_a_port_range_iptables_refuses_or_not_in_decimal_is_a_bad_value(text):
    with pytest.raises(BadValue):
        values.port_range(text)


def test_multiport_counts_a_range_as_two_of_its_fifteen_ports():
    assert values.port_list("1,2,3,4,5,6,7,8,9,10,11,12,13,14,15") == tuple((p, p) for p in range(1, 16))
    with pytest.raises(BadValue):
        values.port_list("1,2,3,4,5,6,7,8,9,10,11,12,13,14,20:30")
    with pytest.raises(BadValue):
        values.port_list("80:80")  # multiport wants LOW below HIGH


def test_a_port_range_that_goes_down_is_a_dump_error():
    with pytest.raises(DumpError, match="is empty"):
        parse(filter_rule("-p tcp -m tcp --dport 90:80 -j ACCEPT"))


# -- addresses -----------------------------------------------------------------------------------------------------


def test_a_prefix_is_read_as_strtoul_reads_it():
    assert values.network("10.0.0.0/010").mask == 0xFF000000
    assert values.network("10.0.0.0/0x10").prefix_length == 16


def test_a_mask_that_is_not_a_prefix_still_matches_as_the_kernel_matches():
    network = values.network("10.0.0.1/255.0.0.255")
    assert network.prefix_length is None
    assert IPv4Address("10.9.9.1") in network and IPv4Address("10.9.9.2") not in network


@pytest.mark.parametrize("text", ["10.0.0.0/33", "10.0.0.0/09", "010.0.0.1", "10.1", "host.example", "10.0.0.0/"])
def test_an_address_outside_what_iptables_save_prints_is_a_bad_value(text):
    with pytest.raises(BadValue):
        values.network(text)


def test_a_nat_range_has_addresses_and_ports():
    assert values.nat_range("10.0.0.1-10.0.0.9:80-90") == (IPv4Address("10.0.0.1"), IPv4Address("10.0.0.9"), (80, 90))
    assert values.nat_range(":8080") == (None, None, (8080, 8080))
    with pytest.raises(BadValue):
        values.nat_range("10.0.0.1:90-80")


# -- every option the parser knows: a model or a DumpError with a position ------------------------------------

# A valid value for each option that a module or target needs one of (xtables.REQUIRED_OPTIONS).
_REQUIRED_SAMPLES = {
    "--comment": "x", "--mark": "1", "--state": "NEW", "--mode": "nth", "--sports": "80", "--dports": "80",
    "--ports": "80", "--source-ports": "80", "--destination-ports": "80", "--src-type": "LOCAL",
    "--dst-type": "LOCAL", "--to-destination": "10.0.0.1", "--to-source": "10.0.0.1", "--set-xmark": "0x1/0x1",
}


def _option_rule(owner: str, option: str, value: str) -> tuple[str, str, str]:
    """(table, chain, rule text) that loads `owner` (a match module, a target or "criterion") with `option`
    given `value`, and whatever else the kernel needs of such a rule."""
    if owner == "criterion":
        return "filter", "INPUT", f"{option} {quote(value)} -j ACCEPT"
    is_target = owner in xtables.TARGET_OPTIONS
    spec = (xtables.TARGET_OPTIONS if is_target else xtables.MATCH_OPTIONS)[owner]
    arity = xtables.arity(spec[option])
    given = " ".join([option] + [quote(value)] * (1 if arity is None else arity))
    required = xtables.REQUIRED_OPTIONS.get(owner, ())
    if required and option not in required:
        given += f" {required[0]} {quote(_REQUIRED_SAMPLES[required[0]])}"
    if is_target:
        table = sorted(xtables.TARGET_TABLES.get(owner, {"filter"}))[0]
        return table, BUILTIN_CHAINS[table][0], f"-p tcp -j {owner} {given}"
    protocols = xtables.MODULE_PROTOCOLS.get(owner)
    protocol = f"-p {sorted(protocols)[0]} " if protocols else ""
    return "filter", "INPUT", f"{protocol}-m {owner} {given} -j ACCEPT"


KNOWN_OPTIONS = sorted(
    [("criterion", flag) for flag in xtables.CRITERION_FLAGS if flag not in ("-f", "--fragment")]
    + [(module, option) for module, options in xtables.MATCH_OPTIONS.items() for option in options]
    + [(target, option) for target, options in xtables.TARGET_OPTIONS.items() for option in options]
)
# Any text, and text shaped like the numbers, ranges, marks and addresses the readers take.
VALUE_TEXT = st.one_of(
    st.text(st.characters(blacklist_categories=("Cs",)), max_size=40),
    st.from_regex(r"[ +\-!]?(0[xX])?[0-9a-fA-F²٣.]{0,22}([:/,.\-][0-9a-fA-F]{0,12}){0,3}", fullmatch=True),
)


@settings(max_examples=1500, deadline=None)
@given(st.sampled_from(KNOWN_OPTIONS), VALUE_TEXT)
@example(("mark", "--mark"), "010")
@example(("mark", "--mark"), "0x1g")
@example(("criterion", "-p"), "²")
@example(("tcp", "--dport"), "9" * 5000)
@example(("LOG", "--log-level"), "²")
def test_any_value_of_any_known_option_gives_a_model_or_a_positioned_dump_error(known, value):
    owner, option = known
    table, chain, rule = _option_rule(owner, option, value)
    text = f"*{table}\n" + "".join(f":{c} ACCEPT [0:0]\n" for c in BUILTIN_CHAINS[table]) + f"-A {chain} {rule}\nCOMMIT\n"
    try:
        dump = parse(text)
    except DumpError as error:
        assert error.line >= 1 and error.column >= 1, error
        with pytest.raises(DumpError) as strict:
            parse(text, fast=False)
        assert (strict.value.line, strict.value.column, strict.value.message) == (error.line, error.column, error.message)
        return
    assert parse(text, fast=False) == dump
    parsed = dump.table(table)
    for parsed_rule in parsed.chain(chain).rules:
        explain_rule(parsed_rule, parsed)  # never raises for a rule the parser accepted
