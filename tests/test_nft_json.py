"""`nft -j list ruleset` reads into the same model as the text listing, less what nft 1.0.6's JSON leaves out
(`json_view`), and a mistake in it is reported at the JSON object that has it."""

from __future__ import annotations

import json

import pytest
from iptables_lens.errors import DumpError
from iptables_lens.nft.fmt import format_ruleset
from iptables_lens.nft.jsonread import json_view, parse_json
from iptables_lens.nft.parse import parse

from tests.nftcorpus import corpus

PAIRED = [r for r in corpus() if r.listed("json").exists()]
# What nft 1.0.6's JSON cannot say, so that the listing `fmt` prints of it is one nft refuses, and the parser too
# (what it says instead): a `typeof` key's expression (the JSON gives only its datatype, `integer` or `string`,
# which nft refuses after `type`, in that JSON too), a netdev chain's device (nft refuses that JSON too), an
# element's statements after its first, and a set's `dynamic` flag (nft loads that JSON, dropping or filling in
# the statements).
JSON_ONLY: dict[str, str] = {
    **{f"nftables-tests/{name}": "unqualified type" for name in (
        "maps-nat_addr_port", "maps-typeof_integer_0", "maps-typeof_maps_0", "maps-typeof_raw_0",
        "sets-0029named_ifname_dtype_0", "sets-0070stacked_l2_headers", "sets-typeof_raw_0", "sets-typeof_sets_0",
        "sets-typeof_sets_1")},
    "rare-constructs": "unqualified type",
    "nftables-tests/chains-0021prio_0": "needs a device", "nftables-tests/chains-0042chain_variable_0": "needs a device",
    "nftables-tests/nft-f-0025empty_dynset_0": "an element has statements its declaration does not have",
    "nftables-tests/sets-0060set_multistmt_0": "number of statements mismatch",
}


@pytest.mark.parametrize("ruleset", PAIRED, ids=lambda r: r.name)
def test_the_json_says_what_the_listing_says(ruleset):
    from_text = parse(ruleset.listed("alist").read_text(), ruleset.name)
    from_json = parse_json(ruleset.listed("json").read_text(), ruleset.name)
    assert json_view(from_json) == json_view(from_text)


@pytest.mark.parametrize("ruleset", [r for r in PAIRED if r.name not in JSON_ONLY], ids=lambda r: r.name)
def test_the_listing_printed_from_json_reads_back_as_the_json_says(ruleset):
    from_json = parse_json(ruleset.listed("json").read_text(), ruleset.name)
    assert json_view(parse(format_ruleset(from_json), ruleset.name)).tables == json_view(from_json).tables


@pytest.mark.parametrize("name", sorted(JSON_ONLY))
def test_a_listing_printed_from_json_that_cannot_say_it_all_is_refused_for_that(name):
    ruleset = next(r for r in PAIRED if r.name == name)
    listing = format_ruleset(parse_json(ruleset.listed("json").read_text(), name))
    with pytest.raises(DumpError) as caught:
        parse(listing, name)
    assert JSON_ONLY[name] in caught.value.message


def test_a_statement_nft_gives_as_text_reads_with_the_listings_grammar():
    # nft 1.0.6 has no JSON form for map updates and chain bindings: it writes their text.
    map_update = "update @m { ip saddr timeout 1m : 0x00000002 }"
    text = json.dumps({"nftables": [
        {"table": {"family": "ip", "name": "t", "handle": 1}},
        {"map": {"family": "ip", "table": "t", "name": "m", "handle": 2, "type": "ipv4_addr", "map": "mark",
                 "flags": ["timeout"]}},
        {"chain": {"family": "ip", "table": "t", "name": "c", "handle": 1}},
        {"rule": {"family": "ip", "table": "t", "chain": "c", "handle": 3, "expr": [map_update]}},
        {"rule": {"family": "ip", "table": "t", "chain": "c", "handle": 4,
                  "expr": ["jump {\n\t\t\tip saddr 10.0.0.1 accept\n\t\t\tdrop\n\t\t}"]}}]})
    listing = ("table ip t { # handle 1\n\tmap m { # handle 2\n\t\ttype ipv4_addr : mark\n\t\tflags timeout\n\t}\n\n"
               f"\tchain c {{ # handle 1\n\t\t{map_update} # handle 3\n\t\tjump {{\n\t\t\tip saddr 10.0.0.1 accept\n"
               "\t\t\tdrop\n\t\t} # handle 4\n\t}\n}\n")
    assert parse_json(text) == parse(listing)
    assert format_ruleset(parse_json(text)) == listing


def test_a_statement_given_as_text_that_does_not_read_is_reported_at_its_object():
    text = _document(["update @m { ip saddr"])
    with pytest.raises(DumpError) as caught:
        parse_json(text, "ruleset.json")
    assert "expected" in caught.value.message and "update @m" in caught.value.message
    assert text.splitlines()[caught.value.line - 1].strip() == '"rule": {'  # the rule that holds it


def test_what_the_json_leaves_out_is_what_the_view_drops():
    ruleset = next(r for r in PAIRED if r.name == "kube-proxy-overall")
    from_text = parse(ruleset.listed("alist").read_text())
    from_json = parse_json(ruleset.listed("json").read_text())
    assert from_text.table("ip", "kube-proxy").comment == "rules for kube-proxy"
    assert from_json.table("ip", "kube-proxy").comment is None
    assert from_text.table("ip", "kube-proxy").chain("reject-chain").comment is not None
    # Everything else prints the same: the listing from the JSON is the view's listing.
    assert format_ruleset(from_json) == format_ruleset(json_view(from_text))


def _document(*rules: dict) -> str:
    items = [{"table": {"family": "ip", "name": "t", "handle": 1}},
             {"chain": {"family": "ip", "table": "t", "name": "c", "handle": 1}}]
    items += [{"rule": {"family": "ip", "table": "t", "chain": "c", "handle": 2 + i, "expr": expr}}
              for i, expr in enumerate(rules)]
    return json.dumps({"nftables": items}, indent=1)


def test_a_json_rule_reads_as_the_text_rule():
    text = _document([{"match": {"op": "==", "left": {"payload": {"protocol": "tcp", "field": "dport"}},
                                 "right": 22}}, {"accept": None}])
    rule = parse_json(text).table("ip", "t").chain("c").rules[0]
    assert format_ruleset(parse_json(text)).splitlines()[2] == "\t\ttcp dport 22 accept # handle 2"
    assert rule.handle == 2


def test_json_the_kernel_here_cannot_load_reads_as_its_text():
    # queue and secmark need kernel modules this machine lacks: the JSON is written as libnftables-json(5) says.
    text = _document([{"queue": {"num": {"symhash": {"mod": 2}}}}],
                     [{"queue": {"num": {"range": [1, 42]}, "flags": ["bypass", "fanout"]}}],
                     [{"mangle": {"key": {"meta": {"key": "secmark"}}, "value": {"ct": {"key": "secmark"}}}}])
    listing = ("table ip t { # handle 1\n\tchain c { # handle 1\n\t\tqueue to symhash mod 2 # handle 2\n"
               "\t\tqueue flags bypass,fanout to 1-42 # handle 3\n\t\tmeta secmark set ct secmark # handle 4\n\t}\n}\n")
    assert parse_json(text) == parse(listing)
    assert format_ruleset(parse_json(text)) == listing


def test_an_unknown_statement_is_reported_at_its_object():
    text = _document([{"accept": None}], [{"frobnicate": {"x": 1}}])
    with pytest.raises(DumpError) as caught:
        parse_json(text, "ruleset.json")
    error = caught.value
    assert "unknown statement 'frobnicate'" in error.message
    assert text.splitlines()[error.line - 1].strip().startswith('{')
    assert '"frobnicate"' in text.splitlines()[error.line]


def test_a_value_of_the_wrong_type_is_reported_at_its_object():
    text = _document([{"match": {"op": "==", "left": {"payload": {"protocol": "ip", "field": "daddr"}},
                                 "right": "10.0.0.300"}}])
    with pytest.raises(DumpError) as caught:
        parse_json(text, "ruleset.json")
    assert "expected an IPv4 address" in caught.value.message and caught.value.line > 1


def test_broken_json_is_reported_where_it_breaks():
    with pytest.raises(DumpError) as caught:
        parse_json('{"nftables": [\n  {"table": }\n]}', "ruleset.json")
    assert (caught.value.line, caught.value.column) == (2, 13) and "not JSON" in caught.value.message


def test_a_reference_the_table_lacks_is_refused():
    text = _document([{"jump": {"target": "nowhere"}}])
    with pytest.raises(DumpError, match="nowhere") as caught:
        parse_json(text)
    # Reported at the rule that jumps: the line its object starts on.
    assert text.splitlines()[caught.value.line - 1].strip() == '"rule": {'
