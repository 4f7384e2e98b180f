"""The device's dense matrix-multiply peak per precision, the denominator of MFU.

Each installed framework multiplies two square matrices in its own worker process; the best median rate
is the device's measured peak for that precision. Results are cached by device, hardware, thread count and
framework versions, so a run pays for the measurement once. Published peaks of common GPUs are kept beside
it for reference.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from importlib import metadata
from pathlib import Path

from bench.backend import load_backend
from bench.environment import cpu_model

CACHE_PATH = Path(os.environ.get("CONVBENCH_CACHE", Path.home() / ".cache" / "convbench")) / "peaks.json"
MATRIX_SIZE = {"cpu": 2048, "cuda": 8192}
WARMUP, REPEATS = 3, 10
GPU_PRECISIONS, CPU_PRECISIONS = ("fp32", "bf16", "fp16"), ("fp32", "bf16")

# Published dense peaks in TFLOP/s (no structured sparsity), from the vendors' data sheets: SXM parts for
# H100/H200/A100, fp16/bf16 with fp32 accumulation. "fp32" is the plain FP32 rate (not TF32 tensor cores).
PUBLISHED_TFLOPS: dict[str, dict[str, float]] = {
    "H200": {"fp32": 67.0, "tf32": 494.7, "bf16": 989.4, "fp16": 989.4},
    "H100": {"fp32": 67.0, "tf32": 494.7, "bf16": 989.4, "fp16": 989.4},
    "A100": {"fp32": 19.5, "tf32": 156.0, "bf16": 312.0, "fp16": 312.0},
    "L4": {"fp32": 30.3, "tf32": 60.0, "bf16": 121.0, "fp16": 121.0},
    "RTX 4090": {"fp32": 82.6, "tf32": 82.6, "bf16": 165.2, "fp16": 165.2},
}


def published_peak(gpu_name: str | None) -> dict[str, float] | None:
    """Published TFLOP/s of a GPU whose name contains one of the known model names."""
    if not gpu_name:
        return None
    for model, peaks in PUBLISHED_TFLOPS.items():
        if model.replace(" ", "").lower() in gpu_name.replace(" ", "").lower():
            return peaks
    return None


def _torch_rate(device: str, precision: str, threads: int) -> dict:
    import torch

    backend = load_backend("torch")
    backend.configure_threads(threads)
    kind = device.split(":")[0]
    dtype = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}[precision]
    target = torch.device(device) if kind == "cuda" else torch.device("cpu")
    size = MATRIX_SIZE[kind]
    a = torch.randn(size, size, device=target, dtype=dtype)
    b = torch.randn(size, size, device=target, dtype=dtype)

    def sync():
        if kind == "cuda":
            torch.cuda.synchronize(target)

    name = torch.cuda.get_device_name(target) if kind == "cuda" else None
    return {**_rate(lambda: torch.mm(a, b), sync, size), "gpu_name": name}


def _tf_rate(device: str, precision: str, threads: int) -> dict:
    backend = load_backend("tf")
    backend.configure_threads(threads)
    import tensorflow as tf

    kind, _, index = device.partition(":")
    name = f"/GPU:{index or 0}" if kind == "cuda" else "/CPU:0"
    dtype = {"fp32": tf.float32, "bf16": tf.bfloat16, "fp16": tf.float16}[precision]
    size = MATRIX_SIZE[kind]
    with tf.device(name):
        a = tf.cast(tf.random.normal((size, size)), dtype)
        b = tf.cast(tf.random.normal((size, size)), dtype)
    multiply = tf.function(lambda: tf.matmul(a, b))

    def sync():
        if kind == "cuda":
            tf.test.experimental.sync_devices()

    return {**_rate(multiply, sync, size), "gpu_name": None}


def _rate(multiply, synchronize, size: int) -> dict:
    for _ in range(WARMUP):
        multiply()
    synchronize()
    seconds = []
    for _ in range(REPEATS):
        start = time.perf_counter()
        multiply()
        synchronize()
        seconds.append(time.perf_counter() - start)
    return {"gflops_per_s": 2 * size**3 / statistics.median(seconds) / 1e9, "size": size}


def _installed(framework: str) -> str | None:
    try:
        return metadata.version({"torch": "torch", "tf": "tensorflow"}[framework])
    except metadata.PackageNotFoundError:
        return None


def _cache_key(device: str, framework: str, threads: int) -> str:
    hardware = cpu_model() if device == "cpu" else device
    return f"{device}|{hardware}|threads={threads}|{framework}={_installed(framework)}"


def _load_cache() -> dict:
    try:
        return json.loads(CACHE_PATH.read_text())
    except (OSError, ValueError):
        return {}


def _save_cache(cache: dict) -> None:
    try:
        CACHE_PATH.parent.mkdir(parents=True, exist_ok=True)
        CACHE_PATH.write_text(json.dumps(cache, indent=1))
    except OSError:
        pass  # a cache that cannot be written only costs a re-measurement


def measure_framework(framework: str, device: str, precisions: list[str], threads: int,
                      timeout_s: float = 300) -> dict[str, dict]:
    """Rates of one framework on ``device`` for each precision, measured in a fresh process (or cached)."""
    cache = _load_cache()
    key = _cache_key(device, framework, threads)
    cached = cache.get(key, {})
    missing = [p for p in precisions if p not in cached]
    if missing:
        try:
            completed = subprocess.run(
                [sys.executable, "-m", "bench.peak", "--worker", framework, "--device", device,
                 "--precision", ",".join(missing), "--threads", str(threads)],
                capture_output=True, text=True, timeout=timeout_s,
                env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"},
            )
            lines = [json.loads(line) for line in completed.stdout.splitlines() if line.startswith("{")]
            if completed.returncode != 0 and not lines:
                tail = (completed.stderr.strip().splitlines() or ["no output"])[-1]
                lines = [{"precision": p, "error": tail[:200]} for p in missing]
        except subprocess.TimeoutExpired:
            lines = [{"precision": p, "error": f"timed out after {timeout_s:g} s"} for p in missing]
        for line in lines:
            cached[line.pop("precision")] = line
        cache[key] = {p: v for p, v in cached.items() if "error" not in v}
        _save_cache(cache)
    return {p: cached[p] for p in precisions if p in cached}


def measure_peaks(device: str, precisions: list[str] | None = None, frameworks: tuple[str, ...] = ("torch", "tf"),
                  threads: int | None = None) -> dict:
    """Best measured GFLOP/s per precision on ``device`` over the installed frameworks, with the details."""
    kind = device.split(":")[0]
    precisions = precisions or list(GPU_PRECISIONS if kind == "cuda" else CPU_PRECISIONS)
    threads = threads or os.cpu_count() or 1
    by_framework = {fw: measure_framework(fw, device, precisions, threads) for fw in frameworks if _installed(fw)}
    best: dict[str, float] = {}
    for precision in precisions:
        rates = [r[precision]["gflops_per_s"] for r in by_framework.values() if "gflops_per_s" in r.get(precision, {})]
        if rates:
            best[precision] = max(rates)
    gpu_name = next((r[p].get("gpu_name") for r in by_framework.values() for p in r if r[p].get("gpu_name")), None)
    published = published_peak(gpu_name) if kind == "cuda" else None
    return {"device": device, "threads": threads, "best_gflops_per_s": best, "by_framework": by_framework,
            "gpu_name": gpu_name, "published_tflops": published}


def _worker(framework: str, device: str, precisions: list[str], threads: int) -> None:
    for variable in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[variable] = str(threads)
    from bench.backend import Skip
    from bench.record import Config

    measure = _torch_rate if framework == "torch" else _tf_rate
    for precision in precisions:
        try:
            # The benchmark's own rules decide what can run: TensorFlow would otherwise quietly place a
            # "GPU" matmul on the CPU when no GPU is visible.
            load_backend(framework).check(Config("lenet", framework, device, "forward", 1, precision))
            print(json.dumps({"precision": precision, **measure(device, precision, threads)}), flush=True)
        except Skip as skip:
            print(json.dumps({"precision": precision, "error": f"skipped: {skip}"}), flush=True)
        except Exception as error:  # one precision a framework cannot do does not hide the others
            first_line = (str(error).strip().splitlines() or [""])[0][:200]
            print(json.dumps({"precision": precision, "error": f"{type(error).__name__}: {first_line}"}), flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="measure the matmul peak (internal worker)")
    parser.add_argument("--worker", required=True)
    parser.add_argument("--device", required=True)
    parser.add_argument("--precision", required=True)
    parser.add_argument("--threads", type=int, required=True)
    args = parser.parse_args(argv)
    _worker(args.worker, args.device, args.precision.split(","), args.threads)
    return 0


if __name__ == "__main__":
    sys.exit(main())


def attach_peaks(run, frameworks: tuple[str, ...], threads: int | None = None) -> None:
    """Measure (or recall) the peak of every device and precision the run measured, and give results their MFU."""
    from dataclasses import replace

    wanted: dict[str, set[str]] = {}
    for result in run.results:
        if result.status == "ok":
            wanted.setdefault(result.config.device, set()).add(result.config.precision)
    peaks = run.environment.setdefault("peaks", {})
    details = run.environment.setdefault("peak_details", {})
    for device, precisions in wanted.items():
        measured = measure_peaks(device, sorted(precisions), frameworks, threads)
        peaks[device] = {p: measured["best_gflops_per_s"].get(p) for p in sorted(precisions)}
        details[device] = {"matrix_size": MATRIX_SIZE[device.split(":")[0]], "threads": measured["threads"],
                           "by_framework": {fw: {p: v.get("gflops_per_s", v.get("error")) for p, v in r.items()}
                                            for fw, r in measured["by_framework"].items()},
                           "published_tflops": measured["published_tflops"]}
    run.results[:] = [
        replace(result, peak_gflops_per_s=peaks.get(result.config.device, {}).get(result.config.precision))
        if result.status == "ok" else result
        for result in run.results
    ]
