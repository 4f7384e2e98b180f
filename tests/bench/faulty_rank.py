"""``bench.rank`` with a planted fault, for the fault tests of data-parallel runs.

In a ``train`` configuration, the rank named by ``FAULT_RANK`` kills itself with SIGKILL (``FAULT_KIND=kill``)
or stops answering (``hang``) at its first step once ``FAULT_AFTER_S`` seconds of timed steps have passed: placed
by elapsed time, not by a step count that a fast CPU would finish before any progress went out. Every other
configuration and rank runs unchanged. Started by the engine's launcher like ``bench.rank`` (the project root on
PYTHONPATH).
"""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import sys
import time

import bench.timing
from bench import rank as rank_program


def _planted(method: bench.timing.TimingMethod) -> bench.timing.TimingMethod:
    """The way of timing with the fault in its timed loop (the rank's data-parallel step, not the ceiling or the
    all-reduce, which are timed apart)."""
    after_s = float(os.environ["FAULT_AFTER_S"])

    def measure(step, synchronize, **options):
        timed_from: list[float] = []
        burn_in_end = options.get("on_burn_in_end")

        def start_the_clock(first_step_ms):
            decided = burn_in_end(first_step_ms) if burn_in_end is not None else None
            timed_from.append(time.monotonic())
            return decided

        def step_with_fault():
            if timed_from and time.monotonic() - timed_from[0] >= after_s:
                if os.environ["FAULT_KIND"] == "kill":
                    os.kill(os.getpid(), signal.SIGKILL)
                time.sleep(3600)
            return step()

        return method.measure(step_with_fault, synchronize, **{**options, "on_burn_in_end": start_the_clock})

    return dataclasses.replace(method, measure=measure)


if __name__ == "__main__":
    config = json.loads(sys.argv[-1])
    rank = int(os.environ.get("RANK", "0"))
    if config["mode"] == "train" and rank == int(os.environ["FAULT_RANK"]):
        bench.timing.TIMING_METHODS[config["timing"]] = _planted(bench.timing.TIMING_METHODS[config["timing"]])
    sys.exit(rank_program.main(sys.argv[-1:]))
