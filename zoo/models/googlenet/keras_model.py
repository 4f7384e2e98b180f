"""GoogLeNet in Keras: a functional model, NHWC, every layer named after the spec's table.

Not a ``keras.applications`` network (there is none, and InceptionV3 is another design). Ceil-mode pooling is
reproduced by padding the last, partial window bottom-right (``zoo.keras_common.max_pool2d``).
"""

from __future__ import annotations

import keras
from keras import layers

from zoo.keras_common import TorchBatchNormalization, adaptive_avg_pool2d, conv2d, image_input, max_pool2d
from zoo.models.googlenet import BN_EPSILON, BN_MOMENTUM, GOOGLENET, INCEPTIONS, STAGES


def _basic_conv(x, name: str, channels: int, kernel: int, stride: int = 1, padding: int = 0):
    x = conv2d(x, channels, kernel, stride=stride, padding=padding, use_bias=False, name=f"{name}.conv")
    x = TorchBatchNormalization.like_torch(epsilon=BN_EPSILON, torch_momentum=BN_MOMENTUM, name=f"{name}.bn")(x)
    return layers.ReLU(name=f"{name}.relu")(x)


def _inception(x, name: str):
    ch1, ch3_reduce, ch3, ch5_reduce, ch5, pool_proj = INCEPTIONS[name]
    branch1 = _basic_conv(x, f"{name}.branch1", ch1, 1)
    branch2 = _basic_conv(_basic_conv(x, f"{name}.branch2.0", ch3_reduce, 1), f"{name}.branch2.1", ch3, 3, padding=1)
    branch3 = _basic_conv(_basic_conv(x, f"{name}.branch3.0", ch5_reduce, 1), f"{name}.branch3.1", ch5, 3, padding=1)
    pooled = max_pool2d(x, 3, 1, padding=1, ceil_mode=True, name=f"{name}.branch4.0")
    branch4 = _basic_conv(pooled, f"{name}.branch4.1", pool_proj, 1)
    return layers.Concatenate(axis=-1, name=name)([branch1, branch2, branch3, branch4])


def googlenet(*, num_classes: int = 1000, dropout: float = 0.2) -> keras.Model:
    """GoogLeNet with random weights; input NHWC 224x224x3."""
    inputs = image_input(GOOGLENET.input_shape)
    x = inputs
    for stage in STAGES:
        if stage[0] == "conv":
            _, name, channels, kernel, stride, padding = stage
            x = _basic_conv(x, name, channels, kernel, stride, padding)
        elif stage[0] == "pool":
            _, name, kernel, stride = stage
            x = max_pool2d(x, kernel, stride, ceil_mode=True, name=name)
        else:
            x = _inception(x, stage[1])
    x = adaptive_avg_pool2d(x, 1, name="avgpool")
    x = layers.Flatten(name="flatten")(x)
    x = layers.Dropout(dropout, name="dropout")(x)
    outputs = layers.Dense(num_classes, name="fc")(x)
    return keras.Model(inputs, outputs, name="googlenet")
