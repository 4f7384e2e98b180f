"""Command line: ``convbench`` (or ``python cli.py``) list | verify | bench | pipeline | explain | peak | gpu-check |
fidelity | show | report | export | compare | interleave | history.

A thin layer over ``zoo``, ``bench`` and ``reports``: it parses, calls, prints and maps each outcome to an exit code.
Every error is one line on stderr; ``--debug`` shows the traceback as well.

Exit codes (``ExitCode``): 0 success; 1 a regression, a failed configuration or a difference found; 2 bad usage;
3 an environment problem (none of the engines asked for installed, a file that cannot be read or written, nothing
measurable on this machine, a history that is locked or unreadable); 128 + N when stopped by signal N (130 Ctrl-C,
143 SIGTERM), with what was measured saved.
"""

from __future__ import annotations

import collections
import enum
import json
import os
import sys
import traceback
from importlib import metadata
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from bench import plan
from bench.errors import EnvironmentProblem, UsageError
from bench.images import DEFAULT_COUNT


class ExitCode(enum.IntEnum):
    OK = 0
    FAILED = 1  # a regression, a failed configuration, a difference between definitions
    USAGE = 2
    ENVIRONMENT = 3


app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode="markdown",  # paragraphs of docstrings and help reflow to the terminal
    help="Classic CNNs in PyTorch and TensorFlow, proven equivalent and timed honestly. Exit codes: 0 success; "
         "1 a regression, a failed configuration or a difference found; 2 bad usage; 3 an environment problem "
         "(no engine asked for installed, file unreadable or unwritable, nothing measurable here); 130 / 143 "
         "stopped by Ctrl-C / SIGTERM.",
)
console = Console()
errors = Console(stderr=True)
_state = {"debug": False}


class CliError(Exception):
    """An error to show as one line, with its exit code."""

    def __init__(self, message: str, exit_code: int = ExitCode.FAILED) -> None:
        super().__init__(message)
        self.exit_code = int(exit_code)


def version() -> str:
    try:
        return metadata.version("convbench")
    except metadata.PackageNotFoundError:  # a checkout that was never installed
        return "unknown (not installed)"


def _show_version(asked: bool) -> None:
    if asked:
        console.print(f"convbench {version()}", markup=False, highlight=False)
        raise typer.Exit(0)


@app.callback()
def _options(
    debug: Annotated[bool, typer.Option("--debug", help="Show tracebacks as well as one-line errors.")] = False,
    _version: Annotated[bool, typer.Option("--version", help="Print the version and exit.", is_eager=True,
                                           callback=_show_version)] = False,
) -> None:
    _state["debug"] = debug


def _print_json(document: object) -> None:
    sys.stdout.write(json.dumps(document, indent=1) + "\n")


def _say(text: str, *, to_errors: bool = False) -> None:
    (errors if to_errors else console).print(text, markup=False, highlight=False, soft_wrap=True)


def _os_reason(error: OSError) -> str:
    return f"{error.strerror}: {error.filename}" if error.strerror and error.filename else str(error)


# Options shared by several commands, declared once; a list option takes a comma list and both spellings.
ModelsArgument = Annotated[list[str] | None, typer.Argument(
    metavar="MODEL", help="Models: names, comma lists, shell wildcards (alexnet*) or 'all'.", show_default=False)]
FrameworksOption = Annotated[str | None, typer.Option("--frameworks", "--framework", help=plan.ENGINES_HELP)]
DeviceOption = Annotated[str | None, typer.Option("--device", "--devices", help="Comma list of cpu, cuda, cuda:N.")]
ModesOption = Annotated[str | None, typer.Option("--modes", "--mode",
                                                 help="Comma list of forward, forward-backward, train; input (the "
                                                      "input pipeline alone, with --data jpeg).")]
BatchOption = Annotated[str, typer.Option("--batch-size", "--batch-sizes",
                                          help="Images per step; comma list for a sweep.")]
WarmupOption = Annotated[int, typer.Option(help="Untimed burn-in iterations (>= 0).")]
ItersOption = Annotated[int, typer.Option(help="Timed iterations (>= 1).")]
MaxTimeOption = Annotated[float, typer.Option(
    "--max-time", help="Seconds of timed loop per configuration; stops early but never below 10 samples. 0: no cap.")]
PrecisionOption = Annotated[str, typer.Option("--precision", "--precisions", help="Comma list of fp32, bf16, fp16.")]
TimingOption = Annotated[str, typer.Option(help="The way of timing: steady (back-to-back steps after burn-in).")]
CompileOption = Annotated[bool, typer.Option("--compile", help="torch.compile / XLA jit_compile.")]
ChannelsLastOption = Annotated[bool, typer.Option("--channels-last", help="torch channels_last layout.")]
ThreadsOption = Annotated[int | None, typer.Option(help="CPU threads for every framework alike (default: the CPUs "
                                                   "this process may run on).")]
TimeoutOption = Annotated[float, typer.Option(help="Seconds before a configuration's processes are ended.")]
PeakOption = Annotated[bool, typer.Option(help="Measure the device's matmul peak (cached) to report MFU.")]
RepeatsOption = Annotated[int, typer.Option(help="Fresh worker processes per configuration, spread over the run in "
                                            "rounds; statistics then come from the per-process medians.")]
ThresholdOption = Annotated[str, typer.Option(help="Smallest change of a median that counts: 5% or 0.05.")]
JsonOption = Annotated[bool, typer.Option("--json", help="Print one JSON document on stdout instead of tables.")]
DataOption = Annotated[str, typer.Option(
    help="Where each step's batch comes from: synthetic (one fixed batch on the device) or jpeg (JPEG files "
         "decoded and augmented by the engine's input pipeline, step by step; the step alone and the pipeline "
         "alone are timed beside it).")]
WorkersOption = Annotated[str | None, typer.Option(
    "--workers", help="Input pipeline workers (DataLoader num_workers, tf.data num_parallel_calls): comma list of "
                      "whole numbers >= 0, and auto for tf.data's AUTOTUNE. Default: the CPUs this process may use.",
    show_default=False)]
ImagesOption = Annotated[Path | None, typer.Option(
    help="A folder of your own JPEGs (searched recursively; DIR/class/*.JPEG gives labels), instead of the image "
         "set made here.", show_default=False)]
FilesOption = Annotated[int, typer.Option(help="JPEG files in the image set made here (made once, cached).")]
ImageScaleOption = Annotated[float, typer.Option(
    help="Sizes of the made images as a fraction of ImageNet-like ones (about 500x375 at 1).")]
LightingOption = Annotated[bool, typer.Option("--lighting", help="Add the 2012 paper's PCA lighting noise.")]
HistoryLocationOption = Annotated[Path | None, typer.Option(
    "--history", help="The run history database [default: $CONVBENCH_HISTORY, else "
    "~/.local/share/convbench/history.duckdb].", show_default=False)]
_RUN_HELP = "Run folder or its results.json."


@app.command("list")
def list_command(as_json: JsonOption = False) -> None:
    """Show the zoo: name, title, input, parameters, MACs and which engines are installed."""
    from reports.zoo_tables import zoo_rows, zoo_table

    rows = zoo_rows()
    if as_json:
        _print_json({"models": rows})
        return

    console.print(zoo_table(rows))


@app.command()
def verify(
    models: ModelsArgument = None,
    batch_size: Annotated[int | None, typer.Option(
        min=1, help="Images in the parity batch [default: 2 for networks with BatchNorm, 1 for the others].")] = None,
    as_json: JsonOption = False,
) -> None:
    """Prove each model's definitions in the installed frameworks are the same network.

    Checks parameters, BatchNorm statistics and MACs of every installed build against the spec, then, for each
    pair of installed frameworks with a weight transfer, loads one's weights into the other and compares logits,
    cross-entropy gradients and (with BatchNorm) the moving statistics after a training pass. Every other installed
    engine is proven against the torch twin in a process of its own: jax like tf (the Keras twin under JAX, in
    float64), the inference runtimes on the exported torch twin's float32 logits.

    Exit code: 0; 1 when anything differs; 2 for bad input; 3 when no framework is installed.
    """
    names = plan.models(models)
    import zoo
    from zoo.parity import verify_model

    installed = zoo.installed_frameworks()
    if not installed:
        raise EnvironmentProblem("verify needs torch or TensorFlow installed (pip install -e .)")
    reports = [verify_model(name, frameworks=installed, batch_size=batch_size) for name in names]
    from bench.proofs import add_engine_proofs

    add_engine_proofs(reports, batch_size)
    all_passed = all(report["passed"] for report in reports)
    if as_json:
        _print_json({"passed": all_passed, "models": reports})
    else:
        from reports.zoo_tables import verify_tables

        for table in verify_tables(reports):
            console.print(table)
    if not all_passed:
        raise typer.Exit(ExitCode.FAILED)


def _measure(configs, results_file: Path | None, screen: Console, on_stop=None, **options):
    """Run ``configs`` with live progress, SIGTERM turned into an interrupt like Ctrl-C; a stopped run ends the
    command with 128 + the signal, after ``on_stop``, saying where its results are."""
    from bench.runner import run_configs
    from bench.supervisor import interrupt_on_sigterm
    from reports.live import LiveProgress

    try:
        with interrupt_on_sigterm(), LiveProgress(configs, screen) as progress:
            return run_configs(configs, results_file, observer=progress, **options)
    except KeyboardInterrupt as stop:
        if on_stop is not None:
            on_stop()
        raise _stopped(stop, f"what was measured is saved in {results_file} (--resume {results_file.parent} "
                             "continues the run)" if results_file is not None else "node 0 holds what was measured"
                       ) from None


def _stopped(stop: KeyboardInterrupt, where: str) -> CliError:
    """The one line and exit code (128 + the signal) of a command stopped by Ctrl-C or SIGTERM."""
    from bench.supervisor import stopped_by

    signal = stopped_by(stop)
    return CliError(f"stopped by {signal.signal_name}; {where}", exit_code=128 + signal.signal_number)


def _write_and_show(run, results_file: Path, as_json: bool) -> None:
    """Write the run's report beside its results, then print the run file (``--json``) or its tables."""
    from reports.markdown import write_report
    from reports.table import render_run

    try:
        report_path = write_report([run], results_file.parent / "report.md")
    except OSError as error:
        raise CliError(f"results saved in {results_file}, but the report could not be written: {error}",
                       ExitCode.ENVIRONMENT) from None
    if as_json:
        _print_json(run.to_dict())
        return
    render_run(run, console)
    _say(f"results: {results_file}\nreport:  {report_path}")


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
    timing: TimingOption = "steady",
    compile_: CompileOption = False,
    channels_last: ChannelsLastOption = False,
    threads: ThreadsOption = None,
    timeout: TimeoutOption = 900.0,
    peak: PeakOption = True,
    repeats: RepeatsOption = 1,
    replicas: Annotated[str | None, typer.Option(
        help="Data parallel: comma list of replica counts per machine (torch DDP, tf MultiWorkerMirroredStrategy), "
             "each replica on --batch-size images; on a CPU each gets an equal share of the threads.",
        show_default=False)] = None,
    hosts: Annotated[str | None, typer.Option(
        help="Data parallel over machines: HOST:PORT of every machine, the first the rendezvous; run the same "
             "command on each with its --node-rank.", show_default=False)] = None,
    node_rank: Annotated[int, typer.Option(help="This machine's index in --hosts; node 0 writes the run file.")] = 0,
    out: Annotated[Path | None, typer.Option(help="Run folder (default: runs/<UTC timestamp>).")] = None,
    force: Annotated[bool, typer.Option("--force", help="Replace the results already in --out.")] = False,
    resume: Annotated[Path | None, typer.Option(help="Continue the run in this folder: configurations already ok "
                                                "there are kept, the others run. Without MODEL, the run's own "
                                                "planned configurations.", show_default=False)] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the run file on stdout and nothing else.")] = False,
    history: HistoryLocationOption = None,
    no_history: Annotated[bool, typer.Option("--no-history", help="Do not add the run to the run history.")] = False,
    data: DataOption = "synthetic",
    workers: WorkersOption = None,
    images: ImagesOption = None,
    files: FilesOption = DEFAULT_COUNT,
    image_scale: ImageScaleOption = 1.0,
    lighting: LightingOption = False,
) -> None:
    """Time models across frameworks, devices, modes, batch sizes and precisions, each configuration in its own
    worker process. Writes OUT/results.json after every process and OUT/report.md at the end, and adds the run to
    the run history (`history show`, `history check`) when it ends, also when it is stopped. With `--data jpeg`
    each step takes its batch from the engine's JPEG input pipeline, and the result says whether the pipeline is
    the bound (`input-bound`).

    Exit code: 0 when something was measured and nothing failed; 1 when a configuration failed; 2 for bad input;
    3 when nothing could be measured here (every configuration skipped) or none of the engines asked for is installed;
    130 / 143 when stopped by Ctrl-C / SIGTERM (what was measured is saved).
    """
    grid = plan.Grid(models, frameworks, device, modes, batch_size, precision, timing, compile_, channels_last,
                     threads, warmup, iters, max_time, repeats, timeout, data, workers, images, files, image_scale,
                     lighting)
    chosen = plan.plan_bench(grid, replicas=replicas, hosts=hosts, node_rank=node_rank, out=out, force=force,
                             resume=resume)
    _make_images(chosen.configs, errors if as_json else console)
    if chosen.results_file is None:
        _take_part(chosen, timeout, threads)
        return
    results_file = chosen.results_file

    def add_to_history() -> None:
        if not no_history:
            _add_run_to_history(results_file, history)

    run = _measure(chosen.configs, results_file, errors if as_json else console, on_stop=add_to_history,
                   timeout_s=timeout, threads=threads, measure_peaks=peak, resume=chosen.resumed,
                   cluster=chosen.cluster)
    add_to_history()
    _write_and_show(run, results_file, as_json)
    _exit_for_statuses(run)


@app.command()
def pipeline(
    frameworks: FrameworksOption = "torch,tf",
    workers: WorkersOption = None,
    batch_size: BatchOption = "32",
    model: Annotated[str, typer.Option(help="The model whose input the pipeline makes (its crop size and classes).")
                     ] = "alexnet",
    device: Annotated[str, typer.Option(help="The device the batches are for: cpu, or cuda (pinned host memory).")
                      ] = "cpu",
    images: ImagesOption = None,
    files: FilesOption = DEFAULT_COUNT,
    image_scale: ImageScaleOption = 1.0,
    lighting: LightingOption = False,
    check: Annotated[bool, typer.Option(
        "--check", help="Instead of timing: give every pipeline the same crops, flips and lighting (drawn on the "
                        "host from one seed) to the first 8 files, and check their batches agree within the stated "
                        "tolerance; the timing options do not apply.")] = False,
    warmup: WarmupOption = 5,
    iters: ItersOption = 50,
    max_time: MaxTimeOption = 20.0,
    repeats: RepeatsOption = 1,
    threads: ThreadsOption = None,
    timeout: TimeoutOption = 900.0,
    out: Annotated[Path | None, typer.Option(help="Run folder (default: runs/<UTC timestamp>).")] = None,
    force: Annotated[bool, typer.Option("--force", help="Replace the results already in --out.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the run file (or the check) on stdout and nothing "
                                          "else.")] = False,
    history: HistoryLocationOption = None,
    no_history: Annotated[bool, typer.Option("--no-history", help="Do not add the run to the run history.")] = False,
) -> None:
    """Time each engine's JPEG input pipeline alone (decode, resize, crop, flip, normalise, batch: the 2012 recipe)
    at each worker count, each configuration in its own process: images/s with the median's CI, CPU time per image
    and the time to the first batch. The image set is made here once (cached), or is your own folder (`--images`).
    Writes OUT/results.json and OUT/report.md like `bench` (the `input` mode); `--check` proves the pipelines give
    the same images instead.

    Exit code: 0; 1 when a configuration failed or the check found a difference; 2 for bad input; 3 when none of
    the engines asked for is installed or nothing could be measured; 130 / 143 when stopped (what was measured is
    saved).
    """
    if workers is None:
        workers = plan.default_worker_counts()
    grid = plan.Grid([model], frameworks, device, "input", batch_size, "fp32", "steady", False, False, threads,
                     warmup, iters, max_time, repeats, timeout, "jpeg", workers, images, files, image_scale, lighting)
    if check:
        _check_pipelines(grid, as_json)
        return
    chosen = plan.plan_bench(grid, out=out, force=force)
    _make_images(chosen.configs, errors if as_json else console)
    results_file = chosen.results_file

    def add_to_history() -> None:
        if not no_history:
            _add_run_to_history(results_file, history)

    run = _measure(chosen.configs, results_file, errors if as_json else console, on_stop=add_to_history,
                   timeout_s=timeout, threads=threads, measure_peaks=False)
    add_to_history()
    _write_and_show(run, results_file, as_json)
    _exit_for_statuses(run)


def _check_pipelines(grid: plan.Grid, as_json: bool) -> None:
    """``pipeline --check``: every installed engine's pipeline against the first's, on the same drawn choices."""
    from bench.config import Config
    from bench.engines import get_engine
    from bench.pipeline import CHECK_BATCH, CHECK_MAX_LEVELS, CHECK_MEAN_LEVELS
    from bench.pipeline_check import check_pipelines

    # The check's batch: the first CHECK_BATCH files, which the image set must hold.
    configs = plan.Grid(grid.models, grid.frameworks, "cpu", "input", str(CHECK_BATCH), data="jpeg", workers="0",
                        images=grid.images, files=grid.files, image_scale=grid.image_scale,
                        lighting=grid.lighting).configs()
    runnable = [config.framework for config in configs if get_engine(config.framework).refusal(config) is None]
    if len(runnable) < 2:
        raise UsageError(f"--check compares two pipelines or more; runnable here: {', '.join(runnable) or 'none'}")
    template: Config = configs[0]
    _make_images([template], errors if as_json else console)
    checks = check_pipelines(template, runnable)
    if as_json:
        _print_json({"checks": checks, "tolerance": {"mean_levels": CHECK_MEAN_LEVELS,
                                                     "max_levels": CHECK_MAX_LEVELS}})
    else:
        from reports.table import pipeline_check_table

        console.print(pipeline_check_table(checks))
        _say(f"passes when the mean difference is at most {CHECK_MEAN_LEVELS:g} and the largest at most "
             f"{CHECK_MAX_LEVELS:g} 8-bit level(s): the JPEG decoders and antialiased resize kernels may round a "
             "value differently, nothing more")
    if not all(check["passed"] for check in checks):
        raise typer.Exit(ExitCode.FAILED)


def _exit_for_statuses(run) -> None:
    """Exit 1 when a configuration failed, 3 when nothing was measured (each skip's reason said once)."""
    statuses = [result.status for result in run.results]
    if "failed" in statuses:
        raise typer.Exit(ExitCode.FAILED)
    if "ok" not in statuses:
        for reason, count in collections.Counter(result.reason for result in run.results).items():
            _say(f"skipped {count} configuration(s): {reason}", to_errors=True)
        raise typer.Exit(ExitCode.ENVIRONMENT)


def _make_images(configs, screen: Console) -> None:
    """Make (once, then cached) the image sets the configurations read, with a progress bar, before any of them
    starts: no measuring process pays for it."""
    from bench.pipeline import image_set

    for spec in dict.fromkeys(config.images for config in configs if config.images):
        from reports.live import making_progress

        with making_progress(screen, spec) as on_progress:
            image_set(spec, on_progress=on_progress)


def _take_part(chosen: plan.BenchPlan, timeout: float, threads: int | None) -> None:
    """A machine other than node 0 of a data-parallel run: its ranks take part, node 0 writes the run file."""
    host, _ = chosen.cluster.hosts[0]
    _say(f"node {chosen.cluster.node_rank} of {chosen.cluster.nodes}: taking part; the run file is written on node 0 "
         f"({host})", to_errors=True)
    run = _measure(chosen.configs, None, errors, timeout_s=timeout, threads=threads, measure_peaks=False,
                   cluster=chosen.cluster)
    for result in run.results:
        _say(f"{result.config.label()}: {result.status}" + (f" ({result.reason})" if result.reason else ""))
    if any(result.status == "failed" for result in run.results):
        raise typer.Exit(ExitCode.FAILED)


@app.command()
def explain(
    models: ModelsArgument = None,
    frameworks: FrameworksOption = "torch,tf",
    device: DeviceOption = "cpu",
    modes: ModesOption = "forward",
    batch_size: BatchOption = "32",
    warmup: WarmupOption = 5,
    iters: ItersOption = 30,
    max_time: MaxTimeOption = 10.0,
    precision: PrecisionOption = "fp32",
    compile_: CompileOption = False,
    channels_last: ChannelsLastOption = False,
    threads: ThreadsOption = None,
    timeout: TimeoutOption = 900.0,
    views: Annotated[str, typer.Option(help="Comma list of in-model (the framework's profiler over the step), "
                                       "alone (each layer timed by itself).")] = "in-model,alone",
    windows: Annotated[int, typer.Option(help="Single steps profiled; each layer's median is over them.")] = 5,
    out: Annotated[Path | None, typer.Option(help="Folder for explain.json and explain.md (default: runs/<UTC "
                                             "timestamp>); a bench run's folder, and its report includes them.")
                   ] = None,
    as_json: JsonOption = False,
) -> None:
    """Where each framework spends a step, layer by layer, the layers named by the model's spec in every framework:
    in the model (the framework's own profiler over single steps after burn-in, with an explicit unattributed
    remainder) and each layer alone; the ratio between frameworks per layer, and which layers explain how much of
    the difference between their steps. Writes OUT/explain.json and OUT/explain.md with a stacked bar per framework.

    Exit code: 0; 1 when a framework could not be explained (skipped or failed: its reason is printed); 2 for bad
    input; 3 when none of the engines asked for is installed; 130 / 143 when stopped (what was explained is saved).
    """
    from bench import ledger
    from bench.explain import EXPLAIN_FILE_NAME, explain_configs
    from bench.explainer import ExplainOptions
    from reports.explain import markdown_section, render_explanations

    if not models:
        raise UsageError("give the models to explain (names, comma lists, wildcards or 'all')")
    chosen_views = tuple(view.replace("-", " ") for view in plan.choices(views, "views", ["in-model", "alone"]))
    if windows < 1:
        raise UsageError(f"--windows must be >= 1, received {windows}")
    configs = plan.Grid(models, frameworks, device, modes, batch_size, precision, "steady", compile_, channels_last,
                        threads, warmup, iters, max_time, 1, timeout).configs()
    folder = plan.writable_folder(out if out is not None else plan.default_out())
    options = ExplainOptions(views=tuple(view for view in ledger.VIEWS if view in chosen_views), windows=windows)
    from bench.supervisor import interrupt_on_sigterm
    from reports.live import LiveProgress

    screen = errors if as_json else console
    try:
        with interrupt_on_sigterm(), LiveProgress(configs, screen) as progress:
            explanations = explain_configs(configs, folder / EXPLAIN_FILE_NAME, options, timeout_s=timeout,
                                           observer=progress)
    except KeyboardInterrupt as stop:
        raise _stopped(stop, f"what was explained is saved in {folder / EXPLAIN_FILE_NAME}") from None
    (folder / "explain.md").write_text(markdown_section(explanations, folder, "explain", level=1) + "\n")
    if as_json:
        _print_json({"explanations": [entry.to_dict() for entry in explanations]})
    else:
        render_explanations(explanations, console)
        _say(f"ledger: {folder / EXPLAIN_FILE_NAME}\nreport: {folder / 'explain.md'}")
    if any(entry.reasons for entry in explanations):
        raise typer.Exit(ExitCode.FAILED)


@app.command()
def peak(
    device: DeviceOption = "cpu",
    threads: ThreadsOption = None,
    as_json: JsonOption = False,
) -> None:
    """Measure the device's dense matrix-multiply peak per precision with every installed engine that can time one
    (not the inference runtimes) over several matrix sizes (fp32 with TF32 off); the best is the denominator of MFU.
    Cached by device model, threads and framework versions. On a GPU the published peak of the exact product is
    shown beside it where it is known.

    Exit code: 0; 2 for bad input; 3 when no framework is installed or no peak could be measured.
    """
    if threads is not None and threads < 1:
        raise UsageError(f"--threads must be >= 1, received {threads}")
    devices = plan.devices(device)
    from bench.engines import installed_engines
    from bench.peak import measure_peaks

    if not installed_engines():
        raise EnvironmentProblem("peak needs torch or TensorFlow installed (pip install -e .)")
    measured = [measure_peaks(name, None, threads) for name in devices]
    if as_json:
        _print_json({"peaks": measured})
    else:
        from reports.table import peak_table

        for entry in measured:
            console.print(peak_table(entry))
    if not any(entry["best_gflops_per_s"] for entry in measured):
        raise EnvironmentProblem("no peak could be measured on " + ", ".join(devices))


@app.command()
def fidelity(
    frameworks: FrameworksOption = None,
    threads: ThreadsOption = None,
    as_json: JsonOption = False,
) -> None:
    """Time the same forward step with the harness and with each framework's own reference timer, interleaved in one
    process per framework (AlexNet at batch 8, LeNet at batch 1), and say whether their median per-call times agree
    within each case's target.

    Exit code: 0; 1 when a case is outside its target or a framework's worker failed; 2 for bad input; 3 when none
    of the engines asked for is installed (one that is not is skipped, saying what installs it).
    """
    from bench.engines import get_engine, installed_engines
    from bench.environment import available_cpus
    from bench.fidelity import ROUNDS, measure

    chosen = plan.engines(frameworks) if frameworks is not None else installed_engines()
    plan.require_installed(chosen)
    skipped = [get_engine(name).not_installed() for name in chosen if name not in installed_engines()]
    rows, failures = measure([name for name in chosen if name in installed_engines()], threads or available_cpus())
    if as_json:
        _print_json({"threads": threads or available_cpus(), "rounds": ROUNDS, "cases": rows, "failures": failures,
                     "skipped": skipped})
    else:
        from reports.table import fidelity_table

        console.print(fidelity_table(rows, threads or available_cpus(), ROUNDS))
    for line in [*(f"skipped {line}" for line in skipped), *failures]:
        _say(line, to_errors=True)
    if failures or not all(row["within_target"] for row in rows):
        raise typer.Exit(ExitCode.FAILED)


@app.command("gpu-check")
def gpu_check(
    out: Annotated[Path, typer.Option(help="Folder for results.json, report.md, peak.json and gpu-tests.txt.")],
    models: Annotated[str, typer.Option(help="Models to time: names, wildcards, comma lists or 'all'.")] = "all",
    skip_tests: Annotated[bool, typer.Option("--skip-tests", help="Time and report only.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the run file on stdout and nothing else.")] = False,
) -> None:
    """Prove the CUDA path on a machine with an NVIDIA GPU and torch (TensorFlow may be absent): run the GPU
    tests, measure the peak, time every model forward and forward-backward in fp32 and bf16 at batch 32 (AlexNet
    also at 128) and AlexNet's training step data-parallel on NCCL, with every installed framework.

    Exit code: 0; 1 when a GPU test or a configuration failed; 2 for bad input; 3 without a GPU.
    """
    from bench import gpu_check as check
    from bench.data_parallel import visible_gpus
    from bench.engines import installed_engines
    from bench.peak import measure_peaks
    from reports.table import peak_table

    names = plan.models([models])
    if (reason := check.gpu_absent_reason()) is not None:
        raise EnvironmentProblem(reason)
    folder = plan.writable_folder(out)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    screen = errors if as_json else console
    passed, summary = (True, "skipped (--skip-tests)") if skip_tests else check.run_gpu_tests(folder)
    _say(f"GPU tests: {summary}", to_errors=as_json)
    measured = measure_peaks("cuda")
    (folder / "peak.json").write_text(json.dumps(measured, indent=1) + "\n")
    screen.print(peak_table(measured))
    configs = check.gpu_check_configs(names, installed_engines(), visible_gpus())
    run = _measure(configs, folder / "results.json", screen, timeout_s=check.CONFIG_TIMEOUT_S)
    _write_and_show(run, folder / "results.json", as_json)
    failed = [result for result in run.results if result.status == "failed"]
    _say(f"GPU tests {'passed' if passed else 'FAILED'}; {len(run.results) - len(failed)} of {len(run.results)} "
         f"configurations without failure; results: {folder / 'results.json'}, report: {folder / 'report.md'}",
         to_errors=as_json)
    if not passed or failed:
        raise typer.Exit(ExitCode.FAILED)


def _read_run(path: str):
    from bench.record import read_run

    return read_run(path)


@app.command()
def show(
    run: Annotated[str, typer.Argument(metavar="RUN", help=_RUN_HELP)],
    env: Annotated[bool, typer.Option("--env", help="Show the full environment instead of its summary.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the run file's document (in this version's "
                                          "schema, every derived figure included) instead of tables.")] = False,
) -> None:
    """Show a run: a table per model and mode, what was not measured in full, and its environment.

    Exit code: 0; 3 when the run file cannot be read.
    """
    loaded = _read_run(run)
    if as_json:
        _print_json(loaded.to_dict())
        return
    from reports.table import render_run

    render_run(loaded, console, with_environment=env)


@app.command()
def export(
    run: Annotated[str, typer.Argument(metavar="RUN", help=_RUN_HELP)],
    export_format: Annotated[str, typer.Option("--format", help="csv, json or parquet.")] = "csv",
    out: Annotated[str | None, typer.Option(help="File to write (needed for parquet); default: stdout.")] = None,
) -> None:
    """Export one row per configuration, with every derived figure and the raw samples.

    Exit code: 0; 2 for an unknown format or parquet without --out; 3 when the run file cannot be read, the file
    cannot be written or no parquet engine is installed.
    """
    from reports.frame import EXPORT_FORMATS, ExportError, frame_text, runs_frame, write_frame

    if export_format not in EXPORT_FORMATS:
        raise UsageError(f"unknown --format {export_format!r}; choose one of {', '.join(EXPORT_FORMATS)}")
    if export_format == "parquet" and out is None:
        raise UsageError("parquet is binary: give --out FILE")
    frame = runs_frame([_read_run(run)], with_run_column=False)
    if out is None:
        sys.stdout.write(frame_text(frame, export_format))
        return
    try:
        written = write_frame(frame, out, export_format)
    except ExportError as error:
        raise EnvironmentProblem(str(error)) from None
    except OSError as error:
        raise EnvironmentProblem(f"cannot write {out}: {_os_reason(error)}") from None
    _say(f"wrote {written}")


@app.command()
def report(
    runs: Annotated[list[str], typer.Argument(metavar="RUN", help="Run folders or results.json files; several "
                                              "share one report.")],
    out: Annotated[str | None, typer.Option(help="Markdown file (default: report.md in the first run's folder); "
                                            "charts are written beside it.")] = None,
    with_history: Annotated[str | None, typer.Option(
        "--history", metavar="[PATH]", help="Add a History section: the trend charts and check verdicts of the "
        "runs' configurations, from the history at PATH, or without PATH the default one ($CONVBENCH_HISTORY, else "
        "~/.local/share/convbench/history.duckdb).", show_default=False)] = None,
) -> None:
    """Write a markdown report with its PNG charts beside it.

    Environment, results per model and mode, batch-size and data-parallel scaling, methodology, and the
    configurations that were skipped or failed.

    Exit code: 0; 3 when a run file cannot be read, the report cannot be written, or (--history) the history
    database is locked or unreadable.
    """
    from reports.markdown import write_report

    loaded = [_read_run(path) for path in runs]
    out_path = out if out is not None else loaded[0].path.parent / "report.md"
    try:
        written = write_report(loaded, out_path)
    except OSError as error:
        raise EnvironmentProblem(f"cannot write the report to {out_path}: {_os_reason(error)}") from None
    if with_history is not None:
        from reports.history import HistoryError
        from reports.history.views import append_history_section

        try:
            append_history_section(written, loaded, _open_history(Path(with_history) if with_history else None))
        except HistoryError as error:
            raise EnvironmentProblem(f"{error} (the report is written without its History section)") from None
    _say(f"wrote {written}")


def _render_comparison(comparison, as_json: bool, **extra) -> None:
    """A comparison as tables (its setup differences as one warning line on stderr), or as one JSON document."""
    if as_json:
        _print_json({**comparison.to_dict(), **extra})
        return
    from reports.table import render_comparison

    if comparison.setup_differences:
        _say("warning: the runs were measured on different setups: " + "; ".join(comparison.setup_differences),
             to_errors=True)
    render_comparison(comparison, console)


@app.command()
def compare(
    base: Annotated[str, typer.Argument(metavar="BASE", help="The run to compare against: " + _RUN_HELP + " Or a "
                                        "pytest-benchmark JSON file saved with --benchmark-save-data.")],
    new: Annotated[str, typer.Argument(metavar="NEW", help="The run under test, in the same forms.")],
    threshold: ThresholdOption = "5%",
    fail_on_regression: Annotated[bool, typer.Option(
        "--fail-on-regression", help="Exit 1 when a configuration is slower or now fails.")] = False,
    as_json: JsonOption = False,
) -> None:
    """Compare two runs configuration by configuration.

    A configuration is slower or faster only when a two-sided Mann-Whitney U test gives p < 0.01, the sample sizes
    could show it, and its median moved by more than the threshold and by more than each run's own spread between
    processes. When the two runs come from different machines, GPUs or framework versions, one warning line says so.

    Exit code: 0; 1 with --fail-on-regression when a configuration is slower or now failing; 2 for a bad threshold
    or runs that share no configuration; 3 when a run file cannot be read.
    """
    fraction = plan.threshold(threshold)
    from reports.compare import compare_runs
    from reports.saved_runs import read_any_run

    comparison = compare_runs(read_any_run(base), read_any_run(new), threshold=fraction)
    _render_comparison(comparison, as_json)
    if fail_on_regression and comparison.has_regression:
        raise typer.Exit(ExitCode.FAILED)


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
    timing: TimingOption = "steady",
    compile_: CompileOption = False,
    channels_last: ChannelsLastOption = False,
    threads: ThreadsOption = None,
    timeout: TimeoutOption = 900.0,
    peak: PeakOption = False,
    repeats: Annotated[int, typer.Option(help="Worker processes per configuration and side (6 or more: with fewer, "
                                         "no difference can reach significance with room to spare).")] = 7,
    threshold: ThresholdOption = "5%",
    fail_on_regression: Annotated[bool, typer.Option(
        "--fail-on-regression", help="Exit 1 when a configuration is slower or now fails.")] = False,
    out: Annotated[Path | None, typer.Option(help="Folder for base/ and new/ run folders (default: runs/<UTC "
                                             "timestamp>).")] = None,
    as_json: JsonOption = False,
) -> None:
    """Measure two versions alternately in one session and compare them: the comparison for decisions that matter.

    Each configuration's worker processes alternate between base and new (ABBA), so the machine's drift falls on
    both alike. A side is a git revision (checked out into a temporary worktree), '.' (this working tree) or
    'python:PATH' (this tree under another interpreter, say a virtual environment with another torch).
    Defaults: base HEAD, new the working tree, which answers "did my uncommitted change make it slower?".

    Exit code: 0; 1 when --fail-on-regression finds a configuration slower or now failing, or a configuration
    failed; 2 for bad input (an unknown revision, a missing interpreter); 3 when none of the engines asked for is
    installed; 130 / 143 when stopped.
    """
    fraction = plan.threshold(threshold)
    if not models:
        raise UsageError("give the models to time (names, comma lists, wildcards or 'all')")
    configs = plan.Grid(models, frameworks, device, modes, batch_size, precision, timing, compile_, channels_last,
                        threads, warmup, iters, max_time, repeats, timeout).configs()
    folder = plan.writable_folder(out if out is not None else plan.default_out())
    for role in ("base", "new"):
        if (folder / role / "results.json").exists():
            raise UsageError(f"{folder / role} already holds a run; choose another --out")

    from bench.interleave import SideError, run_interleaved, side
    from bench.supervisor import interrupt_on_sigterm
    from reports.compare import compare_runs
    from reports.live import LiveProgress

    screen = errors if as_json else console
    try:
        with side("base", base) as base_side, side("new", new) as new_side:
            screen.print(f"base: {base_side.description}\nnew:  {new_side.description}", markup=False,
                         highlight=False)
            with interrupt_on_sigterm(), LiveProgress(configs + configs, screen,
                                                      prefixes=["base"] * len(configs) + ["new"] * len(configs)
                                                      ) as progress:
                base_run, new_run = run_interleaved(configs, base_side, new_side, folder, timeout_s=timeout,
                                                    observer=progress, threads=threads, measure_peaks=peak)
    except SideError as error:
        raise UsageError(str(error)) from None
    except KeyboardInterrupt as stop:
        raise _stopped(stop, f"what was measured is saved in {folder / 'base'} and {folder / 'new'}") from None
    comparison = compare_runs(base_run, new_run, threshold=fraction, separate_sessions=False)
    _render_comparison(comparison, as_json, runs={"base": str(base_run.path), "new": str(new_run.path)})
    if not as_json:
        _say(f"runs: {folder / 'base'}, {folder / 'new'}")
    failed = any(result.status == "failed" for run in (base_run, new_run) for result in run.results)
    if failed or (fail_on_regression and comparison.has_regression):
        raise typer.Exit(ExitCode.FAILED)


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

    return History(location, on_wait=lambda line: _say(line, to_errors=True))


def _add_run_to_history(results_file: Path, location: Path | None) -> None:
    from reports.history.views import add_finished_run

    if (warning := add_finished_run(results_file, _open_history(location))) is not None:
        _say(warning, to_errors=True)


def _print_history_outcome(outcome, history) -> None:
    from reports.history.views import outcome_lines

    counts, problems = outcome_lines(outcome, history)
    for line in counts:
        _say(line)
    for line in problems:
        _say(line, to_errors=True)


@history_app.command("import")
def history_import(
    paths: Annotated[list[Path], typer.Argument(metavar="PATH", help="Run files, run folders, or folders searched "
                                                "for run files (results.json).", show_default=False)],
    history: HistoryLocationOption = None,
) -> None:
    """Add runs to the history. A run already there is added once; a run completed since (bench --resume) has
    its results replaced. The paths are remembered beside the database for `history rebuild`; run files are
    only read.

    Exit code: 0; 3 when a path does not exist or a run file cannot be read (the others are added), or the
    database is locked, corrupt or not a history.
    """
    store = _open_history(history)
    outcome = store.add_paths(paths)
    _print_history_outcome(outcome, store)
    if outcome.missing or outcome.skipped:
        raise typer.Exit(ExitCode.ENVIRONMENT)


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

    Exit code: 0; 3 when a run file cannot be read (the others are added), a PATH given does not exist, no
    paths are recorded, or the database is locked.
    """
    store = _open_history(history)
    outcome = store.rebuild(paths or None)
    _print_history_outcome(outcome, store)
    if outcome.skipped or (paths and outcome.missing):
        raise typer.Exit(ExitCode.ENVIRONMENT)


HistoryModelsArgument = Annotated[list[str] | None, typer.Argument(
    metavar="MODEL", help="Models: names, comma lists or shell wildcards [default: all].", show_default=False)]
HistoryMachineOption = Annotated[str | None, typer.Option(
    "--machine", help="Part of a machine's name (as `history show` prints it) or the start of its key.",
    show_default=False)]
HistorySinceOption = Annotated[str | None, typer.Option(
    "--since", help="Only runs started on or after this UTC date or time (2026-03-01, 2026-03-01T12:00).",
    show_default=False)]


@history_app.command("show")
def history_show(
    models: HistoryModelsArgument = None,
    framework: FrameworksOption = None,
    mode: ModesOption = None,
    device: DeviceOption = None,
    machine: HistoryMachineOption = None,
    since: HistorySinceOption = None,
    as_json: JsonOption = False,
    plot: Annotated[Path | None, typer.Option(help="Also draw the median with its CI over time, one line per "
                                              "configuration, into this PNG file.", show_default=False)] = None,
    history: HistoryLocationOption = None,
) -> None:
    """Per configuration and machine: the number of runs, the latest one's date, and the latest, best and worst
    median (ms per batch, lower is better; images/s, higher is better; --json adds the first run's date and the
    best images/s). Figures of different machines are never mixed: each machine has its own table.

    Exit code: 0; 2 for bad input; 3 when the database is locked, corrupt or not a history, or the plot cannot be
    written.
    """
    from reports.history import Filters

    filters = Filters.parse(models, framework, mode, device, machine, since)
    if plot is not None and plot.suffix.lower() != ".png":
        raise UsageError(f"--plot writes a PNG image: give a file name ending in .png. Received: {str(plot)!r}")
    from reports.history.views import nothing_recorded_line, plot_series, render_trends

    store = _open_history(history)
    trends = store.trends(filters)
    series = store.series(filters) if plot is not None else []
    if as_json:
        _print_json({"history": str(store.location), "trends": [trend.to_dict() for trend in trends]})
    elif not store.exists:
        _say(nothing_recorded_line(store))
    else:
        render_trends(trends, console, store.location)
    if plot is not None and not series:
        _say(f"no chart written to {plot}: no measured configuration matches", to_errors=True)
    elif plot is not None:
        try:
            written = plot_series(series, plot, "median step time over the run history")
        except OSError as error:
            raise EnvironmentProblem(f"cannot write the plot to {plot}: {_os_reason(error)}") from None
        _say(f"wrote {written}", to_errors=as_json)


@history_app.command("check")
def history_check(
    models: HistoryModelsArgument = None,
    framework: FrameworksOption = None,
    mode: ModesOption = None,
    device: DeviceOption = None,
    machine: HistoryMachineOption = None,
    since: HistorySinceOption = None,
    metric: Annotated[str, typer.Option(help="time (median ms per batch, lower is better) or throughput "
                                        "(images/s, higher is better); the verdicts agree, the figures differ.")
                      ] = "time",
    threshold: ThresholdOption = "5%",
    fail_on_regression: Annotated[bool, typer.Option(
        "--fail-on-regression", help="Exit 1 when a configuration is slower than its history.")] = False,
    as_json: JsonOption = False,
    history: HistoryLocationOption = None,
) -> None:
    """For each configuration and machine, whether its latest runs are slower than its history.

    Method: each run counts by its median. For each segment of the latest runs (the latest always included), a
    one-sided Mann-Whitney U test of those runs' medians against the runs before them, Bonferroni-corrected over
    the segments tried, and both the segment's median and the latest run's beyond the threshold of the earlier
    runs' median; faster likewise; "since" names the segment's first run. One slow run cannot be told from a step,
    and a history too short for any test to decide says "not enough history" (the output states the figures).

    Exit code: 0; 1 with --fail-on-regression when a configuration is slower; 2 for bad input; 3 when the
    database is locked, corrupt or not a history.
    """
    from reports.history import Filters

    fraction = plan.threshold(threshold)
    filters = Filters.parse(models, framework, mode, device, machine, since)
    from reports.history.trend import METRICS, check_series, points_needed
    from reports.history.views import nothing_recorded_line, render_checks

    if metric not in METRICS:
        raise UsageError(f"unknown --metric {metric!r}; accepted: {', '.join(METRICS)}")
    store = _open_history(history)
    checks = check_series(store.series(filters, last=points_needed()), METRICS[metric], fraction)
    if as_json:
        _print_json({"history": str(store.location), "metric": metric, "threshold": fraction,
                     "checks": [check.to_dict() for check in checks]})
    elif not store.exists:
        _say(nothing_recorded_line(store))
    else:
        render_checks(checks, console, store.location, METRICS[metric], fraction)
    if fail_on_regression and any(check.check.verdict == "slower" for check in checks):
        raise typer.Exit(ExitCode.FAILED)


def _with_optional_values(argv: list[str]) -> list[str]:
    """``report ... --history`` with no PATH after it reads the default history: an empty value stands for it,
    since the command line parser knows no option whose value may be left out."""
    if next((word for word in argv if not word.startswith("-")), None) != "report":
        return argv
    return ["--history=" if word == "--history" and (position + 1 == len(argv) or argv[position + 1].startswith("-"))
            else word for position, word in enumerate(argv)]


def _program_name() -> str:
    """How this program was started, for its usage lines: the installed ``convbench`` or ``python cli.py``."""
    return "convbench" if Path(sys.argv[0]).name == "convbench" else "python cli.py"


def main(argv: list[str] | None = None) -> int:
    """Run the app; turn every error into one line on stderr and its exit code."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    command = typer.main.get_command(app)
    arguments = _with_optional_values(list(sys.argv[1:] if argv is None else argv))
    try:
        result = command.main(args=arguments, prog_name=_program_name(), standalone_mode=False)
        return result if isinstance(result, int) else ExitCode.OK
    except typer.Exit as exit_:
        return int(exit_.exit_code)
    except typer.TyperException as error:  # usage errors: unknown option, bad value, missing argument
        _say(f"error: {error.format_message()}", to_errors=True)
        return ExitCode.USAGE
    except (typer.Abort, KeyboardInterrupt):
        _say("interrupted", to_errors=True)
        return 130
    except Exception as error:  # every failure gets one line; the traceback too with --debug
        if _state["debug"]:
            traceback.print_exc()
        code, message = _exit_code_of(error)
        _say(f"error: {message}", to_errors=True)
        return code


def _exit_code_of(error: Exception) -> tuple[int, str]:
    """The exit code of an error and its one line."""
    if isinstance(error, CliError):
        return error.exit_code, str(error)
    if isinstance(error, UsageError):
        return ExitCode.USAGE, str(error)
    if isinstance(error, EnvironmentProblem):
        return ExitCode.ENVIRONMENT, str(error)
    return ExitCode.FAILED, f"{type(error).__name__}: {error} (run with --debug for the traceback)"


if __name__ == "__main__":
    sys.exit(main())
