"""ONNX Runtime backend: the torch twins exported to ONNX (``bench.torch_backend.export_onnx``) and run by an
``InferenceSession``, forward only.

The export and the session's creation (where ONNX Runtime optimises the graph) happen in the step's first call, so
the burn-in's first step reports them, as it reports compile time for XLA or torch.compile; every later call only
runs the session. On a GPU the input is bound on the device and the output left there (I/O binding), so no host
copy is inside a sample.
"""

from __future__ import annotations

import gc
import importlib.util
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import torch

import zoo
from bench.backend import (
    Skip,
    cpu_precision_skip_reason,
    host_data,
    nvidia_driver,
    parse_device,
    precision_skip_reason,
)
from bench.config import Config
from bench.engines import ENGINES
from bench.torch_backend import ONNX_INPUT, ONNX_OUTPUT, export_onnx, prove_exported

NAME = "onnxruntime"
# explain refuses the engine before it starts (the table); a direct call says the same.
_NOT_EXPLAINED = f"{NAME}: {ENGINES[NAME].explains}"
OPTIMIZATION = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
# The texts of ONNX Runtime's allocation failures (its CPU and CUDA arenas, cudaMalloc, operator new).
_OUT_OF_MEMORY = ("failed to allocate memory", "out of memory", "bad_alloc")


class OnnxRuntimeBackend:
    name = NAME
    exits_at_once_after_leave = True  # never a rank: the engine has no data-parallel runtime

    def __init__(self) -> None:
        self.model: object = None  # the torch twin until the first step, then the session that runs its export
        self.images: object = None  # the input batch: a host array, or an OrtValue on the GPU
        self._threads = 1
        self._kind, self._index = "cpu", 0
        self._twin: torch.nn.Module | None = None
        self._host_images: np.ndarray | None = None
        self._config: Config | None = None
        self._options: ort.SessionOptions | None = None
        self._session: ort.InferenceSession | None = None
        self._binding = None  # the session's I/O binding on a GPU
        self._run: Callable[[], object] | None = None  # one call of the session, once it exists
        self._export: dict = {}

    def configure(self, config: Config, threads: int) -> None:
        self._threads = threads
        # torch builds and exports the twin in this process: the same threads, one inter-op thread.
        torch.set_num_threads(threads)
        if torch.get_num_interop_threads() != 1:
            torch.set_num_interop_threads(1)
        ort.set_default_logger_severity(3)  # errors only: its warnings about unused initialisers are noise here

    def check(self, config: Config) -> None:
        if importlib.util.find_spec("onnxscript") is None:
            raise Skip(f"{NAME}: the torch export to ONNX needs onnxscript (pip install onnxscript)")
        kind, index = parse_device(config.device)
        if kind == "cuda":
            if "CUDAExecutionProvider" not in ort.get_available_providers():
                raise Skip(f"{NAME}: CUDA needs onnxruntime-gpu (pip install onnxruntime-gpu)")
            if not torch.cuda.is_available():
                raise Skip(f"{NAME}: no CUDA GPU visible (torch.cuda.is_available() is False)")
            if index >= torch.cuda.device_count():
                raise Skip(f"{NAME}: {config.device} requested but {torch.cuda.device_count()} CUDA device(s) visible")
            reason = precision_skip_reason(NAME, torch.cuda.get_device_name(index),
                                           torch.cuda.get_device_capability(index), config.precision)
        else:
            reason = cpu_precision_skip_reason(NAME, config.precision)
        if reason:
            raise Skip(reason)

    def prepare(self, config: Config, data: tuple[np.ndarray, np.ndarray] | None = None) -> Callable[[], object]:
        """The twin and its input, ready for the step, whose first call exports the twin and opens the session."""
        self._kind, self._index = parse_device(config.device)
        spec = zoo.get_spec(config.model)
        torch.manual_seed(0)  # the torch engine's weights; the data come from bench.backend.host_data
        twin = zoo.build(config.model, "torch").eval()
        images, _ = data or host_data(spec.input_shape, spec.num_classes, config.batch_size)
        if config.precision == "fp16":
            # A half-precision graph, weights and activations: autocast (the torch engine's fp16) does not survive
            # an export, so the twin itself is cast, and the CUDA provider runs fp16 kernels throughout.
            twin, images = twin.half(), images.astype(np.float16)
        self._twin, self._host_images, self._config = twin, np.ascontiguousarray(images), config
        self.model, self.images = twin, self._host_images
        self._session = self._binding = self._run = None
        self._export = {}

        def step() -> object:
            if self._run is None:
                self._start()
            return self._run()

        return step

    def _session_options(self) -> ort.SessionOptions:
        options = ort.SessionOptions()
        options.intra_op_num_threads = self._threads
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.graph_optimization_level = OPTIMIZATION
        return options

    def _providers(self) -> list:
        if self._kind != "cuda":
            return ["CPUExecutionProvider"]
        # fp32 means IEEE fp32, as in the other engines: TF32 (on by default in the CUDA provider) is turned off.
        cuda = {"device_id": str(self._index), "use_tf32": "0", "cudnn_conv_algo_search": "EXHAUSTIVE"}
        return [("CUDAExecutionProvider", cuda), "CPUExecutionProvider"]

    def _start(self) -> None:
        """Export the twin, open the session on it, and set up the call the step makes."""
        config = self._config
        with tempfile.TemporaryDirectory(prefix="convbench-onnx-") as folder:
            path = Path(folder) / f"{config.model}.onnx"
            self._export = export_onnx(self._twin, torch.from_numpy(self._host_images), path)
            self._options = self._session_options()
            # The session reads the graph and its weights now; the folder may go once it exists.
            session = ort.InferenceSession(str(path), sess_options=self._options, providers=self._providers())
        # From here the weights live in the session alone, so the process's memory is the runtime's.
        self._twin = None
        gc.collect()  # the export's graphs hold the twin's parameters in reference cycles
        self.model = self._session = session
        if self._kind != "cuda":
            outputs, feeds = [ONNX_OUTPUT], {ONNX_INPUT: self._host_images}
            self._run = lambda: session.run(outputs, feeds)
            return
        if "CUDAExecutionProvider" not in session.get_providers():
            # ONNX Runtime falls back to the CPU silently when the CUDA provider fails to load.
            raise RuntimeError(f"{NAME}: the CUDA execution provider did not load (its CUDA and cuDNN libraries?); "
                               f"the session would run on {', '.join(session.get_providers())}")
        binding = session.io_binding()
        device_images = ort.OrtValue.ortvalue_from_numpy(self._host_images, "cuda", self._index)
        binding.bind_ortvalue_input(ONNX_INPUT, device_images)
        binding.bind_output(ONNX_OUTPUT, "cuda", self._index)
        self.images, self._binding = device_images, binding

        def run() -> object:
            session.run_with_iobinding(binding)
            return binding

        self._run = run

    def synchronize(self) -> None:
        if self._binding is not None:
            self._binding.synchronize_outputs()

    def trace_count(self) -> int:
        return 0  # the graph is optimised once, when the session opens in the first step

    def reset_peak_memory(self) -> None:
        pass

    def peak_memory_bytes(self) -> int | None:
        return None  # the worker measures the process; ONNX Runtime's arenas keep no peak for Python to read

    def framework_info(self) -> dict:
        return {"version": ort.__version__, "build_device": ort.get_device(),
                "available_providers": ort.get_available_providers(), "onnx": onnx.__version__,
                "exported_with_torch": torch.__version__}

    def device_info(self, config: Config) -> dict:
        kind, index = parse_device(config.device)
        if kind != "cuda" or not torch.cuda.is_available() or index >= torch.cuda.device_count():
            return {}
        properties = torch.cuda.get_device_properties(index)
        return {"gpu_name": properties.name, "gpu_capability": f"{properties.major}.{properties.minor}",
                "gpu_memory_bytes": properties.total_memory, "gpu_multiprocessors": properties.multi_processor_count,
                "driver": nvidia_driver()}

    def settings(self, config: Config) -> dict:
        """As the session has them (read back from its options), with the export's facts; before the first step
        only what was asked for."""
        options = self._options or self._session_options()
        session = self._session
        info = {
            "threads": options.intra_op_num_threads,
            "interop_threads": options.inter_op_num_threads,
            "execution_mode": options.execution_mode.name,
            "graph_optimization_level": options.graph_optimization_level.name,
            "providers": session.get_providers() if session else [provider if isinstance(provider, str)
                                                                  else provider[0] for provider in self._providers()],
            "precision": "fp16 graph (weights and activations)" if config.precision == "fp16" else "fp32 graph",
            "io_binding": self._kind == "cuda",
            "exporter": self._export.get("exporter"),
            "opset": self._export.get("opset"),
            "onnx_bytes": self._export.get("onnx_bytes"),
            "export_s": self._export.get("export_s"),
        }
        if session is not None and self._kind == "cuda":
            info["cuda_provider_options"] = session.get_provider_options().get("CUDAExecutionProvider")
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
        """The session's own call in a bare loop, each call timed; the session is opened first if no step has."""

        def bare_round(calls: int) -> list[float]:
            if self._run is None:
                self._start()
            session, binding = self._session, self._binding
            outputs, feeds = [ONNX_OUTPUT], {ONNX_INPUT: self._host_images}
            samples = []
            gc.disable()  # as timeit (and so torch's Timer) does
            try:
                for _ in range(calls):
                    start = time.perf_counter()
                    if binding is None:
                        session.run(outputs, feeds)
                    else:
                        session.run_with_iobinding(binding)
                        binding.synchronize_outputs()
                    samples.append((time.perf_counter() - start) * 1e3)
            finally:
                gc.enable()
            return samples

        return bare_round, "bare InferenceSession.run loop"


def prove(name: str, batch_size: int, seed: int) -> dict:
    """ONNX Runtime's float32 logits of the exported twin (CPU, every graph optimisation on) against torch's."""

    def run(path: Path, images: np.ndarray) -> np.ndarray:
        options = ort.SessionOptions()
        options.graph_optimization_level = OPTIMIZATION
        session = ort.InferenceSession(str(path), sess_options=options, providers=["CPUExecutionProvider"])
        return session.run([ONNX_OUTPUT], {ONNX_INPUT: images})[0]

    return prove_exported(name, batch_size, seed, NAME, run)
