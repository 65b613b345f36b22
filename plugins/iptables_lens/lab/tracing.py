"""How the lab has the kernel trace one connection's first packet on a node, by the dialect of the node's rules.

- An iptables dump: a TRACE rule first in the raw table of the flow's family (`iptables-nft -t raw -I
  PREROUTING 1 ... -j TRACE`, OUTPUT for a packet the node sends), read with `xtables-monitor --trace`, or
  `nft -a monitor trace` for an IPv6 flow (see `kernel_trace`). The rule is the lab's own: `skip` leaves it
  out of the raw chain's positions.
- An nft ruleset: a table of the lab's own, `table inet iptables-lens-trace`, whose one base chain, at
  prerouting (output for a packet the node sends) with priority raw - 50 (-350: before conntrack at -200,
  iptables-nft's raw table at -300 and every chain kube-proxy writes), sets `meta nftrace set 1` on the
  connection's first packet; read with `nft -a monitor trace`. The ruleset's own tables and handles are
  untouched, and the trace table is left out of the handles. It matches addresses, ports and TCP flags only:
  no `ct` expression, which would turn connection tracking on in a namespace whose rules do not (see
  `kernel_trace`).

Either way the monitor is started before the packet is sent and stopped once it is through.
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass

from iptables_lens.kube.nft_services import NFT_FAMILIES
from iptables_lens.lab.kernel_trace import Handles, chain_handles
from iptables_lens.lab.topology import LabError
from iptables_lens.netns import Namespace
from iptables_lens.scenario.model import Flow

TRACE_TABLE = "iptables-lens-trace"
"""The inet table the lab adds to an nft ruleset's node to set `meta nftrace` on a traced packet."""
TRACE_PRIORITY = "raw - 50"
# What the TRACE rule adds to match a connection's first packet only: TCP's SYN, SCTP's INIT (a UDP
# client's first datagram is the first the rule sees). An INIT is never bundled with another chunk (RFC 9260,
# 6.10), so `any INIT` is `only INIT`; nft 1.0.6 lists `only` as a test of every chunk type it knows, some of
# which (i-data, re-config, pad, i-forward-tsn) the nft parser does not, and `any` as `xt match sctp`.
FIRST_PACKET = {"tcp": ["--syn"], "sctp": ["--chunk-types", "any", "INIT"]}
# The same for the trace table: iptables' --syn is SYN set among SYN, RST, ACK and FIN.
NFT_FIRST_PACKET = {"tcp": "tcp flags & (fin | syn | rst | ack) == syn ", "sctp": "sctp chunk init exists "}


@dataclass(frozen=True)
class KernelTrace:
    """What the kernel recorded of one connection: the monitor's output, the handles of every chain's rules at
    the time, and the lab's own rules among them (`skip`)."""

    output: str
    handles: Handles
    skip: frozenset[tuple[str, str, int]]
    tool: str
    """How: the monitor, and what set the packet to be traced."""


def trace_iptables(node: Namespace, flow: Flow, sport: int, local: bool, send: Callable[[], object]) -> KernelTrace:
    """Trace the connection `send` opens from `flow.src`:`sport` on a node whose rules are an iptables dump;
    `local`: the node itself sends it."""
    chain = "OUTPUT" if local else "PREROUTING"
    # Only the connection's first packet: later packets skip nat and would muddle it.
    rule = ["-p", flow.protocol, "-s", str(flow.src), "-d", str(flow.dst), "-m", flow.protocol,
            "--sport", str(sport), "--dport", str(flow.dport), *FIRST_PACKET.get(flow.protocol, []), "-j", "TRACE"]
    iptables = "ip6tables-nft" if flow.family == 6 else "iptables-nft"
    added = node.run([iptables, "-t", "raw", "-I", chain, "1", *rule])
    if not added.ok:
        raise LabError(f"cannot add the TRACE rule: {added.stderr.strip()}")
    try:
        handles = chain_handles(node.run(["nft", "-a", "list", "ruleset"]).stdout, flow.family)
        skip = frozenset({("raw", chain, handles[("raw", chain)][0])})
        monitor = ["nft", "-a", "monitor", "trace"] if flow.family == 6 else ["xtables-monitor", "--trace"]
        output = _monitored(node, monitor, send)
    finally:
        node.run([iptables, "-t", "raw", "-D", chain, *rule])
    tool = f"{' '.join(monitor)} ({iptables})"
    return KernelTrace(output, handles, skip, tool)


def trace_nft(node: Namespace, flow: Flow, sport: int, local: bool, send: Callable[[], object]) -> KernelTrace:
    """Trace the connection `send` opens from `flow.src`:`sport` on a node whose rules are an nft ruleset;
    `local`: the node itself sends it."""
    added = node.run(["nft", "-f", "-"], input=trace_table(flow, sport, local))
    if not added.ok:
        raise LabError(f"cannot add the trace table: {added.stderr.strip()}")
    try:
        handles = chain_handles(node.run(["nft", "-a", "list", "ruleset"]).stdout, None,
                                leave_out=frozenset({f"inet {TRACE_TABLE}"}))
        output = _monitored(node, ["nft", "-a", "monitor", "trace"], send)
    finally:
        node.run(["nft", "delete", "table", "inet", TRACE_TABLE])
    return KernelTrace(output, handles, frozenset(), f"nft -a monitor trace (table inet {TRACE_TABLE})")


def trace_table(flow: Flow, sport: int, local: bool) -> str:
    """`nft -f` input that makes (or remakes) the lab's trace table for one connection's first packet."""
    ip = NFT_FAMILIES[flow.family]
    proto = flow.protocol
    match = (f"{ip} saddr {flow.src} {ip} daddr {flow.dst} {proto} sport {sport} {proto} dport {flow.dport} "
             f"{NFT_FIRST_PACKET.get(proto, '')}")
    hook = "output" if local else "prerouting"
    return (f"add table inet {TRACE_TABLE}\ndelete table inet {TRACE_TABLE}\n"
            f"table inet {TRACE_TABLE} {{\n\tchain trace {{\n"
            f"\t\ttype filter hook {hook} priority {TRACE_PRIORITY}; policy accept;\n"
            f"\t\t{match}meta nftrace set 1\n\t}}\n}}\n")


def _monitored(node: Namespace, monitor: list[str], send: Callable[[], object]) -> str:
    """What `monitor` printed in the node while `send` ran."""
    process = subprocess.Popen(["ip", "netns", "exec", node.name, *monitor],
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        time.sleep(0.3)  # let the monitor subscribe before the packet goes
        send()
        time.sleep(0.3)
    finally:
        process.terminate()
        output, _ = process.communicate(timeout=10)
    return output
