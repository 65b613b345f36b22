"""Pause Python's cycle collector around work that builds many small acyclic objects.

A parsed 10,000-Service dump is millions of objects; while it is alive, every collection of the oldest
generation walks all of them, and work that allocates many tuples (a diff, the pages) triggers such
collections again and again. The model holds no reference cycles, so there is nothing for the collector to
find: it is paused during that work and resumed after.
"""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def paused_gc() -> Iterator[None]:
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()
