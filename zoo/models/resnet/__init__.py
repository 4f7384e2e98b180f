"""ResNet (He et al. 2016) as torchvision builds it: ``resnet18`` (basic blocks) and ``resnet50`` (bottlenecks, v1.5).

Convolutions without bias, each followed by BatchNorm (eps 1e-5, momentum 0.1); a 7x7/2 stem and a 3x3/2
max-pool; four stages; global average pool and one dense layer. In a bottleneck, torchvision (v1.5) strides the
3x3 convolution where the paper and Keras' ResNet50 (v1) stride the first 1x1: the same weights, another network.
"""

from __future__ import annotations

from zoo._registry import register_model
from zoo._spec import LayerTableBuilder, ModelSpec

BN_EPSILON = 1e-5
BN_MOMENTUM = 0.1  # torch's weight of the new batch in the running statistics
REFERENCE = ("He, Zhang, Ren, Sun. Deep residual learning for image recognition. CVPR 2016 "
             "(the layout of torchvision.models.{name})")
# Blocks per stage; the block's width; the expansion of its last convolution.
ARCHITECTURES = {"resnet18": ("basic", (2, 2, 2, 2), 1), "resnet50": ("bottleneck", (3, 4, 6, 3), 4)}
WIDTHS = (64, 128, 256, 512)


def _conv_bn(table: LayerTableBuilder, prefix: str, index: int, channels: int, kernel: int, stride: int = 1,
             after: str | None = None) -> LayerTableBuilder:
    return table.conv(f"{prefix}.conv{index}", channels, kernel, stride=stride, padding=kernel // 2, bias=False,
                      after=after).bn(f"{prefix}.bn{index}")


def _block(table: LayerTableBuilder, prefix: str, kind: str, width: int, expansion: int, stride: int) -> None:
    """One residual block in the order torchvision's ``forward`` runs it: the main path, the projection of the
    shortcut (when the shape changes), the addition, the last ReLU."""
    block_input = table.last
    in_channels = table.shape_of(block_input)[0]
    if kind == "basic":
        _conv_bn(table, prefix, 1, width, 3, stride).relu(f"{prefix}.relu1")
        _conv_bn(table, prefix, 2, width, 3)
    else:
        _conv_bn(table, prefix, 1, width, 1).relu(f"{prefix}.relu1")
        _conv_bn(table, prefix, 2, width, 3, stride).relu(f"{prefix}.relu2")  # v1.5: the stride is here
        _conv_bn(table, prefix, 3, width * expansion, 1)
    main = table.last
    shortcut = block_input
    if stride != 1 or in_channels != width * expansion:
        table.conv(f"{prefix}.downsample.0", width * expansion, 1, stride=stride, bias=False, after=block_input)
        shortcut = table.bn(f"{prefix}.downsample.1").last
    table.add(f"{prefix}.add", [main, shortcut]).relu(f"{prefix}.relu{2 if kind == 'basic' else 3}")


def _layers(name: str):
    kind, depths, expansion = ARCHITECTURES[name]
    table = (LayerTableBuilder((3, 224, 224))
             .conv("conv1", 64, 7, stride=2, padding=3, bias=False).bn("bn1").relu("relu")
             .maxpool("maxpool", 3, 2, padding=1))
    for stage, (depth, width) in enumerate(zip(depths, WIDTHS, strict=True), start=1):
        for block in range(depth):
            stride = 2 if stage > 1 and block == 0 else 1
            _block(table, f"layer{stage}.{block}", kind, width, expansion, stride)
    return table.adaptive_avgpool("avgpool", 1).flatten("flatten").dense("fc", 1000).build()


RESNET18 = register_model(
    ModelSpec(
        name="resnet18",
        title="ResNet-18: basic blocks 2-2-2-2, BatchNorm",
        reference=REFERENCE.format(name="resnet18"),
        input_shape=(3, 224, 224),
        num_classes=1000,
        expected_params=11_689_512,
        expected_macs=1_814_073_344,
        layers=_layers("resnet18"),
    ),
    family=__name__,
)

RESNET50 = register_model(
    ModelSpec(
        name="resnet50",
        title="ResNet-50 v1.5: bottlenecks 3-4-6-3 strided on the 3x3, BatchNorm",
        reference=REFERENCE.format(name="resnet50"),
        input_shape=(3, 224, 224),
        num_classes=1000,
        expected_params=25_557_032,
        expected_macs=4_089_184_256,
        layers=_layers("resnet50"),
    ),
    family=__name__,
)
