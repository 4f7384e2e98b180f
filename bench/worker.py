"""One configuration in a fresh process: ``python -m bench.worker CONFIG_JSON``.

The worker sets its thread count before the framework initialises, imports only that framework's backend,
times the step and reports back as JSON lines on its own channel (the original stdout; anything else that
writes to stdout, a framework's log say, is sent to stderr): ``{"event": "progress", ...}`` while it runs
and one ``{"event": "result", ...}`` at the end.
"""

from __future__ import annotations

import json
import os
import resource
import sys
from dataclasses import asdict
from typing import Any, TextIO

from bench.record import Config

THREAD_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")


def _channel() -> TextIO:
    """Keep the real stdout for the protocol and point file descriptor 1 at stderr for everything else."""
    protocol_fd = os.dup(1)
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    return os.fdopen(protocol_fd, "w", buffering=1)


def _peak_rss_bytes() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux reports KiB


def run_config(config: Config, emit) -> dict[str, Any]:
    """Time ``config``; returns the result fields (status, reason, samples...) and the backend's environment."""
    threads = config.threads or os.cpu_count() or 1
    for variable in THREAD_VARIABLES:
        os.environ[variable] = str(threads)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

    from bench.backend import Skip, load_backend
    from bench.timing import RetraceError, time_step

    backend = load_backend(config.framework)
    backend.configure_threads(threads)

    def environment() -> dict[str, Any]:
        try:
            return backend.environment(config)
        except Exception as error:  # versions are worth having, but never at the cost of the result
            return {"environment_error": f"{type(error).__name__}: {error}"}

    try:
        backend.check(config)
        step = backend.prepare(config)
        backend.reset_peak_memory()
        timing = time_step(
            step,
            backend.synchronize,
            warmup=config.warmup,
            iters=config.iters,
            max_time_s=config.max_time_s,
            on_progress=lambda phase, done, total: emit({"event": "progress", "phase": phase, "done": done,
                                                         "total": total}),
            trace_count=backend.trace_count,
        )
        peak = backend.peak_memory_bytes()
        return {
            "status": "ok",
            "samples_ms": timing.samples_ms,
            "first_step_ms": timing.first_step_ms,
            "capped": timing.capped,
            "peak_memory_bytes": peak if peak is not None else _peak_rss_bytes(),
            "extra": {"threads": threads, "peak_memory_kind": "device" if peak is not None else "process RSS"},
            "environment": environment(),
        }
    except Skip as skip:
        return {"status": "skipped", "reason": str(skip), "environment": environment()}
    except RetraceError as error:
        return {"status": "failed", "reason": f"{config.framework}: {error}", "environment": environment()}
    except Exception as error:  # any failure of one configuration becomes its result, never a lost run
        oom = backend.is_out_of_memory(error)
        first_line = (str(error).strip().splitlines() or [""])[0][:300]
        kind = "out of memory" if oom else type(error).__name__
        return {"status": "failed", "reason": f"{config.framework}: {kind}: {first_line}",
                "environment": environment()}


def main(argv: list[str]) -> int:
    channel = _channel()

    def emit(message: dict) -> None:
        channel.write(json.dumps(message) + "\n")

    config = Config(**json.loads(argv[0]))
    outcome = run_config(config, emit)
    emit({"event": "result", "config": asdict(config), **outcome})
    channel.close()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
