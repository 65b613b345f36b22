"""Trace flows through a 10,000-Service cluster: one flow, and the NodePort of every Service, through the
iptables-save dump (IPv4 and IPv6) and through the nftables-mode listing of the same cluster."""

from __future__ import annotations

import ipaddress
import statistics
import time

from iptables_lens.iptables.parse import parse
from iptables_lens.kube.dual_stack import ipv6_twin
from iptables_lens.nft import parse_ruleset
from iptables_lens.trace import NodeContext, Packet, Route, Tracer

from .parse_bench import ENDPOINTS, SERVICES
from .scale import nodeport_dump, nodeport_listing


def bench_trace() -> list[dict]:
    iptables, every_iptables = _bench_trace(4)
    nft, every_nft = _bench_nft_trace()
    return iptables + _bench_trace(6)[0] + nft + [
        {"figure": "trace nftables mode: all NodePorts, against iptables mode in this run",
         "value": f"{every_nft / every_iptables:.2f}x"}]


def _address(text: str, family: int):
    return ipaddress.ip_address(text if family == 4 else ipv6_twin(text))


def _node(family: int) -> NodeContext:
    node_address, pods = ("172.20.0.2/16", "10.244.0.0/16") if family == 4 else (
        f"{ipv6_twin('172.20.0.2')}/64", ipv6_twin("10.244.0.0/16"))
    return NodeContext.simple("node", node_address,
                              (Route(ipaddress.ip_network(pods), "eth0", _address("172.20.0.3", family)),))


def _bench_trace(family: int) -> tuple[list[dict], float]:
    label = "trace" if family == 4 else "trace IPv6"
    text = nodeport_dump(SERVICES, ENDPOINTS, family)
    start = time.perf_counter()
    dump = parse(text)
    parse_seconds = time.perf_counter() - start
    tracer = Tracer(dump, _node(family))
    start = time.perf_counter()
    tracer.index_all()
    index_seconds = time.perf_counter() - start
    rows, every = _flows(label, tracer, _address("172.20.0.100", family), _address("172.20.0.2", family), 30000)
    return [{"figure": f"{label}: one-time index of long chains",
             "value": f"{index_seconds * 1000:.0f} ms = {index_seconds / parse_seconds:.2f}x the parse (goal <= 0.25x)"},
            *rows], every


def _bench_nft_trace() -> tuple[list[dict], float]:
    label = "trace nftables mode"
    ruleset = parse_ruleset(nodeport_listing(SERVICES, ENDPOINTS), "kube-proxy.nft")
    tracer = Tracer(ruleset, _node(4))
    return _flows(label, tracer, _address("172.20.0.100", 4), _address("172.20.0.2", 4), 30000)


def _flows(label: str, tracer: Tracer, client, node_ip, first_port: int) -> tuple[list[dict], float]:
    """One NodePort flow (median of 200 spread over the Services), then every Service's NodePort once."""
    samples = []
    for i in range(200):
        packet = Packet(client, node_ip, dport=first_port + (i * 37) % SERVICES)
        t0 = time.perf_counter()
        tracer.trace(packet)
        samples.append(time.perf_counter() - t0)
    one = statistics.median(samples)
    start = time.perf_counter()
    outcomes = 0
    for i in range(SERVICES):
        outcomes += len(tracer.trace(Packet(client, node_ip, dport=first_port + i)).outcomes)
    every = time.perf_counter() - start
    assert outcomes == SERVICES * ENDPOINTS
    return [
        {"figure": f"{label}: one NodePort flow, median of 200",
         "value": f"{one * 1000:.2f} ms (goal <= 1 ms), {ENDPOINTS} outcomes"},
        {"figure": f"{label}: the NodePort of all {SERVICES} Services",
         "value": f"{every:.1f} s (goal < 10 s), {outcomes} outcomes"},
    ], every
