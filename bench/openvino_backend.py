"""OpenVINO backend: the torch twins exported to ONNX (``bench.torch_backend.export_onnx``, the graph the ONNX Runtime
engine runs) and compiled for the CPU by OpenVINO, forward only.

The export and ``compile_model`` happen in the step's first call (``bench.torch_backend.ExportedTwinBackend``);
every later call is one synchronous ``InferRequest.infer`` on the same, shared input. The precision is set, never
left to OpenVINO: on a CPU with AMX or avx512_bf16 its CPU plugin runs bf16 unless told f32, and that would not be
an fp32 row.
"""

from __future__ import annotations

from collections.abc import Callable
from importlib import metadata
from pathlib import Path

import numpy as np
import onnx
import openvino as ov
import torch

from bench.backend import Skip, cpu_precision_skip_reason
from bench.config import Config
from bench.torch_backend import ExportedTwinBackend, prove_exported

NAME = "openvino"
DEVICE = "CPU"
# OpenVINO's names of the precisions the engine runs.
_PRECISIONS = {"fp32": "f32", "bf16": "bf16"}
# The properties read back from the compiled model into the result's settings, by the name the result gives them.
_READ_BACK = {"threads": "INFERENCE_NUM_THREADS", "streams": "NUM_STREAMS", "performance_hint": "PERFORMANCE_HINT",
              "inference_precision": "INFERENCE_PRECISION_HINT", "execution_mode_hint": "EXECUTION_MODE_HINT",
              "cpu_pinning": "ENABLE_CPU_PINNING", "hyper_threading": "ENABLE_HYPER_THREADING",
              "scheduling_core_type": "SCHEDULING_CORE_TYPE",
              "dynamic_quantization_group_size": "DYNAMIC_QUANTIZATION_GROUP_SIZE",
              "denormals_optimization": "CPU_DENORMALS_OPTIMIZATION"}


def compile_config(threads: int | None, precision: str) -> dict:
    """What ``compile_model`` is told: one stream of ``threads`` threads (OpenVINO's choice for None) for the lowest
    latency of one request (the harness's back-to-back steps), in the configuration's precision; no dynamic
    quantisation, which would make an fp32 row something else."""
    config = {"NUM_STREAMS": 1, "PERFORMANCE_HINT": "LATENCY", "INFERENCE_PRECISION_HINT": _PRECISIONS[precision],
              "DYNAMIC_QUANTIZATION_GROUP_SIZE": 0}
    return config if threads is None else {"INFERENCE_NUM_THREADS": threads, **config}


def _plain(value: object) -> object:
    """A property's value as JSON can hold it (OpenVINO gives element types and enums)."""
    if isinstance(value, (bool, int, float, str)) or value is None:
        return value
    if isinstance(value, ov.Type):
        return value.get_type_name()
    return str(getattr(value, "name", value))  # an enum by its name


class OpenVINOBackend(ExportedTwinBackend):
    name = NAME
    reference = "bare InferRequest.infer loop"

    def __init__(self) -> None:
        super().__init__()
        self._compiled: ov.CompiledModel | None = None

    def check(self, config: Config) -> None:
        # The table allows the CPU alone; on it, bf16 only where the CPU computes it natively.
        if reason := cpu_precision_skip_reason(NAME, config.precision):
            raise Skip(reason)

    def _twin_and_images(self, twin: torch.nn.Module, images: np.ndarray, config: Config):
        self._compiled = None
        # The graph's input stays fp32 in every precision: OpenVINO converts inside (bf16 is an inference hint).
        return twin, images.astype(np.float32, copy=False)

    def _open(self, path: Path, config: Config) -> Callable[[], object]:
        compiled = ov.Core().compile_model(str(path), DEVICE, compile_config(self._threads, config.precision))
        self.model = self._compiled = compiled
        request, feeds = compiled.create_infer_request(), {0: self.images}
        # share_inputs: the request reads the array in place; share_outputs: the logits are not copied out.
        return lambda: request.infer(feeds, share_inputs=True, share_outputs=True)

    def framework_info(self) -> dict:
        return {"version": metadata.version("openvino"), "build": ov.get_version(), "onnx": onnx.__version__,
                "exported_with_torch": torch.__version__}

    def device_info(self, config: Config) -> dict:
        return {}

    def settings(self, config: Config) -> dict:
        """As the compiled model has them (read back), with the export's facts; before the first step only what
        was asked for."""
        if self._compiled is not None:
            info = {key: _plain(self._compiled.get_property(name)) for key, name in _READ_BACK.items()}
        else:
            asked = compile_config(self._threads, config.precision if config.precision in _PRECISIONS else "fp32")
            info = {key: asked[name] for key, name in _READ_BACK.items() if name in asked}
        info.update(device=DEVICE, optimization="compile_model: the CPU plugin's graph transformations, all applied",
                    **self._export_settings())
        return info


def prove(name: str, batch_size: int, seed: int) -> dict:
    """OpenVINO's float32 logits of the exported twin (compiled for the CPU with an f32 inference precision)
    against torch's."""

    def run(path: Path, images: np.ndarray) -> np.ndarray:
        compiled = ov.Core().compile_model(str(path), DEVICE, compile_config(None, "fp32"))
        return compiled.create_infer_request().infer({0: images})[0]

    return prove_exported(name, batch_size, seed, NAME, run)
