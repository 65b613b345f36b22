"""The shipped protocol table and the readers of protocol, ICMP, ICMPv6, mobility-header, extension-header and
REJECT names: what each name and number reads as, as iptables 1.8.9 reads it."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
from iptables_lens.iptables import protocols
from iptables_lens.iptables.values import BadValue

ETC_PROTOCOLS = Path("/etc/protocols")


def _netbase_version() -> str | None:
    if shutil.which("dpkg-query") is None:
        return None
    found = subprocess.run(["dpkg-query", "-W", "-f=${Version}", "netbase"], capture_output=True, text=True)
    return found.stdout.strip() if found.returncode == 0 else None


@pytest.mark.skipif(_netbase_version() != "6.4" or not ETC_PROTOCOLS.exists(),
                    reason="compares with Debian netbase 6.4's /etc/protocols, not installed here")
def test_the_shipped_table_is_netbase_6_4s_etc_protocols():
    rows = []
    for line in ETC_PROTOCOLS.read_text().splitlines():
        words = line.split("#", 1)[0].split()
        if words:
            rows.append((words[0], int(words[1]), tuple(words[2:])))
    assert tuple(rows) == protocols.NETBASE_PROTOCOLS


@pytest.mark.parametrize(("text", "number"), [
    ("tcp", 6), ("TCP", 6), ("igmp", 2), ("vrrp", 112), ("ospf", 89), ("pim", 103), ("gre", 47), ("ipencap", 4),
    ("icmpv6", 58), ("ipv6-icmp", 58), ("IPv6-ICMP", 58), ("mh", 135), ("ipv6-mh", 135), ("all", 0), ("ip", 0),
    ("hopopt", 0), ("mptcp", 262), ("0", 0), ("255", 255), ("0x2f", 47), ("017", 15), (" 6", 6), ("+6", 6),
])
def test_a_protocol_reads_as_iptables_reads_it(text, number):
    assert protocols.protocol(text) == number


@pytest.mark.parametrize("text", ["256", "ospfigp", "ip-encap", "cphb", "-1", "", "6x", "tcp6"])
def test_a_protocol_iptables_does_not_know_is_a_bad_value(text):
    with pytest.raises(BadValue):
        protocols.protocol(text)


@pytest.mark.parametrize(("text", "family", "read"), [
    ("echo-request", 4, (8, 0, 255)), ("any", 4, (255, 0, 255)), ("3/4", 4, (3, 4, 4)), ("port-unr", 4, (3, 3, 3)),
    ("ECHO-REQ", 6, (128, 0, 255)), ("1/3", 6, (1, 3, 3)), ("1/2:5", 6, (1, 2, 5)), ("200", 6, (200, 0, 255)),
    ("neighbor-solicitation", 6, (135, 0, 255)), ("packet-too-big", 6, (2, 0, 255)), ("0x80", 6, (128, 0, 255)),
])
def test_an_icmp_type_reads_as_xtables_parse_icmp_reads_it(text, family, read):
    assert protocols.icmp_type(text, family) == read


@pytest.mark.parametrize(("text", "family"), [("echo", 4), ("echo", 6), ("", 6), ("256", 6), ("1:2", 6),
                                              ("3/x", 4), ("any", 6), ("source-quench", 6), ("8/1/2", 4)])
def test_an_icmp_type_xtables_refuses_is_a_bad_value(text, family):
    with pytest.raises(BadValue):
        protocols.icmp_type(text, family)


def test_mobility_header_types_take_an_exact_name_before_a_prefix():
    assert protocols.mh_types("bu") == (5, 5)
    assert protocols.mh_types("home-test") == (3, 3)  # also a prefix of home-test-init, which comes first
    assert protocols.mh_types("b") == (0, 0)  # the first name it begins
    assert protocols.mh_types("2:") == (2, 255) and protocols.mh_types(":4") == (0, 4)
    with pytest.raises(BadValue):
        protocols.mh_types("5:2")


def test_extension_headers_are_named_by_the_protocol_table_or_ipv6headers_own_names():
    assert protocols.ipv6_headers("hop,IPv6-Opts,ipv6-frag,auth,prot") == {0, 60, 44, 51, 255}
    for text in ("tcp", ",", "HOP"):
        with pytest.raises(BadValue):
            protocols.ipv6_headers(text)


@pytest.mark.parametrize(("text", "family", "name"), [
    ("icmp-port-unreachable", 4, "icmp-port-unreachable"), ("port-unreach", 4, "icmp-port-unreachable"),
    ("ICMP", 4, "icmp-net-unreachable"), ("tcp", 4, "tcp-reset"), ("admin", 4, "icmp-admin-prohibited"),
    ("icmp6-adm-prohibited", 6, "icmp6-adm-prohibited"), ("addr", 6, "icmp6-addr-unreachable"),
    ("", 6, "icmp6-no-route"), ("tcp-reset", 6, "tcp-reset"),
])
def test_a_reject_reply_is_the_first_whose_name_or_alias_begins_with_the_text(text, family, name):
    assert protocols.reject_with(text, family) == name


@pytest.mark.parametrize(("text", "family"), [("icmp6-port-unreachable", 4), ("icmp-port-unreachable", 6),
                                              ("admin-prohib", 6), ("echo-reply", 4)])
def test_a_reject_reply_of_the_other_family_is_a_bad_value(text, family):
    with pytest.raises(BadValue):
        protocols.reject_with(text, family)
