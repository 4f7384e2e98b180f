"""VGG in Keras: a functional model, NHWC, every layer named after the spec's table."""

from __future__ import annotations

import keras
from keras import layers

from zoo._registry import get_spec
from zoo.keras_common import adaptive_avg_pool2d, conv2d, image_input
from zoo.models.vgg import CONFIGS, layer_names


def _vgg(name: str, num_classes: int, dropout: float) -> keras.Model:
    config = CONFIGS[name]
    inputs = image_input(get_spec(name).input_shape)
    x = inputs
    for layer_name, item in zip(layer_names(config), config, strict=True):
        if item == "M":
            x = layers.MaxPooling2D(2, strides=2, name=layer_name)(x)
        else:
            x = conv2d(x, item, 3, padding=1, name=layer_name)  # stride 1: "same", symmetric as in torch
            x = layers.ReLU(name=layer_name.replace("conv", "relu"))(x)
    # Classifier; fc6 reads the 7x7x512 maps flattened NHWC, and the weight transfer reorders its columns.
    x = adaptive_avg_pool2d(x, 7, name="avgpool")
    x = layers.Flatten(name="flatten")(x)
    x = layers.Dense(4096, name="fc6")(x)
    x = layers.ReLU(name="relu6")(x)
    x = layers.Dropout(dropout, name="drop6")(x)
    x = layers.Dense(4096, name="fc7")(x)
    x = layers.ReLU(name="relu7")(x)
    x = layers.Dropout(dropout, name="drop7")(x)
    outputs = layers.Dense(num_classes, name="fc8")(x)
    return keras.Model(inputs, outputs, name=name)


def vgg11(*, num_classes: int = 1000, dropout: float = 0.5) -> keras.Model:
    """VGG-A with random weights; input NHWC 224x224x3."""
    return _vgg("vgg11", num_classes, dropout)


def vgg16(*, num_classes: int = 1000, dropout: float = 0.5) -> keras.Model:
    """VGG-D with random weights; input NHWC 224x224x3."""
    return _vgg("vgg16", num_classes, dropout)
