"""The nft parser against nft and the kernel, in network namespaces.

For each ruleset of the corpus (tests/data/nft: kube-proxy's, Docker's, firewalld's, libvirt's, netavark's,
OpenWrt fw4's, a home router's and nftables' own test listings) nft loads it into a fresh ruleset; for each it
accepts, the listing (`nft list ruleset`, `nft -a`) reads, formats back byte for byte, and says what its JSON
(`nft -j`) says. A listing nft would load is read by the parser and one nft refuses is refused, on the corpus
and on damaged copies of its listings, except where DIFFERENCES says why not. The tables iptables-nft keeps
(loaded from the project's iptables-save dumps) read and format back, comments nft prints as nothing included,
and so do the iptables extensions nft prints in iptables' own spelling of their translation, as listed.
"""

from __future__ import annotations

import json
import random
import re
from collections import Counter
from dataclasses import replace
from pathlib import Path

import pytest
from iptables_lens.errors import DumpError
from iptables_lens.netns import Namespace, can_run_kernel_lab
from iptables_lens.nft.fmt import format_ruleset
from iptables_lens.nft.jsonread import json_view, parse_json
from iptables_lens.nft.model import Ruleset, Xt
from iptables_lens.nft.parse import parse

from tests.bench.scale import nodeport_listing
from tests.nftcorpus import NftNamespace, corpus, missing_features
from tests.nftmutate import mutations

pytestmark = [
    pytest.mark.kernel,
    pytest.mark.skipif(can_run_kernel_lab() is not None, reason=str(can_run_kernel_lab())),
]

ROOT = Path(__file__).parent.parent
# Where the parser and nft 1.0.6 deliberately disagree, and why. Each entry recognises its cases from the
# parser's message (what it refused) or the text (what nft refused).
DIFFERENCES = {
    "beyond 32 bits": "nft takes a set's size, a priority or a conntrack timeout beyond 32 bits and cuts it to 32 bits "
                      "(nftables 1.1.6 still keeps a set's size in 32 bits); the parser refuses it rather than read a "
                      "number that is not the one written",
    "dstnat at output": "nftables 1.0.9 names priority -100 `dstnat` at the output hook too, and lists it so; the "
                        "parser reads such listings, which 1.0.6 refuses",
    "ct proto in a concatenation": "nft 1.0.6 gives `ct proto-src` and `ct proto-dst` no datatype until a protocol is "
                                   "matched, so it refuses them in a concatenation, which 1.0.7 reads (nftables "
                                   "commit f470e181: nftables' own expected listing maps/typeof_maps_concat_update_0 "
                                   "holds one); the parser reads them as 1.0.7 does",
}
_TOO_BIG = re.compile(r"exceeds valid range 0-4294967295|priority -?[0-9]+ is out of range")
_DSTNAT_OUTPUT = re.compile(r"type nat hook output priority dstnat")
_CT_PROTO_CONCAT = re.compile(r"\. ct (?:original |reply )?proto-(?:src|dst)\b|ct (?:original |reply )?proto-(?:src|dst) \.")
RESULTS = ROOT / "build" / "nft-differential.json"


def _difference(text: str, nft_accepted: bool, error: DumpError | None) -> str | None:
    """Which deliberate difference explains nft and the parser disagreeing on `text`, or None."""
    if nft_accepted and error is not None and _TOO_BIG.search(error.message):
        return "beyond 32 bits"
    if not nft_accepted and error is None:
        if _DSTNAT_OUTPUT.search(text):
            return "dstnat at output"
        if _CT_PROTO_CONCAT.search(text):
            return "ct proto in a concatenation"
    return None


def _parse(text: str) -> DumpError | None:
    try:
        parse(text, "ruleset.nft")
    except DumpError as error:
        return error
    return None


@pytest.fixture(scope="module")
def nft():
    with Namespace("nftcorpus") as ns:
        found = NftNamespace(ns)
        found.missing = missing_features(found)  # type: ignore[attr-defined]
        yield found


@pytest.fixture(scope="module")
def tally():
    counts: Counter[str] = Counter()
    yield counts
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(json.dumps(dict(sorted(counts.items())), indent=2) + "\n")


CORPUS = corpus()


@pytest.mark.parametrize("ruleset", CORPUS, ids=lambda r: r.name)
def test_a_ruleset_nft_accepts_reads_formats_and_says_what_its_json_says(nft, tally, ruleset):
    accepted, _ = nft.load(ruleset.text)
    if ruleset.needs & nft.missing:
        # This kernel lacks a feature the ruleset uses (flowtables, secmark, queue): it must refuse it. The
        # listing itself is held to nft's own expected text without the kernel (test_nft_parse).
        assert not accepted, f"the kernel lacks {sorted(ruleset.needs & nft.missing)}, yet loaded {ruleset.name}"
        tally["corpus the kernel cannot load"] += 1
        return
    tally["corpus"] += 1
    tally["corpus accepted by nft"] += accepted
    if ruleset.is_listing:
        error = _parse(ruleset.text)
        if (error is None) != accepted:
            reason = _difference(ruleset.text, accepted, error)
            assert reason is not None, f"nft {'accepts' if accepted else 'refuses'} it, the parser: {error}"
            tally[f"difference: {reason}"] += 1
    if not accepted:
        return
    plain, with_handles, document = nft.list(), nft.list("-a"), nft.list("-j")
    for listing in (plain, with_handles):
        assert format_ruleset(parse(listing, ruleset.name)) == listing
    assert json_view(parse_json(document)) == json_view(parse(with_handles))
    tally["corpus listings read and formatted back"] += 1


@pytest.mark.parametrize("ruleset", CORPUS, ids=lambda r: r.name)
def test_nft_and_the_parser_agree_on_damaged_listings(nft, tally, ruleset):
    accepted, _ = nft.load(ruleset.text)
    if not accepted:
        # Nothing to list, so nothing to damage: a ruleset this kernel lacks a feature for, or one nft refuses
        # for a reason the parser's deliberate differences name (the test above holds both to that).
        assert ruleset.needs & nft.missing or _difference(ruleset.text, False, _parse(ruleset.text)) is not None \
            or _parse(ruleset.text) is not None, f"nft refuses {ruleset.name}, and no difference says why"
        return
    listing = nft.list()
    count = 3 if ruleset.name.startswith("nftables-tests/") else 16
    disagreements = []
    for description, damaged in mutations(listing, random.Random(ruleset.name), count):
        accepted, nft_error = nft.load(damaged)
        error = _parse(damaged)
        tally["mutations"] += 1
        tally["mutations nft accepted"] += accepted
        if (error is None) == accepted:
            continue
        reason = _difference(damaged, accepted, error)
        if reason is None:
            disagreements.append(f"{description}: nft {'accepts' if accepted else 'refuses'} ({nft_error.strip()}), "
                                 f"the parser {'accepts' if error is None else 'refuses'} ({error})")
        else:
            tally[f"difference: {reason}"] += 1
    assert not disagreements, "\n".join(disagreements)


def test_a_generated_kube_proxy_listing_is_what_nft_prints(nft):
    text = nodeport_listing(40, 3)
    assert nft.load(text)[0]
    assert nft.list() == text
    assert parse(nft.list()) == parse(text)


# -- the tables iptables-nft keeps ------------------------------------------------------------------------

IPTABLES_DUMPS = sorted(ROOT.glob("dumps/*/*.rules")) + sorted(ROOT.glob("tests/data/ip6tables/*.rules"))


def _without_rules(ruleset: Ruleset, handles: set[int]) -> Ruleset:
    tables = tuple(replace(t, chains=tuple(
        replace(c, rules=tuple(replace(r, position=0) for r in c.rules if r.handle not in handles))
        for c in t.chains)) for t in ruleset.tables)
    return replace(ruleset, tables=tables)


@pytest.mark.parametrize("dump", IPTABLES_DUMPS, ids=lambda p: str(p.relative_to(ROOT)))
def test_the_tables_iptables_nft_keeps_read_and_format_back(nft, tally, dump):
    family = 6 if "ip6tables" in str(dump) or dump.stem.endswith("-v6") else 4
    nft.load("")
    result = nft.ns.restore(dump.read_text(), "nft", family=family)
    if not result.ok:
        pytest.skip(f"iptables-nft-restore refuses it: {result.stderr.strip()}")
    with_handles, document = nft.list("-a"), nft.list("-j")
    from_json = parse_json(document, str(dump))
    # An iptables extension lists as its translation (which reads as the statements it spells, in iptables'
    # spelling), or as nothing (a comment, which reads from the blanks around it): the JSON names it.
    xt = {r.handle for r in from_json.rules if any(isinstance(s, Xt) for s in r.statements)}
    translated = {r.handle for r in from_json.rules if any(isinstance(s, Xt) and s.name != "comment"
                                                           for s in r.statements)}
    from_text = parse(with_handles, str(dump))
    for ours, theirs in zip(format_ruleset(from_text).splitlines(), with_handles.splitlines(), strict=True):
        assert ours == theirs
    # fmt prints a rule as listed only where nft spells what it reads as otherwise: an extension's translation.
    spelled = {r.handle for r in from_text.rules if r.spelled is not None}
    assert spelled <= translated, f"not as nft prints them, yet no translation: {sorted(spelled - translated)}"
    tally["iptables-nft rules nft lists in iptables' spelling of a translation, formatted back as listed"] += len(spelled)
    assert json_view(_without_rules(from_json, translated)) == json_view(_without_rules(from_text, translated))
    tally["iptables-nft dumps"] += 1
    tally["iptables-nft rules with iptables extensions"] += len(xt)
    tally["iptables-nft rules whose only extensions are comments, read and formatted back"] += len(xt - translated)
