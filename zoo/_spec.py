"""Framework-neutral description of a network: its layer graph, parameter count and multiply-accumulates."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

Shape = tuple[int, ...]

# The name a layer gives as its input when it reads the images (the Keras twins name their input layer so too).
IMAGES = "images"


@dataclass(frozen=True)
class LayerSpec:
    """One layer as both framework definitions must have it.

    ``inputs`` names the layers it reads (``IMAGES`` for the network's input), in the order it takes them: the
    table is a graph, so Inception branches and residual additions are layers like any other. ``output_shape``
    is per image in channels-first order, ``(C, H, W)`` for feature maps and ``(F,)`` after flattening, whatever
    layout a framework uses internally. ``params`` counts trainable parameters; ``statistics`` counts the values
    a layer keeps but does not train (BatchNorm's moving mean and variance). ``macs`` counts the
    multiply-accumulates of the layer's weights for one image in the forward pass (bias additions,
    normalisation, activations, pooling and additions are not counted, the convention of torchvision's and the
    papers' tables).
    """

    name: str
    kind: str
    output_shape: Shape
    params: int = 0
    macs: int = 0
    inputs: tuple[str, ...] = (IMAGES,)
    statistics: int = 0


@dataclass(frozen=True)
class ModelSpec:
    """What a network is, independently of any framework.

    ``expected_params`` and ``expected_macs`` are the published figures, written down by hand; tests check that
    the layer table adds up to them and that both framework definitions match the table layer by layer. The
    table lists layers in the order torch's ``forward`` runs them, which is a topological order of the graph.
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
        """Trainable parameters summed over the layer table."""
        return sum(layer.params for layer in self.layers)

    @property
    def statistics(self) -> int:
        """Statistics kept but not trained (BatchNorm moving mean and variance) summed over the layer table."""
        return sum(layer.statistics for layer in self.layers)

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
        """MACs per image of the layers that read the images.

        Nothing precedes them, so a backward pass computes their weight gradients but not their input
        gradients: nobody asks for the gradient with respect to the images.
        """
        return sum(layer.macs for layer in self.layers if IMAGES in layer.inputs)

    @property
    def kinds(self) -> frozenset[str]:
        return frozenset(layer.kind for layer in self.layers)

    def layer(self, name: str) -> LayerSpec:
        for layer in self.layers:
            if layer.name == name:
                return layer
        raise KeyError(f"{self.name} has no layer {name!r}")

    def input_of(self, name: str) -> LayerSpec | None:
        """The one layer that feeds ``name`` (None when it reads the images), e.g. to know what a dense layer
        flattens. A layer with several inputs (an addition, a concatenation) has no single one: ValueError."""
        inputs = self.layer(name).inputs
        if len(inputs) != 1:
            raise ValueError(f"{self.name}.{name} has {len(inputs)} inputs")
        return None if inputs[0] == IMAGES else self.layer(inputs[0])


def _conv_out(size: int, kernel: int, stride: int, padding: int) -> int:
    return (size + 2 * padding - kernel) // stride + 1


def pool_out(size: int, kernel: int, stride: int, padding: int = 0, ceil_mode: bool = False) -> int:
    """Output size of a pooling window as torch computes it.

    In ceil mode a last, partial window is kept, unless it would start in the right padding (torch's rule).
    """
    span = size + 2 * padding - kernel
    out = (-(-span // stride) if ceil_mode else span // stride) + 1
    if ceil_mode and (out - 1) * stride >= size + padding:
        out -= 1
    return out


class LayerTableBuilder:
    """Derives a layer graph from layer geometry, the way one would on paper.

    Shapes, parameters and MACs are computed here from kernel sizes, strides and paddings, so that the
    hand-written totals in a ``ModelSpec`` are checked against arithmetic rather than copied from it. Each
    layer reads the layer added before it unless ``after`` names another (a branch), and ``add`` and
    ``concat`` join several.
    """

    def __init__(self, input_shape: Shape) -> None:
        self._shapes: dict[str, Shape] = {IMAGES: tuple(input_shape)}
        self._last = IMAGES
        self._layers: list[LayerSpec] = []

    @property
    def last(self) -> str:
        """The name of the layer added last (``IMAGES`` before any), where a branch starts from."""
        return self._last

    def shape_of(self, name: str) -> Shape:
        """The output shape of a layer added so far (or of ``IMAGES``)."""
        return self._input(name)[1]

    def _input(self, after: str | None) -> tuple[str, Shape]:
        name = self._last if after is None else after
        if name not in self._shapes:
            raise ValueError(f"unknown input layer {name!r}")
        return name, self._shapes[name]

    def _add(self, name: str, kind: str, shape: Shape, inputs: Sequence[str], params: int = 0, macs: int = 0,
             statistics: int = 0) -> LayerTableBuilder:
        if name in self._shapes:
            raise ValueError(f"duplicate layer name {name!r}")
        self._shapes[name] = shape
        self._last = name
        self._layers.append(LayerSpec(name, kind, shape, params, macs, tuple(inputs), statistics))
        return self

    def _same_shape(self, name: str, kind: str, after: str | None) -> LayerTableBuilder:
        source, shape = self._input(after)
        return self._add(name, kind, shape, [source])

    def conv(
        self, name: str, out_channels: int, kernel: int, *, stride: int = 1, padding: int = 0, groups: int = 1,
        bias: bool = True, after: str | None = None,
    ) -> LayerTableBuilder:
        source, (in_channels, height, width) = self._input(after)
        if in_channels % groups or out_channels % groups:
            raise ValueError(f"{name}: channels {in_channels}->{out_channels} do not split into {groups} groups")
        out_h, out_w = _conv_out(height, kernel, stride, padding), _conv_out(width, kernel, stride, padding)
        weights_per_output = (in_channels // groups) * kernel * kernel
        params = out_channels * weights_per_output + (out_channels if bias else 0)
        macs = out_h * out_w * out_channels * weights_per_output
        return self._add(name, "conv", (out_channels, out_h, out_w), [source], params, macs)

    def bn(self, name: str, *, after: str | None = None) -> LayerTableBuilder:
        """BatchNorm over channels: a scale and a shift trained per channel, a moving mean and variance kept."""
        source, shape = self._input(after)
        channels = shape[0]
        return self._add(name, "bn", shape, [source], params=2 * channels, statistics=2 * channels)

    def relu(self, name: str, *, after: str | None = None) -> LayerTableBuilder:
        return self._same_shape(name, "relu", after)

    def lrn(self, name: str, *, after: str | None = None) -> LayerTableBuilder:
        return self._same_shape(name, "lrn", after)

    def dropout(self, name: str, *, after: str | None = None) -> LayerTableBuilder:
        return self._same_shape(name, "dropout", after)

    def maxpool(
        self, name: str, kernel: int, stride: int, *, padding: int = 0, ceil_mode: bool = False,
        after: str | None = None,
    ) -> LayerTableBuilder:
        source, (channels, height, width) = self._input(after)
        shape = (channels, pool_out(height, kernel, stride, padding, ceil_mode),
                 pool_out(width, kernel, stride, padding, ceil_mode))
        return self._add(name, "maxpool", shape, [source])

    def adaptive_avgpool(self, name: str, output_size: int, *, after: str | None = None) -> LayerTableBuilder:
        source, shape = self._input(after)
        return self._add(name, "avgpool", (shape[0], output_size, output_size), [source])

    def flatten(self, name: str, *, after: str | None = None) -> LayerTableBuilder:
        source, shape = self._input(after)
        size = 1
        for dim in shape:
            size *= dim
        return self._add(name, "flatten", (size,), [source])

    def dense(self, name: str, out_features: int, *, after: str | None = None) -> LayerTableBuilder:
        source, (in_features,) = self._input(after)
        params = in_features * out_features + out_features
        return self._add(name, "dense", (out_features,), [source], params, in_features * out_features)

    def add(self, name: str, inputs: Sequence[str]) -> LayerTableBuilder:
        """Element-wise sum of layers of one shape (a residual connection)."""
        shapes = [self._input(source)[1] for source in inputs]
        if len(inputs) < 2 or any(shape != shapes[0] for shape in shapes):
            raise ValueError(f"{name}: add needs two or more inputs of one shape. Received: {shapes}")
        return self._add(name, "add", shapes[0], inputs)

    def concat(self, name: str, inputs: Sequence[str]) -> LayerTableBuilder:
        """Feature maps of one height and width stacked along channels, in the order given."""
        shapes = [self._input(source)[1] for source in inputs]
        if len(inputs) < 2 or any(shape[1:] != shapes[0][1:] for shape in shapes):
            raise ValueError(f"{name}: concat needs two or more inputs of one height and width. Received: {shapes}")
        return self._add(name, "concat", (sum(shape[0] for shape in shapes), *shapes[0][1:]), inputs)

    def build(self) -> tuple[LayerSpec, ...]:
        return tuple(self._layers)
