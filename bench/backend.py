"""The small interface each framework's backend implements, and lazy loading of one backend by name."""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Protocol

from bench.record import Config

# SGD of the 2012 paper, used by the train mode in both frameworks.
SGD_LR, SGD_MOMENTUM, SGD_WEIGHT_DECAY = 0.01, 0.9, 5e-4
# fp16 losses are multiplied by this before backward (torch's GradScaler starts from the same scale).
FP16_LOSS_SCALE = 2.0**16
# Labels are drawn once with this seed; inputs are standard normal, drawn on the device before timing.
DATA_SEED = 0

_BACKEND_MODULES = {"torch": "bench.torch_backend", "tf": "bench.tf_backend"}


class Skip(Exception):
    """A combination this framework or device cannot run; the message is the one-line reason."""


class Backend(Protocol):
    """What the worker needs from a framework. Imported only inside that framework's worker process."""

    name: str
    model: object  # the network of the last prepared step, for inspection
    images: object  # its input batch, already on the device

    def configure_threads(self, threads: int) -> None:
        """Set intra-op threads (and one inter-op thread) before the framework runs anything."""

    def check(self, config: Config) -> None:
        """Raise ``Skip`` with the reason if ``config`` cannot run here (device missing, precision unsupported)."""

    def prepare(self, config: Config) -> Callable[[], object]:
        """Build the model and data on the device and return the step of ``config.mode``, ready to call."""

    def synchronize(self) -> None:
        """Wait until the device has finished all queued work."""

    def trace_count(self) -> int:
        """How many times the step has been traced or compiled so far (0 where nothing is compiled)."""

    def reset_peak_memory(self) -> None:
        """Start a new peak-memory window (device memory on GPU; a no-op on CPU)."""

    def peak_memory_bytes(self) -> int | None:
        """Peak device memory since ``reset_peak_memory``; None on CPU (the worker reports its peak RSS)."""

    def environment(self, config: Config) -> dict:
        """Versions, devices and settings that affect the numbers."""

    def is_out_of_memory(self, error: BaseException) -> bool:
        """Whether ``error`` is this framework's out-of-memory error."""


def load_backend(framework: str) -> Backend:
    """A new backend of ``framework``; imports that framework (and only it)."""
    return importlib.import_module(_BACKEND_MODULES[framework]).Backend()


def parse_device(device: str) -> tuple[str, int]:
    """``"cpu"`` -> ("cpu", 0); ``"cuda"`` -> ("cuda", 0); ``"cuda:N"`` -> ("cuda", N). ValueError otherwise."""
    kind, _, index = device.strip().lower().partition(":")
    if kind == "cpu" and not index:
        return "cpu", 0
    if kind in ("cuda", "gpu") and (not index or (index.isdigit())):
        return "cuda", int(index or 0)
    raise ValueError(f"unknown device {device!r}; accepted: cpu, cuda, cuda:N")
