"""What one configuration of a run is: what is measured, how it is timed, how it is parallel. Built by keyword.

Every field belongs to one of three parts, declared once in its metadata, and whether it identifies the
configuration across runs (``key``) is declared with it: the key, the history's columns and the frame's columns
all follow from these declarations, so a new field is one line here.
"""

from __future__ import annotations

import dataclasses
from dataclasses import asdict, dataclass, fields
from typing import Any

from bench.modes import get_mode
from bench.timing import get_timing_method

PRECISIONS: tuple[str, ...] = ("fp32", "bf16", "fp16")
# Where a step's batch comes from: one fixed batch already on the device, or JPEG files through the engine's input
# pipeline (bench.pipeline).
DATA_SOURCES: tuple[str, ...] = ("synthetic", "jpeg")


def _field(part: str, default: Any = dataclasses.MISSING, *, key: bool = True) -> Any:
    """A field of ``part``; ``key``: whether two runs must agree on it for their results to be compared."""
    return dataclasses.field(default=default, metadata={"part": part, "key": key})


@dataclass(frozen=True, kw_only=True)
class Config:
    """One configuration of a run. Frozen and hashable; every field by keyword."""

    # What is measured: the network, the engine, where, which step, and with which numerics and layout.
    model: str = _field("measured")
    framework: str = _field("measured")
    device: str = _field("measured")
    mode: str = _field("measured")
    batch_size: int = _field("measured")
    precision: str = _field("measured", "fp32")
    compile: bool = _field("measured", False)
    channels_last: bool = _field("measured", False)
    threads: int | None = _field("measured", None)
    # How it is timed: the way of timing (bench.timing.TIMING_METHODS) identifies what a figure means; the protocol
    # of burn-in, samples, time cap and fresh processes may differ between two runs that are still compared.
    timing: str = _field("timing", "steady")
    warmup: int = _field("timing", 10, key=False)
    iters: int = _field("timing", 100, key=False)
    max_time_s: float | None = _field("timing", None, key=False)
    repeats: int = _field("timing", 1, key=False)  # fresh worker processes, each with its own burn-in and timed loop
    # How it is parallel: None is one plain process; N is N replicas per machine under the engine's distributed
    # runtime (torch DDP, tf.distribute), each on ``batch_size`` images, on ``nodes`` machines.
    replicas: int | None = _field("parallel", None)
    nodes: int = _field("parallel", 1)
    # Where the batch comes from: "synthetic" (one fixed batch on the device) or "jpeg" (the engine's input
    # pipeline over ``images``, a bench.images spec, with ``workers`` loader workers, or tf.data's AUTOTUNE with
    # ``autotune``; ``lighting``: the 2012 paper's PCA lighting noise).
    data: str = _field("input", "synthetic")
    images: str | None = _field("input", None)
    workers: int | None = _field("input", None)
    autotune: bool = _field("input", False)
    lighting: bool = _field("input", False)

    def __post_init__(self) -> None:
        get_mode(self.mode)
        get_timing_method(self.timing)
        if self.precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}. Received: {self.precision!r}")
        if self.replicas is not None and self.replicas < 1:
            raise ValueError(f"replicas must be >= 1. Received: replicas={self.replicas}")
        if self.nodes < 1 or (self.nodes > 1 and self.replicas is None):
            raise ValueError(f"nodes must be >= 1, and > 1 only with replicas. Received: nodes={self.nodes}")
        self._check_input()

    def _check_input(self) -> None:
        if self.data not in DATA_SOURCES:
            raise ValueError(f"data must be one of {', '.join(DATA_SOURCES)}. Received: data={self.data!r}")
        if self.data == "synthetic":
            if self.images is not None or self.workers is not None or self.autotune or self.lighting:
                raise ValueError("images, workers, autotune and lighting apply to data='jpeg' only")
            if not get_mode(self.mode).network:
                raise ValueError(f"mode {self.mode!r} times the input pipeline: it needs data='jpeg'")
            return
        if self.images is None:
            raise ValueError("data='jpeg' needs images (a bench.images spec)")
        if (self.workers is None) == (not self.autotune):
            raise ValueError(f"data='jpeg' needs either workers >= 0 or autotune. Received: workers={self.workers}, "
                             f"autotune={self.autotune}")
        if self.workers is not None and self.workers < 0:
            raise ValueError(f"workers must be >= 0. Received: workers={self.workers}")
        if self.replicas is not None:
            raise ValueError("data='jpeg' runs in one process; replicas are not supported with it")

    @property
    def world_size(self) -> int:
        """Replicas over all machines (1 for a plain process)."""
        return (self.replicas or 1) * self.nodes

    @property
    def global_batch(self) -> int:
        """Images per step over every replica (weak scaling: each replica takes ``batch_size``)."""
        return self.batch_size * self.world_size

    @property
    def peak_devices(self) -> int:
        """How many times a device's matmul peak the configuration can use: one GPU per replica, one CPU (all its
        cores, shared by its replicas) per machine."""
        return self.world_size if self.device.startswith("cuda") else self.nodes

    @property
    def loader(self) -> str:
        """How the input pipeline's work is spread, in a word: "w2" (two workers), "auto" (AUTOTUNE); "" when the
        data are synthetic."""
        if self.data == "synthetic":
            return ""
        return "auto" if self.autotune else f"w{self.workers}"

    @property
    def input_label(self) -> str:
        """Where the batch comes from, in labels: "jpeg w2", "jpeg auto +lighting"; "" for the synthetic batch."""
        if self.data == "synthetic":
            return ""
        return f"{self.data} {self.loader}" + (" +lighting" if self.lighting else "")

    def key(self) -> tuple:
        """What identifies the same configuration across two runs (the protocol fields may differ)."""
        return tuple(getattr(self, name) for name in key_fields())

    def label(self) -> str:
        flags = "".join(
            f" +{name}" for name, on in (("compile", self.compile), ("channels-last", self.channels_last)) if on
        )
        if self.timing != "steady":
            flags += f" {self.timing}"
        if self.replicas is not None:
            flags += f" x{self.replicas}" + (f" x{self.nodes} nodes" if self.nodes > 1 else "")
        if self.input_label:
            flags += f" {self.input_label}"
        return (
            f"{self.model} {self.framework} {self.device} {self.mode} "
            f"b{self.batch_size} {self.precision}{flags}"
        )

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> Config:
        """Rebuild from a dict holding at least the configuration's fields (other keys are ignored)."""
        return cls(**{f.name: values[f.name] for f in fields(cls) if f.name in values})


def key_fields() -> tuple[str, ...]:
    """The names of the fields that identify a configuration across runs, in declaration order."""
    return tuple(f.name for f in fields(Config) if f.metadata["key"])
