"""Which chains and rules of a dump serve each Service, and the way a packet takes through them: one index,
built once per dump, that the diff, `explain --service`, the pages of big dumps and the diagrams all ask.

The rule, written here and nowhere else:

- kube-proxy's *per-Service chains* are those its hashed families name (`KUBE-SVC-`, `KUBE-SVL-`, `KUBE-EXT-`,
  `KUBE-FW-`, `KUBE-SEP-` and 16 base32 characters). Such a chain belongs to the Service port that the first of
  its rules to name one names in its comment (kube-proxy comments every rule of a chain with the same one).
- A rule serves the Service its comment names, else the Service its chain belongs to.
- `namespace/name` stands for every port of the Service, `namespace/name:port` for that port alone.

Everything is read from kube-proxy's comments. Past 1,000 endpoints kube-proxy stops commenting endpoint
chains and the rules that jump to them ("large cluster mode"): such chains belong to no Service, though
`ServiceIndex.path` still reaches them from the Service's own chains.

>>> from iptables_lens import parse_file
>>> index = ServiceIndex.of(parse_file("dumps/kind-nodeport/worker-1-after.rules"))
>>> index.owner("nat", "KUBE-SVC-OL4YPD43MBS7WVHD")
'default/my-nginx-service'
>>> [str(reach) for reach in index.reached_at("default/my-nginx-service")]  # in the order of the dump
['node port 30080', 'endpoint 10.244.2.2:80', 'endpoint 10.244.1.2:80', '10.96.118.136:80']
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import Literal

from iptables_lens.iptables.model import Chain, Dump, Rule, Table
from iptables_lens.kube.names import PER_SERVICE_CHAIN, family, join_host_port, service_of_comment

MARK_MASQ = "KUBE-MARK-MASQ"

# The order a Service's own chains are listed in: from where outside traffic enters to the endpoints.
_FAMILY_ORDER = {"KUBE-EXT": 0, "KUBE-FW": 1, "KUBE-SVC": 2, "KUBE-SVL": 3, "KUBE-SEP": 4}


def names_service(found: str | None, service: str) -> bool:
    """Whether `found` (what `service_of_comment` read, or None) is `service`: the same Service port, or a port
    of `service` when `service` is a bare `namespace/name`."""
    return found is not None and (found == service or found.startswith(service + ":"))


def rule_names(rule: Rule, service: str) -> bool:
    """Whether a rule's comment names `service` (see `names_service`)."""
    comment = rule.comment
    # The substring test first: in a big shared chain, all but a few rules name other Services.
    return comment is not None and service in comment and names_service(service_of_comment(comment), service)


def first_service_named(chain: Chain) -> str | None:
    """The Service port that the first of the chain's rules to name one names, or None."""
    for rule in chain.rules:
        # Past 1,000 endpoints most rules have no comment: finding none is cheaper than reading one.
        if rule.match("comment") is not None:
            found = service_of_comment(rule.comment)
            if found:
                return found
    return None


def _service_key(service_port: str) -> str:
    return service_port.split(":")[0]


@dataclass(frozen=True, slots=True)
class PathStep:
    """One chain on a Service's path; `positions` are the rules of it that concern the Service (None: all)."""

    table: Table
    chain: Chain
    positions: frozenset[int] | None


ReachKind = Literal["address", "node port", "endpoint"]


@dataclass(frozen=True, slots=True)
class Reach:
    """One way a packet reaches a Service: an address and port (`10.96.0.1:80`, `[fd00:10:96::1]:80`), a node
    port (`30080`), or an endpoint it is DNATed to (`10.244.1.2:80`, `[fd00:10:244:1::2]:80`)."""

    kind: ReachKind
    where: str

    def __str__(self) -> str:
        return self.where if self.kind == "address" else f"{self.kind} {self.where}"


class ServiceIndex:
    """The Services of one dump: the per-Service chains each owns per table, the rules of shared chains that
    serve it, its path and how it is reached. Build it with `ServiceIndex.of(dump)`; the parts only some
    callers need (by Service, reach) are worked out on first use."""

    def __init__(self, dump: Dump, per_service: dict[str, list[str]], owners: dict[str, dict[str, str]]):
        self.dump = dump
        self._per_service_names = per_service  # table -> its per-Service chains, whether or not they name a Service
        self._owners = owners  # table -> per-Service chain -> the Service port it belongs to

    @classmethod
    def of(cls, dump: Dump) -> ServiceIndex:
        per_service: dict[str, list[str]] = {}
        owners: dict[str, dict[str, str]] = {}
        is_per_service = PER_SERVICE_CHAIN.match
        for table in dump.tables:
            names: list[str] = []
            owned: dict[str, str] = {}
            for chain in table.chains:
                if is_per_service(chain.name):
                    names.append(chain.name)
                    service = first_service_named(chain)
                    if service:
                        owned[chain.name] = service
            per_service[table.name] = names
            owners[table.name] = owned
        return cls(dump, per_service, owners)

    @cached_property
    def _per_service(self) -> dict[str, frozenset[str]]:
        """Table -> its per-Service chains as a set (the path asks whether a chain is another Service's)."""
        return {table: frozenset(names) for table, names in self._per_service_names.items()}

    # -- ownership ------------------------------------------------------------------------------------------

    def owner(self, table: str, chain: str) -> str | None:
        """The Service port (`namespace/name[:port]`) a per-Service chain belongs to, or None."""
        owned = self._owners.get(table)
        return owned.get(chain) if owned else None

    def service_of(self, rule: Rule) -> str | None:
        """The Service port a rule serves: the one its comment names, else its chain's."""
        return service_of_comment(rule.comment) or self.owner(rule.table, rule.chain)

    def chains_by_service_port(self) -> dict[str, set[str]]:
        """`namespace/name[:port]` -> the names of the per-Service chains (any table) that belong to it."""
        found: dict[str, set[str]] = {}
        for owned in self._owners.values():
            for chain, service in owned.items():
                found.setdefault(service, set()).add(chain)
        return found

    def owned(self, table: str, service: str) -> set[str]:
        """The names of the chains of `table` that belong to `service` (any of its ports if it has none)."""
        return {chain for chain, found in self._owners.get(table, {}).items() if names_service(found, service)}

    @cached_property
    def _by_service(self) -> dict[str, list[tuple[Table, Chain]]]:
        by_service: dict[str, list[tuple[Table, Chain]]] = {}
        for table in self.dump.tables:
            owned = self._owners.get(table.name)
            if not owned:
                continue
            for chain in table.chains:
                service = owned.get(chain.name)
                if service is not None:
                    by_service.setdefault(_service_key(service), []).append((table, chain))
        for chains in by_service.values():
            chains.sort(key=lambda tc: (_FAMILY_ORDER.get(family(tc[1].name) or "", 9), tc[1].name))
        return by_service

    @property
    def services(self) -> list[str]:
        """Every Service (`namespace/name`) that owns a chain, sorted."""
        return sorted(self._by_service)

    def chains_of(self, service: str) -> list[tuple[Table, Chain]]:
        """The chains a Service (`namespace/name`) owns, external entry first, endpoints last."""
        return self._by_service.get(service, [])

    # -- how a Service is reached -----------------------------------------------------------------------------

    @cached_property
    def _reach(self) -> dict[str, list[Reach]]:
        found: dict[str, dict[Reach, None]] = {}
        for table in self.dump.tables:
            owned = self._owners.get(table.name, {})
            for chain in table.chains:
                own = owned.get(chain.name)
                for rule in chain.rules:
                    target = rule.target
                    if target is None:
                        continue
                    service = owned.get(target.name) or own
                    if service is None:
                        continue
                    reaches = found.setdefault(_service_key(service), {})
                    # A shared chain's rule that picks the Service's traffic by port says where it is reached.
                    dport = next((o.value for m in rule.matches if (o := m.option("--dport")) is not None), None)
                    if own is None and dport:
                        destination = rule.criterion("-d")
                        if destination is not None and not destination.negated:
                            address = destination.value.split("/")[0]
                            reaches[Reach("address", join_host_port(address, dport))] = None
                        else:
                            reaches[Reach("node port", dport)] = None
                    if target.name == "DNAT":
                        to = target.option("--to-destination")
                        if to is not None:
                            reaches[Reach("endpoint", to.value)] = None
        return {service: list(reaches) for service, reaches in found.items() if reaches}

    def reached_at(self, service: str) -> list[Reach]:
        """How packets reach a Service (`namespace/name`), in the dump's order: the addresses and ports its
        shared-chain rules match, its node ports, the endpoints its chains DNAT to."""
        return self._reach.get(service, [])

    # -- the path through the chains --------------------------------------------------------------------------

    def path(self, service: str) -> list[PathStep]:
        """The chains that concern `service`, in the order a packet meets them: from the built-in chains
        through kube-proxy's entry chains into the Service's own chains, and on to the chains those jump to
        (KUBE-MARK-MASQ, endpoint chains). Of a chain the Service does not own, only the rules that name it or
        lead to its chains are kept. Owned chains nothing reaches come last, by name."""
        result: list[PathStep] = []
        for table in self.dump.tables:
            owned = self.owned(table.name, service)
            if not owned:
                continue
            walk = _PathWalk(table, owned, self._per_service[table.name], service, result)
            for chain in table.chains:
                if chain.builtin:
                    walk.visit(chain)
            for name in sorted(owned - walk.seen):
                walk.visit(table.chain(name))
        return result

    def graph(self, service: str) -> list[tuple[Chain, list[Rule]]]:
        """The jumps that carry `service` in the nat table, chain by chain: the rules of shared chains that name
        it and jump to its chains, then its own chains (by name) with their jumps to each other and to
        KUBE-MARK-MASQ."""
        if not self.dump.has_table("nat"):
            return []
        nat = self.dump.table("nat")
        owned = self.owned("nat", service)
        ends = owned | {MARK_MASQ}
        shared = [c for c in nat.chains if not c.builtin and c.name not in owned]
        edges = []
        for chain in shared + [nat.chain(name) for name in sorted(owned)]:
            mine = chain.name in owned
            rules = [r for r in chain.rules if r.target is not None and r.target.name in ends
                     and nat.has_chain(r.target.name) and (mine or rule_names(r, service))]
            if rules:
                edges.append((chain, rules))
        return edges


class _PathWalk:
    """Depth first from the built-in chains, keeping the rules on the way to a Service's own chains."""

    def __init__(self, table: Table, owned: set[str], per_service: frozenset[str], service: str, result: list[PathStep]):
        self.table, self.owned, self.per_service, self.service, self.result = table, owned, per_service, service, result
        self.seen: set[str] = set()

    def visit(self, chain: Chain, whole: bool = False) -> None:
        if chain.name in self.seen:
            return
        self.seen.add(chain.name)
        table, owned = self.table, self.owned
        whole = whole or chain.name in owned
        keep: set[int] = set()
        onward: list[str] = []
        for rule in chain.rules:
            target = rule.target
            if target is None:
                if whole or rule_names(rule, self.service):
                    keep.add(rule.position)
                continue
            jumps = table.has_chain(target.name)
            if whole or target.name in owned or rule_names(rule, self.service):
                keep.add(rule.position)
                if jumps:
                    onward.append(target.name)
            elif jumps and self.leads_to(target.name):
                keep.add(rule.position)
                onward.append(target.name)
        if keep:
            self.result.append(PathStep(table, chain, None if whole else frozenset(keep)))
        for name in onward:
            # A chain the Service's own chains jump to (KUBE-MARK-MASQ, an endpoint) is on its path as a whole.
            self.visit(table.chain(name), whole=chain.name in owned)

    def leads_to(self, start: str, depth: int = 0) -> bool:
        """Whether a chain reaches one of the Service's own chains directly or through kube-proxy's entry chains
        (KUBE-SERVICES, KUBE-NODEPORTS: `KUBE-` and one word)."""
        if depth > 4 or (start in self.per_service and start not in self.owned):
            return False  # another Service's own chain
        table = self.table
        for rule in table.chain(start).rules:
            target = rule.target
            if target is None or not table.has_chain(target.name):
                continue
            name = target.name
            if name in self.owned or (not table.chain(name).builtin and name.startswith("KUBE-")
                                      and name.count("-") == 1 and self.leads_to(name, depth + 1)):
                return True
        return False


def service_chains(dump: Dump) -> dict[str, set[str]]:
    """`namespace/name[:port]` -> the names of the per-Service chains (any table) that belong to it."""
    return ServiceIndex.of(dump).chains_by_service_port()
