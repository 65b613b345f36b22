"""`iptables-lens synth`: synthetic kube-proxy dumps and generated scenario folders (`kube.synth`,
`kube.synth_nftables`, `kube.synth_scenario`)."""

from __future__ import annotations

import sys
from dataclasses import replace

import click

from iptables_lens.kube.synth_nftables import LAYOUTS
from iptables_lens.kube.synth_scenario import ALL_KINDS


@click.group("synth", invoke_without_command=True)
@click.option("-n", "services", type=click.IntRange(0), help="How many Services.")
@click.option("--endpoints", default=5, show_default=True, type=click.IntRange(0),
              help="Endpoints of each Service.")
@click.option("--mix", is_flag=True, help="Services of every kind (see synth_mixed), not only NodePort ones.")
@click.option("--seed", default=0, show_default=True, type=int, help="Seed of the --mix draw.")
@click.option("--family", type=click.Choice(["4", "6"]), default="4", show_default=True,
              help="6: the same cluster on IPv6, as ip6tables-save prints kube-proxy's IPv6 rules.")
@click.option("--mode", type=click.Choice(["iptables", "nftables"]), default="iptables", show_default=True,
              help="nftables: the transaction kube-proxy's nftables proxier sends (knftables' dump form).")
@click.option("--layout", type=click.Choice(list(LAYOUTS)), default=LAYOUTS[0], show_default=True,
              help="With --mode nftables: whose nftables rules (see kube.synth_nftables).")
@click.option("--masquerade-all", "masquerade_all", is_flag=True,
              help="As kube-proxy's --masquerade-all: mark every packet to a cluster IP for masquerade (both modes).")
@click.option("--listing", is_flag=True,
              help="With --mode nftables: print what `nft list ruleset` lists once the transaction is loaded "
                   "(see kube.nft_listing), not the transaction.")
@click.option("-o", "--output", type=click.Path(dir_okay=False, writable=True),
              help="Write the dump to this file (atomically) instead of standard output.")
@click.pass_context
def synth_command(ctx, services, endpoints, mix, seed, family, mode, layout, masquerade_all, listing, output):
    """Print a synthetic kube-proxy v1.29 dump of N Services (one node's iptables-save text), or with
    --mode nftables the `add ...` transaction of kube-proxy's nftables proxier (load it with `nft -f`),
    or with --listing too the ruleset as `nft list ruleset` prints it once loaded.

    Without --mix every Service is a NodePort Service; with --mix the Services are a seeded mix of
    ClusterIP, NodePort, LoadBalancer, externalTrafficPolicy Local, ClientIP affinity and no-endpoint ones.
    With --family 6 every address is its IPv6 twin in kind's dual-stack ranges (see kube.dual_stack).
    With --masquerade-all the rules are those of a kube-proxy run with --masquerade-all.

    \b
    Example:
      iptables-lens synth -n 10000 --endpoints 3 --mix -o big.rules
      iptables-lens synth -n 10000 --endpoints 3 --family 6 -o big6.rules
      iptables-lens synth -n 100 --mix --mode nftables --layout main-edca563 -o mix.nft
      iptables-lens synth -n 100 --mix --mode nftables --listing -o mix-listed.nft
      iptables-lens synth -n 100 --mix --masquerade-all -o mix-masquerade-all.rules
      iptables-lens synth scenario nodeport-local -o dumps/nodeport-local
    """
    if ctx.invoked_subcommand is not None:
        return
    if services is None:
        raise click.UsageError("-n is required (or a subcommand: scenario)")
    if listing and mode != "nftables":
        raise click.UsageError("--listing lists an nftables ruleset: use it with --mode nftables")
    from iptables_lens.kube.dual_stack import ipv6_cluster
    from iptables_lens.kube.synth import mixed_spec, nodeport_spec, synth_cluster
    from iptables_lens.kube.synth_scenario import write_atomically

    spec = mixed_spec(services, endpoints, seed) if mix else nodeport_spec(services, endpoints)
    spec = ipv6_cluster(spec) if family == "6" else spec
    spec = replace(spec, masquerade_all=masquerade_all)
    if mode == "nftables" and listing:
        from iptables_lens.kube.nft_listing import synth_listing

        text = synth_listing(spec, layout=layout)
    elif mode == "nftables":
        from iptables_lens.kube.synth_nftables import synth_nftables

        text = synth_nftables(spec, layout=layout)
    else:
        text = synth_cluster(spec)
    if output:
        write_atomically(output, text)
    else:
        click.echo(text, nl=False)


@synth_command.command("scenario")
@click.argument("kind", type=click.Choice(ALL_KINDS))
@click.option("-o", "--output", "folder", required=True, type=click.Path(file_okay=False),
              help="The scenario folder to write (created if missing).")
def synth_scenario_command(kind, folder):
    """Write a generated scenario folder (scenario.yaml, service.yaml, before/after dumps) for KIND; as root for
    nodeport-nftables, whose nft rulesets the kernel lists.

    \b
    Example:
      iptables-lens synth scenario clusterip -o dumps/synth-clusterip
    """
    from iptables_lens.kube.synth_scenario import KernelNeeded, write_scenario

    try:
        click.echo("\n".join(str(path) for path in write_scenario(kind, folder)))
    except KernelNeeded as error:
        sys.exit(f"error: {error}")

