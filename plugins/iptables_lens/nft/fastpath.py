"""Rule cache (placeholder)."""

from __future__ import annotations

from iptables_lens.nft import statements
from iptables_lens.nft.model import Rule


class RuleCache:
    def __init__(self):
        self.enabled = True

    def rule(self, parser, cur, family, table, chain, position, lineno) -> Rule:
        stmts, comment, handle = statements.rule_body(cur, family)
        return Rule(family, table, chain, position, stmts, comment, handle, lineno, parser.lines[lineno - 1].strip())
