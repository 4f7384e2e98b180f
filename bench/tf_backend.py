"""TensorFlow backend: ``tf.function`` graph steps (XLA with ``--compile``), Keras mixed precision, NHWC."""

from __future__ import annotations

from collections.abc import Callable

import keras
import tensorflow as tf

import zoo
from bench.backend import DATA_SEED, FP16_LOSS_SCALE, SGD_LR, SGD_MOMENTUM, SGD_WEIGHT_DECAY, Skip, parse_device
from bench.record import Config

_POLICIES = {"fp32": "float32", "bf16": "mixed_bfloat16", "fp16": "mixed_float16"}


class TFBackend:
    name = "tf"

    def __init__(self) -> None:
        self._device_name = "/CPU:0"
        self._on_gpu = False
        self._step: tf.types.experimental.PolymorphicFunction | None = None
        self.model: keras.Model | None = None  # the network and input of the last prepared step
        self.images: tf.Tensor | None = None

    def configure_threads(self, threads: int) -> None:
        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(1)
        # TensorFlow maps all GPU memory at start-up unless told to grow; set before any device initialises.
        for gpu in tf.config.list_physical_devices("GPU"):
            tf.config.experimental.set_memory_growth(gpu, True)

    def check(self, config: Config) -> None:
        kind, index = parse_device(config.device)
        if kind == "cuda":
            gpus = tf.config.list_physical_devices("GPU")
            if not gpus:
                raise Skip("tf: no GPU visible (install the cuda extra: pip install -e '.[cuda]'; needs a driver)")
            if index >= len(gpus):
                raise Skip(f"tf: {config.device} requested but {len(gpus)} GPU(s) visible")
        if config.channels_last:
            raise Skip("tf: --channels-last applies to torch only (TensorFlow runs NHWC throughout)")
        if kind == "cpu" and config.precision == "fp16":
            raise Skip("tf: fp16 on CPU is not benchmarked (no fast fp16 CPU kernels); use bf16 or fp32")

    def prepare(self, config: Config) -> Callable[[], object]:
        kind, index = parse_device(config.device)
        self._on_gpu = kind == "cuda"
        self._device_name = f"/GPU:{index}" if self._on_gpu else "/CPU:0"
        # fp32 means IEEE fp32 in both frameworks (see the torch backend); TensorFlow defaults to TF32.
        tf.config.experimental.enable_tensor_float_32_execution(False)
        keras.mixed_precision.set_global_policy(_POLICIES[config.precision])
        spec = zoo.get_spec(config.model)
        keras.utils.set_random_seed(DATA_SEED)
        channels, height, width = spec.input_shape
        with tf.device(self._device_name):
            model = zoo.build(config.model, "tf")
            images = tf.random.normal((config.batch_size, height, width, channels))
            labels = tf.random.uniform((config.batch_size,), 0, spec.num_classes, dtype=tf.int32)
        self.model, self.images = model, images
        loss_fn = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
        optimizer = None
        if config.mode == "train":
            # torch-style SGD: L2 weight decay added to the gradient, then momentum (Keras' own weight_decay
            # is decoupled and would be a different update).
            optimizer = keras.optimizers.SGD(learning_rate=SGD_LR, momentum=SGD_MOMENTUM)
            if config.precision == "fp16":
                optimizer = keras.mixed_precision.LossScaleOptimizer(optimizer, initial_scale=FP16_LOSS_SCALE)
            with tf.device(self._device_name):  # momentum buffers live beside the weights
                optimizer.build(model.trainable_variables)
        scale_loss = config.precision == "fp16"

        if config.mode == "forward":

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

    def environment(self, config: Config) -> dict:
        build = tf.sysconfig.get_build_info()
        info = {
            "version": tf.__version__,
            "keras": keras.__version__,
            "intra_op_threads": tf.config.threading.get_intra_op_parallelism_threads(),
            "inter_op_threads": tf.config.threading.get_inter_op_parallelism_threads(),
            "built_with_cuda": tf.test.is_built_with_cuda(),
            "cuda_build": build.get("cuda_version"),
            "cudnn_build": build.get("cudnn_version"),
            "xla": bool(config.compile),
            "mixed_precision_policy": _POLICIES[config.precision],
            "tf32": tf.config.experimental.tensor_float_32_execution_enabled(),
        }
        if self._on_gpu:
            index = int(self._device_name.rsplit(":", 1)[1])
            details = tf.config.experimental.get_device_details(tf.config.list_physical_devices("GPU")[index])
            info["gpu_name"] = details.get("device_name")
            info["gpu_capability"] = ".".join(map(str, details.get("compute_capability", ())))
        return info

    def is_out_of_memory(self, error: BaseException) -> bool:
        return isinstance(error, tf.errors.ResourceExhaustedError) or "out of memory" in str(error).lower()


Backend = TFBackend  # what bench.backend.load_backend instantiates
