"""The `iptables-lens` command: thin glue from arguments to the core, a renderer, and exit codes.

Each command calls the core, then prints plain text (`render.text`), tables and colours on a terminal
(`cli.terminal`), or with `--json` the model `render.json` builds. Exit codes: 0 success, 1 invalid input
(the errors are on stderr), 2 usage error.
"""

from __future__ import annotations

import sys
from contextlib import nullcontext
from pathlib import Path

import click

from iptables_lens.cli import arguments, terminal
from iptables_lens.cli.synth import synth_command
from iptables_lens.dialects import dialect_of
from iptables_lens.errors import DumpError
from iptables_lens.iptables.model import Dump
from iptables_lens.render import json as json_output
from iptables_lens.render.text import diff_lines, explain_lines, explain_view, trace_lines
from iptables_lens.scenario.load import load_scenario
from iptables_lens.trace import trace
from iptables_lens.trace.packet import DEFAULT_SPORT

EXIT_INVALID = 1
BIG_INPUT = 4 << 20  # above this many bytes, reading a dump takes about a second: show progress


def _fail(error: DumpError) -> None:
    click.echo(f"error: {error}", err=True)


def _load(path: str) -> Dump:
    """Parse a dump, with a progress bar on a terminal when it is big; exit 1 with the error if it is bad."""
    try:
        size = 0 if path == "-" else Path(path).stat().st_size
    except OSError:
        size = 0
    try:
        big = size > BIG_INPUT
        with terminal.progress_on_stderr(f"reading {Path(path).name} ({size >> 20} MiB)") if big else nullcontext():
            return arguments.read_chosen(path)
    except DumpError as error:
        _fail(error)
        sys.exit(EXIT_INVALID)


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(package_name="iptables-lens")
def main() -> None:
    """Explain, trace and diff kube-proxy's iptables-save dumps.

    Exit status: 0 success, 1 invalid input, 2 usage error.
    """


@main.command()
@arguments.dump_options
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
    results: list[Dump | DumpError] = []
    for path in files:
        try:
            dump = arguments.read_chosen(path)
        except DumpError as error:
            results.append(error)
            if not as_json:
                _fail(error)
            continue
        results.append(dump)
        if not as_json:
            tables, chains, rules = dump.summary()
            click.echo(f"{dump.source}: ok: {tables} tables, {chains} chains, {rules} rules")
    if as_json:
        click.echo(json_output.dumps(json_output.check_output(results)))
    if any(isinstance(result, DumpError) for result in results):
        sys.exit(EXIT_INVALID)


@main.command()
@arguments.dump_options
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
        click.echo(json_output.dumps(json_output.fmt_output(dump)))
    else:
        click.echo(dialect_of(dump).format(dump), nl=False)


@main.command()
@arguments.dump_options
@click.argument("dump_file", metavar="DUMP", type=click.Path(dir_okay=False, allow_dash=True))
@click.option("--service", metavar="NS/NAME", help="Only what concerns this Service, in the order a packet meets it.")
@click.option("--chain", metavar="CHAIN", help="Only chains of this name.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object (see the docs for its schema).")
def explain(dump_file, service, chain, as_json):
    """Every rule of a dump in plain English, table by table and chain by chain, with kube-proxy's chain
    families and decoded chain names; for an nft ruleset, its sets and maps too, each element with the Service
    it serves.

    \b
    Examples:
      iptables-lens explain dumps/kind-nodeport/worker-1-after.rules --service default/my-nginx-service
      iptables-save | iptables-lens explain - --chain KUBE-SERVICES
      nft list ruleset | iptables-lens explain - --service default/web
    """
    dump = _load(dump_file)
    explained = explain_view(dump, service=service, chain=chain)
    if (service or chain) and not (explained.chains or explained.sets):
        click.echo(f"error: {dump.source}: nothing in it concerns {service or chain}", err=True)
        sys.exit(EXIT_INVALID)
    if as_json:
        click.echo(json_output.dumps(explained))
    elif terminal.on_terminal():
        terminal.print_explain(explained.chains, explained.sets)
    else:
        click.echo("\n".join(explain_lines(explained.chains, explained.sets)))


@main.command()
@arguments.dump_options
@click.argument("before_file", metavar="BEFORE", type=click.Path(dir_okay=False, allow_dash=True))
@click.argument("after_file", metavar="AFTER", type=click.Path(dir_okay=False, allow_dash=True))
@click.option("--text", "show_text", is_flag=True, help="Also print the textual (unified) diff.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object (see the docs for its schema).")
def diff(before_file, after_file, show_text, as_json):
    """What changed between two dumps or nft rulesets: chains, rules, sets, maps and elements added and removed,
    by the Service they belong to, with noise (timestamps, counters, handles, element order, ...) folded.

    \b
    Example:
      iptables-lens diff dumps/kind-nodeport/worker-1-before.rules dumps/kind-nodeport/worker-1-after.rules
    """
    from iptables_lens.render.markdown import diff_of

    if before_file == "-" and after_file == "-":
        raise click.UsageError("only one of BEFORE and AFTER can be read from standard input")
    try:
        changes = diff_of(_load(before_file), _load(after_file))
    except DumpError as error:
        _fail(error)
        sys.exit(EXIT_INVALID)
    if as_json:
        click.echo(json_output.dumps(json_output.diff_output(changes)))
    elif terminal.on_terminal():
        terminal.print_diff(changes, show_text)
    else:
        click.echo("\n".join(diff_lines(changes)))
        if show_text:
            click.echo(changes.textual(), nl=False)


@main.command()
@arguments.dump_options
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
    from iptables_lens.cli.pages import build_small_site, write_pages
    from iptables_lens.render.site import dump_pages

    pages = dump_pages([_load(path) for path in dump_files])
    folder = Path(out)
    written = write_pages(pages, folder / "docs" if site else folder)
    if site:
        written.append(build_small_site(folder, [p for p in pages if p.path != "index.md"]))
    if as_json:
        click.echo(json_output.dumps(json_output.render_output(written)))
    else:
        for path in written:
            click.echo(f"wrote {path}")


@main.command("trace")
@arguments.dump_options
@click.argument("dump_file", metavar="DUMP", type=click.Path(dir_okay=False, allow_dash=True))
@click.option("--src", required=True, callback=arguments.ip_address, help="Source address of the first packet.")
@click.option("--dst", required=True, callback=arguments.ip_address, help="Destination address.")
@click.option("--dport", required=True, type=click.IntRange(0, 65535), help="Destination port.")
@click.option("--proto", default="tcp", type=click.Choice(["tcp", "udp", "sctp"]), show_default=True)
@click.option("--sport", default=DEFAULT_SPORT, type=click.IntRange(0, 65535), show_default=True, help="Source port.")
@click.option("--local-ip", "local_ips", multiple=True, callback=arguments.ip_address,
              help="An address of the node (repeat for several). Decides INPUT vs FORWARD and addrtype LOCAL.")
@click.option("--origin", type=click.Choice(["external", "local"]),
              help="external: arrives from the network; local: sent by the node. Default: local when --src is a "
                   "--local-ip, else external.")
@click.option("--scenario", "scenario_dir", type=click.Path(file_okay=False, exists=True),
              help="Take the node's addresses and routes from a scenario folder (with --node).")
@click.option("--node", "node_name", help="The scenario node the dump belongs to.")
@click.option("--recent", multiple=True,
              help="A -m recent list, or an nft set (affinity-...), the client is already in (session affinity).")
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
        node = arguments.node_for_trace(scenario_dir, node_name, local_ips)
    except DumpError as error:
        _fail(error)
        sys.exit(EXIT_INVALID)
    packet = arguments.packet_for(dump, src, dst, proto, sport, dport)
    result = trace(dump, packet, node, origin, frozenset(recent))
    if as_json:
        click.echo(json_output.dumps(json_output.trace_output(result)))
    elif terminal.on_terminal():
        terminal.print_trace(result)
    else:
        click.echo("\n".join(trace_lines(result)))


@main.command()
@click.argument("folders", nargs=-1, required=True, type=click.Path(file_okay=False, exists=True))
@click.option("--kernel/--no-kernel", default=None,
              help="Also ask the kernel to accept each dump (default: when running as root).")
@click.option("--format", "output_format", type=click.Choice(["text", "json", "github"]), default="text",
              show_default=True,
              help="json: one JSON object (see the docs for its schema); github: one workflow command per problem, "
                   "which GitHub shows on the line it is about.")
@click.option("--json", "as_json", is_flag=True, help="The same as --format json.")
def validate(folders, kernel, output_format, as_json):
    """Check scenario folders: schema, files, dumps, the declared Services in the dumps, addresses, chain
    names, and (as root) the kernel. Lists every problem; exit status 1 if there is any.

    \b
    Examples:
      iptables-lens validate dumps/kind-nodeport
      iptables-lens validate --format github dumps/*/
    """
    import os

    from iptables_lens.scenario.validate import validate_scenario

    if as_json:
        output_format = "json"
    if kernel is None:
        kernel = os.geteuid() == 0
    results = []
    for folder in folders:
        problems = validate_scenario(folder, kernel=kernel)
        results.append((folder, problems))
        if output_format == "json":
            continue
        if output_format == "github":
            from iptables_lens.render.github import annotation

            for problem in problems:
                click.echo(annotation(problem))
        else:
            for problem in problems:
                click.echo(f"error: {problem}", err=True)
        if problems:
            click.echo(f"{folder}: {len(problems)} problem(s)")
        else:
            click.echo(f"{folder}: ok" + (" (the kernel accepts every dump)" if kernel else ""))
    if output_format == "json":
        click.echo(json_output.dumps(json_output.validate_output(results)))
    if any(problems for _, problems in results):
        sys.exit(EXIT_INVALID)


@main.command("site-changes")
@click.argument("base", type=click.Path(file_okay=False))
@click.argument("head", type=click.Path(file_okay=False, exists=True))
@click.option("--lab", "lab_folder", type=click.Path(file_okay=False),
              help="A folder of `iptables-lens lab --json` results, one SCENARIO.jsonl per scenario.")
def site_changes_command(base, head, lab_folder):
    """What the site shows differently when the scenarios in BASE (a dumps folder) become those in HEAD:
    scenarios, node pages and flows added, changed or removed, each flow's outcomes and whether the kernel
    lab agreed. Prints Markdown, for a pull request's job summary.

    \b
    Example:
      git worktree add ../base origin/main
      iptables-lens site-changes ../base/dumps dumps --lab build/lab >> "$GITHUB_STEP_SUMMARY"
    """
    from iptables_lens.render.site_changes import read_lab_results, site_changes, summary_markdown

    lab = read_lab_results(Path(lab_folder) if lab_folder else None)
    click.echo(summary_markdown(site_changes(Path(base), Path(head), lab)), nl=False)


@main.command()
@arguments.dump_options
@click.argument("source", metavar="FOLDER|DUMP", type=click.Path(exists=True, allow_dash=True))
@click.option("-o", "--output", "out", required=True, type=click.Path(exists=False, allow_dash=True),
              help="The folder to write the scrubbed scenario to, or for one dump the file (- for standard output); "
                   "it must not exist.")
@click.option("--key", help="Secret that fixes the address mapping (same key, same mapping). Default: a new "
                            "random one, so nobody can undo the mapping.")
@click.option("--rename", "renames", multiple=True, metavar="OLD=NEW", callback=arguments.renames,
              help="Rename a namespace (default=shop) or a Service (default/my-svc=shop/web); repeat for several.")
def scrub(source, out, key, renames):
    """Anonymize a scenario, or one dump (iptables-save text or an nft listing): map its addresses
    prefix-preservingly, rename namespaces and Services, and recompute kube-proxy's chain hashes, so it can be
    shared and still traces the same way.

    \b
    Examples:
      iptables-lens scrub my-cluster -o dumps/my-cluster --rename default=shop
      nft list ruleset | iptables-lens scrub - -o node.nft --key "$SECRET"
    """
    import secrets

    from iptables_lens.scenario.scrub import scrub_scenario, scrub_text

    secret = key.encode() if key else secrets.token_bytes(32)
    if source == "-" or not Path(source).is_dir():
        text = scrub_text(_load(source), secret, renames)
        if out != "-":
            arguments.write_new(out, text)
        click.echo(text if out == "-" else f"wrote {out}\n", nl=False)
        return
    arguments.refuse_dump_options("for one dump: a scenario's metadata says what its dumps are")
    try:
        written = scrub_scenario(source, out, secret, renames)
    except DumpError as error:
        _fail(error)
        sys.exit(EXIT_INVALID)
    except FileExistsError as error:
        raise click.UsageError(str(error)) from None
    click.echo(f"wrote {written}; kernel recordings were not copied (run `iptables-lens lab {written} --record`)")


@main.command()
@click.option("--command", "command", type=click.Choice(list(json_output.OUTPUTS)),
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
        click.echo(json_output.dumps_schema(json_output.output_schema(command)))
        return
    from iptables_lens.scenario import metadata_json_schema

    click.echo(json_output.dumps_schema(metadata_json_schema()))


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
    from iptables_lens.lab.run import run_lab, write_recording
    from iptables_lens.lab.topology import LabError
    from iptables_lens.netns import can_run_kernel_lab

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
            click.echo(json_output.dumps(json_output.lab_output(result), indent=None))
            continue
        click.echo(f"{result.flow.id}: {'agrees with the tracer' if result.ok else 'DISAGREES with the tracer'}")
        for branch in result.branches:
            state = "same path as the tracer" if branch.problem is None else branch.problem
            click.echo(f"  kernel branch to {branch.endpoint}: {state}")
        for check in result.checks:
            click.echo(f"  {check}")
        if result.affinity is not None:
            one_client = ", ".join(f"{n} to {where}" for where, n in sorted(result.affinity.same_client.items()))
            click.echo(f"  session affinity: one client's connections went {one_client}; {result.affinity.switched} "
                       f"of {result.affinity.clients} other clients changed endpoint on their second connection")
        for problem in result.problems:
            click.echo(f"  problem: {problem}")
    if not all(r.ok for r in results):
        sys.exit(EXIT_INVALID)


main.add_command(synth_command)
