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
from bench.pipeline import pipeline_refusal


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
    modes_reason: str = ""  # why a mode it does not run is not run
    precisions: tuple[str, ...] = PRECISIONS
    channels_last: bool = False  # whether --channels-last applies
    gpu_install: str = ""  # what a GPU run needs installed beyond the project
    # Its own name, packages and distributions where they are not those of its definitions' framework: the modules
    # whose presence means it is installed (its definitions' framework package when none are named; the jax engine
    # runs the Keras twins without TensorFlow), the distributions (the first installed one) carrying its version.
    engine_title: str = ""
    packages: tuple[str, ...] = ()
    distributions: tuple[str, ...] = ()
    install: str = "pip install -e ."  # what installs it
    aliases: tuple[str, ...] = ()
    measures_peak: bool = True  # whether its backend can time the device's matrix-product peak
    # "module:function" proving it runs the zoo's network (``bench.proofs``), where the zoo's own proof between
    # frameworks (zoo.parity) does not already cover it.
    proof: str | None = None
    explains: str = ""  # why ``explain`` cannot take its step apart layer by layer; empty where it can
    # "module:Class" of its input pipeline (``bench.pipeline``): JPEG files decoded and augmented by its framework's
    # own data tools, for ``--data jpeg`` and the ``input`` mode; None where none is set up.
    pipeline: str | None = None
    pipeline_autotunes: bool = False  # whether its pipeline can size its own parallelism (--workers auto)
    pipeline_packages: tuple[str, ...] = ()  # what its pipeline needs beyond the engine's own packages

    @property
    def title(self) -> str:
        return self.engine_title or zoo.get_framework(self.definitions).title

    def _packages(self) -> tuple[str, ...]:
        return self.packages or (zoo.get_framework(self.definitions).package,)

    def installed(self) -> bool:
        """Whether its packages are installed, found without importing them."""
        return all(importlib.util.find_spec(package) is not None for package in self._packages())

    def missing(self) -> list[str]:
        """Its packages that are not installed."""
        return [package for package in self._packages() if importlib.util.find_spec(package) is None]

    def version(self) -> str | None:
        """The installed version of its distribution, read without importing it; None if absent."""
        for distribution in self.distributions or (zoo.get_framework(self.definitions).distribution,):
            try:
                return metadata.version(distribution)
            except metadata.PackageNotFoundError:
                continue
        return None

    def not_installed(self) -> str:
        """The one-line reason a configuration of this engine cannot run here when it is not installed."""
        return f"{self.name}: {', '.join(self.missing())} not installed ({self.install})"

    def refusal(self, config: Config) -> str | None:
        """Why the table says this engine cannot run ``config``, in one line naming the engine; None if it can."""
        if not self.installed():
            return self.not_installed()
        if config.data != "synthetic":
            if self.pipeline is None:
                takers = [engine.name for engine in ENGINES.values() if engine.pipeline]
                return (f"{self.name}: no input pipeline is set up for it (--data {config.data} runs with "
                        f"{', '.join(takers)})")
            if missing := [name for name in self.pipeline_packages if importlib.util.find_spec(name) is None]:
                return (f"{self.name}: {', '.join(missing)} not installed ({self.install}), which its input pipeline "
                        "needs")
            if config.autotune and not self.pipeline_autotunes:
                takers = [engine.name for engine in ENGINES.values() if engine.pipeline_autotunes]
                return (f"{self.name}: its input pipeline has no autotuned worker count (--workers auto applies to "
                        f"{', '.join(takers)})")
            if refusal := pipeline_refusal(config):
                return f"{self.name}: {refusal}"
        kind = config.device.partition(":")[0]
        if kind not in self.devices:
            return f"{self.name}: runs on {', '.join(self.devices)}, not {kind}"
        if config.mode not in self.modes:
            return f"{self.name}: runs the modes {', '.join(self.modes)}, not {config.mode}" + (
                f" ({self.modes_reason})" if self.modes_reason else "")
        if config.precision not in self.precisions:
            return f"{self.name}: runs {', '.join(self.precisions)}, not {config.precision}"
        if config.channels_last and not self.channels_last:
            takers = [engine.name for engine in ENGINES.values() if engine.channels_last]
            return f"{self.name}: --channels-last applies to {', '.join(takers)} only ({self.layout})"
        if config.replicas is not None and self.data_parallel is None:
            return f"{self.name}: no data-parallel runtime is set up for it (--replicas)"
        return None


    def explain_refusal(self, config: Config) -> str | None:
        """Why ``explain`` cannot explain ``config`` with this engine, in one line; None if it can."""
        return self.refusal(config) or (f"{self.name}: {self.explains}" if self.explains else None)


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
               synchronize="torch.cuda.synchronize()", channels_last=True,
               pipeline="bench.torch_pipeline:TorchPipeline", pipeline_packages=("torchvision",)),
        Engine("tf", definitions="tf", backend="bench.tf_backend:TFBackend",
               data_parallel=ProcessPerRank(_tf_config), layout="TensorFlow runs NHWC throughout",
               compile="XLA jit_compile (the whole step)", synchronize="tf.test.experimental.sync_devices()",
               gpu_install="pip install -e '.[cuda]'", pipeline="bench.tf_pipeline:TFPipeline",
               pipeline_autotunes=True),
        # The Keras twins again, under Keras 3's JAX backend (chosen by the backend module before Keras loads).
        Engine("jax", definitions="tf", backend="bench.jax_backend:JaxBackend", data_parallel=None,
               layout="NHWC (the Keras twins' layout)", compile="always jit-compiled (jax.jit of the whole step)",
               synchronize="jax.block_until_ready on the step's outputs", engine_title="JAX (Keras 3)",
               packages=("jax", "keras"), distributions=("jax",), install="pip install -e '.[jax]'",
               gpu_install="pip install 'jax[cuda12]'", proof="bench.jax_backend:prove",
               explains="the jitted step is one XLA program, and no per-layer profile of it is read here"),
        # The torch twins exported to ONNX, run by an inference runtime.
        Engine("onnxruntime", definitions="torch", backend="bench.onnx_backend:OnnxRuntimeBackend",
               data_parallel=None, layout="NCHW (the exported torch graph)",
               compile="always: the session optimises the graph (level recorded)",
               synchronize="run() returns finished outputs (I/O binding synchronised on a GPU)",
               modes=("forward",), modes_reason="an inference runtime: no gradients",
               precisions=("fp32", "fp16"), engine_title="ONNX Runtime",
               packages=("torch", "onnxruntime", "onnx", "onnxscript"),
               distributions=("onnxruntime", "onnxruntime-gpu"), install="pip install -e '.[onnx]'",
               gpu_install="pip install onnxruntime-gpu", aliases=("ort",), measures_peak=False,
               proof="bench.onnx_backend:prove",
               explains="the optimised graph's fused nodes are not the spec's layers"),
        Engine("openvino", definitions="torch", backend="bench.openvino_backend:OpenVINOBackend",
               data_parallel=None, layout="NCHW in, OpenVINO's own blocked layouts inside",
               compile="always: compile_model for the device", synchronize="infer() returns finished outputs",
               devices=("cpu",), modes=("forward",), modes_reason="an inference runtime: no gradients",
               precisions=("fp32", "bf16"), engine_title="OpenVINO",
               packages=("torch", "openvino", "onnx", "onnxscript"),
               distributions=("openvino",), install="pip install -e '.[openvino]'", aliases=("ov",),
               measures_peak=False, proof="bench.openvino_backend:prove",
               explains="the compiled graph's fused nodes are not the spec's layers"),
    )
}
_ENGINE_SPELLINGS = {spelling: engine.name for engine in ENGINES.values()
                     for spelling in (engine.name, *engine.aliases)}


def get_engine(name: str) -> Engine:
    """The engine of a configuration's ``framework``, by its name, an alias, or any spelling zoo accepts for the
    framework it shares a name with; ``zoo.UnknownNameError`` else."""
    spelling = name.strip().lower()
    if spelling in _ENGINE_SPELLINGS:
        return ENGINES[_ENGINE_SPELLINGS[spelling]]
    try:
        canonical = zoo.resolve_framework(name)
    except zoo.UnknownNameError:
        canonical = None
    if canonical not in ENGINES:
        raise zoo.UnknownNameError("engine", name, sorted(_ENGINE_SPELLINGS)) from None
    return ENGINES[canonical]


def installed_engines() -> list[str]:
    """The engines whose package is installed, in the table's order."""
    return [name for name, engine in ENGINES.items() if engine.installed()]


def _load(reference: str):
    module_name, name = reference.split(":")
    return getattr(importlib.import_module(module_name), name)


def load_backend(name: str):
    """A new backend of engine ``name``; imports that engine's framework (and only it)."""
    return _load(get_engine(name).backend)()


def load_pipeline(name: str):
    """The input pipeline class of engine ``name`` (``bench.pipeline.Pipeline``); imports its framework."""
    reference = get_engine(name).pipeline
    if reference is None:
        raise ValueError(f"{name}: no input pipeline is set up for it")
    return _load(reference)
