"""Weight transfer from a zoo torch model to its Keras twin, layer by layer through the spec's table.

The conversions, each a pure array permutation:
- convolution kernels: torch OIHW -> Keras HWIO. A grouped torch kernel is (O, I/groups, kH, kW) and a grouped
  Keras kernel (kH, kW, I/groups, O), with output channels split into groups in the same order, so the same
  transpose serves both.
- dense weights: torch (out, in) -> Keras (in, out).
- the first dense layer after a flatten: torch flattens NCHW feature maps as (C, H, W), Keras flattens NHWC
  ones as (H, W, C); its input columns are reordered from (C, H, W) to (H, W, C) before the transpose.
- biases: unchanged. LRN, pooling, ReLU and dropout hold no weights; LRN constants are fixed in both definitions.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

from zoo._spec import ModelSpec
from zoo.torch_models import kind_of, layers_in_order


def _conv_kernel(weight: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(weight.transpose(2, 3, 1, 0))


def _dense_kernel(weight: np.ndarray, flattened_from: tuple[int, ...] | None) -> np.ndarray:
    if flattened_from is not None and len(flattened_from) == 3:
        channels, height, width = flattened_from
        out_features = weight.shape[0]
        weight = weight.reshape(out_features, channels, height, width).transpose(0, 2, 3, 1)
        weight = weight.reshape(out_features, height * width * channels)
    return np.ascontiguousarray(weight.T)


def _flattened_from(spec: ModelSpec, layer_name: str) -> tuple[int, ...] | None:
    """The (C, H, W) shape a dense layer's input was flattened from, if a flatten feeds it directly.

    Dropout between flatten and dense (torchvision's AlexNet) does not change the order, so it is skipped.
    """
    previous = spec.layer_before(layer_name)
    while previous is not None and previous.kind == "dropout":
        previous = spec.layer_before(previous.name)
    if previous is None or previous.kind != "flatten":
        return None
    before_flatten = spec.layer_before(previous.name)
    return before_flatten.output_shape if before_flatten is not None else None


def keras_arrays(
    spec: ModelSpec,
    torch_model: torch.nn.Module,
    tensor_of: Callable[[torch.nn.Parameter], torch.Tensor | None] = lambda parameter: parameter,
) -> dict[str, list[np.ndarray]]:
    """Per spec layer name, the torch model's (kernel, bias) arrays in Keras layout.

    ``tensor_of`` picks what is converted from each parameter: the weights by default, or ``p.grad`` to bring
    gradients into Keras layout for comparison.
    """
    torch_layers = layers_in_order(torch_model, spec.input_shape)
    if len(torch_layers) != len(spec.layers):
        raise ValueError(f"{spec.name}: torch model has {len(torch_layers)} layers, spec has {len(spec.layers)}")
    arrays: dict[str, list[np.ndarray]] = {}
    for layer, (path, module) in zip(spec.layers, torch_layers, strict=True):
        if kind_of(module) != layer.kind:
            raise ValueError(f"{spec.name}: spec layer {layer.name} is a {layer.kind}, torch {path} is not")
        if layer.kind not in ("conv", "dense"):
            continue
        weight, bias = (tensor_of(module.weight), tensor_of(module.bias))
        if weight is None or bias is None:
            raise ValueError(f"{spec.name}: torch {path} has no {'gradient' if weight is None else 'bias'}")
        weight_np = weight.detach().cpu().numpy()
        if layer.kind == "conv":
            kernel = _conv_kernel(weight_np)
        else:
            kernel = _dense_kernel(weight_np, _flattened_from(spec, layer.name))
        arrays[layer.name] = [kernel, bias.detach().cpu().numpy().copy()]
    return arrays


def torch_to_keras(spec: ModelSpec, torch_model: torch.nn.Module, keras_model) -> None:
    """Load the torch model's weights into its Keras twin (built from the same spec)."""
    for name, values in keras_arrays(spec, torch_model).items():
        layer = keras_model.get_layer(name)
        expected = [tuple(w.shape) for w in layer.get_weights()]
        received = [value.shape for value in values]
        if expected != received:
            raise ValueError(f"{spec.name}.{name}: Keras expects {expected}, converted torch gives {received}")
        layer.set_weights(values)
