"""ResNet in Keras: a functional model, NHWC, every layer named after the spec's table.

Not ``keras.applications.ResNet50``: that one is v1 (stride on the first 1x1 of a bottleneck), keeps convolution
biases, pads with "same" where torch pads symmetrically, and uses BatchNorm epsilon 1.001e-5.
"""

from __future__ import annotations

import keras
from keras import layers

from zoo._registry import get_spec
from zoo.keras_common import TorchBatchNormalization, adaptive_avg_pool2d, conv2d, image_input, max_pool2d
from zoo.models.resnet import ARCHITECTURES, BN_EPSILON, BN_MOMENTUM, WIDTHS


def _bn(x, name: str):
    return TorchBatchNormalization.like_torch(epsilon=BN_EPSILON, torch_momentum=BN_MOMENTUM, name=name)(x)


def _conv_bn(x, prefix: str, index: int, channels: int, kernel: int, stride: int = 1):
    x = conv2d(x, channels, kernel, stride=stride, padding=kernel // 2, use_bias=False, name=f"{prefix}.conv{index}")
    return _bn(x, f"{prefix}.bn{index}")


def _block(x, prefix: str, kind: str, width: int, expansion: int, stride: int):
    block_input = x
    if kind == "basic":
        x = layers.ReLU(name=f"{prefix}.relu1")(_conv_bn(x, prefix, 1, width, 3, stride))
        x = _conv_bn(x, prefix, 2, width, 3)
    else:
        x = layers.ReLU(name=f"{prefix}.relu1")(_conv_bn(x, prefix, 1, width, 1))
        x = layers.ReLU(name=f"{prefix}.relu2")(_conv_bn(x, prefix, 2, width, 3, stride))  # v1.5: stride on the 3x3
        x = _conv_bn(x, prefix, 3, width * expansion, 1)
    shortcut = block_input
    if stride != 1 or block_input.shape[-1] != width * expansion:
        shortcut = conv2d(block_input, width * expansion, 1, stride=stride, use_bias=False,
                          name=f"{prefix}.downsample.0")
        shortcut = _bn(shortcut, f"{prefix}.downsample.1")
    x = layers.Add(name=f"{prefix}.add")([x, shortcut])
    return layers.ReLU(name=f"{prefix}.relu{2 if kind == 'basic' else 3}")(x)


def _resnet(name: str, num_classes: int) -> keras.Model:
    kind, depths, expansion = ARCHITECTURES[name]
    inputs = image_input(get_spec(name).input_shape)
    # Stem: 7x7/2 with 3 rows and columns padded on every side (TensorFlow's "same" would pad 2 before, 3 after).
    x = _bn(conv2d(inputs, 64, 7, stride=2, padding=3, use_bias=False, name="conv1"), "bn1")
    x = layers.ReLU(name="relu")(x)
    x = max_pool2d(x, 3, 2, padding=1, name="maxpool")
    for stage, (depth, width) in enumerate(zip(depths, WIDTHS, strict=True), start=1):
        for block in range(depth):
            stride = 2 if stage > 1 and block == 0 else 1
            x = _block(x, f"layer{stage}.{block}", kind, width, expansion, stride)
    x = adaptive_avg_pool2d(x, 1, name="avgpool")
    x = layers.Flatten(name="flatten")(x)
    outputs = layers.Dense(num_classes, name="fc")(x)
    return keras.Model(inputs, outputs, name=name)


def resnet18(*, num_classes: int = 1000) -> keras.Model:
    """ResNet-18 with random weights; input NHWC 224x224x3."""
    return _resnet("resnet18", num_classes)


def resnet50(*, num_classes: int = 1000) -> keras.Model:
    """ResNet-50 v1.5 with random weights; input NHWC 224x224x3."""
    return _resnet("resnet50", num_classes)
