"""What a person reads of the run history: the trend and check tables, the trend chart, and the report's section."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from pathlib import Path

from rich import box
from rich.console import Console
from rich.table import Table
from rich.text import Text
from tabulate import tabulate

from bench.record import Run
from reports import _format
from reports.compare import DEFAULT_THRESHOLD
from reports.history import AddOutcome, Filters, History, Series, Trend, config_key, machine_of
from reports.history.trend import (
    FAMILY_SIGNIFICANCE,
    METRICS,
    MIN_WINDOW_RUNS,
    RECENT_RUNS,
    SIGNIFICANCE,
    VERDICTS,
    WINDOW_RUNS,
    ConfigurationCheck,
    Metric,
    check_series,
    fewest_runs,
)

_VERDICT_STYLES = {"slower": "bold red", "faster": "green", "no change": "", "not enough history": "yellow"}


def add_finished_run(results_file: Path, history: History) -> str | None:
    """Add a finished (or stopped) run to ``history``; returns the warning line when it could not be added. The run
    is safe in its file whatever happens here, so a broken history costs a warning, never the run."""
    if not results_file.exists():
        return None
    try:
        outcome = history.add_paths([results_file.parent])
    except Exception as error:  # whatever went wrong with the history, the run and its exit code stand
        return f"warning: the run was not added to the run history: {str(error).removeprefix('history: ')}"
    if outcome.skipped:
        return f"warning: the run was not added to the run history: {outcome.skipped[0][1]}"
    return None


def outcome_lines(outcome: AddOutcome, history: History) -> tuple[list[str], list[str]]:
    """What ``history import`` or ``rebuild`` did: a line of counts (stdout), a line per input that could not be
    used (stderr)."""
    runs, results = history.counts()
    counts = [f"history {history.location}: {outcome.added} run(s) added, {outcome.updated} updated, "
              f"{outcome.unchanged} already there; it holds {runs} runs, {results} results"]
    problems = ([f"skipped {path}: {reason}" for path, reason in outcome.skipped]
                + [f"no such file or folder: {path}" for path in outcome.missing]
                + [f"no run file (results.json) in {path}" for path in outcome.empty]
                + ([f"the unreadable database file was moved to {outcome.moved_aside}"]
                   if outcome.moved_aside is not None else []))
    return counts, problems


def nothing_recorded_line(history: History) -> str:
    return (f"history: nothing recorded in {history.location} yet; bench adds every run it makes, and "
            "`python cli.py history import RUN_FOLDER...` adds earlier ones")


def method_text(metric: Metric, threshold: float) -> str:
    """The check's method in one paragraph, for ``history check``'s output, its help and the report."""
    return (f"A configuration on a machine is slower when, for a segment of its latest {min(RECENT_RUNS)} to "
            f"{max(RECENT_RUNS)} runs, a one-sided Mann-Whitney U test of those runs' medians against the up to "
            f"{WINDOW_RUNS} runs before them gives p < {SIGNIFICANCE:g} ({FAMILY_SIGNIFICANCE:g} over the "
            f"{len(RECENT_RUNS)} segments tried), and both the segment's median and the latest run's are beyond "
            f"{threshold:.0%} of the earlier runs' median; faster likewise. Fewer runs than a test can decide on "
            f"(at least {MIN_WINDOW_RUNS} before the segment, {fewest_runs()} in all) say \"not enough history\". "
            f"Metric: {metric.unit}, "
            f"{'lower' if metric.lower_is_better else 'higher'} is better.")


def _when(moment: dt.datetime) -> str:
    return moment.strftime("%Y-%m-%d %H:%M")


def _by_machine(entries: Sequence, machine_of_entry) -> dict[tuple[str, str], list]:
    grouped: dict[tuple[str, str], list] = {}
    for entry in entries:
        grouped.setdefault(machine_of_entry(entry), []).append(entry)
    return grouped


def short_configurations(labels: Sequence[str]) -> tuple[list[str], str]:
    """Each label without the words every label shares, and those shared words: tables fit 80 columns when the
    title carries "lenet torch cpu fp32" once and the rows only what varies."""
    words = [label.split() for label in labels]
    shared = [word for word in words[0] if all(word in other for other in words[1:])] if len(labels) > 1 else []
    names = [" ".join(word for word in entry if word not in shared) or label for entry, label in zip(words, labels,
                                                                                                     strict=True)]
    return names, " ".join(shared)


def _machine_table(machine: str, machine_id: str, shared: str, caption: str | None = None) -> Table:
    # Text, not markup: "[5fc676b6d5]" and names from run files must print as they are.
    title = Text(f"{shared} — {machine} [{machine_id}]" if shared else f"{machine} [{machine_id}]")
    table = Table(title=title, title_justify="left", box=box.SIMPLE_HEAD, pad_edge=False, caption=caption,
                  caption_justify="left")
    table.add_column("configuration", overflow="fold")
    return table


def render_trends(trends: Sequence[Trend], console: Console, location: Path) -> None:
    """A table per machine: each configuration's runs, latest run, and its latest, best and worst median."""
    if not trends:
        console.print(f"No measured configuration in {location} matches.", highlight=False)
        return
    for (machine, machine_id), entries in _by_machine(trends, lambda trend: (trend.machine, trend.machine_id)).items():
        names, shared = short_configurations([trend.configuration for trend in entries])
        table = _machine_table(machine, machine_id, shared, "median ms per batch: lower is better; images/s: higher "
                               "is better; dates UTC")
        for column in ("runs", "latest run", "latest ms", "best ms", "worst ms", "images/s"):
            table.add_column(column, justify="left" if column == "latest run" else "right", no_wrap=True)
        for name, trend in zip(names, entries, strict=True):
            table.add_row(Text(name), str(trend.runs), trend.latest_run.strftime("%Y-%m-%d"),
                          _format.milliseconds(trend.latest_ms), _format.milliseconds(trend.best_ms),
                          _format.milliseconds(trend.worst_ms), _format.rate(trend.latest_images_per_s))
        console.print(table)


def render_checks(checks: Sequence[ConfigurationCheck], console: Console, location: Path, metric: Metric,
                  threshold: float) -> None:
    """A table per machine with each configuration's verdict, then when and why each change, and the method."""
    if not checks:
        console.print(f"No measured configuration in {location} matches.", highlight=False)
        return
    number = _format.milliseconds if metric.lower_is_better else _format.rate
    short_unit = "ms" if metric.lower_is_better else "img/s"
    grouped = _by_machine(checks, lambda check: (check.series.machine, check.series.machine_id))
    for (machine, machine_id), entries in grouped.items():
        names, shared = short_configurations([entry.series.configuration for entry in entries])
        table = _machine_table(machine, machine_id, shared)
        for column in ("runs", f"before {short_unit}", f"recent {short_unit}", "change", "p"):
            table.add_column(column, justify="right", no_wrap=True)
        table.add_column("verdict", no_wrap=True)
        for name, entry in zip(names, entries, strict=True):
            check = entry.check
            recent = (f"{number(check.recent_median)} ({check.recent_runs})" if check.recent_median is not None
                      else "")
            table.add_row(Text(name), str(entry.series.runs),
                          number(check.window_median) if check.window_median is not None else "", recent,
                          f"{check.change:+.1%}" if check.change is not None else "",
                          f"{check.p_value:.2g}" if check.p_value is not None else "",
                          Text(check.verdict, style=_VERDICT_STYLES[check.verdict]))
        console.print(table)
    for entry in checks:
        if entry.check.verdict in ("slower", "faster"):
            console.print(Text(f"{entry.series.configuration} on {entry.series.machine}: {_verdict_text(entry)}: "
                               f"{entry.check.why}", style="dim"))
    tally = ", ".join(f"{sum(entry.check.verdict == verdict for entry in checks)} {verdict}"
                      for verdict in VERDICTS)
    console.print(f"{tally}. {method_text(metric, threshold)}", highlight=False)


def _verdict_text(entry: ConfigurationCheck) -> str:
    """The verdict, and for a change the run it starts at: "slower since 2026-03-02 10:15 (commit 1a2b3c4d)"."""
    if entry.check.verdict in ("slower", "faster") and entry.since is not None:
        commit = f" (commit {entry.since.git_commit[:8]}{'+' if entry.since.git_dirty else ''})" \
            if entry.since.git_commit else ""
        return f"{entry.check.verdict} since {_when(entry.since.started_at)}{commit}"
    return entry.check.verdict


def plot_series(series: Sequence[Series], out_path: str | Path, title: str) -> Path:
    """Median ms per batch over time with its confidence interval as a band, one line per configuration (and
    machine, where the series span several); returns the PNG path."""
    # matplotlib is imported here, not above: `history show` and `check` answer without it. Figures are drawn on
    # the Agg canvas directly, never through pyplot (as reports.plots does, for the same reasons).
    from matplotlib.dates import AutoDateLocator, ConciseDateFormatter
    from matplotlib.figure import Figure

    from reports.plots import LOG_AXIS_SPREAD, save_png

    figure = Figure(figsize=(9, 5), layout="constrained")
    axes = figure.subplots()
    several_machines = len({entry.machine_id for entry in series}) > 1
    medians = [point.median_ms for entry in series for point in entry.points]
    for index, entry in enumerate(series):
        colour = f"C{index % 10}"
        times = [point.started_at for point in entry.points]
        label = entry.configuration + (f" — {entry.machine}" if several_machines else "")
        axes.plot(times, [point.median_ms for point in entry.points], marker="o", markersize=3, color=colour,
                  label=label)
        bounds = [(point.median_ci_low_ms, point.median_ci_high_ms) for point in entry.points]
        if all(low is not None and high is not None for low, high in bounds):
            axes.fill_between(times, [low for low, _ in bounds], [high for _, high in bounds], color=colour,
                              alpha=0.2, linewidth=0)
    if medians and max(medians) > LOG_AXIS_SPREAD * min(medians):
        axes.set_yscale("log")
    locator = AutoDateLocator()
    axes.xaxis.set_major_locator(locator)
    axes.xaxis.set_major_formatter(ConciseDateFormatter(locator))
    axes.set_xlabel("run start (UTC)")
    axes.set_ylabel("median time per batch (ms), band: its CI")
    machines = {entry.machine for entry in series}
    axes.set_title(title + ("" if several_machines or not machines else f"\n{next(iter(machines))}"),
                   fontsize="medium")
    axes.grid(True, alpha=0.3)
    if series:
        axes.legend(fontsize="small")
    return save_png(figure, Path(out_path))


def run_configurations(runs: Sequence[Run]) -> tuple[tuple[str, str], ...]:
    """The (config_key, machine_id) pairs of the runs' results, as the history keys them."""
    pairs = {(config_key(result.config), machine_of(run.environment, result.config.device).key)
             for run in runs for result in run.results}
    return tuple(sorted(pairs))


def append_history_section(report_path: str | Path, runs: Sequence[Run], history: History) -> list[Path]:
    """Append a "History" section to a written report: per model, the trend of the runs' configurations on the
    runs' machines (a chart ``{stem}-{model}-history.png`` beside the report) and each one's check verdict.
    Returns the charts written."""
    report_path = Path(report_path)
    series = history.series(Filters(configurations=run_configurations(runs)))
    lines = ["## History", "", f"From the run history `{history.location}`, per configuration and machine."]
    charts: list[Path] = []
    if not series:
        lines += ["", "The history holds no measured result of these configurations on these machines."]
    else:
        from reports.plots import file_safe  # with matplotlib, which the charts below need anyway

        checks = {(entry.series.config_key, entry.series.machine_id): entry
                  for entry in check_series(series, METRICS["time"], DEFAULT_THRESHOLD)}
        lines += ["", method_text(METRICS["time"], DEFAULT_THRESHOLD)]
        for model in dict.fromkeys(entry.model for entry in series):
            model_series = [entry for entry in series if entry.model == model]
            chart_path = report_path.parent / f"{report_path.stem}-{file_safe(model)}-history.png"
            chart = plot_series(model_series, chart_path, f"{model}: median step time over the run history")
            charts.append(chart)
            rows = []
            for entry in model_series:
                medians = [point.median_ms for point in entry.points]
                check = checks[(entry.config_key, entry.machine_id)]
                rows.append([entry.configuration, entry.machine, str(len(entry.points)),
                             _format.milliseconds(medians[-1]), _format.milliseconds(min(medians)),
                             _format.milliseconds(max(medians)), _verdict_text(check)])
            table = tabulate(rows, headers=["configuration", "machine", "runs", "latest ms", "best ms", "worst ms",
                                            "check"], tablefmt="github", disable_numparse=True,
                             colalign=("left", "left", "right", "right", "right", "right", "left"))
            lines += ["", f"### {model}", "", table, "", f"![{model}: median step time over the run history]"
                      f"({chart.name})"]
    with report_path.open("a") as stream:
        stream.write("\n" + "\n".join(lines) + "\n")
    return charts
