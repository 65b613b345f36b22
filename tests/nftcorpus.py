"""The nft corpus (tests/data/nft/): its rulesets, what each needs of the kernel, loading one into a network
namespace and listing it back, and the listings nft 1.0.6 printed for each (`listed/`), for the tests that
run without root.

    python -m tests.nftcorpus        (as root) lists every ruleset of the corpus again into listed/

A ruleset's header names its source and licence; a `# needs: flowtable, queue` line names kernel features
it needs beyond the ones every kernel the tests run on has (the test skips it where they are missing).
"""

from __future__ import annotations

import re
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from iptables_lens.netns import Namespace

CORPUS = Path(__file__).parent / "data" / "nft"
LISTED = CORPUS / "listed"
# Interfaces some rulesets name as devices (flowtables, netdev chains): veth pairs, which every kernel has.
DEVICES = ("eth0", "eth1", "br-lan", "pppoe-wan", "lo1")
# A ruleset in nft's command language (add, insert, define, flush, include) rather than a listing.
_COMMANDS = re.compile(r"^\s*(add|insert|define|flush|include|delete|create|replace)\b", re.MULTILINE)
_NEEDS = re.compile(r"^# needs: (.*)$", re.MULTILINE)
# What each feature a ruleset may need is probed with: a ruleset the kernel refuses without it.
FEATURE_PROBES = {
    "flowtable": "table inet probe {\n\tflowtable f {\n\t\thook ingress priority 0\n\t\tdevices = { eth0 }\n\t}\n}\n",
    "queue": "table inet probe {\n\tchain c {\n\t\tqueue to 0\n\t}\n}\n",
    "secmark": 'table inet probe {\n\tsecmark s {\n\t\t"system_u:object_r:ssh_server_packet_t:s0"\n\t}\n}\n',
    "ct-helpers": 'table inet probe {\n\tct helper h {\n\t\ttype "ftp" protocol tcp\n\t}\n}\n',
}


@dataclass(frozen=True)
class Ruleset:
    path: Path

    @property
    def name(self) -> str:
        return str(self.path.relative_to(CORPUS).with_suffix(""))

    @property
    def text(self) -> str:
        return self.path.read_text()

    @property
    def needs(self) -> frozenset[str]:
        found = _NEEDS.search(self.text)
        return frozenset(n.strip() for n in found.group(1).split(",")) if found else frozenset()

    @property
    def is_listing(self) -> bool:
        """Whether the ruleset is written as nft lists rulesets (so that the parser can read it as it is)."""
        return _COMMANDS.search(self.text) is None

    def listed(self, suffix: str) -> Path:
        return LISTED / f"{self.name.replace('/', '--')}.{suffix}"


def corpus() -> list[Ruleset]:
    """Every ruleset of the corpus, in a stable order."""
    return [Ruleset(p) for p in sorted(CORPUS.rglob("*.nft")) if LISTED not in p.parents]


class NftNamespace:
    """A network namespace with the corpus' devices, loading rulesets with `nft -f` (after `flush ruleset`) and
    listing them back."""

    def __init__(self, ns: Namespace):
        self.ns = ns
        for device in DEVICES:
            ns.run(["ip", "link", "add", device, "type", "veth", "peer", "name", f"{device}-peer"])

    def load(self, text: str) -> tuple[bool, str]:
        """(accepted, nft's error output)."""
        result = self.ns.run(["nft", "-f", "-"], input="flush ruleset\n" + text)
        return result.ok, result.stderr

    def list(self, *flags: str) -> str:
        result = self.ns.run(["nft", *flags, "list", "ruleset"])
        assert result.ok, result.stderr
        return result.stdout


def missing_features(nft: NftNamespace) -> set[str]:
    """The features of FEATURE_PROBES this kernel lacks."""
    missing = {feature for feature, probe in FEATURE_PROBES.items() if not nft.load(probe)[0]}
    nft.load("")
    return missing


def regenerate() -> Iterator[str]:
    """List every ruleset nft accepts into listed/ (`nft -a list ruleset` and `nft -j list ruleset`)."""
    LISTED.mkdir(exist_ok=True)
    with Namespace("corpus") as ns:
        nft = NftNamespace(ns)
        for ruleset in corpus():
            accepted, _ = nft.load(ruleset.text)
            for suffix in ("alist", "json"):
                ruleset.listed(suffix).unlink(missing_ok=True)
            if not accepted:
                yield f"{ruleset.name}: refused"
                continue
            ruleset.listed("alist").write_text(nft.list("-a"))
            ruleset.listed("json").write_text(nft.list("-j"))
            yield f"{ruleset.name}: listed"


if __name__ == "__main__":
    for line in regenerate():
        print(line, file=sys.stderr)
