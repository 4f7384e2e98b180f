"""LeNet-5 in Keras: a functional model, NHWC, every layer named after the spec's table."""

from __future__ import annotations

import keras
from keras import layers

from zoo.keras_common import image_input
from zoo.models.lenet import LENET


def lenet(*, num_classes: int = 10) -> keras.Model:
    """LeNet-5 with random weights; input NHWC 32x32x1."""
    inputs = image_input(LENET.input_shape)
    # Block 1
    x = layers.Conv2D(6, 5, name="conv1")(inputs)
    x = layers.ReLU(name="relu1")(x)
    x = layers.MaxPooling2D(2, strides=2, name="pool1")(x)
    # Block 2
    x = layers.Conv2D(16, 5, name="conv2")(x)
    x = layers.ReLU(name="relu2")(x)
    x = layers.MaxPooling2D(2, strides=2, name="pool2")(x)
    # Classifier
    x = layers.Flatten(name="flatten")(x)
    x = layers.Dense(120, name="fc1")(x)
    x = layers.ReLU(name="relu3")(x)
    x = layers.Dense(84, name="fc2")(x)
    x = layers.ReLU(name="relu4")(x)
    outputs = layers.Dense(num_classes, name="fc3")(x)
    return keras.Model(inputs, outputs, name="lenet")
