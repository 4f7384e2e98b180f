"""PyTorch backend: eager (or ``torch.compile``) steps, autocast precisions, CUDA synchronisation."""

from __future__ import annotations

import contextlib
from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F

import zoo
from bench.backend import (
    FP16_LOSS_SCALE,
    Skip,
    cpu_precision_skip_reason,
    host_data,
    nvidia_driver,
    parse_device,
    precision_skip_reason,
)
from bench.config import Config
from bench.modes import SGD_LR, SGD_MOMENTUM, SGD_WEIGHT_DECAY, get_mode

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
        # fp16 gradients underflow without loss scaling; bf16 has fp32's range and needs none.
        scaler = torch.amp.GradScaler(kind, init_scale=FP16_LOSS_SCALE) if config.precision == "fp16" else None

        if not mode.backward:
            model.eval()

            def step() -> object:
                with torch.no_grad(), autocast():
                    return forward(images)

            return step

        model.train()
        optimizer = None
        if mode.update:
            optimizer = torch.optim.SGD(
                model.parameters(), lr=SGD_LR, momentum=SGD_MOMENTUM, weight_decay=SGD_WEIGHT_DECAY
            )
        self.optimizer = optimizer

        def step() -> object:
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

        return step

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

    def reference_timer(self, threads: int) -> tuple[Callable[[int], list[float]], str]:
        from torch.utils import benchmark

        # The same network on the same input, called directly; num_threads set, since the Timer defaults to 1.
        timer = benchmark.Timer(stmt="with torch.no_grad(): model(images)",
                                globals={"model": self.model, "images": self.images, "torch": torch},
                                num_threads=threads)
        # One call per measurement: per-call times, the statistic the harness reports.
        return (lambda calls: [timer.timeit(1).mean * 1e3 for _ in range(calls)]), "torch.utils.benchmark.Timer"

