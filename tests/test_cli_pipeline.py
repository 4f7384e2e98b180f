"""The ``pipeline`` command and ``bench --data jpeg``: a small real run, the parity check, and one line for every bad
input (``cli_main`` from tests/conftest.py runs ``cli.main`` in this process; configurations run in workers)."""

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

REPO = Path(__file__).resolve().parents[1]

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
    (("bench", "alexnet", "--modes", "input"), "--modes input times the input pipeline alone: bench --data jpeg"),
    (("bench", "alexnet", "--files", "100"), "--files applies to --data jpeg"),
    (("bench", "alexnet", "--data", "png"), "unknown data 'png'; accepted: synthetic, jpeg"),
    (("bench", "alexnet", "--data", "jpeg", "--workers", "two"), "--workers takes whole numbers >= 0 and auto"),
    (("bench", "alexnet", "--data", "jpeg", "--replicas", "2"), "--data jpeg feeds one process"),
    (("pipeline", "--images", "/no/such/folder"), "--images DIR: /no/such/folder is not a folder"),
    (("pipeline", "--files", "0"), "--files must be >= 1"),
    (("pipeline", "--files", "8"), "--files 8 make no batch of 32; give at least that many"),
])
def test_bad_pipeline_input_is_one_line_and_exit_2(cli_main, args, message):
    completed = cli_main(*args)
    assert completed.returncode == 2
    assert message in completed.stderr and len(completed.stderr.strip().splitlines()) == 1, completed.stderr


@pytest.mark.torch
def test_what_no_pipeline_can_feed_is_skipped_with_its_reason(cli_main, tmp_path):
    completed = cli_main("bench", "lenet", "--frameworks", "torch", "--modes", "train", "--data", "jpeg",
                         "--batch-size", "2", *SMALL_SET, "--out", str(tmp_path / "run"), "--no-history", "--no-peak")
    assert completed.returncode == 3
    assert "lenet takes 1x32x32 images; the JPEG pipeline makes RGB (3 channels)" in completed.stderr


@pytest.mark.torch
def test_sigterm_in_the_fed_loop_keeps_every_loop_and_ends_the_loader_workers(tmp_path):
    """Stopped while the DataLoader's workers feed the step: the samples of all three loops are saved, and the
    workers end with the configuration's process."""
    out = tmp_path / "run"
    process = subprocess.Popen(
        [sys.executable, "cli.py", "bench", "alexnet", "--frameworks", "torch", "--modes", "forward", "--data",
         "jpeg", "--workers", "1", *SMALL_SET, "--batch-size", "2", "--warmup", "1", "--iters", "150",
         "--max-time", "0", "--out", str(out), "--no-peak", "--no-history"],
        cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        loaders: list[psutil.Process] = []
        while len(loaders) < 2 and time.monotonic() < deadline:  # the worker, then its DataLoader worker under it
            time.sleep(0.2)
            loaders = [child for child in psutil.Process(process.pid).children(recursive=True)
                       if "bench.worker" in _command_line(child)]
        # The loader worker starts with the pipeline-alone loop (150 small batches, under a second); the fed loop
        # after it takes 150 steps of some 30 ms, so the signal most likely lands in the fed loop.
        time.sleep(2.5)
        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=60)
    finally:
        if process.poll() is None:  # the test failed before the run ended: it ends its processes on SIGTERM
            process.terminate()
            try:
                process.communicate(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.communicate()
    assert process.returncode == 128 + signal.SIGTERM, stderr
    (result,) = json.loads((out / "results.json").read_text())["results"]
    assert result["status"] == "interrupted" and result["partial"], result["reason"]
    # Every loop's samples up to the signal, whichever loop it reached.
    step, pipeline, fed = (len(result[key]) for key in ("step_samples_ms", "pipeline_samples_ms", "samples_ms"))
    assert step == 150 and (pipeline == 150 or fed == 0) and (pipeline + fed) > 0
    assert len(loaders) == 2 and not any(loader.is_running() and loader.status() != psutil.STATUS_ZOMBIE
                                         for loader in loaders)


def _command_line(process: psutil.Process) -> str:
    """A process's command line; empty for one that has just ended (a short-lived helper the run started)."""
    try:
        return " ".join(process.cmdline())
    except psutil.Error:
        return ""
