"""Small scenarios for the kernel lab's tests, written into a folder from `ClusterSpec`s.

A two-node dual-stack cluster on the seed's addresses: node-a (172.20.0.2, pods 10.244.1.0/24) and node-b
(172.20.0.3, pods 10.244.2.0/24) on the underlay 172.20.0.0/16 with its gateway 172.20.0.1, and two pods,
10.244.1.2 on node-a and 10.244.2.2 on node-b, that back every Service given; each address has its IPv6 twin
(`kube.dual_stack.ipv6_twin`). Each node's "after" dumps are what `kube.synth` writes for the Services, of
both families (without kind's chains); `edit` changes a dump's text before it is written, to break it on
purpose. `flow(..., family=6)` writes a flow with the twins of the IPv4 addresses it is given.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml
from iptables_lens.kube.cluster_spec import ClusterSpec, Endpoint, ServiceSpec
from iptables_lens.kube.dual_stack import ipv6_cluster, ipv6_twin
from iptables_lens.kube.synth import synth_cluster

NODES = {"node-a": ("172.20.0.2", "10.244.1.0/24"), "node-b": ("172.20.0.3", "10.244.2.0/24")}
PODS = {"web-a": ("node-a", "10.244.1.2"), "web-b": ("node-b", "10.244.2.2")}
BOTH_PODS = tuple(Endpoint(address, node) for node, address in PODS.values())
OUTSIDE = "172.20.0.100"


def flow(id: str, node: str, src: str, dst: str, dport: int, protocol: str = "tcp", family: int = 4,
         returning_to: str | None = None) -> dict:
    def address(v4: str) -> str:
        return v4 if family == 4 else ipv6_twin(v4)

    more: dict[str, Any] = {"returning_to": address(returning_to)} if returning_to else {}
    return dict(id=id if family == 4 else f"{id}-v6", title=id.replace("-", " "), node=node,
                client="a client chosen for the test", src=address(src), dst=address(dst), protocol=protocol,
                dport=dport, **more)


def write_scenario(folder: Path, services: tuple[ServiceSpec, ...], flows: list[dict],
                   edit: Callable[[str], str] = lambda text: text) -> Path:
    """Write scenario.yaml and each node's dump into `folder`; the folder."""
    folder.mkdir(parents=True, exist_ok=True)
    for node, (address, _) in NODES.items():
        spec = ClusterSpec(services, node=node, node_ip=address)
        (folder / f"{node}-after.rules").write_text(edit(synth_cluster(spec)))
        (folder / f"{node}-after-v6.rules").write_text(edit(synth_cluster(ipv6_cluster(spec))))
    underlay, gateway, pod_cidr = "172.20.0.0/16", "172.20.0.1", "10.244.0.0/16"
    meta = {
        "title": "A kernel lab test", "summary": "Services for the kernel lab's tests.",
        "provenance": {"method": "procedure", "description": "written by tests/lab_scenarios.py"},
        "cluster": {"name": "lab", "kubernetes_version": "v1.29.1", "iptables_version": "v1.8.9 (nf_tables)",
                    "underlay_cidr": underlay, "underlay_gateway": gateway, "pod_cidr": pod_cidr,
                    "underlay_cidr_v6": ipv6_twin(underlay), "underlay_gateway_v6": ipv6_twin(gateway),
                    "pod_cidr_v6": ipv6_twin(pod_cidr)},
        "nodes": [{"name": name, "role": "worker", "address": address, "pod_cidr": pods,
                   "address_v6": ipv6_twin(address), "pod_cidr_v6": ipv6_twin(pods)}
                  for name, (address, pods) in NODES.items()],
        "pods": [{"name": name, "node": node, "address": address, "address_v6": ipv6_twin(address)}
                 for name, (node, address) in PODS.items()],
        # The lab needs no Service facts: servers listen where the tracer delivers the flows.
        "dumps": [{"file": f"{node}-after{suffix}.rules", "node": node, "moment": "after", "family": family}
                  for node in NODES for family, suffix in ((4, ""), (6, "-v6"))],
        "flows": flows,
    }
    (folder / "scenario.yaml").write_text(yaml.safe_dump(meta, sort_keys=False))
    return folder
