"""Build the site (or a variant of it with other scenarios) into a folder, as the tests need it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.conftest import REPO_ROOT

# The scenarios the guide's pages link to: every variant of the site has them, or its links would not resolve.
GUIDE_SCENARIOS = (REPO_ROOT / "dumps" / "kind-nodeport", REPO_ROOT / "dumps" / "kind-nodeport-nftables")


def variant_config(folder: Path, *scenarios: Path) -> Path:
    """A copy of mkdocs.yml whose scenarios are those the guide links to plus `scenarios` (folders, linked in;
    one of `scenarios` named as a guide's scenario takes its place)."""
    chosen = folder / "scenarios"
    chosen.mkdir(exist_ok=True)
    named = {scenario.name: scenario for scenario in (*GUIDE_SCENARIOS, *scenarios)}
    for name, scenario in named.items():
        (chosen / name).symlink_to(scenario, target_is_directory=True)
    text = (REPO_ROOT / "mkdocs.yml").read_text()
    text = text.replace("docs_dir: docs", f"docs_dir: {REPO_ROOT / 'docs'}")
    text = text.replace("      scenarios: dumps", f"      scenarios: {chosen}")
    config = folder / "mkdocs.yml"
    config.write_text(text)
    return config


def build(site: Path, config: Path | None = None) -> subprocess.CompletedProcess:
    env = dict(os.environ, NO_MKDOCS_2_WARNING="1")
    argv = [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(site)]
    if config is not None:
        argv += ["--config-file", str(config)]
    return subprocess.run(argv, cwd=REPO_ROOT, capture_output=True, text=True, env=env)


def built_site(folder: Path, scenario: Path) -> Path:
    """The site of the seed and `scenario`, built with --strict into `folder / "site"`; it asserts that the build
    succeeds without a warning."""
    result = build(folder / "site", variant_config(folder, scenario))
    assert result.returncode == 0, result.stderr
    assert "WARNING" not in result.stderr, result.stderr
    return folder / "site"
