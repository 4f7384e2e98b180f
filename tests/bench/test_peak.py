"""The matmul peak behind MFU: exact published products, one denominator whatever the run's frameworks, caching."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from bench import peak
from bench.config import Config
from bench.engines import ENGINES
from bench.record import Result, Run

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize(
    ("name", "product", "bf16"),
    [("NVIDIA H100 80GB HBM3", "H100 SXM5", 989.4), ("NVIDIA H100 PCIe", "H100 PCIe", 756.0),
     ("NVIDIA H100 NVL", "H100 NVL", 835.5), ("NVIDIA H200", "H200 SXM", 989.4), ("NVIDIA H200 NVL", "H200 NVL", 835.5),
     ("NVIDIA A100-SXM4-80GB", "A100 SXM4", 312.0), ("NVIDIA A100 80GB PCIe", "A100 PCIe", 312.0),
     ("NVIDIA L4", "L4", 121.0), ("NVIDIA L40S", "L40S", 362.05), ("NVIDIA GeForce RTX 4090", "RTX 4090", 165.2),
     ("nvidia  h200", "H200 SXM", 989.4)],
)
def test_published_peaks_match_the_exact_product(name, product, bf16):
    match = peak.published_product(name)
    assert match.product == product and match.tflops["bf16"] == bf16


@pytest.mark.parametrize("name", ["NVIDIA T4", "NVIDIA L40", "NVIDIA H100", "NVIDIA GH200 480GB", "L4", None, ""])
def test_no_published_peak_for_a_product_not_listed(name):
    """Substring matching gave an L40S the L4's figures and every H100 the SXM part's; only exact names match."""
    assert peak.published_product(name) is None


def test_attach_peaks_gives_mfu_to_ok_results_only(monkeypatch):
    asked = []

    def fake_measure(device, precisions, threads, environment):
        asked.append((device, precisions))
        return {"best_gflops_per_s": {"fp32": 100.0}, "best_framework": {"fp32": "tf"},
                "by_framework": {"torch": {"fp32": {"gflops_per_s": 50.0}}, "tf": {"fp32": {"gflops_per_s": 100.0}}},
                "identity": {"kind": "cpu", "model": "Test CPU"}, "threads": 2, "matrix_sizes": [512],
                "published_product": None, "published_tflops": None}

    monkeypatch.setattr(peak, "measure_peaks", fake_measure)
    ok = Result(Config(model="lenet", framework="torch", device="cpu", mode="forward", batch_size=4), "ok",
                samples_ms=(1.0,), flops_per_step=3_332_160)
    skipped = Result(Config(model="lenet", framework="tf", device="cuda", mode="forward", batch_size=4), "skipped",
                     reason="no GPU")
    run = Run(environment={}, results=[ok, skipped])
    peak.attach_peaks(run, 2)
    assert asked == [("cpu", ["fp32"])]
    assert run.environment["peaks"] == {"cpu": {"fp32": 100.0}}
    assert run.environment["peak_details"]["cpu"]["best_framework"] == {"fp32": "tf"}
    assert run.results[0].peak_gflops_per_s == 100.0
    assert run.results[0].derived.mfu == pytest.approx(3_332_160 / 1e-3 / 1e9 / 100.0)
    assert run.results[1].peak_gflops_per_s is None


def test_the_peak_uses_every_installed_framework_whatever_the_run_times(monkeypatch):
    """A torch-only run and a torch+tf run must divide by the same peak."""
    measured = []
    monkeypatch.setattr(peak, "installed_engines", lambda: ["torch", "tf"])
    monkeypatch.setattr(peak, "measure_framework",
                        lambda framework, device, precisions, threads, identity: measured.append(framework) or
                        {"fp32": {"gflops_per_s": {"torch": 200.0, "tf": 450.0}[framework]}})
    result = peak.measure_peaks("cpu", ["fp32"], threads=2)
    assert measured == ["torch", "tf"]
    assert result["best_gflops_per_s"] == {"fp32": 450.0} and result["best_framework"] == {"fp32": "tf"}


def test_cache_key_names_the_gpu_model_and_capability():
    h100 = peak._cache_key({"kind": "cuda", "model": "NVIDIA H100 80GB HBM3", "capability": "9.0"}, "torch", 16)
    l4 = peak._cache_key({"kind": "cuda", "model": "NVIDIA L4", "capability": "8.9"}, "torch", 16)
    assert h100 != l4 and "NVIDIA H100 80GB HBM3" in h100 and "capability=9.0" in h100
    cpu = peak._cache_key({"kind": "cpu", "model": "AMD EPYC"}, "torch", 2)
    assert "AMD EPYC" in cpu and "threads=2" in cpu and "torch=" in cpu


def test_a_gpu_identity_recorded_by_the_run_needs_no_worker():
    environment = {"devices": {"cuda:1": {"gpu_name": "NVIDIA L4", "gpu_capability": "8.9"}}}
    assert peak.device_identity("cuda:1", environment) == {"kind": "cuda", "model": "NVIDIA L4", "capability": "8.9"}


@pytest.mark.torch
def test_real_cpu_peak_is_measured_once_then_cached(monkeypatch):
    first = peak.measure_framework("torch", "cpu", ["fp32"], threads=1)
    assert first["fp32"]["gflops_per_s"] > 0.1 and first["fp32"]["size"] in peak.MATRIX_SIZES["cpu"]
    assert not str(peak.cache_path()).startswith(str(Path.home()))  # tests write a temporary cache

    def no_subprocess(*args, **kwargs):
        raise AssertionError("a cached peak must not be measured again")

    monkeypatch.setattr(peak.subprocess, "run", no_subprocess)
    assert peak.measure_framework("torch", "cpu", ["fp32"], threads=1) == first


@pytest.mark.no_gpu
def test_peak_on_missing_gpu_says_so_and_exits_3():
    # Wide enough that no column wraps its reason into the next one's.
    completed = subprocess.run([sys.executable, "cli.py", "peak", "--device", "cuda"], cwd=REPO, capture_output=True,
                               text=True, timeout=300, env={**os.environ, "COLUMNS": "250"})
    assert completed.returncode == 3
    assert completed.stderr.strip() == "error: no peak could be measured on cuda"
    assert "Matmul peak on cuda (no GPU identified)" in completed.stdout
    assert "skipped: torch: no CUDA" in " ".join(completed.stdout.split())
    if ENGINES["jax"].installed():  # its backend says so too, instead of failing on a platform it lacks
        assert "skipped: jax: no CUDA GPU visible to jax" in " ".join(completed.stdout.split())
