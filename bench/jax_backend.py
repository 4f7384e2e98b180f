"""JAX backend: the Keras twins under Keras 3's JAX backend, every step one ``jax.jit`` of the model's stateless call.

One Keras definition serves two engines: this module selects Keras' JAX backend before Keras is imported, so it is
imported only in a process that runs the ``jax`` engine (a worker, a proof), never beside TensorFlow's Keras.

Why ``jax.jit`` over ``Model.stateless_call`` and not Keras' own compiled ``train_step``: the train step of
``fit`` would bring Keras' SGD, whose weight decay is decoupled (a different update from torch's, which adds the
decay to the gradient), and metric tracking that the other engines do not do. Here forward, forward-backward and
train are the same work as in torch and tf: logits; the mean cross-entropy and the gradient of every parameter
(returned, so that XLA cannot prune the backward pass); and torch's SGD written out in ``jax.numpy``. The weights,
momentum buffers and kept statistics (BatchNorm's, the dropout seed) are donated to the step and come back as its
outputs, so that XLA updates them in place as the other frameworks do.
"""

from __future__ import annotations

import os
import sys

if "keras" in sys.modules and sys.modules["keras"].backend.backend() != "jax":
    raise ImportError("bench.jax_backend: Keras is already loaded with another backend in this process; the jax "
                      "engine runs in a process of its own")
os.environ["KERAS_BACKEND"] = "jax"
# TensorFlow stays out of this process: Keras seeds TensorFlow's generator too whenever it can import it
# (keras.utils.set_random_seed, for tf.data pipelines this engine does not use), which would load all of TensorFlow,
# its thread pools and its memory beside JAX's. A None entry makes its import fail, which Keras takes as absent.
sys.modules.setdefault("tensorflow", None)
# Device memory as it is used, as TensorFlow's memory growth does, so that the peak memory is what the step needs
# rather than the pool XLA would reserve up front.
os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")

from collections.abc import Callable  # noqa: E402
from functools import partial  # noqa: E402

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import keras  # noqa: E402
import numpy as np  # noqa: E402

import zoo  # noqa: E402
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
from bench.engines import ENGINES  # noqa: E402
from bench.modes import SGD_LR, SGD_MOMENTUM, SGD_WEIGHT_DECAY, get_mode  # noqa: E402

_DTYPES = {"fp32": jnp.float32, "bf16": jnp.bfloat16, "fp16": jnp.float16}
_CUDA_INSTALL = ENGINES["jax"].gpu_install
# explain refuses the engine before it starts (the table); a direct call says the same.
_NOT_EXPLAINED = f"jax: {ENGINES['jax'].explains}"


def _cross_entropy(logits, labels):
    """Mean cross-entropy of the logits (in float32, as the other engines compute the loss) against the labels."""
    log_probabilities = jax.nn.log_softmax(logits.astype(jnp.float32))
    return -jnp.mean(jnp.take_along_axis(log_probabilities, labels[:, None], axis=1))


class JaxBackend:
    name = "jax"
    exits_at_once_after_leave = True

    def __init__(self) -> None:
        self._device: jax.Device | None = None
        self._threads: int | None = None
        self._traces = 0
        self._outputs: object = None  # what the last step returned, waited on by synchronize()
        self.model: keras.Model | None = None  # the network and input of the last prepared step
        self.images: jax.Array | None = None
        self.labels: jax.Array | None = None
        # The prepared step's state, carried from call to call: "trainable" (the weights), "kept" (BatchNorm's
        # statistics, the dropout seed) and, for train, "momentum" (SGD's buffers).
        self.state: dict[str, list[jax.Array]] = {}

    def configure(self, config: Config, threads: int) -> None:
        # Before JAX initialises a backend: only the platform the configuration runs on, so that a CPU configuration
        # on a GPU machine neither initialises nor places anything on the GPU.
        # (With the CPU second for a CUDA one: without any platform JAX fails with a bare assertion, and check()
        # must be able to say that no GPU is visible.)
        jax.config.update("jax_platforms", "cuda,cpu" if parse_device(config.device)[0] == "cuda" else "cpu")
        # XLA's CPU client sizes its thread pool by the CPUs the process may run on, and has no other setting for
        # it: fewer threads than the machine's CPUs are given by narrowing the process's CPU affinity.
        allowed = sorted(os.sched_getaffinity(0))
        if threads < len(allowed):
            os.sched_setaffinity(0, allowed[:threads])
        self._threads = min(threads, len(allowed))
        # fp32 means IEEE fp32 in every engine: on Ampere and newer, XLA's default precision for fp32 matrix
        # products and convolutions is TF32.
        jax.config.update("jax_default_matmul_precision", "highest")

    def check(self, config: Config) -> None:
        kind, index = parse_device(config.device)
        if kind == "cpu":
            if reason := cpu_precision_skip_reason("jax", config.precision):
                raise Skip(reason)
            return
        try:
            gpus = jax.devices("cuda")
        except RuntimeError:
            raise Skip(f"jax: no CUDA GPU visible to jax (its CUDA build: {_CUDA_INSTALL}; needs a driver)") from None
        if index >= len(gpus):
            raise Skip(f"jax: {config.device} requested but {len(gpus)} GPU(s) visible")
        capability = tuple(int(part) for part in str(getattr(gpus[index], "compute_capability", "0.0")).split("."))
        if reason := precision_skip_reason("jax", gpus[index].device_kind, capability, config.precision):
            raise Skip(reason)

    def _use_device(self, device: str) -> jax.Device:
        kind, index = parse_device(device)
        self._device = jax.devices("cuda")[index] if kind == "cuda" else jax.devices("cpu")[0]
        return self._device

    def prepare(self, config: Config, data: tuple[np.ndarray, np.ndarray] | None = None) -> Callable[[], object]:
        device = self._use_device(config.device)
        mode = get_mode(config.mode)
        keras.mixed_precision.set_global_policy(MIXED_PRECISION_POLICIES[config.precision])
        spec = zoo.get_spec(config.model)
        keras.utils.set_random_seed(0)  # weights; the data come from bench.backend.host_data
        images_np, labels_np = data or host_data(spec.input_shape, spec.num_classes, config.batch_size)
        with jax.default_device(device):
            model = zoo.build(config.model, "tf")
        images = jax.device_put(images_np.transpose(0, 2, 3, 1), device)  # NCHW -> NHWC
        labels = jax.device_put(labels_np.astype(np.int32), device)
        self.model, self.images, self.labels = model, images, labels
        trainable = [jax.device_put(variable.value, device) for variable in model.trainable_variables]
        kept = [jax.device_put(variable.value, device) for variable in model.non_trainable_variables]
        state = self.state = {"trainable": trainable, "kept": kept}
        loss_scale = FP16_LOSS_SCALE if config.precision == "fp16" else 1.0

        def count_trace() -> None:
            self._traces += 1  # runs while JAX traces, never when the compiled step runs

        if not mode.backward:

            @jax.jit
            def forward(trainable, kept, images):
                count_trace()
                logits, _ = model.stateless_call(trainable, kept, images, training=False)
                return logits

            def step():
                self._outputs = forward(trainable, kept, images)
                return self._outputs

            return step

        def loss_of(trainable, kept, images, labels):
            logits, kept = model.stateless_call(trainable, kept, images, training=True)
            # fp16 gradients underflow without loss scaling; the scale is divided out of the gradients after.
            return _cross_entropy(logits, labels) * loss_scale, kept

        gradients_of = jax.value_and_grad(loss_of, has_aux=True)

        if not mode.update:

            @partial(jax.jit, donate_argnums=(1,))
            def forward_backward(trainable, kept, images, labels):
                count_trace()
                (loss, kept), gradients = gradients_of(trainable, kept, images, labels)
                # The gradients are returned: an output nobody reads would let XLA prune the backward pass.
                return loss / loss_scale, [g / loss_scale for g in gradients], kept

            def step():
                # The last step's gradients go first, as torch's zero_grad(set_to_none=True) frees them: kept, they
                # would be a second set beside the new ones in the memory peak.
                self._outputs = None
                loss, gradients, state["kept"] = forward_backward(state["trainable"], state["kept"], images, labels)
                self._outputs = (loss, gradients, state["kept"])
                return loss

            return step

        state["momentum"] = [jnp.zeros_like(weight) for weight in trainable]

        @partial(jax.jit, donate_argnums=(0, 1, 2))
        def train(trainable, kept, momentum, images, labels):
            count_trace()
            (loss, kept), gradients = gradients_of(trainable, kept, images, labels)
            updated, buffers = [], []
            for weight, gradient, buffer in zip(trainable, gradients, momentum, strict=True):
                # torch.optim.SGD: L2 weight decay added to the gradient, then momentum (no dampening, the first
                # buffer being the gradient itself, which a zero buffer gives too), then the step.
                gradient = gradient / loss_scale + SGD_WEIGHT_DECAY * weight
                buffer = SGD_MOMENTUM * buffer + gradient
                buffers.append(buffer)
                updated.append(weight - SGD_LR * buffer)
            return loss / loss_scale, updated, kept, buffers

        def step():
            self._outputs = None
            loss, state["trainable"], state["kept"], state["momentum"] = train(
                state["trainable"], state["kept"], state["momentum"], images, labels)
            self._outputs = (loss, state["trainable"], state["kept"], state["momentum"])
            return loss

        return step

    def synchronize(self) -> None:
        # JAX dispatches asynchronously on every platform, the CPU included: a step returns before it has run.
        jax.block_until_ready(self._outputs)

    def trace_count(self) -> int:
        return self._traces

    def reset_peak_memory(self) -> None:
        """XLA's allocator keeps a peak that cannot be reset: on a GPU the peak reaches back to the process's start."""

    def peak_memory_bytes(self) -> int | None:
        if self._device is not None and self._device.platform != "cpu":
            return int((self._device.memory_stats() or {}).get("peak_bytes_in_use", 0)) or None
        return None

    def framework_info(self) -> dict:
        return {"version": jax.__version__, "jaxlib": jax.lib.__version__, "keras": keras.__version__,
                "keras_backend": keras.backend.backend()}

    def device_info(self, config: Config) -> dict:
        kind, index = parse_device(config.device)
        if kind != "cuda":
            return {}
        try:
            gpu = jax.devices("cuda")[index]
        except (RuntimeError, IndexError):
            return {}
        return {"gpu_name": gpu.device_kind, "gpu_capability": str(getattr(gpu, "compute_capability", "")) or None,
                "driver": nvidia_driver()}

    def settings(self, config: Config) -> dict:
        return {
            "threads": self._threads,
            "threads_by": "CPU affinity (XLA's CPU client sizes its pool by the CPUs it may use)",
            "cpus": sorted(os.sched_getaffinity(0)),
            "memory_format": "NHWC",
            "compile": "jax.jit of the whole step over keras.Model.stateless_call (XLA)",
            "mixed_precision_policy": MIXED_PRECISION_POLICIES[config.precision],
            "default_matmul_precision": jax.config.jax_default_matmul_precision,
            "optimizer": "torch-style SGD in jax.numpy" if get_mode(config.mode).update else None,
            **({"loss_scale": f"static {FP16_LOSS_SCALE:g}"} if config.precision == "fp16" else {}),
            **({"preallocate": os.environ.get("XLA_PYTHON_CLIENT_PREALLOCATE"),
                "peak_memory": "device allocator since the process started (XLA's peak cannot be reset)"}
               if parse_device(config.device)[0] == "cuda" else {}),
        }

    def matmul(self, device: str, precision: str, size: int) -> Callable[[], object]:
        target = self._use_device(device)
        keys = jax.random.split(jax.random.key(0))
        a, b = (jax.device_put(jax.random.normal(key, (size, size)).astype(_DTYPES[precision]), target)
                for key in keys)
        product = jax.jit(lambda a, b: jnp.matmul(a, b, precision="highest" if precision == "fp32" else None))

        def multiply():
            self._outputs = product(a, b)
            return self._outputs

        return multiply

    def is_out_of_memory(self, error: BaseException) -> bool:
        text = str(error)
        return "RESOURCE_EXHAUSTED" in text or "out of memory" in text.lower()

    def device_busy(self, steps: int) -> float | None:
        """Not measured for jax (its profiler's traces are not read here); None on every device."""
        return None

    def profile_layers(self, config: Config, windows: int) -> dict:
        raise Skip(_NOT_EXPLAINED)

    def layer_steps(self, config: Config) -> dict[str, Callable[[], object]]:
        raise Skip(_NOT_EXPLAINED)

    def reference_timer(self, threads: int) -> tuple[Callable[[int], list[float]], str]:
        model, images, state = self.model, self.images, self.state
        # The weights are arguments, as in the step: captured, they would be compiled in as constants, and XLA
        # could fold work on them that the step does at run time.
        bare = jax.jit(lambda trainable, kept, images: model.stateless_call(trainable, kept, images,
                                                                            training=False)[0])
        return (bare_loop(lambda: bare(state["trainable"], state["kept"], images).block_until_ready()),
                "bare jax.jit loop with block_until_ready")

def prove(name: str, batch_size: int, seed: int) -> dict:
    """``verify``'s proof of the jax engine: the torch twin's weights in the Keras twin under JAX, float64 logits,
    gradients and BatchNorm statistics (JAX computes float64 once ``jax_enable_x64`` is on) and float32 logits."""
    # On the CPU, whatever GPU jax may see: the proof's float32 logits are held to torch's on the CPU, and a recent
    # GPU's default float32 precision is TF32.
    jax.config.update("jax_platforms", "cpu")
    jax.config.update("jax_default_matmul_precision", "highest")
    jax.config.update("jax_enable_x64", True)
    from zoo.parity import prove_keras_twin

    result, counts = prove_keras_twin(name, batch_size, seed, other="jax")
    return {"parity": result.to_dict(), "counts": counts}
