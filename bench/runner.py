"""Runs configurations one by one, each in a fresh worker process, and saves the run file after each one."""

from __future__ import annotations

import itertools
import json
import os
import queue
import signal
import statistics
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import Iterable
from dataclasses import asdict, replace
from pathlib import Path
from typing import Protocol

import zoo
from bench.environment import host_environment, now_utc
from bench.record import Config, Result, Run, write_run

DEFAULT_TIMEOUT_S = 900.0


class Observer(Protocol):
    """Receives a run's events, e.g. to draw live progress. Every method is optional to act on."""

    def on_start(self, index: int, config: Config) -> None: ...

    def on_progress(self, index: int, phase: str, done: int, total: int) -> None: ...

    def on_result(self, index: int, result: Result) -> None: ...


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
) -> list[Config]:
    """The cross product of the choices, one ``Config`` each, grouped by model, then device, then framework."""
    return [
        Config(model, framework, device, mode, batch, precision, compile, channels_last, threads, warmup, iters,
               max_time_s, repeats)
        for model, device, framework, precision, batch, mode in itertools.product(
            models, devices, frameworks, precisions, batch_sizes, modes
        )
    ]


def _signal_reason(returncode: int) -> str:
    try:
        name = signal.Signals(-returncode).name
    except ValueError:
        name = f"signal {-returncode}"
    hint = " (out of memory?)" if name == "SIGKILL" else ""
    return f"worker killed by {name}{hint}"


WORKER_COMMAND: tuple[str, ...] = (sys.executable, "-m", "bench.worker")


def run_worker(
    config: Config,
    timeout_s: float,
    observer: Observer | None = None,
    index: int = 0,
    worker_command: tuple[str, ...] = WORKER_COMMAND,
) -> tuple[Result, dict]:
    """Run one configuration in a fresh process; a crash, kill or timeout becomes a ``failed`` result.

    ``worker_command`` is followed by the configuration as JSON; returns the result and the worker's
    framework environment.
    """
    environment = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": os.environ.get("TF_CPP_MIN_LOG_LEVEL", "2")}
    process = subprocess.Popen(
        [*worker_command, json.dumps(asdict(config))],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=environment,
        start_new_session=True,  # so a timeout can kill the worker's own children (compile workers) too
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

    deadline = time.monotonic() + timeout_s
    outcome: dict | None = None
    reason: str | None = None
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
            try:
                message = json.loads(line)
            except json.JSONDecodeError:
                continue
            if message.get("event") == "progress" and observer is not None:
                observer.on_progress(index, message["phase"], message["done"], message["total"])
            elif message.get("event") == "result":
                outcome = message
    finally:
        if process.poll() is None and outcome is None:
            _kill(process)
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            _kill(process)
            process.wait()
        for reader in readers:
            reader.join(timeout=5)

    macs = zoo.get_spec(config.model).macs
    if outcome is not None:
        fields = {key: outcome[key] for key in ("status", "reason", "first_step_ms", "peak_memory_bytes", "capped",
                                                "extra") if key in outcome}
        result = Result(config=config, samples_ms=tuple(outcome.get("samples_ms") or ()), macs_per_image=macs,
                        **fields)
        return result, outcome.get("environment") or {}
    if reason is None:
        if process.returncode is not None and process.returncode < 0:
            reason = _signal_reason(process.returncode)
        else:
            last = next((line for line in reversed(stderr_tail) if line.strip()), "no output")
            reason = f"worker exited with code {process.returncode}: {last[:300]}"
    return Result(config=config, status="failed", reason=f"{config.framework}: {reason}", macs_per_image=macs), {}


def run_configuration(
    config: Config,
    timeout_s: float,
    observer: Observer | None = None,
    index: int = 0,
    worker_command: tuple[str, ...] = WORKER_COMMAND,
) -> tuple[Result, dict]:
    """Run ``config`` in ``config.repeats`` fresh worker processes, one after the other, and pool the samples.

    Each process's median is kept as well: processes differ (memory placement, thread scheduling, library
    choices made at start-up) by more than the samples inside one process vary, and only several processes
    show it. A repeat that fails makes the result failed, keeping the samples measured before it.
    """
    measured: list[Result] = []
    environment: dict = {}
    for repeat in range(config.repeats):
        result, worker_environment = run_worker(config, timeout_s, observer, index, worker_command)
        environment = environment or worker_environment
        if result.status != "ok":
            if config.repeats == 1 or not measured:
                return result, environment
            return replace(
                result,
                reason=f"{config.framework}: repeat {repeat + 1} of {config.repeats}: "
                f"{(result.reason or '').removeprefix(f'{config.framework}: ')}",
                samples_ms=tuple(sample for done in measured for sample in done.samples_ms),
                process_medians_ms=tuple(statistics.median(done.samples_ms) for done in measured),
            ), environment
        measured.append(result)
    if config.repeats == 1:
        return measured[0], environment
    first = measured[0]
    return replace(
        first,
        samples_ms=tuple(sample for done in measured for sample in done.samples_ms),
        process_medians_ms=tuple(statistics.median(done.samples_ms) for done in measured),
        capped=any(done.capped for done in measured),
        peak_memory_bytes=max((done.peak_memory_bytes or 0) for done in measured) or None,
    ), environment


def _kill(process: subprocess.Popen) -> None:
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def run_configs(
    configs: list[Config],
    out_path: Path,
    *,
    timeout_s: float = DEFAULT_TIMEOUT_S,
    observer: Observer | None = None,
    threads: int | None = None,
    worker_command: tuple[str, ...] = WORKER_COMMAND,
) -> Run:
    """Run every configuration in order, rewriting ``out_path`` after each, so a crash or Ctrl-C loses nothing."""
    run = Run(environment=host_environment(threads), results=[], path=Path(out_path))
    write_run(run.path, run)
    # A backend skips for reasons of framework, device, precision and layout alone (a missing GPU, fp16 on a
    # CPU), so one worker's answer holds for every configuration sharing those.
    skip_reasons: dict[tuple, str] = {}
    try:
        for index, config in enumerate(configs):
            if observer is not None:
                observer.on_start(index, config)
            skip_key = (config.framework, config.device, config.precision, config.channels_last)
            if skip_key in skip_reasons:
                result = Result(config=config, status="skipped", reason=skip_reasons[skip_key],
                                macs_per_image=zoo.get_spec(config.model).macs)
                framework_environment = {}
            else:
                result, framework_environment = run_configuration(config, timeout_s, observer, index, worker_command)
                if result.status == "skipped":
                    skip_reasons[skip_key] = result.reason
            if framework_environment:
                run.environment["frameworks"].setdefault(config.framework, {}).update(framework_environment)
            run.results.append(result)
            run.environment["finished_at"] = now_utc()
            write_run(run.path, run)
            if observer is not None:
                observer.on_result(index, result)
    finally:
        run.environment["finished_at"] = now_utc()
        write_run(run.path, run)
    return run
