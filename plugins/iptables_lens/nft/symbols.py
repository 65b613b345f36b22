"""The names nft gives to numbers, datatype by datatype, as nftables 1.0.6 lists them.

Each table is (name, number) pairs in nft's order: the first name of a number is the one nft prints, the
others it reads too. The numbers are those of the kernel's headers the names stand for (`IP_CT_NEW`,
`ICMP_ECHO`, `RTN_LOCAL`, ...), read from nftables 1.0.6's `src/ct.c`, `src/proto.c`, `src/datatype.c`,
`src/meta.c` and `src/fib.c`. Protocol names are Debian's `/etc/protocols`, which nft reads through
getprotobyname(3): the table iptables-lens already ships for iptables.
"""

from __future__ import annotations

from iptables_lens.iptables.protocols import NETBASE_PROTOCOLS

Symbols = tuple[tuple[str, int], ...]

NFPROTO: Symbols = (("ipv4", 2), ("ipv6", 10))
# NF_CT_STATE_BIT(ctinfo) is 1 << (ctinfo % IP_CT_IS_REPLY + 1): established 0, related 1, new 2.
CT_STATE: Symbols = (("invalid", 1), ("new", 8), ("established", 2), ("related", 4), ("untracked", 64))
CT_DIR: Symbols = (("original", 0), ("reply", 1))
CT_STATUS: Symbols = (("expected", 1), ("seen-reply", 2), ("assured", 4), ("confirmed", 8), ("snat", 16),
                      ("dnat", 32), ("dying", 512))
CT_EVENT: Symbols = (("new", 1), ("related", 2), ("destroy", 4), ("reply", 8), ("assured", 16), ("protoinfo", 32),
                     ("helper", 64), ("mark", 128), ("seqadj", 256), ("secmark", 512), ("label", 1024))
ICMP_TYPE: Symbols = (
    ("echo-reply", 0), ("destination-unreachable", 3), ("source-quench", 4), ("redirect", 5), ("echo-request", 8),
    ("router-advertisement", 9), ("router-solicitation", 10), ("time-exceeded", 11), ("parameter-problem", 12),
    ("timestamp-request", 13), ("timestamp-reply", 14), ("info-request", 15), ("info-reply", 16),
    ("address-mask-request", 17), ("address-mask-reply", 18))
ICMP_CODE: Symbols = (
    ("net-unreachable", 0), ("host-unreachable", 1), ("prot-unreachable", 2), ("port-unreachable", 3),
    ("net-prohibited", 9), ("host-prohibited", 10), ("admin-prohibited", 13), ("frag-needed", 4))
ICMPV6_TYPE: Symbols = (
    ("destination-unreachable", 1), ("packet-too-big", 2), ("time-exceeded", 3), ("parameter-problem", 4),
    ("echo-request", 128), ("echo-reply", 129), ("mld-listener-query", 130), ("mld-listener-report", 131),
    ("mld-listener-done", 132), ("mld-listener-reduction", 132), ("nd-router-solicit", 133),
    ("nd-router-advert", 134), ("nd-neighbor-solicit", 135), ("nd-neighbor-advert", 136), ("nd-redirect", 137),
    ("router-renumbering", 138), ("ind-neighbor-solicit", 141), ("ind-neighbor-advert", 142),
    ("mld2-listener-report", 143))
ICMPV6_CODE: Symbols = (("no-route", 0), ("admin-prohibited", 1), ("addr-unreachable", 3), ("port-unreachable", 4),
                        ("policy-fail", 5), ("reject-route", 6))
ICMPX_CODE: Symbols = (("port-unreachable", 1), ("admin-prohibited", 3), ("no-route", 0), ("host-unreachable", 2))
IGMP_TYPE: Symbols = (("membership-query", 0x11), ("membership-report-v1", 0x12), ("membership-report-v2", 0x16),
                      ("membership-report-v3", 0x22), ("leave-group", 0x17))
FIB_ADDRTYPE: Symbols = (("unspec", 0), ("unicast", 1), ("local", 2), ("broadcast", 3), ("anycast", 4),
                         ("multicast", 5), ("blackhole", 6), ("unreachable", 7), ("prohibit", 8))
PKTTYPE: Symbols = (("host", 0), ("unicast", 0), ("broadcast", 1), ("multicast", 2), ("other", 3))
DAY: Symbols = (("Sunday", 0), ("Monday", 1), ("Tuesday", 2), ("Wednesday", 3), ("Thursday", 4), ("Friday", 5),
                ("Saturday", 6))
TCP_FLAG: Symbols = (("fin", 0x01), ("syn", 0x02), ("rst", 0x04), ("psh", 0x08), ("ack", 0x10), ("urg", 0x20),
                     ("ecn", 0x40), ("cwr", 0x80))
DSCP: Symbols = (
    ("cs0", 0x00), ("cs1", 0x08), ("cs2", 0x10), ("cs3", 0x18), ("cs4", 0x20), ("cs5", 0x28), ("cs6", 0x30),
    ("cs7", 0x38), ("df", 0x00), ("be", 0x00), ("lephb", 0x01), ("af11", 0x0a), ("af12", 0x0c), ("af13", 0x0e),
    ("af21", 0x12), ("af22", 0x14), ("af23", 0x16), ("af31", 0x1a), ("af32", 0x1c), ("af33", 0x1e),
    ("af41", 0x22), ("af42", 0x24), ("af43", 0x26), ("va", 0x2c), ("ef", 0x2e))
ECN: Symbols = (("not-ect", 0), ("ect1", 1), ("ect0", 2), ("ce", 3))
ARP_OP: Symbols = (("request", 1), ("reply", 2), ("rrequest", 3), ("rreply", 4), ("inrequest", 8), ("inreply", 9),
                   ("nak", 10))
ETHER_TYPE: Symbols = (("ip", 0x0800), ("arp", 0x0806), ("ip6", 0x86DD), ("8021q", 0x8100), ("8021ad", 0x88A8),
                       ("vlan", 0x8100))
IFACE_TYPE: Symbols = (("ether", 1), ("ppp", 512), ("ipip", 768), ("ipip6", 769), ("loopback", 772), ("sit", 776),
                       ("ipgre", 778))
MH_TYPE: Symbols = (
    ("binding-refresh-request", 0), ("home-test-init", 1), ("careof-test-init", 2), ("home-test", 3),
    ("careof-test", 4), ("binding-update", 5), ("binding-acknowledgement", 6), ("binding-error", 7),
    ("fast-binding-update", 8), ("fast-binding-acknowledgement", 9), ("fast-binding-advertisement", 10),
    ("experimental-mobility-header", 11), ("home-agent-switch-message", 12))
BOOLEAN: Symbols = (("exists", 1), ("missing", 0))
INET_PROTO: Symbols = tuple((name, number) for name, number, _ in NETBASE_PROTOCOLS) + tuple(
    (alias, number) for _, number, aliases in NETBASE_PROTOCOLS for alias in aliases)


def names_by_number(symbols: Symbols) -> dict[int, str]:
    """The name nft prints for each number: the first the table gives it."""
    names: dict[int, str] = {}
    for name, number in symbols:
        names.setdefault(number, name)
    return names
