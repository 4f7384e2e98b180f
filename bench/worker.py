"""One configuration in a fresh process: ``python -m bench.worker CONFIG_JSON``.

The child side (``bench.child``) sets the thread count and takes over the protocol channel before the framework
initialises; the worker then builds the step, times it the configuration's way, streaming its samples, and ends
with one ``Outcome`` (``bench.protocol``).
"""

from __future__ import annotations

import json
import sys

from bench.child import Child, exit_now
from bench.config import Config
from bench.environment import available_cpus
from bench.protocol import Outcome

# Steps profiled after the timed loop, on a GPU, for the share of a step the device is busy.
BUSY_STEPS = 3


def measure(child: Child) -> Outcome:
    """Time the child's configuration; any failure becomes its outcome, never a lost run."""
    backend = child.backend
    try:
        timing = child.measure_step()
        peak_memory = child.peak_memory_bytes()
        return Outcome(status="ok", first_step_ms=timing.first_step_ms, capped=timing.capped,
                       peak_memory_bytes=peak_memory,
                       # The share of the fixed-batch step; a step fed from JPEGs says how it fares in its figures
                       # beside the step alone's.
                       device_busy=backend.device_busy(BUSY_STEPS) if child.pipeline is None else None,
                       burn_in_peak_memory_bytes=child.burn_in.burn_in_peak_memory_bytes if child.burn_in else None,
                       first_batch_ms=child.first_batch_ms, cpu_seconds_per_image=child.cpu_seconds_per_image,
                       **child.facts())
    except Exception as error:  # any failure of one configuration becomes its result
        return child.failure(error)


def main(argv: list[str]) -> int:
    config = Config.from_dict(json.loads(argv[0]))
    child = Child(config, config.threads or available_cpus())
    child.channel.send(measure(child))
    return 0


if __name__ == "__main__":
    exit_now(main(sys.argv[1:]))
