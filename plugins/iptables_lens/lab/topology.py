"""A scenario's cluster, rebuilt from network namespaces that are wired only to each other.

- `underlay`: a namespace holding a bridge, the cluster's L2 network (172.20.0.0/16 in the seed).
- one namespace per node: `eth0` on the underlay with the node's address of each family it has, forwarding
  on, routes to the other nodes' pod ranges via their addresses, and the node's dumps loaded with
  iptables-restore (ip6tables-restore for an IPv6 dump, nft -f for an nft ruleset), and host routes via the underlay's gateway to the
  node's flow destinations that nothing else routes, as kind's default route would.
- one namespace per pod: `eth0` holding the pod's addresses (/32, /128), a default route per family via the
  node's pod gateway; on the node, a veth whose host side holds those gateways and a host route to the pod
  (kindnet's ptp wiring, as `scenario.node.node_context` describes it, less its default route out).
- one namespace per outside client on the underlay. A client outside the underlay and the pod network (on
  the internet, say, inside a load balancer's source ranges) sits beyond the underlay's gateway: one
  namespace, made only when a flow needs it, holds the gateway's address and those clients' addresses, and
  every node has a host route to each of them via the gateway, where its default route would take it. Before
  a flow runs, an outside client gets a host route to the flow's destination via the flow's node when no
  namespace holds it (a load balancer IP, an external IP), as the load balancer or a router would send it.
- servers (`agents`): each pod listens on every Service's target ports, of every protocol, and whatever
  namespace holds an address a flow's connection is delivered to, by the tracer's prediction, listens there
  too (a node's own health check node port, accepted in filter KUBE-NODEPORTS).

IPv6 addresses are added with `nodad`: duplicate address detection would leave them unusable ("tentative")
for a second or more, and the lab knows they are unique.

Every veth is created with both ends already inside lab namespaces, so nothing touches the root namespace,
and no namespace has a route out (a route via the gateway leads to the lab's own bridge, or to the
namespace beyond it, which does not forward): the scenario's addresses never leave the lab. `Lab` removes
everything it made when its `with` block ends, however it ends.
"""

from __future__ import annotations

import signal
import subprocess
import sys
from contextlib import ExitStack
from dataclasses import dataclass, field

from iptables_lens.netns import Namespace
from iptables_lens.scenario.flows import predict
from iptables_lens.scenario.load import Scenario
from iptables_lens.scenario.model import Address, Family, Moment
from iptables_lens.scenario.node import node_context
from iptables_lens.trace.context import HOST_PREFIX


class LabError(RuntimeError):
    """The lab could not be built or a command in it failed; the message says which and why."""


def _run(ns: Namespace, *argv: str) -> str:
    result = ns.run(list(argv))
    if not result.ok:
        raise LabError(f"in {ns.name}: `{' '.join(argv)}` failed: {result.stderr.strip()}")
    return result.stdout


def _add_address(ns: Namespace, interface: str, device: str) -> None:
    """Add an address; an IPv6 one without duplicate address detection (see the module's docstring)."""
    nodad = ["nodad"] if ":" in interface else []
    _run(ns, "ip", "addr", "add", interface, "dev", device, *nodad)


def _link(a: Namespace, name_a: str, b: Namespace, name_b: str) -> None:
    """A veth pair created with its ends directly in namespaces a and b (never in the root namespace)."""
    proc = subprocess.run(
        ["ip", "link", "add", name_a, "netns", a.name, "type", "veth", "peer", "name", name_b, "netns", b.name],
        capture_output=True, text=True,
    )
    if proc.returncode:
        raise LabError(f"cannot create veth {name_a}/{name_b}: {proc.stderr.strip()}")


Listen = tuple[str, Address, int]
"""Where a server listens: protocol ("tcp", "udp", "sctp"), address, port."""


@dataclass
class Lab:
    scenario: Scenario
    moment: Moment = "after"
    variant: str = "nft"
    underlay: Namespace | None = None
    nodes: dict[str, Namespace] = field(default_factory=dict)
    pods: dict[Address, Namespace] = field(default_factory=dict)
    clients: dict[Address, Namespace] = field(default_factory=dict)
    pod_veths: dict[Address, tuple[str, str]] = field(default_factory=dict)
    """A pod's address -> its node and the host side of its veth there."""
    beyond_gateway: Namespace | None = None
    """The namespace of the clients outside the underlay and the pod network, if a flow has one."""
    _stack: ExitStack = field(default_factory=ExitStack)
    _processes: list[subprocess.Popen] = field(default_factory=list)

    def __enter__(self) -> Lab:
        previous = signal.getsignal(signal.SIGTERM)
        # A CI runner stops jobs with SIGTERM: turn it into an exception so the namespaces are removed.
        signal.signal(signal.SIGTERM, _raise_interrupt)
        self._stack.callback(signal.signal, signal.SIGTERM, previous)
        try:
            self._build()
        except BaseException:
            self._stack.close()
            raise
        return self

    def __exit__(self, *exc) -> None:
        self._stack.close()

    def _namespace(self, label: str) -> Namespace:
        ns = Namespace(label)
        ns.__enter__()
        self._stack.callback(ns.delete)
        return ns

    def _build(self) -> None:
        meta = self.scenario.meta
        self.underlay = self._namespace("underlay")
        _run(self.underlay, "ip", "link", "add", "br0", "type", "bridge")
        _run(self.underlay, "ip", "link", "set", "br0", "up")
        for index, node in enumerate(meta.nodes):
            ns = self._namespace(f"node{index}")
            self.nodes[node.name] = ns
            families: tuple[Family, ...] = (4, 6) if node.address_v6 is not None else (4,)
            self._attach_to_underlay(ns, f"n{index}", [self._on_underlay(node.address_of(f), f) for f in families])
            _run(ns, "sysctl", "-q", "-w", "net.ipv4.ip_forward=1")
            if 6 in families:
                _run(ns, "sysctl", "-q", "-w", "net.ipv6.conf.all.forwarding=1")
            for family in families:
                for other in meta.nodes:
                    pods, via = other.pod_cidr_of(family), other.address_of(family)
                    if other.name != node.name and pods is not None and via is not None:
                        _run(ns, "ip", "route", "add", str(pods), "via", str(via), "dev", "eth0")
                self._route_flow_destinations(node.name, ns, family)
            self._wire_pods(node.name, ns)
        self._attach_outside_clients()
        self._load_dumps()
        self._start_servers()

    def _attach_outside_clients(self) -> None:
        """A namespace per flow client on the underlay that is no node; the clients beyond the gateway in one."""
        meta = self.scenario.meta
        node_addresses = {a for n in meta.nodes for a in (n.address, n.address_v6) if a is not None}
        pod_networks = [n for f in (4, 6) for n in [meta.cluster.pod_cidr_of(f)] if n is not None]  # type: ignore[arg-type]
        for flow in meta.flows:
            if flow.src in node_addresses or flow.src in self.clients or any(flow.src in n for n in pod_networks):
                continue
            underlay = meta.cluster.underlay_of(flow.family)
            if underlay is not None and flow.src in underlay:
                ns = self._namespace(f"client{len(self.clients)}")
                self.clients[flow.src] = ns
                self._attach_to_underlay(ns, f"c{len(self.clients)}", [self._on_underlay(flow.src, flow.family)])
            else:
                self.clients[flow.src] = self._beyond_gateway(flow.family)
                self.add_client_addresses(flow.src, [flow.src])

    def _beyond_gateway(self, family: Family) -> Namespace:
        """The namespace that holds the underlay's gateway addresses: what lies beyond them, in the lab."""
        if self.scenario.meta.cluster.gateway_of(family) is None:
            raise LabError(f"a flow's client is outside the cluster's IPv{family} underlay: the lab puts it beyond "
                           "the underlay's gateway, which scenario.yaml must then name (cluster.underlay_gateway"
                           f"{'_v6' if family == 6 else ''})")
        if self.beyond_gateway is None:
            self.beyond_gateway = self._namespace("world")
            cluster = self.scenario.meta.cluster
            gateways = [self._on_underlay(g, f) for f in (4, 6) for g in [cluster.gateway_of(f)]  # type: ignore[arg-type]
                        if g is not None and cluster.underlay_of(f) is not None]  # type: ignore[arg-type]
            self._attach_to_underlay(self.beyond_gateway, "world", gateways)
        return self.beyond_gateway

    def add_client_addresses(self, src: Address, addresses: list[Address]) -> None:
        """Give the namespace of client `src` more addresses (host addresses, /32 or /128), with the routes that
        bring the nodes' answers back to them: a pod's over its veth, those beyond the gateway via the
        gateway. Addresses on the underlay need no route."""
        ns = self.namespace_of(src)
        if not addresses:
            return
        device = "lo" if ns is self.beyond_gateway else "eth0"
        _batch(ns, [f"address add {a}/{HOST_PREFIX[a.version]} dev {device}{' nodad' if a.version == 6 else ''}"
                    for a in addresses])
        if src in self.pod_veths:
            node, veth = self.pod_veths[src]
            _batch(self.nodes[node], [f"route add {a} dev {veth}" for a in addresses])
        elif ns is self.beyond_gateway:
            for node_ns in self.nodes.values():
                _batch(node_ns, [f"route add {a} via {self.scenario.meta.cluster.gateway_of(_family(a))} dev eth0"
                                 for a in addresses])

    def remove_client_addresses(self, src: Address, addresses: list[Address]) -> None:
        """Undo `add_client_addresses` (removing an address removes the routes through it on the client)."""
        ns = self.namespace_of(src)
        if not addresses:
            return
        device = "lo" if ns is self.beyond_gateway else "eth0"
        _batch(ns, [f"address del {a}/{HOST_PREFIX[a.version]} dev {device}" for a in addresses])
        if src in self.pod_veths:
            holders = [self.nodes[self.pod_veths[src][0]]]
        else:
            holders = list(self.nodes.values()) if ns is self.beyond_gateway else []
        for node_ns in holders:
            _batch(node_ns, [f"route del {a}" for a in addresses])

    def route_client_to(self, src: Address, dst: Address, node: str) -> None:
        """An outside client reaches `dst`, an address no namespace holds, through `node`: a host route via the
        node's address, as a cloud load balancer or MetalLB (whose speaker answers ARP for an address on the
        nodes' own network) delivers a load balancer IP, and a router an external IP, to a node. A node's
        address (a node port) needs none."""
        if src not in self.clients:
            return  # a pod's or a node's packets take their own routes
        try:
            self.namespace_of(dst)
            return
        except LabError:
            pass
        via = self.scenario.meta.node(node).address_of(_family(dst))
        _run(self.clients[src], "ip", "route", "replace", str(dst), "via", str(via), "dev", "eth0")

    def _route_flow_destinations(self, node_name: str, ns: Namespace, family: Family) -> None:
        """A host route via the underlay's gateway to each of the node's flow destinations that no other route
        covers: what kind's default route does for them. Without it the kernel refuses a packet to a cluster
        IP that nothing DNATs (a Service without endpoints) before the filter table's REJECT sees it. The
        gateway is no namespace's, or the namespace beyond it, which does not forward: nothing leaves the lab
        by it. No default route is added."""
        meta = self.scenario.meta
        gateway = meta.cluster.gateway_of(family)
        underlay = meta.cluster.underlay_of(family)
        if gateway is None:
            return
        covered = [r for r in (underlay, *(n.pod_cidr_of(family) for n in meta.nodes)) if r is not None]
        destinations = {f.dst for f in meta.flows if f.node == node_name and f.family == family}
        for dst in sorted(d for d in destinations if not any(d in r for r in covered)):
            _run(ns, "ip", "route", "add", str(dst), "via", str(gateway), "dev", "eth0")

    def _on_underlay(self, address: Address | None, family: Family) -> str:
        underlay = self.scenario.meta.cluster.underlay_of(family)
        assert address is not None and underlay is not None  # the schema checks an address has its range
        return f"{address}/{underlay.prefixlen}"

    def _wire_pods(self, node_name: str, node_ns: Namespace) -> None:
        """One namespace per pod veth of the node's context, holding the pod's addresses of both families."""
        context = node_context(self.scenario, node_name)
        for interface in context.interfaces:
            pod_routes = [r for r in context.routes if r.device == interface.name]
            if interface.name in ("lo", "eth0") or not pod_routes:
                continue
            pod = self._namespace(f"pod{len(self.pods)}")
            _link(pod, "eth0", node_ns, interface.name)
            _run(pod, "ip", "link", "set", "lo", "up")
            for route in pod_routes:
                self.pods[route.network.network_address] = pod
                self.pod_veths[route.network.network_address] = (node_name, interface.name)
                _add_address(pod, str(route.network), "eth0")
            _run(pod, "ip", "link", "set", "eth0", "up")
            for gateway in interface.addresses:
                _run(pod, "ip", "route", "add", str(gateway.ip), "dev", "eth0")
                _run(pod, "ip", "route", "add", "default", "via", str(gateway.ip), "dev", "eth0")
                _add_address(node_ns, str(gateway), interface.name)
            _run(node_ns, "ip", "link", "set", interface.name, "up")
            for route in pod_routes:
                _run(node_ns, "ip", "route", "add", str(route.network), "dev", interface.name)

    def _attach_to_underlay(self, ns: Namespace, bridge_port: str, addresses: list[str]) -> None:
        assert self.underlay is not None
        _link(ns, "eth0", self.underlay, bridge_port)
        _run(self.underlay, "ip", "link", "set", bridge_port, "master", "br0", "up")
        _run(ns, "ip", "link", "set", "lo", "up")
        for address in addresses:
            _add_address(ns, address, "eth0")
        _run(ns, "ip", "link", "set", "eth0", "up")

    def _load_dumps(self) -> None:
        for dump_file in self.scenario.meta.dumps:
            if dump_file.moment != self.moment:
                continue
            text = (self.scenario.folder / dump_file.file).read_text()
            if dump_file.is_ruleset:
                loaded = self.nodes[dump_file.node].run(["nft", "-f", "-"], input=text)
            else:
                loaded = self.nodes[dump_file.node].restore(text, self.variant, family=dump_file.family)
            if not loaded.ok:
                raise LabError(f"the kernel refused {dump_file.file}: {loaded.stderr.strip()}")

    def listens(self) -> dict[Namespace, set[Listen]]:
        """Where servers listen, by namespace: every pod on each Service's target ports, of every protocol;
        and wherever the tracer delivers a flow's connection (after DNAT) to an address a namespace holds: a
        pod, or the flow's node itself (a process on the node, such as kube-proxy's health check server)."""
        meta = self.scenario.meta
        listens: dict[Namespace, set[Listen]] = {}
        ports = {(p.protocol.lower(), p.target_port) for s in meta.services for p in s.ports}
        for pod in meta.pods:
            for address in pod.addresses():
                listens.setdefault(self.pods[address], set()).update((proto, address, port) for proto, port in ports)
        for flow in meta.flows:
            context = node_context(self.scenario, flow.node)
            for outcome in predict(self.scenario, flow, self.moment).outcomes:
                packet = outcome.after_dnat
                if outcome.verdict != "ACCEPT" or packet.dport is None:
                    continue
                if context.is_local(packet.dst):
                    holder: Namespace | None = self.nodes[flow.node]
                else:
                    holder = self.pods.get(packet.dst)
                if holder is not None:
                    listens.setdefault(holder, set()).add((flow.protocol, packet.dst, packet.dport))
        return listens

    def _start_servers(self) -> None:
        # One server a namespace: each agent is a Python process, whose start is most of its cost.
        for ns, listens in self.listens().items():
            argv = [f"{proto}/{address}/{port}" for proto, address, port in sorted(listens, key=str)]
            self.spawn(ns, [sys.executable, "-m", "iptables_lens.lab.agents", "server", *argv], wait_for="ready")

    def spawn(self, ns: Namespace, argv: list[str], wait_for: str | None = None) -> subprocess.Popen:
        """Start a long-running process in `ns`; it is stopped before the namespaces are removed."""
        proc = subprocess.Popen(["ip", "netns", "exec", ns.name, *argv], stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)
        self._stack.callback(_stop, proc)
        if wait_for is not None:
            assert proc.stdout is not None
            line = proc.stdout.readline()
            if wait_for not in line:
                raise LabError(f"`{' '.join(argv)}` in {ns.name} did not start: {line}{proc.stderr.read() if proc.stderr else ''}")
        return proc

    def namespace_of(self, address: Address) -> Namespace:
        """The namespace that owns `address`: a node, a pod or an outside client."""
        for node in self.scenario.meta.nodes:
            if address in (node.address, node.address_v6):
                return self.nodes[node.name]
        if address in self.pods:
            return self.pods[address]
        if address in self.clients:
            return self.clients[address]
        raise LabError(f"no namespace in the lab holds {address}")


def _family(address: Address) -> Family:
    return 6 if address.version == 6 else 4


def _batch(ns: Namespace, commands: list[str]) -> None:
    """Run `ip` commands in one process (`ip -batch`): a balance check adds a hundred addresses at once."""
    result = ns.run(["ip", "-batch", "-"], input="".join(f"{c}\n" for c in commands))
    if not result.ok:
        raise LabError(f"in {ns.name}: `ip -batch` failed: {result.stderr.strip()}")


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _raise_interrupt(signum, frame):
    raise KeyboardInterrupt(f"signal {signum}")
