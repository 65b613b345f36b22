"""`ClusterSpec.masquerade_all`, kube-proxy's `--masquerade-all`, in synth's three outputs: the iptables dump
(v1.29), and the nftables transaction of both layouts, with and without a pod CIDR (the local traffic detector).

What kube-proxy writes was read in its proxier.go (see the docstrings of `kube.synth` and `kube.synth_nftables`);
here synth is held to it rule by rule, to nft and iptables in the kernel, and to the CLI. Flows through these
rules are kube-proxy's own TestInternalExternalMasquerade cases (test_kube_proxy_conformance and
test_kube_proxy_nftables_flows).
"""

from __future__ import annotations

import re
from dataclasses import replace

import pytest
from click.testing import CliRunner
from iptables_lens import parse
from iptables_lens.cli import main
from iptables_lens.iptables.model import Rule
from iptables_lens.kube.cluster_spec import POD_CIDR, ClusterSpec, mixed_spec
from iptables_lens.kube.dual_stack import ipv6_cluster
from iptables_lens.kube.nft_listing import synth_listing
from iptables_lens.kube.synth import synth_cluster
from iptables_lens.kube.synth_nftables import LAYOUTS, Layout, synth_nftables
from iptables_lens.netns import Namespace, can_run_kernel_lab
from iptables_lens.nft import parse_ruleset

from tests.test_nft_listing import nft_lists

NO_KERNEL = can_run_kernel_lab()
DETECTORS = {"pod-cidr": POD_CIDR, "no-detector": None}


def cluster(detector: str, masquerade_all: bool = True) -> ClusterSpec:
    """Services of every kind (Local policies, no endpoints, affinity, several ports), with the detector asked."""
    return replace(mixed_spec(30, 2, seed=4), pod_cidr=DETECTORS[detector], masquerade_all=masquerade_all)


def lines_changed(before: str, after: str) -> tuple[set[str], set[str]]:
    """The lines only `before` has, and the lines only `after` has."""
    old, new = set(before.splitlines()), set(after.splitlines())
    return old - new, new - old


# -- iptables mode ----------------------------------------------------------------------------------------


def dport(rule: Rule) -> str | None:
    return next((o.value for m in rule.matches for o in m.options if o.name == "--dport"), None)


@pytest.mark.parametrize("detector", sorted(DETECTORS))
def test_iptables_masquerade_all_marks_every_packet_to_each_cluster_ip_port_and_changes_nothing_else(detector):
    spec = cluster(detector, masquerade_all=False)
    removed, added = lines_changed(synth_cluster(spec), synth_cluster(replace(spec, masquerade_all=True)))
    nat = parse(synth_cluster(replace(spec, masquerade_all=True))).table("nat")
    # KUBE-SERVICES sends each cluster IP and port with endpoints for its traffic to its internal policy chain.
    captured = {r.target.name: (r.criterion("-d"), dport(r)) for r in nat.rules
                if r.chain == "KUBE-SERVICES" and (r.comment or "").endswith(" cluster IP") and r.target is not None}
    assert captured, "the mix has cluster IPs with endpoints"
    marking = [r for r in nat.rules if r.text in added]
    assert sorted(r.chain for r in marking) == sorted(captured)
    for rule in marking:
        assert (rule.criterion("-d"), dport(rule)) == captured[rule.chain] and rule.criterion("-s") is None
        assert rule.target is not None and rule.target.name == "KUBE-MARK-MASQ" and rule.position == 1
    # The rule replaces the one for sources outside the pod CIDR (none without a detector).
    outside = f"! -s {POD_CIDR} "
    assert removed == ({r.text.replace(" -d ", f" {outside}-d ", 1) for r in marking} if detector == "pod-cidr"
                       else set())


# -- nftables mode ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("detector", sorted(DETECTORS))
def test_v1_34_masquerade_all_jumps_to_mark_for_masquerade_for_each_cluster_ip(detector):
    spec = cluster(detector, masquerade_all=False)
    removed, added = lines_changed(synth_nftables(spec), synth_nftables(replace(spec, masquerade_all=True)))
    cluster_ips = {s.cluster_ip for s in spec.services if s.proxied}
    chains = set(re.findall(r"add element ip kube-proxy service-ips \{ (\S+) \. \w+ \. \d+ : goto (\S+) }",
                            synth_nftables(spec)))
    internal = {(ip, chain) for ip, chain in chains if ip in cluster_ips}
    assert internal, "the mix has cluster IPs with endpoints"
    assert added == {f"add rule ip kube-proxy {chain} ip daddr {ip} jump mark-for-masquerade" for ip, chain in internal}
    assert removed == ({f"add rule ip kube-proxy {chain} ip daddr {ip} ip saddr != {POD_CIDR} jump mark-for-masquerade"
                        for ip, chain in internal} if detector == "pod-cidr" else set())


@pytest.mark.parametrize("detector", sorted(DETECTORS))
def test_main_masquerade_all_marks_all_cluster_ip_traffic_in_the_services_chain(detector):
    spec = cluster(detector, masquerade_all=False)
    removed, added = lines_changed(synth_nftables(spec, "main-edca563"),
                                   synth_nftables(replace(spec, masquerade_all=True), "main-edca563"))
    assert added == {'add rule ip kube-proxy services ip daddr @cluster-ips mark set mark or 0x4000 '
                     'comment "masquerade all clusterIP traffic"'}
    assert removed == ({f'add rule ip kube-proxy services ip daddr @cluster-ips ip saddr != {POD_CIDR} mark set mark '
                        'or 0x4000 comment "masquerade clusterIP traffic from outside cluster"'}
                       if detector == "pod-cidr" else set())
    services = parse_ruleset(synth_listing(replace(spec, masquerade_all=True), "main-edca563")).tables[0]
    first = next(c for c in services.chains if c.name == "services").rules[0]
    assert first.comment == "masquerade all clusterIP traffic"  # before the service-ips lookup, as kube-proxy writes it


# -- the kernel ---------------------------------------------------------------------------------------------

KERNEL_CASES = [(layout, detector, family) for layout in LAYOUTS for detector in sorted(DETECTORS) for family in (4, 6)]


@pytest.mark.kernel
@pytest.mark.skipif(NO_KERNEL is not None, reason=str(NO_KERNEL))
@pytest.mark.parametrize(("layout", "detector", "family"), KERNEL_CASES,
                         ids=[f"{layout}-{detector}-ipv{family}" for layout, detector, family in KERNEL_CASES])
def test_nft_loads_the_transaction_and_lists_what_synth_lists(layout: Layout, detector: str, family: int) -> None:
    spec = cluster(detector)
    spec = ipv6_cluster(spec) if family == 6 else spec
    printed = nft_lists(synth_nftables(spec, layout))
    ours = synth_listing(spec, layout)
    assert ours == printed
    assert ours != synth_listing(replace(spec, masquerade_all=False), layout)


@pytest.mark.kernel
@pytest.mark.skipif(NO_KERNEL is not None, reason=str(NO_KERNEL))
@pytest.mark.parametrize("detector", sorted(DETECTORS))
@pytest.mark.parametrize(("variant", "save"), [("nft", "iptables-nft-save"), ("legacy", "iptables-legacy-save")])
def test_iptables_restores_the_dump_and_saves_the_rules_synth_writes(detector: str, variant: str, save: str) -> None:
    text = synth_cluster(cluster(detector))
    with Namespace("masqall") as namespace:
        loaded = namespace.restore(text, variant)
        assert loaded.ok, loaded.stderr
        saved = namespace.run([save, "-t", "nat"])
    assert saved.ok, saved.stderr
    ours = [line for line in text.split("*nat\n", 1)[1].splitlines() if line.startswith("-A ")]
    assert [line for line in saved.stdout.splitlines() if line.startswith("-A ")] == ours


# -- the CLI ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["iptables", "nftables"])
def test_the_cli_writes_masquerade_all_rules_in_both_modes(mode: str) -> None:
    result = CliRunner().invoke(main, ["synth", "-n", "4", "--endpoints", "2", "--mix", "--mode", mode,
                                       "--masquerade-all"])
    assert result.exit_code == 0, result.output
    spec = replace(mixed_spec(4, 2), masquerade_all=True)
    assert result.output == (synth_cluster(spec) if mode == "iptables" else synth_nftables(spec))
    without = CliRunner().invoke(main, ["synth", "-n", "4", "--endpoints", "2", "--mix", "--mode", mode])
    assert without.output != result.output
