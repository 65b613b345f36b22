"""Sessions named for what a person wants to do.

    nox -t test        every test: unit, kernel, browser, page examples (what CI runs)
    nox -s serve       build the site and serve it on http://127.0.0.1:8000
    nox -s docs        build the site with --strict, then run every example on its pages
    nox -s tests       the tests under tests/ but the browser's (kernel tests need root)
    nox -s browser     the built site in Debian's chromium; screenshots go to build/screenshots/
    nox -s validate    check every scenario under dumps/ (schema, dumps, Services, kernel)
    nox -s lab         load each scenario into the kernel and check the tracer against it
    nox -s site        build the site into site/ (what is published)
    nox -s lint        ruff, mypy, and the GitHub workflows (zizmor, their JSON Schema)
    nox -s bench       benchmarks: ratios against a reference measured in the same run
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import nox

nox.options.reuse_venv = "yes"
nox.options.error_on_missing_interpreters = True

# Material prints a long notice about MkDocs 2 on every build; it is not about this project.
BUILD_ENV = {"NO_MKDOCS_2_WARNING": "1"}
GENERATED_PAGES = "build/generated-docs"
SYSTEM_TOOLS = {"iptables-restore": "iptables", "conntrack": "conntrack", "ip": "iproute2", "nft": "nftables"}
# Debian's chromium, and fonts for the site's system font stack.
BROWSER_PACKAGES = ["chromium", "fonts-liberation", "fonts-dejavu-core"]


def _install(session: nox.Session, *extras: str) -> None:
    spec = f".[{','.join(extras)}]" if extras else "."
    session.install("-e", spec)


def _apt_install(session: nox.Session, packages: list[str]) -> None:
    session.log(f"installing {', '.join(packages)} with apt-get")
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    subprocess.run(["apt-get", "update", "-qq"], check=True, env=env)
    subprocess.run(["apt-get", "install", "-y", "-qq", *packages], check=True, env=env, stdout=subprocess.DEVNULL)


def _can_apt_install(session: nox.Session, what: str) -> bool:
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        session.warn(f"{what} (run as root to install them)")
        return False
    return True


def _ensure_system_tools(session: nox.Session) -> None:
    """Kernel tests need iptables, conntrack and iproute2; as root on Debian, install what is missing."""
    missing = sorted({pkg for tool, pkg in SYSTEM_TOOLS.items() if shutil.which(tool) is None})
    if missing and _can_apt_install(session, f"missing {', '.join(missing)}: kernel tests will be skipped"):
        _apt_install(session, missing)


def _ensure_browser(session: nox.Session) -> None:
    """Browser tests need Debian's chromium (Playwright's own browser download is not used)."""
    if shutil.which("chromium") is None and _can_apt_install(session, "no chromium: browser tests will be skipped"):
        _apt_install(session, BROWSER_PACKAGES)


@nox.session(tags=["test"])
def tests(session: nox.Session) -> None:
    """Unit, property and kernel tests under tests/ (the browser tests have a session of their own)."""
    _ensure_system_tools(session)
    _install(session, "test")
    session.run("pytest", "tests", "-m", "not browser", *session.posargs)


@nox.session(tags=["test"])
def browser(session: nox.Session) -> None:
    """The built site in Debian's chromium (Playwright); screenshots go to build/screenshots/.

    Every page loads offline and cleanly; diagrams, tabs, search, the diff and dark mode work. The tests
    build the sites they need themselves."""
    _ensure_browser(session)
    _install(session, "test")
    session.run("pytest", "tests/browser", *session.posargs)


@nox.session(tags=["test"])
def docs(session: nox.Session) -> None:
    """Build the site with --strict, then run every example on every page."""
    _install(session, "test")
    session.run("mkdocs", "build", "--strict", env=BUILD_ENV)
    # The pages the plugin generates, written as Markdown files so that their examples run too.
    shutil.rmtree(GENERATED_PAGES, ignore_errors=True)
    session.run("python", "-m", "tests.generated_pages", GENERATED_PAGES, env=BUILD_ENV)
    session.run("pytest", "docs", GENERATED_PAGES, *session.posargs)


@nox.session
def serve(session: nox.Session) -> None:
    """Build the site, then serve it on http://127.0.0.1:8000 (rebuilds when docs/ or dumps/ change)."""
    _install(session)
    session.run("mkdocs", "build", "--strict", env=BUILD_ENV)
    session.run("mkdocs", "serve", "--dev-addr", "127.0.0.1:8000", env=BUILD_ENV)


@nox.session
def lab(session: nox.Session) -> None:
    """Load every scenario into real netfilter (network namespaces, as root) and check the tracer against it.
    `nox -s lab -- --record` also rewrites the kernel recordings under dumps/*/kernel/."""
    _ensure_system_tools(session)
    _install(session)
    for folder in sorted(p.parent for p in Path("dumps").glob("*/scenario.yaml")):
        session.run("iptables-lens", "lab", str(folder), *session.posargs)


@nox.session
def validate(session: nox.Session) -> None:
    """Validate every scenario under dumps/ (as root, the kernel is asked too)."""
    _ensure_system_tools(session)
    _install(session)
    folders = sorted(str(p.parent) for p in Path("dumps").glob("*/scenario.yaml"))
    session.run("iptables-lens", "validate", *folders, *session.posargs)


@nox.session
def site(session: nox.Session) -> None:
    """Build the site into site/ with --strict: what the workflow on main publishes."""
    _install(session)
    session.run("mkdocs", "build", "--strict", env=BUILD_ENV)


@nox.session
def lint(session: nox.Session) -> None:
    """ruff and mypy; the GitHub workflows through zizmor (offline) and the JSON Schemas of their formats."""
    _install(session, "lint")
    session.run("ruff", "check", "plugins", "tests", "noxfile.py", "conftest.py")
    session.run("mypy")
    github = Path(".github")
    session.run("zizmor", "--offline", str(github))
    session.run("check-jsonschema", "--builtin-schema", "vendor.github-workflows",
                *sorted(str(p) for p in (github / "workflows").glob("*.yml")))
    session.run("check-jsonschema", "--builtin-schema", "vendor.dependabot", str(github / "dependabot.yml"))
    session.run("check-jsonschema", "--builtin-schema", "vendor.github-issue-forms",
                *sorted(str(p) for p in (github / "ISSUE_TEMPLATE").glob("*.yml") if p.name != "config.yml"))


@nox.session
def bench(session: nox.Session) -> None:
    """Benchmarks; each figure is printed as a ratio to a reference measured in the same run."""
    _ensure_system_tools(session)
    _install(session, "test")
    session.run("python", "-m", "tests.bench", *session.posargs)
