"""Where the ranks of a data-parallel configuration run, and the two ways an engine's ranks are started.

An engine either has a launcher of its own that starts one machine's ranks (``LauncherPerMachine``: torch's
``torch.distributed.run``), or its ranks are started here, one process each, told the cluster through their
environment (``ProcessPerRank``: TensorFlow's ``TF_CONFIG``). Either way every rank runs the same rank program
(``bench.rank``), which reads its rank from ``RANK`` and ``LOCAL_RANK`` as torch's launcher sets them. Which way an
engine takes, with its arguments, is its entry in ``bench.engines``; nothing here knows a framework.
"""

from __future__ import annotations

import json
import re
import socket
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from bench.config import Config
from bench.supervisor import Ending, Launch, exit_reason


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

    def to_dict(self) -> dict:
        return {"hosts": [f"{host}:{port}" for host, port in self.hosts], "node_rank": self.node_rank}


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


@dataclass(frozen=True)
class LauncherPerMachine:
    """The engine's own launcher starts this machine's ranks: one process per machine, the ranks its children.

    ``program``: the launcher, as arguments to Python (``-m module``). ``arguments(config, cluster, run_id,
    (host, port))``: its options for the rendezvous at (host, port). ``failure_summary``: how it names a rank that
    ended badly in its stderr, with the rank and the exit code as the pattern's two groups.
    """

    program: tuple[str, ...]
    arguments: Callable[[Config, Cluster, str, tuple[str, int]], list[str]]
    failure_summary: re.Pattern

    def launches(self, config: Config, cluster: Cluster, run_id: str, rank_program: Sequence[str]) -> list[Launch]:
        if cluster.hosts:
            host, port = cluster.hosts[0]
            ports = (port,) if cluster.node_rank == 0 else ()  # the rendezvous listens on the first machine
        else:
            host, port = "127.0.0.1", free_port()
            ports = (port,)
        argv = (sys.executable, *self.program, *self.arguments(config, cluster, run_id, (host, port)),
                *rank_program, json.dumps(config.to_dict()))
        return [Launch(argv, ports=ports)]

    def rank_failures(self, ending: Ending) -> dict[int, str]:
        """The ranks the launcher's summary names as ended badly, and how."""
        summary = "\n".join(ending.stderr_tails[0]) if ending.stderr_tails else ""
        return {int(rank): exit_reason(int(code)) for rank, code in self.failure_summary.findall(summary)}


@dataclass(frozen=True)
class ProcessPerRank:
    """One process per rank, started here, each told the cluster by ``cluster_environment(workers, rank)`` (the
    ``host:port`` every rank listens on, in rank order) besides ``RANK``, ``LOCAL_RANK`` and ``WORLD_SIZE``.

    On several machines machine m's ranks listen on its port and the ones after it, which every machine can work
    out from the same ``--hosts``.
    """

    cluster_environment: Callable[[list[str], int], dict[str, str]]

    def launches(self, config: Config, cluster: Cluster, run_id: str, rank_program: Sequence[str]) -> list[Launch]:
        replicas = config.replicas or 1
        if cluster.hosts:
            workers = [f"{host}:{port + k}" for host, port in cluster.hosts for k in range(replicas)]
            local_ports = [cluster.hosts[cluster.node_rank][1] + k for k in range(replicas)]
        else:
            local_ports = [free_port() for _ in range(replicas)]
            workers = [f"127.0.0.1:{port}" for port in local_ports]
        launches = []
        for local in range(replicas):
            rank = cluster.node_rank * replicas + local
            environment = {"RANK": str(rank), "LOCAL_RANK": str(local), "WORLD_SIZE": str(len(workers)),
                           **self.cluster_environment(workers, rank)}
            launches.append(Launch((sys.executable, *rank_program, json.dumps(config.to_dict())),
                                   environment, ports=(local_ports[local],), rank=rank))
        return launches

    def rank_failures(self, ending: Ending) -> dict[int, str]:
        """Each rank whose process ended badly, and how."""
        return {launch.rank: ending.reason(index) for index, launch in enumerate(ending.launches)
                if index in ending.failed and launch.rank is not None}


RankLauncher = LauncherPerMachine | ProcessPerRank
