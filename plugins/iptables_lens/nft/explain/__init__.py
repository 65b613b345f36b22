"""Plain English for an nft ruleset: every rule of every chain, base chains with their hook, type, priority and
policy, and every set and map with its elements, as `iptables.explain` does for iptables-save dumps.

Each statement kind has its phrase in `statements.STATEMENTS` (tests a condition, or does something); each
expression kind its words in `words.NOUNS` (what it reads) or `words.VALUE_WORDS` (a value). In kube-proxy's
tables, chains and sets get their family and what it is for, per-Service names are decoded with their hash
checked, and elements are tied to the Service port they serve (`kube.nft_services.NftServiceIndex`).

The phrases are plain text; whoever puts them in HTML or Markdown escapes them.

>>> from iptables_lens.dialects import read_dump
>>> ruleset = read_dump("tests/data/kube-proxy-nftables/listings/TestOverallNFTablesRules.v1.34.nft")
>>> tables = explain_ruleset(ruleset)
>>> chains = {c.chain: c for c in tables[0].chains}
>>> print(chains["service-LAUZTJTB-ns4/svc4/tcp/p80"].rules[1].summary)
Picks one of 2 at random, each with probability 1/2: goes to endpoint-UNZV3OEC-ns4/svc4/tcp/p80__10.180.0.4/80 or endpoint-5RFCDDV7-ns4/svc4/tcp/p80__10.180.0.5/80 and does not come back here.
>>> chains["nat-prerouting"].hook.words
'type nat, hook prerouting (every packet that arrives, before routing), priority dstnat (-100), policy accept'
"""

from __future__ import annotations

from dataclasses import dataclass

from iptables_lens.iptables.explain.words import capitalized
from iptables_lens.kube.nft_families import describe_nft_family, name_explanation
from iptables_lens.kube.nft_services import NftOwner, NftServiceIndex, kube_proxy_tables
from iptables_lens.nft.explain.place import Place
from iptables_lens.nft.explain.sets import ElementExplanation, SetExplanation, explain_set, lookup_keys
from iptables_lens.nft.explain.statements import STATEMENTS, sentence
from iptables_lens.nft.hooks import BRIDGE_PRIORITIES, STANDARD_PRIORITIES
from iptables_lens.nft.model import Chain, Hook, Rule, Ruleset, Table

__all__ = [
    "STATEMENTS", "ChainExplanation", "ElementExplanation", "HookExplanation", "RuleExplanation",
    "SetExplanation", "TableExplanation", "explain_chain", "explain_rule", "explain_ruleset", "explain_set",
    "explain_table", "priority_words",
]

HOOK_WORDS: dict[str, str] = {
    "prerouting": "every packet that arrives, before routing",
    "input": "packets for this node",
    "forward": "packets this node routes on",
    "output": "packets this node sends",
    "postrouting": "every packet that leaves, after routing",
    "ingress": "every packet a device receives, before prerouting",
    "egress": "every packet a device sends, last",
}


@dataclass(frozen=True, slots=True)
class RuleExplanation:
    """What one rule does, in words: a phrase for each thing it tests (`conditions`) and each thing it does
    (`actions`), in rule order; `action` the actions as one phrase, `summary` one sentence of both. `service`
    is the Service port kube-proxy named the rule's chain after (None for shared chains and other tables)."""

    position: int
    conditions: tuple[str, ...]
    actions: tuple[str, ...]
    action: str
    summary: str
    comment: str | None
    service: str | None


@dataclass(frozen=True, slots=True)
class HookExplanation:
    """A base chain's hook: its type, hook, priority (as nft names it near a standard one, and the number the
    kernel orders by) and policy, and `words` saying all of it."""

    type: str
    hook: str
    priority: str
    priority_value: int
    policy: str
    devices: tuple[str, ...]
    words: str


@dataclass(frozen=True, slots=True)
class ChainExplanation:
    """A chain in words: its table, its hook if it is a base chain, its kube-proxy family (None for chains
    kube-proxy does not write) and what that family is for, how a per-Service name is made and whether its hash
    verifies, the Service port it is named after, and each rule's explanation in order."""

    table_family: str
    table: str
    chain: str
    hook: HookExplanation | None
    family: str | None
    family_description: str | None
    name_explained: str | None
    service: str | None
    comment: str | None
    rules: tuple[RuleExplanation, ...]


@dataclass(frozen=True, slots=True)
class TableExplanation:
    """A table's chains and its sets and maps, explained, in listing order."""

    family: str
    name: str
    chains: tuple[ChainExplanation, ...]
    sets: tuple[SetExplanation, ...]


def priority_words(value: int, family: str) -> str:
    """A priority as the named one within 10 of it and its number: "dstnat - 10 (-110)", "filter (0)"; a number
    far from every name is only the number."""
    for name, standard in BRIDGE_PRIORITIES if family == "bridge" else STANDARD_PRIORITIES:
        offset = value - standard
        if abs(offset) <= 10:
            named = name if not offset else f"{name} {'+' if offset > 0 else '-'} {abs(offset)}"
            return f"{named} ({value})"
    return str(value)


def _hook(hook: Hook, family: str) -> HookExplanation:
    priority = priority_words(hook.priority.value, family)
    what = HOOK_WORDS.get(hook.hook)
    words = f"type {hook.type}, hook {hook.hook}" + (f" ({what})" if what else "")
    if hook.devices:
        words += f" on {', '.join(hook.devices)}"
    words += f", priority {priority}, policy {hook.policy or 'accept'}"
    return HookExplanation(type=hook.type, hook=hook.hook, priority=priority.partition(" (")[0],
                           priority_value=hook.priority.value, policy=hook.policy or "accept", devices=hook.devices,
                           words=words)


def explain_rule(rule: Rule, place: Place) -> RuleExplanation:
    """Explain `rule`, at `place` (its table and chain: some phrases depend on them). Never raises for a rule
    the parser accepted: every statement kind has its phrase."""
    conditions, actions, words = sentence(rule.statements, place)
    action = ", then ".join(actions) if actions else "nothing else happens; the packet goes on to the next rule"
    owner = place.owner(rule.chain)
    return RuleExplanation(position=rule.position, conditions=tuple(conditions), actions=tuple(actions),
                           action=action, summary=capitalized(words) + ".", comment=rule.comment,
                           service=owner.service_port if owner else None)


def explain_chain(chain: Chain, table: Table, index: NftServiceIndex | None = None,
                  positions: frozenset[int] | None = None) -> ChainExplanation:
    """Explain every rule of `chain` (only those at `positions`, if given), which belongs to `table`; with the
    ruleset's Service `index`, read what kube-proxy means by it."""
    place = Place(table, chain, index)
    owner: NftOwner | None = place.owner(chain.name)
    family = place.family
    return ChainExplanation(
        table_family=table.family, table=table.name, chain=chain.name,
        hook=_hook(chain.hook, table.family) if chain.hook is not None else None,
        family=family, family_description=describe_nft_family(family) if family else None,
        name_explained=name_explanation(owner) if owner else None,
        service=owner.service_port if owner else None, comment=chain.comment,
        rules=tuple(explain_rule(rule, place) for rule in chain.rules
                    if positions is None or rule.position in positions),
    )


def explain_table(table: Table, index: NftServiceIndex | None = None) -> TableExplanation:
    """Every chain, set and map of `table`, explained."""
    keys = lookup_keys(table)
    return TableExplanation(
        family=table.family, name=table.name,
        chains=tuple(explain_chain(chain, table, index) for chain in table.chains),
        sets=tuple(explain_set(item, table, index, keys) for item in table.sets),
    )


def explain_ruleset(ruleset: Ruleset) -> tuple[TableExplanation, ...]:
    """Every table of `ruleset`, explained; kube-proxy's tables with their Services."""
    index = NftServiceIndex.of(ruleset) if kube_proxy_tables(ruleset) else None
    return tuple(explain_table(table, index) for table in ruleset.tables)
