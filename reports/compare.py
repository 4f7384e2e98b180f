"""Compare two runs configuration by configuration: a regression is a shift both significant and large enough."""

from __future__ import annotations

from dataclasses import dataclass, field

from scipy.stats import mannwhitneyu

from bench.record import Config, Result, Run

SIGNIFICANCE = 0.01
# Worker processes per side from which the test uses per-process medians: with 5 against 5 the smallest
# two-sided Mann-Whitney p-value is 0.008, below SIGNIFICANCE; with fewer no difference could ever count.
MIN_PROCESSES = 5
DEFAULT_THRESHOLD = 0.05
VERDICTS: tuple[str, ...] = ("slower", "faster", "same")


class ComparisonError(ValueError):
    """Two runs that cannot be compared."""


class NothingInCommonError(ComparisonError):
    """No configuration was measured in both runs."""


@dataclass(frozen=True)
class ConfigComparison:
    """One configuration measured in both runs."""

    config: Config
    base_median_ms: float
    new_median_ms: float
    ratio: float
    p_value: float
    verdict: str
    basis: str = "samples"  # what the test compared: every sample, or each worker process's median


@dataclass(frozen=True)
class Comparison:
    """Every configuration of two runs: compared where both measured it, listed where only one did.

    ``failed_in_new`` holds the new run's failed results for configurations the base run measured: a
    configuration that stopped working is a regression no timing shows.
    """

    threshold: float
    compared: list[ConfigComparison]
    only_in_base: list[Config] = field(default_factory=list)
    only_in_new: list[Config] = field(default_factory=list)
    failed_in_new: list[Result] = field(default_factory=list)

    def with_verdict(self, verdict: str) -> list[ConfigComparison]:
        return [pair for pair in self.compared if pair.verdict == verdict]

    @property
    def has_regression(self) -> bool:
        return bool(self.with_verdict("slower") or self.failed_in_new)


def compare_runs(base: Run, new: Run, threshold: float = DEFAULT_THRESHOLD) -> Comparison:
    """Match the two runs' ok results by ``Config.key()`` and give each pair a verdict.

    ``slower`` when p < ``SIGNIFICANCE`` and new/base median > 1 + threshold, ``faster`` when p <
    ``SIGNIFICANCE`` and the ratio < 1 - threshold, else ``same``.

    A fixed threshold alone cries wolf: two runs of the same code differ by a few percent from scheduling,
    clocks and memory placement, and a noisy configuration's median moves by more than any sensible threshold.
    A test alone is no better: with a hundred samples Mann-Whitney U finds a 0.5% shift nobody should act on.
    So a verdict needs both: a two-sided Mann-Whitney U p-value below ``SIGNIFICANCE`` (the sample
    distributions differ, not just two medians) and a ratio of medians beyond the threshold.

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
        compared=[_compare(base_ok[key], new_ok[key], threshold) for key in common],
        only_in_base=[result.config for key, result in base_ok.items() if key not in new_ok],
        only_in_new=[result.config for key, result in new_ok.items() if key not in base_ok],
        failed_in_new=failed_in_new,
    )


def verdict_of(ratio: float, p_value: float, threshold: float) -> str:
    """The verdict for a ratio of medians (new over base) and the p-value of their samples' difference."""
    if not p_value < SIGNIFICANCE:
        return "same"
    if ratio > 1 + threshold:
        return "slower"
    if ratio < 1 - threshold:
        return "faster"
    return "same"


def _compare(base: Result, new: Result, threshold: float) -> ConfigComparison:
    base_median = base.derived()["median_ms"]
    new_median = new.derived()["median_ms"]
    # Samples of one process share its start-up luck, so a test on them mistakes a difference between two
    # processes for a change. Given enough processes on both sides, test their medians instead.
    if min(len(base.process_medians_ms), len(new.process_medians_ms)) >= MIN_PROCESSES:
        basis, base_values, new_values = "process medians", base.process_medians_ms, new.process_medians_ms
    else:
        basis, base_values, new_values = "samples", base.samples_ms, new.samples_ms
    p_value = float(mannwhitneyu(new_values, base_values, alternative="two-sided").pvalue)
    ratio = new_median / base_median
    return ConfigComparison(new.config, base_median, new_median, ratio, p_value, verdict_of(ratio, p_value, threshold),
                            basis)


def _measured_by_key(run: Run) -> dict[tuple, Result]:
    measured: dict[tuple, Result] = {}
    for result in run.results:
        if result.status != "ok":
            continue
        key = result.config.key()
        if key in measured:
            raise ComparisonError(
                f"{_name(run)} measured {result.config.label()} twice (settings outside Config.key() differ, "
                "such as threads or iterations); compare runs with one result per configuration"
            )
        measured[key] = result
    return measured


def _name(run: Run) -> str:
    return str(run.path) if run.path else "the run"
