"""`explain` for nft rulesets: every rule of the corpus in words, a phrase of its own for every statement and
expression kind, kube-proxy's chains, sets and elements tied to their Services with verified hashes, the
command's text and JSON, and the site's rule tables."""

from __future__ import annotations

import json
import re
from fractions import Fraction
from functools import cache
from pathlib import Path
from typing import get_args

import pytest
from click.testing import CliRunner
from iptables_lens.cli import main
from iptables_lens.dialects import dialect_of, read_dump
from iptables_lens.errors import DumpError
from iptables_lens.kube.cluster_spec import ClusterSpec, Endpoint, Port, ServiceSpec
from iptables_lens.kube.nft_families import NFT_FIXED_CHAINS, NFT_FIXED_SETS, NFT_HASHED_FAMILIES
from iptables_lens.kube.nft_services import OBJECT_KINDS, decode_name
from iptables_lens.kube.synth_nftables import LAYOUTS, synth_nftables
from iptables_lens.netns import Namespace, can_run_kernel_lab
from iptables_lens.nft import parse_ruleset, types
from iptables_lens.nft.explain import (
    STATEMENTS,
    RuleExplanation,
    TableExplanation,
    explain_chain,
    explain_rule,
    explain_ruleset,
    priority_words,
)
from iptables_lens.nft.explain import words as w
from iptables_lens.nft.explain.choices import shares
from iptables_lens.nft.explain.place import Place
from iptables_lens.nft.explain.sets import TYPE_WORDS
from iptables_lens.nft.model import Const, Element, Expr, Fwd, Numgen, Range, Rule, Statement, Verdict, Xt
from iptables_lens.render.nft_tables import nft_anchor, nft_rule_tables, nft_set_anchor

from tests.bench.scale import nodeport_listing
from tests.conftest import REPO_ROOT
from tests.nftcorpus import LISTED, corpus
from tests.test_cli_json import follows_schema, json_of

KUBE_LISTINGS = sorted((REPO_ROOT / "tests" / "data" / "kube-proxy-nftables" / "listings").glob("*.nft"))
V134 = REPO_ROOT / "tests" / "data" / "kube-proxy-nftables" / "listings" / "TestOverallNFTablesRules.v1.34.nft"
MAIN = REPO_ROOT / "tests" / "data" / "kube-proxy-nftables" / "listings" / "TestOverallNFTablesRules.main-edca563.nft"


@cache
def readable(path: Path):
    """The ruleset in `path`, or None for one the parser refuses (chain bindings, meters and the other
    constructs test_nft_parse lists as unsupported: the parser's tests say so, not these)."""
    try:
        return read_dump(path)
    except DumpError:
        return None


# Every listing of the corpus the parser reads: nft's own listings (text and JSON), the rulesets written as
# listings, kube-proxy's listings.
LISTINGS = sorted(LISTED.glob("*.alist")) + sorted(LISTED.glob("*.json")) + [
    r.path for r in corpus() if r.is_listing] + KUBE_LISTINGS
CORPUS_FILES = [p for p in LISTINGS if readable(p) is not None]


def test_the_corpus_explained_is_all_the_parser_reads_of_it():
    refused = {p.stem.removeprefix("nftables-tests--") for p in LISTINGS if p not in CORPUS_FILES}
    assert len(CORPUS_FILES) > 500 and set(KUBE_LISTINGS) <= set(CORPUS_FILES)
    # test_nft_parse's NOT_READ (a listing nft refuses too), and nft's tests of its JSON schema, which hold JSON.
    assert refused == {"chains-0043chain_ingress", "json-0003json_schema_version_0",
                       "json-0004json_schema_version_1"}, refused


@pytest.mark.parametrize("path", CORPUS_FILES, ids=lambda p: str(p.relative_to(REPO_ROOT / "tests" / "data")))
def test_every_rule_of_the_corpus_is_explained_statement_by_statement(path):
    ruleset = readable(path)
    for table in explain_ruleset(ruleset):
        chains = {c.chain: c for c in table.chains}
        for chain in ruleset.table(table.family, table.name).chains:
            explained = chains[chain.name]
            assert len(explained.rules) == len(chain.rules)
            for rule, meaning in zip(chain.rules, explained.rules, strict=True):
                assert len(meaning.conditions) + len(meaning.actions) == len(rule.statements), rule
                assert meaning.summary[:1].isupper() and meaning.summary.endswith("."), meaning.summary
            if chain.hook is not None:
                assert explained.hook is not None and f"priority {explained.hook.priority}" in explained.hook.words


def test_the_corpus_covers_most_statement_kinds():
    found = {type(s) for path in CORPUS_FILES if (r := readable(path)) for rule in r.rules for s in rule.statements}
    assert len(found) >= 10, found


# -- a phrase of its own for every statement and expression kind -------------------------------------------------

PREAMBLE = """table ip t {
\tcounter cnt {
\t\tpackets 0 bytes 0
\t}

\tquota q {
\t\t10 mbytes
\t}

\tct helper ftp-helper {
\t\ttype "ftp" protocol tcp
\t\tl3proto ip
\t}

\tset aff {
\t\ttype ipv4_addr
\t\tflags dynamic,timeout
\t\ttimeout 3h
\t}

\tset s2 {
\t\ttype ipv4_addr . inet_service
\t}

\tmap marks {
\t\ttype ipv4_addr : mark
\t\tflags dynamic,timeout
\t}

\tflowtable ft {
\t\thook ingress priority filter
\t\tdevices = { eth0 }
\t}

\tchain a {
\t}

\tchain b {
\t}

\tchain base {
\t\ttype filter hook input priority filter; policy drop;
\t\treturn
\t}

\tchain x {
\t\t%s
\t}
}
"""


def explained(rule_text: str) -> RuleExplanation:
    """The explanation of one rule in chain x of an ip table that declares what the examples use."""
    table = parse_ruleset(PREAMBLE % rule_text).tables[0]
    chain = table.chain("x")
    return explain_rule(chain.rules[0], Place(table, chain))


# One rule for each statement kind (and the main forms of a few), with the sentence it must read as.
EXAMPLES: list[tuple[str, str]] = [
    ("tcp dport 22 accept", "Only TCP to port 22: accepts the packet (this base chain is done with it)."),
    ("ip saddr != 10.0.0.0/8 drop", "Not from 10.0.0.0/8: drops the packet."),
    ("limit rate 10/second burst 20 packets accept",
     "Only up to 10 packets per second, in bursts of up to 20 packets: accepts the packet (this base chain is "
     "done with it)."),
    ("quota over 10 mbytes drop", "Only once more than 10 mbytes have passed this rule: drops the packet."),
    ("ct count over 10 reject with tcp reset",
     "Only while more than 10 of the connections this rule counts are open: rejects with a TCP reset."),
    ("ct state established,related continue", "Only established or related connections: goes on to the next rule."),
    ("numgen random mod 2 vmap { 0 : goto a, 1 : goto b }",
     "Picks one of 2 at random, each with probability 1/2: goes to a or b and does not come back here."),
    ("tcp dport vmap { 22 : accept, 80 : jump a }", "By the TCP destination port: 22 → accepts, 80 → jump to a."),
    ("meta mark set meta mark | 0x00004000", "Sets bit 0x00004000 of the packet mark."),
    ("ct mark set meta mark", "Copies the packet mark to the connection mark."),
    ("ip dscp set cs1", "Sets the DSCP of the IPv4 header to cs1."),
    ("counter packets 3 bytes 180", "Counts the packet (3 packets, 180 bytes so far)."),
    ('counter name "cnt"', "Counts the packet in the named counter cnt."),
    ('quota name "q" drop', "Only within the named quota q: drops the packet."),
    ('ct helper set "ftp-helper"', "Gives the connection the helper ftp-helper."),
    ('log prefix "dropped: " level info drop',
     'Logs the packet to the kernel log at level info with prefix "dropped: ", and goes on, then drops the packet.'),
    ("meta l4proto tcp dnat to 10.0.0.1:80", "Only TCP: DNAT to 10.0.0.1:80."),
    ("meta l4proto tcp dnat ip to numgen random mod 2 map { 0 : 10.0.0.1 . 80, 1 : 10.0.0.2 . 80 }",
     "Only TCP: DNAT to one of 2 at random, each with probability 1/2: 10.0.0.1:80 or 10.0.0.2:80."),
    ("snat to 192.168.0.1-192.168.0.10 fully-random",
     "SNAT to 192.168.0.1-192.168.0.10, ports chosen fully at random."),
    ("masquerade fully-random",
     "Masquerades: the source becomes the address of the interface the packet leaves by, ports chosen fully at "
     "random."),
    ("meta l4proto tcp redirect to :8080", "Only TCP: redirects the packet to this node port 8080."),
    ("reject", "Rejects with ICMP port unreachable."),
    ("update @aff { ip saddr }", "Adds the source address to the set aff, or restarts its timeout if it is there."),
    ("notrack", "Exempts the packet from connection tracking."),
    ('dup to 10.0.0.2 device "eth0"', 'Sends a copy of the packet to 10.0.0.2 by device "eth0".'),
    ("meta l4proto tcp tproxy ip to 127.0.0.1:9000",
     "Only TCP: hands the packet to a local socket at 127.0.0.1:9000 (transparent proxy)."),
    ("synproxy mss 1460 wscale 7 timestamp sack-perm",
     "Answers the TCP handshake itself (SYN proxy: MSS 1460, window scale 7, timestamps and selective "
     "acknowledgements)."),
    ("queue flags bypass to 1-3",
     "Hands the packet to a program through userspace queues 1-3 (accepted if no program listens)."),
    ("flow add @ft", "Offloads the connection to the flowtable ft: its later packets skip the rules."),
    ("fib daddr type local jump a", "Only to an address of this node: jump to a."),
    ("fib saddr . iif oif missing drop",
     "Only if the routing table has no route for the source address and the input interface: drops the packet."),
    ("tcp flags & (fin | syn | rst | ack) == syn accept",
     "Only if, of the TCP flags fin, syn, rst and ack, exactly syn is set: accepts the packet (this base chain is "
     "done with it)."),
    ("meta mark & 0x00004000 == 0x00000000 return",
     "Only if bit 0x00004000 of the packet mark is clear: returns to the calling chain."),
    ("ip saddr . tcp dport @s2 goto a",
     "Only if the source address and TCP destination port are in the set s2: goes to a and does not come back "
     "here."),
    ("ip ttl < 5 drop", "Only if the TTL of the IPv4 header is below 5: drops the packet."),
    ("ct status dnat ip daddr 10.0.0.1", "Only destination-NATed connections, only to 10.0.0.1: nothing else "
     "happens; the packet goes on to the next rule."),
    ("meter flood size 1024 { ip saddr timeout 10s limit rate 10/second } accept",
     "Only up to 10 packets per second, in bursts of up to 5 packets, for each source address apart (the meter "
     "flood keeps up to 1024 of them, each kept 10s): accepts the packet (this base chain is done with it)."),
    ("meter hits size 65535 { ip saddr . tcp dport counter }",
     "Counts the packet, for each source address and TCP destination port apart (the meter hits keeps up to 65535 "
     "of them)."),
    ("jump {\n\t\t\tip saddr 10.0.0.1 accept\n\t\t\tdrop\n\t\t}",
     "Jump to a chain bound to this rule, with 2 rules: (1) only from 10.0.0.1: accepts the packet (this base chain "
     "is done with it); (2) drops the packet."),
    ("goto {\n\t\t}", "Goes to a chain bound to this rule (and does not come back here), which has no rules."),
    ("update @marks { ip saddr timeout 1m : meta mark }",
     "Adds the source address, mapped to the packet mark, to the map marks for 1m, or restarts its timeout if it "
     "is there."),
    ('osf ttl loose name "Linux" accept', 'Only if the operating system the TCP SYN\'s fingerprint names (its TTL at '
     'most the fingerprint\'s) is "Linux": accepts the packet (this base chain is done with it).'),
    ("ipsec in spnum 1 ip saddr 192.0.2.1 accept", "Only if the IPv4 source address of the IPsec state 1 on its path "
     "the packet came in by is 192.0.2.1: accepts the packet (this base chain is done with it)."),
    ("ip option rr exists drop", "Only packets with the IPv4 record route option: drops the packet."),
    ("sctp chunk init num-inbound-streams > 10 drop",
     "Only if the number of inbound streams of the SCTP INIT chunk is above 10: drops the packet."),
]


@pytest.mark.parametrize(("rule", "summary"), EXAMPLES, ids=[r for r, _ in EXAMPLES])
def test_each_statement_reads_as_its_own_sentence(rule, summary):
    assert explained(rule).summary == summary


def test_return_in_a_base_chain_leaves_the_packet_to_the_policy():
    table = parse_ruleset(PREAMBLE % "accept").tables[0]
    chain = explain_chain(table.chain("base"), table)
    assert chain.rules[0].action == "ends the base chain: its policy drop decides"
    assert chain.hook is not None and chain.hook.words == (
        "type filter, hook input (packets for this node), priority filter (0), policy drop")


def test_statements_that_only_json_can_say_have_their_words_too():
    table = parse_ruleset(PREAMBLE % "accept").tables[0]
    chain = table.chain("x")
    rule = Rule("ip", "t", "x", 1, (Xt("match", "recent"), Xt("target", "CLASSIFY"),
                                    Fwd(Const("ifname", "eth1"))))
    meaning = explain_rule(rule, Place(table, chain))
    assert meaning.conditions == (
        "only if the iptables match recent holds (iptables-nft keeps it as it is: nft cannot show what it tests)",)
    assert meaning.actions == (
        "applies the iptables target CLASSIFY (iptables-nft keeps it as it is: nft cannot show what it does)",
        "sends the packet out of device eth1")


def test_an_iptables_comment_nft_does_not_show_is_said_to_be_there_and_tests_nothing():
    table = parse_ruleset(PREAMBLE % "accept").tables[0]
    rule = Rule("ip", "t", "x", 1, (Xt("match", "comment"), Verdict("accept")))
    meaning = explain_rule(rule, Place(table, table.chain("x")))
    assert meaning.conditions == ()
    assert meaning.summary == ("Carries an iptables comment (iptables-nft keeps it; nft's listing does not show it), "
                               "then accepts the packet (this base chain is done with it).")


def test_every_statement_kind_of_the_model_has_its_phrase_and_an_example():
    kinds = set(get_args(Statement))
    assert kinds == set(STATEMENTS)
    shown = {type(s) for rule, _ in EXAMPLES for s in parse_ruleset(PREAMBLE % rule).tables[0].chain("x")
             .rules[0].statements} | {Xt, Fwd}
    assert kinds <= shown, kinds - shown


def test_every_expression_kind_has_a_noun_or_words():
    assert set(get_args(Expr)) <= set(w.NOUNS) | set(w.VALUE_WORDS)


def test_every_header_field_meta_conntrack_and_routing_key_is_named():
    for protocol, fields in types.PAYLOAD_FIELDS.items():
        assert protocol in w.HEADERS
        assert set(fields) <= set(w.FIELDS), (protocol, set(fields) - set(w.FIELDS))
    assert set(types.META_KEYS) == set(w.META)
    assert set(types.CT_KEYS) | types.CT_FAMILY_KEYS <= set(w.CT)
    assert set(types.FIB_FLAGS) == set(w.FIB_FLAGS) and set(types.FIB_RESULTS) == set(w.FIB_RESULTS)
    assert set(types.RT_KEYS) == set(w.RT) and set(types.SOCKET_KEYS) == set(w.SOCKET)
    assert set(types.TCP_OPTIONS) == set(w.TCP_OPTIONS)
    assert {f for fields in types.TCP_OPTIONS.values() for f in fields} <= set(w.TCP_OPTION_FIELDS)
    assert set(types.IPV6_EXTHDRS) <= set(w.EXTHDRS)
    assert {f for fields in types.EXTHDR_FIELDS.values() for f in fields} <= set(w.FIELDS)
    assert set(types.IP_OPTIONS) == set(w.IP_OPTIONS)
    assert {f for fields in types.IP_OPTIONS.values() for f in fields} == set(w.IP_OPTION_FIELDS)
    assert {f for fields in types.SCTP_CHUNKS.values() for f in fields} == set(w.SCTP_CHUNK_FIELDS)
    assert set(types.IPSEC_KEYS) | {"saddr", "daddr"} == set(w.IPSEC_KEYS)
    assert set(types.DATATYPES) | set(types.OBJECT_MAP_TYPES) <= set(TYPE_WORDS)


def test_a_random_numgen_gives_each_number_an_equal_share():
    numgen = Numgen("random", 4)
    elements = (Element(Range(Const("integer", 0), Const("integer", 2)), Verdict("goto", "a")),
                Element(Const("integer", 3), Verdict("goto", "b")))
    assert shares(numgen, elements) == [Fraction(3, 4), Fraction(1, 4)]
    assert explained("numgen random mod 3 vmap { 0 : goto a, 1 : goto b }").summary == (
        "Picks one of 2 at random, each with probability 1/3 (for the other 1/3 nothing is found): goes to a or b "
        "and does not come back here.")


def test_priorities_are_named_and_numbered():
    assert priority_words(-110, "ip") == "dstnat - 10 (-110)"
    assert priority_words(100, "ip") == "srcnat (100)"
    assert priority_words(-200, "bridge") == "filter (-200)"
    assert priority_words(-500, "netdev") == "-500"


# -- kube-proxy: every element and per-Service chain tied to its Service, with its hash verified ---------------------


def service_of_name(name: str) -> str:
    """The Service port a kube-proxy name spells out after its hash: `ns/name/proto/port` is `ns/name:port`."""
    text = name.split("-", 2)[2].partition("__")[0]
    namespace, service, _, port = text.split("/")
    return f"{namespace}/{service}:{port}" if port else f"{namespace}/{service}"


def kube_tables(ruleset) -> list[TableExplanation]:
    return [t for t in explain_ruleset(ruleset) if t.name == "kube-proxy"]


def assert_tied(ruleset) -> int:
    """Every service-ips and service-nodeports element and every per-Service chain and set of kube-proxy's tables
    is tied to the Service its name spells out, with the hash verified; the number of elements checked."""
    checked = 0
    tables = kube_tables(ruleset)
    assert tables
    for table in tables:
        for chain in table.chains:
            if decode_name(chain.chain) is not None:
                assert chain.service == service_of_name(chain.chain), chain.chain
                assert chain.name_explained and chain.name_explained.endswith(": it verifies"), chain.name_explained
                assert all(rule.service == chain.service for rule in chain.rules)
            else:
                assert chain.name_explained is None
        for item in table.sets:
            if item.name.startswith("affinity-"):
                assert item.service == service_of_name(item.name) and item.name_explained.endswith("it verifies")
            if item.name not in ("service-ips", "service-nodeports"):
                continue
            listed = ruleset.table(table.family, table.name).set(item.name).elements
            assert len(item.elements) == len(listed)
            for element, source in zip(item.elements, listed, strict=True):
                assert isinstance(source.data, Verdict) and source.data.target is not None
                assert element.service == service_of_name(source.data.target), element
                assert element.by == "target" and source.data.target in element.meaning
                checked += 1
    return checked


@pytest.mark.parametrize("path", KUBE_LISTINGS, ids=lambda p: p.name)
def test_kube_proxys_listings_tie_every_element_and_chain_to_its_service(path):
    assert assert_tied(read_dump(path)) > 0


def test_a_listing_of_a_thousand_services_ties_every_node_port_and_service_ip():
    ruleset = parse_ruleset(nodeport_listing(1000, 3), "big.nft")
    assert assert_tied(ruleset) == 2000


def test_a_name_whose_hash_does_not_verify_is_said_to_be_so():
    text = V134.read_text().replace("ULMVA6XW-ns1/svc1", "AAAAAAAA-ns1/svc1")
    (table,) = kube_tables(parse_ruleset(text))
    chain = next(c for c in table.chains if c.chain.startswith("service-AAAAAAAA"))
    assert chain.name_explained == ('service-AAAAAAAA-ns1/svc1/tcp/p80: hash not verified (AAAAAAAA is not the start '
                                    'of base32(sha256("ns1/svc1/tcp/p80")))')
    page = nft_rule_tables(parse_ruleset(text))
    assert page.count('!!! warning "Hash not verified"') == 1


def test_kube_proxys_chains_and_sets_have_their_family_and_what_it_is_for():
    (table,) = kube_tables(read_dump(V134))
    families = {c.chain: (c.family, c.family_description) for c in table.chains}
    assert families["services"] == ("services", NFT_FIXED_CHAINS["services"])
    assert families["endpoint-5OJB2KTY-ns1/svc1/tcp/p80__10.180.0.1/80"] == ("endpoint-", NFT_HASHED_FAMILIES["endpoint-"])
    assert {s.name: s.family for s in table.sets}["service-ips"] == "service-ips"
    assert {k.rstrip("-") for k in NFT_HASHED_FAMILIES} == set(OBJECT_KINDS)
    named = {c.chain for c in table.chains} | {s.name for s in table.sets}
    assert all(c.family for c in table.chains) and all(s.family for s in table.sets)
    assert named & set(NFT_FIXED_CHAINS) and named & set(NFT_FIXED_SETS)


def test_kube_proxy_phrases_name_the_pod_network_and_the_endpoints_own_address():
    (table,) = kube_tables(read_dump(V134))
    chains = {c.chain: c for c in table.chains}
    assert chains["service-ULMVA6XW-ns1/svc1/tcp/p80"].rules[0].summary == (
        "Only to 172.30.0.41, not from the pod network 10.0.0.0/8: jump to mark-for-masquerade.")
    assert chains["endpoint-5OJB2KTY-ns1/svc1/tcp/p80__10.180.0.1/80"].rules[0].summary == (
        "Only from the endpoint's own address 10.180.0.1: jump to mark-for-masquerade.")
    assert chains["masquerading"].rules[2].summary == (
        "Masquerades: the source becomes the address of the interface the packet leaves by, ports chosen fully at "
        "random.")


def test_the_main_layout_picks_an_endpoint_in_the_dnat_itself():
    (table,) = kube_tables(read_dump(MAIN))
    chains = {c.chain: c for c in table.chains}
    assert chains["service-LAUZTJTB-ns4/svc4/tcp/p80"].rules[0].summary == (
        "Only TCP: DNAT to one of 2 at random, each with probability 1/2: 10.180.0.4:80 or 10.180.0.5:80.")
    assert chains["service-ULMVA6XW-ns1/svc1/tcp/p80"].rules[0].summary == (
        "Only TCP: DNAT to 10.180.0.1:80 (the only choice, so with probability 1).")
    assert chains["masquerading"].rules[0].summary == (
        "Only if bit 0x00004000 of the packet mark is set: flips bit 0x00004000 of the packet mark (XOR: set bits are "
        "cleared), then masquerades: the source becomes the address of the interface the packet leaves by, ports "
        "chosen fully at random.")


def test_set_elements_read_with_the_selectors_that_look_them_up():
    (table,) = kube_tables(read_dump(MAIN))
    sets = {s.name: s for s in table.sets}
    hairpin = sets["hairpin-connections"]
    assert hairpin.elements[0].meaning == "TCP from 10.180.0.1 to 10.180.0.1 port 80"
    assert sets["no-endpoint-services"].elements[2].meaning == (
        "TCP to 172.30.0.46 port 80: goes to reject-chain and does not come back")
    assert (sets["no-endpoint-services"].elements[2].service, sets["no-endpoint-services"].elements[2].by) == (
        "ns6/svc6:p80", "comment")
    assert [(e.service, e.by) for e in sets["cluster-ips"].elements][0] == ("ns1/svc1:p80", "address")
    assert sets["service-ips"].description == (
        "A verdict map from (IPv4 address, protocol, port) to a verdict, holding 9 elements.")
    affinity = next(s for s in table.sets if s.name.startswith("affinity-"))
    assert affinity.description == ("A set of IPv4 addresses, holding 0 elements; rules add to it; its elements "
                                    "expire; an element stays 3h unless it is refreshed.")


def test_the_dialect_explains_every_chain():
    ruleset = read_dump(V134)
    chains = dialect_of(ruleset).explain(ruleset)
    assert [c.chain for c in chains] == [c.name for t in ruleset.tables for c in t.chains]


# -- the command ---------------------------------------------------------------------------------------------------


def run(*args: str):
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


def test_explain_prints_every_chain_then_the_sets_and_maps_with_their_services():
    result = run("explain", str(V134))
    assert result.exit_code == 0, result.output
    out = result.output
    assert ("ip kube-proxy nat-prerouting (base chain: type nat, hook prerouting (every packet that arrives, before "
            "routing), priority dstnat (-100), policy accept; kube-proxy nat-prerouting: ") in out
    assert "  #1 line 171: Jump to services.\n      jump services\n" in out
    assert ("  - TCP to port 3001: goes to external-42NFTM6N-ns2/svc2/tcp/p80 and does not come back (serves "
            "ns2/svc2:p80, by the chain it leads to)\n      tcp . 3001 : goto external-42NFTM6N-ns2/svc2/tcp/p80\n") in out


def test_explain_json_of_a_listing_and_of_its_json_follow_the_schema(tmp_path):
    text = json_of("explain", str(V134))
    assert sum(len(c["rules"]) for c in text["chains"]) == read_dump(V134).summary()[2]
    assert {c["table_family"] for c in text["chains"]} == {"ip"}
    hooks = {c["chain"]: c["hook"] for c in text["chains"] if "hook" in c}
    assert hooks["filter-prerouting-pre-dnat"] == {
        "type": "filter", "hook": "prerouting", "priority": "dstnat - 10", "priority_value": -110, "policy": "accept",
        "devices": [], "description": "type filter, hook prerouting (every packet that arrives, before routing), "
                                      "priority dstnat - 10 (-110), policy accept"}
    service_ips = next(s for s in text["sets"] if s["name"] == "service-ips")
    assert all(e["service"] for e in service_ips["elements"])
    listed_json = LISTED / "kube-proxy-overall.json"
    from_json = json_of("explain", str(listed_json))
    from_text = json_of("explain", str(LISTED / "kube-proxy-overall.alist"))
    assert [s["elements"] for s in from_json["sets"]] == [s["elements"] for s in from_text["sets"]]
    assert [[r["summary"] for r in c["rules"]] for c in from_json["chains"]] == [
        [r["summary"] for r in c["rules"]] for c in from_text["chains"]]


def test_an_iptables_dumps_explain_json_has_no_nft_fields():
    data = json_of("explain", str(REPO_ROOT / "dumps" / "kind-nodeport" / "worker-1-after.rules"))
    assert "sets" not in data
    assert not {"table_family", "hook", "service"} & {key for chain in data["chains"] for key in chain}


def test_explain_service_shows_only_what_serves_it():
    data = json_of("explain", str(V134), "--service", "ns2/svc2")
    own = [c["chain"] for c in data["chains"] if decode_name(c["chain"])]
    assert own == ["external-42NFTM6N-ns2/svc2/tcp/p80", "service-42NFTM6N-ns2/svc2/tcp/p80",
                   "endpoint-SGOXE6O3-ns2/svc2/tcp/p80__10.180.0.2/80"]
    shared = {c["chain"]: [r["position"] for r in c["rules"]] for c in data["chains"] if not decode_name(c["chain"])}
    assert shared["services"] == [1, 2] and "masquerading" not in shared
    elements = [e for s in data["sets"] for e in s["elements"]]
    assert elements and {e["service"] for e in elements} == {"ns2/svc2:p80"}
    assert {s["name"] for s in data["sets"]} == {"cluster-ips", "service-ips", "service-nodeports",
                                                 "no-endpoint-services", "no-endpoint-nodeports"}


def test_explain_chain_keeps_the_chains_of_that_name_and_no_sets():
    result = run("explain", str(V134), "--chain", "services")
    assert result.exit_code == 0
    assert result.output.startswith("ip kube-proxy services (kube-proxy services: ")
    assert not re.search(r"^ip kube-proxy (set|map|verdict map) ", result.output, re.M)
    data = json_of("explain", str(V134), "--chain", "services")
    assert [c["chain"] for c in data["chains"]] == ["services"] and data["sets"] == []


def test_explain_of_a_service_or_chain_that_is_not_there_is_invalid_input():
    for option, value in (("--service", "ns9/nope"), ("--chain", "nope")):
        result = CliRunner().invoke(main, ["explain", str(V134), option, value])
        assert result.exit_code == 1 and f"nothing in it concerns {value}" in result.output


def test_explain_of_a_ruleset_that_is_not_kube_proxys_has_no_families(tmp_path):
    path = tmp_path / "fw.nft"
    path.write_text("table inet fw {\n\tchain input {\n\t\ttype filter hook input priority filter; policy drop;\n"
                    "\t\tct state established,related accept\n\t\ttcp dport { 22, 443 } accept\n\t}\n}\n")
    data = follows_schema("explain", run("explain", str(path), "--json").output)
    (chain,) = data["chains"]
    assert chain["family"] is None and [r["summary"] for r in chain["rules"]] == [
        "Only established or related connections: accepts the packet (this base chain is done with it).",
        "Only TCP to ports 22 or 443: accepts the packet (this base chain is done with it)."]


# -- the site's rule tables ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("path", [V134, MAIN], ids=lambda p: p.name)
def test_the_rule_tables_anchor_every_rule_and_name_every_elements_service(path):
    ruleset = read_dump(path)
    page = nft_rule_tables(ruleset)
    ids = re.findall(r'id="([^"]+)"', page)
    assert len(ids) == len(set(ids))
    for rule in ruleset.rules:
        anchor = nft_anchor(rule.family, rule.table, rule.chain, rule.position)
        assert f'id="{anchor}"' in page and re.fullmatch(r"[A-Za-z0-9_.-]+", anchor)
    for table in ruleset.tables:
        for item in table.sets:
            assert f'id="{nft_set_anchor(table.family, table.name, item.name)}"' in page
    (table,) = kube_tables(ruleset)
    for item in table.sets:
        if item.name in ("service-ips", "service-nodeports", "no-endpoint-services", "no-endpoint-nodeports",
                         "firewall-ips", "cluster-ips"):
            rows = [line for line in page.split(f'id="{nft_set_anchor("ip", "kube-proxy", item.name)}"')[1]
                    .split("\n\n<a id=")[0].splitlines() if line.startswith("| <code>")]
            assert len(rows) == len(item.elements)
            for row, element in zip(rows, item.elements, strict=True):
                assert f"| <code>{_entities(element.service)}</code> (by " in row


def _entities(text: str) -> str:
    from iptables_lens.render.markdown import text as literal

    return literal(text)


def test_the_rule_tables_show_what_a_ruleset_says_literally():
    hostile = ('table ip t {\n\tchain c {\n\t\tip saddr 10.0.0.1 accept comment "<script>alert(1)</script> | `x` '
               '*y* [z](u)"\n\t}\n}\n')
    page = nft_rule_tables(parse_ruleset(hostile))
    assert "<script>" not in page and "`x`" not in page and "[z](u)" not in page
    row = next(line for line in page.splitlines() if 'id="ip-t-c-1"' in line)
    assert row.count(" | ") == 3  # the comment's pipe is no column


# -- the kernel's own listing of what synth writes ------------------------------------------------------------------


@pytest.mark.kernel
@pytest.mark.skipif(can_run_kernel_lab() is not None, reason=str(can_run_kernel_lab()))
@pytest.mark.parametrize("layout", LAYOUTS)
def test_nfts_listing_of_a_nodeport_service_is_tied_to_it(layout):
    eps = (Endpoint("10.244.1.2", "node-0"), Endpoint("10.244.2.2", "node-1"))
    spec = ClusterSpec((ServiceSpec("default", "my-nginx-service", "10.96.118.136", type="NodePort",
                                    ports=(Port(80, 80, node_port=30080),), endpoints=eps),))
    with Namespace("nftexplain") as ns:
        loaded = ns.run(["nft", "-f", "-"], input=synth_nftables(spec, layout=layout))
        assert loaded.ok, loaded.stderr
        listing = ns.run(["nft", "list", "ruleset"]).stdout
    ruleset = parse_ruleset(listing, f"{layout}.nft")
    assert assert_tied(ruleset) == 2  # its cluster IP in service-ips, its node port in service-nodeports
    data = json.loads(CliRunner().invoke(main, ["explain", "-", "--service", "default/my-nginx-service", "--json"],
                                         input=listing).output)
    assert {e["service"] for s in data["sets"] for e in s["elements"]} == {"default/my-nginx-service"}


@pytest.mark.parametrize("name", ["worker-1-after.nft", "worker-2-after.nft"])
def test_explain_ties_the_nftables_scenarios_elements_and_chains_to_the_seed_service(name):
    # Issue 17's "Must show" 2, on the site's own nftables-mode scenario: every service-ips and service-nodeports
    # element and every per-Service chain is tied to its Service, with the hash verified.
    ruleset = read_dump(REPO_ROOT / "dumps" / "kind-nodeport-nftables" / name)
    assert assert_tied(ruleset) >= 4  # kubernetes, kube-dns (3 ports) and the seed's Service and node port
    result = CliRunner().invoke(main, ["explain", str(REPO_ROOT / "dumps" / "kind-nodeport-nftables" / name),
                                       "--service", "default/my-nginx-service", "--json"])
    data = json.loads(result.output)
    elements = [e for s in data["sets"] for e in s["elements"]]
    assert {e["service"] for e in elements} == {"default/my-nginx-service"}
    assert {s["name"] for s in data["sets"]} >= {"service-ips", "service-nodeports", "cluster-ips"}
