"""The matmul peak behind MFU: published figures, caching, and MFU given to every measured result."""

import subprocess
import sys
from pathlib import Path

import pytest

from bench import peak
from bench.record import Config, Result, Run

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize(
    ("name", "bf16"),
    [("NVIDIA H100 80GB HBM3", 989.4), ("NVIDIA H200", 989.4), ("NVIDIA A100-SXM4-80GB", 312.0), ("NVIDIA L4", 121.0),
     ("NVIDIA GeForce RTX 4090", 165.2)],
)
def test_published_peaks_match_gpu_names(name, bf16):
    assert peak.published_peak(name)["bf16"] == bf16


def test_unknown_gpu_has_no_published_peak():
    assert peak.published_peak("NVIDIA T4") is None and peak.published_peak(None) is None


def test_attach_peaks_gives_mfu_to_ok_results_only(monkeypatch):
    monkeypatch.setattr(peak, "measure_peaks", lambda device, precisions, frameworks, threads: {
        "best_gflops_per_s": {"fp32": 100.0}, "by_framework": {"torch": {"fp32": {"gflops_per_s": 100.0}}},
        "threads": 2, "published_tflops": None})
    ok = Result(Config("lenet", "torch", "cpu", "forward", 4), "ok", samples_ms=(1.0,), macs_per_image=416_520)
    skipped = Result(Config("lenet", "tf", "cuda", "forward", 4), "skipped", reason="no GPU")
    run = Run(environment={}, results=[ok, skipped])
    peak.attach_peaks(run, ("torch",), 2)
    assert run.environment["peaks"] == {"cpu": {"fp32": 100.0}}
    assert run.results[0].peak_gflops_per_s == 100.0
    # 2 * 416,520 MACs * 4 images in 1 ms = 3.33 GFLOP/s, of 100
    assert run.results[0].derived()["mfu"] == pytest.approx(2 * 416_520 * 4 / 1e-3 / 1e9 / 100.0)
    assert run.results[1].peak_gflops_per_s is None


@pytest.mark.torch
def test_real_cpu_peak_is_measured_once_then_cached(tmp_path, monkeypatch):
    monkeypatch.setattr(peak, "CACHE_PATH", tmp_path / "peaks.json")
    first = peak.measure_framework("torch", "cpu", ["fp32"], threads=1)
    assert first["fp32"]["gflops_per_s"] > 0.1

    def no_subprocess(*args, **kwargs):
        raise AssertionError("a cached peak must not be measured again")

    monkeypatch.setattr(peak.subprocess, "run", no_subprocess)
    assert peak.measure_framework("torch", "cpu", ["fp32"], threads=1) == first


def test_peak_on_missing_gpu_says_so_and_exits_1():
    completed = subprocess.run([sys.executable, "cli.py", "peak", "--device", "cuda", "--frameworks", "torch"],
                               cwd=REPO, capture_output=True, text=True, timeout=300)
    assert completed.returncode == 1
    assert completed.stderr.strip() == "error: no peak could be measured on cuda"
    assert "skipped: torch: no CUDA GPU visible" in " ".join(completed.stdout.split())
