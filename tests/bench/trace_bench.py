"""Trace flows through a 10,000-Service dump: one flow, and the NodePort of every Service."""

from __future__ import annotations

import ipaddress
import statistics
import time

from iptables_lens.iptables.parse import parse
from iptables_lens.trace import IPv4, NodeContext, Packet, Route, Tracer

from .parse_bench import ENDPOINTS, SERVICES
from .scale import nodeport_dump


def bench_trace() -> list[dict]:
    text = nodeport_dump(SERVICES, ENDPOINTS)
    start = time.perf_counter()
    dump = parse(text)
    parse_seconds = time.perf_counter() - start
    node = NodeContext.simple("node", "172.20.0.2/16",
                              (Route(ipaddress.IPv4Network("10.244.0.0/16"), "eth0", IPv4("172.20.0.3")),))
    tracer = Tracer(dump, node)
    start = time.perf_counter()
    tracer.index_all()
    index_seconds = time.perf_counter() - start
    client = IPv4("172.20.0.100")
    samples = []
    for i in range(200):
        packet = Packet(client, IPv4("172.20.0.2"), dport=30000 + (i * 37) % SERVICES)
        t0 = time.perf_counter()
        tracer.trace(packet)
        samples.append(time.perf_counter() - t0)
    one = statistics.median(samples)
    start = time.perf_counter()
    outcomes = 0
    for i in range(SERVICES):
        outcomes += len(tracer.trace(Packet(client, IPv4("172.20.0.2"), dport=30000 + i)).outcomes)
    every = time.perf_counter() - start
    assert outcomes == SERVICES * ENDPOINTS
    return [
        {"figure": "trace: one-time index of long chains",
         "value": f"{index_seconds * 1000:.0f} ms = {index_seconds / parse_seconds:.2f}x the parse (goal <= 0.25x)"},
        {"figure": "trace: one NodePort flow, median of 200",
         "value": f"{one * 1000:.2f} ms (goal <= 1 ms), {ENDPOINTS} outcomes"},
        {"figure": f"trace: the NodePort of all {SERVICES} Services",
         "value": f"{every:.1f} s (goal < 10 s), {outcomes} outcomes"},
    ]
