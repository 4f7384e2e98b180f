"""The pytest-benchmark regression check fails when a step is made slower (a check that cannot fail is worthless)."""

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

STEP_TEST = textwrap.dedent(
    """
    import os
    import time

    from bench.backend import load_backend
    from bench.config import Config


    def test_lenet_forward(benchmark):
        backend = load_backend("torch")
        step = backend.prepare(Config(model="lenet", framework="torch", device="cpu", mode="forward", batch_size=8))
        # The regression under test: the same step done three times, as a slower implementation would, plus
        # 100 ms of waiting, so that the step is tens of times slower: a baseline taken while the machine was
        # busy (one measured 88 ms for this ~3 ms step) must not hide it.
        slower = bool(os.environ.get("MAKE_STEP_SLOWER"))

        def synchronised_step():
            for _ in range(3 if slower else 1):
                step()
            backend.synchronize()
            if slower:
                time.sleep(0.1)

        benchmark.pedantic(synchronised_step, rounds=20, warmup_rounds=3, iterations=1)
    """
)


@pytest.mark.torch
def test_compare_fail_catches_a_slower_step(tmp_path):
    (tmp_path / "test_lenet_step.py").write_text(STEP_TEST)
    storage = f"--benchmark-storage=file://{tmp_path / 'baselines'}"
    common = [sys.executable, "-m", "pytest", str(tmp_path / "test_lenet_step.py"), "-q", "-p", "no:cacheprovider",
              "--rootdir", str(tmp_path), storage]

    baseline = subprocess.run([*common, "--benchmark-autosave"], cwd=REPO, capture_output=True, text=True,
                              timeout=300)
    assert baseline.returncode == 0, baseline.stdout + baseline.stderr
    assert list((tmp_path / "baselines").rglob("*.json")), "no baseline saved"

    slower = subprocess.run([*common, "--benchmark-compare", "--benchmark-compare-fail=median:10%"], cwd=REPO,
                            capture_output=True, text=True, timeout=300,
                            env={**os.environ, "MAKE_STEP_SLOWER": "1"})
    output = slower.stdout + slower.stderr
    assert slower.returncode != 0, output
    assert "Performance has regressed" in output
