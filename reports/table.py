"""Rich terminal tables of a run: its environment, one table per model and mode, then what was not measured."""

from __future__ import annotations

from collections.abc import Sequence

from rich.console import Console
from rich.table import Table
from rich.text import Text

from bench.record import MODES, Result, Run
from bench.stats import NOISY_IQR_RATIO
from reports import _format
from reports._environment import environment_rows
from reports._groups import LabelledResult, by_model_and_mode, time_vs_fastest
from reports.compare import SIGNIFICANCE, VERDICTS, Comparison

NOISY_MARK, CAPPED_MARK = _format.NOISY_MARK, _format.CAPPED_MARK
_TEXT_COLUMNS = ("framework", "device", "precision", "variant")
# Below this console width the secondary columns are left out, so the rest stays readable.
WIDE_CONSOLE = 150
SECONDARY_COLUMNS = ("ms / image", "peak memory", "first step ms", "samples")


def render_run(source: Run | Sequence[Result], console: Console) -> None:
    """Print a run (environment first) or a list of results to ``console``."""
    if isinstance(source, Run):
        console.print(environment_table(source))
        results = source.results
    else:
        results = list(source)
    measured = [LabelledResult("", result) for result in results if result.status == "ok"]
    compact = console.width < WIDE_CONSOLE
    for (model, mode), group in by_model_and_mode(measured).items():
        console.print(results_table(model, mode, group, compact=compact))
    legend = _legend([entry.result for entry in measured])
    if measured and compact:
        legend.append(f"narrow terminal: {', '.join(SECONDARY_COLUMNS)} left out; widen it to {WIDE_CONSOLE} "
                      "columns, or see report.md / export")
    if legend:
        console.print(Text("\n".join(legend), style="dim"))
    unmeasured = [result for result in results if result.status != "ok"]
    if unmeasured:
        console.print(not_measured_table(unmeasured))
    if not results:
        console.print("The run holds no results.")


def environment_table(run: Run) -> Table:
    table = Table(title=f"Environment of {run.path}" if run.path else "Environment", title_justify="left")
    table.add_column("setting")
    table.add_column("value", overflow="fold")
    for label, value in environment_rows(run.environment).items():
        table.add_row(label, value)
    return table


def results_table(model: str, mode: str, group: Sequence[LabelledResult], *, compact: bool = False) -> Table:
    """One model and mode: a row per configuration, each setting's frameworks on adjacent rows.

    Device and precision go into the title when every row shares them; ``compact`` leaves out the secondary
    columns for narrow terminals.
    """
    with_variant = any(entry.result.config.compile or entry.result.config.channels_last for entry in group)
    shared = {name: {getattr(entry.result.config, name) for entry in group} for name in ("device", "precision")}
    in_title = [next(iter(values)) for values in shared.values() if len(values) == 1]
    title = " — ".join([model, mode, *([" ".join(in_title)] if in_title else [])])
    table = Table(title=title, caption=MODES.get(mode), title_justify="left", caption_justify="left")
    columns = ["framework", *(name for name, values in shared.items() if len(values) > 1), "batch"]
    columns += (["variant"] if with_variant else [])
    columns += ["median ms (95% CI)", "ms / image", "images/s", "GFLOP/s", "MFU %", "peak memory",
                "first step ms", "samples", "vs fastest"]
    hidden = set(SECONDARY_COLUMNS) if compact else set()
    for column in columns:
        if column not in hidden:
            table.add_column(column, justify="left" if column in _TEXT_COLUMNS else "right", no_wrap=True)
    for entry, ratio in zip(group, time_vs_fastest(group), strict=True):
        result, config = entry.result, entry.result.config
        varying = [name for name, values in shared.items() if len(values) > 1]
        row = [config.framework, *(getattr(config, name) for name in varying), str(config.batch_size)]
        if with_variant:
            row.append(_format.variant(config.compile, config.channels_last))
        cells = _format.measured_cells(result, ratio)
        row += [f"{cells['median']} ({cells['ci']})"] + [cells[key] for key in (
            "ms_per_image", "images_per_s", "gflops_per_s", "mfu", "peak_memory", "first_step", "samples",
            "vs_fastest")]
        row = [value for column, value in zip(columns, row, strict=True) if column not in hidden]
        table.add_row(*row, style="bold" if ratio == 1.0 else None)
    return table


def not_measured_table(results: Sequence[Result]) -> Table:
    table = Table(title="Not measured", title_justify="left")
    for column in ("configuration", "status", "reason"):
        table.add_column(column, overflow="fold")
    for result in results:
        style = "red" if result.status == "failed" else "yellow"
        table.add_row(result.config.label(), Text(result.status, style=style), result.reason or "no reason recorded")
    return table


def _legend(results: Sequence[Result]) -> list[str]:
    lines = []
    if results:
        lines.append("vs fastest: median time over the fastest median at the same device, precision and batch size")
    if any(result.derived()["noisy"] for result in results):
        lines.append(f"{NOISY_MARK} noisy: interquartile range above {NOISY_IQR_RATIO:.0%} of the median")
    if any(result.capped for result in results):
        lines.append(f"{CAPPED_MARK}: stopped by the time limit (max_time_s) before every timed iteration ran")
    return lines


_VERDICT_STYLES = {"slower": "bold red", "faster": "green", "same": ""}


def render_comparison(comparison: Comparison, console: Console) -> None:
    """Print each compared configuration with its verdict, then what only one run measured, then a tally."""
    table = Table(title="new against base", title_justify="left")
    table.add_column("configuration")
    for column in ("base ms", "new ms", "new/base", "p-value"):
        table.add_column(column, justify="right", no_wrap=True)
    table.add_column("tested on", no_wrap=True)
    table.add_column("verdict", no_wrap=True)
    for pair in comparison.compared:
        table.add_row(
            pair.config.label(), _format.milliseconds(pair.base_median_ms), _format.milliseconds(pair.new_median_ms),
            _format.ratio(pair.ratio), f"{pair.p_value:.2g}", pair.basis,
            Text(pair.verdict, style=_VERDICT_STYLES[pair.verdict]),
        )
    console.print(table)
    for title, configs in (("only in base", comparison.only_in_base), ("only in new", comparison.only_in_new)):
        if configs:
            console.print(f"{title}: " + "; ".join(config.label() for config in configs), highlight=False)
    for result in comparison.failed_in_new:
        console.print(Text(f"failed in new: {result.config.label()}: {result.reason or 'no reason recorded'}",
                           style="bold red"))
    tally = ", ".join(f"{len(comparison.with_verdict(verdict))} {verdict}" for verdict in VERDICTS)
    console.print(
        f"{tally}. A verdict needs a two-sided Mann-Whitney U p < {SIGNIFICANCE:g} and a median shift beyond "
        f"{comparison.threshold:.1%}.",
        highlight=False,
    )


def peak_table(entry: dict) -> Table:
    """One device's matmul peak (``bench.peak.measure_peaks``): per precision each framework, the best, and
    the published figure where the GPU is a known model."""
    suffix = f" ({entry['gpu_name']})" if entry["gpu_name"] else f", {entry['threads']} threads"
    table = Table(title=f"Matmul peak on {entry['device']}{suffix}", title_justify="left")
    table.add_column("precision")
    for framework in entry["by_framework"]:
        table.add_column(f"{framework} GFLOP/s", justify="right")
    table.add_column("best GFLOP/s", justify="right")
    published = entry["published_tflops"]
    if published:
        table.add_column("published GFLOP/s", justify="right")
    precisions = dict.fromkeys([*entry["best_gflops_per_s"], *(p for r in entry["by_framework"].values() for p in r)])
    for precision in precisions:
        row = [precision]
        for rates in entry["by_framework"].values():
            value = rates.get(precision, {})
            row.append(_format.rate(value["gflops_per_s"]) if "gflops_per_s" in value
                       else value.get("error", "").split(" (")[0])
        best = entry["best_gflops_per_s"].get(precision)
        row.append(_format.rate(best) if best else "not measured")
        if published:
            row.append(_format.rate(published[precision] * 1e3) if precision in published else "")
        table.add_row(*row)
    return table
