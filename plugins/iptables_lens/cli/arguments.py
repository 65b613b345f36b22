"""Command-line values read into the core's objects: addresses, the node a dump is traced on, the packet."""

from __future__ import annotations

import ipaddress
from typing import Any

import click

from iptables_lens.dialects import DIALECTS, read_dump
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


def dialect_option(command):
    """`--dialect NAME` on a command that reads dumps: read them in that rule language (iptables, nft) whatever
    their first lines look like. Any other name is a usage error."""

    def remember(ctx, param, value):
        ctx.meta["iptables_lens.dialect"] = value

    return click.option("--dialect", type=click.Choice(list(DIALECTS)), callback=remember, expose_value=False,
                        help="Read the dumps as iptables-save text or as an nft listing (nft list ruleset, text or "
                             "-j JSON). Default: from their first lines.")(command)


def chosen_dialect() -> str | None:
    """The `--dialect` of the command being run, if it was given."""
    return click.get_current_context().meta.get("iptables_lens.dialect")


def dump_options(command):
    """`--family` and `--dialect`, the options of every command that reads dumps."""
    return family_option(dialect_option(command))


def refuse_dump_options(why: str) -> None:
    """A usage error if `--dialect` or `--family` was given to a command run on something else than a dump."""
    if chosen_dialect() or chosen_family():
        raise click.UsageError(f"--dialect and --family are {why}")


def read_chosen(path: str) -> Any:
    """The dump in `path` (`-`: standard input), read as the command's `--dialect` and `--family` say;
    DumpError if it has a mistake."""
    return read_dump(path, dialect=chosen_dialect(), family=chosen_family())


def renames(ctx, param, value: tuple[str, ...]) -> dict[str, str]:
    """`--rename OLD=NEW` options as {OLD: NEW}, both namespaces or both `namespace/name`."""
    mapping = {}
    for item in value:
        old, sep, new = item.partition("=")
        if not sep or not old or not new or old.count("/") != new.count("/"):
            raise click.BadParameter(f"{item!r}: expected OLD=NEW, both namespaces or both namespace/name")
        mapping[old] = new
    return mapping


def write_new(path: str, text: str) -> None:
    """Write `text` to the file `path`, which must not exist yet (a usage error if it does)."""
    try:
        with open(path, "x", encoding="utf-8") as handle:
            handle.write(text)
    except FileExistsError:
        raise click.UsageError(f"{path} already exists") from None


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
