"""The site's rule tables for an nft ruleset: a section per table with its chains (each rule's text and what it
does, with an anchor of its own) and its sets and maps (each element with the Service port it serves).

Anchors are `FAMILY-TABLE-CHAIN-POSITION` for a rule and `FAMILY-TABLE-CHAIN` for a chain (`ip-kube-proxy-services-2`),
`FAMILY-TABLE-set-NAME` for a set or map, each part with what an HTML id or a URL would have to escape replaced
by `_` (kube-proxy's `service-ULMVA6XW-ns1/svc1/tcp/p80` is `service-ULMVA6XW-ns1_svc1_tcp_p80`). Everything
that comes from the ruleset (names, rule text, comments, element text) is written as literal text.

>>> from iptables_lens.dialects import read_dump
>>> ruleset = read_dump("tests/data/kube-proxy-nftables/listings/TestOverallNFTablesRules.v1.34.nft")
>>> page = nft_rule_tables(ruleset)
>>> 'id="ip-kube-proxy-service-ULMVA6XW-ns1_svc1_tcp_p80-2"' in page
True
>>> nft_anchor("ip", "kube-proxy", "endpoint-5OJB2KTY-ns1/svc1/tcp/p80__10.180.0.1/80", 1)
'ip-kube-proxy-endpoint-5OJB2KTY-ns1_svc1_tcp_p80__10.180.0.1_80-1'
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from iptables_lens.kube.nft_services import OWNED_BY_WORDS, NftServiceIndex, kube_proxy_tables
from iptables_lens.nft.explain import ChainExplanation, explain_chain
from iptables_lens.nft.explain.sets import explain_set, lookup_keys
from iptables_lens.nft.fmtrules import format_rule
from iptables_lens.nft.model import Chain, Expr, Ruleset, Set, Table
from iptables_lens.render import escape as md

_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]")


def _safe(part: str) -> str:
    return _UNSAFE.sub("_", part)


def nft_anchor(family: str, table: str, chain: str, position: int | None = None, prefix: str = "") -> str:
    """The HTML id of a chain of an nft ruleset, or of its rule at `position`, on a page of rule tables
    (`prefix` and a dash first, for a page that shows several rulesets: `before-ip-kube-proxy-services-1`)."""
    anchor = "-".join([_safe(family), _safe(table), _safe(chain)] + ([str(position)] if position is not None else []))
    return f"{prefix}-{anchor}" if prefix else anchor


def nft_set_anchor(family: str, table: str, name: str, prefix: str = "") -> str:
    """The HTML id of a set or map of an nft ruleset on a page of rule tables."""
    anchor = f"{_safe(family)}-{_safe(table)}-set-{_safe(name)}"
    return f"{prefix}-{anchor}" if prefix else anchor


def nft_rule_tables(ruleset: Ruleset, prefix: str = "", level: int = 3) -> str:
    """Markdown for every table of `ruleset`: its chains with each rule's position, text, meaning (and line,
    for a listing read from text), then its sets and maps with each element, what it means and its Service.
    Headings start at `level`; anchors carry `prefix` (see `nft_anchor`)."""
    index = NftServiceIndex.of(ruleset) if kube_proxy_tables(ruleset) else None
    lines = any(rule.line for rule in ruleset.rules)
    out: list[str] = []
    for table in ruleset.tables:
        out.append(f"{'#' * level} {md.code(f'table {table.family} {table.name}')}\n")
        if table.comment:
            out.append(f"Its comment: {md.code(table.comment)}.\n")
        out.append(_chains(table, index, prefix, lines, level + 1))
        if table.sets:
            out.append(_sets(table, index, prefix, level + 1))
    return "\n".join(out)


def _chains(table: Table, index: NftServiceIndex | None, prefix: str, lines: bool, level: int) -> str:
    out = [f"{'#' * level} Chains\n"]
    empty: list[Chain] = []
    for chain in table.chains:
        if not chain.rules:
            empty.append(chain)
            continue
        out.append(chain_section(table, chain, index, prefix, lines))
    if empty:
        names = ", ".join(f'<a id="{nft_anchor(table.family, table.name, c.name, prefix=prefix)}"></a>'
                          f"{md.code(c.name)}" for c in empty)
        out.append(f"Chains with no rules: {names}.\n")
    return "\n".join(out)


def _chain_head(chain: Chain, explained: ChainExplanation, anchor: str) -> list[str]:
    head = f'<a id="{anchor}"></a>**{md.code(chain.name)}**'
    if explained.hook is not None:
        head += f" — base chain: {md.text(explained.hook.words)}"
    if explained.family:
        head += f" — kube-proxy family {md.code(explained.family)}: {md.text(explained.family_description or '')}"
    return [head + "\n", *_notes(explained.comment, explained.name_explained, explained.service)]


def _notes(comment: str | None, name_explained: str | None, service: str | None) -> list[str]:
    """The comment of a chain or set, and how its per-Service name is made: a warning when its hash does not
    verify."""
    out = [f"Its comment: {md.code(comment)}.\n"] if comment else []
    if name_explained and name_explained.endswith(": it verifies"):
        out.append(f"The name serves {md.code(service or '')}: {md.text(name_explained)}.\n")
    elif name_explained:
        out.append(f'!!! warning "Hash not verified"\n\n    {md.text(name_explained)}\n')
    return out


def chain_section(table: Table, chain: Chain, index: NftServiceIndex | None = None, prefix: str = "",
                  lines: bool = True) -> str:
    """Markdown for one chain of `table`: its heading with what it is (hook, kube-proxy family, decoded name) and
    a row per rule with its anchor, text, meaning and (with `lines`) its line in the listing."""
    explained = explain_chain(chain, table, index)
    anchor = nft_anchor(table.family, table.name, chain.name, prefix=prefix)
    out = _chain_head(chain, explained, anchor)
    out.append("| # | Rule | What it does |" + (" Line |" if lines else ""))
    out.append("| ---: | --- | --- |" + (" ---: |" if lines else ""))
    for rule, meaning in zip(chain.rules, explained.rules, strict=True):
        rule_anchor = nft_anchor(table.family, table.name, chain.name, rule.position, prefix)
        row = (f'| <a id="{rule_anchor}"></a>{rule.position} | {md.code(format_rule(rule))} | '
               f"{md.text(meaning.summary)} |")
        out.append(row + (f" {rule.line} |" if lines else ""))
    return "\n".join(out) + "\n"


def _sets(table: Table, index: NftServiceIndex | None, prefix: str, level: int) -> str:
    out = [f"{'#' * level} Sets and maps\n"]
    keys = lookup_keys(table)
    out.extend(set_section(table, item, index, prefix, keys) for item in table.sets)
    return "\n".join(out)


def set_section(table: Table, item: Set, index: NftServiceIndex | None = None, prefix: str = "",
                keys: Mapping[str, Expr] | None = None) -> str:
    """Markdown for one set or map of `table`: its heading with its type and what it holds, and a row per element
    with what it means and the Service port it serves. `keys` is `lookup_keys(table)`, for many sets of one
    table."""
    explained = explain_set(item, table, index, keys)
    anchor = nft_set_anchor(table.family, table.name, item.name, prefix)
    written = explained.key + (f" : {explained.data}" if explained.data is not None else "")
    head = f'<a id="{anchor}"></a>**{md.code(explained.name)}** — {explained.kind}, {md.code(written)}'
    if explained.family:
        head += f" — kube-proxy {md.code(explained.family)}: {md.text(explained.family_description or '')}"
    out = [head + "\n", md.text(explained.description) + "\n",
           *_notes(explained.comment, explained.name_explained, explained.service)]
    if not explained.elements:
        return "\n".join(out)
    out.append("| Element | What it means | Service |")
    out.append("| --- | --- | --- |")
    for element in explained.elements:
        serves = (f"{md.code(element.service)} ({OWNED_BY_WORDS[element.by]})" if element.service and element.by
                  else "no Service")
        out.append(f"| {md.code(element.text)} | {md.text(element.meaning)} | {serves} |")
    return "\n".join(out) + "\n"
