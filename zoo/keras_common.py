"""What every Keras twin shares: layers that do what torch's do, padding placed as torch places it, and the
model's layer graph read back for the checks.

Keras twins are functional models, NHWC, every layer named after the spec's table. Where torch pads, the twin
pads the same rows and columns: ``padding="same"`` only where it is provably symmetric (stride 1, odd kernel,
``kernel // 2`` a side); elsewhere a ``ZeroPadding2D`` named ``<layer>_pad`` before a ``"valid"`` layer, because
TensorFlow's "same" puts the odd row and column bottom-right where torch pads both sides alike.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator

import keras
from keras import layers, ops

from zoo._spec import IMAGES, Shape, pool_out

PAD_SUFFIX = "_pad"


def image_input(shape_chw: Shape) -> keras.KerasTensor:
    """The model's input, NHWC, named as the spec names the images."""
    channels, height, width = shape_chw
    return keras.Input(shape=(height, width, channels), name=IMAGES)


def conv2d(x, filters: int, kernel: int, *, name: str, stride: int = 1, padding: int = 0, groups: int = 1,
           use_bias: bool = True):
    """``torch.nn.Conv2d(in, filters, kernel, stride, padding, groups=groups, bias=use_bias)`` in Keras."""
    if padding == 0:
        mode = "valid"
    elif stride == 1 and kernel % 2 == 1 and padding == kernel // 2:
        mode = "same"  # stride 1 and an odd kernel: "same" pads kernel // 2 on every side, as torch does
    else:
        x = layers.ZeroPadding2D(padding, name=name + PAD_SUFFIX)(x)
        mode = "valid"
    return layers.Conv2D(filters, kernel, strides=stride, padding=mode, groups=groups, use_bias=use_bias,
                         name=name)(x)


def max_pool2d(x, kernel: int, stride: int, *, name: str, padding: int = 0, ceil_mode: bool = False):
    """``torch.nn.MaxPool2d(kernel, stride, padding, ceil_mode=ceil_mode)`` in Keras, for non-negative inputs.

    torch pads with -inf, so padding never wins the max; zeros give the same maximum when every input is >= 0, as
    after a ReLU (every padded pool of the zoo reads one, or pools and concatenations of them; a test checks). A
    zero may tie with a ReLU's own 0 there, and the gradient that torch sends to that input is zero anyway (ReLU's
    gradient at 0 is 0 in both frameworks), so the gradients agree too. Ceil mode keeps a
    last, partial window: the extra rows and columns it covers are padded bottom-right only. Keras has no ceil
    mode, and "same" would pad where torch does not.
    """
    def after(size: int) -> int:
        """Zeros after the last row (or column): torch's padding, plus what a partial last window covers."""
        out = pool_out(size, kernel, stride, padding, ceil_mode)
        return padding + max((out - 1) * stride + kernel - (size + 2 * padding), 0)

    bottom, right = after(x.shape[1]), after(x.shape[2])
    if padding or bottom or right:
        x = layers.ZeroPadding2D(((padding, bottom), (padding, right)), name=name + PAD_SUFFIX)(x)
    return layers.MaxPooling2D(kernel, strides=stride, name=name)(x)


def adaptive_avg_pool2d(x, output_size: int, *, name: str):
    """``torch.nn.AdaptiveAvgPool2d(output_size)`` in Keras.

    To 1x1 it is a global average: Keras' AdaptiveAveragePooling2D computes a kernel of 8 for 7 rows to 1 inside
    a tf.function (Keras 3.15: "Negative dimension size"), while eagerly it works, so the global pool is used.
    """
    if output_size == 1:
        return ExactGlobalAveragePooling2D(keepdims=True, name=name)(x)
    return layers.AdaptiveAveragePooling2D(output_size, name=name)(x)


def _at_least_float32(dtype) -> str:
    """The dtype to compute statistics in: float32 for narrower floats, float64 for float64.

    Keras' ``result_type(dtype, "float32")`` says the same on TensorFlow, but on every other backend it maps
    float64 to float32 (JAX has float64 only with ``jax_enable_x64``), which would compute the float64 parity
    proof's BatchNorm in float32 under JAX.
    """
    dtype = keras.backend.standardize_dtype(dtype)
    return dtype if dtype == "float64" else keras.backend.result_type(dtype, "float32")


@keras.saving.register_keras_serializable(package="zoo")
class ExactGlobalAveragePooling2D(layers.GlobalAveragePooling2D):
    """Keras' global average pooling, averaging float64 in float64 on every backend.

    Outside TensorFlow, Keras 3.15's ``ops.mean`` computes float64 in float32 (as ``_at_least_float32`` says of
    ``result_type``), which would take the float64 parity proof under JAX down to float32's precision; there the
    float64 mean is a sum divided by the count. TensorFlow, and every other dtype, keep Keras' own layer.
    """

    spec_kind = "avgpool"

    def call(self, inputs):
        if keras.backend.backend() == "tensorflow" or keras.backend.standardize_dtype(inputs.dtype) != "float64":
            return super().call(inputs)
        axes = (1, 2) if self.data_format == "channels_last" else (2, 3)
        return ops.sum(inputs, axis=axes, keepdims=self.keepdims) / (inputs.shape[axes[0]] * inputs.shape[axes[1]])


@keras.saving.register_keras_serializable(package="zoo")
class TorchBatchNormalization(layers.BatchNormalization):
    """BatchNorm as ``torch.nn.BatchNorm2d`` computes it.

    Normalising, both divide by the biased batch variance. Updating the moving variance, torch uses the
    unbiased one (times n / (n - 1), n = batch x height x width) and Keras the biased one; this layer uses
    torch's, so the moving statistics of the twins stay equal step after step. ``torch_momentum`` is torch's
    weight of the new batch (0.1), which is Keras' ``1 - momentum``; ``epsilon`` must be torch's (1e-5 by
    default; torchvision's GoogLeNet uses 1e-3): Keras' default 1e-3 would change every output.

    Written in ``keras.ops``, so that one definition serves every Keras backend (TensorFlow, JAX); under
    TensorFlow, ``ops.moments`` and ``ops.batch_normalization`` are ``tf.nn.moments`` and
    ``tf.nn.batch_normalization`` themselves, so the TensorFlow twin computes what it always did. Inference is
    Keras' own BatchNormalization written again, with the one change of ``_at_least_float32``: Keras' would
    normalise float64 in float32 under JAX.
    """

    spec_kind = "bn"

    def __init__(self, epsilon: float = 1e-5, momentum: float = 0.9, **kwargs) -> None:
        super().__init__(epsilon=epsilon, momentum=momentum, **kwargs)

    @classmethod
    def like_torch(cls, *, name: str, epsilon: float = 1e-5, torch_momentum: float = 0.1,
                   **kwargs) -> TorchBatchNormalization:
        return cls(epsilon=epsilon, momentum=1.0 - torch_momentum, name=name, **kwargs)

    def build(self, input_shape) -> None:
        if self.axis != -1 and self.axis != len(input_shape) - 1 or not (self.center and self.scale):
            raise ValueError(f"{self.name}: written for channels-last inputs with a scale and a shift, as torch's")
        super().build(input_shape)

    def call(self, inputs, training=None, mask=None):
        if mask is not None or self.renorm:
            return super().call(inputs, training=training, mask=mask)
        # As BatchNormalization.call: statistics in at least float32, whatever the compute dtype.
        x = ops.cast(inputs, _at_least_float32(inputs.dtype))
        if training and self.trainable:
            mean, variance = ops.moments(x, axes=self._reduction_axes)
            count = ops.cast(ops.size(x) // ops.shape(x)[-1], x.dtype)
            unbiased = variance * count / ops.maximum(count - 1, 1)
            self.moving_mean.assign(ops.cast(self.moving_mean, x.dtype) * self.momentum + mean * (1.0 - self.momentum))
            self.moving_variance.assign(
                ops.cast(self.moving_variance, x.dtype) * self.momentum + unbiased * (1.0 - self.momentum))
        else:
            mean, variance = ops.cast(self.moving_mean, x.dtype), ops.cast(self.moving_variance, x.dtype)
        outputs = ops.batch_normalization(x, mean, variance, axis=self.axis, offset=ops.cast(self.beta, x.dtype),
                                          scale=ops.cast(self.gamma, x.dtype), epsilon=self.epsilon)
        return ops.cast(outputs, self.compute_dtype)


@contextlib.contextmanager
def zero_initial_weights() -> Iterator[None]:
    """Keras layers built inside start from zeros instead of drawing random initial weights.

    For twins whose weights are all loaded from torch before use (``zoo.transfer`` fills every variable of each layer
    it loads, or refuses the layer) and for models read only for their structure: drawing VGG-16's 138 million
    random values took seconds a build.
    """
    add_weight = layers.Layer.add_weight

    def add_zero_weight(layer, *args, **kwargs):
        return add_weight(layer, *args, **{**kwargs, "initializer": "zeros"})

    layers.Layer.add_weight = add_zero_weight
    try:
        yield
    finally:
        layers.Layer.add_weight = add_weight


# The spec's kind of each Keras layer; a model folder's own layer says its kind with a ``spec_kind`` attribute.
_KINDS = {
    layers.Conv2D: "conv",
    layers.BatchNormalization: "bn",
    layers.ReLU: "relu",
    layers.MaxPooling2D: "maxpool",
    layers.AdaptiveAveragePooling2D: "avgpool",
    layers.GlobalAveragePooling2D: "avgpool",
    layers.Flatten: "flatten",
    layers.Dropout: "dropout",
    layers.Dense: "dense",
    layers.Add: "add",
    layers.Concatenate: "concat",
}


def kind_of(layer: layers.Layer) -> str:
    """The spec's kind for a Keras layer (``"conv"``, ``"bn"``, ...)."""
    kind = getattr(layer, "spec_kind", None) or _KINDS.get(type(layer))
    if kind is None:
        raise ValueError(f"{type(layer).__name__} has no spec kind: add it to zoo.keras_common or give it spec_kind")
    return kind


def _is_padding(layer: layers.Layer) -> bool:
    return isinstance(layer, layers.ZeroPadding2D) and layer.name.endswith(PAD_SUFFIX)


def spec_layers(model: keras.Model) -> list[layers.Layer]:
    """The model's layers that the spec's table lists: all but the input and the ``<layer>_pad`` paddings,
    which belong to the layer after them (torch folds padding into ``Conv2d`` and ``MaxPool2d``)."""
    return [layer for layer in model.layers
            if not isinstance(layer, keras.layers.InputLayer) and not _is_padding(layer)]


def input_names(layer: layers.Layer) -> tuple[str, ...]:
    """The names of the layers ``layer`` reads, looking through paddings; ``IMAGES`` for the model's input."""
    names = []
    for tensor in layer._inbound_nodes[0].input_tensors:
        source = tensor._keras_history.operation
        while _is_padding(source):
            source = source._inbound_nodes[0].input_tensors[0]._keras_history.operation
        names.append(IMAGES if isinstance(source, keras.layers.InputLayer) else source.name)
    return tuple(names)


def _size(variable) -> int:
    return math.prod(variable.shape)


def model_counts(model: keras.Model, spec) -> dict[str, int]:
    """Trainable parameters, kept statistics and forward MACs per image of a built model (zoo's framework table)."""
    return {"params": trainable_params(model), "statistics": statistics(model), "macs": count_macs(model)}


def trainable_params(layer_or_model) -> int:
    return sum(_size(variable) for variable in layer_or_model.trainable_weights)


def statistics(layer_or_model) -> int:
    """Values kept but not trained (BatchNorm's moving mean and variance)."""
    return sum(_size(variable) for variable in layer_or_model.non_trainable_weights)


def count_macs(model: keras.Model) -> int:
    """Forward multiply-accumulates per image, from each Keras layer's own kernel and output shapes."""
    macs = 0
    for layer in model.layers:
        if isinstance(layer, layers.Conv2D):
            _, out_h, out_w, _ = layer.output.shape
            macs += out_h * out_w * _size(layer.kernel)  # the kernel holds kH*kW*(in/groups)*out values
        elif isinstance(layer, layers.Dense):
            macs += _size(layer.kernel)
    return macs
