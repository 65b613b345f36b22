"""Plain English for rules: what each criterion and match asks of a packet, and what the target does.

Each match module and target has its explainer in a registry (`matches.MATCH_EXPLAINERS`,
`targets.TARGET_EXPLAINERS`); this module puts their phrases together into one explanation per rule.

The site's rule tables and the CLI show these phrases next to the rule text. They are plain text; whoever
puts them in HTML or Markdown escapes them.

>>> from iptables_lens import parse_file
>>> nat = parse_file("dumps/kind-nodeport/worker-1-after.rules").table("nat")
>>> rule = nat.chain("KUBE-NODEPORTS").rules[0]
>>> explanation = explain_rule(rule, nat)
>>> explanation.conditions
('only TCP', 'only to port 30080')
>>> explanation.summary
'Only TCP to port 30080: jump to KUBE-EXT-OL4YPD43MBS7WVHD.'
>>> explanation.service
'default/my-nginx-service'
"""

from __future__ import annotations

from dataclasses import dataclass

from iptables_lens import kube
from iptables_lens.iptables.explain.criteria import criterion_phrase, is_positive_protocol
from iptables_lens.iptables.explain.matches import match_phrases
from iptables_lens.iptables.explain.targets import action_phrase
from iptables_lens.iptables.explain.words import capitalized
from iptables_lens.iptables.model import Chain, Rule, Table
from iptables_lens.iptables.values import statistic_probability

__all__ = ["ChainExplanation", "RuleExplanation", "explain_chain", "explain_rule", "statistic_probability"]


@dataclass(frozen=True, slots=True)
class RuleExplanation:
    """What one rule does, in words.

    `conditions` has a phrase for each thing the rule tests (the comment is not one), in the order the kernel
    tests them: address, interface and protocol criteria first, then match modules in rule order. `action`
    says what the target does, and `summary` is one sentence made of both.
    """

    conditions: tuple[str, ...]
    action: str
    summary: str
    comment: str | None
    family: str | None
    service: str | None


@dataclass(frozen=True, slots=True)
class ChainExplanation:
    """A chain in words: its kube-proxy family (None for chains kube-proxy does not write), what that
    family is for, the Service its hashed name was decoded to, and each rule's explanation in order."""

    chain: str
    family: str | None
    family_description: str | None
    decoded: kube.ChainName | None
    rules: tuple[RuleExplanation, ...]


def explain_chain(chain: Chain, table: Table) -> ChainExplanation:
    """Explain every rule of `chain`, which belongs to `table`."""
    family = kube.family(chain.name)
    return ChainExplanation(
        chain=chain.name,
        family=family,
        family_description=kube.describe_family(family, table.name) if family else None,
        decoded=kube.decode_chain(table, chain.name),
        rules=tuple(explain_rule(rule, table) for rule in chain.rules),
    )


def explain_rule(rule: Rule, table: Table) -> RuleExplanation:
    """Explain `rule`, which belongs to `table` (some phrases depend on the rule's neighbours).

    Never raises for a rule the parser accepted: a match module or target without an explanation here is
    shown as its own text followed by "(not explained)".
    """
    conditions = [criterion_phrase(c, rule, table) for c in rule.criteria]
    protocol = next((i for i, c in enumerate(rule.criteria) if c.flag == "-p" and is_positive_protocol(c)), None)
    for match in rule.matches:
        conditions.extend(match_phrases(match))
    action = action_phrase(rule, table)
    comment = rule.comment
    return RuleExplanation(
        conditions=tuple(conditions),
        action=action,
        summary=_summary(conditions, protocol, action),
        comment=comment,
        family=kube.family(rule.chain),
        service=kube.service_of_comment(comment),
    )


# -- the summary sentence -----------------------------------------------------------------------------------


def _summary(conditions: list[str], protocol: int | None, action: str) -> str:
    """One sentence: "Only TCP to 10.96.0.1 port 443, not from the pod network 10.244.0.0/16: jump to X."

    Address, port and interface phrases read as an extension of the protocol ("only TCP to port 80"), so
    they follow it without their own "only", grouped by direction ("from A port 5 to B port 80"); the other
    phrases are listed after, in rule order.
    """
    if not conditions:
        return capitalized(action) + "."
    rest = list(conditions)
    lead = [rest.pop(protocol)] if protocol is not None else []
    by_direction: dict[str, list[str]] = {}
    for phrase in list(rest):
        direction = next((d for d in ("from", "to", "arriving", "leaving") if phrase.startswith(f"only {d} ")), None)
        if direction is None:
            continue
        rest.remove(phrase)
        pieces = by_direction.setdefault(direction, [])
        piece = phrase[len("only "):]
        port = f"{direction} port"
        if piece.startswith(port) and pieces and all(" port" not in p for p in pieces):
            # "to 10.96.0.1" and "to port 443" read as "to 10.96.0.1 port 443".
            piece = piece[len(direction) + 1 :]
        pieces.append(piece)
    extension = [piece for pieces in by_direction.values() for piece in pieces]
    head = " ".join(lead + extension)
    if head and not lead:
        head = "only " + head
    parts = [head, *rest] if head else rest
    separator = "; " if any("," in p for p in parts) else ", "
    return f"{capitalized(separator.join(parts))}: {action}."
