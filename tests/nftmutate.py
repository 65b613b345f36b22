"""Damaged nft listings, for the kernel differential: each mutation is one small change of the kinds people
and tools make (a lost line or word, two words swapped, a typo, a value out of range, a name nobody
declared), and names itself so that a disagreement can be read.

`mutations(text, rng, count)` gives (description, mutated text) pairs, the same for the same seed.
"""

from __future__ import annotations

import random
import re
from collections.abc import Iterator

_WORD = re.compile(r'"[^"]*"|[^\s]+')
_NUMBER = re.compile(r"(?<![\w.:/-])[0-9]+(?![\w.:/])")
_REFERENCE = re.compile(r"(?:(?<=jump )|(?<=goto )|(?<=@))[A-Za-z_.][A-Za-z0-9/_.-]*")
_TYPOS = {"accept": "acept", "drop": "dorp", "daddr": "dadr", "saddr": "sadd", "jump": "jmup", "goto": "got",
          "meta": "mtea", "counter": "countr", "type": "tpye", "priority": "prioity", "policy": "polcy",
          "elements": "element", "dnat": "dant", "tcp": "tpc", "ip": "ipp", "ct": "cta"}
_OUT_OF_RANGE = ("65536", "256", "4294967296", "99999999999999999999999")


def _lines(text: str) -> list[str]:
    return text.split("\n")


def _rule_lines(lines: list[str]) -> list[int]:
    """Indexes of the lines inside chains (rules, hooks, comments)."""
    return [i for i, line in enumerate(lines) if line.startswith("\t\t") and line.strip()]


def _delete_line(lines: list[str], rng: random.Random) -> tuple[str, list[str]] | None:
    candidates = [i for i, line in enumerate(lines) if line.strip()]
    if not candidates:
        return None
    i = rng.choice(candidates)
    return f"line {i + 1} deleted: {lines[i].strip()[:60]}", lines[:i] + lines[i + 1:]


def _duplicate_line(lines: list[str], rng: random.Random) -> tuple[str, list[str]] | None:
    candidates = _rule_lines(lines)
    if not candidates:
        return None
    i = rng.choice(candidates)
    return f"line {i + 1} doubled", lines[: i + 1] + [lines[i]] + lines[i + 1:]


def _words(line: str) -> list[tuple[int, int]]:
    return [m.span() for m in _WORD.finditer(line)]


def _delete_word(lines: list[str], rng: random.Random) -> tuple[str, list[str]] | None:
    candidates = _rule_lines(lines)
    if not candidates:
        return None
    i = rng.choice(candidates)
    spans = _words(lines[i])
    start, end = rng.choice(spans)
    line = lines[i]
    changed = (line[:start] + line[end:]).rstrip() if end >= len(line) else line[:start] + line[end + 1:]
    return f"line {i + 1}: word {line[start:end]!r} deleted", lines[:i] + [changed] + lines[i + 1:]


def _swap_words(lines: list[str], rng: random.Random) -> tuple[str, list[str]] | None:
    candidates = [i for i in _rule_lines(lines) if len(_words(lines[i])) >= 2]
    if not candidates:
        return None
    i = rng.choice(candidates)
    spans = _words(lines[i])
    k = rng.randrange(len(spans) - 1)
    (a0, a1), (b0, b1) = spans[k], spans[k + 1]
    line = lines[i]
    changed = line[:a0] + line[b0:b1] + line[a1:b0] + line[a0:a1] + line[b1:]
    return f"line {i + 1}: {line[a0:a1]!r} and {line[b0:b1]!r} swapped", lines[:i] + [changed] + lines[i + 1:]


def _typo(lines: list[str], rng: random.Random) -> tuple[str, list[str]] | None:
    candidates = [(i, m) for i, line in enumerate(lines) for m in re.finditer(r"\b[a-z]+\b", line)
                  if m.group() in _TYPOS and not _in_string(line, m.start())]
    if not candidates:
        return None
    i, m = rng.choice(candidates)
    line = lines[i]
    changed = line[: m.start()] + _TYPOS[m.group()] + line[m.end():]
    return f"line {i + 1}: {m.group()!r} misspelt", lines[:i] + [changed] + lines[i + 1:]


def _out_of_range(lines: list[str], rng: random.Random) -> tuple[str, list[str]] | None:
    candidates = [(i, m) for i in _rule_lines(lines) for m in _NUMBER.finditer(lines[i])
                  if not _in_string(lines[i], m.start())]
    if not candidates:
        return None
    i, m = rng.choice(candidates)
    value = rng.choice(_OUT_OF_RANGE)
    line = lines[i]
    changed = line[: m.start()] + value + line[m.end():]
    return f"line {i + 1}: {m.group()} became {value}", lines[:i] + [changed] + lines[i + 1:]


def _dangling_reference(lines: list[str], rng: random.Random) -> tuple[str, list[str]] | None:
    candidates = [(i, m) for i, line in enumerate(lines) for m in _REFERENCE.finditer(line)
                  if not _in_string(line, m.start())]
    if not candidates:
        return None
    i, m = rng.choice(candidates)
    line = lines[i]
    changed = line[: m.start()] + m.group() + "-gone" + line[m.end():]
    return f"line {i + 1}: reference to {m.group()!r} renamed", lines[:i] + [changed] + lines[i + 1:]


def _in_string(line: str, index: int) -> bool:
    return line.count('"', 0, index) % 2 == 1


_OPERATORS = (_delete_line, _duplicate_line, _delete_word, _swap_words, _typo, _out_of_range, _dangling_reference)


def mutations(text: str, rng: random.Random, count: int) -> Iterator[tuple[str, str]]:
    """`count` damaged copies of `text` (fewer if it offers too little to damage)."""
    lines = _lines(text)
    tries = 0
    made = 0
    while made < count and tries < count * 5:
        tries += 1
        found = rng.choice(_OPERATORS)(lines, rng)
        if found is None:
            continue
        description, changed = found
        made += 1
        yield description, "\n".join(changed)
