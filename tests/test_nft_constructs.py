"""The constructs nft 1.0.6 lists that kube-proxy and the common tools do not write, read into the model: chain
bindings, meters, map updates, osf, ipsec, IPv4 options and SCTP chunks; and the comment matches iptables-nft
keeps, which nft lists as nothing. What nft refuses of them is refused where it stands."""

from __future__ import annotations

import re

import pytest
from iptables_lens.errors import DumpError
from iptables_lens.nft.fmt import format_ruleset
from iptables_lens.nft.model import (
    BoundChain,
    BoundRule,
    Concat,
    ConnLimit,
    Const,
    Counter,
    Element,
    Fib,
    IpOption,
    Ipsec,
    Limit,
    Match,
    Meta,
    Meter,
    Osf,
    Payload,
    Prefix,
    SctpChunk,
    SetLiteral,
    SetUpdate,
    Verdict,
    Xt,
)
from iptables_lens.nft.parse import parse

from tests.conftest import REPO_ROOT
from tests.nftcorpus import CORPUS, Ruleset

RARE = Ruleset(CORPUS / "rare-constructs.nft")
KIND = REPO_ROOT / "dumps" / "kind-nodeport-nftables" / "worker-1-after.nft"


@pytest.fixture(scope="module")
def rare():
    return parse(RARE.listed("alist").read_text(), "rare.nft").table("inet", "rare")


def _rule(table, chain: str, handle: int):
    return next(r for r in table.chain(chain).rules if r.handle == handle)


def _refusal(rule: str, family: str = "ip", hook: str = "input") -> DumpError:
    text = (f"table {family} t {{\n\tset s {{\n\t\ttype ipv4_addr\n\t\tflags dynamic\n\t}}\n\n\tmap m {{\n"
            f"\t\ttype ipv4_addr : mark\n\t\tflags dynamic\n\t}}\n\n\tchain c {{\n"
            f"\t\ttype filter hook {hook} priority filter; policy accept;\n\t\t{rule}\n\t}}\n}}\n")
    with pytest.raises(DumpError) as caught:
        parse(text, "ruleset.nft")
    return caught.value


# -- chain bindings -------------------------------------------------------------------------------------------


def test_a_chain_binding_is_a_jump_to_the_rules_written_in_its_braces(rare):
    rule = _rule(rare, "input", 46)
    binding = rule.statements[-1]
    networks = SetLiteral(tuple(Element(Prefix(Const("ipv4_addr", a), n)) for a, n in (("10.0.0.0", 8),
                                                                                      ("192.168.0.0", 16))))
    assert binding == BoundChain("jump", (
        BoundRule((Match("==", Payload("ip", "saddr"), networks), Counter(0, 0), Verdict("accept")), "inside"),
        BoundRule((Verdict("jump", "trusted"),)),
        BoundRule((Verdict("drop"),))))
    assert (rule.comment, rule.handle) == ("dns", 46)
    assert [r.line for r in binding.rules] == [rule.line + 1, rule.line + 2, rule.line + 3]


def test_an_empty_binding_and_a_goto_binding_read_and_print_back(rare):
    assert _rule(rare, "input", 51).statements == (BoundChain("jump"),)
    assert _rule(rare, "input", 49).statements[-1] == BoundChain("goto", (
        BoundRule((Counter(0, 0), Verdict("accept"))),))


def test_a_bound_chains_jumps_are_its_rules_chains():
    assert "no set or map named 'x'" in _refusal("jump {\n\t\t\tupdate @x { ip saddr }\n\t\t}").message
    loop = _refusal("jump {\n\t\t\tjump c\n\t\t}")
    assert "cannot jump to base chain 'c'" in loop.message and loop.line == 15


def test_a_bound_chains_last_rule_ends_before_its_closing_brace():
    assert parse("table ip t {\n\tchain c {\n\t\tjump { accept; }\n\t\tjump { }\n\t}\n}\n")
    error = _refusal("jump { accept }")
    assert error.column == len("jump { accept }") + 2 and "new line or ';'" in error.message


def test_a_binding_inside_a_binding_is_refused_where_it_opens():
    error = _refusal("jump {\n\t\t\tjump {\n\t\t\t\taccept\n\t\t\t}\n\t\t}")
    assert (error.line, error.column) == (15, 4) and "too many levels of nesting" in error.message


# -- meters ---------------------------------------------------------------------------------------------------


def test_a_meter_keeps_one_stateful_statement_per_key(rare):
    limit = _rule(rare, "input", 28).statements[1]
    assert limit == Meter("ssh", 1024, Payload("ip", "saddr"), Limit(10, "minute", 5), 60_000)
    counter = _rule(rare, "input", 30).statements[0]
    assert counter == Meter("flows", 65535, Concat((Payload("ip", "saddr"), Payload("tcp", "dport"))), Counter())
    assert _rule(rare, "input", 34).statements[0].statement == ConnLimit(20, over=True)


def test_a_meter_without_a_size_gets_the_one_nft_lists():
    text = "table ip t {\n\tchain c {\n\t\tmeter m { ip saddr counter }\n\t}\n}\n"
    (meter,) = parse(text).table("ip", "t").chain("c").rules[0].statements
    assert meter.size == 65535 and "meter m size 65535 { ip saddr counter }" in format_ruleset(parse(text))


@pytest.mark.parametrize("rule, at, message", [
    ("meter m { ip saddr log }", "log", "meter statement must be stateful"),
    ("meter m { ip saddr counter limit rate 1/second }", "limit", "closing the meter"),
    ("meter s { ip saddr counter }", None, "the table has a set or map of that name"),
    ("meter mm { ip saddr counter }\n\t\tmeter mm { ip daddr counter }", None, "another meter of that name"),
])
def test_what_nft_refuses_of_a_meter_is_refused(rule, at, message):
    error = _refusal(rule)
    assert message in error.message
    if at is not None:
        assert error.column == rule.index(at) + 3


# -- map updates ----------------------------------------------------------------------------------------------


def test_a_map_update_reads_its_value_as_the_maps_values(rare):
    assert _rule(rare, "input", 37).statements == (
        SetUpdate("add", "seen", Payload("ip", "saddr"), data=Const("mark", 1)),)
    assert _rule(rare, "input", 35).statements == (
        SetUpdate("update", "seen", Payload("ip", "saddr"), 30_000, (Counter(),), Meta("mark")),)
    assert _rule(rare, "input", 39).statements[0].data == Concat((Const("ipv4_addr", "10.0.0.1"),
                                                                 Const("inet_service", 53)))


@pytest.mark.parametrize("rule, message", [
    ("update @m { ip saddr }", "map 'm' maps its elements to values: its update gives one after ':'"),
    ("update @s { ip saddr : 0x1 }", "'s' is a set"),
    ("update @m { ip saddr : 10.0.0.1 }", "expected a number"),
    ("update @m { ip saddr : ip daddr }", "map 'm' holds mark, not ipv4_addr"),
])
def test_what_nft_refuses_of_a_map_update_is_refused(rule, message):
    assert message in _refusal(rule).message


# -- osf, ipsec, IPv4 options, SCTP chunks ------------------------------------------------------------------------


def test_the_rarer_selectors_read_as_their_own_expressions(rare):
    left = [_rule(rare, "input", handle).statements[0].left for handle in (12, 13, 15, 16, 22, 26)]
    assert left == [Osf("name", "loose"), Osf("version", "skip"), Ipsec("in", "saddr", "ip", 2),
                    Ipsec("in", "daddr", "ip6"), IpOption("ssrr", "ptr"), SctpChunk("sack", "cum-tsn-ack")]
    assert _rule(rare, "input", 20).statements[0] == Match("==", IpOption("rr"), Const("boolean", True))
    assert _rule(rare, "input", 25).statements[0] == Match("==", SctpChunk("abort"), Const("boolean", False))


def test_a_set_of_their_typeof_holds_values_of_their_datatypes(rare):
    assert rare.set("os").elements[0].key == Const("string", "Linux")
    assert rare.set("tunnels").elements[0].key == Concat((Const("integer", 42), Const("ifname", "eth0")))


@pytest.mark.parametrize("rule, family, hook, message", [
    ('osf name "Linux"', "ip", "output", "osf only works at the prerouting, input and forward hooks"),
    ('osf name "Linux"', "ip6", "input", "of ip and inet tables"),
    ("ipsec in reqid 1", "ip", "output", "ipsec in does not work at the output hook"),
    ("ipsec out reqid 1", "ip", "input", "ipsec out does not work at the input hook"),
    ("ipsec in reqid 1", "arp", "input", "ipsec expression is only valid in ip/ip6/inet tables"),
    ("ipsec in spnum 256 reqid 1", "ip", "input", "value too large"),
    ("ip option ra ptr 1", "ip", "input", "ip option ra has no field 'ptr'"),
    ("ip option rr exists", "ip6", "input", "conflicting protocols specified: ip6 vs. ip"),
    ("sctp chunk abort tsn 1", "ip", "input", "sctp chunk abort has no field 'tsn'"),
])
def test_what_nft_or_the_kernel_refuses_of_them_is_refused(rule, family, hook, message):
    assert message in _refusal(rule, family, hook).message


# -- comments iptables-nft keeps ------------------------------------------------------------------------------

_COMMENT = Xt("match", "comment")


def test_a_comment_match_is_read_from_the_blanks_nft_leaves_for_it():
    table = parse(KIND.read_text(), KIND.name).table("ip", "nat")
    between = next(r for r in table.chain("POSTROUTING").rules if isinstance(r.statements[0].left, Fib))
    assert between.statements[1:] == (_COMMENT, Counter(0, 0), Verdict("jump", "KIND-MASQ-AGENT"))
    leading = table.chain("KIND-MASQ-AGENT").rules[-1]
    assert leading.statements[0] == _COMMENT and re.match(r"\t\t counter", KIND.read_text().splitlines()[
        leading.line - 1])


def test_blanks_are_only_blanks_outside_the_tables_iptables_nft_keeps():
    text = "table ip filter {\n\tchain c {\n\t\tip saddr 1.2.3.4  counter\n\t}\n}\n"
    assert parse(text).rules.__next__().statements[1] == _COMMENT
    other = parse(text.replace("ip filter", "inet fw"))
    assert [type(s) for s in next(other.rules).statements] == [Match, Counter]


def test_both_paths_read_a_kind_nodes_listing_alike():
    text = KIND.read_text()
    fast, grammar = parse(text), parse(text, fast=False)
    assert fast == grammar and [r.text for r in fast.rules] == [r.text for r in grammar.rules]
