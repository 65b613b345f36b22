"""The generated scenario of the seed's NodePort Service, and a ClusterIP Service without endpoints, on the seed's
kind cluster with kube-proxy in nftables mode, `dumps/kind-nodeport-nftables/`, whose listings the kernel makes:
`nftables_scenario_files` needs root.

For each worker and moment, in a fresh network namespace (`netns.Namespace`), `node_steps` are loaded in order:

1. what the node's other components keep in iptables-nft, with `iptables-nft-restore` (`ip6tables-nft-restore`),
   each component's chains as it makes them;
2. the transactions kube-proxy v1.34's nftables proxier sends for `table ip kube-proxy` and `table ip6
   kube-proxy` (`kube.synth_nftables`, layout "v1.34"), with `nft -f`;

then `nft list ruleset` prints the node's `.nft` file. Each listing is of a node that synced once: its chains
are in the order of one whole transaction, not in the order a node that lived through the change lists them.

What a kind node in nftables mode holds besides kube-proxy's tables, as read (kind v0.30.0, whose default node
image is kindest/node:v1.34.0; kubernetes sources as stored, commits named):

- kind's entrypoint (images/base/files/usr/local/bin/entrypoint, `enable_network_magic`) rewrites Docker's
  embedded DNS rules with `iptables-save | sed | iptables-restore`: nat DOCKER_OUTPUT and DOCKER_POSTROUTING,
  jumped to from PREROUTING, OUTPUT and POSTROUTING. Restoring iptables-save's text makes all four nat base
  chains, INPUT too.
- the kubelet (pkg/kubelet/kubelet_network_linux.go at a0d8ee79, after IPTablesOwnershipCleanup): in both
  families mangle KUBE-IPTABLES-HINT, then its iptables monitor's KUBE-KUBELET-CANARY in mangle, nat and filter;
  in IPv4 filter KUBE-FIREWALL, jumped to from OUTPUT and INPUT, against packets from elsewhere to 127.0.0.0/8.
- kindnetd (images/kindnetd/cmd/kindnetd/masq.go): nat KIND-MASQ-AGENT and the POSTROUTING rule jumping to it,
  for the IPv4 pod network only on a single-stack cluster.
- kube-proxy in nftables mode writes no iptables rules: at start it removes what its iptables and ipvs modes
  would have left (`platformCleanup`, cmd/kube-proxy/app/server_linux.go at 0014930a), nothing on a node that
  never ran them. It always runs both families' proxiers (`platformCheckSupported` reports both for nftables
  mode; cmd/kube-proxy/app/server.go at 002c85b2), so a single-stack node has an `ip6 kube-proxy` table with no
  Service; `--nodeport-addresses primary` (the mode's default, which kind keeps) names no IPv6 address of the
  node, whose Node object has none, so that table serves node ports on every local address but ::1.

kind's node image (images/base/Dockerfile at v0.30.0) is debian:bookworm-slim with its iptables and nftables
packages, v1.8.9 and v1.0.6, the versions here, so `nft list ruleset` on such a node prints what it prints here.
Checked here with those versions: iptables-nft makes a base chain when a rule needs it, so
the chains are restored without iptables-save's base chain lines, as the kubelet and kindnetd make them one by
one (`iptables -N`, `-I`, `-A`); `nft list ruleset` prints iptables-nft's `-m comment` matches as nothing and
the kubelet's `-m conntrack ! --ctstate RELATED,ESTABLISHED,DNAT` as `ct status dnat`, while `nft -j` names
both as `xt` matches and `iptables-nft-save` prints them as written.

Not verified: that the kubelet of v1.34 writes exactly the chains of a0d8ee79; the order in which the kubelet's
two families, kindnetd and kube-proxy start on a real node (it orders the tables and chains of a listing);
kindnetd's network policy table (`table inet kindnet-network-policies`, kind v0.24 and later), which depends on
the kube-network-policies version kind vendors and is left out.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from typing import Any

from iptables_lens.kube.cluster_spec import ClusterSpec, KindNode, Port, ServiceSpec, kind_system_services
from iptables_lens.kube.kind_cluster import (
    CONTROL_PLANE,
    OUTSIDE,
    OUTSIDE_CLIENT,
    WORKER_1,
    WORKER_2,
    ClusterNode,
    ScenarioSpec,
    flow,
    pod_client,
)
from iptables_lens.kube.node_chains import MARTIANS, TableText, docker_dns_rules, kind_masq_agent_rules
from iptables_lens.kube.synth_nftables import Layout, synth_nftables
from iptables_lens.kube.synth_scenario import (
    DUAL_STACK_NODEPORT,
    SEED_PODS,
    Folded,
    KernelNeeded,
    cluster_facts,
    manifests_text,
    scenario_metadata,
)

NFTABLES_KIND = "nodeport-nftables"
KUBERNETES_VERSION = "v1.34.0"
LAYOUT: Layout = "v1.34"
"""The layout of the committed folder; `nftables_scenario_files` makes its twin of another layout too."""
PROXIERS: dict[Layout, str] = {"v1.34": "kube-proxy v1.34's nftables proxier",
                               "main-edca563": "the nftables proxier of the kubernetes main branch at edca5633"}
SEED_NODEPORT = replace(DUAL_STACK_NODEPORT, ip_family_policy="SingleStack")
"""The seed's Service, default/my-nginx-service: NodePort 30080 to the two nginx pods."""
NO_ENDPOINTS = ServiceSpec("default", "web-no-endpoints", "10.96.67.10", ports=(Port(80, 8080),))
"""A ClusterIP Service that selects no pod: kube-proxy's no-endpoint-services map rejects its cluster IP."""
SERVICES = (SEED_NODEPORT, NO_ENDPOINTS)
_NAT = ("PREROUTING", "INPUT", "OUTPUT", "POSTROUTING")
_POD_CIDR = "10.244.0.0/16"

KIND_CONFIG = """\
# The kind cluster: kind create cluster --config kind.yaml --image kindest/node:v1.34.0
kind: Cluster
apiVersion: kind.x-k8s.io/v1alpha4
name: blog
networking:
  kubeProxyMode: nftables
nodes:
- role: control-plane
- role: worker
- role: worker
"""


@dataclass(frozen=True)
class LoadStep:
    """What one of the node's components writes, as the input of the command that loads it."""

    writer: str
    argv: tuple[str, ...]
    text: str


def _restore_input(*tables: TableText) -> str:
    """iptables-restore input making the tables' chains and rules as `iptables -N` and `-A` do, without the base
    chain lines of iptables-save's text (which would make every base chain)."""
    lines = []
    for table in tables:
        lines.append(f"*{table.name}")
        lines += [f":{chain} - [0:0]" for chain in table.rules if chain not in table.builtin]
        lines += [rule for rules in table.rules.values() for rule in rules]
        lines.append("COMMIT")
    return "\n".join(lines) + "\n"


def _kubelet(family: int) -> str:
    hint = TableText("mangle", (), ("KUBE-IPTABLES-HINT",))
    tables = [hint]
    if family == 4:
        firewall = TableText("filter", ("OUTPUT", "INPUT"), ("KUBE-FIREWALL",))
        firewall.add("OUTPUT", "-j KUBE-FIREWALL")
        firewall.add("INPUT", "-j KUBE-FIREWALL")
        firewall.add("KUBE-FIREWALL", MARTIANS)
        tables.append(firewall)
    # Its iptables monitor makes the canary in each table, in this order, once the rules are in.
    tables += [TableText(name, (), ("KUBE-KUBELET-CANARY",)) for name in ("mangle", "nat", "filter")]
    return _restore_input(*tables)


def node_steps(node: ClusterNode, moment: str, layout: Layout = LAYOUT) -> list[LoadStep]:
    """What `node` holds at `moment` ("before" or "after" the scenario's Services), component by component, in
    the order they write it, kube-proxy's tables in `layout`."""
    dns = TableText("nat", _NAT, ())
    docker_dns_rules(dns, KindNode(dns_tcp_port=node.dns_ports[0], dns_udp_port=node.dns_ports[1]))
    masq = TableText("nat", ("POSTROUTING",), ())
    kind_masq_agent_rules(masq, _POD_CIDR)
    services = kind_system_services(CONTROL_PLANE.name, CONTROL_PLANE.address)
    if moment == "after":
        services += SERVICES
    ipv4 = ClusterSpec(services, node=node.name, node_ip=node.address, pod_cidr=_POD_CIDR)
    # The IPv6 proxier: no Service, no cluster CIDR, no Service CIDR, and ::1 as its node IP (detectNodeIPs).
    ipv6 = ClusterSpec((), node=node.name, node_ip="::1", pod_cidr=None, family=6)
    restore = ("iptables-nft-restore", "--noflush")
    return [
        LoadStep("kind's entrypoint: Docker's embedded DNS", ("iptables-nft-restore",), dns.text() + "\n"),
        LoadStep("the kubelet (IPv4)", restore, _kubelet(4)),
        LoadStep("the kubelet (IPv6)", ("ip6tables-nft-restore", "--noflush"), _kubelet(6)),
        LoadStep("kindnetd's masquerade agent", restore, _restore_input(masq)),
        LoadStep("kube-proxy (IPv4)", ("nft", "-f", "-"), synth_nftables(ipv4, layout)),
        LoadStep("kube-proxy (IPv6)", ("nft", "-f", "-"),
                 synth_nftables(ipv6, layout, service_cidrs=(), every_local_address=True)),
    ]


def _kernel_reason() -> str | None:
    from iptables_lens.netns import can_run_kernel_lab

    reason = can_run_kernel_lab()
    return f"the kernel lists the scenario's rulesets, and asking it {reason}" if reason else None


def list_ruleset(steps: list[LoadStep]) -> str:
    """`nft list ruleset` once `steps` are loaded into a fresh network namespace; KernelNeeded without root,
    RuntimeError if the kernel refuses a step."""
    from iptables_lens.netns import Namespace

    reason = _kernel_reason()
    if reason:
        raise KernelNeeded(reason)
    with Namespace("nftscenario") as ns:
        for step in steps:
            loaded = ns.run(list(step.argv), input=step.text)
            if not loaded.ok:
                raise RuntimeError(f"{' '.join(step.argv)} refused what {step.writer} writes: {loaded.stderr.strip()}")
        # nft warns on standard error that iptables-nft manages some tables; the listing is standard output.
        listed = ns.run(["nft", "list", "ruleset"])
    if not listed.ok:
        raise RuntimeError(f"nft list ruleset failed: {listed.stderr.strip()}")
    return listed.stdout


def _nft_version() -> str:
    from iptables_lens.netns import Namespace

    with Namespace("nftversion") as ns:
        found = re.search(r"v[0-9][0-9.]*", ns.run(["nft", "--version"]).stdout)
    return found.group(0) if found else "of unknown version"


def _scenario() -> ScenarioSpec:
    return ScenarioSpec(
        NFTABLES_KIND, "NodePort Service on a kind cluster in nftables mode (generated)",
        "The seed's two nginx pods behind its NodePort Service on port 30080, one on each worker of the seed's "
        "kind cluster with kube-proxy in nftables mode (Kubernetes v1.34, kind's networking.kubeProxyMode: "
        "nftables), and a ClusterIP Service without endpoints, default/web-no-endpoints (10.96.67.10, port 80), "
        "whose cluster IP kube-proxy rejects (its element in the no-endpoint-services map). Each worker's nft "
        "list ruleset before and after the Services were created: kube-proxy's table ip kube-proxy with the "
        "kubernetes and kube-dns Services, then the scenario's, and its table ip6 kube-proxy, "
        "which has no Service (kube-proxy's nftables mode runs both families on every node); beside them the "
        "tables iptables-nft keeps for kind's Docker DNS rules, the kubelet (KUBE-IPTABLES-HINT, "
        "KUBE-KUBELET-CANARY, KUBE-FIREWALL) and kindnetd's masquerade agent. nft v1.0.6 lists iptables-nft's "
        "comment matches as nothing and the kubelet's conntrack match as ct status dnat; iptables-nft-save "
        "prints them as written. kindnetd's network policy table is left out.",
        (CONTROL_PLANE, WORKER_1, WORKER_2), (WORKER_1, WORKER_2), SERVICES, SEED_PODS, _flows())


def _flows() -> tuple[dict[str, Any], ...]:
    """The seed's flows, the outside client's on each worker, the Service's own endpoint calling it (sent back
    to itself half the time: the hairpin case) and a pod calling the Service without endpoints."""
    cluster_ip, pod, own = SEED_NODEPORT.cluster_ip, WORKER_1.pod(10), SEED_PODS[1]
    return (
        flow("outside-to-nodeport", "A client outside the cluster calls the NodePort on blog-worker", WORKER_1,
             OUTSIDE, OUTSIDE_CLIENT, WORKER_1.address, 30080),
        flow("outside-to-nodeport-on-worker2", "A client outside the cluster calls the NodePort on blog-worker2",
             WORKER_2, OUTSIDE, OUTSIDE_CLIENT, WORKER_2.address, 30080),
        flow("pod-to-cluster-ip", "A pod on blog-worker calls the Service's cluster IP", WORKER_1,
             pod_client(WORKER_1), pod, cluster_ip, 80),
        flow("node-to-own-nodeport", "blog-worker calls its own NodePort", WORKER_1, "a process on blog-worker itself",
             WORKER_1.address, WORKER_1.address, 30080),
        flow("endpoint-to-own-service", "An endpoint pod on blog-worker2 calls its own Service", WORKER_2,
             f"the Service's own endpoint pod {own.name} on blog-worker2", own.address, cluster_ip, 80),
        flow("pod-to-no-endpoints", "A pod on blog-worker calls the cluster IP of the Service without endpoints",
             WORKER_1, pod_client(WORKER_1), pod, NO_ENDPOINTS.cluster_ip, 80),
    )


def _dump_file(node: ClusterNode, moment: str) -> str:
    return f"{node.dump_prefix}-{moment}.nft"


def nftables_scenario_files(layout: Layout = LAYOUT) -> dict[str, str]:
    """File name -> text of `dumps/kind-nodeport-nftables/`, each listing made by the kernel; KernelNeeded when
    this process cannot ask it (not root, or a tool missing). Another `layout` makes the folder's twin, the same
    cluster with kube-proxy's tables as that layout writes them."""
    reason = _kernel_reason()
    if reason:
        raise KernelNeeded(reason)
    scenario = _scenario()
    provenance = (
        f"Generated by `iptables-lens synth scenario {NFTABLES_KIND}` as root: for each worker, before and after the "
        "Services were created, in a fresh network namespace the iptables-nft chains of kind's Docker DNS rules, the "
        f"kubelet and kindnetd loaded with iptables-nft-restore, then the transactions {PROXIERS[layout]} "
        f'sends for table ip kube-proxy and table ip6 kube-proxy (layout "{layout}" of kube.synth_nftables) '
        f"loaded with nft -f, and the kernel's rules listed by nft list ruleset (nftables {_nft_version()})")
    dumps = [{"file": _dump_file(n, moment), "node": n.name, "moment": moment}
             for n in scenario.dumped for moment in ("before", "after")]
    files = {
        "scenario.yaml": scenario_metadata(scenario, Folded(provenance), cluster_facts(scenario, KUBERNETES_VERSION, "nftables"),
                                           dumps, ["kind.yaml", "service.yaml"]),
        "kind.yaml": KIND_CONFIG,
        "service.yaml": manifests_text(scenario),
    }
    for node in scenario.dumped:
        for moment in ("before", "after"):
            files[_dump_file(node, moment)] = list_ruleset(node_steps(node, moment, layout))
    return dict(sorted(files.items()))
