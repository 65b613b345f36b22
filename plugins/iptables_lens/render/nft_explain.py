"""What `iptables-lens explain` shows of an nft ruleset: its chains and its sets and maps, as the documented JSON
models (`render.json.ExplainedChain`, `ExplainedSet`), and their plain text.

With `--service ns/name`, only what serves that Service: the rules of shared chains that look it up (a set or
map holding its elements, a jump to one of its chains), then its own chains in the order a packet goes through
them (firewall, external, service or local, endpoint), and the sets and maps with only its elements.

>>> from iptables_lens.dialects import read_dump
>>> ruleset = read_dump("tests/data/kube-proxy-nftables/listings/TestOverallNFTablesRules.v1.34.nft")
>>> chains, sets = nft_explain_views(ruleset, service="ns4/svc4")
>>> [c.chain for c in chains]  # doctest: +NORMALIZE_WHITESPACE
['cluster-ips-check', 'services', 'external-LAUZTJTB-ns4/svc4/tcp/p80', 'service-LAUZTJTB-ns4/svc4/tcp/p80',
 'endpoint-5RFCDDV7-ns4/svc4/tcp/p80__10.180.0.5/80', 'endpoint-UNZV3OEC-ns4/svc4/tcp/p80__10.180.0.4/80']
>>> [(s.name, len(s.elements)) for s in sets]
[('cluster-ips', 1), ('service-ips', 2)]
"""

from __future__ import annotations

from collections.abc import Iterator

from iptables_lens.kube.nft_services import OWNED_BY_WORDS, NftServiceIndex, kube_proxy_tables
from iptables_lens.nft.explain import ChainExplanation, explain_chain, explain_set
from iptables_lens.nft.explain.sets import SetExplanation, lookup_keys
from iptables_lens.nft.fmtrules import format_rule
from iptables_lens.nft.model import Chain, Element, Match, Rule, Ruleset, SetRef, Table, Verdict, VerdictMap
from iptables_lens.render.json import (
    ExplainedChain,
    ExplainedElement,
    ExplainedHook,
    ExplainedRule,
    ExplainedSet,
)

# The order a packet meets a Service's own chains in.
_PATH_ORDER = {"firewall": 0, "external": 1, "service": 2, "local": 2, "endpoint": 3}


def chain_view(chain: Chain, table: Table, explained: ChainExplanation) -> ExplainedChain:
    """The JSON model of an explained chain (only the rules `explained` kept)."""
    rules = {rule.position: rule for rule in chain.rules}
    hook = explained.hook
    return ExplainedChain(
        table=table.name, chain=chain.name, builtin=chain.is_base, policy=hook.policy if hook else None,
        family=explained.family, family_description=explained.family_description,
        name_explained=explained.name_explained,
        rules=[ExplainedRule(position=r.position, line=rules[r.position].line, text=format_rule(rules[r.position]),
                             summary=r.summary, conditions=list(r.conditions), action=r.action, comment=r.comment,
                             service=r.service) for r in explained.rules],
        table_family=table.family, service=explained.service,
        hook=ExplainedHook(type=hook.type, hook=hook.hook, priority=hook.priority,
                           priority_value=hook.priority_value, policy=hook.policy, devices=list(hook.devices),
                           description=hook.words) if hook else None,
    )


def set_view(explained: SetExplanation) -> ExplainedSet:
    """The JSON model of an explained set or map."""
    return ExplainedSet(
        table_family=explained.table_family, table=explained.table, name=explained.name, kind=explained.kind,
        key=explained.key, data=explained.data, description=explained.description, flags=list(explained.flags),
        timeout=explained.timeout, comment=explained.comment, family=explained.family,
        family_description=explained.family_description, name_explained=explained.name_explained,
        service=explained.service,
        elements=[ExplainedElement(text=e.text, meaning=e.meaning, service=e.service, by=e.by,  # type: ignore[arg-type]
                                   comment=e.comment) for e in explained.elements])


def nft_explain_views(ruleset: Ruleset, service: str | None = None, chain: str | None = None
                      ) -> tuple[list[ExplainedChain], list[ExplainedSet]]:
    """The chains and the sets and maps `explain` shows: all of them; with `service`, what serves it; with
    `chain`, the chains of that name (and no sets)."""
    index = NftServiceIndex.of(ruleset) if kube_proxy_tables(ruleset) else None
    if service is not None:
        return _of_service(ruleset, index, service) if index is not None else ([], [])
    chains = [chain_view(c, t, explain_chain(c, t, index)) for t in ruleset.tables for c in t.chains
              if chain is None or c.name == chain]
    if chain is not None:
        return chains, []
    sets = [set_view(explain_set(item, t, index, keys)) for t in ruleset.tables
            for keys in (lookup_keys(t),) for item in t.sets]
    return chains, sets


def _looks_up(rule: Rule, sets: set[str], chains: set[str]) -> bool:
    for stmt in rule.statements:
        if isinstance(stmt, Match) and isinstance(stmt.right, SetRef) and stmt.right.name in sets:
            return True
        if isinstance(stmt, VerdictMap) and isinstance(stmt.data, SetRef) and stmt.data.name in sets:
            return True
        if isinstance(stmt, Verdict) and stmt.target in chains:
            return True
    return False


def _of_service(ruleset: Ruleset, index: NftServiceIndex, service: str
                ) -> tuple[list[ExplainedChain], list[ExplainedSet]]:
    owners, elements = index.of_service(service)
    chains: list[ExplainedChain] = []
    sets: list[ExplainedSet] = []
    for table in kube_proxy_tables(ruleset):
        own = {o.name: o for o in owners if index.chain_owner(table.family, table.name, o.name) is o}
        held: dict[str, frozenset[Element]] = {name: frozenset(found) for (family, name_of_table, name), found
                                               in elements.items() if (family, name_of_table) == (table.family, table.name)}
        used = set(held) | {name for name in own if name.startswith("affinity-")}
        shared = [c for c in table.chains if c.name not in own]
        for c in shared:
            positions = frozenset(r.position for r in c.rules if _looks_up(r, used, set(own)))
            if positions:
                chains.append(chain_view(c, table, explain_chain(c, table, index, positions)))
        mine = sorted((c for c in table.chains if c.name in own), key=lambda c: _PATH_ORDER[own[c.name].kind])
        chains.extend(chain_view(c, table, explain_chain(c, table, index)) for c in mine)
        keys = lookup_keys(table)
        for item in table.sets:
            if item.name in own:
                sets.append(set_view(explain_set(item, table, index, keys)))
            elif item.name in held:
                sets.append(set_view(explain_set(item, table, index, keys, only=held[item.name])))
    return chains, sets


def set_lines(sets: list[ExplainedSet]) -> Iterator[str]:
    """Plain text for a pipe: one block per set or map, one line per element and its text under it."""
    for item in sets:
        name = f"{item.table_family} {item.table} {item.kind} {item.name}"
        yield f"{name} (kube-proxy {item.family}: {item.family_description})" if item.family else name
        yield f"  {item.description}"
        if item.name_explained:
            yield f"  name: {item.name_explained}"
        for element in item.elements:
            serves = f" (serves {element.service}, {OWNED_BY_WORDS[element.by]})" if element.service and element.by else ""
            yield f"  - {element.meaning}{serves}"
            yield f"      {element.text}"
        yield ""
