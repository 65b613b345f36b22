"""What nft and the kernel refuse in a table that reads well word by word.

`table_problem(table, lines)` gives the first (line, column, message) of: a jump, goto or verdict-map value
naming a chain the table lacks, or a base chain (the kernel refuses both); a set, map, flowtable or named
object the table lacks, a set used as a map or a map of the wrong kind, a key whose datatypes are not the
set's; a prefix or range in a set without `flags interval`; protocols that cannot both hold (`ip` and `ip6`
in one rule, `ip6` in an ip table, `tcp` in an arp table); a translation to a port with no transport
protocol matched before it; a map's update without a value (or a set's with one), a meter named as a set or
another meter; and, from each base chain down the chains it reaches (a chain binding's rules are its rule's
chain's), a jump loop, a nat statement in a chain that is not a nat chain or at a hook where the kernel refuses
it, `rt mtu` before the route is known, a flow offload outside forward, osf and ipsec at hooks their kernel
modules refuse. The kernel validates other hook-bound expressions too (which
meta keys may be set where, sockets, fib results); those are not modelled here.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace

from iptables_lens.nft import exprs as ex
from iptables_lens.nft.model import (
    BoundChain,
    Chain,
    Concat,
    Const,
    Counter,
    Element,
    Expr,
    FlowOffload,
    IpOption,
    Ipsec,
    Mangle,
    MapLookup,
    Match,
    Meta,
    Meter,
    Nat,
    ObjectRef,
    Osf,
    Payload,
    Prefix,
    Range,
    Rt,
    Rule,
    Set,
    SetLiteral,
    SetRef,
    SetUpdate,
    Statement,
    Table,
    Tproxy,
    Verdict,
    VerdictMap,
)

Problem = tuple[int, int, str]
_NAT_HOOKS = {"dnat": ("prerouting", "output"), "redirect": ("prerouting", "output"),
              "snat": ("postrouting", "input"), "masquerade": ("postrouting",)}
_NETWORK = {"ip": "ip", "icmp": "ip", "igmp": "ip", "ip6": "ip6", "icmpv6": "ip6", "arp": "arp"}
_TRANSPORT = ("tcp", "udp", "udplite", "sctp", "dccp")
_FAMILY_NETWORK = {"ip": "ip", "ip6": "ip6", "arp": "arp"}
_USES_SETS = frozenset({Match, VerdictMap, SetUpdate, ObjectRef, Nat, Mangle})
_HOOK_BOUND = frozenset({Nat, Mangle, FlowOffload, Tproxy})
_HOOK_BOUND_SELECTORS = frozenset({Osf, Ipsec})
_OSF_HOOKS = ("prerouting", "input", "forward")
_IPSEC_HOOKS = {"in": ("prerouting", "input", "forward"), "out": ("forward", "output", "postrouting")}
_OBJECT_MAPS = tuple((kind,) for kind in ("counter", "quota", "limit", "ct helper", "ct timeout", "ct expectation",
                                           "secmark", "synproxy"))


def _where(lines: list[str] | None, line: int, needle: str) -> tuple[int, int]:
    if not lines or not 0 < line <= len(lines):
        return line or 1, 1
    column = lines[line - 1].find(needle)
    return line, column + 1 if column >= 0 else 1


def _verdicts(expr: object) -> Iterator[Verdict]:
    if isinstance(expr, Verdict):
        yield expr
    elif isinstance(expr, SetLiteral):
        for element in expr.elements:
            yield from _verdicts(element.data)


def _set_uses(stmt: Statement) -> Iterator[tuple[str, str, Expr | None]]:
    """(how, name, key) for each named set a statement uses: how is "set", "vmap", "map" or "update"."""
    if isinstance(stmt, Match) and isinstance(stmt.right, SetRef):
        yield "set", stmt.right.name, stmt.left
    elif isinstance(stmt, VerdictMap) and isinstance(stmt.data, SetRef):
        yield "vmap", stmt.data.name, stmt.key
    elif isinstance(stmt, SetUpdate):
        yield ("update", stmt.set, None) if stmt.data is None else ("map update", stmt.set, stmt.data)
    if isinstance(stmt, ObjectRef) and isinstance(stmt.name, MapLookup) and isinstance(stmt.name.data, SetRef):
        yield stmt.kind, stmt.name.data.name, stmt.name.key
    # (Not getattr with a default: on slotted classes a missing attribute costs an exception.)
    value = stmt.value if isinstance(stmt, Mangle) else stmt.addr if isinstance(stmt, Nat) else None
    if isinstance(value, MapLookup) and isinstance(value.data, SetRef):
        yield "map", value.data.name, value.key


def _key_names(key: Expr) -> tuple[str, ...] | None:
    names = []
    for item in key.items if isinstance(key, Concat) else (key,):
        typed = ex.selector_type(item)
        if typed is None:
            return None
        names.append(typed.datatype.name)
    return tuple(names)


def _set_key_names(item: Set) -> tuple[str, ...] | None:
    if item.key_typeof:
        types = ex.key_types(item.key_typeof)
        return tuple(t.datatype.name for t in types) if types else None
    return item.key_types


def _set_use_problem(how: str, item: Set | None, name: str, key: Expr | None) -> str | None:
    if item is None:
        return f"no set or map named {name!r} in this table"
    if how == "vmap" and not item.is_verdict_map:
        return f"{item.kind} {name!r} is not a verdict map" if item.kind == "map" else f"{name!r} is not a map"
    if how == "map" and (item.kind != "map" or item.is_verdict_map or item.data_types[:1] in _OBJECT_MAPS):
        return f"{name!r} is not a map of values"
    if how == "update" and item.kind == "map":
        return f"map {name!r} maps its elements to values: its update gives one after ':'"
    if how == "map update" and (item.kind != "map" or item.is_verdict_map or item.data_types[:1] in _OBJECT_MAPS):
        return f"{name!r} is not a map of values: a rule gives no value to its elements"
    if how not in ("set", "vmap", "map", "update", "map update") and (item.kind != "map"
                                                                        or item.data_types != (how,)):
        return f"{name!r} is not a map of {how} objects"
    if key is not None:
        wanted, found = _set_key_names(item), _key_names(key)
        if how == "map update":
            types = ex.key_types(item.data_typeof) if item.data_typeof else None
            wanted = tuple(t.datatype.name for t in types) if types else item.data_types
        plain = {"xinteger": "integer"}
        if wanted and found and tuple(plain.get(n, n) for n in found) != tuple(plain.get(n, n) for n in wanted):
            return f"datatype mismatch: {item.kind} {name!r} holds {' . '.join(wanted)}, not {' . '.join(found)}"
    return None


def _transport_known(statements: tuple[Statement, ...]) -> bool:
    """Whether a transport protocol is pinned down before a translation's port: a tcp/udp/... field, or
    `meta l4proto`, `ip protocol`, `ip6 nexthdr` equal to one protocol."""
    for stmt in statements:
        if not isinstance(stmt, Match):
            continue
        for item in stmt.left.items if isinstance(stmt.left, Concat) else (stmt.left,):
            if isinstance(item, Payload) and item.protocol in _TRANSPORT:
                return True
        left = stmt.left
        protocol_key = (isinstance(left, Meta) and left.key == "l4proto") or (
            isinstance(left, Payload) and (left.protocol, left.field) in (("ip", "protocol"), ("ip6", "nexthdr")))
        if protocol_key and stmt.op == "==" and isinstance(stmt.right, Const):
            return True
    return False


class _Graph:
    """What the walk from the base chains needs, gathered while the rules are checked: each chain's targets
    (through jumps, gotos and verdict maps, literal or named) and its hook-bound statements."""

    def __init__(self, sets: dict[str, Set], regular: set[str]):
        self.sets = sets
        self.regular = regular
        self.targets: dict[str, tuple[str, ...]] = {}
        self.bound: dict[str, dict[tuple[type, object], tuple[Rule, Statement]]] = {}
        self.named: dict[str, list[str | None]] = {}
        self.meters: set[str] = set()

    def named_targets(self, name: str) -> list[str | None]:
        found = self.named.get(name)
        if found is None:
            item = self.sets.get(name)
            found = self.named[name] = [v.target for e in item.elements for v in _verdicts(e.data)] if item else []
        return found

    def add_targets(self, chain: str, found: list[str | None]) -> None:
        """The regular chains `chain` jumps or goes to (base chains are refused, verdicts are not chains)."""
        regular = self.regular
        if len(found) == 1:
            self.targets[chain] = (found[0],) if found[0] in regular else ()  # type: ignore[assignment]
        else:
            self.targets[chain] = tuple(name for name in dict.fromkeys(found) if name in regular)  # type: ignore[misc]


def _rule_problem(rule: Rule, table: Table, chains: dict[str, Chain], sets: dict[str, Set],
                  lines: list[str] | None, graph: _Graph, targets: list[str | None]) -> Problem | None:
    network = _FAMILY_NETWORK.get(table.family)
    transport: list[str | None] = [None]
    regular = graph.regular
    for index, stmt in enumerate(rule.statements):
        kind = type(stmt)
        # The common statements first, each checked as briefly as it can be.
        if kind is Match or kind is VerdictMap:
            if kind is VerdictMap:
                if type(stmt.data) is SetRef:  # type: ignore[union-attr]
                    targets.extend(graph.named_targets(stmt.data.name))  # type: ignore[union-attr]
                for verdict in _verdicts(stmt.data):  # type: ignore[union-attr]
                    targets.append(verdict.target)
                    if verdict.target is not None and verdict.target not in regular:
                        return _verdict_problem(verdict, rule, table, chains, lines)
            left = stmt.left if kind is Match else stmt.key  # type: ignore[union-attr]
            for item in left.items if type(left) is Concat else (left,):  # type: ignore[union-attr]
                if type(item) in _HOOK_BOUND_SELECTORS:
                    if type(item) is Ipsec and table.family not in ("ip", "ip6", "inet"):
                        return rule.line or 1, 1, "ipsec expression is only valid in ip/ip6/inet tables"
                    graph.bound.setdefault(rule.chain, {}).setdefault((type(item), item), (rule, stmt))  # type: ignore[union-attr]
            if type(left) is not Meta:
                message, network = _protocols(left, table.family, network, transport)
                if message is not None:
                    return rule.line or 1, 1, message
            if kind is Match and type(stmt.right) is not SetRef:  # type: ignore[union-attr]
                continue
        elif kind is Verdict:
            target = stmt.target  # type: ignore[union-attr]
            if target is not None:
                targets.append(target)
                if target not in regular:
                    return _verdict_problem(stmt, rule, table, chains, lines)  # type: ignore[arg-type]
            continue
        elif kind is Counter:
            continue
        elif kind is BoundChain:
            for bound in stmt.rules:  # type: ignore[union-attr]
                inner = replace(rule, statements=bound.statements, line=bound.line or rule.line)
                problem = _rule_problem(inner, table, chains, sets, lines, graph, targets)
                if problem is not None:
                    return problem
            continue
        else:
            problem = _other_problem(index, stmt, rule, table, sets, lines, graph)
            if problem is not None:
                return problem
        if kind in _USES_SETS:
            for how, name, key in _set_uses(stmt):
                problem_text = _set_use_problem(how, sets.get(name), name, key)
                if problem_text is not None:
                    return (*_where(lines, rule.line, f"@{name}"), problem_text)
    return None


def _other_problem(index: int, stmt: Statement, rule: Rule, table: Table, sets: dict[str, Set],
                   lines: list[str] | None, graph: _Graph) -> Problem | None:
    """What is wrong with a statement other than a match, verdict, verdict map or counter."""
    kind = type(stmt)
    if kind in _HOOK_BOUND and (kind is not Mangle or isinstance(stmt.value, Rt)):  # type: ignore[union-attr]
        # What a hook allows depends only on the statement's kind (and rt's key): the first of each will do.
        how = stmt.value.key if kind is Mangle else getattr(stmt, "kind", None)  # type: ignore[union-attr]
        graph.bound.setdefault(rule.chain, {}).setdefault((kind, how), (rule, stmt))
    if kind is SetUpdate and stmt.timeout:  # type: ignore[union-attr]
        target = sets.get(stmt.set)  # type: ignore[union-attr]
        if target is not None and "timeout" not in target.flags:
            return (*_where(lines, rule.line, f"@{stmt.set}"),  # type: ignore[union-attr]
                    f"a timeout for an element of {target.kind} {target.name!r}, which has no timeout flag")
    if kind is Nat or kind is Tproxy:
        if stmt.port is not None and not _transport_known(rule.statements[:index]):  # type: ignore[union-attr]
            return (*_where(lines, rule.line, ":"), "transport protocol mapping is only valid after transport "
                    "protocol match")
    elif kind is FlowOffload:
        if stmt.flowtable not in {f.name for f in table.flowtables}:  # type: ignore[union-attr]
            return (*_where(lines, rule.line, f"@{stmt.flowtable}"),  # type: ignore[union-attr]
                    f"no flowtable named {stmt.flowtable!r}")  # type: ignore[union-attr]
    elif isinstance(stmt, Meter):
        meter = stmt.name
        if meter in sets or meter in graph.meters:
            what = "a set or map" if meter in sets else "another meter"
            return (*_where(lines, rule.line, f"meter {meter}"),
                    f"meter {meter!r}: the table has {what} of that name (the kernel refuses it: File exists)")
        graph.meters.add(meter)
    elif kind is ObjectRef and isinstance(stmt.name, Const):  # type: ignore[union-attr]
        name = stmt.name.value  # type: ignore[union-attr]
        if not any(o.kind == stmt.kind and o.name == name for o in table.objects):  # type: ignore[union-attr]
            return (*_where(lines, rule.line, f'"{name}"'), f"no {stmt.kind} object named {name!r} in this table")  # type: ignore[union-attr]
    return None


def _verdict_problem(verdict: Verdict, rule: Rule, table: Table, chains: dict[str, Chain],
                     lines: list[str] | None) -> Problem | None:
    target = verdict.target
    if target is None:
        return None
    chain = chains.get(target)
    if chain is None:
        return (*_where(lines, rule.line, target), f"{verdict.kind} to chain {target!r}, which table "
                f"{table.family} {table.name} does not have")
    if chain.is_base:
        return (*_where(lines, rule.line, target), f"cannot {verdict.kind} to base chain {target!r}: only regular "
                "chains are jumped to")
    return None


def _protocols(expr: Expr, family: str, network: str | None, transport: list[str | None]
               ) -> tuple[str | None, str | None]:
    """Check the protocols `expr` reads against those the rule read before: (a message, the network layer)."""
    for item in expr.items if type(expr) is Concat else (expr,):  # type: ignore[union-attr]
        kind = type(item)
        if kind is Payload:
            protocol = item.protocol  # type: ignore[union-attr]
        elif kind is IpOption:
            protocol = "ip"
        elif isinstance(item, ex.Ct) and item.key[:3] in ("ip ", "ip6"):
            protocol = item.key.split()[0]
        else:
            continue
        layer = _NETWORK.get(protocol)
        if layer is not None:
            if family == "arp" and layer != "arp" or family == "inet" and layer == "arp":
                return f"conflicting protocols specified: {family} vs. {protocol}", network
            if network is not None and layer != network:
                return f"conflicting protocols specified: {network} vs. {protocol}", network
            network = layer
        elif protocol in _TRANSPORT:
            if family == "arp":
                return f"conflicting protocols specified: arp vs. {protocol}", network
            if transport[0] is not None and transport[0] != protocol:
                return f"conflicting protocols specified: {transport[0]} vs. {protocol}", network
            transport[0] = protocol
    return None, network


def _element_problem(item: Set, chains: dict[str, Chain], counted: bool) -> str | None:
    interval = "interval" in item.flags
    declared = len(item.statements)
    for element in item.elements:
        message = _statements_problem(item, element, declared) if counted else None
        if message is not None:
            return message
        for verdict in _verdicts(SetLiteral((element,))):
            if verdict.target is not None and verdict.target not in chains:
                return f"{verdict.kind} to chain {verdict.target!r}, which this table does not have"
        if not interval and _is_interval(element):
            return (f"{item.kind} {item.name!r} holds a prefix or range: add 'flags interval' to its declaration "
                    "to hold them")
    return None


def _statements_problem(item: Set, element: Element, declared: int) -> str | None:
    # Elements of a dynamic set carry what the rules that add them give them.
    if element.statements and not declared and "dynamic" not in item.flags:
        return f"{item.kind} {item.name!r}: an element has statements its declaration does not have"
    if element.statements and declared and len(element.statements) != declared:
        return (f"{item.kind} {item.name!r}: number of statements mismatch, the set expects {declared} but an "
                f"element has {len(element.statements)}")
    return None


def _is_interval(element: Element) -> bool:
    key = element.key
    return any(isinstance(item, (Prefix, Range)) for item in (key.items if isinstance(key, Concat) else (key,)))


def _walk_problem(table: Table, chains: dict[str, Chain], graph: _Graph) -> Problem | None:
    """Walk down from each base chain, through jumps, gotos and verdict maps: loops, and what a chain's hook
    and type forbid."""
    targets = graph.targets
    bases = [chain for chain in table.chains if chain.hook is not None]
    order: list[str] = []
    return _loop_problem(bases, chains, targets, order) or _bound_problem(bases, targets, graph.bound, order)


def _loop_problem(bases: list[Chain], chains: dict[str, Chain], targets: dict[str, tuple[str, ...]],
                  order: list[str]) -> Problem | None:
    """A chain a base chain reaches that jumps back to itself (the kernel refuses it, unreached ones not).
    `order` gets the chains the bases reach, each after all the chains it reaches."""
    state: dict[str, bool] = {}  # False while the chain is on the walk's path, True once walked
    for base in bases:
        if base.name in state:
            continue
        state[base.name] = False
        path, walks = [base.name], [iter(targets[base.name])]
        while walks:
            for target in walks[-1]:
                walked = state.get(target)
                if walked is None:
                    further = targets[target]
                    if not further:  # a chain that jumps nowhere is walked at once
                        state[target] = True
                        order.append(target)
                        continue
                    state[target] = False
                    path.append(target)
                    walks.append(iter(further))
                    break
                if walked is False:
                    loop = " -> ".join(path[path.index(target):] + [target])
                    return chains[target].line or 1, 1, (f"chain {target!r} jumps back to itself ({loop}): the "
                                                         "kernel refuses loops (Too many links)")
            else:
                name = path.pop()
                walks.pop()
                state[name] = True
                order.append(name)
    return None


def _bound_problem(bases: list[Chain], targets: dict[str, tuple[str, ...]],
                   bound: dict[str, dict[tuple[type, object], tuple[Rule, Statement]]], order: list[str]
                   ) -> Problem | None:
    """A hook-bound statement in a chain a base chain reaches whose hook or type forbids it."""
    if not bound:
        return None
    # Which base chains reach each chain, as bits, handed down from each chain to those it reaches.
    reach: dict[str, int] = {base.name: 1 << i for i, base in enumerate(bases)}
    for name in reversed(order):
        bits = reach.get(name, 0)
        for target in targets[name]:
            reach[target] = reach.get(target, 0) | bits
    # Each kind of statement is asked once per set of base chains reaching it (most chains share one).
    answered: set[tuple[int, tuple[type, object]]] = set()
    for name, statements in bound.items():
        bits = reach.get(name, 0)
        for key, (rule, stmt) in statements.items():
            if not bits or (bits, key) in answered:
                continue
            for i, base in enumerate(bases):
                if bits >> i & 1:
                    assert base.hook is not None
                    message = _hook_problem(stmt, base.hook.hook, base.hook.type, base.name, base.family)
                    if message is not None:
                        return rule.line or 1, 1, message
            answered.add((bits, key))
    return None


def _selector_problem(stmt: Statement, hook: str, base: str, family: str) -> str | None:
    """osf and ipsec where the kernel refuses them: by hook, and osf outside ip and inet tables (Linux 6.18 here;
    nft_osf_validate, nft_xfrm_validate)."""
    left = stmt.left if isinstance(stmt, Match) else stmt.key if isinstance(stmt, VerdictMap) else None
    for item in left.items if isinstance(left, Concat) else (left,):
        if isinstance(item, Osf) and (hook not in _OSF_HOOKS or family not in ("ip", "inet")):
            return f"osf only works at the prerouting, input and forward hooks of ip and inet tables (base chain " \
                   f"{base!r})"
        if isinstance(item, Ipsec) and hook not in _IPSEC_HOOKS[item.direction]:
            return f"ipsec {item.direction} does not work at the {hook} hook (base chain {base!r})"
    return None


def _hook_problem(stmt: Statement, hook: str, chain_type: str, base: str, family: str) -> str | None:
    if isinstance(stmt, (Match, VerdictMap)):
        return _selector_problem(stmt, hook, base, family)
    if isinstance(stmt, Nat):
        if chain_type != "nat":
            return f"{stmt.kind} only works in a nat chain, and base chain {base!r} is a {chain_type} chain"
        if hook not in _NAT_HOOKS[stmt.kind]:
            return f"{stmt.kind} does not work at the {hook} hook (base chain {base!r})"
    if isinstance(stmt, Mangle) and isinstance(stmt.value, Rt) and stmt.value.key == "mtu":
        if hook not in ("forward", "output", "postrouting"):
            return f"rt mtu is not known at the {hook} hook (base chain {base!r})"
    if isinstance(stmt, FlowOffload) and hook != "forward":
        return f"flow offload only works at the forward hook (base chain {base!r})"
    if isinstance(stmt, Tproxy) and hook != "prerouting":
        return f"tproxy only works at the prerouting hook (base chain {base!r})"
    return None


def table_problem(table: Table, lines: list[str] | None = None, from_json: bool = False) -> Problem | None:
    """The first thing in `table` that nft or the kernel refuses, as (line, column, message), or None.
    `lines` are the text's lines, to find the column of the offending name. A table `from_json` has lost
    its elements' statements after the first (nft 1.0.6's JSON keeps one), so they are not counted."""
    chains = {chain.name: chain for chain in table.chains}
    sets = {item.name: item for item in table.sets}
    for item in table.sets:
        message = _element_problem(item, chains, not from_json)
        if message is not None:
            return item.line or 1, 1, message
    graph = _Graph(sets, {chain.name for chain in table.chains if chain.hook is None})
    for chain in table.chains:
        found: list[str | None] = []
        for rule in chain.rules:
            problem = _rule_problem(rule, table, chains, sets, lines, graph, found)
            if problem is not None:
                return problem
        graph.add_targets(chain.name, found)
    return _walk_problem(table, chains, graph)
