"""From what a person typed to what runs: lists of names and numbers checked, the configuration grid, resuming,
the machines of a data-parallel run.

Every refusal is one line that says what was wrong and what is accepted (``bench.errors``): ``UsageError`` for input
that cannot mean anything runnable, ``EnvironmentProblem`` for a machine that lacks what the input needs (an engine
not installed, a folder that cannot be written).
"""

from __future__ import annotations

import datetime as dt
import itertools
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import zoo
from bench.backend import parse_device
from bench.config import DATA_SOURCES, PRECISIONS, Config
from bench.data_parallel import check_replicas
from bench.engines import ENGINES, get_engine, installed_engines
from bench.environment import available_cpus
from bench.errors import EnvironmentProblem, UsageError
from bench.images import DEFAULT_COUNT, folder_images
from bench.launchers import Cluster, ClusterError
from bench.modes import MODES
from bench.pipeline import folder_spec, made_spec
from bench.record import RUN_FILE_NAME, Run, RunFileError, read_run, results_path
from bench.timing import TIMING_METHODS

DEFAULT_RUNS_FOLDER = Path("runs")


def name_patterns(values: Iterable[str] | None) -> list[str]:
    """Names or wildcards given as separate words or comma lists (``lenet,alexnet``)."""
    return [part.strip() for value in values or () for part in value.split(",") if part.strip()]


def models(values: Iterable[str] | None) -> list[str]:
    """Model names, wildcards or 'all', given as separate words or comma lists; every one resolved."""
    try:
        return zoo.resolve_models(name_patterns(values) or ["all"])
    except zoo.UnknownNameError as error:
        raise UsageError(str(error)) from None


def split(value: str, what: str) -> list[str]:
    items = [item.strip() for item in value.split(",") if item.strip()]
    if not items:
        raise UsageError(f"--{what} needs at least one value")
    return items


def choices(value: str, what: str, accepted: Sequence[str]) -> list[str]:
    items = split(value, what)
    for item in items:
        if item not in accepted:
            raise UsageError(f"unknown {what} {item!r}; accepted: {', '.join(accepted)}")
    return items


def whole_numbers(value: str, what: str, refusal: str) -> list[int]:
    """A comma list of whole numbers >= 1; the first that is not is refused with ``refusal``."""
    numbers = []
    for item in split(value, what):
        if not item.lstrip("-").isdigit() or int(item) < 1:
            raise UsageError(f"{refusal}, received {item!r}")
        numbers.append(int(item))
    return numbers


def batch_sizes(value: str) -> list[int]:
    return whole_numbers(value, "batch-size", "batch size must be a whole number >= 1")


def replica_counts(value: str | None) -> list[int | None]:
    """``--replicas``: None (one plain process per configuration) when not given."""
    if value is None:
        return [None]
    return whole_numbers(value, "replicas", "--replicas takes whole numbers >= 1 (comma list)")


def loaders(value: str | None) -> list[tuple[int | None, bool]]:
    """``--workers``: (workers, autotune) per entry of a comma list of whole numbers >= 0 and ``auto`` (tf.data's
    AUTOTUNE); every CPU this process may use when not given."""
    if value is None:
        return [(available_cpus(), False)]
    chosen: list[tuple[int | None, bool]] = []
    for item in split(value, "workers"):
        if item.lower() == "auto":
            chosen.append((None, True))
        elif item.isdigit():
            chosen.append((int(item), False))
        else:
            raise UsageError(f"--workers takes whole numbers >= 0 and auto (comma list), received {item!r}")
    return list(dict.fromkeys(chosen))


def default_worker_counts() -> str:
    """The worker counts ``pipeline`` sweeps by default: powers of two up to the CPUs this process may use, and
    that count itself."""
    cpus = available_cpus()
    counts = [2**power for power in range(cpus.bit_length()) if 2**power <= cpus]
    return ",".join(str(count) for count in dict.fromkeys([*counts, cpus]))


def images_spec(images: Path | None, files: int, scale: float, largest_batch: int) -> str:
    """The image set of ``--data jpeg``: the user's folder (checked to hold JPEGs), or the made set's spec; either
    must hold a batch of the largest size asked for."""
    if images is not None:
        count = len(folder_images(images))  # refuses a folder without JPEGs now, in one line
        if count < largest_batch:
            raise UsageError(f"--images DIR: {count} JPEGs under {images} make no batch of {largest_batch}")
        return folder_spec(images)
    if files < 1:
        raise UsageError(f"--files must be >= 1, received {files}")
    if files < largest_batch:
        raise UsageError(f"--files {files} make no batch of {largest_batch}; give at least that many")
    if not 0 < scale <= 1:
        raise UsageError(f"--image-scale must be in (0, 1], received {scale:g}")
    return made_spec(count=files, scale=scale)


def devices(value: str) -> list[str]:
    """Device names as configurations spell them: ``cpu``, ``cuda`` or ``cuda:N`` (``gpu`` is read as cuda)."""
    named = []
    for item in split(value, "device"):
        try:
            kind, index = parse_device(item)
        except ValueError as error:
            raise UsageError(str(error)) from None
        named.append("cpu" if kind == "cpu" else f"cuda:{index}" if ":" in item else "cuda")
    return named


_ALIASES = ", ".join(f"{alias} = {engine.name}" for engine in ENGINES.values() for alias in engine.aliases)
ENGINES_HELP = f"Comma list of engines: {', '.join(ENGINES)} ({_ALIASES}), or all: every installed one."


def engines(value: str) -> list[str]:
    """Engine names by any accepted spelling, each once, in the order given; ``all`` is every installed engine."""
    chosen: list[str] = []
    for item in split(value, "frameworks"):
        if item.strip().lower() == "all":
            if not installed_engines():
                raise EnvironmentProblem("--frameworks all: no engine is installed (pip install -e .)")
            chosen.extend(name for name in installed_engines() if name not in chosen)
            continue
        try:
            name = get_engine(item).name
        except zoo.UnknownNameError as error:
            raise UsageError(str(error)) from None
        if name not in chosen:
            chosen.append(name)
    return chosen


def require_installed(names: Iterable[str]) -> None:
    """At least one of the engines must be installed; the others' configurations are skipped, each saying what
    installs it."""
    names = list(names)
    if names and not set(names) & set(installed_engines()):
        raise EnvironmentProblem("; ".join(get_engine(name).not_installed() for name in names))


def threshold(text: str) -> float:
    """'5%' or '0.05' as the fraction 0.05; a bare number of 1 or more is refused as ambiguous."""
    try:
        value = float(text[:-1]) / 100 if text.endswith("%") else float(text)
    except ValueError:
        value = float("nan")
    if not 0 <= value < 1:
        raise UsageError(f"--threshold must be a percentage or a fraction below 1, such as 5% or 0.05. "
                         f"Received: {text!r}")
    return value


def check_protocol(warmup: int, iters: int, repeats: int, max_time: float, threads: int | None,
                   timeout: float) -> None:
    for name, value, low in (("--warmup", warmup, 0), ("--iters", iters, 1), ("--repeats", repeats, 1)):
        if value < low:
            raise UsageError(f"{name} must be >= {low}, received {value}")
    if max_time < 0:
        raise UsageError(f"--max-time must be >= 0 (0: no cap), received {max_time:g}")
    if threads is not None and threads < 1:
        raise UsageError(f"--threads must be >= 1, received {threads}")
    if timeout <= 0:
        raise UsageError(f"--timeout must be > 0 seconds, received {timeout:g}")


def expand(models: Iterable[str], frameworks: Iterable[str], devices: Iterable[str], modes: Iterable[str],
           batch_sizes: Iterable[int], precisions: Iterable[str] = ("fp32",), *,
           replicas: Iterable[int | None] = (None,), nodes: int = 1,
           loaders: Iterable[tuple[int | None, bool]] = ((None, False),), **fixed) -> list[Config]:
    """The cross product of the choices, one ``Config`` each, grouped by model, then device, then framework;
    replica counts and the input pipeline's (workers, autotune) innermost, so a scaling series runs (and is
    listed) together. ``fixed``: the fields every configuration shares (``warmup``, ``iters``, ``data``...)."""
    return [
        Config(model=model, framework=framework, device=device, mode=mode, batch_size=batch, precision=precision,
               replicas=count, nodes=nodes if count is not None else 1, workers=workers, autotune=autotune,
               **fixed)
        for model, device, framework, precision, batch, mode, count, (workers, autotune) in itertools.product(
            models, devices, frameworks, precisions, batch_sizes, modes, replicas, loaders)
    ]


@dataclass(frozen=True)
class Grid:
    """The options that name a grid of configurations, as typed (comma lists), and the protocol they share."""

    models: Sequence[str] | None
    frameworks: str = "torch,tf"
    devices: str = "cpu"
    modes: str = "forward,forward-backward"
    batch_sizes: str = "32"
    precisions: str = "fp32"
    timing: str = "steady"
    compile: bool = False
    channels_last: bool = False
    threads: int | None = None
    warmup: int = 10
    iters: int = 100
    max_time: float = 20.0
    repeats: int = 1
    timeout: float = 900.0
    # Where the batch comes from (bench.pipeline): --data, --workers, --images, --files, --image-scale, --lighting.
    data: str = "synthetic"
    workers: str | None = None
    images: Path | None = None
    files: int = DEFAULT_COUNT
    image_scale: float = 1.0
    lighting: bool = False

    def input_fields(self, modes: Sequence[str], largest_batch: int) -> tuple[list[tuple[int | None, bool]], dict]:
        """The input pipeline's choices: the (workers, autotune) pairs and the fields every configuration shares."""
        data = choices(self.data, "data", DATA_SOURCES)[0]
        if data == "synthetic":
            given = [option for option, value in (
                ("--workers", self.workers), ("--images", self.images), ("--lighting", self.lighting),
                ("--files", self.files != DEFAULT_COUNT), ("--image-scale", self.image_scale != 1.0)) if value]
            if given:
                raise UsageError(f"{', '.join(given)} appl{'y' if len(given) > 1 else 'ies'} to --data jpeg")
            pipeline_only = [mode for mode in modes if not MODES[mode].network]
            if pipeline_only:
                raise UsageError(f"--modes {pipeline_only[0]} times the input pipeline alone: bench --data jpeg, "
                                 "or the pipeline command")
            return [(None, False)], {}
        spec = images_spec(self.images, self.files, self.image_scale, largest_batch)
        return loaders(self.workers), {"data": data, "images": spec, "lighting": self.lighting}

    def configs(self, replicas: Sequence[int | None] = (None,), nodes: int = 1) -> list[Config]:
        """Every configuration the options name, each option checked first; the engines must be installed."""
        check_protocol(self.warmup, self.iters, self.repeats, self.max_time, self.threads, self.timeout)
        chosen = engines(self.frameworks)
        chosen_modes, sizes = choices(self.modes, "mode", list(MODES)), batch_sizes(self.batch_sizes)
        pairs, input_fields = self.input_fields(chosen_modes, max(sizes))
        if input_fields and list(replicas) != [None]:
            raise UsageError("--data jpeg feeds one process; leave out --replicas")
        configs = expand(
            models(self.models), chosen, devices(self.devices), chosen_modes, sizes,
            choices(self.precisions, "precision", PRECISIONS),
            replicas=replicas, nodes=nodes, loaders=pairs,
            timing=choices(self.timing, "timing", list(TIMING_METHODS))[0],
            compile=self.compile, channels_last=self.channels_last, threads=self.threads, warmup=self.warmup,
            iters=self.iters, max_time_s=self.max_time or None, repeats=self.repeats, **input_fields)
        require_installed(chosen)
        return configs


def cluster(hosts: str | None, node_rank: int, replicas: Sequence[int | None], on_devices: Sequence[str]) -> Cluster:
    """The machines of a data-parallel run, checked against the replica counts and devices."""
    try:
        machines = Cluster.parse(hosts, node_rank)
        if machines.hosts and list(replicas) == [None]:
            raise ClusterError("--hosts runs data-parallel configurations: give --replicas (per machine) too")
        for count in replicas:
            for device in on_devices:
                if count is not None:
                    check_replicas(count, device)
    except ClusterError as error:
        raise UsageError(str(error)) from None
    return machines


def default_out() -> Path:
    """``runs/<UTC timestamp>``."""
    return DEFAULT_RUNS_FOLDER / dt.datetime.now(dt.timezone.utc).strftime("%Y%m%d-%H%M%S")


def writable_folder(path: Path) -> Path:
    """Create ``path`` and check a file can be written in it."""
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe = path / ".write-test"
        probe.write_text("")
        probe.unlink()
    except OSError as error:
        raise EnvironmentProblem(f"cannot write to {path}: {error.strerror or error}") from None
    return path


@dataclass(frozen=True)
class BenchPlan:
    """What ``bench`` runs: the configurations, the machines, the run file (None on a machine that only takes part
    in a data-parallel run), and the run it resumes."""

    configs: list[Config]
    cluster: Cluster
    results_file: Path | None
    resumed: Run | None = None


def plan_bench(grid: Grid, *, replicas: str | None = None, hosts: str | None = None, node_rank: int = 0,
               out: Path | None = None, force: bool = False, resume: Path | None = None) -> BenchPlan:
    """The configurations of a ``bench`` command and where its run file goes; refuses a used ``out`` (unless
    ``force``) and a ``resume`` folder without a run."""
    check_protocol(grid.warmup, grid.iters, grid.repeats, grid.max_time, grid.threads, grid.timeout)
    if resume is not None and out is not None and out.resolve() != resume.resolve():
        raise UsageError("--resume continues the run in its own folder; leave out --out")
    if not grid.models and resume is None:
        raise UsageError("give the models to time (names, comma lists, wildcards or 'all'), or --resume RUN_FOLDER")
    previous = None
    if resume is not None:
        try:
            previous = read_run(resume)
        except RunFileError as error:
            raise UsageError(f"cannot resume: {error}") from None
        out = results_path(resume).parent
    if grid.models:
        counts = replica_counts(replicas)
        machines = cluster(hosts, node_rank, counts, devices(grid.devices))
        configs = grid.configs(counts, machines.nodes)
    else:
        configs = previous.planned or [result.config for result in previous.results]
        require_installed(dict.fromkeys(config.framework for config in configs))
        machines = cluster(hosts, node_rank, [config.replicas for config in configs], [])
        spans = {config.nodes for config in configs if config.replicas is not None}
        if spans and spans != {machines.nodes}:
            raise UsageError(f"the run to resume spans {max(spans)} machine(s); give the same --hosts and "
                             "--node-rank as when it started")
    if not machines.writes_run_file:
        return BenchPlan(configs, machines, None)
    out = out if out is not None else default_out()
    if previous is None and (out / RUN_FILE_NAME).exists() and not force:
        raise UsageError(f"{out} already holds a run ({RUN_FILE_NAME}); --resume {out} continues it, --force "
                         "replaces it, or choose another --out")
    return BenchPlan(configs, machines, writable_folder(out) / RUN_FILE_NAME, previous)
