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
from iptables_lens.nft.explain.sets import SetExplanation, explain_set, lookup_keys
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


# A chain's or a set's head, rows and notes are written once, as HTML that is literal in Markdown too; a
# section of a page joins them as Markdown (`chain_section`), a big ruleset's deferred table as HTML
# (`chain_html`, for render.nft_large).

Note = tuple[bool, str]
"""A paragraph under a head: (whether it is a warning that a name's hash does not verify, its text)."""


Head = tuple[str, str]
"""A chain's or a set's head: its name (in bold on the page) and what follows it on the line."""


def _chain_head(chain: Chain, explained: ChainExplanation) -> Head:
    rest = ""
    if explained.hook is not None:
        rest += f" — base chain: {md.text(explained.hook.words)}"
    if explained.family:
        rest += f" — kube-proxy family {md.code(explained.family)}: {md.text(explained.family_description or '')}"
    return md.code(chain.name), rest


def _notes(comment: str | None, name_explained: str | None, service: str | None) -> list[Note]:
    """The comment of a chain or set, and how its per-Service name is made: a warning when its hash does not
    verify."""
    out = [(False, f"Its comment: {md.code(comment)}.")] if comment else []
    if name_explained and name_explained.endswith(": it verifies"):
        out.append((False, f"The name serves {md.code(service or '')}: {md.text(name_explained)}."))
    elif name_explained:
        out.append((True, md.text(name_explained)))
    return out


def _markdown(anchor: str, head: Head, notes: list[Note], header: tuple[str, ...], align: tuple[str, ...],
              rows: list[list[str]]) -> str:
    """A head, its notes and its table of rows, as Markdown."""
    out = [f'<a id="{anchor}"></a>**{head[0]}**{head[1]}\n']
    for warning, note in notes:
        out.append(f'!!! warning "Hash not verified"\n\n    {note}\n' if warning else f"{note}\n")
    if rows:
        out.append("| " + " | ".join(header) + " |")
        out.append("| " + " | ".join(align) + " |")
        out.extend("| " + " | ".join(row) + " |" for row in rows)
    return "\n".join(out) + "\n"


def _html(head: Head, notes: list[Note], header: tuple[str, ...], rows: list[list[str]]) -> str:
    """The same as HTML (with no anchor on the head: a big ruleset's page keeps it in the Markdown)."""
    out = [f"<p><strong>{head[0]}</strong>{head[1]}</p>"]
    for warning, note in notes:
        out.append('<div class="admonition warning"><p class="admonition-title">Hash not verified</p>'
                   f"<p>{note}</p></div>" if warning else f"<p>{note}</p>")
    if rows:
        out.append("<table>\n<thead><tr>" + "".join(f"<th>{h}</th>" for h in header) + "</tr></thead>\n<tbody>")
        out.extend("<tr><td>" + "</td><td>".join(row) + "</td></tr>" for row in rows)
        out.append("</tbody>\n</table>")
    return "\n".join(out) + "\n"


_RULE_HEADER = ("#", "Rule", "What it does", "Line")
_RULE_ALIGN = ("---:", "---", "---", "---:")


def _rule_rows(table: Table, chain: Chain, explained: ChainExplanation, prefix: str, lines: bool) -> list[list[str]]:
    by_position = {meaning.position: meaning for meaning in explained.rules}
    rows = []
    for rule in chain.rules:
        meaning = by_position.get(rule.position)
        if meaning is None:
            continue
        rule_anchor = nft_anchor(table.family, table.name, chain.name, rule.position, prefix)
        row = [f'<a id="{rule_anchor}"></a>{rule.position}', md.code(format_rule(rule)), md.text(meaning.summary)]
        rows.append(row + ([str(rule.line)] if lines else []))
    return rows


def chain_section(table: Table, chain: Chain, index: NftServiceIndex | None = None, prefix: str = "",
                  lines: bool = True) -> str:
    """Markdown for one chain of `table`: its heading with what it is (hook, kube-proxy family, decoded name) and
    a row per rule with its anchor, text, meaning and (with `lines`) its line in the listing."""
    explained = explain_chain(chain, table, index)
    columns = len(_RULE_HEADER) - (not lines)
    return _markdown(nft_anchor(table.family, table.name, chain.name, prefix=prefix), _chain_head(chain, explained),
                     _notes(explained.comment, explained.name_explained, explained.service), _RULE_HEADER[:columns],
                     _RULE_ALIGN[:columns], _rule_rows(table, chain, explained, prefix, lines))


def chain_html(table: Table, chain: Chain, index: NftServiceIndex | None, prefix: str, lines: bool,
               first: int = 1, last: int | None = None) -> str:
    """`chain_section` as HTML, of the rules at positions `first` to `last` (to the end for None) only, with no
    anchor on its head (whoever places it keeps that in the Markdown)."""
    end = len(chain.rules) if last is None else last
    explained = explain_chain(chain, table, index, frozenset(range(first, end + 1)))
    columns = len(_RULE_HEADER) - (not lines)
    return _html(_chain_head(chain, explained), _notes(explained.comment, explained.name_explained, explained.service),
                 _RULE_HEADER[:columns], _rule_rows(table, chain, explained, prefix, lines))


def _sets(table: Table, index: NftServiceIndex | None, prefix: str, level: int) -> str:
    out = [f"{'#' * level} Sets and maps\n"]
    keys = lookup_keys(table)
    out.extend(set_section(table, item, index, prefix, keys) for item in table.sets)
    return "\n".join(out)


_ELEMENT_HEADER = ("Element", "What it means", "Service")
_ELEMENT_ALIGN = ("---", "---", "---")


def _set_head(explained: SetExplanation) -> Head:
    written = explained.key + (f" : {explained.data}" if explained.data is not None else "")
    rest = f" — {explained.kind}, {md.code(written)}"
    if explained.family:
        rest += f" — kube-proxy {md.code(explained.family)}: {md.text(explained.family_description or '')}"
    return md.code(explained.name), rest


def _set_notes(explained: SetExplanation) -> list[Note]:
    return [(False, md.text(explained.description)),
            *_notes(explained.comment, explained.name_explained, explained.service)]


def _element_rows(explained: SetExplanation, first: int = 1, last: int | None = None) -> list[list[str]]:
    rows = []
    for element in explained.elements[first - 1:last]:
        serves = (f"{md.code(element.service)} ({OWNED_BY_WORDS[element.by]})" if element.service and element.by
                  else "no Service")
        rows.append([md.code(element.text), md.text(element.meaning), serves])
    return rows


def set_section(table: Table, item: Set, index: NftServiceIndex | None = None, prefix: str = "",
                keys: Mapping[str, Expr] | None = None) -> str:
    """Markdown for one set or map of `table`: its heading with its type and what it holds, and a row per element
    with what it means and the Service port it serves. `keys` is `lookup_keys(table)`, for many sets of one
    table."""
    explained = explain_set(item, table, index, keys)
    return _markdown(nft_set_anchor(table.family, table.name, item.name, prefix), _set_head(explained),
                     _set_notes(explained), _ELEMENT_HEADER, _ELEMENT_ALIGN, _element_rows(explained))


def set_html(explained: SetExplanation, first: int = 1, last: int | None = None) -> str:
    """`set_section` of an explained set or map as HTML, of its elements `first` to `last` (from 1, to the end
    for None) only, with no anchor on its head."""
    return _html(_set_head(explained), _set_notes(explained), _ELEMENT_HEADER, _element_rows(explained, first, last))
