"""Fixtures for the browser tests: built sites served on 127.0.0.1, and Debian's chromium driven by Playwright.

The browser is the system's (`apt-get install chromium`, as .ci/run does): Playwright's own browser download
is not used. Set IPTABLES_LENS_CHROMIUM to use another Chromium binary.
"""

from __future__ import annotations

import functools
import os
import shutil
import threading
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from tests.browser.checks import LOCAL_HOST
from tests.conftest import REPO_ROOT
from tests.site_build import build, variant_config

HOSTILE = REPO_ROOT / "tests" / "data" / "scenarios" / "hostile-comments"
SCREENSHOTS = REPO_ROOT / "build" / "screenshots"


def chromium_path() -> str | None:
    return os.environ.get("IPTABLES_LENS_CHROMIUM") or shutil.which("chromium")


@pytest.fixture(scope="session")
def browser():
    sync_api = pytest.importorskip(
        "playwright.sync_api", reason="Playwright is not installed (pip install -e '.[test]'): browser tests need it")
    executable = chromium_path()
    if executable is None:
        pytest.skip("Debian's chromium is not installed (apt-get install chromium): browser tests need it")
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=executable)
        yield browser
        browser.close()


class _QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, format, *args):
        pass


@contextmanager
def serving(folder: Path) -> Iterator[str]:
    """Serve `folder` on 127.0.0.1 at a free port; yields the base URL, ending in a slash."""
    server = ThreadingHTTPServer((LOCAL_HOST, 0), functools.partial(_QuietHandler, directory=str(folder)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://{LOCAL_HOST}:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def built(site: Path, config: Path | None = None) -> Path:
    result = build(site, config)
    assert result.returncode == 0, result.stderr
    return site


@pytest.fixture(scope="session")
def site(tmp_path_factory) -> Path:
    return built(tmp_path_factory.mktemp("browser") / "site")


@pytest.fixture(scope="session")
def site_url(site) -> Iterator[str]:
    with serving(site) as url:
        yield url


@pytest.fixture(scope="session")
def hostile_site(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("browser-hostile")
    return built(folder / "site", variant_config(folder, HOSTILE))


@pytest.fixture(scope="session")
def hostile_url(hostile_site) -> Iterator[str]:
    with serving(hostile_site) as url:
        yield url


@pytest.fixture
def serve() -> Iterator[Callable[[Path], str]]:
    """Serve another folder for the length of a test: `base_url = serve(folder)`."""
    with ExitStack() as stack:
        yield lambda folder: stack.enter_context(serving(folder))


@pytest.fixture(scope="session")
def screenshots() -> Path:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    return SCREENSHOTS
