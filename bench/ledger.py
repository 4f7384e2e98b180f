"""The per-layer ledger of a step: where each framework spends it, layer by layer, in two views, and what explains
the difference between two frameworks' steps.

Layers are named by the model's spec, the same names in every framework, so a row of one framework and the row of
the same layer in another are the same work (the twins are proven to be one network). Two views, each stated:

- *in model*: the framework's own profiler over single steps after burn-in, each layer's time the median over the
  profiled steps; what no layer accounts for (the loss, the optimizer, layout conversions, the framework's own
  overhead, and any layer the profiler cannot attribute) is ``unattributed``, defined as the profiled step less the
  layers, so that the layers and it add up to the profiled step by construction;
- *alone*: each layer timed by itself at its in-model input shape through the same timing loop as ``bench``; their
  sum against the step says what running the layers together (fusion, caching) saves or costs.
"""

from __future__ import annotations

import re
import statistics
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

IN_MODEL, ALONE = "in model", "alone"
VIEWS = (IN_MODEL, ALONE)
FORWARD, BACKWARD = "forward", "backward"
# A step is host-bound when its device is busy for less than this share of the step: its MFU is the host
# launching kernels, not the device computing.
HOST_BOUND_BELOW = 0.5
_COPY_SUFFIX = re.compile(r"_\d+$")


@dataclass(frozen=True)
class LayerTime:
    """One layer's time in one framework, pass and view; ``note`` says what the figure holds where that is not
    simply the layer (a fused kernel, a layer the profiler cannot attribute)."""

    layer: str
    kind: str
    framework: str
    pass_: str
    view: str
    median_ms: float | None
    share: float | None = None  # of the profiled step (in model) or of the unprofiled step (alone)
    note: str | None = None
    kernels: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        values = asdict(self)
        values["pass"] = values.pop("pass_")
        values["kernels"] = list(self.kernels)
        return values

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> LayerTime:
        return cls(**{**{key: value for key, value in values.items() if key != "pass"}, "pass_": values["pass"],
                      "kernels": tuple(values.get("kernels") or ())})


@dataclass(frozen=True)
class StepLedger:
    """One framework's step: unprofiled (``step_ms``, the median of ``bench``'s loop), under the profiler
    (``profiled_step_ms``, its overhead the difference), what no layer accounts for, the layers alone summed, the
    profiler used, kernel launches per step and, on a GPU, the share of the step the device was busy."""

    framework: str
    step_ms: float
    profiled_step_ms: float | None
    in_model_layers_ms: float | None
    unattributed_ms: float | None
    alone_layers_ms: float | None
    profiler: str
    profiled_steps: int
    launches_per_step: float | None = None
    device_busy: float | None = None

    @property
    def profiler_overhead(self) -> float | None:
        if self.profiled_step_ms is None:
            return None
        return self.profiled_step_ms / self.step_ms - 1

    @property
    def host_bound(self) -> bool | None:
        return None if self.device_busy is None else self.device_busy < HOST_BOUND_BELOW

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "profiler_overhead": self.profiler_overhead, "host_bound": self.host_bound}

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> StepLedger:
        known = set(cls.__dataclass_fields__)
        return cls(**{key: value for key, value in values.items() if key in known})


def in_model_rows(framework: str, kinds: dict[str, str], windows: Sequence[dict[str, dict[str, float]]],
                  window_ms: Sequence[float], notes: dict[str, str] | None = None,
                  kernels: dict[str, Iterable[str]] | None = None) -> tuple[list[LayerTime], float, float]:
    """The in-model rows of one framework from its profiled steps: ``windows`` holds, per profiled step, each
    layer's milliseconds by pass (``{layer: {pass: ms}}``), ``window_ms`` each step's wall time. Every spec layer
    (``kinds``: name to kind, in the spec's order) gets a row per pass seen in any window, a layer a window did not
    see counting 0 there. Returns the rows, the profiled step (the median of ``window_ms``) and the unattributed
    remainder (the profiled step less the layers' medians)."""
    notes, kernels = notes or {}, kernels or {}
    passes = [name for name in (FORWARD, BACKWARD) if any(name in per_pass for window in windows
                                                           for per_pass in window.values())]
    profiled = statistics.median(window_ms)
    rows = []
    for layer, kind in kinds.items():
        for pass_ in passes:
            values = [window.get(layer, {}).get(pass_, 0.0) for window in windows]
            median = statistics.median(values)
            rows.append(LayerTime(layer, kind, framework, pass_, IN_MODEL, median, median / profiled,
                                  notes.get(layer), tuple(sorted(set(kernels.get(layer, ()))))))
    return rows, profiled, profiled - sum(row.median_ms for row in rows)


def layer_of_scope(scope: str, layers: Iterable[str], pad_suffix: str = "_pad") -> tuple[str | None, bool]:
    """The spec layer a profiler's name scope belongs to, and whether it is that layer's padding: a scope is a
    layer's name, or the name a traced function gives a copy of it (``conv1_1``); ``<layer>_pad`` is the padding
    a twin puts before a layer that pads unlike its framework."""
    names = set(layers)
    for candidate in (scope, _COPY_SUFFIX.sub("", scope)):
        if candidate in names:
            return candidate, False
        if candidate.endswith(pad_suffix) and candidate[:-len(pad_suffix)] in names:
            return candidate[:-len(pad_suffix)], True
    return None, False


@dataclass
class Explanation:
    """One model, mode and setting explained in every framework asked for."""

    model: str
    mode: str
    device: str
    batch_size: int
    precision: str
    steps: list[StepLedger]
    layers: list[LayerTime]
    reasons: dict[str, str] = field(default_factory=dict)  # framework -> why it has no ledger (skipped, failed)

    def rows(self, framework: str, view: str) -> list[LayerTime]:
        return [row for row in self.layers if row.framework == framework and row.view == view]

    def step(self, framework: str) -> StepLedger | None:
        return next((step for step in self.steps if step.framework == framework), None)

    def layer_totals(self, framework: str, view: str = IN_MODEL) -> dict[str, float]:
        """Each layer's time over its passes, in the spec's order."""
        totals: dict[str, float] = {}
        for row in self.rows(framework, view):
            totals[row.layer] = totals.get(row.layer, 0.0) + (row.median_ms or 0.0)
        return totals

    def contributors(self, slower: str, faster: str, view: str = IN_MODEL) -> tuple[float, list[tuple[str, float]]]:
        """How much longer ``slower``'s step is than ``faster``'s in ``view`` (profiled steps in model, the layers'
        sums alone), and each layer's share of that in ms (the layer's time in ``slower`` less in ``faster``),
        largest first; in model, ``unattributed`` is a contributor like a layer, so the shares add up to the
        difference."""
        first, second = self.layer_totals(slower, view), self.layer_totals(faster, view)
        parts = {layer: first.get(layer, 0.0) - second.get(layer, 0.0) for layer in dict.fromkeys([*first, *second])}
        if view == IN_MODEL:
            steps = self.step(slower), self.step(faster)
            parts["unattributed"] = (steps[0].unattributed_ms or 0.0) - (steps[1].unattributed_ms or 0.0)
        difference = sum(parts.values())
        return difference, sorted(parts.items(), key=lambda item: -abs(item[1]))

    def to_dict(self) -> dict[str, Any]:
        return {"model": self.model, "mode": self.mode, "device": self.device, "batch_size": self.batch_size,
                "precision": self.precision, "steps": [step.to_dict() for step in self.steps],
                "layers": [row.to_dict() for row in self.layers], "reasons": dict(self.reasons)}

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> Explanation:
        return cls(values["model"], values["mode"], values["device"], values["batch_size"], values["precision"],
                   [StepLedger.from_dict(step) for step in values["steps"]],
                   [LayerTime.from_dict(row) for row in values["layers"]], dict(values.get("reasons") or {}))
