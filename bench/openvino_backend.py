"""OpenVINO backend: the torch twins exported to ONNX (``bench.torch_backend.export_onnx``, the graph the ONNX Runtime
engine runs) and compiled for the CPU by OpenVINO, forward only.

The export and ``compile_model`` happen in the step's first call, so the burn-in's first step reports them, as it
reports compile time for XLA or torch.compile; every later call is one synchronous ``InferRequest.infer`` on the
same, shared input. The precision is set, never left to OpenVINO: on a CPU with AMX or avx512_bf16 its CPU plugin
runs bf16 unless told f32, and that would not be an fp32 row.
"""

from __future__ import annotations

import gc
import importlib.util
import tempfile
import time
from collections.abc import Callable
from importlib import metadata
from pathlib import Path

import numpy as np
import onnx
import openvino as ov
import torch

import zoo
from bench.backend import Skip, cpu_precision_skip_reason, host_data
from bench.config import Config
from bench.engines import ENGINES
from bench.torch_backend import export_onnx, prove_exported

NAME = "openvino"
# explain refuses the engine before it starts (the table); a direct call says the same.
_NOT_EXPLAINED = f"{NAME}: {ENGINES[NAME].explains}"
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
# The texts of an allocation failure in the CPU plugin (operator new, its own allocator).
_OUT_OF_MEMORY = ("bad_alloc", "failed to allocate", "out of memory", "cannot allocate")


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


class OpenVINOBackend:
    name = NAME
    exits_at_once_after_leave = True  # never a rank: the engine has no data-parallel runtime

    def __init__(self) -> None:
        self.model: object = None  # the torch twin until the first step, then the compiled model of its export
        self.images: np.ndarray | None = None  # the input batch, shared with the request (never copied)
        self._threads = 1
        self._twin: torch.nn.Module | None = None
        self._config: Config | None = None
        self._compiled: ov.CompiledModel | None = None
        self._request: ov.InferRequest | None = None
        self._run: Callable[[], object] | None = None  # one inference, once the model is compiled
        self._export: dict = {}

    def configure(self, config: Config, threads: int) -> None:
        self._threads = threads
        # torch builds and exports the twin in this process: the same threads, one inter-op thread.
        torch.set_num_threads(threads)
        if torch.get_num_interop_threads() != 1:
            torch.set_num_interop_threads(1)

    def check(self, config: Config) -> None:
        if importlib.util.find_spec("onnxscript") is None:
            raise Skip(f"{NAME}: the torch export to ONNX needs onnxscript (pip install onnxscript)")
        # The table allows the CPU alone; on it, bf16 only where the CPU computes it natively.
        if reason := cpu_precision_skip_reason(NAME, config.precision):
            raise Skip(reason)

    def prepare(self, config: Config, data: tuple[np.ndarray, np.ndarray] | None = None) -> Callable[[], object]:
        """The twin and its input, ready for the step, whose first call exports and compiles the twin."""
        spec = zoo.get_spec(config.model)
        torch.manual_seed(0)  # the torch engine's weights; the data come from bench.backend.host_data
        twin = zoo.build(config.model, "torch").eval()
        images, _ = data or host_data(spec.input_shape, spec.num_classes, config.batch_size)
        # The graph's input stays fp32 in every precision: OpenVINO converts inside (bf16 is an inference hint).
        self._twin, self._config = twin, config
        self.model, self.images = twin, np.ascontiguousarray(images, dtype=np.float32)
        self._compiled = self._request = self._run = None
        self._export = {}

        def step() -> object:
            if self._run is None:
                self._start()
            return self._run()

        return step

    def _start(self) -> None:
        """Export the twin, compile it for the CPU, and make the one request every step reuses."""
        config = self._config
        with tempfile.TemporaryDirectory(prefix="convbench-onnx-") as folder:
            path = Path(folder) / f"{config.model}.onnx"
            self._export = export_onnx(self._twin, torch.from_numpy(self.images), path)
            # The CPU plugin reads the graph and its weights while compiling; the folder may go afterwards.
            compiled = ov.Core().compile_model(str(path), DEVICE, compile_config(self._threads, config.precision))
        # From here the weights live in the compiled model alone, so the process's memory is the runtime's.
        self._twin = None
        gc.collect()  # the export's graphs hold the twin's parameters in reference cycles
        self.model = self._compiled = compiled
        request = self._request = compiled.create_infer_request()
        feeds = {0: self.images}
        # share_inputs: the request reads the array in place; share_outputs: the logits are not copied out.
        self._run = lambda: request.infer(feeds, share_inputs=True, share_outputs=True)

    def synchronize(self) -> None:
        pass  # infer() returns once the outputs are written

    def trace_count(self) -> int:
        return 0  # the model is compiled once, in the first step

    def reset_peak_memory(self) -> None:
        pass

    def peak_memory_bytes(self) -> int | None:
        return None  # a CPU engine: the worker measures the process

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
                    exporter=self._export.get("exporter"), opset=self._export.get("opset"),
                    onnx_bytes=self._export.get("onnx_bytes"), export_s=self._export.get("export_s"))
        return info

    def matmul(self, device: str, precision: str, size: int) -> Callable[[], object]:
        raise NotImplementedError(f"{NAME}: does not time a matrix-product peak (the engine table says "
                                  "measures_peak=False; the peak of the device is measured by another engine)")

    def is_out_of_memory(self, error: BaseException) -> bool:
        text = str(error).lower()
        return isinstance(error, MemoryError) or any(message in text for message in _OUT_OF_MEMORY)

    def device_busy(self, steps: int) -> float | None:
        return None

    def profile_layers(self, config: Config, windows: int) -> dict:
        raise Skip(_NOT_EXPLAINED)

    def layer_steps(self, config: Config) -> dict[str, Callable[[], object]]:
        raise Skip(_NOT_EXPLAINED)

    def reference_timer(self, threads: int) -> tuple[Callable[[int], list[float]], str]:
        """The request's own synchronous call in a bare loop, each call timed; compiled first if no step has."""

        def bare_round(calls: int) -> list[float]:
            if self._run is None:
                self._start()
            request, feeds = self._request, {0: self.images}
            samples = []
            gc.disable()  # as timeit (and so torch's Timer) does
            try:
                for _ in range(calls):
                    start = time.perf_counter()
                    request.infer(feeds, share_inputs=True, share_outputs=True)
                    samples.append((time.perf_counter() - start) * 1e3)
            finally:
                gc.enable()
            return samples

        return bare_round, "bare InferRequest.infer loop"


def prove(name: str, batch_size: int, seed: int) -> dict:
    """OpenVINO's float32 logits of the exported twin (compiled for the CPU with an f32 inference precision)
    against torch's."""

    def run(path: Path, images: np.ndarray) -> np.ndarray:
        compiled = ov.Core().compile_model(str(path), DEVICE, compile_config(None, "fp32"))
        return compiled.create_infer_request().infer({0: images})[0]

    return prove_exported(name, batch_size, seed, NAME, run)
