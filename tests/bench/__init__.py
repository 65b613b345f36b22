"""Benchmarks for `nox -s bench`. Each is a function returning rows {"figure": ..., "value": ...}."""

from .parse_bench import bench_parse
from .scale_bench import bench_scale
from .site_bench import bench_site
from .trace_bench import bench_trace

BENCHMARKS = [bench_parse, bench_trace, bench_site, bench_scale]
