"""What a person reads of an explanation: the steps' ledgers, the layers side by side, the sentence that says which
layers explain the difference between two frameworks, and the markdown section with its stacked bars."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from rich import box
from rich.console import Console
from rich.table import Table
from rich.text import Text
from tabulate import tabulate

from bench.ledger import ALONE, FORWARD, IN_MODEL, Explanation
from reports import _format

# A stacked bar names this many of its largest layers; the rest share one grey segment.
NAMED_SEGMENTS = 8
# The terminal lists this many layers, the largest by their time in the slowest framework; report.md lists all.
TERMINAL_LAYERS = 12


def title(entry: Explanation) -> str:
    return f"{entry.model} — {entry.mode} — {entry.device} b{entry.batch_size} {entry.precision}"


def frameworks(entry: Explanation) -> list[str]:
    return [step.framework for step in entry.steps]


def contributors_sentence(entry: Explanation, view: str = IN_MODEL, count: int = 3) -> str | None:
    """How much of the difference between the slowest and the fastest framework's steps the largest few layers
    explain: the sentence a person wants first. None with fewer than two frameworks measured."""
    measured = [step for step in entry.steps if (step.profiled_step_ms if view == IN_MODEL
                                                 else step.alone_layers_ms) is not None]
    if len(measured) < 2:
        return None
    key = (lambda step: step.profiled_step_ms) if view == IN_MODEL else (lambda step: step.alone_layers_ms)
    slower, faster = max(measured, key=key), min(measured, key=key)
    difference, parts = entry.contributors(slower.framework, faster.framework, view)
    if difference <= 0:
        return f"{slower.framework} and {faster.framework} take the same time ({view})."
    largest, rest = parts[:count], sum(ms for _, ms in parts[count:])
    named = [f"{layer} {_signed(ms)} ({ms / difference:.0%})" for layer, ms in largest]
    what = "profiled step takes" if view == IN_MODEL else "layers timed alone take"
    return (f"{slower.framework}'s {what} {_format.milliseconds(difference)} ms longer than {faster.framework}'s "
            f"({difference / key(faster):.0%} more); the largest parts of that difference: {', '.join(named)}; "
            f"every other {'part' if view == IN_MODEL else 'layer'} {_signed(rest)} ({rest / difference:.0%}).")


def _signed(ms: float) -> str:
    return f"{'+' if ms >= 0 else '-'}{_format.milliseconds(abs(ms))} ms"


def _step_rows(entry: Explanation) -> list[list[str]]:
    rows = []
    for step in entry.steps:
        overhead = step.profiler_overhead
        busy = "" if step.device_busy is None else f"{step.device_busy:.0%}" + (" host-bound" if step.host_bound
                                                                                 else "")
        rows.append([
            step.framework, _format.milliseconds(step.step_ms),
            _format.milliseconds(step.profiled_step_ms) if step.profiled_step_ms is not None else "",
            f"{overhead:+.0%}" if overhead is not None else "",
            _format.milliseconds(step.in_model_layers_ms) if step.in_model_layers_ms is not None else "",
            _format.milliseconds(step.unattributed_ms) if step.unattributed_ms is not None else "",
            _format.milliseconds(step.alone_layers_ms) if step.alone_layers_ms is not None else "",
            f"{step.alone_layers_ms / step.step_ms:.2f}x" if step.alone_layers_ms is not None else "", busy,
            f"{step.launches_per_step:.0f}" if step.launches_per_step is not None else ""])
    return rows


STEP_HEADERS = ["framework", "step ms", "profiled ms", "profiler overhead", "layers in model ms", "unattributed ms",
                "layers alone ms", "alone / step", "device busy", "launches / step"]


def _layer_rows(entry: Explanation, limit: int | None = None, with_notes: bool = True
                ) -> tuple[list[str], list[list[str]]]:
    """A row per layer: its kind, each framework's time in model (all passes) and alone, and the ratio of the first
    two frameworks in model; ordered by the slowest framework's time, the largest first, when ``limit`` cuts."""
    names = frameworks(entry)
    in_model = {framework: entry.layer_totals(framework, IN_MODEL) for framework in names}
    alone = {framework: entry.layer_totals(framework, ALONE) for framework in names}
    kinds = {row.layer: row.kind for row in entry.layers}
    notes: dict[str, list[str]] = {}
    ran: dict[str, list[str]] = {}
    for row in entry.layers:
        if row.kernels and row.view == IN_MODEL and row.pass_ == FORWARD:
            ran.setdefault(row.layer, []).append(f"{row.framework}: {', '.join(row.kernels)}")
        if row.note and row.view == IN_MODEL:
            notes.setdefault(row.layer, [])
            text = f"{row.framework}: {row.note}"
            if text not in notes[row.layer]:
                notes[row.layer].append(text)
    layers = list(kinds)
    if limit is not None and names:
        slowest = max(names, key=lambda framework: sum(in_model[framework].values()) or sum(alone[framework].values()))
        layers = sorted(layers, key=lambda layer: -(in_model[slowest].get(layer) or alone[slowest].get(layer) or 0))
        layers = layers[:limit]
    headers = ["layer", "kind", *(f"{framework} in model ms" for framework in names),
               *(f"{framework} alone ms" for framework in names)]
    if len(names) >= 2:
        headers.append(f"{names[0]} / {names[1]}")
    if with_notes:
        headers += ["note", "ops or kernels run (in model)"]
    rows = []
    for layer in layers:
        cells = [layer, kinds[layer]]
        cells += [_ms(in_model[framework].get(layer)) for framework in names]
        cells += [_ms(alone[framework].get(layer)) for framework in names]
        if len(names) >= 2:
            first, second = in_model[names[0]].get(layer), in_model[names[1]].get(layer)
            cells.append(f"{first / second:.2f}x" if first and second else "")
        if with_notes:
            cells += ["; ".join(notes.get(layer, [])), "; ".join(ran.get(layer, []))]
        rows.append(cells)
    return headers, rows


def _ms(value: float | None) -> str:
    return _format.milliseconds(value) if value else ""


def render_explanations(explanations: Sequence[Explanation], console: Console) -> None:
    """Per explanation: the steps' ledgers, the largest layers side by side, and the sentence."""
    for entry in explanations:
        steps = Table(title=title(entry), title_justify="left", box=box.SIMPLE_HEAD, pad_edge=False)
        for header in STEP_HEADERS:
            steps.add_column(header.replace(" ", "\n", 1), justify="left" if header == "framework" else "right")
        for row in _step_rows(entry):
            steps.add_row(*row)
        console.print(steps)
        headers, rows = _layer_rows(entry, TERMINAL_LAYERS, with_notes=False)
        layers = Table(title=f"the {len(rows)} largest layers (all of them in report.md and explain.json)",
                       title_justify="left", box=box.SIMPLE_HEAD, pad_edge=False)
        for header in headers:
            layers.add_column(header, justify="left" if header in ("layer", "kind", "note") else "right",
                              overflow="fold")
        for row in rows:
            layers.add_row(*row)
        console.print(layers)
        shown = {row[0] for row in rows}
        notes = dict.fromkeys(f"{row.layer} ({row.framework}): {row.note}" for row in entry.layers
                              if row.note and row.view == IN_MODEL and row.layer in shown)
        if notes:
            console.print(Text("\n".join(notes), style="dim"))
        for view in (IN_MODEL, ALONE):
            if sentence := contributors_sentence(entry, view):
                console.print(Text(f"{view}: {sentence}", style="bold" if view == IN_MODEL else ""))
        for framework, reason in entry.reasons.items():
            console.print(Text(f"{framework}: not explained: {reason}", style="yellow"))


def markdown_section(explanations: Sequence[Explanation], folder: Path, prefix: str, level: int = 2) -> str:
    """The "Where the time goes" section, its heading at ``level`` (2 in the report, 1 as a document of its own),
    its stacked-bar charts written into ``folder``."""
    parts = [f"{'#' * level} Where the time goes",
             "Each framework's step layer by layer, layers named by the model's spec (the same names in every "
             "framework). *In model*: the framework's own profiler over single steps after burn-in, each layer's "
             "median; *unattributed* is the profiled step less its layers (loss, optimizer, layout conversions, "
             "framework overhead, and layers the profiler cannot attribute, as the notes say), so layers and "
             "unattributed add up to the profiled step. *Alone*: each layer timed by itself at its in-model input "
             "shape; their sum against the step is what running them together saves or costs."]
    for entry in explanations:
        parts.append(f"{'#' * (level + 1)} {title(entry)}")
        parts.append(tabulate(_step_rows(entry), headers=STEP_HEADERS, tablefmt="github", disable_numparse=True))
        for view in (IN_MODEL, ALONE):
            if sentence := contributors_sentence(entry, view):
                parts.append(f"*{view}*: {sentence}")
        chart = plot_ledger(entry, folder / f"{prefix}-{_file_safe(entry)}-ledger.png")
        if chart is not None:
            parts.append(f"![{title(entry)}: where each framework's step goes]({chart.name})")
        headers, rows = _layer_rows(entry)
        parts.append(tabulate(rows, headers=headers, tablefmt="github", disable_numparse=True))
        for framework, reason in entry.reasons.items():
            parts.append(f"{framework}: not explained: {reason}")
    return "\n\n".join(parts)


def _file_safe(entry: Explanation) -> str:
    from reports.plots import file_safe

    return file_safe(f"{entry.model}-{entry.mode}-{entry.device}-b{entry.batch_size}-{entry.precision}")


def plot_ledger(entry: Explanation, path: Path) -> Path | None:
    """A stacked bar per framework of the profiled step: a segment per layer (the largest named, the rest grey),
    and the unattributed remainder hatched. None when no framework was profiled."""
    from matplotlib.figure import Figure

    from reports.plots import save_png

    steps = [step for step in entry.steps if step.profiled_step_ms is not None]
    if not steps:
        return None
    totals = {step.framework: entry.layer_totals(step.framework) for step in steps}
    overall: dict[str, float] = {}
    for layer_totals in totals.values():
        for layer, ms in layer_totals.items():
            overall[layer] = overall.get(layer, 0.0) + ms
    named = sorted(overall, key=lambda layer: -overall[layer])[:NAMED_SEGMENTS]
    colours = {layer: f"C{index % 10}" for index, layer in enumerate(named)}
    figure = Figure(figsize=(10, 1.8 + 0.7 * len(steps)), layout="constrained")
    axes = figure.subplots()
    for position, step in enumerate(steps):
        left = 0.0
        segments = [(layer, totals[step.framework].get(layer, 0.0), colours[layer], None) for layer in named]
        others = sum(ms for layer, ms in totals[step.framework].items() if layer not in colours)
        segments += [("other layers", others, "lightgrey", None),
                     ("unattributed", max(step.unattributed_ms or 0.0, 0.0), "white", "//")]
        for label, width, colour, hatch in segments:
            axes.barh(position, width, left=left, color=colour, hatch=hatch, edgecolor="black", linewidth=0.3,
                      label=label if position == 0 else None)
            left += width
    axes.set_yticks(range(len(steps)), [step.framework for step in steps])
    axes.set_xlabel("profiled step (ms), layer by layer")
    axes.set_title(title(entry), fontsize="medium")
    axes.legend(fontsize="small", loc="center left", bbox_to_anchor=(1.01, 0.5))
    return save_png(figure, path)
