"""PyTorch backend: eager (or ``torch.compile``) steps, autocast precisions, CUDA synchronisation."""

from __future__ import annotations

import contextlib
import os
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

import zoo
from bench import ledger as ld
from bench.backend import (
    FP16_LOSS_SCALE,
    Skip,
    bare_loop,
    cpu_precision_skip_reason,
    host_data,
    nvidia_driver,
    parse_device,
    precision_skip_reason,
)
from bench.config import Config
from bench.modes import SGD_LR, SGD_MOMENTUM, SGD_WEIGHT_DECAY, get_mode
from zoo import IMAGES
from zoo.torch_common import traced_layers

_DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


class TorchBackend:
    name = "torch"
    # Collectives here are synchronous and gloo/NCCL push their data: once the last one has returned and the
    # group is destroyed, nothing a peer needs remains in this process (the store is the launcher's).
    exits_at_once_after_leave = True

    def __init__(self) -> None:
        self._device = torch.device("cpu")
        self._compiled = False
        self.model: torch.nn.Module | None = None  # the network and input of the last prepared step
        self.images: torch.Tensor | None = None
        self.labels: torch.Tensor | None = None
        self.optimizer: torch.optim.Optimizer | None = None
        self._step: Callable[[], object] | None = None
        self._step_on: Callable[[torch.Tensor, torch.Tensor], object] | None = None  # the step on a given batch
        self._memory_format = torch.contiguous_format
        self._data_parallel = False  # joined a process group: prepare() wraps the model in DDP

    def configure(self, config: Config, threads: int) -> None:
        torch.set_num_threads(threads)
        if torch.get_num_interop_threads() != 1:  # torch allows setting it only once per process
            torch.set_num_interop_threads(1)

    def check(self, config: Config) -> None:
        kind, index = parse_device(config.device)
        if kind == "cuda":
            if not torch.cuda.is_available():
                raise Skip("torch: no CUDA GPU visible (torch.cuda.is_available() is False)")
            if index >= torch.cuda.device_count():
                raise Skip(f"torch: {config.device} requested but {torch.cuda.device_count()} CUDA device(s) visible")
            # The capability of the requested device, not of the current one (torch.cuda.is_bf16_supported()
            # asks the current device, and counts emulated bf16 as support).
            reason = precision_skip_reason("torch", torch.cuda.get_device_name(index),
                                           torch.cuda.get_device_capability(index), config.precision)
            if reason:
                raise Skip(reason)
        elif reason := cpu_precision_skip_reason("torch", config.precision):
            raise Skip(reason)

    def _use_device(self, device: str) -> str:
        kind, index = parse_device(device)
        self._device = torch.device(kind, index) if kind == "cuda" else torch.device("cpu")
        if kind == "cuda":
            torch.cuda.set_device(self._device)
            # fp32 means IEEE fp32 in both frameworks: torch's cuDNN and TensorFlow default to TF32 on Ampere
            # and newer, torch's matmuls do not, which would make the two "fp32" rows different work.
            torch.backends.cuda.matmul.allow_tf32 = False
            torch.backends.cudnn.allow_tf32 = False
        return kind

    def prepare(self, config: Config, data: tuple[np.ndarray, np.ndarray] | None = None) -> Callable[[], object]:
        self._step = self._prepare(config, data)
        return self._step

    def _prepare(self, config: Config, data: tuple[np.ndarray, np.ndarray] | None) -> Callable[[], object]:
        kind = self._use_device(config.device)
        if kind == "cuda":
            # cuDNN picks the fastest algorithm for these fixed shapes during burn-in.
            torch.backends.cudnn.benchmark = True
        mode = get_mode(config.mode)
        spec = zoo.get_spec(config.model)
        torch.manual_seed(0)  # weights; the data come from bench.backend.host_data
        model = zoo.build(config.model, "torch").to(self._device)
        memory_format = torch.channels_last if config.channels_last else torch.contiguous_format
        model = model.to(memory_format=memory_format)
        if self._data_parallel:
            # DDP broadcasts rank 0's weights, then all-reduces (averages) gradients in buckets during backward.
            model = torch.nn.parallel.DistributedDataParallel(
                model, device_ids=[self._device.index] if kind == "cuda" else None)
        images_np, labels_np = data or host_data(spec.input_shape, spec.num_classes, config.batch_size)
        images = torch.from_numpy(images_np).to(self._device).contiguous(memory_format=memory_format)
        labels = torch.from_numpy(labels_np).to(self._device)
        self.model, self.images, self.labels = model, images, labels

        forward = model
        if config.compile:
            self._compiled = True
            forward = torch.compile(model)
        dtype = _DTYPES[config.precision] if config.precision != "fp32" else None
        autocast = (
            (lambda: torch.autocast(device_type=kind, dtype=dtype))
            if dtype is not None
            else contextlib.nullcontext
        )
        self._autocast = autocast
        # fp16 gradients underflow without loss scaling; bf16 has fp32's range and needs none.
        scaler = torch.amp.GradScaler(kind, init_scale=FP16_LOSS_SCALE) if config.precision == "fp16" else None

        self._memory_format = memory_format
        if not mode.backward:
            model.eval()

            def step_on(images: torch.Tensor, labels: torch.Tensor) -> object:
                with torch.no_grad(), autocast():
                    return forward(images)

            self._step_on = step_on
            return lambda: step_on(images, labels)

        model.train()
        optimizer = None
        if mode.update:
            optimizer = torch.optim.SGD(
                model.parameters(), lr=SGD_LR, momentum=SGD_MOMENTUM, weight_decay=SGD_WEIGHT_DECAY
            )
        self.optimizer = optimizer

        def step_on(images: torch.Tensor, labels: torch.Tensor) -> object:
            # Fresh gradient tensors each step, as TensorFlow's tape returns; accumulating would add work.
            model.zero_grad(set_to_none=True)
            with autocast():
                loss = F.cross_entropy(forward(images).float(), labels)
            (scaler.scale(loss) if scaler is not None else loss).backward()
            if optimizer is not None:
                if scaler is not None:
                    scaler.step(optimizer)
                    scaler.update()
                else:
                    optimizer.step()
            return loss

        self._step_on = step_on
        return lambda: step_on(images, labels)

    def fed_step(self, batches) -> Callable[[], object]:
        """The prepared step on the next batch of ``batches`` (host tensors from the input pipeline), copied to the
        device first: from pinned memory without blocking the host on a GPU, in the step's memory format."""
        step_on, device, memory_format = self._step_on, self._device, self._memory_format
        non_blocking = device.type == "cuda"

        def fed() -> object:
            images, labels = next(batches)
            return step_on(images.to(device, non_blocking=non_blocking).contiguous(memory_format=memory_format),
                           labels.to(device, non_blocking=non_blocking))

        return fed

    # Data parallel (bench.rank): torch.distributed's process group, started by torch.distributed.run.

    def join(self, config: Config) -> tuple[int, int]:
        """Join the process group (NCCL on CUDA, one GPU per rank; gloo on CPU); returns (rank, world size)."""
        import torch.distributed as dist

        kind = self._use_device(config.device)
        dist.init_process_group("nccl" if kind == "cuda" else "gloo",
                                device_id=self._device if kind == "cuda" else None)
        self._data_parallel = True
        return dist.get_rank(), dist.get_world_size()

    def no_sync_step(self) -> Callable[[], object]:
        """The prepared step under DDP's ``no_sync()``: the same work, gradients kept local."""
        step, model = self._step, self.model

        def no_sync_step() -> object:
            with model.no_sync():
                return step()

        return no_sync_step

    def gradient_bytes(self) -> int:
        """What DDP all-reduces per step: every trainable parameter's gradient (kept in the parameter's dtype)."""
        return sum(p.numel() * p.element_size() for p in self.model.parameters() if p.requires_grad)

    def allreduce_step(self) -> Callable[[], object]:
        """One all-reduce of a gradient-sized fp32 buffer with torch.distributed's own collective."""
        import torch.distributed as dist

        buffer = torch.zeros(self.gradient_bytes() // 4, dtype=torch.float32, device=self._device)
        return lambda: dist.all_reduce(buffer)

    def agree_min(self, value: int) -> int:
        import torch.distributed as dist

        tensor = torch.tensor([value], dtype=torch.int64, device=self._device)
        dist.all_reduce(tensor, op=dist.ReduceOp.MIN)
        return int(tensor.item())

    def all_gather(self, samples: list[float]) -> list[list[float]]:
        """Every rank's list, by rank."""
        import torch.distributed as dist

        gathered: list = [None] * dist.get_world_size()
        dist.all_gather_object(gathered, list(samples))
        return gathered

    def leave(self) -> None:
        import torch.distributed as dist

        dist.destroy_process_group()

    def data_parallel_settings(self, config: Config) -> dict:
        import torch.distributed as dist

        return {"engine": "torch.nn.parallel.DistributedDataParallel (gradient mean all-reduced in backward, "
                          "25 MB buckets; buffers broadcast from rank 0 each forward)",
                "collective_backend": dist.get_backend() if dist.is_initialized() else None,
                "launcher": "torch.distributed.run (c10d rendezvous)",
                "world_size": dist.get_world_size() if dist.is_initialized() else None,
                "no_sync_ceiling": "the same step under DDP.no_sync()"}

    def synchronize(self) -> None:
        if self._device.type == "cuda":
            torch.cuda.synchronize(self._device)

    def trace_count(self) -> int:
        if not self._compiled:
            return 0
        from torch._dynamo.utils import counters

        return int(counters["stats"]["unique_graphs"])

    def reset_peak_memory(self) -> None:
        if self._device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self._device)

    def peak_memory_bytes(self) -> int | None:
        if self._device.type == "cuda":
            return int(torch.cuda.max_memory_allocated(self._device))
        return None

    def framework_info(self) -> dict:
        return {
            "version": torch.__version__,
            "cuda_build": torch.version.cuda,
            "cudnn": torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None,
            "mkldnn": torch.backends.mkldnn.is_available(),
        }

    def device_info(self, config: Config) -> dict:
        kind, index = parse_device(config.device)
        if kind != "cuda" or not torch.cuda.is_available() or index >= torch.cuda.device_count():
            return {}
        properties = torch.cuda.get_device_properties(index)
        return {
            "gpu_name": properties.name,
            "gpu_capability": f"{properties.major}.{properties.minor}",
            "gpu_memory_bytes": properties.total_memory,
            "gpu_multiprocessors": properties.multi_processor_count,
            "driver": nvidia_driver(),
        }

    def settings(self, config: Config) -> dict:
        info = {
            "threads": torch.get_num_threads(),
            "interop_threads": torch.get_num_interop_threads(),
            "memory_format": "channels_last" if config.channels_last else "contiguous (NCHW)",
            "compile": "torch.compile (model forward and backward)" if config.compile else "eager",
            "autocast": None if config.precision == "fp32" else str(_DTYPES[config.precision]).removeprefix("torch."),
        }
        if self._device.type == "cuda":
            info.update(cudnn_benchmark=torch.backends.cudnn.benchmark,
                        tf32_matmul=torch.backends.cuda.matmul.allow_tf32, tf32_cudnn=torch.backends.cudnn.allow_tf32)
        return info

    def matmul(self, device: str, precision: str, size: int) -> Callable[[], object]:
        self._use_device(device)  # TF32 off: an fp32 peak is an IEEE fp32 peak
        generator = torch.Generator(device=self._device).manual_seed(0)
        a, b = (torch.randn(size, size, device=self._device, generator=generator).to(_DTYPES[precision])
                for _ in range(2))
        return lambda: torch.mm(a, b)

    def is_out_of_memory(self, error: BaseException) -> bool:
        return isinstance(error, torch.OutOfMemoryError) or "out of memory" in str(error).lower()

    # Explaining a step layer by layer (bench.explainer).

    def _spec_layers(self, spec) -> list[tuple[str, str, torch.nn.Module | None]]:
        """Each spec layer of the prepared model, in the spec's order, with its kind and module (None for a function
        such as a residual addition or a concatenation)."""
        traced = traced_layers(self.model, spec.input_shape)
        if len(traced) != len(spec.layers):
            raise ValueError(f"{spec.name}: the torch model has {len(traced)} layers, the spec {len(spec.layers)}")
        return [(layer.name, layer.kind, step.module) for layer, step in zip(spec.layers, traced, strict=True)]

    def profile_layers(self, config: Config, windows: int) -> dict:
        """Profile ``windows`` single steps of the prepared step with torch.profiler, every module layer of the spec
        marked with a ``record_function`` range; a layer's forward time is its range, its backward time that of the
        autograd functions whose sequence numbers its forward ops carry. A function layer (an addition, a
        concatenation) has no module to mark, and torch.compile's kernels span layers: both are said in ``notes``,
        their time left unattributed."""
        from torch.profiler import ProfilerActivity, profile, record_function

        spec = zoo.get_spec(config.model)
        layers = self._spec_layers(spec)
        notes = {name: "a function call, not a module: not marked, its time is in unattributed"
                 for name, _, module in layers if module is None}
        names_by_module: dict[int, list[str]] = {}
        for name, _, module in layers:
            if module is not None:
                names_by_module.setdefault(id(module), []).append(name)
        if config.compile:
            notes = {name: "torch.compile: its kernels span layers, so no layer is attributed" for name, _, _ in layers}
            names_by_module = {}
        calls: dict[int, int] = {}
        open_ranges: list = []

        def enter(module: torch.nn.Module, _inputs: object) -> None:
            names = names_by_module[id(module)]
            index = calls.get(id(module), 0)
            calls[id(module)] = index + 1
            open_ranges.append(record_function(f"layer:{names[index % len(names)]}"))
            open_ranges[-1].__enter__()

        def leave(_module: torch.nn.Module, _inputs: object, _output: object) -> None:
            open_ranges.pop().__exit__(None, None, None)

        modules = {id(module): module for _, _, module in layers if module is not None and id(module) in
                   names_by_module}
        handles = [self.model.register_forward_pre_hook(lambda *_: calls.clear())]
        for module in modules.values():
            handles += [module.register_forward_pre_hook(enter), module.register_forward_hook(leave)]
        on_gpu = self._device.type == "cuda"
        activities = [ProfilerActivity.CPU, *([ProfilerActivity.CUDA] if on_gpu else [])]
        found, window_ms, kernels, launches, busy = [], [], {}, [], []
        try:
            for _ in range(windows):
                with profile(activities=activities) as profiler:
                    start = time.perf_counter()
                    self._step()
                    self.synchronize()
                    window_ms.append((time.perf_counter() - start) * 1e3)
                per_layer, window_kernels, launched, kernel_ms = _layer_times(profiler.events(), on_gpu)
                found.append(per_layer)
                for layer, names in window_kernels.items():
                    kernels.setdefault(layer, set()).update(names)
                launches.append(launched)
                busy.append(kernel_ms / window_ms[-1])
        finally:
            for handle in handles:
                handle.remove()
        return {"kinds": {name: kind for name, kind, _ in layers}, "windows": found, "window_ms": window_ms,
                "notes": notes, "kernels": kernels, "profiler": "torch.profiler, each spec layer a record_function",
                "launches_per_step": statistics.median(launches) if on_gpu else None,
                "device_busy": statistics.median(busy) if on_gpu else None}

    def device_busy(self, steps: int) -> float | None:
        if self._device.type != "cuda":
            return None
        from torch.profiler import ProfilerActivity, profile

        with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as profiler:
            start = time.perf_counter()
            for _ in range(steps):
                self._step()
            self.synchronize()
            wall_ms = (time.perf_counter() - start) * 1e3
        return _layer_times(profiler.events(), on_gpu=True)[3] / wall_ms

    def layer_steps(self, config: Config) -> dict[str, Callable[[], object]]:
        """Each spec layer alone, as a step of its own at its in-model input shape: its forward pass, and for a mode
        with a backward pass the gradients of the sum of its output with respect to its weights and its input."""
        spec = zoo.get_spec(config.model)
        backward = get_mode(config.mode).backward
        memory_format = torch.channels_last if config.channels_last else torch.contiguous_format
        self.model.train(backward)
        steps = {}
        for name, kind, module in self._spec_layers(spec):
            function = module if module is not None else _FUNCTIONS[kind]
            inputs = []
            for source in spec.layer(name).inputs:
                shape = spec.input_shape if source == IMAGES else spec.layer(source).output_shape
                value = torch.randn(config.batch_size, *shape, device=self._device)
                if value.dim() == 4:
                    value = value.contiguous(memory_format=memory_format)
                inputs.append(value.requires_grad_(backward and source != IMAGES))
            steps[name] = self._layer_step(function, inputs, module, backward)
        return steps

    def _layer_step(self, function, inputs: list, module, backward: bool) -> Callable[[], object]:
        autocast = self._autocast
        if not backward:
            def forward() -> object:
                with torch.no_grad(), autocast():
                    return function(*inputs)

            return forward

        # An in-place layer (torchvision's ReLU) may not write into a leaf that needs a gradient: it gets a copy,
        # whose cost is then the layer's.
        in_place = getattr(module, "inplace", False)

        def forward_backward() -> object:
            if module is not None:
                module.zero_grad(set_to_none=True)
            for value in inputs:
                value.grad = None
            with autocast():
                output = function(*(value.clone() for value in inputs) if in_place else inputs)
            output.float().sum().backward()
            return output

        return forward_backward

    def reference_timer(self, threads: int) -> tuple[Callable[[int], list[float]], str]:
        from torch.utils import benchmark

        # The same network on the same input, called directly; num_threads set, since the Timer defaults to 1.
        timer = benchmark.Timer(stmt="with torch.no_grad(): model(images)",
                                globals={"model": self.model, "images": self.images, "torch": torch},
                                num_threads=threads)
        # One call per measurement: per-call times, the statistic the harness reports.
        return (lambda calls: [timer.timeit(1).mean * 1e3 for _ in range(calls)]), "torch.utils.benchmark.Timer"



# The names the exported graph gives its one input and one output, which the ONNX engines feed and read.
ONNX_INPUT, ONNX_OUTPUT = "images", "logits"
ONNX_EXPORTER = "torch.onnx.export(dynamo=True): torch.export graph translated by onnxscript, then optimised"


def export_onnx(model: torch.nn.Module, images: torch.Tensor, path: str | os.PathLike) -> dict:
    """Write ``model`` (in eval mode) applied to ``images`` as an ONNX graph at ``path``, and return the facts of the
    export: exporter, opset, bytes written (the graph and its external weights) and seconds taken.

    The one export of the engines that run the torch twins in an ONNX runtime (``bench.onnx_backend``,
    ``bench.openvino_backend``), so both run the same graph. It lives here, beside the twins it exports, because the
    engine table names this module and importing it loads torch alone, never the other runtime. The exporter is
    named rather than left to torch's default, which has changed between releases (it was the TorchScript
    exporter); its opset is torch's default for it, read back from the file. The batch is fixed (no dynamic axes), as
    in every other engine: a runtime plans memory and picks kernels for the shapes it is given.
    """
    import onnx

    path = Path(path)
    start = time.perf_counter()
    program = torch.onnx.export(model, (images,), str(path), input_names=[ONNX_INPUT], output_names=[ONNX_OUTPUT],
                                dynamo=True, verbose=False)
    seconds = time.perf_counter() - start
    # onnxscript's rewrite rules (module globals) keep the last graph they matched, whose initialisers wrap the
    # model's own parameters: without this the twin's weights would stay in the process for good, counted in the
    # runtime's memory. The graph is written; its values are no longer needed.
    graph_in_memory = getattr(getattr(program, "model", None), "graph", None)
    for value in getattr(graph_in_memory, "initializers", {}).values():
        value.const_value = None
    graph = onnx.load(str(path), load_external_data=False)
    opset = next((entry.version for entry in graph.opset_import if entry.domain in ("", "ai.onnx")), None)
    # The weights may sit in files beside the graph (external data), each named after it.
    written = sum(file.stat().st_size for file in path.parent.iterdir() if file.name.startswith(path.name))
    return {"exporter": ONNX_EXPORTER, "opset": opset, "onnx_bytes": written, "export_s": round(seconds, 3)}


class ExportedTwinBackend:
    """What the engines over the exported torch twin share (``bench.onnx_backend``, ``bench.openvino_backend``):
    the twin and its input prepared as the torch engine prepares them, the export and the runtime's own preparation
    (a session, a compilation) in the step's first call, so the burn-in's first step reports them as it reports
    compile time for XLA or torch.compile, and what such a runtime does not do (gradients, a matmul peak, a
    per-layer profile). A subclass says how its runtime opens the exported file (``_open``, returning the one call
    a step makes), checks its device and precision, and reports its facts and settings.
    """

    name: str
    exits_at_once_after_leave = True  # never a rank: these engines have no data-parallel runtime
    reference: str  # what its reference timer calls, for the fidelity table
    # Texts of an allocation failure in the runtimes (operator new, their arenas and allocators, cudaMalloc).
    out_of_memory = ("bad_alloc", "failed to allocate", "out of memory", "cannot allocate")

    def __init__(self) -> None:
        self.model: object = None  # the torch twin until the first step, then the runtime's prepared model
        self.images: object = None  # the input batch as the runtime reads it
        self._threads = 1
        self._twin: torch.nn.Module | None = None
        self._config: Config | None = None
        self._run: Callable[[], object] | None = None  # one call of the runtime, once it is prepared
        self._export: dict = {}

    def configure(self, config: Config, threads: int) -> None:
        self._threads = threads
        # torch builds and exports the twin in this process: the same threads, one inter-op thread.
        torch.set_num_threads(threads)
        if torch.get_num_interop_threads() != 1:
            torch.set_num_interop_threads(1)

    def _twin_and_images(self, twin: torch.nn.Module, images: np.ndarray, config: Config):
        """The twin and input in the configuration's precision (the graph a runtime is given is fp32 unless said)."""
        return twin, images

    def prepare(self, config: Config, data: tuple[np.ndarray, np.ndarray] | None = None) -> Callable[[], object]:
        """The twin and its input, ready for the step, whose first call exports the twin and opens the runtime."""
        spec = zoo.get_spec(config.model)
        torch.manual_seed(0)  # the torch engine's weights; the data come from bench.backend.host_data
        images, _ = data or host_data(spec.input_shape, spec.num_classes, config.batch_size)
        twin, images = self._twin_and_images(zoo.build(config.model, "torch").eval(), images, config)
        self._twin, self._config = twin, config
        self.model, self.images = twin, np.ascontiguousarray(images)
        self._run, self._export = None, {}

        def step() -> object:
            if self._run is None:
                self._start()
            return self._run()

        return step

    def _start(self) -> None:
        """Export the twin and let the runtime prepare it; from then on its weights live in the runtime alone, so the
        process's memory is the runtime's."""
        import gc
        import tempfile

        with tempfile.TemporaryDirectory(prefix="convbench-onnx-") as folder:
            path = Path(folder) / f"{self._config.model}.onnx"
            self._export = export_onnx(self._twin, torch.from_numpy(self.images), path)
            # The runtime reads the graph and its weights now; the folder may go once it has.
            self._run = self._open(path, self._config)
        self._twin = None
        gc.collect()  # the export's graphs hold the twin's parameters in reference cycles

    def _open(self, path: Path, config: Config) -> Callable[[], object]:
        """Prepare the exported graph at ``path`` in the runtime (setting ``self.model``) and return one step's call."""
        raise NotImplementedError

    def _export_settings(self) -> dict:
        return {key: self._export.get(key) for key in ("exporter", "opset", "onnx_bytes", "export_s")}

    def synchronize(self) -> None:
        pass  # the runtime's call returns once the outputs are written (a GPU binding overrides this)

    def trace_count(self) -> int:
        return 0  # the graph is prepared once, in the first step

    def reset_peak_memory(self) -> None:
        pass

    def peak_memory_bytes(self) -> int | None:
        return None  # the worker measures the process; the runtimes keep no peak for Python to read

    def device_busy(self, steps: int) -> float | None:
        return None

    def matmul(self, device: str, precision: str, size: int) -> Callable[[], object]:
        raise NotImplementedError(f"{self.name}: does not time a matrix-product peak (the engine table says "
                                  "measures_peak=False; the peak of the device is measured by another engine)")

    def is_out_of_memory(self, error: BaseException) -> bool:
        text = str(error).lower()
        return isinstance(error, MemoryError) or any(message in text for message in self.out_of_memory)

    def _not_explained(self) -> Skip:
        from bench.engines import get_engine

        # explain refuses the engine before it starts (the table); a direct call says the same.
        return Skip(f"{self.name}: {get_engine(self.name).explains}")

    def profile_layers(self, config: Config, windows: int) -> dict:
        raise self._not_explained()

    def layer_steps(self, config: Config) -> dict[str, Callable[[], object]]:
        raise self._not_explained()

    def _reference_call(self) -> Callable[[], object]:
        """The runtime's own call, waiting for its outputs; the step's call unless the runtime needs more."""
        return self._run

    def reference_timer(self, threads: int) -> tuple[Callable[[int], list[float]], str]:
        """The runtime's own call in a bare loop, each call timed; the runtime is prepared first if no step has."""

        def bare_round(calls: int) -> list[float]:
            if self._run is None:
                self._start()
            return bare_loop(self._reference_call())(calls)

        return bare_round, self.reference


def prove_exported(name: str, batch_size: int, seed: int, other: str,
                   run: Callable[[Path, np.ndarray], np.ndarray]) -> dict:
    """The proof (``bench.proofs``) that an ONNX runtime runs the zoo's network: the float32 torch twin of ``name``
    (weights from ``seed``) and ``run(onnx_path, images)``, ``other``'s logits of the same graph exported by
    ``export_onnx``, on one standard-normal NCHW batch from ``seed``; passed when the largest difference of the
    logits, relative to the largest torch logit, is within the zoo's float32 bound.

    There is no weight transfer to prove here (the runtime runs the twin's own graph), so no float64 pass and no
    gradients: what can go wrong is the export and the runtime's kernels, both of which the float32 logits show,
    provided they depend on every layer. So BatchNorm's running statistics are first set to those of the batch:
    with fresh ones and torchvision's small initial weights GoogLeNet's activations shrink layer by layer until its
    logits are its last bias alone, and agreeing on them would prove nothing about the layers before.
    """
    import tempfile

    from zoo.parity import FP32_LOGITS_RTOL, relative_difference

    spec = zoo.get_spec(name)
    torch.manual_seed(seed)
    model = zoo.build(name, "torch").float().eval()
    images = np.random.default_rng(seed).standard_normal((batch_size, *spec.input_shape)).astype(np.float32)
    batch_norms = [module for module in model.modules() if isinstance(module, torch.nn.modules.batchnorm._BatchNorm)]
    with torch.no_grad():
        if batch_norms:
            for module in batch_norms:  # the batch's own statistics: a cumulative average over one batch
                module.reset_running_stats()
                module.momentum = None
                module.train()
            model(torch.from_numpy(images))
            model.eval()
        expected = model(torch.from_numpy(images)).numpy()
    with tempfile.TemporaryDirectory(prefix="convbench-onnx-") as folder:
        path = Path(folder) / f"{name}.onnx"
        facts = export_onnx(model, torch.from_numpy(images), path)
        got = np.asarray(run(path, images), dtype=np.float32)
    diff = float(np.max(np.abs(expected - got))) if got.shape == expected.shape else float("inf")
    scale = float(np.max(np.abs(expected)))
    relative = relative_difference(diff, scale)
    if not np.isfinite(relative):  # a NaN would otherwise pass every comparison
        relative = float("inf")
    return {"parity": {"model": name, "batch_size": batch_size, "reference": "torch", "other": other,
                       "kind": "fp32 logits", "fp32_logits_max_abs_diff": diff, "fp32_logits_max_abs": scale,
                       "fp32_logits_rel_diff": relative, "fp32_logits_rtol": FP32_LOGITS_RTOL,
                       "passed": bool(relative <= FP32_LOGITS_RTOL), "exporter": facts["exporter"],
                       "opset": facts["opset"]},
            "counts": None}


# Spec layers that are functions rather than modules, run alone by kind.
_FUNCTIONS = {"add": lambda *values: sum(values[1:], values[0]), "concat": lambda *values: torch.cat(values, 1),
              "flatten": lambda value: torch.flatten(value, 1), "relu": F.relu}
_BACKWARD_PREFIX = "autograd::engine::evaluate_function: "
# Ops that only allocate, view or copy: left out of the ops a layer ran, which name the kernels that did its work.
_BOOKKEEPING = frozenset({"aten::empty", "aten::empty_like", "aten::as_strided", "aten::as_strided_", "aten::resize_",
                          "aten::view", "aten::t", "aten::transpose", "aten::expand", "aten::copy_",
                          "aten::resolve_conj", "aten::zeros", "aten::zero_", "aten::fill_", "aten::detach",
                          "aten::contiguous", "aten::reshape", "aten::_reshape_alias", "aten::clone"})


def _layer_times(events, on_gpu: bool) -> tuple[dict[str, dict[str, float]], dict[str, set[str]], int, float]:
    """From one profiled step's events: each marked layer's ms by pass, the ops (or GPU kernels) under it, the
    kernel launches and the kernels' total ms."""
    def own_ms(event) -> float:
        return (event.device_time_total if on_gpu else event.cpu_time_total) / 1e3

    def layer_above(event) -> str | None:
        while event is not None:
            if event.name.startswith("layer:"):
                return event.name.removeprefix("layer:")
            event = event.cpu_parent
        return None

    times: dict[str, dict[str, float]] = {}
    kernels: dict[str, set[str]] = {}
    layer_of_sequence: dict[int, str] = {}
    launched, kernel_ms = 0, 0.0
    for event in events:
        launched += len(event.kernels)
        kernel_ms += sum(kernel.duration for kernel in event.kernels) / 1e3
        if event.name.startswith("layer:"):
            layer = event.name.removeprefix("layer:")
            times.setdefault(layer, {})[ld.FORWARD] = times.get(layer, {}).get(ld.FORWARD, 0.0) + own_ms(event)
            continue
        layer = layer_above(event.cpu_parent) if event.cpu_parent is not None else None
        if layer is not None:
            if event.sequence_nr >= 0:
                layer_of_sequence[event.sequence_nr] = layer
            if event.name not in _BOOKKEEPING:
                kernels.setdefault(layer, set()).update([event.name, *(kernel.name for kernel in event.kernels)])
    for event in events:
        if event.name.startswith(_BACKWARD_PREFIX) and event.cpu_parent is None \
                and event.sequence_nr in layer_of_sequence:
            layer = layer_of_sequence[event.sequence_nr]
            times.setdefault(layer, {})[ld.BACKWARD] = times[layer].get(ld.BACKWARD, 0.0) + own_ms(event)
    return times, kernels, launched, kernel_ms
