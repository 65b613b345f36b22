"""Parse a 10,000-Service kube-proxy dump, against `iptables-restore --test` on the same file."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

from iptables_lens.netns import Namespace, can_run_kernel_lab

from .measure import median_run, python_child, run_child
from .scale import nodeport_dump

SERVICES = 10_000
ENDPOINTS = 5
REPEATS = 3

_PARSE_CODE = """
import json, sys, time
from iptables_lens import parse_file
start = time.perf_counter()
dump = parse_file(sys.argv[1])
seconds = time.perf_counter() - start
print(json.dumps({"seconds": seconds, "rules": dump.summary()[2]}))
"""


def big_dump(folder: Path, family: int = 4) -> Path:
    path = folder / f"kube-proxy-{SERVICES}-services-ipv{family}.rules"
    path.write_text(nodeport_dump(SERVICES, ENDPOINTS, family))
    return path


def bench_parse() -> list[dict]:
    return _bench_parse(4) + _bench_parse(6)


def _bench_parse(family: int) -> list[dict]:
    # The IPv4 figures keep their names; the IPv6 ones say so, and compare with ip6tables' restore.
    label, tool = ("parse", "iptables") if family == 4 else ("parse IPv6", "ip6tables")
    with tempfile.TemporaryDirectory() as tmp:
        path = big_dump(Path(tmp), family)
        text = path.read_text()
        lines, size = text.count("\n"), len(text.encode())
        rows = [{"figure": f"{label}: input", "value": f"{SERVICES} NodePort Services x {ENDPOINTS} endpoints, "
                 f"{lines} lines, {size / 1e6:.1f} MB"}]
        ours = [run_child(python_child(_PARSE_CODE) + [str(path)]) for _ in range(REPEATS)]
        our_seconds = sorted(json.loads(r.stdout)["seconds"] for r in ours)[REPEATS // 2]
        our_peak = max(r.peak_mib for r in ours)
        rows.append({"figure": f"{label}: iptables-lens, full model",
                     "value": f"{our_seconds:.2f} s, peak {our_peak:.0f} MiB"})
        reason = can_run_kernel_lab()
        if reason:
            rows.append({"figure": f"{label}: {tool}-restore --test", "value": f"not measured: {reason}"})
            return rows
        for command in (f"{tool}-nft-restore", f"{tool}-legacy-restore"):
            with Namespace("bench") as ns:
                runs = [run_child(["ip", "netns", "exec", ns.name, command, "--test"], str(path))
                        for _ in range(REPEATS)]
            ref = median_run(runs)
            peak = max(r.peak_mib for r in runs)
            rows.append({"figure": f"{label}: {command} --test", "value": f"{ref.seconds:.2f} s, peak {peak:.0f} MiB"})
            rows.append({
                "figure": f"{label}: ratio to {command} --test",
                "value": f"time {our_seconds / ref.seconds:.2f}x (goal <= 0.5x), memory {our_peak / peak:.2f}x (goal <= 1x)",
            })
        return rows
