"""What nft knows of its values: datatypes, and what each selector (`ip daddr`, `meta mark`, `ct state`) reads.

A `Datatype` says how a value of it is written (`kind`), which names stand for which numbers (`symbols`), how
nft prints a number of it (decimal, or hex to a width: a mark is `0x00004000`) and how many elements of a
named set of it nft prints on one line. `Typed` is a datatype with the width of the field it is read from
(`ip ttl` is an 8-bit integer). The selector tables follow nftables 1.0.6 (`src/proto.c`, `src/meta.c`,
`src/ct.c`): the datatype and width of each header field, meta key and conntrack key.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from iptables_lens.nft import symbols as sym

Kind = Literal["integer", "symbolic", "bitmask", "ipv4", "ipv6", "ether", "string", "ifindex", "boolean", "time",
               "verdict", "tchandle", "hour", "day", "date"]


@dataclass(frozen=True, slots=True)
class Datatype:
    """One of nft's datatypes. `hex_digits` is None for a number printed in decimal, else the least number of
    hex digits after `0x`; `per_line` is how many elements of a named set of it nft prints on a line."""

    name: str
    kind: Kind
    bits: int
    symbols: sym.Symbols = ()
    hex_digits: int | None = None
    quoted: bool = False
    per_line: int = 1

    def number(self, name: str) -> int | None:
        """The number a name stands for in this datatype, or None."""
        for symbol, number in self.symbols:
            if symbol == name:
                return number
        return None

    def name_of(self, number: int) -> str | None:
        """The name nft prints for `number`, or None if it prints the number."""
        for symbol, value in self.symbols:
            if value == number:
                return symbol
        return None


def _types(*types: Datatype) -> dict[str, Datatype]:
    return {t.name: t for t in types}


DATATYPES: dict[str, Datatype] = _types(
    Datatype("verdict", "verdict", 32),
    Datatype("nf_proto", "symbolic", 8, sym.NFPROTO, per_line=5),
    Datatype("integer", "integer", 32, per_line=5),
    # What nft reads raw payloads (`@th,160,128`) as: an integer printed in hex (its xinteger_type).
    Datatype("xinteger", "integer", 128, hex_digits=0, per_line=5),
    Datatype("string", "string", 128, quoted=True),
    Datatype("ipv4_addr", "ipv4", 32, per_line=2),
    Datatype("ipv6_addr", "ipv6", 128),
    Datatype("ether_addr", "ether", 48),
    Datatype("inet_proto", "symbolic", 8, sym.INET_PROTO, per_line=5),
    Datatype("inet_service", "integer", 16, per_line=5),
    Datatype("mark", "integer", 32, hex_digits=8, per_line=5),
    Datatype("icmp_type", "symbolic", 8, sym.ICMP_TYPE),
    Datatype("icmp_code", "symbolic", 8, sym.ICMP_CODE),
    Datatype("icmpv6_type", "symbolic", 8, sym.ICMPV6_TYPE),
    Datatype("icmpv6_code", "symbolic", 8, sym.ICMPV6_CODE),
    Datatype("icmpx_code", "symbolic", 8, sym.ICMPX_CODE),
    Datatype("igmp_type", "symbolic", 8, sym.IGMP_TYPE),
    Datatype("time", "time", 64),
    Datatype("boolean", "boolean", 1, sym.BOOLEAN),
    Datatype("classid", "tchandle", 32, per_line=5),
    Datatype("ct_state", "bitmask", 32, sym.CT_STATE, hex_digits=0, per_line=2),
    Datatype("ct_dir", "symbolic", 8, sym.CT_DIR, per_line=5),
    Datatype("ct_status", "bitmask", 32, sym.CT_STATUS, hex_digits=0, per_line=2),
    Datatype("ct_event", "bitmask", 32, sym.CT_EVENT, hex_digits=0),
    Datatype("iface_index", "ifindex", 32, per_line=5),
    Datatype("iface_type", "symbolic", 16, sym.IFACE_TYPE),
    Datatype("uid", "integer", 32, per_line=5),
    Datatype("gid", "integer", 32, per_line=5),
    Datatype("pkt_type", "symbolic", 8, sym.PKTTYPE, per_line=2),
    Datatype("devgroup", "integer", 32),
    Datatype("ifname", "string", 128, quoted=True),
    Datatype("day", "day", 8, sym.DAY, quoted=True),
    Datatype("hour", "hour", 32, quoted=True),
    # `meta time`: a date and time, printed in the listing machine's time zone.
    Datatype("date", "date", 64, quoted=True),
    Datatype("fib_addrtype", "symbolic", 32, sym.FIB_ADDRTYPE),
    Datatype("realm", "integer", 32),
    Datatype("tcp_flag", "bitmask", 8, sym.TCP_FLAG, hex_digits=0, per_line=5),
    Datatype("dccp_pkttype", "integer", 4, per_line=5),
    Datatype("dscp", "symbolic", 6, sym.DSCP, hex_digits=2),
    Datatype("ecn", "symbolic", 2, sym.ECN, hex_digits=1),
    Datatype("arp_op", "symbolic", 16, sym.ARP_OP, hex_digits=0, per_line=5),
    Datatype("ether_type", "symbolic", 16, sym.ETHER_TYPE, hex_digits=4),
    Datatype("mh_type", "symbolic", 8, sym.MH_TYPE),
)


@dataclass(frozen=True, slots=True)
class Typed:
    """A datatype, and the width in bits of what is read with it (a field narrower than its datatype)."""

    datatype: Datatype
    bits: int


def typed(name: str, bits: int | None = None) -> Typed:
    datatype = DATATYPES[name]
    return Typed(datatype, datatype.bits if bits is None else bits)


def _fields(*fields: tuple[str, str, int]) -> dict[str, Typed]:
    return {name: typed(dtype, bits) for name, dtype, bits in fields}


_PORTS = (("sport", "inet_service", 16), ("dport", "inet_service", 16))
PAYLOAD_FIELDS: dict[str, dict[str, Typed]] = {
    "ether": _fields(("daddr", "ether_addr", 48), ("saddr", "ether_addr", 48), ("type", "ether_type", 16)),
    "vlan": _fields(("id", "integer", 12), ("dei", "integer", 1), ("cfi", "integer", 1), ("pcp", "integer", 3),
                    ("type", "ether_type", 16)),
    "arp": _fields(("htype", "integer", 16), ("ptype", "ether_type", 16), ("hlen", "integer", 8),
                   ("plen", "integer", 8), ("operation", "arp_op", 16), ("saddr ether", "ether_addr", 48),
                   ("saddr ip", "ipv4_addr", 32), ("daddr ether", "ether_addr", 48), ("daddr ip", "ipv4_addr", 32)),
    "ip": _fields(("version", "integer", 4), ("hdrlength", "integer", 4), ("dscp", "dscp", 6), ("ecn", "ecn", 2),
                  ("length", "integer", 16), ("id", "integer", 16), ("frag-off", "integer", 16),
                  ("ttl", "integer", 8), ("protocol", "inet_proto", 8), ("checksum", "integer", 16),
                  ("saddr", "ipv4_addr", 32), ("daddr", "ipv4_addr", 32)),
    "icmp": _fields(("type", "icmp_type", 8), ("code", "icmp_code", 8), ("checksum", "integer", 16),
                    ("id", "integer", 16), ("sequence", "integer", 16), ("gateway", "integer", 32),
                    ("mtu", "integer", 16)),
    "igmp": _fields(("type", "igmp_type", 8), ("mrt", "integer", 8), ("checksum", "integer", 16),
                    ("group", "integer", 32)),
    "ip6": _fields(("version", "integer", 4), ("dscp", "dscp", 6), ("ecn", "ecn", 2), ("flowlabel", "integer", 20),
                   ("length", "integer", 16), ("nexthdr", "inet_proto", 8), ("hoplimit", "integer", 8),
                   ("saddr", "ipv6_addr", 128), ("daddr", "ipv6_addr", 128)),
    "icmpv6": _fields(("type", "icmpv6_type", 8), ("code", "icmpv6_code", 8), ("checksum", "integer", 16),
                      ("parameter-problem", "integer", 32), ("mtu", "integer", 32), ("id", "integer", 16),
                      ("sequence", "integer", 16), ("max-delay", "integer", 16)),
    "tcp": _fields(*_PORTS, ("sequence", "integer", 32), ("ackseq", "integer", 32), ("doff", "integer", 4),
                   ("reserved", "integer", 4), ("flags", "tcp_flag", 8), ("window", "integer", 16),
                   ("checksum", "integer", 16), ("urgptr", "integer", 16)),
    "udp": _fields(*_PORTS, ("length", "integer", 16), ("checksum", "integer", 16)),
    "udplite": _fields(*_PORTS, ("csumcov", "integer", 16), ("checksum", "integer", 16)),
    "sctp": _fields(*_PORTS, ("vtag", "integer", 32), ("checksum", "integer", 32)),
    "dccp": _fields(*_PORTS, ("type", "dccp_pkttype", 4)),
    "th": _fields(*_PORTS),
    "ah": _fields(("nexthdr", "inet_proto", 8), ("hdrlength", "integer", 8), ("reserved", "integer", 16),
                  ("spi", "integer", 32), ("sequence", "integer", 32)),
    "esp": _fields(("spi", "integer", 32), ("sequence", "integer", 32)),
    "comp": _fields(("nexthdr", "inet_proto", 8), ("flags", "integer", 8), ("cpi", "integer", 16)),
}

META_KEYS: dict[str, Typed] = _fields(
    ("length", "integer", 32), ("protocol", "ether_type", 16), ("nfproto", "nf_proto", 8),
    ("l4proto", "inet_proto", 8), ("priority", "classid", 32), ("mark", "mark", 32), ("iif", "iface_index", 32),
    ("iifname", "ifname", 128), ("iiftype", "iface_type", 16), ("oif", "iface_index", 32),
    ("oifname", "ifname", 128), ("oiftype", "iface_type", 16), ("skuid", "uid", 32), ("skgid", "gid", 32),
    ("nftrace", "integer", 1), ("rtclassid", "realm", 32), ("ibrname", "ifname", 128),
    ("obrname", "ifname", 128), ("pkttype", "pkt_type", 8), ("cpu", "integer", 32), ("iifgroup", "devgroup", 32),
    ("oifgroup", "devgroup", 32), ("cgroup", "integer", 32), ("random", "integer", 32), ("ipsec", "boolean", 1),
    ("iifkind", "ifname", 128), ("oifkind", "ifname", 128), ("ibrpvid", "integer", 16),
    ("ibrvproto", "ether_type", 16), ("time", "date", 64), ("day", "day", 8), ("hour", "hour", 32),
    ("secmark", "integer", 32), ("sdif", "iface_index", 32), ("sdifname", "ifname", 128))
# Printed without `meta` (meta_key_is_unqualified); nft also reads some others bare (`mark`), which it prints
# with `meta`.
UNQUALIFIED_META = frozenset({"iif", "oif", "iifname", "oifname", "iifgroup", "oifgroup"})
BARE_META_INPUT = UNQUALIFIED_META | {"mark", "iiftype", "oiftype", "skuid", "skgid", "nftrace", "rtclassid",
                                      "ibrname", "obrname", "pkttype", "cpu", "cgroup", "priority"}

CT_KEYS: dict[str, Typed] = _fields(
    ("state", "ct_state", 32), ("direction", "ct_dir", 8), ("status", "ct_status", 32), ("mark", "mark", 32),
    ("expiration", "time", 32), ("helper", "string", 128), ("l3proto", "nf_proto", 8),
    ("protocol", "inet_proto", 8), ("proto-src", "inet_service", 16), ("proto-dst", "inet_service", 16),
    ("bytes", "integer", 64), ("packets", "integer", 64), ("avgpkt", "integer", 64), ("zone", "integer", 16),
    ("event", "ct_event", 32), ("ip saddr", "ipv4_addr", 32), ("ip daddr", "ipv4_addr", 32),
    ("ip6 saddr", "ipv6_addr", 128), ("ip6 daddr", "ipv6_addr", 128), ("secmark", "integer", 32),
    ("id", "integer", 32))
CT_DIRECTIONAL = frozenset({"l3proto", "protocol", "proto-src", "proto-dst", "bytes", "packets", "avgpkt", "zone",
                            "ip saddr", "ip daddr", "ip6 saddr", "ip6 daddr", "saddr", "daddr"})
# `ct original saddr`: an address of the table's family.
CT_FAMILY_KEYS = frozenset({"saddr", "daddr"})
CT_DIRECTIONS = ("original", "reply")

FIB_FLAGS = ("saddr", "daddr", "mark", "iif", "oif")
FIB_RESULTS: dict[str, Typed] = {"oif": typed("iface_index"), "oifname": typed("ifname"),
                                 "type": typed("fib_addrtype")}
RT_KEYS: dict[str, Typed] = {"classid": typed("realm"), "nexthop": typed("ipv4_addr"), "mtu": typed("integer", 16),
                             "ipsec": typed("boolean")}
SOCKET_KEYS: dict[str, Typed] = {"transparent": typed("integer", 1), "mark": typed("mark"),
                                 "wildcard": typed("integer", 1), "cgroupv2": typed("integer", 64)}
TCP_OPTIONS: dict[str, dict[str, Typed]] = {
    "maxseg": {"size": typed("integer", 16), "length": typed("integer", 8), "kind": typed("integer", 8)},
    "window": {"count": typed("integer", 8), "length": typed("integer", 8), "kind": typed("integer", 8)},
    "sack-perm": {"length": typed("integer", 8), "kind": typed("integer", 8)},
    "timestamp": {"tsval": typed("integer", 32), "tsecr": typed("integer", 32), "length": typed("integer", 8),
                  "kind": typed("integer", 8)},
}
IPV6_EXTHDRS = ("hbh", "rt", "frag", "dst", "mh", "rt0", "rt2", "srh")
_NEXT = ("nexthdr", "inet_proto", 8)
# The fields of each IPv6 extension header (nftables 1.0.6's src/exthdr.c): `frag frag-off`, `rt seg-left`.
EXTHDR_FIELDS: dict[str, dict[str, Typed]] = {
    "hbh": _fields(_NEXT, ("hdrlength", "integer", 8)),
    "dst": _fields(_NEXT, ("hdrlength", "integer", 8)),
    "rt": _fields(_NEXT, ("hdrlength", "integer", 8), ("type", "integer", 8), ("seg-left", "integer", 8)),
    "rt0": _fields(("reserved", "integer", 32)),
    "srh": _fields(("last-entry", "integer", 8), ("flags", "integer", 8), ("tag", "integer", 16)),
    "frag": _fields(_NEXT, ("reserved", "integer", 8), ("frag-off", "integer", 13), ("reserved2", "integer", 2),
                    ("more-fragments", "integer", 1), ("id", "integer", 32)),
    "mh": _fields(_NEXT, ("hdrlength", "integer", 8), ("type", "mh_type", 8), ("reserved", "integer", 8),
                  ("checksum", "integer", 16)),
}
# IPv4 options (nftables 1.0.6's src/ipopt.c: every field an integer, the addresses too) and SCTP chunks (its
# src/sctp_chunk.c: `initial-tsn` is how it prints and reads the init chunk's TSN). `i-data`, `re-config`, `pad`
# and `i-forward-tsn` are not nft's: its grammar refuses them, but it lists a table of iptables-nft through
# iptables' translations, and iptables 1.8.9's of `-m sctp --chunk-types` (extensions/libxt_sctp.c, whose
# `nftname`s they are) names them, with `exists`, `missing`, or a test of `flags`; they get the common header
# that src/sctp_chunk.c gives each chunk with no fields of its own.
_ROUTE = _fields(("type", "integer", 8), ("length", "integer", 8), ("ptr", "integer", 8), ("addr", "integer", 32))
IP_OPTIONS: dict[str, dict[str, Typed]] = {
    "lsrr": _ROUTE, "rr": _ROUTE, "ssrr": _ROUTE,
    "ra": _fields(("type", "integer", 8), ("length", "integer", 8), ("value", "integer", 16)),
}
_CHUNK = (("type", "integer", 8), ("flags", "integer", 8), ("length", "integer", 16))
_INIT = _fields(*_CHUNK, ("init-tag", "integer", 32), ("a-rwnd", "integer", 32),
                ("num-outbound-streams", "integer", 16), ("num-inbound-streams", "integer", 16),
                ("initial-tsn", "integer", 32))
SCTP_CHUNKS: dict[str, dict[str, Typed]] = {
    "data": _fields(*_CHUNK, ("tsn", "integer", 32), ("stream", "integer", 16), ("ssn", "integer", 16),
                    ("ppid", "integer", 32)),
    "init": _INIT, "init-ack": _INIT,
    "sack": _fields(*_CHUNK, ("cum-tsn-ack", "integer", 32), ("a-rwnd", "integer", 32),
                    ("num-gap-ack-blocks", "integer", 16), ("num-dup-tsns", "integer", 16)),
    "shutdown": _fields(*_CHUNK, ("cum-tsn-ack", "integer", 32)),
    "ecne": _fields(*_CHUNK, ("lowest-tsn", "integer", 32)), "cwr": _fields(*_CHUNK, ("lowest-tsn", "integer", 32)),
    "asconf-ack": _fields(*_CHUNK, ("seqno", "integer", 32)), "asconf": _fields(*_CHUNK, ("seqno", "integer", 32)),
    "forward-tsn": _fields(*_CHUNK, ("new-cum-tsn", "integer", 32)),
    **{name: _fields(*_CHUNK) for name in ("heartbeat", "heartbeat-ack", "abort", "shutdown-ack", "error",
                                           "cookie-echo", "cookie-ack", "shutdown-complete", "i-data", "re-config",
                                           "pad", "i-forward-tsn")},
}
# `osf name` and `osf version`: a string of up to 16 bytes (NFT_OSF_MAXGENRELEN).
OSF_NAME = typed("string", 128)
OSF_TTLS = ("loose", "skip")
# `ipsec in reqid`, `ipsec out spi`; `ipsec in ip saddr` reads an address of its family (nftables' src/xfrm.c).
IPSEC_KEYS: dict[str, Typed] = _fields(("reqid", "integer", 32), ("spi", "integer", 32))
IPSEC_DIRECTIONS = ("in", "out")
BOOLEAN = typed("boolean")
VERDICT = typed("verdict")
INTEGER32 = typed("integer")

# Named-object types a map can map to, and named-object kinds a rule can reference.
OBJECT_MAP_TYPES = ("counter", "quota", "limit", "ct helper", "ct timeout", "ct expectation", "secmark",
                    "synproxy")
# Datatype names `type` may give for a set's key or a map's data (with `.` between them for a concatenation).
SET_TYPE_NAMES = frozenset(DATATYPES) - {"integer", "string", "boolean", "time"}


def family_address(family: str | None) -> Typed | None:
    """The address type of nat, dup and tproxy in a rule of `family` ("ip" or "ip6"), or None."""
    return {"ip": typed("ipv4_addr"), "ip6": typed("ipv6_addr")}.get(family or "")
