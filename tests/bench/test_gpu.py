"""The CUDA path, on a machine with an NVIDIA GPU (skipped elsewhere): synchronisation inside every sample,
IEEE fp32 without TF32, native precision checks on the requested device, memory windows, the peak."""

import pytest

from bench.config import Config

pytestmark = [pytest.mark.gpu, pytest.mark.torch]


def test_every_sample_waits_for_the_gpu():
    """A sample must span the GPU's work: CUDA events around the same steps give the device time, and the
    harness's samples may not be shorter. Without the synchronisation they would be launch times only, which the
    second half shows is a difference this test sees."""
    import torch

    from bench.engines import load_backend
    from bench.timing import time_step

    backend = load_backend("torch")
    step = backend.prepare(Config(model="alexnet", framework="torch", device="cuda", mode="forward-backward",
                                  batch_size=128))
    timing = time_step(step, backend.synchronize, warmup=5, iters=20)
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    device_ms = []
    for _ in range(20):
        start.record()
        step()
        end.record()
        end.synchronize()
        device_ms.append(start.elapsed_time(end))
    harness = sorted(timing.samples_ms)[10]
    device = sorted(device_ms)[10]
    assert harness >= 0.95 * device, (harness, device)
    # Few steps, so the launch queue never fills (a full queue would make launches wait for the GPU).
    unsynchronised = time_step(step, lambda: None, warmup=0, iters=3)
    backend.synchronize()
    assert min(unsynchronised.samples_ms) < 0.5 * device  # launch time alone: what a missing sync reports


def test_fp32_is_ieee_and_settings_are_recorded_per_result(tmp_path):
    from bench.runner import run_configs

    run = run_configs([Config(model="lenet", framework="torch", device="cuda", mode="forward", batch_size=32,
                              warmup=3, iters=10)], tmp_path / "r.json",
                      measure_peaks=False)
    (result,) = run.results
    assert result.status == "ok", result.reason
    assert result.settings["tf32_matmul"] is False and result.settings["tf32_cudnn"] is False
    assert result.settings["cudnn_benchmark"] is True and result.settings["peak_memory"] == "device allocator"
    assert result.peak_memory_bytes > 0 and result.burn_in_peak_memory_bytes >= result.peak_memory_bytes
    assert run.environment["devices"]["cuda"]["gpu_name"] and run.environment["devices"]["cuda"]["gpu_capability"]


def test_precision_checks_ask_the_requested_device():
    import torch

    from bench.backend import Skip
    from bench.engines import load_backend

    backend = load_backend("torch")
    major, _ = torch.cuda.get_device_capability(0)
    config = Config(model="lenet", framework="torch", device="cuda:0", mode="forward", batch_size=2, precision="bf16")
    if major >= 8:
        backend.check(config)
    else:
        with pytest.raises(Skip, match="bf16 needs compute capability 8.0"):
            backend.check(config)
    with pytest.raises(Skip, match="CUDA device"):
        backend.check(Config(model="lenet", framework="torch", device=f"cuda:{torch.cuda.device_count()}",
                             mode="forward", batch_size=2))


def test_fp32_peak_is_ieee_fp32_not_tf32():
    """With TF32 off, an fp32 matrix product cannot beat the GPU's plain FP32 rate; TF32 would reach ~7x it."""
    from bench.peak import measure_framework, published_product

    rates = measure_framework("torch", "cuda", ["fp32", "bf16"], threads=1)
    import torch

    product = published_product(torch.cuda.get_device_name(0))
    assert rates["bf16"]["gflops_per_s"] > 2 * rates["fp32"]["gflops_per_s"]
    if product is not None:
        assert rates["fp32"]["gflops_per_s"] <= 1.1 * product.tflops["fp32"] * 1e3


@pytest.mark.gpu
@pytest.mark.torch
def test_the_device_is_busier_at_a_large_batch_and_explain_names_each_layers_kernels(tmp_path):
    from bench.explain import explain_configs
    from bench.explainer import ExplainOptions
    from bench.runner import run_configs

    configs = [Config(model="googlenet", framework="torch", device="cuda", mode="forward", batch_size=batch,
                      warmup=3, iters=10) for batch in (1, 128)]
    small, large = run_configs(configs, tmp_path / "results.json", measure_peaks=False).results
    assert small.status == large.status == "ok", (small.reason, large.reason)
    assert 0 < small.device_busy < large.device_busy <= 1.05  # summed kernel time can overlap a little
    (entry,) = explain_configs(configs[1:], tmp_path / "explain.json", ExplainOptions(views=("in model",), windows=2),
                               timeout_s=300)
    (step,) = entry.steps
    assert step.launches_per_step > 0 and step.device_busy is not None
    conv = next(row for row in entry.layers if row.layer == "conv1.conv")
    assert any("conv" in kernel.lower() or "gemm" in kernel.lower() for kernel in conv.kernels), conv.kernels
