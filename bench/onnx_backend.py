"""ONNX Runtime backend: the torch twins exported to ONNX (``bench.torch_backend.export_onnx``) and run by an
``InferenceSession``, forward only.

The export and the session's creation (where ONNX Runtime optimises the graph) happen in the step's first call
(``bench.torch_backend.ExportedTwinBackend``). On a GPU the input is bound on the device and the output left there
(I/O binding), so no host copy is inside a sample.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import torch

from bench.backend import Skip, cpu_precision_skip_reason, nvidia_driver, parse_device, precision_skip_reason
from bench.config import Config
from bench.torch_backend import ONNX_INPUT, ONNX_OUTPUT, ExportedTwinBackend, prove_exported

NAME = "onnxruntime"
OPTIMIZATION = ort.GraphOptimizationLevel.ORT_ENABLE_ALL


class OnnxRuntimeBackend(ExportedTwinBackend):
    name = NAME
    reference = "bare InferenceSession.run loop"

    def __init__(self) -> None:
        super().__init__()
        self._kind, self._index = "cpu", 0
        self._options: ort.SessionOptions | None = None
        self._session: ort.InferenceSession | None = None
        self._binding = None  # the session's I/O binding on a GPU

    def configure(self, config: Config, threads: int) -> None:
        super().configure(config, threads)
        ort.set_default_logger_severity(3)  # errors only: its warnings about unused initialisers are noise here

    def check(self, config: Config) -> None:
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

    def _twin_and_images(self, twin: torch.nn.Module, images: np.ndarray, config: Config):
        self._kind, self._index = parse_device(config.device)
        self._session = self._binding = None
        if config.precision == "fp16":
            # A half-precision graph, weights and activations: autocast (the torch engine's fp16) does not survive
            # an export, so the twin itself is cast, and the CUDA provider runs fp16 kernels throughout.
            return twin.half(), images.astype(np.float16)
        return twin, images

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

    def _open(self, path: Path, config: Config) -> Callable[[], object]:
        self._options = self._session_options()
        session = ort.InferenceSession(str(path), sess_options=self._options, providers=self._providers())
        self.model = self._session = session
        host_images = self.images
        if self._kind != "cuda":
            outputs, feeds = [ONNX_OUTPUT], {ONNX_INPUT: host_images}
            return lambda: session.run(outputs, feeds)
        if "CUDAExecutionProvider" not in session.get_providers():
            # ONNX Runtime falls back to the CPU silently when the CUDA provider fails to load.
            raise RuntimeError(f"{NAME}: the CUDA execution provider did not load (its CUDA and cuDNN libraries?); "
                               f"the session would run on {', '.join(session.get_providers())}")
        binding = session.io_binding()
        device_images = ort.OrtValue.ortvalue_from_numpy(host_images, "cuda", self._index)
        binding.bind_ortvalue_input(ONNX_INPUT, device_images)
        binding.bind_output(ONNX_OUTPUT, "cuda", self._index)
        self.images, self._binding = device_images, binding

        def run() -> object:
            session.run_with_iobinding(binding)
            return binding

        return run

    def synchronize(self) -> None:
        if self._binding is not None:
            self._binding.synchronize_outputs()

    def _reference_call(self) -> Callable[[], object]:
        run, binding = self._run, self._binding
        if binding is None:
            return run
        return lambda: (run(), binding.synchronize_outputs())

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
            **self._export_settings(),
        }
        if self._kind == "cuda":
            # Not the device's: the CUDA provider's arena keeps no peak that Python can read.
            info["peak_memory"] = "process peak RSS (host memory; the device's is not measured)"
        if session is not None and self._kind == "cuda":
            info["cuda_provider_options"] = session.get_provider_options().get("CUDAExecutionProvider")
        return info


def prove(name: str, batch_size: int, seed: int) -> dict:
    """ONNX Runtime's float32 logits of the exported twin (CPU, every graph optimisation on) against torch's."""

    def run(path: Path, images: np.ndarray) -> np.ndarray:
        options = ort.SessionOptions()
        options.graph_optimization_level = OPTIMIZATION
        session = ort.InferenceSession(str(path), sess_options=options, providers=["CPUExecutionProvider"])
        return session.run([ONNX_OUTPUT], {ONNX_INPUT: images})[0]

    return prove_exported(name, batch_size, seed, NAME, run)
