"""The one table of engines: per engine, its backend, how its data-parallel ranks start, and what it can run.

An engine is what a configuration's ``framework`` names: it runs the model definitions of one zoo framework
(``definitions``) through a backend module, imported only inside a process that runs it. Adding an engine is one
entry here, its backend module, and (for new definitions) one line in zoo's framework table; nothing else in
``bench`` or ``reports`` names a framework.
"""

from __future__ import annotations

import importlib
import importlib.util
import json
import re
from dataclasses import dataclass
from importlib import metadata

import zoo
from bench.config import PRECISIONS, Config
from bench.launchers import Cluster, LauncherPerMachine, ProcessPerRank, RankLauncher
from bench.modes import MODES


@dataclass(frozen=True)
class Engine:
    """One engine and what it can run; ``refusal`` turns the table into a one-line reason before any process
    starts. What depends on the machine (a GPU present, bf16 in hardware) its backend checks where it runs."""

    name: str
    definitions: str  # the zoo framework whose definitions it runs
    backend: str  # "module:Class"
    data_parallel: RankLauncher | None
    layout: str  # the memory layout its convolutions run in
    compile: str  # what --compile means for it
    synchronize: str  # how a sample waits for the device to finish the step
    devices: tuple[str, ...] = ("cpu", "cuda")
    modes: tuple[str, ...] = tuple(MODES)
    precisions: tuple[str, ...] = PRECISIONS
    channels_last: bool = False  # whether --channels-last applies
    gpu_install: str = ""  # what a GPU run needs installed beyond the project

    @property
    def title(self) -> str:
        return zoo.get_framework(self.definitions).title

    def installed(self) -> bool:
        """Whether its package is installed, found without importing it."""
        return importlib.util.find_spec(zoo.get_framework(self.definitions).package) is not None

    def version(self) -> str | None:
        """The installed version of its distribution, read without importing it; None if absent."""
        try:
            return metadata.version(zoo.get_framework(self.definitions).distribution)
        except metadata.PackageNotFoundError:
            return None

    def refusal(self, config: Config) -> str | None:
        """Why the table says this engine cannot run ``config``, in one line naming the engine; None if it can."""
        kind = config.device.partition(":")[0]
        if kind not in self.devices:
            return f"{self.name}: runs on {', '.join(self.devices)}, not {kind}"
        if config.mode not in self.modes:
            return f"{self.name}: runs the modes {', '.join(self.modes)}, not {config.mode}"
        if config.precision not in self.precisions:
            return f"{self.name}: runs {', '.join(self.precisions)}, not {config.precision}"
        if config.channels_last and not self.channels_last:
            takers = [engine.name for engine in ENGINES.values() if engine.channels_last]
            return f"{self.name}: --channels-last applies to {', '.join(takers)} only ({self.layout})"
        if config.replicas is not None and self.data_parallel is None:
            return f"{self.name}: no data-parallel runtime is set up for it (--replicas)"
        return None


def _torchrun_arguments(config: Config, cluster: Cluster, run_id: str, rendezvous: tuple[str, int]) -> list[str]:
    host, port = rendezvous
    return [f"--nnodes={cluster.nodes}", f"--nproc-per-node={config.replicas}", "--max-restarts=0",
            "--monitor-interval=0.5", "--rdzv-backend=c10d", f"--rdzv-endpoint={host}:{port}",
            f"--rdzv-id=convbench-{run_id}",
            # The rendezvous store lives on the first machine, explicitly: a store that cannot bind its port must
            # fail there rather than connect, as a client, to whatever holds the port.
            f"--rdzv-conf=is_host={int(cluster.node_rank == 0)}"]


def _tf_config(workers: list[str], rank: int) -> dict[str, str]:
    """How MultiWorkerMirroredStrategy learns its cluster and its own place in it."""
    return {"TF_CONFIG": json.dumps({"cluster": {"worker": workers}, "task": {"type": "worker", "index": rank}})}


ENGINES: dict[str, Engine] = {
    engine.name: engine
    for engine in (
        Engine("torch", definitions="torch", backend="bench.torch_backend:TorchBackend",
               # torch.distributed.run, through bench.torch_launcher (which only skips the interpreter's teardown
               # once it has succeeded); its failure summary names each failed rank and its exit code.
               data_parallel=LauncherPerMachine(
                   ("-m", "bench.torch_launcher"), _torchrun_arguments,
                   re.compile(r"rank\s*:\s*(\d+)\s*\(local_rank:\s*\d+\)\s*\n\s*exitcode\s*:\s*(-?\d+)")),
               layout="NCHW, or NHWC with --channels-last", compile="torch.compile (model forward and backward)",
               synchronize="torch.cuda.synchronize()", channels_last=True),
        Engine("tf", definitions="tf", backend="bench.tf_backend:TFBackend",
               data_parallel=ProcessPerRank(_tf_config), layout="TensorFlow runs NHWC throughout",
               compile="XLA jit_compile (the whole step)", synchronize="tf.test.experimental.sync_devices()",
               gpu_install="pip install -e '.[cuda]'"),
    )
}


def get_engine(name: str) -> Engine:
    """The engine of a configuration's ``framework``, by any spelling zoo accepts; ``zoo.UnknownNameError`` else."""
    canonical = zoo.resolve_framework(name)
    if canonical not in ENGINES:
        raise zoo.UnknownNameError("engine", name, sorted(ENGINES))
    return ENGINES[canonical]


def installed_engines() -> list[str]:
    """The engines whose package is installed, in the table's order."""
    return [name for name, engine in ENGINES.items() if engine.installed()]


def load_backend(name: str):
    """A new backend of engine ``name``; imports that engine's framework (and only it)."""
    module_name, class_name = get_engine(name).backend.split(":")
    return getattr(importlib.import_module(module_name), class_name)()
