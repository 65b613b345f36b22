"""The `iptables-lens` command: thin glue from arguments to the core, and exit codes.

Exit codes: 0 success, 1 invalid input (the errors are on stderr), 2 usage error.
"""

from __future__ import annotations

import ipaddress
import json
import sys
from pathlib import Path

import click

from iptables_lens.errors import DumpError
from iptables_lens.iptables.fmt import format_dump
from iptables_lens.iptables.model import Dump
from iptables_lens.iptables.parse import parse_file
from iptables_lens.render.text import (
    chain_heading,
    diff_json,
    diff_lines,
    explain_json,
    explain_lines,
    explain_views,
    trace_lines,
)
from iptables_lens.scenario.load import load_scenario
from iptables_lens.scenario.node import node_context
from iptables_lens.trace import Interface, NodeContext, Packet, Route, trace
from iptables_lens.trace.packet import DEFAULT_SPORT

EXIT_INVALID = 1
BIG_INPUT = 4 << 20  # above this many bytes, reading a dump takes about a second: show progress


def _fail(error: DumpError) -> None:
    click.echo(f"error: {error}", err=True)


def _on_terminal() -> bool:
    return sys.stdout.isatty()


def _load(path: str) -> Dump:
    """Parse a dump, with a progress bar on a terminal when it is big; exit 1 with the error if it is bad."""
    try:
        size = 0 if path == "-" else Path(path).stat().st_size
    except OSError:
        size = 0
    try:
        if size > BIG_INPUT and sys.stderr.isatty():
            from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

            columns = (TextColumn("{task.description}"), BarColumn(), TimeElapsedColumn())
            with Progress(*columns, transient=True, console=_rich_console(stderr=True)) as progress:
                task = progress.add_task(f"reading {Path(path).name} ({size >> 20} MiB)", total=None)
                dump = parse_file(path)
                progress.update(task, total=1, completed=1)
            return dump
        return parse_file(path)
    except DumpError as error:
        _fail(error)
        sys.exit(EXIT_INVALID)


def _rich_console(stderr: bool = False):
    from rich.console import Console

    return Console(stderr=stderr, highlight=False)


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(package_name="iptables-lens")
def main() -> None:
    """Explain, trace and diff kube-proxy's iptables-save dumps.

    Exit status: 0 success, 1 invalid input, 2 usage error.
    """


@main.command()
@click.argument("files", nargs=-1, required=True, type=click.Path(dir_okay=False, allow_dash=True))
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object (see the docs for its schema).")
def check(files: tuple[str, ...], as_json: bool) -> None:
    """Parse and check each dump; print one summary line per file.

    FILE may be - to read standard input.

    \b
    Example:
      iptables-lens check dumps/kind-nodeport/worker-1-after.rules
      iptables-save | iptables-lens check -
    """
    failed = False
    report = []
    for path in files:
        try:
            dump = parse_file(path)
        except DumpError as error:
            failed = True
            report.append({"source": error.source, "ok": False, "tables": None, "chains": None, "rules": None,
                           "error": str(error)})
            if not as_json:
                _fail(error)
            continue
        tables, chains, rules = dump.summary()
        report.append({"source": dump.source, "ok": True, "tables": tables, "chains": chains, "rules": rules,
                       "error": None})
        if not as_json:
            click.echo(f"{dump.source}: ok: {tables} tables, {chains} chains, {rules} rules")
    if as_json:
        click.echo(json.dumps({"files": report}, indent=2))
    if failed:
        sys.exit(EXIT_INVALID)


@main.command()
@click.argument("file", type=click.Path(dir_okay=False, allow_dash=True))
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object (see the docs for its schema).")
def fmt(file: str, as_json: bool) -> None:
    """Print a dump as canonical iptables-save text.

    \b
    Example:
      iptables-lens fmt dumps/kind-nodeport/worker-1-after.rules
    """
    dump = _load(file)
    if as_json:
        click.echo(json.dumps({"source": dump.source, "text": format_dump(dump)}, indent=2))
    else:
        click.echo(format_dump(dump), nl=False)


@main.command()
@click.argument("dump_file", metavar="DUMP", type=click.Path(dir_okay=False, allow_dash=True))
@click.option("--service", metavar="NS/NAME", help="Only what concerns this Service, in the order a packet meets it.")
@click.option("--chain", metavar="CHAIN", help="Only chains of this name.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object (see the docs for its schema).")
def explain(dump_file, service, chain, as_json):
    """Every rule of a dump in plain English, table by table and chain by chain, with kube-proxy's chain
    families and decoded chain names.

    \b
    Examples:
      iptables-lens explain dumps/kind-nodeport/worker-1-after.rules --service default/my-nginx-service
      iptables-save | iptables-lens explain - --chain KUBE-SERVICES
    """
    dump = _load(dump_file)
    views = explain_views(dump, service=service, chain=chain)
    if (service or chain) and not views:
        click.echo(f"error: {dump.source}: nothing in it concerns {service or chain}", err=True)
        sys.exit(EXIT_INVALID)
    if as_json:
        click.echo(json.dumps(explain_json(dump.source, views), indent=2))
    elif _on_terminal():
        _print_explain_rich(views)
    else:
        click.echo("\n".join(explain_lines(views)))


def _print_explain_rich(views) -> None:
    from rich.table import Table as RichTable

    console = _rich_console()
    for view in views:
        name, what = chain_heading(view)
        title = f"[bold]{_escape_markup(name)}[/bold]  [cyan]{_escape_markup(what)}[/cyan]"
        table = RichTable(title=title, title_justify="left", show_lines=False, expand=True)
        table.add_column("#", justify="right", style="bold")
        table.add_column("What it does")
        table.add_column("Line", justify="right", style="dim")
        for rule in view.rules:
            table.add_row(str(rule.position), f"{rule.summary}\n[dim]{_escape_markup(rule.text)}[/dim]", str(rule.line))
        console.print(table)
        if view.name_explained:
            console.print(f"  [dim]{_escape_markup(view.name_explained)}[/dim]")


def _escape_markup(value: str) -> str:
    from rich.markup import escape

    return escape(value)


@main.command()
@click.argument("before_file", metavar="BEFORE", type=click.Path(dir_okay=False, allow_dash=True))
@click.argument("after_file", metavar="AFTER", type=click.Path(dir_okay=False, allow_dash=True))
@click.option("--text", "show_text", is_flag=True, help="Also print the textual (unified) diff.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object (see the docs for its schema).")
def diff(before_file, after_file, show_text, as_json):
    """What changed between two dumps: chains and rules added and removed, grouped by the Service they belong
    to, with noise (timestamps, counters, Docker's DNS ports) folded.

    \b
    Example:
      iptables-lens diff dumps/kind-nodeport/worker-1-before.rules dumps/kind-nodeport/worker-1-after.rules
    """
    from iptables_lens.iptables.diff import diff_dumps

    if before_file == "-" and after_file == "-":
        raise click.UsageError("only one of BEFORE and AFTER can be read from standard input")
    changes = diff_dumps(_load(before_file), _load(after_file))
    if as_json:
        click.echo(json.dumps(diff_json(changes), indent=2))
        return
    if _on_terminal():
        console = _rich_console()
        for line in diff_lines(changes):
            style = "green" if line.startswith("  +") else "red" if line.startswith("  -") else "bold"
            console.print(_escape_markup(line), style=style)
        if show_text:
            from rich.syntax import Syntax

            console.print(Syntax(changes.textual(), "diff", background_color="default"))
        return
    click.echo("\n".join(diff_lines(changes)))
    if show_text:
        click.echo(changes.textual(), nl=False)


@main.command()
@click.argument("dump_files", metavar="DUMP...", nargs=-1, required=True,
                type=click.Path(dir_okay=False, allow_dash=True))
@click.option("-o", "--output", "out", required=True, type=click.Path(file_okay=False),
              help="Folder for the Markdown pages (created if needed).")
@click.option("--site", is_flag=True, help="Also build a small MkDocs site from them into OUTPUT/site.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object listing what was written.")
def render(dump_files, out, site, as_json):
    """Write the site's pages for your own dumps: explained rule tables for each, and what changed when
    you give two (before, then after).

    \b
    Example:
      iptables-lens render before.rules after.rules -o my-pages --site
    """
    from iptables_lens.render.site import dump_pages

    dumps = [_load(path) for path in dump_files]
    pages = dump_pages(dumps)
    folder = Path(out)
    docs = folder / "docs" if site else folder
    written = []
    for page in pages:
        target = docs / page.path
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_suffix(".tmp")
        tmp.write_text(page.markdown)
        tmp.replace(target)
        written.append(str(target))
    if site:
        written.append(_build_small_site(folder, [p for p in pages if p.path != "index.md"]))
    if as_json:
        click.echo(json.dumps({"written": written}, indent=2))
    else:
        for path in written:
            click.echo(f"wrote {path}")


def _build_small_site(folder: Path, pages) -> str:
    """mkdocs.yml for the pages, then a build: Material, offline, the same Markdown extensions as this site."""
    import yaml

    config = {
        "site_name": "iptables-lens: my dumps",
        "docs_dir": "docs",
        "site_dir": "site",
        "theme": {"name": "material", "font": False},
        "markdown_extensions": ["admonition", "attr_list", "md_in_html", "tables", "pymdownx.details",
                                "pymdownx.highlight", "pymdownx.superfences",
                                {"pymdownx.tabbed": {"alternate_style": True}}],
        "plugins": ["search"],
        "nav": [{"Dumps": "index.md"}] + [{p.title: p.path} for p in pages],
    }
    (folder / "mkdocs.yml").write_text(yaml.safe_dump(config, sort_keys=False))
    from mkdocs.commands.build import build
    from mkdocs.config import load_config

    build(load_config(str(folder / "mkdocs.yml")))
    return str(folder / "site")


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
@click.option("--sport", default=DEFAULT_SPORT, type=click.IntRange(0, 65535), show_default=True, help="Source port.")
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
    dump = _load(dump_file)
    try:
        node = _node_for_trace(scenario_dir, node_name, local_ips)
    except DumpError as error:
        _fail(error)
        sys.exit(EXIT_INVALID)
    packet = Packet(src, dst, proto, sport, dport)
    result = trace(dump, packet, node, origin, frozenset(recent))
    if as_json:
        click.echo(json.dumps(result.to_json(), indent=2))
    elif _on_terminal():
        console = _rich_console()
        for line in trace_lines(result):
            if line.startswith("outcome "):
                console.print(_escape_markup(line), style="bold")
            elif line.startswith("  ") and line[2:3].isupper() and not line.startswith(("  delivery", "  branch")):
                hook, _, rest = line[2:].partition(" ")
                console.print(f"  [cyan]{hook:<11}[/cyan] {_escape_markup(rest.strip())}")
            else:
                console.print(_escape_markup(line))
    else:
        click.echo("\n".join(trace_lines(result)))


@main.command()
@click.argument("folders", nargs=-1, required=True, type=click.Path(file_okay=False, exists=True))
@click.option("--kernel/--no-kernel", default=None,
              help="Also ask the kernel to accept each dump (default: when running as root).")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object (see the docs for its schema).")
def validate(folders, kernel, as_json):
    """Check scenario folders: schema, files, dumps, the declared Services in the dumps, addresses, chain
    names, and (as root) the kernel. Lists every problem; exit status 1 if there is any.

    \b
    Example:
      iptables-lens validate dumps/kind-nodeport
    """
    import os

    from iptables_lens.scenario.validate import validate_scenario

    if kernel is None:
        kernel = os.geteuid() == 0
    failed = False
    report = []
    for folder in folders:
        problems = validate_scenario(folder, kernel=kernel)
        report.append({"folder": folder, "ok": not problems, "problems": [
            {"source": p.source, "line": p.line, "column": p.column, "message": p.message} for p in problems]})
        failed = failed or bool(problems)
        if as_json:
            continue
        for problem in problems:
            click.echo(f"error: {problem}", err=True)
        if problems:
            click.echo(f"{folder}: {len(problems)} problem(s)")
        else:
            click.echo(f"{folder}: ok" + (" (the kernel accepts every dump)" if kernel else ""))
    if as_json:
        click.echo(json.dumps({"folders": report}, indent=2))
    if failed:
        sys.exit(EXIT_INVALID)


@main.command()
@click.argument("folder", type=click.Path(file_okay=False, exists=True))
@click.option("-o", "--output", "out", required=True, type=click.Path(exists=False),
              help="The folder to write the scrubbed scenario to (must not exist).")
@click.option("--key", help="Secret that fixes the address mapping (same key, same mapping). Default: a new "
                            "random one, so nobody can undo the mapping.")
@click.option("--rename", "renames", multiple=True, metavar="OLD=NEW",
              help="Rename a namespace (default=shop) or a Service (default/my-svc=shop/web); repeat for several.")
def scrub(folder, out, key, renames):
    """Anonymize a scenario: map its addresses prefix-preservingly, rename namespaces and Services, and
    recompute kube-proxy's chain hashes, so it can be shared and still traces the same way.

    \b
    Example:
      iptables-lens scrub my-cluster -o dumps/my-cluster --rename default=shop
    """
    import secrets

    from iptables_lens.scenario.scrub import scrub_scenario

    mapping = {}
    for item in renames:
        old, sep, new = item.partition("=")
        if not sep or not old or not new or old.count("/") != new.count("/"):
            raise click.BadParameter(f"{item!r}: expected OLD=NEW, both namespaces or both namespace/name",
                                     param_hint="--rename")
        mapping[old] = new
    secret = key.encode() if key else secrets.token_bytes(32)
    try:
        written = scrub_scenario(folder, out, secret, mapping)
    except DumpError as error:
        _fail(error)
        sys.exit(EXIT_INVALID)
    except FileExistsError as error:
        raise click.UsageError(str(error)) from None
    click.echo(f"wrote {written}; kernel recordings were not copied (run `iptables-lens lab {written} --record`)")


@main.command()
@click.option("--command", "command", type=click.Choice(["check", "fmt", "explain", "diff", "trace", "render",
                                                          "validate"]),
              help="The schema of that command's --json output instead.")
def schema(command):
    """Print the JSON Schema of scenario.yaml, for editors (docs/scenario.schema.json holds a copy), or of a
    command's --json output.

    \b
    Examples:
      iptables-lens schema > scenario.schema.json
      iptables-lens schema --command trace
    """
    if command:
        from iptables_lens.render.json import output_schema

        click.echo(json.dumps(output_schema(command), indent=2, sort_keys=True))
        return
    from iptables_lens.scenario.load import metadata_json_schema

    click.echo(json.dumps(metadata_json_schema(), indent=2, sort_keys=True))


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
    from iptables_lens.lab.netns import can_run_kernel_lab
    from iptables_lens.lab.run import run_lab, write_recording
    from iptables_lens.lab.topology import LabError

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
    from iptables_lens.kube.synth import nodeport_spec, synth_cluster, synth_mixed
    from iptables_lens.kube.synth_scenario import write_atomically

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
    from iptables_lens.kube.synth_scenario import write_scenario

    for path in write_scenario(kind, folder):
        click.echo(str(path))

if __name__ == "__main__":  # pragma: no cover
    main()
