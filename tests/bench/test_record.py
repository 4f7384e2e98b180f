"""The result record and the run file: derived figures, round trips, atomic writes and unreadable files."""

import dataclasses
import json
from pathlib import Path

import pytest

from bench.config import Config
from bench.record import SCHEMA, Derived, Result, Run, RunFileError, read_run, write_run


def _result(**changes):
    config = Config(model="alexnet", framework="torch", device="cpu", mode="forward-backward", batch_size=8)
    values = {"config": config, "status": "ok",
              "samples_ms": (100.0, 200.0, 300.0), "macs_per_image": 714_188_480, "flops_per_step": 40_000_000_000}
    values.update(changes)
    return Result(**values)


def test_derived_figures_by_hand():
    derived = _result().derived
    assert derived.median_ms == 200.0
    assert derived.images_per_s == pytest.approx(8 / 0.2)  # batch / median
    assert derived.ms_per_image == pytest.approx(25.0)
    assert derived.gflops_per_s == pytest.approx(40e9 / 0.2 / 1e9)  # the step's FLOPs over the median
    assert derived.mfu is None
    assert derived.median_ci_basis == "samples" and derived.processes == 1


def test_mfu_uses_the_peak():
    result = _result(peak_gflops_per_s=400.0)
    assert result.derived.mfu == pytest.approx(200.0 / 400.0)


def test_several_processes_give_the_median_and_interval_of_their_medians():
    # Three processes of 4, 3 and 5 samples; their medians are 10.5, 20 and 30.
    samples = (10.0, 11.0, 10.0, 11.0, 19.0, 20.0, 21.0, 29.0, 30.0, 31.0, 30.0, 30.0)
    result = _result(samples_ms=samples, process_sample_counts=(4, 3, 5))
    assert result.process_samples == [samples[:4], samples[4:7], samples[7:]]
    assert result.process_medians_ms == (10.5, 20.0, 30.0)
    derived = result.derived
    assert derived.median_ms == 20.0  # median of the process medians, not of the pooled samples (25.0)
    assert derived.median_ci_ms == (10.5, 30.0) and derived.median_ci_level == pytest.approx(0.75)
    assert derived.median_ci_basis == "process medians" and derived.processes == 3
    assert derived.process_spread == pytest.approx((30.0 - 10.5) / 20.0)
    assert derived.n == 12 and derived.mean_ms == pytest.approx(sum(samples) / 12)


def test_process_counts_must_add_up_to_the_samples():
    with pytest.raises(ValueError, match="add up"):
        _result(process_sample_counts=(1, 1))


def test_a_partial_result_keeps_its_samples_but_derives_no_figures():
    result = _result(status="failed", reason="torch: timed out", partial=True)
    derived = result.derived
    assert derived.n == 3 and derived.median_ms is None and derived.images_per_s is None
    restored = Result.from_dict(json.loads(json.dumps(result.to_dict())))
    assert restored.partial and restored.samples_ms == (100.0, 200.0, 300.0) and restored.status == "failed"


def test_round_trip_keeps_samples_unrounded():
    result = _result(samples_ms=(0.123456789012, 0.2, 0.3))
    restored = Result.from_dict(json.loads(json.dumps(result.to_dict())))
    assert restored == result
    assert restored.samples_ms[0] == 0.123456789012


def test_skipped_result_has_no_statistics():
    derived = _result(status="skipped", reason="no GPU", samples_ms=()).derived
    assert derived.n == 0 and derived.median_ms is None and derived.images_per_s is None


def test_status_is_validated():
    with pytest.raises(ValueError, match="status"):
        _result(status="fine")
    with pytest.raises(ValueError, match="samples"):
        _result(samples_ms=())


def test_config_is_built_by_keyword_only():
    with pytest.raises(TypeError):
        Config("lenet", "torch", "cpu", "forward", 2)  # positional arguments could shift when a field is added


def test_derived_figures_are_computed_once_and_give_the_stored_columns():
    result = _result()
    assert result.derived is result.derived
    document = result.to_dict()
    for name, value in dataclasses.asdict(result.derived).items():
        assert document[name] == value
    columns = result.derived.columns()
    assert (columns["median_ci_low_ms"], columns["median_ci_high_ms"]) == result.derived.median_ci_ms
    assert set(columns) == set(Derived.column_types())


def test_config_key_ignores_protocol_fields():
    a = Config(model="lenet", framework="torch", device="cpu", mode="forward", batch_size=1, iters=100)
    b = Config(model="lenet", framework="torch", device="cpu", mode="forward", batch_size=1, iters=20, warmup=3,
               max_time_s=5.0)
    assert a.key() == b.key() and a != b


def test_write_is_atomic_and_readable(tmp_path):
    path = tmp_path / "run" / "results.json"
    write_run(path, Run(environment={"host": "h"}, results=[_result()]))
    write_run(path, Run(environment={"host": "h"}, results=[_result(), _result(status="failed", reason="x",
                                                                                samples_ms=())]))
    assert [p.name for p in path.parent.iterdir()] == ["results.json"]  # no temporary left behind
    document = json.loads(path.read_text())
    assert document["schema"] == SCHEMA and len(document["results"]) == 2
    assert "input gradients of every layer but the first" in document["flop_convention"]
    run = read_run(path.parent)  # a run folder is accepted
    assert [r.status for r in run.results] == ["ok", "failed"]


def test_unreadable_files_say_what_is_wrong(tmp_path):
    with pytest.raises(RunFileError, match="no results file"):
        read_run(tmp_path / "missing.json")
    bad = tmp_path / "bad.json"
    bad.write_text("hello")
    with pytest.raises(RunFileError, match="not valid JSON"):
        read_run(bad)
    good = tmp_path / "good.json"
    write_run(good, Run(environment={}, results=[_result()]))
    truncated = tmp_path / "truncated.json"
    truncated.write_text(good.read_text()[:200])
    with pytest.raises(RunFileError, match="truncated"):
        read_run(truncated)
    other = tmp_path / "other.json"
    other.write_text(json.dumps({"schema": 99, "results": []}))
    with pytest.raises(RunFileError, match="schema 99"):
        read_run(other)
    not_ours = tmp_path / "list.json"
    not_ours.write_text("[1, 2]")
    with pytest.raises(RunFileError, match="not a results file"):
        read_run(not_ours)


def test_run_keeps_the_files_own_mode_descriptions(tmp_path):
    path = tmp_path / "old.json"
    write_run(path, Run(environment={}, results=[_result()], modes={"forward-backward": "as an older version said"},
                        flop_convention="older convention"))
    run = read_run(path)
    assert run.modes == {"forward-backward": "as an older version said"}
    assert run.flop_convention == "older convention"


def test_config_refuses_unknown_mode_and_precision():
    with pytest.raises(ValueError, match="mode"):
        Config(model="lenet", framework="torch", device="cpu", mode="inference", batch_size=1)
    with pytest.raises(ValueError, match="precision"):
        Config(model="lenet", framework="torch", device="cpu", mode="forward", batch_size=1, precision="fp8")


def test_results_file_is_readable_by_others(tmp_path):
    import os
    import stat

    path = tmp_path / "results.json"
    previous = os.umask(0o022)
    try:
        write_run(path, Run(environment={}, results=[_result()]))
    finally:
        os.umask(previous)
    assert stat.S_IMODE(path.stat().st_mode) == 0o644


def test_a_schema_1_file_is_read_with_its_process_counts_recovered(tmp_path):
    entry = {**Config(model="lenet", framework="torch", device="cpu", mode="forward", batch_size=2,
                      repeats=2).to_dict(), "status": "ok",
             "samples_ms": [1.0, 2.0, 3.0, 5.0, 6.0, 7.0], "process_medians_ms": [2.0, 6.0],
             "extra": {"threads": 2}, "macs_per_image": 416_520, "flops_per_step": 2_499_120, "median_ms": 4.0}
    path = tmp_path / "old.json"
    path.write_text(json.dumps({"schema": 1, "environment": {}, "flop_convention": "3 x forward", "results": [entry]}))
    run = read_run(path)
    (result,) = run.results
    assert result.process_sample_counts == (3, 3) and result.process_medians_ms == (2.0, 6.0)
    assert result.settings == {"threads": 2} and result.flops_per_step == 2_499_120
    assert run.flop_convention == "3 x forward"  # the file's own convention, not today's


def test_the_planned_configurations_are_kept(tmp_path):
    planned = [Config(model="lenet", framework="torch", device="cpu", mode="forward", batch_size=2),
               Config(model="lenet", framework="tf", device="cpu", mode="forward", batch_size=2)]
    write_run(tmp_path / "r.json", Run(environment={}, results=[], planned=planned))
    assert read_run(tmp_path / "r.json").planned == planned


EXAMPLES = sorted((Path(__file__).resolve().parents[2] / "reports" / "examples").rglob("results.json"))


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda path: str(path.relative_to(path.parents[2])))
def test_the_committed_example_runs_are_read_in_this_schema_with_their_figures(path, tmp_path):
    document = json.loads(path.read_text())
    run = read_run(path)
    assert document["schema"] <= SCHEMA  # written by this version, or by an earlier one and read through the migration
    assert len(run.results) == len(document["results"]) and {c.timing for c in run.planned} <= {"steady"}
    for result, stored in zip(run.results, document["results"], strict=True):
        assert result.config.timing == "steady" and result.samples_ms == tuple(stored["samples_ms"])
        assert result.derived.median_ms == stored["median_ms"]  # recomputed from the samples, the same figure
    write_run(tmp_path / "results.json", run)
    again = read_run(tmp_path / "results.json")
    assert again.results == run.results and json.loads((tmp_path / "results.json").read_text())["schema"] == SCHEMA
