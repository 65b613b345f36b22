"""The `iptables-lens` command: thin glue from arguments to the core, and exit codes.

Exit codes: 0 success, 1 invalid input (the errors are on stderr), 2 usage error.
"""

from __future__ import annotations

import ipaddress
import json
import sys

import click

from .errors import DumpError
from .fmt import format_dump
from .parse import parse_file
from .render.text import trace_lines
from .scenario import load_scenario
from .trace import Interface, NodeContext, Packet, Route, node_context, trace

EXIT_INVALID = 1


def _fail(error: DumpError) -> None:
    click.echo(f"error: {error}", err=True)


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(package_name="iptables-lens")
def main() -> None:
    """Explain, trace and diff kube-proxy's iptables-save dumps.

    Exit status: 0 success, 1 invalid input, 2 usage error.
    """


@main.command()
@click.argument("files", nargs=-1, required=True, type=click.Path(dir_okay=False, allow_dash=True))
def check(files: tuple[str, ...]) -> None:
    """Parse and check each dump; print one summary line per file.

    FILE may be - to read standard input.

    \b
    Example:
      iptables-lens check dumps/kind-nodeport/worker-1-after.rules
      iptables-save | iptables-lens check -
    """
    failed = False
    for path in files:
        try:
            dump = parse_file(path)
        except DumpError as error:
            _fail(error)
            failed = True
            continue
        tables, chains, rules = dump.summary()
        click.echo(f"{dump.source}: ok: {tables} tables, {chains} chains, {rules} rules")
    if failed:
        sys.exit(EXIT_INVALID)


@main.command()
@click.argument("file", type=click.Path(dir_okay=False, allow_dash=True))
def fmt(file: str) -> None:
    """Print a dump as canonical iptables-save text.

    \b
    Example:
      iptables-lens fmt dumps/kind-nodeport/worker-1-after.rules
    """
    try:
        dump = parse_file(file)
    except DumpError as error:
        _fail(error)
        sys.exit(EXIT_INVALID)
    click.echo(format_dump(dump), nl=False)


def _node_for_trace(scenario_dir: str | None, node_name: str | None, local_ips: tuple[str, ...]) -> NodeContext:
    if scenario_dir:
        scenario = load_scenario(scenario_dir)
        names = [n.name for n in scenario.meta.nodes]
        if node_name not in names:
            raise click.UsageError(f"--node must be one of {', '.join(names)}")
        return node_context(scenario, node_name)
    addresses = tuple(ipaddress.IPv4Interface(f"{ip}/32") for ip in local_ips)
    interfaces = (Interface("lo", (ipaddress.IPv4Interface("127.0.0.1/8"),)), Interface("eth0", addresses))
    main = addresses[0].ip if addresses else ipaddress.IPv4Address("0.0.0.0")
    # Without a scenario, everything that is not local leaves through eth0.
    return NodeContext("the node", interfaces, (Route(ipaddress.IPv4Network("0.0.0.0/0"), "eth0"),), main)


def _ip(ctx, param, value):
    if value is None:
        return None
    try:
        if isinstance(value, tuple):
            return tuple(str(ipaddress.IPv4Address(v)) for v in value)
        return ipaddress.IPv4Address(value)
    except ValueError:
        raise click.BadParameter(f"{value!r} is not an IPv4 address") from None


@main.command("trace")
@click.argument("dump_file", metavar="DUMP", type=click.Path(dir_okay=False, allow_dash=True))
@click.option("--src", required=True, callback=_ip, help="Source address of the first packet.")
@click.option("--dst", required=True, callback=_ip, help="Destination address.")
@click.option("--dport", required=True, type=click.IntRange(0, 65535), help="Destination port.")
@click.option("--proto", default="tcp", type=click.Choice(["tcp", "udp", "sctp"]), show_default=True)
@click.option("--sport", default=40000, type=click.IntRange(0, 65535), show_default=True, help="Source port.")
@click.option("--local-ip", "local_ips", multiple=True, callback=_ip,
              help="An address of the node (repeat for several). Decides INPUT vs FORWARD and addrtype LOCAL.")
@click.option("--origin", type=click.Choice(["external", "local"]),
              help="external: arrives from the network; local: sent by the node. Default: local when --src is a "
                   "--local-ip, else external.")
@click.option("--scenario", "scenario_dir", type=click.Path(file_okay=False, exists=True),
              help="Take the node's addresses and routes from a scenario folder (with --node).")
@click.option("--node", "node_name", help="The scenario node the dump belongs to.")
@click.option("--recent", multiple=True, help="A -m recent list the client is already in (session affinity).")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object (see the docs for its schema).")
def trace_command(dump_file, src, dst, dport, proto, sport, local_ips, origin, scenario_dir, node_name, recent,
                  as_json):
    """Walk the first packet of a connection through a dump, as netfilter does.

    \b
    Example:
      iptables-lens trace dumps/kind-nodeport/worker-1-after.rules \\
          --src 172.20.0.100 --dst 172.20.0.2 --dport 30080 --local-ip 172.20.0.2
    """
    try:
        dump = parse_file(dump_file)
        node = _node_for_trace(scenario_dir, node_name, local_ips)
    except DumpError as error:
        _fail(error)
        sys.exit(EXIT_INVALID)
    packet = Packet(src, dst, proto, sport, dport)
    result = trace(dump, packet, node, origin, frozenset(recent))
    if as_json:
        click.echo(json.dumps(result.to_json(), indent=2))
    else:
        click.echo("\n".join(trace_lines(result)))


@main.command("lab")
@click.argument("scenario_dir", type=click.Path(file_okay=False, exists=True))
@click.option("--connections", default=400, show_default=True, type=click.IntRange(1, 5000),
              help="Connections per flow for the statistical check.")
@click.option("--flow", "flows", multiple=True, help="Only this flow (repeat for several).")
@click.option("--variant", type=click.Choice(["nft", "legacy"]), default="nft", show_default=True,
              help="Which iptables-restore loads the dumps.")
@click.option("--record", is_flag=True, help="Write the kernel's traces to SCENARIO_DIR/kernel/FLOW.trace.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object per flow.")
def lab_command(scenario_dir, connections, flows, variant, record, as_json):
    """Load a scenario into real netfilter in network namespaces and check the tracer against it.

    Needs root. Every namespace, veth and process the lab makes is removed when it ends. Exit status 1
    when the kernel and the tracer disagree.

    \b
    Example:
      iptables-lens lab dumps/kind-nodeport --connections 400
    """
    from .lab.netns import can_run_kernel_lab
    from .lab.run import run_lab, write_recording
    from .lab.topology import LabError

    reason = can_run_kernel_lab()
    if reason:
        click.echo(f"error: the lab {reason}", err=True)
        sys.exit(EXIT_INVALID)
    try:
        scenario = load_scenario(scenario_dir)
        results = run_lab(scenario, connections, variant, list(flows) or None)
    except (DumpError, LabError) as error:
        click.echo(f"error: {error}", err=True)
        sys.exit(EXIT_INVALID)
    for result in results:
        if record and result.ok:
            write_recording(scenario, result)
        if as_json:
            click.echo(json.dumps(result.to_json()))
            continue
        click.echo(f"{result.flow.id}: {'agrees with the tracer' if result.ok else 'DISAGREES with the tracer'}")
        for branch in result.branches:
            state = "same path as the tracer" if branch.problem is None else branch.problem
            click.echo(f"  kernel branch to {branch.endpoint}: {state}")
        for check in result.checks:
            click.echo(f"  {check}")
        for problem in result.problems:
            click.echo(f"  problem: {problem}")
    if not all(r.ok for r in results):
        sys.exit(EXIT_INVALID)


@main.group("synth", invoke_without_command=True)
@click.option("-n", "services", type=click.IntRange(0), help="How many Services.")
@click.option("--endpoints", default=5, show_default=True, type=click.IntRange(0),
              help="Endpoints of each Service.")
@click.option("--mix", is_flag=True, help="Services of every kind (see synth_mixed), not only NodePort ones.")
@click.option("--seed", default=0, show_default=True, type=int, help="Seed of the --mix draw.")
@click.option("-o", "--output", type=click.Path(dir_okay=False, writable=True),
              help="Write the dump to this file (atomically) instead of standard output.")
@click.pass_context
def synth_command(ctx, services, endpoints, mix, seed, output):
    """Print a synthetic kube-proxy v1.29 dump of N Services (one node's iptables-save text).

    Without --mix every Service is a NodePort Service; with --mix the Services are a seeded mix of
    ClusterIP, NodePort, LoadBalancer, externalTrafficPolicy Local, ClientIP affinity and no-endpoint ones.

    \b
    Example:
      iptables-lens synth -n 10000 --endpoints 3 --mix -o big.rules
      iptables-lens synth scenario nodeport-local -o dumps/nodeport-local
    """
    if ctx.invoked_subcommand is not None:
        return
    if services is None:
        raise click.UsageError("-n is required (or a subcommand: scenario)")
    from .synth import nodeport_spec, synth_cluster, synth_mixed
    from .synth_scenario import write_atomically

    text = synth_mixed(services, endpoints, seed) if mix else synth_cluster(nodeport_spec(services, endpoints))
    if output:
        write_atomically(output, text)
    else:
        click.echo(text, nl=False)


@synth_command.command("scenario")
@click.argument("kind", type=click.Choice(["clusterip", "nodeport-local"]))
@click.option("-o", "--output", "folder", required=True, type=click.Path(file_okay=False),
              help="The scenario folder to write (created if missing).")
def synth_scenario_command(kind, folder):
    """Write a generated scenario folder (scenario.yaml, service.yaml, before/after dumps) for KIND.

    \b
    Example:
      iptables-lens synth scenario clusterip -o dumps/synth-clusterip
    """
    from .synth_scenario import write_scenario

    for path in write_scenario(kind, folder):
        click.echo(str(path))

if __name__ == "__main__":  # pragma: no cover
    main()
