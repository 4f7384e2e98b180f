"""TensorFlow backend: ``tf.function`` graph steps (XLA with ``--compile``), Keras mixed precision, NHWC."""

from __future__ import annotations

from collections.abc import Callable

import keras
import tensorflow as tf

import zoo
from bench.backend import (
    FP16_LOSS_SCALE,
    Skip,
    cpu_precision_skip_reason,
    host_data,
    nvidia_driver,
    parse_device,
    precision_skip_reason,
)
from bench.modes import SGD_LR, SGD_MOMENTUM, SGD_WEIGHT_DECAY, get_mode
from bench.record import Config

_POLICIES = {"fp32": "float32", "bf16": "mixed_bfloat16", "fp16": "mixed_float16"}
_DTYPES = {"fp32": tf.float32, "bf16": tf.bfloat16, "fp16": tf.float16}


class TFBackend:
    name = "tf"

    def __init__(self) -> None:
        self._device_name = "/CPU:0"
        self._on_gpu = False
        self._step: tf.types.experimental.PolymorphicFunction | None = None
        self.model: keras.Model | None = None  # the network and input of the last prepared step
        self.images: tf.Tensor | None = None
        self.labels: tf.Tensor | None = None
        self.optimizer: keras.optimizers.Optimizer | None = None

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
        if config.channels_last:
            raise Skip("tf: --channels-last applies to torch only (TensorFlow runs NHWC throughout)")
        if kind == "cpu" and (reason := cpu_precision_skip_reason("tf", config.precision)):
            raise Skip(reason)

    def _use_device(self, device: str) -> None:
        self._on_gpu = parse_device(device)[0] == "cuda"
        # configure() left only the requested GPU visible, so it is the first logical one.
        self._device_name = "/GPU:0" if self._on_gpu else "/CPU:0"
        # fp32 means IEEE fp32 in both frameworks (see the torch backend); TensorFlow defaults to TF32.
        tf.config.experimental.enable_tensor_float_32_execution(False)

    def prepare(self, config: Config) -> Callable[[], object]:
        self._use_device(config.device)
        mode = get_mode(config.mode)
        keras.mixed_precision.set_global_policy(_POLICIES[config.precision])
        spec = zoo.get_spec(config.model)
        keras.utils.set_random_seed(0)  # weights; the data come from bench.backend.host_data
        images_np, labels_np = host_data(spec.input_shape, spec.num_classes, config.batch_size)
        with tf.device(self._device_name):
            model = zoo.build(config.model, "tf")
            images = tf.constant(images_np.transpose(0, 2, 3, 1))  # NCHW -> NHWC
            labels = tf.constant(labels_np)
        self.model, self.images, self.labels = model, images, labels
        loss_fn = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
        optimizer = None
        if mode.update:
            # torch-style SGD: L2 weight decay added to the gradient, then momentum (Keras' own weight_decay
            # is decoupled and would be a different update).
            optimizer = keras.optimizers.SGD(learning_rate=SGD_LR, momentum=SGD_MOMENTUM)
            if config.precision == "fp16":
                optimizer = keras.mixed_precision.LossScaleOptimizer(optimizer, initial_scale=FP16_LOSS_SCALE)
            with tf.device(self._device_name):  # momentum buffers live beside the weights
                optimizer.build(model.trainable_variables)
        self.optimizer = optimizer
        scale_loss = config.precision == "fp16"

        if not mode.backward:

            def forward():
                return model(images, training=False)

            function = forward
        else:

            def forward_backward():
                with tf.GradientTape() as tape:
                    logits = tf.cast(model(images, training=True), tf.float32)
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
                    # Graph mode prunes whatever no output depends on: unless the gradients are returned,
                    # TensorFlow skips the backward pass and "forward-backward" times a forward pass.
                    return loss, gradients
                # Gradients are still multiplied by the loss scale here; the decay term must be too.
                decay = SGD_WEIGHT_DECAY * (optimizer.dynamic_scale if scale_loss else 1.0)
                gradients = [g + decay * tf.cast(v, g.dtype) for g, v in zip(gradients, variables, strict=True)]
                optimizer.apply_gradients(zip(gradients, variables, strict=True))
                return loss

            function = forward_backward
        device_name = self._device_name

        def on_device():
            # Placement is traced into the graph, so calls pay nothing for it.
            with tf.device(device_name):
                return function()

        self._step = tf.function(on_device, jit_compile=bool(config.compile), reduce_retracing=False)
        return self._step

    def synchronize(self) -> None:
        # Eager execution is synchronous on the CPU; GPU kernels may still be queued when a call returns.
        if self._on_gpu:
            tf.test.experimental.sync_devices()

    def trace_count(self) -> int:
        return int(self._step.experimental_get_tracing_count()) if self._step is not None else 0

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
            "mixed_precision_policy": _POLICIES[config.precision],
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


Backend = TFBackend  # what bench.backend.load_backend instantiates
