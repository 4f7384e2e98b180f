"""Rich terminal tables of a run: results first, one table per model and mode, then what was not measured, then a
short summary of the environment (the full one with ``show --env`` and in report.md).

Tables fit the terminal: a narrow one (80 columns, a CI log) gives up secondary columns in the order declared in
``reports._rows``, and says which; headers are never cut.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from rich import box
from rich.console import Console
from rich.measure import Measurement
from rich.table import Table
from rich.text import Text

from bench.modes import MODES
from bench.record import Result, Run
from reports import _format, _rows, scaling
from reports._environment import environment_rows, environment_summary
from reports._groups import LabelledResult, by_model_and_mode, short_labels
from reports.compare import SIGNIFICANCE, VERDICTS, Comparison


def render_run(source: Run | Sequence[Result], console: Console, *, with_environment: bool = False) -> None:
    """Print a run's results, what was not measured, and its environment (a summary, or in full with
    ``with_environment``); a plain list of results prints without environment."""
    run = source if isinstance(source, Run) else None
    results = run.results if run is not None else list(source)
    measured = [LabelledResult("", result) for result in results if result.status == "ok"]
    dropped: list[str] = []
    for (model, mode), group in by_model_and_mode(measured).items():
        table, left_out = fitted_results_table(model, mode, group, console.width)
        console.print(table)
        dropped = dropped or left_out
    legend = _rows.legend([entry.result for entry in measured], dropped)
    if legend:
        console.print(Text("\n".join(legend), style="dim"))
    parallel = scaling.by_model_and_mode(scaling.scaling_rows(measured))
    scaling_left_out: list[str] = []
    for (model, mode), rows in parallel.items():
        table, left_out = scaling_table(model, mode, rows, console.width)
        console.print(table)
        scaling_left_out = scaling_left_out or left_out
    if parallel:
        narrow = (f" Narrow terminal: left out {', '.join(scaling_left_out)}; widen it or see report.md."
                  if scaling_left_out else "")
        console.print(Text(scaling.LEGEND + narrow, style="dim"))
    unmeasured = [result for result in results if result.status != "ok"]
    if unmeasured:
        console.print(not_measured_table(unmeasured))
    if not results:
        console.print("The run holds no results.")
    if run is not None:
        if with_environment:
            console.print(environment_table(run))
        else:
            console.print(Text("\n".join(environment_summary(run.environment)), style="dim"), soft_wrap=False)


def scaling_table(model: str, mode: str, rows: Sequence[scaling.ScalingRow], width: int = 10_000
                  ) -> tuple[Table, list[str]]:
    """The scaling table of a model and mode, giving up ``scaling.DROP_ORDER`` columns to fit ``width``."""

    def build(left_out: list[str]) -> Table:
        keep = [index for index, header in enumerate(scaling.HEADERS) if header not in left_out]
        table = Table(title=f"{model} — {mode} — data-parallel scaling", title_justify="left", box=box.SIMPLE_HEAD,
                      padding=(0, 1), pad_edge=False)
        for index in keep:
            header = scaling.HEADERS[index]
            table.add_column(header.replace(" ", "\n", 1), no_wrap=True,  # two-line headers: narrower columns
                             justify="left" if header in scaling.TEXT_COLUMNS else "right")
        for row in rows:
            cells = scaling.cells(row)
            table.add_row(*(cells[index] for index in keep))
        return table

    return _fitted(build, scaling.DROP_ORDER, width)


def environment_table(run: Run) -> Table:
    table = Table(title=f"Environment of {run.path}" if run.path else "Environment", title_justify="left")
    table.add_column("setting")
    table.add_column("value", overflow="fold")
    for label, value in environment_rows(run.environment).items():
        table.add_row(label, value)
    return table


def results_table(model: str, mode: str, group: Sequence[LabelledResult], *, leave_out: Sequence[str] = ()) -> Table:
    """One model and mode: a row per configuration, each setting's frameworks on adjacent rows.

    Device and precision go into the title when every row shares them; ``leave_out`` names columns to omit.
    """
    shared = {name: {getattr(entry.result.config, name) for entry in group} for name in ("device", "precision")}
    in_title = [name for name, values in shared.items() if len(values) == 1]
    title = " — ".join([model, mode, *([" ".join(next(iter(shared[name])) for name in in_title)] if in_title else [])])
    mode_text = MODES[mode].description if mode in MODES else None
    table = Table(title=title, caption=mode_text, title_justify="left", caption_justify="left", box=box.SIMPLE_HEAD,
                  pad_edge=False)
    keys = [key for key in _rows.columns_for(group, in_title) if key not in leave_out]
    for key in keys:
        column = _rows.COLUMN_BY_KEY[key]
        table.add_column(column.header, justify="right" if column.numeric else "left", no_wrap=True)
    for row in _rows.rows(group):
        table.add_row(*(row.cells[key] for key in keys), style="bold" if row.fastest else None)
    return table


def fitted_results_table(model: str, mode: str, group: Sequence[LabelledResult], width: int
                         ) -> tuple[Table, list[str]]:
    """``results_table`` without the columns it must give up to fit ``width``; returns them too."""
    present = set(_rows.columns_for(group))
    return _fitted(lambda left_out: results_table(model, mode, group, leave_out=left_out),
                   [key for key in _rows.DROP_ORDER if key in present], width)


def _fitted(build: Callable[[list[str]], Table], drop_order: Sequence[str], width: int) -> tuple[Table, list[str]]:
    """The table ``build`` makes, leaving out columns in ``drop_order`` until it fits ``width``; and those left out."""
    left_out: list[str] = []
    candidates = list(drop_order)
    while True:
        table = build(left_out)
        if not candidates or _width(table) <= width:
            return table, left_out
        left_out.append(candidates.pop(0))


def _width(table: Table) -> int:
    console = Console(width=10_000)
    return Measurement.get(console, console.options, table).maximum


def not_measured_table(results: Sequence[Result]) -> Table:
    """Skipped, failed and interrupted configurations: status, the samples kept (partial ones), and why."""
    table = Table(title="Not measured in full", title_justify="left", box=box.SIMPLE_HEAD, pad_edge=False)
    for column in ("configuration", "status", "samples", "reason"):
        table.add_column(column, overflow="fold", justify="right" if column == "samples" else "left")
    for result in results:
        style = {"failed": "red", "interrupted": "magenta"}.get(result.status, "yellow")
        kept = f"{len(result.samples_ms)} kept" if result.samples_ms else ""
        table.add_row(result.config.label(), Text(result.status, style=style), kept,
                      result.reason or "no reason recorded")
    return table


_VERDICT_STYLES = {"slower": "bold red", "faster": "green", "same": "", "inconclusive": "yellow"}


def render_comparison(comparison: Comparison, console: Console) -> None:
    """Print each compared configuration with its verdict, why, then what only one run measured, and a tally."""
    names, shared = short_labels([pair.config for pair in comparison.compared])
    table = Table(title=f"new against base{': ' + shared if shared else ''}", title_justify="left",
                  box=box.SIMPLE_HEAD, pad_edge=False)
    table.add_column("configuration", overflow="fold")
    for column in ("base ms", "new ms", "new/base", "p"):
        table.add_column(column, justify="right", no_wrap=True)
    table.add_column("verdict", no_wrap=True)
    for name, pair in zip(names, comparison.compared, strict=True):
        change = pair.difference
        table.add_row(name, _format.milliseconds(change.base_median_ms), _format.milliseconds(change.new_median_ms),
                      _format.ratio(change.ratio), f"{change.p_value:.2g}",
                      Text(change.verdict, style=_VERDICT_STYLES[change.verdict]))
    console.print(table)
    for name, pair in zip(names, comparison.compared, strict=True):
        change = pair.difference
        console.print(Text(f"{name}: {change.verdict}, tested on {change.basis}: {change.why}", style="dim"))
    for title, configs in (("only in base", comparison.only_in_base), ("only in new", comparison.only_in_new)):
        if configs:
            console.print(f"{title}: " + "; ".join(config.label() for config in configs), highlight=False)
    for result in comparison.failed_in_new:
        console.print(Text(f"failed in new: {result.config.label()}: {result.reason or 'no reason recorded'}",
                           style="bold red"))
    tally = ", ".join(f"{len(comparison.with_verdict(verdict))} {verdict}" for verdict in VERDICTS)
    beyond = f"{comparison.threshold:.1%}" + (" and beyond each run's own spread between processes"
                                               if comparison.separate_sessions else "")
    console.print(f"{tally}. A verdict needs a two-sided Mann-Whitney U p < {SIGNIFICANCE:g} and a median shift "
                  f"beyond {beyond}.", highlight=False)


def peak_table(entry: dict) -> Table:
    """One device's matmul peak (``bench.peak.measure_peaks``): per precision each framework, the best, and
    the published figure where the GPU is a known product."""
    identity = entry["identity"]
    if identity["kind"] == "cuda" and not identity.get("model"):
        suffix = " (no GPU identified)"
    elif identity["kind"] == "cuda":
        suffix = f" ({identity['model']}, compute capability {identity['capability']})"
    else:
        suffix = f" ({identity['model']}, {entry['threads']} threads)"
    table = Table(title=f"Matmul peak on {entry['device']}{suffix}", title_justify="left", box=box.SIMPLE_HEAD,
                  pad_edge=False, caption=f"square matrices of {', '.join(map(str, entry['matrix_sizes']))}; the "
                  "best rate of each framework over the sizes; fp32 is IEEE fp32 (TF32 off)", caption_justify="left")
    table.add_column("precision")
    for framework in entry["by_framework"]:
        table.add_column(f"{framework} GFLOP/s", justify="right", overflow="fold")
    table.add_column("best GFLOP/s", justify="right")
    published = entry["published_tflops"]
    if published:
        table.add_column(f"published {entry['published_product']} GFLOP/s", justify="right")
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


def fidelity_table(rows: Sequence[dict], threads: int, rounds: int) -> Table:
    """``fidelity``: per framework and case, the harness's and the reference's median ms per call, their ratio
    against the case's target; the reference timers in the caption."""
    timers = "; ".join(f"{framework}: {timer}" for framework, timer in
                       dict.fromkeys((row["framework"], row["reference"]) for row in rows))
    table = Table(title=f"Harness against each framework's own timer: median ms per call, {rounds} interleaved "
                  f"rounds, {threads} threads", title_justify="left", box=box.SIMPLE_HEAD, pad_edge=False,
                  caption=f"reference timers: {timers}", caption_justify="left")
    for column in ("framework", "model", "batch", "harness", "reference", "ratio", "target", "verdict"):
        table.add_column(column, no_wrap=True, justify="left" if column in ("framework", "model", "target",
                                                                            "verdict") else "right")
    for row in rows:
        table.add_row(row["framework"], row["model"], str(row["batch"]), _format.milliseconds(row["harness_ms"]),
                      _format.milliseconds(row["reference_ms"]), f"{row['ratio']:.3f}", f"±{row['tolerance']:.0%}",
                      Text("within", style="green") if row["within_target"] else Text("OUTSIDE", style="red"))
    return table


def pipeline_check_table(checks: list[dict]) -> Table:
    """The input pipelines' parity check (``bench.pipeline_check``): each engine's batch against the reference's,
    in 8-bit levels of the pixels."""
    first = checks[0] if checks else {}
    table = Table(title=f"Input pipelines, same crops, flips and lighting: {first.get('model', '')}, "
                        f"{first.get('batch', '')} images" + (", lighting on" if first.get("lighting") else ""),
                  title_justify="left", box=box.SIMPLE_HEAD, pad_edge=False)
    for header in ("reference", "pipeline", "mean levels", "max levels", "values differing", "over 1 level",
                   "passed"):
        table.add_column(header, justify="left" if header in ("reference", "pipeline", "passed") else "right")
    for check in checks:
        if "error" in check:
            table.add_row(check["reference"], check["framework"], "", "", "", "", f"no: {check['error']}")
            continue
        table.add_row(check["reference"], check["framework"], f"{check['mean_levels']:.3f}",
                      f"{check['max_levels']:g}", f"{check['share_differing']:.1%}",
                      f"{check['share_over_1_level']:.1%}", "yes" if check["passed"] else "NO")
    return table
