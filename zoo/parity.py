"""Numerical proof that a model's torch and TensorFlow definitions are the same network.

With the torch weights transferred into the Keras model and the same input (NCHW for torch, its NHWC
transpose for TensorFlow), both run in inference mode (dropout off) and must give the same logits and the
same gradients of a mean cross-entropy loss with respect to every parameter.

The proof runs in float64 in both frameworks. In float32, a piecewise-linear network has activations within
rounding of a ReLU's kink or a max-pool tie, which the two frameworks may route differently: on an AVX2-only
EPYC, alexnet-2012's conv2 gradient differed by 3.7e-3 of its largest value while every other layer agreed to
2e-6, and the same happens after a training step on AlexNet. That says nothing about whether the networks are
the same; in float64 such coincidences need an activation within 1e-16 of a kink, and the comparison measures
the definitions, not the luck of rounding. The logits are also compared in float32, the precision benchmarked.
"""

from __future__ import annotations

import contextlib
import importlib
from collections.abc import Iterator
from dataclasses import asdict, dataclass

import numpy as np

# float64 logits and gradients: each max |torch - tf| relative to the largest torch value (per parameter for
# gradients). float64 rounds at 1.1e-16; summing reductions of up to 9,216 terms in different orders with
# different convolution algorithms (oneDNN vs Eigen) and chaining them through the backward pass, the worst
# measured over the three models is 3.3e-15 (README). 1e-10 leaves a margin of 10^4 for other CPUs and batch
# sizes and still fails on any real mismatch (a wrong flatten order or LRN constant gives 1e-3 up to order 1).
LOGITS_RTOL = 1e-10
GRADS_RTOL = 1e-10
# float32 logits, the precision the benchmark runs: the bound the project promises, relative to the largest logit.
FP32_LOGITS_RTOL = 1e-4


@dataclass(frozen=True)
class ParityResult:
    """The parity figures of one model; every difference is max |torch - tf| over the tensor.

    ``logits_*`` and ``grads_*`` are computed in float64, ``fp32_logits_rel_diff`` in float32.
    """

    model: str
    batch_size: int
    logits_max_abs_diff: float
    logits_max_abs: float
    logits_rel_diff: float
    grads_max_abs_diff: float
    grads_rel_diff: float
    worst_grad: str
    fp32_logits_rel_diff: float
    logits_rtol: float = LOGITS_RTOL
    grads_rtol: float = GRADS_RTOL
    fp32_logits_rtol: float = FP32_LOGITS_RTOL

    @property
    def logits_ok(self) -> bool:
        return self.logits_rel_diff <= self.logits_rtol and self.fp32_logits_rel_diff <= self.fp32_logits_rtol

    @property
    def grads_ok(self) -> bool:
        return self.grads_rel_diff <= self.grads_rtol

    @property
    def passed(self) -> bool:
        return self.logits_ok and self.grads_ok

    def to_dict(self) -> dict:
        return {**asdict(self), "logits_ok": self.logits_ok, "grads_ok": self.grads_ok, "passed": self.passed}


def _relative(diff: float, scale: float) -> float:
    return diff / scale if scale > 0 else (0.0 if diff == 0 else float("inf"))


def load_frameworks() -> None:
    """Import torch (with its FLOP counter) before TensorFlow.

    The FLOP counter imports triton, whose native module crashes the process when it loads after TensorFlow;
    loaded first, both live in one process.
    """
    # An explicit sequence, so that no import sorter can reorder it.
    for module in ("torch.utils.flop_counter", "tensorflow"):
        importlib.import_module(module)


def framework_counts(name: str) -> dict[str, dict[str, int]]:
    """Per framework, the parameter count and forward MACs per image of the model as built (not the spec)."""
    load_frameworks()
    import zoo
    from zoo import tf_models, torch_models

    spec = zoo.get_spec(name)
    torch_model = zoo.build(name, "torch")
    keras_model = zoo.build(name, "tf")
    return {
        "torch": {
            "params": sum(p.numel() for p in torch_model.parameters()),
            "macs": torch_models.count_macs(torch_model, spec.input_shape),
        },
        "tf": {"params": keras_model.count_params(), "macs": tf_models.count_macs(keras_model)},
    }


@contextlib.contextmanager
def _keras_dtype(dtype: str) -> Iterator[None]:
    """Build and run Keras models in ``dtype`` (inputs, weights and losses alike), restoring the defaults after."""
    import keras

    policy, floatx = keras.mixed_precision.global_policy(), keras.config.floatx()
    keras.config.set_floatx(dtype)
    keras.mixed_precision.set_global_policy(dtype)
    try:
        yield
    finally:
        keras.config.set_floatx(floatx)
        keras.mixed_precision.set_global_policy(policy)


def _twins(name: str, seed: int, dtype: str):
    """The torch model (eval mode) and its Keras twin holding the same weights, both in ``dtype``."""
    import torch

    import zoo
    from zoo.transfer import torch_to_keras

    torch.manual_seed(seed)
    torch_model = zoo.build(name, "torch").to(getattr(torch, dtype)).eval()
    with _keras_dtype(dtype):
        keras_model = zoo.build(name, "tf")
    torch_to_keras(zoo.get_spec(name), torch_model, keras_model)
    return torch_model, keras_model


def _data(name: str, batch_size: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    import zoo

    spec = zoo.get_spec(name)
    rng = np.random.default_rng(seed)
    images = rng.standard_normal((batch_size, *spec.input_shape))
    return images, rng.integers(0, spec.num_classes, size=batch_size)


def check_parity(name: str, *, batch_size: int = 2, seed: int = 0) -> ParityResult:
    """Build ``name`` in both frameworks, transfer the torch weights, and compare logits and gradients."""
    load_frameworks()
    import keras
    import tensorflow as tf
    import torch

    import zoo
    from zoo.transfer import keras_arrays

    spec = zoo.get_spec(name)
    images, labels = _data(name, batch_size, seed)

    torch_model, keras_model = _twins(name, seed, "float64")
    logits_torch = torch_model(torch.from_numpy(images))
    loss_torch = torch.nn.functional.cross_entropy(logits_torch, torch.from_numpy(labels))
    torch_model.zero_grad()
    loss_torch.backward()
    with _keras_dtype("float64"):
        loss_fn = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
        with tf.GradientTape() as tape:
            logits_tf = keras_model(tf.constant(images.transpose(0, 2, 3, 1)), training=False)
            loss_tf = loss_fn(tf.constant(labels), logits_tf)
        variables = keras_model.trainable_variables
        grads_tf = dict(zip((v.path for v in variables), tape.gradient(loss_tf, variables), strict=True))

    logits_t = logits_torch.detach().numpy()
    logits_diff = float(np.max(np.abs(logits_t - logits_tf.numpy())))
    logits_scale = float(np.max(np.abs(logits_t)))

    worst_rel, worst_abs, worst_name = 0.0, 0.0, ""
    torch_grads = keras_arrays(spec, torch_model, tensor_of=lambda parameter: parameter.grad)
    for layer_name, (kernel_grad, bias_grad) in torch_grads.items():
        layer = keras_model.get_layer(layer_name)
        for label, expected, variable in (("kernel", kernel_grad, layer.kernel), ("bias", bias_grad, layer.bias)):
            got = grads_tf[variable.path].numpy()
            diff = float(np.max(np.abs(expected - got)))
            rel = _relative(diff, float(np.max(np.abs(expected))))
            if not (np.all(np.isfinite(expected)) and np.all(np.isfinite(got))):
                rel = diff = float("inf")  # a NaN would otherwise slip past every comparison
            if rel >= worst_rel:
                worst_rel, worst_abs, worst_name = rel, diff, f"{layer_name}.{label}"

    torch32, keras32 = _twins(name, seed, "float32")
    images32 = images.astype(np.float32)
    with torch.no_grad():
        logits32 = torch32(torch.from_numpy(images32)).numpy()
    logits32_tf = keras32(images32.transpose(0, 2, 3, 1), training=False).numpy()
    fp32_rel = _relative(float(np.max(np.abs(logits32 - logits32_tf))), float(np.max(np.abs(logits32))))

    return ParityResult(
        model=name,
        batch_size=batch_size,
        logits_max_abs_diff=logits_diff,
        logits_max_abs=logits_scale,
        logits_rel_diff=_relative(logits_diff, logits_scale),
        grads_max_abs_diff=worst_abs,
        grads_rel_diff=worst_rel,
        worst_grad=worst_name,
        fp32_logits_rel_diff=fp32_rel,
    )


def verify_model(name: str, *, batch_size: int = 2) -> dict:
    """Everything ``cli.py verify`` reports for one model: counts of both builds against the spec, and parity."""
    import zoo

    spec = zoo.get_spec(name)
    counts = framework_counts(name)
    parity = check_parity(name, batch_size=batch_size)
    counts_ok = all(c["params"] == spec.expected_params and c["macs"] == spec.expected_macs for c in counts.values())
    return {
        "model": name,
        "expected": {"params": spec.expected_params, "macs": spec.expected_macs},
        "frameworks": counts,
        "counts_ok": counts_ok,
        "parity": parity.to_dict(),
        "passed": counts_ok and parity.passed,
    }
