"""What proves the CUDA path on a machine with an NVIDIA GPU: the GPU tests, and the configurations to time.

The command is ``python cli.py gpu-check --out DIR``; ``python -m bench.gpu_check ARGS`` runs that command, for
the scripts that already call it. Each timed configuration is capped at ``MAX_TIME_S`` of timed steps, which on a
GPU is hundreds of steps for every model of the zoo and keeps the whole check within minutes.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

from bench.config import Config
from bench.engines import installed_engines
from bench.environment import PROJECT_ROOT
from bench.peak import device_identity
from bench.plan import expand

MODES, PRECISIONS = ("forward", "forward-backward"), ("fp32", "bf16")
BATCH, LARGE_BATCH, LARGE_BATCH_MODEL, DATA_PARALLEL_MODEL = 32, 128, "alexnet", "alexnet"
MAX_TIME_S = 3.0
TESTS_TIMEOUT_S, CONFIG_TIMEOUT_S = 300, 300


def gpu_absent_reason() -> str | None:
    """Why no installed engine can use a CUDA GPU here (one line), or None if one can. Each engine is asked in a
    process of its own (the peak's device identity), so this process imports no framework."""
    if not installed_engines():
        return "no engine is installed (pip install -e .)"
    identity = device_identity("cuda")
    if identity.get("model"):
        return None
    reasons = "; ".join(identity.get("unusable", {}).values())
    return f"no CUDA GPU usable here: {reasons or 'no installed engine sees one'}"


def run_gpu_tests(out: Path) -> tuple[bool, str]:
    """``pytest -m gpu`` over the test files that hold GPU tests; the log goes to OUT/gpu-tests.txt. Returns
    whether nothing failed, and pytest's summary line. Only those files are collected: a GPU machine may lack
    what other tests import."""
    files = sorted(str(path.relative_to(PROJECT_ROOT)) for path in (PROJECT_ROOT / "tests").rglob("test_*.py")
                   if re.search(r"mark\.gpu\b|marks=.*\bgpu\b", path.read_text()))
    command = [sys.executable, "-m", "pytest", "-m", "gpu", "-q", "-p", "no:cacheprovider", *files]
    try:
        completed = subprocess.run(command, cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=TESTS_TIMEOUT_S)
        log, passed = completed.stdout + completed.stderr, completed.returncode == 0
    except subprocess.TimeoutExpired as error:
        log, passed = f"{error.stdout or ''}\ntimed out after {TESTS_TIMEOUT_S} s", False
    (out / "gpu-tests.txt").write_text(log)
    return passed, next((line for line in reversed(log.splitlines()) if line.strip()), "no output")


def gpu_check_configs(models: list[str], frameworks: list[str], gpus: int) -> list[Config]:
    """Every model forward and forward-backward in fp32 and bf16 at batch 32 (AlexNet also at 128), and AlexNet's
    training step data-parallel on NCCL: one replica, and one per GPU where there are several."""
    configs = expand(models, frameworks, ["cuda"], MODES, [BATCH], PRECISIONS, max_time_s=MAX_TIME_S)
    if LARGE_BATCH_MODEL in models:
        configs += expand([LARGE_BATCH_MODEL], frameworks, ["cuda"], MODES, [LARGE_BATCH], PRECISIONS,
                          max_time_s=MAX_TIME_S)
    configs += expand([DATA_PARALLEL_MODEL], frameworks, ["cuda"], ["train"], [BATCH], ["fp32"],
                      max_time_s=MAX_TIME_S, replicas=sorted({1, gpus}))
    return configs


if __name__ == "__main__":
    os.execv(sys.executable, [sys.executable, str(PROJECT_ROOT / "cli.py"), "gpu-check", *sys.argv[1:]])
