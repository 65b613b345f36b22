"""Small pieces of English shared by the explainers: lists joined with "or"/"and", protocol names."""

from __future__ import annotations

from collections.abc import Sequence

from iptables_lens.iptables import values

_PROTOCOL_NAMES = {
    "ipv6-icmp": "ICMPv6", "icmpv6": "ICMPv6", "udplite": "UDP-Lite",
    "mobility-header": "the mobility header", "ipv6-mh": "the mobility header", "mh": "the mobility header",
}


def protocol_name(value: str) -> str:
    """"TCP", "ICMPv6", or "protocol 47" for a protocol given by number."""
    try:
        return f"protocol {values.unsigned(value, maximum=255)}"
    except values.BadValue:
        lowered = value.lower()
        return _PROTOCOL_NAMES.get(lowered, lowered.upper())


def plain_address(value: str) -> str:
    """The address as written, without a mask that makes it one host ("10.0.0.1/32" is "10.0.0.1",
    "fd00::1/128" is "fd00::1")."""
    address, slash, _ = value.rpartition("/")
    try:
        network = values.network(value, values.address_family(value))
        one_host = bool(slash) and network.prefix_length == network.address.max_prefixlen
    except values.BadValue:  # not an address: the value of a module whose options the parser does not check
        one_host = False
    return address if one_host else value


def capitalized(text: str) -> str:
    return text[:1].upper() + text[1:]


def join_or(items: Sequence[str]) -> str:
    """"a", "a or b", "a, b or c"."""
    return _join(items, "or")


def join_and(items: Sequence[str]) -> str:
    return _join(items, "and")


def _join(items: Sequence[str], word: str) -> str:
    if len(items) <= 1:
        return "".join(items)
    return f"{', '.join(items[:-1])} {word} {items[-1]}"
