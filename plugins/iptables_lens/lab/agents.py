"""The two programs the lab runs inside its namespaces: a pod's server and a client.

Run as `python -m iptables_lens.lab.agents server PORT [FAMILY]` (on IPv4, or IPv6 for FAMILY 6: answers every connection with the address it was
reached on and the peer it saw, then closes) or `... client SRC DST PORT COUNT [SPORT [TIMEOUT]]` (opens COUNT
connections from SRC to DST:PORT, one after the other, from source ports SPORT, SPORT+1, ... when given,
and prints one JSON line with what each answer said, or how the connection failed: "refused" when the
kernel answered the SYN with a TCP reset or an ICMP(v6) port unreachable, as a REJECT rule does, "timeout"
when nothing came back, as after a DROP).
Both use only the standard library, so they start fast in a namespace.
"""

from __future__ import annotations

import json
import socket
import sys
import threading


def serve(port: int, family: int = 4) -> None:
    listener = socket.socket(socket.AF_INET6 if family == 6 else socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if family == 6:  # IPv6 only: IPv4 peers go to the IPv4 server, not here as ::ffff:a.b.c.d
        listener.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
    listener.bind(("::" if family == 6 else "0.0.0.0", port))
    listener.listen(512)
    print("ready", flush=True)

    def answer(conn: socket.socket, peer: tuple[str, int]) -> None:
        with conn:
            local = conn.getsockname()
            conn.sendall(f"{local[0]} {peer[0]}:{peer[1]}\n".encode())

    while True:
        conn, peer = listener.accept()
        threading.Thread(target=answer, args=(conn, peer), daemon=True).start()


def connect(src: str, dst: str, port: int, count: int, sport: int | None = None, timeout: float = 5) -> list[dict]:
    """`count` connections; with `sport`, from ports sport, sport+1, ... so that no two connections share a
    tuple (a reused ephemeral port would fold two connections into one conntrack entry)."""
    answers = []
    for index in range(count):
        sock = socket.socket(socket.AF_INET6 if ":" in src else socket.AF_INET, socket.SOCK_STREAM)
        sock.settimeout(timeout)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((src, sport + index if sport else 0))
            local_port = sock.getsockname()[1]
            sock.connect((dst, port))
            data = b""
            while not data.endswith(b"\n"):
                chunk = sock.recv(256)
                if not chunk:
                    break
                data += chunk
            server, peer = data.decode().split()
            answers.append({"sport": local_port, "server": server, "peer": peer})
        except ConnectionRefusedError as error:  # ECONNREFUSED: ICMP(v6) port unreachable makes connect() fail so
            answers.append({"error": str(error), "failure": "refused"})
        except TimeoutError as error:
            answers.append({"error": str(error), "failure": "timeout"})
        except OSError as error:
            answers.append({"error": str(error), "failure": "other"})
        finally:
            sock.close()
    return answers


def main(argv: list[str]) -> int:
    if argv[0] == "server":
        serve(int(argv[1]), int(argv[2]) if len(argv) > 2 else 4)
        return 0
    if argv[0] == "client":
        src, dst, port, count = argv[1], argv[2], int(argv[3]), int(argv[4])
        sport = int(argv[5]) if len(argv) > 5 and argv[5] != "-" else None
        timeout = float(argv[6]) if len(argv) > 6 else 5
        print(json.dumps(connect(src, dst, port, count, sport, timeout)))
        return 0
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
