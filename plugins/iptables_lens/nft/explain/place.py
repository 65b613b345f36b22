"""Where a rule is: its table and chain, and what kube-proxy's Service index says of them. Some phrases depend
on it: `return` in a base chain leaves the verdict to the policy, `ip saddr != 10.0.0.0/8` in a Service chain of
kube-proxy is the pod network, a set's name says whether it is a verdict map."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

from iptables_lens.kube.nft_families import nft_family
from iptables_lens.kube.nft_services import NftOwner, NftServiceIndex
from iptables_lens.nft.model import Chain, Concat, Const, MapLookup, Nat, SetLiteral, Table


@dataclass(frozen=True)
class Place:
    """A rule's table and chain, and the Service index of its ruleset (None: read no kube-proxy meaning)."""

    table: Table
    chain: Chain
    index: NftServiceIndex | None = None

    @cached_property
    def family(self) -> str | None:
        """The kube-proxy family of the chain (`service-`, `services`), or None."""
        if self.index is None:
            return None
        return nft_family(self.table.family, self.table.name, self.chain.name, self.owner(self.chain.name))

    def owner(self, name: str) -> NftOwner | None:
        """The Service port the chain or set `name` of this table is named after, or None."""
        if self.index is None:
            return None
        return self.index.chain_owner(self.table.family, self.table.name, name)

    def is_verdict_map(self, name: str) -> bool:
        return any(item.name == name and item.is_verdict_map for item in self.table.sets)

    @cached_property
    def dnat_addresses(self) -> frozenset[str]:
        """The addresses the chain's rules DNAT to (an endpoint chain has one)."""
        found: set[str] = set()
        for rule in self.chain.rules:
            for stmt in rule.statements:
                if isinstance(stmt, Nat) and stmt.kind == "dnat" and stmt.addr is not None:
                    found.update(_addresses(stmt.addr))
        return frozenset(found)


def _addresses(expr: object) -> list[str]:
    if isinstance(expr, Const):
        return [str(expr.value)]
    if isinstance(expr, Concat):
        return _addresses(expr.items[0])
    if isinstance(expr, MapLookup) and isinstance(expr.data, SetLiteral):
        return [a for e in expr.data.elements if e.data is not None for a in _addresses(e.data)]
    return []
