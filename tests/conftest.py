"""Shared test setup: quiet TensorFlow, and load the frameworks in an order that lets them share a process."""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

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
