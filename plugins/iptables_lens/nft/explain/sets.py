"""Sets and maps in words: what a set holds (its key's type or `typeof`, its data, flags and timeout), and each
element, with the Service port it serves where kube-proxy's Service index ties it to one.

An element's key is read with the selectors of the rules that look the set up (`ip daddr . meta l4proto . th
dport vmap @service-ips`), or of its `typeof`, so `172.30.0.41 . tcp . 80` reads "TCP to 172.30.0.41 port 80".

>>> from iptables_lens.dialects import read_dump
>>> from iptables_lens.kube.nft_services import NftServiceIndex
>>> ruleset = read_dump("tests/data/kube-proxy-nftables/listings/TestOverallNFTablesRules.v1.34.nft")
>>> table = ruleset.tables[0]
>>> explained = explain_set(table.set("service-nodeports"), table, NftServiceIndex.of(ruleset))
>>> explained.elements[0].meaning, explained.elements[0].service
('TCP to port 3001: goes to external-42NFTM6N-ns2/svc2/tcp/p80 and does not come back', 'ns2/svc2:p80')
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from iptables_lens.iptables.explain.words import capitalized
from iptables_lens.kube.nft_families import describe_nft_family, name_explanation, nft_family
from iptables_lens.kube.nft_services import ElementOwner, NftOwner, NftServiceIndex, OwnedBy, set_kind
from iptables_lens.nft.explain.words import noun, protocol_word, value_words, verdict_words
from iptables_lens.nft.fmtrules import format_element, format_expr
from iptables_lens.nft.model import (
    Concat,
    Const,
    Element,
    Expr,
    Match,
    Meta,
    Payload,
    Set,
    SetRef,
    Table,
    Verdict,
    VerdictMap,
)
from iptables_lens.nft.values import format_duration

# Words for the datatypes a set's `type` names (`type ipv4_addr . inet_service`).
TYPE_WORDS: dict[str, str] = {
    "ipv4_addr": "IPv4 address", "ipv6_addr": "IPv6 address", "ether_addr": "MAC address", "inet_proto": "protocol",
    "inet_service": "port", "mark": "mark", "ifname": "interface name", "iface_index": "interface",
    "verdict": "verdict", "nf_proto": "IP version", "ct_state": "connection state", "ct_status": "connection status",
    "ct_dir": "direction", "ct_event": "conntrack event", "icmp_type": "ICMP type", "icmp_code": "ICMP code",
    "icmpv6_type": "ICMPv6 type", "icmpv6_code": "ICMPv6 code", "icmpx_code": "ICMP code", "igmp_type": "IGMP type",
    "time": "time", "classid": "traffic-control class", "iface_type": "interface type", "uid": "user ID",
    "gid": "group ID", "pkt_type": "packet type", "devgroup": "interface group", "day": "day", "hour": "time of day",
    "date": "date", "fib_addrtype": "address type", "realm": "routing realm", "tcp_flag": "TCP flag",
    "dccp_pkttype": "DCCP packet type", "dscp": "DSCP", "ecn": "ECN", "arp_op": "ARP operation",
    "ether_type": "EtherType", "mh_type": "mobility header type", "integer": "number", "xinteger": "number",
    "string": "string", "boolean": "flag", "counter": "named counter", "quota": "named quota",
    "limit": "named limit", "ct helper": "conntrack helper", "ct timeout": "conntrack timeout policy",
    "ct expectation": "conntrack expectation", "secmark": "security mark", "synproxy": "SYN proxy setting",
}
FLAG_WORDS: dict[str, str] = {"constant": "cannot change once loaded", "dynamic": "rules add to it",
                              "interval": "its keys may be ranges and networks",
                              "timeout": "its elements expire"}


@dataclass(frozen=True, slots=True)
class ElementExplanation:
    """One element: its text as nft lists it, what it means, and the Service port it serves (None when no
    Service does) with `by`: its chain (`target`), its `comment`, or the `address` it shares with one."""

    text: str
    meaning: str
    service: str | None
    by: OwnedBy | None
    comment: str | None


@dataclass(frozen=True, slots=True)
class SetExplanation:
    """A named set or map in words. `kind` is set, map, verdict map or meter; `key` and `data` the types as the
    listing gives them; `family` its kube-proxy family (None for objects kube-proxy does not write);
    `name_explained` how a per-Service name is made and whether its hash verifies; `service` the Service
    port a per-Service set is named after."""

    table_family: str
    table: str
    name: str
    kind: str
    key: str
    data: str | None
    description: str
    flags: tuple[str, ...]
    timeout: str | None
    comment: str | None
    family: str | None
    family_description: str | None
    name_explained: str | None
    service: str | None
    elements: tuple[ElementExplanation, ...]


def _types(types: tuple[str, ...], typeof: tuple[Expr, ...]) -> str:
    if typeof:
        return "typeof " + " . ".join(format_expr(e) for e in typeof)
    return "type " + " . ".join(types)


def _what(types: tuple[str, ...], typeof: tuple[Expr, ...], many: bool = False) -> str:
    """"IPv4 addresses", "(IPv4 address, protocol, port)", "(the destination address, the destination port)"."""
    if typeof:
        parts = typeof[0].items if len(typeof) == 1 and isinstance(typeof[0], Concat) else typeof
        words = [noun(e).removeprefix("the ") for e in parts]
    else:
        words = [TYPE_WORDS.get(t, t) for t in types]
    if len(words) > 1:
        return f"({', '.join(words)})"
    return words[0] + ("es" if words[0].endswith("s") else "s") * many


def lookup_keys(table: Table) -> dict[str, Expr]:
    """For each set or map some rule of `table` looks up, the key the first such rule looks it up with."""
    found: dict[str, Expr] = {}
    for rule in table.rules:
        for stmt in rule.statements:
            if isinstance(stmt, Match) and isinstance(stmt.right, SetRef):
                found.setdefault(stmt.right.name, stmt.left)
            elif isinstance(stmt, VerdictMap) and isinstance(stmt.data, SetRef):
                found.setdefault(stmt.data.name, stmt.key)
    return found


def _key_phrase(key: Expr, selectors: tuple[Expr, ...] | None) -> str:
    """"TCP to 172.30.0.41 port 80" where the selectors say what each part of the key is, else the key's words."""
    values = key.items if isinstance(key, Concat) else (key,)
    if isinstance(key, Const) and key.type == "catchall":
        return "anything else"
    if selectors is None or len(selectors) != len(values):
        return value_words(key)
    protocol, rest = "", []
    ends: dict[str, list[str]] = {"from": [], "to": []}
    for selector, value in zip(selectors, values, strict=True):
        words = value_words(value)
        field = selector.field if isinstance(selector, Payload) else None
        if _is_protocol(selector) and isinstance(value, Const):
            protocol = protocol_word(str(value.value))
        elif field in ("saddr", "daddr"):
            ends["from" if field == "saddr" else "to"].append(words)
        elif field in ("sport", "dport"):
            assert isinstance(selector, Payload)
            if selector.protocol != "th" and not protocol:
                protocol = protocol_word(selector.protocol)
            ends["from" if field == "sport" else "to"].append(f"port {words}")
        else:
            rest.append(f"{noun(selector)} is {words}")
    parts = [protocol] if protocol else []
    parts += [f"{direction} {' '.join(items)}" for direction, items in ends.items() if items]
    return ", ".join([" ".join(parts)] + rest if parts else rest)


def _is_protocol(selector: Expr) -> bool:
    if isinstance(selector, Meta):
        return selector.key == "l4proto"
    return isinstance(selector, Payload) and (selector.protocol, selector.field) in (("ip", "protocol"),
                                                                                 ("ip6", "nexthdr"))


def _data_phrase(data: Expr) -> str:
    return verdict_words(data) if isinstance(data, Verdict) else f"maps to {value_words(data)}"


def explain_element(element: Element, selectors: tuple[Expr, ...] | None, owner: ElementOwner | None
                    ) -> ElementExplanation:
    """One element of a set or map, with the selectors its key is read with and the Service port it serves."""
    meaning = _key_phrase(element.key, selectors)
    if element.data is not None:
        meaning += f": {_data_phrase(element.data)}"
    if element.timeout or element.expires:
        times = [f"kept for {format_duration(element.timeout)}" if element.timeout else "",
                 f"expires in {format_duration(element.expires)}" if element.expires else ""]
        meaning += f" ({', '.join(t for t in times if t)})"
    return ElementExplanation(text=format_element(element), meaning=meaning,
                              service=owner.service_port if owner else None, by=owner.by if owner else None,
                              comment=element.comment)


def _selectors(item: Set, keys: Mapping[str, Expr]) -> tuple[Expr, ...] | None:
    key = keys.get(item.name)
    if key is None and item.key_typeof:
        key = item.key_typeof[0] if len(item.key_typeof) == 1 else Concat(item.key_typeof)
    if key is None:
        return None
    return key.items if isinstance(key, Concat) else (key,)


def _description(item: Set, count: int) -> str:
    """"A verdict map from (IPv4 address, protocol, port) to a verdict, holding 9 elements; its elements expire."."""
    kind = set_kind(item)
    if item.kind == "map":
        data = "a verdict" if item.is_verdict_map else _what(item.data_types, item.data_typeof)
        if item.data_interval:
            data += " range"
        what = f"a {kind} from {_what(item.key_types, item.key_typeof)} to {data}"
    else:
        what = f"a {kind} of {_what(item.key_types, item.key_typeof, many=True)}"
    flags = [FLAG_WORDS[f] for f in item.flags]
    if item.timeout:
        flags.append(f"an element stays {format_duration(item.timeout)} unless it is refreshed")
    held = f"holding {count} element{'s' if count != 1 else ''}"
    return f"{capitalized(what)}, {held}" + (f"; {'; '.join(flags)}" if flags else "") + "."


def explain_set(item: Set, table: Table, index: NftServiceIndex | None = None,
                keys: Mapping[str, Expr] | None = None, only: frozenset[Element] | None = None) -> SetExplanation:
    """`item`, a set or map of `table`, in words, with its elements (only those in `only`, if given) and the
    Service port each serves (from `index`; None: no kube-proxy meaning is read). `keys` is `lookup_keys(table)`,
    passed in when explaining many sets of one table."""
    keys = lookup_keys(table) if keys is None else keys
    owners: dict[Element, ElementOwner] = {}
    owner: NftOwner | None = None
    family = None
    if index is not None:
        owners = dict(index.element_owners(table.family, table.name, item.name))
        owner = index.chain_owner(table.family, table.name, item.name)
        family = nft_family(table.family, table.name, item.name, owner)
    selectors = _selectors(item, keys)
    elements = tuple(explain_element(e, selectors, owners.get(e)) for e in item.elements
                     if only is None or e in only)
    data = None
    if item.kind == "map":
        written = (" . ".join(format_expr(e) for e in item.data_typeof) if item.data_typeof
                   else " . ".join(item.data_types))
        data = ("interval " if item.data_interval else "") + written
    return SetExplanation(
        table_family=table.family, table=table.name, name=item.name, kind=set_kind(item),
        key=_types(item.key_types, item.key_typeof), data=data, description=_description(item, len(item.elements)),
        flags=item.flags, timeout=format_duration(item.timeout) if item.timeout else None, comment=item.comment,
        family=family, family_description=describe_nft_family(family) if family else None,
        name_explained=name_explanation(owner) if owner else None,
        service=owner.service_port if owner else None, elements=elements)
