"""``python cli.py gpu-check`` (and ``python -m bench.gpu_check``, which runs it): bad input is one line and exit 2,
no GPU one line and exit 3, before anything is measured."""

import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("command", [["cli.py", "gpu-check"], ["-m", "bench.gpu_check"]])
def test_unknown_model_is_one_line_and_exit_2(tmp_path, command):
    completed = subprocess.run([sys.executable, *command, "--out", str(tmp_path), "--models", "resnet5"], cwd=REPO,
                               capture_output=True, text=True, timeout=120)
    assert completed.returncode == 2
    assert completed.stderr.strip().splitlines() == [
        "error: unknown model 'resnet5'. Known: alexnet, alexnet-2012, googlenet, lenet, resnet18, resnet50, vgg11, "
        "vgg16. Did you mean 'resnet50'?"]
    assert not any(tmp_path.iterdir())  # nothing measured, nothing written


@pytest.mark.torch
@pytest.mark.no_gpu
def test_without_a_gpu_it_says_so_in_one_line_and_exits_3(tmp_path):
    import cli

    assert cli.main(["gpu-check", "--out", str(tmp_path / "out")]) == 3
    assert not (tmp_path / "out").exists()
