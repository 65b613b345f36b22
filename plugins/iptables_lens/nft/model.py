"""The ruleset model: immutable objects for what `nft list ruleset` prints (and `nft -j list ruleset` says).

Nothing here reads or writes text; `parse` and `jsonread` build these objects and `fmt` prints them. A rule is
a tuple of statements, and a statement holds expressions as trees, so that a tracer can evaluate them: a
`Match` is (what is read: `Payload`, `Meta`, `Ct`, `Fib`, `Numgen`, `Hash`, ...; the operator; the right-hand
side: a `Const`, `Prefix`, `Range`, `Concat`, `ValueList`, `SetLiteral` or `SetRef`).

Constants carry the name of their nft datatype (`ipv4_addr`, `inet_service`, `mark`, `ct_state`, ...) and a
value in the form `nft -j` gives it: an int for numbers (a mark is 16384, not "0x00004000"), a str for
addresses and symbols ("10.0.0.1", "tcp", "established"), a bool for `exists`/`missing`. Durations are in
milliseconds. Lines, source text and `Priority.written` are not compared: two readings of one ruleset, from
its text and from its JSON, are equal when they say the same thing.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Literal

from iptables_lens.nft.expressions import (  # noqa: F401  (re-exported: the model is one namespace)
    Binop,
    BoundChain,
    BoundRule,
    Concat,
    ConnLimit,
    Const,
    Counter,
    Dup,
    Element,
    Expr,
    FlowOffload,
    Fwd,
    Limit,
    Log,
    Mangle,
    MapLookup,
    Match,
    Meter,
    Nat,
    Notrack,
    ObjectRef,
    Operator,
    Prefix,
    Queue,
    Quota,
    Range,
    Reject,
    SetLiteral,
    SetRef,
    SetUpdate,
    Statement,
    Synproxy,
    Tproxy,
    ValueList,
    Verdict,
    VerdictMap,
    Xt,
)
from iptables_lens.nft.selectors import (  # noqa: F401  (re-exported)
    Ct,
    Exthdr,
    Fib,
    Hash,
    IpOption,
    Ipsec,
    Meta,
    Numgen,
    Osf,
    Payload,
    RawPayload,
    Rt,
    SctpChunk,
    Socket,
    TcpOption,
)

Family = Literal["ip", "ip6", "inet", "arp", "bridge", "netdev"]
FAMILIES: tuple[Family, ...] = ("ip", "ip6", "inet", "arp", "bridge", "netdev")

# -- declarations -------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Rule:
    """One rule of a chain: its statements in order, the comment and handle (`nft -a`) nft keeps with it.

    `position` counts from 1 in the chain; `line` is the rule's line in the text it was read from (0 when read
    from JSON) and `text` that line's statements as written. `spelled` is the statements and comment as
    written where they are not as nft prints what they read as: in a table iptables-nft keeps, nft lists an
    iptables extension's translation in iptables' own spelling (`meta mark set mark or 0x4000`), and fmt prints
    that spelling back; it says nothing the statements do not."""

    family: Family
    table: str
    chain: str
    position: int
    statements: tuple[Statement, ...]
    comment: str | None = None
    handle: int | None = None
    line: int = field(default=0, compare=False)
    text: str = field(default="", compare=False)
    spelled: str | None = field(default=None, compare=False)

    @property
    def anchor(self) -> str:
        """A stable, unique HTML id for this rule: `ip-kube-proxy-services-3`."""
        return f"{self.family}-{self.table}-{self.chain}-{self.position}"


@dataclass(frozen=True, slots=True)
class Priority:
    """A base chain's priority: `value` is the number the kernel orders hooks by; `written` how the text says
    it (`dstnat - 10`, `-110`, `filter`), for messages."""

    value: int
    written: str = field(default="", compare=False)


@dataclass(frozen=True, slots=True)
class Hook:
    """What makes a chain a base chain: `type filter hook prerouting priority dstnat - 10; policy accept;`."""

    type: Literal["filter", "nat", "route"]
    hook: str
    priority: Priority
    policy: Literal["accept", "drop"] | None = None
    devices: tuple[str, ...] = ()
    offload: bool = False


@dataclass(frozen=True, slots=True)
class Chain:
    """A chain; base chains have a `hook`, regular chains are only jumped to."""

    family: Family
    table: str
    name: str
    hook: Hook | None = None
    rules: tuple[Rule, ...] = ()
    comment: str | None = None
    handle: int | None = None
    line: int = field(default=0, compare=False)

    @property
    def is_base(self) -> bool:
        return self.hook is not None


SetFlag = Literal["constant", "dynamic", "interval", "timeout"]


@dataclass(frozen=True, slots=True)
class Set:
    """A named set, map or meter.

    The key is `key_types` (`type ipv4_addr . inet_service`) or `key_typeof` (`typeof ip daddr . tcp dport`);
    a map's data likewise (`data_types`, `data_typeof`), with `data_interval` for `: interval ipv4_addr`. An
    object map (`: counter`) has `data_types` ("counter",). Timeouts are in milliseconds."""

    family: Family
    table: str
    name: str
    kind: Literal["set", "map", "meter"] = "set"
    key_types: tuple[str, ...] = ()
    key_typeof: tuple[Expr, ...] = ()
    data_types: tuple[str, ...] = ()
    data_typeof: tuple[Expr, ...] = ()
    data_interval: bool = False
    flags: tuple[SetFlag, ...] = ()
    policy: str | None = None
    size: int | None = None
    statements: tuple[Statement, ...] = ()
    auto_merge: bool = False
    timeout: int | None = None
    gc_interval: int | None = None
    comment: str | None = None
    elements: tuple[Element, ...] = ()
    handle: int | None = None
    line: int = field(default=0, compare=False)

    @property
    def is_verdict_map(self) -> bool:
        return self.kind == "map" and self.data_types == ("verdict",)


ObjectKind = Literal["counter", "quota", "limit", "ct helper", "ct timeout", "ct expectation", "secmark",
                     "synproxy"]


@dataclass(frozen=True, slots=True)
class NamedObject:
    """A stateful object of a table (`counter cnt { packets 0 bytes 0 }`, `ct helper ftp { ... }`): `settings`
    are its properties as (name, value) pairs in the order nft prints them."""

    family: Family
    table: str
    kind: ObjectKind
    name: str
    settings: tuple[tuple[str, object], ...] = ()
    comment: str | None = None
    handle: int | None = None
    line: int = field(default=0, compare=False)

    def setting(self, name: str) -> object:
        """The value of setting `name`; KeyError if the object has none."""
        for key, value in self.settings:
            if key == name:
                return value
        raise KeyError(name)


@dataclass(frozen=True, slots=True)
class Flowtable:
    """`flowtable NAME { hook ingress priority P; devices = { ... }; }`."""

    family: Family
    table: str
    name: str
    hook: str
    priority: Priority
    devices: tuple[str, ...] = ()
    offload: bool = False
    counter: bool = False
    handle: int | None = None
    line: int = field(default=0, compare=False)


@dataclass(frozen=True, slots=True)
class Table:
    """A table: its objects, sets and maps, flowtables and chains, each in the order nft lists them."""

    family: Family
    name: str
    flags: tuple[str, ...] = ()
    comment: str | None = None
    objects: tuple[NamedObject, ...] = ()
    sets: tuple[Set, ...] = ()
    flowtables: tuple[Flowtable, ...] = ()
    chains: tuple[Chain, ...] = ()
    handle: int | None = None
    owner: str | None = None
    line: int = field(default=0, compare=False)

    def chain(self, name: str) -> Chain:
        """The chain called `name`; KeyError if the table has none."""
        for chain in self.chains:
            if chain.name == name:
                return chain
        raise KeyError(name)

    def set(self, name: str) -> Set:
        """The set or map called `name`; KeyError if the table has none."""
        for item in self.sets:
            if item.name == name:
                return item
        raise KeyError(name)

    @property
    def rules(self) -> Iterator[Rule]:
        for chain in self.chains:
            yield from chain.rules


@dataclass(frozen=True, slots=True)
class Ruleset:
    """A whole `nft list ruleset`: its tables in order. `source` names where it came from, for messages."""

    source: str
    tables: tuple[Table, ...]

    def table(self, family: str, name: str) -> Table:
        """The table `family name`; KeyError if the ruleset has none."""
        for table in self.tables:
            if table.family == family and table.name == name:
                return table
        raise KeyError(f"{family} {name}")

    @property
    def rules(self) -> Iterator[Rule]:
        for table in self.tables:
            yield from table.rules

    def summary(self) -> tuple[int, int, int]:
        """(tables, chains, rules) counts."""
        chains = sum(len(t.chains) for t in self.tables)
        rules = sum(len(c.rules) for t in self.tables for c in t.chains)
        return len(self.tables), chains, rules
