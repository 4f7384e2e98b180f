"""PNG charts for the markdown report: median time per framework and mode, and throughput against batch size."""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

# Figures are drawn on the Agg canvas directly and never through pyplot: no GUI backend is ever chosen, whatever
# the environment, and no figure lingers in pyplot's global registry when a report draws many.
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from bench.record import Run
from reports._files import ensure_folder
from reports._groups import LabelledResult, labelled_results, series_name, sort_key

# A chart spanning more than this ratio between its smallest and largest value is drawn on a log axis, or the
# small ones (a GPU beside a CPU) would vanish along the bottom; the history's trend charts use it too.
LOG_AXIS_SPREAD = 30
# Modes differ by line style, series by colour, so a reader can follow either.
_LINE_STYLES = ("-", "--", ":", "-.")


def plot_median_times(runs: Sequence[Run], out_dir: str | Path, prefix: str) -> dict[str, Path]:
    """One bar chart per model: median ms per batch with its 95% CI as whiskers, a panel per batch size.

    Bars are grouped by mode, one bar per framework (and device, precision, variant, run where they vary).
    Returns model -> PNG path; files are named ``{prefix}-{model}-median.png``.
    """
    entries = _ok_entries(runs)
    with_run = len(runs) > 1
    written = {}
    for model in dict.fromkeys(entry.result.config.model for entry in entries):
        model_entries = [entry for entry in entries if entry.result.config.model == model]
        batch_sizes = sorted({entry.result.config.batch_size for entry in model_entries})
        colours = _series_colours(model_entries, with_run)
        figure = Figure(figsize=(1.5 + 4.5 * len(batch_sizes), 4.5), layout="constrained")
        axes_row = figure.subplots(1, len(batch_sizes), squeeze=False)[0]
        for axes, batch_size in zip(axes_row, batch_sizes, strict=True):
            _median_panel(axes, [entry for entry in model_entries if entry.result.config.batch_size == batch_size],
                          colours, with_run)
            axes.set_title(f"batch {batch_size}")
        axes_row[0].set_ylabel("median time per batch (ms), with its CI")
        figure.suptitle(f"{model}: median step time")
        written[model] = save_png(figure, Path(out_dir) / f"{prefix}-{file_safe(model)}-median.png")
    return written


def plot_batch_scaling(runs: Sequence[Run], out_dir: str | Path, prefix: str) -> dict[str, Path]:
    """Images/s against batch size (log axis), a line per framework and mode, for models run at several sizes.

    Returns model -> PNG path; files are named ``{prefix}-{model}-scaling.png``.
    """
    entries = _ok_entries(runs)
    with_run = len(runs) > 1
    written = {}
    for model in dict.fromkeys(entry.result.config.model for entry in entries):
        model_entries = [entry for entry in entries if entry.result.config.model == model]
        if len({entry.result.config.batch_size for entry in model_entries}) < 2:
            continue
        colours = _series_colours(model_entries, with_run)
        modes = list(dict.fromkeys(entry.result.config.mode for entry in model_entries))
        figure = Figure(figsize=(7.5, 4.5), layout="constrained")
        axes = figure.subplots()
        lines: dict[tuple[str, str], list[LabelledResult]] = {}
        for entry in sorted(model_entries, key=sort_key):
            lines.setdefault((series_name(entry, with_run), entry.result.config.mode), []).append(entry)
        for (name, mode), line in lines.items():
            line.sort(key=lambda entry: entry.result.config.batch_size)
            axes.plot([entry.result.config.batch_size for entry in line],
                      [entry.result.derived.images_per_s for entry in line], marker="o", label=f"{name} {mode}",
                      color=colours[name], linestyle=_LINE_STYLES[modes.index(mode) % len(_LINE_STYLES)])
        batch_sizes = sorted({entry.result.config.batch_size for entry in model_entries})
        axes.set_xscale("log", base=2)
        axes.set_xticks(batch_sizes, [str(size) for size in batch_sizes])
        axes.minorticks_off()
        axes.set_xlabel("batch size (images)")
        axes.set_ylabel("throughput (images/s)")
        axes.set_title(f"{model}: throughput against batch size")
        axes.grid(True, which="both", alpha=0.3)
        axes.legend(fontsize="small")
        written[model] = save_png(figure, Path(out_dir) / f"{prefix}-{file_safe(model)}-scaling.png")
    return written


def write_plots(runs: Sequence[Run], out_dir: str | Path, prefix: str) -> list[Path]:
    """Every chart of the runs; returns the PNG paths written."""
    return [*plot_median_times(runs, out_dir, prefix).values(), *plot_batch_scaling(runs, out_dir, prefix).values()]


def _median_panel(axes: Axes, entries: Sequence[LabelledResult], colours: dict[str, str], with_run: bool) -> None:
    modes = list(dict.fromkeys(entry.result.config.mode for entry in entries))
    series = list(dict.fromkeys(series_name(entry, with_run) for entry in sorted(entries, key=sort_key)))
    width = 0.8 / len(series)
    for index, name in enumerate(series):
        bars = {entry.result.config.mode: entry.result.derived for entry in entries
                if series_name(entry, with_run) == name}
        positions = [modes.index(mode) + (index - (len(series) - 1) / 2) * width for mode in bars]
        medians = [derived.median_ms for derived in bars.values()]
        whiskers = [[derived.median_ms - derived.median_ci_ms[0] for derived in bars.values()],
                    [derived.median_ci_ms[1] - derived.median_ms for derived in bars.values()]]
        axes.bar(positions, medians, width=width, yerr=whiskers, capsize=3, label=name, color=colours[name])
    axes.set_xticks(range(len(modes)), modes)
    medians = [entry.median_ms for entry in entries]
    if max(medians) > LOG_AXIS_SPREAD * min(medians):
        axes.set_yscale("log")
    axes.grid(True, axis="y", alpha=0.3)
    axes.legend(fontsize="small")


def _series_colours(entries: Sequence[LabelledResult], with_run: bool) -> dict[str, str]:
    """The same series keeps its colour in every panel of a model's charts."""
    names = dict.fromkeys(series_name(entry, with_run) for entry in sorted(entries, key=sort_key))
    return {name: f"C{index % 10}" for index, name in enumerate(names)}


def _ok_entries(runs: Sequence[Run]) -> list[LabelledResult]:
    return [entry for entry in labelled_results(runs) if entry.result.status == "ok"]


def save_png(figure: Figure, path: Path) -> Path:
    ensure_folder(path.parent)
    FigureCanvasAgg(figure).print_png(path)
    return path


def file_safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name)
