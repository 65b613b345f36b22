"""The grammar of the selectors beyond headers, meta and conntrack keys: IPv4 options (`ip option rr exists`,
`ip option ra value`), SCTP chunks (`sctp chunk init num-inbound-streams`), the OS fingerprint (`osf ttl loose
name`) and the IPsec state (`ipsec in spnum 1 ip saddr`), as nftables 1.0.6 reads and prints them (its
parser_bison.y, src/ipopt.c, src/sctp_chunk.c, src/osf.c, src/xfrm.c).

Each reader takes the cursor past the selector's first word (and `option` or `chunk`) and gives the selector
with the datatype of what it reads, or raises the cursor's DumpError at the word it cannot read.
"""

from __future__ import annotations

from iptables_lens.nft import types as ty
from iptables_lens.nft.expressions import selector_type
from iptables_lens.nft.selectors import IpOption, Ipsec, Osf, SctpChunk
from iptables_lens.nft.tokens import Cursor, shown
from iptables_lens.nft.values import ValueProblem, read_integer

Found = tuple[IpOption | SctpChunk | Osf | Ipsec, ty.Typed]


def _typed(found: IpOption | SctpChunk | Osf | Ipsec) -> Found:
    typed = selector_type(found)
    assert typed is not None
    return found, typed


def ip_option(cur: Cursor) -> Found:
    """`ip option NAME [FIELD]`, the cursor past `option`; without a field it asks whether the option is there."""
    return _part(cur, "ip option", ty.IP_OPTIONS, IpOption)


def sctp_chunk(cur: Cursor) -> Found:
    """`sctp chunk NAME [FIELD]`, the cursor past `chunk`; without a field it asks whether the chunk is there."""
    return _part(cur, "sctp chunk", ty.SCTP_CHUNKS, SctpChunk)


def _part(cur: Cursor, what: str, parts: dict[str, dict[str, ty.Typed]], kind: type[IpOption | SctpChunk]
          ) -> Found:
    name = cur.take_word(f"the {what}'s name ({', '.join(parts)})")
    fields = parts.get(name.text)
    if fields is None:
        raise cur.error(name, f"unknown {what} {name.text!r}: expected one of {', '.join(parts)}")
    field = cur.word()
    if field in fields:
        cur.pos += 1
        return _typed(kind(name.text, field))
    if any(field in other for other in parts.values()):
        raise cur.error(cur.peek(), f"{what} {name.text} has no field {field!r}: it has {', '.join(fields)}")
    return _typed(kind(name.text))


def osf(cur: Cursor) -> Found:
    """`osf [ttl loose|skip] name|version`, the cursor past `osf`."""
    ttl = None
    if cur.accept("ttl"):
        token = cur.take_word("loose or skip")
        if token.text not in ty.OSF_TTLS:
            raise cur.error(token, f"invalid ttl option {token.text!r}: expected loose or skip")
        ttl = token.text
    key = cur.take_word("name or version")
    if key.text not in ("name", "version"):
        raise cur.error(key, f"expected name or version after osf, got {shown(key)}")
    return _typed(Osf(key.text, ttl))  # type: ignore[arg-type]


def ipsec(cur: Cursor) -> Found:
    """`ipsec in|out [spnum N] reqid|spi|ip saddr|ip daddr|ip6 saddr|ip6 daddr`, the cursor past `ipsec`."""
    direction = cur.take_word("in or out")
    if direction.text not in ty.IPSEC_DIRECTIONS:
        raise cur.error(direction, f"expected in or out after ipsec, got {shown(direction)}")
    spnum = 0
    if cur.accept("spnum"):
        token = cur.take_word("the state's number on the path")
        try:
            spnum = read_integer(token.text, 64, "spnum")
        except ValueProblem as problem:
            raise cur.error(token, str(problem)) from None
        if spnum > 255:
            raise cur.error(token, f"value too large: spnum {spnum} is above 255")
    family = None
    if cur.word() in ("ip", "ip6"):
        family = cur.take("ip or ip6").text
        key = cur.take_word("saddr or daddr")
        if key.text not in ("saddr", "daddr"):
            raise cur.error(key, f"expected saddr or daddr after ipsec {direction.text} {family}, got {shown(key)}")
    else:
        key = cur.take_word("reqid, spi, ip or ip6")
        if key.text not in ty.IPSEC_KEYS:
            raise cur.error(key, f"expected reqid, spi, ip or ip6 after ipsec {direction.text}, got {shown(key)}")
    return _typed(Ipsec(direction.text, key.text, family, spnum))  # type: ignore[arg-type]
