"""Pages for big dumps: no page holds hundreds of thousands of rows.

A dump of a cluster with thousands of Services is split: an index page per node and moment with the built-in
and shared chains (long shared chains, KUBE-SERVICES and KUBE-NODEPORTS, cut into parts), and pages of about a
hundred Services each, with every chain a Service owns under the Service's own heading, so the site search
finds a Service, a chain name or an address. Tables are written as HTML, which Markdown passes through
untouched (a Markdown table of ten thousand rows takes Python-Markdown minutes).
"""

from __future__ import annotations

import html
import re
from bisect import bisect_right
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial

from iptables_lens.iptables.explain import explain_rule
from iptables_lens.iptables.model import Chain, Dump, Table
from iptables_lens.kube.names import decode_chain, describe_family, family
from iptables_lens.kube.services import ServiceIndex
from iptables_lens.render.markdown import anchor_id

SERVICES_PER_PAGE = 100
ROWS_PER_PART = 500
LARGE_DUMP_RULES = 3000


def is_large(dump: Dump) -> bool:
    return dump.summary()[2] > LARGE_DUMP_RULES


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


def chain_table(table: Table, chain: Chain, moment: str, first: int = 1, last: int | None = None) -> str:
    """One chain (or rules first..last of it) as an HTML table with anchored rows."""
    head = f'<p><a id="{anchor_id(moment, table.name, chain.name)}"></a><strong><code>{html.escape(chain.name)}</code></strong>'
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


def large_dump_pages(dump: Dump, moment: str, base: str, title: str, locator: ChainLocator) -> list[Page]:
    """The pages of one big dump under `base` (a folder path under docs/).

    The rule tables themselves are deferred: each page's Markdown holds a placeholder per table (see
    `Page.deferred`) that the site fills in after the page went through Markdown and the search index, which
    would each take minutes to read a hundred thousand rows. The search finds a Service by its heading, and
    its chains and addresses by the one-line summary each Service section carries.
    """
    service_index = ServiceIndex.of(dump)
    services = service_index.services
    pages: list[Page] = []
    index: list[str] = [f"# {html.escape(title)}\n"]
    tables, chains, rules = dump.summary()
    index.append(f"{rules} rules in {chains} chains of {tables} tables, for {len(services)} Services. The shared "
                 "chains are below; each Service's own chains are on the Service pages.\n")
    families: dict[str, int] = {}
    for table in dump.tables:
        for chain in table.chains:
            key = family(chain.name) or ("built-in" if chain.builtin else "other")
            families[key] = families.get(key, 0) + len(chain.rules)
    index.append("| Chains | Rules |\n| --- | ---: |")
    index += [f"| {html.escape(k)} | {v} |" for k, v in sorted(families.items())]
    index.append("")
    buckets = [services[i:i + SERVICES_PER_PAGE] for i in range(0, len(services), SERVICES_PER_PAGE)]
    index.append("## Services\n")
    index.append("| Page | From | To |\n| --- | --- | --- |")
    for number, bucket in enumerate(buckets, 1):
        index.append(f"| [Services {number}](services-{number}.md) | {html.escape(bucket[0])} | "
                     f"{html.escape(bucket[-1])} |")
    index.append("")
    index.append("## Shared chains\n")
    index_path = f"{base}/index.md"
    index_deferred: dict[str, Callable[[], str]] = {}
    for table in dump.tables:
        for chain in table.chains:
            if service_index.owner(table.name, chain.name) is not None:
                continue
            index.append(f"### {table.name} {html.escape(chain.name)}\n")
            if len(chain.rules) <= ROWS_PER_PART:
                locator.add(moment, table.name, chain.name, 1, index_path)
                index.append(_placeholder(index_deferred, table, chain, moment))
                continue
            index.append(f"{len(chain.rules)} rules, in parts:\n")
            for part, first in enumerate(range(1, len(chain.rules) + 1, ROWS_PER_PART), 1):
                last = min(first + ROWS_PER_PART - 1, len(chain.rules))
                path = f"{base}/{table.name}-{chain.name}-{part}.md"
                locator.add(moment, table.name, chain.name, first, path)
                index.append(f"- [rules {first} to {last}]({path.rsplit('/', 1)[1]})")
                deferred: dict[str, Callable[[], str]] = {}
                body = (f"# {table.name} {html.escape(chain.name)}, rules {first} to {last}\n\n"
                        + _placeholder(deferred, table, chain, moment, first, last))
                pages.append(Page(path, f"{chain.name} {first}-{last}", body, deferred))
            index.append("")
    for number, bucket in enumerate(buckets, 1):
        path = f"{base}/services-{number}.md"
        deferred = {}
        lines = [f"# Services {number}: {html.escape(bucket[0])} to {html.escape(bucket[-1])}\n"]
        for service in bucket:
            own = service_index.chains_of(service)
            lines.append(f"## {html.escape(service)}\n")
            names = ", ".join(c.name for _, c in own)
            lines.append(f"Chains {html.escape(names)}. {html.escape(_reached_at(service_index, service))}\n")
            for table, chain in own:
                locator.add(moment, table.name, chain.name, 1, path)
                lines.append(_placeholder(deferred, table, chain, moment))
        pages.append(Page(path, f"Services {number}", "\n".join(lines), deferred))
    pages.insert(0, Page(index_path, title, "\n".join(index), index_deferred))
    return pages


def _placeholder(deferred: dict, table: Table, chain: Chain, moment: str, first: int = 1,
                 last: int | None = None) -> str:
    """A marker the site replaces with the chain's table; the chain's anchor stays in the Markdown so that
    links to it are checked."""
    key = f"{moment}-{table.name}-{chain.name}-{first}"
    deferred[key] = partial(chain_table, table, chain, moment, first, last)
    head = f'<a id="{anchor_id(moment, table.name, chain.name)}"></a>'
    return f"{head}{html.escape(chain.name)}\n\n{PLACEHOLDER.format(key=key)}\n"


def _reached_at(index: ServiceIndex, service: str) -> str:
    """How packets reach a Service, in a sentence (for the search)."""
    reaches = index.reached_at(service)
    return "Reached at " + ", ".join(map(str, reaches)) + "." if reaches else ""
