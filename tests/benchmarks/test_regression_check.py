"""The regression gate over pytest-benchmark (docs/comparing.md): a step made slower is called slower by ``compare``
on the files pytest-benchmark saved (a check that cannot fail is worthless)."""

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

    from bench.engines import load_backend
    from bench.config import Config


    def test_lenet_forward(benchmark):
        backend = load_backend("torch")
        config = dict(model="lenet", framework="torch", device="cpu", mode="forward", batch_size=8)
        step = backend.prepare(Config(**config))
        benchmark.extra_info.update(config)
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
def test_compare_calls_a_slower_step_slower_from_the_saved_files(tmp_path, capsys):
    import cli

    (tmp_path / "test_lenet_step.py").write_text(STEP_TEST)
    common = [sys.executable, "-m", "pytest", str(tmp_path / "test_lenet_step.py"), "-q", "-p", "no:cacheprovider",
              "--rootdir", str(tmp_path), "--benchmark-save-data", "--benchmark-autosave"]
    for side, environment in (("base", {}), ("new", {"MAKE_STEP_SLOWER": "1"})):
        completed = subprocess.run([*common, f"--benchmark-storage=file://{tmp_path / side}"], cwd=REPO,
                                   capture_output=True, text=True, timeout=300, env={**os.environ, **environment})
        assert completed.returncode == 0, completed.stdout + completed.stderr
    assert cli.main(["compare", str(tmp_path / "base"), str(tmp_path / "new"), "--fail-on-regression"]) == 1
    output = capsys.readouterr().out
    assert "lenet" in output and "1 slower, 0 faster" in output
