"""Runs configurations in fresh worker processes and saves the run file after every process.

With ``repeats``, a configuration's processes are spread over the run in rounds (every configuration's first
process, then every second one, ...), so a machine that drifts during a run shows the drift as spread between
each configuration's processes, and every configuration, whichever framework, meets the same drift.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from bench.config import Config
from bench.environment import host_environment, now_utc
from bench.record import Result, Run, config_counts, write_run

if TYPE_CHECKING:
    from bench.data_parallel import Cluster

DEFAULT_TIMEOUT_S = 900.0
WORKER_COMMAND: tuple[str, ...] = (sys.executable, "-m", "bench.worker")


class Observer(Protocol):
    """Receives a run's events, e.g. to draw live progress. Every method is optional to act on."""

    def on_start(self, index: int, config: Config) -> None:
        """A worker process for configuration ``index`` starts (once per repeat)."""

    def on_progress(self, index: int, phase: str, done: int, total: int) -> None: ...

    def on_result(self, index: int, result: Result) -> None:
        """Configuration ``index`` is final: every repeat done, or it failed, was skipped or interrupted."""

    def on_message(self, text: str) -> None:
        """A line worth showing about the run as a whole (optional)."""


def expand(
    models: Iterable[str],
    frameworks: Iterable[str],
    devices: Iterable[str],
    modes: Iterable[str],
    batch_sizes: Iterable[int],
    precisions: Iterable[str] = ("fp32",),
    *,
    compile: bool = False,
    channels_last: bool = False,
    threads: int | None = None,
    warmup: int = 10,
    iters: int = 100,
    max_time_s: float | None = None,
    repeats: int = 1,
    replicas: Iterable[int | None] = (None,),
    nodes: int = 1,
) -> list[Config]:
    """The cross product of the choices, one ``Config`` each, grouped by model, then device, then framework;
    replica counts innermost, so a scaling series runs (and is listed) together."""
    return [
        Config(model=model, framework=framework, device=device, mode=mode, batch_size=batch, precision=precision,
               compile=compile, channels_last=channels_last, threads=threads, warmup=warmup, iters=iters,
               max_time_s=max_time_s, repeats=repeats, replicas=count, nodes=nodes if count is not None else 1)
        for model, device, framework, precision, batch, mode, count in itertools.product(
            models, devices, frameworks, precisions, batch_sizes, modes, replicas
        )
    ]


def _signal_reason(returncode: int) -> str:
    try:
        name = signal.Signals(-returncode).name
    except ValueError:
        name = f"signal {-returncode}"
    hint = " (out of memory?)" if name == "SIGKILL" else ""
    return f"worker killed by {name}{hint}"


@dataclass
class _WorkerReport:
    """What one worker said before it ended or was ended."""

    samples_ms: list[float] = field(default_factory=list)  # streamed with progress
    burn_in: dict[str, Any] = field(default_factory=dict)
    outcome: dict[str, Any] | None = None  # the final result message


def run_worker(
    config: Config,
    timeout_s: float,
    observer: Observer | None = None,
    index: int = 0,
    worker_command: tuple[str, ...] = WORKER_COMMAND,
    cwd: Path | None = None,
    environment: dict[str, str] | None = None,
) -> tuple[Result, dict]:
    """Run one process of ``config``; returns its result and the facts it reported (framework, device).

    ``worker_command`` (followed by the configuration as JSON), ``cwd`` and ``environment`` (added to this
    process's) say which interpreter and which source tree measure: the interleaved comparison runs two.

    A crash, kill or timeout becomes a ``failed`` result, keeping the samples the worker streamed before the
    end (``partial``). Ctrl-C (or SIGTERM turned into ``Interrupted``) ends the worker and raises
    ``WorkerInterrupted`` carrying the ``interrupted`` result with those samples. The worker runs in its own
    process group, which is killed whole, so no compile helper outlives it.
    """
    process = subprocess.Popen(
        [*worker_command, json.dumps(config.to_dict())],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        encoding="utf-8",
        errors="replace",  # one undecodable byte from a framework's log must never stall the run
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": os.environ.get("TF_CPP_MIN_LOG_LEVEL", "2"), **(environment or {})},
        cwd=cwd,
        start_new_session=True,  # its own process group: Ctrl-C reaches only us, and a kill reaches all of it
    )
    messages: queue.Queue = queue.Queue()
    stderr_tail: deque[str] = deque(maxlen=40)

    def read_stdout() -> None:
        for line in process.stdout:
            messages.put(line)
        messages.put(None)

    def read_stderr() -> None:
        for line in process.stderr:
            stderr_tail.append(line.rstrip())

    readers = [threading.Thread(target=read_stdout, daemon=True), threading.Thread(target=read_stderr, daemon=True)]
    for reader in readers:
        reader.start()

    report = _WorkerReport()

    def handle(line: str) -> None:
        try:
            message = json.loads(line)
        except json.JSONDecodeError:
            return
        event = message.get("event")
        if event == "progress":
            report.samples_ms.extend(float(value) for value in message.get("samples") or ())
            if observer is not None:
                observer.on_progress(index, message["phase"], message["done"], message["total"])
        elif event == "burn_in":
            report.burn_in = message
        elif event == "result":
            report.outcome = message

    deadline = time.monotonic() + timeout_s
    reason: str | None = None
    interrupted: KeyboardInterrupt | None = None
    try:
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                reason = f"timed out after {timeout_s:g} s (--timeout)"
                break
            try:
                line = messages.get(timeout=min(remaining, 1.0))
            except queue.Empty:
                continue
            if line is None:
                break
            handle(line)
    except KeyboardInterrupt as stop:
        interrupted = stop
    finally:
        if process.poll() is None and report.outcome is None:
            _kill(process)
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            _kill(process)
            process.wait()
        for reader in readers:
            reader.join(timeout=5)
    while not messages.empty():  # what arrived between the interrupt and the kill
        line = messages.get_nowait()
        if line is not None:
            handle(line)

    counts = config_counts(config)
    facts = {key: (report.outcome or {}).get(key) or {} for key in ("framework", "device")}
    if report.outcome is not None:  # the worker finished, even if the run is being stopped
        outcome = report.outcome
        samples = outcome.get("samples_ms") or report.samples_ms
        status = outcome["status"]
        result = Result(
            config=config, status=status, reason=outcome.get("reason"),
            partial=status != "ok" and bool(samples), samples_ms=tuple(samples),
            first_step_ms=outcome.get("first_step_ms", report.burn_in.get("first_step_ms")),
            peak_memory_bytes=outcome.get("peak_memory_bytes"),
            burn_in_peak_memory_bytes=outcome.get("burn_in_peak_memory_bytes",
                                                  report.burn_in.get("burn_in_peak_memory_bytes")),
            capped=bool(outcome.get("capped")), settings=outcome.get("settings") or {}, **counts,
        )
    else:
        status = "failed"
        if interrupted is not None:
            status = "interrupted"
            reason = f"interrupted by {getattr(interrupted, 'signal_name', 'SIGINT')} while this configuration ran"
        elif reason is None:
            if process.returncode is not None and process.returncode < 0:
                reason = _signal_reason(process.returncode)
            else:
                last = next((line for line in reversed(stderr_tail) if line.strip()), "no output")
                reason = f"worker exited with code {process.returncode}: {last[:300]}"
        result = Result(
            config=config, status=status, reason=f"{config.framework}: {reason}", partial=bool(report.samples_ms),
            samples_ms=tuple(report.samples_ms), first_step_ms=report.burn_in.get("first_step_ms"),
            burn_in_peak_memory_bytes=report.burn_in.get("burn_in_peak_memory_bytes"), **counts,
        )
    if interrupted is not None:
        raise WorkerInterrupted(result, getattr(interrupted, "signal_number", signal.SIGINT))
    return result, facts


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


def _kill(process: subprocess.Popen) -> None:
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


class Interrupted(KeyboardInterrupt):
    """The run was stopped by Ctrl-C or SIGTERM; ``signal_number`` says which (for the exit code)."""

    def __init__(self, signal_number: int = signal.SIGINT) -> None:
        self.signal_number = int(signal_number)
        self.signal_name = signal.Signals(signal_number).name
        super().__init__(self.signal_name)


class WorkerInterrupted(Interrupted):
    """Raised by ``run_worker`` when the run is stopped mid-configuration; ``result`` keeps what was measured."""

    def __init__(self, result: Result, signal_number: int = signal.SIGINT) -> None:
        super().__init__(signal_number)
        self.result = result


@contextlib.contextmanager
def interrupt_on_sigterm() -> Iterator[None]:
    """Turn SIGTERM into ``Interrupted`` while the block runs, so a terminated run ends its worker's process
    group and saves what it measured, exactly as Ctrl-C does."""

    def handler(signal_number: int, _frame: object) -> None:
        raise Interrupted(signal_number)

    try:
        previous = signal.signal(signal.SIGTERM, handler)
    except ValueError:  # not the main thread: signals cannot be handled here, nothing to change
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


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
        reason = self._skip_reasons.get(_skip_key(config))
        if reason is None:
            return None
        return Result(config=config, status="skipped", reason=reason, **config_counts(config))

    def record(self, index: int, result: Result, facts: dict | None = None) -> Result | None:
        """Add one process's result and save; returns the configuration's final result once it has one."""
        config = self.configs[index]
        if result.status == "skipped":
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
                    worker_command: tuple[str, ...] = WORKER_COMMAND, cwd: Path | None = None,
                    environment: dict[str, str] | None = None, cluster: Cluster | None = None,
                    repeat: int = 0) -> Result | None:
    """Run (or, for a combination already known to be skipped, skip) one process of configuration ``index`` and
    record it; returns the configuration's final result once it has one. An interrupt is recorded, then raised."""
    config = recorder.configs[index]
    if observer is not None:
        observer.on_start(index, config)
    skipped = recorder.known_skip(config)
    if skipped is not None:
        return recorder.record(index, skipped)
    try:
        if config.replicas is not None:
            from bench.data_parallel import Cluster, run_replicas

            result, facts = run_replicas(config, timeout_s, cluster or Cluster(), observer, index,
                                         run_id=f"{index}-{repeat}")
        else:
            result, facts = run_worker(config, timeout_s, observer, index, worker_command, cwd, environment)
    except WorkerInterrupted as stop:
        recorder.record(index, stop.result)
        raise
    return recorder.record(index, result, facts)


def run_configs(
    configs: list[Config],
    out_path: Path | None,
    *,
    timeout_s: float = DEFAULT_TIMEOUT_S,
    observer: Observer | None = None,
    threads: int | None = None,
    worker_command: tuple[str, ...] = WORKER_COMMAND,
    measure_peaks: bool = True,
    resume: Run | None = None,
    cluster: Cluster | None = None,
) -> Run:
    """Run every configuration, rewriting ``out_path`` after each worker process, so nothing measured is lost.

    Results are in the order of ``configs``. With ``resume`` (a run read from disk), its ``ok`` results for the
    same configurations are kept and only the others run. A configuration still being measured when the run
    stops is saved as ``interrupted`` with the processes it had. Data-parallel configurations (``replicas``)
    run their ranks on ``cluster``; a machine other than its node 0 takes part but writes no run file
    (``out_path`` None). At the end, with ``measure_peaks``, each result
    gets the device's matmul peak (measured with every installed framework, cached) and so its MFU.
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
        environment["cluster"] = {"hosts": [f"{host}:{port}" for host, port in cluster.hosts],
                                  "node_rank": cluster.node_rank}
    recorder = RunRecorder(configs, out_path, environment, kept)
    try:
        for repeat in range(max((config.repeats for config in configs), default=0)):
            for index in range(len(configs)):
                if recorder.needs(index, repeat):
                    final = measure_process(recorder, index, timeout_s, observer, worker_command, cluster=cluster,
                                            repeat=repeat)
                    if final is not None and observer is not None:
                        observer.on_result(index, final)
    finally:
        recorder.finish()
    run = recorder.run
    if measure_peaks and out_path is not None and any(result.status == "ok" for result in run.results):
        from bench.peak import attach_peaks

        if observer is not None and hasattr(observer, "on_message"):
            observer.on_message("measuring the matmul peak of each device for MFU, with every installed framework "
                                "(cached after the first time)")
        attach_peaks(run, threads)
        write_run(run.path, run)
    return run
