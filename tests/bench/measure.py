"""Helpers to measure a child process: wall time and peak memory (max RSS) of it and its descendants."""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass


@dataclass(frozen=True)
class Run:
    seconds: float
    peak_mib: float
    stdout: str


def run_child(argv: list[str], stdin_path: str | None = None) -> Run:
    """Run argv to completion; its peak memory comes from wait4's rusage, so it is the child's own."""
    with open(stdin_path or os.devnull, "rb") as stdin:
        start = time.perf_counter()
        proc = subprocess.Popen(argv, stdin=stdin, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        assert proc.stdout is not None
        out = proc.stdout.read()
        _, status, usage = os.wait4(proc.pid, 0)
        seconds = time.perf_counter() - start
        proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode:
        raise RuntimeError(f"{' '.join(argv)} failed: {out.decode(errors='replace')[:500]}")
    return Run(seconds, usage.ru_maxrss / 1024, out.decode())


def python_child(code: str) -> list[str]:
    return [sys.executable, "-c", code]


def median_run(runs: list[Run]) -> Run:
    ordered = sorted(runs, key=lambda r: r.seconds)
    return ordered[len(ordered) // 2]


def median(values: list[float]) -> float:
    return statistics.median(values)
