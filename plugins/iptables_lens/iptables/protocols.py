"""The names iptables gives to protocols and to ICMP, ICMPv6 and mobility-header messages, as tables.

iptables reads `-p NAME` through getprotobyname(3), that is through the running machine's `/etc/protocols`;
iptables-lens reads dumps from other machines, so it ships the table instead of reading the one it runs on.
`NETBASE_PROTOCOLS` is Debian's `/etc/protocols` from netbase 6.4 (Debian 12), itself taken from IANA's
protocol-numbers registry: netbase is GPL-2 (Copyright 1994-1998 Peter Tobias, 1998-2001 Anthony Towns,
2002-2022 Marco d'Itri); what is copied here is the list of names and numbers, a list of facts.
`XTABLES_CHAIN_PROTOS` is iptables' own list (libxtables' `xtables_chain_protos`, iptables 1.8.9, GPL-2),
which it reads before the system's. The ICMP, ICMPv6 and mobility-header tables are those of iptables 1.8.9
(`extensions/libxt_icmp.h`, `libip6t_mh.c`), in their order, which decides what a prefix means;
`REJECT_WITH` are the reply types of `libipt_REJECT.c` and `libip6t_REJECT.c`, in their order.

>>> NETBASE_NUMBERS["vrrp"], NETBASE_NUMBERS["IPIP"], saved_protocol_name(58), saved_protocol_name(112)
(112, 94, 'ipv6-icmp', 'vrrp')
"""

from __future__ import annotations

from iptables_lens.iptables import values
from iptables_lens.iptables.model import Family

# (name, number, aliases), in the file's order: getprotobynumber gives the first name of a number.
NETBASE_PROTOCOLS: tuple[tuple[str, int, tuple[str, ...]], ...] = (
    ("ip", 0, ("IP",)),
    ("hopopt", 0, ("HOPOPT",)),
    ("icmp", 1, ("ICMP",)),
    ("igmp", 2, ("IGMP",)),
    ("ggp", 3, ("GGP",)),
    ("ipencap", 4, ("IP-ENCAP",)),
    ("st", 5, ("ST",)),
    ("tcp", 6, ("TCP",)),
    ("egp", 8, ("EGP",)),
    ("igp", 9, ("IGP",)),
    ("pup", 12, ("PUP",)),
    ("udp", 17, ("UDP",)),
    ("hmp", 20, ("HMP",)),
    ("xns-idp", 22, ("XNS-IDP",)),
    ("rdp", 27, ("RDP",)),
    ("iso-tp4", 29, ("ISO-TP4",)),
    ("dccp", 33, ("DCCP",)),
    ("xtp", 36, ("XTP",)),
    ("ddp", 37, ("DDP",)),
    ("idpr-cmtp", 38, ("IDPR-CMTP",)),
    ("ipv6", 41, ("IPv6",)),
    ("ipv6-route", 43, ("IPv6-Route",)),
    ("ipv6-frag", 44, ("IPv6-Frag",)),
    ("idrp", 45, ("IDRP",)),
    ("rsvp", 46, ("RSVP",)),
    ("gre", 47, ("GRE",)),
    ("esp", 50, ("IPSEC-ESP",)),
    ("ah", 51, ("IPSEC-AH",)),
    ("skip", 57, ("SKIP",)),
    ("ipv6-icmp", 58, ("IPv6-ICMP",)),
    ("ipv6-nonxt", 59, ("IPv6-NoNxt",)),
    ("ipv6-opts", 60, ("IPv6-Opts",)),
    ("rspf", 73, ("RSPF", "CPHB")),
    ("vmtp", 81, ("VMTP",)),
    ("eigrp", 88, ("EIGRP",)),
    ("ospf", 89, ("OSPFIGP",)),
    ("ax.25", 93, ("AX.25",)),
    ("ipip", 94, ("IPIP",)),
    ("etherip", 97, ("ETHERIP",)),
    ("encap", 98, ("ENCAP",)),
    ("pim", 103, ("PIM",)),
    ("ipcomp", 108, ("IPCOMP",)),
    ("vrrp", 112, ("VRRP",)),
    ("l2tp", 115, ("L2TP",)),
    ("isis", 124, ("ISIS",)),
    ("sctp", 132, ("SCTP",)),
    ("fc", 133, ("FC",)),
    ("mobility-header", 135, ("Mobility-Header",)),
    ("udplite", 136, ("UDPLite",)),
    ("mpls-in-ip", 137, ("MPLS-in-IP",)),
    ("manet", 138, ()),
    ("hip", 139, ("HIP",)),
    ("shim6", 140, ("Shim6",)),
    ("wesp", 141, ("WESP",)),
    ("rohc", 142, ("ROHC",)),
    ("ethernet", 143, ("Ethernet",)),
    ("mptcp", 262, ("MPTCP",)),  # above 255: legacy iptables keeps 262, nf_tables keeps its low byte (tcp)
)

# What getprotobyname(3) finds: each name and alias, exactly as written (the lookup is case-sensitive).
NETBASE_NUMBERS: dict[str, int] = {}
for _name, _number, _aliases in NETBASE_PROTOCOLS:
    for _word in (_name, *_aliases):
        NETBASE_NUMBERS.setdefault(_word, _number)
# What getprotobynumber(3) finds: the first name of each number.
NETBASE_NAMES: dict[int, str] = {}
for _name, _number, _aliases in NETBASE_PROTOCOLS:
    NETBASE_NAMES.setdefault(_number, _name)

XTABLES_CHAIN_PROTOS: tuple[tuple[str, int], ...] = (
    ("tcp", 6), ("sctp", 132), ("udp", 17), ("udplite", 136), ("icmp", 1), ("ipv6-icmp", 58), ("icmpv6", 58),
    ("esp", 50), ("ah", 51), ("mobility-header", 135), ("ipv6-mh", 135), ("mh", 135), ("all", 0),
)
_CHAIN_PROTO_NUMBERS = dict(XTABLES_CHAIN_PROTOS)


def protocol_number(name: str) -> int | None:
    """The number iptables reads `-p NAME` as (after lowering its case, as iptables does), or None.

    iptables' own list comes first, then the protocol table (names and aliases, as written there: an alias
    such as `OSPFIGP` has capitals, which a lowered name never matches). Numbers are read by the caller.
    """
    lowered = name.lower()
    number = _CHAIN_PROTO_NUMBERS.get(lowered)
    return number if number is not None else NETBASE_NUMBERS.get(lowered)


def saved_protocol_name(number: int) -> str | None:
    """The name iptables-save prints for protocol `number` (`-p NAME`), or None when it prints the number.

    iptables' own list first (58 is `ipv6-icmp`, 135 `mobility-header`), then the first name of the number
    in the protocol table. Protocol 0 is printed as no `-p` at all."""
    if number == 0:
        return None
    for name, known in XTABLES_CHAIN_PROTOS:
        if known == number:
            return name
    return NETBASE_NAMES.get(number)


# -- ICMP, ICMPv6 and mobility-header messages --------------------------------------------------------------

# (name, type, lowest code, highest code), in libxt_icmp.h's order: a name given by a prefix of it that more
# than one entry has is ambiguous, and iptables refuses it.
ICMP_NAMES: tuple[tuple[str, int, int, int], ...] = (
    ("any", 0xFF, 0, 0xFF), ("echo-reply", 0, 0, 0xFF), ("pong", 0, 0, 0xFF),
    ("destination-unreachable", 3, 0, 0xFF), ("network-unreachable", 3, 0, 0), ("host-unreachable", 3, 1, 1),
    ("protocol-unreachable", 3, 2, 2), ("port-unreachable", 3, 3, 3), ("fragmentation-needed", 3, 4, 4),
    ("source-route-failed", 3, 5, 5), ("network-unknown", 3, 6, 6), ("host-unknown", 3, 7, 7),
    ("network-prohibited", 3, 9, 9), ("host-prohibited", 3, 10, 10), ("TOS-network-unreachable", 3, 11, 11),
    ("TOS-host-unreachable", 3, 12, 12), ("communication-prohibited", 3, 13, 13),
    ("host-precedence-violation", 3, 14, 14), ("precedence-cutoff", 3, 15, 15),
    ("source-quench", 4, 0, 0xFF),
    ("redirect", 5, 0, 0xFF), ("network-redirect", 5, 0, 0), ("host-redirect", 5, 1, 1),
    ("TOS-network-redirect", 5, 2, 2), ("TOS-host-redirect", 5, 3, 3),
    ("echo-request", 8, 0, 0xFF), ("ping", 8, 0, 0xFF),
    ("router-advertisement", 9, 0, 0xFF), ("router-solicitation", 10, 0, 0xFF),
    ("time-exceeded", 11, 0, 0xFF), ("ttl-exceeded", 11, 0, 0xFF), ("ttl-zero-during-transit", 11, 0, 0),
    ("ttl-zero-during-reassembly", 11, 1, 1),
    ("parameter-problem", 12, 0, 0xFF), ("ip-header-bad", 12, 0, 0), ("required-option-missing", 12, 1, 1),
    ("timestamp-request", 13, 0, 0xFF), ("timestamp-reply", 14, 0, 0xFF),
    ("address-mask-request", 17, 0, 0xFF), ("address-mask-reply", 18, 0, 0xFF),
)
ICMPV6_NAMES: tuple[tuple[str, int, int, int], ...] = (
    ("destination-unreachable", 1, 0, 0xFF), ("no-route", 1, 0, 0), ("communication-prohibited", 1, 1, 1),
    ("beyond-scope", 1, 2, 2), ("address-unreachable", 1, 3, 3), ("port-unreachable", 1, 4, 4),
    ("failed-policy", 1, 5, 5), ("reject-route", 1, 6, 6),
    ("packet-too-big", 2, 0, 0xFF),
    ("time-exceeded", 3, 0, 0xFF), ("ttl-exceeded", 3, 0, 0xFF), ("ttl-zero-during-transit", 3, 0, 0),
    ("ttl-zero-during-reassembly", 3, 1, 1),
    ("parameter-problem", 4, 0, 0xFF), ("bad-header", 4, 0, 0), ("unknown-header-type", 4, 1, 1),
    ("unknown-option", 4, 2, 2),
    ("echo-request", 128, 0, 0xFF), ("ping", 128, 0, 0xFF), ("echo-reply", 129, 0, 0xFF), ("pong", 129, 0, 0xFF),
    ("router-solicitation", 133, 0, 0xFF), ("router-advertisement", 134, 0, 0xFF),
    ("neighbour-solicitation", 135, 0, 0xFF), ("neighbor-solicitation", 135, 0, 0xFF),
    ("neighbour-advertisement", 136, 0, 0xFF), ("neighbor-advertisement", 136, 0, 0xFF),
    ("redirect", 137, 0, 0xFF),
)
ICMP_NAMES_BY_FAMILY: dict[Family, tuple[tuple[str, int, int, int], ...]] = {4: ICMP_NAMES, 6: ICMPV6_NAMES}

# The mobility-header message types of `-m mh --mh-type`, in libip6t_mh.c's order (each name, then its alias).
MH_NAMES: tuple[tuple[str, int], ...] = (
    ("binding-refresh-request", 0), ("brr", 0), ("home-test-init", 1), ("hoti", 1),
    ("careof-test-init", 2), ("coti", 2), ("home-test", 3), ("hot", 3), ("careof-test", 4), ("cot", 4),
    ("binding-update", 5), ("bu", 5), ("binding-acknowledgement", 6), ("ba", 6), ("binding-error", 7), ("be", 7),
)

# The extension headers `-m ipv6header --header` names (libip6t_ipv6header.c's own list, read after the
# protocol table), and the headers it can test: hop-by-hop, destination options, routing, fragment, AH,
# ESP, no next header, and any other protocol (255).
IPV6HEADER_NAMES: tuple[tuple[str, int], ...] = (
    ("hop-by-hop", 0), ("protocol", 255), ("hop", 0), ("dst", 60), ("route", 43), ("frag", 44), ("auth", 51),
    ("esp", 50), ("none", 59), ("prot", 255), ("0", 0), ("60", 60), ("43", 43), ("44", 44), ("51", 51),
    ("50", 50), ("59", 59), ("255", 255),
)
IPV6HEADER_TESTED = frozenset({0, 60, 43, 44, 51, 50, 59, 255})

# `-j REJECT --reject-with`: (name, alias) of each reply, in the extension's order; a prefix of a name or an
# alias, in any case, picks the first entry it fits. iptables-save prints the name.
REJECT_WITH: dict[Family, tuple[tuple[str, str], ...]] = {
    4: (
        ("icmp-net-unreachable", "net-unreach"), ("icmp-host-unreachable", "host-unreach"),
        ("icmp-proto-unreachable", "proto-unreach"), ("icmp-port-unreachable", "port-unreach"),
        ("icmp-net-prohibited", "net-prohib"), ("icmp-host-prohibited", "host-prohib"),
        ("tcp-reset", "tcp-rst"), ("icmp-admin-prohibited", "admin-prohib"),
    ),
    6: (
        ("icmp6-no-route", "no-route"), ("icmp6-adm-prohibited", "adm-prohibited"),
        ("icmp6-addr-unreachable", "addr-unreach"), ("icmp6-port-unreachable", "port-unreach"),
        ("tcp-reset", "tcp-reset"), ("icmp6-policy-fail", "policy-fail"), ("icmp6-reject-route", "reject-route"),
    ),
}
REJECT_DEFAULT: dict[Family, str] = {4: "icmp-port-unreachable", 6: "icmp6-port-unreachable"}


# -- readers ------------------------------------------------------------------------------------------------


def protocol(text: str) -> int:
    """The protocol number `-p TEXT` stands for, as iptables reads it: a number from 0 to 255 (strtoul, base
    0), or a name (see protocol_number). BadValue otherwise.

    >>> protocol("igmp"), protocol("VRRP"), protocol("0x11"), protocol("icmpv6")
    (2, 112, 17, 58)
    """
    try:
        return values.unsigned(text, maximum=255)
    except values.BadValue:
        pass
    number = protocol_number(text)
    if number is None:
        raise values.BadValue(f"unknown protocol {text!r} (expected a name such as tcp or igmp, or 0-255)")
    return number


def _prefix_number(text: str) -> tuple[int, str] | None:
    """A number at the start of `text` (strtoul, base 0) up to 255, and the rest; None if there is none."""
    found = values.UNSIGNED_PREFIX.match(text)
    if found is None or not found.group(0).strip():
        return None
    number = values.unsigned(found.group(0))
    return (number, text[found.end():]) if number <= 255 else None


def icmp_type(text: str, family: Family) -> tuple[int, int, int]:
    """`--icmp-type` (IPv4) or `--icmpv6-type` (IPv6) as (type, lowest code, highest code): a name or a
    prefix of one, in any case, that no other name shares, or `TYPE[/CODE[:CODE]]` (xtables' parse_icmp).

    >>> icmp_type("echo-req", 6), icmp_type("3/4", 4)
    ((128, 0, 255), (3, 4, 4))
    """
    wanted = text.lower()
    named = [entry for entry in ICMP_NAMES_BY_FAMILY[family] if entry[0].lower().startswith(wanted)]
    kind = "ICMP" if family == 4 else "ICMPv6"
    if len(named) > 1:
        raise values.BadValue(f"ambiguous {kind} type {text!r}: {named[0][0]} or {named[1][0]}?")
    if named:
        return named[0][1:]
    read = _prefix_number(text)
    if read is None:
        raise values.BadValue(f"unknown {kind} type {text!r}")
    number, rest = read
    if rest.startswith(":"):
        raise values.BadValue(f"{kind} type ranges are not supported: {text!r}")
    if not rest:
        return number, 0, 0xFF
    codes = _prefix_number(rest[1:]) if rest.startswith("/") else None
    if codes is None:
        raise values.BadValue(f"unknown {kind} type {text!r}")
    low, rest = codes
    high = low
    if rest.startswith(":"):
        codes = _prefix_number(rest[1:])
        if codes is None:
            raise values.BadValue(f"unknown {kind} code in {text!r}")
        high, rest = codes
    if rest:
        raise values.BadValue(f"unexpected {rest[0]!r} in {kind} type {text!r}")
    return number, low, high


def mh_types(text: str) -> tuple[int, int]:
    """`--mh-type TYPE[:TYPE]` of `-m mh` as (low, high): names (the exact name, else the first one the text
    is a prefix of, in any case) or numbers 0-255; a missing end is 0 or 255 (libip6t_mh)."""
    def one(word: str) -> int:
        lowered = word.lower()
        exact = [number for name, number in MH_NAMES if name == lowered]
        prefixed = [number for name, number in MH_NAMES if name.startswith(lowered)]
        if exact or prefixed:
            return (exact or prefixed)[0]
        return values.unsigned(word, maximum=255)

    try:
        if ":" not in text:
            low = high = one(text)
        else:
            low_text, _, high_text = text.partition(":")
            low = one(low_text) if low_text else 0
            high = one(high_text) if high_text else 0xFF
    except values.BadValue:
        raise values.BadValue(f"invalid MH type {text!r}") from None
    if low > high:
        raise values.BadValue(f"invalid MH type range {text!r}: {low} is above {high}")
    return low, high


def ipv6_headers(text: str) -> frozenset[int]:
    """The headers `-m ipv6header --header NAME,...` names, as protocol numbers: each a name or alias of the
    protocol table (as written) or one of ipv6header's own names, and one of the headers it can test."""
    found = set()
    own = dict(IPV6HEADER_NAMES)
    for word in filter(None, text.split(",")):
        number = NETBASE_NUMBERS.get(word, own.get(word))
        if number is None or number not in IPV6HEADER_TESTED:
            raise values.BadValue(
                f"unknown header {word!r} (expected hop, dst, route, frag, auth, esp, none or prot)"
            )
        found.add(number)
    if not found:
        raise values.BadValue(f"expected header names, got {text!r}")
    return frozenset(found)


def reject_with(text: str, family: Family) -> str:
    """The reply `--reject-with TEXT` of REJECT stands for, by the name iptables-save prints: the first reply
    whose name or alias starts with TEXT, in any case (libipt_REJECT, libip6t_REJECT)."""
    wanted = text.lower()
    for name, alias in REJECT_WITH[family]:
        if name.startswith(wanted) or alias.startswith(wanted):
            return name
    names = ", ".join(name for name, _ in REJECT_WITH[family])
    raise values.BadValue(f"unknown reject type {text!r} for {values.family_name(family)} (expected {names})")
