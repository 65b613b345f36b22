"""Nouns for what an expression reads (`ip daddr` is "the destination address") and words for the values it is
compared with (`tcp` is "TCP", a mark is `0x00004000`): one entry for every header, field, meta key,
conntrack key, routing and socket key nft has (`nft.types`), so that no selector is named by its syntax.

>>> from iptables_lens.nft.model import Concat, Meta, Payload
>>> noun(Concat((Payload("ip", "daddr"), Meta("l4proto"), Payload("th", "dport"))))
'the destination address, protocol and destination port'
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from iptables_lens.iptables.explain.words import join_and, join_or
from iptables_lens.nft.expressions import selector_type
from iptables_lens.nft.fmtrules import format_expr
from iptables_lens.nft.model import (
    Binop,
    Concat,
    Const,
    Ct,
    Element,
    Expr,
    Exthdr,
    Fib,
    Hash,
    IpOption,
    Ipsec,
    MapLookup,
    Meta,
    Numgen,
    Osf,
    Payload,
    Prefix,
    Range,
    RawPayload,
    Rt,
    SctpChunk,
    SetLiteral,
    SetRef,
    Socket,
    TcpOption,
    ValueList,
    Verdict,
)
from iptables_lens.nft.values import format_duration

# How each header is named in a phrase; "th" is whichever transport header the packet has.
HEADERS: dict[str, str] = {
    "ether": "Ethernet", "vlan": "VLAN", "arp": "ARP", "ip": "IPv4", "icmp": "ICMP", "igmp": "IGMP", "ip6": "IPv6",
    "icmpv6": "ICMPv6", "tcp": "TCP", "udp": "UDP", "udplite": "UDP-Lite", "sctp": "SCTP", "dccp": "DCCP",
    "th": "transport", "ah": "IPsec AH", "esp": "IPsec ESP", "comp": "IPComp",
}
# Header fields, by the name nft gives them in any header.
FIELDS: dict[str, str] = {
    "saddr": "source address", "daddr": "destination address", "sport": "source port", "dport": "destination port",
    "type": "type", "id": "ID", "dei": "drop eligible indicator", "cfi": "canonical format indicator",
    "pcp": "priority code point", "htype": "hardware type", "ptype": "protocol type", "hlen": "hardware address length",
    "plen": "protocol address length", "operation": "operation", "saddr ether": "sender MAC address",
    "saddr ip": "sender IPv4 address", "daddr ether": "target MAC address", "daddr ip": "target IPv4 address",
    "version": "version", "hdrlength": "header length", "dscp": "DSCP", "ecn": "ECN", "length": "length",
    "frag-off": "fragment offset", "ttl": "TTL", "protocol": "protocol", "checksum": "checksum", "code": "code",
    "sequence": "sequence number", "gateway": "gateway", "mtu": "MTU", "mrt": "maximum response time",
    "group": "group address", "flowlabel": "flow label", "nexthdr": "next header", "hoplimit": "hop limit",
    "parameter-problem": "parameter problem pointer", "max-delay": "maximum response delay",
    "ackseq": "acknowledgement number", "doff": "data offset", "reserved": "reserved bits", "flags": "flags",
    "window": "window", "urgptr": "urgent pointer", "csumcov": "checksum coverage", "vtag": "verification tag",
    "spi": "security parameter index", "cpi": "compression parameter index", "seg-left": "segments left",
    "last-entry": "last entry", "tag": "tag", "reserved2": "second reserved bits", "more-fragments": "more-fragments flag",
}
# The header fields whose noun needs no header: the addresses and ports of the packet itself.
_PLAIN = {("ip", "saddr"), ("ip", "daddr"), ("ip6", "saddr"), ("ip6", "daddr"), ("th", "sport"), ("th", "dport")}

META: dict[str, str] = {
    "length": "the packet's length", "protocol": "the EtherType", "nfproto": "the IP version",
    "l4proto": "the protocol", "priority": "the traffic-control class", "mark": "the packet mark",
    "iif": "the input interface", "iifname": "the input interface name", "iiftype": "the input interface type",
    "oif": "the output interface", "oifname": "the output interface name", "oiftype": "the output interface type",
    "skuid": "the user ID of the sending socket", "skgid": "the group ID of the sending socket",
    "nftrace": "the trace flag", "rtclassid": "the routing realm", "ibrname": "the input bridge",
    "obrname": "the output bridge", "pkttype": "the packet type (unicast, broadcast, multicast)",
    "cpu": "the CPU handling the packet", "iifgroup": "the input interface group",
    "oifgroup": "the output interface group", "cgroup": "the control group of the sending socket",
    "random": "a random number", "ipsec": "IPsec processing (it came through an IPsec tunnel)",
    "iifkind": "the input interface kind", "oifkind": "the output interface kind",
    "ibrpvid": "the input bridge port VLAN", "ibrvproto": "the input bridge VLAN protocol",
    "time": "the date and time", "day": "the day of the week", "hour": "the time of day",
    "secmark": "the security mark", "sdif": "the VRF slave interface", "sdifname": "the VRF slave interface name",
}
CT: dict[str, str] = {
    "state": "the connection state", "direction": "the packet's direction in its connection",
    "status": "the connection status", "mark": "the connection mark", "expiration": "the connection's time left",
    "helper": "the connection's helper", "l3proto": "the connection's IP version",
    "protocol": "the connection's protocol", "proto-src": "the connection's source port",
    "proto-dst": "the connection's destination port", "bytes": "the connection's byte count",
    "packets": "the connection's packet count", "avgpkt": "the connection's average packet size",
    "zone": "the conntrack zone", "event": "the conntrack events", "ip saddr": "the connection's source address",
    "ip daddr": "the connection's destination address", "ip6 saddr": "the connection's source address",
    "ip6 daddr": "the connection's destination address", "saddr": "the connection's source address",
    "daddr": "the connection's destination address", "secmark": "the connection's security mark",
    "id": "the connection ID",
}
FIB_FLAGS: dict[str, str] = {"saddr": "the source address", "daddr": "the destination address",
                             "mark": "the packet mark", "iif": "the input interface", "oif": "the output interface"}
FIB_RESULTS: dict[str, str] = {"type": "the address type", "oif": "the output interface",
                               "oifname": "the output interface name"}
RT: dict[str, str] = {"classid": "the routing realm", "nexthop": "the next hop", "mtu": "the route's MTU",
                      "ipsec": "an IPsec transformation on its route"}
SOCKET: dict[str, str] = {"transparent": "the transparent flag of the packet's socket",
                          "mark": "the mark of the packet's socket",
                          "wildcard": "the wildcard flag of the packet's socket (it listens on every address)",
                          "cgroupv2": "the control group (v2) of the packet's socket"}
TCP_OPTIONS: dict[str, str] = {"maxseg": "maximum segment size", "window": "window scale",
                               "sack-perm": "SACK permitted", "timestamp": "timestamp"}
TCP_OPTION_FIELDS: dict[str, str] = {"size": "size", "length": "length", "kind": "kind", "count": "shift count",
                                     "tsval": "timestamp value", "tsecr": "timestamp echo reply"}
EXTHDRS: dict[str, str] = {"hbh": "hop-by-hop options", "rt": "routing", "frag": "fragment",
                           "dst": "destination options", "mh": "mobility", "rt0": "type 0 routing",
                           "rt2": "type 2 routing", "srh": "segment routing"}
RAW_BASES: dict[str, str] = {"ll": "link layer", "nh": "network", "th": "transport", "ih": "inner"}
IP_OPTIONS: dict[str, str] = {"lsrr": "loose source route", "rr": "record route", "ssrr": "strict source route",
                              "ra": "router alert"}
IP_OPTION_FIELDS: dict[str, str] = {"type": "type", "length": "length", "ptr": "pointer", "addr": "first address",
                                    "value": "value"}
SCTP_CHUNK_FIELDS: dict[str, str] = {
    "type": "type", "flags": "flags", "length": "length", "tsn": "TSN", "stream": "stream identifier",
    "ssn": "stream sequence number", "ppid": "payload protocol identifier", "init-tag": "initiate tag",
    "a-rwnd": "advertised receiver window", "num-outbound-streams": "number of outbound streams",
    "num-inbound-streams": "number of inbound streams", "initial-tsn": "initial TSN",
    "cum-tsn-ack": "cumulative TSN acknowledged", "num-gap-ack-blocks": "number of gap ack blocks",
    "num-dup-tsns": "number of duplicate TSNs", "lowest-tsn": "lowest TSN", "seqno": "sequence number",
    "new-cum-tsn": "new cumulative TSN"}
IPSEC_KEYS: dict[str, str] = {"reqid": "request ID", "spi": "security parameter index", "saddr": "source address",
                              "daddr": "destination address"}
_OSF_TTL = {None: "", "loose": " (its TTL at most the fingerprint's)", "skip": " (its TTL not compared)"}
PROTOCOLS: dict[str, str] = {"icmpv6": "ICMPv6", "ipv6-icmp": "ICMPv6", "udplite": "UDP-Lite", "ipv6": "IPv6",
                             "ipip": "IP-in-IP", "ipv4": "IPv4"}
CT_STATES: dict[str, str] = {"new": "new", "established": "established", "related": "related",
                             "invalid": "invalid", "untracked": "untracked"}
CT_STATUSES: dict[str, str] = {"expected": "expected", "seen-reply": "answered", "assured": "assured",
                               "confirmed": "confirmed", "snat": "source-NATed", "dnat": "destination-NATed",
                               "dying": "dying"}


def payload_noun(expr: Payload) -> str:
    """"the destination address", "the TCP destination port", "the TTL of the IPv4 header"."""
    if (expr.protocol, expr.field) in _PLAIN:
        return f"the {FIELDS[expr.field]}"
    if expr.field in ("sport", "dport", "flags"):
        return f"the {HEADERS[expr.protocol]} {FIELDS[expr.field]}"
    return f"the {FIELDS[expr.field]} of the {HEADERS[expr.protocol]} header"


def _ct_noun(expr: Ct) -> str:
    text = CT[expr.key]
    if expr.direction is None:
        return text
    return text.replace("the connection's ", f"the connection's {expr.direction} ", 1)


def _fib_noun(expr: Fib) -> str:
    keys = join_and([FIB_FLAGS[flag] for flag in expr.flags])
    return f"{FIB_RESULTS[expr.result]} the routing table gives for {keys}"


def _numgen_noun(expr: Numgen) -> str:
    low, high = expr.offset, expr.offset + expr.mod - 1
    what = "a random number" if expr.mode == "random" else "a counter that counts in turn"
    return f"{what} from {low} to {high}"


def _hash_noun(expr: Hash) -> str:
    span = f"from {expr.offset} to {expr.offset + expr.mod - 1}"
    if expr.kind == "symhash":
        return f"a hash of the flow, the same both ways, {span}"
    assert expr.expr is not None
    return f"a hash of {noun(expr.expr)} {span}"


# The chunks whose names RFC 8260 and RFC 6525 write with hyphens (I-DATA, I-FORWARD-TSN, RE-CONFIG); the other
# RFCs write theirs with spaces (INIT ACK, SHUTDOWN COMPLETE, FORWARD TSN).
_HYPHENATED_CHUNKS = frozenset({"i-data", "i-forward-tsn", "re-config"})


def _chunk_noun(expr: SctpChunk) -> str:
    name = expr.name.upper() if expr.name in _HYPHENATED_CHUNKS else expr.name.upper().replace("-", " ")
    chunk = f"the SCTP {name} chunk"
    return f"the {SCTP_CHUNK_FIELDS[expr.field]} of {chunk}" if expr.field else chunk


def _ipsec_noun(expr: Ipsec) -> str:
    key = IPSEC_KEYS[expr.key]
    if expr.family:
        key = f"{'IPv4' if expr.family == 'ip' else 'IPv6'} {key}"
    way = "came in by" if expr.direction == "in" else "leaves by"
    state = f"IPsec state {expr.spnum} on its path" if expr.spnum else "IPsec state"
    return f"the {key} of the {state} the packet {way}"


def _binop_noun(expr: Binop) -> str:
    if is_value(expr):
        return _flags_words(expr)
    left, right = noun(expr.left), value_words(expr.right)
    if expr.op == "&":
        return f"{left} masked with {right}"
    if expr.op == "|":
        return f"{left} with bits {right} set"
    if expr.op == "^":
        return f"{left} with bits {right} flipped"
    return f"{left} shifted {'left' if expr.op == '<<' else 'right'} by {right}"


NOUNS: dict[type, Callable[[Any], str]] = {
    Payload: payload_noun,
    RawPayload: lambda e: f"{e.length} bits at bit {e.offset} of the {RAW_BASES[e.base]} header",
    Meta: lambda e: META[e.key],
    Ct: _ct_noun,
    Fib: _fib_noun,
    Numgen: _numgen_noun,
    Hash: _hash_noun,
    Rt: lambda e: RT[e.key],
    Socket: lambda e: SOCKET[e.key] + (f" at level {e.level}" if e.level is not None else ""),
    Exthdr: lambda e: (f"the {FIELDS[e.field]} of the IPv6 {EXTHDRS[e.name]} header" if e.field
                       else f"the IPv6 {EXTHDRS[e.name]} header"),
    TcpOption: lambda e: (f"the {TCP_OPTION_FIELDS[e.field]} of the TCP {TCP_OPTIONS[e.name]} option" if e.field
                          else f"the TCP {TCP_OPTIONS[e.name]} option"),
    IpOption: lambda e: (f"the {IP_OPTION_FIELDS[e.field]} of the IPv4 {IP_OPTIONS[e.name]} option" if e.field
                         else f"the IPv4 {IP_OPTIONS[e.name]} option"),
    SctpChunk: _chunk_noun,
    Osf: lambda e: (f"the operating system {'and version ' if e.key == 'version' else ''}the TCP SYN's fingerprint "
                    f"names{_OSF_TTL[e.ttl]}"),
    Ipsec: _ipsec_noun,
    Binop: _binop_noun,
    Concat: lambda e: "the " + join_and([noun(item).removeprefix("the ") for item in e.items]),
}
"""A noun for each kind of expression that reads something of the packet, its connection or the node."""


def noun(expr: Expr) -> str:
    """What `expr` reads, as a noun phrase; a value (a constant, a set) is named by its words."""
    explainer = NOUNS.get(type(expr))
    return explainer(expr) if explainer is not None else value_words(expr)


def protocol_word(value: str) -> str:
    """"TCP", "ICMPv6", "protocol 253"."""
    return PROTOCOLS.get(value, f"protocol {value}" if value.isdigit() else value.upper())


def _const_words(const: Const) -> str:
    if const.type == "catchall":
        return "anything else"
    if const.type in ("inet_proto", "nf_proto") and isinstance(const.value, str):
        return protocol_word(const.value)
    if const.type == "ct_state" and isinstance(const.value, str):
        return CT_STATES.get(const.value, const.value)
    if const.type == "ct_status" and isinstance(const.value, str):
        return CT_STATUSES.get(const.value, const.value)
    if const.type == "time" and isinstance(const.value, int):
        return format_duration(const.value)
    if const.type == "ifname" and isinstance(const.value, str):
        return const.value
    if isinstance(const.value, bool):
        return "present" if const.value else "absent"
    return format_expr(const)


def _range_words(expr: Range) -> str:
    return f"{value_words(expr.low)}-{value_words(expr.high)}"


def is_value(expr: Expr) -> bool:
    """Whether `expr` is made of constants only (`fin | ack` is a value; `meta mark | 0x1` reads the packet)."""
    if isinstance(expr, Binop):
        return is_value(expr.left) and is_value(expr.right)
    return isinstance(expr, Const)


def _flags_words(expr: Expr) -> str:
    """Flags combined with `|` (`fin | ack`): "fin and ack"."""
    def flags(e: Expr) -> list[str]:
        return flags(e.left) + flags(e.right) if isinstance(e, Binop) else [value_words(e)]
    return join_and(flags(expr))


def element_words(element: Element) -> str:
    """An element of an anonymous set or map: its key, and what it maps to."""
    key = value_words(element.key)
    return key if element.data is None else f"{key} → {value_words(element.data)}"


def verdict_words(verdict: Verdict) -> str:
    """What a verdict does, as a map's value or a rule's last word: "goes to X", "drops"."""
    if verdict.kind == "jump":
        return f"jump to {verdict.target}"
    if verdict.kind == "goto":
        return f"goes to {verdict.target} and does not come back"
    return {"accept": "accepts", "drop": "drops", "continue": "goes on", "return": "returns"}[verdict.kind]


VALUE_WORDS: dict[type, Callable[[Any], str]] = {
    Const: _const_words,
    Prefix: lambda e: f"{format_expr(e.base)}/{e.length}",
    Range: _range_words,
    Concat: lambda e: " . ".join(value_words(item) for item in e.items),
    ValueList: lambda e: join_or([value_words(item) for item in e.items]),
    SetLiteral: lambda e: join_or([element_words(item) for item in e.elements]),
    SetRef: lambda e: f"the set {e.name}",
    Verdict: verdict_words,
    MapLookup: lambda e: f"what {noun(e.key)} maps to in {_map_name(e.data)}",
}
"""Words for each kind of expression that is a value: a constant, a network, a range, a set, a verdict."""


def _map_name(data: SetLiteral | SetRef) -> str:
    return f"the map {data.name}" if isinstance(data, SetRef) else f"{{ {value_words(data)} }}"


def value_words(expr: Expr) -> str:
    """A value as a phrase shows it: `tcp` is "TCP", `10.0.0.0/8` stays, `{ 22, 80 }` is "22 or 80"."""
    explainer = VALUE_WORDS.get(type(expr))
    return explainer(expr) if explainer is not None else noun(expr)


def values_list(items: Sequence[Expr]) -> str:
    return join_or([value_words(item) for item in items])


def typed_kind(expr: Expr) -> str | None:
    """The datatype kind of what a selector reads (`ipv4`, `bitmask`, ...), or None for anything else."""
    found = selector_type(expr)
    return found.datatype.kind if found is not None else None
