"""The semantic diff of two nft rulesets: tables, chains, rules, sets, maps and their elements added, removed or
changed, grouped by the Service they serve (`kube.nft_services.NftServiceIndex`), noise apart, in iptables'
diff model (`iptables.diff.DumpDiff`), which the same renderers print.

A rule is its chain, its statements and its comment, as a person reads a diff, not its handle or counters; a
chain's rules are compared as multisets, as iptables' diff compares them (kube-proxy rewrites a chain whole: a
position is no identity). A kept rule that moved is reported only where its order matters: it and a rule it
moved across both act (a verdict, NAT, a mark or set update, a log: more than matching and counting) and could
match one packet (no field compared with one value in one and another in the other, as kube-proxy's
per-address rules are). A rule replaced by one differing only in an anonymous set or map (`numgen random mod 3
vmap { ... }` losing an endpoint) is removed and added, and that map's elements that went or came are reported
too (a numgen map's by their value: the numbers are only their order).

Noise, folded: handles (`# handle N` of `nft -a`), counters (`counter packets N bytes M` of rules, elements
and named counters), elements' `expires`, and the order nft lists a set's or map's elements in.

>>> from iptables_lens.nft import parse_ruleset
>>> before = parse_ruleset("table ip t {\\n\\tset s {\\n\\t\\ttype ipv4_addr\\n"
...                        "\\t\\telements = { 10.0.0.1, 10.0.0.3 }\\n\\t}\\n}\\n")
>>> after = parse_ruleset("table ip t { # handle 4\\n\\tset s { # handle 1\\n\\t\\ttype ipv4_addr\\n"
...                       "\\t\\telements = { 10.0.0.3, 10.0.0.2, 10.0.0.1 }\\n\\t}\\n}\\n")
>>> changes = diff_rulesets(before, after)
>>> [(g.service, g.summary, [c.line for c in g.changes()]) for g in changes.services]
[(None, '1 element(s) added, 0 removed', ['element ip t s: 10.0.0.2'])]
>>> sorted(n.kind for n in changes.noise)
['element-order', 'handles']
"""

from __future__ import annotations

import collections
import dataclasses
import functools
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, replace
from difflib import SequenceMatcher
from typing import Any

from iptables_lens.gcpause import paused_gc
from iptables_lens.iptables.diff import (
    ChainChange,
    ChangeKind,
    DeclarationChange,
    DumpDiff,
    ElementChange,
    Noise,
    NoiseKind,
    RuleChange,
    ServiceChanges,
)
from iptables_lens.kube.nft_services import ElementOwner, NftServiceIndex, set_kind
from iptables_lens.nft.fmt import format_ruleset, format_table
from iptables_lens.nft.fmtrules import format_element, format_rule
from iptables_lens.nft.jsonread import json_view
from iptables_lens.nft.model import (
    BoundChain,
    Chain,
    ConnLimit,
    Const,
    Counter,
    Element,
    Expr,
    Limit,
    MapLookup,
    Match,
    Meter,
    NamedObject,
    Numgen,
    ObjectRef,
    Quota,
    Rule,
    Ruleset,
    Set,
    SetLiteral,
    SetUpdate,
    Statement,
    Table,
    Verdict,
    VerdictMap,
)
from iptables_lens.nft.values import format_duration

_COUNTER = Counter()
# What a rule may hold and still only match and count: it changes no packet, no state and no walk.
_PASSIVE = (Match, Counter, Limit, Quota, ConnLimit, Meter)
_COUNTING_OBJECTS = ("counter", "quota", "limit")
_SHOWN = 3  # elements or handles a noise item quotes


@dataclass(frozen=True)
class NftChainChange(ChainChange):
    """A chain change in nft's notation: `chain NAME (TABLE)`, not iptables-save's `:NAME - [0:0]`."""

    @property
    def diff_line(self) -> str:
        return f"chain {self.chain}" + (f": {self.detail}" if self.detail else "") + f"    ({self.table})"


@dataclass(frozen=True)
class NftRuleChange(RuleChange):
    """A rule change in nft's notation: a listed rule names neither its table nor its chain."""

    @property
    def line(self) -> str:
        return f"{self.table} {self.chain}: {self.text}" + (f" ({self.detail})" if self.detail else "")

    @property
    def diff_line(self) -> str:
        return f"{self.text}    ({self.table} {self.chain}" + (f", {self.detail})" if self.detail else ")")


def diff_rulesets(before: Ruleset, after: Ruleset) -> DumpDiff:
    """What changed from `before` to `after`, grouped by the Service port it serves (None: no Service), the
    noise apart; `textual()` gives the unified diff of the two listings. A listing diffed with `nft -j`'s JSON
    is compared as far as that JSON can say it (`nft.jsonread.json_view`): a chain comment the JSON leaves out
    is no change."""
    with paused_gc():
        from_json = [bool(r.tables) and all(t.line == 0 for t in r.tables) for r in (before, after)]  # no lines
        mixed = from_json[0] != from_json[1]
        compared = [json_view(r) if mixed and not j else r for r, j in zip((before, after), from_json, strict=True)]
        return _RulesetDiff(before, after, *compared).result()


# -- identity: what a change is, without its noise ----------------------------------------------------------


def _folded_statements(statements: tuple[Statement, ...]) -> tuple[Statement, ...]:
    return tuple(_COUNTER if type(s) is Counter else
                 replace(s, statements=_folded_statements(s.statements)) if type(s) is SetUpdate and s.statements
                 else replace(s, rules=tuple(replace(r, statements=_folded_statements(r.statements)) for r in s.rules))
                 if type(s) is BoundChain else s for s in statements)


def _rule_key(rule: Rule) -> tuple:
    return _folded_statements(rule.statements), rule.comment


def _folded_element(element: Element) -> Element:
    if element.expires is None and not element.statements:
        return element
    return replace(element, expires=None, statements=_folded_statements(element.statements))


def _rule_text(rule: Rule) -> str:
    """The rule as nft lists it, counters and handle folded, on one line (a chain binding's rules too)."""
    text = format_rule(replace(rule, statements=_folded_statements(rule.statements), handle=None))
    return " ".join(line.strip() for line in text.splitlines())


def _identities(rules: Sequence[Rule]) -> list[tuple[tuple, int]]:
    """Each rule's key with its occurrence among equal rules: the second of two equal rules is (key, 1)."""
    seen: collections.Counter[tuple] = collections.Counter()
    found = []
    for key in map(_rule_key, rules):
        found.append((key, seen[key]))
        seen[key] += 1
    return found


def _listed(table: Table, field: str = "", item: Any = None) -> list[str]:
    """What nft lists of `item` (without its handle), alone in the table's `field` ("chains", "sets", ...),
    or with no `field` of the table itself, without braces: a chain's `type ... hook ...;`, a set's `flags`."""
    content: dict[str, Any] = {field: (replace(item, handle=None),)} if field else {}
    prefix = "\t\t" if field else "\t"
    listed = format_table(Table(table.family, table.name, table.flags, table.comment, **content))
    return [line.strip() for line in listed.splitlines()
            if line.startswith(prefix) and not line.startswith(prefix + "\t") and not line.endswith(("{", "}"))]


def _detail(old: list[str], new: list[str]) -> str:
    gone = [line for line in old if line not in new]
    came = [line for line in new if line not in old]
    return f"{'; '.join(gone) or 'nothing'} → {'; '.join(came) or 'nothing'}"


# -- when a rule's order matters ----------------------------------------------------------------------------


def _acts(rule: Rule) -> bool:
    return any(not isinstance(s, _PASSIVE) and not (isinstance(s, ObjectRef) and s.kind in _COUNTING_OBJECTS)
               for s in rule.statements)


def _equalities(rule: Rule) -> dict[Expr, Expr]:
    return {s.left: s.right for s in rule.statements
            if isinstance(s, Match) and s.op == "==" and isinstance(s.right, Const)}


def _order_matters(a: Rule, b: Rule) -> bool:
    """Whether swapping rules `a` and `b` of a chain can change what happens to a packet: both act, and no field
    is compared with one value in `a` and another in `b`."""
    if not (_acts(a) and _acts(b)):
        return False
    theirs = _equalities(b)
    return not any(left in theirs and theirs[left] != right for left, right in _equalities(a).items())


# -- anonymous sets and maps in rules -----------------------------------------------------------------------


def _nodes(value: object) -> Iterator[object]:
    if isinstance(value, tuple):
        for item in value:
            yield from _nodes(item)
    elif dataclasses.is_dataclass(value):
        yield value
        for f in dataclasses.fields(value):
            yield from _nodes(getattr(value, f.name))


def _literals(rule: Rule) -> list[tuple[Expr, SetLiteral]]:
    """The anonymous sets and maps of a rule, each with the key it is looked up with."""
    found: list[tuple[Expr, SetLiteral]] = []
    for node in _nodes(rule.statements):
        if isinstance(node, VerdictMap | MapLookup) and isinstance(node.data, SetLiteral):
            found.append((node.key, node.data))
        elif isinstance(node, Match) and isinstance(node.right, SetLiteral):
            found.append((node.left, node.right))
    return found


def _shape(value: Any) -> Any:
    """`value` with its anonymous sets and maps emptied and numgen's modulus set to 0: two rules of one shape
    differ only in what those hold."""
    if isinstance(value, SetLiteral):
        return SetLiteral(())
    if isinstance(value, Numgen):
        return replace(value, mod=0)
    if isinstance(value, tuple):
        return tuple(_shape(item) for item in value)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return replace(value, **{f.name: _shape(getattr(value, f.name)) for f in dataclasses.fields(value)})
    return value


def _element_identity(key: Expr, element: Element) -> object:
    # numgen's numbers are the elements' order: an endpoint removed renumbers those after it.
    return element.data if isinstance(key, Numgen) else _folded_element(element)


def _gone(old: Sequence[Element], new: Sequence[Element], key: Expr) -> list[Element]:
    """The elements of `old` that `new` does not hold (as many times)."""
    left = collections.Counter(_element_identity(key, element) for element in new)
    gone = []
    for element in old:
        identity = _element_identity(key, element)
        if left[identity]:
            left[identity] -= 1
        else:
            gone.append(element)
    return gone


# -- the diff ------------------------------------------------------------------------------------------------


class _Owners:
    """The Service port each object serves, asked of the index of the ruleset it is in, then of the other's
    (each index made when first asked: a diff of few changes may need one)."""

    def __init__(self, own: Callable[[], NftServiceIndex], other: Callable[[], NftServiceIndex]):
        self.own, self.other = own, other
        self._elements: dict[tuple[str, str, str], dict[Element, ElementOwner]] = {}

    def named(self, family: str, table: str, name: str) -> str | None:
        owner = self.own().chain_owner(family, table, name) or self.other().chain_owner(family, table, name)
        return owner.service_port if owner else None

    def rule(self, rule: Rule) -> str | None:
        """The Service port of the rule's chain, else of a chain it jumps or goes to."""
        targets = [s.target for s in rule.statements if isinstance(s, Verdict) and s.target]
        for chain in (rule.chain, *targets):
            if (found := self.named(rule.family, rule.table, chain)) is not None:
                return found
        return None

    def element(self, family: str, table: str, set_name: str, element: Element) -> str | None:
        key = (family, table, set_name)
        if key not in self._elements:
            self._elements[key] = dict(self.own().element_owners(family, table, set_name))
        owner = self._elements[key].get(element)
        return owner.service_port if owner else self.named(family, table, set_name)


class _RulesetDiff:
    """The diff of `before` and `after`, found by comparing `compared_before` and `compared_after` (the same
    rulesets, or what both forms of them can say), one table at a time."""

    def __init__(self, before: Ruleset, after: Ruleset, compared_before: Ruleset, compared_after: Ruleset):
        self.before, self.after = before, after
        self.compared = compared_before, compared_after
        index_b, index_a = (functools.cache(functools.partial(NftServiceIndex.of, r)) for r in self.compared)
        present = _Owners(index_a, index_b)
        self.owners: dict[ChangeKind, _Owners] = {"removed": _Owners(index_b, index_a), "added": present,
                                                  "changed": present, "moved": present}
        self.groups: dict[str | None, ServiceChanges] = {}
        self.noise: list[Noise] = []
        self.where, self.bare = "", Table("ip", "")  # the table being compared: its name, and it empty
        self.handles: list[tuple[int | None, int | None]] = []

    def group(self, service: str | None) -> ServiceChanges:
        return self.groups.setdefault(service, ServiceChanges(service))

    def owner(self, kind: ChangeKind, name: str) -> str | None:
        """The Service port the chain, set or object `name` of the current table serves."""
        return self.owners[kind].named(self.bare.family, self.bare.name, name)

    def result(self) -> DumpDiff:
        tables_b = {(t.family, t.name): t for t in self.compared[0].tables}
        tables_a = {(t.family, t.name): t for t in self.compared[1].tables}
        for key in sorted(tables_b.keys() | tables_a.keys()):
            self.table(tables_b.get(key), tables_a.get(key))
        services = sorted(self.groups.values(), key=lambda g: (g.service is None, g.service or ""))
        return DumpDiff(self.before, self.after, services, self.noise, formatter=format_ruleset, has_sets=True)

    def table(self, old: Table | None, new: Table | None) -> None:
        present = new or old
        assert present is not None
        self.where, self.bare = f"{present.family} {present.name}", Table(present.family, present.name)
        self.handles = []
        if old is None or new is None:
            kind: ChangeKind = "added" if old is None else "removed"
            self.group(None).declarations.append(DeclarationChange(kind, self.where, "table", ""))
        else:
            self.handles.append((old.handle, new.handle))
            lines = [_listed(t) for t in (old, new)]
            if lines[0] != lines[1]:
                self.group(None).declarations.append(
                    DeclarationChange("changed", self.where, "table", "", _detail(*lines)))
        for field, compare in (("objects", self.declaration), ("flowtables", self.declaration),
                               ("sets", self.set), ("chains", self.chain)):
            before = {(getattr(x, "kind", ""), x.name): x for x in (getattr(old, field) if old else ())}
            after = {(getattr(x, "kind", ""), x.name): x for x in (getattr(new, field) if new else ())}
            for key in sorted(before.keys() | after.keys()):
                compare(field, before.get(key), after.get(key))  # type: ignore[operator]
        if any(b != a for b, a in self.handles):
            self.noise.append(Noise("handles", f"handles of {self.where} (`nft -a`)",
                                    _handle_list([b for b, _ in self.handles]),
                                    _handle_list([a for _, a in self.handles])))

    def declaration(self, field: str, old: Any, new: Any, what: str | None = None) -> None:
        """A named object, flowtable, set or map (in the table's `field`) added, removed, or changed in what nft
        lists of it (what a counter or quota counts is noise); each given without its elements."""
        present = new or old
        what = what or ("flowtable" if field == "flowtables" else present.kind)
        if old is None or new is None:
            kind: ChangeKind = "added" if old is None else "removed"
            self.group(self.owner(kind, present.name)).declarations.append(
                DeclarationChange(kind, self.where, what, present.name))
            return
        self.handles.append((old.handle, new.handle))
        lines = [_listed(self.bare, field, x) for x in (old, new)]
        if lines[0] == lines[1]:
            return
        if isinstance(old, NamedObject) and _uncounted(old) == _uncounted(new):
            self.noise.append(Noise("counters", f"{what} {self.where} {new.name}", *(" ".join(x) for x in lines)))
        else:
            self.group(self.owner("changed", new.name)).declarations.append(
                DeclarationChange("changed", self.where, what, new.name, _detail(*lines)))

    def set(self, field: str, old: Set | None, new: Set | None) -> None:
        present = new or old
        assert present is not None
        bare_old, bare_new = (x and replace(x, elements=()) for x in (old, new))
        self.declaration(field, bare_old, bare_new, what=set_kind(present))
        self.elements(present, old.elements if old else (), new.elements if new else ())

    def chain(self, field: str, old: Chain | None, new: Chain | None) -> None:
        present = new or old
        assert present is not None
        if old == new:
            return  # the same rules, handles and counters: nothing to tell
        if old is None or new is None:
            kind: ChangeKind = "added" if old is None else "removed"
            self.group(self.owner(kind, present.name)).chains.append(NftChainChange(kind, self.where, present.name))
        else:
            self.handles.append((old.handle, new.handle))
            lines = [_listed(self.bare, "chains", replace(c, rules=())) for c in (old, new)]
            if lines[0] != lines[1]:
                self.group(self.owner("changed", new.name)).chains.append(
                    NftChainChange("changed", self.where, new.name, _detail(*lines)))
        self.rules(present.name, old.rules if old else (), new.rules if new else ())

    def rules(self, chain: str, old: tuple[Rule, ...], new: tuple[Rule, ...]) -> None:
        old_ids, new_ids = _identities(old), _identities(new)
        old_by_id, new_by_id = dict(zip(old_ids, old, strict=True)), dict(zip(new_ids, new, strict=True))
        removed = [r for i, r in zip(old_ids, old, strict=True) if i not in new_by_id]
        added = [r for i, r in zip(new_ids, new, strict=True) if i not in old_by_id]
        self.rule_changes("removed", chain, removed)
        self.rule_changes("added", chain, added)
        self.literal_elements(chain, removed, added)
        kept = [i for i in old_ids if i in new_by_id]
        counted = [(old_by_id[i], new_by_id[i]) for i in kept if old_by_id[i].statements != new_by_id[i].statements]
        if counted:
            self.noise.append(Noise("counters", f"counters of {len(counted)} rule(s) of {self.where} {chain}",
                                    _count_text(b for b, _ in counted), _count_text(a for _, a in counted)))
        self.handles.extend((old_by_id[i].handle, new_by_id[i].handle) for i in kept)
        self.moves(chain, kept, [i for i in new_ids if i in old_by_id], old_by_id, new_by_id)

    def rule_changes(self, kind: ChangeKind, chain: str, rules: list[Rule], detail: str | None = None) -> None:
        for rule in rules:
            self.group(self.owners[kind].rule(rule)).rules.append(
                NftRuleChange(kind, self.where, chain, rule, _rule_text(rule), detail))

    def moves(self, chain: str, old_order: list, new_order: list, old_by_id: dict, new_by_id: dict) -> None:
        """The kept rules that moved across another (in difflib's longest matching blocks of the two orders,
        the rules outside them) where the order of the two matters."""
        if old_order == new_order:
            return
        matcher = SequenceMatcher(None, old_order, new_order, autojunk=False)
        stayed = {old_order[block.a + k] for block in matcher.get_matching_blocks() for k in range(block.size)}
        old_at = {ident: n for n, ident in enumerate(old_order)}
        new_at = {ident: n for n, ident in enumerate(new_order)}
        for ident in new_order:
            if ident in stayed:
                continue
            rule = new_by_id[ident]
            crossed = (other for other in old_order if other != ident
                       and (old_at[other] < old_at[ident]) != (new_at[other] < new_at[ident]))
            if any(_order_matters(rule, new_by_id[other]) for other in crossed):
                detail = f"was rule {old_by_id[ident].position}, now rule {rule.position}"
                self.rule_changes("moved", chain, [rule], detail)

    def literal_elements(self, chain: str, removed: list[Rule], added: list[Rule]) -> None:
        """For each removed rule replaced by an added one of its shape, the elements its anonymous sets and
        maps lost and gained."""
        unpaired = list(added)
        for old in removed:
            shape = _shape(old.statements)
            new = next((r for r in unpaired if _shape(r.statements) == shape), None)
            if new is None:
                continue
            unpaired.remove(new)
            for (key, before), (_, after) in zip(_literals(old), _literals(new), strict=True):
                self.element_changes("removed", old, chain, _gone(before.elements, after.elements, key))
                self.element_changes("added", new, chain, _gone(after.elements, before.elements, key))

    def element_changes(self, kind: ChangeKind, rule: Rule, chain: str, elements: list[Element]) -> None:
        group = self.group(self.owners[kind].rule(rule))
        group.elements.extend(ElementChange(kind, self.where, None, chain, format_element(_folded_element(e)))
                              for e in elements)

    def elements(self, item: Set, old: tuple[Element, ...], new: tuple[Element, ...]) -> None:
        if old == new:
            return
        old_by_key = {_folded_element(e): e for e in old}
        new_by_key = {_folded_element(e): e for e in new}
        changes: tuple[tuple[ChangeKind, dict, dict], ...] = (("removed", old_by_key, new_by_key),
                                                              ("added", new_by_key, old_by_key))
        for kind, mine, theirs in changes:
            for folded, element in mine.items():
                if folded not in theirs:
                    service = self.owners[kind].element(item.family, item.table, item.name, element)
                    self.group(service).elements.append(
                        ElementChange(kind, self.where, item.name, None, format_element(folded)))
        kept = [k for k in old_by_key if k in new_by_key]
        what = f"{set_kind(item)} {self.where} {item.name}"
        noises: tuple[tuple[NoiseKind, Callable[[Element, Element], bool]], ...] = (
            ("expires", lambda b, a: b.expires != a.expires), ("counters", lambda b, a: b.statements != a.statements))
        for noise, differs in noises:
            pairs = [(old_by_key[k], new_by_key[k]) for k in kept if differs(old_by_key[k], new_by_key[k])]
            if pairs:
                shown = (_element_noise(noise, e) for e in pairs[0])
                self.noise.append(Noise(noise, f"{noise} of {len(pairs)} element(s) of {what}", *shown))
        new_order = [k for k in new_by_key if k in old_by_key]
        if kept != new_order:
            self.noise.append(Noise("element-order", f"the order nft lists the elements of {what} in",
                                    _quoted(kept), _quoted(new_order)))


def _uncounted(obj: NamedObject) -> NamedObject:
    """A named object without what it counts: a counter's packets and bytes, a quota's bytes used."""
    counted = {"counter": ("packets", "bytes"), "quota": ("used",)}.get(obj.kind, ())
    return replace(obj, handle=None, settings=tuple((k, v) for k, v in obj.settings if k not in counted))


def _count_text(rules: Iterator[Rule]) -> str:
    counters = [node for rule in rules for node in _nodes(rule.statements) if isinstance(node, Counter)]
    return f"packets {sum(c.packets or 0 for c in counters)} bytes {sum(c.bytes or 0 for c in counters)}"


def _element_noise(kind: str, element: Element) -> str:
    if kind == "expires":
        return f"{format_element(_folded_element(element))} expires {format_duration(element.expires or 0)}"
    return format_element(replace(element, expires=None))


def _quoted(elements: list[Element]) -> str:
    shown = ", ".join(format_element(e) for e in elements[:_SHOWN])
    return shown + (f", … ({len(elements)} elements)" if len(elements) > _SHOWN else "")


def _handle_list(handles: list[int | None]) -> str:
    given = [h for h in handles if h is not None]
    if not given:
        return "no handles"
    shown = " ".join(f"# handle {h}" for h in given[:_SHOWN])
    return shown + (f" … ({len(given)} handles)" if len(given) > _SHOWN else "")
