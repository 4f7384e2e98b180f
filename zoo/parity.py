"""Numerical proof that a model's torch and Keras definitions are the same network.

The torch weights are transferred into the Keras model, and both get the same input (NCHW for torch, its NHWC
transpose for Keras). Then:
- inference mode: the logits must agree;
- training mode with dropout off: the gradients of a mean cross-entropy loss with respect to every parameter
  must agree. Here BatchNorm normalises with the batch's statistics and updates its moving ones, as in a
  benchmarked step; after the pass the moving means and variances must agree too. Without BatchNorm, training
  mode with dropout off is inference, and one pass gives logits and gradients.
BatchNorm's scale, shift and running statistics are randomised before the transfer: fresh ones (1, 0, 0, 1) make
it the identity in inference mode, so a transfer that lost or swapped them would go unnoticed.

The proof runs in float64 in both frameworks. In float32, a piecewise-linear network has activations within
rounding of a ReLU's kink or a max-pool tie, which the two frameworks may route differently, so that one layer's
gradient differs by thousandths while every other agrees to millionths (docs/equivalence.md has the figures).
That says nothing about whether the networks are the same; in float64 such coincidences need an activation within
1e-16 of a kink, and the comparison measures the definitions, not the luck of rounding. The logits are also compared
in float32, the precision benchmarked.

``TRANSFERS`` lists the pairs of frameworks proven this way; ``verify_model`` proves every pair that is installed,
and counts every installed build against the spec.

The Keras side runs under the Keras backend of the process, and the result names its engine (``other``): ``tf``
under TensorFlow, ``jax`` under JAX. One Keras definition serves both, so the JAX engine is proven by the same
transfer, in a process that set ``KERAS_BACKEND=jax`` before importing keras and turned on ``jax_enable_x64``
before any JAX array existed (``prove_keras_twin``). What differs between the backends is kept in one place each:
the Keras twin's passes (``_keras_logits``, ``_keras_gradients``) and how tensors cross (``zoo.transfer.to_keras``,
``from_keras``).
"""

from __future__ import annotations

import contextlib
import importlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

# float64 logits, gradients and BatchNorm statistics: each max |torch - Keras| relative to the largest torch value
# (per tensor for gradients and statistics). float64 rounds at 1.1e-16; the two frameworks sum reductions of up
# to 25,088 terms (a convolution's weight gradient, a BatchNorm's batch statistics at 2 x 112 x 112) in different
# orders with different algorithms (oneDNN vs Eigen) and chain them through some fifty layers with weights (the
# longest path through ResNet-50 or GoogLeNet).
# 1e-10 leaves a margin of over a hundred above the worst difference measured over the eight models (the table in
# docs/equivalence.md) for other CPUs and batch sizes, and still fails on any real mismatch: a wrong flatten order,
# LRN constant, padding, stride, pooling mode or BatchNorm epsilon moves even the float32 logits by thousandths or
# more, and tests show each.
LOGITS_RTOL = 1e-10
GRADS_RTOL = 1e-10
STATISTICS_RTOL = 1e-10
# float32 logits, the precision the benchmark runs: the bound the project promises, relative to the largest logit.
FP32_LOGITS_RTOL = 1e-4


@dataclass(frozen=True)
class ParityResult:
    """The parity figures of one model; every difference is max |torch - Keras| over the tensor.

    ``logits_*`` are computed in float64 in inference mode, ``fp32_logits_rel_diff`` in float32. ``grads_*``:
    float64, training mode with dropout off (BatchNorm on batch statistics; without BatchNorm this is inference),
    each gradient relative to its largest torch value. ``statistics_*`` (networks with BatchNorm, else None):
    the moving means and variances after that pass, each relative to its largest torch value.
    """

    model: str
    batch_size: int
    reference: str  # the framework whose weights are transferred, and against whose values the other is held
    other: str  # the engine that ran the Keras twin: "tf" (Keras on TensorFlow) or "jax" (Keras on JAX)
    logits_max_abs_diff: float
    logits_max_abs: float
    logits_rel_diff: float
    grads_max_abs_diff: float
    grads_rel_diff: float
    worst_grad: str
    fp32_logits_rel_diff: float
    statistics_rel_diff: float | None = None
    worst_statistic: str | None = None
    logits_rtol: float = LOGITS_RTOL
    grads_rtol: float = GRADS_RTOL
    fp32_logits_rtol: float = FP32_LOGITS_RTOL
    statistics_rtol: float = STATISTICS_RTOL

    @property
    def logits_ok(self) -> bool:
        return self.logits_rel_diff <= self.logits_rtol and self.fp32_logits_rel_diff <= self.fp32_logits_rtol

    @property
    def grads_ok(self) -> bool:
        return self.grads_rel_diff <= self.grads_rtol

    @property
    def statistics_ok(self) -> bool:
        return self.statistics_rel_diff is None or self.statistics_rel_diff <= self.statistics_rtol

    @property
    def passed(self) -> bool:
        return self.logits_ok and self.grads_ok and self.statistics_ok

    def to_dict(self) -> dict:
        return {**asdict(self), "logits_ok": self.logits_ok, "grads_ok": self.grads_ok,
                "statistics_ok": self.statistics_ok, "passed": self.passed}


def relative_difference(diff: float, scale: float) -> float:
    """``diff`` relative to ``scale``; 0 for no difference at scale 0, infinite for any other."""
    return diff / scale if scale > 0 else (0.0 if diff == 0 else float("inf"))


def _worst(pairs) -> tuple[float, float, str]:
    """Over ``(label, torch tensor, Keras tensor as torch)``: the worst relative difference, its absolute one and its
    label."""
    import torch

    worst_rel, worst_abs, worst_name = 0.0, 0.0, ""
    for label, expected, got in pairs:
        # In torch, which reduces with every core: numpy took seconds over VGG's 103-million-value gradients. The
        # difference is made absolute in place and the scale is an infinity norm: no further copy of either tensor.
        diff = float(torch.sub(expected, got).abs_().max())
        scale = float(torch.linalg.vector_norm(expected, float("inf")))
        rel = relative_difference(diff, scale)
        if not (np.isfinite(diff) and np.isfinite(scale)):  # a NaN or inf in either makes one of them so
            rel = diff = float("inf")  # a NaN would otherwise slip past every comparison
        if rel >= worst_rel:
            worst_rel, worst_abs, worst_name = rel, diff, label
    return worst_rel, worst_abs, worst_name


def load_frameworks(*, with_tensorflow: bool = True) -> None:
    """Import torch (with its FLOP counter) before TensorFlow, and TensorFlow only where Keras runs on it.

    The FLOP counter imports triton, whose native module crashes the process when it loads after TensorFlow;
    loaded first, both live in one process. Keras is imported after it (on the TensorFlow backend it imports
    TensorFlow); under another backend (JAX) the Keras twins never need TensorFlow, so it is not loaded.
    """
    # Explicit steps in this order, so that no import sorter can reorder them.
    importlib.import_module("torch.utils.flop_counter")
    if with_tensorflow and _keras_backend() == "tensorflow":
        importlib.import_module("tensorflow")


# The engine recorded in a ParityResult for each Keras backend that runs the Keras twins.
_KERAS_ENGINES = {"tensorflow": "tf", "jax": "jax"}


def _keras_backend() -> str:
    """The backend of this process's Keras (``KERAS_BACKEND`` as it was when keras was first imported)."""
    import keras

    return keras.backend.backend()


def _check_engine(other: str) -> None:
    """Refuse a proof that would be recorded for another engine than the one running the Keras twin, and a JAX
    proof whose float64 would silently be float32 (JAX computes float64 only with ``jax_enable_x64`` on)."""
    backend = _keras_backend()
    if other not in _KERAS_ENGINES.values():
        raise ValueError(f"no Keras engine {other!r}; known: {', '.join(_KERAS_ENGINES.values())}")
    if _KERAS_ENGINES.get(backend) != other:
        raise ValueError(f"parity for {other!r} needs Keras on its backend, and this process runs Keras on {backend!r}"
                         " (KERAS_BACKEND is read once, when keras is first imported)")
    if backend == "jax":
        import jax

        if not jax.config.jax_enable_x64:
            raise ValueError("the float64 proof under JAX needs jax.config.update('jax_enable_x64', True) before any "
                             "JAX array exists")


# The Keras twin's passes, the one part of the proof that differs between Keras backends. TensorFlow runs them
# eagerly, as the proof always has. JAX runs them jit-compiled, as its engine runs a step: eagerly, every
# operation of a first call compiles on its own, which cost the proof more than compiling the whole pass once.
def _keras_logits(keras_model, images_nhwc: np.ndarray) -> np.ndarray:
    """Inference-mode logits of the Keras twin in the current dtype."""
    import keras

    if _keras_backend() == "tensorflow":
        return keras.ops.convert_to_numpy(keras_model(images_nhwc, training=False))
    import jax

    forward = jax.jit(lambda trainable, kept, images: keras_model.stateless_call(trainable, kept, images)[0])
    return np.asarray(forward(*_values(keras_model), images_nhwc))


def _keras_gradients(keras_model, images_nhwc: np.ndarray, labels: np.ndarray, *, training: bool):
    """One forward and backward pass of the Keras twin in the current dtype: its logits (numpy) and the gradient of
    the mean cross-entropy with respect to every trainable variable, by variable path.

    In training mode BatchNorm updates its moving statistics, as a benchmarked step does: TensorFlow assigns them
    during the pass; JAX's pass is a pure function (``stateless_call``) that returns them, and they are assigned
    back here so that they can be compared as TensorFlow's are.
    """
    import keras

    loss_fn = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    variables = keras_model.trainable_variables
    paths = [variable.path for variable in variables]
    if _keras_backend() == "tensorflow":
        import tensorflow as tf

        with tf.GradientTape() as tape:
            logits = keras_model(tf.constant(images_nhwc), training=training)
            loss = loss_fn(tf.constant(labels), logits)
        return logits.numpy(), dict(zip(paths, tape.gradient(loss, variables), strict=True))
    import jax

    def loss_and_state(trainable, kept, images, labels):
        logits, kept = keras_model.stateless_call(trainable, kept, images, training=training)
        return loss_fn(labels, logits), (logits, kept)

    step = jax.jit(jax.value_and_grad(loss_and_state, has_aux=True))
    (_, (logits, kept)), grads = step(*_values(keras_model), images_nhwc, labels)
    for variable, value in zip(keras_model.non_trainable_variables, kept, strict=True):
        variable.assign(value)
    return np.asarray(logits), dict(zip(paths, grads, strict=True))


def _values(keras_model) -> tuple[list, list]:
    """The arrays of a Keras model's trainable and non-trainable variables, as ``stateless_call`` takes them."""
    return ([variable.value for variable in keras_model.trainable_variables],
            [variable.value for variable in keras_model.non_trainable_variables])


def framework_counts(name: str, framework: str, model=None) -> dict[str, int]:
    """Trainable parameters, kept statistics and forward MACs per image of the model as ``framework`` builds it
    (float32; built here unless given), counted the way that framework sees them (its entry in zoo's table)."""
    import zoo

    if "torch" in zoo.installed_frameworks():
        load_frameworks(with_tensorflow=False)
    module_name, function_name = zoo.get_framework(framework).counts.split(":")
    count = getattr(importlib.import_module(module_name), function_name)
    return count(model if model is not None else zoo.build(name, framework), zoo.get_spec(name))


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


def randomise_batchnorm(torch_model, seed: int) -> None:
    """Give every BatchNorm a scale, shift, running mean and variance away from their initial 1, 0, 0, 1."""
    import torch

    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for module in torch_model.modules():
            if isinstance(module, torch.nn.modules.batchnorm._BatchNorm):
                for tensor, low, high in ((module.weight, 0.5, 1.5), (module.bias, -0.1, 0.1),
                                          (module.running_mean, -0.1, 0.1), (module.running_var, 0.5, 1.5)):
                    tensor.copy_(torch.rand(tensor.shape, generator=generator, dtype=tensor.dtype) * (high - low) + low)


def _twins(name: str, seed: int, **options) -> dict[str, tuple]:
    """A torch model (eval mode) and its Keras twin holding the same weights and statistics, in float32 and float64;
    the float64 pair comes with its torch model's module of every spec layer with weights.

    One torch model is built; its float32 weights go to the float32 Keras twin, and both are cast to float64
    for the float64 pair (a cast from float32 is exact, so all four hold the same values; casting the Keras
    variables spares a second layout conversion of every kernel). The float32 model is traced once, for the
    transfer and to find the float64 model's layers: a trace runs the model, and in float64 that pass alone took
    seconds on VGG.
    """
    import copy

    import keras
    import torch

    import zoo
    from zoo.keras_common import zero_initial_weights
    from zoo.transfer import torch_layers_by_spec_name, torch_to_keras

    spec = zoo.get_spec(name)
    torch.manual_seed(seed)
    torch32 = zoo.build(name, "torch", **options).eval()
    randomise_batchnorm(torch32, seed)
    with zero_initial_weights():
        keras32 = zoo.build(name, "tf", **options)
    layers32 = torch_layers_by_spec_name(spec, torch32)
    torch_to_keras(spec, torch32, keras32, layers32)
    torch64 = copy.deepcopy(torch32).to(torch.float64)
    paths = {module: path for path, module in torch32.named_modules()}
    modules64 = {layer: torch64.get_submodule(paths[module]) for layer, module in layers32.items()}
    with _keras_dtype("float64"), zero_initial_weights():
        keras64 = zoo.build(name, "tf", **options)
    for target, source in zip(keras64.weights, keras32.weights, strict=True):
        if target.path != source.path:
            raise ValueError(f"{name}: float64 Keras twin has {target.path} where float32 has {source.path}")
        target.assign(keras.ops.cast(source, "float64"))
    return {"float32": (torch32, keras32), "float64": (torch64, keras64, modules64)}


def _data(name: str, batch_size: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    import zoo

    spec = zoo.get_spec(name)
    rng = np.random.default_rng(seed)
    images = rng.standard_normal((batch_size, *spec.input_shape))
    return images, rng.integers(0, spec.num_classes, size=batch_size)


def _logits(torch_model, keras_model, images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Inference-mode logits of both models (eval mode, no gradient)."""
    import torch

    torch_model.eval()
    with torch.no_grad():
        logits_torch = torch_model(torch.from_numpy(images)).numpy()
    with _keras_dtype(str(images.dtype)):
        logits_keras = _keras_logits(keras_model, images.transpose(0, 2, 3, 1))
    return logits_torch, logits_keras


def _backward(torch_model, keras_model, images: np.ndarray, labels: np.ndarray, *, training: bool):
    """One float64 forward and backward pass in each framework: torch logits, Keras logits, Keras gradients by path."""
    import torch

    torch_model.train(training)
    logits_torch = torch_model(torch.from_numpy(images))
    torch_model.zero_grad()
    torch.nn.functional.cross_entropy(logits_torch, torch.from_numpy(labels)).backward()
    with _keras_dtype("float64"):
        logits_keras, grads_keras = _keras_gradients(keras_model, images.transpose(0, 2, 3, 1), labels,
                                                     training=training)
    return logits_torch.detach().numpy(), logits_keras, grads_keras


def _pairs(spec, modules, keras_model, labels: tuple[str, ...], keras_value, *, gradient: bool):
    """``(layer.variable, torch tensor, Keras tensor in torch's layout)`` for the Keras variables named in
    ``labels``, over ``modules`` (the torch module of each spec layer with weights), both torch tensors and views
    where possible: no copy of VGG's big kernels is made to compare them."""
    from zoo.transfer import from_keras, keras_variables, torch_layout, torch_tensor

    for layer_name, module in modules.items():
        kind = spec.layer(layer_name).kind
        for label, variable in keras_variables(keras_model.get_layer(layer_name)).items():
            if label not in labels:
                continue
            got = torch_layout(spec, layer_name, label, from_keras(keras_value(variable)))
            expected = torch_tensor(module, kind, label, gradient=gradient)
            if expected is None:
                raise ValueError(f"{spec.name}: torch {layer_name} has no {'gradient' if gradient else label}")
            yield f"{layer_name}.{label}", expected.detach().reshape(got.shape), got


def _gradient_pairs(spec, modules, keras_model, grads_keras):
    """Every trainable variable's gradient in both frameworks."""
    from zoo.transfer import TRAINABLE

    return _pairs(spec, modules, keras_model, TRAINABLE, lambda variable: grads_keras[variable.path], gradient=True)


def _statistic_pairs(spec, modules, keras_model):
    """Every BatchNorm moving mean and variance in both frameworks."""
    from zoo.transfer import STATISTICS

    return _pairs(spec, modules, keras_model, STATISTICS, lambda variable: variable, gradient=False)


def default_batch_size(name: str) -> int:
    """Images in a parity batch: 2 for a network with BatchNorm, whose training mode mixes the images of a batch
    (one image could not tell batch statistics from per-image ones), and 1 otherwise: every other layer of the zoo
    treats each image alone, so a second proves nothing more and doubles the cost of a float64 pass."""
    import zoo

    return 2 if "bn" in zoo.get_spec(name).kinds else 1


def check_parity(name: str, *, batch_size: int | None = None, seed: int = 0, other: str = "tf") -> ParityResult:
    """Build ``name`` in both frameworks, transfer the torch weights, and compare logits, gradients and, for a
    network with BatchNorm, the moving statistics after the training pass.

    ``other``: the engine running the Keras twin, which must be the one of this process's Keras backend (``"tf"``
    for TensorFlow, ``"jax"`` for JAX with ``jax_enable_x64`` on); the result records it.
    """
    return _parity(name, batch_size or default_batch_size(name), seed, other)[0]


def prove_keras_twin(name: str, batch_size: int | None, seed: int, other: str) -> tuple[ParityResult, dict[str, int]]:
    """The proof of an engine that runs the Keras twins (``other``, ``"jax"`` in a process that set
    ``KERAS_BACKEND=jax`` and ``jax_enable_x64`` first): the parity figures against torch, as ``check_parity``
    (``batch_size`` None: ``default_batch_size``), and the float32 Keras twin's counts as that engine sees them
    (``framework_counts`` of ``"tf"``, the Keras definitions)."""
    result, _, keras_model = _parity(name, batch_size or default_batch_size(name), seed, other)
    return result, framework_counts(name, "tf", keras_model)


def _parity(name: str, batch_size: int, seed: int, other: str = "tf"):
    """The parity figures, and the float32 twins they were measured on (for their counts)."""
    load_frameworks()
    _check_engine(other)

    import zoo

    spec = zoo.get_spec(name)
    images, labels = _data(name, batch_size, seed)

    # Dropout off (rate 0): inference ignores it, and training mode then differs from inference only in BatchNorm.
    twins = _twins(name, seed, **({"dropout": 0.0} if "dropout" in spec.kinds else {}))
    torch_model, keras_model, modules = twins.pop("float64")
    batchnorm = "bn" in spec.kinds
    if batchnorm:
        logits_t, logits_k = _logits(torch_model, keras_model, images)
        # Training mode: BatchNorm on batch statistics, updating its moving ones, as a benchmarked step does.
        _, _, grads_k = _backward(torch_model, keras_model, images, labels, training=True)
    else:
        # Without BatchNorm, training mode with dropout off is inference: one pass gives logits and gradients.
        logits_t, logits_k, grads_k = _backward(torch_model, keras_model, images, labels, training=False)
    logits_diff = float(np.max(np.abs(logits_t - logits_k)))
    logits_scale = float(np.max(np.abs(logits_t)))
    worst_rel, worst_abs, worst_name = _worst(_gradient_pairs(spec, modules, keras_model, grads_k))
    statistics: dict = {}
    if batchnorm:
        stats_rel, _, stats_worst = _worst(_statistic_pairs(spec, modules, keras_model))
        statistics = {"statistics_rel_diff": stats_rel, "worst_statistic": stats_worst}
    del torch_model, keras_model, modules

    torch32, keras32 = twins.pop("float32")
    logits32, logits32_k = _logits(torch32, keras32, images.astype(np.float32))
    fp32_rel = relative_difference(float(np.max(np.abs(logits32 - logits32_k))), float(np.max(np.abs(logits32))))

    result = ParityResult(
        model=name,
        batch_size=batch_size,
        reference="torch",
        other=other,
        logits_max_abs_diff=logits_diff,
        logits_max_abs=logits_scale,
        logits_rel_diff=relative_difference(logits_diff, logits_scale),
        grads_max_abs_diff=worst_abs,
        grads_rel_diff=worst_rel,
        worst_grad=worst_name,
        fp32_logits_rel_diff=fp32_rel,
        **statistics,
    )
    return result, torch32, keras32


@dataclass(frozen=True)
class Transfer:
    """A pair of frameworks whose definitions are proven alike by moving ``reference``'s weights into ``other``:
    ``prove(name, batch_size, seed)`` gives the parity figures and the float32 models it built, by framework."""

    reference: str
    other: str
    prove: Callable[[str, int, int], tuple[ParityResult, dict[str, Any]]]


def _torch_to_keras(name: str, batch_size: int, seed: int) -> tuple[ParityResult, dict[str, Any]]:
    result, torch_model, keras_model = _parity(name, batch_size, seed)
    return result, {"torch": torch_model, "tf": keras_model}


# The pairs with a weight transfer (``zoo.transfer``): a new framework is proven by one entry here.
TRANSFERS: tuple[Transfer, ...] = (Transfer("torch", "tf", _torch_to_keras),)


def verify_model(name: str, *, frameworks: Sequence[str] | None = None, batch_size: int | None = None) -> dict:
    """Everything ``cli.py verify`` reports for one model: the counts of every build in ``frameworks`` (default:
    the installed ones) against the spec, and the parity of every pair of them with a transfer (none where only
    one framework is installed: ``parity`` is then empty, and says so by being so)."""
    import zoo

    spec = zoo.get_spec(name)
    frameworks = list(frameworks if frameworks is not None else zoo.installed_frameworks())
    built: dict[str, Any] = {}
    parities = []
    for transfer in TRANSFERS:
        if transfer.reference in frameworks and transfer.other in frameworks:
            result, models = transfer.prove(name, batch_size or default_batch_size(name), 0)
            parities.append(result.to_dict())
            built.update(models)
    counts = {framework: framework_counts(name, framework, built.get(framework)) for framework in frameworks}
    expected = {"params": spec.expected_params, "statistics": spec.statistics, "macs": spec.expected_macs}
    counts_ok = all(c == expected for c in counts.values())
    return {
        "model": name,
        "expected": expected,
        "frameworks": counts,
        "counts_ok": counts_ok,
        "parity": parities,
        "passed": counts_ok and all(parity["passed"] for parity in parities),
    }
