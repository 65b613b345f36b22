"""Rule cache (placeholder)."""

from __future__ import annotations

from iptables_lens.nft import statements
from iptables_lens.nft.model import Rule


class RuleCache:
    def __init__(self):
        self.enabled = True

    def rule(self, parser, cur, table, chain, position, lineno) -> Rule:
        stmts, comment, handle = statements.rule_body(cur, table.family, table.set_keys)
        return Rule(table.family, table.name, chain, position, stmts, comment, handle, lineno,
                    parser.lines[lineno - 1].strip())
