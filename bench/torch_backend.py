"""PyTorch backend: eager (or ``torch.compile``) steps, autocast precisions, CUDA synchronisation."""

from __future__ import annotations

import contextlib
from collections.abc import Callable

import torch
import torch.nn.functional as F

import zoo
from bench.backend import DATA_SEED, FP16_LOSS_SCALE, SGD_LR, SGD_MOMENTUM, SGD_WEIGHT_DECAY, Skip, parse_device
from bench.record import Config

_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


class TorchBackend:
    name = "torch"

    def __init__(self) -> None:
        self._device = torch.device("cpu")
        self._compiled = False
        self.model: torch.nn.Module | None = None  # the network and input of the last prepared step
        self.images: torch.Tensor | None = None

    def configure_threads(self, threads: int) -> None:
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
            if config.precision == "bf16" and not torch.cuda.is_bf16_supported():
                raise Skip(f"torch: bf16 is not supported on {torch.cuda.get_device_name(index)}")
        elif config.precision == "fp16":
            raise Skip("torch: fp16 on CPU is not benchmarked (no fast fp16 CPU kernels); use bf16 or fp32")

    def prepare(self, config: Config) -> Callable[[], object]:
        kind, index = parse_device(config.device)
        self._device = torch.device(kind, index) if kind == "cuda" else torch.device("cpu")
        if kind == "cuda":
            torch.cuda.set_device(self._device)
            # cuDNN picks the fastest algorithm for these fixed shapes during burn-in.
            torch.backends.cudnn.benchmark = True
            # fp32 means IEEE fp32 in both frameworks: torch's cuDNN and TensorFlow default to TF32 on
            # Ampere and newer, torch's matmuls do not, which would make the two "fp32" rows different work.
            torch.backends.cuda.matmul.allow_tf32 = False
            torch.backends.cudnn.allow_tf32 = False
        spec = zoo.get_spec(config.model)
        torch.manual_seed(DATA_SEED)
        model = zoo.build(config.model, "torch").to(self._device)
        memory_format = torch.channels_last if config.channels_last else torch.contiguous_format
        model = model.to(memory_format=memory_format)
        images = torch.randn(config.batch_size, *spec.input_shape, device=self._device)
        images = images.contiguous(memory_format=memory_format)
        labels = torch.randint(0, spec.num_classes, (config.batch_size,), device=self._device)
        self.model, self.images = model, images

        forward = model
        if config.compile:
            self._compiled = True
            forward = torch.compile(model)
        dtype = _DTYPES.get(config.precision)
        autocast = (
            (lambda: torch.autocast(device_type=kind, dtype=dtype))
            if dtype is not None
            else contextlib.nullcontext
        )
        # fp16 gradients underflow without loss scaling; bf16 has fp32's range and needs none.
        scaler = torch.amp.GradScaler(kind, init_scale=FP16_LOSS_SCALE) if config.precision == "fp16" else None

        if config.mode == "forward":
            model.eval()

            def step() -> object:
                with torch.no_grad(), autocast():
                    return forward(images)

            return step

        model.train()
        optimizer = None
        if config.mode == "train":
            optimizer = torch.optim.SGD(
                model.parameters(), lr=SGD_LR, momentum=SGD_MOMENTUM, weight_decay=SGD_WEIGHT_DECAY
            )

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

    def environment(self, config: Config) -> dict:
        info = {
            "version": torch.__version__,
            "threads": torch.get_num_threads(),
            "interop_threads": torch.get_num_interop_threads(),
            "cuda_build": torch.version.cuda,
            "mkldnn": torch.backends.mkldnn.is_available(),
        }
        if self._device.type == "cuda":
            index = self._device.index or 0
            properties = torch.cuda.get_device_properties(index)
            info.update(
                {
                    "gpu_name": properties.name,
                    "gpu_memory_bytes": properties.total_memory,
                    "gpu_capability": f"{properties.major}.{properties.minor}",
                    "cudnn": torch.backends.cudnn.version(),
                    "cudnn_benchmark": torch.backends.cudnn.benchmark,
                    "tf32_matmul": torch.backends.cuda.matmul.allow_tf32,
                    "tf32_cudnn": torch.backends.cudnn.allow_tf32,
                    "driver": _nvidia_driver(),
                }
            )
        return info

    def is_out_of_memory(self, error: BaseException) -> bool:
        return isinstance(error, torch.OutOfMemoryError) or "out of memory" in str(error).lower()


def _nvidia_driver() -> str | None:
    try:
        import subprocess

        completed = subprocess.run(
            ["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
            capture_output=True, text=True, timeout=10, check=True,
        )
        return completed.stdout.strip().splitlines()[0]
    except (OSError, subprocess.SubprocessError, IndexError):
        return None


Backend = TorchBackend  # what bench.backend.load_backend instantiates
