"""Data-parallel scaling: per model and mode, a row per replica count with throughput, efficiency against one
replica of the same run, the communication-free ceiling, all-reduce bus bandwidth and the spread across ranks.

Efficiency E(N) = images/s with N replicas / (N x images/s with one replica), both measured in the same run, with
the same model, framework, mode, device, precision and per-replica batch. A series without its one-replica
configuration gets no efficiency, and says why: nothing is extrapolated.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from reports import _format
from reports._groups import LabelledResult

NO_BASELINE = "no 1-replica configuration of this series in the run"

HEADERS = ("framework", "replicas", "global batch", "step ms", "images/s", "efficiency", "no-sync ms", "exchange",
           "all-reduce GB/s", "rank p50/p95 ms")
TEXT_COLUMNS = frozenset({"framework", "replicas"})  # left-aligned; the others are figures
NO_EXCHANGE = "-"
# A narrow terminal gives these up first (report.md always has every column).
DROP_ORDER = ("rank p50/p95 ms", "no-sync ms", "global batch")


def _series(entry: LabelledResult) -> tuple:
    """What a scaling series holds fixed: everything but the replica count (and the machines)."""
    config = entry.result.config
    return (entry.run, config.model, config.mode, config.framework, config.device, config.precision,
            config.batch_size, config.compile, config.channels_last, config.threads)


@dataclass(frozen=True)
class ScalingRow:
    entry: LabelledResult
    efficiency: float | None
    why_no_efficiency: str | None

    @property
    def world_size(self) -> int:
        return self.entry.result.config.world_size


def scaling_rows(entries: Sequence[LabelledResult]) -> list[ScalingRow]:
    """The measured data-parallel results of ``entries`` with their efficiency, series by series."""
    parallel = [entry for entry in entries if entry.result.config.replicas is not None and entry.result.status == "ok"]
    baseline = {_series(entry): entry.result.derived.images_per_s for entry in parallel
                if entry.result.config.world_size == 1}
    rows = []
    for entry in sorted(parallel, key=lambda entry: (_series(entry), entry.result.config.world_size)):
        one = baseline.get(_series(entry))
        if one is None:
            rows.append(ScalingRow(entry, None, NO_BASELINE))
        else:
            rows.append(ScalingRow(entry, entry.result.derived.images_per_s / (entry.result.config.world_size
                                                                                    * one), None))
    return rows


def cells(row: ScalingRow) -> list[str]:
    """A row of the scaling table, formatted the same in the terminal and in report.md."""
    result = row.entry.result
    derived = result.derived
    config = result.config
    replicas = str(config.world_size) + (f" ({config.nodes} machines)" if config.nodes > 1 else "")
    spread = ""
    if derived.rank_median_p50_ms is not None:
        spread = (f"{_format.milliseconds(derived.rank_median_p50_ms)}/"
                  f"{_format.milliseconds(derived.rank_median_p95_ms)}")
    return [
        config.framework, replicas, str(derived.global_batch), _format.milliseconds(derived.median_ms),
        _format.rate(derived.images_per_s),
        _format.percent(row.efficiency) + "%" if row.efficiency is not None else "n/a",
        _format.milliseconds(derived.no_sync_median_ms) if derived.no_sync_median_ms is not None else "",
        _format.percent(derived.communication_share) + "%" if derived.communication_share is not None else "",
        f"{derived.allreduce_bus_gb_per_s:.3g}" if derived.allreduce_bus_gb_per_s is not None else NO_EXCHANGE,
        spread,
    ]


def by_model_and_mode(rows: Sequence[ScalingRow]) -> dict[tuple[str, str], list[ScalingRow]]:
    groups: dict[tuple[str, str], list[ScalingRow]] = {}
    for row in rows:
        groups.setdefault((row.entry.result.config.model, row.entry.result.config.mode), []).append(row)
    return groups


LEGEND = (
    "Data parallel: each replica takes the batch size shown in the results, so the global batch grows with the "
    "replicas (weak scaling). step ms: median over steps of each step's time on its slowest rank. efficiency: "
    "images/s over replicas x images/s of the 1-replica configuration in the same run (n/a: the run has none for "
    "that series; nothing is extrapolated). no-sync ms: the same step without gradient exchange (each result's "
    "settings say how its engine runs it), on every replica at once; exchange = 1 - no-sync / step, the share of "
    "a step spent exchanging gradients. all-reduce GB/s: bus bandwidth of an all-reduce of the gradients' size with "
    "the engine's own collective, S / t x 2(n-1)/n as nccl-tests define it; - with one rank, where nothing moves. "
    "rank p50/p95: percentiles of the ranks' own median step times."
)


def plot_scaling(rows: Sequence[ScalingRow], out_dir: str | Path, prefix: str) -> dict[str, Path]:
    """Per model: images/s and efficiency against replicas, a line per framework (and mode, setting).

    Returns model -> PNG path; files are named ``{prefix}-{model}-replicas.png``.
    """
    # matplotlib is imported here, not above: the terminal tables (reports.table) use this module without it.
    from matplotlib.figure import Figure

    from reports.plots import file_safe, save_png

    written = {}
    for model in dict.fromkeys(row.entry.result.config.model for row in rows):
        model_rows = [row for row in rows if row.entry.result.config.model == model]
        if len({row.world_size for row in model_rows}) < 2:
            continue
        figure = Figure(figsize=(10, 4.2), layout="constrained")
        throughput, efficiency = figure.subplots(1, 2)
        lines: dict[str, list[ScalingRow]] = {}
        for row in model_rows:
            config = row.entry.result.config
            name = " ".join(part for part in (row.entry.run, config.framework, config.mode, config.device,
                                              f"b{config.batch_size}/replica") if part)
            lines.setdefault(name, []).append(row)
        counts = sorted({row.world_size for row in model_rows})
        for index, (name, line) in enumerate(lines.items()):
            colour = f"C{index % 10}"
            throughput.plot([row.world_size for row in line], [row.entry.result.derived.images_per_s
                                                                for row in line], marker="o", color=colour,
                            label=name)
            with_efficiency = [row for row in line if row.efficiency is not None]
            efficiency.plot([row.world_size for row in with_efficiency],
                            [100 * row.efficiency for row in with_efficiency], marker="o", color=colour, label=name)
        efficiency.axhline(100, color="grey", linewidth=0.8, linestyle="--")
        for axes, label in ((throughput, "throughput (images/s)"), (efficiency, "scaling efficiency (%)")):
            axes.set_xticks(counts, [str(count) for count in counts])
            axes.set_xlabel("replicas")
            axes.set_ylabel(label)
            axes.grid(True, alpha=0.3)
        efficiency.set_ylim(bottom=0)
        throughput.legend(fontsize="small")
        figure.suptitle(f"{model}: data-parallel scaling (measured; efficiency against 1 replica of the same run)")
        written[model] = save_png(figure, Path(out_dir) / f"{prefix}-{file_safe(model)}-replicas.png")
    return written
