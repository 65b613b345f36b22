"""The dump model -> canonical iptables-save text.

For text that iptables-save printed, `format_dump(parse(text)) == text`, byte for byte. Other valid
input comes out the way iptables-save would print it after loading: criteria in `-s -d -i -o -p -f`
order, negation before the option, free-text values quoted as `xtables_save_string` quotes them.
"""

from __future__ import annotations

from iptables_lens.iptables.model import Chain, Counters, Criterion, Dump, Option, Rule, Table, Target
from iptables_lens.iptables.xtables import STRING_OPTIONS

_CRITERION_ORDER = {"-s": 0, "-d": 1, "-i": 2, "-o": 3, "-p": 4, "-f": 5}
_SAFE = frozenset("_-0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")


def quote(value: str) -> str:
    """Quote `value` as iptables-save does: bare when it is only [A-Za-z0-9_-], else in double quotes
    with `"`, `\\` and `'` escaped by a backslash."""
    if value and all(ch in _SAFE for ch in value):
        return value
    escaped = value.replace("\\", "\\\\").replace('"', '\\"').replace("'", "\\'")
    return f'"{escaped}"'


def _value(option_name: str, value: str) -> str:
    if option_name in STRING_OPTIONS:
        return quote(value)
    if not value or any(ch in value for ch in ' \t"'):
        return quote(value)
    return value


def format_option(option: Option) -> str:
    parts = ["!", option.name] if option.negated else [option.name]
    parts.extend(_value(option.name, v) for v in option.values)
    return " ".join(parts)


def format_criterion(criterion: Criterion) -> str:
    text = criterion.flag if criterion.flag == "-f" else f"{criterion.flag} {criterion.value}"
    return f"! {text}" if criterion.negated else text


def format_target(target: Target) -> str:
    parts = ["-g" if target.goto else "-j", target.name]
    parts.extend(format_option(o) for o in target.options)
    return " ".join(parts)


def format_rule(rule: Rule) -> str:
    """The rule as one `-A CHAIN ...` line (with `[p:b]` first when it has counters)."""
    parts = []
    if rule.counters is not None:
        parts.append(_counters(rule.counters))
    parts += ["-A", rule.chain]
    for crit in sorted(rule.criteria, key=lambda c: _CRITERION_ORDER[c.flag]):
        parts.append(format_criterion(crit))
    for match in rule.matches:
        parts += ["-m", match.module]
        parts.extend(format_option(o) for o in match.options)
    if rule.target is not None:
        parts.append(format_target(rule.target))
    return " ".join(parts)


def _counters(c: Counters) -> str:
    return f"[{c.packets}:{c.bytes}]"


def format_chain_header(chain: Chain) -> str:
    policy = chain.policy if chain.builtin and chain.policy else "-"
    line = f":{chain.name} {policy}"
    return f"{line} {_counters(chain.counters)}" if chain.counters is not None else line


def format_table(table: Table) -> str:
    lines = list(table.comments_before)
    lines.append(f"*{table.name}")
    lines.extend(format_chain_header(c) for c in table.chains)
    lines.extend(format_rule(r) for c in table.chains for r in c.rules)
    lines.append("COMMIT")
    lines.extend(table.comments_after)
    return "\n".join(lines) + "\n"


def format_dump(dump: Dump) -> str:
    """The whole dump as canonical iptables-save text, ending in a newline."""
    text = "".join(format_table(t) for t in dump.tables)
    if dump.comments_after:
        text += "\n".join(dump.comments_after) + "\n"
    return text
