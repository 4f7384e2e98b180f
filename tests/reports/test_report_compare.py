"""reports.compare: a verdict needs a significant shift and one beyond the threshold."""

from dataclasses import replace

import pytest
from synthetic import not_ok, ok, scaled

from bench.config import Config
from bench.record import Result, Run
from reports.compare import (
    SIGNIFICANCE,
    ComparisonError,
    NothingInCommonError,
    compare_runs,
    difference,
    smallest_p,
    verdict_of,
)


def run(*results) -> Run:
    return Run(environment={}, results=list(results))


def test_two_samples_of_the_same_distribution_are_the_same():
    (pair,) = compare_runs(run(ok(seed=1)), run(ok(seed=2))).compared
    assert pair.difference.verdict == "same"
    assert pair.difference.p_value > SIGNIFICANCE
    assert pair.difference.ratio == pytest.approx(1.0, abs=0.01)


def test_twenty_percent_slower_is_slower():
    base = ok(seed=1)
    comparison = compare_runs(run(base), run(scaled(base, 1.2)))
    (pair,) = comparison.compared
    assert pair.difference.verdict == "slower"
    assert pair.difference.ratio == pytest.approx(1.2)
    assert pair.difference.new_median_ms == pytest.approx(1.2 * pair.difference.base_median_ms)
    assert pair.difference.p_value < 1e-6
    assert comparison.has_regression


def test_twenty_percent_faster_is_faster_and_no_regression():
    base = ok(seed=1)
    comparison = compare_runs(run(base), run(scaled(base, 0.8)))
    assert [pair.difference.verdict for pair in comparison.compared] == ["faster"]
    assert not comparison.has_regression


def test_a_significant_shift_below_the_threshold_is_the_same():
    base = ok(seed=1)
    (pair,) = compare_runs(run(base), run(scaled(base, 1.03)), threshold=0.05).compared
    assert pair.difference.p_value < SIGNIFICANCE  # the test alone would call it a regression
    assert pair.difference.verdict == "same"


def test_sample_sizes_that_cannot_show_a_change_give_no_verdict():
    # Three samples each: even a 2x shift cannot reach p < 0.01 with a rank test (smallest p = 2 / C(6, 3) = 0.1).
    base = replace(ok(), samples_ms=(10.0, 11.0, 12.0))
    new = replace(ok(), samples_ms=(20.0, 22.0, 24.0))
    (pair,) = compare_runs(run(base), run(new)).compared
    assert pair.difference.ratio == pytest.approx(2.0)
    assert pair.difference.verdict == "inconclusive" and "smallest possible p is 0.1" in pair.difference.why


def test_smallest_p_by_hand():
    assert smallest_p(3, 3) == pytest.approx(2 / 20)
    assert smallest_p(5, 5) == pytest.approx(2 / 252)  # 0.0079: below 0.01, but with no room to spare
    assert smallest_p(7, 7) == pytest.approx(2 / 3432)


@pytest.mark.parametrize(
    ("ratio", "p_value", "verdict"),
    [(1.2, 0.001, "slower"), (0.8, 0.001, "faster"), (1.2, 0.02, "same"), (1.04, 0.001, "same"),
     (0.96, 0.001, "same"), (1.06, 0.001, "slower"), (1.2, SIGNIFICANCE, "same"), (0.94, 0.001, "faster")],
)
def test_verdict_needs_both_significance_and_size(ratio, p_value, verdict):
    assert verdict_of(ratio, p_value, 0.05) == verdict


def test_configurations_in_only_one_run_are_listed():
    shared, base_only, new_only = ok(), ok(framework="tf"), ok(batch_size=64)
    comparison = compare_runs(run(shared, base_only), run(shared, new_only))
    assert [pair.config for pair in comparison.compared] == [shared.config]
    assert comparison.only_in_base == [base_only.config]
    assert comparison.only_in_new == [new_only.config]


def test_a_configuration_that_now_fails_is_a_regression():
    failing = not_ok("failed", "CUDA error", framework="torch")
    base_result = Result(config=failing.config, status="ok", samples_ms=(1.0, 1.1, 1.2))
    comparison = compare_runs(run(ok(), base_result), run(ok(), failing))
    assert comparison.failed_in_new == [failing]
    assert comparison.only_in_base == [failing.config]
    assert comparison.has_regression


def test_nothing_in_common_is_an_error_that_says_so():
    with pytest.raises(NothingInCommonError, match="no configuration was measured in both runs"):
        compare_runs(run(ok(framework="torch")), run(ok(framework="tf")))


def test_failed_results_do_not_count_as_common():
    with pytest.raises(NothingInCommonError):
        compare_runs(run(not_ok("failed", "boom")), run(not_ok("failed", "boom")))


def test_a_configuration_measured_twice_in_one_run_is_refused():
    with pytest.raises(ComparisonError, match="twice"):
        compare_runs(run(ok(), ok(seed=3)), run(ok()))


@pytest.mark.parametrize("threshold", [-0.01, 1.0, 5.0])
def test_threshold_must_be_a_fraction(threshold):
    with pytest.raises(ValueError, match="threshold"):
        compare_runs(run(ok()), run(ok()), threshold=threshold)


def _processes(process_medians, spread=0.2):
    """A result of several processes, each's samples tight around its own median."""
    samples = tuple(m + spread * (i % 5 - 2) / 10 for m in process_medians for i in range(40))
    return Result(Config(model="alexnet", framework="torch", device="cpu", mode="forward", batch_size=8,
                         repeats=len(process_medians)), "ok",
                  samples_ms=samples, process_sample_counts=(40,) * len(process_medians))


def test_with_processes_a_rerun_on_other_processes_is_same_and_a_real_shift_is_slower():
    medians = [56.0, 57.0, 63.0, 56.5, 64.0, 57.5, 58.0]
    rerun = [63.5, 56.2, 57.5, 64.5, 56.8, 57.9, 58.2]
    (same,) = compare_runs(run(_processes(medians)), run(_processes(rerun))).compared
    assert same.difference.basis == "process medians" and same.difference.verdict == "same"
    # Pooled, the samples of two runs' processes differ far beyond chance: the reason to test process medians.
    assert difference(_processes(medians), _processes(rerun)).p_value > SIGNIFICANCE
    (slower,) = compare_runs(run(_processes(medians)), run(_processes([m * 1.3 for m in medians]))).compared
    assert slower.difference.verdict == "slower" and slower.difference.p_value < 0.001


def test_five_processes_a_side_are_too_few_for_a_verdict():
    """5 against 5 can only reach p = 0.0079: one arrangement of ten numbers, such as a drifting machine gives."""
    medians = [56.0, 57.0, 58.0, 56.5, 57.5]
    change = difference(_processes(medians), _processes([m * 1.3 for m in medians]))
    assert change.verdict == "inconclusive" and "--repeats" in change.why


def test_a_shift_within_the_runs_own_process_spread_is_not_a_change():
    """Processes of one run spread over 12% here: a 9% shift between runs is no evidence of a change, even
    though every new process is slower than every old one."""
    base = [50.0, 51.0, 56.0, 52.0, 50.5, 55.0, 53.0]
    change = difference(_processes(base), _processes([m * 1.09 for m in base]))
    assert change.p_value < SIGNIFICANCE
    assert change.allowance == pytest.approx((56.0 - 50.0) / 52.0)
    assert change.verdict == "same" and "process spread" in change.why


def test_measured_alternately_in_one_session_the_threshold_alone_applies():
    """Interleaved, drift falls on both sides alike: the same 9% shift that separate runs cannot claim is slower."""
    base = [50.0, 51.0, 56.0, 52.0, 50.5, 55.0, 53.0]
    change = difference(_processes(base), _processes([m * 1.09 for m in base]), separate_sessions=False)
    assert change.allowance == 0.05 and change.verdict == "slower"
