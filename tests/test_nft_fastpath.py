"""The fast path reads the common rule and element lines without the grammar, and gives what the grammar
gives: the same model for every listing, the same error for every damaged one."""

from __future__ import annotations

import random
from unittest import mock

import pytest
from iptables_lens.errors import DumpError
from iptables_lens.nft import statements
from iptables_lens.nft.parse import parse

from tests.bench.scale import nodeport_listing
from tests.nftcorpus import corpus
from tests.nftmutate import mutations

LISTED = [r for r in corpus() if r.listed("alist").exists()]


def _outcome(text: str, fast: bool):
    """The ruleset with each rule's line and text (which equality leaves out), or the error."""
    try:
        ruleset = parse(text, "x", fast=fast)
    except DumpError as error:
        return str(error)
    return ruleset, [(r.line, r.text) for r in ruleset.rules]


@pytest.mark.parametrize("ruleset", LISTED, ids=lambda r: r.name)
def test_both_paths_read_a_listing_alike(ruleset):
    text = ruleset.listed("alist").read_text()
    assert _outcome(text, fast=True) == _outcome(text, fast=False)


def test_both_paths_read_a_generated_kube_proxy_listing_alike():
    text = nodeport_listing(60, 3)
    assert _outcome(text, fast=True) == _outcome(text, fast=False)


@pytest.mark.parametrize("seed", range(6))
def test_both_paths_read_a_damaged_listing_alike(seed):
    rng = random.Random(seed)
    text = nodeport_listing(8, 2) if seed % 2 else rng.choice(LISTED).listed("alist").read_text()
    for _description, damaged in mutations(text, rng, 60):
        assert _outcome(damaged, fast=True) == _outcome(damaged, fast=False), _description


def test_the_common_kube_proxy_lines_do_not_need_the_grammar():
    text = nodeport_listing(50, 3)
    with mock.patch.object(statements, "rule_body", wraps=statements.rule_body) as grammar:
        ruleset = parse(text)
    rules = ruleset.summary()[2]
    # The base chains' rules, each read once; none of the 400 per-Service rules.
    assert grammar.call_count < 40 < rules
