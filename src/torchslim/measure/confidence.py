"""How sure a measured number is: speed-up intervals from rounds, ties, accuracy standard errors.

A speed-up is the ratio ``baseline time / candidate time`` (above 1: the candidate is faster).
Timing runs in rounds; in each round every candidate and the baseline run back to back, so the
per-round ratio ``baseline median in round r / candidate median in round r`` cancels the load the
machine had during that round. The speed-up reported is the **median of the per-round ratios**;
its interval is a seeded bootstrap percentile interval of that median over rounds.

Why the median and not the geometric mean: on a shared machine a burst of load that hits only one
side of one round makes that round's ratio an outlier. The median ignores it; the geometric mean
moves with it, and so does its interval. The price is a coarser interval with few rounds (the
bootstrap median takes only the values of the rounds), which is why timing runs at least a few
rounds (five by default) before it asks whether the interval is narrow.

Accuracy on a test set of ``n`` samples is a binomial proportion: its standard error is
``sqrt(p (1 - p) / n)``, here in percentage points, and one sample is worth ``100 / n`` points.
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np

from torchslim.core.errors import TorchSlimError

CONFIDENCE = 0.95  # two-sided level of every interval
TARGET_WIDTH = 0.05  # an interval is narrow when it lies within +-5% of its ratio
RESAMPLES = 2000  # bootstrap resamples: the 2.5th/97.5th percentiles are stable to ~1% of the width
NOISE_Z = 2.0  # accuracies differ when |delta| > NOISE_Z x the standard error of the difference


def check_fraction(name: str, value: Any, *, low: float = 0.0, high: float = 1.0) -> float:
    """``value`` as a float strictly between ``low`` and ``high``, else a :class:`TorchSlimError`."""
    # NaN fails the comparison too
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not low < value < high:
        raise TorchSlimError(f"{name} must be a finite number strictly between {low:g} and {high:g}, "
                             f"got {value!r}.")
    return float(value)


def check_resamples(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise TorchSlimError(f"resamples must be a positive integer (2000 is plenty for a 95% interval), "
                             f"got {value!r}.")
    return value


def check_seed(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TorchSlimError(f"seed must be an integer, got {value!r}.")
    return value


def order_stream(names: Sequence[str], seed: int) -> Iterator[list[str]]:
    """An endless sequence of round orders of ``names``, rotated and reshuffled with a seeded RNG.

    Rounds come in blocks of ``len(names)``: a block runs the rotations of a freshly shuffled
    order, so within a block every candidate takes every position once (none always runs first,
    right after the pause between rounds), and the reshuffle per block means no candidate always
    follows the same one (a candidate that leaves caches cold or a thread pool spinning does not
    always slow down the same neighbour). The same ``seed`` gives the same orders.
    """
    rng = random.Random(check_seed(seed))
    names, base = list(names), None
    while True:
        previous, base = base, rng.sample(names, len(names))
        while len(names) > 2 and base in _rotations(previous):  # 3+ names: each block brings new neighbours
            base = rng.sample(names, len(names))
        yield from _rotations(base)


def _rotations(order: list[str] | None) -> list[list[str]]:
    return [order[i:] + order[:i] for i in range(len(order))] if order else []


def round_orders(names: Sequence[str], rounds: int, seed: int) -> list[list[str]]:
    """The first ``rounds`` orders of :func:`order_stream` (what a timing run with ``seed`` uses)."""
    stream = order_stream(names, seed)
    return [next(stream) for _ in range(rounds)]


def per_round_ratios(baseline_ms: Sequence[float], candidate_ms: Sequence[float]) -> list[float]:
    """``baseline_ms[r] / candidate_ms[r]`` for every round (medians of each round, same length).

    Raises:
        TorchSlimError: lengths differ, no rounds, or a time that is not positive and finite.
    """
    if len(baseline_ms) != len(candidate_ms) or not baseline_ms:
        raise TorchSlimError(f"Per-round ratios need as many baseline as candidate rounds (at least one), "
                             f"got {len(baseline_ms)} and {len(candidate_ms)}.")
    for t in (*baseline_ms, *candidate_ms):
        if not (math.isfinite(t) and t > 0):
            raise TorchSlimError(f"A round's time must be a positive finite number of ms, got {t!r}: the "
                                 "callable ran below the clock's resolution; time a larger batch.")
    return [b / c for b, c in zip(baseline_ms, candidate_ms, strict=True)]


def bootstrap_interval(ratios: Sequence[float], *, confidence: float = CONFIDENCE, resamples: int = RESAMPLES,
                       seed: int = 0) -> tuple[float, float, float]:
    """``(median, low, high)``: the median of per-round ``ratios`` and its bootstrap interval.

    The rounds are resampled with replacement ``resamples`` times (a seeded numpy generator); the
    interval is the ``(1 - confidence) / 2`` and ``(1 + confidence) / 2`` percentiles of the
    resampled medians. One round gives a zero-width interval, which says nothing: callers run
    several rounds first.

    Raises:
        TorchSlimError: no ratios, a ratio that is not positive and finite, or bad options.
    """
    confidence = check_fraction("confidence", confidence)
    check_resamples(resamples)
    values = np.asarray(list(ratios), dtype=float)
    if values.size == 0 or not np.all(np.isfinite(values) & (values > 0)):
        raise TorchSlimError(f"Ratios must be a non-empty list of positive finite numbers, "
                             f"got {list(ratios)!r}.")
    rng = np.random.default_rng(check_seed(seed))
    picks = rng.integers(0, values.size, size=(resamples, values.size))
    medians = np.median(values[picks], axis=1)
    alpha = (1.0 - confidence) / 2.0
    low, high = np.quantile(medians, [alpha, 1.0 - alpha])
    return float(np.median(values)), float(low), float(high)


def is_narrow(ratio: float, low: float, high: float, width: float = TARGET_WIDTH) -> bool:
    """Whether ``[low, high]`` lies within ``ratio x (1 +- width)``."""
    return ratio - low <= width * ratio and high - ratio <= width * ratio


def intervals_overlap(a: tuple[float, float], b: tuple[float, float]) -> bool:
    """Whether the intervals ``(low, high)`` ``a`` and ``b`` share a point: a tie within noise."""
    for name, (low, high) in (("first", a), ("second", b)):
        if not (math.isfinite(low) and math.isfinite(high) and low <= high):
            raise TorchSlimError(f"The {name} interval must be (low, high) with finite low <= high, "
                                 f"got ({low!r}, {high!r}).")
    return a[0] <= b[1] and b[0] <= a[1]


def _check_accuracy(accuracy: Any, n: Any, where: str) -> tuple[float, int]:
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise TorchSlimError(f"{where}: the test-set size must be a positive integer, got {n!r}.")
    if isinstance(accuracy, bool) or not isinstance(accuracy, (int, float)) or not 0.0 <= accuracy <= 100.0:
        raise TorchSlimError(f"{where}: accuracy must be in percent, a number in [0, 100], got {accuracy!r}.")
    return float(accuracy), n


def sample_points(n: int) -> float:
    """What one test sample is worth, in percentage points, on a test set of ``n`` (100 / n)."""
    _check_accuracy(0.0, n, "sample_points")
    return 100.0 / n


def accuracy_standard_error(accuracy: float, n: int) -> float:
    """Standard error of an accuracy, in percentage points: ``100 x sqrt(p (1 - p) / n)``.

    Args:
        accuracy: top-1 accuracy in percent (0..100), as :class:`MeasureRecord` holds it.
        n: the number of test samples it was computed on.

    At 0% or 100% the binomial formula gives 0; a difference is then judged on the other
    accuracy's error alone, so compare such extremes with care. 90% on 10,000 samples: 0.30 points.

    Raises:
        TorchSlimError: accuracy outside [0, 100], or ``n`` not a positive integer.
    """
    accuracy, n = _check_accuracy(accuracy, n, "accuracy_standard_error")
    p = accuracy / 100.0
    return 100.0 * math.sqrt(p * (1.0 - p) / n)


def accuracies_differ(a: float, n_a: int, b: float, n_b: int, *, z: float = NOISE_Z) -> bool:
    """Whether accuracies ``a`` and ``b`` (percent, on ``n_a`` and ``n_b`` samples) differ by more
    than noise: ``|a - b| > z x sqrt(se_a^2 + se_b^2)``.

    Raises:
        TorchSlimError: an accuracy outside [0, 100], a size that is not a positive integer, or
            ``z`` not a positive finite number.
    """
    se_a = accuracy_standard_error(a, n_a)
    se_b = accuracy_standard_error(b, n_b)
    if isinstance(z, bool) or not isinstance(z, (int, float)) or not (math.isfinite(z) and z > 0):
        raise TorchSlimError(f"z must be a positive finite number (2 for about 95%), got {z!r}.")
    return abs(a - b) > z * math.hypot(se_a, se_b)


def spread(values: Sequence[float]) -> float:
    """``(p90 - p10) / median`` of ``values``: 0 on a perfectly quiet machine (0 when empty)."""
    if not values:
        return 0.0
    p10, median, p90 = np.quantile(np.asarray(values, dtype=float), [0.1, 0.5, 0.9])
    return float((p90 - p10) / median) if median > 0 else math.inf


def tied_pairs(stats: Sequence[Any]) -> list[tuple[str, str]]:
    """Pairs of names among ``stats`` (:class:`~torchslim.measure.record.RatioStat` of one setting
    and baseline) whose intervals overlap: speed-ups a report must call a tie, not a ranking."""
    out = []
    for i, a in enumerate(stats):
        out += [(a.name, b.name) for b in stats[i + 1:] if a.ties_with(b)]
    return out
