"""Does the harness measure what a reference timer measures? ``python -m bench.fidelity``

For each case the harness's forward step and timing loop run interleaved with a reference in the same process:
``torch.utils.benchmark.Timer`` (with ``num_threads`` set, since it defaults to 1) for torch, and a bare
``tf.function`` loop timed with ``perf_counter`` for TensorFlow. Each framework runs in its own process. The
ratio harness / reference should be close to 1: AlexNet batch 8 within 3%, LeNet batch 1 within 5% (where the
per-iteration overhead of the harness would show). Both sides are compared by the same statistic: the median
over rounds of each round's mean time per call (a ``Timer`` block yields only its mean).
"""

from __future__ import annotations

import argparse
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


def _torch_case(model_name: str, batch: int, threads: int) -> dict:
    from bench.record import Config
    from bench.timing import time_step
    from bench.torch_backend import TorchBackend

    backend = TorchBackend()
    backend.configure_threads(threads)  # before anything else runs in parallel, or torch refuses
    import torch
    from torch.utils import benchmark

    step = backend.prepare(Config(model_name, "torch", "cpu", "forward", batch))
    # The reference times the same network on the same input, called directly.
    model, images = backend.model, backend.images
    timer = benchmark.Timer(
        stmt="with torch.no_grad(): model(images)",
        globals={"model": model, "images": images, "torch": torch},
        num_threads=threads,
    )
    calls = CALLS_PER_ROUND[model_name]
    harness_ms, reference_ms = [], []
    time_step(step, backend.synchronize, warmup=WARMUP, iters=1)
    timer.timeit(WARMUP)
    for round_index in range(ROUNDS):
        # Alternate who goes first, so slow drift of the machine cancels out.
        order = ("harness", "reference") if round_index % 2 == 0 else ("reference", "harness")
        for side in order:
            if side == "harness":
                harness_ms.append(statistics.fmean(time_step(step, backend.synchronize, warmup=0,
                                                             iters=calls).samples_ms))
            else:
                reference_ms.append(timer.timeit(calls).mean * 1e3)  # one block of `calls`: its mean per call
    return {"harness_ms": statistics.median(harness_ms), "reference_ms": statistics.median(reference_ms),
            "reference": "torch.utils.benchmark.Timer"}


def _tf_case(model_name: str, batch: int, threads: int) -> dict:
    from bench.record import Config
    from bench.tf_backend import TFBackend
    from bench.timing import time_step

    backend = TFBackend()
    backend.configure_threads(threads)
    step = backend.prepare(Config(model_name, "tf", "cpu", "forward", batch))
    import tensorflow as tf

    # A bare loop over its own tf.function of the same network and input.
    model, images = backend.model, backend.images
    bare = tf.function(lambda: model(images, training=False))

    def bare_loop(calls: int) -> list[float]:
        samples = []
        for _ in range(calls):
            start = time.perf_counter()
            bare()
            samples.append((time.perf_counter() - start) * 1e3)
        return samples

    calls = CALLS_PER_ROUND[model_name]
    harness_ms, reference_ms = [], []
    time_step(step, backend.synchronize, warmup=WARMUP, iters=1)
    bare_loop(WARMUP)
    for round_index in range(ROUNDS):
        order = ("harness", "reference") if round_index % 2 == 0 else ("reference", "harness")
        for side in order:
            if side == "harness":
                harness_ms.append(statistics.fmean(time_step(step, backend.synchronize, warmup=0,
                                                             iters=calls).samples_ms))
            else:
                reference_ms.append(statistics.fmean(bare_loop(calls)))
    return {"harness_ms": statistics.median(harness_ms), "reference_ms": statistics.median(reference_ms),
            "reference": "bare tf.function loop"}


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

    print(f"threads: {args.threads}; {ROUNDS} interleaved rounds; median over rounds of the mean ms per call")
    print(f"{'framework':<10}{'model':<10}{'batch':>6}{'harness':>12}{'reference':>12}{'ratio':>8}  target  verdict")
    for row in rows:
        ratio = row["harness_ms"] / row["reference_ms"]
        verdict = "within" if abs(ratio - 1) <= row["tolerance"] else "OUTSIDE"
        print(f"{row['framework']:<10}{row['model']:<10}{row['batch']:>6}{row['harness_ms']:>12.4f}"
              f"{row['reference_ms']:>12.4f}{ratio:>8.3f}  ±{row['tolerance']:.0%}   {verdict} ({row['reference']})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
