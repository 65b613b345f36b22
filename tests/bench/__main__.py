"""`nox -s bench`: run every benchmark and print one table of figures.

Each benchmark reports ratios against a reference measured in the same run (never an absolute time
compared with a constant), and the whole table is written as JSON to `build/bench.json` too.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from . import BENCHMARKS


def main() -> int:
    rows = []
    for bench in BENCHMARKS:
        rows.extend(bench())
    width = max((len(r["figure"]) for r in rows), default=10)
    print(f"{'figure'.ljust(width)}  value")
    for row in rows:
        print(f"{row['figure'].ljust(width)}  {row['value']}")
    if not rows:
        print("(no benchmarks yet)")
    out = Path("build/bench.json")
    out.parent.mkdir(exist_ok=True)
    tmp = out.with_suffix(".tmp")
    tmp.write_text(json.dumps(rows, indent=2) + "\n")
    tmp.replace(out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
