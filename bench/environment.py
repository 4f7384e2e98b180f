"""What a run was measured on: host, OS, Python, CPU, memory and the project's git commit (no framework imports)."""

from __future__ import annotations

import datetime as _dt
import os
import platform
import subprocess
import sys
from pathlib import Path

import psutil

PROJECT_ROOT = Path(__file__).resolve().parents[1]


def available_cpus() -> int:
    """The CPUs this process may run on: its affinity mask (which containers, Slurm and taskset set), not every
    core of the machine; the default thread count of every configuration."""
    try:
        return len(os.sched_getaffinity(0)) or 1
    except (AttributeError, OSError):  # no affinity on this platform
        return os.cpu_count() or 1


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _git(*args: str) -> str | None:
    try:
        completed = subprocess.run(
            ["git", *args], cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=10, check=True
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return completed.stdout.strip()


def _command() -> str:
    """The command line as typed after ``python``: ``cli.py bench ...``, or ``-m bench.gpu_check ...`` for a module."""
    script = Path(sys.argv[0])
    try:
        inside = script.resolve().relative_to(PROJECT_ROOT)
    except (ValueError, OSError):
        inside = None
    if inside is not None and len(inside.parts) > 1 and inside.suffix == ".py":
        name = "-m " + ".".join(inside.with_suffix("").parts)
    else:
        name = script.name
    return " ".join([name, *sys.argv[1:]])


def now_utc() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def host_environment(threads: int | None = None) -> dict:
    """The host-level facts of a run; framework versions and GPU details are added by the workers."""
    status = _git("status", "--porcelain", "--untracked-files=no")
    return {
        "started_at": now_utc(),
        "host": platform.node(),
        "os": platform.platform(),
        "python": sys.version.split()[0],
        "cpu_model": cpu_model(),
        "cpu_cores": os.cpu_count(),
        "cpus_available": available_cpus(),
        "memory_bytes": psutil.virtual_memory().total,
        "threads": threads or available_cpus(),
        "git_commit": _git("rev-parse", "HEAD"),
        "git_dirty": bool(status) if status is not None else None,
        "command": _command(),
        "frameworks": {},  # per framework: version and build, as its workers report them
        "devices": {},  # per device of the run: GPU name, compute capability, memory, driver
    }
