"""Command line: ``python cli.py list | verify | bench | show | report | export | compare | peak``.

A thin layer over ``zoo``, ``bench`` and ``reports``: it parses, validates and prints. Every error is one line
on stderr and an exit code (2 for bad usage, 1 for a failure); ``--debug`` shows the traceback instead.
"""

from __future__ import annotations

import json
import os
import sys
import traceback
from typing import Annotated

import click
import typer

try:  # typer >= 0.29 carries its own copy of click
    from typer._click.exceptions import UsageError as _TyperUsageError
except ImportError:
    _TyperUsageError = click.exceptions.UsageError
from rich.console import Console
from rich.table import Table

import zoo

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    help="Classic CNNs in PyTorch and TensorFlow, proven equivalent and timed honestly.",
)
console = Console()
errors = Console(stderr=True)
_state = {"debug": False}


class CliError(Exception):
    """An error to show as one line; ``exit_code`` 2 for bad usage, 1 for a failure."""

    def __init__(self, message: str, exit_code: int = 1) -> None:
        super().__init__(message)
        self.exit_code = exit_code


@app.callback()
def _options(
    debug: Annotated[bool, typer.Option("--debug", help="Show tracebacks instead of one-line errors.")] = False,
) -> None:
    _state["debug"] = debug


def _print_json(document: object) -> None:
    sys.stdout.write(json.dumps(document, indent=1) + "\n")


def _models(names: list[str] | None) -> list[str]:
    try:
        return zoo.resolve_models(names or ["all"])
    except zoo.UnknownNameError as error:
        raise CliError(str(error), exit_code=2) from None


@app.command("list")
def list_command(
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON document instead of a table.")] = False,
) -> None:
    """Show the zoo: name, title, input, parameters, MACs and which frameworks are installed."""
    import importlib.util

    installed = [fw for fw in zoo.FRAMEWORKS if importlib.util.find_spec(zoo.FRAMEWORK_PACKAGES[fw]) is not None]
    rows = []
    for name in zoo.list_models():
        spec = zoo.get_spec(name)
        rows.append(
            {
                "name": name,
                "title": spec.title,
                "input": list(spec.input_shape),
                "classes": spec.num_classes,
                "params": spec.params,
                "macs": spec.macs,
                "frameworks": installed,
                "reference": spec.reference,
            }
        )
    if as_json:
        _print_json({"models": rows})
        return
    table = Table(title="Model zoo", title_justify="left")
    for column, justify in (("name", "left"), ("title", "left"), ("input (CxHxW)", "right"),
                            ("parameters", "right"), ("MACs / image", "right"), ("frameworks", "left")):
        table.add_column(column, justify=justify)
    for row in rows:
        table.add_row(
            row["name"], row["title"], "x".join(map(str, row["input"])), f"{row['params']:,}", f"{row['macs']:,}",
            ", ".join(row["frameworks"]) or "none installed",
        )
    console.print(table)


@app.command()
def verify(
    models: Annotated[list[str] | None, typer.Argument(help="Models to verify (names, wildcards or 'all').")] = None,
    batch_size: Annotated[int, typer.Option(min=1, help="Images in the parity batch.")] = 2,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON document instead of tables.")] = False,
) -> None:
    """Prove each model's torch and TensorFlow definitions are the same network.

    Checks parameter counts and MACs of both builds against the spec, then loads the torch weights into the
    Keras model and compares logits and cross-entropy gradients. Exits 1 if anything differs.
    """
    names = _models(models)
    _require_frameworks(zoo.FRAMEWORKS)
    from zoo.parity import check_parity, framework_counts

    reports = []
    for name in names:
        spec = zoo.get_spec(name)
        counts = framework_counts(name)
        parity = check_parity(name, batch_size=batch_size)
        counts_ok = all(
            c["params"] == spec.expected_params and c["macs"] == spec.expected_macs for c in counts.values()
        )
        reports.append(
            {
                "model": name,
                "expected": {"params": spec.expected_params, "macs": spec.expected_macs},
                "frameworks": counts,
                "counts_ok": counts_ok,
                "parity": parity.to_dict(),
                "passed": counts_ok and parity.passed,
            }
        )
    all_passed = all(report["passed"] for report in reports)
    if as_json:
        _print_json({"passed": all_passed, "models": reports})
    else:
        _print_verify_table(reports)
    if not all_passed:
        raise typer.Exit(1)


def _print_verify_table(reports: list[dict]) -> None:
    table = Table(title="Equivalence of the torch and TensorFlow definitions", title_justify="left")
    for column in ("model", "framework", "parameters", "MACs / image", "counts"):
        table.add_column(column, justify="left" if column in ("model", "framework", "counts") else "right")
    for report in reports:
        for framework, counts in report["frameworks"].items():
            ok = counts["params"] == report["expected"]["params"] and counts["macs"] == report["expected"]["macs"]
            table.add_row(report["model"], framework, f"{counts['params']:,}", f"{counts['macs']:,}",
                          "[green]match spec[/]" if ok else "[red]differ from spec[/]")
    console.print(table)
    first = reports[0]["parity"]
    parity_table = Table(
        title=f"Parity with transferred weights: max |torch - tf| relative to max |torch|; pass when logits <= "
        f"{first['logits_rtol']:.0e} and every gradient <= {first['grads_rtol']:.0e}",
        title_justify="left",
    )
    for column in ("model", "batch", "logits", "gradients (worst)", "result"):
        parity_table.add_column(column, justify="right" if column == "batch" else "left")
    for report in reports:
        p = report["parity"]
        parity_table.add_row(
            report["model"], str(p["batch_size"]), f"{p['logits_rel_diff']:.2e}",
            f"{p['grads_rel_diff']:.2e} ({p['worst_grad']})",
            "[green]pass[/]" if report["passed"] else "[red]FAIL[/]",
        )
    console.print(parity_table)


def _require_frameworks(frameworks) -> None:
    import importlib.util

    for framework in frameworks:
        package = zoo.FRAMEWORK_PACKAGES[framework]
        if importlib.util.find_spec(package) is None:
            raise CliError(f"{framework}: {package} is not installed (pip install -e .)", exit_code=1)


_RUN_HELP = "Run folder or its results.json."


def _read_run(path: str):
    """A run file that cannot be read exits 1, a missing one included: the command was typed correctly and
    its input is what failed, as with an unwritable output."""
    from bench.record import RunFileError, read_run

    try:
        return read_run(path)
    except RunFileError as error:
        raise CliError(str(error), exit_code=1) from None


def _threshold(text: str) -> float:
    """'5%' or '0.05' as the fraction 0.05; a bare number of 1 or more is refused as ambiguous."""
    try:
        value = float(text[:-1]) / 100 if text.endswith("%") else float(text)
    except ValueError:
        value = float("nan")
    if not 0 <= value < 1:
        raise CliError(f"--threshold must be a percentage or a fraction below 1, such as 5% or 0.05. "
                       f"Received: {text!r}", exit_code=2)
    return value


def _os_reason(error: OSError) -> str:
    return f"{error.strerror}: {error.filename}" if error.strerror and error.filename else str(error)


@app.command()
def show(run: Annotated[str, typer.Argument(metavar="RUN", help=_RUN_HELP)]) -> None:
    """Show a run: its environment, a table per model and mode, then what was skipped or failed.

    Exit code: 0; 1 when the run file cannot be read.
    """
    from reports.table import render_run

    render_run(_read_run(run), console)


@app.command()
def export(
    run: Annotated[str, typer.Argument(metavar="RUN", help=_RUN_HELP)],
    export_format: Annotated[str, typer.Option("--format", help="csv, json or parquet.")] = "csv",
    out: Annotated[str | None, typer.Option(help="File to write (needed for parquet); default: stdout.")] = None,
) -> None:
    """Export one row per configuration, with every derived figure and the raw samples.

    Exit code: 0; 1 when the run file cannot be read, the file cannot be written
    or no parquet engine is installed; 2 for an unknown format or parquet
    without --out.
    """
    from reports.frame import EXPORT_FORMATS, ExportError, frame_text, runs_frame, write_frame

    if export_format not in EXPORT_FORMATS:
        raise CliError(f"unknown --format {export_format!r}; choose one of {', '.join(EXPORT_FORMATS)}", exit_code=2)
    if export_format == "parquet" and out is None:
        raise CliError("parquet is binary: give --out FILE", exit_code=2)
    frame = runs_frame([_read_run(run)], with_run_column=False)
    if out is None:
        sys.stdout.write(frame_text(frame, export_format))
        return
    try:
        written = write_frame(frame, out, export_format)
    except ExportError as error:
        raise CliError(str(error), exit_code=1) from None
    except OSError as error:
        raise CliError(f"cannot write {out}: {_os_reason(error)}", exit_code=1) from None
    console.print(f"wrote {written}", markup=False, highlight=False)


@app.command()
def report(
    runs: Annotated[list[str], typer.Argument(metavar="RUN", help="Run folders or results.json files; several "
                                              "share one report.")],
    out: Annotated[str | None, typer.Option(help="Markdown file (default: report.md in the first run's folder); "
                                            "charts are written beside it.")] = None,
) -> None:
    """Write a markdown report with its PNG charts beside it.

    Environment, results per model and mode, batch-size scaling, methodology,
    and the configurations that were skipped or failed.

    Exit code: 0; 1 when a run file cannot be read or the report cannot be
    written.
    """
    from reports.markdown import write_report

    loaded = [_read_run(path) for path in runs]
    out_path = out if out is not None else loaded[0].path.parent / "report.md"
    try:
        written = write_report(loaded, out_path)
    except OSError as error:
        raise CliError(f"cannot write the report to {out_path}: {_os_reason(error)}", exit_code=1) from None
    console.print(f"wrote {written}", markup=False, highlight=False)


@app.command()
def compare(
    base: Annotated[str, typer.Argument(metavar="BASE", help="The run to compare against. " + _RUN_HELP)],
    new: Annotated[str, typer.Argument(metavar="NEW", help="The run under test. " + _RUN_HELP)],
    threshold: Annotated[str, typer.Option(help="Smallest change of a median that counts: 5% or 0.05.")] = "5%",
    fail_on_regression: Annotated[
        bool, typer.Option("--fail-on-regression", help="Exit 1 when a configuration is slower or now fails.")
    ] = False,
) -> None:
    """Compare two runs configuration by configuration.

    A configuration is slower or faster only when a two-sided Mann-Whitney U
    test gives p < 0.01 and its median moved by more than the threshold.

    Exit code: 0; 1 when a run file cannot be read, the runs share no
    configuration, or --fail-on-regression finds a configuration slower or
    now failing; 2 for a bad threshold.
    """
    fraction = _threshold(threshold)
    from reports.compare import ComparisonError, compare_runs
    from reports.table import render_comparison

    base_run, new_run = _read_run(base), _read_run(new)
    try:
        comparison = compare_runs(base_run, new_run, threshold=fraction)
    except ComparisonError as error:
        raise CliError(str(error), exit_code=1) from None
    render_comparison(comparison, console)
    if fail_on_regression and comparison.has_regression:
        raise typer.Exit(1)


def main(argv: list[str] | None = None) -> int:
    """Run the app; turn every error into one line on stderr and an exit code."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    command = typer.main.get_command(app)
    try:
        result = command.main(args=argv, prog_name="cli.py", standalone_mode=False)
        return result if isinstance(result, int) else 0
    except (click.exceptions.Exit, typer.Exit) as exit_:
        return exit_.exit_code
    except (click.exceptions.UsageError, _TyperUsageError) as error:
        errors.print(f"error: {error.format_message()}", markup=False, highlight=False, soft_wrap=True)
        return 2
    except (click.exceptions.Abort, typer.Abort, KeyboardInterrupt):
        errors.print("interrupted", markup=False)
        return 130
    except CliError as error:
        if _state["debug"]:
            traceback.print_exc()
        errors.print(f"error: {error}", markup=False, highlight=False, soft_wrap=True)
        return error.exit_code
    except Exception as error:  # an unexpected failure still gets one line, the traceback with --debug
        if _state["debug"]:
            traceback.print_exc()
        errors.print(f"error: {type(error).__name__}: {error} (run with --debug for the traceback)",
                     markup=False, highlight=False, soft_wrap=True)
        return 1


if __name__ == "__main__":
    sys.exit(main())
