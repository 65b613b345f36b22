"""The seed's NodePort Service on a dual-stack kind cluster: each worker's `iptables-save` and `ip6tables-save`
text before and after the Service was created, as kube-proxy v1.29's two proxiers write them.

The cluster is the seed's (`dumps/kind-nodeport/`) made dual-stack the way kind makes it
(`networking.ipFamily: dual`): every node, pod and the Service (`ipFamilyPolicy: PreferDualStack`) also has
an IPv6 address, the twin of its IPv4 one (`kube.dual_stack`). kubeadm's kube-dns and the API server's
default/kubernetes stay SingleStack IPv4, so a worker's IPv6 dump before the Service has kube-proxy's fixed
chains only. The IPv4 dumps are the seed's own (but for the counters).

>>> dumps = synth_dual_stack_nodeport()
>>> sorted(dumps)[:2]
[('blog-worker', 'after', 4), ('blog-worker', 'after', 6)]
>>> "--to-destination [fd00:10:244:1::2]:80" in dumps["blog-worker", "after", 6]
True
"""

from __future__ import annotations

from typing import Literal

from iptables_lens.kube.cluster_spec import (
    ClusterSpec,
    Family,
    KindNode,
    kind_system_services,
)
from iptables_lens.kube.dual_stack import ipv6_cluster
from iptables_lens.kube.synth import synth_cluster
from iptables_lens.kube.synth_scenario import CONTROL_PLANE, DUAL_STACK_NODEPORT, WORKER_1, WORKER_2

Moment = Literal["before", "after"]

DUAL_STACK_WORKERS = (WORKER_1, WORKER_2)


def dual_stack_specs(node: str, moment: Moment) -> dict[Family, ClusterSpec]:
    """The IPv4 and the IPv6 spec of a worker (`blog-worker` or `blog-worker2`) at a moment."""
    worker = next((w for w in DUAL_STACK_WORKERS if w.name == node), None)
    if worker is None:
        raise ValueError(f"no worker {node!r} (one of {', '.join(w.name for w in DUAL_STACK_WORKERS)})")
    services = kind_system_services(CONTROL_PLANE.name, CONTROL_PLANE.address)
    if moment == "after":
        services += (DUAL_STACK_NODEPORT,)
    kind = KindNode(dns_tcp_port=worker.dns_ports[0], dns_udp_port=worker.dns_ports[1])
    v4 = ClusterSpec(services, node=worker.name, node_ip=worker.address, kind=kind)
    return {4: v4, 6: ipv6_cluster(v4, dual_stack=True)}


def synth_dual_stack_nodeport() -> dict[tuple[str, Moment, Family], str]:
    """(node, moment, family) -> that dump's text, for both workers, both moments and both families."""
    dumps: dict[tuple[str, Moment, Family], str] = {}
    for worker in DUAL_STACK_WORKERS:
        for moment in ("before", "after"):
            for family, spec in dual_stack_specs(worker.name, moment).items():
                dumps[worker.name, moment, family] = synth_cluster(spec)
    return dumps
