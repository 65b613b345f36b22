"""SCTP packets made by hand, for a kernel without SCTP sockets.

The lab's kernel has netfilter's SCTP support (conntrack, the `sctp` match, NAT of SCTP ports) but no SCTP
protocol (`socket(AF_INET, SOCK_STREAM, IPPROTO_SCTP)` fails with EPROTONOSUPPORT), so the lab's agents speak
SCTP's association setup over raw sockets: INIT, INIT ACK, COOKIE ECHO, COOKIE ACK (RFC 4960 section 5.1).
That is what conntrack follows to ESTABLISHED. Every packet carries its CRC32c checksum (RFC 4960 appendix
B): conntrack checks it on a packet entering a node (PREROUTING) and marks a packet with a wrong one INVALID,
which nat never sees.

Only the standard library: the agents import this in every namespace.

>>> packet = build(40000, 80, 0, init_chunk(0x1234))
>>> parse(packet).chunk, parse(packet).initiate_tag == 0x1234, checksum_ok(packet)
('INIT', True, True)
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

# RFC 4960 section 3.2: chunk types.
INIT, INIT_ACK, COOKIE_ECHO, COOKIE_ACK = 1, 2, 10, 11
CHUNK_NAMES = {INIT: "INIT", INIT_ACK: "INIT_ACK", COOKIE_ECHO: "COOKIE_ECHO", COOKIE_ACK: "COOKIE_ACK"}
STATE_COOKIE = 7  # the INIT ACK parameter that carries the cookie (section 3.3.3)
_COMMON = struct.Struct("!HHII")  # source port, destination port, verification tag, checksum
_CHUNK = struct.Struct("!BBH")  # type, flags, length
_INIT = struct.Struct("!IIHHI")  # initiate tag, a_rwnd, outbound streams, inbound streams, initial TSN


def _crc32c_table() -> tuple[int, ...]:
    table = []
    for byte in range(256):
        crc = byte
        for _ in range(8):
            crc = (crc >> 1) ^ 0x82F63B78 if crc & 1 else crc >> 1  # Castagnoli's polynomial, reflected
        table.append(crc)
    return tuple(table)


_TABLE = _crc32c_table()


def crc32c(data: bytes) -> int:
    """CRC32c (Castagnoli) of `data`, as RFC 3309 and RFC 4960 appendix B define it for SCTP.

    >>> hex(crc32c(b"123456789"))
    '0xe3069283'
    """
    crc = 0xFFFFFFFF
    for byte in data:
        crc = _TABLE[(crc ^ byte) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFF


def build(sport: int, dport: int, tag: int, *chunks: bytes) -> bytes:
    """An SCTP packet (common header and chunks) with its checksum, which goes into the header's last four
    bytes least significant byte first (RFC 4960 appendix B: the CRC's bits in transmission order)."""
    body = b"".join(chunks)
    unsummed = _COMMON.pack(sport, dport, tag, 0) + body
    return unsummed[:8] + struct.pack("<I", crc32c(unsummed)) + unsummed[12:]


def checksum_ok(packet: bytes) -> bool:
    return packet[8:12] == struct.pack("<I", crc32c(packet[:8] + b"\0\0\0\0" + packet[12:]))


def _chunk(kind: int, value: bytes = b"") -> bytes:
    chunk = _CHUNK.pack(kind, 0, _CHUNK.size + len(value)) + value
    return chunk + b"\0" * (-len(chunk) % 4)  # chunks are padded to four bytes


def init_chunk(tag: int) -> bytes:
    """The INIT chunk that opens an association: the sender's tag (the peer's packets carry it), one stream
    each way, the tag as first TSN. It must be the packet's only chunk, under verification tag 0."""
    return _chunk(INIT, _INIT.pack(tag, 65535, 1, 1, tag))


def init_ack_chunk(tag: int, cookie: bytes) -> bytes:
    """The INIT ACK answering an INIT, with the responder's tag and a state cookie (here: the agent's answer
    text, which the initiator echoes back)."""
    parameter = struct.pack("!HH", STATE_COOKIE, 4 + len(cookie)) + cookie
    parameter += b"\0" * (-len(parameter) % 4)
    return _chunk(INIT_ACK, _INIT.pack(tag, 65535, 1, 1, tag) + parameter)


def cookie_echo_chunk(cookie: bytes) -> bytes:
    return _chunk(COOKIE_ECHO, cookie)


def cookie_ack_chunk() -> bytes:
    return _chunk(COOKIE_ACK)


@dataclass(frozen=True)
class SctpPacket:
    """What the agents read of a received packet: ports, verification tag, its first chunk, and the INIT or
    INIT ACK fields."""

    sport: int
    dport: int
    tag: int
    chunk: str
    initiate_tag: int | None = None
    cookie: bytes = b""


def parse(packet: bytes) -> SctpPacket | None:
    """The packet's fields, or None when it is too short for a common header and a chunk."""
    if len(packet) < _COMMON.size + _CHUNK.size:
        return None
    sport, dport, tag, _ = _COMMON.unpack_from(packet)
    kind, _, length = _CHUNK.unpack_from(packet, _COMMON.size)
    value = packet[_COMMON.size + _CHUNK.size:_COMMON.size + max(length, _CHUNK.size)]
    name = CHUNK_NAMES.get(kind, str(kind))
    initiate = cookie = None
    if kind in (INIT, INIT_ACK) and len(value) >= _INIT.size:
        initiate = _INIT.unpack_from(value)[0]
        cookie = _parameter(value[_INIT.size:], STATE_COOKIE)
    elif kind == COOKIE_ECHO:
        cookie = value
    return SctpPacket(sport, dport, tag, name, initiate, cookie or b"")


def _parameter(parameters: bytes, wanted: int) -> bytes | None:
    offset = 0
    while offset + 4 <= len(parameters):
        kind, length = struct.unpack_from("!HH", parameters, offset)
        if length < 4:
            return None
        if kind == wanted:
            return parameters[offset + 4:offset + length]
        offset += length + (-length % 4)
    return None
