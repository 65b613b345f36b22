"""Benchmarks for `nox -s bench`. Each is a function returning rows {"figure": ..., "value": ...}."""

from .parse_bench import bench_parse

BENCHMARKS = [bench_parse]
