"""Command line: ``python cli.py list | verify | bench | peak | show | report | export | compare | interleave |
history``.

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


def _name_patterns(names: list[str] | None) -> list[str]:
    """Names or wildcards given as separate words or comma lists (``lenet,alexnet``)."""
    return [part.strip() for name in names or () for part in name.split(",") if part.strip()]


def _models(names: list[str] | None) -> list[str]:
    """Names, wildcards or 'all', given as separate words or comma lists (``lenet,alexnet``)."""
    patterns = _name_patterns(names or ["all"])
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


def _whole_numbers(value: str, what: str, refusal: str) -> list[int]:
    """A comma list of whole numbers >= 1; the first that is not is refused with ``refusal`` (exit 2)."""
    numbers = []
    for item in _split(value, what):
        if not item.lstrip("-").isdigit() or int(item) < 1:
            raise CliError(f"{refusal}, received {item!r}", exit_code=2)
        numbers.append(int(item))
    return numbers


def _batch_sizes(value: str) -> list[int]:
    return _whole_numbers(value, "batch-size", "batch size must be a whole number >= 1")


def _replica_counts(value: str | None) -> list[int | None]:
    if value is None:
        return [None]
    return _whole_numbers(value, "replicas", "--replicas takes whole numbers >= 1 (comma list)")


def _cluster(hosts: str | None, node_rank: int, replicas: list[int | None], devices: list[str]):
    """The machines of a data-parallel run, checked against the replica counts and devices."""
    from bench.data_parallel import Cluster, ClusterError, check_replicas

    try:
        cluster = Cluster.parse(hosts, node_rank)
        if cluster.hosts and replicas == [None]:
            raise ClusterError("--hosts runs data-parallel configurations: give --replicas (per machine) too")
        for count in replicas:
            for device in devices:
                if count is not None:
                    check_replicas(count, device)
    except ClusterError as error:
        raise CliError(str(error), exit_code=2) from None
    return cluster


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
ReplicasOption = Annotated[str | None, typer.Option(
    help="Data parallel: comma list of replica counts per machine (torch DDP, tf MultiWorkerMirroredStrategy), "
         "each replica on --batch-size images; on a CPU each gets cores / N threads.", show_default=False)]
HostsOption = Annotated[str | None, typer.Option(
    help="Data parallel over machines: HOST:PORT of every machine, the first the rendezvous; run the same "
         "command on each with its --node-rank.", show_default=False)]
NodeRankOption = Annotated[int, typer.Option(help="This machine's index in --hosts; node 0 writes the run file.")]
ThresholdOption = Annotated[str, typer.Option(help="Smallest change of a median that counts: 5% or 0.05.")]
FailOnRegressionOption = Annotated[bool, typer.Option(
    "--fail-on-regression", help="Exit 1 when a configuration is slower or now fails.")]
HistoryLocationOption = Annotated[Path | None, typer.Option(
    "--history", help="The run history database [default: $CONVBENCH_HISTORY, else "
    "~/.local/share/convbench/history.duckdb].", show_default=False)]


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
             repeats: int, replicas: list[int | None] = (None,), nodes: int = 1):
    """Every configuration the options name (their cross product), each option checked first."""
    from bench.config import PRECISIONS
    from bench.modes import MODES
    from bench.runner import expand

    chosen_frameworks = _frameworks(frameworks)
    configs = expand(
        _models(models), chosen_frameworks, _devices(device), _choices(modes, "mode", list(MODES)),
        _batch_sizes(batch_size), _choices(precision, "precision", PRECISIONS), compile=compile_,
        channels_last=channels_last, threads=threads, warmup=warmup, iters=iters, max_time_s=max_time or None,
        repeats=repeats, replicas=replicas, nodes=nodes,
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
    replicas: ReplicasOption = None,
    hosts: HostsOption = None,
    node_rank: NodeRankOption = 0,
    out: Annotated[Path | None, typer.Option(help="Run folder (default: runs/<UTC timestamp>).")] = None,
    force: Annotated[bool, typer.Option("--force", help="Replace the results already in --out.")] = False,
    resume: Annotated[Path | None, typer.Option(help="Continue the run in this folder: configurations already ok "
                                                "there are kept, the others run. Without MODEL, the run's own "
                                                "planned configurations.", show_default=False)] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the run file on stdout and nothing else.")] = False,
    history: HistoryLocationOption = None,
    no_history: Annotated[bool, typer.Option("--no-history", help="Do not add the run to the run history.")] = False,
) -> None:
    """Time models across frameworks, devices, modes, batch sizes and precisions, each configuration in its own
    worker process. Writes OUT/results.json after every worker process and OUT/report.md at the end, and adds the
    run to the run history (`history show`, `history check`) when it ends, also when it is stopped.

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
        replica_counts = _replica_counts(replicas)
        cluster = _cluster(hosts, node_rank, replica_counts, _devices(device))
        configs = _configs(models, frameworks, device, modes, batch_size, precision, compile_, channels_last,
                           threads, warmup, iters, max_time, repeats, replica_counts, cluster.nodes)
    else:
        configs = previous.planned or [result.config for result in previous.results]
        _require_frameworks(list(dict.fromkeys(config.framework for config in configs)))
        cluster = _cluster(hosts, node_rank, [config.replicas for config in configs], [])
        machines = {config.nodes for config in configs if config.replicas is not None}
        if machines and machines != {cluster.nodes}:
            raise CliError(f"the run to resume spans {max(machines)} machine(s); give the same --hosts and --node-rank "
                           "as when it started", exit_code=2)
    if not cluster.writes_run_file:
        _take_part(configs, cluster, timeout, threads)
        return

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
                              measure_peaks=peak, resume=previous, cluster=cluster)
    except KeyboardInterrupt as stop:
        if not no_history:
            _add_run_to_history(results_file, history)
        raise _stopped(stop, results_file, f" (--resume {folder} continues the run)") from None
    if not no_history:
        _add_run_to_history(results_file, history)

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


def _take_part(configs, cluster, timeout: float, threads: int | None) -> None:
    """A machine other than node 0 of a data-parallel run: its ranks take part, node 0 writes the run file."""
    from bench.runner import interrupt_on_sigterm, run_configs
    from reports.live import LiveProgress

    host, port = cluster.hosts[0]
    errors.print(f"node {cluster.node_rank} of {cluster.nodes}: taking part; the run file is written on node 0 "
                 f"({host})", markup=False, highlight=False)
    try:
        with interrupt_on_sigterm(), LiveProgress(configs, errors) as progress:
            run = run_configs(configs, None, timeout_s=timeout, observer=progress, threads=threads,
                              measure_peaks=False, cluster=cluster)
    except KeyboardInterrupt as stop:
        raise CliError(f"stopped by {getattr(stop, 'signal_name', 'SIGINT')}",
                       exit_code=128 + getattr(stop, "signal_number", 2)) from None
    for result in run.results:
        console.print(f"{result.config.label()}: {result.status}" + (f" ({result.reason})" if result.reason else ""),
                      markup=False, highlight=False, soft_wrap=True)
    if any(result.status == "failed" for result in run.results):
        raise typer.Exit(1)


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
    with_history: Annotated[bool, typer.Option(
        "--history", help="Add a History section: the trend charts and check verdicts of the runs' configurations "
                          "from the run history ($CONVBENCH_HISTORY, else ~/.local/share/convbench/history.duckdb)."
                          )] = False,
) -> None:
    """Write a markdown report with its PNG charts beside it.

    Environment, results per model and mode, batch-size scaling, methodology,
    and the configurations that were skipped or failed.

    Exit code: 0; 1 when a run file cannot be read, the report cannot be
    written, or (--history) the history database is locked or unreadable.
    """
    from reports.markdown import write_report

    loaded = [_read_run(path) for path in runs]
    out_path = out if out is not None else loaded[0].path.parent / "report.md"
    try:
        written = write_report(loaded, out_path)
    except OSError as error:
        raise CliError(f"cannot write the report to {out_path}: {_os_reason(error)}", exit_code=1) from None
    if with_history:
        from reports.history import HistoryError
        from reports.history_views import append_history_section

        try:
            append_history_section(written, loaded, _open_history(None))
        except HistoryError as error:
            raise CliError(f"{error} (the report is written without its History section)", exit_code=1) from None
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


history_app = typer.Typer(
    no_args_is_help=True,
    rich_markup_mode="markdown",
    help="The run history: every bench run in an embedded database beside the run files (which stay the source of "
         "truth), its trends per configuration and machine, and a check for slowdowns.",
)
app.add_typer(history_app, name="history")


def _open_history(location: Path | None):
    """The history at ``location`` (default: $CONVBENCH_HISTORY, else the user's data folder); a wait for another
    process's lock is said once on stderr."""
    from reports.history import History

    return History(location, on_wait=lambda line: errors.print(line, markup=False, highlight=False, soft_wrap=True))


def _add_run_to_history(results_file: Path, location: Path | None) -> None:
    """Add a finished (or stopped) run to the history. The run is safe in its file whatever happens here, so any
    failure is one warning line and never changes bench's exit code."""
    if not results_file.exists():
        return
    try:
        history = _open_history(location)
        outcome = history.add_paths([results_file.parent])
    except Exception as error:  # a broken history must not cost a run its exit code
        errors.print(f"warning: the run was not added to the run history: {str(error).removeprefix('history: ')}",
                     markup=False, highlight=False, soft_wrap=True)
        return
    if outcome.skipped:
        errors.print(f"warning: the run was not added to the run history: {outcome.skipped[0][1]}", markup=False,
                     highlight=False, soft_wrap=True)


def _print_history_outcome(outcome, history) -> None:
    """What import or rebuild did: one line of counts on stdout, one line per input that could not be used."""
    runs, results = history.counts()
    console.print(f"history {history.location}: {outcome.added} run(s) added, {outcome.updated} updated, "
                  f"{outcome.unchanged} already there; it holds {runs} runs, {results} results", markup=False,
                  highlight=False, soft_wrap=True)
    for path, reason in outcome.skipped:
        errors.print(f"skipped {path}: {reason}", markup=False, highlight=False, soft_wrap=True)
    for path in outcome.missing:
        errors.print(f"no such file or folder: {path}", markup=False, highlight=False, soft_wrap=True)
    for path in outcome.empty:
        errors.print(f"no run file (results.json) in {path}", markup=False, highlight=False, soft_wrap=True)
    if outcome.moved_aside is not None:
        errors.print(f"the unreadable database file was moved to {outcome.moved_aside}", markup=False,
                     highlight=False, soft_wrap=True)


def _history_error(error: Exception) -> CliError:
    return CliError(str(error), exit_code=1)


@history_app.command("import")
def history_import(
    paths: Annotated[list[Path], typer.Argument(metavar="PATH", help="Run files, run folders, or folders searched "
                                                "for run files (results.json).", show_default=False)],
    history: HistoryLocationOption = None,
) -> None:
    """Add runs to the history. A run already there is added once; a run completed since (bench --resume) has
    its results replaced. The paths are remembered beside the database for `history rebuild`; run files are
    only read.

    Exit code: 0; 1 when a path does not exist or a run file cannot be read (the others are added), or the
    database is locked, corrupt or not a history.
    """
    from reports.history import HistoryError

    store = _open_history(history)
    try:
        outcome = store.add_paths(paths)
        _print_history_outcome(outcome, store)
    except HistoryError as error:
        raise _history_error(error) from None
    if outcome.missing or outcome.skipped:
        raise typer.Exit(1)


@history_app.command("rebuild")
def history_rebuild(
    paths: Annotated[list[Path] | None, typer.Argument(
        metavar="PATH", help="Run files or folders [default: every path added before, from the list beside "
        "the database].", show_default=False)] = None,
    history: HistoryLocationOption = None,
) -> None:
    """Recreate the history from the run files, as after a deleted or corrupt database. A file at the history's
    path that is not a readable history is moved aside (`<name>.unreadable-<time>`), never deleted. A recorded
    folder that no longer exists is named and left out.

    Exit code: 0; 1 when a run file cannot be read (the others are added), a PATH given does not exist, no
    paths are recorded, or the database is locked.
    """
    from reports.history import HistoryError

    store = _open_history(history)
    try:
        outcome = store.rebuild(paths or None)
        _print_history_outcome(outcome, store)
    except HistoryError as error:
        raise _history_error(error) from None
    if outcome.skipped or (paths and outcome.missing):
        raise typer.Exit(1)


HistoryModelsArgument = Annotated[list[str] | None, typer.Argument(
    metavar="MODEL", help="Models: names, comma lists or shell wildcards [default: all].", show_default=False)]
HistoryFrameworkOption = Annotated[str | None, typer.Option(
    "--framework", help="Comma list of torch, tf (pytorch, tensorflow).", show_default=False)]
HistoryModeOption = Annotated[str | None, typer.Option("--mode", help="Comma list of modes.", show_default=False)]
HistoryDeviceOption = Annotated[str | None, typer.Option("--device", help="Comma list of cpu, cuda, cuda:N.",
                                                         show_default=False)]
HistoryMachineOption = Annotated[str | None, typer.Option(
    "--machine", help="Part of a machine's name (as `history show` prints it) or the start of its key.",
    show_default=False)]
HistorySinceOption = Annotated[str | None, typer.Option(
    "--since", help="Only runs started on or after this UTC date or time (2026-03-01, 2026-03-01T12:00).",
    show_default=False)]


def _history_filters(models: list[str] | None, framework: str | None, mode: str | None, device: str | None,
                     machine: str | None, since: str | None):
    """The filters the options name, each checked first (bad input is exit 2)."""
    from bench.modes import MODES
    from reports.history import Filters, naive_utc

    since_time = naive_utc(since) if since is not None else None
    if since is not None and since_time is None:
        raise CliError(f"--since takes a date or time such as 2026-03-01 or 2026-03-01T12:00. Received: "
                       f"{since!r}", exit_code=2)
    return Filters(
        models=tuple(_name_patterns(models)),
        frameworks=tuple(_frameworks(framework)) if framework is not None else (),
        modes=tuple(_choices(mode, "mode", list(MODES))) if mode is not None else (),
        devices=tuple(_devices(device)) if device is not None else (),
        machine=machine,
        since=since_time,
    )


def _no_history_line(history) -> str:
    return (f"history: nothing recorded in {history.location} yet; bench adds every run it makes, and "
            "`python cli.py history import RUN_FOLDER...` adds earlier ones")


@history_app.command("show")
def history_show(
    models: HistoryModelsArgument = None,
    framework: HistoryFrameworkOption = None,
    mode: HistoryModeOption = None,
    device: HistoryDeviceOption = None,
    machine: HistoryMachineOption = None,
    since: HistorySinceOption = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON document instead of tables.")] = False,
    plot: Annotated[Path | None, typer.Option(help="Also draw the median with its CI over time, one line per "
                                              "configuration, into this PNG file.", show_default=False)] = None,
    history: HistoryLocationOption = None,
) -> None:
    """Per configuration and machine: the number of runs, the latest one's date, and the latest, best and worst
    median (ms per batch, lower is better; images/s, higher is better; --json adds the first run's date and the
    best images/s). Figures of different machines are never mixed: each machine has its own table.

    Exit code: 0; 1 when the database is locked, corrupt or not a history, or the plot cannot be written;
    2 for bad input.
    """
    filters = _history_filters(models, framework, mode, device, machine, since)
    if plot is not None and plot.suffix.lower() != ".png":
        raise CliError(f"--plot writes a PNG image: give a file name ending in .png. Received: {str(plot)!r}",
                       exit_code=2)
    from reports.history import HistoryError
    from reports.history_views import plot_series, render_trends

    store = _open_history(history)
    try:
        trends = store.trends(filters)
        series = store.series(filters) if plot is not None else []
    except HistoryError as error:
        raise _history_error(error) from None
    if as_json:
        _print_json({"history": str(store.location), "trends": [trend.to_dict() for trend in trends]})
    elif not store.exists:
        console.print(_no_history_line(store), markup=False, highlight=False, soft_wrap=True)
    else:
        render_trends(trends, console, store.location)
    if plot is not None and not series:
        errors.print(f"no chart written to {plot}: no measured configuration matches", markup=False,
                     highlight=False, soft_wrap=True)
    elif plot is not None:
        try:
            written = plot_series(series, plot, "median step time over the run history")
        except OSError as error:
            raise CliError(f"cannot write the plot to {plot}: {_os_reason(error)}", exit_code=1) from None
        (errors if as_json else console).print(f"wrote {written}", markup=False, highlight=False, soft_wrap=True)


@history_app.command("check")
def history_check(
    models: HistoryModelsArgument = None,
    framework: HistoryFrameworkOption = None,
    mode: HistoryModeOption = None,
    device: HistoryDeviceOption = None,
    machine: HistoryMachineOption = None,
    since: HistorySinceOption = None,
    metric: Annotated[str, typer.Option(help="time (median ms per batch, lower is better) or throughput "
                                        "(images/s, higher is better); the verdicts agree, the figures differ.")
                      ] = "time",
    threshold: ThresholdOption = "5%",
    fail_on_regression: Annotated[bool, typer.Option(
        "--fail-on-regression", help="Exit 1 when a configuration is slower than its history.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON document instead of tables.")] = False,
    history: HistoryLocationOption = None,
) -> None:
    """For each configuration and machine, whether its latest runs are slower than its history.

    Method: each run counts by its median. For each segment of the latest 2 to 5 runs (the latest always
    included), a one-sided Mann-Whitney U test of those runs' medians against the up to 20 runs before them;
    slower when p < 0.0125 (0.05 over the 4 segments tried) and both the segment's median and the latest
    run's are beyond the threshold of the earlier runs' median; faster likewise; "since" names the segment's
    first run. The shortest segment is two runs: one slow run cannot be told from a step. Fewer runs than any
    test can decide on (at least 5 before a segment, 9 in all) say "not enough history".

    Measured on 2,000 synthetic histories of 25 runs whose medians vary by 5% from run to run: 1.9% false
    alarms; a 20% step found in 97.0% two runs after it and 99.4% three runs after. At 10% variation: 2.8%
    false alarms, 67.9% three runs after (README, Run history).

    Exit code: 0; 1 with --fail-on-regression when a configuration is slower, or when the database is
    locked, corrupt or not a history; 2 for bad input.
    """
    fraction = _threshold(threshold)
    filters = _history_filters(models, framework, mode, device, machine, since)
    from reports.history import HistoryError
    from reports.history_trend import METRICS, check_series, points_needed
    from reports.history_views import render_checks

    if metric not in METRICS:
        raise CliError(f"unknown --metric {metric!r}; accepted: {', '.join(METRICS)}", exit_code=2)
    store = _open_history(history)
    try:
        checks = check_series(store.series(filters, last=points_needed()), METRICS[metric], fraction)
    except HistoryError as error:
        raise _history_error(error) from None
    if as_json:
        _print_json({"history": str(store.location), "metric": metric, "threshold": fraction,
                     "checks": [check.to_dict() for check in checks]})
    elif not store.exists:
        console.print(_no_history_line(store), markup=False, highlight=False, soft_wrap=True)
    else:
        render_checks(checks, console, store.location, METRICS[metric], fraction)
    if fail_on_regression and any(check.check.verdict == "slower" for check in checks):
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
