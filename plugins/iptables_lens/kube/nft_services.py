"""Which kube-proxy Service each chain, set and element of an nftables-mode ruleset serves: the Service index
of `table ip kube-proxy` and `table ip6 kube-proxy`, as `kube.services.ServiceIndex` is for iptables-save dumps.

kube-proxy's nftables proxier (pkg/proxy/nftables/proxier.go) names every per-Service object after the Service
port, so ownership is read from names, and every name's hash is verified:

- chains `service-`, `local-`, `external-`, `firewall-` + `HASH-ns/name/proto/port` (`servicePortChainNameBase`),
  and `endpoint-` + `HASH-ns/name/proto/port__IP/PORT` with a set `affinity-` of the same base
  (`servicePortEndpointChainNameBase`), HASH the first 8 base32 characters of sha256 of the text after it
  (`kube.names.nft_name_base`);
- an element of a verdict map (`service-ips`, `service-nodeports`, `firewall-ips`) serves the Service whose
  chain it jumps or goes to; one with a comment (`no-endpoint-services`, `no-endpoint-nodeports`, and every
  element in recent layouts) serves the Service port the comment names, `ns/name:port` as kube-proxy's
  `ServicePortName` prints it;
- a `cluster-ips` element (an address) serves the Service whose `service-ips` element with that address goes
  to its internal chain (`service-`, or `local-` with `internalTrafficPolicy: Local`), or, without endpoints,
  whose `no-endpoint-services` element has that address;
- a `hairpin-connections` element (`ENDPOINT . ENDPOINT . proto . port`, recent layouts, no comment) serves the
  Service port whose chains DNAT to that endpoint (the first by chain name, when several Service ports share
  one endpoint).
- a Service port's endpoints are where its chains DNAT to (`dnat_targets`): an `endpoint-` chain's `dnat to
  IP:PORT`, or, in layouts without endpoint chains, the entries of its `service-` or `local-` chain's
  `dnat ip addr . port to numgen random mod N map { ... }`.

>>> from iptables_lens.dialects import read_dump
>>> index = NftServiceIndex.of(read_dump(
...     "tests/data/kube-proxy-nftables/listings/TestOverallNFTablesRules.v1.34.nft"))
>>> owner = index.chain_owner("ip", "kube-proxy", "service-ULMVA6XW-ns1/svc1/tcp/p80")
>>> owner.service_port, owner.kind, owner.verified
('ns1/svc1:p80', 'service', True)
>>> index.services()[:3]
['ns1/svc1', 'ns2/svc2', 'ns3/svc3']
>>> [target.endpoint for target in index.dnat_targets("ip", "kube-proxy", "ns1/svc1:p80")]
['10.180.0.1:80']
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Literal, get_args

from iptables_lens.kube.names import join_host_port, nft_name_base
from iptables_lens.nft.model import (
    Concat,
    Const,
    Element,
    Expr,
    MapLookup,
    Nat,
    Rule,
    Ruleset,
    Set,
    SetLiteral,
    Table,
    Verdict,
)

TABLE = "kube-proxy"
NFT_FAMILIES: dict[int, str] = {4: "ip", 6: "ip6"}
"""The family of kube-proxy's table for IPv4 and for IPv6 (`table ip kube-proxy`, `table ip6 kube-proxy`)."""
ObjectKind = Literal["service", "local", "external", "firewall", "endpoint", "affinity"]
OBJECT_KINDS: tuple[ObjectKind, ...] = get_args(ObjectKind)


@dataclass(frozen=True)
class NftOwner:
    """The Service port a kube-proxy object is named after.

    `service` is `ns/name`, `service_port` kube-proxy's `ns/name:port` (`ns/name` for an unnamed port),
    `protocol` lower case, `endpoint` `IP/PORT` for an `endpoint-` chain or `affinity-` set, and `verified`
    whether the name's hash is that of the text after it.
    """

    name: str
    kind: ObjectKind
    service: str
    port: str
    protocol: str
    endpoint: str | None
    verified: bool

    @property
    def service_port(self) -> str:
        return f"{self.service}:{self.port}" if self.port else self.service


def decode_name(name: str) -> NftOwner | None:
    """The Service port a chain or set name of kube-proxy's nftables proxier is named after, or None for a name
    of no such form (`services`, `cluster-ips`, a chain another program made)."""
    kind, dash, rest = name.partition("-")
    if not dash or kind not in OBJECT_KINDS:
        return None
    digest, dash, text = rest.partition("-")
    if not dash or len(digest) != 8:
        return None
    port_text, _, endpoint = text.partition("__")
    fields = port_text.split("/")
    if len(fields) != 4 or not all(fields[:3]) or (kind in ("endpoint", "affinity")) != bool(endpoint):
        return None
    namespace, service, protocol, port = fields
    # A truncated name ends in "..." and keeps only part of its text, so its hash cannot be checked from it.
    verified = nft_name_base(text) == rest
    return NftOwner(name, kind, f"{namespace}/{service}", port, protocol, endpoint or None, verified)


@dataclass(frozen=True)
class ElementOwner:
    """Why an element serves a Service port: the chain it jumps to, its comment, the address it shares
    with a Service's `service-ips` element, or the endpoint it names (`hairpin-connections`)."""

    service_port: str
    by: OwnedBy


OwnedBy = Literal["target", "comment", "address", "endpoint"]
OWNED_BY_WORDS: dict[str, str] = {
    "target": "by the chain it leads to",
    "comment": "by its comment",
    "address": "by the address it shares with the Service's service-ips element",
    "endpoint": "by the endpoint it names",
}
"""How an element was tied to its Service, in words (`ElementOwner.by`)."""


def _target(element: Element) -> str | None:
    data = element.data
    if isinstance(data, Verdict) and data.kind in ("jump", "goto"):
        return data.target
    return None


@dataclass(frozen=True)
class DnatTarget:
    """An endpoint a Service port's chain DNATs to: `endpoint` as kube-proxy writes it (`join_host_port`), and
    the rule that does."""

    endpoint: str
    rule: Rule


def _dnat_pairs(nat: Nat) -> list[tuple[str, str]]:
    """The (address, port) endpoints a dnat statement sends to: one for `dnat to IP:PORT`, each entry of a
    numgen map for `dnat ip addr . port to numgen ... map { N : IP . PORT, ... }`."""
    if isinstance(nat.addr, Const) and isinstance(nat.port, Const):
        return [(str(nat.addr.value), str(nat.port.value))]
    if isinstance(nat.addr, MapLookup) and isinstance(nat.addr.data, SetLiteral):
        found = []
        for entry in nat.addr.data.elements:
            data = entry.data
            if isinstance(data, Concat) and len(data.items) == 2 and all(isinstance(i, Const) for i in data.items):
                address, port = data.items
                found.append((str(address.value), str(port.value)))  # type: ignore[union-attr]
        return found
    return []


def _first_address(key: Expr) -> str | None:
    first = key.items[0] if isinstance(key, Concat) else key
    return str(first.value) if isinstance(first, Const) else None


def _service_key(service_port: str) -> str:
    return service_port.partition(":")[0]  # a Service's namespace and name hold no colon


class NftServiceIndex:
    """The Service ownership of every kube-proxy table of a ruleset (other tables own nothing)."""

    def __init__(self, chains: dict[tuple[str, str, str], NftOwner],
                 elements: dict[tuple[str, str, str], list[tuple[Element, ElementOwner]]],
                 tables: tuple[Table, ...] = ()):
        self._chains = chains
        self._elements = elements
        self._tables: dict[tuple[str, str], Table] = {(t.family, t.name): t for t in tables}

    @classmethod
    def of(cls, ruleset: Ruleset) -> NftServiceIndex:
        chains: dict[tuple[str, str, str], NftOwner] = {}
        elements: dict[tuple[str, str, str], list[tuple[Element, ElementOwner]]] = {}
        for table in kube_proxy_tables(ruleset):
            named: dict[str, NftOwner] = {}
            for name in [c.name for c in table.chains] + [s.name for s in table.sets]:
                owner = decode_name(name)
                if owner is not None:
                    named[name] = chains[(table.family, table.name, name)] = owner
            by_address: dict[str, str] = {}
            for item in table.sets:
                owned = []
                for element in item.elements:
                    found = _element_owner(element, named.get)
                    if found is not None:
                        owned.append((element, found))
                        if item.name in ("service-ips", "no-endpoint-services"):
                            address = _first_address(element.key)
                            owner = named.get(_target(element) or "")
                            if address and (owner is None or owner.kind in ("service", "local")):
                                by_address.setdefault(address, found.service_port)
                elements[(table.family, table.name, item.name)] = owned
            by_endpoint = _endpoints_by_dnat(table, named)
            for item in table.sets:
                if item.name == "cluster-ips":
                    elements[(table.family, table.name, item.name)] = [
                        (e, ElementOwner(by_address[a], "address")) for e in item.elements
                        if (a := _first_address(e.key)) is not None and a in by_address]
                elif item.name == "hairpin-connections":
                    elements[(table.family, table.name, item.name)] = [
                        (e, ElementOwner(by_endpoint[k], "endpoint")) for e in item.elements
                        if (k := _hairpin_endpoint(e.key)) is not None and k in by_endpoint]
        return cls(chains, elements, tuple(kube_proxy_tables(ruleset)))

    def chain_owner(self, family: str, table: str, name: str) -> NftOwner | None:
        """The Service port the chain or set `name` of `family table` is named after, or None."""
        return self._chains.get((family, table, name))

    def element_owners(self, family: str, table: str, set_name: str) -> list[tuple[Element, ElementOwner]]:
        """The elements of the set or map that serve a Service port, each with its owner, in listing order."""
        return self._elements.get((family, table, set_name), [])

    def element_owner(self, family: str, table: str, set_name: str, element: Element) -> ElementOwner | None:
        for candidate, owner in self.element_owners(family, table, set_name):
            if candidate == element:
                return owner
        return None

    def dnat_targets(self, family: str, table: str, service_port: str) -> list[DnatTarget]:
        """Every endpoint the chains named after `service_port` (`ns/name:port`) DNAT to, in listing order."""
        found = []
        for chain in self._tables[(family, table)].chains if (family, table) in self._tables else ():
            owner = self._chains.get((family, table, chain.name))
            if owner is None or owner.service_port != service_port:
                continue
            for rule in chain.rules:
                for statement in rule.statements:
                    if isinstance(statement, Nat) and statement.kind == "dnat":
                        found += [DnatTarget(join_host_port(*pair), rule) for pair in _dnat_pairs(statement)]
        return found

    def owners(self) -> Iterator[NftOwner]:
        yield from self._chains.values()

    def services(self) -> list[str]:
        """Every Service (`ns/name`) some chain, set or element of the ruleset serves, sorted."""
        found = {o.service for o in self._chains.values()}
        found |= {_service_key(o.service_port) for owned in self._elements.values() for _, o in owned}
        return sorted(found)

    def of_service(self, service: str) -> tuple[list[NftOwner], dict[tuple[str, str, str], list[Element]]]:
        """The chains and sets named after `service` (`ns/name`), and the elements serving it by set."""
        chains = [o for o in self._chains.values() if o.service == service]
        elements: dict[tuple[str, str, str], list[Element]] = defaultdict(list)
        for key, owned in self._elements.items():
            for element, owner in owned:
                if _service_key(owner.service_port) == service:
                    elements[key].append(element)
        return chains, dict(elements)

    def by_service(self) -> dict[str, ServiceObjects]:
        """`of_service` of every Service at once, in one pass over the index: `ns/name` -> the (family, table,
        name) of each chain and set named after it and the elements serving it by set, in listing order."""
        found: dict[str, ServiceObjects] = defaultdict(lambda: ServiceObjects([], {}))
        for key, owner in self._chains.items():
            found[owner.service].named.append(key)
        for key, owned in self._elements.items():
            for element, element_owner in owned:
                found[_service_key(element_owner.service_port)].elements.setdefault(key, []).append(element)
        return dict(found)


@dataclass(frozen=True)
class ServiceObjects:
    """What serves one Service: the (family, table, name) of the chains and sets named after it, and the
    elements of each set or map (by (family, table, set)) tied to it."""

    named: list[tuple[str, str, str]]
    elements: dict[tuple[str, str, str], list[Element]]


def _endpoints_by_dnat(table: Table, named: dict[str, NftOwner]) -> dict[tuple[str, str, str], str]:
    """(address, protocol, port) of every endpoint a per-Service chain DNATs to, with the Service port it
    serves (the first by chain order, when several share one endpoint)."""
    found: dict[tuple[str, str, str], str] = {}
    for chain in table.chains:
        owner = named.get(chain.name)
        if owner is None:
            continue
        for stmt in (s for rule in chain.rules for s in rule.statements):
            if isinstance(stmt, Nat) and stmt.kind == "dnat":
                for address, port in _dnat_pairs(stmt):
                    found.setdefault((address, owner.protocol, port), owner.service_port)
    return found


def _hairpin_endpoint(key: Expr) -> tuple[str, str, str] | None:
    items = key.items if isinstance(key, Concat) else ()
    if len(items) != 4 or not all(isinstance(item, Const) for item in items):
        return None
    address, _, protocol, port = (item.value for item in items)  # type: ignore[union-attr]
    return str(address), str(protocol), str(port)


def _element_owner(element: Element, chain_owner: Callable[[str], NftOwner | None]) -> ElementOwner | None:
    target = _target(element)
    if target is not None and (owner := chain_owner(target)) is not None:
        return ElementOwner(owner.service_port, "target")
    if element.comment:
        return ElementOwner(element.comment, "comment")
    return None


def kube_proxy_tables(ruleset: Ruleset) -> list[Table]:
    """The tables kube-proxy's nftables proxier writes (`ip kube-proxy`, `ip6 kube-proxy`)."""
    return [t for t in ruleset.tables if t.name == TABLE and t.family in ("ip", "ip6")]


def set_kind(item: Set) -> str:
    """`set`, `map` or `verdict map`, as a person would say what `item` is."""
    if item.kind == "map" and item.data_types == ("verdict",):
        return "verdict map"
    return item.kind
