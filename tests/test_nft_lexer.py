"""The Pygments lexer for nft listings: token types, lossless output on the corpus, and its registration."""

from __future__ import annotations

import random
import tomllib
from importlib import import_module, metadata
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from iptables_lens.nft.lexer import NftablesLexer
from pygments.token import Comment, Error, Keyword, Name, Number, Operator, Punctuation, String

from tests.bench.scale import nodeport_listing
from tests.conftest import REPO_ROOT

ENTRY_POINT = "iptables_lens.nft.lexer:NftablesLexer"
DATA = REPO_ROOT / "tests" / "data"
LISTINGS = sorted((DATA / "nft" / "listed").glob("*.alist")) + sorted(
    (DATA / "kube-proxy-nftables" / "listings").glob("*.nft")) + sorted(
    (REPO_ROOT / "dumps" / "kind-nodeport-nftables").glob("*.nft"))
# What the corpus holds as it was written (listings, and nft scripts): shown on a page all the same.
WRITTEN = sorted(p for p in (DATA / "nft").rglob("*.nft") if "listed" not in p.parts) + sorted(
    (DATA / "kube-proxy-nftables").glob("*.nft"))


def tokens(text: str) -> list[tuple[object, str]]:
    return list(NftablesLexer().get_tokens(text))


def significant(text: str) -> list[tuple[object, str]]:
    """The tokens of `text` without whitespace, for comparing token types."""
    return [(kind, value) for kind, value in tokens(text) if value.strip()]


def as_pygments_shows(text: str) -> str:
    """`text` as Pygments hands it to a lexer: with a final newline."""
    return text if text.endswith("\n") else text + "\n"


def test_the_corpus_has_listings_of_every_kind():
    assert len(LISTINGS) > 150
    assert any("kube-proxy" in p.read_text() for p in LISTINGS)


@pytest.mark.parametrize("path", LISTINGS + WRITTEN, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_a_corpus_ruleset_lexes_without_error_and_comes_back_exactly(path: Path):
    text = path.read_text()
    lexed = tokens(text)
    assert [value for kind, value in lexed if kind in Error] == []
    assert "".join(value for _, value in lexed) == as_pygments_shows(text)


def test_a_table_header_names_its_family_and_table_and_keeps_its_handle():
    assert significant("table inet firewalld { # handle 3\n") == [
        (Keyword.Declaration, "table"), (Keyword.Namespace, "inet"), (Name.Namespace, "firewalld"),
        (Punctuation, "{"), (Comment.Special, "# handle 3"),
    ]


def test_a_base_chain_gets_its_hook_type_priority_and_policy():
    text = ("\tchain filter-prerouting-pre-dnat {\n"
            "\t\ttype filter hook prerouting priority dstnat - 10; policy accept;\n")
    assert significant(text) == [
        (Keyword.Declaration, "chain"), (Name.Class, "filter-prerouting-pre-dnat"), (Punctuation, "{"),
        (Keyword, "type"), (Name.Constant, "filter"), (Keyword, "hook"), (Name.Constant, "prerouting"),
        (Keyword, "priority"), (Name.Constant, "dstnat"), (Operator, "-"), (Number.Integer, "10"),
        (Punctuation, ";"), (Keyword, "policy"), (Keyword.Constant, "accept"), (Punctuation, ";"),
    ]


def test_a_negative_priority_is_a_number():
    found = significant("\t\ttype filter hook output priority -110; policy accept;\n")
    assert found[5:7] == [(Operator, "-"), (Number.Integer, "110")]


def test_a_verdict_map_declaration_gets_datatypes_elements_and_goto_targets():
    text = ("\tmap service-ips {\n"
            "\t\ttype ipv4_addr . inet_proto . inet_service : verdict\n"
            '\t\tcomment "ClusterIP, ExternalIP and LoadBalancer IP traffic"\n'
            "\t\telements = { 172.30.0.41 . tcp . 80 : goto service-ULMVA6XW-ns1/svc1/tcp/p80 }\n")
    assert significant(text) == [
        (Keyword.Declaration, "map"), (Name.Variable, "service-ips"), (Punctuation, "{"),
        (Keyword, "type"), (Keyword.Type, "ipv4_addr"), (Operator, "."), (Keyword.Type, "inet_proto"),
        (Operator, "."), (Keyword.Type, "inet_service"), (Punctuation, ":"), (Keyword.Type, "verdict"),
        (Keyword, "comment"), (String.Double, '"ClusterIP, ExternalIP and LoadBalancer IP traffic"'),
        (Keyword, "elements"), (Operator, "="), (Punctuation, "{"),
        (Number, "172.30.0.41"), (Operator, "."), (Name.Builtin, "tcp"), (Operator, "."), (Number.Integer, "80"),
        (Punctuation, ":"), (Keyword, "goto"), (Name.Function, "service-ULMVA6XW-ns1/svc1/tcp/p80"),
        (Punctuation, "}"),
    ]


def test_a_rule_gets_selectors_fields_set_references_and_verdicts():
    found = significant("\t\tip daddr . meta l4proto . th dport vmap @service-ips # handle 12\n")
    assert found == [
        (Name.Builtin, "ip"), (Name.Attribute, "daddr"), (Operator, "."), (Name.Builtin, "meta"),
        (Name.Attribute, "l4proto"), (Operator, "."), (Name.Builtin, "th"), (Name.Attribute, "dport"),
        (Keyword, "vmap"), (Name.Variable, "@service-ips"), (Comment.Special, "# handle 12"),
    ]


@pytest.mark.parametrize("name", [
    "endpoint-5OJB2KTY-ns1/svc1/tcp/p80__10.180.0.1/80",
    "endpoint-26CEOYLK-default/lb/tcp/__fd00.10.244.2..2/8443",
    "external-42NFTM6N-ns2/svc2/tcp/p80",
    "mark-for-masquerade",
    "reject-chain",
])
def test_a_kube_proxy_chain_name_is_one_name_wherever_it_stands(name):
    assert significant(f"\tchain {name} {{\n")[1] == (Name.Class, name)
    assert significant(f"\t\tjump {name}\n")[-1] == (Name.Function, name)
    assert significant(f"\t\tnumgen random mod 1 vmap {{ 0 : goto {name} }}\n")[-2] == (Name.Function, name)


def test_an_affinity_set_is_a_variable_where_declared_and_where_updated():
    name = "affinity-GTK6MW7G-ns5/svc5/tcp/p80__10.180.0.3/80"
    assert significant(f"\tset {name} {{\n")[:2] == [(Keyword.Declaration, "set"), (Name.Variable, name)]
    assert significant(f"\t\tupdate @{name} {{ ip saddr }}\n")[:2] == [(Keyword, "update"), (Name.Variable, f"@{name}")]


def test_a_mangle_statement_is_not_a_set_declaration():
    assert significant("\t\tmeta mark set meta mark | 0x00004000\n") == [
        (Name.Builtin, "meta"), (Name.Attribute, "mark"), (Keyword, "set"), (Name.Builtin, "meta"),
        (Name.Attribute, "mark"), (Operator, "|"), (Number.Hex, "0x00004000"),
    ]


@pytest.mark.parametrize("address", ["10.0.0.0/8", "172.30.0.41", "fd00:10:96::32", "::1", "fe80::/64",
                                     "2001:db8:0:2::7", "::ffff:1.2.3.4/128"])
def test_an_address_or_prefix_is_one_number(address):
    assert significant(f"\t\tip saddr != {address} drop\n")[3] == (Number, address)


def test_a_dnat_target_is_an_address_and_a_port():
    assert significant("\t\tmeta l4proto tcp dnat to 10.180.0.1:80\n")[-3:] == [
        (Number, "10.180.0.1"), (Punctuation, ":"), (Number.Integer, "80")]
    assert significant("\t\tdnat ip6 to [fd00:10:244:1::2]:8080\n")[-5:] == [
        (Punctuation, "["), (Number, "fd00:10:244:1::2"), (Punctuation, "]"), (Punctuation, ":"),
        (Number.Integer, "8080")]


def test_both_ends_of_an_address_range_are_numbers():
    assert significant("\t\telements = { fe11::-fe22::, 10.0.0.0-11.0.0.0 }\n")[3:10] == [
        (Number, "fe11::"), (Operator, "-"), (Number, "fe22::"), (Punctuation, ","),
        (Number, "10.0.0.0"), (Operator, "-"), (Number, "11.0.0.0")]


def test_a_timeout_is_a_number_and_a_flag_list_is_punctuated():
    found = significant("\t\tflags dynamic,timeout\n\t\ttimeout 3h\n")
    assert found[-2:] == [(Keyword, "timeout"), (Number.Integer, "3h")]
    assert (Punctuation, ",") in found


def test_a_comment_that_is_not_a_handle_is_a_plain_comment():
    assert significant("# a ruleset\ntable ip t {\n")[0] == (Comment.Single, "# a ruleset")


def test_an_unterminated_quote_does_not_swallow_the_next_line():
    text = '\t\tiifname "eth0 accept\n\t\tjump services\n'
    found = significant(text)
    assert found[-2:] == [(Keyword, "jump"), (Name.Function, "services")]
    assert "".join(value for _, value in tokens(text)) == text


def test_a_generated_kube_proxy_listing_lexes_without_error_and_losslessly():
    text = nodeport_listing(30, 3)
    lexed = tokens(text)
    assert not [value for kind, value in lexed if kind in Error]
    assert "".join(value for _, value in lexed) == text


@settings(max_examples=300, deadline=None)
@given(st.lists(st.text(alphabet='tablechinpr @-/_.:#"{}[],;=!<>&|^ \t\\0123456789abcdefx', max_size=40),
                max_size=8))
def test_any_text_lexes_without_error_and_losslessly(lines):
    text = "\n".join(lines) + "\n"
    lexed = tokens(text)
    assert not [value for kind, value in lexed if kind in Error]
    assert "".join(value for _, value in lexed) == text


def test_a_corpus_listing_shuffled_line_by_line_still_lexes_losslessly():
    lines = LISTINGS[0].read_text().splitlines(keepends=True)
    random.Random(17).shuffle(lines)
    text = "".join(lines)
    assert "".join(value for _, value in tokens(text)) == as_pygments_shows(text)


def test_pyproject_registers_the_lexer_as_a_pygments_plugin():
    with open(REPO_ROOT / "pyproject.toml", "rb") as f:
        project = tomllib.load(f)["project"]
    assert project["entry-points"]["pygments.lexers"]["nftables"] == ENTRY_POINT
    module, _, attribute = ENTRY_POINT.partition(":")
    assert getattr(import_module(module), attribute) is NftablesLexer


def test_pygments_finds_the_lexer_by_name_once_the_package_is_installed():
    registered = [e for e in metadata.entry_points(group="pygments.lexers") if e.value == ENTRY_POINT]
    if not registered:
        pytest.skip("the installed iptables-lens predates the nft lexer's entry point: reinstall to register it")
    from pygments.lexers import find_lexer_class_by_name, get_lexer_for_filename

    for alias in ("nft", "nftables"):
        assert find_lexer_class_by_name(alias) is NftablesLexer
    assert isinstance(get_lexer_for_filename("ruleset.nft"), NftablesLexer)


def test_an_nft_code_block_on_a_page_is_highlighted_by_the_lexer():
    if not [e for e in metadata.entry_points(group="pygments.lexers") if e.value == ENTRY_POINT]:
        pytest.skip("the installed iptables-lens predates the nft lexer's entry point: reinstall to register it")
    import markdown

    page = "```nft\ntable ip kube-proxy {\n\tchain services {\n\t\tjump mark-for-masquerade\n\t}\n}\n```\n"
    html = markdown.markdown(page, extensions=["pymdownx.highlight", "pymdownx.superfences"])
    assert '<span class="kd">table</span>' in html and '<span class="nn">kube-proxy</span>' in html
    assert '<span class="nf">mark-for-masquerade</span>' in html
