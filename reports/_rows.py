"""The rows of a results table, built once: the terminal table and the markdown report render the same cells.

A row is one measured configuration; its columns are declared once here with the order in which a narrow
terminal gives them up, so what a reader loses first is stated, not accidental.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from bench.ledger import HOST_BOUND_BELOW
from bench.record import Derived
from reports import _format
from reports._groups import LabelledResult, time_vs_fastest

NOISY_MARK = "~"
CAPPED_MARK = "capped"
ABOVE_PEAK_MARK = "!"
HOST_BOUND_MARK = "h"
INPUT_BOUND = "input"


@dataclass(frozen=True)
class Column:
    """A column of the results tables. ``drop_order``: a narrow terminal leaves columns out in this order
    (1 first) until the table fits; None: never left out."""

    key: str
    header: str
    numeric: bool
    drop_order: float | None = None


COLUMNS: tuple[Column, ...] = (
    Column("run", "run", False),
    Column("device", "device", False),
    Column("precision", "precision", False),
    Column("batch", "batch", True),
    Column("framework", "framework", False),
    Column("variant", "variant", False),
    Column("replicas", "replicas", False),
    Column("data", "data", False),
    Column("median", "median ms", True),
    Column("ci", "CI ms", True, drop_order=7),
    Column("ms_per_image", "ms/image", True, drop_order=5),
    Column("images_per_s", "images/s", True, drop_order=8),
    Column("gflops_per_s", "GFLOP/s", True, drop_order=6),
    Column("mfu", "MFU %", True, drop_order=9),
    Column("device_busy", "device busy", True),
    Column("step_alone", "step alone images/s", True, drop_order=7.5),
    Column("pipeline_rate", "pipeline images/s", True, drop_order=7.6),
    Column("bound", "bound", False),
    Column("cpu_per_image", "CPU ms/image", True, drop_order=4.5),
    Column("first_batch", "first batch ms", True, drop_order=1.5),
    Column("peak_memory", "peak memory", True, drop_order=3),
    Column("burn_in_memory", "burn-in memory", True, drop_order=1),
    Column("first_step", "first step ms", True, drop_order=2),
    Column("samples", "samples", True, drop_order=4),
    Column("vs_fastest", "vs fastest", True),
)
COLUMN_BY_KEY = {column.key: column for column in COLUMNS}
DROP_ORDER: tuple[str, ...] = tuple(column.key for column in sorted(
    (column for column in COLUMNS if column.drop_order is not None), key=lambda column: column.drop_order))


@dataclass(frozen=True)
class Row:
    cells: dict[str, str]
    fastest: bool


def columns_for(group: Sequence[LabelledResult], shown_in_title: Sequence[str] = (), with_run: bool = False
                ) -> list[str]:
    """The column keys a group needs: settings that vary (others go in the title), then the figures."""
    varying = [name for name in ("device", "precision")
               if name not in shown_in_title and len({getattr(e.result.config, name) for e in group}) > 1]
    return ((["run"] if with_run else []) + varying + ["framework", "batch"] + optional_columns(group)
            + figure_columns(group))


def figure_columns(group: Sequence[LabelledResult]) -> list[str]:
    """The figures' columns; device busy only where a result of the group knows it (a GPU result), and the input
    pipeline's only where a result of the group has them (fed from JPEGs, or the pipeline alone)."""
    known = {"device_busy": with_device_busy(group),
             "step_alone": any(entry.result.derived.step_images_per_s is not None for entry in group),
             "cpu_per_image": any(entry.result.cpu_seconds_per_image is not None for entry in group),
             "first_batch": any(entry.result.first_batch_ms is not None for entry in group)}
    known["pipeline_rate"] = known["bound"] = known["step_alone"]
    # The pipeline alone: the first step is the first batch, and no network runs (no FLOPs, no MFU).
    network = any(entry.result.flops_per_step is not None for entry in group)
    skipped = set() if network else {"gflops_per_s", "mfu"}
    return [column.key for column in COLUMNS if (column.numeric or column.key == "bound") and column.key != "batch"
            and known.get(column.key, True) and column.key not in skipped]


def optional_columns(group: Sequence[LabelledResult]) -> list[str]:
    """"variant" where a result of the group is compiled or channels-last, "replicas" where one is data-parallel."""
    with_variant = any(entry.result.config.compile or entry.result.config.channels_last for entry in group)
    with_replicas = any(entry.result.config.replicas is not None for entry in group)
    with_data = any(entry.result.config.data != "synthetic" for entry in group)
    return ((["variant"] if with_variant else []) + (["replicas"] if with_replicas else [])
            + (["data"] if with_data else []))


def with_device_busy(group: Sequence[LabelledResult]) -> bool:
    """Whether a result of the group knows how busy its device was (a GPU result), so the column is worth showing."""
    return any(entry.result.device_busy is not None for entry in group)


def rows(group: Sequence[LabelledResult]) -> list[Row]:
    """Every cell of every row of a model-and-mode group, formatted once."""
    built = []
    for entry, ratio in zip(group, time_vs_fastest(group), strict=True):
        result, config = entry.result, entry.result.config
        derived = result.derived
        mfu = derived.mfu
        cells = {
            "run": entry.run,
            "device": config.device,
            "precision": config.precision,
            "batch": str(config.batch_size),
            "framework": config.framework,
            "variant": _format.variant(config.compile, config.channels_last),
            "replicas": _format.replicas(config.replicas, config.nodes) or "1 process",
            "median": (NOISY_MARK if derived.noisy else "") + _format.milliseconds(derived.median_ms),
            "ci": _format.confidence_interval(derived.median_ci_ms),
            "ms_per_image": _format.milliseconds(derived.ms_per_image),
            "images_per_s": _format.rate(derived.images_per_s),
            "gflops_per_s": _format.rate(derived.gflops_per_s),
            "mfu": _format.percent(mfu) + (ABOVE_PEAK_MARK if mfu is not None and mfu > 1 else "")
                   + (HOST_BOUND_MARK if derived.host_bound else ""),
            "device_busy": "" if result.device_busy is None else f"{result.device_busy:.0%}"
                           + (" host-bound" if derived.host_bound else ""),
            "peak_memory": _format.byte_size(result.peak_memory_bytes),
            "burn_in_memory": _format.byte_size(result.burn_in_peak_memory_bytes),
            "first_step": _format.milliseconds(result.first_step_ms) if result.first_step_ms is not None else "",
            "samples": _samples(derived, result.capped),
            "vs_fastest": _format.ratio(ratio),
            "data": _format.data_source(config.data, config.workers, config.autotune),
            "step_alone": _format.rate(derived.step_images_per_s),
            "pipeline_rate": _format.rate(derived.pipeline_images_per_s),
            "bound": "" if derived.input_bound is None else INPUT_BOUND if derived.input_bound else "step",
            "cpu_per_image": "" if result.cpu_seconds_per_image is None
                             else _format.milliseconds(result.cpu_seconds_per_image * 1e3),
            "first_batch": _format.milliseconds(result.first_batch_ms) if result.first_batch_ms is not None else "",
        }
        built.append(Row(cells, fastest=ratio == 1.0))
    return built


def ci_description(results: Sequence) -> str:
    """What the CI column holds, e.g. "96-98% CI of the median from one process's samples" or, with repeats,
    "94% CI of the median from the medians of 5 worker processes". The level is the interval's exact coverage."""
    by_basis: dict[tuple[str, int], list[float]] = {}
    for derived in (result.derived for result in results):
        if derived.median_ci_basis:
            key = (derived.median_ci_basis, derived.processes if derived.processes > 1 else 1)
            by_basis.setdefault(key, []).append(derived.median_ci_level)
    parts = []
    for (basis, processes), levels in sorted(by_basis.items()):
        low, high = min(levels), max(levels)
        level = f"{low:.0%}" if f"{low:.0%}" == f"{high:.0%}" else f"{low:.0%}-{high:.0%}"
        source = (f"the medians of {processes} worker processes" if basis == "process medians"
                  else "one process's samples")
        parts.append(f"{level} CI of the median from {source}")
    return "; ".join(parts)


def legend(results: Sequence, dropped: Sequence[str] = ()) -> list[str]:
    """The lines that explain the marks and columns of a results table."""
    lines = []
    if results:
        lines.append(f"CI: {ci_description(results)}. vs fastest: median time over the fastest median at the same "
                     "device, precision, batch size and replicas")
    derived = [result.derived for result in results]
    if any(d.noisy for d in derived):
        from bench.stats import NOISY_IQR_RATIO

        lines.append(f"{NOISY_MARK} noisy: interquartile range above {NOISY_IQR_RATIO:.0%} of the median")
    if any(result.capped for result in results):
        lines.append(f"{CAPPED_MARK}: stopped by the time limit (max_time_s) before every timed iteration ran")
    if any(d.mfu is not None and d.mfu > 1 for d in derived):
        lines.append(f"{ABOVE_PEAK_MARK} MFU above 100%: more direct-convolution FLOPs per second than the device's "
                     "best matrix multiply; the library ran a Winograd or FFT convolution, which does fewer "
                     "multiplications than counted")
    if any(d.host_bound for d in derived):
        lines.append(f"{HOST_BOUND_MARK} host-bound: the device ran kernels for less than {HOST_BOUND_BELOW:.0%} of a "
                     "profiled step (device busy); the step is the host launching work, and its MFU says nothing "
                     "about the device")
    if any(d.input_bound is not None for d in derived):
        lines.append("fed from JPEGs: images/s with the input pipeline feeding every step; step alone: the same "
                     "step on one fixed batch; pipeline: the input pipeline alone at the same workers, in the same "
                     f"process; bound: {INPUT_BOUND} where the pipeline alone is slower than the step alone")
    if any(result.cpu_seconds_per_image is not None for result in results):
        lines.append("CPU ms/image: CPU time of the measuring process and its loader workers over the pipeline's "
                     "timed batches, per image; first batch ms: the wait for the first batch, workers starting")
    if dropped:
        lines.append(f"narrow terminal: left out {', '.join(COLUMN_BY_KEY[key].header for key in dropped)} (in "
                     "that order as width runs out); widen the terminal or see report.md")
    return lines


def _samples(derived: Derived, capped: bool) -> str:
    text = str(derived.n)
    if derived.processes and derived.processes > 1:
        text += f" in {derived.processes} processes, spread {derived.process_spread:.0%}"
    return f"{text} ({CAPPED_MARK})" if capped else text
