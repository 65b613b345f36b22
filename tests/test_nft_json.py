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
from tests.test_nft_parse import UNSUPPORTED

# nft 1.0.6 writes some statements into its JSON as their text (no JSON form): map updates.
NO_JSON_FORM = {"nftables-tests/maps-typeof_maps_update_0"}
PAIRED = [r for r in corpus() if r.listed("json").exists() and r.name not in UNSUPPORTED | NO_JSON_FORM]


@pytest.mark.parametrize("ruleset", PAIRED, ids=lambda r: r.name)
def test_the_json_says_what_the_listing_says(ruleset):
    from_text = parse(ruleset.listed("alist").read_text(), ruleset.name)
    from_json = parse_json(ruleset.listed("json").read_text(), ruleset.name)
    assert json_view(from_json) == json_view(from_text)


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
