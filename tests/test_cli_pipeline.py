"""The ``pipeline`` command and ``bench --data jpeg``: a small real run, the parity check, and one line for every bad
input (``cli_main`` from tests/conftest.py runs ``cli.main`` in this process; configurations run in workers)."""

import json

import pytest

SMALL_SET = ("--files", "8", "--image-scale", "0.25")


@pytest.mark.torch
@pytest.mark.tf
def test_pipeline_times_both_pipelines_and_reports_them(cli_main, tmp_path):
    out = tmp_path / "run"
    completed = cli_main("pipeline", "--frameworks", "torch,tf", "--workers", "1", "--batch-size", "2",
                         "--warmup", "1", "--iters", "4", *SMALL_SET, "--out", str(out), "--no-history", "--json")
    assert completed.returncode == 0, completed.stderr
    run = json.loads(completed.stdout)
    assert [(entry["framework"], entry["mode"], entry["workers"], entry["status"]) for entry in run["results"]] == [
        ("torch", "input", 1, "ok"), ("tf", "input", 1, "ok")]
    for entry in run["results"]:
        assert len(entry["samples_ms"]) == 4 and entry["pipeline_images_per_s"] == entry["images_per_s"] > 0
        assert entry["first_batch_ms"] > 0 and entry["cpu_seconds_per_image"] > 0
        assert entry["flops_per_step"] is None and entry["mfu"] is None
        assert entry["settings"]["input_pipeline"]["lighting"] is False
    report = (out / "report.md").read_text()
    assert "## Input pipeline" in report and (out / "report-alexnet-pipeline.png").exists()
    shown = cli_main("show", str(out))
    assert shown.returncode == 0 and "jpeg, 1 worker" in shown.stdout


@pytest.mark.torch
@pytest.mark.tf
def test_pipeline_check_proves_the_same_images_with_lighting(cli_main):
    completed = cli_main("pipeline", "--check", "--lighting", *SMALL_SET, "--json")
    assert completed.returncode == 0, completed.stderr
    document = json.loads(completed.stdout)
    [check] = document["checks"]
    assert (check["reference"], check["framework"], check["lighting"]) == ("torch", "tf", True)
    assert check["passed"] and check["max_levels"] <= document["tolerance"]["max_levels"]


@pytest.mark.parametrize(("args", "message"), [
    (("bench", "alexnet", "--workers", "2"), "--workers applies to --data jpeg"),
    (("bench", "alexnet", "--modes", "input"), "--modes input times the input pipeline alone: add --data jpeg"),
    (("bench", "alexnet", "--data", "png"), "unknown data 'png'; accepted: synthetic, jpeg"),
    (("bench", "alexnet", "--data", "jpeg", "--workers", "two"), "--workers takes whole numbers >= 0 and auto"),
    (("bench", "alexnet", "--data", "jpeg", "--replicas", "2"), "--data jpeg feeds one process"),
    (("pipeline", "--images", "/no/such/folder"), "--images DIR: /no/such/folder is not a folder"),
    (("pipeline", "--files", "0"), "--files must be >= 1"),
])
def test_bad_pipeline_input_is_one_line_and_exit_2(cli_main, args, message):
    completed = cli_main(*args)
    assert completed.returncode == 2
    assert message in completed.stderr and len(completed.stderr.strip().splitlines()) == 1, completed.stderr


@pytest.mark.torch
def test_what_no_pipeline_can_feed_is_skipped_with_its_reason(cli_main, tmp_path):
    completed = cli_main("bench", "lenet", "--frameworks", "torch", "--modes", "train", "--data", "jpeg",
                         *SMALL_SET, "--out", str(tmp_path / "run"), "--no-history", "--no-peak")
    assert completed.returncode == 3
    assert "lenet takes 1x32x32 images; the JPEG pipeline makes RGB (3 channels)" in completed.stderr
