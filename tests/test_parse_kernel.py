"""The parser against the kernel: real iptables-restore (nf_tables and legacy) in a network namespace.

For a corpus of the seed dumps, generated dumps and hundreds of damaged copies of them, the parser must
refuse every dump that either variant refuses, and accept every dump that both load, except where it is
deliberately stricter (DELIBERATE_STRICTNESS says where, and why).
"""

from __future__ import annotations

import random
from collections import Counter

import pytest
from iptables_lens import DumpError, format_dump, parse
from iptables_lens.netns import Namespace, can_run_kernel_lab, leftover_namespaces

from tests.conftest import SEED_DUMPS
from tests.dumpgen import mutations, random_dump

pytestmark = [
    pytest.mark.kernel,
    pytest.mark.skipif(can_run_kernel_lab() is not None, reason=str(can_run_kernel_lab())),
]

# What the parser refuses although both iptables-restore variants load it, and why.
DELIBERATE_STRICTNESS = {
    "unterminated quote": "iptables-restore 1.8.9 loads a line with an open quote without a word, taking the "
    "rest of the line, options and line break included, as the comment; iptables-save then prints a broken line",
    "expected a port": "ports are read as iptables-save prints them, in decimal; "
    "iptables also takes hex or octal for tcp, and wraps udp ports above 65535 to other ports",
}

CORPUS_SEED = 20240417


def build_corpus() -> list[tuple[str, str]]:
    rng = random.Random(CORPUS_SEED)
    originals = [(f"seed:{p.name}", p.read_text()) for p in SEED_DUMPS]
    originals += [(f"generated:{i}", random_dump(rng)) for i in range(24)]
    corpus = list(originals)
    for name, text in originals:
        for index, (kind, mutated) in enumerate(mutations(text, rng, 12)):
            corpus.append((f"{name}:{kind}:{index}", mutated))
    return corpus


@pytest.fixture(scope="module")
def namespace():
    before = leftover_namespaces()
    with Namespace("parse") as ns:
        yield ns
    assert leftover_namespaces() == before


def _parser_verdict(text: str) -> DumpError | None:
    try:
        parse(text)
    except DumpError as error:
        return error
    return None


def test_the_parser_refuses_what_the_kernel_refuses_and_accepts_what_it_loads(namespace):
    corpus = build_corpus()
    assert len(corpus) >= 300
    outcomes: Counter[str] = Counter()
    disagreements = []
    for name, text in corpus:
        ours = _parser_verdict(text)
        nft = namespace.restore(text, "nft")
        legacy = namespace.restore(text, "legacy")
        outcomes[f"nft {'ok' if nft.ok else 'refused'}, legacy {'ok' if legacy.ok else 'refused'}"] += 1
        if not (nft.ok and legacy.ok):
            if ours is None:
                disagreements.append(f"{name}: the kernel refused it (nft: {nft.stderr.strip()[:200]!r}; "
                                     f"legacy: {legacy.stderr.strip()[:200]!r}) but the parser accepted it")
        elif ours is not None and not any(k in ours.message for k in DELIBERATE_STRICTNESS):
            disagreements.append(f"{name}: both variants load it but the parser refused it: {ours}")
    assert not disagreements, "\n".join(disagreements)
    # The corpus really exercises both sides, including the inputs on which the variants disagree.
    assert outcomes["nft ok, legacy ok"] > 30
    assert outcomes["nft refused, legacy refused"] > 100
    assert outcomes["nft ok, legacy refused"] > 0


def test_every_deliberate_strictness_is_met_by_the_corpus(namespace):
    seen = {key: False for key in DELIBERATE_STRICTNESS}
    for _, text in build_corpus():
        ours = _parser_verdict(text)
        if ours is None:
            continue
        for key in seen:
            if key in ours.message and namespace.restore(text, "nft").ok and namespace.restore(text, "legacy").ok:
                seen[key] = True
    assert all(seen.values()), seen


@pytest.mark.parametrize("variant,save", [("nft", "iptables-nft-save"), ("legacy", "iptables-legacy-save")])
@pytest.mark.parametrize("counters", [False, True], ids=["plain", "with-counters"])
def test_any_dump_after_a_round_trip_through_the_kernel_formats_back_byte_for_byte(variant, save, counters):
    rng = random.Random(CORPUS_SEED + 1)
    texts = [p.read_text() for p in SEED_DUMPS] + [random_dump(rng) for _ in range(12)]
    for text in texts:
        # A fresh namespace each time: restore only replaces the tables its input names.
        with Namespace("roundtrip") as namespace:
            loaded = namespace.restore(text, variant)
            assert loaded.ok, loaded.stderr
            saved = namespace.run([save, "-c"] if counters else [save])
        assert saved.ok, saved.stderr
        assert format_dump(parse(saved.stdout)) == saved.stdout
