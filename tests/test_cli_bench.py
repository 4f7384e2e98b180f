"""The ``bench`` command end to end: a real small run, the GPU skip path, and one line for every bad input."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def run_cli(*args: str, timeout: int = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "cli.py", *args], cwd=REPO, capture_output=True, text=True,
                          timeout=timeout)


@pytest.mark.torch
@pytest.mark.tf
def test_small_run_json_matches_file(tmp_path):
    out = tmp_path / "run"
    completed = run_cli("bench", "lenet", "--frameworks", "torch,tf", "--modes", "forward,train", "--batch-size",
                        "2", "--iters", "12", "--warmup", "2", "--out", str(out), "--json")
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


def test_cuda_without_gpu_skips_each_framework_in_one_line(tmp_path):
    completed = run_cli("bench", "lenet", "--device", "cuda", "--out", str(tmp_path / "run"))
    assert completed.returncode == 2
    lines = completed.stderr.strip().splitlines()
    assert len(lines) == 2, completed.stderr
    assert lines[0].startswith("skipped 2 configuration(s): torch: ") and "GPU" in lines[0]
    assert lines[1].startswith("skipped 2 configuration(s): tf: ") and "GPU" in lines[1]
    assert "Traceback" not in completed.stderr
    saved = json.loads((tmp_path / "run" / "results.json").read_text())
    assert {r["status"] for r in saved["results"]} == {"skipped"}


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (("alexnt",), "Did you mean 'alexnet'"),
        (("lenet", "--frameworks", "mxnet"), "unknown framework 'mxnet'"),
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
    ],
)
def test_bad_input_is_one_line_and_exit_2(args, needle):
    completed = run_cli("bench", *args)
    assert completed.returncode == 2, completed.stderr
    lines = completed.stderr.strip().splitlines()
    assert len(lines) == 1 and needle in lines[0], completed.stderr
    assert "Traceback" not in completed.stderr


def test_unwritable_output_folder_is_one_line_and_exit_1(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    completed = run_cli("bench", "lenet", "--out", str(blocker / "run"))
    assert completed.returncode == 1
    lines = completed.stderr.strip().splitlines()
    assert len(lines) == 1 and "cannot write to" in lines[0]


def test_framework_not_installed_is_one_line(monkeypatch, capsys):
    import importlib.util

    import cli

    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "tensorflow" else real_find_spec(name, *a))
    assert cli.main(["bench", "lenet", "--frameworks", "tf"]) == 1
    assert capsys.readouterr().err.strip() == "error: tf: tensorflow is not installed (pip install -e .)"
