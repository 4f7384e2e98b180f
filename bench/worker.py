"""One configuration in a fresh process: ``python -m bench.worker CONFIG_JSON``.

The worker sets its thread count and visible devices before the framework initialises, imports only that
framework's backend, times the step and reports back as JSON lines on its own channel (the original stdout;
anything else that writes to stdout, a framework's log say, is sent to stderr):

- ``{"event": "progress", "phase", "done", "total", "samples": [...]}`` while it runs, carrying the timed samples
  taken since the previous message, so the parent keeps them if this process dies;
- ``{"event": "burn_in", "first_step_ms", "burn_in_peak_memory_bytes"}`` once burn-in is over;
- one ``{"event": "result", ...}`` at the end.
"""

from __future__ import annotations

import json
import os
import re
import resource
import sys
from pathlib import Path
from typing import Any, TextIO

from bench.config import Config

THREAD_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")


def _channel() -> TextIO:
    """Keep the real stdout for the protocol and point file descriptor 1 at stderr for everything else."""
    protocol_fd = os.dup(1)
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    return os.fdopen(protocol_fd, "w", buffering=1)


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


def describe(backend, config: Config, process_memory: ProcessMemory) -> dict[str, Any]:
    """The framework, device and settings of ``config`` as ``backend`` reports them; a failing report becomes
    its error text, since versions are worth having but never at the cost of the result."""
    described: dict[str, Any] = {}
    for key, report in (("framework", backend.framework_info), ("device", lambda: backend.device_info(config)),
                        ("settings", lambda: backend.settings(config))):
        try:
            described[key] = report()
        except Exception as error:
            described[key] = {"error": f"{type(error).__name__}: {error}"}
    described["settings"]["peak_memory"] = ("device allocator" if backend.peak_memory_bytes() is not None
                                            else process_memory.window)
    return described


def peak_memory_bytes(backend, process_memory: ProcessMemory) -> int:
    """The device allocator's peak, or on a CPU the process's peak resident memory, in the current window."""
    device_peak = backend.peak_memory_bytes()
    return device_peak if device_peak is not None else process_memory.peak_bytes()


def run_config(config: Config, emit) -> dict[str, Any]:
    """Time ``config``; returns the result fields (status, reason, samples...), settings and facts."""
    threads = config.threads or os.cpu_count() or 1
    for variable in THREAD_VARIABLES:
        os.environ[variable] = str(threads)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

    from bench.backend import Skip, load_backend
    from bench.timing import RetraceError, time_step

    backend = load_backend(config.framework)
    backend.configure(config, threads)
    process_memory = ProcessMemory()
    burn_in: dict[str, Any] = {}

    def facts() -> dict[str, Any]:
        return describe(backend, config, process_memory)

    def peak_memory() -> int:
        return peak_memory_bytes(backend, process_memory)

    def end_burn_in(first_step_ms: float | None) -> None:
        burn_in.update(first_step_ms=first_step_ms, burn_in_peak_memory_bytes=peak_memory())
        emit({"event": "burn_in", **burn_in})
        backend.reset_peak_memory()
        process_memory.reset()

    try:
        backend.check(config)
        step = backend.prepare(config)
        backend.reset_peak_memory()
        process_memory.reset()
        timing = time_step(
            step,
            backend.synchronize,
            warmup=config.warmup,
            iters=config.iters,
            max_time_s=config.max_time_s,
            on_progress=lambda phase, done, total, samples: emit(
                {"event": "progress", "phase": phase, "done": done, "total": total, "samples": samples}),
            on_burn_in_end=end_burn_in,
            trace_count=backend.trace_count,
        )
        return {
            "status": "ok",
            "samples_ms": timing.samples_ms,
            "first_step_ms": timing.first_step_ms,
            "capped": timing.capped,
            "peak_memory_bytes": peak_memory(),
            "burn_in_peak_memory_bytes": burn_in.get("burn_in_peak_memory_bytes") if config.warmup else None,
            **facts(),
        }
    except Skip as skip:
        return {"status": "skipped", "reason": str(skip), **facts()}
    except RetraceError as error:
        return {"status": "failed", "reason": f"{config.framework}: {error}", **facts()}
    except Exception as error:  # any failure of one configuration becomes its result, never a lost run
        oom = backend.is_out_of_memory(error)
        first_line = (str(error).strip().splitlines() or [""])[0][:300]
        kind = "out of memory" if oom else type(error).__name__
        return {"status": "failed", "reason": f"{config.framework}: {kind}: {first_line}", **facts()}


def main(argv: list[str]) -> int:
    channel = _channel()

    def emit(message: dict) -> None:
        channel.write(json.dumps(message) + "\n")

    config = Config.from_dict(json.loads(argv[0]))
    outcome = run_config(config, emit)
    emit({"event": "result", "config": config.to_dict(), **outcome})
    channel.close()
    return 0


def exit_now(code: int) -> None:
    """End the process without the interpreter's shutdown, once everything is written.

    Tearing down torch or TensorFlow at exit takes 0.7-1.3 s here, during which the parent waits; nothing of that
    teardown is needed once the result is on its way, so the streams are flushed and the process ends.
    """
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


if __name__ == "__main__":
    exit_now(main(sys.argv[1:]))
