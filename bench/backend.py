"""The small interface each engine's backend implements, and what backends share (the data, device names, the
checks of what a device computes natively).

An engine's backend is named in its entry of ``bench.engines`` and imported only inside a process that runs it.
"""

from __future__ import annotations

import gc
import subprocess
import time
from collections.abc import Callable, Iterator
from typing import Protocol

import numpy as np

from bench.config import Config

# fp16 losses are multiplied by this before backward (torch's GradScaler starts from the same scale).
FP16_LOSS_SCALE = 2.0**16
# Inputs and labels are drawn once from this seed, on the host, in NCHW order; a backend lays them out as its
# framework wants and copies them to the device before timing. Both frameworks thus see the same numbers.
DATA_SEED = 0
# Keras' mixed-precision policy of each precision, for the engines that run the Keras twins.
MIXED_PRECISION_POLICIES = {"fp32": "float32", "bf16": "mixed_bfloat16", "fp16": "mixed_float16"}
# Compute capability from which a GPU has native bf16 (Ampere) and fp16 tensor cores (Volta).
BF16_MIN_CAPABILITY, FP16_MIN_CAPABILITY = (8, 0), (7, 0)


class Skip(Exception):
    """A combination this framework or device cannot run; the message is the one-line reason."""


class Backend(Protocol):
    """What the worker needs from a framework. Imported only inside that framework's worker process."""

    name: str
    model: object  # the network of the last prepared step, for inspection
    images: object  # its input batch, already on the device

    def configure(self, config: Config, threads: int) -> None:
        """Before the framework initialises: intra-op threads (one inter-op thread), the GPUs it may see, memory
        growth."""

    def check(self, config: Config) -> None:
        """Raise ``Skip`` with the reason if ``config`` cannot run here (device missing, precision unsupported)."""

    def prepare(self, config: Config, data: tuple[np.ndarray, np.ndarray] | None = None) -> Callable[[], object]:
        """Build the model and data on the device and return the step of ``config.mode``, ready to call.

        ``data``: the NCHW images and labels to use instead of ``host_data`` (a test feeding each replica its
        share of one batch). After ``join``, the step is the data-parallel one.
        """

    def fed_step(self, batches: Iterator[tuple[object, object]]) -> Callable[[], object]:
        """After ``prepare``: the same step on the next (images, labels) of ``batches``, host tensors of the engine's
        input pipeline (``bench.pipeline``), each moved to the device inside the step."""

    # Data parallel, in a rank started by the framework's launcher (bench.rank):

    def join(self, config: Config) -> tuple[int, int]:
        """Join the framework's process group / strategy; returns (this rank, number of ranks)."""

    def no_sync_step(self) -> Callable[[], object]:
        """The prepared step without gradient exchange between ranks (the communication-free ceiling)."""

    def gradient_bytes(self) -> int:
        """Bytes of gradient the step exchanges."""

    def allreduce_step(self) -> Callable[[], object]:
        """One all-reduce of ``gradient_bytes`` with the engine's own collective."""

    def agree_min(self, value: int) -> int:
        """The smallest ``value`` any rank passes."""

    def all_gather(self, samples: list[float]) -> list[list[float]]:
        """Every rank's equally long list, by rank."""

    def leave(self) -> None:
        """Leave the process group."""

    # Whether a rank may end at once after ``leave`` (os._exit, skipping the interpreter's 1-2 s teardown of the
    # framework): only where no peer can still be waiting on anything this process holds.
    exits_at_once_after_leave: bool

    def data_parallel_settings(self, config: Config) -> dict:
        """How the data-parallel step is made (engine, collective, launcher), for the result's settings."""

    def synchronize(self) -> None:
        """Wait until the device has finished all queued work."""

    def trace_count(self) -> int:
        """How many times the step has been traced or compiled so far (0 where nothing is compiled)."""

    def reset_peak_memory(self) -> None:
        """Start a new peak-memory window (device memory on GPU; a no-op on CPU)."""

    def peak_memory_bytes(self) -> int | None:
        """Peak device memory since ``reset_peak_memory``; None on CPU (the worker measures the process)."""

    def framework_info(self) -> dict:
        """Versions and build facts of the framework, the same for every configuration."""

    def device_info(self, config: Config) -> dict:
        """What the configuration's device is: GPU name, compute capability, memory, driver ({} on CPU)."""

    def settings(self, config: Config) -> dict:
        """The settings in effect for this configuration that change its numbers (TF32, XLA, policy, ...)."""

    def matmul(self, device: str, precision: str, size: int) -> Callable[[], object]:
        """A dense size x size matrix product on ``device`` in ``precision`` (IEEE fp32 for fp32), ready to call."""

    def is_out_of_memory(self, error: BaseException) -> bool:
        """Whether ``error`` is this framework's out-of-memory error."""

    def device_busy(self, steps: int) -> float | None:
        """On a GPU, the share of ``steps`` profiled steps of the prepared step the device spent running kernels
        (their summed time over the steps' wall time); None on a CPU."""

    # Explaining a step layer by layer (bench.explainer), after prepare():

    def profile_layers(self, config: Config, windows: int) -> dict:
        """Profile ``windows`` single steps of the prepared step with the framework's own profiler, each layer named
        by the spec: ``kinds`` (spec name to kind), ``windows`` (per step, each layer's ms by pass), ``window_ms``
        (each step's wall time), ``notes`` (a layer whose figure holds more or less than the layer), ``kernels``
        (the ops or kernels each layer ran), ``profiler`` (what was used), ``launches_per_step`` and
        ``device_busy`` (on a GPU; None elsewhere)."""

    def layer_steps(self, config: Config) -> dict[str, Callable[[], object]]:
        """Each spec layer alone at its in-model input shape, as a step: forward, and backward where the mode has
        one."""

    def reference_timer(self, threads: int) -> tuple[Callable[[int], list[float]], str]:
        """The framework's own way of timing the prepared forward step (``bench.fidelity`` holds the harness to it):
        a function taking a number of calls and giving each call's ms, and what it is."""


def bare_loop(call: Callable[[], object]) -> Callable[[int], list[float]]:
    """A framework's own call timed call by call, as a ``reference_timer`` gives it: the garbage collector off during
    the loop, as timeit (and so torch's Timer) does; ``call`` itself waits for whatever it started."""

    def timed(calls: int) -> list[float]:
        samples = []
        gc.disable()
        try:
            for _ in range(calls):
                start = time.perf_counter()
                call()
                samples.append((time.perf_counter() - start) * 1e3)
        finally:
            gc.enable()
        return samples

    return timed


def parse_device(device: str) -> tuple[str, int]:
    """``"cpu"`` -> ("cpu", 0); ``"cuda"`` -> ("cuda", 0); ``"cuda:N"`` -> ("cuda", N). ValueError otherwise."""
    kind, _, index = device.strip().lower().partition(":")
    if kind == "cpu" and not index:
        return "cpu", 0
    if kind in ("cuda", "gpu") and (not index or (index.isdigit())):
        return "cuda", int(index or 0)
    raise ValueError(f"unknown device {device!r}; accepted: cpu, cuda, cuda:N")


def host_data(shape_chw: tuple[int, ...], num_classes: int, batch_size: int) -> tuple[np.ndarray, np.ndarray]:
    """The batch every framework times: standard-normal NCHW float32 images and int64 labels, from ``DATA_SEED``."""
    rng = np.random.default_rng(DATA_SEED)
    images = rng.standard_normal((batch_size, *shape_chw), dtype=np.float32)
    labels = rng.integers(0, num_classes, size=batch_size, dtype=np.int64)
    return images, labels


def cpu_has_native_bf16() -> bool:
    """Whether this CPU computes bf16 in hardware (x86 avx512_bf16 or amx_bf16; Arm's bf16 extension).

    Without it both frameworks emulate bf16 through fp32 conversions, many times slower than fp32 (a 2048^3
    torch matmul took minutes on an AVX2-only EPYC), and timing that as "bf16" would mislead.
    """
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            flags = {flag for line in cpuinfo if line.startswith(("flags", "Features")) for flag in line.split()}
    except OSError:
        return False
    return bool(flags & {"avx512_bf16", "amx_bf16", "bf16"})


def cpu_precision_skip_reason(framework: str, precision: str) -> str | None:
    """Why this CPU cannot run ``precision`` natively, or None if it can."""
    if precision == "fp16":
        return f"{framework}: fp16 on CPU is not benchmarked (no fast fp16 CPU kernels); use bf16 or fp32"
    if precision == "bf16" and not cpu_has_native_bf16():
        return (f"{framework}: bf16 on this CPU would be emulated (no avx512_bf16, amx_bf16 or Arm bf16 "
                "instructions); not benchmarked")
    return None


def precision_skip_reason(framework: str, device_name: str, capability: tuple[int, int], precision: str) -> str | None:
    """Why a GPU of this compute capability cannot run ``precision`` natively, or None if it can.

    Emulated bf16 (an fp32 computation that rounds) would be timed as if it were the real thing, so it is refused.
    """
    needed = {"bf16": BF16_MIN_CAPABILITY, "fp16": FP16_MIN_CAPABILITY}.get(precision)
    if needed is None or tuple(capability) >= needed:
        return None
    have, want = ".".join(map(str, capability)), ".".join(map(str, needed))
    return f"{framework}: {precision} needs compute capability {want} or newer; {device_name} has {have}"


def nvidia_driver() -> str | None:
    """The NVIDIA driver version as nvidia-smi reports it; None without one."""
    try:
        completed = subprocess.run(
            ["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
            capture_output=True, text=True, timeout=10, check=True,
        )
        return completed.stdout.strip().splitlines()[0]
    except (OSError, subprocess.SubprocessError, IndexError):
        return None
