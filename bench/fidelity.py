"""Does the harness measure what a reference timer measures? ``python -m bench.fidelity``

For each case the harness's forward step and timing loop run interleaved with a reference in the same process:
``torch.utils.benchmark.Timer`` (with ``num_threads`` set, since it defaults to 1) for torch, and a bare
``tf.function`` loop timed with ``perf_counter`` for TensorFlow. Each framework runs in its own process. The
ratio harness / reference should be close to 1: AlexNet batch 8 within 3%, LeNet batch 1 within 5% (where the
per-iteration overhead of the harness would show). Both sides are compared by the statistic the harness reports:
the median of per-call times (the ``Timer`` measures one call at a time for this).
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import statistics
import subprocess
import sys
import time

CASES = (("alexnet", 8, 0.03), ("lenet", 1, 0.05))  # model, batch, allowed |ratio - 1|
ROUNDS = 10
# Per round, each side times this many calls of the step (alexnet is ~100x slower than lenet, so fewer calls).
CALLS_PER_ROUND = {"alexnet": 10, "lenet": 300}
WARMUP = 10


def _interleaved(backend, step, reference_round, calls: int) -> tuple[float, float]:
    """Median of every per-call time, for the harness and for ``reference_round(calls)`` (a list of ms)."""
    from bench.timing import time_step

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


def _torch_case(model_name: str, batch: int, threads: int) -> dict:
    from bench.backend import load_backend
    from bench.config import Config

    backend = load_backend("torch")
    config = Config(model=model_name, framework="torch", device="cpu", mode="forward", batch_size=batch)
    backend.configure(config, threads)  # before anything else runs in parallel, or torch refuses
    import torch
    from torch.utils import benchmark

    step = backend.prepare(config)
    # The reference times the same network on the same input, called directly.
    timer = benchmark.Timer(
        stmt="with torch.no_grad(): model(images)",
        globals={"model": backend.model, "images": backend.images, "torch": torch},
        num_threads=threads,
    )
    # One call per Timer measurement: per-call times, the statistic the harness reports.
    harness_ms, reference_ms = _interleaved(
        backend, step, lambda calls: [timer.timeit(1).mean * 1e3 for _ in range(calls)], CALLS_PER_ROUND[model_name]
    )
    return {"harness_ms": harness_ms, "reference_ms": reference_ms, "reference": "torch.utils.benchmark.Timer"}


def _tf_case(model_name: str, batch: int, threads: int) -> dict:
    from bench.backend import load_backend
    from bench.config import Config

    backend = load_backend("tf")
    config = Config(model=model_name, framework="tf", device="cpu", mode="forward", batch_size=batch)
    backend.configure(config, threads)
    step = backend.prepare(config)
    import tensorflow as tf

    # A bare loop over its own tf.function of the same network and input.
    model, images = backend.model, backend.images
    bare = tf.function(lambda: model(images, training=False))

    def bare_round(calls: int) -> list[float]:
        samples = []
        gc.disable()  # as timeit (and so torch's Timer) does
        try:
            for _ in range(calls):
                start = time.perf_counter()
                bare()
                samples.append((time.perf_counter() - start) * 1e3)
        finally:
            gc.enable()
        return samples

    harness_ms, reference_ms = _interleaved(backend, step, bare_round, CALLS_PER_ROUND[model_name])
    return {"harness_ms": harness_ms, "reference_ms": reference_ms, "reference": "bare tf.function loop"}


def _worker(framework: str, threads: int) -> None:
    for variable in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[variable] = str(threads)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    measure = _torch_case if framework == "torch" else _tf_case
    for model_name, batch, tolerance in CASES:
        figures = measure(model_name, batch, threads)
        print(json.dumps({"framework": framework, "model": model_name, "batch": batch, "tolerance": tolerance,
                          **figures}), flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--frameworks", default="torch,tf")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        _worker(args.worker, args.threads)
        return 0

    rows = []
    for framework in args.frameworks.split(","):
        completed = subprocess.run(
            [sys.executable, "-m", "bench.fidelity", "--worker", framework, "--threads", str(args.threads)],
            capture_output=True, text=True, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"},
        )
        if completed.returncode != 0:
            print(f"{framework}: fidelity worker failed: {completed.stderr.strip().splitlines()[-1:]}",
                  file=sys.stderr)
            continue
        rows.extend(json.loads(line) for line in completed.stdout.splitlines() if line.startswith("{"))

    print(f"threads: {args.threads}; {ROUNDS} interleaved rounds; median ms per call")
    print(f"{'framework':<10}{'model':<10}{'batch':>6}{'harness':>12}{'reference':>12}{'ratio':>8}  target  verdict")
    for row in rows:
        ratio = row["harness_ms"] / row["reference_ms"]
        verdict = "within" if abs(ratio - 1) <= row["tolerance"] else "OUTSIDE"
        print(f"{row['framework']:<10}{row['model']:<10}{row['batch']:>6}{row['harness_ms']:>12.4f}"
              f"{row['reference_ms']:>12.4f}{ratio:>8.3f}  ±{row['tolerance']:.0%}   {verdict} ({row['reference']})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
