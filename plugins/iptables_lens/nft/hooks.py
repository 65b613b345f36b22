"""Base chains: which hooks and chain types each family has, and the priorities nft names.

nft(8) names priorities by family: raw -300, mangle -150, dstnat -100, filter 0, security 50 and srcnat 100
(bridge: dstnat -300, filter -200, out 100, srcnat 300), each only at some hooks (dstnat at prerouting,
srcnat at postrouting; nftables 1.0.6's std_prio_family_hook_compat; 1.0.9 allows dstnat at output as well,
and so does `priority_value`, so that newer listings read). `priority_value` reads `dstnat - 10` to -110
where that name is allowed; `priority_text` prints a number back as nft lists it: the first named priority
within 10 of it, if that name is allowed at the hook, else the number (`-110` at output).

>>> priority_value("dstnat - 10", "ip", "prerouting"), priority_text(-110, "ip", "prerouting")
(-110, 'dstnat - 10')
>>> priority_text(-110, "ip", "output"), priority_text(100, "bridge", "output")
('-110', 'out')
"""

from __future__ import annotations

import re

STANDARD_PRIORITIES: tuple[tuple[str, int], ...] = (
    ("raw", -300), ("mangle", -150), ("dstnat", -100), ("filter", 0), ("security", 50), ("srcnat", 100))
BRIDGE_PRIORITIES: tuple[tuple[str, int], ...] = (("dstnat", -300), ("filter", -200), ("out", 100), ("srcnat", 300))

HOOKS: dict[str, tuple[str, ...]] = {
    "ip": ("prerouting", "input", "forward", "output", "postrouting", "ingress"),
    "ip6": ("prerouting", "input", "forward", "output", "postrouting", "ingress"),
    "inet": ("prerouting", "input", "forward", "output", "postrouting", "ingress"),
    "arp": ("input", "output"),
    "bridge": ("prerouting", "input", "forward", "output", "postrouting"),
    "netdev": ("ingress", "egress"),
}
# The chain types of each family, and the hooks each may use (nftables' chain type tables).
CHAIN_TYPES: dict[str, dict[str, tuple[str, ...]]] = {
    "filter": {family: hooks for family, hooks in HOOKS.items()},
    "nat": {family: ("prerouting", "input", "output", "postrouting") for family in ("ip", "ip6", "inet")},
    "route": {family: ("output",) for family in ("ip", "ip6", "inet")},
}
NEEDS_DEVICE = {("netdev", "ingress"), ("netdev", "egress"), ("inet", "ingress"), ("ip", "ingress"),
                ("ip6", "ingress")}
_PRIORITY = re.compile(r"(-?[0-9]+)|([a-z]+)(?: ([+-]) ([0-9]+))?")


def _allowed(name: str, value: int, family: str, hook: str, newer: bool = True) -> bool:
    """Whether the named priority `value` may be used at `hook` of `family` (std_prio_family_hook_compat).
    nftables 1.0.9 allows dstnat at output too, and prints it there; 1.0.6 (`newer=False`) does not."""
    if family == "bridge":
        return {"dstnat": hook == "prerouting", "filter": True, "out": hook == "output",
                "srcnat": hook == "postrouting"}[name]
    if name == "filter":
        return family in ("inet", "ip", "ip6", "arp", "netdev")
    if name in ("raw", "mangle", "security"):
        return family in ("inet", "ip", "ip6")
    if name == "dstnat":
        return family in ("inet", "ip", "ip6") and (hook == "prerouting" or newer and hook == "output")
    return family in ("inet", "ip", "ip6") and hook == "postrouting"


def priority_value(text: str, family: str, hook: str) -> int:
    """The number a priority stands for (`dstnat - 10`, `filter`, `-110`); ValueError saying why not."""
    match = _PRIORITY.fullmatch(text)
    if match is None:
        raise ValueError(f"expected a priority such as filter, dstnat - 10 or -110, got {text!r}")
    number, name, sign, offset = match.groups()
    if number is not None:
        value = int(number)
    else:
        table = dict(BRIDGE_PRIORITIES if family == "bridge" else STANDARD_PRIORITIES)
        if name not in table or not _allowed(name, table[name], family, hook):
            raise ValueError(f"'{name}' is not a priority of a {family} {hook} hook")
        value = table[name] + (int(offset) if sign == "+" else -int(offset) if sign else 0)
    if not -(1 << 31) <= value < 1 << 31:
        raise ValueError(f"priority {value} is out of range")
    return value


def priority_text(value: int, family: str, hook: str, newer: bool = False) -> str:
    """How `nft list ruleset` prints the priority `value` of a chain at `hook` (nftables' prio2str): as
    nftables 1.0.6 does, or 1.0.9 (`newer`), which names dstnat at output too."""
    for name, standard in BRIDGE_PRIORITIES if family == "bridge" else STANDARD_PRIORITIES:
        if abs(value - standard) <= 10:
            if not _allowed(name, standard, family, hook, newer):
                break
            offset = value - standard
            return name if offset == 0 else f"{name} + {offset}" if offset > 0 else f"{name} - {-offset}"
    return str(value)


def hook_problem(family: str, chain_type: str, hook: str, devices: tuple[str, ...]) -> str | None:
    """What is wrong with a base chain of `chain_type` at `hook` in a `family` table, or None."""
    if hook not in HOOKS[family]:
        return f"a {family} table has no {hook} hook (it has {', '.join(HOOKS[family])})"
    hooks = CHAIN_TYPES[chain_type].get(family)
    if hooks is None:
        return f"a {family} table has no {chain_type} chains"
    if hook not in hooks:
        return f"a {chain_type} chain cannot hook {hook} (only {', '.join(hooks)})"
    if (family, hook) in NEEDS_DEVICE and not devices:
        return f"a {family} {hook} chain needs a device"
    if (family, hook) not in NEEDS_DEVICE and devices:
        return f"only ingress and egress chains take a device, not a {family} {hook} chain"
    return None
