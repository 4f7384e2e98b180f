"""The ``bench`` command: a real small run, the GPU skip path, and one line for every bad input.

Most cases run ``cli.main`` in this process (``cli_main``, from tests/conftest.py): the same parsing, checks,
messages and exit codes (the configurations still run in worker processes), without a second interpreter starting
and importing the CLI for each.
The small run, SIGTERM and one bad input of each kind run ``python cli.py``, so what the process prints and its exit
status are checked end to end.
"""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

REPO = Path(__file__).resolve().parents[1]


def run_cli(*args: str, timeout: int = 300, columns: int | None = None) -> subprocess.CompletedProcess:
    environment = {**os.environ, **({"COLUMNS": str(columns)} if columns else {})}
    return subprocess.run([sys.executable, "cli.py", *args], cwd=REPO, capture_output=True, text=True,
                          timeout=timeout, env=environment)


@pytest.mark.torch
@pytest.mark.tf
def test_small_run_json_matches_file(tmp_path):
    out = tmp_path / "run"
    completed = run_cli("bench", "lenet", "--frameworks", "torch,tf", "--modes", "forward,train", "--batch-size",
                        "2", "--iters", "12", "--warmup", "2", "--out", str(out), "--json", "--no-peak")
    assert completed.returncode == 0, completed.stderr
    document = json.loads(completed.stdout)  # stdout holds the document and nothing else
    assert document == json.loads((out / "results.json").read_text())
    results = document["results"]
    assert [(r["framework"], r["mode"], r["status"]) for r in results] == [
        ("torch", "forward", "ok"), ("torch", "train", "ok"), ("tf", "forward", "ok"), ("tf", "train", "ok")]
    assert all(len(r["samples_ms"]) == 12 and r["warmup"] == 2 for r in results)
    environment = document["environment"]
    assert {"torch", "tf"} <= set(environment["frameworks"])
    assert environment["git_commit"] and environment["cpu_cores"] >= 1 and environment["python"]
    # Settings that belong to a configuration are on its result, not merged into the run's environment.
    assert "xla" not in json.dumps(environment) and "mixed_precision_policy" not in json.dumps(environment)
    assert [r["settings"]["compile"] for r in results] == ["eager", "eager", "tf.function graph", "tf.function graph"]
    assert all(r["settings"]["tf32"] is False for r in results if r["framework"] == "tf")


@pytest.mark.torch
def test_a_used_run_folder_is_refused_and_left_intact_then_resumed(tmp_path, cli_main):
    out = tmp_path / "run"
    first = cli_main("bench", "lenet", "--frameworks", "torch", "--modes", "forward", "--batch-size", "2", "--iters",
                     "10", "--warmup", "1", "--out", str(out), "--no-peak")
    assert first.returncode == 0, first.stderr
    before = (out / "results.json").read_text()
    refused = cli_main("bench", "alexnet", "--frameworks", "torch", "--out", str(out))
    assert refused.returncode == 2
    assert refused.stderr.strip().splitlines() == [
        f"error: {out} already holds a run (results.json); --resume {out} continues it, --force replaces it, or "
        "choose another --out"]
    assert (out / "results.json").read_text() == before  # the old results are intact
    # Resuming with more configurations keeps the ok one and runs only the new one.
    resumed = cli_main("bench", "lenet", "--frameworks", "torch", "--modes", "forward,forward-backward",
                       "--batch-size", "2", "--iters", "10", "--warmup", "1", "--resume", str(out), "--no-peak",
                       "--json")
    assert resumed.returncode == 0, resumed.stderr
    document = json.loads(resumed.stdout)
    assert [r["mode"] for r in document["results"]] == ["forward", "forward-backward"]
    assert document["results"][0]["samples_ms"] == json.loads(before)["results"][0]["samples_ms"]


@pytest.mark.torch
@pytest.mark.slow
def test_sigterm_ends_the_worker_and_keeps_its_samples(tmp_path):
    out = tmp_path / "run"
    process = subprocess.Popen(
        [sys.executable, "cli.py", "bench", "alexnet", "--frameworks", "torch", "--modes", "forward", "--batch-size",
         "1", "--warmup", "1", "--iters", "100000", "--max-time", "0", "--out", str(out), "--no-peak"],
        cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    workers: list[psutil.Process] = []
    while not workers and time.monotonic() < deadline:
        time.sleep(0.5)
        workers = [child for child in psutil.Process(process.pid).children(recursive=True)
                   if "bench.worker" in " ".join(child.cmdline())]
    time.sleep(8)  # the worker imports torch, burns in and streams samples (every 0.2 s)
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 128 + signal.SIGTERM, stderr
    assert "stopped by SIGTERM" in stderr and "--resume" in stderr
    (result,) = json.loads((out / "results.json").read_text())["results"]
    assert result["status"] == "interrupted" and result["partial"] and len(result["samples_ms"]) > 0
    assert workers and not any(worker.is_running() and worker.status() != psutil.STATUS_ZOMBIE for worker in workers)


@pytest.mark.no_gpu
def test_cuda_without_gpu_skips_each_framework_in_one_line(tmp_path, cli_main):
    completed = cli_main("bench", "lenet", "--device", "cuda", "--out", str(tmp_path / "run"))
    assert completed.returncode == 3  # nothing measurable on this machine: an environment problem
    lines = completed.stderr.strip().splitlines()
    assert len(lines) == 2, completed.stderr
    assert lines[0].startswith("skipped 2 configuration(s): torch: ") and "GPU" in lines[0]
    assert lines[1].startswith("skipped 2 configuration(s): tf: ") and "GPU" in lines[1]
    assert "Traceback" not in completed.stderr
    saved = json.loads((tmp_path / "run" / "results.json").read_text())
    assert {r["status"] for r in saved["results"]} == {"skipped"}


BAD_INPUT = [
    (("alexnt",), "Did you mean 'alexnet'"),
    (("lenet", "--frameworks", "mxnet"), "unknown engine 'mxnet'"),
    (("lenet", "--device", "tpu"), "accepted: cpu, cuda, cuda:N"),
    (("lenet", "--device", "cuda:one"), "unknown device 'cuda:one'"),
    (("lenet", "--batch-size", "0"), "batch size must be a whole number >= 1, received '0'"),
    (("lenet", "--batch-size", "-4"), "received '-4'"),
    (("lenet", "--batch-size", "eight"), "received 'eight'"),
    (("lenet", "--iters", "0"), "--iters must be >= 1"),
    (("lenet", "--warmup", "-1"), "--warmup must be >= 0"),
    (("lenet", "--precision", "fp8"), "unknown precision 'fp8'; accepted: fp32, bf16, fp16"),
    (("lenet", "--modes", "inference"), "unknown mode 'inference'; accepted: forward, forward-backward, train"),
    (("lenet", "--iters", "many"), "--iters"),
    (("lenet", "--threads", "0"), "--threads must be >= 1"),
    (("lenet", "--repeats", "0"), "--repeats must be >= 1"),
    ((), "give the models to time"),
    (("lenet,alexnt",), "Did you mean 'alexnet'"),
    (("--resume", "/nonexistent/run"), "cannot resume: no results file at /nonexistent/run"),
]


def _assert_one_line_and_exit_2(completed: subprocess.CompletedProcess, needle: str) -> None:
    assert completed.returncode == 2, completed.stderr
    lines = completed.stderr.strip().splitlines()
    assert len(lines) == 1 and needle in lines[0], completed.stderr
    assert "Traceback" not in completed.stderr


@pytest.mark.parametrize(("args", "needle"), BAD_INPUT)
def test_bad_input_is_one_line_and_exit_2(args, needle, cli_main):
    _assert_one_line_and_exit_2(cli_main("bench", *args), needle)


# Through a real process too, the stderr and exit status it ends with: one of the CLI's own checks and one of typer's
# usage errors.
@pytest.mark.parametrize(("args", "needle"), [(("alexnt",), "Did you mean 'alexnet'"),
                                              (("lenet", "--iters", "many"), "--iters")])
def test_bad_input_ends_the_process_with_one_line_and_exit_2(args, needle):
    _assert_one_line_and_exit_2(run_cli("bench", *args), needle)


def test_unwritable_output_folder_is_one_line_and_exit_3(tmp_path, cli_main):
    blocker = tmp_path / "file"
    blocker.write_text("")
    completed = cli_main("bench", "lenet", "--out", str(blocker / "run"))
    assert completed.returncode == 3
    lines = completed.stderr.strip().splitlines()
    assert len(lines) == 1 and "cannot write to" in lines[0]


def test_framework_not_installed_is_one_line(monkeypatch, capsys):
    import importlib.util

    import cli

    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "tensorflow" else real_find_spec(name, *a))
    assert cli.main(["bench", "lenet", "--frameworks", "tf"]) == 3
    assert capsys.readouterr().err.strip() == "error: tf: tensorflow not installed (pip install -e .)"
