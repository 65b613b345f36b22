"""The 10,000-Service cluster end to end: diff, `explain --service` from the command line, the site; and the site
with the same cluster in kube-proxy's nftables mode, against the iptables-mode site built in the same run."""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

from iptables_lens.iptables.diff import diff_dumps
from iptables_lens.iptables.parse import parse_file

from tests.site_build import build, variant_config

from .measure import run_child
from .parse_bench import SERVICES
from .scale import write_nft_scale_scenario, write_scale_scenario
from .site_bench import largest_page


def bench_scale() -> list[dict]:
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        folder = write_scale_scenario(Path(tmp) / f"scale-{SERVICES}", SERVICES)
        before, after = parse_file(folder / "node-before.rules"), parse_file(folder / "node-after.rules")
        start = time.perf_counter()
        changes = diff_dumps(before, after)
        seconds = time.perf_counter() - start
        changed = changes.changed_services
        rows.append({"figure": f"diff: two {SERVICES}-Service dumps that differ by one Service",
                     "value": f"{seconds:.2f} s (goal < 2 s); it names {changed} (expected exactly "
                              f"['bench/svc-{SERVICES - 1:05d}'])"})
        last = f"bench/svc-{SERVICES - 1:05d}"
        cli = [sys.executable, "-m", "iptables_lens.cli", "explain", str(folder / "node-after.rules"), "--service", last]
        runs = sorted(run_child(cli).seconds for _ in range(3))
        rows.append({"figure": f"cli: explain --service on the {SERVICES}-Service dump, end to end",
                     "value": f"{runs[1]:.2f} s median of 3 (goal < 3 s)"})
        site = Path(tmp) / "site"
        start = time.perf_counter()
        result = build(site, variant_config(Path(tmp), folder))
        seconds = time.perf_counter() - start
        if result.returncode:
            raise RuntimeError(result.stderr[-2000:])
        name, size = largest_page(site)
        rows.append({"figure": f"site: build with the {SERVICES}-Service scenario",
                     "value": f"{seconds:.1f} s (goal < 60 s), {sum(1 for _ in site.rglob('*.html'))} pages"})
        rows.append({"figure": f"site: largest HTML page with the {SERVICES}-Service scenario",
                     "value": f"{name}, {size / 1e6:.2f} MB (goal <= 2 MB)"})
        rows += bench_nft_site(Path(tmp), reference=seconds)
    return rows


def bench_nft_site(folder: Path, reference: float | None = None) -> list[dict]:
    """Build the site with the 10,000-Service scenario in nftables mode (its listings by scale.nodeport_listing) in
    `folder`; with the iptables-mode build's seconds from the same run, the ratio to it."""
    scenario = write_nft_scale_scenario(folder / f"scale-nft-{SERVICES}", SERVICES)
    site, config = folder / "site-nft", folder / "nft-config"
    config.mkdir()
    start = time.perf_counter()
    result = build(site, variant_config(config, scenario))
    seconds = time.perf_counter() - start
    if result.returncode:
        raise RuntimeError(result.stderr[-2000:])
    name, size = largest_page(site)
    ratio = f", {seconds / reference:.2f}x the iptables-mode build" if reference else ""
    return [{"figure": f"site: build with the {SERVICES}-Service nftables scenario",
             "value": f"{seconds:.1f} s (goal < 60 s){ratio}, {sum(1 for _ in site.rglob('*.html'))} pages"},
            {"figure": f"site: largest HTML page with the {SERVICES}-Service nftables scenario",
             "value": f"{name}, {size / 1e6:.2f} MB (goal <= 2 MB)"}]
