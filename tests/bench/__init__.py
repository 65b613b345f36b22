"""Benchmarks for `nox -s bench`. Each is a function returning rows {"figure": ..., "value": ...}."""

BENCHMARKS: list = []
