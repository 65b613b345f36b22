"""A scenario's cluster, rebuilt from network namespaces that are wired only to each other.

- `underlay`: a namespace holding a bridge, the cluster's L2 network (172.20.0.0/16 in the seed).
- one namespace per node: `eth0` on the underlay with the node's address, IP forwarding on, routes to the
  other nodes' pod ranges via their addresses, and the node's dump loaded with iptables-restore.
- one namespace per pod: `eth0` holding the pod's /32, a default route via the node's pod gateway; on the
  node, a veth whose host side holds that gateway address and a /32 route to the pod (kindnet's ptp wiring).
- one namespace per outside client on the underlay.

Every veth is created with both ends already inside lab namespaces, so nothing touches the root namespace,
and no namespace has a route out: the scenario's addresses never leave the lab. `Lab` removes everything
it made when its `with` block ends, however it ends.
"""

from __future__ import annotations

import ipaddress
import signal
import subprocess
import sys
from contextlib import ExitStack
from dataclasses import dataclass, field

from iptables_lens.netns import Namespace
from iptables_lens.scenario.load import Scenario
from iptables_lens.scenario.model import Address, Moment
from iptables_lens.scenario.node import local_pod_addresses, veth_name

IPv4 = ipaddress.IPv4Address


class LabError(RuntimeError):
    """The lab could not be built or a command in it failed; the message says which and why."""


def _run(ns: Namespace, *argv: str) -> str:
    result = ns.run(list(argv))
    if not result.ok:
        raise LabError(f"in {ns.name}: `{' '.join(argv)}` failed: {result.stderr.strip()}")
    return result.stdout


def _link(a: Namespace, name_a: str, b: Namespace, name_b: str) -> None:
    """A veth pair created with its ends directly in namespaces a and b (never in the root namespace)."""
    proc = subprocess.run(
        ["ip", "link", "add", name_a, "netns", a.name, "type", "veth", "peer", "name", name_b, "netns", b.name],
        capture_output=True, text=True,
    )
    if proc.returncode:
        raise LabError(f"cannot create veth {name_a}/{name_b}: {proc.stderr.strip()}")


@dataclass
class Lab:
    scenario: Scenario
    moment: Moment = "after"
    variant: str = "nft"
    underlay: Namespace | None = None
    nodes: dict[str, Namespace] = field(default_factory=dict)
    pods: dict[IPv4, Namespace] = field(default_factory=dict)
    clients: dict[Address, Namespace] = field(default_factory=dict)
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
        prefix = meta.cluster.underlay_cidr.prefixlen
        node_addresses = {n.address for n in meta.nodes}
        for index, node in enumerate(meta.nodes):
            ns = self._namespace(f"node{index}")
            self.nodes[node.name] = ns
            self._attach_to_underlay(ns, f"n{index}", f"{node.address}/{prefix}")
            _run(ns, "sysctl", "-q", "-w", "net.ipv4.ip_forward=1")
            for other in meta.nodes:
                if other.name != node.name:
                    _run(ns, "ip", "route", "add", str(other.pod_cidr), "via", str(other.address), "dev", "eth0")
            gateway = node.gateway
            for address in local_pod_addresses(self.scenario, node.name):
                pod = self._namespace(f"pod{len(self.pods)}")
                self.pods[address] = pod
                host_side = veth_name(address)
                _link(pod, "eth0", ns, host_side)
                _run(pod, "ip", "link", "set", "lo", "up")
                _run(pod, "ip", "addr", "add", f"{address}/32", "dev", "eth0")
                _run(pod, "ip", "link", "set", "eth0", "up")
                _run(pod, "ip", "route", "add", str(gateway), "dev", "eth0")
                _run(pod, "ip", "route", "add", "default", "via", str(gateway), "dev", "eth0")
                _run(ns, "ip", "addr", "add", f"{gateway}/32", "dev", host_side)
                _run(ns, "ip", "link", "set", host_side, "up")
                _run(ns, "ip", "route", "add", f"{address}/32", "dev", host_side)
        for flow in meta.flows:
            if flow.family != 4:
                continue  # the lab wires IPv4 only so far
            outside = flow.src in meta.cluster.underlay_cidr and flow.src not in node_addresses
            if outside and flow.src not in self.clients:
                ns = self._namespace(f"client{len(self.clients)}")
                self.clients[flow.src] = ns
                self._attach_to_underlay(ns, f"c{len(self.clients)}", f"{flow.src}/{prefix}")
        self._load_dumps()
        self._start_servers()

    def _attach_to_underlay(self, ns: Namespace, bridge_port: str, address: str) -> None:
        assert self.underlay is not None
        _link(ns, "eth0", self.underlay, bridge_port)
        _run(self.underlay, "ip", "link", "set", bridge_port, "master", "br0", "up")
        _run(ns, "ip", "link", "set", "lo", "up")
        _run(ns, "ip", "addr", "add", address, "dev", "eth0")
        _run(ns, "ip", "link", "set", "eth0", "up")

    def _load_dumps(self) -> None:
        for dump_file in self.scenario.meta.dumps:
            # The lab wires IPv4 only so far: a dual-stack scenario's IPv6 dumps are not loaded.
            if dump_file.moment != self.moment or dump_file.family != 4:
                continue
            text = (self.scenario.folder / dump_file.file).read_text()
            loaded = self.nodes[dump_file.node].restore(text, self.variant)
            if not loaded.ok:
                raise LabError(f"the kernel refused {dump_file.file}: {loaded.stderr.strip()}")

    def _start_servers(self) -> None:
        ports = sorted({p.target_port for s in self.scenario.meta.services for p in s.ports if p.protocol == "TCP"})
        for pod in self.scenario.meta.pods:
            ns = self.pods[pod.address]
            for port in ports:
                self.spawn(ns, [sys.executable, "-m", "iptables_lens.lab.agents", "server", str(port)], wait_for="ready")

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
            if node.address == address:
                return self.nodes[node.name]
        if isinstance(address, IPv4) and address in self.pods:  # the lab wires IPv4 pods only
            return self.pods[address]
        if address in self.clients:
            return self.clients[address]
        raise LabError(f"no namespace in the lab holds {address}")


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
