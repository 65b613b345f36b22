"""Build the whole site, as `nox -s docs` does, and measure it."""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

from tests.site_build import build


def largest_page(site: Path) -> tuple[str, int]:
    pages = [(p, p.stat().st_size) for p in site.rglob("*.html")]
    path, size = max(pages, key=lambda item: item[1])
    return str(path.relative_to(site)), size


def bench_site() -> list[dict]:
    with tempfile.TemporaryDirectory() as tmp:
        site = Path(tmp) / "site"
        start = time.perf_counter()
        result = build(site)
        seconds = time.perf_counter() - start
        if result.returncode:
            raise RuntimeError(result.stderr)
        name, size = largest_page(site)
        pages = sum(1 for _ in site.rglob("*.html"))
    return [
        {"figure": "site: whole build of the published site", "value": f"{seconds:.1f} s (goal < 10 s), {pages} pages"},
        {"figure": "site: largest HTML page", "value": f"{name}, {size / 1e6:.2f} MB (goal <= 2 MB)"},
    ]
