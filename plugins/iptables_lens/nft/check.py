"""Checks of a whole table once read (placeholder)."""

from __future__ import annotations

from iptables_lens.nft.model import Table


def table_problem(table: Table) -> tuple[int, int, str] | None:
    return None
