"""VGG (Simonyan & Zisserman 2014) as torchvision builds it: configurations A (``vgg11``) and D (``vgg16``).

3x3 convolutions with padding 1 in five stages, each closed by a 2x2 max-pool; an adaptive average pool to 7x7
(the identity at 224x224), then three dense layers with dropout. No BatchNorm (torchvision's ``vgg11``/``vgg16``,
not the ``_bn`` variants).
"""

from __future__ import annotations

from zoo._registry import register_model
from zoo._spec import LayerTableBuilder, ModelSpec

# Output channels per convolution, "M" a max-pool; the two configurations of the paper's Table 1 benchmarked here.
CONFIGS: dict[str, list[int | str]] = {
    "vgg11": [64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"],
    "vgg16": [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"],
}
REFERENCE = ("Simonyan, Zisserman. Very deep convolutional networks for large-scale image recognition. "
             "arXiv:1409.1556, ICLR 2015 (the layout of torchvision.models.{name})")


def layer_names(config: list[int | str]) -> list[str]:
    """The paper's names, in order: ``conv<stage>_<n>`` for a convolution, ``pool<stage>`` for a max-pool."""
    names, stage, index = [], 1, 0
    for item in config:
        if item == "M":
            names.append(f"pool{stage}")
            stage, index = stage + 1, 0
        else:
            index += 1
            names.append(f"conv{stage}_{index}")
    return names


def _layers(config: list[int | str]):
    table = LayerTableBuilder((3, 224, 224))
    for name, item in zip(layer_names(config), config, strict=True):
        if item == "M":
            table.maxpool(name, 2, 2)
        else:
            table.conv(name, item, 3, padding=1).relu(name.replace("conv", "relu"))
    return (
        table.adaptive_avgpool("avgpool", 7).flatten("flatten")
        .dense("fc6", 4096).relu("relu6").dropout("drop6")
        .dense("fc7", 4096).relu("relu7").dropout("drop7")
        .dense("fc8", 1000)
        .build()
    )


VGG11 = register_model(
    ModelSpec(
        name="vgg11",
        title="VGG-A (VGG-11): 8 convolutions 3x3, 3 dense",
        reference=REFERENCE.format(name="vgg11"),
        input_shape=(3, 224, 224),
        num_classes=1000,
        expected_params=132_863_336,
        expected_macs=7_609_090_048,
        layers=_layers(CONFIGS["vgg11"]),
    ),
    family=__name__,
)

VGG16 = register_model(
    ModelSpec(
        name="vgg16",
        title="VGG-D (VGG-16): 13 convolutions 3x3, 3 dense",
        reference=REFERENCE.format(name="vgg16"),
        input_shape=(3, 224, 224),
        num_classes=1000,
        expected_params=138_357_544,
        expected_macs=15_470_264_320,
        layers=_layers(CONFIGS["vgg16"]),
    ),
    family=__name__,
)
