"""A markdown report of one or several run files, with its PNG charts beside it; renders on GitHub."""

from __future__ import annotations

from collections import Counter
from collections.abc import Collection, Sequence
from datetime import datetime, timezone
from pathlib import Path

from tabulate import tabulate

from bench.engines import ENGINES
from bench.explain import EXPLAIN_FILE_NAME, read_explanations
from bench.modes import MODES
from bench.record import Derived, Run
from bench.stats import NOISY_IQR_RATIO
from reports import _format, _rows, pipeline, scaling
from reports._environment import merged_environment_rows
from reports._files import ensure_folder
from reports._groups import (
    LabelledResult,
    by_model_and_mode,
    labelled_results,
    run_labels,
    series_name,
    setting,
    sort_key,
)
from reports.compare import DEFAULT_THRESHOLD, SIGNIFICANCE, difference
from reports.explain import markdown_section
from reports.plots import plot_batch_scaling, plot_median_times

TITLE = "CNN benchmark report"
_TEXT_COLUMNS = {"run", "device", "precision", "framework", "variant", "replicas", "mode", "series",
                 "configuration", "configurations", "status", "reason", "settings"}


def write_report(runs: list[Run], out_path: str | Path) -> Path:
    """Write the report and its charts (``{stem}-{model}-*.png`` beside it); returns the markdown path.

    Several runs (say one CPU box and one GPU box) share one report: the environment table has a column per
    run, and results from different runs are never compared with each other, only within a run.
    """
    if not runs:
        raise ValueError("a report needs at least one run")
    out_path = Path(out_path)
    ensure_folder(out_path.parent)
    median_charts = plot_median_times(runs, out_path.parent, out_path.stem)
    scaling_charts = plot_batch_scaling(runs, out_path.parent, out_path.stem)
    entries = labelled_results(runs)
    measured = [entry for entry in entries if entry.result.status == "ok"]
    replica_rows = scaling.scaling_rows(measured)
    replica_charts = scaling.plot_scaling(replica_rows, out_path.parent, out_path.stem)
    pipeline_charts = pipeline.plot_pipelines(measured, out_path.parent, out_path.stem)
    with_run = len(runs) > 1
    sections = [
        _heading(runs),
        _environment_section(runs),
        _results_section(measured, with_run, median_charts, scaling_charts, replica_rows, replica_charts),
        _pipeline_section(measured, pipeline_charts),
        _explain_section(runs, out_path),
        _settings_section(entries, with_run),
        _methodology_section(runs),
        _not_measured_section([entry for entry in entries if entry.result.status != "ok"], with_run),
    ]
    out_path.write_text("\n\n".join(section for section in sections if section) + "\n")
    return out_path


def _pipeline_section(measured: Sequence[LabelledResult], charts: dict[str, Path]) -> str:
    """The input pipelines: their rates by workers, the fed steps' rates alone, and the workers each step needs."""
    rows = pipeline.rows(measured)
    if not rows:
        return ""
    parts = ["## Input pipeline",
             "Each engine's JPEG pipeline (decode, resize to 256, centre 256x256, random crop, random flip, "
             "normalise, batch) alone: images/s by workers. A step fed from JPEGs measures, in its own process, the "
             "step alone on a fixed batch and the pipeline alone at its workers before the fed loop; the step is "
             "*input-bound* where the pipeline alone is slower.",
             *pipeline.needed_sentences(measured),
             _table(pipeline.HEADERS, rows, text_columns=pipeline.TEXT_COLUMNS)]
    parts += [f"![{model}: input pipeline against workers]({chart.name})" for model, chart in charts.items()]
    return "\n\n".join(parts)


def _explain_section(runs: Sequence[Run], out_path: Path) -> str:
    """Where the time goes, layer by layer, when ``explain`` wrote its ledger into a run's folder."""
    explanations = [entry for run in runs if run.path is not None
                    and (run.path.parent / EXPLAIN_FILE_NAME).exists()
                    for entry in read_explanations(run.path.parent / EXPLAIN_FILE_NAME)]
    return markdown_section(explanations, out_path.parent, out_path.stem) if explanations else ""


def _heading(runs: Sequence[Run]) -> str:
    generated = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    labels = run_labels(runs)
    sources = ", ".join(f"`{run.path}`" if run.path else label for label, run in zip(labels, runs, strict=True))
    commands = [f"`python {run.environment['command']}`" for run in runs if run.environment.get("command")]
    measured_by = f"\n\nMeasured by {', '.join(commands)}." if commands else ""
    return f"# {TITLE}\n\nGenerated {generated} from {sources}.{measured_by}"


def _environment_section(runs: Sequence[Run]) -> str:
    rows = merged_environment_rows([run.environment for run in runs])
    if not rows:
        return "## Environment\n\nThe run files record no environment."
    headers = ["setting", *run_labels(runs)] if len(runs) > 1 else ["setting", "value"]
    return "## Environment\n\n" + _table(headers, [[label, *values] for label, values in rows], text_columns=headers)


def _results_section(measured: Sequence[LabelledResult], with_run: bool, median_charts: dict[str, Path],
                     scaling_charts: dict[str, Path], replica_rows: Sequence[scaling.ScalingRow],
                     replica_charts: dict[str, Path]) -> str:
    if not measured:
        return "## Results\n\nNo configuration was measured."
    results = [entry.result for entry in measured]
    parts = [
        "## Results",
        f"Times are per batch; the median is the headline figure. CI: {_rows.ci_description(results)}. "
        f"{_rows.NOISY_MARK} marks a noisy result (interquartile range above {NOISY_IQR_RATIO:.0%} of the median), "
        f"{_rows.ABOVE_PEAK_MARK} an MFU above 100% (see Methodology). *vs fastest* divides each median by the "
        "fastest one at the same device, precision, batch size and replicas" + (" in the same run." if with_run
                                                                                 else ".")
        + " Peak memory covers the timed steps; burn-in memory the burn-in, where autotuning and compilation take "
        "their workspaces.",
    ]
    groups = by_model_and_mode(measured)
    for model in dict.fromkeys(model for model, _ in groups):
        parts.append(f"### {model}")
        for (group_model, mode), group in groups.items():
            if group_model == model:
                parts.append(_mode_section(mode, group, with_run))
        if model in median_charts:
            parts.append(f"![{model}: median step time]({median_charts[model].name})")
        if model in scaling_charts:
            parts.append(_scaling_tables(model, [entry for entry in measured if entry.result.config.model == model],
                                        with_run))
            parts.append(f"![{model}: throughput against batch size]({scaling_charts[model].name})")
        parallel = scaling.by_model_and_mode([row for row in replica_rows if row.entry.result.config.model == model])
        for (_, mode), rows in parallel.items():
            parts.append(f"#### Data-parallel scaling of {model}, {mode}\n\n"
                         + _table(scaling.HEADERS, [scaling.cells(row) for row in rows],
                                  text_columns=scaling.TEXT_COLUMNS))
        if parallel:
            parts.append(scaling.LEGEND)
        if model in replica_charts:
            parts.append(f"![{model}: data-parallel scaling]({replica_charts[model].name})")
    return "\n\n".join(parts)


def _mode_section(mode: str, group: Sequence[LabelledResult], with_run: bool) -> str:
    keys = ((["run"] if with_run else []) + ["device", "precision", "batch", "framework"]
            + _rows.optional_columns(group)
            + _rows.figure_columns(group))
    headers = [_rows.COLUMN_BY_KEY[key].header for key in keys]
    table_rows = [[row.cells[key] for key in keys] for row in _rows.rows(group)]
    parts = [f"#### {mode}"]
    if mode in MODES:
        parts.append(f"*{MODES[mode].description}*")
    parts.append(_table(headers, table_rows))
    speedups = _speedup_lines(group, with_run)
    if speedups:
        parts.append("\n".join(speedups))
    return "\n\n".join(parts)


def _speedup_lines(group: Sequence[LabelledResult], with_run: bool) -> list[str]:
    """A sentence per setting where several frameworks ran: the fastest against each other, by the test that
    ``compare`` uses (``reports.compare.difference``), so a claim here is one ``compare`` would make."""
    by_setting: dict[tuple, list[LabelledResult]] = {}
    for entry in group:
        by_setting.setdefault(setting(entry), []).append(entry)
    lines = []
    for (run, device, precision, batch_size, replicas, nodes), entries in by_setting.items():
        if len(entries) < 2:
            continue
        fastest, *others = sorted(entries, key=lambda entry: entry.median_ms)
        where = f"{run}, " if with_run else ""
        comparisons = []
        for other in others:
            change = difference(other.result, fastest.result, DEFAULT_THRESHOLD)
            test = f"Mann-Whitney p = {change.p_value:.2g} on {change.basis}"
            if change.verdict == "faster":
                comparisons.append(f"{_name(fastest)} is {_format.ratio(1 / change.ratio)} faster than "
                                   f"{_name(other)} ({test})")
            elif change.verdict == "inconclusive":
                comparisons.append(f"{_name(fastest)} against {_name(other)}: no claim, {change.why}")
            else:
                comparisons.append(f"{_name(fastest)} and {_name(other)} are not distinguishable ({change.why})")
        parallel = f", {_format.replicas(replicas, nodes)} replicas" if replicas else ""
        lines.append(f"- {where}{device}, {precision}, batch {batch_size}{parallel}: " + "; ".join(comparisons)
                     + ".")
    return lines


def _name(entry: LabelledResult) -> str:
    config = entry.result.config
    variant = ", ".join(part for part in (_format.variant(config.compile, config.channels_last),
                                          _format.data_source(config.data, config.workers, config.autotune)
                                          if config.data != "synthetic" else "") if part)
    return f"**{config.framework}**" + (f" ({variant})" if variant else "")


def _scaling_tables(model: str, entries: Sequence[LabelledResult], with_run: bool) -> str:
    """Images/s and ms/image with a column per batch size and a row per series, so each curve reads across."""
    series: dict[tuple[str, str], dict[int, Derived]] = {}
    for entry in sorted(entries, key=lambda entry: (entry.result.config.mode, sort_key(entry))):
        key = (entry.result.config.mode, series_name(entry, with_run))
        series.setdefault(key, {})[entry.result.config.batch_size] = entry.result.derived
    batch_sizes = sorted({entry.result.config.batch_size for entry in entries})
    headers = ["mode", "series", *(f"batch {size}" for size in batch_sizes)]
    parts = [f"#### Batch-size scaling of {model}"]
    for unit, figure, formatter in (("images / s", "images_per_s", _format.rate),
                                    ("ms / image", "ms_per_image", _format.milliseconds)):
        rows = [[mode, name, *(formatter(getattr(by_batch[size],
                                                 figure)) if size in by_batch else "" for size in batch_sizes)]
                for (mode, name), by_batch in series.items()]
        parts.append(f"Throughput ({unit}):\n\n" if unit == "images / s" else f"Time per image ({unit}):\n\n")
        parts[-1] += _table(headers, rows)
    return "\n\n".join(parts)


def _methodology_section(runs: Sequence[Run]) -> str:
    results = [result for run in runs for result in run.results]
    protocols = Counter(
        (result.config.warmup, result.config.iters, result.config.max_time_s, result.config.repeats)
        for result in results
    )
    protocol_lines = [
        f"- {warmup} untimed burn-in steps, then {iters} timed steps"
        + (f", stopping early once {max_time_s:g} s of timed steps have run (such results are marked capped)"
           if max_time_s is not None else "")
        + (f"; all of it in each of {repeats} fresh processes, spread over the run in rounds (every "
           "configuration's first process, then every second one, ...), samples pooled and each process's count "
           "kept" if repeats > 1 else "")
        + f" ({count} configuration{'s' if count != 1 else ''})"
        for (warmup, iters, max_time_s, repeats), count in protocols.items()
    ]
    descriptions = {mode: text for run in reversed(runs) for mode, text in run.modes.items()}
    modes = dict.fromkeys(result.config.mode for result in results)
    known = {name: mode.description for name, mode in MODES.items()}
    mode_lines = [f"- **{mode}**: {descriptions.get(mode) or known.get(mode, 'not described')}" for mode in modes]
    conventions = list(dict.fromkeys(run.flop_convention for run in runs))
    thread_lines = []
    for label, run in zip(run_labels(runs), runs, strict=True):
        configured = sorted({result.config.threads for result in run.results if result.config.threads is not None})
        threads = ", ".join(map(str, configured)) or str(run.environment.get("threads", "the framework default"))
        thread_lines.append(f"- {label}: {threads}" if len(runs) > 1 else f"Threads per worker: {threads}.")
    engines = [ENGINES[name] for name in dict.fromkeys(result.config.framework for result in results)
               if name in ENGINES]
    compilers = ", ".join(f"`{engine.compile}` for {engine.name}" for engine in engines)
    synchronisations = ", ".join(f"`{engine.synchronize}` for {engine.name}" for engine in engines)
    parts = [
        "## Methodology",
        "Each configuration runs in a fresh worker process, so frameworks never share a process, and thread "
        "counts and GPU memory growth are set before the framework initialises.",
        f"Burn-in covers autotuning and compilation (cuDNN; with --compile, {compilers}); its first step is "
        "reported separately as *first step*. The timed protocol:",
        "\n".join(protocol_lines),
        f"Every timed step ends with a synchronisation with the device ({synchronisations}) before the clock "
        "stops, so a sample covers the device's work and not only its launch. Inputs are already on the device and "
        "of fixed shape.",
        "What each mode's timed step contains:",
        "\n".join(mode_lines),
        "Peak memory is the device's allocator peak on a GPU and the worker process's peak resident memory (its "
        "high-water mark, reset between the windows) on a CPU, over the timed steps; the burn-in's peak, where "
        "cuDNN autotuning and compilers take their workspaces, is reported apart as *burn-in memory*.",
        f"FLOP convention: {'; '.join(conventions)}. MFU is the achieved FLOP/s over the device's peak for the "
        "precision used: the best dense matrix-multiply rate over every installed engine that can time one (not "
        "the inference runtimes) and several matrix sizes, IEEE fp32 for fp32 (TF32 off), measured once per device "
        "model and cached; it does not depend on the engines a run times. Blank where the peak is unknown. The "
        "FLOPs are those of direct convolution: "
        f"a library that picks a Winograd or FFT algorithm does fewer multiplications, so an MFU above 100% "
        f"(marked {_rows.ABOVE_PEAK_MARK}) means such an algorithm, not a miscount."
        + _peak_lines(runs),
        "Statistics come from every timed sample. With one process per configuration, the median and its "
        "distribution-free confidence interval (order statistics) come from that process's samples; with several "
        "(`--repeats`), from the medians of the processes, since processes differ by more than one process's "
        "samples vary. The interval's level is its exact coverage (below 95% for fewer than 6 values). A result is "
        f"noisy when its interquartile range exceeds {NOISY_IQR_RATIO:.0%} of its median. A claim that one "
        f"framework is faster needs what `compare` needs: a Mann-Whitney U p below {SIGNIFICANCE:g} and a shift "
        f"beyond {DEFAULT_THRESHOLD:.0%} and beyond the spread between processes.",
        "\n".join(thread_lines) if len(runs) == 1 else "Threads per worker:\n\n" + "\n".join(thread_lines),
    ]
    return "\n\n".join(parts)


def _peak_lines(runs: Sequence[Run]) -> str:
    lines = []
    for run in runs:
        for device, details in (run.environment.get("peak_details") or {}).items():
            by = details.get("best_framework") or {}
            rates = (run.environment.get("peaks", {}).get(device) or {}).items()
            best = ", ".join(f"{precision} {_format.rate(rate)} GFLOP/s ({by.get(precision, '?')})"
                             for precision, rate in rates if rate)
            identity = details.get("identity") or {}
            published = details.get("published_tflops")
            text = f" Peak on {device} ({identity.get('model', '?')}): {best or 'not measured'}"
            if published:
                text += (f"; published {details.get('published_product')}: "
                         + ", ".join(f"{p} {v:g} TFLOP/s" for p, v in published.items()))
            lines.append(text + ".")
    return "".join(lines)


def _settings_section(entries: Sequence[LabelledResult], with_run: bool) -> str:
    """The settings each framework ran with, as its workers recorded them, one row per distinct set."""
    groups: dict[str, list[str]] = {}
    for entry in entries:
        settings = entry.result.settings
        if not settings:
            continue
        config = entry.result.config
        name = " ".join(part for part in ([entry.run] if with_run else []) + [
            config.framework, config.device, config.precision, _format.variant(config.compile, config.channels_last)]
            if part)
        text = ", ".join(f"{key} {_format.setting(value)}" for key, value in settings.items())
        groups.setdefault(text, [])
        if name not in groups[text]:
            groups[text].append(name)
    if not groups:
        return ""
    rows = [["; ".join(names), text] for text, names in groups.items()]
    return ("## Settings\n\nWhat each worker recorded as in effect for its configurations.\n\n"
            + _table(["configurations", "settings"], rows))


def _not_measured_section(entries: Sequence[LabelledResult], with_run: bool) -> str:
    if not entries:
        return ""
    headers = (["run"] if with_run else []) + ["configuration", "status", "samples kept", "reason"]
    rows = [([entry.run] if with_run else []) + [entry.result.config.label(), entry.result.status,
                                                  str(len(entry.result.samples_ms)) if entry.result.samples_ms else "",
                                                  entry.result.reason or "no reason recorded"]
            for entry in entries]
    return ("## Skipped, failed and interrupted configurations\n\nSamples a failed or interrupted configuration "
            "took before it ended are kept in the results file (`partial`), not summarised here.\n\n"
            + _table(headers, rows))


def _table(headers: Sequence[str], rows: Sequence[Sequence[str]], text_columns: Collection[str] = _TEXT_COLUMNS) -> str:
    """A GitHub table with the columns not in ``text_columns`` (the figures) right-aligned, so digits line up.

    tabulate's "pipe" format is GitHub's table syntax with the alignment colons that its "github" format drops.
    """
    alignment = ["left" if header in text_columns else "right" for header in headers]
    # Cells are formatted already; number parsing would strip trailing zeros and separators.
    return tabulate([[_cell(value) for value in row] for row in rows], headers=[_cell(h) for h in headers],
                    tablefmt="pipe", disable_numparse=True, colalign=alignment)


def _cell(text: str) -> str:
    """A pipe would end the cell and a newline the row, in GitHub's table syntax."""
    return str(text).replace("|", "\\|").replace("\r", " ").replace("\n", " ")
