"""``bench.rank`` with a planted fault, for the fault tests of data-parallel runs.

In a ``train`` configuration, the rank named by ``FAULT_RANK`` kills itself with SIGKILL (``FAULT_KIND=kill``)
or stops answering (``hang``) just before its timed step number ``FAULT_STEP``; every other configuration and
rank runs unchanged. Started by the framework's launcher like ``bench.rank`` (the project root on PYTHONPATH).
"""

from __future__ import annotations

import json
import os
import signal
import sys
import time

import bench.timing
from bench import rank as rank_program


def _planted(time_step):
    calls = {"loops": 0}

    def faulty_time_step(step, synchronize, **options):
        calls["loops"] += 1
        if calls["loops"] > 1:  # only the data-parallel step's own loop, not the ceiling or the all-reduce
            return time_step(step, synchronize, **options)
        taken = {"steps": 0}
        at = options.get("warmup", 0) + int(os.environ["FAULT_STEP"])

        def step_with_fault():
            taken["steps"] += 1
            if taken["steps"] == at:
                if os.environ["FAULT_KIND"] == "kill":
                    os.kill(os.getpid(), signal.SIGKILL)
                time.sleep(3600)
            return step()

        return time_step(step_with_fault, synchronize, **options)

    return faulty_time_step


if __name__ == "__main__":
    config = json.loads(sys.argv[-1])
    rank = int(os.environ.get("RANK", os.environ.get("CONVBENCH_RANK", "0")))
    if config["mode"] == "train" and rank == int(os.environ["FAULT_RANK"]):
        bench.timing.time_step = _planted(bench.timing.time_step)
    sys.exit(rank_program.main(sys.argv[-1:]))
