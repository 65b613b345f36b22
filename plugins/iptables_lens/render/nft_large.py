"""The pages of a big nft ruleset (a node of a cluster with thousands of Services in nftables mode), split as
`render.large` splits a big iptables-save dump: an index page with the chains, sets and maps no Service owns
(the big maps, `service-ips`, `service-nodeports`, `cluster-ips`, cut into pages of elements, each element with
the Service port it serves), and pages of a hundred Services each, with the chains and sets named after each
Service under its heading and a line of what serves it: its chains, and the keys of its elements in the shared
sets and maps (so the site search finds a Service by its chain, its cluster IP or its node port).

Services, and what each owns, come from the ruleset's Service index (`kube.nft_services.NftServiceIndex`); the
tables are those of the node page (`render.nft_tables`), as HTML.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from functools import cached_property, partial

from iptables_lens.kube.nft_families import nft_family
from iptables_lens.kube.nft_services import NftServiceIndex, ServiceObjects, kube_proxy_tables
from iptables_lens.nft.explain import SetExplanation, explain_set
from iptables_lens.nft.explain.sets import lookup_keys
from iptables_lens.nft.fmtrules import format_expr
from iptables_lens.nft.model import Chain, Expr, Ruleset, Set, Table
from iptables_lens.render import escape as md
from iptables_lens.render.large import Block, ChainLocator, LargeView, Page, ServiceSection, large_pages
from iptables_lens.render.nft_tables import chain_html, nft_anchor, nft_set_anchor, set_html


def large_ruleset_pages(ruleset: Ruleset, moment: str, base: str, title: str, locator: ChainLocator) -> list[Page]:
    """The pages of one big nft ruleset under `base` (see `render.large.large_pages`); anchors are those of the
    node page's tables with `moment` in front (`after-ip-kube-proxy-services-1`), and `locator` learns each chain
    as (`FAMILY TABLE`, chain)."""
    index = NftServiceIndex.of(ruleset) if kube_proxy_tables(ruleset) else None
    grouped = index.by_service() if index is not None else {}
    owned = {key for objects in grouped.values() for key in objects.named}
    blocks = _Blocks(ruleset, index, moment)
    shared_chains, shared_sets = [], []
    for table in ruleset.tables:
        shared_chains += [blocks.chain(table, c) for c in table.chains if (table.family, table.name, c.name) not in owned]
        shared_sets += [blocks.set(table, s) for s in table.sets if (table.family, table.name, s.name) not in owned]
    services = [ServiceSection(service, _summary(objects), [blocks.named(key) for key in objects.named])
                for service, objects in sorted(grouped.items())]
    view = LargeView(_overview(ruleset, len(grouped)), [("Shared chains", shared_chains),
                                                         ("Sets and maps", shared_sets)], services)
    return large_pages(view, moment, base, title, locator)


def _overview(ruleset: Ruleset, services: int) -> str:
    """The counts, and the rules of each kube-proxy family of chains and the elements of each of sets and maps
    (another table's counted as that table)."""
    tables, chains, rules = ruleset.summary()
    sets = sum(len(t.sets) for t in ruleset.tables)
    elements = sum(len(s.elements) for t in ruleset.tables for s in t.sets)
    out = [f"{rules} rules in {chains} chains and {elements} elements in {sets} sets and maps, of {tables} "
           f"table{'s' * (tables != 1)}, "
           f"for {services} Services. The shared chains, sets and maps are below; the chains and sets named after a "
           "Service are on the Service pages.\n"]
    for what, counted, count in (("Chains", "Rules", lambda t: [(c.name, len(c.rules)) for c in t.chains]),
                                 ("Sets and maps", "Elements", lambda t: [(s.name, len(s.elements)) for s in t.sets])):
        families: dict[str, int] = {}
        for table in ruleset.tables:
            for name, rows in count(table):
                key = nft_family(table.family, table.name, name) or f"{table.family} {table.name}"
                families[key] = families.get(key, 0) + rows
        if families:
            out.append(f"| {what} | {counted} |\n| --- | ---: |")
            out += [f"| {md.text(key)} | {rows} |" for key, rows in sorted(families.items())]
            out.append("")
    return "\n".join(out)


def _summary(objects: ServiceObjects) -> str:
    """How a Service is reached, in a line: the keys of its elements in the shared sets and maps."""
    keys = [f"{name}: " + ", ".join(format_expr(e.key) for e in elements)
            for (_, _, name), elements in objects.elements.items()]
    return f"Its elements in {'; in '.join(keys)}." if keys else ""


class _Blocks:
    """The blocks of one ruleset's pages: each chain's and set's table, rendered when the site asks."""

    def __init__(self, ruleset: Ruleset, index: NftServiceIndex | None, moment: str):
        self.index, self.moment = index, moment
        self.lines = any(rule.line for rule in ruleset.rules)
        self.objects: dict[tuple[str, str, str], tuple[Table, Chain | Set]] = {}
        for table in ruleset.tables:
            items: list[Chain | Set] = [*table.chains, *table.sets]
            for item in items:
                self.objects.setdefault((table.family, table.name, item.name), (table, item))
        self._keys: dict[tuple[str, str], Mapping[str, Expr]] = {}

    def named(self, key: tuple[str, str, str]) -> Block:
        """The block of the chain or set `key` (family, table, name)."""
        table, item = self.objects[key]
        return self.chain(table, item) if isinstance(item, Chain) else self.set(table, item)

    def chain(self, table: Table, chain: Chain) -> Block:
        where = f"{table.family} {table.name}"
        return Block(f"{md.text(where)} {md.text(chain.name)}", chain.name,
                     nft_anchor(table.family, table.name, chain.name, prefix=self.moment),
                     nft_anchor(table.family, table.name, chain.name), len(chain.rules), "rules",
                     partial(chain_html, table, chain, self.index, self.moment, self.lines), (where, chain.name))

    def set(self, table: Table, item: Set) -> Block:
        explained = _LazySet(table, item, self.index, partial(self.keys, table))
        return Block(f"{md.text(f'{table.family} {table.name}')} {md.text(item.name)}", item.name,
                     nft_set_anchor(table.family, table.name, item.name, self.moment),
                     nft_set_anchor(table.family, table.name, item.name), len(item.elements), "elements",
                     explained.html)

    def keys(self, table: Table) -> Mapping[str, Expr]:
        """`lookup_keys(table)`, worked out once per table (it reads every rule)."""
        where = (table.family, table.name)
        if where not in self._keys:
            self._keys[where] = lookup_keys(table)
        return self._keys[where]


class _LazySet:
    """A set or map explained once, on first use, for each of its parts."""

    def __init__(self, table: Table, item: Set, index: NftServiceIndex | None,
                 keys: Callable[[], Mapping[str, Expr]]):
        self.table, self.item, self.index, self.keys = table, item, index, keys

    @cached_property
    def explained(self) -> SetExplanation:
        return explain_set(self.item, self.table, self.index, self.keys())

    def html(self, first: int, last: int | None) -> str:
        return set_html(self.explained, first, last)
