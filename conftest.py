"""pytest set-up for the whole repository.

- Every page under docs/ is a test file: sybil runs its examples (see tests/doc_examples.py). So is every
  generated page that `nox -s docs` writes to build/generated-docs/ (with tests/generated_pages.py).
- With CI=true, a skipped test fails: in CI every prerequisite is installed, so a skip means a
  check silently did not run.
"""

from __future__ import annotations

import os

import pytest

from tests.doc_examples import page_examples

GENERATED_PAGES = "build/generated-docs"

pytest_collect_file = (page_examples("docs", ["*.md"]) + page_examples(GENERATED_PAGES, ["*.md"])).pytest()

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if IN_CI and report.skipped and not hasattr(report, "wasxfail"):
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
        report.outcome = "failed"
        report.longrepr = f"skipped in CI, which counts as a failure: {reason}"
