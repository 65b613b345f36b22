"""Pages for big dumps: no page holds hundreds of thousands of rows.

A dump of a cluster with thousands of Services is split: an index page per node and moment with the shared
chains (long ones, KUBE-SERVICES and KUBE-NODEPORTS, cut into parts) and, of an nft ruleset, its sets and maps
(big ones, `service-ips` and `cluster-ips`, cut into pages of elements), and pages of about a hundred Services
each, with every chain a Service owns under the Service's own heading, so the site search finds a Service, a
chain name or an address. Tables are written as HTML, which Markdown passes through untouched (a Markdown table
of ten thousand rows takes Python-Markdown minutes).

The splitting is the same for both dialects (`large_pages`); what a dialect contributes is a `LargeView` of its
dump: the overview, the shared blocks (a chain, a set or a map) and the Services with their blocks. This module
makes the view of an iptables-save dump (`large_dump_pages`), `render.nft_large` that of an nft ruleset.
"""

from __future__ import annotations

import html
import re
from bisect import bisect_right
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from typing import Literal

from iptables_lens.iptables.explain import explain_rule
from iptables_lens.iptables.model import Chain, Dump, Table
from iptables_lens.kube.names import decode_chain, describe_family, family
from iptables_lens.kube.services import ServiceIndex
from iptables_lens.nft.model import Ruleset
from iptables_lens.render.escape import text
from iptables_lens.render.markdown import anchor_id

SERVICES_PER_PAGE = 100
ROWS_PER_PART = 500
LARGE_DUMP_ROWS = 3000
"""A dump whose tables would have more rows than this on one page (`rows_of`) gets pages of its own."""


def rows_of(dump: Dump | Ruleset) -> int:
    """The rows a dump's tables take on a page: a row per rule, and per element of an nft ruleset's sets and
    maps."""
    rules = dump.summary()[2]
    if isinstance(dump, Ruleset):
        rules += sum(len(item.elements) for table in dump.tables for item in table.sets)
    return rules


def is_large(dump: Dump | Ruleset) -> bool:
    return rows_of(dump) > LARGE_DUMP_ROWS


PLACEHOLDER = "<!-- iptables-lens:rules {key} -->"
PLACEHOLDER_PATTERN = re.compile(r"<!-- iptables-lens:rules (\S+) -->")


@dataclass(frozen=True)
class Page:
    path: str
    title: str
    body: str
    deferred: dict[str, Callable[[], str]] = field(default_factory=dict)
    """Placeholder key -> what renders the HTML that replaces it in the built page."""


@dataclass
class ChainLocator:
    """Which page holds which chain (and, for a chain cut into parts, which rules)."""

    pages: dict[tuple[str, str, str], list[tuple[int, str]]] = field(default_factory=dict)

    def add(self, moment: str, table: str, chain: str, first_position: int, page: str) -> None:
        self.pages.setdefault((moment, table, chain), []).append((first_position, page))

    def page_of(self, moment: str, table: str, chain: str, position: int | None = None) -> str | None:
        parts = self.pages.get((moment, table, chain))
        if not parts:
            return None
        index = bisect_right([first for first, _ in parts], position or 1) - 1
        return parts[max(index, 0)][1]


@dataclass(frozen=True)
class Block:
    """A chain, a set or a map as a big dump's pages show it: its name under an anchor in the Markdown (so that
    links to it are checked), then a table of `rows` rows that `table(first, last)` renders as HTML (rows
    `first` to `last`, from 1) after Markdown. A block of more than `ROWS_PER_PART` rows is cut into pages of
    its own, named from `slug`. `located` is the (table, chain) the `ChainLocator` knows a chain by."""

    heading: str
    """Literal in Markdown: `nat KUBE-SERVICES`, `ip kube-proxy service-ips`."""
    name: str
    anchor: str
    slug: str
    rows: int
    unit: Literal["rules", "elements"]
    table: Callable[[int, int | None], str]
    located: tuple[str, str] | None = None


@dataclass(frozen=True)
class ServiceSection:
    """One Service on a Services page: its name, a line of plain text saying how it is reached (the site search
    finds a Service's addresses by it, and its chains by their names), and its blocks."""

    service: str
    summary: str
    blocks: list[Block]


@dataclass(frozen=True)
class LargeView:
    """What the pages of one big dump show, whatever its dialect: `overview`, Markdown under the index page's
    title (the counts, the families); `sections`, the index page's headings with their shared blocks; and each
    Service's section, sorted by Service."""

    overview: str
    sections: list[tuple[str, list[Block]]]
    services: list[ServiceSection]


def large_pages(view: LargeView, moment: str, base: str, title: str, locator: ChainLocator) -> list[Page]:
    """The pages of one big dump's `view` under `base` (a folder path under docs/): its index page first.

    The tables themselves are deferred: each page's Markdown holds a placeholder per table (see `Page.deferred`)
    that the site fills in after the page went through Markdown and the search index, which would each take
    minutes to read a hundred thousand rows.
    """
    index_path = f"{base}/index.md"
    pages: list[Page] = []
    index = [f"# {text(title)}\n", view.overview]
    buckets = [view.services[i:i + SERVICES_PER_PAGE] for i in range(0, len(view.services), SERVICES_PER_PAGE)]
    if buckets:
        index.append("## Services\n")
        index.append("| Page | From | To |\n| --- | --- | --- |")
        for number, bucket in enumerate(buckets, 1):
            index.append(f"| [Services {number}](services-{number}.md) | {text(bucket[0].service)} | "
                         f"{text(bucket[-1].service)} |")
        index.append("")
    index_deferred: dict[str, Callable[[], str]] = {}
    for heading, blocks in view.sections:
        index.append(f"## {heading}\n")
        for block in blocks:
            index.append(f"### {block.heading}\n")
            if block.rows <= ROWS_PER_PART:
                _locate(locator, moment, block, 1, index_path)
                index.append(_placeholder(index_deferred, block))
                continue
            index.append(f"{block.rows} {block.unit}, in parts:\n")
            for part, first in enumerate(range(1, block.rows + 1, ROWS_PER_PART), 1):
                last = min(first + ROWS_PER_PART - 1, block.rows)
                path = f"{base}/{block.slug}-{part}.md"
                _locate(locator, moment, block, first, path)
                index.append(f"- [{block.unit} {first} to {last}]({path.rsplit('/', 1)[1]})")
                deferred: dict[str, Callable[[], str]] = {}
                body = (f"# {block.heading}, {block.unit} {first} to {last}\n\n"
                        + _placeholder(deferred, block, first, last))
                pages.append(Page(path, f"{block.name} {first}-{last}", body, deferred))
            index.append("")
    for number, bucket in enumerate(buckets, 1):
        path = f"{base}/services-{number}.md"
        deferred = {}
        lines = [f"# Services {number}: {text(bucket[0].service)} to {text(bucket[-1].service)}\n"]
        for section in bucket:
            lines.append(f"## {text(section.service)}\n")
            if section.summary:
                lines.append(f"<p>{html.escape(section.summary)}</p>\n")
            for block in section.blocks:
                _locate(locator, moment, block, 1, path)
                lines.append(_placeholder(deferred, block))
        pages.append(Page(path, f"Services {number}", "\n".join(lines), deferred))
    pages.insert(0, Page(index_path, title, "\n".join(index), index_deferred))
    return pages


def _locate(locator: ChainLocator, moment: str, block: Block, first: int, page: str) -> None:
    if block.located is not None:
        locator.add(moment, *block.located, first, page)


def _placeholder(deferred: dict[str, Callable[[], str]], block: Block, first: int = 1, last: int | None = None
                 ) -> str:
    """A marker the site replaces with the block's table; the block's anchor stays in the Markdown so that
    links to it are checked. Its name is a block of raw HTML, which Markdown only stashes: a Services page
    holds hundreds of them."""
    key = str(len(deferred) + 1)
    deferred[key] = partial(block.table, first, last)
    return f'<p><a id="{block.anchor}"></a>{html.escape(block.name)}</p>\n\n{PLACEHOLDER.format(key=key)}\n'


# -- iptables-save dumps ---------------------------------------------------------------------------------------


def large_dump_pages(dump: Dump, moment: str, base: str, title: str, locator: ChainLocator) -> list[Page]:
    """The pages of one big iptables-save dump under `base` (see `large_pages`): the built-in and shared chains
    on the index page, each Service's chains on the Services pages. The search finds a Service by its heading,
    and its chains and addresses by the one-line summary each Service section carries."""
    service_index = ServiceIndex.of(dump)
    services = service_index.services
    tables, chains, rules = dump.summary()
    overview = [f"{rules} rules in {chains} chains of {tables} tables, for {len(services)} Services. The shared "
                "chains are below; each Service's own chains are on the Service pages.\n"]
    families: dict[str, int] = {}
    for table in dump.tables:
        for chain in table.chains:
            key = family(chain.name) or ("built-in" if chain.builtin else "other")
            families[key] = families.get(key, 0) + len(chain.rules)
    overview.append("| Chains | Rules |\n| --- | ---: |")
    overview += [f"| {html.escape(k)} | {v} |" for k, v in sorted(families.items())]
    overview.append("")
    shared = [_chain_block(table, chain, moment) for table in dump.tables for chain in table.chains
              if service_index.owner(table.name, chain.name) is None]
    sections = []
    for service in services:
        own = service_index.chains_of(service)
        names = ", ".join(c.name for _, c in own)
        summary = f"Chains {names}. {_reached_at(service_index, service)}"
        sections.append(ServiceSection(service, summary, [_chain_block(t, c, moment) for t, c in own]))
    view = LargeView("\n".join(overview), [("Shared chains", shared)], sections)
    return large_pages(view, moment, base, title, locator)


def _chain_block(table: Table, chain: Chain, moment: str) -> Block:
    return Block(f"{table.name} {text(chain.name)}", chain.name, anchor_id(moment, table.name, chain.name),
                 f"{table.name}-{chain.name}", len(chain.rules), "rules", partial(chain_table, table, chain, moment),
                 (table.name, chain.name))


def chain_table(table: Table, chain: Chain, moment: str, first: int = 1, last: int | None = None) -> str:
    """One chain (or rules first..last of it) as an HTML table with anchored rows, under a line of what the
    chain is (its anchor is the placeholder's, in the Markdown)."""
    head = f"<p><strong><code>{html.escape(chain.name)}</code></strong>"
    kind = family(chain.name)
    if chain.builtin:
        head += f" — built-in chain, policy <code>{html.escape(chain.policy or 'ACCEPT')}</code>"
    elif kind:
        head += f" — kube-proxy family <code>{kind}</code>: {html.escape(describe_family(kind, table.name))}"
    decoded = decode_chain(table, chain.name)
    if decoded is not None:
        verdict = "it verifies" if decoded.verified else "it does NOT verify"
        head += f"<br>{html.escape(decoded.explanation)}: {verdict}."
    rows = [head + "</p>", "<table>", "<thead><tr><th>#</th><th>Rule</th><th>What it does</th><th>Line</th></tr></thead>",
            "<tbody>"]
    # Only the rows shown are explained: a long chain is cut into parts, each explained once.
    for rule in chain.rules[first - 1 : last]:
        anchor = anchor_id(moment, table.name, chain.name, rule.position)
        meaning = explain_rule(rule, table)
        rows.append(f'<tr><td><a id="{anchor}"></a>{rule.position}</td><td><code>{html.escape(rule.text)}'
                    f"</code></td><td>{html.escape(meaning.summary)}</td><td>{rule.line}</td></tr>")
    rows += ["</tbody>", "</table>"]
    return "\n".join(rows) + "\n"


def _reached_at(index: ServiceIndex, service: str) -> str:
    """How packets reach a Service, in a sentence (for the search)."""
    reaches = index.reached_at(service)
    return "Reached at " + ", ".join(map(str, reaches)) + "." if reaches else ""
