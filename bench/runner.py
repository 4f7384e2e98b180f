"""Runs configurations in fresh processes, in rounds, and saves the run file after every process.

Each process of a configuration is a worker (``bench.worker``) or, for a data-parallel configuration, its ranks
(``bench.data_parallel``), both supervised by ``bench.supervisor``. With ``repeats``, a configuration's processes
are spread over the run in rounds (every configuration's first process, then every second one, ...), so a machine
that drifts during a run shows the drift as spread between each configuration's processes, and every
configuration, whichever framework, meets the same drift. Several runs can be measured in the same rounds, their
processes alternating (``bench.interleave``).
"""

from __future__ import annotations

import json
import statistics
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Protocol

from bench.config import Config
from bench.data_parallel import run_replicas
from bench.engines import get_engine
from bench.environment import host_environment, now_utc
from bench.launchers import Cluster
from bench.peak import attach_peaks
from bench.protocol import PIPELINE, STEP_ONLY, TIMED, Message, Progress
from bench.record import Result, Run, config_counts, write_run
from bench.supervisor import ChildReports, Ending, Interrupted, Launch, supervise

DEFAULT_TIMEOUT_S = 900.0
WORKER_PROGRAM: tuple[str, ...] = ("-m", "bench.worker")


class Observer(Protocol):
    """Receives a run's events, e.g. to draw live progress. Every method is optional to act on."""

    def on_start(self, index: int, config: Config) -> None:
        """A process for configuration ``index`` starts (once per repeat)."""

    def on_progress(self, index: int, phase: str, done: int, total: int) -> None: ...

    def on_result(self, index: int, result: Result) -> None:
        """Configuration ``index`` is final: every repeat done, or it failed, was skipped or interrupted."""

    def on_message(self, text: str) -> None:
        """A line worth showing about the run as a whole (optional)."""


@dataclass(frozen=True)
class Source:
    """Where a run's workers come from: the command that starts one (the configuration's JSON is appended), the
    folder it runs in, and what it adds to the environment. By default this interpreter and this source tree; an
    interleaved comparison measures two."""

    worker_command: tuple[str, ...] = (sys.executable, *WORKER_PROGRAM)
    cwd: Path | None = None
    environment: dict[str, str] = field(default_factory=dict)


class ConfigurationInterrupted(Interrupted):
    """The run was stopped while a configuration ran; ``result`` keeps what it had measured (``interrupted``)."""

    def __init__(self, result: Result, stop: Interrupted) -> None:
        super().__init__(stop.signal_number)
        self.result = result


def run_worker(config: Config, timeout_s: float, observer: Observer | None = None, index: int = 0,
               source: Source = Source()) -> tuple[Result, dict, Interrupted | None]:
    """Run one worker process of ``config``; returns its result, the facts it reported (framework, device), and
    the interrupt that stopped it, if one did.

    A crash, kill or timeout becomes a ``failed`` result, keeping the samples the worker streamed before the end
    (``partial``); an interrupt an ``interrupted`` one with those samples.
    """
    reports = ChildReports()

    def on_message(message: Message) -> None:
        reports.record(message)
        if observer is not None and isinstance(message, Progress):
            observer.on_progress(index, message.phase, message.done, message.total)

    launch = Launch((*source.worker_command, json.dumps(config.to_dict())), dict(source.environment), source.cwd)
    ending = supervise([launch], timeout_s, on_message)
    return worker_result(config, reports, ending, timeout_s), _facts(reports), ending.interrupted


def _facts(reports: ChildReports) -> dict:
    outcome = next((report.outcome for report in reports.ordered() if report.outcome is not None), None)
    return {"framework": outcome.framework, "device": outcome.device} if outcome is not None else {}


def worker_result(config: Config, reports: ChildReports, ending: Ending, timeout_s: float) -> Result:
    """The result of one worker process from what it said and how it ended."""
    report = reports.by_rank.get(0)
    samples = tuple(report.samples.get(TIMED, ())) if report is not None else ()
    phases = {"step_samples_ms": tuple(report.samples.get(STEP_ONLY, ())) if report is not None else (),
              "pipeline_samples_ms": tuple(report.samples.get(PIPELINE, ())) if report is not None else ()}
    burn_in = report.burn_in if report is not None else None
    counts = config_counts(config)
    outcome = report.outcome if report is not None else None
    if outcome is not None and outcome.status == "failed" and (ending.interrupted or ending.timed_out):
        # A failure reported while its processes were being ended is the ending's consequence (a DataLoader
        # whose workers the session's SIGTERM reached first), not the configuration's.
        outcome = None
    if outcome is not None:  # the worker finished, even if the run is being stopped
        reason = outcome.reason
        if outcome.status == "failed":
            reason = f"{config.framework}: {reason}"
        return Result(config=config, status=outcome.status, reason=reason,
                      partial=outcome.status != "ok" and bool(samples), samples_ms=samples,
                      first_step_ms=outcome.first_step_ms, peak_memory_bytes=outcome.peak_memory_bytes,
                      burn_in_peak_memory_bytes=outcome.burn_in_peak_memory_bytes, capped=outcome.capped,
                      device_busy=outcome.device_busy, settings=dict(outcome.settings),
                      first_batch_ms=outcome.first_batch_ms, cpu_seconds_per_image=outcome.cpu_seconds_per_image,
                      **phases, **counts)
    if ending.interrupted is not None:
        status, reason = "interrupted", f"interrupted by {ending.interrupted.signal_name} while this configuration ran"
    elif ending.timed_out:
        status, reason = "failed", f"timed out after {timeout_s:g} s (--timeout)"
    else:
        status, reason = "failed", f"worker {ending.reason(0)}"
    return Result(config=config, status=status, reason=f"{config.framework}: {reason}", partial=bool(samples),
                  samples_ms=samples, first_step_ms=burn_in.first_step_ms if burn_in else None,
                  burn_in_peak_memory_bytes=burn_in.burn_in_peak_memory_bytes if burn_in else None, **phases, **counts)


def combine_processes(config: Config, processes: list[Result]) -> Result:
    """One result for a configuration from the worker processes run for it so far, in order.

    All ``config.repeats`` processes ok: ``ok``, samples pooled with each process's count kept. A process that
    did not end ok ends the configuration with its status, keeping every sample taken (``partial``). Fewer ok
    processes than planned (the run stopped between two of them): ``interrupted``.
    """
    last = processes[-1]
    if last.status == "skipped" or (config.repeats == 1 and len(processes) == 1):
        return last
    samples = tuple(sample for process in processes for sample in process.samples_ms)
    counts = tuple(len(process.samples_ms) for process in processes if process.samples_ms)
    measured = replace(
        last,
        samples_ms=samples,
        process_sample_counts=counts if len(counts) > 1 else (),
        capped=any(process.capped for process in processes),
        first_step_ms=processes[0].first_step_ms,
        peak_memory_bytes=max((p.peak_memory_bytes for p in processes if p.peak_memory_bytes), default=None),
        burn_in_peak_memory_bytes=max((p.burn_in_peak_memory_bytes for p in processes
                                       if p.burn_in_peak_memory_bytes), default=None),
        settings=processes[0].settings or last.settings,
        device_busy=statistics.median(busy) if (busy := [p.device_busy for p in processes
                                                         if p.device_busy is not None]) else None,
        step_samples_ms=tuple(sample for process in processes for sample in process.step_samples_ms),
        pipeline_samples_ms=tuple(sample for process in processes for sample in process.pipeline_samples_ms),
        first_batch_ms=processes[0].first_batch_ms,
        cpu_seconds_per_image=statistics.median(cpu) if (cpu := [p.cpu_seconds_per_image for p in processes
                                                                 if p.cpu_seconds_per_image is not None]) else None,
    )
    if last.status == "ok" and len(processes) == config.repeats:
        return measured
    prefix = f"{config.framework}: "
    if last.status == "ok":
        return replace(measured, status="interrupted", partial=True,
                       reason=f"{prefix}{len(processes)} of {config.repeats} processes measured before the run stopped")
    return replace(measured, partial=bool(samples),
                   reason=f"{prefix}process {len(processes)} of {config.repeats}: "
                          f"{(last.reason or '').removeprefix(prefix)}")


def _skip_key(config: Config) -> tuple:
    # A backend skips for reasons of framework, device, precision and layout alone (a missing GPU, fp16 on a
    # CPU), so one worker's answer holds for every configuration sharing those.
    return config.framework, config.device, config.precision, config.channels_last


class RunRecorder:
    """One run in progress: each configuration's processes so far, the run file rewritten after every process.

    Results are in the order of ``configs``; a configuration still being measured is saved as what it would be
    if the run stopped there (``combine_processes``: ``interrupted``, with the processes it had).
    """

    def __init__(self, configs: list[Config], path: Path | None, environment: dict,
                 kept: dict[int, Result] | None = None) -> None:
        self.configs = configs
        self.run = Run(environment=environment, results=[], path=Path(path) if path is not None else None,
                       planned=list(configs))
        self._final: dict[int, Result] = dict(kept or {})
        self._processes: dict[int, list[Result]] = {}
        self._skip_reasons: dict[tuple, str] = {}
        self.save()

    def needs(self, index: int, repeat: int) -> bool:
        """Whether configuration ``index`` still needs its process number ``repeat`` (0-based)."""
        return index not in self._final and repeat < self.configs[index].repeats

    def known_skip(self, config: Config) -> Result | None:
        """A ``skipped`` result for ``config`` without starting a process: what the engine table refuses, or what a
        worker already skipped for the same framework, device, precision and layout."""
        reason = get_engine(config.framework).refusal(config) or self._skip_reasons.get(_skip_key(config))
        if reason is None:
            return None
        return Result(config=config, status="skipped", reason=reason, **config_counts(config))

    def record(self, index: int, result: Result, facts: dict | None = None) -> Result | None:
        """Add one process's result and save; returns the configuration's final result once it has one."""
        config = self.configs[index]
        # Only a worker's skip holds for its framework, device, precision and layout; the table's refusals depend
        # on more (the mode, the replicas) and are asked again of every configuration.
        if result.status == "skipped" and get_engine(config.framework).refusal(config) is None:
            self._skip_reasons[_skip_key(config)] = result.reason
        for key, section in (("framework", "frameworks"), ("device", "devices")):
            if (facts or {}).get(key):
                self.run.environment.setdefault(section, {})[config.framework if key == "framework"
                                                             else config.device] = facts[key]
        self._processes.setdefault(index, []).append(result)
        if result.status != "ok" or len(self._processes[index]) == config.repeats:
            self._final[index] = combine_processes(config, self._processes[index])
        self.run.environment["finished_at"] = now_utc()
        self.save()
        return self._final.get(index)

    def save(self) -> None:
        self.run.results = [
            self._final[index] if index in self._final else combine_processes(self.configs[index],
                                                                              self._processes[index])
            for index in range(len(self.configs)) if index in self._final or self._processes.get(index)
        ]
        if self.run.path is not None:
            write_run(self.run.path, self.run)

    def finish(self) -> None:
        self.run.environment["finished_at"] = now_utc()
        self.save()


def measure_process(recorder: RunRecorder, index: int, timeout_s: float, observer: Observer | None = None,
                    source: Source = Source(), cluster: Cluster | None = None, repeat: int = 0) -> Result | None:
    """Run (or, for a combination known to be skipped, skip) one process of configuration ``index`` and record it;
    returns the configuration's final result once it has one. An interrupt is recorded, then raised
    (``ConfigurationInterrupted``)."""
    config = recorder.configs[index]
    if observer is not None:
        observer.on_start(index, config)
    skipped = recorder.known_skip(config)
    if skipped is not None:
        return recorder.record(index, skipped)
    if config.replicas is not None:
        result, facts, interrupted = run_replicas(config, timeout_s, cluster or Cluster(), observer, index,
                                                  run_id=f"{index}-{repeat}")
    else:
        result, facts, interrupted = run_worker(config, timeout_s, observer, index, source)
    final = recorder.record(index, result, facts)
    if interrupted is not None:
        raise ConfigurationInterrupted(result, interrupted)
    return final


@dataclass
class Lane:
    """One run measured in the rounds: its recorder, where its workers come from, and where its configurations
    start in the observer's numbering (one display can follow several runs)."""

    recorder: RunRecorder
    source: Source = field(default_factory=Source)
    offset: int = 0


def measure_in_rounds(lanes: Sequence[Lane], timeout_s: float, observer: Observer | None = None, *,
                      cluster: Cluster | None = None,
                      order: Callable[[int], Sequence[Lane]] | None = None) -> None:
    """Measure every lane's configurations in rounds: repeat r of every configuration, lanes in ``order(r)``
    (default: as given), before repeat r + 1 of any. Every lane's run file is final when this returns or raises."""
    configs = lanes[0].recorder.configs
    try:
        for repeat in range(max((config.repeats for config in configs), default=0)):
            for index in range(len(configs)):
                for lane in (order(repeat) if order is not None else lanes):
                    if not lane.recorder.needs(index, repeat):
                        continue
                    shifted = _Shifted(observer, lane.offset) if observer is not None else None
                    final = measure_process(lane.recorder, index, timeout_s, shifted, lane.source, cluster, repeat)
                    if final is not None and shifted is not None:
                        shifted.on_result(index, final)
    finally:
        for lane in lanes:
            lane.recorder.finish()


def attach_peaks_to(runs: Sequence[Run], threads: int | None, observer: Observer | None = None) -> None:
    """Give the measured results of each run written to a file the device's matmul peak, and so their MFU."""
    measured = [run for run in runs if run.path is not None and any(r.status == "ok" for r in run.results)]
    if not measured:
        return
    if observer is not None and hasattr(observer, "on_message"):
        observer.on_message("measuring the matmul peak of each device for MFU, with every installed engine that can "
                            "time one (cached after the first time)")
    for run in measured:
        attach_peaks(run, threads)
        write_run(run.path, run)


def run_configs(
    configs: list[Config],
    out_path: Path | None,
    *,
    timeout_s: float = DEFAULT_TIMEOUT_S,
    observer: Observer | None = None,
    threads: int | None = None,
    source: Source = Source(),
    measure_peaks: bool = True,
    resume: Run | None = None,
    cluster: Cluster | None = None,
) -> Run:
    """Run every configuration, rewriting ``out_path`` after each process, so nothing measured is lost.

    Results are in the order of ``configs``. With ``resume`` (a run read from disk), its ``ok`` results for the
    same configurations are kept and only the others run. A configuration still being measured when the run
    stops is saved as ``interrupted`` with the processes it had. Data-parallel configurations (``replicas``)
    run their ranks on ``cluster``; a machine other than its node 0 takes part but writes no run file
    (``out_path`` None). At the end, with ``measure_peaks``, each result gets the device's matmul peak (measured
    with every installed engine that can time one, cached) and so its MFU.
    """
    environment = host_environment(threads)
    kept: dict[int, Result] = {}
    if resume is not None:
        previous = {result.config: result for result in resume.results if result.status == "ok"}
        kept = {index: previous[config] for index, config in enumerate(configs) if config in previous}
        environment = {**resume.environment, "frameworks": dict(resume.environment.get("frameworks") or {}),
                       "devices": dict(resume.environment.get("devices") or {})}
        environment.pop("finished_at", None)
        environment["resumed"] = [*environment.get("resumed", ()), host_environment(threads)]
    if cluster is not None and cluster.hosts:
        environment["cluster"] = cluster.to_dict()
    lane = Lane(RunRecorder(configs, out_path, environment, kept), source)
    measure_in_rounds([lane], timeout_s, observer, cluster=cluster)
    if measure_peaks:
        attach_peaks_to([lane.recorder.run], threads, observer)
    return lane.recorder.run


class _Shifted:
    """An observer seen through an index offset, so one display can follow several runs."""

    def __init__(self, observer: Observer, offset: int) -> None:
        self._observer, self._offset = observer, offset

    def on_start(self, index: int, config: Config) -> None:
        self._observer.on_start(index + self._offset, config)

    def on_progress(self, index: int, phase: str, done: int, total: int) -> None:
        self._observer.on_progress(index + self._offset, phase, done, total)

    def on_result(self, index: int, result: Result) -> None:
        self._observer.on_result(index + self._offset, result)
