"""Benchmarks for `nox -s bench`. Each is a function returning rows {"figure": ..., "value": ...}."""

from .nft_parse_bench import bench_nft_parse
from .parse_bench import bench_parse
from .scale_bench import bench_scale
from .site_bench import bench_site
from .trace_bench import bench_trace

BENCHMARKS = [bench_parse, bench_nft_parse, bench_trace, bench_site, bench_scale]
