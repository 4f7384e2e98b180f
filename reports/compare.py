"""Compare two results or two runs: a change is a shift both significant and larger than the machine's drift.

A fixed threshold alone cries wolf: two runs of the same code differ by a few percent from scheduling, clocks
and memory placement. A test alone is no better: with a hundred samples Mann-Whitney U finds a 0.5% shift
nobody should act on, and samples of one process share its start-up luck, so a test on them mistakes two
processes for a change. So a verdict needs all of:

- a two-sided Mann-Whitney U p below ``SIGNIFICANCE``, on per-process medians when both sides ran several
  processes (``--repeats``), else on the samples;
- sample sizes that can reach that p with room to spare: with 5 process medians a side the smallest possible p
  is 0.0079, so one unlucky arrangement of ten numbers is already "significant" (asv refuses such verdicts too);
- a ratio of medians beyond the threshold and, for runs taken at different times, beyond the spread between
  processes that each run shows itself (the machine's drift while it ran): a shift smaller than the drift inside
  one run is no evidence of a change between two.

Otherwise the verdict is ``same``, or ``inconclusive`` where the samples could not have shown a change at all.
For decisions that matter, ``bench.interleave`` measures both sides alternately in one session, where drift
falls on both alike.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from bench.config import Config
from bench.errors import UsageError
from bench.record import Result, Run
from reports.history.machine import machine_of

SIGNIFICANCE = 0.01
# A verdict needs sample sizes whose smallest possible p-value is at most SIGNIFICANCE / REACH_MARGIN.
REACH_MARGIN = 4
# From this many processes on both sides, the test compares process medians instead of samples.
MIN_PROCESSES = 2
DEFAULT_THRESHOLD = 0.05
VERDICTS: tuple[str, ...] = ("slower", "faster", "same", "inconclusive")


class ComparisonError(UsageError):
    """Two runs that cannot be compared."""


class NothingInCommonError(ComparisonError):
    """No configuration was measured in both runs."""


@dataclass(frozen=True)
class Difference:
    """How ``new`` relates to ``base``: ratio of medians (new / base), the test, and the verdict with its reason."""

    base_median_ms: float
    new_median_ms: float
    ratio: float
    p_value: float
    basis: str  # what the test compared: "samples" or "process medians"
    allowance: float  # the smallest relative shift that counts: threshold or the runs' own drift
    verdict: str
    why: str


@dataclass(frozen=True)
class ConfigComparison:
    """One configuration measured in both runs."""

    config: Config
    difference: Difference


@dataclass(frozen=True)
class Comparison:
    """Every configuration of two runs: compared where both measured it, listed where only one did.

    ``failed_in_new`` holds the new run's failed results for configurations the base run measured: a
    configuration that stopped working is a regression no timing shows.
    """

    threshold: float
    compared: list[ConfigComparison]
    separate_sessions: bool = True
    only_in_base: list[Config] = field(default_factory=list)
    only_in_new: list[Config] = field(default_factory=list)
    failed_in_new: list[Result] = field(default_factory=list)
    # How the two runs' setups differ (machine, GPU, framework versions): a change may be theirs, not the code's.
    setup_differences: list[str] = field(default_factory=list)

    def with_verdict(self, verdict: str) -> list[ConfigComparison]:
        return [pair for pair in self.compared if pair.difference.verdict == verdict]

    @property
    def has_regression(self) -> bool:
        return bool(self.with_verdict("slower") or self.failed_in_new)

    def to_dict(self) -> dict[str, Any]:
        """Every verdict with its figures and reason, the tally and what only one run measured, for scripts."""
        return {
            "threshold": self.threshold,
            "separate_sessions": self.separate_sessions,
            "has_regression": self.has_regression,
            "tally": {verdict: len(self.with_verdict(verdict)) for verdict in VERDICTS},
            "setup_differences": list(self.setup_differences),
            "compared": [{"configuration": pair.config.label(), "config": pair.config.to_dict(),
                          **asdict(pair.difference)} for pair in self.compared],
            "only_in_base": [config.to_dict() for config in self.only_in_base],
            "only_in_new": [config.to_dict() for config in self.only_in_new],
            "failed_in_new": [{"configuration": result.config.label(), "config": result.config.to_dict(),
                               "reason": result.reason} for result in self.failed_in_new],
        }


def smallest_p(n_base: int, n_new: int) -> float:
    """The smallest two-sided Mann-Whitney U p-value two samples of these sizes can give (complete separation)."""
    return min(1.0, 2 / math.comb(n_base + n_new, n_base))


def drift_allowance(result: Result) -> float:
    """The relative spread of a result's process medians, (max - min) / median: how far the machine drifted
    between processes of one configuration inside one run. 0 for a single process."""
    medians = result.process_medians_ms
    if len(medians) < 2:
        return 0.0
    return (max(medians) - min(medians)) / result.derived.median_ms


def difference(base: Result, new: Result, threshold: float = DEFAULT_THRESHOLD, *,
               separate_sessions: bool = True) -> Difference:
    """Test whether ``new`` is slower or faster than ``base`` (two ok results of the same configuration).

    ``separate_sessions``: the two were measured at different times, so the machine may have drifted between
    them by as much as it drifted inside either, and a shift counts only beyond each run's own spread between
    processes. Measured alternately in one session (``bench.interleave``), drift falls on both alike and
    only ``threshold`` applies.
    """
    base_median, new_median = base.derived.median_ms, new.derived.median_ms
    ratio = new_median / base_median
    base_processes, new_processes = base.process_medians_ms, new.process_medians_ms
    if min(len(base_processes), len(new_processes)) >= MIN_PROCESSES:
        basis, base_values, new_values = "process medians", base_processes, new_processes
    else:
        basis, base_values, new_values = "samples", base.samples_ms, new.samples_ms
    from scipy.stats import mannwhitneyu  # imported where used: scipy.stats costs about a second to load

    p_value = float(mannwhitneyu(new_values, base_values, alternative="two-sided").pvalue)
    allowance = max([threshold, *((drift_allowance(base), drift_allowance(new)) if separate_sessions else ())])
    reachable = smallest_p(len(base_values), len(new_values))
    if reachable > SIGNIFICANCE / REACH_MARGIN:
        verdict = "inconclusive"
        why = (f"{len(base_values)} against {len(new_values)} {basis} cannot show a change: the smallest possible "
               f"p is {reachable:.2g}; measure more processes (--repeats)")
    else:
        verdict = verdict_of(ratio, p_value, allowance)
        why = _why(verdict, ratio, p_value, allowance, threshold)
    return Difference(base_median, new_median, ratio, p_value, basis, allowance, verdict, why)


def verdict_of(ratio: float, p_value: float, allowance: float) -> str:
    """The verdict for a ratio of medians (new over base), its p-value and the smallest shift that counts."""
    if not p_value < SIGNIFICANCE:
        return "same"
    if ratio > 1 + allowance:
        return "slower"
    if ratio < 1 / (1 + allowance):
        return "faster"
    return "same"


def _why(verdict: str, ratio: float, p_value: float, allowance: float, threshold: float) -> str:
    bound = f"{allowance:.1%} (the runs' own process spread)" if allowance > threshold else f"{allowance:.1%}"
    if verdict != "same":
        return f"p = {p_value:.2g} < {SIGNIFICANCE:g} and the shift is beyond {bound}"
    if not p_value < SIGNIFICANCE:
        return f"p = {p_value:.2g} is not below {SIGNIFICANCE:g}"
    return f"the shift {abs(ratio - 1):.1%} is within {bound}"


def compare_runs(base: Run, new: Run, threshold: float = DEFAULT_THRESHOLD, *,
                 separate_sessions: bool = True) -> Comparison:
    """Match the two runs' ok results by ``Config.key()`` and give each pair a verdict (``difference``).

    Raises ``NothingInCommonError`` when no configuration was measured in both runs, ``ComparisonError`` when
    a run holds one configuration twice, ``ValueError`` for a threshold outside [0, 1).
    """
    if not 0 <= threshold < 1:
        raise ValueError(f"threshold must be a fraction in [0, 1). Received: threshold={threshold!r}")
    base_ok = _measured_by_key(base)
    new_ok = _measured_by_key(new)
    common = [key for key in base_ok if key in new_ok]
    if not common:
        raise NothingInCommonError(
            f"no configuration was measured in both runs ({len(base_ok)} in {_name(base)}, "
            f"{len(new_ok)} in {_name(new)}); compare runs of the same models, frameworks, devices, modes, "
            "batch sizes and precisions"
        )
    failed_in_new = [
        result for result in new.results
        if result.status == "failed" and result.config.key() in base_ok and result.config.key() not in new_ok
    ]
    return Comparison(
        threshold=threshold,
        separate_sessions=separate_sessions,
        compared=[ConfigComparison(new_ok[key].config, difference(base_ok[key], new_ok[key], threshold,
                                                                  separate_sessions=separate_sessions))
                  for key in common],
        only_in_base=[result.config for key, result in base_ok.items() if key not in new_ok],
        only_in_new=[result.config for key, result in new_ok.items() if key not in base_ok],
        failed_in_new=failed_in_new,
        setup_differences=setup_differences(base, new, [new_ok[key].config for key in common]),
    )


def setup_differences(base: Run, new: Run, configs: Sequence[Config]) -> list[str]:
    """What differs between the setups the two runs measured ``configs`` on: the machine of each device (CPU model,
    cores, threads, memory; the GPU: the history's fingerprint, so both keep machines apart alike), and the
    versions of the frameworks; empty when nothing does."""
    differences = []
    for device in dict.fromkeys(config.device for config in configs):
        before, after = machine_of(base.environment, device), machine_of(new.environment, device)
        if before.key != after.key:
            differences.append(f"machine on {device}: {before.name} against {after.name}")
    for framework in dict.fromkeys(config.framework for config in configs):
        versions = [((run.environment.get("frameworks") or {}).get(framework) or {}).get("version")
                    for run in (base, new)]
        if versions[0] != versions[1]:
            differences.append(f"{framework} {versions[0] or 'version not recorded'} against "
                               f"{versions[1] or 'version not recorded'}")
    return differences


def _measured_by_key(run: Run) -> dict[tuple, Result]:
    measured: dict[tuple, Result] = {}
    for result in run.results:
        if result.status != "ok":
            continue
        key = result.config.key()
        if key in measured:
            raise ComparisonError(
                f"{_name(run)} measured {result.config.label()} twice (settings outside Config.key() differ, "
                "such as iterations or repeats); compare runs with one result per configuration"
            )
        measured[key] = result
    return measured


def _name(run: Run) -> str:
    return str(run.path) if run.path else "the run"
