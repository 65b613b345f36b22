"""The dump model and the strict parser: what they keep, and how they refuse bad input."""

from __future__ import annotations

import pytest
from iptables_lens import DumpError, format_dump, parse, parse_file
from iptables_lens.iptables.tokens import tokenize

from tests.conftest import SEED_DUMPS

TINY = """*filter
:INPUT ACCEPT [0:0]
:FORWARD DROP [5:300]
:OUTPUT ACCEPT [0:0]
:MY-CHAIN - [0:0]
-A INPUT -s 10.0.0.0/8 -p tcp -m tcp --dport 22 -m comment --comment "ssh from inside" -j ACCEPT
-A INPUT -j MY-CHAIN
-A MY-CHAIN ! -i lo -m conntrack ! --ctstate RELATED,ESTABLISHED -j DROP
COMMIT
"""


@pytest.mark.parametrize("path", SEED_DUMPS, ids=lambda p: p.name)
def test_seed_dumps_format_back_byte_for_byte(path):
    data = path.read_bytes()
    assert format_dump(parse(data, str(path))).encode() == data


def test_seed_dump_has_the_tables_chains_and_rules_iptables_would_list():
    dump = parse_file(SEED_DUMPS[0])
    assert [t.name for t in dump.tables] == ["mangle", "filter", "nat"]
    nat = dump.table("nat")
    prerouting = nat.chain("PREROUTING")
    assert prerouting.builtin and prerouting.policy == "ACCEPT"
    assert (prerouting.counters.packets, prerouting.counters.bytes) == (2, 120)
    sep = nat.chain("KUBE-SEP-ULMINKU752SDK7IQ")
    assert not sep.builtin and sep.policy is None
    assert [r.position for r in sep.rules] == [1, 2]
    dnat = sep.rules[1]
    assert dnat.target.name == "DNAT"
    assert dnat.target.option("--to-destination").values == ("10.244.1.2:80",)
    assert dnat.text.startswith("-A KUBE-SEP-ULMINKU752SDK7IQ -p tcp")


def test_a_rule_knows_its_chain_position_line_text_and_parts():
    rule = parse(TINY).table("filter").chain("INPUT").rules[0]
    assert (rule.table, rule.chain, rule.position, rule.line) == ("filter", "INPUT", 1, 6)
    assert rule.text == TINY.splitlines()[5]
    assert [(c.flag, c.value, c.negated) for c in rule.criteria] == [("-s", "10.0.0.0/8", False), ("-p", "tcp", False)]
    assert [m.module for m in rule.matches] == ["tcp", "comment"]
    assert rule.comment == "ssh from inside"
    assert rule.anchor == "filter-INPUT-1"


def test_negation_is_kept_per_criterion_and_per_option():
    rule = parse(TINY).table("filter").chain("MY-CHAIN").rules[0]
    assert rule.criterion("-i").negated
    ctstate = rule.match("conntrack").option("--ctstate")
    assert ctstate.negated and ctstate.values == ("RELATED,ESTABLISHED",)


def test_counters_saved_with_dash_c_are_kept_per_rule():
    text = ("*filter\n:INPUT ACCEPT [10:600]\n:FORWARD ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n"
            "[7:420] -A INPUT -p udp -j ACCEPT\nCOMMIT\n")
    rule = parse(text).table("filter").chain("INPUT").rules[0]
    assert (rule.counters.packets, rule.counters.bytes) == (7, 420)
    assert format_dump(parse(text)) == text


def test_quotes_and_backslash_escapes_are_read_as_iptables_restore_reads_them():
    tokens = tokenize(r'-m comment --comment "say \"hi\" \\ now" x"y z"w')
    assert [t.value for t in tokens] == ["-m", "comment", "--comment", 'say "hi" \\ now', "xy z", "w"]
    assert [t.column for t in tokens][:3] == [1, 4, 12]


def test_free_text_comments_come_back_quoted_as_iptables_save_quotes_them():
    text = ('*filter\n:INPUT ACCEPT [0:0]\n:FORWARD ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n'
            '-A INPUT -m comment --comment "a \\"b\\" c\\\\d" -j ACCEPT\nCOMMIT\n')
    dump = parse(text)
    assert dump.table("filter").chain("INPUT").rules[0].comment == 'a "b" c\\d'
    assert format_dump(dump) == text


def test_insert_places_rules_at_their_position():
    text = ("*filter\n:INPUT ACCEPT [0:0]\n-A INPUT -j ACCEPT\n-I INPUT -p tcp -j DROP\n"
            "-I INPUT 2 -p udp -j DROP\nCOMMIT\n")
    rules = parse(text).table("filter").chain("INPUT").rules
    assert [(r.position, r.line) for r in rules] == [(1, 4), (2, 5), (3, 3)]


def test_new_chain_lines_declare_user_chains():
    text = "*nat\n-N MINE\n-A PREROUTING -j MINE\nCOMMIT\n"
    nat = parse(text).table("nat")
    assert not nat.chain("MINE").builtin
    assert nat.chain("PREROUTING").rules[0].target.name == "MINE"


def test_an_option_after_another_module_belongs_to_the_module_that_knows_it():
    text = '*filter\n:INPUT ACCEPT [0:0]\n-A INPUT -p tcp -m tcp -m comment --comment "x" --dport 80 -j ACCEPT\nCOMMIT\n'
    rule = parse(text).table("filter").chain("INPUT").rules[0]
    assert rule.match("tcp").option("--dport").values == ("80",)
    assert rule.match("comment").option("--dport") is None


def test_an_option_takes_its_argument_even_when_it_starts_with_a_dash():
    text = "*filter\n:INPUT ACCEPT [0:0]\n-A INPUT -m comment --comment -A -j ACCEPT\nCOMMIT\n"
    assert parse(text).table("filter").chain("INPUT").rules[0].comment == "-A"


def test_goto_and_jump_are_told_apart():
    text = "*filter\n:INPUT ACCEPT [0:0]\n:A - [0:0]\n:B - [0:0]\n-A INPUT -g A\n-A INPUT -j B\nCOMMIT\n"
    rules = parse(text).table("filter").chain("INPUT").rules
    assert [(r.target.name, r.target.goto) for r in rules] == [("A", True), ("B", False)]


def test_builtin_chains_exist_even_when_not_declared():
    dump = parse("*raw\n-A PREROUTING -j NOTRACK\nCOMMIT\n")
    raw = dump.table("raw")
    assert [c.name for c in raw.chains] == ["PREROUTING", "OUTPUT"]
    assert raw.chain("OUTPUT").policy == "ACCEPT"
    # ... and print as iptables-save prints a fresh built-in chain.
    assert format_dump(dump) == "*raw\n:PREROUTING ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n-A PREROUTING -j NOTRACK\nCOMMIT\n"


def test_header_and_completed_comments_stay_with_their_table():
    dump = parse_file(SEED_DUMPS[0])
    for table in dump.tables:
        assert table.comments_before[0].startswith("# Generated by iptables-save v1.8.9 (nf_tables)")
        assert table.comments_after[0].startswith("# Completed on")
    assert dump.header.startswith("# Generated by iptables-save")


@pytest.mark.parametrize("path", SEED_DUMPS, ids=lambda p: p.name)
def test_the_fast_path_builds_the_same_model_as_the_full_parser(path):
    text = path.read_text()
    assert parse(text) == parse(text, fast=False)


# Bad input: (text, line, column, what the message says). Each is something a person or a tool really
# gets wrong, and each must point at the offending text.
BAD_INPUTS = {
    "text outside a table": (":INPUT ACCEPT [0:0]\n", 1, 1, "outside a table"),
    "rule in an undeclared chain": ("*filter\n-A NOPE -j ACCEPT\nCOMMIT\n", 2, 4, "does not declare"),
    "jump to a missing chain": ("*filter\n:INPUT ACCEPT [0:0]\n-A INPUT -p tcp -j KUBE-SVC-GONE\nCOMMIT\n", 3, 20,
                                "jump to chain 'KUBE-SVC-GONE'"),
    "goto to a missing chain": ("*filter\n:INPUT ACCEPT [0:0]\n-A INPUT -g ELSEWHERE\nCOMMIT\n", 3, 13,
                                "goto to chain 'ELSEWHERE'"),
    "duplicate chain": ("*nat\n:KUBE-SVC-A - [0:0]\n:KUBE-SVC-A - [0:0]\nCOMMIT\n", 3, 2, "declared twice"),
    "built-in chain of another table": ("*filter\n:PREROUTING ACCEPT [0:0]\nCOMMIT\n", 2, 2,
                                        "built-in chain of other tables"),
    "policy on a user chain": ("*filter\n:MINE ACCEPT [0:0]\nCOMMIT\n", 2, 7, "cannot have a policy"),
    "table without COMMIT": ("*filter\n:INPUT ACCEPT [0:0]\n-A INPUT -j ACCEPT\n", 3, 19, "never committed"),
    "next table before COMMIT": ("*filter\n:INPUT ACCEPT [0:0]\n*nat\nCOMMIT\n", 3, 1, "ends without COMMIT"),
    "unterminated quote": ('*filter\n:INPUT ACCEPT [0:0]\n-A INPUT -m comment --comment "open -j ACCEPT\nCOMMIT\n',
                           3, 31, "unterminated quote"),
    "option without its argument": ("*filter\n:INPUT ACCEPT [0:0]\n-A INPUT -s\nCOMMIT\n", 3, 12,
                                    "needs an argument"),
    "module option without its argument": ("*filter\n:INPUT ACCEPT [0:0]\n-A INPUT -p tcp -m tcp --dport\nCOMMIT\n",
                                           3, 31, "--dport needs 1 argument"),
    "unknown table": ("*filtre\nCOMMIT\n", 1, 2, "unknown table 'filtre'"),
    "bytes that are not UTF-8": (b"*filter\n:INPUT ACCEPT [0:0]\n-A INPUT -m comment --comment \"caf\xe9\"\nCOMMIT\n",
                                 3, 35, "not valid UTF-8"),
    "NUL byte": ("*filter\n:INPUT ACCEPT [0:0]\x00\nCOMMIT\n", 2, 20, "NUL byte"),
    "empty input": ("", 1, 1, "empty input"),
    "line longer than 1 MiB": ("*filter\n:INPUT ACCEPT [0:0]\n-A INPUT -m comment --comment " + "x" * (1 << 20)
                               + "\nCOMMIT\n", 3, 1, "longer than 1 MiB"),
    "port out of range": ("*filter\n:INPUT ACCEPT [0:0]\n-A INPUT -p tcp -m tcp --dport 70000 -j ACCEPT\nCOMMIT\n",
                          3, 32, "expected a port"),
    "module without its protocol": ("*filter\n:INPUT ACCEPT [0:0]\n-A INPUT -m tcp --dport 80 -j ACCEPT\nCOMMIT\n",
                                    3, 13, "needs '-p tcp'"),
    "unknown match module": ("*filter\n:INPUT ACCEPT [0:0]\n-A INPUT -m nosuch -j ACCEPT\nCOMMIT\n", 3, 13,
                             "unknown match module"),
    "DNAT outside the nat table": ("*filter\n:INPUT ACCEPT [0:0]\n-A INPUT -j DNAT --to-destination 1.2.3.4\nCOMMIT\n",
                                   3, 13, "only valid in the nat table"),
    "DROP in the nat table": ("*nat\n:PREROUTING ACCEPT [0:0]\n-A PREROUTING -j DROP\nCOMMIT\n", 3, 18,
                              "nat table does not filter"),
    "counters longer than 64 bits": ("*filter\n:INPUT ACCEPT [" + "9" * 5000 + ":0]\nCOMMIT\n", 2, 15,
                                     "expected counters"),
    "jump loop": ("*filter\n:A - [0:0]\n:B - [0:0]\n-A A -j B\n-A B -j A\nCOMMIT\n", 5, 9, "makes a loop"),
}


@pytest.mark.parametrize("name", BAD_INPUTS)
def test_bad_input_is_reported_with_line_column_and_the_offending_text(name):
    text, line, column, fragment = BAD_INPUTS[name]
    with pytest.raises(DumpError) as caught:
        parse(text, "node.rules")
    error = caught.value
    assert (error.line, error.column) == (line, column), str(error)
    assert fragment in error.message
    rendered = str(error).splitlines()
    assert rendered[0] == f"node.rules:{line}:{column}: {error.message}"
    if error.text:
        caret_line = rendered[-1]
        assert caret_line.index("^") - 4 == column - 1 or column > len(error.text)


def test_the_caret_points_under_the_offending_token():
    with pytest.raises(DumpError) as caught:
        parse("*filter\n:INPUT ACCEPT [0:0]\n-A INPUT -p tcp -m tcp --dport 99999 -j ACCEPT\nCOMMIT\n", "x")
    text_line, caret_line = str(caught.value).splitlines()[1:]
    assert text_line[caret_line.index("^"):].startswith("99999")
