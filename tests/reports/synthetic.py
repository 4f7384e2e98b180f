"""Builders of synthetic results for the reports tests: seeded samples, no framework needed."""

from __future__ import annotations

import random
from dataclasses import replace

from bench.config import Config
from bench.record import Result

ENVIRONMENT = {
    "started_at": "2026-01-02T03:04:05+00:00",
    "host": "bench-box",
    "cpu_model": "Test CPU 9000",
    "cpu_cores": 2,
    "memory_bytes": 8 * 2**30,
    "threads": 2,
    "frameworks": {"torch": {"version": "2.4.0", "cuda": None}, "tf": {"version": "2.18.0"}},
    "peaks": {"cpu": {"fp32": 100.0}},
    "lab_notes": "an unknown key the harness added later",
}


def samples(median_ms: float, n: int = 60, spread: float = 0.01, seed: int = 0) -> tuple[float, ...]:
    """Seeded samples around ``median_ms`` with a relative standard deviation of ``spread``."""
    rng = random.Random(seed)
    return tuple(median_ms * (1 + rng.gauss(0, spread)) for _ in range(n))


def ok(model: str = "alexnet", framework: str = "torch", mode: str = "forward", batch_size: int = 8,
       median_ms: float = 10.0, seed: int = 0, spread: float = 0.01, **measured) -> Result:
    config = Config(model=model, framework=framework, device="cpu", mode=mode, batch_size=batch_size, iters=60)
    return Result(config=config, status="ok", samples_ms=samples(median_ms, spread=spread, seed=seed), **measured)


def not_ok(status: str, reason: str, framework: str = "tf", model: str = "alexnet") -> Result:
    return Result(config=Config(model=model, framework=framework, device="cuda", mode="forward", batch_size=8),
                  status=status, reason=reason)


def scaled(result: Result, factor: float) -> Result:
    """The same samples, each multiplied by ``factor``: a shift every test can see, with no new noise."""
    return replace(result, samples_ms=tuple(factor * value for value in result.samples_ms))
