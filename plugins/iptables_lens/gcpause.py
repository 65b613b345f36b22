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
def paused_gc(promote_after: int | None = None) -> Iterator[None]:
    """Run the block with the cycle collector paused.

    With `promote_after`, objects made in the block are moved to the oldest generation afterwards if there
    are more than that many of them (in the collector's count): the block built something that lives long,
    such as a parsed dump. Resumed as it is, the collector would walk all of them at its next run, and again
    at the one after (~0.3 s each for a 10,000-Service dump), to learn what they already say. Freezing and
    unfreezing moves every tracked object to the oldest generation without walking any; other objects moved
    there are still collected, at the next full collection, a delay worth it only when the new objects are
    nearly all the block's.
    """
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
        if promote_after is not None and gc.get_count()[0] > promote_after:
            gc.freeze()
            gc.unfreeze()
    finally:
        if enabled:
            gc.enable()
