"""The one child side: what every measuring process (a worker, a rank) sets up, streams and reports.

Before the framework initialises, the child sets its thread count, takes over its protocol channel and arranges
that SIGTERM (a launcher ending its ranks, the parent ending a configuration) first sends every sample it holds;
then it loads its engine's backend. It streams samples as they are taken (at most every ``PROGRESS_INTERVAL_S``),
closes the burn-in memory window, and turns an exception into an ``Outcome``. ``bench.worker`` and ``bench.rank``
are thin programs over it.
"""

from __future__ import annotations

import math
import os
import re
import resource
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psutil

from bench.backend import Skip
from bench.config import Config
from bench.engines import get_engine, load_backend, load_pipeline
from bench.environment import available_cpus
from bench.modes import get_mode
from bench.pipeline import batches_per_sample, image_set
from bench.protocol import PIPELINE, STEP_ONLY, TIMED, BurnIn, Channel, Outcome, Progress
from bench.timing import RetraceError, Timing, get_timing_method

THREAD_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")
# Progress is sent at most this often, so that reporting cannot crowd the loop on tiny models.
PROGRESS_INTERVAL_S = 0.2


def exit_code_for_signal(signal_number: int) -> int:
    """The exit status of a child that ended on a signal after sending what it held (the shell's convention)."""
    return 128 + int(signal_number)


def exit_now(code: int) -> None:
    """End the process without the interpreter's shutdown, once everything is written.

    Tearing down torch or TensorFlow at exit takes a second or so, during which the parent waits; nothing of that
    teardown is needed once the result is on its way, so the streams are flushed and the process ends.
    """
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


class ProcessMemory:
    """Peak resident memory of this process over a window, for CPU runs where no allocator keeps a peak.

    Linux resets the high-water mark (VmHWM) when "5" is written to /proc/self/clear_refs; where that is not
    possible the window reaches back to the start of the process, and ``window`` says so.
    """

    def __init__(self) -> None:
        self.window = "process peak RSS since start"

    def reset(self) -> None:
        try:
            Path("/proc/self/clear_refs").write_text("5")
            self.window = "process peak RSS in the window"
        except OSError:
            self.window = "process peak RSS since start (the window could not be reset)"

    def peak_bytes(self) -> int:
        try:
            match = re.search(r"^VmHWM:\s+(\d+) kB", Path("/proc/self/status").read_text(), re.MULTILINE)
            if match:
                return int(match.group(1)) * 1024
        except OSError:
            pass
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux reports KiB


class FirstBatch:
    """An iterator of batches that times its first ``next``: how long the pipeline takes to hand out its first
    batch, starting its workers included."""

    def __init__(self, batches: Iterator) -> None:
        self._batches = batches
        self.first_batch_ms: float | None = None

    def __iter__(self) -> FirstBatch:
        return self

    def __next__(self):
        if self.first_batch_ms is not None:
            return next(self._batches)
        start = time.perf_counter()
        batch = next(self._batches)
        self.first_batch_ms = (time.perf_counter() - start) * 1e3
        return batch


class ProcessTreeCpu:
    """CPU seconds (user and system) used by this process and every process under it (a DataLoader's workers)
    since ``start``."""

    def __init__(self) -> None:
        self._start: float | None = None

    @staticmethod
    def _total() -> float:
        me = psutil.Process()
        total = 0.0
        for process in (me, *me.children(recursive=True)):
            try:
                times = process.cpu_times()
            except psutil.Error:  # a worker that has just ended
                continue
            total += times.user + times.system
        return total

    def start(self) -> None:
        self._start = self._total()

    def seconds(self) -> float:
        return self._total() - (self._start or 0.0)


def in_rounds(step: Callable[[], object], rounds: int, *, first_alone: bool) -> Callable[[], object]:
    """``step`` called ``rounds`` times per call; the first call (burn-in's, timed alone as the first step) only
    once when ``first_alone``."""
    if rounds == 1:
        return step
    first = [first_alone]

    def round_of_steps() -> object:
        if first[0]:
            first[0] = False
            return step()
        for _ in range(rounds - 1):
            step()
        return step()

    return round_of_steps


class SampleStream:
    """Progress messages to the parent: every sample once, sent at most every ``PROGRESS_INTERVAL_S`` (and at the
    end of each loop), and everything still held when ``flush`` is called."""

    def __init__(self, channel: Channel, clock: Callable[[], float] = time.monotonic) -> None:
        self._channel, self._clock = channel, clock
        self._lock = threading.Lock()
        self._held: list[float] = []
        self._position: tuple[str, int, int] | None = None
        self._sent_at = -float("inf")

    def on_progress(self, phase: str) -> Callable[[str, int, int, list[float]], None]:
        """A ``time_step`` progress callback whose timed samples are labelled ``phase`` (burn-in stays "warmup")."""

        def report(loop_phase: str, done: int, total: int, samples: list[float]) -> None:
            label = phase if loop_phase == TIMED else loop_phase
            with self._lock:
                if self._position is not None and self._position[0] != label:
                    self._send()  # a new phase: what the previous one holds goes first
                self._held.extend(samples)
                self._position = (label, done, total)
                if done == total or self._clock() - self._sent_at >= PROGRESS_INTERVAL_S:
                    self._send()

        return report

    def flush(self) -> None:
        with self._lock:
            self._send()

    def _send(self) -> None:
        if self._position is None:
            return
        phase, done, total = self._position
        self._channel.send(Progress(phase=phase, done=done, total=total, samples=tuple(self._held)))
        self._held, self._position, self._sent_at = [], None, self._clock()


def send_held_samples_on_sigterm(stream: SampleStream) -> None:
    """On SIGTERM, send what ``stream`` holds, then end with status 128 + SIGTERM.

    Python runs a signal handler only between bytecodes of the main thread, which may be inside a long native
    call (a step, a collective waiting for a dead peer). So the handler's C part only writes to a wakeup pipe, and
    a thread waiting on it sends the samples and ends the process; the framework's own threads keep the signal's
    default mask, so nothing a child starts inherits a blocked signal.
    """
    read_fd, write_fd = os.pipe()
    os.set_blocking(write_fd, False)
    signal.signal(signal.SIGTERM, lambda *_: None)  # the wakeup pipe is written only for a handled signal
    signal.set_wakeup_fd(write_fd, warn_on_full_buffer=False)

    def wait_for_sigterm() -> None:
        while True:
            received = os.read(read_fd, 1)
            if received and received[0] == signal.SIGTERM:
                stream.flush()
                exit_now(exit_code_for_signal(signal.SIGTERM))

    threading.Thread(target=wait_for_sigterm, daemon=True, name="sigterm").start()


def set_threads(threads: int) -> None:
    """Thread counts of every math library, before any of them initialises."""
    for variable in THREAD_VARIABLES:
        os.environ[variable] = str(threads)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


class Child:
    """A measuring process's setup: its channel, sample stream, backend and memory window.

    ``config`` is what the backend runs (a rank's has its own device); ``threads`` is set before the framework
    initialises.
    """

    def __init__(self, config: Config, threads: int, rank: int = 0) -> None:
        set_threads(threads)
        self.config = config
        self.channel = Channel(rank)
        self.stream = SampleStream(self.channel)
        send_held_samples_on_sigterm(self.stream)
        self.backend = load_backend(config.framework)
        self.backend.configure(config, threads)
        self.memory = ProcessMemory()
        self.burn_in: BurnIn | None = None
        self.pipeline = None  # the engine's input pipeline, for data="jpeg", and the images it reads
        self.images_source = ""
        self.first_batch_ms: float | None = None
        self.cpu_seconds_per_image: float | None = None

    def check(self) -> None:
        """Raise ``Skip`` with the reason if the configuration cannot run: what the engine table says it cannot
        run, then what the backend finds missing here (a GPU, bf16 in hardware)."""
        if refusal := get_engine(self.config.framework).refusal(self.config):
            raise Skip(refusal)
        self.backend.check(self.config)

    def start_window(self) -> None:
        """Open a peak-memory window (the device allocator's, or the process's resident memory on a CPU)."""
        self.backend.reset_peak_memory()
        self.memory.reset()

    def peak_memory_bytes(self) -> int:
        device_peak = self.backend.peak_memory_bytes()
        return device_peak if device_peak is not None else self.memory.peak_bytes()

    def end_burn_in(self, first_step_ms: float | None) -> None:
        """Report the burn-in (its first step and memory peak), then open the timed steps' memory window."""
        self.stream.flush()
        self.burn_in = BurnIn(first_step_ms=first_step_ms,
                              burn_in_peak_memory_bytes=self.peak_memory_bytes() if self.config.warmup else None)
        self.channel.send(self.burn_in)
        self.start_window()

    def measure_step(self) -> Timing:
        """Check the configuration can run, prepare its step, and time it the configuration's way (the timed steps'
        memory window open from the start)."""
        self.check()
        if self.config.data != "synthetic":
            return self.measure_fed()
        step = self.backend.prepare(self.config)
        self.start_window()
        return self.time_step(step)

    def measure_fed(self) -> Timing:
        """The input pipeline's configuration: its batches alone (the ``input`` mode); or, for a step of the
        network, three loops in this process: the step alone on a fixed batch (``STEP_ONLY``), the pipeline alone
        (``PIPELINE``), then the step fed from the pipeline (the configuration's samples), each with ``warmup`` and
        ``iters`` counted in steps. The pipeline's workers start in its first loop and serve the next."""
        config, backend = self.config, self.backend
        images = image_set(config.images)
        self.pipeline = load_pipeline(config.framework)(config, images)
        self.images_source = images.source
        rounds = batches_per_sample(config, available_cpus())
        batches = FirstBatch(self.pipeline.batches())
        network = get_mode(config.mode).network
        if network:
            self.time_step(backend.prepare(config), phase=STEP_ONLY, closes_burn_in=False)
            self.time_step(batches.__next__, phase=PIPELINE, rounds=rounds, closes_burn_in=False, counts_cpu=True)
            step = backend.fed_step(batches)
        else:
            step = batches.__next__
        self.start_window()
        timing = self.time_step(step, rounds=rounds, counts_cpu=not network)
        self.first_batch_ms = batches.first_batch_ms
        return timing

    def time_step(self, step: Callable[[], object], *, phase: str = TIMED, rounds: int = 1,
                  closes_burn_in: bool = True, counts_cpu: bool = False) -> Timing:
        """``step`` timed the configuration's way, its samples streamed and the burn-in reported as they come.

        ``rounds``: each sample after the first call spans that many steps, and is stored as its time per step
        (``bench.pipeline.batches_per_sample`` says why); burn-in and timed steps are still counted in steps (the
        first burn-in call is one step, the rest rounds), so a loop takes about ``warmup`` and ``iters`` steps.
        ``closes_burn_in``: whether the end of burn-in is reported and opens the timed memory window (the
        configuration's own loop); ``counts_cpu``: whether the CPU time of this process and its children over the
        timed loop is kept per image (``cpu_seconds_per_image``).
        """
        config, backend = self.config, self.backend
        cpu = ProcessTreeCpu() if counts_cpu else None

        def burn_in_end(first_step_ms: float | None) -> None:
            if closes_burn_in:
                self.end_burn_in(first_step_ms)
            if cpu is not None:
                cpu.start()

        stream = self.stream.on_progress(phase)

        def progress(loop_phase: str, done: int, total: int, samples: list[float]) -> None:
            stream(loop_phase, done, total, [sample / rounds for sample in samples])

        warmup = 1 + math.ceil((config.warmup - 1) / rounds) if config.warmup > 0 else 0
        timing = get_timing_method(config.timing).measure(
            in_rounds(step, rounds, first_alone=warmup > 0), backend.synchronize, warmup=warmup,
            iters=math.ceil(config.iters / rounds), max_time_s=config.max_time_s, on_progress=progress,
            on_burn_in_end=burn_in_end, trace_count=backend.trace_count)
        self.stream.flush()
        if cpu is not None:
            self.cpu_seconds_per_image = cpu.seconds() / (len(timing.samples_ms) * rounds * config.batch_size)
        # Without burn-in the first call was a whole round, and a timed sample.
        first_step_ms = timing.first_step_ms if warmup > 0 else timing.first_step_ms / rounds
        return Timing([sample / rounds for sample in timing.samples_ms], first_step_ms, timing.capped)

    def facts(self, *, data_parallel: bool = False) -> dict[str, Any]:
        """The framework, device and settings of the configuration as the backend reports them (with how its
        data-parallel step is made, for a rank); a failing report becomes its error text, since versions are worth
        having but never at the cost of the result."""
        backend, config = self.backend, self.config
        described: dict[str, Any] = {}
        for key, report in (("framework", backend.framework_info), ("device", lambda: backend.device_info(config)),
                            ("settings", lambda: backend.settings(config))):
            try:
                described[key] = report()
            except Exception as error:
                described[key] = {"error": f"{type(error).__name__}: {error}"}
        # A backend whose figure covers something else than the window says so in its own settings.
        described["settings"].setdefault("peak_memory", "device allocator" if backend.peak_memory_bytes() is not None
                                         else self.memory.window)
        if data_parallel:
            described["settings"]["data_parallel"] = backend.data_parallel_settings(config)
        if self.pipeline is not None:
            described["settings"]["input_pipeline"] = {**self.pipeline.settings(), "images": self.images_source}
        return described

    def failure(self, error: BaseException) -> Outcome:
        """The outcome of a measurement that raised ``error``: a skip with the backend's reason, or a failure with
        its kind and first line (out of memory named as such)."""
        self.stream.flush()
        if isinstance(error, Skip):
            return Outcome(status="skipped", reason=str(error), **self.facts())
        if isinstance(error, RetraceError):
            return Outcome(status="failed", reason=str(error), **self.facts())
        kind = "out of memory" if self.backend.is_out_of_memory(error) else type(error).__name__
        first_line = (str(error).strip().splitlines() or [""])[0][:300]
        return Outcome(status="failed", reason=f"{kind}: {first_line}", **self.facts())
