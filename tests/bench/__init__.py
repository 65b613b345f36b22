"""Benchmarks for `nox -s bench`. Each is a function returning rows {"figure": ..., "value": ...}."""

from .parse_bench import bench_parse
from .site_bench import bench_site
from .trace_bench import bench_trace

BENCHMARKS = [bench_parse, bench_trace, bench_site]
