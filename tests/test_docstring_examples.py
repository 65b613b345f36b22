"""The examples in the package's docstrings run, as the page examples do: a docstring that shows a call and
its result must stay true."""

from __future__ import annotations

import doctest
import importlib
import pkgutil

import iptables_lens
import pytest

from tests.conftest import REPO_ROOT

MODULES = sorted(m.name for m in pkgutil.walk_packages(iptables_lens.__path__, "iptables_lens."))


@pytest.fixture(autouse=True)
def in_repository(monkeypatch):
    monkeypatch.chdir(REPO_ROOT)  # examples name dumps/ relative to the repository


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples_hold(name):
    result = doctest.testmod(importlib.import_module(name), optionflags=doctest.ELLIPSIS)
    assert result.failed == 0


def test_some_modules_have_examples():
    tried = sum(doctest.testmod(importlib.import_module(name)).attempted for name in MODULES)
    assert tried >= 15
