"""Properties of the parser over generated dumps (hypothesis)."""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from iptables_lens import DumpError, format_dump, parse
from iptables_lens.iptables.tokens import tokenize

from tests.dumpgen import mutations, random_dump
from tests.dumpgen6 import mutations6, random_dump6

seeds = st.integers(min_value=0, max_value=2**32 - 1)


@settings(max_examples=200, deadline=None)
@given(seeds)
def test_format_parse_format_is_a_fixed_point(seed):
    text = random_dump(random.Random(seed))
    once = format_dump(parse(text))
    assert once == text  # generated dumps are canonical already
    assert format_dump(parse(once)) == once


@settings(max_examples=100, deadline=None)
@given(seeds)
def test_the_fast_path_and_the_full_parser_agree(seed):
    text = random_dump(random.Random(seed))
    assert parse(text) == parse(text, fast=False)


@settings(max_examples=50, deadline=None)
@given(seeds)
def test_rules_saved_with_counters_read_alike_with_and_without_the_fast_path(seed):
    rng = random.Random(seed)
    text = "\n".join(
        f"[{rng.randint(0, 10**6)}:{rng.randint(0, 10**12)}] {line}" if line.startswith("-A ") else line
        for line in random_dump(rng).split("\n")
    )
    assert parse(text) == parse(text, fast=False)
    assert format_dump(parse(text)) == text


def _verdict(text, fast):
    try:
        return parse(text, fast=fast)
    except DumpError as error:
        return error.line, error.column, error.message, error.text


# Each family's generated dumps and the damage done to them.
FAMILIES = {"ipv4": (random_dump, mutations), "ipv6": (random_dump6, mutations6)}


@pytest.mark.parametrize("family", FAMILIES)
@settings(max_examples=50, deadline=None)
@given(seeds)
def test_the_fast_path_and_the_full_parser_refuse_damaged_dumps_alike(family, seed):
    generate, damage = FAMILIES[family]
    rng = random.Random(seed)
    for _, damaged in damage(generate(rng), rng, 12):
        assert _verdict(damaged, fast=True) == _verdict(damaged, fast=False)


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\n\r\x00"), min_size=1, max_size=60))
def test_any_comment_text_survives_quoting(comment):
    from iptables_lens.iptables.fmt import quote

    text = (
        "*filter\n:INPUT ACCEPT [0:0]\n:FORWARD ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n"
        f"-A INPUT -m comment --comment {quote(comment)} -j ACCEPT\nCOMMIT\n"
    )
    assert tokenize(text.split("\n")[4])[5].value == comment
    dump = parse(text)
    assert dump.table("filter").chain("INPUT").rules[0].comment == comment
    assert format_dump(dump) == text


# -- IPv6 dumps ----------------------------------------------------------------------------------------------


@settings(max_examples=100, deadline=None)
@given(seeds)
def test_generated_ipv6_dumps_read_alike_with_and_without_the_fast_path_and_format_back(seed):
    text = random_dump6(random.Random(seed))
    dump = parse(text)
    assert dump.family == 6 and dump == parse(text, fast=False)
    assert format_dump(dump) == text

