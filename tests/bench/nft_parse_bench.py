"""Parse a 10,000-Service kube-proxy nftables listing, against `nft -c -f` on the same file and against
iptables-lens' own parse of the same cluster's iptables-save dump."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

from iptables_lens.netns import Namespace, can_run_kernel_lab

from .measure import median_run, python_child, run_child
from .scale import nodeport_dump, nodeport_listing

SERVICES = 10_000
ENDPOINTS = 5
REPEATS = 3

_PARSE_CODE = """
import json, sys, time
from iptables_lens.dialects import read_dump
start = time.perf_counter()
dump = read_dump(sys.argv[1])
print(json.dumps({"seconds": time.perf_counter() - start, "rules": dump.summary()[2]}))
"""


def _ours(path: Path) -> tuple[float, float]:
    runs = [run_child(python_child(_PARSE_CODE) + [str(path)]) for _ in range(REPEATS)]
    seconds = sorted(json.loads(r.stdout)["seconds"] for r in runs)[REPEATS // 2]
    return seconds, max(r.peak_mib for r in runs)


def bench_nft_parse() -> list[dict]:
    with tempfile.TemporaryDirectory() as tmp:
        listing = Path(tmp) / f"kube-proxy-{SERVICES}-services.nft"
        listing.write_text(nodeport_listing(SERVICES, ENDPOINTS))
        dump = Path(tmp) / f"kube-proxy-{SERVICES}-services.rules"
        dump.write_text(nodeport_dump(SERVICES, ENDPOINTS))
        text = listing.read_text()
        rows = [{"figure": "nft parse: input", "value": f"{SERVICES} NodePort Services x {ENDPOINTS} endpoints, "
                 f"{text.count(chr(10))} lines, {len(text.encode()) / 1e6:.1f} MB"}]
        seconds, peak = _ours(listing)
        rows.append({"figure": "nft parse: iptables-lens, full model", "value": f"{seconds:.2f} s, peak {peak:.0f} MiB"})
        iptables_seconds, _ = _ours(dump)
        rows.append({"figure": "nft parse: ratio to iptables-lens' parse of the same cluster's iptables-save",
                     "value": f"time {seconds / iptables_seconds:.2f}x (goal <= 1.5x)"})
        reason = can_run_kernel_lab()
        if reason:
            rows.append({"figure": "nft parse: nft -c -f", "value": f"not measured: {reason}"})
            return rows
        with Namespace("bench") as ns:
            reference = median_run([run_child(["ip", "netns", "exec", ns.name, "nft", "-c", "-f", str(listing)])])
        rows.append({"figure": "nft parse: nft -c -f", "value": f"{reference.seconds:.2f} s, peak "
                     f"{reference.peak_mib:.0f} MiB"})
        rows.append({"figure": "nft parse: ratio to nft -c -f",
                     "value": f"time {seconds / reference.seconds:.3f}x (goal <= 0.05x), memory "
                              f"{peak / reference.peak_mib:.2f}x (goal <= 0.5x)"})
        return rows
