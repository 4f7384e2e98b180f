"""reports.frame: one tidy row per configuration, several runs concatenated, and the export writers."""

import json

import pandas as pd
import pytest
from synthetic import ok

import reports
from bench.record import RunFileError
from reports.frame import ExportError, frame_text, result_row, write_frame


def test_one_row_per_configuration_with_config_status_and_derived_columns(mixed_run):
    frame = reports.load(mixed_run)
    assert len(frame) == 6
    assert "run" not in frame.columns
    for column in ("model", "framework", "device", "mode", "batch_size", "precision", "compile", "channels_last",
                   "threads", "warmup", "iters", "max_time_s", "status", "reason", "n", "median_ms", "iqr_ms",
                   "median_ci_low_ms", "median_ci_high_ms", "median_ci_level", "median_ci_basis", "noisy",
                   "images_per_s", "ms_per_image", "gflops_per_s", "mfu", "peak_memory_bytes",
                   "burn_in_peak_memory_bytes", "capped", "partial", "settings", "samples_ms"):
        assert column in frame.columns, column
    assert list(frame["status"]) == ["ok", "ok", "ok", "ok", "skipped", "failed"]


def test_figures_come_from_the_record_and_samples_stay_a_list(mixed_run):
    frame = reports.load(mixed_run / "results.json")
    first = frame.iloc[0]
    assert isinstance(first["samples_ms"], list) and len(first["samples_ms"]) == 60
    assert first["median_ms"] == pytest.approx(pd.Series(first["samples_ms"]).median())
    assert first["images_per_s"] == pytest.approx(8 / (first["median_ms"] / 1e3))
    assert first["median_ci_low_ms"] <= first["median_ms"] <= first["median_ci_high_ms"]
    failed = frame[frame["status"] == "failed"].iloc[0]
    assert failed["samples_ms"] == [] and failed["n"] == 0 and "out of memory" in failed["reason"]


def test_several_runs_are_concatenated_with_a_run_column(write_synthetic_run):
    cpu = write_synthetic_run("cpu-box", [ok(), ok(framework="tf")])
    gpu = write_synthetic_run("gpu-box", [ok(median_ms=1.0)])
    frame = reports.load([cpu, gpu])
    assert len(frame) == 3
    assert frame.columns[0] == "run"
    assert list(frame["run"]) == [str(cpu / "results.json")] * 2 + [str(gpu / "results.json")]


def test_an_unreadable_run_file_raises_run_file_error(tmp_path):
    with pytest.raises(RunFileError, match="no results file"):
        reports.load(tmp_path / "missing")


def test_a_run_without_results_still_has_every_column(write_synthetic_run):
    frame = reports.load([write_synthetic_run("empty", [])])
    assert frame.empty
    assert list(frame.columns) == ["run", *result_row(ok())]


def test_csv_keeps_samples_as_json_text_and_every_digit(mixed_run, tmp_path):
    frame = reports.load(mixed_run)
    written = write_frame(frame, tmp_path / "out" / "results.csv", "csv")
    back = pd.read_csv(written)
    assert len(back) == 6
    assert json.loads(back.loc[0, "samples_ms"]) == frame.loc[0, "samples_ms"]
    assert back.loc[0, "median_ms"] == frame.loc[0, "median_ms"]


def test_json_export_is_a_list_of_records(mixed_run):
    frame = reports.load(mixed_run)
    records = json.loads(frame_text(frame, "json"))
    assert len(records) == 6
    assert records[0]["samples_ms"] == frame.loc[0, "samples_ms"]
    assert records[4]["status"] == "skipped" and records[4]["median_ms"] is None


def test_parquet_without_an_engine_says_what_to_install(mixed_run, tmp_path, monkeypatch):
    monkeypatch.setattr("reports.frame.PARQUET_ENGINES", ("no_such_parquet_engine",))
    with pytest.raises(ExportError, match="pip install pyarrow"):
        write_frame(reports.load(mixed_run), tmp_path / "results.parquet", "parquet")
    assert not (tmp_path / "results.parquet").exists()


def test_parquet_round_trip_when_an_engine_is_installed(mixed_run, tmp_path):
    pytest.importorskip("pyarrow")
    frame = reports.load(mixed_run)
    back = pd.read_parquet(write_frame(frame, tmp_path / "results.parquet", "parquet"))
    assert list(back["samples_ms"].iloc[0]) == frame.loc[0, "samples_ms"]


def test_an_unknown_format_is_refused(mixed_run, tmp_path):
    with pytest.raises(ExportError, match="unknown export format 'xml'"):
        write_frame(reports.load(mixed_run), tmp_path / "x.xml", "xml")


def test_result_row_splits_the_confidence_interval():
    row = result_row(ok())
    assert "median_ci_ms" not in row
    assert row["median_ci_low_ms"] <= row["median_ms"] <= row["median_ci_high_ms"]
    assert row["median_ci_low_ms"] < row["median_ci_high_ms"]
