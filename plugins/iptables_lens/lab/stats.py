"""Is what the kernel did consistent with the tracer's probabilities? Exact binomial tests.

For each predicted outcome, the number of connections that took it is binomial(n, p) if the tracer is right.
Each outcome is tested two-sided at ALPHA / k (Bonferroni over k outcomes), so a correct tracer fails the
whole check less often than once in 1 / ALPHA = 10,000 runs.
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction
from math import comb

ALPHA = Fraction(1, 10_000)


def binomial_two_sided_p(k: int, n: int, p: Fraction) -> float:
    """P(a binomial(n, p) count is at most as likely as k): the exact two-sided p-value."""
    pf = float(p)
    probabilities = [comb(n, i) * pf**i * (1 - pf) ** (n - i) for i in range(n + 1)]
    observed = probabilities[k]
    # Sum every count at most as likely as the observed one (with a little room for rounding).
    return min(1.0, sum(q for q in probabilities if q <= observed * (1 + 1e-9)))


@dataclass(frozen=True)
class ProportionCheck:
    outcome: str
    predicted: Fraction
    observed: int
    total: int
    p_value: float
    threshold: float

    @property
    def ok(self) -> bool:
        return self.p_value >= self.threshold

    def __str__(self) -> str:
        verdict = "consistent" if self.ok else "NOT consistent"
        return (f"{self.outcome}: {self.observed}/{self.total} observed, {self.predicted} predicted "
                f"(p = {self.p_value:.3g}, threshold {self.threshold:.2g}): {verdict}")


def check_proportions(counts: dict[str, int], predicted: dict[str, Fraction]) -> list[ProportionCheck]:
    """Test observed counts per outcome against predicted probabilities; outcomes seen but not predicted
    count as observed with probability 0 and fail."""
    total = sum(counts.values())
    keys = sorted(set(counts) | set(predicted))
    threshold = float(ALPHA) / max(len(keys), 1)
    checks = []
    for key in keys:
        p = predicted.get(key, Fraction(0))
        k = counts.get(key, 0)
        if p == 0:
            value = 1.0 if k == 0 else 0.0
        elif p == 1:
            value = 1.0 if k == total else 0.0
        else:
            value = binomial_two_sided_p(k, total, p)
        checks.append(ProportionCheck(key, p, k, total, value, threshold))
    return checks
