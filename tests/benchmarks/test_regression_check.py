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

    from bench.backend import load_backend
    from bench.record import Config


    def test_lenet_forward(benchmark):
        backend = load_backend("torch")
        step = backend.prepare(Config("lenet", "torch", "cpu", "forward", 8))
        # The regression under test: the same step done three times, as a slower implementation would.
        repeats = 3 if os.environ.get("MAKE_STEP_SLOWER") else 1

        def synchronised_step():
            for _ in range(repeats):
                step()
            backend.synchronize()

        benchmark.pedantic(synchronised_step, rounds=40, warmup_rounds=5, iterations=1)
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
