"""The input pipeline's view of a run: how fast each engine's pipeline makes batches at each worker count, how fast
the step it feeds runs alone, and how many workers the pipeline needs to keep that step busy.

Rates come from the ``input`` mode's results (the pipeline alone, in its own process) and from the results fed from
JPEGs (each measures the pipeline alone and the step alone in its process before the fed loop). The workers needed
are measured where a measured worker count keeps up, and otherwise derived from the best rate per worker, as if the
pipeline scaled linearly, and said to be derived.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from matplotlib.figure import Figure

from bench.modes import get_mode
from bench.pipeline import needed_workers
from reports import _format
from reports._groups import LabelledResult
from reports.plots import LOG_AXIS_SPREAD, file_safe, save_png

HEADERS = ["model", "device", "framework", "batch", "workers", "pipeline images/s", "source"]
TEXT_COLUMNS = {"model", "device", "framework", "workers", "source"}


@dataclass(frozen=True)
class PipelineRate:
    """One pipeline rate: the engine's pipeline for ``model``'s input at ``workers`` (None: AUTOTUNE)."""

    run: str
    model: str
    device: str
    framework: str
    batch: int
    workers: int | None
    images_per_s: float
    source: str  # "pipeline alone" (the input mode) or "before the <mode> step" (a fed result)


@dataclass(frozen=True)
class StepRate:
    run: str
    model: str
    device: str
    framework: str
    mode: str
    batch: int
    precision: str
    images_per_s: float


def pipeline_rates(measured: Sequence[LabelledResult]) -> list[PipelineRate]:
    rates = []
    for entry in measured:
        config, derived = entry.result.config, entry.result.derived
        if config.data == "synthetic" or derived.pipeline_images_per_s is None:
            continue
        source = "pipeline alone" if not get_mode(config.mode).network else f"before the {config.mode} step"
        rates.append(PipelineRate(entry.run, config.model, config.device, config.framework, config.batch_size,
                                  None if config.autotune else config.workers, derived.pipeline_images_per_s, source))
    return rates


def step_rates(measured: Sequence[LabelledResult]) -> list[StepRate]:
    """The rate of every step fed from JPEGs, alone on a fixed batch (the median over its worker counts)."""
    by_step: dict[tuple, list[float]] = {}
    for entry in measured:
        config, derived = entry.result.config, entry.result.derived
        if derived.step_images_per_s is not None:
            key = (entry.run, config.model, config.device, config.framework, config.mode, config.batch_size,
                   config.precision)
            by_step.setdefault(key, []).append(derived.step_images_per_s)
    return [StepRate(*key, statistics.median(values)) for key, values in by_step.items()]


def needed_sentences(measured: Sequence[LabelledResult]) -> list[str]:
    """Per fed step: the workers its pipeline needs to keep it busy, measured or derived (and said to be)."""
    rates = pipeline_rates(measured)
    sentences = []
    for step in step_rates(measured):
        same = [rate for rate in rates if (rate.run, rate.model, rate.device, rate.framework, rate.batch)
                == (step.run, step.model, step.device, step.framework, step.batch) and rate.workers is not None]
        if not same:
            continue
        by_workers: dict[int, float] = {}
        for rate in same:
            by_workers[rate.workers] = max(rate.images_per_s, by_workers.get(rate.workers, 0.0))
        enough = sorted(workers for workers, value in by_workers.items() if value >= step.images_per_s)
        what = (f"**{step.framework}** {step.model} {step.mode} on {step.device} (batch {step.batch}, "
                f"{step.precision}) runs at {_format.rate(step.images_per_s)} images/s alone")
        if enough:
            sentences.append(f"{what}; its pipeline keeps up from **{enough[0]} worker{'s' if enough[0] > 1 else ''}"
                             f"** (measured: {_format.rate(by_workers[enough[0]])} images/s).")
            continue
        best = max((workers for workers in by_workers if workers > 0), key=lambda w: by_workers[w] / w,
                   default=None)
        if best is None:
            sentences.append(f"{what}; no worker count measured keeps up, and none was measured with workers.")
            continue
        needed = needed_workers(step.images_per_s, by_workers[best], best)
        sentences.append(f"{what}; no worker count measured keeps up: it would need about **{needed} workers** "
                         f"(derived from {_format.rate(by_workers[best] / best)} images/s per worker at {best}, "
                         "as if the pipeline scaled linearly; not measured).")
    return sentences


def rows(measured: Sequence[LabelledResult]) -> list[list[str]]:
    return [[rate.model, rate.device, rate.framework, str(rate.batch),
             "AUTOTUNE" if rate.workers is None else str(rate.workers), _format.rate(rate.images_per_s), rate.source]
            for rate in sorted(pipeline_rates(measured), key=lambda rate: (
                rate.model, rate.device, rate.framework, rate.batch, -1 if rate.workers is None else rate.workers))]


def plot_pipelines(measured: Sequence[LabelledResult], out_dir: str | Path, prefix: str) -> dict[str, Path]:
    """Per model: images/s of each engine's pipeline against its workers, and each fed step's rate alone as a
    horizontal line of the same colour; ``{prefix}-{model}-pipeline.png``."""
    rates, steps = pipeline_rates(measured), step_rates(measured)
    written = {}
    for model in dict.fromkeys(rate.model for rate in rates):
        everything = [rate for rate in rates if rate.model == model]
        # The pipeline alone in a process of its own where the run has it; else the fed results' own measurement.
        model_rates = [rate for rate in everything if rate.source == "pipeline alone"] or everything
        series = list(dict.fromkeys((rate.framework, rate.device, rate.batch) for rate in model_rates))
        varying = len({(device, batch) for _, device, batch in series}) > 1
        counted = sorted({rate.workers for rate in model_rates if rate.workers is not None})
        figure = Figure(figsize=(6.5, 4.5), layout="constrained")
        axes = figure.subplots()
        for index, (framework, device, batch) in enumerate(series):
            points: dict[int | None, list[float]] = {}
            for rate in model_rates:
                if (rate.framework, rate.device, rate.batch) == (framework, device, batch):
                    points.setdefault(rate.workers, []).append(rate.images_per_s)
            label = f"{framework} pipeline" + (f" {device} b{batch}" if varying else "")
            workers = sorted(count for count in points if count is not None)
            if workers:
                axes.plot(workers, [statistics.median(points[w]) for w in workers], marker="o", color=f"C{index}",
                          label=label)
            if None in points:  # AUTOTUNE has no worker count: a level across the chart
                axes.axhline(statistics.median(points[None]), color=f"C{index}", linestyle=":",
                             label=f"{label}, AUTOTUNE")
            for step in steps:
                if (step.model, step.framework, step.device, step.batch) == (model, framework, device, batch):
                    axes.axhline(step.images_per_s, color=f"C{index}", linestyle="--",
                                 label=f"{framework} {step.mode} step alone")
        axes.set_xlabel("workers")
        axes.set_ylabel("images/s")
        if counted:
            axes.set_xticks(counted)
        shown = [rate.images_per_s for rate in model_rates] + [step.images_per_s for step in steps
                                                                 if step.model == model]
        if max(shown) > LOG_AXIS_SPREAD * min(shown):  # a step far below its pipeline stays visible
            axes.set_yscale("log")
        else:
            axes.set_ylim(bottom=0)
        axes.grid(True, alpha=0.3)
        axes.legend(fontsize="small")
        figure.suptitle(f"{model}: input pipeline against workers")
        written[model] = save_png(figure, Path(out_dir) / f"{prefix}-{file_safe(model)}-pipeline.png")
    return written
