"""One rank of a data-parallel configuration: ``python -m bench.rank CONFIG_JSON``.

Started once per replica by the framework's own launcher (``torch.distributed.run``, which sets ``RANK``,
``LOCAL_RANK`` and ``WORLD_SIZE``) or, for TensorFlow, by ``bench.data_parallel`` with ``TF_CONFIG``. The rank
joins its framework's process group, builds the data-parallel step and times it like a worker does, then times
the same step without gradient exchange (the communication-free ceiling) and an all-reduce of the gradients'
size, and finally gathers every rank's samples through the framework's own collective, so the machine that
writes the run file holds every rank's figures even when the ranks are spread over machines.

Messages are JSON lines on the original stdout, each carrying ``rank``. Several ranks share one pipe (torch's
launcher passes its own stdout to every rank), so each message is one ``write`` of at most ``PIPE_BUF`` bytes,
which POSIX keeps whole; long sample lists are split over several messages.
"""

from __future__ import annotations

import json
import os
import select
import sys
import time
from dataclasses import replace
from typing import Any

from bench.config import Config
from bench.worker import THREAD_VARIABLES, ProcessMemory, describe, exit_now, peak_memory_bytes

PIPE_BUF = select.PIPE_BUF
ALLREDUCE_CALLS = 20  # timed all-reduce calls after 3 untimed ones; enough for a median on a noisy machine


def rank_threads(config: Config) -> int:
    """Each replica on a CPU gets an equal share of the cores (at least one); ``--threads`` overrides."""
    if config.threads:
        return config.threads
    return max(1, (os.cpu_count() or 1) // (config.replicas or 1))


def local_rank() -> int:
    return int(os.environ.get("LOCAL_RANK", os.environ.get("CONVBENCH_LOCAL_RANK", "0")))


def rank_device(config: Config) -> str:
    """One GPU per replica on its machine: local rank i uses cuda:i."""
    return f"cuda:{local_rank()}" if config.device.startswith("cuda") else config.device


class Channel:
    """The protocol pipe: one ``os.write`` per message, each under PIPE_BUF bytes so ranks never interleave."""

    def __init__(self, rank: int) -> None:
        self.rank = rank
        self._fd = os.dup(1)
        os.dup2(2, 1)  # anything else written to stdout (a framework's log) goes to stderr
        sys.stdout = sys.stderr

    def emit(self, message: dict[str, Any], samples_key: str | None = None) -> None:
        """Send ``message``; with ``samples_key``, its list of samples is split over as many messages as needed."""
        message = {**message, "rank": self.rank}
        samples = list(message.get(samples_key) or ()) if samples_key else []
        while True:
            chunk, rest = samples, []
            line = self._encode({**message, samples_key: chunk} if samples_key else message)
            while len(line) > PIPE_BUF and len(chunk) > 1:
                cut = len(chunk) // 2
                chunk, rest = chunk[:cut], chunk[cut:] + rest
                line = self._encode({**message, samples_key: chunk})
            os.write(self._fd, line)
            if not rest:
                return
            samples = rest

    @staticmethod
    def _encode(message: dict[str, Any]) -> bytes:
        return (json.dumps(message, separators=(",", ":")) + "\n").encode()


def run_rank(config: Config, channel: Channel) -> tuple[dict[str, Any], bool]:
    """Join, time the data-parallel step, its no-sync ceiling and the all-reduce; returns the result fields, and
    whether the process may end at once once they are sent (it left the group, and its framework allows it)."""
    threads = rank_threads(config)
    for variable in THREAD_VARIABLES:
        os.environ[variable] = str(threads)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

    from bench.backend import Skip, load_backend
    from bench.timing import MIN_SAMPLES, RetraceError, time_step

    device_config = replace(config, device=rank_device(config))
    backend = load_backend(config.framework)
    backend.configure(device_config, threads)
    memory = ProcessMemory()

    def progress(timed_phase: str):
        """Stream a loop's progress; its timed samples are labelled ``timed_phase`` (burn-in stays "warmup")."""
        return lambda phase, done, total, samples: channel.emit(
            {"event": "progress", "phase": timed_phase if phase == "timed" else phase, "done": done,
             "total": total, "samples": samples}, samples_key="samples")

    def facts() -> dict[str, Any]:
        described = describe(backend, device_config, memory)
        if isinstance(described["settings"], dict):
            described["settings"]["data_parallel"] = backend.data_parallel_settings(device_config)
        return described

    burn_in: dict[str, Any] = {}
    clock = time.perf_counter

    def end_burn_in(first_step_ms: float | None) -> int:
        """Close the burn-in memory window, and agree with every rank on the number of timed steps."""
        burn_in.update(first_step_ms=first_step_ms, burn_in_peak_memory_bytes=peak_memory_bytes(backend, memory))
        channel.emit({"event": "burn_in", **burn_in})
        proposal = config.iters
        if config.max_time_s and config.warmup > 1 and first_step_ms is not None:
            # The burn-in steps after the first (which traces, compiles, autotunes) estimate a step.
            step_s = (clock() - burn_in_started - first_step_ms / 1e3) / (config.warmup - 1)
            proposal = max(min(MIN_SAMPLES, config.iters), min(config.iters, int(config.max_time_s / step_s)))
        agreed = backend.agree_min(proposal)
        backend.reset_peak_memory()
        memory.reset()
        return agreed

    try:
        backend.check(device_config)
        rank, world_size = backend.join(device_config)
        channel.rank = rank
        channel.emit({"event": "joined", "pid": os.getpid(), "world_size": world_size,
                      "local_rank": local_rank(), "host": os.uname().nodename})
        step = backend.prepare(device_config)
        # Every rank must take the same number of steps, or one would wait forever in the next exchange: the
        # time cap, if any, becomes a step count after burn-in, the smallest any rank proposes (end_burn_in).
        burn_in_started = clock()
        timing = time_step(step, backend.synchronize, warmup=config.warmup, iters=config.iters,
                           on_progress=progress("timed"), on_burn_in_end=end_burn_in, trace_count=backend.trace_count)
        peak_memory = peak_memory_bytes(backend, memory)
        ceiling = time_step(backend.no_sync_step(), backend.synchronize, warmup=min(config.warmup, 3) or 1,
                            iters=len(timing.samples_ms), on_progress=progress("no-sync"))
        gradient_bytes = backend.gradient_bytes()
        allreduce = time_step(backend.allreduce_step(), backend.synchronize, warmup=3, iters=ALLREDUCE_CALLS,
                              on_progress=progress("allreduce"))
        gathered = {name: backend.all_gather(samples) for name, samples in
                    (("timed", timing.samples_ms), ("no_sync", ceiling.samples_ms),
                     ("allreduce", allreduce.samples_ms))}
        outcome = {"status": "ok", "first_step_ms": timing.first_step_ms, "capped": timing.capped,
                   "peak_memory_bytes": peak_memory,
                   "burn_in_peak_memory_bytes": burn_in.get("burn_in_peak_memory_bytes") if config.warmup else None,
                   "allreduce_bytes": gradient_bytes, "gathered": gathered, **facts()}
        backend.leave()
        return outcome, backend.exits_at_once_after_leave
    except Skip as skip:
        return {"status": "skipped", "reason": str(skip), **facts()}, False
    except RetraceError as error:
        return {"status": "failed", "reason": f"{config.framework}: {error}", **facts()}, False
    except Exception as error:  # one rank's failure becomes its result; the parent names the rank
        kind = "out of memory" if backend.is_out_of_memory(error) else type(error).__name__
        first_line = (str(error).strip().splitlines() or [""])[0][:300]
        return {"status": "failed", "reason": f"{kind}: {first_line}", **facts()}, False


def main(argv: list[str]) -> int:
    channel = Channel(int(os.environ.get("RANK", os.environ.get("CONVBENCH_RANK", "0"))))
    config = Config.from_dict(json.loads(argv[0]))
    outcome, exits_at_once = run_rank(config, channel)
    gathered = outcome.pop("gathered", None)
    channel.emit({"event": "result", **outcome})
    if gathered is not None:  # after the result line, in pieces that each fit one write
        for phase, ranks in gathered.items():
            for rank, samples in enumerate(ranks):
                channel.emit({"event": "gathered", "phase": phase, "of_rank": rank, "samples": samples},
                             samples_key="samples")
        channel.emit({"event": "gathered_end"})
    if exits_at_once:  # every message is written (os.write, unbuffered); the framework's teardown is not needed
        exit_now(0)
    return 0 if outcome["status"] != "failed" else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
