"""The nft listing parser and formatter: every listing of the corpus reads and prints back byte for byte, the
model says what the rules do, and each mistake is reported where it is."""

from __future__ import annotations

import re

import pytest
from iptables_lens.errors import DumpError
from iptables_lens.nft.fmt import format_ruleset
from iptables_lens.nft.model import (
    Binop,
    Concat,
    Const,
    Counter,
    Ct,
    Element,
    Fib,
    Hook,
    Mangle,
    Match,
    Meta,
    Nat,
    Numgen,
    ObjectRef,
    Payload,
    Prefix,
    Queue,
    SetLiteral,
    SetRef,
    SetUpdate,
    ValueList,
    Verdict,
    VerdictMap,
)
from iptables_lens.nft.parse import parse

from tests.conftest import REPO_ROOT
from tests.nftcorpus import corpus

LISTED = [r for r in corpus() if r.listed("alist").exists()]
_HANDLE = re.compile(r" # handle [0-9]+")
# The listings of the kind-nodeport-nftables scenario: nft 1.0.6 listed them from a kind node, whose tables iptables
# keeps through iptables-nft (with comment matches nft prints as nothing) beside kube-proxy's.
KIND_LISTINGS = sorted((REPO_ROOT / "dumps" / "kind-nodeport-nftables").glob("*.nft"))


def _listing(name: str) -> str:
    return next(r for r in LISTED if r.name == name).listed("alist").read_text()


@pytest.mark.parametrize("ruleset", LISTED, ids=lambda r: r.name)
def test_a_listing_nft_printed_formats_back_byte_for_byte(ruleset):
    with_handles = ruleset.listed("alist").read_text()
    assert format_ruleset(parse(with_handles, ruleset.name)) == with_handles
    plain = _HANDLE.sub("", with_handles)
    assert format_ruleset(parse(plain, ruleset.name)) == plain


@pytest.mark.parametrize("path", KIND_LISTINGS, ids=lambda p: p.name)
def test_a_kind_nodes_listing_formats_back_byte_for_byte(path):
    listing = path.read_text()
    assert "  counter" in listing  # the blanks of an iptables comment nft printed as nothing are there to keep
    assert format_ruleset(parse(listing, path.name)) == listing


def test_iptables_spelling_of_a_translation_formats_back_as_listed_and_reads_as_nfts():
    # nft 1.0.6 lists an xt extension's translation in the tables iptables-nft keeps in iptables' spelling.
    listing = ("table ip mangle {\n\tchain PREROUTING {\n"
               "\t\tmeta mark set mark or 0x4000 counter packets 0 bytes 0 # handle 3\n"
               "\t\tip ttl gt 5 accept # handle 4\n\t\tip saddr 10.0.0.1 accept # handle 5\n\t}\n}\n")
    nfts = listing.replace("mark or 0x4000", "meta mark | 0x00004000").replace("ttl gt 5", "ttl > 5")
    read = parse(listing)
    assert format_ruleset(read) == listing
    assert read == parse(nfts) and format_ruleset(parse(nfts)) == nfts
    assert [r.spelled is not None for r in read.rules] == [True, True, False]
    # Outside those tables the same text reads the same and prints as nft prints it.
    other = parse(listing.replace("mangle", "other"))
    assert format_ruleset(other) == nfts.replace("mangle", "other")


# nftables' own tests hold the listings nft 1.0.6 is expected to print, including those whose features this
# machine's kernel lacks (flowtables, secmark, queue): they too print back byte for byte. One of them
# (chains/0043chain_ingress) is a listing nft cannot read back: its device name is written `\"lo\"`.
NFT_OWN = [r for r in corpus() if r.name.startswith("nftables-tests/")]
NOT_READ = {"nftables-tests/chains-0043chain_ingress"}


@pytest.mark.parametrize("ruleset", [r for r in NFT_OWN if r.name not in NOT_READ], ids=lambda r: r.name)
def test_nfts_own_expected_listings_format_back_byte_for_byte(ruleset):
    listing = "".join(line for line in ruleset.text.splitlines(True) if not line.startswith("# "))
    assert format_ruleset(parse(listing, ruleset.name)) == listing


@pytest.mark.parametrize("name", sorted(NOT_READ))
def test_what_the_parser_does_not_read_is_refused_at_its_place(name):
    ruleset = next(r for r in NFT_OWN if r.name == name)
    with pytest.raises(DumpError) as caught:
        parse(ruleset.text, name)
    assert caught.value.line > 0 and caught.value.column > 0


def test_the_corpus_covers_every_source_the_issue_names():
    names = {r.name.split("/")[0].split("-")[0] for r in LISTED}
    assert {"kube", "docker", "firewalld", "libvirt", "netavark", "fw4", "nftables"} <= names


# -- what the model says -------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def kube_proxy():
    return parse(_HANDLE.sub("", _listing("kube-proxy-overall")), "kube-proxy.nft").table("ip", "kube-proxy")


def test_a_service_map_lookup_is_a_concatenation_looked_up_in_a_verdict_map(kube_proxy):
    (rule,) = kube_proxy.chain("service-endpoints-check").rules
    assert rule.statements == (VerdictMap(
        Concat((Payload("ip", "daddr"), Meta("l4proto"), Payload("th", "dport"))), SetRef("no-endpoint-services")),)


def test_a_verdict_maps_elements_are_keys_with_verdicts(kube_proxy):
    service_ips = kube_proxy.set("service-ips")
    assert service_ips.key_types == ("ipv4_addr", "inet_proto", "inet_service") and service_ips.is_verdict_map
    key = Concat((Const("ipv4_addr", "172.30.0.41"), Const("inet_proto", "tcp"), Const("inet_service", 80)))
    (element,) = [e for e in service_ips.elements if e.key == key]
    assert element.data == Verdict("goto", "service-ULMVA6XW-ns1/svc1/tcp/p80")


def test_element_comments_are_kept(kube_proxy):
    element = kube_proxy.set("no-endpoint-nodeports").elements[0]
    assert element.comment == "ns2/svc2:p80" and element.data == Verdict("drop")


def test_endpoints_are_chosen_by_numgen(kube_proxy):
    rule = kube_proxy.chain("service-LAUZTJTB-ns4/svc4/tcp/p80").rules[1]
    (stmt,) = rule.statements
    assert stmt == VerdictMap(Numgen("random", 2), SetLiteral((
        Element(Const("integer", 0), Verdict("goto", "endpoint-UNZV3OEC-ns4/svc4/tcp/p80__10.180.0.4/80")),
        Element(Const("integer", 1), Verdict("goto", "endpoint-5RFCDDV7-ns4/svc4/tcp/p80__10.180.0.5/80")))))


def test_a_rule_is_its_matches_then_its_verdict(kube_proxy):
    rule = kube_proxy.chain("service-ULMVA6XW-ns1/svc1/tcp/p80").rules[0]
    assert rule.statements == (
        Match("==", Payload("ip", "daddr"), Const("ipv4_addr", "172.30.0.41")),
        Match("!=", Payload("ip", "saddr"), Prefix(Const("ipv4_addr", "10.0.0.0"), 8)),
        Verdict("jump", "mark-for-masquerade"))
    assert rule.position == 1 and rule.line > 0 and rule.text.startswith("ip daddr 172.30.0.41")


def test_dnat_and_affinity(kube_proxy):
    rules = kube_proxy.chain("endpoint-GTK6MW7G-ns5/svc5/tcp/p80__10.180.0.3/80").rules
    assert rules[1].statements == (SetUpdate("update", "affinity-GTK6MW7G-ns5/svc5/tcp/p80__10.180.0.3/80",
                                             Payload("ip", "saddr")),)
    assert rules[2].statements[-1] == Nat("dnat", None, Const("ipv4_addr", "10.180.0.3"), Const("inet_service", 80))
    affinity = kube_proxy.set("affinity-GTK6MW7G-ns5/svc5/tcp/p80__10.180.0.3/80")
    assert affinity.flags == ("dynamic", "timeout") and affinity.timeout == 3 * 3600 * 1000


def test_marks_are_numbers_and_flags_are_implicit_matches(kube_proxy):
    masquerading = kube_proxy.chain("masquerading").rules
    # `meta mark & 0x00004000 == 0x00000000 return`
    assert masquerading[0].statements[0] == Match("==", Binop("&", Meta("mark"), Const("mark", 0x4000)),
                                                  Const("mark", 0))
    (match, _) = kube_proxy.chain("filter-input").rules[0].statements
    assert match == Match("in", Ct("state"), Const("ct_state", "new"))


def test_priorities_keep_their_number_and_how_they_were_written(kube_proxy):
    hook = kube_proxy.chain("filter-prerouting-pre-dnat").hook
    assert hook == Hook("filter", "prerouting", hook.priority, "accept")
    assert (hook.priority.value, hook.priority.written) == (-110, "dstnat - 10")
    assert kube_proxy.chain("filter-output-pre-dnat").hook.priority.value == -110


def test_flag_lists_and_fib():
    ruleset = parse('table inet t {\n\tchain c {\n\t\tct state established,related accept\n'
                    '\t\tfib saddr . iif oif missing drop\n\t}\n}\n')
    first, second = ruleset.table("inet", "t").chain("c").rules
    assert first.statements[0] == Match("in", Ct("state"), ValueList((Const("ct_state", "established"),
                                                                       Const("ct_state", "related"))))
    assert second.statements[0] == Match("==", Fib(("saddr", "iif"), "oif"), Const("boolean", False))


# -- positioned mistakes ------------------------------------------------------------------------------------

_BASE = 'table ip t {\n\tset s {\n\t\ttype ipv4_addr\n\t}\n\n\tchain base {\n\t\ttype filter hook input priority filter; policy accept;\n\t}\n\n\tchain c {\n\t\t%s\n\t}\n}\n'
_RULE_LINE = 11


@pytest.mark.parametrize("rule, at, message", [
    ("ip daddr 10.0.0.256 accept", "10.0.0.256", "expected an IPv4 address"),
    ("tcp dport 65536 accept", "65536", "exceeds valid range 0-65535"),
    ("ip ttl 300", "300", "exceeds valid range 0-255"),
    ("jump nowhere", "nowhere", "which table ip t does not have"),
    ("jump base", "base", "cannot jump to base chain"),
    ("ip daddr @nope accept", "@nope", "no set or map named 'nope'"),
    ("ip daddr vmap @s", "@s", "not a map"),
    ("ip6 daddr ::1", None, "conflicting protocols specified: ip vs. ip6"),
    ("ip daddr 1.2.3.4 accep", "accep", "expected a statement"),
    ("meta mark set 0x100000000", "0x1", "exceeds valid range"),
    ("ct state bogus", "bogus", "'bogus' is not a ct_state value"),
    ('iifname "eth0 accept', '"eth0', "unterminated string"),
    ("jump bad[name]", "bad[name]", "an unquoted name is a letter"),
    ("dnat to 10.0.0.1:80", ":", "transport protocol mapping is only valid after transport protocol match"),
])
def test_a_mistake_in_a_rule_is_reported_at_its_column(rule, at, message):
    with pytest.raises(DumpError) as caught:
        parse(_BASE % rule, "ruleset.nft")
    error = caught.value
    assert (error.source, error.line) == ("ruleset.nft", _RULE_LINE)
    assert message in error.message
    if at is not None:
        assert error.column == rule.index(at) + 3  # 1-based, after the rule's two tabs


@pytest.mark.parametrize("text, line, message", [
    ("add table ip t\n", 1, "expected 'table FAMILY NAME {'"),
    ("table ip t {\n\tchain c {\n\t}\n", 1, "never closed"),
    ("table ip t {\n\tchain c {\n\t}\n\n\tchain c {\n\t}\n}\n", 5, "declared twice"),
    ("table ip t {\n}\ntable ip t {\n}\n", 3, "declared twice"),
    ("table bogus t {\n}\n", 1, "expected the table's family"),
    ("table ip t {\n\tchain c {\n\t\ttype nat hook forward priority 0; policy accept;\n\t}\n}\n", 3,
     "a nat chain cannot hook forward"),
    ("table ip t {\n\tchain c {\n\t\ttype filter hook output priority srcnat; policy accept;\n\t}\n}\n", 3,
     "'srcnat' is not a priority of a ip output hook"),
    ("table ip t {\n\tset s {\n\t\ttype ipv4_addr\n\t\telements = { 10.0.0.0/8 }\n\t}\n}\n", 2,
     "add 'flags interval'"),
    ("table ip t {\n\tset s {\n\t\ttype ipv4_addr\n\t\telements = { 10.0.0.1,\n\n\t\t\t     10.0.0.2 }\n\t}\n}\n", 5,
     "blank line inside"),
    ("table ip t {\n\tchain a {\n\t\tjump b\n\t}\n\n\tchain b {\n\t\tjump a\n\t}\n\n"
     "\tchain base {\n\t\ttype filter hook input priority 0; policy accept;\n\t\tjump a\n\t}\n}\n", 2,
     "the kernel refuses loops"),
    ("table ip t {\n\tchain c {\n\t\ttype filter hook input priority 0; policy accept;\n\t\tmasquerade\n\t}\n}\n", 4,
     "masquerade only works in a nat chain"),
])
def test_a_mistake_in_the_structure_is_reported_at_its_line(text, line, message):
    with pytest.raises(DumpError) as caught:
        parse(text, "ruleset.nft")
    assert caught.value.line == line and message in caught.value.message


def test_several_rules_on_a_line_read_as_nft_reads_them():
    ruleset = parse("table ip t {\n\tchain c {\n\t\ttype filter hook input priority 0; policy drop; accept;\n"
                    "\t\tcounter; drop\n\t}\n}\n")
    rules = ruleset.table("ip", "t").chain("c").rules
    assert [r.statements for r in rules] == [(Verdict("accept"),), (Counter(),), (Verdict("drop"),)]


def test_newer_nft_priority_names_read_and_print_as_written():
    text = ("table ip t {\n\tchain c {\n\t\ttype nat hook output priority dstnat; policy accept;\n\t}\n}\n")
    ruleset = parse(text)
    assert ruleset.table("ip", "t").chain("c").hook.priority.value == -100
    assert format_ruleset(ruleset) == text


def test_a_secmark_set_from_conntrack_is_a_change_and_any_other_is_the_named_object():
    text = ('table inet t {\n\tsecmark s {\n\t\t"system_u:object_r:ssh_server_packet_t:s0"\n\t}\n\n\tchain c {\n'
            '\t\tmeta secmark set "s"\n\t\tmeta secmark set ct secmark\n\t\tqueue to numgen inc mod 2\n\t}\n}\n')
    first, second, third = (r.statements[0] for r in parse(text).table("inet", "t").chain("c").rules)
    assert first == ObjectRef("secmark", Const("string", "s"))
    assert second == Mangle(Meta("secmark"), Ct("secmark"))
    assert third == Queue(Numgen("inc", 2))
