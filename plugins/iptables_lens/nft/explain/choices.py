"""Phrases for a lookup in a map written in the rule: `numgen random mod 2 vmap { 0 : goto a, 1 : goto b }` picks
one of 2 at random, each with probability 1/2; `tcp dport vmap { 22 : accept }` decides by the port.

A random `numgen` gives each of its `mod` numbers the same chance, so an element's probability is the count of
numbers its key covers over `mod`; numbers no element covers find nothing (a verdict map then does nothing, a
NAT map fails the rule). An incrementing `numgen` takes the numbers in turn, so the same fractions are shares
of the packets in order rather than chances.

>>> from iptables_lens.nft.model import Const, Element, Numgen, Verdict
>>> two = (Element(Const("integer", 0), Verdict("goto", "a")), Element(Const("integer", 1), Verdict("goto", "b")))
>>> choice(Numgen("random", 2), two, lambda data: "goes to " + data.target)
'picks one of 2 at random, each with probability 1/2: goes to a or b and does not come back here'
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from fractions import Fraction

from iptables_lens.iptables.explain.words import join_or
from iptables_lens.nft.explain.words import noun, value_words, verdict_words
from iptables_lens.nft.model import Const, Element, Expr, Numgen, Range, Verdict


def _numbers(key: Expr) -> set[int] | None:
    """The numbers an element's key covers, or None for a key that is no number."""
    if isinstance(key, Const) and isinstance(key.value, int) and not isinstance(key.value, bool):
        return {key.value}
    if isinstance(key, Range) and isinstance(key.low, Const) and isinstance(key.high, Const):
        low, high = key.low.value, key.high.value
        if isinstance(low, int) and isinstance(high, int):
            return set(range(low, high + 1))
    return None


def shares(numgen: Numgen, elements: Sequence[Element]) -> list[Fraction] | None:
    """Each element's share of the numbers `numgen` gives (its probability, for a random one), or None if a key
    is no number."""
    drawn = set(range(numgen.offset, numgen.offset + numgen.mod))
    found = []
    for element in elements:
        numbers = _numbers(element.key)
        if numbers is None:
            return None
        found.append(Fraction(len(numbers & drawn), numgen.mod))
    return found


def lead(key: Expr, elements: Sequence[Element]) -> str | None:
    """How a `numgen` picks among `elements`: "one of 2 at random, each with probability 1/2", "the only one, with
    probability 1"; None for any other key."""
    fractions = shares(key, elements) if isinstance(key, Numgen) else None
    if fractions is None:
        return None
    assert isinstance(key, Numgen)
    left = 1 - sum(fractions, Fraction(0))
    tail = f" (for the other {left} nothing is found)" if left else ""
    if key.mode == "inc":
        span = f"from {key.offset} to {key.offset + key.mod - 1}"
        parts = ", ".join(str(f) for f in fractions)
        return f"each in turn, by a counter {span} (shares {parts} of the packets){tail}"
    if len(fractions) == 1 and fractions[0] == 1:
        return "the only one, with probability 1"
    if len(set(fractions)) == 1:
        return f"one of {len(fractions)} at random, each with probability {fractions[0]}{tail}"
    return f"one at random, with probabilities {', '.join(str(f) for f in fractions)} in order{tail}"


def say_verdicts(verdicts: Sequence[Expr]) -> list[str] | str:
    """Verdicts as a choice lists them: gotos (or jumps) all alike read as one verb and their chains."""
    kinds = {v.kind for v in verdicts if isinstance(v, Verdict)}
    if len(kinds) == 1 and len(verdicts) == sum(isinstance(v, Verdict) for v in verdicts) and kinds <= {"goto", "jump"}:
        targets = join_or([v.target or "" for v in verdicts if isinstance(v, Verdict)])
        return f"goes to {targets} and does not come back here" if kinds == {"goto"} else f"jump to {targets}"
    return [verdict_words(v) if isinstance(v, Verdict) else value_words(v) for v in verdicts]


def choice(key: Expr, elements: Sequence[Element], say: Callable[[Expr], str]) -> str:
    """How a lookup of `key` in the anonymous map `elements` picks, and what each element's value does (`say`
    words one value): "picks one of 2 at random, each with probability 1/2: goes to a or b and does not come back
    here" for a verdict map keyed by a random `numgen`, "by the destination port: 22 → accepts" otherwise."""
    picked = lead(key, elements)
    datas = [e.data for e in elements if e.data is not None]
    if picked is not None and len(datas) == len(elements):
        if all(isinstance(d, Verdict) for d in datas):
            said = say_verdicts(datas)
            return f"picks {picked}: {said if isinstance(said, str) else join_or(said)}"
        return f"picks {picked}: {join_or([say(d) for d in datas])}"
    pairs = [f"{value_words(e.key)} → {say(e.data) if e.data is not None else 'in the set'}" for e in elements]
    return f"by {noun(key)}: {', '.join(pairs)}"
