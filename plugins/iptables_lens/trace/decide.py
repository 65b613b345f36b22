"""What a dialect's evaluator tells the walk when a rule's match is not simply true or false.

Both rule languages have matches the tracer cannot decide (a rate limit, a quota, a hash of the packet) and
matches that hold only with a probability (iptables' `-m statistic`, nft's `numgen`); they say so with these,
and the walk turns them into labelled outcomes.
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction


class Undecided(Exception):
    """A match whose result the tracer cannot know; the message says which and why."""


@dataclass(frozen=True)
class Split:
    """A match that holds with `probability` (and not otherwise), with a label for each side."""

    probability: Fraction
    label: str
    otherwise: str
