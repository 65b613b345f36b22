"""The expressions and statements of a rule, as trees: what a rule reads, and what it does.

A `Match` is (what is read: `Payload`, `Meta`, `Ct`, `Fib`, `Numgen`, `Hash`, ... of `selectors`; the
operator; the right-hand side: a `Const`, `Prefix`, `Range`, `Concat`, `ValueList`, `SetLiteral` or `SetRef`).
Constants carry the name of their nft datatype and a value in the form `nft -j` gives it (see `model`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from iptables_lens.nft import selectors as sel
from iptables_lens.nft import types as ty

# -- values: what a selector is compared with ------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Const:
    """A constant of an nft datatype, e.g. Const("ipv4_addr", "10.0.0.1"), Const("mark", 16384)."""

    type: str
    value: int | str | bool


@dataclass(frozen=True, slots=True)
class Prefix:
    """`10.0.0.0/8`: a network."""

    base: Const
    length: int


@dataclass(frozen=True, slots=True)
class Range:
    """`1000-2000`, `10.0.0.1-10.0.0.5`: both ends included."""

    low: Expr
    high: Expr


@dataclass(frozen=True, slots=True)
class Concat:
    """`ip daddr . meta l4proto . th dport`, or a value of such a key: `10.0.0.1 . tcp . 80`."""

    items: tuple[Expr, ...]


@dataclass(frozen=True, slots=True)
class ValueList:
    """Flags given together, `established,related` (a bitmask's values, or `fin,syn,rst,ack`)."""

    items: tuple[Const, ...]


@dataclass(frozen=True, slots=True)
class Binop:
    """`meta mark & 0x0000ff00`, `meta mark | 0x00004000`: op is one of & | ^ << >>."""

    op: Literal["&", "|", "^", "<<", ">>"]
    left: Expr
    right: Expr


@dataclass(frozen=True, slots=True)
class Verdict:
    """accept, drop, continue, return, jump CHAIN or goto CHAIN."""

    kind: Literal["accept", "drop", "continue", "return", "jump", "goto"]
    target: str | None = None


@dataclass(frozen=True, slots=True)
class Element:
    """One element of a set or map: its key, the value it maps to (maps), and what nft keeps with it.

    `timeout` and `expires` are in milliseconds; `statements` are those kept per element (`counter packets 0
    bytes 0`)."""

    key: Expr
    data: Expr | None = None
    timeout: int | None = None
    expires: int | None = None
    comment: str | None = None
    statements: tuple[Statement, ...] = ()


@dataclass(frozen=True, slots=True)
class SetLiteral:
    """An anonymous set or map written in a rule: `{ 22, 80 }`, `{ 0 : goto a, 1 : goto b }`."""

    elements: tuple[Element, ...]


@dataclass(frozen=True, slots=True)
class SetRef:
    """A named set or map of the rule's table: `@cluster-ips`."""

    name: str


@dataclass(frozen=True, slots=True)
class MapLookup:
    """`KEY map DATA`: the value DATA maps KEY to (`ip daddr map @m`, `numgen random mod 2 map { ... }`)."""

    key: Expr
    data: SetLiteral | SetRef


Expr = (sel.Payload | sel.RawPayload | sel.Meta | sel.Ct | sel.Fib | sel.Numgen | sel.Hash | sel.Rt | sel.Socket
        | sel.Exthdr | sel.TcpOption | sel.IpOption | sel.SctpChunk | sel.Osf | sel.Ipsec | Const | Prefix | Range
        | Concat | ValueList | Binop | Verdict | SetLiteral | SetRef | MapLookup)

# -- statements: what a rule does ---------------------------------------------------------------------------

Operator = Literal["==", "!=", "<", ">", "<=", ">=", "in"]


@dataclass(frozen=True, slots=True)
class Match:
    """`LEFT [OP] RIGHT`: the rule goes on only if it holds. "in" is nft's implicit operator for flags
    (`ct state established,related`: any of them is set); `==` is printed only where nft prints it."""

    op: Operator
    left: Expr
    right: Expr


@dataclass(frozen=True, slots=True)
class VerdictMap:
    """`KEY vmap DATA`: the verdict DATA maps KEY to; nothing happens when KEY is not in it."""

    key: Expr
    data: SetLiteral | SetRef


@dataclass(frozen=True, slots=True)
class Mangle:
    """`KEY set VALUE`: `meta mark set meta mark | 0x00004000`, `ct mark set 0x1`, `ip dscp set cs1`."""

    key: Expr
    value: Expr


@dataclass(frozen=True, slots=True)
class Counter:
    """`counter packets N bytes M`; None and None where nft prints no numbers (a set's `counter`)."""

    packets: int | None = None
    bytes: int | None = None


@dataclass(frozen=True, slots=True)
class ObjectRef:
    """A named object used by a rule: `counter name "c"`, `quota name "q"`, `ct helper set "ftp"`; `name` is
    a Const string or a MapLookup choosing one."""

    kind: str
    name: Expr


@dataclass(frozen=True, slots=True)
class Log:
    """`log [prefix "..."] [group N] [snaplen N] [queue-threshold N] [level L] [flags ...]`."""

    prefix: str | None = None
    group: int | None = None
    snaplen: int | None = None
    queue_threshold: int | None = None
    level: str | None = None
    flags: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Limit:
    """`limit rate [over] N/UNIT [burst ...]`: `rate` and `burst` are packets, or bytes when `bytes` is set."""

    rate: int
    per: str
    burst: int
    bytes: bool = False
    over: bool = False


@dataclass(frozen=True, slots=True)
class Quota:
    """`quota [over] N UNIT [used N UNIT]`, in bytes."""

    bytes: int
    used: int = 0
    over: bool = False


@dataclass(frozen=True, slots=True)
class Nat:
    """snat, dnat, masquerade or redirect, with the address and port to translate to and the flags
    (random, fully-random, persistent). `family` is "ip" or "ip6" where the listing names it."""

    kind: Literal["snat", "dnat", "masquerade", "redirect"]
    family: str | None = None
    addr: Expr | None = None
    port: Expr | None = None
    flags: tuple[str, ...] = ()
    prefix: bool = False


@dataclass(frozen=True, slots=True)
class Reject:
    """`reject [with TYPE CODE]`: type is icmp, icmpv6, icmpx or "tcp reset"; the defaults nft leaves out of
    the listing (port-unreachable of the table's family) are filled in."""

    type: str
    code: str | None = None


@dataclass(frozen=True, slots=True)
class SetUpdate:
    """`add @SET { KEY ... }`, `update @SET { ip saddr }` or `delete`: the packet's KEY goes into (or out of) a
    dynamic set, with the statements kept per element (`timeout`, `counter`). A map's update gives the value
    KEY maps to as `data` (`update @m { ip saddr : meta mark }`)."""

    op: Literal["add", "update", "delete"]
    set: str
    key: Expr
    timeout: int | None = None
    statements: tuple[Statement, ...] = ()
    data: Expr | None = None


@dataclass(frozen=True, slots=True)
class Meter:
    """`meter NAME size N { KEY [timeout T] STATEMENT }`: a set of the rule's own, filled from the packet path,
    that keeps a stateful statement (counter, limit, quota or connection count) for each KEY; the rule goes on
    as that statement says for the packet's KEY."""

    name: str
    size: int
    key: Expr
    statement: Statement
    timeout: int | None = None


@dataclass(frozen=True, slots=True)
class BoundRule:
    """A rule of a chain bound to a rule (`jump { ... }`): its statements and comment."""

    statements: tuple[Statement, ...]
    comment: str | None = None
    line: int = field(default=0, compare=False)


@dataclass(frozen=True, slots=True)
class BoundChain:
    """`jump { ... }` or `goto { ... }`: the jump to a chain with no name of its own, bound to the rule, whose
    rules are written in the braces, one a line."""

    kind: Literal["jump", "goto"]
    rules: tuple[BoundRule, ...] = ()


@dataclass(frozen=True, slots=True)
class Notrack:
    """`notrack`: no connection tracking for this packet."""


@dataclass(frozen=True, slots=True)
class Dup:
    """`dup to ADDR [device DEV]`."""

    addr: Expr | None = None
    device: Expr | None = None


@dataclass(frozen=True, slots=True)
class Fwd:
    """`fwd to DEV` (netdev), or `fwd ip to ADDR device DEV`."""

    device: Expr
    family: str | None = None
    addr: Expr | None = None


@dataclass(frozen=True, slots=True)
class Tproxy:
    """`tproxy [ip|ip6] to [ADDR][:PORT]`."""

    family: str | None = None
    addr: Expr | None = None
    port: Expr | None = None


@dataclass(frozen=True, slots=True)
class Synproxy:
    """`synproxy [mss N] [wscale N] [timestamp] [sack-perm]`."""

    mss: int | None = None
    wscale: int | None = None
    flags: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Queue:
    """`queue [flags bypass,fanout] to N` (or a range)."""

    num: Expr | None = None
    flags: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class FlowOffload:
    """`flow add @FLOWTABLE`: the flow is offloaded to a flowtable."""

    flowtable: str


@dataclass(frozen=True, slots=True)
class ConnLimit:
    """`ct count [over] N`."""

    count: int
    over: bool = False


@dataclass(frozen=True, slots=True)
class Xt:
    """An iptables match, target or watcher kept by iptables-nft (`nft -j` names it; the text listing shows
    its translation, or nothing: the comment match, whose translation nft 1.0.6 prints as nothing, leaves two
    blanks between the statements around it, or one after the rule's indentation)."""

    kind: Literal["match", "target", "watcher"]
    name: str


Statement = (Match | VerdictMap | Mangle | Verdict | Counter | ObjectRef | Log | Limit | Quota | Nat | Reject
             | SetUpdate | Notrack | Dup | Fwd | Tproxy | Synproxy | Queue | FlowOffload | ConnLimit | Xt | Meter
             | BoundChain)


def selector_type(expr: Expr) -> ty.Typed | None:
    """The datatype of what a selector reads (None for anything else): the type its values are written in."""
    if isinstance(expr, sel.Payload):
        return ty.PAYLOAD_FIELDS[expr.protocol][expr.field]
    if isinstance(expr, sel.Meta):
        return ty.META_KEYS[expr.key]
    if isinstance(expr, sel.Ct):
        if expr.key in ty.CT_FAMILY_KEYS:
            return ty.family_address(expr.family)
        return ty.CT_KEYS[expr.key]
    if isinstance(expr, sel.Fib):
        return ty.FIB_RESULTS[expr.result]
    if isinstance(expr, (sel.Numgen, sel.Hash)):
        return ty.INTEGER32
    if isinstance(expr, sel.Rt):
        return ty.typed("ipv6_addr") if expr.key == "nexthop" and expr.family == "ip6" else ty.RT_KEYS[expr.key]
    if isinstance(expr, sel.Socket):
        return ty.SOCKET_KEYS[expr.key]
    if isinstance(expr, sel.RawPayload):
        return ty.typed("xinteger", expr.length)
    if isinstance(expr, sel.TcpOption):
        return ty.TCP_OPTIONS[expr.name][expr.field] if expr.field else ty.BOOLEAN
    if isinstance(expr, sel.Exthdr):
        return ty.EXTHDR_FIELDS[expr.name][expr.field] if expr.field else ty.BOOLEAN
    if isinstance(expr, sel.IpOption):
        return ty.IP_OPTIONS[expr.name][expr.field] if expr.field else ty.BOOLEAN
    if isinstance(expr, sel.SctpChunk):
        return ty.SCTP_CHUNKS[expr.name][expr.field] if expr.field else ty.BOOLEAN
    if isinstance(expr, sel.Osf):
        return ty.OSF_NAME
    if isinstance(expr, sel.Ipsec):
        return ty.family_address(expr.family) if expr.family else ty.IPSEC_KEYS[expr.key]
    if isinstance(expr, Binop):
        return selector_type(expr.left)
    return None


def key_types(exprs_: tuple[Expr, ...]) -> tuple[ty.Typed, ...] | None:
    """The datatypes of a `typeof` key (its selectors, concatenated or not), or None if one is unknown."""
    found: list[ty.Typed] = []
    for expr in exprs_:
        for item in expr.items if isinstance(expr, Concat) else (expr,):
            typed = selector_type(item)
            if typed is None:
                return None
            found.append(typed)
    return tuple(found)
