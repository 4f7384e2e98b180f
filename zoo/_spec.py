"""Framework-neutral description of a network: its layer table, parameter count and multiply-accumulates."""

from __future__ import annotations

from dataclasses import dataclass, field

Shape = tuple[int, ...]


@dataclass(frozen=True)
class LayerSpec:
    """One layer as both framework definitions must have it.

    ``output_shape`` is per image in channels-first order, ``(C, H, W)`` for feature maps and ``(F,)``
    after flattening, whatever layout a framework uses internally. ``macs`` counts the multiply-accumulates
    of the layer's weights for one image in the forward pass (bias additions, activations and pooling are
    not counted, the convention of torchvision's and the papers' tables).
    """

    name: str
    kind: str
    output_shape: Shape
    params: int = 0
    macs: int = 0


@dataclass(frozen=True)
class ModelSpec:
    """What a network is, independently of any framework.

    ``expected_params`` and ``expected_macs`` are the published figures, written down by hand; tests check that
    the layer table adds up to them and that both framework definitions match the table layer by layer.
    """

    name: str
    title: str
    reference: str
    input_shape: Shape
    num_classes: int
    expected_params: int
    expected_macs: int
    layers: tuple[LayerSpec, ...] = field(repr=False)

    @property
    def params(self) -> int:
        """Parameter count summed over the layer table."""
        return sum(layer.params for layer in self.layers)

    @property
    def macs(self) -> int:
        """Forward multiply-accumulates per image summed over the layer table."""
        return sum(layer.macs for layer in self.layers)

    @property
    def flops(self) -> int:
        """Forward FLOPs per image, counting 2 per multiply-accumulate."""
        return 2 * self.macs

    @property
    def input_layer_macs(self) -> int:
        """MACs per image of the first layer with weights, the one that reads the images.

        No parameter precedes it, so a backward pass computes its weight gradient but not its input gradient:
        nobody asks for the gradient with respect to the images.
        """
        return next((layer.macs for layer in self.layers if layer.params), 0)

    def layer(self, name: str) -> LayerSpec:
        for layer in self.layers:
            if layer.name == name:
                return layer
        raise KeyError(f"{self.name} has no layer {name!r}")

    def layer_before(self, name: str) -> LayerSpec | None:
        """The layer that feeds ``name`` (None for the first), e.g. to know the shape a dense layer flattens."""
        names = [layer.name for layer in self.layers]
        index = names.index(name)
        return self.layers[index - 1] if index else None


def _conv_out(size: int, kernel: int, stride: int, padding: int) -> int:
    return (size + 2 * padding - kernel) // stride + 1


class LayerTableBuilder:
    """Derives a layer table from layer geometry, the way one would on paper.

    Shapes, parameters and MACs are computed here from kernel sizes, strides and paddings, so that the
    hand-written totals in a ``ModelSpec`` are checked against arithmetic rather than copied from it.
    """

    def __init__(self, input_shape: Shape) -> None:
        self._shape: Shape = tuple(input_shape)
        self._layers: list[LayerSpec] = []

    def _add(self, name: str, kind: str, shape: Shape, params: int = 0, macs: int = 0) -> LayerTableBuilder:
        if any(layer.name == name for layer in self._layers):
            raise ValueError(f"duplicate layer name {name!r}")
        self._shape = shape
        self._layers.append(LayerSpec(name, kind, shape, params, macs))
        return self

    def conv(
        self, name: str, out_channels: int, kernel: int, *, stride: int = 1, padding: int = 0, groups: int = 1
    ) -> LayerTableBuilder:
        in_channels, height, width = self._shape
        if in_channels % groups or out_channels % groups:
            raise ValueError(f"{name}: channels {in_channels}->{out_channels} do not split into {groups} groups")
        out_h, out_w = _conv_out(height, kernel, stride, padding), _conv_out(width, kernel, stride, padding)
        weights_per_output = (in_channels // groups) * kernel * kernel
        params = out_channels * weights_per_output + out_channels
        macs = out_h * out_w * out_channels * weights_per_output
        return self._add(name, "conv", (out_channels, out_h, out_w), params, macs)

    def relu(self, name: str) -> LayerTableBuilder:
        return self._add(name, "relu", self._shape)

    def lrn(self, name: str) -> LayerTableBuilder:
        return self._add(name, "lrn", self._shape)

    def dropout(self, name: str) -> LayerTableBuilder:
        return self._add(name, "dropout", self._shape)

    def maxpool(self, name: str, kernel: int, stride: int) -> LayerTableBuilder:
        channels, height, width = self._shape
        shape = (channels, _conv_out(height, kernel, stride, 0), _conv_out(width, kernel, stride, 0))
        return self._add(name, "maxpool", shape)

    def adaptive_avgpool(self, name: str, output_size: int) -> LayerTableBuilder:
        return self._add(name, "avgpool", (self._shape[0], output_size, output_size))

    def flatten(self, name: str) -> LayerTableBuilder:
        size = 1
        for dim in self._shape:
            size *= dim
        return self._add(name, "flatten", (size,))

    def dense(self, name: str, out_features: int) -> LayerTableBuilder:
        (in_features,) = self._shape
        params = in_features * out_features + out_features
        return self._add(name, "dense", (out_features,), params, in_features * out_features)

    def build(self) -> tuple[LayerSpec, ...]:
        return tuple(self._layers)
