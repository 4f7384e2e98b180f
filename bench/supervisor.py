"""The one parent side: start measuring children, stream their messages, enforce the deadline, end them, say how.

Every child process of a run (a worker, the ranks of a data-parallel configuration or their launcher, a side of
an interleaved comparison) is started here in a session of its own, so Ctrl-C reaches only the parent and a kill
reaches everything the child started. Its stdout carries the protocol (``bench.protocol``); its stderr is kept as
a tail for the reason of a failure. When the children are done, have failed, have run past the deadline or the
parent is interrupted, every process they started, wherever it now lives, is asked to end (SIGTERM, on which a
child sends the samples it holds), and killed after ``GRACE_S``: nothing outlives its configuration.

Nothing here imports a framework: the parent of a run never does.
"""

from __future__ import annotations

import contextlib
import os
import queue
import signal
import subprocess
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil

from bench.protocol import BurnIn, Explained, Gathered, GatheredEnd, Joined, Message, Outcome, Progress, decode

# How long children get, after SIGTERM, to send what they hold and end before they are killed.
GRACE_S = 2.0
STDERR_TAIL_LINES = 60


class Interrupted(KeyboardInterrupt):
    """The run was stopped by Ctrl-C or SIGTERM; ``signal_number`` says which (for the exit code)."""

    def __init__(self, signal_number: int = signal.SIGINT) -> None:
        self.signal_number = int(signal_number)
        self.signal_name = signal.Signals(signal_number).name
        super().__init__(self.signal_name)


def stopped_by(stop: KeyboardInterrupt) -> Interrupted:
    """``stop`` as an ``Interrupted`` (a plain KeyboardInterrupt is Ctrl-C: SIGINT)."""
    return stop if isinstance(stop, Interrupted) else Interrupted(signal.SIGINT)


@contextlib.contextmanager
def interrupt_on_sigterm() -> Iterator[None]:
    """Turn SIGTERM into ``Interrupted`` while the block runs, so a terminated run ends its children and saves
    what it measured, exactly as Ctrl-C does."""

    def handler(signal_number: int, _frame: object) -> None:
        raise Interrupted(signal_number)

    try:
        previous = signal.signal(signal.SIGTERM, handler)
    except ValueError:  # not the main thread: signals cannot be handled here, nothing to change
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


@dataclass(frozen=True)
class Launch:
    """One child process to start: its command, what it adds to the environment, where it runs, this machine's
    ports it binds (checked before it starts), and the rank it runs where it is one rank of several."""

    argv: tuple[str, ...]
    environment: dict[str, str] = field(default_factory=dict)
    cwd: Path | None = None
    ports: tuple[int, ...] = ()
    rank: int | None = None


def exit_reason(code: int, stderr_tail: Sequence[str] = ()) -> str:
    """How a process ended, in words: the signal that killed it, the signal it ended on after sending what it
    held (exit status 128 + n), or its exit code with the last line it wrote to stderr."""
    if code < 0 or (code > 128 and code - 128 in _SIGNAL_NUMBERS):
        number = -code if code < 0 else code - 128
        name = signal.Signals(number).name if number in _SIGNAL_NUMBERS else f"signal {number}"
        if code > 0:
            return f"ended by {name}"
        return f"killed by {name}" + (" (out of memory?)" if name == "SIGKILL" else "")
    last = next((line for line in reversed(stderr_tail) if line.strip()), "")
    return f"exited with code {code}" + (f": {last[:300]}" if last else "")


_SIGNAL_NUMBERS = {int(number) for number in signal.Signals}


@dataclass
class ChildReport:
    """What one child (by rank; a plain worker is rank 0) said before it ended or was ended."""

    joined: Joined | None = None
    samples: dict[str, list[float]] = field(default_factory=dict)  # by phase, as streamed
    position: str = "not started"  # the last progress, for a hang's reason
    burn_in: BurnIn | None = None
    outcome: Outcome | None = None
    gathered: dict[str, dict[int, list[float]]] = field(default_factory=dict)  # phase -> rank -> samples
    gathered_complete: bool = False
    explained: dict[str, Any] | None = None  # an explaining child's ledger


class ChildReports:
    """Every child's messages, by rank."""

    def __init__(self) -> None:
        self.by_rank: dict[int, ChildReport] = {}

    def record(self, message: Message) -> None:
        report = self.by_rank.setdefault(message.rank, ChildReport())
        if isinstance(message, Progress):
            report.samples.setdefault(message.phase, []).extend(message.samples)
            report.position = f"{message.phase} {message.done}/{message.total}"
        elif isinstance(message, Joined):
            report.joined = message
        elif isinstance(message, BurnIn):
            report.burn_in = message
        elif isinstance(message, Outcome):
            report.outcome = message
        elif isinstance(message, Gathered):
            report.gathered.setdefault(message.phase, {}).setdefault(message.of_rank, []).extend(message.samples)
        elif isinstance(message, GatheredEnd):
            report.gathered_complete = True
        elif isinstance(message, Explained):
            report.explained = message.ledger

    def ordered(self) -> list[ChildReport]:
        return [self.by_rank[rank] for rank in sorted(self.by_rank)]


@dataclass
class Ending:
    """How a supervised group of processes ended."""

    launches: list[Launch]
    returncodes: list[int | None]
    stderr_tails: list[list[str]]
    timed_out: bool = False
    interrupted: Interrupted | None = None

    @property
    def failed(self) -> list[int]:
        """Indexes of the processes that ended badly."""
        return [index for index, code in enumerate(self.returncodes) if code not in (0, None)]

    def reason(self, index: int) -> str:
        return exit_reason(self.returncodes[index] or 0, self.stderr_tails[index])

    def last_line(self) -> str:
        """The last line any process wrote to stderr."""
        return next((line for tail in self.stderr_tails for line in reversed(tail) if line.strip()), "no output")


def supervise(launches: Sequence[Launch], timeout_s: float, on_message: Callable[[Message], None]) -> Ending:
    """Start ``launches`` and hand each message to ``on_message`` until every process has ended, one has failed
    (the others would wait for it forever), ``timeout_s`` has passed or the parent is interrupted; then end every
    process they started. A ``KeyboardInterrupt`` (also from ``on_message``) is caught and returned in the ending,
    with every message that arrived before the processes ended handed over."""
    messages: queue.Queue[Message] = queue.Queue()
    tails = [deque(maxlen=STDERR_TAIL_LINES) for _ in launches]
    processes = [_start(launch) for launch in launches]
    readers = []
    for process, tail in zip(processes, tails, strict=True):
        readers.append(threading.Thread(target=_read_messages, args=(process.stdout, messages), daemon=True))
        readers.append(threading.Thread(target=_read_tail, args=(process.stderr, tail), daemon=True))
    for reader in readers:
        reader.start()

    known: dict[int, psutil.Process] = {}  # processes that said their pid: found wherever their launcher put them
    ending = Ending(list(launches), [None] * len(processes), [])
    deadline = time.monotonic() + timeout_s

    def hand_over(message: Message) -> None:
        if isinstance(message, Joined):
            with contextlib.suppress(psutil.Error):
                known[message.pid] = psutil.Process(message.pid)
        on_message(message)

    try:
        while True:
            try:
                hand_over(messages.get(timeout=0.2))
                continue
            except queue.Empty:
                pass
            codes = [process.poll() for process in processes]
            if all(code is not None for code in codes) or any(code not in (None, 0) for code in codes):
                break
            if time.monotonic() > deadline:
                ending.timed_out = True
                break
    except KeyboardInterrupt as stop:
        ending.interrupted = stopped_by(stop)
    finally:
        end_processes(processes, known)
        for reader in readers:
            reader.join(timeout=5)
    try:
        while not messages.empty():  # what arrived while the processes were ending
            hand_over(messages.get_nowait())
    except KeyboardInterrupt as stop:
        ending.interrupted = ending.interrupted or stopped_by(stop)
    ending.returncodes = [process.returncode for process in processes]
    ending.stderr_tails = [list(tail) for tail in tails]
    return ending


def _start(launch: Launch) -> subprocess.Popen:
    return subprocess.Popen(
        list(launch.argv), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, encoding="utf-8",
        errors="replace",  # one undecodable byte from a framework's log must never stall the run
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": os.environ.get("TF_CPP_MIN_LOG_LEVEL", "2"), **launch.environment},
        cwd=launch.cwd,
        start_new_session=True,  # its own session: Ctrl-C reaches only the parent, and a kill reaches all of it
    )


def _read_messages(stream: Any, messages: queue.Queue) -> None:
    for line in stream:
        message = decode(line)
        if message is not None:
            messages.put(message)


def _read_tail(stream: Any, tail: deque[str]) -> None:
    for line in stream:
        tail.append(line.rstrip())


def end_processes(processes: Sequence[subprocess.Popen], known: dict[int, psutil.Process] | None = None) -> None:
    """End every process that is still running and every process it started, wherever it now lives.

    A launcher may start its children in sessions of their own (torch's does), out of reach of a kill of its
    process group: they are found as descendants while their parent lives, and by the pid each sent. Each is
    sent SIGTERM first, so a measuring child sends the samples it holds, then SIGKILL after ``GRACE_S``; a
    process group whose leader has ended is killed too, so no helper it left behind outlives it.
    """
    found = dict(known or {})
    running = [process for process in processes if process.poll() is None]
    for process in running:
        with contextlib.suppress(psutil.Error):
            found.update({child.pid: child for child in psutil.Process(process.pid).children(recursive=True)})
    found = {pid: child for pid, child in found.items() if _alive(child)}
    if running or found:
        for process in running:
            _signal_group(process.pid, signal.SIGTERM)
        for pid in found:
            _signal_group_or_process(pid, signal.SIGTERM)
        deadline = time.monotonic() + GRACE_S
        while time.monotonic() < deadline and (any(process.poll() is None for process in running)
                                               or any(_alive(child) for child in found.values())):
            time.sleep(0.05)
    for process in processes:
        _signal_group(process.pid, signal.SIGKILL)
    for pid, child in found.items():
        if _alive(child):
            _signal_group_or_process(pid, signal.SIGKILL)
    for process in processes:
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout=30)
    psutil.wait_procs([child for child in found.values() if _alive(child)], timeout=10)


def _signal_group(leader: int, number: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(leader, number)


def _alive(process: psutil.Process) -> bool:
    try:
        return process.is_running() and process.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def _signal_group_or_process(pid: int, number: int) -> None:
    """Signal the process group ``pid`` leads (everything a session leader started), or else the process alone."""
    try:
        if os.getpgid(pid) == pid:
            os.killpg(pid, number)
        else:
            os.kill(pid, number)
    except (ProcessLookupError, PermissionError):
        pass
