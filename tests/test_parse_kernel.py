"""The parser against the kernel: real iptables-restore and ip6tables-restore (nf_tables and legacy) in a
network namespace.

For a corpus of the seed dumps, generated dumps and hundreds of damaged copies of them, the parser must
refuse every dump that either variant refuses, and accept every dump that both load, except where it is
deliberately stricter (DELIBERATE_STRICTNESS says where, and why). The IPv6 side does the same with
ip6tables-restore, with and without `-c`, over IPv6 dumps (the collected ones in tests/data/ip6tables and
generated ones) and their damaged copies.
"""

from __future__ import annotations

import random
from collections import Counter

import pytest
from iptables_lens import DumpError, format_dump, parse
from iptables_lens.iptables import protocols
from iptables_lens.iptables.fmt import quote
from iptables_lens.iptables.values import BadValue
from iptables_lens.netns import RESTORE_COMMANDS, Namespace, can_run_kernel_lab, leftover_namespaces

from tests.conftest import SEED_DUMPS
from tests.dumpgen import mutations, random_dump
from tests.dumpgen6 import mutations6, random_dump6
from tests.test_parse_ip6 import IP6_DUMPS

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
# What the parser refuses although ip6tables-restore loads it (with or without -c, as said), and why.
DELIBERATE_STRICTNESS_6 = {
    **DELIBERATE_STRICTNESS,
    "expected counters": "a rule's [PACKETS:BYTES] is read as ip6tables-save prints it, in digits; without -c "
    "ip6tables-restore skips it unread, and with -c reads each number with sscanf %llu (blanks, a sign, text after)",
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
        saved = saved_after_loading(text, [RESTORE_COMMANDS[variant]], [save, "-c"] if counters else [save])
        assert format_dump(parse(saved)) == saved


def saved_after_loading(text: str, restore: list[str], save: list[str]) -> str:
    """What `save` prints after `restore` loads `text`, in a fresh namespace (restore only replaces the tables
    its input names)."""
    with Namespace("roundtrip") as namespace:
        loaded = namespace.run(restore, input=text)
        assert loaded.ok, loaded.stderr
        saved = namespace.run(save)
    assert saved.ok, saved.stderr
    return saved.stdout


# -- IPv6 -------------------------------------------------------------------------------------------------------

RESTORE6 = {"nft": "ip6tables-nft-restore", "legacy": "ip6tables-legacy-restore"}


def with_counters(text: str, rng: random.Random) -> str:
    """The text with counters before each rule, as `ip6tables-save -c` prints them."""
    return "\n".join(f"[{rng.randint(0, 10**6)}:{rng.randint(0, 10**9)}] {line}" if line.startswith("-A ") else line
                     for line in text.split("\n"))


def build_corpus6() -> list[tuple[str, str]]:
    rng = random.Random(CORPUS_SEED + 6)
    originals = [(f"collected:{p.name}", p.read_text()) for p in IP6_DUMPS]
    originals += [(f"generated:{i}", random_dump6(rng)) for i in range(24)]
    originals += [(f"counted:{i}", with_counters(random_dump6(rng), rng)) for i in range(6)]
    corpus = list(originals)
    for name, text in originals:
        for index, (kind, mutated) in enumerate(mutations6(text, rng, 12)):
            corpus.append((f"{name}:{kind}:{index}", mutated))
    return corpus


def _verdict6(text: str) -> DumpError | None:
    try:
        parse(text, family=6)  # the text goes to ip6tables-restore, whatever its header says
    except DumpError as error:
        return error
    return None


@pytest.mark.parametrize("counters", [False, True], ids=["plain", "with-c"])
def test_the_parser_refuses_what_ip6tables_restore_refuses_and_accepts_what_it_loads(namespace, counters):
    corpus = build_corpus6()
    assert len(corpus) >= 300
    outcomes: Counter[str] = Counter()
    disagreements = []
    deliberate: Counter[str] = Counter()
    for name, text in corpus:
        ours = _verdict6(text)
        flags = ["-c"] if counters else []
        nft = namespace.run([RESTORE6["nft"], *flags], input=text)
        legacy = namespace.run([RESTORE6["legacy"], *flags], input=text)
        outcomes[f"nft {'ok' if nft.ok else 'refused'}, legacy {'ok' if legacy.ok else 'refused'}"] += 1
        if not (nft.ok and legacy.ok):
            if ours is None:
                disagreements.append(f"{name}: ip6tables-restore refused it (nft: {nft.stderr.strip()[:200]!r}; "
                                     f"legacy: {legacy.stderr.strip()[:200]!r}) but the parser accepted it")
        elif ours is not None:
            reasons = [k for k in DELIBERATE_STRICTNESS_6 if k in ours.message]
            deliberate.update(reasons)
            if not reasons:
                disagreements.append(f"{name}: both variants load it but the parser refused it: {ours}")
    assert not disagreements, "\n".join(disagreements)
    assert outcomes["nft ok, legacy ok"] > 30
    assert outcomes["nft refused, legacy refused"] > 100
    # The deliberate strictnesses of IPv6 dumps are met, not assumed.
    assert deliberate["unterminated quote"] and deliberate["expected counters"]


@pytest.mark.parametrize("variant,save", [("nft", "ip6tables-nft-save"), ("legacy", "ip6tables-legacy-save")])
@pytest.mark.parametrize("counters", [False, True], ids=["plain", "with-counters"])
def test_any_ipv6_dump_after_a_round_trip_through_the_kernel_formats_back_byte_for_byte(variant, save, counters):
    rng = random.Random(CORPUS_SEED + 7)
    texts = [p.read_text() for p in IP6_DUMPS] + [random_dump6(rng) for _ in range(12)]
    for text in texts:
        saved = saved_after_loading(text, [RESTORE6[variant], "-c"], [save, "-c"] if counters else [save])
        dump = parse(saved)
        assert dump.family == 6
        assert format_dump(dump) == saved


# What each restore command takes for `-p NAME`, and what iptables-save prints back, against the table.
PROTOCOL_WORDS = sorted({word for name, _, aliases in protocols.NETBASE_PROTOCOLS for word in (name, *aliases)}
                        | {name for name, _ in protocols.XTABLES_CHAIN_PROTOS} | {"IGMP", "Vrrp", "bogus", "256"})


@pytest.mark.parametrize("family", [4, 6])
def test_every_protocol_word_is_taken_and_printed_back_as_the_restore_commands_do(namespace, family):
    prefix = "ip6tables" if family == 6 else "iptables"
    wrong = []
    for word in PROTOCOL_WORDS:
        text = f"*filter\n:INPUT ACCEPT [0:0]\n-A INPUT -p {quote(word)} -j ACCEPT\nCOMMIT\n"
        try:
            number: int | None = protocols.protocol(word)
        except BadValue:
            number = None
        loaded = namespace.run([f"{prefix}-legacy-restore"], input=text)
        if loaded.ok != (number is not None):
            wrong.append(f"-p {word}: legacy {'took' if loaded.ok else 'refused'} it, we read {number}")
            continue
        if number is None or number > 255:
            continue
        printed = namespace.run([f"{prefix}-legacy-save", "-t", "filter"]).stdout
        expected = protocols.saved_protocol_name(number) or str(number)
        rule = "-A INPUT -j ACCEPT" if number == 0 else f"-A INPUT -p {expected} -j ACCEPT"
        if rule not in printed.splitlines():
            wrong.append(f"-p {word}: saved as {[r for r in printed.splitlines() if r.startswith('-A')]}, not {rule!r}")
    assert not wrong, "\n".join(wrong)


@pytest.mark.parametrize("family", [4, 6])
def test_icmp_types_and_reject_replies_are_read_as_the_restore_commands_read_them(namespace, family):
    prefix = "ip6tables" if family == 6 else "iptables"
    module, option, proto = ("icmp6", "--icmpv6-type", "ipv6-icmp") if family == 6 else ("icmp", "--icmp-type", "icmp")
    names = [name for name, *_ in protocols.ICMP_NAMES_BY_FAMILY[family]]
    texts = names + [name[:n] for name in names for n in (4, 9)] + ["1", "3/4", "1:2", "256", "x", "1/2:5", "8/"]
    rules = [f"-A INPUT -p {proto} -m {module} {option} {quote(text)}" for text in texts]
    replies = [name for pair in protocols.REJECT_WITH[4] + protocols.REJECT_WITH[6] for name in pair]
    rules += [f"-A INPUT -p tcp -j REJECT --reject-with {reply}" for reply in replies + ["ICMP", "icmp6-p", "nope"]]
    wrong = []
    for rule in rules:
        text = f"*filter\n:INPUT ACCEPT [0:0]\n{rule}\nCOMMIT\n"
        ours = _verdict6(text) if family == 6 else _parser_verdict(text)
        loaded = namespace.run([f"{prefix}-legacy-restore"], input=text)
        if loaded.ok != (ours is None):
            wrong.append(f"{rule}: {prefix}-legacy-restore {'took' if loaded.ok else 'refused'} it, we said {ours}")
    assert not wrong, "\n".join(wrong)
