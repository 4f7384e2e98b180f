"""The one record type of a measurement, and the run file (``results.json``) that holds a run's records.

A ``Result`` stores what was measured (raw samples, which worker process took them, first-step time, peak
memory) with its configuration and the settings in effect; every statistic is derived from the samples, once per
result, as a typed ``Derived``, and written alongside them, never stored rounded. Tables, pandas frames, markdown
reports, comparisons and the history all read this one record, and take their columns from its types.
"""

from __future__ import annotations

import json
import statistics
import typing
from dataclasses import asdict, dataclass, field, fields
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np

import zoo
from bench.config import Config
from bench.errors import EnvironmentProblem
from bench.files import atomic_write_text
from bench.ledger import HOST_BOUND_BELOW
from bench.modes import FLOP_CONVENTION, MODES, get_mode, step_flops
from bench.stats import Summary, median_ci, summarize
from bench.timing import TIMING_METHODS

SCHEMA = 4
READABLE_SCHEMAS = (1, 2, 3, 4)
RUN_FILE_NAME = "results.json"

# ok: every planned sample was taken. failed / interrupted may hold the samples taken before the end (partial).
STATUSES: tuple[str, ...] = ("ok", "failed", "skipped", "interrupted")


class RunFileError(EnvironmentProblem, ValueError):
    """A results file that cannot be read: missing, not JSON, truncated or of another schema."""


@dataclass(frozen=True)
class Derived:
    """The figures derived from a result's samples (``Result.derived``); None where they do not apply.

    Per batch: ``median_ms`` (the headline, with ``median_ci_ms`` of exact coverage ``median_ci_level`` over
    ``median_ci_basis``: one process's samples or the process medians), mean, std (n - 1), min, max, IQR, p5,
    p95; ``noisy`` when the IQR exceeds 10% of the median. Throughput over the global batch, achieved FLOP/s and
    MFU against the device's peak. Data parallel only: the spread of the ranks' medians, the no-sync ceiling,
    the share of a step spent on gradient exchange, and the all-reduce's time and bus bandwidth. On a GPU,
    ``host_bound`` when the device was busy for less than half of a profiled step. Fed from JPEGs: the step alone on
    a fixed batch (``step_median_ms``, ``step_images_per_s``), the input pipeline's rate alone at the same workers
    (``pipeline_images_per_s``; for the ``input`` mode, its own rate), and ``input_bound`` when that rate is below
    the step's.
    """

    n: int
    median_ms: float | None = None
    median_ci_ms: tuple[float, float] | None = None
    median_ci_level: float | None = None
    median_ci_basis: str | None = None
    processes: int | None = None
    process_spread: float | None = None
    mean_ms: float | None = None
    std_ms: float | None = None
    min_ms: float | None = None
    max_ms: float | None = None
    iqr_ms: float | None = None
    p5_ms: float | None = None
    p95_ms: float | None = None
    noisy: bool | None = None
    global_batch: int | None = None
    images_per_s: float | None = None
    ms_per_image: float | None = None
    gflops_per_s: float | None = None
    mfu: float | None = None
    rank_median_p50_ms: float | None = None
    rank_median_p95_ms: float | None = None
    no_sync_median_ms: float | None = None
    communication_share: float | None = None
    allreduce_median_ms: float | None = None
    allreduce_bus_gb_per_s: float | None = None
    host_bound: bool | None = None
    step_median_ms: float | None = None
    step_images_per_s: float | None = None
    pipeline_images_per_s: float | None = None
    input_bound: bool | None = None

    def columns(self) -> dict[str, Any]:
        """The figures as flat columns: the interval split into ``median_ci_low_ms`` and ``median_ci_high_ms``."""
        flat: dict[str, Any] = {}
        for name, value in asdict(self).items():
            if name == "median_ci_ms":
                flat["median_ci_low_ms"], flat["median_ci_high_ms"] = value or (None, None)
            else:
                flat[name] = value
        return flat

    @classmethod
    def column_types(cls) -> dict[str, Any]:
        """The type of each of ``columns()``, for stores that declare their columns (the history)."""
        hints = typing.get_type_hints(cls)
        types: dict[str, Any] = {}
        for name in hints:
            if name == "median_ci_ms":
                types["median_ci_low_ms"] = types["median_ci_high_ms"] = float | None
            else:
                types[name] = hints[name]
        return types


def config_counts(config: Config) -> dict[str, int]:
    """MACs per image and FLOPs per step of ``config``; a data-parallel step is every replica's, the global batch."""
    spec = zoo.get_spec(config.model)
    if not get_mode(config.mode).network:  # the input pipeline alone: no network runs
        return {"macs_per_image": None, "flops_per_step": None}
    return {"macs_per_image": spec.macs, "flops_per_step": step_flops(spec, config.global_batch, config.mode)}


@dataclass(frozen=True)
class Result:
    """One configuration's outcome, with every timed sample kept.

    ``samples_ms`` pools the samples of every worker process in the order taken; ``process_sample_counts`` says
    how many each process took (empty for a single process), so each process's samples can be told apart.
    ``partial`` marks samples that stop short of the protocol (a worker that died, timed out or was
    interrupted). ``peak_memory_bytes`` covers the timed steps only; ``burn_in_peak_memory_bytes`` the burn-in,
    where autotuning and compilation take their workspaces. ``settings`` holds what was in effect for this
    configuration (threads, TF32, cudnn.benchmark, XLA, mixed-precision policy, memory format, ...).
    """

    config: Config
    status: str
    reason: str | None = None
    partial: bool = False
    samples_ms: tuple[float, ...] = ()
    process_sample_counts: tuple[int, ...] = ()
    first_step_ms: float | None = None
    peak_memory_bytes: int | None = None
    burn_in_peak_memory_bytes: int | None = None
    capped: bool = False
    macs_per_image: int | None = None
    flops_per_step: int | None = None
    peak_gflops_per_s: float | None = None
    # Data parallel only. ``samples_ms`` then holds each step's time on its slowest rank, and these the rest:
    # every rank's own timed samples (by global rank), the same step without gradient exchange (slowest rank per
    # step), and an all-reduce of the gradients' size with the engine's own collective (slowest rank per call).
    rank_samples_ms: tuple[tuple[float, ...], ...] = ()
    no_sync_samples_ms: tuple[float, ...] = ()
    allreduce_bytes: int | None = None
    allreduce_samples_ms: tuple[float, ...] = ()
    # On a GPU: the share of a profiled step the device spent running kernels; below HOST_BOUND_BELOW the step is
    # the host launching work, and its MFU says nothing about the device.
    device_busy: float | None = None
    # Fed from JPEGs (data="jpeg"), in the same process before the fed loop: the step alone on a fixed batch, and the
    # input pipeline alone (ms per batch). The pipeline's first batch (its workers starting included), and the CPU
    # seconds per image of the pipeline alone, over this process and its workers.
    step_samples_ms: tuple[float, ...] = ()
    pipeline_samples_ms: tuple[float, ...] = ()
    first_batch_ms: float | None = None
    cpu_seconds_per_image: float | None = None
    settings: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)

    def __post_init__(self) -> None:
        if self.status not in STATUSES:
            raise ValueError(f"status must be one of {', '.join(STATUSES)}. Received: status={self.status!r}")
        if self.status == "ok" and not self.samples_ms:
            raise ValueError("an ok result needs samples")
        if self.process_sample_counts and sum(self.process_sample_counts) != len(self.samples_ms):
            raise ValueError(f"process_sample_counts add up to {sum(self.process_sample_counts)}, "
                             f"but there are {len(self.samples_ms)} samples")

    @property
    def summary(self) -> Summary | None:
        """Statistics of every sample, pooled over processes; None without samples."""
        return summarize(self.samples_ms) if self.samples_ms else None

    @property
    def process_samples(self) -> list[tuple[float, ...]]:
        """The samples of each worker process, in the order the processes ran."""
        if not self.process_sample_counts:
            return [self.samples_ms] if self.samples_ms else []
        parts, start = [], 0
        for count in self.process_sample_counts:
            parts.append(self.samples_ms[start:start + count])
            start += count
        return parts

    @property
    def process_medians_ms(self) -> tuple[float, ...]:
        return tuple(statistics.median(part) for part in self.process_samples if part)

    @cached_property
    def derived(self) -> Derived:
        """Every figure computed from the samples, once; None where nothing was measured or the result is not ok.

        With one process the headline median and its interval come from the samples. With several, from the
        per-process medians: samples of one process share its start-up luck, so only the spread between
        processes says how far another run would land. ``median_ci_basis`` names the basis and
        ``median_ci_level`` the interval's exact coverage (below 95% for fewer than 6 values).
        """
        summary = self.summary
        if summary is None or self.status != "ok":
            return Derived(n=len(self.samples_ms))
        medians = self.process_medians_ms
        process_spread = None
        if len(medians) > 1:
            basis, median, interval = "process medians", statistics.median(medians), median_ci(medians)
            process_spread = (max(medians) - min(medians)) / median
        else:
            basis, median, interval = "samples", summary.median_ms, summary.median_ci
        batch = self.config.global_batch
        gflops_per_s = self.flops_per_step / (median / 1e3) / 1e9 if self.flops_per_step is not None else None
        mfu = None
        if gflops_per_s is not None and self.peak_gflops_per_s:
            mfu = gflops_per_s / (self.peak_gflops_per_s * self.config.peak_devices)
        return Derived(
            n=len(self.samples_ms), median_ms=median, median_ci_ms=(interval.low_ms, interval.high_ms),
            median_ci_level=interval.level, median_ci_basis=basis, processes=max(len(medians), 1),
            process_spread=process_spread, mean_ms=summary.mean_ms, std_ms=summary.std_ms, min_ms=summary.min_ms,
            max_ms=summary.max_ms, iqr_ms=summary.iqr_ms, p5_ms=summary.p5_ms, p95_ms=summary.p95_ms,
            noisy=summary.noisy, global_batch=batch, images_per_s=batch / (median / 1e3), ms_per_image=median / batch,
            gflops_per_s=gflops_per_s, mfu=mfu,
            host_bound=self.device_busy < HOST_BOUND_BELOW if self.device_busy is not None else None,
            **self._data_parallel(), **self._fed(median),
        )

    def _fed(self, median_ms: float) -> dict[str, Any]:
        """The step alone, the pipeline alone, and whether the pipeline is the bound."""
        batch = self.config.global_batch
        values: dict[str, Any] = {}
        if self.step_samples_ms:
            values["step_median_ms"] = statistics.median(self.step_samples_ms)
            values["step_images_per_s"] = batch / (values["step_median_ms"] / 1e3)
        if not get_mode(self.config.mode).network:  # the input pipeline alone: its rate is the headline's
            values["pipeline_images_per_s"] = batch / (median_ms / 1e3)
        elif self.pipeline_samples_ms:
            # Pooled over processes with --repeats, as the step alone's samples are.
            values["pipeline_images_per_s"] = batch / (statistics.median(self.pipeline_samples_ms) / 1e3)
        if "step_images_per_s" in values and "pipeline_images_per_s" in values:
            values["input_bound"] = values["pipeline_images_per_s"] < values["step_images_per_s"]
        return values

    def _data_parallel(self) -> dict[str, float]:
        """Spread across ranks, the communication-free ceiling and the all-reduce's bus bandwidth.

        Bus bandwidth follows nccl-tests: an all-reduce of S bytes over n ranks moves 2(n-1)/n x S through each
        rank's link, so S / time x 2(n-1)/n is comparable across rank counts; with one rank nothing moves (None).
        """
        values: dict[str, float] = {}
        rank_medians = [statistics.median(samples) for samples in self.rank_samples_ms if samples]
        if rank_medians:
            values["rank_median_p50_ms"], values["rank_median_p95_ms"] = (
                float(value) for value in np.percentile(rank_medians, [50, 95]))
        if self.no_sync_samples_ms:
            no_sync = statistics.median(self.no_sync_samples_ms)
            values["no_sync_median_ms"] = no_sync
            values["communication_share"] = max(0.0, 1 - no_sync / statistics.median(self.samples_ms))
        ranks = self.config.world_size
        if self.allreduce_samples_ms and self.allreduce_bytes:
            seconds = statistics.median(self.allreduce_samples_ms) / 1e3
            values["allreduce_median_ms"] = seconds * 1e3
            if ranks > 1:
                values["allreduce_bus_gb_per_s"] = self.allreduce_bytes / seconds * 2 * (ranks - 1) / ranks / 1e9
        return values

    def to_dict(self) -> dict[str, Any]:
        stored = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "config"}
        stored["samples_ms"] = list(self.samples_ms)
        stored["process_sample_counts"] = list(self.process_sample_counts)
        stored["rank_samples_ms"] = [list(samples) for samples in self.rank_samples_ms]
        stored["no_sync_samples_ms"] = list(self.no_sync_samples_ms)
        stored["allreduce_samples_ms"] = list(self.allreduce_samples_ms)
        stored["step_samples_ms"] = list(self.step_samples_ms)
        stored["pipeline_samples_ms"] = list(self.pipeline_samples_ms)
        return {**self.config.to_dict(), **stored, **asdict(self.derived)}

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> Result:
        """Rebuild from a run file's entry; derived figures in it are ignored and recomputed."""
        sequences = ("config", "samples_ms", "process_sample_counts", "rank_samples_ms", "no_sync_samples_ms",
                     "allreduce_samples_ms", "step_samples_ms", "pipeline_samples_ms")
        stored = {f.name: values[f.name] for f in fields(cls) if f.name not in sequences and f.name in values}

        def floats(key: str) -> tuple[float, ...]:
            return tuple(float(v) for v in values.get(key) or ())

        return cls(config=Config.from_dict(values), samples_ms=floats("samples_ms"),
                   process_sample_counts=tuple(int(v) for v in values.get("process_sample_counts") or ()),
                   rank_samples_ms=tuple(tuple(float(v) for v in rank) for rank in values.get("rank_samples_ms") or ()),
                   no_sync_samples_ms=floats("no_sync_samples_ms"), allreduce_samples_ms=floats("allreduce_samples_ms"),
                   step_samples_ms=floats("step_samples_ms"), pipeline_samples_ms=floats("pipeline_samples_ms"),
                   **stored)


@dataclass
class Run:
    """A run file's contents: the environment, the configurations planned, and the results so far, in order.

    ``planned`` lets an interrupted run be resumed without retyping its command.
    """

    environment: dict[str, Any]
    results: list[Result]
    path: Path | None = None
    planned: list[Config] = field(default_factory=list)
    # As the file states them: a file written by an older version keeps its own descriptions.
    modes: dict[str, str] = field(default_factory=lambda: {name: mode.description for name, mode in MODES.items()})
    timings: dict[str, str] = field(default_factory=lambda: {name: method.description
                                                             for name, method in TIMING_METHODS.items()})
    flop_convention: str = FLOP_CONVENTION

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema": SCHEMA,
            "environment": self.environment,
            "flop_convention": self.flop_convention,
            "modes": self.modes,
            "timings": self.timings,
            "planned": [config.to_dict() for config in self.planned],
            "results": [result.to_dict() for result in self.results],
        }


def write_run(path: Path, run: Run) -> None:
    """Write atomically: a reader (or a crash) sees the previous complete file or the new one, never half."""
    text = json.dumps(run.to_dict(), indent=1, allow_nan=False, default=_json_default)
    atomic_write_text(Path(path), text + "\n")


def _json_default(value: Any) -> Any:
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def results_path(path: Path | str) -> Path:
    """The results file of a run folder, or the path itself when it names a file."""
    path = Path(path)
    return path / RUN_FILE_NAME if path.is_dir() else path


def read_run(path: Path | str) -> Run:
    """Read a run file (or a run folder holding ``results.json``) of any readable schema, migrated to this one;
    ``RunFileError`` says what is wrong with it."""
    path = results_path(path)
    if not path.exists():
        raise RunFileError(f"no results file at {path}")
    try:
        text = path.read_text()
        document = json.loads(text)
    except OSError as error:
        raise RunFileError(f"cannot read {path}: {error.strerror or error}") from None
    except UnicodeDecodeError:
        raise RunFileError(f"{path} is not a results file (not text)") from None
    except json.JSONDecodeError as error:
        truncated = "truncated" if error.pos >= len(text.rstrip()) else "not valid JSON"
        raise RunFileError(f"{path} is {truncated} (line {error.lineno}, column {error.colno})") from None
    if not isinstance(document, dict) or "schema" not in document:
        raise RunFileError(f"{path} is JSON but not a results file (no 'schema' key)")
    if document["schema"] not in READABLE_SCHEMAS:
        raise RunFileError(f"{path} has schema {document['schema']!r}; this version reads schemas "
                           f"{', '.join(map(str, READABLE_SCHEMAS))}")
    try:
        document = _migrated(document)
        results = [Result.from_dict(entry) for entry in document["results"]]
        environment = dict(document["environment"])
        modes = dict(document.get("modes") or {name: mode.description for name, mode in MODES.items()})
        timings = dict(document["timings"])
        flop_convention = str(document.get("flop_convention") or FLOP_CONVENTION)
        planned = [Config.from_dict(entry) for entry in document.get("planned") or ()]
    except (KeyError, TypeError, ValueError) as error:
        raise RunFileError(f"{path} has a malformed result: {error}") from None
    return Run(environment=environment, results=results, path=path, planned=planned, modes=modes, timings=timings,
               flop_convention=flop_convention)


def _migrated(document: dict[str, Any]) -> dict[str, Any]:
    """A run file's document in this schema's terms, each older schema brought one step forward."""
    if document["schema"] == 1:
        document = {**document, "schema": 2, "results": [_from_schema_1(entry) for entry in document["results"]]}
    if document["schema"] == 2:
        document = _from_schema_2(document)
    if document["schema"] == 3:
        # Schema 4 adds where a step's batch comes from (``data``, ``images``, ``workers``, ``autotune``,
        # ``lighting``); every schema-3 configuration timed one fixed batch, the defaults. The number changes so
        # that an older reader refuses a file whose configurations it would take for synthetic ones.
        document = {**document, "schema": 4}
    return document


def _from_schema_2(document: dict[str, Any]) -> dict[str, Any]:
    """A schema-2 document in schema 3's terms: schema 2 knew one way of timing, steady-state steps after burn-in,
    which schema 3 names in every configuration (``timing``) and describes beside the modes (``timings``)."""
    steady = {"timing": "steady"}
    return {**document, "schema": 3, "results": [{**entry, **steady} for entry in document["results"]],
            "planned": [{**entry, **steady} for entry in document.get("planned") or ()],
            "timings": {"steady": TIMING_METHODS["steady"].description}}


def _from_schema_1(entry: dict[str, Any]) -> dict[str, Any]:
    """A schema-1 result entry in schema 2's terms.

    Schema 1 kept each process's median rather than its sample count; the counts are recovered when the pooled
    samples split evenly into chunks whose medians are exactly the stored ones, else the samples count as one
    process. Its ``extra`` becomes ``settings``; ``flops_per_step`` was stored under the 3x-forward convention,
    which the file's own ``flop_convention`` states.
    """
    entry = dict(entry)
    entry["settings"] = entry.pop("extra", None) or {}
    medians = entry.pop("process_medians_ms", None) or []
    samples = entry.get("samples_ms") or []
    if len(medians) > 1 and len(samples) % len(medians) == 0:
        size = len(samples) // len(medians)
        chunks = [samples[i:i + size] for i in range(0, len(samples), size)]
        if [statistics.median(chunk) for chunk in chunks] == medians:
            entry["process_sample_counts"] = [size] * len(medians)
    return entry
