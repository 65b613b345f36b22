"""One reader for each kind of option value, reading it as iptables does.

The parser's checks (`xtables`), `explain` and the tracer read values only through these readers, so they
agree on what a value means: `--mark 010` is 8 everywhere, as it is to iptables. A reader returns the value
or raises `BadValue`, whose message says what was expected; the parser reports it at the value's position.

>>> mark("0x4000/0x4000"), mark("010")
(Mark(value=16384, mask=16384), Mark(value=8, mask=4294967295))
>>> port_range("1000:2000"), statistic_probability("0.33333333349")
((1000, 2000), Fraction(1, 3))
"""

from __future__ import annotations

import ipaddress
import re
import socket
from collections.abc import Callable
from dataclasses import dataclass
from fractions import Fraction
from math import floor
from typing import NamedTuple

from iptables_lens.iptables.model import Family

U32_MAX = 0xFFFF_FFFF
PORT_MAX = 0xFFFF


class BadValue(ValueError):
    """A value iptables would refuse (or that this project deliberately refuses); the message says why."""


# -- numbers --------------------------------------------------------------------------------------------------

# strtoul with base 0, as xtables_strtoul_base calls it: C-locale blanks, an optional '+' (a '-' is refused
# before strtoul sees it), then hex after 0x, octal after a leading 0, else decimal.
_UNSIGNED = re.compile(r"[ \t\n\v\f\r]*\+?(?:0[xX](?P<hex>[0-9a-fA-F]+)|(?P<octal>0[0-7]*)|(?P<decimal>[1-9][0-9]*))")
# The same, at the start of a text (strtoul with an end pointer: the number stops where digits stop).
UNSIGNED_PREFIX = _UNSIGNED


def unsigned(text: str, maximum: int = U32_MAX) -> int:
    """A whole number as iptables reads one (strtoul, base 0): `0x1f` hex, `010` octal (8), `10` decimal.

    BadValue if it is not a number or is above `maximum`.
    """
    value = _strtoul(text)
    if value is None:
        raise BadValue(f"expected a number, got {text!r}")
    if value > maximum:
        raise BadValue(f"{text!r} is above {maximum}")
    return value


def _strtoul(text: str) -> int | None:
    found = _UNSIGNED.fullmatch(text)
    if found is None:
        return None
    if found["hex"] is not None:
        return int(found["hex"], 16)
    if found["octal"] is not None:
        return int(found["octal"], 8)
    decimal = found["decimal"]
    # Python refuses to convert thousands of decimal digits; anything past 20 is past 64 bits anyway.
    return int(decimal) if len(decimal) <= 20 else 1 << 64


def unsigned_range(text: str, maximum: int = U32_MAX) -> tuple[int, int]:
    """`LOW[:HIGH]` of numbers, as xtables reads a range option such as `--ctexpire`: `LOW` alone is
    (LOW, LOW), a missing end is 0 or `maximum`; BadValue if HIGH < LOW."""
    return _span(text, ":", lambda end: unsigned(end, maximum), 0, maximum, "a number or a range LOW:HIGH")


def _span(text: str, separator: str, read_end: Callable[[str], int], missing_low: int | None,
          missing_high: int | None, expected: str) -> tuple[int, int]:
    """`LOW[<separator>HIGH]` with each end read by `read_end`, as (low, high): one value is a span of one, an
    end left out is `missing_low` or `missing_high` (None: it may not be left out). BadValue if an end is
    unreadable, or if HIGH is below LOW."""
    low_text, given, high_text = text.partition(separator)
    try:
        if not given:
            low = high = read_end(text)
        else:
            low = read_end(low_text) if low_text or missing_low is None else missing_low
            high = read_end(high_text) if high_text or missing_high is None else missing_high
    except BadValue:
        raise BadValue(f"expected {expected}, got {text!r}") from None
    if high < low:
        raise BadValue(f"range {text!r} is empty: {high} is below {low}")
    return low, high


class Mark(NamedTuple):
    """A packet or connection mark with its mask, as `VALUE[/MASK]` (the mask is all ones if not given)."""

    value: int
    mask: int

    def matches(self, mark: int) -> bool:
        """Whether `mark` matches, as the kernel tests it: (mark AND mask) == value."""
        return mark & self.mask == self.value


def mark(text: str) -> Mark:
    """`VALUE[/MASK]`, each a 32-bit number read as strtoul reads it (xtables_parse_mark_mask)."""
    value_text, slash, mask_text = text.partition("/")
    value = _strtoul(value_text)
    mask = _strtoul(mask_text) if slash else U32_MAX
    if value is None or mask is None:
        raise BadValue(f"expected VALUE[/MASK] as numbers, got {text!r}")
    if value > U32_MAX or mask > U32_MAX:
        raise BadValue(f"mark {text!r} does not fit in 32 bits")
    return Mark(value, mask)


# The levels of syslog(3), which `-j LOG --log-level` takes by name or number.
SYSLOG_LEVELS = ("emerg", "alert", "crit", "error", "warning", "notice", "info", "debug")
_SYSLOG_ALIASES = {"panic": 0}  # deprecated, still read


def syslog_level(text: str) -> int:
    """A `--log-level`: a number from 0 to 7 (strtoul) or a level's name, as xtables reads it."""
    level = _strtoul(text)
    if level is None:
        named = SYSLOG_LEVELS.index(text) if text in SYSLOG_LEVELS else _SYSLOG_ALIASES.get(text)
        if named is None:
            raise BadValue(f"expected a log level (0-7 or {', '.join(SYSLOG_LEVELS)}), got {text!r}")
        return named
    if level > 7:
        raise BadValue(f"expected a log level (0-7 or {', '.join(SYSLOG_LEVELS)}), got {text!r}")
    return level


# -- probabilities ------------------------------------------------------------------------------------------------

# What strtod reads in full: a decimal or hexadecimal floating-point number after C-locale blanks. (strtod
# also reads "inf" and "nan"; neither is a probability, and iptables' range check lets "nan" through only
# because every comparison with it is false.)
_FLOAT = re.compile(
    r"[ \t\n\v\f\r]*(?P<number>[+-]?(?:(?P<hex>0[xX](?:[0-9a-fA-F]+\.?[0-9a-fA-F]*|\.[0-9a-fA-F]+)(?:[pP][+-]?[0-9]+)?)"
    r"|(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?))"
)
_STATISTIC_SCALE = 1 << 31  # the kernel keeps a probability as a 31-bit fraction


def probability(text: str) -> float:
    """A `--probability` as iptables reads it (strtod, between 0 and 1 inclusive)."""
    found = _FLOAT.fullmatch(text)
    if found is None:
        raise BadValue(f"expected a probability between 0 and 1, got {text!r}")
    number = found["number"]
    value = float.fromhex(number) if found["hex"] is not None else float(number)
    if not 0.0 <= value <= 1.0:
        raise BadValue(f"probability {text!r} is not between 0 and 1")
    return value


def statistic_kept(text: str) -> int:
    """The integer the kernel keeps for `--probability text`: libxt_statistic stores lround(2**31 * p), and
    the kernel matches when a random 31-bit number is below it, so the chance is exactly kept / 2**31."""
    scaled = probability(text) * _STATISTIC_SCALE  # exact: a power of two
    whole = int(scaled)
    return whole + 1 if scaled - whole >= 0.5 else whole  # lround: halves away from zero


def statistic_probability(printed: str) -> Fraction:
    """The probability a `-m statistic --mode random --probability` value stands for, as a fraction.

    The kernel keeps k / 2**31 (see statistic_kept), and iptables-save prints it with 11 decimals, so 1/3
    comes back as 0.33333333349. The answer is the simplest fraction within one step (2**-31) of the kept
    value: a rule's author who wrote 10 decimals (kube-proxy writes 1/n as "%0.10f") is within 0.61 of a
    step, half a step from lround and 0.11 from the decimals; for 1/44 written as 0.0227272727, the kept
    integer is not the one 1/44 itself rounds to, so "the same integer" would be too narrow a window.

    >>> statistic_probability("0.33333333349"), statistic_probability("0.50000000000")
    (Fraction(1, 3), Fraction(1, 2))
    >>> statistic_probability("0.00009999")  # 1/10001, as kube-proxy writes it for 10001 endpoints
    Fraction(1, 10001)
    """
    kept = Fraction(statistic_kept(printed), _STATISTIC_SCALE)
    step = Fraction(1, _STATISTIC_SCALE)
    return _simplest_between(max(kept - step, Fraction(0)), min(kept + step, Fraction(1)))


def _simplest_between(low: Fraction, high: Fraction) -> Fraction:
    """The fraction with the smallest denominator in [low, high] (0 <= low <= high), by continued fractions."""
    whole = floor(low)
    if whole == low:
        return Fraction(whole)
    if whole + 1 <= high:
        return Fraction(whole + 1)
    return whole + 1 / _simplest_between(1 / (high - whole), 1 / (low - whole))


# -- ports ---------------------------------------------------------------------------------------------------------

# iptables also reads ports in hex or octal (strtoul, base 0: `010` is port 8, `080` is refused), and
# service names; iptables-save prints them in decimal, and a dump that means a port writes it so: anything
# else is refused, deliberately (every such message says "expected a port").
_PORT = re.compile(r"0|[1-9][0-9]{0,4}")  # a bound on digits keeps int() quick


def port(text: str) -> int:
    """A port number, 0 to 65535, in decimal without leading zeros."""
    if _PORT.fullmatch(text) is None or int(text) > PORT_MAX:
        raise BadValue(f"expected a port number (0-65535, decimal), got {text!r}")
    return int(text)


def port_range(text: str) -> tuple[int, int]:
    """`PORT` or `[LOW]:[HIGH]` of a tcp, udp or sctp match (a missing end is 0 or 65535), as (low, high)."""
    return _span(text, ":", port, 0, PORT_MAX, "a port or a range PORT:PORT")


MULTIPORT_SLOTS = 15  # XT_MULTI_PORTS; a range takes two


def port_list(text: str) -> tuple[tuple[int, int], ...]:
    """A multiport list `PORT[,LOW:HIGH]...`, as (low, high) spans; a range needs both ends, low below high."""
    spans = []
    for part in text.split(","):
        low, high = _span(part, ":", port, None, None, "a port or a range PORT:PORT in a comma-separated list")
        if ":" in part and high == low:
            raise BadValue(f"range {part!r} is empty: multiport wants LOW:HIGH with LOW below HIGH")
        spans.append((low, high))
    if sum(1 if low == high else 2 for low, high in spans) > MULTIPORT_SLOTS:
        raise BadValue(f"multiport takes at most {MULTIPORT_SLOTS} ports (a range counts as two)")
    return tuple(spans)


def nat_ports(text: str) -> tuple[int, int]:
    """`PORT[-PORT]` of a NAT target (`--to-ports`, the ports of `--to-destination`), as (low, high)."""
    return _span(text, "-", port, None, None, "a port or a range PORT-PORT")


# -- addresses ---------------------------------------------------------------------------------------------------

Address = ipaddress.IPv4Address | ipaddress.IPv6Address
_FAMILY_NAME = {4: "IPv4", 6: "IPv6"}
_ALL_ONES = {4: U32_MAX, 6: (1 << 128) - 1}


def family_name(family: Family) -> str:
    """"IPv4" or "IPv6"."""
    return _FAMILY_NAME[family]


@dataclass(frozen=True, slots=True)
class Network:
    """An address with a mask, as `-s`/`-d` take it: `ADDRESS`, `ADDRESS/PREFIX` or `ADDRESS/MASK`."""

    address: Address
    mask: int  # 32 or 128 bits; iptables allows a mask that is not a prefix, such as 255.0.255.0

    def __contains__(self, address: object) -> bool:
        if not isinstance(address, ipaddress.IPv4Address | ipaddress.IPv6Address):
            return False
        if address.version != self.address.version:
            return False
        return int(address) & self.mask == int(self.address) & self.mask

    @property
    def family(self) -> Family:
        return 4 if self.address.version == 4 else 6

    @property
    def prefix_length(self) -> int | None:
        """The mask's length in bits, or None for a mask that is not a prefix."""
        bits = self.address.max_prefixlen
        inverted = ~self.mask & ((1 << bits) - 1)
        return None if inverted & (inverted + 1) else bits - inverted.bit_length()


def address(text: str, family: Family = 4) -> Address:
    """An address of `family`: a dotted quad in decimal for IPv4, what inet_pton(3) reads for IPv6.

    (iptables also takes octal and hex octets, shortened forms such as `10.1`, and host names to look up;
    a dump from iptables-save has none, so they are refused. inet_pton refuses an IPv6 address with a zone,
    `fe80::1%eth0`, as ip6tables does.) An address of the other family is refused with a message that says so.
    """
    found = _read_address(text, family)
    if found is not None:
        return found
    other: Family = 6 if family == 4 else 4
    if _read_address(text, other) is not None:
        raise BadValue(f"{text} is an {family_name(other)} address, in an {family_name(family)} dump")
    raise BadValue(f"expected an {family_name(family)} address, got {text!r}")


def _read_address(text: str, family: Family) -> Address | None:
    try:
        if family == 4:
            return ipaddress.IPv4Address(text)
        # ip6tables reads an IPv6 address with inet_pton(3) (xtables_numeric_to_ip6addr); so does this, and in C
        # it is six times quicker than ipaddress's reading, which matters for a dump of 100,000 endpoints.
        return ipaddress.IPv6Address(socket.inet_pton(socket.AF_INET6, text))
    except (ValueError, OSError):
        return None


def family_mismatch(message: str) -> bool:
    """Whether a reader's message says that a value is of the other family (see `address`)."""
    return message.endswith((" in an IPv4 dump", " in an IPv6 dump"))


def network(text: str, family: Family = 4) -> Network:
    """`ADDRESS`, `ADDRESS/PREFIX` or `ADDRESS/MASK`. The prefix is read as strtoul reads it (base 0, up to
    32 or 128: `/010` is /8), the mask as an address of the family (xtables_ipparse_multiple,
    xtables_ip6parse_multiple)."""
    address_text, slash, mask_text = text.rpartition("/") if "/" in text else (text, "", "")
    ones = _ALL_ONES[family]
    try:
        host = address(address_text, family)
        if not slash:
            mask = ones
        elif ("." if family == 4 else ":") in mask_text:
            mask = int(address(mask_text, family))
        else:
            bits = host.max_prefixlen
            mask = (ones << (bits - unsigned(mask_text, maximum=bits))) & ones
    except BadValue as problem:
        if family_mismatch(str(problem)):
            raise
        raise BadValue(f"expected an {family_name(family)} address or ADDRESS/PREFIX, got {text!r}") from None
    return Network(host, mask)


def networks(text: str, family: Family = 4) -> tuple[Network, ...]:
    """A comma-separated list of networks, as `-s`/`-d` take it."""
    return tuple(network(part, family) for part in text.split(","))


def address_family(text: str) -> Family:
    """The family of an address, network or NAT range that a parsed dump holds: only IPv6 ones have two
    colons, or a bracket (`[fd00::1]:80`); an IPv4 one has at most the colon before its port."""
    return 6 if text.count(":") > 1 or text.startswith("[") else 4


def address_range(text: str, family: Family = 4) -> tuple[Address, Address]:
    """`FIRST[-LAST]` of `-m iprange` (a single address is a range of one)."""
    first_text, dash, last_text = text.partition("-")
    try:
        first = address(first_text, family)
        last = address(last_text, family) if dash else first
    except BadValue as problem:
        if family_mismatch(str(problem)):
            raise
        raise BadValue(f"expected an {family_name(family)} address range FIRST-LAST, got {text!r}") from None
    return first, last


class NatRange(NamedTuple):
    """What a `--to-destination`/`--to-source` says: addresses (None: unchanged) and ports (None: unchanged)."""

    first: Address | None
    last: Address | None
    ports: tuple[int, int] | None


def nat_range(text: str, family: Family = 4) -> NatRange:
    """`[FIRST[-LAST]][:PORT[-PORT]]` of DNAT and SNAT (at least one part given), as libxt_NAT's parse_to
    reads it. IPv6 addresses with ports are in brackets, `[FIRST[-LAST]]:PORT[-PORT]`; without brackets,
    a text with two colons or more is all address (`fd00::1:80` is an address)."""
    hosts, ports_text, has_ports = _nat_parts(text, family)
    try:
        if not hosts and not has_ports:
            raise BadValue(text)
        first = last = None
        if hosts:
            first_text, dash, last_text = hosts.partition("-")
            first = address(first_text, family)
            last = address(last_text, family) if dash else first
        ports = nat_ports(ports_text) if has_ports else None
    except BadValue as problem:
        if family_mismatch(str(problem)):
            raise
        shape = "IP[:PORT]" if family == 4 else "[IP]:PORT or IP"
        raise BadValue(f"expected {shape}, got {text!r}") from None
    return NatRange(first, last, ports)


def _nat_parts(text: str, family: Family) -> tuple[str, str, bool]:
    """(addresses, ports, whether ports are given) of a NAT range."""
    if text.startswith("[") and family == 6:
        inside, bracket, after = text[1:].partition("]")
        # iptables ignores text between `]` and the colon; a dump has none.
        if not bracket or (after and not after.startswith(":")):
            raise BadValue(f"expected [IP]:PORT or IP, got {text!r}")
        return inside, after[1:], bool(after)
    hosts, colon, ports = text.partition(":")
    if family == 6 and ":" in ports:
        return text, "", False  # two colons or more: all address
    return hosts, ports, bool(colon)
