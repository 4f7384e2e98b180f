"""One configuration explained in a fresh process: ``python -m bench.explainer CONFIG_JSON OPTIONS_JSON``.

The child side (``bench.child``) sets threads and takes over the channel as for a worker. The explainer times the
step as ``bench`` does (burn-in, then the timed loop: the unprofiled step), then profiles single steps with the
framework's own profiler, each layer named by the spec (the *in-model* view), then times each layer alone at its
in-model input shape through the same loop (the *alone* view). It sends the ledger (``bench.ledger``) in one
``Explained`` message, then its ``Outcome``.
"""

from __future__ import annotations

import json
import statistics
import sys
from dataclasses import dataclass

import zoo
from bench import ledger as ld
from bench.child import Child, exit_now
from bench.config import Config
from bench.environment import available_cpus
from bench.modes import get_mode
from bench.protocol import ALONE, PROFILED, Explained, Outcome
from bench.timing import time_step


@dataclass(frozen=True)
class ExplainOptions:
    """How a step is explained: the views, how many single steps are profiled, and each layer's timed loop alone."""

    views: tuple[str, ...] = ld.VIEWS
    windows: int = 5
    alone_warmup: int = 3
    alone_iters: int = 20
    alone_max_time_s: float = 2.0

    def to_dict(self) -> dict:
        return {**self.__dict__, "views": list(self.views)}

    @classmethod
    def from_dict(cls, values: dict) -> ExplainOptions:
        return cls(**{**values, "views": tuple(values["views"])})


def explain(child: Child, options: ExplainOptions) -> tuple[Outcome, dict | None]:
    """The outcome of explaining the child's configuration and its ledger (None where it could not be measured)."""
    config, backend = child.config, child.backend
    try:
        timing = child.measure_step()
        step_ms = statistics.median(timing.samples_ms)
        rows: list[ld.LayerTime] = []
        profiled = unattributed = in_model = alone_sum = None
        profile = {"profiler": "none", "window_ms": [], "launches_per_step": None, "device_busy": None}
        if ld.IN_MODEL in options.views:
            child.stream.on_progress(PROFILED)("timed", 0, options.windows, [])
            profile = backend.profile_layers(config, options.windows)
            in_model_rows, profiled, unattributed = ld.in_model_rows(
                config.framework, profile["kinds"], profile["windows"], profile["window_ms"], profile["notes"],
                profile["kernels"])
            rows += in_model_rows
            in_model = profiled - unattributed
        if ld.ALONE in options.views:
            alone_rows = _alone(child, options, step_ms)
            rows += alone_rows
            alone_sum = sum(row.median_ms for row in alone_rows)
        ledger = ld.StepLedger(
            framework=config.framework, step_ms=step_ms, profiled_step_ms=profiled, in_model_layers_ms=in_model,
            unattributed_ms=unattributed, alone_layers_ms=alone_sum, profiler=profile["profiler"],
            profiled_steps=len(profile["window_ms"]), launches_per_step=profile["launches_per_step"],
            device_busy=profile["device_busy"])
        outcome = Outcome(status="ok", first_step_ms=timing.first_step_ms, capped=timing.capped,
                          peak_memory_bytes=child.peak_memory_bytes(), **child.facts())
        return outcome, {"step": ledger.to_dict(), "layers": [row.to_dict() for row in rows]}
    except Exception as error:  # a failure of one framework's explanation is its outcome, never a lost run
        return child.failure(error), None


def _alone(child: Child, options: ExplainOptions, step_ms: float) -> list[ld.LayerTime]:
    """Each layer timed alone; a row per layer (the forward pass, or forward and backward together)."""
    config, backend = child.config, child.backend
    steps = backend.layer_steps(config)
    kinds = {layer.name: layer.kind for layer in zoo.get_spec(config.model).layers}
    pass_ = f"{ld.FORWARD}+{ld.BACKWARD}" if get_mode(config.mode).backward else ld.FORWARD
    report = child.stream.on_progress(ALONE)
    rows = []
    for index, (name, layer_step) in enumerate(steps.items()):
        timing = time_step(layer_step, backend.synchronize, warmup=options.alone_warmup, iters=options.alone_iters,
                           max_time_s=options.alone_max_time_s)
        median = statistics.median(timing.samples_ms)
        rows.append(ld.LayerTime(name, kinds[name], config.framework, pass_, ld.ALONE, median, median / step_ms))
        report("timed", index + 1, len(steps), [])
    return rows


def main(argv: list[str]) -> int:
    config = Config.from_dict(json.loads(argv[0]))
    options = ExplainOptions.from_dict(json.loads(argv[1]))
    child = Child(config, config.threads or available_cpus())
    outcome, ledger = explain(child, options)
    if ledger is not None:
        child.channel.send(Explained(ledger=ledger))
    child.channel.send(outcome)
    return 0


if __name__ == "__main__":
    exit_now(main(sys.argv[1:]))
