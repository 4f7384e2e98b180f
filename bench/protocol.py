"""The one protocol between a measuring child (a worker, a rank) and the parent that supervises it.

A child sends JSON lines on its own channel, the stdout it had when it started (anything else written to stdout,
a framework's log say, is sent to stderr). Every message is one ``write`` of at most ``PIPE_BUF`` bytes, which
POSIX keeps whole even when several children share one pipe (torch's launcher passes its stdout to every rank);
a message's sample list is split over as many messages as that needs. Every message carries the child's rank
(0 for a plain worker).

Samples travel only in ``Progress`` messages, as they are taken: what a child has sent survives the child.
"""

from __future__ import annotations

import json
import os
import select
import sys
from dataclasses import asdict, dataclass, field, fields
from typing import Any, ClassVar

PIPE_BUF = select.PIPE_BUF
# The phases of a child's loops: burn-in, the timed step; a rank's no-sync ceiling and all-reduce after it; an
# explaining child's profiled steps and layers alone; a fed step's step alone on a fixed batch and input pipeline
# alone, before the fed loop.
WARMUP, TIMED, NO_SYNC, ALLREDUCE, PROFILED, ALONE = "warmup", "timed", "no-sync", "allreduce", "profiled", "alone"
STEP_ONLY, PIPELINE = "step-only", "pipeline"


@dataclass(frozen=True)
class Progress:
    """Samples taken since the previous message, and how far the loop of ``phase`` is."""

    event: ClassVar[str] = "progress"
    phase: str  # WARMUP, TIMED; a rank also NO_SYNC and ALLREDUCE; a fed step STEP_ONLY and PIPELINE
    done: int
    total: int
    samples: tuple[float, ...] = ()
    rank: int = 0


@dataclass(frozen=True)
class BurnIn:
    """Burn-in is over: the first step's time (tracing, compilation, autotuning) and the burn-in's memory peak."""

    event: ClassVar[str] = "burn_in"
    first_step_ms: float | None
    burn_in_peak_memory_bytes: int | None
    rank: int = 0


@dataclass(frozen=True)
class Joined:
    """A rank joined its process group: the parent can then find it by ``pid`` wherever its launcher put it."""

    event: ClassVar[str] = "joined"
    pid: int
    world_size: int
    local_rank: int
    host: str
    rank: int = 0


@dataclass(frozen=True)
class Outcome:
    """How the child's measurement ended (its samples came before, in ``Progress``), with what it ran on.

    ``reason``: for ``skipped``, the backend's one line (naming its framework); for ``failed``, what went wrong,
    which the parent prefixes with the framework and, for a rank, the rank.
    """

    event: ClassVar[str] = "result"
    status: str
    reason: str | None = None
    first_step_ms: float | None = None
    capped: bool = False
    peak_memory_bytes: int | None = None
    burn_in_peak_memory_bytes: int | None = None
    allreduce_bytes: int | None = None
    device_busy: float | None = None
    # The JPEG pipeline: its first batch's wait, and the CPU time (this process and its workers) per image of its
    # timed loop alone.
    first_batch_ms: float | None = None
    cpu_seconds_per_image: float | None = None
    framework: dict[str, Any] = field(default_factory=dict)
    device: dict[str, Any] = field(default_factory=dict)
    settings: dict[str, Any] = field(default_factory=dict)
    rank: int = 0


@dataclass(frozen=True)
class Gathered:
    """After its result, one data-parallel rank's samples of ``phase`` as every rank received them."""

    event: ClassVar[str] = "gathered"
    phase: str
    of_rank: int
    samples: tuple[float, ...] = ()
    rank: int = 0


@dataclass(frozen=True)
class GatheredEnd:
    """Every gathered sample has been sent."""

    event: ClassVar[str] = "gathered_end"
    rank: int = 0


@dataclass(frozen=True)
class Explained:
    """Before its result, an explaining child's ledger of the step (``bench.ledger``: the step and every layer's
    row). One child alone on its pipe sends it, so it may exceed ``PIPE_BUF``."""

    event: ClassVar[str] = "explained"
    ledger: dict[str, Any] = field(default_factory=dict)
    rank: int = 0


Message = Progress | BurnIn | Joined | Outcome | Gathered | GatheredEnd | Explained
MESSAGES: dict[str, type] = {kind.event: kind for kind in (Progress, BurnIn, Joined, Outcome, Gathered, GatheredEnd,
                                                            Explained)}


def encode(message: Message) -> dict[str, Any]:
    return {"event": message.event, **asdict(message)}


def decode(line: str) -> Message | None:
    """The message on one line; None for anything else (a stray line of a framework's log)."""
    try:
        values = json.loads(line)
        kind = MESSAGES[values["event"]]
        known = {f.name for f in fields(kind)}
        arguments = {name: value for name, value in values.items() if name in known}
        if "samples" in arguments:
            arguments["samples"] = tuple(float(value) for value in arguments["samples"] or ())
        return kind(**arguments)
    except (json.JSONDecodeError, KeyError, TypeError, ValueError, AttributeError):
        return None


class Channel:
    """A child's end of the protocol: the stdout it started with, one ``os.write`` per message under PIPE_BUF."""

    def __init__(self, rank: int = 0) -> None:
        self.rank = rank
        self._fd = os.dup(1)
        os.dup2(2, 1)  # anything else written to stdout (a framework's log) goes to stderr
        sys.stdout = sys.stderr

    def send(self, message: Message) -> None:
        """Send ``message`` as this child's rank; a long sample list goes over as many messages as it needs."""
        values = {**encode(message), "rank": self.rank}
        samples = list(values.get("samples") or ())
        while True:
            chunk, rest = samples, []
            line = _line({**values, "samples": chunk} if "samples" in values else values)
            while len(line) > PIPE_BUF and len(chunk) > 1:
                cut = len(chunk) // 2
                chunk, rest = chunk[:cut], chunk[cut:] + rest
                line = _line({**values, "samples": chunk})
            os.write(self._fd, line)
            if not rest:
                return
            samples = rest


def _line(values: dict[str, Any]) -> bytes:
    return (json.dumps(values, separators=(",", ":")) + "\n").encode()
