"""Statistics of a list of timing samples; everything a report shows is derived here from the raw samples."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

# A result whose interquartile range exceeds this fraction of its median is flagged as noisy.
NOISY_IQR_RATIO = 0.10
CONFIDENCE = 0.95


@dataclass(frozen=True)
class MedianCI:
    """A distribution-free confidence interval of a median, with the coverage it really has.

    ``level`` is the exact coverage of the order statistics chosen: at least ``CONFIDENCE`` from 6 values on,
    and below it for fewer (5 values bracket the median with 94%, 2 values with 50%), since no pair of order
    statistics of so few values reaches 95%.
    """

    low_ms: float
    high_ms: float
    level: float
    n: int


@dataclass(frozen=True)
class Summary:
    """Robust and classic statistics of one configuration's samples, in milliseconds.

    The median is the headline figure: one slow outlier (a page fault, a scheduler hiccup) moves the mean
    but not the median. ``std_ms`` is the sample standard deviation (n - 1 in the denominator), None for n = 1.
    """

    n: int
    median_ms: float
    mean_ms: float
    std_ms: float | None
    min_ms: float
    max_ms: float
    iqr_ms: float
    p5_ms: float
    p95_ms: float
    median_ci: MedianCI
    noisy: bool


def _binomial_half_cdf(k: np.ndarray | int, n: int) -> np.ndarray:
    """P(B <= k) for B ~ Binomial(n, 1/2): ``scipy.special.bdtr``, the function ``scipy.stats.binom.cdf`` calls.

    Imported from scipy.special, not scipy.stats: every command that summarises a result needs this, and
    scipy.stats takes a second or more to import (scipy.special about a tenth of that).
    """
    from scipy.special import bdtr

    return bdtr(k, n, 0.5)


def median_ci_ranks(n: int, confidence: float = CONFIDENCE) -> tuple[int, int]:
    """1-based ranks (r, s) of the order statistics bounding a distribution-free CI of the median.

    The count of samples below the true median is Binomial(n, 1/2), so [x_(r), x_(s)] with s = n - r + 1
    covers the median with probability 1 - 2 * P(B <= r - 1) >= ``confidence``. For n = 100 this gives the
    40th and 61st values. Below n = 6 no pair reaches 95% and the interval is [min, max].
    """
    if n < 1:
        raise ValueError(f"need at least one sample. Received: n={n}")
    # r - 1 is the binomial's (1 - confidence) / 2 quantile: the smallest k with P(B <= k) >= that tail.
    tail = (1 - confidence) / 2
    lower = int(np.argmax(_binomial_half_cdf(np.arange(n + 1), n) >= tail))
    lower = max(lower, 1)
    return lower, n - lower + 1


def ci_coverage(n: int, low_rank: int) -> float:
    """Probability that [x_(r), x_(n-r+1)] of n values covers their distribution's median (r = ``low_rank``)."""
    return float(1 - 2 * _binomial_half_cdf(low_rank - 1, n))


def median_ci(values: Sequence[float], confidence: float = CONFIDENCE) -> MedianCI:
    """The order-statistic interval of the median of ``values`` (``median_ci_ranks``) and its exact coverage."""
    ordered = np.sort(np.asarray(values, dtype=float))
    n = int(ordered.size)
    low, high = median_ci_ranks(n, confidence)
    return MedianCI(float(ordered[low - 1]), float(ordered[high - 1]), ci_coverage(n, low), n)


def summarize(samples_ms: Sequence[float]) -> Summary:
    """Summarise samples; percentiles use linear interpolation (numpy's default, as pandas does)."""
    values = np.asarray(samples_ms, dtype=float)
    if values.ndim != 1 or values.size == 0:
        raise ValueError(f"need a non-empty list of samples. Received: {len(values)} samples")
    if not np.all(np.isfinite(values)):
        raise ValueError("samples must be finite numbers")
    n = int(values.size)
    ordered = np.sort(values)
    p5, q1, median, q3, p95 = np.percentile(ordered, [5, 25, 50, 75, 95])
    std = float(np.std(values, ddof=1)) if n > 1 else None
    return Summary(
        n=n,
        median_ms=float(median),
        mean_ms=float(np.mean(values)),
        std_ms=std,
        min_ms=float(ordered[0]),
        max_ms=float(ordered[-1]),
        iqr_ms=float(q3 - q1),
        p5_ms=float(p5),
        p95_ms=float(p95),
        median_ci=median_ci(ordered),
        noisy=bool(median > 0 and (q3 - q1) / median > NOISY_IQR_RATIO),
    )
