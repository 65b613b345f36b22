"""A scenario folder for scale runs: one node whose dumps hold N and N - 1 NodePort Services, in iptables mode
(iptables-save dumps) or in nftables mode (`nft list ruleset` listings)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import yaml
from iptables_lens.kube.dual_stack import ipv6_cluster
from iptables_lens.kube.nft_listing import synth_listing
from iptables_lens.kube.synth import cluster_ip, nodeport_spec, pod_ip, synth_cluster
from iptables_lens.kube.synth_nftables import Layout


def nodeport_dump(services: int, endpoints: int = 5, family: int = 4) -> str:
    """The benchmarks' dump: `services` NodePort Services, each rule commented with its Service even past
    1,000 endpoints (where kube-proxy would stop), so that every size has the same kind of rules; `family=6`
    gives the same cluster's ip6tables dump (kind's IPv6 ranges)."""
    spec = replace(nodeport_spec(services, endpoints), large_cluster_mode=False)
    return synth_cluster(ipv6_cluster(spec) if family == 6 else spec)


def nodeport_listing(services: int, endpoints: int = 5, layout: Layout = "v1.34") -> str:
    """The benchmarks' cluster in kube-proxy's nftables mode, as `nft list ruleset` lists it
    (`kube.nft_listing`): the same NodePort Services, their port named `http` (chains
    `service-HASH-bench/svc-00000/tcp/http`)."""
    spec = nodeport_spec(services, endpoints)
    named = tuple(replace(s, ports=tuple(replace(p, name="http") for p in s.ports)) for s in spec.services)
    return synth_listing(replace(spec, services=named), layout)


def write_scale_scenario(folder: Path, services: int, endpoints: int = 5) -> Path:
    """A scenario of one node whose iptables-save dumps hold `services` - 1 and `services` NodePort Services,
    with a flow to the last one's node port."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "node-before.rules").write_text(nodeport_dump(services - 1, endpoints))
    (folder / "node-after.rules").write_text(nodeport_dump(services, endpoints))
    last = services - 1
    meta = _meta(services, endpoints, "iptables-save dumps written by tests/bench/scale.py with nodeport_dump",
                 ".rules", port_name=None)
    meta["flows"] = [{"id": "to-the-last-service", "title": "A client calls the last Service's node port",
                      "node": "node-a", "client": "a host on the underlay", "src": "172.20.0.100", "dst": "172.20.0.2",
                      "dport": 30000 + last}]
    (folder / "scenario.yaml").write_text(yaml.safe_dump(meta, sort_keys=False))
    return folder


def write_nft_scale_scenario(folder: Path, services: int, endpoints: int = 5) -> Path:
    """The same node in kube-proxy's nftables mode: its `nft list ruleset` listings (`nodeport_listing`) hold
    `services` - 1 and `services` NodePort Services. No flow: tracing nft rulesets is issue 18's."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "node-before.nft").write_text(nodeport_listing(services - 1, endpoints))
    (folder / "node-after.nft").write_text(nodeport_listing(services, endpoints))
    meta = _meta(services, endpoints, "nft list ruleset listings written by tests/bench/scale.py with nodeport_listing",
                 ".nft", port_name="http")
    meta["cluster"] |= {"kubernetes_version": "v1.34.0", "proxy_mode": "nftables"}
    meta["flows"] = []
    (folder / "scenario.yaml").write_text(yaml.safe_dump(meta, sort_keys=False))
    return folder


def _meta(services: int, endpoints: int, written_by: str, suffix: str, port_name: str | None) -> dict:
    """The facts of a scale scenario but its flows: the node, and the last Service (the one the dumps differ by)."""
    last = services - 1
    port: dict = {"protocol": "TCP", "port": 80, "target_port": 8080, "node_port": 30000 + last}
    if port_name is not None:
        port = {"name": port_name} | port
    return {
        "title": f"{services} NodePort Services",
        "summary": f"A synthetic node with {services} NodePort Services of {endpoints} endpoints each.",
        "provenance": {"method": "procedure", "description": f"Generated: {written_by}."},
        "cluster": {"name": "scale", "kubernetes_version": "v1.29.1", "iptables_version": "v1.8.9 (nf_tables)",
                    "underlay_cidr": "172.20.0.0/16", "pod_cidr": "10.244.0.0/16"},
        "nodes": [{"name": "node-a", "role": "worker", "address": "172.20.0.2", "pod_cidr": "10.244.0.0/16"}],
        "services": [{
            "namespace": "bench", "name": f"svc-{last:05d}", "type": "NodePort", "cluster_ip": cluster_ip(last),
            "ports": [port],
            "endpoints": [{"address": pod_ip(last * endpoints + e), "port": 8080} for e in range(endpoints)],
        }],
        "dumps": [{"file": f"node-before{suffix}", "node": "node-a", "moment": "before"},
                  {"file": f"node-after{suffix}", "node": "node-a", "moment": "after"}],
    }
