"""TensorFlow backend: ``tf.function`` graph steps (XLA with ``--compile``), Keras mixed precision, NHWC.

The Keras twins serve two engines; this one needs Keras on TensorFlow, whatever ``KERAS_BACKEND`` the user's
environment holds, so it is chosen here before Keras is imported.
"""

from __future__ import annotations

import os
import sys

if "keras" in sys.modules and sys.modules["keras"].backend.backend() != "tensorflow":
    raise ImportError("bench.tf_backend: Keras is already loaded with another backend in this process; the tf "
                      "engine runs in a process of its own")
os.environ["KERAS_BACKEND"] = "tensorflow"

import glob  # noqa: E402
import json  # noqa: E402
import shutil  # noqa: E402
import statistics  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable  # noqa: E402

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

import zoo  # noqa: E402
from bench import ledger as ld  # noqa: E402
from bench.backend import (  # noqa: E402
    FP16_LOSS_SCALE,
    MIXED_PRECISION_POLICIES,
    Skip,
    bare_loop,
    cpu_precision_skip_reason,
    host_data,
    nvidia_driver,
    parse_device,
    precision_skip_reason,
)
from bench.config import Config  # noqa: E402
from bench.modes import SGD_LR, SGD_MOMENTUM, SGD_WEIGHT_DECAY, get_mode  # noqa: E402
from zoo import IMAGES  # noqa: E402
from zoo.keras_common import PAD_SUFFIX  # noqa: E402

_DTYPES = {"fp32": tf.float32, "bf16": tf.bfloat16, "fp16": tf.float16}


class TFBackend:
    name = "tf"
    # A peer pulls its share of a collective from this worker over gRPC, so the last all-gather's reply may still be
    # in flight when it returns here: ending at once could cut it off, so a worker ends through the normal shutdown.
    exits_at_once_after_leave = False

    def __init__(self) -> None:
        self._device_name = "/CPU:0"
        self._on_gpu = False
        self._traced: tf.types.experimental.PolymorphicFunction | None = None  # the step, taking its batch
        self._step: Callable[[], object] | None = None  # the step on the prepared batch
        self.model: keras.Model | None = None  # the network and input of the last prepared step
        self.images: tf.Tensor | None = None
        self.labels: tf.Tensor | None = None
        self.optimizer: keras.optimizers.Optimizer | None = None
        self._strategy: tf.distribute.MultiWorkerMirroredStrategy | None = None  # data parallel, after join()
        self._config: Config | None = None
        self._data: tuple[np.ndarray, np.ndarray] | None = None

    def configure(self, config: Config, threads: int) -> None:
        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(1)
        # TensorFlow initialises every GPU it sees and maps all their memory: it may see only the requested one
        # (none for a CPU configuration), with memory growth, and all of it before any device initialises.
        gpus = tf.config.list_physical_devices("GPU")
        kind, index = parse_device(config.device)
        chosen = [gpus[index]] if kind == "cuda" and index < len(gpus) else []
        tf.config.set_visible_devices(chosen, "GPU")
        for gpu in chosen:
            tf.config.experimental.set_memory_growth(gpu, True)

    def check(self, config: Config) -> None:
        kind, index = parse_device(config.device)
        if kind == "cuda":
            gpus = tf.config.list_physical_devices("GPU")
            if not gpus:
                raise Skip("tf: no GPU visible (install the cuda extra: pip install -e '.[cuda]'; needs a driver)")
            if index >= len(gpus):
                raise Skip(f"tf: {config.device} requested but {len(gpus)} GPU(s) visible")
            details = tf.config.experimental.get_device_details(gpus[index])
            reason = precision_skip_reason("tf", details.get("device_name", config.device),
                                           tuple(details.get("compute_capability", (0, 0))), config.precision)
            if reason:
                raise Skip(reason)
        if kind == "cpu" and (reason := cpu_precision_skip_reason("tf", config.precision)):
            raise Skip(reason)

    def _use_device(self, device: str) -> None:
        self._on_gpu = parse_device(device)[0] == "cuda"
        # configure() left only the requested GPU visible, so it is the first logical one.
        self._device_name = "/GPU:0" if self._on_gpu else "/CPU:0"
        # fp32 means IEEE fp32 in both frameworks (see the torch backend); TensorFlow defaults to TF32.
        tf.config.experimental.enable_tensor_float_32_execution(False)

    def prepare(self, config: Config, data: tuple[np.ndarray, np.ndarray] | None = None) -> Callable[[], object]:
        self._config, self._data = config, data
        self._use_device(config.device)
        mode = get_mode(config.mode)
        keras.mixed_precision.set_global_policy(MIXED_PRECISION_POLICIES[config.precision])
        spec = zoo.get_spec(config.model)
        keras.utils.set_random_seed(0)  # weights; the data come from bench.backend.host_data
        images_np, labels_np = data or host_data(spec.input_shape, spec.num_classes, config.batch_size)
        strategy = self._strategy
        # Under the strategy, variables are mirrored on every worker and the strategy places the step.
        placement = strategy.scope if strategy is not None else lambda: tf.device(self._device_name)
        replicas = strategy.num_replicas_in_sync if strategy is not None else 1
        with placement():
            model = zoo.build(config.model, "tf")
            images = tf.constant(images_np.transpose(0, 2, 3, 1))  # NCHW -> NHWC
            labels = tf.constant(labels_np)
        self.model, self.images, self.labels = model, images, labels
        loss_fn = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
        optimizer = None
        if mode.update:
            # torch-style SGD: L2 weight decay added to the gradient, then momentum (Keras' own weight_decay
            # is decoupled and would be a different update).
            with placement():  # momentum buffers live beside the weights; Keras binds the strategy at creation
                optimizer = keras.optimizers.SGD(learning_rate=SGD_LR, momentum=SGD_MOMENTUM)
                if config.precision == "fp16":
                    optimizer = keras.mixed_precision.LossScaleOptimizer(optimizer, initial_scale=FP16_LOSS_SCALE)
                optimizer.build(model.trainable_variables)
        self.optimizer = optimizer
        scale_loss = config.precision == "fp16"

        if not mode.backward:

            def forward(images, labels):
                return model(images, training=False)

            function = forward
        else:

            def forward_backward(images, labels):
                with tf.GradientTape() as tape:
                    logits = tf.cast(model(images, training=True), tf.float32)
                    # Under a strategy Keras divides each replica's mean loss by the replica count
                    # (keras.losses.loss.scale_loss_for_distribution), so the SUM all-reduce below (or in Keras'
                    # apply_gradients) gives the gradient of the mean over the global batch.
                    loss = loss_fn(labels, logits)
                    if not scale_loss:
                        scaled = loss
                    elif optimizer is None:
                        scaled = loss * FP16_LOSS_SCALE
                    else:
                        scaled = optimizer.scale_loss(loss)
                variables = model.trainable_variables
                gradients = tape.gradient(scaled, variables)
                if optimizer is None:
                    if strategy is not None:
                        gradients = tf.distribute.get_replica_context().all_reduce(
                            tf.distribute.ReduceOp.SUM, gradients)
                    # Graph mode prunes whatever no output depends on: unless the gradients are returned,
                    # TensorFlow skips the backward pass and "forward-backward" times a forward pass.
                    return loss, gradients
                # Gradients are still multiplied by the loss scale here; the decay term must be too, and shared
                # between the replicas, whose gradients Keras sums.
                decay = SGD_WEIGHT_DECAY / replicas * (optimizer.dynamic_scale if scale_loss else 1.0)
                gradients = [g + decay * tf.cast(v, g.dtype) for g, v in zip(gradients, variables, strict=True)]
                optimizer.apply_gradients(zip(gradients, variables, strict=True))
                return loss

            function = forward_backward
        device_name = self._device_name

        if strategy is not None:

            def on_device(images, labels):
                return strategy.run(function, args=(images, labels))
        else:

            def on_device(images, labels):
                # Placement is traced into the graph, so calls pay nothing for it.
                with tf.device(device_name):
                    return function(images, labels)

        # The batch is an argument of the traced step, so a step fed from the input pipeline (fed_step) runs the
        # same graph, traced once for the batch's shape and dtype.
        traced = tf.function(on_device, jit_compile=bool(config.compile), reduce_retracing=False)
        self._traced = traced
        self._step = lambda: traced(images, labels)
        return self._step

    def fed_step(self, batches) -> Callable[[], object]:
        """The prepared step on the next batch of ``batches`` (tf.data's host tensors, the same shape and dtype as
        the fixed batch): the same traced function, the copy to the device inside it."""
        traced = self._traced

        def fed():
            images, labels = next(batches)
            return traced(images, labels)

        return fed

    # Data parallel (bench.rank): MultiWorkerMirroredStrategy, one worker process per replica, from TF_CONFIG.

    @staticmethod
    def _collective(config: Config) -> tf.distribute.experimental.CommunicationImplementation:
        """NCCL between GPUs, the gRPC ring on CPUs."""
        implementations = tf.distribute.experimental.CommunicationImplementation
        return implementations.NCCL if parse_device(config.device)[0] == "cuda" else implementations.RING

    def join(self, config: Config) -> tuple[int, int]:
        """Create the strategy (before any other TensorFlow op); returns (this worker's rank, replicas)."""
        strategy = tf.distribute.MultiWorkerMirroredStrategy(
            communication_options=tf.distribute.experimental.CommunicationOptions(
                implementation=self._collective(config)))
        self._strategy = strategy
        # The strategy connects to its peers lazily; one collective here makes joining mean what it means for
        # torch: every worker is up.
        self.agree_min(0)
        return self._rank_and_world()

    def _rank_and_world(self) -> tuple[int, int]:
        return int(self._strategy.cluster_resolver.task_id), int(self._strategy.num_replicas_in_sync)

    def no_sync_step(self) -> Callable[[], object]:
        """The same step on an independent, non-distributed copy of the model: no cross-replica reduction."""
        strategy, self._strategy = self._strategy, None
        try:
            return self.prepare(self._config, self._data)
        finally:
            self._strategy = strategy

    def gradient_bytes(self) -> int:
        return sum(int(np.prod(v.shape)) * np.dtype(v.dtype).itemsize for v in self.model.trainable_variables)

    def _summed_across(self, tensor: tf.Tensor) -> tf.types.experimental.PolymorphicFunction:
        """A traced SUM all-reduce of ``tensor`` over the replicas, with the strategy's own collective."""
        strategy = self._strategy

        @tf.function
        def reduce():
            return strategy.run(lambda: tf.distribute.get_replica_context().all_reduce(
                tf.distribute.ReduceOp.SUM, tensor))

        return reduce

    def allreduce_step(self) -> Callable[[], object]:
        """One SUM all-reduce of a gradient-sized fp32 buffer with the strategy's own collective."""
        with self._strategy.scope():
            buffer = tf.zeros([self.gradient_bytes() // 4], tf.float32)
        return self._summed_across(buffer)

    def agree_min(self, value: int) -> int:
        # The collective reduces by SUM or MEAN only: each rank writes its proposal in its own slot.
        rank, world = self._rank_and_world()
        proposals = np.zeros(world)
        proposals[rank] = value
        return int(self._summed_across(tf.constant(proposals))().numpy().min())

    def all_gather(self, samples: list[float]) -> list[list[float]]:
        """Every rank's list, by rank (the lists are equally long: the ranks agreed on the step count)."""
        rank, world = self._rank_and_world()
        rows = np.zeros((world, len(samples)))
        rows[rank] = samples
        return self._summed_across(tf.constant(rows))().numpy().tolist()

    def leave(self) -> None:
        """Nothing to close: the strategy's servers end with the process."""

    def data_parallel_settings(self, config: Config) -> dict:
        strategy = self._strategy
        return {"engine": "tf.distribute.MultiWorkerMirroredStrategy (loss / replicas, gradients SUM all-reduced: "
                          "in Keras' apply_gradients for train, explicitly for forward-backward)",
                "collective_backend": self._collective(config).name,
                "launcher": "one worker process per replica, TF_CONFIG",
                "world_size": int(strategy.num_replicas_in_sync) if strategy is not None else None,
                "no_sync_ceiling": "the same step on a non-distributed copy of the model in every worker"}

    def synchronize(self) -> None:
        # Eager execution is synchronous on the CPU; GPU kernels may still be queued when a call returns.
        if self._on_gpu:
            tf.test.experimental.sync_devices()

    def trace_count(self) -> int:
        return int(self._traced.experimental_get_tracing_count()) if self._traced is not None else 0

    def reset_peak_memory(self) -> None:
        if self._on_gpu:
            tf.config.experimental.reset_memory_stats(self._device_name.strip("/"))

    def peak_memory_bytes(self) -> int | None:
        if self._on_gpu:
            return int(tf.config.experimental.get_memory_info(self._device_name.strip("/"))["peak"])
        return None

    def framework_info(self) -> dict:
        build = tf.sysconfig.get_build_info()
        return {
            "version": tf.__version__,
            "keras": keras.__version__,
            "built_with_cuda": tf.test.is_built_with_cuda(),
            "cuda_build": build.get("cuda_version"),
            "cudnn_build": build.get("cudnn_version"),
        }

    def device_info(self, config: Config) -> dict:
        kind, index = parse_device(config.device)
        gpus = tf.config.list_physical_devices("GPU")
        if kind != "cuda" or index >= len(gpus):
            return {}
        details = tf.config.experimental.get_device_details(gpus[index])
        return {"gpu_name": details.get("device_name"),
                "gpu_capability": ".".join(map(str, details.get("compute_capability", ()))),
                "driver": nvidia_driver()}

    def settings(self, config: Config) -> dict:
        return {
            "threads": tf.config.threading.get_intra_op_parallelism_threads(),
            "interop_threads": tf.config.threading.get_inter_op_parallelism_threads(),
            "memory_format": "NHWC",
            "compile": "XLA jit_compile (whole step)" if config.compile else "tf.function graph",
            "mixed_precision_policy": MIXED_PRECISION_POLICIES[config.precision],
            "tf32": tf.config.experimental.tensor_float_32_execution_enabled(),
            **({"memory_growth": True} if self._on_gpu else {}),
        }

    def matmul(self, device: str, precision: str, size: int) -> Callable[[], object]:
        self._use_device(device)  # TF32 off: an fp32 peak is an IEEE fp32 peak
        with tf.device(self._device_name):
            a, b = (tf.cast(tf.random.stateless_normal((size, size), seed=(0, seed)), _DTYPES[precision])
                    for seed in range(2))
        device_name = self._device_name

        @tf.function
        def multiply():
            with tf.device(device_name):
                return tf.matmul(a, b)

        return multiply

    def is_out_of_memory(self, error: BaseException) -> bool:
        return isinstance(error, tf.errors.ResourceExhaustedError) or "out of memory" in str(error).lower()

    # Explaining a step layer by layer (bench.explainer).

    def profile_layers(self, config: Config, windows: int) -> dict:
        """Profile ``windows`` single steps of the prepared step with TensorFlow's profiler, read back through the
        profiler's own converter to its per-op statistics, whose op names carry the Keras layer scopes (under
        ``gradient_tape/`` for the backward pass). Grappler fuses a convolution or dense layer with the bias and
        activation after it into one kernel named after the last of them: its time is given to the convolution or
        dense layer, and both rows say so. XLA's clusters span layers and are left unattributed."""
        spec = zoo.get_spec(config.model)
        kinds = {layer.name: layer.kind for layer in spec.layers}
        found, window_ms, kernels, notes, busy = [], [], {}, {}, []
        for _ in range(windows):
            folder = tempfile.mkdtemp(prefix="convbench-tf-profile-")
            try:
                tf.profiler.experimental.start(folder)
                start = time.perf_counter()
                self._step()
                self.synchronize()
                window_ms.append((time.perf_counter() - start) * 1e3)
                tf.profiler.experimental.stop()
                rows = _op_statistics(folder)
            finally:
                shutil.rmtree(folder, ignore_errors=True)
            on_device = [row for row in rows if row["host_or_device"] == "Device"]
            busy.append(sum(row["total_self_time"] for row in on_device) / 1e3 / window_ms[-1])
            times: dict[str, dict[str, float]] = {}
            for row in (on_device if self._on_gpu else rows):
                if row["type"] == "IDLE":
                    continue
                scopes = row["operation"].split("/")
                pass_ = ld.BACKWARD if scopes[0] == "gradient_tape" else ld.FORWARD
                scopes = scopes[1:] if pass_ == ld.BACKWARD else scopes
                layer, padding = ld.layer_of_scope(scopes[1], kinds) if len(scopes) > 2 else (None, False)
                if layer is None:
                    continue
                if row["type"].startswith("_Fused"):
                    fused_into = _fused_into(spec, layer)
                    if fused_into != layer:
                        notes[fused_into] = f"includes {layer}, fused into one {row['type']} kernel"
                        notes[layer] = f"fused into {fused_into}'s {row['type']} kernel; its time is there"
                        layer = fused_into
                if padding:
                    notes.setdefault(layer, "includes the padding its twin puts before it")
                per_pass = times.setdefault(layer, {})
                per_pass[pass_] = per_pass.get(pass_, 0.0) + row["total_self_time"] / 1e3
                kernels.setdefault(layer, set()).add(row["type"])
            found.append(times)
        if config.compile:
            notes = {name: "XLA: its compiled clusters span layers, so no layer is attributed" for name in kinds}
            found = [{} for _ in found]
        return {"kinds": kinds, "windows": found, "window_ms": window_ms, "notes": notes, "kernels": kernels,
                "profiler": "tf.profiler, per-op statistics by Keras layer scope",
                "launches_per_step": None, "device_busy": statistics.median(busy) if self._on_gpu else None}

    def device_busy(self, steps: int) -> float | None:
        if not self._on_gpu:
            return None
        folder = tempfile.mkdtemp(prefix="convbench-tf-profile-")
        try:
            tf.profiler.experimental.start(folder)
            start = time.perf_counter()
            for _ in range(steps):
                self._step()
            self.synchronize()
            wall_ms = (time.perf_counter() - start) * 1e3
            tf.profiler.experimental.stop()
            rows = _op_statistics(folder)
        finally:
            shutil.rmtree(folder, ignore_errors=True)
        return sum(row["total_self_time"] for row in rows if row["host_or_device"] == "Device") / 1e3 / wall_ms

    def layer_steps(self, config: Config) -> dict[str, Callable[[], object]]:
        """Each spec layer alone (with the padding its twin puts before it), as a step of its own at its in-model
        input shape, NHWC: its forward pass, and for a mode with a backward pass the gradients of the sum of its
        output with respect to its weights and its input."""
        spec = zoo.get_spec(config.model)
        backward = get_mode(config.mode).backward
        names = {layer.name for layer in self.model.layers}
        steps = {}
        for layer in spec.layers:
            chain = [self.model.get_layer(name) for name in (layer.name + PAD_SUFFIX, layer.name) if name in names]
            inputs = []
            with tf.device(self._device_name):
                for source in layer.inputs:
                    shape = spec.input_shape if source == IMAGES else spec.layer(source).output_shape
                    nhwc = (shape[1], shape[2], shape[0]) if len(shape) == 3 else shape
                    inputs.append(tf.random.normal((config.batch_size, *nhwc)))
            watched = [value for value, source in zip(inputs, layer.inputs, strict=True) if source != IMAGES]
            steps[layer.name] = _layer_function(chain, inputs, watched, backward, self._device_name)
        return steps

    def reference_timer(self, threads: int) -> tuple[Callable[[int], list[float]], str]:
        model, images = self.model, self.images
        bare = tf.function(lambda: model(images, training=False))  # its own tf.function of the same network
        return bare_loop(bare), "bare tf.function loop"



def _layer_function(chain: list, inputs: list, watched: list, backward: bool, device_name: str):
    """One layer (after its padding, if any) on fixed inputs as a traced function: forward, or forward and the
    gradients of the sum of its output (returned, so that the graph keeps the backward pass)."""

    def forward():
        value = inputs if len(inputs) > 1 else inputs[0]
        for layer in chain:
            value = layer(value, training=backward)
        return value

    if not backward:
        def run():
            with tf.device(device_name):
                return forward()
    else:
        variables = [variable for layer in chain for variable in layer.trainable_variables]

        def run():
            with tf.device(device_name), tf.GradientTape() as tape:
                tape.watch(watched)
                loss = tf.reduce_sum(tf.cast(forward(), tf.float32))
            return tape.gradient(loss, [*watched, *variables])

    return tf.function(run, reduce_retracing=False)


def _fused_into(spec, layer: str) -> str:
    """The convolution or dense layer a fused kernel named after ``layer`` (an activation or normalisation after
    it) begins with; ``layer`` itself when none precedes it."""
    current = spec.layer(layer)
    while current.kind in ("relu", "bn"):
        source = spec.input_of(current.name)
        if source is None:
            return layer
        current = source
    return current.name if current.kind in ("conv", "dense") else layer


def _op_statistics(folder: str) -> list[dict]:
    """The profiler's per-op statistics of the trace in ``folder``, through the converter TensorBoard's profile
    plugin uses: a row per op (its name with layer scopes, type, host or device, total self time in us)."""
    from tensorflow.python.profiler.internal import _pywrap_profiler_plugin

    files = glob.glob(os.path.join(folder, "**", "*.xplane.pb"), recursive=True)
    data, ok = _pywrap_profiler_plugin.xspace_to_tools_data(files, "framework_op_stats", {})
    if not ok or not files:
        raise RuntimeError(f"TensorFlow's profiler wrote no readable trace to {folder}")
    table = json.loads(data)[0]
    columns = [column["id"] for column in table["cols"]]
    return [dict(zip(columns, (cell.get("v") for cell in row["c"]), strict=False)) for row in table["rows"]]
