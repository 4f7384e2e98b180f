"""Statistics against hand-computed values, including the mistakes peer suites made."""

import math

import pytest
from scipy import stats as scipy_stats

from bench.stats import NOISY_IQR_RATIO, median_ci, median_ci_ranks, summarize


def test_five_samples_by_hand():
    s = summarize([1.0, 2.0, 3.0, 4.0, 10.0])
    assert s.n == 5
    assert s.median_ms == 3.0
    assert s.mean_ms == 4.0
    # sample variance: (9 + 4 + 1 + 0 + 36) / (5 - 1) = 12.5
    assert s.std_ms == pytest.approx(math.sqrt(12.5))
    assert (s.min_ms, s.max_ms) == (1.0, 10.0)
    # linear interpolation: p25 at rank 1.0 -> 2, p75 at rank 3.0 -> 4, p5 at 0.2 -> 1.2, p95 at 3.8 -> 8.8
    assert s.iqr_ms == 2.0
    assert s.p5_ms == pytest.approx(1.2)
    assert s.p95_ms == pytest.approx(8.8)
    # n < 6: no order statistics reach 95%, so [min, max], which covers the median with 1 - 2 / 2^5 = 93.75%
    assert (s.median_ci.low_ms, s.median_ci.high_ms) == (1.0, 10.0)
    assert s.median_ci.level == pytest.approx(0.9375)
    assert s.noisy  # IQR / median = 0.67


def test_hundred_samples_by_hand():
    s = summarize([float(v) for v in range(100, 0, -1)])  # order of arrival must not matter
    assert s.n == 100  # the whole list counts: no sample dropped, none added
    assert s.median_ms == 50.5
    assert s.mean_ms == 50.5
    assert s.iqr_ms == pytest.approx(75.25 - 25.75)
    assert (s.median_ci.low_ms, s.median_ci.high_ms) == (40.0, 61.0)  # the 40th and 61st order statistics
    assert s.median_ci.level == pytest.approx(1 - 2 * scipy_stats.binom.cdf(39, 100, 0.5))
    assert s.median_ci.level >= 0.95


def test_constant_samples_have_zero_spread():
    # The seed started its squared-duration accumulator at 0.1, which gives constant samples a spread.
    s = summarize([7.0] * 50)
    assert s.std_ms == 0.0 and s.iqr_ms == 0.0
    assert (s.median_ci.low_ms, s.median_ci.high_ms) == (7.0, 7.0)
    assert not s.noisy


def test_std_is_sample_std_and_undefined_for_one_sample():
    assert summarize([2.0, 4.0]).std_ms == pytest.approx(math.sqrt(2.0))
    assert summarize([5.0]).std_ms is None


def test_noisy_threshold_is_ten_percent_of_median():
    assert NOISY_IQR_RATIO == 0.10
    # [100-w, 100, 100, 100+w]: p25 at rank 0.75 is 100 - w/4, p75 at rank 2.25 is 100 + w/4, so IQR = w/2
    assert summarize([80.0, 100.0, 100.0, 120.0]).iqr_ms == 10.0
    assert not summarize([80.0, 100.0, 100.0, 120.0]).noisy  # exactly 10%: not above the threshold
    assert summarize([70.0, 100.0, 100.0, 130.0]).noisy  # IQR 15


@pytest.mark.parametrize("n", [6, 10, 20, 37, 100, 1000])
def test_median_ci_ranks_are_the_tightest_with_95_percent_coverage(n):
    low, high = median_ci_ranks(n)
    assert high == n - low + 1
    coverage = 1 - 2 * scipy_stats.binom.cdf(low - 1, n, 0.5)
    assert coverage >= 0.95
    tighter = 1 - 2 * scipy_stats.binom.cdf(low, n, 0.5)
    assert tighter < 0.95


def test_median_ci_ranks_and_coverage_agree_with_scipy_stats_binom():
    """The ranks come from scipy.special's binomial CDF (a lighter import): they must be scipy.stats' quantile."""
    for confidence in (0.95, 0.5, 0.99):
        for n in range(1, 1501):
            low = max(int(scipy_stats.binom.ppf((1 - confidence) / 2, n, 0.5)), 1)
            assert median_ci_ranks(n, confidence) == (low, n - low + 1), (n, confidence)
    for n in (6, 57, 100, 1000, 1500):
        low, _ = median_ci_ranks(n)
        assert median_ci([float(v) for v in range(n)]).level == pytest.approx(
            1 - 2 * scipy_stats.binom.cdf(low - 1, n, 0.5), rel=1e-12, abs=1e-12)


@pytest.mark.parametrize("bad", [[], [1.0, float("nan")], [float("inf")]])
def test_bad_samples_are_refused(bad):
    with pytest.raises(ValueError):
        summarize(bad)


@pytest.mark.parametrize(("values", "level"), [([3.0, 1.0], 0.5), ([1.0, 2.0, 3.0], 0.75), ([5.0] * 5, 0.9375)])
def test_few_values_give_min_max_at_their_true_coverage(values, level):
    """Two process medians bracket the median only half the time: the interval must say 50%, not 95%."""
    interval = median_ci(values)
    assert (interval.low_ms, interval.high_ms) == (min(values), max(values))
    assert interval.level == pytest.approx(level) and interval.n == len(values)
