"""The project's ground floor: seed facts stored, page examples honest, the site offline."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
from sybil.example import SybilFailure

from tests.conftest import REPO_ROOT, SEED, SEED_DUMPS
from tests.doc_examples import page_examples

SHARED_SEED = REPO_ROOT.parent / "shared" / "seed" / "dumps"


def test_seed_scenario_holds_the_four_dumps():
    assert [p.name for p in SEED_DUMPS] == [
        "worker-1-after.rules", "worker-1-before.rules", "worker-2-after.rules", "worker-2-before.rules",
    ]


@pytest.mark.skipif(not SHARED_SEED.is_dir(), reason="../shared/seed is not beside the repository")
@pytest.mark.parametrize("name", [p.name for p in SEED_DUMPS])
def test_seed_dumps_are_byte_for_byte_the_shared_ones(name):
    assert (SEED / name).read_bytes() == (SHARED_SEED / name).read_bytes()


def _examples(tmp_path: Path, page: str):
    (tmp_path / "page.md").write_text(page)
    document = page_examples(str(tmp_path), ["*.md"]).parse(tmp_path / "page.md")
    return list(document)


def test_a_wrong_expected_output_in_a_page_fails_and_names_the_line(tmp_path):
    page = (
        "# Title\n\nSome text.\n\n"
        "```python\n>>> from iptables_lens import parse_file\n"
        ">>> len(parse_file('dumps/kind-nodeport/worker-1-after.rules').tables)\n4\n\n```\n"
    )
    examples = _examples(tmp_path, page)
    assert examples, "the python block was not found"
    with pytest.raises(SybilFailure) as failure:
        for example in examples:
            example.evaluate()
    assert "line 7" in str(failure.value)
    assert "Expected:\n    4\nGot:\n    3" in str(failure.value)


def test_a_console_block_runs_the_command_and_compares_its_output(tmp_path):
    good = "```console\n$ iptables-lens check dumps/kind-nodeport/worker-2-before.rules\n" \
           "dumps/kind-nodeport/worker-2-before.rules: ok: 3 tables, 43 chains, 62 rules\n```\n"
    for example in _examples(tmp_path, good):
        example.evaluate()
    bad = good.replace("62 rules", "63 rules")
    with pytest.raises(SybilFailure) as failure:
        for example in _examples(tmp_path, bad):
            example.evaluate()
    assert "62 rules" in str(failure.value) and "63 rules" in str(failure.value)


def test_a_console_block_shows_the_exit_status_of_a_failing_command(tmp_path):
    page = "```console\n$ iptables-lens check does-not-exist.rules\n```\n"
    with pytest.raises(SybilFailure) as failure:
        for example in _examples(tmp_path, page):
            example.evaluate()
    assert "[exit status 1]" in str(failure.value)


@pytest.fixture(scope="module")
def built_site(tmp_path_factory) -> Path:
    site = tmp_path_factory.mktemp("site")
    proc = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(site)],
        cwd=REPO_ROOT, capture_output=True, text=True, env={"NO_MKDOCS_2_WARNING": "1", "PATH": "/usr/bin:/bin"},
    )
    assert proc.returncode == 0, proc.stderr
    assert "WARNING" not in proc.stderr, proc.stderr
    return site


OFF_SITE = re.compile(r"""<(?:script|link|img|iframe)\b[^>]*\b(?:src|href)\s*=\s*["']?(?:https?:)?//""", re.I)


def test_the_built_site_loads_nothing_from_another_host(built_site):
    pages = list(built_site.rglob("*.html"))
    assert len(pages) >= 2
    for page in pages:
        html = page.read_text()
        assert not OFF_SITE.search(html), f"{page} loads something from another host"
    assert (built_site / "assets" / "javascripts" / "mermaid.min.js").is_file()
    assert "fonts.googleapis" not in "".join(p.read_text() for p in pages)


def test_the_built_site_uses_the_material_theme(built_site):
    html = (built_site / "index.html").read_text()
    assert 'name="generator" content="mkdocs-' in html and "mkdocs-material" in html


def test_the_built_site_names_no_path_of_the_machine_that_built_it(built_site):
    # The same commit must give the same site wherever it is built (CI publishes it from another folder).
    for page in built_site.rglob("*.html"):
        assert str(REPO_ROOT) not in page.read_text(), f"{page} names {REPO_ROOT}"
