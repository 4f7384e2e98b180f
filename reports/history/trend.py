"""Whether a configuration's latest runs are slower than its history: a rank test of recent run medians against the
runs before them, with a minimum effect, and "not enough history" where no test could reach a verdict.

The value of a run is its median (per-process medians when it ran several processes): two processes differ by more
than one process's samples vary (METHOD.md, 12), so samples of different runs are never pooled. The shortest segment
tested is two runs: a single slow run (a busy neighbour, a throttled clock) cannot be told from a step, and rank
tests of one value against twenty cannot reach a useful significance anyway. So the check asks, for each recent
segment of k runs (k = 2 to 5, the latest run always included), whether those k run medians are slower than the
up to 20 runs before them:

- a one-sided Mann-Whitney U test (recent worse than window), p below 0.05 / 4 = 0.0125 (Bonferroni over the four
  segment lengths tried, so the check as a whole cries wolf at most 5% of the time on a history without a change,
  whatever the distribution of the run medians, as long as runs are exchangeable; measured on synthetic
  histories in tests/reports/test_history_trend.py and the README);
- a shift of the segment's median beyond the threshold (5%, as ``compare``), and the latest run itself beyond it
  against the window's median, so a change that has already recovered is not flagged;
- window and segment sizes whose smallest possible p is below the significance; with fewer runs the verdict is
  "not enough history", never "no change".

Where several segments qualify the most significant names the change ("slower since" its first run), which answers
"when did it get slower". The test is rank-based, so the verdict on a time (lower is better) and on a throughput
(higher is better) agree; the direction only decides which tail counts as worse.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from reports.compare import DEFAULT_THRESHOLD
from reports.history.queries import Point, Series, iso_utc

# Lengths of the recent segment tried; a single run is never a verdict (see the module docstring).
RECENT_RUNS: tuple[int, ...] = (2, 3, 4, 5)
# Earlier runs a segment is tested against: enough to learn the machine's run-to-run spread, recent enough that
# an old, accepted change does not count against the present.
WINDOW_RUNS = 20
MIN_WINDOW_RUNS = 5
FAMILY_SIGNIFICANCE = 0.05
SIGNIFICANCE = FAMILY_SIGNIFICANCE / len(RECENT_RUNS)
VERDICTS: tuple[str, ...] = ("slower", "faster", "no change", "not enough history")


@dataclass(frozen=True)
class Metric:
    """A figure a trend follows, and which way is better."""

    name: str
    column: str  # the history's results column
    unit: str
    lower_is_better: bool


METRICS: dict[str, Metric] = {
    "time": Metric("time", "median_ms", "median ms per batch", lower_is_better=True),
    "throughput": Metric("throughput", "images_per_s", "images/s", lower_is_better=False),
}


@dataclass(frozen=True)
class TrendCheck:
    """The verdict on one series, with what it rests on.

    ``recent_runs`` is the length of the segment behind the verdict (the one with the smallest p when the verdict
    is "no change"; 0 when there is not enough history); ``change`` is the segment's median over the window's,
    minus 1, in the metric's own units (a slower throughput is a negative change).
    """

    verdict: str
    runs: int
    recent_runs: int
    window_runs: int
    latest: float
    recent_median: float | None
    window_median: float | None
    change: float | None
    p_value: float | None
    why: str


def smallest_one_sided_p(n_recent: int, n_window: int) -> float:
    """The smallest one-sided Mann-Whitney U p-value of these sizes: every recent value beyond every window one."""
    return 1 / math.comb(n_recent + n_window, n_recent)


def fewest_runs() -> int:
    """The fewest runs in a series for which some segment can reach a verdict."""
    return min(recent + window for recent in RECENT_RUNS for window in range(MIN_WINDOW_RUNS, WINDOW_RUNS + 1)
               if smallest_one_sided_p(recent, window) < SIGNIFICANCE)


def check_trend(values: Sequence[float], metric: Metric = METRICS["time"],
                threshold: float = DEFAULT_THRESHOLD) -> TrendCheck:
    """Test whether the latest runs of one series (one value per run, oldest first) are worse than the runs before.

    ``threshold`` is the smallest relative shift that counts, as a fraction (0.05: 5%).
    """
    return check_trends([values], metric, threshold)[0]


def check_trends(series_values: Sequence[Sequence[float]], metric: Metric = METRICS["time"],
                 threshold: float = DEFAULT_THRESHOLD) -> list[TrendCheck]:
    """``check_trend`` of many series at once. The Mann-Whitney tests of all segments of the same sizes go to
    scipy in one call, since one call costs about what twenty rows of arithmetic do: this keeps ``history check``
    of a thousand runs well within a second."""
    if not 0 <= threshold < 1:
        raise ValueError(f"threshold must be a fraction in [0, 1). Received: threshold={threshold!r}")
    all_values = [[float(value) for value in values] for values in series_values]
    if any(not values for values in all_values):
        raise ValueError("a trend needs at least one run")
    segments: list[list[_Segment]] = [[] for _ in all_values]
    # (recent runs, window runs, tail, tied) -> the segments to test alike, with their values.
    pending: dict[tuple[int, int, str, bool], list[tuple[_Segment, list[float], list[float]]]] = {}
    for values, found in zip(all_values, segments, strict=True):
        for recent_count in RECENT_RUNS:
            window = values[max(0, len(values) - recent_count - WINDOW_RUNS):len(values) - recent_count]
            if len(window) < MIN_WINDOW_RUNS or smallest_one_sided_p(recent_count, len(window)) >= SIGNIFICANCE:
                continue
            recent = values[-recent_count:]
            segment = _Segment(recent_count, len(window), statistics.median(recent), statistics.median(window))
            # Only the tail the medians moved towards can pass the threshold, so only that one is tested.
            higher = segment.recent_median >= segment.window_median
            segment.direction = "worse" if higher == metric.lower_is_better else "better"
            tied = len(set(recent + window)) < len(recent) + len(window)
            key = (recent_count, len(window), "greater" if higher else "less", tied)
            pending.setdefault(key, []).append((segment, recent, window))
            found.append(segment)
    from scipy.stats import mannwhitneyu  # imported where used: `history show` never needs scipy.stats

    for (_, _, tail, tied), entries in pending.items():
        # scipy's own choice for these sizes: the exact distribution, or the normal one where values tie.
        recents, windows = np.array([entry[1] for entry in entries]), np.array([entry[2] for entry in entries])
        test = mannwhitneyu(recents, windows, alternative=tail, method="asymptotic" if tied else "exact", axis=1)
        for (segment, _, _), p_value in zip(entries, np.atleast_1d(test.pvalue), strict=True):
            segment.p_value = float(p_value)
    return [_verdict(values, found, metric, threshold) for values, found in zip(all_values, segments, strict=True)]


@dataclass
class _Segment:
    """The latest ``recent_runs`` of a series against the ``window_runs`` before them."""

    recent_runs: int
    window_runs: int
    recent_median: float
    window_median: float
    direction: str = ""  # "worse" or "better": where the segment's median moved, in the metric's sense
    p_value: float = math.nan

    @property
    def change(self) -> float:
        return self.recent_median / self.window_median - 1


def _verdict(values: list[float], segments: list[_Segment], metric: Metric, threshold: float) -> TrendCheck:
    latest = values[-1]
    if not segments:
        return TrendCheck("not enough history", len(values), 0, 0, latest, None, None, None, None,
                          f"{len(values)} run{'s' if len(values) != 1 else ''}; a verdict needs at least "
                          f"{fewest_runs()} (the latest {min(RECENT_RUNS)}-{max(RECENT_RUNS)} against at least "
                          f"{MIN_WINDOW_RUNS} before them)")
    for direction, verdict in (("worse", "slower"), ("better", "faster")):
        qualifying = [segment for segment in segments if segment.direction == direction
                      and segment.p_value < SIGNIFICANCE
                      and _beyond(segment.recent_median, segment.window_median, threshold, metric, direction)
                      and _beyond(latest, segment.window_median, threshold, metric, direction)]
        if qualifying:
            best = min(qualifying, key=lambda segment: (segment.p_value, -segment.recent_runs))
            why = (f"the latest {best.recent_runs} runs are {verdict} than the {best.window_runs} before them "
                   f"({best.change:+.1%} in {metric.unit}): one-sided Mann-Whitney U "
                   f"p = {best.p_value:.2g} < {SIGNIFICANCE:g}, beyond {threshold:.0%}")
            return TrendCheck(verdict, len(values), best.recent_runs, best.window_runs, latest, best.recent_median,
                              best.window_median, best.change, best.p_value, why)
    closest = min(segments, key=lambda segment: (segment.p_value, -segment.recent_runs))
    why = (f"no segment of the latest {min(RECENT_RUNS)}-{max(RECENT_RUNS)} runs is both significantly "
           f"(p < {SIGNIFICANCE:g}) and beyond {threshold:.0%} slower or faster than the runs before it; "
           f"the closest: latest {closest.recent_runs} against {closest.window_runs}, {closest.change:+.1%}, "
           f"p = {closest.p_value:.2g}")
    return TrendCheck("no change", len(values), closest.recent_runs, closest.window_runs, latest,
                      closest.recent_median, closest.window_median, closest.change, closest.p_value, why)


def _beyond(value: float, reference: float, threshold: float, metric: Metric, direction: str) -> bool:
    """Whether ``value`` is worse (or better) than ``reference`` by more than ``threshold``, in the metric's sense."""
    higher = value > reference * (1 + threshold)
    lower = value < reference / (1 + threshold)
    if metric.lower_is_better:
        return higher if direction == "worse" else lower
    return lower if direction == "worse" else higher


@dataclass(frozen=True)
class ConfigurationCheck:
    """The verdict on one configuration on one machine, with the run where the recent segment starts."""

    series: Series
    check: TrendCheck
    since: Point | None  # the first run of the segment behind the verdict; None without enough history

    def to_dict(self) -> dict[str, Any]:
        check = self.check
        return {
            "configuration": self.series.configuration, "machine": self.series.machine,
            "machine_id": self.series.machine_id, "verdict": check.verdict, "runs": self.series.runs,
            "recent_runs": check.recent_runs, "window_runs": check.window_runs, "latest": check.latest,
            "recent_median": check.recent_median, "window_median": check.window_median, "change": check.change,
            "p_value": check.p_value, "why": check.why,
            "since": iso_utc(self.since.started_at) if self.since is not None else None,
            "since_commit": self.since.git_commit if self.since is not None else None,
        }


def points_needed() -> int:
    """The latest runs of a series that ``check_trend`` can look at: the longest segment and its full window."""
    return max(RECENT_RUNS) + WINDOW_RUNS


def check_series(series: Sequence[Series], metric: Metric = METRICS["time"],
                 threshold: float = DEFAULT_THRESHOLD) -> list[ConfigurationCheck]:
    """``check_trend`` on each series (configuration and machine), naming the run where a change starts."""
    trends = check_trends([[getattr(point, metric.column) for point in entry.points] for entry in series], metric,
                          threshold)
    return [ConfigurationCheck(entry, check, entry.points[-check.recent_runs] if check.recent_runs else None)
            for entry, check in zip(series, trends, strict=True)]
