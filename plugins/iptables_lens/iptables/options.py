"""How the parser checks an option's values: how many arguments it takes, and a check of each value that
reads it through `values` (or `protocols`) as iptables reads it. A check returns None for a good value,
else what is wrong with it; `xtables` puts them in its tables of options.

>>> check = one(read_by(values.port_range))
>>> arity(check), check(("80",)), check(("http",))
(1, None, "expected a port or a range PORT:PORT, got 'http'")
"""

from __future__ import annotations

import re
from collections.abc import Callable

from iptables_lens.iptables import values
from iptables_lens.iptables.model import Family

Validator = Callable[[tuple[str, ...]], "str | None"]
Check = Callable[[str], "str | None"]

_IFACE = re.compile(r"[^\s/:]{1,15}")


def one(check: Callable[[str], str | None]) -> Validator:
    def validate(given: tuple[str, ...]) -> str | None:
        if len(given) != 1:
            return f"expects exactly one value, got {len(given)}"
        return check(given[0])

    validate.arity = 1  # type: ignore[attr-defined]
    return validate


def flag(given: tuple[str, ...]) -> str | None:
    return None if not given else f"takes no value, got {' '.join(given)!r}"


flag.arity = 0  # type: ignore[attr-defined]


def two(given: tuple[str, ...]) -> str | None:
    return None if len(given) == 2 else "expects two values"


two.arity = 2  # type: ignore[attr-defined]


def arity(validator: Validator) -> int | None:
    """How many arguments the option takes (getopt consumes exactly these), or None if not fixed."""
    return getattr(validator, "arity", None)


def any_one(value: str) -> str | None:
    return None


def read_by(reader: Callable[[str], object]) -> Callable[[str], str | None]:
    """A check that `value` is one `reader` reads (see `values`): None, or what is wrong with it."""

    def check(value: str) -> str | None:
        try:
            reader(value)
        except values.BadValue as problem:
            return str(problem)
        return None

    return check


def byte_from(minimum: int) -> Check:
    """A number from `minimum` to 255."""
    byte = read_by(lambda value: values.unsigned(value, maximum=0xFF))

    def check(value: str) -> str | None:
        problem = byte(value)
        if problem is None and values.unsigned(value) < minimum:
            return f"expected a number from {minimum} to 255, got {value!r}"
        return problem

    return check


def name_list(allowed: set[str], what: str) -> Callable[[str], str | None]:
    def check(value: str) -> str | None:
        for name in value.split(","):
            if name not in allowed:
                return f"unknown {what} {name!r} (expected one of {', '.join(sorted(allowed))})"
        return None

    return check


_OCTET = r"(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])"
# The common `-s 10.0.0.0/8`, checked without building a Network.
_DOTTED = re.compile(rf"{_OCTET}(?:\.{_OCTET}){{3}}(?:/(?:3[0-2]|[12]?[0-9]))?")


def address(value: str, family: Family = 4) -> str | None:
    """None if `value` is an address or network of `family` as the parser accepts it (see values.network),
    else why not."""
    if family == 4 and _DOTTED.fullmatch(value):
        return None
    try:
        values.network(value, family)
    except values.BadValue as problem:
        return str(problem)
    return None


def address_list(value: str, family: Family = 4) -> str | None:
    for part in value.split(","):
        problem = address(part, family)
        if problem:
            return problem
    return None


def by_family(family: Family, reader: Callable[[str, Family], object]) -> Callable[[str], str | None]:
    """A check of values that `reader` reads for `family`."""
    return read_by(lambda value: reader(value, family))


def prefix_network(family: Family) -> Callable[[str], str | None]:
    """ADDRESS[/PREFIX], as xtables reads a host with a prefix length (XTTYPE_HOSTMASK: no mask form)."""
    def check(value: str) -> str | None:
        if ("." if family == 4 else ":") in value.partition("/")[2]:
            return f"expected ADDRESS/PREFIX, got {value!r}"
        return address(value, family)

    return check


def hbh_options(value: str) -> str | None:
    """`--hbh-opts`/`--dst-opts`: up to 16 `TYPE[:LENGTH]` numbers, comma-separated (libip6t_hbh)."""
    items = value.split(",")
    if len(items) > 16:
        return "at most 16 options"
    for item in items:
        kind, colon, length = item.partition(":")
        for number in (kind, length) if colon else (kind,):
            if read_by(values.unsigned)(number):
                return f"expected TYPE[:LENGTH] numbers, got {item!r}"
        if colon and values.unsigned(kind) & 0xFF == 0:
            return "option 0 (Pad1) has no length"
    return None


def interface(value: str) -> str | None:
    return None if _IFACE.fullmatch(value) else f"expected an interface name of at most 15 characters, got {value!r}"


def hops(value: str) -> None:
    """`--rt-0-addrs`: up to 16 IPv6 addresses, comma-separated."""
    hops = value.split(",")
    if len(hops) > 16:
        raise values.BadValue("at most 16 addresses")
    for hop in hops:
        values.address(hop, 6)


