"""GoogLeNet (Inception v1, Szegedy et al. 2015) as torchvision builds it, ``googlenet(aux_logits=False)``.

torchvision's network differs from the paper's in three places, kept here: every convolution is followed by
BatchNorm (eps 1e-3) and has no bias; the "5x5" branch convolves 3x3; the max-pools between stages use ceil
mode (a last, partial window), which Keras lacks and the twin reproduces by padding. No input transform, no
auxiliary classifiers (they only run in training, and torchvision drops them when ``aux_logits=False``).
"""

from __future__ import annotations

from zoo._registry import register_model
from zoo._spec import LayerTableBuilder, ModelSpec

BN_EPSILON = 1e-3
BN_MOMENTUM = 0.1
# name: (1x1, 3x3 reduce, 3x3, "5x5" reduce, "5x5" (3x3 here), pool projection), torchvision's Inception arguments.
INCEPTIONS = {
    "inception3a": (64, 96, 128, 16, 32, 32),
    "inception3b": (128, 128, 192, 32, 96, 64),
    "inception4a": (192, 96, 208, 16, 48, 64),
    "inception4b": (160, 112, 224, 24, 64, 64),
    "inception4c": (128, 128, 256, 24, 64, 64),
    "inception4d": (112, 144, 288, 32, 64, 64),
    "inception4e": (256, 160, 320, 32, 128, 128),
    "inception5a": (256, 160, 320, 32, 128, 128),
    "inception5b": (384, 192, 384, 48, 128, 128),
}
# The network in the order of torchvision's forward: a stem, inception modules, pools between stages.
# ("conv", name, channels, kernel, stride, padding) | ("pool", name, kernel, stride) | ("inception", name)
STAGES = [
    ("conv", "conv1", 64, 7, 2, 3), ("pool", "maxpool1", 3, 2),
    ("conv", "conv2", 64, 1, 1, 0), ("conv", "conv3", 192, 3, 1, 1), ("pool", "maxpool2", 3, 2),
    ("inception", "inception3a"), ("inception", "inception3b"), ("pool", "maxpool3", 3, 2),
    ("inception", "inception4a"), ("inception", "inception4b"), ("inception", "inception4c"),
    ("inception", "inception4d"), ("inception", "inception4e"), ("pool", "maxpool4", 2, 2),
    ("inception", "inception5a"), ("inception", "inception5b"),
]


def _basic_conv(table: LayerTableBuilder, name: str, channels: int, kernel: int, stride: int = 1,
                padding: int = 0, after: str | None = None) -> str:
    """torchvision's BasicConv2d: convolution without bias, BatchNorm, ReLU. Returns the ReLU's name."""
    table.conv(f"{name}.conv", channels, kernel, stride=stride, padding=padding, bias=False, after=after)
    return table.bn(f"{name}.bn").relu(f"{name}.relu").last


def _inception(table: LayerTableBuilder, name: str) -> None:
    ch1, ch3_reduce, ch3, ch5_reduce, ch5, pool_proj = INCEPTIONS[name]
    source = table.last
    branch1 = _basic_conv(table, f"{name}.branch1", ch1, 1, after=source)
    _basic_conv(table, f"{name}.branch2.0", ch3_reduce, 1, after=source)
    branch2 = _basic_conv(table, f"{name}.branch2.1", ch3, 3, padding=1)
    _basic_conv(table, f"{name}.branch3.0", ch5_reduce, 1, after=source)
    branch3 = _basic_conv(table, f"{name}.branch3.1", ch5, 3, padding=1)  # 3x3, as torchvision (the paper: 5x5)
    table.maxpool(f"{name}.branch4.0", 3, 1, padding=1, ceil_mode=True, after=source)
    branch4 = _basic_conv(table, f"{name}.branch4.1", pool_proj, 1)
    table.concat(name, [branch1, branch2, branch3, branch4])


def _layers():
    table = LayerTableBuilder((3, 224, 224))
    for stage in STAGES:
        if stage[0] == "conv":
            _, name, channels, kernel, stride, padding = stage
            _basic_conv(table, name, channels, kernel, stride, padding)
        elif stage[0] == "pool":
            _, name, kernel, stride = stage
            table.maxpool(name, kernel, stride, ceil_mode=True)
        else:
            _inception(table, stage[1])
    return table.adaptive_avgpool("avgpool", 1).flatten("flatten").dropout("dropout").dense("fc", 1000).build()


GOOGLENET = register_model(
    ModelSpec(
        name="googlenet",
        title="GoogLeNet (Inception v1, torchvision: BatchNorm, ceil-mode pools, 3x3 in branch 3)",
        reference="Szegedy et al. Going deeper with convolutions. CVPR 2015 (the layout of "
        "torchvision.models.googlenet(aux_logits=False))",
        input_shape=(3, 224, 224),
        num_classes=1000,
        expected_params=6_624_904,
        expected_macs=1_498_376_192,
        layers=_layers(),
    ),
    family=__name__,
)
