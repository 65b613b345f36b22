"""The ruleset model -> `nft list ruleset` text, as nftables 1.0.6 prints it.

For a listing nft printed, `format_ruleset(parse(text)) == text`, byte for byte: tabs, the blank line between
a table's declarations, `elements = { a, b,\\n\\t\\t\\t     c }` wrapped as nft wraps them (five numbers, two
IPv4 addresses or one of anything else to a line), priorities by name (`dstnat - 10`), handles when the
model has them (`nft -a`). The functions follow nft's own printers (`src/rule.c`, `src/statement.c`,
`src/expression.c`), so what came from JSON prints the same way.
"""

from __future__ import annotations

from iptables_lens.nft import exprs as ex
from iptables_lens.nft import hooks
from iptables_lens.nft.fmtrules import (
    format_element,
    format_expr,
    format_limit,
    format_quota,
    format_rule,
    handle_comment,
    stateless_statement,
)
from iptables_lens.nft.model import (
    Chain,
    Expr,
    Flowtable,
    Limit,
    NamedObject,
    Priority,
    Quota,
    Ruleset,
    Set,
    Table,
)
from iptables_lens.nft.types import DATATYPES
from iptables_lens.nft.values import format_duration

_NEWLINE = ",\n\t\t\t     "


# -- declarations -------------------------------------------------------------------------------------------


def _chain(chain: Chain) -> str:
    lines = [f"\tchain {chain.name} {{{handle_comment(chain.handle)}"]
    if chain.comment is not None:
        lines.append(f'\t\tcomment "{chain.comment}"')
    hook = chain.hook
    if hook is not None:
        text = f"\t\ttype {hook.type} hook {hook.hook}"
        if len(hook.devices) == 1:
            text += f' device "{hook.devices[0]}"'
        elif hook.devices:
            text += " devices = { " + ", ".join(hook.devices) + " }"
        text += f" priority {_priority(hook.priority, chain.family, hook.hook)};"
        if hook.policy is not None:
            text += f" policy {hook.policy};"
        if hook.offload:
            text += " flags offload;"
        lines.append(text)
    # A rule nft listed in iptables' spelling of an extension's translation prints back as it was listed.
    lines.extend(f"\t\t{rule.spelled}{handle_comment(rule.handle)}" if rule.spelled is not None
                 else f"\t\t{format_rule(rule)}" for rule in chain.rules)
    return "\n".join(lines) + "\n\t}\n"


def _priority(priority: Priority, family: str, hook: str) -> str:
    """The priority as the nft that listed it printed it (1.0.6, or 1.0.9, which names dstnat at output too),
    else as 1.0.6 prints it."""
    canonical = hooks.priority_text(priority.value, family, hook)
    if priority.written and priority.written == hooks.priority_text(priority.value, family, hook, newer=True):
        return priority.written
    return canonical


def _key(types: tuple[str, ...], typeof: tuple[Expr, ...]) -> str:
    return " . ".join(format_expr(e) for e in typeof) if typeof else " . ".join(types)


def _per_line(item: Set) -> int:
    """How many elements of `item` nft prints on a line (its calculate_delim)."""
    if item.key_typeof:
        types = ex.key_types(item.key_typeof)
        names = tuple(t.datatype.name for t in types) if types else ("?", "?")
    else:
        names = item.key_types
    if len(names) != 1:
        return 1
    datatype = DATATYPES.get(names[0])
    return datatype.per_line if datatype is not None else 1


def _elements(item: Set) -> str:
    per_line = _per_line(item)
    text = []
    for index, element in enumerate(item.elements):
        if index:
            text.append(_NEWLINE if index % per_line == 0 else ", ")
        text.append(format_element(element))
    return "{ " + "".join(text) + " }"


def _set(item: Set) -> str:
    lines = [f"\t{item.kind} {item.name} {{{handle_comment(item.handle)}"]
    key = f"{'typeof' if item.key_typeof else 'type'} {_key(item.key_types, item.key_typeof)}"
    if item.kind == "map":
        key += " : " + ("interval " if item.data_interval else "") + _key(item.data_types, item.data_typeof)
    lines.append(f"\t\t{key}")
    if "constant" not in item.flags:
        if item.policy is not None and item.policy != "performance":
            lines.append(f"\t\tpolicy {item.policy}")
        if item.size:
            lines.append(f"\t\tsize {item.size}")
    # nft leaves the flags line out when `timeout` is its only flag and the set has a timeout.
    if [flag for flag in item.flags if not (flag == "timeout" and item.timeout)]:
        lines.append("\t\tflags " + ",".join(item.flags))
    if item.statements:
        lines.append("\t\t" + " ".join(stateless_statement(s) for s in item.statements))
    if item.auto_merge:
        lines.append("\t\tauto-merge")
    if item.timeout:
        lines.append(f"\t\ttimeout {format_duration(item.timeout)}")
    if item.gc_interval:
        lines.append(f"\t\tgc-interval {format_duration(item.gc_interval)}")
    if item.comment is not None:
        lines.append(f'\t\tcomment "{item.comment}"')
    if item.elements:
        lines.append(f"\t\telements = {_elements(item)}")
    return "\n".join(lines) + "\n\t}\n"


def _object(obj: NamedObject) -> str:
    settings = dict(obj.settings)
    head = f"\t{obj.kind} {obj.name} {{{handle_comment(obj.handle)}"
    if obj.comment is not None:
        head += f'\n\t\tcomment "{obj.comment}"'
    body = _object_body(obj.kind, settings)
    return head + "".join(f"\n\t\t{line}" for line in body) + "\n\t}\n"


def _object_body(kind: str, settings: dict[str, object]) -> list[str]:
    if kind == "counter":
        return [f"packets {settings['packets']} bytes {settings['bytes']}"]
    if kind == "quota":
        return [format_quota(Quota(settings["bytes"], settings.get("used", 0), bool(settings.get("over"))))[6:]]  # type: ignore[arg-type]
    if kind == "limit":
        return [format_limit(Limit(settings["rate"], str(settings["per"]), settings["burst"],  # type: ignore[arg-type]
                             bool(settings.get("bytes")), bool(settings.get("over"))))[6:]]
    if kind == "secmark":
        return [f'"{settings["context"]}"']
    if kind == "synproxy":
        lines = [f"{key} {settings[key]}" for key in ("mss", "wscale") if key in settings]
        if settings.get("flags"):
            lines.append(" ".join(settings["flags"]))  # type: ignore[arg-type]
        return lines
    if kind == "ct helper":
        return [f'type "{settings["type"]}" protocol {settings["protocol"]}', f"l3proto {settings['l3proto']}"]
    lines = [f"protocol {settings['protocol']}"]
    if kind == "ct expectation":
        lines += [f"dport {settings['dport']}", f"timeout {format_duration(settings['timeout'])}",  # type: ignore[arg-type]
                  f"size {settings['size']}"]
    lines.append(f"l3proto {settings['l3proto']}")
    if kind == "ct timeout" and settings.get("policy"):
        policy = ", ".join(f"{state} : {seconds}" for state, seconds in settings["policy"])  # type: ignore[attr-defined]
        lines.append(f"policy = {{ {policy} }}")
    return lines


def _flowtable(flowtable: Flowtable) -> str:
    lines = [f"\tflowtable {flowtable.name} {{{handle_comment(flowtable.handle)}",
             f"\t\thook {flowtable.hook} priority {hooks.priority_text(flowtable.priority.value, 'netdev', 'ingress')}"]
    if flowtable.devices:
        lines.append("\t\tdevices = { " + ", ".join(flowtable.devices) + " }")
    if flowtable.offload:
        lines.append("\t\tflags offload")
    if flowtable.counter:
        lines.append("\t\tcounter")
    return "\n".join(lines) + "\n\t}\n"


def format_table(table: Table) -> str:
    """One table, from `table FAMILY NAME {` to its closing `}`."""
    head = f"table {table.family} {table.name} {{"
    if table.handle is not None or table.owner is not None:
        head += " #"
        if table.handle is not None:
            head += f" handle {table.handle}"
        if table.owner is not None:
            head += f" progname {table.owner}"
    parts = [head + "\n"]
    delim = ""
    if table.flags:
        parts.append("\tflags " + ",".join(table.flags) + "\n")
        delim = "\n"
    if table.comment is not None:
        parts.append(f'\tcomment "{table.comment}"\n')
    blocks = ([_object(o) for o in table.objects] + [_set(s) for s in table.sets]
              + [_flowtable(f) for f in table.flowtables] + [_chain(c) for c in table.chains])
    for block in blocks:
        parts.append(delim + block)
        delim = "\n"
    parts.append("}\n")
    return "".join(parts)


def format_ruleset(ruleset: Ruleset) -> str:
    """The whole ruleset as `nft list ruleset` prints it."""
    return "".join(format_table(table) for table in ruleset.tables)
