"""Synthetic runs for the reports tests: real run files written by ``bench.record``, no framework needed."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from synthetic import ENVIRONMENT, not_ok, ok

from bench.record import Result, Run, write_run


@pytest.fixture
def write_synthetic_run(tmp_path: Path) -> Callable[..., Path]:
    """Write a run folder under tmp_path holding ``results``; returns the folder."""

    def write(name: str, results: list[Result], environment: dict | None = None) -> Path:
        folder = tmp_path / name
        write_run(folder / "results.json", Run(environment=environment or ENVIRONMENT, results=results))
        return folder

    return write


@pytest.fixture
def mixed_run(write_synthetic_run) -> Path:
    """Two frameworks at two batch sizes, one noisy, one capped, one skipped and one failed configuration."""
    results = [
        ok(framework="torch", batch_size=8, median_ms=10.0, flops_per_step=16_000_000, peak_gflops_per_s=100.0,
           peak_memory_bytes=2**30, burn_in_peak_memory_bytes=3 * 2**30, first_step_ms=250.0),
        ok(framework="tf", batch_size=8, median_ms=15.0, seed=1, flops_per_step=16_000_000),
        ok(framework="torch", batch_size=32, median_ms=30.0, seed=2, capped=True),
        ok(framework="tf", batch_size=32, median_ms=50.0, seed=3, spread=0.3),
        not_ok("skipped", "no CUDA device on this machine"),
        not_ok("failed", "RuntimeError: out of memory | allocator gave up", framework="torch"),
    ]
    return write_synthetic_run("mixed", results)
