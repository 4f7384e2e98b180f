"""The reports' commands (show, export, report, compare): output, exit codes, and one-line errors."""

import csv
import io
import json

import pytest
from synthetic import ok, scaled

import cli


def run_cli(capsys, *args: str) -> tuple[int, str, str]:
    code = cli.main([*args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def assert_one_line_error(err: str, *fragments: str) -> None:
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("error: ") and "Traceback" not in err
    for fragment in fragments:
        assert fragment in lines[0]


@pytest.fixture
def broken_run_files(tmp_path, mixed_run):
    """Run files each wrong in one way: name -> (path, what the error must say)."""
    complete = (mixed_run / "results.json").read_text()
    (tmp_path / "not-json.json").write_text("schema: 1\nresults: []\n")
    (tmp_path / "truncated.json").write_text(complete[: len(complete) // 2])
    (tmp_path / "other-schema.json").write_text(json.dumps({"schema": 99, "results": []}))
    return {
        "missing": (tmp_path / "nowhere", "no results file"),
        "not JSON": (tmp_path / "not-json.json", "not valid JSON"),
        "truncated": (tmp_path / "truncated.json", "truncated"),
        "other schema": (tmp_path / "other-schema.json", "schema 99"),
    }


@pytest.mark.parametrize("case", ["missing", "not JSON", "truncated", "other schema"])
@pytest.mark.parametrize("command", ["show", "export", "report", "compare"])
def test_an_unreadable_run_file_is_one_line_and_exit_3(capsys, broken_run_files, mixed_run, command, case):
    path, message = broken_run_files[case]
    args = [command, str(path)] + ([str(mixed_run)] if command == "compare" else [])
    code, out, err = run_cli(capsys, *args)
    assert code == 3
    assert_one_line_error(err, message)


def test_show_prints_the_tables(capsys, mixed_run):
    code, out, err = run_cli(capsys, "show", str(mixed_run))
    assert code == 0 and err == ""
    assert "alexnet — forward" in out and "Not measured in full" in out and "out of memory" in out


def test_export_csv_to_stdout_is_only_the_csv(capsys, mixed_run):
    code, out, err = run_cli(capsys, "export", str(mixed_run), "--format", "csv")
    assert code == 0
    rows = list(csv.DictReader(io.StringIO(out)))
    assert len(rows) == 6 and len(json.loads(rows[0]["samples_ms"])) == 60


def test_export_json_to_a_file(capsys, mixed_run, tmp_path):
    out_file = tmp_path / "exports" / "run.json"
    code, out, err = run_cli(capsys, "export", str(mixed_run), "--format", "json", "--out", str(out_file))
    assert code == 0 and str(out_file) in out
    assert [record["status"] for record in json.loads(out_file.read_text())][-2:] == ["skipped", "failed"]


def test_export_an_unknown_format_is_usage_error(capsys, mixed_run):
    code, out, err = run_cli(capsys, "export", str(mixed_run), "--format", "xml")
    assert code == 2
    assert_one_line_error(err, "unknown --format 'xml'", "csv, json, parquet")


def test_export_parquet_needs_an_out_file(capsys, mixed_run):
    code, out, err = run_cli(capsys, "export", str(mixed_run), "--format", "parquet")
    assert code == 2
    assert_one_line_error(err, "--out")


def test_export_parquet_without_an_engine_says_what_to_install(capsys, mixed_run, tmp_path, monkeypatch):
    monkeypatch.setattr("reports.frame.PARQUET_ENGINES", ("no_such_parquet_engine",))
    code, out, err = run_cli(capsys, "export", str(mixed_run), "--format", "parquet", "--out",
                             str(tmp_path / "x.parquet"))
    assert code == 3
    assert_one_line_error(err, "pip install pyarrow")


def test_export_into_a_folder_that_cannot_exist_is_exit_3(capsys, mixed_run, tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    code, out, err = run_cli(capsys, "export", str(mixed_run), "--format", "csv", "--out",
                             str(blocker / "sub" / "x.csv"))
    assert code == 3
    assert_one_line_error(err, "Not a directory", str(blocker))


def test_report_defaults_to_report_md_in_the_run_folder(capsys, mixed_run):
    code, out, err = run_cli(capsys, "report", str(mixed_run))
    assert code == 0 and err == ""
    assert (mixed_run / "report.md").read_text().startswith("# CNN benchmark report")
    assert (mixed_run / "report-alexnet-median.png").exists()


def test_report_merges_several_runs(capsys, mixed_run, write_synthetic_run, tmp_path):
    other = write_synthetic_run("gpu-box", [ok(median_ms=1.0)])
    code, out, err = run_cli(capsys, "report", str(mixed_run), str(other), "--out", str(tmp_path / "r" / "both.md"))
    assert code == 0
    text = (tmp_path / "r" / "both.md").read_text()
    assert "| mixed " in text and "| gpu-box " in text


def test_report_into_a_folder_under_a_file_is_exit_3(capsys, mixed_run, tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    code, out, err = run_cli(capsys, "report", str(mixed_run), "--out", str(blocker / "deeper" / "report.md"))
    assert code == 3
    assert_one_line_error(err, "cannot write the report", "Not a directory", str(blocker))


@pytest.fixture
def base_and_slower(write_synthetic_run):
    base = [ok(seed=1), ok(framework="tf", median_ms=12.0, seed=2)]
    new = [scaled(base[0], 1.2), ok(framework="tf", median_ms=12.0, seed=3)]
    return write_synthetic_run("base", base), write_synthetic_run("new", new)


def test_compare_reports_a_slower_configuration(capsys, base_and_slower):
    base, new = base_and_slower
    code, out, err = run_cli(capsys, "compare", str(base), str(new))
    assert code == 0
    assert "slower" in out and "1 slower, 0 faster, 1 same, 0 inconclusive" in out


def test_compare_fails_on_regression_when_asked(capsys, base_and_slower):
    base, new = base_and_slower
    code, out, err = run_cli(capsys, "compare", str(base), str(new), "--fail-on-regression")
    assert code == 1 and err == ""


def test_compare_of_a_run_with_itself_passes_even_when_asked_to_fail(capsys, base_and_slower):
    base, _ = base_and_slower
    code, out, err = run_cli(capsys, "compare", str(base), str(base), "--fail-on-regression", "--threshold", "0.05")
    assert code == 0 and "0 slower, 0 faster, 2 same, 0 inconclusive" in out


def test_a_threshold_above_the_shift_hides_it(capsys, base_and_slower):
    base, new = base_and_slower
    code, out, err = run_cli(capsys, "compare", str(base), str(new), "--threshold", "25%", "--fail-on-regression")
    assert code == 0 and "0 slower" in out


@pytest.mark.parametrize("threshold", ["5", "abc", "-5%", "150%", "nan", ""])
def test_a_bad_threshold_is_usage_error(capsys, base_and_slower, threshold):
    base, new = base_and_slower
    code, out, err = run_cli(capsys, "compare", str(base), str(new), "--threshold", threshold)
    assert code == 2
    assert_one_line_error(err, "--threshold")


def test_compare_with_nothing_in_common_is_usage_error(capsys, write_synthetic_run):
    base = write_synthetic_run("torch-only", [ok(framework="torch")])
    new = write_synthetic_run("tf-only", [ok(framework="tf")])
    code, out, err = run_cli(capsys, "compare", str(base), str(new))
    assert code == 2
    assert_one_line_error(err, "no configuration was measured in both runs")
