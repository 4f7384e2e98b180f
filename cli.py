"""Command line: ``python cli.py list | verify | bench | peak | show | report | export | compare | interleave``.

A thin layer over ``zoo``, ``bench`` and ``reports``: it parses, validates and prints. Every error is one line
on stderr and an exit code (2 for bad usage, 1 for a failure); ``--debug`` shows the traceback instead.
"""

from __future__ import annotations

import collections
import json
import os
import sys
import traceback
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

import zoo

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode="markdown",  # paragraphs of docstrings and help reflow to the terminal
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
    """Names, wildcards or 'all', given as separate words or comma lists (``lenet,alexnet``)."""
    patterns = [part.strip() for name in names or ["all"] for part in name.split(",") if part.strip()]
    try:
        return zoo.resolve_models(patterns or ["all"])
    except zoo.UnknownNameError as error:
        raise CliError(str(error), exit_code=2) from None


@app.command("list")
def list_command(
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON document instead of a table.")] = False,
) -> None:
    """Show the zoo: name, title, input, parameters, MACs and which frameworks are installed."""
    installed = zoo.installed_frameworks()
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
                "statistics": spec.statistics,
                "macs": spec.macs,
                "frameworks": installed,
                "reference": spec.reference,
            }
        )
    if as_json:
        _print_json({"models": rows})
        return
    from reports.zoo_tables import zoo_table

    console.print(zoo_table(rows))


@app.command()
def verify(
    models: Annotated[list[str] | None, typer.Argument(help="Models to verify (names, wildcards or 'all').")] = None,
    batch_size: Annotated[int | None, typer.Option(
        min=1, help="Images in the parity batch [default: 2 for networks with BatchNorm, 1 for the others].")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON document instead of tables.")] = False,
) -> None:
    """Prove each model's torch and TensorFlow definitions are the same network.

    Checks parameters, BatchNorm statistics and MACs of both builds against the spec, then loads the torch
    weights into the Keras model and compares logits, cross-entropy gradients and (with BatchNorm) the moving
    statistics after a training pass. Exits 1 if anything differs.
    """
    names = _models(models)
    _require_frameworks(zoo.FRAMEWORKS)
    from zoo.parity import verify_model

    reports = [verify_model(name, batch_size=batch_size) for name in names]
    all_passed = all(report["passed"] for report in reports)
    if as_json:
        _print_json({"passed": all_passed, "models": reports})
    else:
        from reports.zoo_tables import verify_tables

        for table in verify_tables(reports):
            console.print(table)
    if not all_passed:
        raise typer.Exit(1)


def _split(value: str, what: str) -> list[str]:
    items = [item.strip() for item in value.split(",") if item.strip()]
    if not items:
        raise CliError(f"--{what} needs at least one value", exit_code=2)
    return items


def _choices(value: str, what: str, accepted: tuple[str, ...] | list[str]) -> list[str]:
    items = _split(value, what)
    for item in items:
        if item not in accepted:
            raise CliError(f"unknown {what} {item!r}; accepted: {', '.join(accepted)}", exit_code=2)
    return items


def _batch_sizes(value: str) -> list[int]:
    sizes = []
    for item in _split(value, "batch-size"):
        if not item.lstrip("-").isdigit() or int(item) < 1:
            raise CliError(f"batch size must be a whole number >= 1, received {item!r}", exit_code=2)
        sizes.append(int(item))
    return sizes


def _devices(value: str) -> list[str]:
    from bench.backend import parse_device

    devices = []
    for item in _split(value, "device"):
        try:
            kind, index = parse_device(item)
        except ValueError as error:
            raise CliError(str(error), exit_code=2) from None
        devices.append("cpu" if kind == "cpu" else f"cuda:{index}" if ":" in item else "cuda")
    return devices


def _frameworks(value: str) -> list[str]:
    frameworks = []
    for item in _split(value, "frameworks"):
        try:
            framework = zoo.resolve_framework(item)
        except zoo.UnknownNameError as error:
            raise CliError(str(error), exit_code=2) from None
        if framework not in frameworks:
            frameworks.append(framework)
    return frameworks


def _writable_folder(path: Path) -> Path:
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe = path / ".write-test"
        probe.write_text("")
        probe.unlink()
    except OSError as error:
        raise CliError(f"cannot write to {path}: {error.strerror or error}", exit_code=1) from None
    return path


# Options shared by the commands that measure (bench, interleave), declared once.
ModelsArgument = Annotated[list[str] | None, typer.Argument(
    help="Models: names, comma lists, shell wildcards (alexnet*) or 'all'.", show_default=False)]
FrameworksOption = Annotated[str, typer.Option(help="Comma list of torch, tf (pytorch, tensorflow).")]
DeviceOption = Annotated[str, typer.Option(help="Comma list of cpu, cuda, cuda:N.")]
ModesOption = Annotated[str, typer.Option(help="Comma list of forward, forward-backward, train.")]
BatchOption = Annotated[str, typer.Option("--batch-size", help="Images per step; comma list for a sweep.")]
WarmupOption = Annotated[int, typer.Option(help="Untimed burn-in iterations (>= 0).")]
ItersOption = Annotated[int, typer.Option(help="Timed iterations (>= 1).")]
MaxTimeOption = Annotated[float, typer.Option(
    "--max-time", help="Seconds of timed loop per configuration; stops early but never below 10 samples. 0: no cap.")]
PrecisionOption = Annotated[str, typer.Option(help="Comma list of fp32, bf16, fp16.")]
CompileOption = Annotated[bool, typer.Option("--compile", help="torch.compile / XLA jit_compile.")]
ChannelsLastOption = Annotated[bool, typer.Option("--channels-last", help="torch channels_last layout.")]
ThreadsOption = Annotated[int | None, typer.Option(help="CPU threads for both frameworks (default: every core).")]
TimeoutOption = Annotated[float, typer.Option(help="Seconds before a configuration's worker is killed.")]
PeakOption = Annotated[bool, typer.Option(help="Measure the device's matmul peak (cached) to report MFU.")]
RepeatsOption = Annotated[int, typer.Option(help="Fresh worker processes per configuration, spread over the run in "
                                            "rounds; statistics then come from the per-process medians.")]
ThresholdOption = Annotated[str, typer.Option(help="Smallest change of a median that counts: 5% or 0.05.")]
FailOnRegressionOption = Annotated[bool, typer.Option(
    "--fail-on-regression", help="Exit 1 when a configuration is slower or now fails.")]


def _check_protocol(warmup: int, iters: int, repeats: int, max_time: float, threads: int | None,
                    timeout: float) -> None:
    for name, value, low in (("--warmup", warmup, 0), ("--iters", iters, 1), ("--repeats", repeats, 1)):
        if value < low:
            raise CliError(f"{name} must be >= {low}, received {value}", exit_code=2)
    if max_time < 0:
        raise CliError(f"--max-time must be >= 0 (0: no cap), received {max_time:g}", exit_code=2)
    if threads is not None and threads < 1:
        raise CliError(f"--threads must be >= 1, received {threads}", exit_code=2)
    if timeout <= 0:
        raise CliError(f"--timeout must be > 0 seconds, received {timeout:g}", exit_code=2)


def _configs(models: list[str], frameworks: str, device: str, modes: str, batch_size: str, precision: str,
             compile_: bool, channels_last: bool, threads: int | None, warmup: int, iters: int, max_time: float,
             repeats: int):
    """Every configuration the options name (their cross product), each option checked first."""
    from bench.modes import MODES
    from bench.record import PRECISIONS
    from bench.runner import expand

    chosen_frameworks = _frameworks(frameworks)
    configs = expand(
        _models(models), chosen_frameworks, _devices(device), _choices(modes, "mode", list(MODES)),
        _batch_sizes(batch_size), _choices(precision, "precision", PRECISIONS), compile=compile_,
        channels_last=channels_last, threads=threads, warmup=warmup, iters=iters, max_time_s=max_time or None,
        repeats=repeats,
    )
    _require_frameworks(chosen_frameworks)
    return configs


def _default_out() -> Path:
    import datetime

    return Path("runs") / datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%d-%H%M%S")


def _stopped(stop: KeyboardInterrupt, results_file: Path, resume_hint: str) -> CliError:
    signal_number = getattr(stop, "signal_number", 2)
    return CliError(f"stopped by {getattr(stop, 'signal_name', 'SIGINT')}; what was measured is saved in "
                    f"{results_file}{resume_hint}", exit_code=128 + signal_number)


@app.command()
def bench(
    models: ModelsArgument = None,
    frameworks: FrameworksOption = "torch,tf",
    device: DeviceOption = "cpu",
    modes: ModesOption = "forward,forward-backward",
    batch_size: BatchOption = "32",
    warmup: WarmupOption = 10,
    iters: ItersOption = 100,
    max_time: MaxTimeOption = 20.0,
    precision: PrecisionOption = "fp32",
    compile_: CompileOption = False,
    channels_last: ChannelsLastOption = False,
    threads: ThreadsOption = None,
    timeout: TimeoutOption = 900.0,
    peak: PeakOption = True,
    repeats: RepeatsOption = 1,
    out: Annotated[Path | None, typer.Option(help="Run folder (default: runs/<UTC timestamp>).")] = None,
    force: Annotated[bool, typer.Option("--force", help="Replace the results already in --out.")] = False,
    resume: Annotated[Path | None, typer.Option(help="Continue the run in this folder: configurations already ok "
                                                "there are kept, the others run. Without MODEL, the run's own "
                                                "planned configurations.", show_default=False)] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the run file on stdout and nothing else.")] = False,
) -> None:
    """Time models across frameworks, devices, modes, batch sizes and precisions, each configuration in its own
    worker process. Writes OUT/results.json after every worker process and OUT/report.md at the end.

    Exit code: 0 when something was measured and nothing failed, 1 when a configuration failed,
    2 when nothing could be measured (every configuration skipped) or for bad input,
    130 / 143 when stopped by Ctrl-C / SIGTERM (what was measured is saved).
    """
    from bench.record import RunFileError, read_run, results_path

    _check_protocol(warmup, iters, repeats, max_time, threads, timeout)
    if resume is not None and out is not None and out.resolve() != resume.resolve():
        raise CliError("--resume continues the run in its own folder; leave out --out", exit_code=2)
    if not models and resume is None:
        raise CliError("give the models to time (names, comma lists, wildcards or 'all'), or --resume RUN_FOLDER",
                       exit_code=2)

    previous = None
    if resume is not None:
        try:
            previous = read_run(resume)
        except RunFileError as error:
            raise CliError(f"cannot resume: {error}", exit_code=2) from None
        out = results_path(resume).parent
    if models:
        configs = _configs(models, frameworks, device, modes, batch_size, precision, compile_, channels_last,
                           threads, warmup, iters, max_time, repeats)
    else:
        configs = previous.planned or [result.config for result in previous.results]
        _require_frameworks(list(dict.fromkeys(config.framework for config in configs)))

    out = out if out is not None else _default_out()
    if previous is None and (out / "results.json").exists() and not force:
        raise CliError(f"{out} already holds a run (results.json); --resume {out} continues it, --force replaces "
                       "it, or choose another --out", exit_code=2)
    folder = _writable_folder(out)
    results_file = folder / "results.json"

    from bench.runner import interrupt_on_sigterm, run_configs
    from reports.live import LiveProgress

    screen = errors if as_json else console
    try:
        with interrupt_on_sigterm(), LiveProgress(configs, screen) as progress:
            run = run_configs(configs, results_file, timeout_s=timeout, observer=progress, threads=threads,
                              measure_peaks=peak, resume=previous)
    except KeyboardInterrupt as stop:
        raise _stopped(stop, results_file, f" (--resume {folder} continues the run)") from None

    from reports.markdown import write_report
    from reports.table import render_run

    try:
        report_path = write_report([run], folder / "report.md")
    except OSError as error:
        raise CliError(f"results saved in {results_file}, but the report could not be written: {error}") from None
    if as_json:
        _print_json(run.to_dict())
    else:
        render_run(run, console)
        console.print(f"results: {results_file}\nreport:  {report_path}", markup=False, highlight=False)
    statuses = [result.status for result in run.results]
    if "failed" in statuses:
        raise typer.Exit(1)
    if "ok" not in statuses:
        reasons = collections.Counter(result.reason for result in run.results)
        for reason, count in reasons.items():
            errors.print(f"skipped {count} configuration(s): {reason}", markup=False, highlight=False, soft_wrap=True)
        raise typer.Exit(2)


@app.command()
def peak(
    device: Annotated[str, typer.Option(help="Comma list of cpu, cuda, cuda:N.")] = "cpu",
    threads: Annotated[int | None, typer.Option(help="CPU threads (default: every core).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON document instead of a table.")] = False,
) -> None:
    """Measure the device's dense matrix-multiply peak per precision with every installed framework over
    several matrix sizes (fp32 with TF32 off); the best is the denominator of MFU. Cached by device model,
    threads and framework versions. On a GPU the published peak of the exact product (H100/H200 SXM, PCIe,
    NVL; A100; L4; L40S; RTX 4090) is shown beside it.

    Exit code: 0; 1 when no peak could be measured; 2 for bad input.
    """
    if threads is not None and threads < 1:
        raise CliError(f"--threads must be >= 1, received {threads}", exit_code=2)
    devices = _devices(device)
    _require_frameworks(zoo.installed_frameworks() or list(zoo.FRAMEWORKS))
    from bench.peak import measure_peaks

    measured = [measure_peaks(name, None, threads) for name in devices]
    if as_json:
        _print_json({"peaks": measured})
    else:
        from reports.table import peak_table

        for entry in measured:
            console.print(peak_table(entry))
    if not any(entry["best_gflops_per_s"] for entry in measured):
        raise CliError("no peak could be measured on " + ", ".join(devices), exit_code=1)


def _require_frameworks(frameworks) -> None:
    installed = zoo.installed_frameworks()
    for framework in frameworks:
        if framework not in installed:
            package = zoo.get_framework(framework).package
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
def show(
    run: Annotated[str, typer.Argument(metavar="RUN", help=_RUN_HELP)],
    env: Annotated[bool, typer.Option("--env", help="Show the full environment instead of its summary.")] = False,
) -> None:
    """Show a run: a table per model and mode, what was not measured in full, and its environment.

    Exit code: 0; 1 when the run file cannot be read.
    """
    from reports.table import render_run

    render_run(_read_run(run), console, with_environment=env)


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
    threshold: ThresholdOption = "5%",
    fail_on_regression: FailOnRegressionOption = False,
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


@app.command()
def interleave(
    models: ModelsArgument = None,
    base: Annotated[str, typer.Option(help="The side to compare against: a git revision, '.' (this working tree) or "
                                      "'python:PATH' (this tree under another interpreter).")] = "HEAD",
    new: Annotated[str, typer.Option(help="The side under test, in the same forms.")] = ".",
    frameworks: FrameworksOption = "torch,tf",
    device: DeviceOption = "cpu",
    modes: ModesOption = "forward",
    batch_size: BatchOption = "32",
    warmup: WarmupOption = 10,
    iters: ItersOption = 30,
    max_time: MaxTimeOption = 20.0,
    precision: PrecisionOption = "fp32",
    compile_: CompileOption = False,
    channels_last: ChannelsLastOption = False,
    threads: ThreadsOption = None,
    timeout: TimeoutOption = 900.0,
    peak: PeakOption = False,
    repeats: Annotated[int, typer.Option(help="Worker processes per configuration and side (7 or more: with fewer, "
                                         "no difference can reach significance with room to spare).")] = 7,
    threshold: ThresholdOption = "5%",
    fail_on_regression: FailOnRegressionOption = False,
    out: Annotated[Path | None, typer.Option(help="Folder for base/ and new/ run folders (default: runs/<UTC "
                                             "timestamp>).")] = None,
) -> None:
    """Measure two versions alternately in one session and compare them: the comparison for decisions that matter.

    Each configuration's worker processes alternate between base and new (ABBA), so the machine's drift falls on
    both alike. A side is a git revision (checked out into a temporary worktree), '.' (this working tree) or
    'python:PATH' (this tree under another interpreter, say a virtual environment with another torch).
    Defaults: base HEAD, new the working tree, which answers "did my uncommitted change make it slower?".

    Exit code: 0; 1 when --fail-on-regression finds a configuration slower or now failing, or a configuration
    failed; 2 for bad input (an unknown revision, a missing interpreter); 130 / 143 when stopped.
    """
    _check_protocol(warmup, iters, repeats, max_time, threads, timeout)
    fraction = _threshold(threshold)
    if not models:
        raise CliError("give the models to time (names, comma lists, wildcards or 'all')", exit_code=2)
    configs = _configs(models, frameworks, device, modes, batch_size, precision, compile_, channels_last, threads,
                       warmup, iters, max_time, repeats)
    folder = _writable_folder(out if out is not None else _default_out())
    for role in ("base", "new"):
        if (folder / role / "results.json").exists():
            raise CliError(f"{folder / role} already holds a run; choose another --out", exit_code=2)

    from bench.interleave import SideError, run_interleaved, side
    from bench.runner import interrupt_on_sigterm
    from reports.compare import ComparisonError, compare_runs
    from reports.live import LiveProgress
    from reports.table import render_comparison

    try:
        with side("base", base) as base_side, side("new", new) as new_side:
            console.print(f"base: {base_side.description}\nnew:  {new_side.description}", markup=False,
                          highlight=False)
            with interrupt_on_sigterm(), LiveProgress(configs + configs, console,
                                                      prefixes=["base"] * len(configs) + ["new"] * len(configs)
                                                      ) as progress:
                base_run, new_run = run_interleaved(configs, base_side, new_side, folder, timeout_s=timeout,
                                                    observer=progress, threads=threads, measure_peaks=peak)
    except SideError as error:
        raise CliError(str(error), exit_code=2) from None
    except KeyboardInterrupt as stop:
        raise _stopped(stop, folder / "{base,new}" / "results.json", "") from None
    try:
        comparison = compare_runs(base_run, new_run, threshold=fraction, separate_sessions=False)
    except ComparisonError as error:
        raise CliError(f"{error} (runs saved in {folder})", exit_code=1) from None
    render_comparison(comparison, console)
    console.print(f"runs: {folder / 'base'}, {folder / 'new'}", markup=False, highlight=False)
    failed = any(result.status == "failed" for run in (base_run, new_run) for result in run.results)
    if failed or (fail_on_regression and comparison.has_regression):
        raise typer.Exit(1)


def main(argv: list[str] | None = None) -> int:
    """Run the app; turn every error into one line on stderr and an exit code."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    command = typer.main.get_command(app)
    try:
        result = command.main(args=argv, prog_name="cli.py", standalone_mode=False)
        return result if isinstance(result, int) else 0
    except typer.Exit as exit_:
        return exit_.exit_code
    except typer.TyperException as error:  # usage errors: unknown option, bad value, missing argument
        errors.print(f"error: {error.format_message()}", markup=False, highlight=False, soft_wrap=True)
        return error.exit_code
    except (typer.Abort, KeyboardInterrupt):
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
