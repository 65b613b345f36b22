"""kube-proxy's nftables transaction (`kube.synth_nftables.Transaction`) as `nft list ruleset` prints it once
`nft -f` has loaded it, with no kernel: `nft_listing(tx)`, or `synth_listing(spec, layout)` for a `ClusterSpec`.

What nft (1.0.6, on this kernel) changes between the transaction it reads and the listing it prints, as
tests/test_nft_listing.py checks in the kernel:

- The table lists its sets and maps, then its chains, each in the order they were added (knftables adds each
  kind sorted by name). A base chain says its priority by name (`dstnat - 10`; `nft.hooks.priority_text`)
  and `policy accept`; a dynamic set gets `size 65535`, and its timeout is printed as a duration (`3h`).
- A named set's elements are sorted as nft's `list_expr_sort` sorts them (src/mergesort.c): a value by its
  number, a concatenation by its fields' bytes (an address or port in network order, unpadded) read as one
  little-endian number, so the last field's last byte counts most. Five ports, two IPv4 addresses or one of
  anything else to a line (`nft.types.DATATYPES`).
- In a rule, a set literal of one element is a plain comparison (`ip saddr != 203.0.113.0/25`); of more, a set
  whose intervals are merged and sorted (`{ 1.2.3.4/31, 10.0.0.0/24 }`). `mark` is `meta mark`, `and`, `or`
  and `xor` are `&`, `|` and `^`, and a mark's numbers are eight hex digits. `dnat ip addr . port to MAP` is
  `dnat ip to MAP`, and a map literal's elements are separated by ", ".

>>> from iptables_lens.kube.cluster_spec import ClusterSpec, Endpoint, Port, ServiceSpec
>>> web = ServiceSpec("default", "web", "10.96.0.50", ports=(Port(80, 8080),), endpoints=(Endpoint("10.244.1.2"),))
>>> listing = synth_listing(ClusterSpec((web,)), layout="main-edca563")
>>> print(next(line.strip() for line in listing.splitlines() if "numgen" in line))
meta l4proto tcp dnat ip to numgen random mod 1 map { 0 : 10.244.1.2 . 8080 }
"""

from __future__ import annotations

import ipaddress
import socket

from iptables_lens.kube.cluster_spec import ClusterSpec
from iptables_lens.kube.synth_nftables import (
    MASQUERADE_MARK,
    TABLE,
    TABLE_COMMENT,
    Layout,
    Transaction,
    synth_transaction,
)
from iptables_lens.nft.hooks import priority_text
from iptables_lens.nft.types import DATATYPES
from iptables_lens.nft.values import format_duration, ipv6_text, read_duration

_NEWLINE = ",\n\t\t\t     "  # nft's break between elements (src/expression.c)
# The size nft gives a set a rule adds to (`update @set`) when its declaration names none (NFT_SET_DEFAULT_SIZE
# ... as nft 1.0.6 lists kube-proxy's affinity sets).
_DYNAMIC_SET_SIZE = 65535
_MARK_OPERATORS = {"and": "&", "or": "|", "xor": "^"}
_MARK_WORDS = frozenset({"==", "!=", "set", "mark", "meta", *_MARK_OPERATORS})


def synth_listing(spec: ClusterSpec, layout: Layout = "v1.34", service_cidrs: tuple[str, ...] | None = None,
                  nodeport_addresses: tuple[str, ...] | None = None, mark: str = MASQUERADE_MARK,
                  every_local_address: bool = False) -> str:
    """`nft list ruleset` of kube-proxy's table for `spec` (the arguments are `synth_nftables`')."""
    return nft_listing(synth_transaction(spec, layout, service_cidrs, nodeport_addresses, mark, every_local_address))


def nft_listing(tx: Transaction) -> str:
    """What `nft list ruleset` prints in an empty namespace once `tx.dump()` is loaded with `nft -f`: the table
    with its sets, maps and chains, elements in nft's order, rules in nft's printed form."""
    blocks = [_set(tx, name, "set", tx.sets[name]) for name in sorted(tx.sets)]
    blocks += [_set(tx, name, "map", tx.maps[name]) for name in sorted(tx.maps)]
    blocks += [_chain(tx.family, name, tx.chains[name], tx.rules[name]) for name in sorted(tx.chains)]
    head = f'table {tx.family} {TABLE} {{\n\tcomment "{TABLE_COMMENT}"\n'
    return head + "\n".join(blocks) + "}\n"


def _clauses(spec: str) -> dict[str, str]:
    """A declaration of the transaction, `{ type ipv4_addr ; comment "..." ; }` (braces optional), as
    {"type": "ipv4_addr", "comment": '"..."'}."""
    body = spec.strip().removeprefix("{").removesuffix("}").strip().removesuffix(";")
    return {word: value for word, _, value in (c.strip().partition(" ") for c in body.split(" ; ")) if word}


def _set(tx: Transaction, name: str, kind: str, spec: str) -> str:
    clauses = _clauses(spec)
    key, _, data = clauses["type"].partition(" : ")
    flags = clauses.get("flags", "")
    lines = [f"\t{kind} {name} {{", f"\t\ttype {clauses['type']}"]
    if "dynamic" in flags.split(",") and "size" not in clauses:
        lines.append(f"\t\tsize {_DYNAMIC_SET_SIZE}")
    timeout = read_duration(clauses["timeout"]) if "timeout" in clauses else 0
    if flags and flags != ("timeout" if timeout else ""):
        lines.append(f"\t\tflags {flags}")
    if timeout:
        lines.append(f"\t\ttimeout {format_duration(timeout)}")
    if "comment" in clauses:
        lines.append(f"\t\tcomment {clauses['comment']}")
    elements = tx.elements.get(name)
    if elements:
        lines.append(f"\t\telements = {_elements(key.split(' . '), elements)}")
    return "\n".join(lines) + "\n\t}\n"


def _elements(types: list[str], elements: dict[str, str]) -> str:
    ordered = [elements[k] for k in sorted(elements, key=_sort_key(types))]
    per_line = DATATYPES[types[0]].per_line if len(types) == 1 else 1
    if per_line == 1:
        return "{ " + _NEWLINE.join(ordered) + " }"
    rows = [", ".join(ordered[i:i + per_line]) for i in range(0, len(ordered), per_line)]
    return "{ " + _NEWLINE.join(rows) + " }"


def _field_bytes(kind: str, word: str) -> bytes:
    """A key field's bytes as the kernel holds them (network order)."""
    if kind == "ipv4_addr":
        return socket.inet_pton(socket.AF_INET, word)
    if kind == "ipv6_addr":
        return socket.inet_pton(socket.AF_INET6, word)
    if kind == "inet_proto":
        number = DATATYPES[kind].number(word)
        return bytes((int(word) if number is None else number,))
    assert kind == "inet_service", f"no element order known for {kind}"
    return int(word).to_bytes(2, "big")


def _sort_key(types: list[str]):
    """list_expr_sort's order of elements keyed `types`: a value by its number, a concatenation by its bytes
    read as one host-endian (little-endian here) number."""
    if len(types) == 1:
        (kind,) = types
        return lambda key: int.from_bytes(_field_bytes(kind, key), "big")
    return lambda key: int.from_bytes(b"".join(_field_bytes(t, w) for t, w in zip(types, key.split(" . "),
                                                                                     strict=True)), "little")


def _chain(family: str, name: str, spec: str, rules: list[str]) -> str:
    lines = [f"\tchain {name} {{"]
    clauses = _clauses(spec) if spec else {}
    if "comment" in clauses:
        lines.append(f"\t\tcomment {clauses['comment']}")
    if "type" in clauses:
        chain_type, _, hook, _, priority = clauses["type"].split(" ")
        lines.append(f"\t\ttype {chain_type} hook {hook} priority {priority_text(int(priority), family, hook)}; "
                     "policy accept;")
    lines += [f"\t\t{listed_rule(rule)}" for rule in rules]
    return "\n".join(lines) + "\n\t}\n"


def listed_rule(rule: str) -> str:
    """A rule of the transaction (after `add rule FAMILY TABLE CHAIN`) as nft lists it: `mark set mark or
    0x4000` is `meta mark set meta mark | 0x00004000`.

    >>> listed_rule('ip saddr != { 203.0.113.0/25 } drop')
    'ip saddr != 203.0.113.0/25 drop'
    """
    body, quote, comment = rule.partition(' comment "')
    if "mark " not in body and "{" not in body and " addr . port " not in body:
        return rule
    tokens = body.split(" ")
    out: list[str] = []
    in_mark = False  # the words since `mark` belong to it: its numbers are hex
    index = 0
    while index < len(tokens):
        token = tokens[index]
        if token == "mark" and (not out or out[-1] not in ("meta", "ct")):
            out += ["meta", "mark"]
            in_mark = True
        elif in_mark and token in _MARK_OPERATORS:
            out.append(_MARK_OPERATORS[token])
        elif in_mark and token[:1].isdigit():
            out.append(f"0x{int(token, 0):08x}")
        elif token == "{" and not out[-1].startswith("@"):
            close = tokens.index("}", index)
            items = tokens[index + 1:close]
            if out[-1] in ("map", "vmap"):
                out.append("{ " + " ".join(items).replace(" , ", ", ") + " }")
            else:
                out.append(_set_literal(items))
            index = close
        elif token == "addr" and out[-2:-1] == ["dnat"] and tokens[index + 1:index + 3] == [".", "port"]:
            index += 2  # `dnat ip addr . port to` lists as `dnat ip to`
        else:
            out.append(token)
        if token not in _MARK_WORDS and not (in_mark and token[:1].isdigit()):
            in_mark = False
        index += 1
    return " ".join(out) + quote + comment


def _set_literal(items: list[str]) -> str:
    """An anonymous set of addresses and prefixes as nft lists it: one element alone, more merged and sorted."""
    words = [item.rstrip(",") for item in items if item != ","]
    if len(words) == 1:
        return words[0]
    networks = sorted(ipaddress.ip_network(word, strict=False) for word in words)
    merged: list[list[int]] = []
    for network in networks:
        first, last = int(network.network_address), int(network.broadcast_address)
        if merged and first <= merged[-1][1] + 1:
            merged[-1][1] = max(merged[-1][1], last)
        else:
            merged.append([first, last])
    version = networks[0].version
    return "{ " + ", ".join(_interval(first, last, version) for first, last in merged) + " }"


def _interval(first: int, last: int, version: int) -> str:
    """An interval of a set literal as nft prints it: an address, a prefix, or `first-last`."""
    def text(number: int) -> str:
        return str(ipaddress.IPv4Address(number)) if version == 4 else ipv6_text(ipaddress.IPv6Address(number))

    if first == last:
        return text(first)
    size = last - first + 1
    if size & (size - 1) == 0 and first % size == 0:
        return f"{text(first)}/{(32 if version == 4 else 128) - size.bit_length() + 1}"
    return f"{text(first)}-{text(last)}"
