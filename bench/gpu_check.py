"""Prove the CUDA path on a machine with an NVIDIA GPU: ``python -m bench.gpu_check --out DIR``.

One command, for a machine with torch and a GPU (TensorFlow may be absent): it runs the GPU tests, measures the
matmul peak, and times every model forward and forward-backward in fp32 and bf16 at batch 32 (AlexNet also at
128), and AlexNet's training step data-parallel on NCCL (one replica, and one per GPU where there are
several), with every installed framework, then writes ``results.json``, ``report.md`` with its charts, the peak
(``peak.json``) and the test log (``gpu-tests.txt``) to DIR. Without a GPU it says so in one line and exits 2.
Exit code 1 when a GPU test or a configuration failed.

``--models`` narrows the timed models (names, wildcards, comma lists; default all). Each configuration is a worker
process, so the eight models' 36 configurations take several minutes more than the three models' 14 did (194 s
on an H200); where device time is short, ``--models alexnet,resnet50`` still proves every mode and precision.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
from pathlib import Path

from rich.console import Console

import zoo
from bench.data_parallel import visible_gpus
from bench.runner import expand, interrupt_on_sigterm, run_configs

PROJECT_ROOT = Path(__file__).resolve().parents[1]
MODES, PRECISIONS = ("forward", "forward-backward"), ("fp32", "bf16")
BATCH, LARGE_BATCH, LARGE_BATCH_MODEL, DATA_PARALLEL_MODEL = 32, 128, "alexnet", "alexnet"
# Each configuration's timed loop is capped at this many seconds (never below 10 samples); on a GPU that is
# hundreds of steps for every model here, and it keeps the whole check within minutes.
MAX_TIME_S = 3.0
TESTS_TIMEOUT_S, CONFIG_TIMEOUT_S = 300, 300


def gpu_absent_reason() -> str | None:
    """Why no CUDA GPU can be used here (one line), or None if torch sees one. Asked in a subprocess, so this
    process imports no framework."""
    if "torch" not in zoo.installed_frameworks():
        return "torch is not installed; the GPU check needs torch with CUDA"
    probe = "import torch; print(torch.cuda.device_count() if torch.cuda.is_available() else 0)"
    completed = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120)
    count = completed.stdout.strip()
    if completed.returncode != 0 or not count.isdigit():
        return f"torch could not be asked for GPUs: {(completed.stderr.strip().splitlines() or ['no output'])[-1]}"
    if count == "0":
        return "no CUDA GPU visible to torch (torch.cuda.is_available() is False)"
    return None


def run_gpu_tests(out: Path, console: Console) -> bool:
    """``pytest -m gpu`` over the test files that hold GPU tests; the log goes to OUT/gpu-tests.txt. True when
    nothing failed. Only those files are collected: a GPU machine may lack what other tests import."""
    files = sorted(str(path.relative_to(PROJECT_ROOT)) for path in (PROJECT_ROOT / "tests").rglob("test_*.py")
                   if re.search(r"mark\.gpu\b|marks=.*\bgpu\b", path.read_text()))
    command = [sys.executable, "-m", "pytest", "-m", "gpu", "-q", "-p", "no:cacheprovider", *files]
    try:
        completed = subprocess.run(command, cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=TESTS_TIMEOUT_S)
        log, passed = completed.stdout + completed.stderr, completed.returncode == 0
    except subprocess.TimeoutExpired as error:
        log, passed = f"{error.stdout or ''}\ntimed out after {TESTS_TIMEOUT_S} s", False
    (out / "gpu-tests.txt").write_text(log)
    summary = next((line for line in reversed(log.splitlines()) if line.strip()), "no output")
    console.print(f"GPU tests: {summary}", highlight=False, markup=False)
    return passed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.gpu_check", description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help="folder for results.json, report.md and logs")
    parser.add_argument("--skip-tests", action="store_true", help="time and report only")
    parser.add_argument("--models", default="all", help="models to time: names, wildcards or 'all' (default)")
    args = parser.parse_args(argv)
    console = Console()
    try:
        models = zoo.resolve_models([name.strip() for name in args.models.split(",") if name.strip()] or ["all"])
    except zoo.UnknownNameError as error:
        print(f"error: {error}", file=sys.stderr)  # one line, never wrapped to the terminal's width
        return 2
    reason = gpu_absent_reason()
    if reason:
        print(f"error: {reason}", file=sys.stderr)
        return 2
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

    tests_passed = True if args.skip_tests else run_gpu_tests(out, console)

    from bench.peak import measure_peaks
    from reports.table import peak_table

    peak = measure_peaks("cuda")
    (out / "peak.json").write_text(json.dumps(peak, indent=1) + "\n")
    console.print(peak_table(peak))

    frameworks = zoo.installed_frameworks()
    configs = expand(models, frameworks, ["cuda"], MODES, [BATCH], PRECISIONS, max_time_s=MAX_TIME_S)
    if LARGE_BATCH_MODEL in models:
        configs += expand([LARGE_BATCH_MODEL], frameworks, ["cuda"], MODES, [LARGE_BATCH], PRECISIONS,
                          max_time_s=MAX_TIME_S)
    # Data parallel on NCCL: one replica, and one per GPU where there are several.
    gpus = visible_gpus()
    configs += expand([DATA_PARALLEL_MODEL], frameworks, ["cuda"], ["train"], [BATCH], ["fp32"],
                      max_time_s=MAX_TIME_S, replicas=sorted({1, gpus}))
    from reports.live import LiveProgress
    from reports.markdown import write_report
    from reports.table import render_run

    with interrupt_on_sigterm(), LiveProgress(configs, console) as progress:
        run = run_configs(configs, out / "results.json", timeout_s=CONFIG_TIMEOUT_S, observer=progress)
    write_report([run], out / "report.md")
    render_run(run, console)
    failed = [result for result in run.results if result.status == "failed"]
    console.print(f"GPU tests {'passed' if tests_passed else 'FAILED'}; {len(run.results) - len(failed)} of "
                  f"{len(run.results)} configurations without failure; results: {out / 'results.json'}, report: "
                  f"{out / 'report.md'}", highlight=False, markup=False)
    return 0 if tests_passed and not failed else 1


if __name__ == "__main__":
    sys.exit(main())
