"""Ways of timing a step, one entry each; the first and only one so far: steady-state steps after burn-in.

A way of timing says what a figure means (throughput of back-to-back steps; later, say, latency at a target rate),
so it is part of a configuration's identity (``Config.timing``), beside the mode, which says what a step contains.
Each is one function over the same step, synchronisation and hooks, with no framework in sight.
"""

from __future__ import annotations

import gc
import time
from collections.abc import Callable
from dataclasses import dataclass

# A time budget may end the timed loop early, but never before this many samples (or ``iters``, if fewer).
MIN_SAMPLES = 10

# (phase "warmup" | "timed", done, total, the timed samples taken since the previous call): called after every
# step, outside its sample; whoever sends progress on decides how often (bench.child throttles it).
Progress = Callable[[str, int, int, list[float]], None]


class RetraceError(RuntimeError):
    """The step was traced or compiled again inside the timed window: its samples would mix in compile time."""


@dataclass(frozen=True)
class Timing:
    """What the loop measured: every timed sample in ms, the first call alone, and whether the budget cut it short."""

    samples_ms: list[float]
    first_step_ms: float
    capped: bool


def time_step(
    step: Callable[[], object],
    synchronize: Callable[[], None],
    *,
    warmup: int,
    iters: int,
    max_time_s: float | None = None,
    on_progress: Progress | None = None,
    on_burn_in_end: Callable[[float | None], int | None] | None = None,
    trace_count: Callable[[], int] | None = None,
    clock: Callable[[], float] = time.perf_counter,
) -> Timing:
    """Run ``warmup`` untimed steps, then up to ``iters`` timed ones.

    Each sample spans one ``step()`` and the ``synchronize()`` that waits for the device to finish it, so
    asynchronous GPU work is inside the sample it belongs to. The first call (tracing, compilation, cuDNN
    autotuning) is timed on its own as ``first_step_ms`` and is never a sample unless ``warmup`` is 0.
    ``max_time_s`` caps the timed loop's wall time; it stops only once ``MIN_SAMPLES`` samples exist.
    ``trace_count``, if given, must not change during the timed loop, or ``RetraceError`` is raised.
    Garbage collection is paused during the timed loop, as ``timeit`` does.

    ``on_progress`` receives each sample as soon as it is taken (between samples, never inside one), so a caller
    can keep them even if the process dies later. ``on_burn_in_end`` is called once
    between burn-in and the timed loop with the first step's time (None without burn-in), e.g. to close one
    peak-memory window and open the next. If it returns a number, that many timed steps are taken (at most
    ``iters``; fewer count as ``capped``): data-parallel ranks agree on one count there, since a rank that stopped
    early would leave the others waiting in the next exchange.
    """
    if warmup < 0:
        raise ValueError(f"warmup must be >= 0. Received: warmup={warmup}")
    if iters < 1:
        raise ValueError(f"iters must be >= 1. Received: iters={iters}")
    samples_ms: list[float] = []

    def report(phase: str, done: int, total: int, new: list[float]) -> None:
        if on_progress is not None:
            on_progress(phase, done, total, new)

    first_step_ms: float | None = None
    for done in range(warmup):
        start = clock()
        step()
        synchronize()
        if first_step_ms is None:
            first_step_ms = (clock() - start) * 1e3
        report("warmup", done + 1, warmup, [])
    if on_burn_in_end is not None and (decided := on_burn_in_end(first_step_ms)) is not None:
        capped = decided < iters
        iters = max(1, min(iters, decided))
    else:
        capped = False

    minimum = min(MIN_SAMPLES, iters)
    # Without burn-in the first timed call is also the one that traces or compiles: count from after it.
    traces_before = trace_count() if trace_count is not None and warmup > 0 else None
    # Python's cyclic garbage collector would otherwise pause some steps at random; timeit disables it too.
    # No gc.collect() first: measured here, a full collection slows the next few hundred TensorFlow calls
    # of a small model by a third.
    gc_was_enabled = gc.isenabled()
    gc.disable()
    loop_start = clock()
    try:
        for done in range(iters):
            start = clock()
            step()
            synchronize()
            end = clock()
            sample_ms = (end - start) * 1e3
            samples_ms.append(sample_ms)
            if traces_before is None and trace_count is not None:
                traces_before = trace_count()
            report("timed", done + 1, iters, [sample_ms])
            if max_time_s and end - loop_start >= max_time_s and len(samples_ms) >= minimum and done + 1 < iters:
                capped = True
                break
    finally:
        if gc_was_enabled:
            gc.enable()
    if traces_before is not None and (traces_after := trace_count()) != traces_before:
        raise RetraceError(f"step was traced/compiled inside the timed window ({traces_before} -> {traces_after})")
    return Timing(samples_ms, first_step_ms if first_step_ms is not None else samples_ms[0], capped)


@dataclass(frozen=True)
class TimingMethod:
    """A way of timing a step: its name, what its figures mean, and the function that takes the samples (the
    keywords of ``time_step``)."""

    name: str
    description: str
    measure: Callable[..., Timing]


TIMING_METHODS: dict[str, TimingMethod] = {
    method.name: method
    for method in (
        TimingMethod("steady", "back-to-back steps after burn-in, each sample one step and the device "
                     "synchronisation after it", time_step),
    )
}


def get_timing_method(name: str) -> TimingMethod:
    """The way of timing called ``name``; ValueError naming the accepted ones otherwise."""
    try:
        return TIMING_METHODS[name]
    except KeyError:
        raise ValueError(f"timing must be one of {', '.join(TIMING_METHODS)}. Received: timing={name!r}") from None
