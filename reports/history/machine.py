"""What a result ran on: the fingerprint that keeps the figures of different machines apart."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Machine:
    """What a result ran on, as far as a timing depends on it: ``key`` is a stable hash of ``facts``."""

    key: str
    name: str
    facts: dict[str, Any]


def machine_of(environment: dict[str, Any], device: str) -> Machine:
    """The machine of a result on ``device``, from its run's environment.

    CPU model, cores, threads and memory (rounded to whole GiB, so a kernel's reservation does not split a
    machine in two), and for a GPU result the GPU's name: a CPU result on a GPU box is the same machine as on
    the same box without its GPU. The host name is left out: two identical cloud machines are one machine.
    """
    memory_bytes = environment.get("memory_bytes")
    gpu_name = None
    if device != "cpu":
        devices = environment.get("devices") or {}
        gpu_name = (devices.get(device) or devices.get(device.split(":")[0]) or {}).get("gpu_name")
    facts = {
        "cpu_model": environment.get("cpu_model"),
        "cpu_cores": environment.get("cpu_cores"),
        "threads": environment.get("threads"),
        "memory_gib": round(memory_bytes / 2**30) if memory_bytes else None,
        "gpu": gpu_name if device != "cpu" else None,
    }
    key = hashlib.sha256(json.dumps(facts, sort_keys=True).encode()).hexdigest()[:10]
    host = f"{facts['cpu_model'] or 'unknown CPU'}, {facts['threads'] or '?'} threads"
    if facts["cpu_cores"] and facts["cpu_cores"] != facts["threads"]:
        host += f" of {facts['cpu_cores']} cores"
    if facts["memory_gib"] is not None:
        host += f", {facts['memory_gib']} GiB"
    name = f"{gpu_name or device + ' (GPU not recorded)'} on {host}" if device != "cpu" else host
    return Machine(key, name, facts)
