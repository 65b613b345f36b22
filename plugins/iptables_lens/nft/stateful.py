"""The stateful statements a rule, a set element and a set declaration share: counter, quota and limit.

Sizes are read to bytes and printed back as nft's get_rate does: the largest of bytes, kbytes and mbytes that
divides them (`1048576` bytes is `1 mbytes`).
"""

from __future__ import annotations

from iptables_lens.nft.model import Counter, Limit, Quota, Statement
from iptables_lens.nft.tokens import Cursor, shown
from iptables_lens.nft.values import ValueProblem, read_duration, read_integer

BYTE_UNITS = {"bytes": 1, "kbytes": 1024, "mbytes": 1024 * 1024}
TIME_UNITS = {"second": 1, "minute": 60, "hour": 3600, "day": 86400, "week": 604800}
STATEFUL = ("counter", "quota", "limit")


def number(cur: Cursor, what: str, bits: int = 64) -> int:
    token = cur.take_word(what)
    try:
        return read_integer(token.text, bits, what)
    except ValueProblem as problem:
        raise cur.error(token, str(problem)) from None


def size(cur: Cursor) -> int:
    """`N bytes|kbytes|mbytes`, in bytes."""
    amount = number(cur, "a size")
    unit = cur.take_word("a unit (bytes, kbytes, mbytes)")
    if unit.text not in BYTE_UNITS:
        raise cur.error(unit, f"expected bytes, kbytes or mbytes, got {shown(unit)}")
    return amount * BYTE_UNITS[unit.text]


def rate_and_unit(amount: int) -> tuple[int, str]:
    """`amount` bytes as (number, unit) the way nft prints them."""
    if amount == 0:
        return 0, "bytes"
    for unit in ("bytes", "kbytes"):
        if amount % 1024:
            return amount, unit
        amount //= 1024
    return amount, "mbytes"


def duration(cur: Cursor) -> int:
    """A time such as `10s` or `1h30m`, in milliseconds."""
    token = cur.take_word("a time such as 10s")
    try:
        return read_duration(token.text)
    except ValueProblem as problem:
        raise cur.error(token, str(problem)) from None


def counter(cur: Cursor) -> Counter:
    """`counter [packets N bytes M]`, the cursor past `counter`."""
    if cur.accept("packets"):
        packets = number(cur, "the packet count")
        cur.expect("bytes")
        return Counter(packets, number(cur, "the byte count"))
    return Counter()


def quota(cur: Cursor) -> Quota:
    """`quota [over] N UNIT [used N UNIT]`, the cursor past `quota`."""
    over = cur.accept("over")
    limit_bytes = size(cur)
    used = size(cur) if cur.accept("used") else 0
    return Quota(limit_bytes, used, over)


def limit(cur: Cursor) -> Limit:
    """`limit rate [over] N/UNIT [burst N packets]` or `limit rate [over] N BYTES/UNIT [burst N BYTES]`, the
    cursor past `limit`."""
    cur.expect("rate")
    over = cur.accept("over")
    token = cur.take_word("a rate such as 10/second")
    amount_text, slash, per = token.text.partition("/")
    if slash:
        try:
            rate = read_integer(amount_text, 64, "a rate")
        except ValueProblem as problem:
            raise cur.error(token, str(problem)) from None
        if per not in TIME_UNITS:
            raise cur.error(token, f"expected a rate per second, minute, hour, day or week, got {token.text!r}")
        burst = 5
        if cur.accept("burst"):
            burst = number(cur, "the burst", 32)
            cur.expect("packets")
        return Limit(rate, per, burst, False, over)
    try:
        amount = read_integer(token.text, 64, "a rate")
    except ValueProblem as problem:
        raise cur.error(token, str(problem)) from None
    unit_token = cur.take_word("a rate unit such as kbytes/second")
    unit, slash, per = unit_token.text.partition("/")
    if unit not in BYTE_UNITS or not slash or per not in TIME_UNITS:
        raise cur.error(unit_token, f"expected a rate unit such as kbytes/second, got {unit_token.text!r}")
    burst = size(cur) if cur.accept("burst") else 0
    return Limit(amount * BYTE_UNITS[unit], per, burst, True, over)


def stateful(cur: Cursor) -> Statement:
    """A counter, quota or limit at the cursor (the keyword included)."""
    word = cur.take_word("counter, quota or limit").text
    if word == "counter":
        return counter(cur)
    if word == "quota":
        return quota(cur)
    return limit(cur)
