"""One rank of a data-parallel configuration: ``python -m bench.rank CONFIG_JSON``.

Started once per replica by its engine's launcher or by ``bench.launchers.ProcessPerRank``, either of which sets
``RANK`` and ``LOCAL_RANK``. The rank joins its engine's process group, builds the data-parallel step and times
it like a worker does, then times the same step without gradient exchange (the communication-free ceiling) and
an all-reduce of the gradients' size, and finally gathers every rank's samples through the engine's own
collective, so the machine that writes the run file holds every rank's figures even when the ranks are spread
over machines. Its messages go through the same protocol as a worker's, each carrying its rank.
"""

from __future__ import annotations

import dataclasses
import json
import os
import sys
import time

from bench.child import Child, exit_now
from bench.config import Config
from bench.environment import available_cpus
from bench.protocol import ALLREDUCE, NO_SYNC, TIMED, Gathered, GatheredEnd, Joined, Outcome
from bench.timing import MIN_SAMPLES, get_timing_method, time_step

ALLREDUCE_CALLS = 20  # timed all-reduce calls after 3 untimed ones; enough for a median on a noisy machine


def rank_threads(config: Config) -> int:
    """Each replica on a CPU gets an equal share of the cores (at least one); ``--threads`` overrides."""
    if config.threads:
        return config.threads
    return max(1, available_cpus() // (config.replicas or 1))


def local_rank() -> int:
    return int(os.environ.get("LOCAL_RANK", "0"))


def rank_device(config: Config) -> str:
    """One GPU per replica on its machine: local rank i uses cuda:i."""
    return f"cuda:{local_rank()}" if config.device.startswith("cuda") else config.device


def measure(child: Child, config: Config) -> tuple[Outcome, dict[str, list[list[float]]] | None, bool]:
    """Join, time the data-parallel step, its no-sync ceiling and the all-reduce; returns the outcome, every
    rank's samples by phase (when measured), and whether the process may end at once once they are sent (it left
    the group, and its engine allows it)."""
    backend = child.backend
    clock = time.perf_counter
    started: dict[str, float] = {}

    def end_burn_in(first_step_ms: float | None) -> int:
        """Close the burn-in memory window, and agree with every rank on the number of timed steps: every rank
        must take as many, or one would wait forever in the next exchange, so the time cap becomes a step count,
        the smallest any rank proposes."""
        child.end_burn_in(first_step_ms)
        proposal = config.iters
        if config.max_time_s and config.warmup > 1 and first_step_ms is not None:
            # The burn-in steps after the first (which traces, compiles, autotunes) estimate a step.
            step_s = (clock() - started["burn_in"] - first_step_ms / 1e3) / (config.warmup - 1)
            proposal = max(min(MIN_SAMPLES, config.iters), min(config.iters, int(config.max_time_s / step_s)))
        return backend.agree_min(proposal)

    try:
        child.check()
        rank, world_size = backend.join(child.config)
        child.channel.rank = rank
        child.channel.send(Joined(pid=os.getpid(), world_size=world_size, local_rank=local_rank(),
                                  host=os.uname().nodename))
        step = backend.prepare(child.config)
        child.start_window()
        started["burn_in"] = clock()
        timing = get_timing_method(config.timing).measure(
            step, backend.synchronize, warmup=config.warmup, iters=config.iters,
            on_progress=child.stream.on_progress(TIMED), on_burn_in_end=end_burn_in, trace_count=backend.trace_count)
        peak_memory = child.peak_memory_bytes()
        ceiling = time_step(backend.no_sync_step(), backend.synchronize, warmup=min(config.warmup, 3) or 1,
                            iters=len(timing.samples_ms), on_progress=child.stream.on_progress(NO_SYNC))
        gradient_bytes = backend.gradient_bytes()
        allreduce = time_step(backend.allreduce_step(), backend.synchronize, warmup=3, iters=ALLREDUCE_CALLS,
                              on_progress=child.stream.on_progress(ALLREDUCE))
        child.stream.flush()
        gathered = {phase: backend.all_gather(samples) for phase, samples in
                    ((TIMED, timing.samples_ms), (NO_SYNC, ceiling.samples_ms), (ALLREDUCE, allreduce.samples_ms))}
        outcome = Outcome(status="ok", first_step_ms=timing.first_step_ms, capped=timing.capped,
                          peak_memory_bytes=peak_memory,
                          burn_in_peak_memory_bytes=child.burn_in.burn_in_peak_memory_bytes if child.burn_in else None,
                          allreduce_bytes=gradient_bytes, **child.facts(data_parallel=True))
        backend.leave()
        return outcome, gathered, backend.exits_at_once_after_leave
    except Exception as error:  # one rank's failure becomes its result; the parent names the rank
        return child.failure(error), None, False


def main(argv: list[str]) -> int:
    config = Config.from_dict(json.loads(argv[0]))
    child = Child(dataclasses.replace(config, device=rank_device(config)), rank_threads(config),
                  rank=int(os.environ.get("RANK", "0")))
    outcome, gathered, exits_at_once = measure(child, config)
    child.channel.send(outcome)
    for phase, ranks in (gathered or {}).items():  # after the result, in pieces that each fit one write
        for of_rank, samples in enumerate(ranks):
            child.channel.send(Gathered(phase=phase, of_rank=of_rank, samples=tuple(samples)))
    if gathered is not None:
        child.channel.send(GatheredEnd())
    if exits_at_once:  # every message is written (os.write, unbuffered); the framework's teardown is not needed
        exit_now(0)
    return 0 if outcome.status != "failed" else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
