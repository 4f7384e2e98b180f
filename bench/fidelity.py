"""Does the harness measure what a reference timer measures? ``python cli.py fidelity`` (this module is its worker).

For each case the harness's forward step and timing loop run interleaved with a reference in the same process: the
framework's own way of timing the same network on the same input (each backend's ``reference_timer``: for torch
``torch.utils.benchmark.Timer``, for TensorFlow a bare ``tf.function`` loop). Each framework runs in its own
process. The ratio harness / reference should be close to 1: AlexNet batch 8 within 3%, LeNet batch 1 within 5%
(where the per-iteration overhead of the harness would show). Both sides are compared by the statistic the harness
reports: the median of per-call times (the ``Timer`` measures one call at a time for this).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys

from bench.child import set_threads
from bench.config import Config
from bench.engines import load_backend
from bench.environment import PROJECT_ROOT, available_cpus
from bench.timing import time_step

CASES = (("alexnet", 8, 0.03), ("lenet", 1, 0.05))  # model, batch, allowed |ratio - 1|
ROUNDS = 10
# Per round, each side times this many calls of the step (alexnet is ~100x slower than lenet, so fewer calls).
CALLS_PER_ROUND = {"alexnet": 10, "lenet": 300}
WARMUP = 10


def _interleaved(backend, step, reference_round, calls: int) -> tuple[float, float]:
    """Median of every per-call time, for the harness and for ``reference_round(calls)`` (a list of ms)."""
    def harness_round(count: int) -> list[float]:
        return time_step(step, backend.synchronize, warmup=0, iters=count).samples_ms

    harness_round(WARMUP)
    reference_round(WARMUP)
    samples: dict[str, list[float]] = {"harness": [], "reference": []}
    rounds = {"harness": harness_round, "reference": reference_round}
    for round_index in range(ROUNDS):
        # Alternate who goes first, so slow drift of the machine cancels out.
        order = ("harness", "reference") if round_index % 2 == 0 else ("reference", "harness")
        for side in order:
            samples[side].extend(rounds[side](calls))
    return statistics.median(samples["harness"]), statistics.median(samples["reference"])


def _case(framework: str, model_name: str, batch: int, threads: int) -> dict:
    backend = load_backend(framework)
    config = Config(model=model_name, framework=framework, device="cpu", mode="forward", batch_size=batch)
    backend.configure(config, threads)  # before anything else runs in parallel, or a framework refuses
    step = backend.prepare(config)
    reference_round, reference = backend.reference_timer(threads)
    harness_ms, reference_ms = _interleaved(backend, step, reference_round, CALLS_PER_ROUND[model_name])
    return {"harness_ms": harness_ms, "reference_ms": reference_ms, "reference": reference}


def _worker(framework: str, threads: int) -> None:
    set_threads(threads)
    for model_name, batch, tolerance in CASES:
        figures = _case(framework, model_name, batch, threads)
        print(json.dumps({"framework": framework, "model": model_name, "batch": batch, "tolerance": tolerance,
                          **figures}), flush=True)


def measure(frameworks: list[str], threads: int) -> tuple[list[dict], list[str]]:
    """Every case of every framework, each framework in a worker process of its own: a row per case (harness and
    reference medians, their ratio, the target and whether it is met), and a line per framework whose worker
    failed."""
    rows, failures = [], []
    for framework in frameworks:
        completed = subprocess.run(
            [sys.executable, "-m", "bench.fidelity", "--worker", framework, "--threads", str(threads)],
            capture_output=True, text=True, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"},
        )
        if completed.returncode != 0:
            failures.append(f"{framework}: fidelity worker failed: "
                            f"{(completed.stderr.strip().splitlines() or ['no output'])[-1]}")
            continue
        for line in completed.stdout.splitlines():
            if line.startswith("{"):
                row = json.loads(line)
                row["ratio"] = row["harness_ms"] / row["reference_ms"]
                row["within_target"] = abs(row["ratio"] - 1) <= row["tolerance"]
                rows.append(row)
    return rows, failures


def main(argv: list[str] | None = None) -> int:
    """The worker of one framework (``--worker``); without it, the command ``python cli.py fidelity``."""
    arguments = sys.argv[1:] if argv is None else argv
    if "--worker" not in arguments:
        os.execv(sys.executable, [sys.executable, str(PROJECT_ROOT / "cli.py"), "fidelity", *arguments])
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=available_cpus())
    parser.add_argument("--worker", required=True)
    args = parser.parse_args(arguments)
    _worker(args.worker, args.threads)
    return 0


if __name__ == "__main__":
    sys.exit(main())
