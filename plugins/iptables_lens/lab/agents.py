"""The two programs the lab runs inside its namespaces: a server and a client, for TCP, UDP and SCTP.

`python -m iptables_lens.lab.agents server LISTEN...` listens on each LISTEN, written `PROTO/ADDRESS/PORT`
(`tcp/10.244.1.2/8080`, `udp/fd00:10:244:1::2/53`), prints "ready", and answers every connection with the
address it was reached on and the peer it saw (`10.244.1.2 172.20.0.2:50000`): over TCP on the connection,
over UDP in a datagram back, over SCTP in the state cookie of its INIT ACK (see `sctp`).

`... client PROTO SRC[,SRC...] DST PORT COUNT [SPORT [TIMEOUT [together]]]` opens COUNT connections from each
SRC to DST:PORT, one after the other (all at once with `together`, for connections expected to time out),
from source ports SPORT, SPORT+1, ... when given, and prints one JSON line with
what each answer said, or how the connection failed: "refused" when the kernel answered with a TCP reset or
an ICMP(v6) port unreachable, as a REJECT rule does; "timeout" when nothing came back, as after a DROP; "other"
for anything else. A UDP or SCTP client sends its first packet again every half second until an answer comes
(as SCTP's INIT timer and DNS resolvers do): an ICMP error that a host's rate limit held back comes with a
later one.

Both use only the standard library, so they start fast in a namespace.
"""

from __future__ import annotations

import json
import random
import socket
import sys
import threading
import time

from iptables_lens.lab import sctp

Protocol = str  # "tcp", "udp" or "sctp"
RESEND_SECONDS = 0.5
SCTP_PROTOCOL = 132


def _family(address: str) -> socket.AddressFamily:
    return socket.AF_INET6 if ":" in address else socket.AF_INET


def _answer(local: str, peer: str, port: int) -> str:
    return f"{local} {peer}:{port}"


# -- the server ---------------------------------------------------------------------------------------------


def serve(listens: list[tuple[Protocol, str, int]]) -> None:
    """Answer on every (protocol, address, port) until stopped."""
    sctp_ports: dict[str, set[int]] = {}
    threads = []
    for protocol, address, port in listens:
        if protocol == "tcp":
            threads.append(threading.Thread(target=_serve_tcp, args=(_bound(socket.SOCK_STREAM, address, port),)))
        elif protocol == "udp":
            threads.append(threading.Thread(target=_serve_udp, args=(_bound(socket.SOCK_DGRAM, address, port),)))
        else:
            sctp_ports.setdefault(address, set()).add(port)
    for address, ports in sctp_ports.items():
        raw = socket.socket(_family(address), socket.SOCK_RAW, SCTP_PROTOCOL)
        raw.bind((address, 0))  # only SCTP packets to this address
        threads.append(threading.Thread(target=_serve_sctp, args=(raw, address, ports)))
    for thread in threads:
        thread.daemon = True
        thread.start()
    print("ready", flush=True)
    for thread in threads:
        thread.join()


def _bound(kind: socket.SocketKind, address: str, port: int) -> socket.socket:
    sock = socket.socket(_family(address), kind)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((address, port))
    if kind == socket.SOCK_STREAM:
        sock.listen(512)
    return sock


def _serve_tcp(listener: socket.socket) -> None:
    def answer(conn: socket.socket, peer: tuple) -> None:
        with conn:
            conn.sendall(f"{_answer(conn.getsockname()[0], peer[0], peer[1])}\n".encode())

    while True:
        conn, peer = listener.accept()
        threading.Thread(target=answer, args=(conn, peer), daemon=True).start()


def _serve_udp(sock: socket.socket) -> None:
    local = sock.getsockname()[0]
    while True:
        _, peer = sock.recvfrom(2048)
        sock.sendto(f"{_answer(local, peer[0], peer[1])}\n".encode(), peer)


def _serve_sctp(raw: socket.socket, address: str, ports: set[int]) -> None:
    """Answer an INIT with an INIT ACK whose cookie holds the answer and the initiator's tag, and the COOKIE
    ECHO of that cookie with a COOKIE ACK: conntrack then sees the association established."""
    while True:
        data, peer = raw.recvfrom(65535)
        packet = sctp.parse(_sctp_payload(raw, data))
        if packet is None or packet.dport not in ports:
            continue
        if packet.chunk == "INIT" and packet.initiate_tag is not None:
            cookie = f"{packet.initiate_tag:08x} {_answer(address, peer[0], packet.sport)}".encode()
            reply = sctp.build(packet.dport, packet.sport, packet.initiate_tag,
                               sctp.init_ack_chunk(random.getrandbits(31) + 1, cookie))
        elif packet.chunk == "COOKIE_ECHO":
            initiator = int(packet.cookie.split(b" ", 1)[0], 16)
            reply = sctp.build(packet.dport, packet.sport, initiator, sctp.cookie_ack_chunk())
        else:
            continue
        raw.sendto(reply, (peer[0], 0))


def _sctp_payload(raw: socket.socket, data: bytes) -> bytes:
    """An IPv4 raw socket receives the IP header too (its length in the first byte); an IPv6 one does not."""
    if raw.family == socket.AF_INET:
        return data[(data[0] & 0x0F) * 4:]
    return data


# -- the client ---------------------------------------------------------------------------------------------


def connect(protocol: Protocol, sources: list[str], dst: str, port: int, count: int, sport: int | None = None,
            timeout: float = 5, together: bool = False) -> list[dict]:
    """`count` connections from each source, in order; with `sport`, from ports sport, sport+1, ... so that no
    two connections of a source share a tuple (a reused port would fold two connections into one conntrack
    entry). `together` opens them all at once: for connections that time out, one wait instead of many."""
    once = {"tcp": _tcp_once, "udp": _udp_once, "sctp": _sctp_once}[protocol]
    attempts = [(src, sport + index if sport else 0) for src in sources for index in range(count)]
    answers: list[dict] = [{} for _ in attempts]

    def attempt(number: int) -> None:
        src, local_port = attempts[number]
        try:
            local_port, text = once(src, local_port, dst, port, timeout)
            server, peer = text.split()
            answers[number] = {"src": src, "sport": local_port, "server": server, "peer": peer}
        except ConnectionRefusedError as error:  # a TCP reset, an ICMP(v6) port unreachable
            answers[number] = {"src": src, "sport": local_port, "error": str(error), "failure": "refused"}
        except TimeoutError as error:
            answers[number] = {"src": src, "sport": local_port, "error": str(error), "failure": "timeout"}
        except OSError as error:
            answers[number] = {"src": src, "sport": local_port, "error": str(error), "failure": "other"}

    if together:
        threads = [threading.Thread(target=attempt, args=(n,)) for n in range(len(attempts))]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    else:
        for number in range(len(attempts)):
            attempt(number)
    return answers


def _tcp_once(src: str, sport: int, dst: str, port: int, timeout: float) -> tuple[int, str]:
    with socket.socket(_family(src), socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((src, sport))
        local_port = sock.getsockname()[1]
        sock.connect((dst, port))
        data = b""
        while not data.endswith(b"\n"):
            chunk = sock.recv(256)
            if not chunk:
                break
            data += chunk
        return local_port, data.decode()


def _udp_once(src: str, sport: int, dst: str, port: int, timeout: float) -> tuple[int, str]:
    with socket.socket(_family(src), socket.SOCK_DGRAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((src, sport))
        local_port = sock.getsockname()[1]
        sock.connect((dst, port))  # a connected socket is told of an ICMP port unreachable

        def exchange(wait: float) -> str:
            sock.settimeout(wait)
            return sock.recv(2048).decode()

        return local_port, _resending(lambda: sock.send(b"?\n"), exchange, timeout)


def _sctp_once(src: str, sport: int, dst: str, port: int, timeout: float) -> tuple[int, str]:
    sport = sport or random.randrange(32768, 61000)  # no SCTP stack to choose one
    with socket.socket(_family(src), socket.SOCK_RAW, SCTP_PROTOCOL) as raw:
        raw.bind((src, 0))
        raw.connect((dst, 0))  # only packets from dst; and a connected raw socket is told of ICMP errors
        tag = random.getrandbits(31) + 1
        deadline = time.monotonic() + timeout

        def receive(chunk: str, wait: float) -> sctp.SctpPacket:
            end = time.monotonic() + wait
            while True:
                raw.settimeout(max(end - time.monotonic(), 0.001))
                packet = sctp.parse(_sctp_payload(raw, raw.recv(65535)))
                if packet and (packet.sport, packet.dport, packet.tag, packet.chunk) == (port, sport, tag, chunk):
                    return packet

        init = sctp.build(sport, port, 0, sctp.init_chunk(tag))
        init_ack = _resending(lambda: raw.send(init), lambda wait: receive("INIT_ACK", wait), timeout)
        assert init_ack.initiate_tag is not None
        echo = sctp.build(sport, port, init_ack.initiate_tag, sctp.cookie_echo_chunk(init_ack.cookie))
        _resending(lambda: raw.send(echo), lambda wait: receive("COOKIE_ACK", wait),
                   max(deadline - time.monotonic(), RESEND_SECONDS))
        return sport, init_ack.cookie.split(b" ", 1)[1].decode()


def _resending(send, receive, timeout: float):
    """Send, and send again every RESEND_SECONDS, until `receive(wait)` gives an answer or `timeout` passes."""
    deadline = time.monotonic() + timeout
    while True:
        send()
        wait = min(RESEND_SECONDS, deadline - time.monotonic())
        try:
            return receive(max(wait, 0.001))
        except TimeoutError:
            if time.monotonic() >= deadline:
                raise


def main(argv: list[str]) -> int:
    if argv and argv[0] == "server":
        listens = []
        for listen in argv[1:]:
            protocol, address, number = listen.split("/")
            listens.append((protocol, address, int(number)))
        serve(listens)
        return 0
    if argv and argv[0] == "client":
        protocol, sources, dst, port, count = argv[1], argv[2].split(","), argv[3], int(argv[4]), int(argv[5])
        sport = int(argv[6]) if len(argv) > 6 and argv[6] != "-" else None
        timeout = float(argv[7]) if len(argv) > 7 else 5
        together = len(argv) > 8 and argv[8] == "together"
        print(json.dumps(connect(protocol, sources, dst, port, count, sport, timeout, together)))
        return 0
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
