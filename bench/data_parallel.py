"""Runs one data-parallel configuration: its ranks started as its engine's entry says, supervised, combined.

Each rank runs ``bench.rank``: it joins its engine's process group, times the data-parallel step, the same step
without gradient exchange and an all-reduce of the gradients' size, and finally gathers every rank's samples
through the engine's own collective, so the machine that writes the run file holds them all. On several machines
the same command runs on each; the first of ``--hosts`` is the rendezvous, and the machine given ``--node-rank 0``
writes the run file.

Nothing here imports a framework: the parent of a run never does.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
from collections.abc import Sequence
from typing import Any

from bench.config import Config
from bench.engines import get_engine
from bench.launchers import Cluster, ClusterError, RankLauncher, port_is_free
from bench.protocol import ALLREDUCE, NO_SYNC, TIMED, Message, Progress
from bench.record import Result, config_counts
from bench.supervisor import ChildReports, Ending, Interrupted, exit_reason, supervise

RANK_PROGRAM: tuple[str, ...] = ("-m", "bench.rank")
PORT_ATTEMPTS = 3  # a port chosen free can be taken before the launcher binds it: choose again
_PORT_BUSY = re.compile(r"address already in use|EADDRINUSE|errno 98", re.IGNORECASE)


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


def run_replicas(config: Config, timeout_s: float, cluster: Cluster, observer: Any = None, index: int = 0,
                 run_id: str = "0", rank_program: Sequence[str] | None = None
                 ) -> tuple[Result, dict, Interrupted | None]:
    """Run every local rank of ``config``; returns the combined result, the facts the ranks reported, and the
    interrupt that stopped it, if one did (the result then keeps what was measured, ``interrupted``).

    A rank that fails, is killed or hangs past ``timeout_s`` fails the configuration, naming the rank; every other
    rank is then ended, so nothing outlives the configuration. Samples streamed before the end are kept
    (``partial``).
    """
    launcher = get_engine(config.framework).data_parallel
    for attempt in range(PORT_ATTEMPTS):
        launches = launcher.launches(config, cluster, f"{run_id}-{attempt}", rank_program or RANK_PROGRAM)
        if cluster.hosts:
            busy = [port for launch in launches for port in launch.ports if not port_is_free(port)]
            if busy:
                host = cluster.hosts[cluster.node_rank][0]
                reason = (f"{config.framework}: port {busy[0]} on this machine ({host}, node {cluster.node_rank}) "
                          "is in use; every machine must use the ports --hosts gives it")
                return Result(config=config, status="failed", reason=reason, **config_counts(config)), {}, None
        reports = ChildReports()
        ending = supervise(launches, timeout_s, _recorder(reports, observer, index))
        port_busy = not any(report.joined for report in reports.by_rank.values()) and any(
            _PORT_BUSY.search(line) for tail in ending.stderr_tails for line in tail)
        if not port_busy or cluster.hosts or attempt == PORT_ATTEMPTS - 1:
            break
    result, facts = _combine(config, reports, ending, launcher, cluster, timeout_s)
    return result, facts, ending.interrupted


def _recorder(reports: ChildReports, observer: Any, index: int):
    """Record every rank's messages; show the progress of the lowest rank that reports."""
    reporting = {"rank": None}

    def on_message(message: Message) -> None:
        reports.record(message)
        if reporting["rank"] is None or message.rank < reporting["rank"]:
            reporting["rank"] = message.rank
        if observer is not None and isinstance(message, Progress) and message.rank == reporting["rank"]:
            observer.on_progress(index, message.phase, message.done, message.total)

    return on_message


def slowest(per_rank: Sequence[Sequence[float]]) -> tuple[float, ...]:
    """Each step's time on its slowest rank, over the steps every rank took."""
    per_rank = [samples for samples in per_rank if samples]
    if not per_rank:
        return ()
    return tuple(max(step) for step in zip(*per_rank, strict=False))  # a failed rank may stop short


def _combine(config: Config, reports: ChildReports, ending: Ending, launcher: RankLauncher, cluster: Cluster,
             timeout_s: float) -> tuple[Result, dict]:
    counts = config_counts(config)
    ranks = reports.ordered()
    outcomes = [report.outcome for report in ranks if report.outcome is not None]
    facts = {"framework": outcomes[0].framework, "device": outcomes[0].device} if outcomes else {}
    reason = _failure(config, reports, ending, launcher, cluster, timeout_s)
    skipped = next((outcome for outcome in outcomes if outcome.status == "skipped"), None)
    if skipped is not None and reason is None:
        return Result(config=config, status="skipped", reason=skipped.reason, **counts), facts
    complete = next((report for report in ranks if report.gathered_complete), None)
    if reason is None and complete is not None:
        world = range(config.world_size)
        gathered = {phase: [complete.gathered.get(phase, {}).get(rank, []) for rank in world]
                    for phase in (TIMED, NO_SYNC, ALLREDUCE)}
        return Result(
            config=config, status="ok", samples_ms=slowest(gathered[TIMED]),
            rank_samples_ms=tuple(tuple(samples) for samples in gathered[TIMED]),
            no_sync_samples_ms=slowest(gathered[NO_SYNC]), allreduce_bytes=outcomes[0].allreduce_bytes,
            allreduce_samples_ms=slowest(gathered[ALLREDUCE]),
            first_step_ms=max(outcome.first_step_ms or 0 for outcome in outcomes) or None,
            peak_memory_bytes=max(outcome.peak_memory_bytes or 0 for outcome in outcomes) or None,
            burn_in_peak_memory_bytes=max(outcome.burn_in_peak_memory_bytes or 0 for outcome in outcomes) or None,
            capped=any(outcome.capped for outcome in outcomes), settings=dict(outcomes[0].settings), **counts,
        ), facts
    # Failed, timed out or stopped: what each local rank streamed is kept.
    rank_samples = [report.samples.get(TIMED, []) for report in ranks]
    samples = slowest(rank_samples)
    status = "interrupted" if ending.interrupted is not None else "failed"
    if ending.interrupted is not None:
        reason = f"interrupted by {ending.interrupted.signal_name} while this configuration ran"
    first_step = next((report.burn_in.first_step_ms for report in ranks if report.burn_in is not None), None)
    return Result(
        config=config, status=status, reason=f"{config.framework}: {reason}", partial=bool(samples),
        samples_ms=samples, rank_samples_ms=tuple(tuple(s) for s in rank_samples if s), first_step_ms=first_step,
        **counts,
    ), facts


def _failure(config: Config, reports: ChildReports, ending: Ending, launcher: RankLauncher, cluster: Cluster,
             timeout_s: float) -> str | None:
    """Why the configuration failed, naming the ranks; None when it did not (or was interrupted)."""
    if ending.interrupted is not None:
        return None
    if ending.timed_out:
        return _timeout_reason(timeout_s, reports, cluster, config)
    failures = {rank: report.outcome.reason for rank, report in reports.by_rank.items()
                if report.outcome is not None and report.outcome.status == "failed"}
    for rank, how in launcher.rank_failures(ending).items():
        failures.setdefault(rank, how)
    # Once one rank has failed, the others are ended with SIGTERM (by its launcher, or here): the reason names
    # the ranks that failed first, not those ended because of them.
    ended_by_others = {exit_reason(128 + signal.SIGTERM), exit_reason(-signal.SIGTERM)}
    ended_after = {rank for rank, how in failures.items() if how in ended_by_others}
    if ended_after and len(ended_after) < len(failures):
        failures = {rank: how for rank, how in failures.items() if rank not in ended_after}
    if failures:
        return "; ".join(f"rank {rank}: {how}" for rank, how in sorted(failures.items()))
    if ending.failed or not reports.by_rank or any(report.outcome is None for report in reports.by_rank.values()):
        return f"the ranks ended without a result: {ending.last_line()[:300]}"
    return None


def _timeout_reason(timeout_s: float, reports: ChildReports, cluster: Cluster, config: Config) -> str:
    if not any(report.joined for report in reports.by_rank.values()):
        where = (f"{cluster.hosts[0][0]}:{cluster.hosts[0][1]}, waiting for {cluster.nodes} machines"
                 if cluster.hosts else "on this machine")
        return (f"timed out after {timeout_s:g} s (--timeout): no rank got past the rendezvous ({where}; "
                f"{config.world_size} ranks expected)")
    states = ", ".join(f"rank {rank} at {reports.by_rank[rank].position}" for rank in sorted(reports.by_rank))
    return f"timed out after {timeout_s:g} s (--timeout) with a rank not answering: {states}"
