"""The inference-runtime engines (ONNX Runtime, OpenVINO): they run the zoo's torch twins as exported, a worker
times them with the export in the first step, their settings say how they ran, and what they cannot run is skipped
in one line."""

from __future__ import annotations

import importlib.util

import pytest

from bench.backend import Skip, cpu_has_native_bf16
from bench.config import Config
from bench.engines import ENGINES, load_backend
from bench.runner import run_configs

# Each marked with its engine's name: skipped where that engine is not installed (tests/conftest.py).
RUNTIMES = [pytest.param("onnxruntime", marks=pytest.mark.onnxruntime, id="onnxruntime"),
            pytest.param("openvino", marks=pytest.mark.openvino, id="openvino")]


@pytest.mark.parametrize("engine", RUNTIMES)
@pytest.mark.parametrize(("model", "batch_size"), [("lenet", 2), ("resnet18", 1)])  # resnet18: BatchNorm, residuals
def test_the_runtime_computes_the_torch_twins_logits(engine, model, batch_size):
    module_name, function_name = ENGINES[engine].proof.split(":")
    proof = getattr(importlib.import_module(module_name), function_name)(model, batch_size, 0)
    parity = proof["parity"]
    assert parity["passed"], parity
    assert (parity["reference"], parity["other"], parity["model"], parity["batch_size"]) == ("torch", engine, model,
                                                                                             batch_size)
    assert parity["fp32_logits_rel_diff"] <= parity["fp32_logits_rtol"] and parity["fp32_logits_max_abs"] > 0
    assert parity["exporter"].startswith("torch.onnx.export(dynamo=True)") and parity["opset"] >= 17
    assert proof["counts"] is None


@pytest.mark.slow
@pytest.mark.onnxruntime
@pytest.mark.openvino
def test_a_worker_times_lenet_forward_in_each_runtime_and_refuses_gradients(tmp_path):
    def config(engine: str, mode: str = "forward") -> Config:
        return Config(model="lenet", framework=engine, device="cpu", mode=mode, batch_size=2, warmup=1, iters=5,
                      threads=1)

    configs = [config("onnxruntime"), config("openvino"), config("onnxruntime", "forward-backward")]
    run = run_configs(configs, tmp_path / "results.json", measure_peaks=False)
    ort, ov, gradients = run.results
    for result in (ort, ov):
        assert result.status == "ok", result.reason
        assert len(result.samples_ms) == 5 and all(sample > 0 for sample in result.samples_ms)
        settings = result.settings
        assert settings["threads"] == 1 and settings["opset"] >= 17
        # The export is in the first step, which therefore outlasts it.
        assert settings["export_s"] > 0 and result.first_step_ms >= settings["export_s"] * 1e3
        assert settings["peak_memory"] == "process peak RSS in the window"
    assert ort.settings["graph_optimization_level"] == "ORT_ENABLE_ALL"
    assert ort.settings["interop_threads"] == 1 and ort.settings["providers"] == ["CPUExecutionProvider"]
    assert ov.settings["inference_precision"] == "f32" and ov.settings["performance_hint"] == "LATENCY"
    assert ov.settings["streams"] == 1
    assert gradients.status == "skipped" and "\n" not in gradients.reason
    assert gradients.reason.startswith("onnxruntime: ") and "inference runtime" in gradients.reason


@pytest.mark.parametrize("engine", RUNTIMES)
def test_half_precision_on_a_cpu_is_refused_in_one_line(engine):
    backend = load_backend(engine)
    precision = "fp16" if engine == "onnxruntime" else "bf16"
    config = Config(model="lenet", framework=engine, device="cpu", mode="forward", batch_size=2, precision=precision)
    if precision == "bf16" and cpu_has_native_bf16():
        backend.check(config)  # bf16 in hardware: runs
        return
    with pytest.raises(Skip) as skip:
        backend.check(config)
    assert str(skip.value).startswith(f"{engine}: {precision}") and "\n" not in str(skip.value)


@pytest.mark.parametrize("engine", RUNTIMES)
def test_what_the_runtimes_do_not_measure_says_so(engine):
    backend = load_backend(engine)
    config = Config(model="lenet", framework=engine, device="cpu", mode="forward", batch_size=2)
    with pytest.raises(NotImplementedError, match=engine):
        backend.matmul("cpu", "fp32", 64)
    for explain in (lambda: backend.profile_layers(config, 1), lambda: backend.layer_steps(config)):
        with pytest.raises(Skip, match=f"^{engine}: the .* graph's fused nodes are not the spec's layers$"):
            explain()
    assert backend.is_out_of_memory(RuntimeError("[ONNXRuntimeError] : 6 : RUNTIME_EXCEPTION : Failed to allocate "
                                                 "memory for requested buffer of size 123"))
    assert backend.is_out_of_memory(RuntimeError("std::bad_alloc"))
    assert not backend.is_out_of_memory(ValueError("wrong shape"))


@pytest.mark.onnxruntime
def test_onnxruntime_on_cuda_names_what_to_install_or_the_missing_gpu():
    import onnxruntime

    backend = load_backend("onnxruntime")
    config = Config(model="lenet", framework="onnxruntime", device="cuda", mode="forward", batch_size=2)
    if "CUDAExecutionProvider" not in onnxruntime.get_available_providers():
        with pytest.raises(Skip, match=r"^onnxruntime: CUDA needs onnxruntime-gpu \(pip install onnxruntime-gpu\)$"):
            backend.check(config)
    else:
        import torch

        if not torch.cuda.is_available():
            with pytest.raises(Skip, match="^onnxruntime: no CUDA GPU visible"):
                backend.check(config)
