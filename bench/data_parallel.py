"""Runs one data-parallel configuration: its ranks started by the framework's launcher, watched, ended, combined.

torch ranks are started by torch's own launcher (``torch.distributed.run``, c10d rendezvous; run through
``bench.torch_launcher``, which only skips the interpreter's teardown once it has succeeded); a
TensorFlow configuration is one worker process per replica, each told the cluster through ``TF_CONFIG``, which
is how ``MultiWorkerMirroredStrategy`` is configured. Both run ``bench.rank``. On several machines the same
command runs on each; the first of ``--hosts`` is the rendezvous, and the machine given ``--node-rank 0`` writes
the run file (every rank gathers every rank's samples, so that machine holds them all).

Nothing here imports a framework: the parent of a run never does.
"""

from __future__ import annotations

import json
import os
import queue
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import psutil

from bench.config import Config
from bench.record import Result, config_counts
from bench.runner import WorkerInterrupted

RANK_PROGRAM: tuple[str, ...] = ("-m", "bench.rank")
PORT_ATTEMPTS = 3  # a port chosen free can be taken before the launcher binds it: choose again
_PORT_BUSY = re.compile(r"address already in use|EADDRINUSE|errno 98", re.IGNORECASE)
_TORCHRUN_FAILURE = re.compile(r"rank\s*:\s*(\d+)\s*\(local_rank:\s*\d+\)\s*\n\s*exitcode\s*:\s*(-?\d+)")
_PHASES = {"timed": "timed", "no-sync": "no_sync", "allreduce": "allreduce"}


class ClusterError(ValueError):
    """A ``--hosts`` / ``--node-rank`` / ``--replicas`` combination that cannot run; the message says why."""


@dataclass(frozen=True)
class Cluster:
    """The machines of a data-parallel run: each one's ``(host, port)``, the first being the rendezvous, and the
    index of this machine. No hosts: this machine alone, on ports chosen free."""

    hosts: tuple[tuple[str, int], ...] = ()
    node_rank: int = 0

    def __post_init__(self) -> None:
        if self.hosts and not 0 <= self.node_rank < len(self.hosts):
            raise ClusterError(f"--node-rank must be between 0 and {len(self.hosts) - 1} for {len(self.hosts)} "
                               f"hosts. Received: {self.node_rank}")
        if not self.hosts and self.node_rank != 0:
            raise ClusterError("--node-rank needs --hosts HOST:PORT,HOST:PORT,...")

    @property
    def nodes(self) -> int:
        return max(1, len(self.hosts))

    @property
    def writes_run_file(self) -> bool:
        return self.node_rank == 0

    @classmethod
    def parse(cls, hosts: str | None, node_rank: int = 0) -> Cluster:
        """``HOST:PORT,HOST:PORT,...`` (at least two, each port 1-65535) and this machine's index in it."""
        if not hosts:
            return cls((), node_rank)
        parsed = []
        for entry in hosts.split(","):
            host, _, port = entry.strip().rpartition(":")
            if not host or not port.isdigit() or not 0 < int(port) < 65536:
                raise ClusterError(f"--hosts takes HOST:PORT entries separated by commas (port 1-65535). "
                                   f"Received: {entry.strip()!r}")
            parsed.append((host.strip("[]"), int(port)))
        if len(parsed) < 2:
            raise ClusterError("--hosts lists every machine of the run, at least two; for one machine leave it out")
        return cls(tuple(parsed), node_rank)


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port the operating system says is free now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((host, 0))
        return probe.getsockname()[1]


def port_is_free(port: int, host: str = "") -> bool:
    """Whether nothing listens on ``port``. Connections of an ended process may linger in TIME_WAIT; launchers
    bind with SO_REUSEADDR, which they do not block, so neither does this probe."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError:
            return False
        return True


def visible_gpus() -> int:
    """NVIDIA GPUs this process may use, without importing a framework: ``CUDA_VISIBLE_DEVICES`` or nvidia-smi."""
    if (visible := os.environ.get("CUDA_VISIBLE_DEVICES")) is not None:
        return len([entry for entry in visible.split(",") if entry.strip() and entry.strip() != "-1"])
    try:
        listed = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=20, check=True)
    except (OSError, subprocess.SubprocessError):
        return 0
    return sum(1 for line in listed.stdout.splitlines() if line.startswith("GPU "))


def check_replicas(replicas: int, device: str) -> None:
    """One GPU per replica on this machine; ClusterError otherwise."""
    if replicas < 1:
        raise ClusterError(f"--replicas takes counts >= 1. Received: {replicas}")
    if device.startswith("cuda"):
        if device != "cuda":
            raise ClusterError(f"with --replicas, give --device cuda (replica i uses cuda:i). Received: {device}")
        if replicas > (gpus := visible_gpus()):
            raise ClusterError(f"--replicas {replicas} on cuda needs {replicas} GPUs on this machine; {gpus} visible")


@dataclass(frozen=True)
class _Launch:
    argv: list[str]
    environment: dict[str, str]
    ports: tuple[int, ...]  # this machine's ports the launch binds (checked, or chosen free)


def _torchrun(config: Config, cluster: Cluster, run_id: str, rank_program: tuple[str, ...]) -> list[_Launch]:
    if cluster.hosts:
        host, port = cluster.hosts[0]
        ports = (port,) if cluster.node_rank == 0 else ()
    else:
        host, port = "127.0.0.1", free_port()
        ports = (port,)
    argv = [sys.executable, "-m", "bench.torch_launcher", f"--nnodes={cluster.nodes}",
            f"--nproc-per-node={config.replicas}", "--max-restarts=0", "--monitor-interval=0.5",
            "--rdzv-backend=c10d", f"--rdzv-endpoint={host}:{port}", f"--rdzv-id=convbench-{run_id}",
            # The rendezvous store lives on the first machine, explicitly: a store that cannot bind its port
            # must fail there rather than connect, as a client, to whatever holds the port.
            f"--rdzv-conf=is_host={int(cluster.node_rank == 0)}"]
    if rank_program[0] == "-m":
        argv += ["-m", *rank_program[1:]]
    else:
        argv += [*rank_program]
    return [_Launch([*argv, json.dumps(config.to_dict())], {}, ports)]


def _tf_workers(config: Config, cluster: Cluster, run_id: str, rank_program: tuple[str, ...]) -> list[_Launch]:
    replicas = config.replicas or 1
    if cluster.hosts:
        # Machine m's workers listen on its PORT, PORT+1, ...: every machine can write the same cluster.
        workers = [f"{host}:{port + k}" for host, port in cluster.hosts for k in range(replicas)]
        local_ports = [cluster.hosts[cluster.node_rank][1] + k for k in range(replicas)]
    else:
        local_ports = [free_port() for _ in range(replicas)]
        workers = [f"127.0.0.1:{port}" for port in local_ports]
    launches = []
    for local in range(replicas):
        rank = cluster.node_rank * replicas + local
        environment = {
            "TF_CONFIG": json.dumps({"cluster": {"worker": workers}, "task": {"type": "worker", "index": rank}}),
            "CONVBENCH_RANK": str(rank), "CONVBENCH_LOCAL_RANK": str(local),
        }
        launches.append(_Launch([sys.executable, *rank_program, json.dumps(config.to_dict())], environment,
                                (local_ports[local],)))
    return launches


# How each framework's ranks are started: one entry per framework.
LAUNCHERS: dict[str, Callable[[Config, Cluster, str, tuple[str, ...]], list[_Launch]]] = {
    "torch": _torchrun,
    "tf": _tf_workers,
}


@dataclass
class _RankReport:
    """What one rank said before it ended or was ended."""

    joined: dict[str, Any] | None = None
    samples: dict[str, list[float]] = field(default_factory=lambda: {phase: [] for phase in _PHASES.values()})
    progress: str = "not started"
    burn_in: dict[str, Any] = field(default_factory=dict)
    outcome: dict[str, Any] | None = None
    gathered: dict[str, dict[int, list[float]]] = field(default_factory=dict)
    gathered_complete: bool = False


class _Ranks:
    """The messages of every local rank, by rank."""

    def __init__(self) -> None:
        self.by_rank: dict[int, _RankReport] = {}

    def handle(self, line: str) -> tuple[int, dict] | None:
        try:
            message = json.loads(line)
            rank = int(message["rank"])
        except (json.JSONDecodeError, KeyError, TypeError, ValueError):
            return None
        report = self.by_rank.setdefault(rank, _RankReport())
        event = message.get("event")
        if event == "joined":
            report.joined = message
        elif event == "progress":
            phase = message.get("phase")
            if phase in _PHASES:
                report.samples[_PHASES[phase]].extend(float(v) for v in message.get("samples") or ())
            report.progress = f"{phase} {message.get('done')}/{message.get('total')}"
        elif event == "burn_in":
            report.burn_in = message
        elif event == "result":
            report.outcome = message
        elif event == "gathered":
            phase = _PHASES.get(message.get("phase"), message.get("phase"))
            report.gathered.setdefault(phase, {}).setdefault(int(message["of_rank"]), []).extend(
                float(v) for v in message.get("samples") or ())
        elif event == "gathered_end":
            report.gathered_complete = True
        return rank, message


def _slowest(per_rank: list[list[float]]) -> tuple[float, ...]:
    """Each step's time on its slowest rank, over the steps every rank took."""
    per_rank = [samples for samples in per_rank if samples]
    if not per_rank:
        return ()
    return tuple(max(step) for step in zip(*per_rank, strict=False))  # a failed rank may stop short


def _kill_all(processes: list[subprocess.Popen], known: dict[int, psutil.Process]) -> None:
    """End every launched process and every process they started, wherever it now lives.

    Ranks started by torch's launcher run in sessions of their own, so killing the launcher's process group
    does not reach them: they are found as descendants while the launcher lives, and by the pid each sent.
    """
    for process in processes:
        try:
            known.update({child.pid: child for child in psutil.Process(process.pid).children(recursive=True)})
        except psutil.Error:
            pass
    for process in processes:
        try:
            os.killpg(process.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
    for child in known.values():
        try:
            if not child.is_running():
                continue
            if os.getpgid(child.pid) == child.pid:  # a session leader: its group holds whatever it started
                os.killpg(child.pid, signal.SIGKILL)
            else:
                child.kill()
        except (psutil.Error, ProcessLookupError, PermissionError):
            pass
    for process in processes:
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            pass
    psutil.wait_procs(list(known.values()), timeout=10)


def _rank_failures(ranks: _Ranks, processes: list[subprocess.Popen], launches: list[_Launch],
                   stderr_tails: list[deque[str]], framework: str) -> list[str]:
    """Which ranks ended badly, and how, from their own results, their exit codes or the launcher's summary."""
    failures = []
    for rank, report in sorted(ranks.by_rank.items()):
        if report.outcome is not None and report.outcome.get("status") == "failed":
            failures.append(f"rank {rank}: {report.outcome.get('reason')}")
    if framework == "tf":
        for launch, process, tail in zip(launches, processes, stderr_tails, strict=True):
            rank = int(launch.environment["CONVBENCH_RANK"])
            if process.returncode not in (0, None) and not any(f.startswith(f"rank {rank}:") for f in failures):
                failures.append(f"rank {rank}: {_exit_reason(process.returncode, tail)}")
    else:
        summary = "\n".join(stderr_tails[0])
        for rank, code in _TORCHRUN_FAILURE.findall(summary):
            if not any(f.startswith(f"rank {rank}:") for f in failures):
                failures.append(f"rank {rank}: {_exit_reason(int(code), deque())}")
    return failures


def _exit_reason(code: int, stderr_tail: deque[str]) -> str:
    if code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    last = next((line for line in reversed(stderr_tail) if line.strip()), "")
    return f"exited with code {code}" + (f": {last[:200]}" if last else "")


def run_replicas(
    config: Config,
    timeout_s: float,
    cluster: Cluster,
    observer: Any = None,
    index: int = 0,
    run_id: str = "0",
    rank_program: tuple[str, ...] | None = None,
) -> tuple[Result, dict]:
    """Run every local rank of ``config``; returns the combined result and the facts the ranks reported.

    A rank that fails, is killed or hangs past ``timeout_s`` fails the configuration, naming the rank; every
    other rank is then ended, so nothing outlives the configuration. Samples streamed before the end are kept
    (``partial``). Ctrl-C / SIGTERM (``Interrupted``) end the ranks too, and re-raise with the result kept.
    """
    for attempt in range(PORT_ATTEMPTS):
        launches = LAUNCHERS[config.framework](config, cluster, f"{run_id}-{attempt}", rank_program or RANK_PROGRAM)
        if cluster.hosts:
            busy = [port for launch in launches for port in launch.ports if not port_is_free(port)]
            if busy:
                host = cluster.hosts[cluster.node_rank][0]
                return (Result(config=config, status="failed", reason=f"{config.framework}: port {busy[0]} on "
                               f"this machine ({host}, node {cluster.node_rank}) is in use; every machine must "
                               "use the ports --hosts gives it", **config_counts(config)), {})
        outcome = _run_launches(config, launches, timeout_s, cluster, observer, index)
        ranks, reason, interrupted, port_busy = outcome
        if not port_busy or cluster.hosts or attempt == PORT_ATTEMPTS - 1:
            break
    result, facts = _combine(config, ranks, reason, interrupted)
    if interrupted is not None:
        raise WorkerInterrupted(result, getattr(interrupted, "signal_number", signal.SIGINT))
    return result, facts


def _run_launches(config: Config, launches: list[_Launch], timeout_s: float, cluster: Cluster, observer: Any,
                  index: int) -> tuple[_Ranks, str | None, KeyboardInterrupt | None, bool]:
    messages: queue.Queue = queue.Queue()
    stderr_tails = [deque(maxlen=60) for _ in launches]
    processes = [
        subprocess.Popen(
            launch.argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, encoding="utf-8",
            errors="replace",
            env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": os.environ.get("TF_CPP_MIN_LOG_LEVEL", "2"),
                 **launch.environment},
            start_new_session=True,
        )
        for launch in launches
    ]
    readers = []
    for process, tail in zip(processes, stderr_tails, strict=True):
        readers.append(threading.Thread(target=lambda p=process: [messages.put(line) for line in p.stdout],
                                        daemon=True))
        readers.append(threading.Thread(target=lambda p=process, t=tail: [t.append(line.rstrip())
                                                                          for line in p.stderr], daemon=True))
    for reader in readers:
        reader.start()

    ranks = _Ranks()
    known: dict[int, psutil.Process] = {}
    reason: str | None = None
    interrupted: KeyboardInterrupt | None = None
    deadline = time.monotonic() + timeout_s
    reporting_rank: int | None = None
    try:
        while True:
            try:
                line = messages.get(timeout=0.2)
            except queue.Empty:
                line = None
            if line is not None:
                handled = ranks.handle(line)
                if handled is not None:
                    rank, message = handled
                    if message.get("event") == "joined":
                        try:
                            known[int(message["pid"])] = psutil.Process(int(message["pid"]))
                        except (psutil.Error, KeyError, ValueError):
                            pass
                    reporting_rank = rank if reporting_rank is None else min(reporting_rank, rank)
                    if (observer is not None and message.get("event") == "progress" and rank == reporting_rank):
                        observer.on_progress(index, message["phase"], message["done"], message["total"])
                continue
            codes = [process.poll() for process in processes]
            if all(code is not None for code in codes):
                break
            if any(code not in (None, 0) for code in codes):
                break  # one launch failed: the others would wait for it forever
            if time.monotonic() > deadline:
                reason = _timeout_reason(timeout_s, ranks, cluster, config)
                break
    except KeyboardInterrupt as stop:
        interrupted = stop
    finally:
        _kill_all([process for process in processes if process.poll() is None], known)
        for reader in readers:
            reader.join(timeout=5)
    while not messages.empty():
        ranks.handle(messages.get_nowait())
    port_busy = not any(report.joined for report in ranks.by_rank.values()) and any(
        _PORT_BUSY.search(line) for tail in stderr_tails for line in tail)
    if reason is None and interrupted is None:
        failures = _rank_failures(ranks, processes, launches, stderr_tails, config.framework)
        unfinished = [process for process in processes if process.returncode not in (0, None)]
        if failures:
            reason = "; ".join(failures)
        elif unfinished or any(report.outcome is None for report in ranks.by_rank.values()) or not ranks.by_rank:
            tail = next((line for tail in stderr_tails for line in reversed(tail) if line.strip()), "no output")
            reason = f"the ranks ended without a result: {tail[:300]}"
    return ranks, reason, interrupted, port_busy


def _timeout_reason(timeout_s: float, ranks: _Ranks, cluster: Cluster, config: Config) -> str:
    joined = sorted(rank for rank, report in ranks.by_rank.items() if report.joined)
    if not joined:
        where = (f"{cluster.hosts[0][0]}:{cluster.hosts[0][1]}, waiting for {cluster.nodes} machines"
                 if cluster.hosts else "on this machine")
        return (f"timed out after {timeout_s:g} s (--timeout): no rank got past the rendezvous ({where}; "
                f"{config.world_size} ranks expected)")
    states = ", ".join(f"rank {rank} at {ranks.by_rank[rank].progress}" for rank in sorted(ranks.by_rank))
    return f"timed out after {timeout_s:g} s (--timeout) with a rank not answering: {states}"


def _combine(config: Config, ranks: _Ranks, reason: str | None, interrupted: KeyboardInterrupt | None
             ) -> tuple[Result, dict]:
    counts = config_counts(config)
    reports = [ranks.by_rank[rank] for rank in sorted(ranks.by_rank)]
    outcomes = [report.outcome for report in reports if report.outcome is not None]
    facts = {key: outcomes[0].get(key) or {} for key in ("framework", "device")} if outcomes else {}
    skipped = next((outcome for outcome in outcomes if outcome.get("status") == "skipped"), None)
    if skipped is not None and reason is None:
        return Result(config=config, status="skipped", reason=skipped.get("reason"), **counts), facts
    complete = next((report for report in reports if report.gathered_complete), None)
    if reason is None and interrupted is None and complete is not None:
        gathered = complete.gathered
        world = config.world_size
        rank_samples = [gathered["timed"].get(rank, []) for rank in range(world)]
        first = outcomes[0]
        settings = dict(first.get("settings") or {})
        return Result(
            config=config, status="ok", samples_ms=_slowest(rank_samples),
            rank_samples_ms=tuple(tuple(samples) for samples in rank_samples),
            no_sync_samples_ms=_slowest([gathered["no_sync"].get(rank, []) for rank in range(world)]),
            allreduce_bytes=first.get("allreduce_bytes"),
            allreduce_samples_ms=_slowest([gathered["allreduce"].get(rank, []) for rank in range(world)]),
            first_step_ms=max(o.get("first_step_ms") or 0 for o in outcomes) or None,
            peak_memory_bytes=max((o.get("peak_memory_bytes") or 0 for o in outcomes), default=0) or None,
            burn_in_peak_memory_bytes=max((o.get("burn_in_peak_memory_bytes") or 0 for o in outcomes),
                                          default=0) or None,
            capped=any(o.get("capped") for o in outcomes), settings=settings, **counts,
        ), facts
    # Failed, timed out or stopped: what each local rank streamed is kept.
    rank_samples = [report.samples["timed"] for report in reports]
    samples = _slowest(rank_samples)
    status = "interrupted" if interrupted is not None else "failed"
    if interrupted is not None:
        reason = f"interrupted by {getattr(interrupted, 'signal_name', 'SIGINT')} while this configuration ran"
    return Result(
        config=config, status=status, reason=f"{config.framework}: {reason}", partial=bool(samples),
        samples_ms=samples, rank_samples_ms=tuple(tuple(s) for s in rank_samples if s),
        first_step_ms=next((r.burn_in.get("first_step_ms") for r in reports if r.burn_in), None), **counts,
    ), facts
