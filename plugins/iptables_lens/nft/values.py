"""One reader and one printer per kind of nft value: a word of the listing becomes a `Const`, and back.

`read_value(word, typed, quoted)` gives the Const a word means for a datatype, or raises `ValueProblem` saying
what was expected; `format_value(const)` prints it as `nft list ruleset` does (a mark as `0x00004000`, an
interface name in quotes, an IPv6 address as glibc's inet_ntop writes it). Durations (`1h30m`, `10800s`)
are read to milliseconds and printed back as nft's time_print does.

>>> from iptables_lens.nft.types import typed
>>> read_value("0x4000", typed("mark"), False), format_value(read_value("16384", typed("mark"), False))
(Const(type='mark', value=16384), '0x00004000')
>>> format_value(read_value("::ffff:1.2.3.4", typed("ipv6_addr"), False)), read_duration("1h30m")
('::ffff:1.2.3.4', 5400000)
"""

from __future__ import annotations

import ipaddress
import re

from iptables_lens.nft.model import Const
from iptables_lens.nft.types import DATATYPES, Datatype, Typed

_INTEGER = re.compile(r"0x[0-9a-fA-F]+|[0-9]+")
_ETHER = re.compile(r"[0-9a-fA-F]{1,2}(?::[0-9a-fA-F]{1,2}){5}")
_DURATION = re.compile(r"(?:([0-9]+)d)?(?:([0-9]+)h)?(?:([0-9]+)m(?!s))?(?:([0-9]+)s)?(?:([0-9]+)ms)?")
_HOUR = re.compile(r"([01][0-9]|2[0-3]):([0-5][0-9])(?::([0-5][0-9]))?")
_DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}(?: [0-9]{2}:[0-9]{2}(?::[0-9]{2})?)?")
_TCHANDLE = re.compile(r"none|root|[0-9a-fA-F]{1,4}:[0-9a-fA-F]{1,4}")
_DURATION_UNITS = (86_400_000, 3_600_000, 60_000, 1000, 1)


class ValueProblem(ValueError):
    """A word that is no value of the datatype it stands in; the message says what was expected."""


def read_integer(word: str, bits: int, what: str = "a number") -> int:
    """A decimal or 0x-hex number that fits in `bits` bits; ValueProblem otherwise."""
    if not _INTEGER.fullmatch(word):
        raise ValueProblem(f"expected {what}, got {word!r}")
    value = int(word, 16) if word.startswith("0x") else int(word) if len(word) < 40 else 1 << 200
    if value >= 1 << bits:
        raise ValueProblem(f"value {word} exceeds valid range 0-{(1 << bits) - 1}")
    return value


def read_duration(word: str) -> int:
    """`1d2h3m4s5ms` (each part optional, in that order) in milliseconds; ValueProblem otherwise."""
    match = _DURATION.fullmatch(word)
    if not word or match is None:
        raise ValueProblem(f"expected a time such as 10s, 1h30m or 250ms, got {word!r}")
    return sum(int(part) * unit for part, unit in zip(match.groups(), _DURATION_UNITS, strict=True) if part)


def format_duration(ms: int) -> str:
    """Milliseconds as nft prints a time: `1h30m`, `9m59s996ms` (nothing for 0)."""
    parts = []
    for unit, suffix in zip(_DURATION_UNITS, ("d", "h", "m", "s", "ms"), strict=True):
        count, ms = divmod(ms, unit)
        if count:
            parts.append(f"{count}{suffix}")
    return "".join(parts)


def ipv6_text(address: ipaddress.IPv6Address) -> str:
    """The address as glibc's inet_ntop writes it: Python's compressed form, except the IPv4-mapped and
    IPv4-compatible addresses, which end in dotted quads (`::ffff:1.2.3.4`)."""
    words = [int(address) >> (112 - 16 * i) & 0xFFFF for i in range(8)]
    if not any(words[:5]) and (words[5] == 0xFFFF or (words[5] == 0 and any(words[6:7]))):
        tail = ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
        return f"::ffff:{tail}" if words[5] else f"::{tail}"
    return address.compressed


def _symbolic(word: str, t: Typed) -> Const:
    datatype = t.datatype
    number = datatype.number(word)
    if number is not None:
        return Const(datatype.name, datatype.name_of(number) or word)
    if not _INTEGER.fullmatch(word):
        names = ", ".join(dict.fromkeys(name for name, _ in datatype.symbols[:12]))
        raise ValueProblem(f"{word!r} is not a {datatype.name} value (expected a number or one of {names}, ...)")
    value = read_integer(word, t.bits)
    return Const(datatype.name, datatype.name_of(value) or value)


def read_value(word: str, t: Typed, quoted: bool) -> Const:
    """The Const `word` means for the datatype of `t` (quoted: it was written in double quotes)."""
    datatype = t.datatype
    kind = datatype.kind
    if datatype.quoted and kind != "day":
        if not quoted:
            raise ValueProblem(f"expected a {datatype.name} in double quotes, got {word!r}")
        if kind == "hour" and not _HOUR.fullmatch(word):
            raise ValueProblem(f"expected an hour such as \"10:00\", got {word!r}")
        if kind == "date" and not _DATE.fullmatch(word):
            raise ValueProblem(f"expected a date such as \"2022-05-30 21:51:23\", got {word!r}")
        return Const(datatype.name, word)
    if quoted and kind not in ("ifindex", "day"):
        raise ValueProblem(f"{datatype.name} values are not written in quotes: got \"{word}\"")
    if kind == "integer":
        return Const(datatype.name, read_integer(word, t.bits))
    if kind in ("symbolic", "bitmask", "day"):
        return _symbolic(word, t)
    if kind == "ipv4":
        try:
            return Const(datatype.name, str(ipaddress.IPv4Address(word)))
        except ValueError:
            raise ValueProblem(f"expected an IPv4 address, got {word!r}") from None
    if kind == "ipv6":
        try:
            return Const(datatype.name, ipv6_text(ipaddress.IPv6Address(word)))
        except ValueError:
            raise ValueProblem(f"expected an IPv6 address, got {word!r}") from None
    if kind == "ether":
        if not _ETHER.fullmatch(word):
            raise ValueProblem(f"expected an Ethernet address such as 00:11:22:33:44:55, got {word!r}")
        return Const(datatype.name, ":".join(f"{int(part, 16):02x}" for part in word.split(":")))
    if kind == "ifindex":
        return Const(datatype.name, word if quoted else read_integer(word, 32, "an interface name in quotes"))
    if kind == "boolean":
        if word not in ("exists", "missing"):
            raise ValueProblem(f"expected exists or missing, got {word!r}")
        return Const(datatype.name, word == "exists")
    if kind == "time":
        return Const(datatype.name, read_duration(word))
    if kind == "tchandle":
        if not _TCHANDLE.fullmatch(word):
            raise ValueProblem(f"expected a class such as 1:2, none or root, got {word!r}")
        return Const(datatype.name, word)
    raise ValueProblem(f"a {datatype.name} cannot be written here")


def format_number(value: int, datatype: Datatype) -> str:
    digits = datatype.hex_digits
    if digits is None:
        return str(value)
    return f"0x{value:0{digits}x}"


def format_value(const: Const) -> str:
    """The constant as `nft list ruleset` prints it."""
    datatype = DATATYPES[const.type]
    value = const.value
    kind = datatype.kind
    if kind == "boolean":
        return "exists" if value else "missing"
    if kind == "time":
        assert isinstance(value, int)
        return format_duration(value)
    if isinstance(value, bool):
        return str(int(value))
    if isinstance(value, int):
        return format_number(value, datatype)
    if datatype.quoted or kind == "ifindex":
        return f'"{value}"'
    return value


def datatype_of_json(value: object) -> str:
    """How a JSON value of a constant is spelled in messages."""
    return type(value).__name__
