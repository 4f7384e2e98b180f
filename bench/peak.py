"""The device's dense matrix-multiply peak per precision: the denominator of MFU, a property of the device.

Every installed engine that can time one (the training frameworks; not the inference runtimes, which run only a
graph they are given) multiplies square matrices of several sizes in its own worker process (IEEE fp32 for
fp32: TF32 off), on the requested device; the best median rate over frameworks and sizes is the device's
measured peak for that precision. It never depends on which frameworks a run times: a denominator that changed
with ``--frameworks`` would make the same row 60% MFU in one run and 189% in another. Results are cached by the
device's model (CPU model, or GPU name and compute capability), thread count and framework versions. The
published dense peaks of common NVIDIA GPUs are kept beside it, matched to the exact product.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path

from filelock import Timeout

from bench.backend import Skip, parse_device
from bench.child import exit_now, set_threads
from bench.config import Config
from bench.engines import ENGINES, get_engine, installed_engines, load_backend
from bench.environment import available_cpus, cpu_model
from bench.files import atomic_write_text, lock_of

MATRIX_SIZES = {"cpu": (512, 1024, 2048), "cuda": (2048, 4096, 8192, 16384)}
PRECISIONS = {"cpu": ("fp32", "bf16"), "cuda": ("fp32", "bf16", "fp16")}
WARMUP, REPEATS = 3, 10
# The sweep stops growing the matrices once one product takes this long: a larger one would only cost time
# (the rate has long saturated by then), and a slow device must still finish in seconds.
SLOW_PRODUCT_S = 0.25
WORKER_TIMEOUT_S = 600.0


def cache_path() -> Path:
    """``$CONVBENCH_CACHE/peaks.json``, by default under ``~/.cache/convbench``; read when used, so tests can
    point it elsewhere."""
    return Path(os.environ.get("CONVBENCH_CACHE") or Path.home() / ".cache" / "convbench") / "peaks.json"


@dataclass(frozen=True)
class Product:
    """A GPU product with its published dense peaks in TFLOP/s (vendor data sheets, no structured sparsity).

    ``names`` are the exact names the driver reports for it: a substring match would give an L40S the L4's
    figures, or an H100 PCIe the SXM part's. fp16/bf16 are tensor-core rates with fp32 accumulation; fp32 is the
    plain FP32 rate (what IEEE fp32, TF32 off, can reach), tf32 the TF32 tensor-core rate.
    """

    product: str
    names: tuple[str, ...]
    tflops: dict[str, float]


PRODUCTS: tuple[Product, ...] = (
    Product("H100 SXM5", ("NVIDIA H100 80GB HBM3", "NVIDIA H100 SXM5 80GB"),
            {"fp32": 67.0, "tf32": 494.7, "bf16": 989.4, "fp16": 989.4}),
    Product("H100 PCIe", ("NVIDIA H100 PCIe",), {"fp32": 51.2, "tf32": 378.0, "bf16": 756.0, "fp16": 756.0}),
    Product("H100 NVL", ("NVIDIA H100 NVL",), {"fp32": 60.0, "tf32": 417.5, "bf16": 835.5, "fp16": 835.5}),
    Product("H200 SXM", ("NVIDIA H200",), {"fp32": 67.0, "tf32": 494.7, "bf16": 989.4, "fp16": 989.4}),
    Product("H200 NVL", ("NVIDIA H200 NVL",), {"fp32": 60.0, "tf32": 417.5, "bf16": 835.5, "fp16": 835.5}),
    Product("A100 SXM4", ("NVIDIA A100-SXM4-40GB", "NVIDIA A100-SXM4-80GB"),
            {"fp32": 19.5, "tf32": 156.0, "bf16": 312.0, "fp16": 312.0}),
    Product("A100 PCIe", ("NVIDIA A100-PCIE-40GB", "NVIDIA A100 80GB PCIe"),
            {"fp32": 19.5, "tf32": 156.0, "bf16": 312.0, "fp16": 312.0}),
    Product("L4", ("NVIDIA L4",), {"fp32": 30.3, "tf32": 60.0, "bf16": 121.0, "fp16": 121.0}),
    Product("L40S", ("NVIDIA L40S",), {"fp32": 91.6, "tf32": 183.0, "bf16": 362.05, "fp16": 362.05}),
    Product("RTX 4090", ("NVIDIA GeForce RTX 4090",), {"fp32": 82.6, "tf32": 82.6, "bf16": 165.2, "fp16": 165.2}),
)


def _normalised(name: str) -> str:
    return " ".join(name.lower().split())


def published_product(gpu_name: str | None) -> Product | None:
    """The product whose reported name is exactly ``gpu_name`` (case and spacing aside); None if unknown."""
    if not gpu_name:
        return None
    wanted = _normalised(gpu_name)
    return next((product for product in PRODUCTS if wanted in map(_normalised, product.names)), None)


def device_identity(device: str, environment: dict | None = None) -> dict:
    """What the cache and the report name a device by: the CPU model, or the GPU's name and compute capability.

    A GPU's identity comes from the run's environment when its workers recorded it, else from a worker of every
    installed engine, all asked at once (each spends seconds importing its framework): the first, in the table's
    order, that sees the GPU names it. A framework that cannot use the device says why (``unusable``), so that no
    second worker is started to find it out again.
    """
    kind, _ = parse_device(device)
    if kind == "cpu":
        return {"kind": "cpu", "model": cpu_model()}
    recorded = ((environment or {}).get("devices") or {}).get(device) or {}
    if recorded.get("gpu_name") and recorded.get("gpu_capability"):
        return {"kind": "cuda", "model": recorded["gpu_name"], "capability": recorded["gpu_capability"]}
    unusable = {}
    engines = peak_engines()
    with ThreadPoolExecutor(max_workers=max(1, len(engines))) as pool:
        answers = pool.map(lambda framework: _run_worker(["--identify", "--worker", framework, "--device", device],
                                                         timeout_s=120), engines)
    for framework, lines in zip(engines, answers, strict=True):
        if lines and "gpu_name" in lines[0]:
            return {"kind": "cuda", "model": lines[0]["gpu_name"], "capability": lines[0]["gpu_capability"]}
        if lines and "skip" in lines[0]:
            unusable[framework] = lines[0]["skip"]
    return {"kind": "cuda", "model": None, "capability": None, "unusable": unusable}


def peak_engines() -> list[str]:
    """The installed engines that can time a matrix product on a device (an inference runtime cannot)."""
    return [name for name in installed_engines() if ENGINES[name].measures_peak]


def _cache_key(identity: dict, framework: str, threads: int) -> str:
    if identity["kind"] == "cpu":
        hardware = f"cpu|{identity['model']}|threads={threads}"
    else:
        hardware = f"cuda|{identity['model']}|capability={identity['capability']}"
    return f"{hardware}|{framework}={get_engine(framework).version()}"


def _load_cache() -> dict:
    try:
        return json.loads(cache_path().read_text())
    except (OSError, ValueError):
        return {}


def _save_rates(key: str, rates: dict) -> None:
    """Add one framework's rates to the cache: read, merged and replaced whole under the cache's lock, so two runs
    measuring at once each keep what the other wrote."""
    path = cache_path()
    try:
        with lock_of(path, timeout_s=60):
            cache = _load_cache()
            cache[key] = {**cache.get(key, {}), **rates}
            atomic_write_text(path, json.dumps(cache, indent=1))
    except (OSError, Timeout):
        pass  # a cache that cannot be written only costs a re-measurement


def _run_worker(arguments: list[str], timeout_s: float) -> list[dict]:
    try:
        completed = subprocess.run(
            [sys.executable, "-m", "bench.peak", *arguments], capture_output=True, text=True, encoding="utf-8",
            errors="replace", timeout=timeout_s, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"},
        )
    except subprocess.TimeoutExpired:
        return [{"error": f"timed out after {timeout_s:g} s"}]
    lines = [json.loads(line) for line in completed.stdout.splitlines() if line.startswith("{")]
    if completed.returncode != 0 and not lines:
        tail = (completed.stderr.strip().splitlines() or ["no output"])[-1]
        return [{"error": tail[:200]}]
    return lines


def measure_framework(framework: str, device: str, precisions: list[str], threads: int,
                      identity: dict | None = None) -> dict[str, dict]:
    """Rates of one framework on ``device`` per precision (best over ``MATRIX_SIZES``), measured in a fresh
    process, or recalled from the cache."""
    identity = identity or device_identity(device)
    if framework in identity.get("unusable", {}):
        return {p: {"error": f"skipped: {identity['unusable'][framework]}"} for p in precisions}
    cache = _load_cache()
    key = _cache_key(identity, framework, threads)
    cached = cache.get(key, {})
    missing = [p for p in precisions if p not in cached]
    if missing:
        lines = _run_worker(["--worker", framework, "--device", device, "--precision", ",".join(missing),
                             "--threads", str(threads)], WORKER_TIMEOUT_S)
        for line in lines:
            if "precision" in line:
                cached[line.pop("precision")] = line
            else:  # the worker failed before any precision
                cached.update({p: dict(line) for p in missing})
        _save_rates(key, {p: v for p, v in cached.items() if "error" not in v})
    return {p: cached[p] for p in precisions if p in cached}


def measure_peaks(device: str, precisions: list[str] | None = None, threads: int | None = None,
                  environment: dict | None = None) -> dict:
    """Best measured GFLOP/s per precision on ``device`` over every installed framework, with the details."""
    kind, _ = parse_device(device)
    precisions = precisions or list(PRECISIONS[kind])
    threads = threads or available_cpus()
    identity = device_identity(device, environment)
    by_framework = {framework: measure_framework(framework, device, precisions, threads, identity)
                    for framework in peak_engines()}
    best: dict[str, float] = {}
    best_framework: dict[str, str] = {}
    for precision in precisions:
        for framework, rates in by_framework.items():
            rate = rates.get(precision, {}).get("gflops_per_s")
            if rate is not None and rate > best.get(precision, 0.0):
                best[precision], best_framework[precision] = rate, framework
    product = published_product(identity.get("model")) if kind == "cuda" else None
    return {"device": device, "identity": identity, "threads": threads if kind == "cpu" else None,
            "matrix_sizes": list(MATRIX_SIZES[kind]), "best_gflops_per_s": best, "best_framework": best_framework,
            "by_framework": by_framework, "published_product": product.product if product else None,
            "published_tflops": dict(product.tflops) if product else None}


def attach_peaks(run, threads: int | None = None) -> None:
    """Measure (or recall) the peak of every device and precision the run measured; give results their MFU.

    ``run.environment["peaks"]`` gets the best rate per device and precision, ``["peak_details"]`` how it was
    found (frameworks, sizes, published figures).
    """
    wanted: dict[str, set[str]] = {}
    for result in run.results:
        if result.status == "ok":
            wanted.setdefault(result.config.device, set()).add(result.config.precision)
    peaks = run.environment.setdefault("peaks", {})
    details = run.environment.setdefault("peak_details", {})
    for device, precisions in wanted.items():
        measured = measure_peaks(device, sorted(precisions), threads, run.environment)
        peaks[device] = {p: measured["best_gflops_per_s"].get(p) for p in sorted(precisions)}
        details[device] = {
            "identity": measured["identity"], "matrix_sizes": measured["matrix_sizes"],
            "threads": measured["threads"], "best_framework": measured["best_framework"],
            "by_framework": {fw: {p: v.get("gflops_per_s", v.get("error")) for p, v in rates.items()}
                             for fw, rates in measured["by_framework"].items()},
            "published_product": measured["published_product"], "published_tflops": measured["published_tflops"],
        }
    run.results[:] = [
        replace(result, peak_gflops_per_s=peaks.get(result.config.device, {}).get(result.config.precision))
        if result.status == "ok" else result
        for result in run.results
    ]


def _median_seconds(multiply, synchronize) -> float:
    """Median time of one product, after burn-in; fewer repeats where one product is already slow."""
    seconds = []
    for index in range(WARMUP + REPEATS):
        start = time.perf_counter()
        multiply()
        synchronize()
        if index >= WARMUP:
            seconds.append(time.perf_counter() - start)
            if len(seconds) >= 3 and sum(seconds) > 4 * SLOW_PRODUCT_S:
                break
    return statistics.median(seconds)


def _worker(framework: str, device: str, precisions: list[str], threads: int, identify: bool) -> None:
    set_threads(threads)
    backend = load_backend(framework)
    probe = Config(model="lenet", framework=framework, device=device, mode="forward", batch_size=1)
    backend.configure(probe, threads)
    if identify:
        try:
            backend.check(probe)
        except Skip as skip:
            print(json.dumps({"skip": str(skip)}), flush=True)
            return
        print(json.dumps(backend.device_info(probe)), flush=True)
        return
    kind, _ = parse_device(device)
    for precision in precisions:
        try:
            # The benchmark's own rules decide what can run: TensorFlow would otherwise quietly place a "GPU"
            # matmul on the CPU when no GPU is visible.
            backend.check(replace(probe, precision=precision))
            rates = {}
            for size in MATRIX_SIZES[kind]:
                try:
                    seconds = _median_seconds(backend.matmul(device, precision, size), backend.synchronize)
                except Exception as error:
                    if not backend.is_out_of_memory(error):
                        raise
                    break
                rates[size] = 2 * size**3 / seconds / 1e9
                if seconds > SLOW_PRODUCT_S:
                    break
            best_size = max(rates, key=rates.get)
            print(json.dumps({"precision": precision, "gflops_per_s": rates[best_size], "size": best_size,
                              "by_size": {str(size): rate for size, rate in rates.items()}}), flush=True)
        except Skip as skip:
            print(json.dumps({"precision": precision, "error": f"skipped: {skip}"}), flush=True)
        except Exception as error:  # one precision a framework cannot do does not hide the others
            first_line = (str(error).strip().splitlines() or [""])[0][:200]
            print(json.dumps({"precision": precision, "error": f"{type(error).__name__}: {first_line}"}), flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="measure the matmul peak (internal worker; use cli.py peak)")
    parser.add_argument("--worker", required=True)
    parser.add_argument("--device", required=True)
    parser.add_argument("--precision", default="fp32")
    parser.add_argument("--threads", type=int, default=available_cpus())
    parser.add_argument("--identify", action="store_true", help="print the device's identity and exit")
    args = parser.parse_args(argv)
    _worker(args.worker, args.device, args.precision.split(","), args.threads, args.identify)
    return 0


if __name__ == "__main__":
    exit_now(main())
