"""The history check's statistics: hand-computed verdicts, the direction of each metric, and its false-alarm and
detection rates measured on synthetic histories, in memory and end to end on a real database."""

from __future__ import annotations

import datetime as dt
import json
import math
import random
import statistics

import pytest
from scipy.stats import mannwhitneyu
from synthetic import ENVIRONMENT

import cli
from bench.config import Config
from bench.record import Result, Run
from reports.history import History
from reports.history.trend import (
    METRICS,
    SIGNIFICANCE,
    check_trend,
    check_trends,
    fewest_runs,
    smallest_one_sided_p,
)

# Run-to-run noise of a run's median (log-normal sigma): a quiet machine. This VM's own spread is larger
# (README: medians of 7 identical runs ranged 17-42%), and the README gives the rates at 10% too.
QUIET_NOISE = 0.05
PLANTED_STEP = 0.20
HISTORY_RUNS = 25  # a full window of 20 and the longest recent segment of 5


def synthetic_history(rng: random.Random, runs: int = HISTORY_RUNS, noise: float = QUIET_NOISE,
                      step: float = 0.0, runs_since_step: int = 3, base_ms: float = 10.0) -> list[float]:
    """Run medians with log-normal run-to-run noise; the last ``runs_since_step`` runs slowed by ``step``."""
    return [base_ms * math.exp(rng.gauss(0, noise)) * (1 + step if index >= runs - runs_since_step else 1)
            for index in range(runs)]


def measured_rates(histories: int = 200, noise: float = QUIET_NOISE, step: float = PLANTED_STEP,
                   runs_since_step: int = 3, seed: int = 0) -> tuple[float, float]:
    """(false alarms without a step, detections with one): the share of histories whose check says "slower"."""
    rng = random.Random(seed)
    quiet = check_trends([synthetic_history(rng, noise=noise) for _ in range(histories)])
    stepped = check_trends([synthetic_history(rng, noise=noise, step=step, runs_since_step=runs_since_step)
                            for _ in range(histories)])
    return ([check.verdict for check in quiet].count("slower") / histories,
            [check.verdict for check in stepped].count("slower") / histories)


def test_a_planted_step_is_found_and_a_quiet_history_stays_quiet():
    false_alarm_rate, detection_rate = measured_rates()
    print(f"\n200 histories of {HISTORY_RUNS} runs, noise {QUIET_NOISE:.0%}: false alarms {false_alarm_rate:.1%}, "
          f"planted {PLANTED_STEP:.0%} step 3 runs back found in {detection_rate:.1%}")
    assert false_alarm_rate <= 0.05
    assert detection_rate >= 0.95


def test_hand_computed_separation():
    # Five runs, then four clearly slower ones: the best segment is the four, every one above every earlier run,
    # so p is exactly 1 / C(9, 4) = 1/126 (the three latest alone give 1 / C(9, 3) = 1/84, less significant).
    values = [10.0, 10.1, 10.2, 10.3, 10.4, 12.0, 12.1, 12.2, 12.3]
    check = check_trend(values)
    assert (check.verdict, check.recent_runs, check.window_runs) == ("slower", 4, 5)
    assert check.p_value == pytest.approx(1 / 126)
    assert check.recent_median == pytest.approx(12.15) and check.window_median == pytest.approx(10.2)
    assert check.change == pytest.approx(12.15 / 10.2 - 1)
    # The smallest p of fully separated segments is scipy's exact p for them; it is why 9 runs are the fewest:
    # 4 against 5 reach 1/126, while 8 runs split as 3 against the 5 a window needs reach only 1/56.
    exact = mannwhitneyu(values[5:], values[:5], alternative="greater", method="exact").pvalue
    assert smallest_one_sided_p(4, 5) == pytest.approx(exact)
    assert smallest_one_sided_p(4, 5) < SIGNIFICANCE <= smallest_one_sided_p(3, 5)


def test_too_few_runs_is_not_enough_history_never_no_change():
    assert fewest_runs() == 9
    slow = [10.0, 10.1, 10.2, 10.3, 20.0, 20.1, 20.2, 20.3]  # doubled, but 8 runs cannot show it
    check = check_trend(slow)
    assert check.verdict == "not enough history" and check.p_value is None
    assert check.why == "8 runs; a verdict needs at least 9 (the latest 2-5 against at least 5 before them)"
    assert check_trend([10.0]).verdict == "not enough history"


def test_one_slow_run_is_not_yet_a_verdict_and_a_recovered_one_is_not_slower():
    window = [10.0 + 0.1 * ((7 * index) % 20) for index in range(20)]  # 10.0 to 11.9, in no order
    assert check_trend([*window, 11.0, 14.0]).verdict == "no change"  # one slow run: a step or a busy neighbour
    assert check_trend([*window, 14.0, 14.1]).verdict == "slower"
    assert check_trend([*window, 14.0, 14.1, 14.2, 11.0]).verdict == "no change"  # back to normal


def test_a_significant_shift_within_the_threshold_is_no_change():
    window = [10.0 + 0.01 * index for index in range(20)]
    check = check_trend([*window, 10.3, 10.31, 10.32])  # every one above the window, but 3% slower
    assert check.verdict == "no change" and check.p_value < SIGNIFICANCE
    assert check_trend([*window, 10.3, 10.31, 10.32], threshold=0.02).verdict == "slower"


def test_direction_follows_the_metric():
    rng = random.Random(3)
    times = synthetic_history(rng, step=PLANTED_STEP)
    throughput = [32 / (value / 1e3) for value in times]  # images/s of a batch of 32: higher is better
    by_time, by_throughput = check_trend(times, METRICS["time"]), check_trend(throughput, METRICS["throughput"])
    assert by_time.verdict == by_throughput.verdict == "slower"
    assert by_time.change > 0.05 and by_throughput.change < -0.05
    # Read the wrong way round, the same throughput figures would be an improvement.
    assert check_trend(throughput, METRICS["time"]).verdict == "faster"
    faster = synthetic_history(rng, step=-0.2)
    assert check_trend(faster).verdict == "faster"


def test_the_check_on_a_real_database_finds_the_planted_step_and_nothing_else(capsys, tmp_path):
    """Ten configurations slowed by 20% for their last three runs (alexnet), ten without (lenet), 25 runs each."""
    rng = random.Random(7)
    levels = {("alexnet", batch): synthetic_history(rng, step=PLANTED_STEP) for batch in range(1, 11)}
    levels.update({("lenet", batch): synthetic_history(rng) for batch in range(1, 11)})
    runs = []
    for index in range(HISTORY_RUNS):
        started = dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc) + dt.timedelta(hours=index)
        results = [Result(config=Config(model=model, framework="torch", device="cpu", mode="forward",
                                        batch_size=batch, iters=20), status="ok",
                          samples_ms=tuple(series[index] * (1 + rng.gauss(0, 0.01)) for _ in range(20)))
                   for (model, batch), series in levels.items()]
        runs.append(Run(environment={**ENVIRONMENT, "started_at": started.isoformat(), "git_commit": f"{index:040x}"},
                        results=results))
    location = tmp_path / "history.duckdb"
    History(location).add(runs)
    code = cli.main(["history", "check", "--json", "--history", str(location)])
    checks = json.loads(capsys.readouterr().out)["checks"]
    assert code == 0 and len(checks) == 20
    verdicts = {check["configuration"]: check for check in checks}
    located = 0
    for batch in range(1, 11):
        stepped = verdicts[f"alexnet torch cpu forward b{batch} fp32"]
        assert stepped["verdict"] == "slower"
        first_slow = HISTORY_RUNS - stepped["recent_runs"]  # "since" names the first run of the segment
        assert stepped["since"] == f"2026-01-01T{first_slow:02d}:00:00+00:00"
        assert stepped["since_commit"] == f"{first_slow:040x}"
        located += first_slow == HISTORY_RUNS - 3
        assert verdicts[f"lenet torch cpu forward b{batch} fp32"]["verdict"] == "no change"
    assert located >= 8  # the step's own run, where noise lets the segment tell (9 of these 10)
    assert cli.main(["history", "check", "alexnet", "--fail-on-regression", "--history", str(location)]) == 1
    assert cli.main(["history", "check", "lenet", "--fail-on-regression", "--history", str(location)]) == 0
    out = capsys.readouterr().out
    assert "0 slower, 0 faster, 10 no change, 0 not enough history" in out


def test_check_help_states_the_method(capsys):
    assert cli.main(["history", "check", "--help"]) == 0
    text = " ".join(capsys.readouterr().out.split())
    assert "one-sided Mann-Whitney U test" in text and "not enough history" in text


def test_many_series_at_once_agree_with_one_at_a_time():
    """The batched tests give each series what testing it alone gives, ties (the normal approximation) included."""
    rng = random.Random(11)
    series = [synthetic_history(rng, runs=rng.randint(5, 30), step=rng.choice([0.0, 0.2, -0.2]),
                                runs_since_step=rng.randint(1, 6)) for _ in range(40)]
    series += [[round(value, 1) for value in synthetic_history(rng, step=0.2)] for _ in range(5)]  # ties
    together = check_trends(series)
    for values, check in zip(series, together, strict=True):
        alone = check_trend(values)
        assert (check.verdict, check.recent_runs, check.window_runs) == (alone.verdict, alone.recent_runs,
                                                                        alone.window_runs)
        assert check.p_value == pytest.approx(alone.p_value)
        if check.p_value is not None:  # and what scipy's own choice of method gives for that segment
            recent = values[-check.recent_runs:]
            window = values[-check.recent_runs - check.window_runs:-check.recent_runs]
            tail = "greater" if statistics.median(recent) >= statistics.median(window) else "less"
            assert check.p_value == pytest.approx(mannwhitneyu(recent, window, alternative=tail).pvalue)
    assert {check.verdict for check in together} == {"slower", "faster", "no change", "not enough history"}
