"""Anonymize an nft ruleset with the same address map as iptables-save dumps (`scenario.scrub`).

Every address a ruleset holds is mapped: in rules (matches, `dnat to`, the maps a `dnat` picks endpoints from),
in set and map elements, in prefixes (the network is mapped, the length kept) and in ranges (each end mapped,
the two put in order again, since the map keeps prefixes but not order). The same key maps an address to the
same address as in an iptables-save dump, so the two dialects of one node stay consistent. Comments are
mapped and renamed as free text.

Names are kept, with one exception. kube-proxy names its per-Service chains and sets after the Service port
(`service-HASH-ns/name/proto/port`), which holds no address; but an `endpoint-` chain and its `affinity-` set
are named after the endpoint too (`endpoint-HASH-ns/name/proto/port__IP/PORT`, an IPv6 address with its colons
written as dots). Such a name is rewritten with the mapped address and its hash recomputed
(`kube.names.nft_name_base`), everywhere it is used (`goto`, `@set`, `update @set`): keeping it would publish
every endpoint address the scrub maps elsewhere, and keeping only its hash would not hide it either, since
the hash of `ns/name/proto/port__IP/PORT` is quickly found again by trying the addresses of a range. The
rewritten name verifies, so the scrubbed ruleset reads as kube-proxy's. `--rename` renames the Service part
of every per-Service name the same way. A name whose hash did not verify (nft truncated it, or it is not
kube-proxy's) keeps its hash; an endpoint address in it is mapped all the same.
"""

from __future__ import annotations

import ipaddress
from dataclasses import fields, is_dataclass, replace
from typing import TYPE_CHECKING, Any

from iptables_lens.kube.names import nft_name_base
from iptables_lens.kube.nft_services import decode_name, kube_proxy_tables
from iptables_lens.nft.model import (
    Chain,
    Const,
    Element,
    Log,
    Prefix,
    Range,
    Rule,
    Ruleset,
    Set,
    SetRef,
    SetUpdate,
    Table,
    Verdict,
)

if TYPE_CHECKING:  # the scrub of iptables dumps imports this module to scrub nft rulesets
    from iptables_lens.scenario.scrub import Address, AddressMap, Renamer

ADDRESS_TYPES = frozenset({"ipv4_addr", "ipv6_addr"})


def nft_address_text(address: Address) -> str:
    """`address` as nft prints it (inet_ntop(3)): an IPv4-mapped IPv6 address ends in dotted IPv4.

    >>> nft_address_text(ipaddress.ip_address("::ffff:10.0.0.1")), nft_address_text(ipaddress.ip_address("fd00::1"))
    ('::ffff:10.0.0.1', 'fd00::1')
    """
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return f"::ffff:{address.ipv4_mapped}"
    return str(address)


def endpoint_in_name(endpoint: str, addresses: AddressMap) -> str:
    """The `IP/PORT` of a kube-proxy endpoint name with its address mapped (`fd00.10.244.1..2/80`: an IPv6
    address is written with dots for colons); `endpoint` unchanged if its address is not one.

    >>> from iptables_lens.scenario.scrub import AddressMap
    >>> endpoint_in_name("fd00.10.244.1..2/80", AddressMap(b"k")).count(".") > 2
    True
    """
    ip, slash, port = endpoint.rpartition("/")
    try:
        address: Address = ipaddress.IPv4Address(ip)
    except ValueError:
        try:
            address = ipaddress.IPv6Address(ip.replace(".", ":"))
        except ValueError:
            return endpoint
    mapped = nft_address_text(addresses.address(address))
    return f"{mapped if address.version == 4 else mapped.replace(':', '.')}{slash}{port}"


def renamed_objects(table: Table, addresses: AddressMap, names: Renamer) -> dict[str, str]:
    """The new name of each kube-proxy chain and set of `table` whose name changes: endpoint addresses mapped,
    Services renamed, hashes recomputed."""
    renames = {}
    for name in [c.name for c in table.chains] + [s.name for s in table.sets]:
        owner = decode_name(name)
        if owner is None:
            continue
        endpoint = endpoint_in_name(owner.endpoint, addresses) if owner.endpoint else None
        if owner.verified:
            text = f"{names.service(owner.service)}/{owner.protocol}/{owner.port}"
            new = f"{owner.kind}-{nft_name_base(text + (f'__{endpoint}' if endpoint else ''))}"
        elif owner.endpoint is not None and endpoint is not None:
            new = name.replace(f"__{owner.endpoint}", f"__{endpoint}")
        else:
            continue
        if new != name:
            renames[name] = new
    return renames


class _TableScrub:
    """Rewrites the objects of one table: addresses mapped, free text scrubbed, renamed objects renamed."""

    def __init__(self, addresses: AddressMap, names: Renamer, renames: dict[str, str]):
        self.addresses = addresses
        self.names = names
        self.renames = renames

    def text(self, value: str | None) -> str | None:
        return None if value is None else self.names.text(self.addresses.text(value))

    def name(self, value: str) -> str:
        return self.renames.get(value, value)

    def address(self, const: Const) -> Const:
        if const.type not in ADDRESS_TYPES or not isinstance(const.value, str):
            return const
        try:
            address = ipaddress.ip_address(const.value)
        except ValueError:
            return const
        mapped = self.addresses.address(address)
        return const if mapped == address else Const(const.type, nft_address_text(mapped))

    def node(self, node: Any) -> Any:
        """`node` (an expression, statement or element, or a tuple of them) with everything in it scrubbed;
        `node` itself where nothing changes."""
        if isinstance(node, tuple):
            new = tuple(self.node(item) for item in node)
            return node if all(a is b for a, b in zip(new, node, strict=True)) else new
        if isinstance(node, Const):
            return self.address(node)
        if isinstance(node, Prefix):
            return self.prefix(node)
        if isinstance(node, Range):
            return self.range(node)
        if isinstance(node, Verdict):
            return node if node.target is None else replace(node, target=self.name(node.target))
        if isinstance(node, SetRef):
            return SetRef(self.name(node.name))
        if not is_dataclass(node):
            return node
        changed: dict[str, Any] = {}
        if isinstance(node, SetUpdate) and node.set in self.renames:
            changed["set"] = self.renames[node.set]
        elif isinstance(node, Element) and node.comment and self.text(node.comment) != node.comment:
            changed["comment"] = self.text(node.comment)
        elif isinstance(node, Log) and node.prefix and self.text(node.prefix) != node.prefix:
            changed["prefix"] = self.text(node.prefix)
        for field in fields(node):
            value = getattr(node, field.name)
            if isinstance(value, tuple) or is_dataclass(value):
                new = self.node(value)
                if new is not value:
                    changed[field.name] = new
        return replace(node, **changed) if changed else node

    def prefix(self, prefix: Prefix) -> Prefix:
        base = prefix.base
        if base.type not in ADDRESS_TYPES or not isinstance(base.value, str):
            return prefix
        network = ipaddress.ip_network(f"{base.value}/{prefix.length}", strict=False)
        mapped = self.addresses.network(network)
        return Prefix(Const(base.type, nft_address_text(mapped.network_address)), prefix.length)

    def range(self, span: Range) -> Range:
        low, high = self.node(span.low), self.node(span.high)
        if (isinstance(low, Const) and isinstance(high, Const) and low.type in ADDRESS_TYPES
                and high.type == low.type and isinstance(low.value, str) and isinstance(high.value, str)
                and int(ipaddress.ip_address(low.value)) > int(ipaddress.ip_address(high.value))):
            low, high = high, low
        return Range(low, high)

    def rule(self, rule: Rule) -> Rule:
        return replace(rule, chain=self.name(rule.chain), statements=self.node(rule.statements),
                       comment=self.text(rule.comment), text="")

    def chain(self, chain: Chain) -> Chain:
        return replace(chain, name=self.name(chain.name), rules=tuple(self.rule(r) for r in chain.rules),
                       comment=self.text(chain.comment))

    def set(self, item: Set) -> Set:
        return replace(item, name=self.name(item.name), elements=self.node(item.elements),
                       statements=self.node(item.statements), comment=self.text(item.comment))

    def table(self, table: Table) -> Table:
        objects = tuple(replace(o, comment=self.text(o.comment)) for o in table.objects)
        return replace(table, comment=self.text(table.comment), objects=objects,
                       sets=tuple(self.set(s) for s in table.sets), chains=tuple(self.chain(c) for c in table.chains))


def scrub_ruleset(ruleset: Ruleset, addresses: AddressMap, names: Renamer) -> Ruleset:
    """The ruleset with every address mapped, comments scrubbed, and kube-proxy's endpoint chains and affinity
    sets renamed after their mapped endpoints (and every per-Service name after its renamed Service), with
    their hashes recomputed. Tables, chains, sets and elements keep their order."""
    kube_proxy = {id(t) for t in kube_proxy_tables(ruleset)}
    tables = []
    for table in ruleset.tables:
        renames = renamed_objects(table, addresses, names) if id(table) in kube_proxy else {}
        tables.append(_TableScrub(addresses, names, renames).table(table))
    return Ruleset(ruleset.source, tuple(tables))

