"""Weight transfer from a zoo torch model to its Keras twin, layer by layer through the spec's graph.

The torch model's layers, traced in the order ``forward`` runs them (``zoo.torch_common.traced_layers``), line up
with the spec's table one for one; each is checked to be of the spec's kind before anything is converted.
The conversions, each a pure array permutation:
- convolution kernels: torch OIHW -> Keras HWIO. A grouped torch kernel is (O, I/groups, kH, kW) and a grouped
  Keras kernel (kH, kW, I/groups, O), with output channels split into groups in the same order, so the same
  transpose serves both.
- dense weights: torch (out, in) -> Keras (in, out).
- the first dense layer after a flatten: torch flattens NCHW feature maps as (C, H, W), Keras flattens NHWC
  ones as (H, W, C); its input columns are reordered from (C, H, W) to (H, W, C) before the transpose.
- biases, and BatchNorm's scale, shift, running mean and running variance (Keras' gamma, beta, moving_mean,
  moving_variance): unchanged.
LRN, pooling, ReLU, dropout, additions and concatenations hold no weights.

Tensors cross from torch to TensorFlow through DLPack, without a copy: a float64 VGG's transfer took seconds
per big kernel through numpy (TensorFlow copies a numpy array into a tensor slowly), a tenth of that this way.
Under another Keras backend (JAX) they cross as numpy arrays, which the variable's assignment copies; ``to_keras``
and ``from_keras`` are the one place that tells the backends apart.
"""

from __future__ import annotations

import torch

from zoo._spec import ModelSpec
from zoo.torch_common import traced_layers

# Keras variable name -> torch attribute, per kind of layer with weights. Trainable ones first, as Keras lists them.
_TORCH_NAMES = {
    "conv": {"kernel": "weight", "bias": "bias"},
    "dense": {"kernel": "weight", "bias": "bias"},
    "bn": {"gamma": "weight", "beta": "bias", "moving_mean": "running_mean", "moving_variance": "running_var"},
}
# The Keras variables a training step changes through gradients, and those it changes by keeping statistics.
TRAINABLE = ("kernel", "bias", "gamma", "beta")
STATISTICS = ("moving_mean", "moving_variance")


# The permutations run in torch, which copies a permuted tensor with every core and in cache-sized blocks: VGG's
# first dense kernel holds 103 million values, and numpy's transposes of it took seconds in every transfer.
def _conv_kernel(weight: torch.Tensor) -> torch.Tensor:
    return weight.permute(2, 3, 1, 0)


def _dense_kernel(weight: torch.Tensor, flattened_from: tuple[int, ...] | None) -> torch.Tensor:
    if flattened_from is not None and len(flattened_from) == 3:
        channels, height, width = flattened_from
        out_features = weight.shape[0]
        # Within each output's row, (C, H, W) -> (H, W, C): Keras' order of an NHWC flatten (a copy row by row,
        # which is several times faster than one 4-d permutation straight to Keras' layout).
        weight = weight.reshape(out_features, channels, height, width).permute(0, 2, 3, 1).reshape(out_features, -1)
    return weight.T


def torch_layout(spec: ModelSpec, layer_name: str, keras_name: str, value: torch.Tensor) -> torch.Tensor:
    """A view (no copy) of a Keras-layout tensor in torch's layout, the inverse of the conversions above.

    The first dense kernel after a flatten comes back as (out, C, H, W); the torch weight is reshaped to that
    (a view too) to compare the two.
    """
    layer = spec.layer(layer_name)
    if keras_name != "kernel":
        return value
    if layer.kind == "conv":
        return value.permute(3, 2, 0, 1)
    flattened_from = _flattened_from(spec, layer_name)
    if flattened_from is not None and len(flattened_from) == 3:
        channels, height, width = flattened_from
        return value.reshape(height, width, channels, -1).permute(3, 2, 0, 1)
    return value.T


def _flattened_from(spec: ModelSpec, layer_name: str) -> tuple[int, ...] | None:
    """The (C, H, W) shape a dense layer's input was flattened from, if a flatten feeds it.

    Dropout between flatten and dense (torchvision's AlexNet, GoogLeNet) does not change the order, so it is
    looked through.
    """
    source = spec.input_of(layer_name)
    while source is not None and source.kind == "dropout":
        source = spec.input_of(source.name)
    if source is None or source.kind != "flatten":
        return None
    before_flatten = spec.input_of(source.name)
    return before_flatten.output_shape if before_flatten is not None else None


def torch_tensor(module: torch.nn.Module, kind: str, keras_name: str, *, gradient: bool = False) -> torch.Tensor | None:
    """The torch tensor behind a Keras variable name (its gradient if asked); None where torch has none."""
    tensor = getattr(module, _TORCH_NAMES[kind][keras_name])
    return tensor.grad if gradient and tensor is not None else tensor


def torch_layers_by_spec_name(spec: ModelSpec, torch_model: torch.nn.Module) -> dict[str, torch.nn.Module]:
    """The torch module of every spec layer with weights, after checking the traced graph has the spec's kinds."""
    traced = traced_layers(torch_model, spec.input_shape)
    if len(traced) != len(spec.layers):
        raise ValueError(f"{spec.name}: torch model has {len(traced)} layers, spec has {len(spec.layers)}")
    modules = {}
    for layer, step in zip(spec.layers, traced, strict=True):
        if step.kind != layer.kind:
            raise ValueError(f"{spec.name}: spec layer {layer.name} is a {layer.kind}, torch {step.path} a {step.kind}")
        if layer.kind in _TORCH_NAMES:
            modules[layer.name] = step.module
    return modules


def keras_tensors(spec: ModelSpec, torch_model: torch.nn.Module,
                  layers: dict[str, torch.nn.Module] | None = None) -> dict[str, dict[str, torch.Tensor]]:
    """Per spec layer with weights, the torch model's weights and statistics in Keras layout, keyed by Keras
    variable name.

    Each is a contiguous copy on the CPU, never a view of the model, so it can be kept while the model trains on.
    (Gradients are compared the other way round, Keras' viewed in torch's layout: ``torch_layout``.)
    ``layers``: the model's ``torch_layers_by_spec_name`` where the caller has them, since finding them runs the
    model once.
    """
    tensors: dict[str, dict[str, torch.Tensor]] = {}
    for name, module in (layers if layers is not None else torch_layers_by_spec_name(spec, torch_model)).items():
        kind = spec.layer(name).kind
        converted = {}
        for keras_name in _TORCH_NAMES[kind]:
            tensor = torch_tensor(module, kind, keras_name)
            if tensor is None:  # a convolution without bias
                continue
            value = tensor.detach()
            if keras_name == "kernel":
                value = _conv_kernel(value) if kind == "conv" else _dense_kernel(value, _flattened_from(spec, name))
            value = value.cpu().contiguous()
            converted[keras_name] = value.clone() if value.data_ptr() == tensor.data_ptr() else value
        tensors[name] = converted
    return tensors


def to_tensorflow(tensor: torch.Tensor):
    """A TensorFlow tensor sharing the memory of a contiguous CPU torch tensor (DLPack, no copy)."""
    import tensorflow as tf

    return tf.experimental.dlpack.from_dlpack(torch.utils.dlpack.to_dlpack(tensor.contiguous()))


def from_tensorflow(tensor) -> torch.Tensor:
    """A torch tensor sharing the memory of a TensorFlow tensor or variable (DLPack, no copy)."""
    import tensorflow as tf

    return torch.utils.dlpack.from_dlpack(tf.experimental.dlpack.to_dlpack(tf.convert_to_tensor(tensor)))


def to_keras(tensor: torch.Tensor):
    """A value for a Keras variable of the running backend, from a CPU torch tensor: under TensorFlow a tensor
    sharing its memory (DLPack), under any other backend a numpy view that the variable's assignment copies."""
    import keras

    if keras.backend.backend() == "tensorflow":
        return to_tensorflow(tensor)
    return tensor.contiguous().numpy()


def from_keras(value) -> torch.Tensor:
    """A torch tensor sharing the memory of a Keras variable or a tensor of the running backend (DLPack, no copy)."""
    import keras

    if keras.backend.backend() == "tensorflow":
        return from_tensorflow(value)
    return torch.utils.dlpack.from_dlpack(keras.ops.convert_to_tensor(value))


def keras_variables(layer) -> dict[str, object]:
    """A Keras layer's variables by their own names (``kernel``, ``bias``, ``gamma``, ``moving_mean``...)."""
    return {variable.name: variable for variable in layer.weights}


def torch_to_keras(spec: ModelSpec, torch_model: torch.nn.Module, keras_model,
                   layers: dict[str, torch.nn.Module] | None = None) -> None:
    """Load the torch model's weights (and BatchNorm statistics) into its Keras twin, built from the same spec
    (``layers`` as for ``keras_tensors``)."""
    for name, values in keras_tensors(spec, torch_model, layers).items():
        variables = keras_variables(keras_model.get_layer(name))
        expected = {key: tuple(variable.shape) for key, variable in variables.items()}
        received = {key: tuple(value.shape) for key, value in values.items()}
        if expected != received:
            raise ValueError(f"{spec.name}.{name}: Keras expects {expected}, converted torch gives {received}")
        for key, value in values.items():
            variables[key].assign(to_keras(value.to(getattr(torch, variables[key].dtype))))
