"""SCTP chunks as nft 1.0.6 lists what iptables-nft writes for `-m sctp --chunk-types`: iptables 1.8.9's
translation (extensions/libxt_sctp.c) names every chunk type it knows, `i-data`, `re-config`, `pad` and
`i-forward-tsn` among them, which nft's own grammar does not know. The listing reads, formats back byte for byte
and is explained; the tracer cannot tell which chunks a packet holds, so such a rule is undecided."""

from __future__ import annotations

from ipaddress import IPv4Address

import pytest
from iptables_lens.errors import DumpError
from iptables_lens.netns import Namespace, can_run_kernel_lab
from iptables_lens.nft import parse_ruleset
from iptables_lens.nft.explain import explain_ruleset
from iptables_lens.nft.fmt import format_ruleset
from iptables_lens.nft.jsonread import parse_json
from iptables_lens.nft.model import Match, SctpChunk, Xt
from iptables_lens.trace.context import NodeContext
from iptables_lens.trace.packet import Packet
from iptables_lens.trace.walk import trace

RULES = [
    ["-p", "sctp", "-m", "sctp", "--chunk-types", "only", "INIT", "-j", "ACCEPT"],
    ["-p", "sctp", "-m", "sctp", "--chunk-types", "all", "I_DATA,RE_CONFIG,PAD,I_FORWARD_TSN", "-j", "ACCEPT"],
    ["-p", "sctp", "-m", "sctp", "!", "--chunk-types", "only", "I_DATA", "-j", "DROP"],
]
_CHUNKS = ("data", "init", "init-ack", "sack", "heartbeat", "heartbeat-ack", "abort", "shutdown", "shutdown-ack",
           "error", "cookie-echo", "cookie-ack", "ecne", "cwr", "shutdown-complete", "i-data", "re-config", "pad",
           "asconf", "asconf-ack", "forward-tsn", "i-forward-tsn")
NEW = ("i-data", "re-config", "pad", "i-forward-tsn")


def _only(present: set[str], word: str = "exists", other: str = "missing") -> str:
    return " ".join(f"sctp chunk {name} {word if name in present else other}" for name in _CHUNKS)


# What `nft list ruleset` (nftables 1.0.6) printed once `iptables-nft -A INPUT` had added RULES in a fresh
# namespace (test_nft_lists_iptables_nft_chunk_types_as_written_here checks it again).
LISTING = (
    "table ip filter {\n\tchain INPUT {\n\t\ttype filter hook input priority filter; policy accept;\n"
    f"\t\tmeta l4proto sctp {_only({'init'})} counter packets 0 bytes 0 accept\n"
    f"\t\tmeta l4proto sctp {' '.join(f'sctp chunk {name} exists' for name in NEW)} counter packets 0 bytes 0 accept\n"
    f"\t\tmeta l4proto sctp {_only({'i-data'}, 'missing', 'exists')} counter packets 0 bytes 0 drop\n"
    "\t}\n}\n"
)


def test_the_listing_of_iptables_nft_chunk_types_reads_and_formats_back_byte_for_byte():
    assert format_ruleset(parse_ruleset(LISTING)) == LISTING


@pytest.mark.parametrize("name", NEW)
def test_a_chunk_only_iptables_names_is_read_as_a_test_of_that_chunk(name):
    rules = list(parse_ruleset(LISTING).rules)
    tests = {(s.left.name, s.right.value) for rule in rules for s in rule.statements
             if isinstance(s, Match) and isinstance(s.left, SctpChunk)}
    assert {(name, False), (name, True)} <= tests


def test_a_field_such_a_chunk_lacks_is_a_dump_error_at_its_word():
    text = LISTING.replace("sctp chunk pad exists", "sctp chunk pad tsn 1", 1)
    with pytest.raises(DumpError, match=r"sctp chunk pad has no field 'tsn': it has type, flags, length") as caught:
        parse_ruleset(text, "chunks.nft")
    line = text.splitlines()[caught.value.line - 1]
    assert caught.value.source == "chunks.nft" and line[caught.value.column - 1:].startswith("tsn 1")


@pytest.mark.parametrize(("name", "words"), [("i-data", "I-DATA"), ("re-config", "RE-CONFIG"), ("pad", "PAD"),
                                             ("i-forward-tsn", "I-FORWARD-TSN"), ("init-ack", "INIT ACK")])
def test_explain_names_each_chunk_as_its_rfc_does(name, words):
    summaries = [rule.summary for table in explain_ruleset(parse_ruleset(LISTING)) for chain in table.chains
                 for rule in chain.rules]
    assert f"only packets without the SCTP {words} chunk" in summaries[0]
    assert (f"only packets with the SCTP {words} chunk" in summaries[1]) == (name in NEW)


def test_the_tracer_leaves_a_rule_on_chunks_undecided_a_packet_does_not_say_which_it_holds():
    node = NodeContext.simple("node-a", "192.0.2.10/24")
    packet = Packet(IPv4Address("192.0.2.50"), IPv4Address("192.0.2.10"), protocol="sctp", dport=9)
    [outcome] = trace(parse_ruleset(LISTING), packet, node).outcomes
    assert outcome.verdict == "UNDECIDED" and "sctpchunk" in outcome.reason


@pytest.mark.kernel
@pytest.mark.skipif(can_run_kernel_lab() is not None, reason=str(can_run_kernel_lab()))
def test_nft_lists_iptables_nft_chunk_types_as_written_here():
    with Namespace("sctp") as ns:
        for rule in RULES:
            assert ns.run(["iptables-nft", "-A", "INPUT", *rule]).ok
        listed = ns.run(["nft", "list", "ruleset"])
        as_json = ns.run(["nft", "-j", "list", "ruleset"])
        refused = ns.run(["nft", "add table ip t; add chain ip t c; add rule ip t c sctp chunk i-data exists"])
    assert listed.stdout == LISTING
    # In JSON nft gives the match iptables-nft keeps, not its translation.
    statements = [rule.statements for rule in parse_json(as_json.stdout).rules]
    assert all(Xt("match", "sctp") in found for found in statements) and len(statements) == len(RULES)
    # nft's own grammar has no such chunk: only a listing of iptables-nft's rules names it.
    assert not refused.ok and "syntax error" in refused.stderr
