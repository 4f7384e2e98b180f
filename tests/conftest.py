"""Shared test setup: quiet TensorFlow, caches in a temporary folder, frameworks loaded in an order that lets them
share a process, and tests of an engine that is not installed skipped (a GPU machine may have torch alone)."""

import os
import subprocess
import tempfile

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# Tests that run bench or peak (and their subprocesses, which inherit this) never write the user's cache.
os.environ["CONVBENCH_CACHE"] = tempfile.mkdtemp(prefix="convbench-test-cache-")
# ... nor the user's run history.
os.environ["CONVBENCH_HISTORY"] = os.path.join(tempfile.mkdtemp(prefix="convbench-test-history-"), "history.duckdb")

# torch's FLOP counter imports triton, which crashes when it loads after TensorFlow; load it first.
try:
    import torch.utils.flop_counter  # noqa: F401
except ImportError:
    pass


def pytest_addoption(parser):
    group = parser.getgroup("convbench")
    group.addoption("--step-rounds", type=int, default=3,
                    help="timed rounds per step in tests/benchmarks (3 keeps CI quick; use 30+ for a baseline)")
    group.addoption("--step-batch", type=int, default=2, help="batch size of the steps in tests/benchmarks")
    group.addoption("--step-models", default="quick",
                    help="models of the steps in tests/benchmarks: quick (default: the fewest, cheapest models that "
                         "hold every kind of layer of the zoo), all, or names")


def pytest_configure(config):
    from bench.engines import ENGINES

    # A marker per engine, named after it, from the engine table: an engine added there is a marker here.
    for name, engine in ENGINES.items():
        config.addinivalue_line("markers", f"{name}: needs the {engine.title} engine ({engine.install})")


def pytest_collection_modifyitems(config, items):
    from bench.engines import ENGINES

    # A test marked with an engine's name needs that engine installed.
    missing = {name: engine.not_installed() for name, engine in ENGINES.items() if not engine.installed()}
    gpu = _cuda_available()
    for item in items:
        for marker, reason in missing.items():
            if marker in item.keywords:
                item.add_marker(pytest.mark.skip(reason=reason))
        if "no_gpu" in item.keywords and gpu:
            item.add_marker(pytest.mark.skip(reason="checks the path without a GPU, and one is visible here"))
        if "gpu" in item.keywords and not gpu:
            item.add_marker(pytest.mark.skip(reason="no CUDA GPU visible"))


def _cuda_available() -> bool:
    """Whether torch sees a CUDA GPU (False without torch)."""
    try:
        import torch
    except ImportError:
        return False
    return torch.cuda.is_available()


@pytest.fixture
def cli_main(capfd):
    """``cli_main(*args)``: ``python cli.py ARGS`` run by ``cli.main`` in this process, with its exit code and
    everything written to file descriptors 1 and 2, as a subprocess would give them."""
    import cli

    def run(*args: str) -> subprocess.CompletedProcess:
        capfd.readouterr()  # only what this command writes
        returncode = cli.main(list(args))
        stdout, stderr = capfd.readouterr()
        return subprocess.CompletedProcess(["cli.py", *args], returncode, stdout, stderr)

    return run
