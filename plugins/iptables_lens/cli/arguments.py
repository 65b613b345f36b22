"""Command-line values read into the core's objects: addresses, the node a dump is traced on, the packet."""

from __future__ import annotations

import ipaddress

import click

from iptables_lens.scenario.load import load_scenario
from iptables_lens.scenario.node import node_context
from iptables_lens.trace import NodeContext, Packet
from iptables_lens.trace.packet import Address


def family_option(command):
    """`--family 4|6` on a command that reads dumps: read them as IPv4 or IPv6 dumps whatever they say (a dump
    without its header line, or whose first address is not of its family)."""

    def remember(ctx, param, value):
        ctx.meta["iptables_lens.family"] = value

    return click.option("--family", type=click.Choice(["4", "6"]), callback=remember, expose_value=False,
                        help="Read the dumps as IPv4 or IPv6 (default: from their header, else their addresses).")(command)


def chosen_family() -> int | None:
    """The `--family` of the command being run, if it was given."""
    value = click.get_current_context().meta.get("iptables_lens.family")
    return int(value) if value else None


def ip_address(ctx, param, value):
    """An address of either family, or a tuple of them for an option given several times."""
    if value is None:
        return None
    values = value if isinstance(value, tuple) else (value,)
    for text in values:
        try:
            ipaddress.ip_address(text)
        except ValueError:
            raise click.BadParameter(f"{text!r} is not an IPv4 or IPv6 address") from None
    if isinstance(value, tuple):
        return tuple(value)
    return ipaddress.ip_address(value)


def node_for_trace(scenario_dir: str | None, node_name: str | None, local_ips: tuple[str, ...]) -> NodeContext:
    """The scenario's node, or a node known only by its `--local-ip` addresses."""
    if scenario_dir:
        scenario = load_scenario(scenario_dir)
        names = [n.name for n in scenario.meta.nodes]
        if node_name not in names:
            raise click.UsageError(f"--node must be one of {', '.join(names)}")
        return node_context(scenario, node_name)
    return NodeContext.with_addresses("the node", tuple(ipaddress.ip_address(ip) for ip in local_ips))


def packet_for(dump: object, src: Address, dst: Address, protocol: str, sport: int, dport: int) -> Packet:
    """The packet to trace; a usage error when its addresses are of two families, or not of the dump's."""
    if src.version != dst.version:
        raise click.UsageError(f"--src {src} and --dst {dst} must be addresses of one family")
    family = getattr(dump, "family", src.version)
    if family != src.version:
        raise click.UsageError(f"--src {src} and --dst {dst} are IPv{src.version} addresses, but the dump is "
                               f"IPv{family} (a dual-stack node saves one dump per family)")
    return Packet(src, dst, protocol, sport, dport)
