"""The checks of an nftables-mode scenario's rulesets (`nft list ruleset` listings), as `scenario.checks` makes
them of iptables-save dumps: each yields positioned problems.

- each declared Service appears in kube-proxy's tables of a node's "after" ruleset as its nftables proxier
  writes it (`scenario.nft_service_checks`), and a headless or ExternalName Service not at all;
- the addresses in every table's rules and set and map elements agree with the facts (`checks.AddressFacts`);
- every per-Service chain and set of kube-proxy's tables is named with a hash that verifies
  (`kube.nft_services.decode_name`);
- with `kernel=True` (root), `nft -c -f` accepts each ruleset in a fresh network namespace.

A problem in a ruleset is at the line and column of the rule, chain, set or element it is about. An element's
position is found in the listing: `nft list ruleset` prints the elements of a set in the order the model keeps
them, as `nft.fmt` prints them back, so each is the first occurrence of its text after the one before it.
"""

from __future__ import annotations

import bisect
import dataclasses
import ipaddress
from collections.abc import Iterator
from pathlib import Path

from iptables_lens.errors import DumpError
from iptables_lens.kube.names import nft_name_base
from iptables_lens.kube.nft_services import NftServiceIndex, kube_proxy_tables
from iptables_lens.nft.fmtrules import format_element
from iptables_lens.nft.model import Chain, Const, Element, Prefix, Range, Rule, Ruleset, Set
from iptables_lens.scenario.load import Scenario
from iptables_lens.scenario.model import DumpFile

_ADDRESS_TYPES = ("ipv4_addr", "ipv6_addr")


class Listing:
    """Where the objects of a ruleset read from `path` are written in it, to make problems at them."""

    def __init__(self, path: Path):
        self.path = path
        try:
            self.lines = path.read_text(encoding="utf-8").splitlines()
        except (OSError, UnicodeDecodeError):
            self.lines = []
        self._elements: dict[int, list[tuple[int, int]]] = {}

    def at(self, line: int, column: int, message: str) -> DumpError:
        """A problem at `line` and `column` of the listing (line 0: the file as a whole, as for a JSON ruleset)."""
        text = self.lines[line - 1] if 0 < line <= len(self.lines) else None
        return DumpError(str(self.path), line, column if line else 0, message, text)

    def _indented(self, line: int, message: str) -> DumpError:
        text = self.lines[line - 1] if 0 < line <= len(self.lines) else ""
        return self.at(line, len(text) - len(text.lstrip("\t ")) + 1, message)

    def rule(self, rule: Rule, message: str) -> DumpError:
        return self._indented(rule.line, message)

    def declaration(self, item: Chain | Set, message: str) -> DumpError:
        """A problem at the line that opens a chain, set or map."""
        return self._indented(item.line, message)

    def element(self, item: Set, element: Element, message: str) -> DumpError:
        """A problem at `element` of the set or map `item`; at the set's line if the element is not found."""
        positions = self._element_positions(item)
        for index, candidate in enumerate(item.elements):
            if candidate is element and index < len(positions):
                line, column = positions[index]
                return self.at(line, column, message)
        return self.declaration(item, message)

    def _element_positions(self, item: Set) -> list[tuple[int, int]]:
        if id(item) in self._elements:
            return self._elements[id(item)]
        found: list[tuple[int, int]] = []
        if 0 < item.line <= len(self.lines):
            end = next((i for i in range(item.line, len(self.lines)) if self.lines[i] == "\t}"), len(self.lines))
            block = "\n".join(self.lines[item.line - 1:end])
            starts = [0] + [i + 1 for i, ch in enumerate(block) if ch == "\n"]
            cursor = block.find("elements = {")
            for element in item.elements if cursor >= 0 else ():
                text = format_element(element)
                at = block.find(text, cursor)
                while at >= 0 and block[at + len(text):at + len(text) + 1] not in (",", " ", "\n", ""):
                    at = block.find(text, at + 1)
                if at < 0:
                    break
                line_index = bisect.bisect_right(starts, at) - 1
                found.append((item.line + line_index, at - starts[line_index] + 1))
                cursor = at + len(text)
        self._elements[id(item)] = found
        return found


def _addresses(node: object) -> Iterator[Const]:
    """Every address constant of a statement, expression or element, however deep; not those that start a
    prefix or a range, which are networks."""
    if isinstance(node, Const):
        if node.type in _ADDRESS_TYPES:
            yield node
    elif isinstance(node, tuple):
        for item in node:
            yield from _addresses(item)
    elif dataclasses.is_dataclass(node) and not isinstance(node, Prefix | Range):
        for field in dataclasses.fields(node):
            yield from _addresses(getattr(node, field.name))


def ruleset_problems(scenario: Scenario, entry: DumpFile, ruleset: Ruleset) -> Iterator[DumpError]:
    """Every way the ruleset of `entry` disagrees with the scenario's facts or has an unverified name."""
    from iptables_lens.scenario.checks import AddressFacts
    from iptables_lens.scenario.nft_service_checks import nft_service_problems

    listing = Listing(scenario.folder / entry.file)
    index = NftServiceIndex.of(ruleset)
    if entry.moment == "after":
        yield from nft_service_problems(scenario, entry.node, index, listing, tuple(kube_proxy_tables(ruleset)))
    facts, reported = AddressFacts(scenario.meta), set()

    def unexpected(node: object) -> Iterator[str]:
        for const in _addresses(node):
            address = ipaddress.ip_address(str(const.value))
            if address not in reported and (problem := facts.problem(address)) is not None:
                reported.add(address)
                yield problem

    for table in ruleset.tables:
        for rule in table.rules:
            yield from (listing.rule(rule, problem) for problem in unexpected(rule.statements))
        for item in table.sets:
            for element in item.elements:
                yield from (listing.element(item, element, problem) for problem in unexpected((element.key, element.data)))
    yield from _hash_problems(ruleset, index, listing)


def _hash_problems(ruleset: Ruleset, index: NftServiceIndex, listing: Listing) -> Iterator[DumpError]:
    for table in kube_proxy_tables(ruleset):
        items: list[Chain | Set] = [*table.chains, *table.sets]
        for item in items:
            owner = index.chain_owner(table.family, table.name, item.name)
            # A name kube-proxy cut to its maximum length ends in "..." and cannot be checked.
            if owner is None or owner.verified or item.name.endswith("..."):
                continue
            kind, _, rest = item.name.partition("-")
            right = f"{kind}-{nft_name_base(rest.partition('-')[2])}"
            yield listing.declaration(item, f"{'chain' if isinstance(item, Chain) else 'set'} {item.name}: its hash "
                                            f"does not verify; kube-proxy names it {right}")


def kernel_ruleset_problems(scenario: Scenario, entries: list[DumpFile]) -> Iterator[DumpError]:
    """What `nft -c -f` says of each ruleset of `entries`, each in a fresh network namespace (root)."""
    from iptables_lens.netns import Namespace

    for entry in entries:
        path = scenario.folder / entry.file
        if not path.is_file():
            continue
        with Namespace("validate") as ns:
            result = ns.run(["nft", "-c", "-f", "-"], input=path.read_bytes())
        if not result.ok:
            yield DumpError(str(path), 0, 0, f"the kernel refuses it (nft -c -f): {result.stderr.strip()}")
