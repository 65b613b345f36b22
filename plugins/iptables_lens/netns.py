"""Network namespaces for the kernel lab, `validate`'s kernel check and the kernel tests.

A `Namespace` has a unique name (`ipl-<pid>-<random>`) and is removed when its `with` block ends, whatever
ends it (an exception, Ctrl-C). Nothing here touches the root namespace's interfaces or routes.
"""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
from dataclasses import dataclass

PREFIX = "ipl-"

RESTORE_COMMANDS = {"nft": "iptables-nft-restore", "legacy": "iptables-legacy-restore"}
RESTORE6_COMMANDS = {"nft": "ip6tables-nft-restore", "legacy": "ip6tables-legacy-restore"}


def missing_tools(*tools: str) -> list[str]:
    """The tools (commands on PATH) that are not installed."""
    return [t for t in tools if shutil.which(t) is None]


def can_run_kernel_lab() -> str | None:
    """None when this process can create namespaces and load rules, else the reason it cannot."""
    if os.geteuid() != 0:
        return "needs root to create network namespaces"
    missing = missing_tools("ip", "nft", "conntrack", "xtables-monitor", *RESTORE_COMMANDS.values(),
                            *RESTORE6_COMMANDS.values())
    if missing:
        return f"needs {', '.join(missing)} (apt-get install iptables nftables conntrack iproute2)"
    return None


@dataclass(frozen=True)
class Result:
    returncode: int
    stdout: str
    stderr: str

    @property
    def ok(self) -> bool:
        return self.returncode == 0


class Namespace:
    """`with Namespace() as ns: ns.run([...])` runs commands inside a fresh network namespace."""

    def __init__(self, label: str = "ns"):
        self.name = f"{PREFIX}{os.getpid()}-{label}-{secrets.token_hex(3)}"

    def __enter__(self) -> Namespace:
        subprocess.run(["ip", "netns", "add", self.name], check=True, capture_output=True)
        return self

    def __exit__(self, *exc) -> None:
        self.delete()

    def delete(self) -> None:
        subprocess.run(["ip", "netns", "delete", self.name], capture_output=True)

    def run(self, argv: list[str], input: str | bytes | None = None, timeout: float = 60) -> Result:
        data = input.encode() if isinstance(input, str) else input
        proc = subprocess.run(
            ["ip", "netns", "exec", self.name, *argv], input=data, capture_output=True, timeout=timeout
        )
        return Result(proc.returncode, proc.stdout.decode(errors="replace"), proc.stderr.decode(errors="replace"))

    def restore(self, text: str | bytes, variant: str = "nft", test_only: bool = False, family: int = 4) -> Result:
        """Load a dump with `iptables-restore` of the given variant ("nft" or "legacy"), `ip6tables-restore`
        for an IPv6 dump (family 6)."""
        argv = [(RESTORE_COMMANDS if family == 4 else RESTORE6_COMMANDS)[variant]]
        if test_only:
            argv.append("--test")
        return self.run(argv, input=text)


def leftover_namespaces(pid: int | None = None) -> list[str]:
    """Names of the lab namespaces this process (or process `pid`) made that still exist."""
    mine = f"{PREFIX}{pid or os.getpid()}-"
    proc = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True)
    return sorted(line.split()[0] for line in proc.stdout.splitlines() if line.startswith(mine))
