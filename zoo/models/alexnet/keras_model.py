"""The AlexNets in Keras: functional models, NHWC, every layer named after the spec's table."""

from __future__ import annotations

import keras
from keras import layers, ops

from zoo.keras_common import adaptive_avg_pool2d, conv2d, image_input
from zoo.models.alexnet import ALEXNET, ALEXNET_2012, LRN_ALPHA, LRN_BETA, LRN_K, LRN_SIZE


@keras.saving.register_keras_serializable(package="zoo")
class LocalResponseNormalization(layers.Layer):
    """Local response normalisation across channels (NHWC), in the Caffe/torch convention.

    ``alpha`` is divided by ``size`` here, as Caffe and ``torch.nn.LocalResponseNorm`` do;
    ``tf.nn.local_response_normalization`` does not divide, so it receives ``alpha / size``.

    Under TensorFlow, float32 (the precision benchmarked) runs TensorFlow's fused LRN kernel, as the TensorFlow
    twin always has; that kernel has no float64, which the parity proof computes in (``zoo.parity``), and other
    Keras backends (JAX) have no LRN op at all: there the same formula is written out in ``keras.ops``. A test holds
    the fused kernel to the written-out formula in float32.
    """

    spec_kind = "lrn"

    def __init__(self, size: int = 5, alpha: float = 1e-4, beta: float = 0.75, k: float = 2.0, **kwargs) -> None:
        super().__init__(**kwargs)
        if size % 2 != 1:
            raise ValueError(f"LRN size must be odd. Received: size={size}")
        self.size, self.alpha, self.beta, self.k = size, alpha, beta, k

    def call(self, inputs):
        if keras.backend.backend() != "tensorflow" or keras.backend.standardize_dtype(inputs.dtype) == "float64":
            return self._written_out(inputs)
        import tensorflow as tf  # only on the TensorFlow backend: the JAX twin must not load TensorFlow

        return tf.nn.local_response_normalization(
            inputs, depth_radius=self.size // 2, bias=self.k, alpha=self.alpha / self.size, beta=self.beta
        )

    def _written_out(self, inputs):
        """b = a / (k + alpha / size * sum of a^2 over the ``size`` channels centred on a's) ** beta.

        The window's shifted squares are stacked and summed over the stack: under TensorFlow that adds them in the
        order ``tf.add_n`` did, forward and backward, where a chain of additions would accumulate the gradient in
        another order and move the float64 proof's figures in their last bits.
        """
        half = self.size // 2
        squares = ops.pad(ops.square(inputs), [[0, 0], [0, 0], [0, 0], [half, half]])
        channels = inputs.shape[-1]
        window = ops.sum(ops.stack([squares[..., offset:offset + channels] for offset in range(self.size)]), axis=0)
        return inputs / ops.power(self.k + self.alpha / self.size * window, self.beta)

    def get_config(self) -> dict:
        return {**super().get_config(), "size": self.size, "alpha": self.alpha, "beta": self.beta, "k": self.k}


def alexnet(*, num_classes: int = 1000, dropout: float = 0.5) -> keras.Model:
    """AlexNet in torchvision's layout with random weights; input NHWC 224x224x3."""
    inputs = image_input(ALEXNET.input_shape)
    # Block 1: stride 4, so conv2d pads 2 on every side explicitly ("same" would pad 224 asymmetrically).
    x = conv2d(inputs, 64, 11, stride=4, padding=2, name="conv1")
    x = layers.ReLU(name="relu1")(x)
    x = layers.MaxPooling2D(3, strides=2, name="pool1")(x)
    # Block 2: stride 1 and an odd kernel, so conv2d uses "same", symmetric as padding=2 in torch.
    x = conv2d(x, 192, 5, padding=2, name="conv2")
    x = layers.ReLU(name="relu2")(x)
    x = layers.MaxPooling2D(3, strides=2, name="pool2")(x)
    # Block 3
    x = conv2d(x, 384, 3, padding=1, name="conv3")
    x = layers.ReLU(name="relu3")(x)
    x = conv2d(x, 256, 3, padding=1, name="conv4")
    x = layers.ReLU(name="relu4")(x)
    x = conv2d(x, 256, 3, padding=1, name="conv5")
    x = layers.ReLU(name="relu5")(x)
    x = layers.MaxPooling2D(3, strides=2, name="pool5")(x)
    # Classifier
    x = adaptive_avg_pool2d(x, 6, name="avgpool")
    x = layers.Flatten(name="flatten")(x)
    x = layers.Dropout(dropout, name="drop6")(x)
    x = layers.Dense(4096, name="fc6")(x)
    x = layers.ReLU(name="relu6")(x)
    x = layers.Dropout(dropout, name="drop7")(x)
    x = layers.Dense(4096, name="fc7")(x)
    x = layers.ReLU(name="relu7")(x)
    outputs = layers.Dense(num_classes, name="fc8")(x)
    return keras.Model(inputs, outputs, name="alexnet")


def alexnet_2012(*, num_classes: int = 1000, dropout: float = 0.5) -> keras.Model:
    """AlexNet of the 2012 paper with random weights; input NHWC 227x227x3; conv2/4/5 in two groups."""

    def lrn(name: str) -> LocalResponseNormalization:
        return LocalResponseNormalization(LRN_SIZE, LRN_ALPHA, LRN_BETA, LRN_K, name=name)

    inputs = image_input(ALEXNET_2012.input_shape)
    # Block 1
    x = conv2d(inputs, 96, 11, stride=4, name="conv1")
    x = layers.ReLU(name="relu1")(x)
    x = lrn("norm1")(x)
    x = layers.MaxPooling2D(3, strides=2, name="pool1")(x)
    # Block 2
    x = conv2d(x, 256, 5, padding=2, groups=2, name="conv2")
    x = layers.ReLU(name="relu2")(x)
    x = lrn("norm2")(x)
    x = layers.MaxPooling2D(3, strides=2, name="pool2")(x)
    # Block 3
    x = conv2d(x, 384, 3, padding=1, name="conv3")
    x = layers.ReLU(name="relu3")(x)
    x = conv2d(x, 384, 3, padding=1, groups=2, name="conv4")
    x = layers.ReLU(name="relu4")(x)
    x = conv2d(x, 256, 3, padding=1, groups=2, name="conv5")
    x = layers.ReLU(name="relu5")(x)
    x = layers.MaxPooling2D(3, strides=2, name="pool5")(x)
    # Classifier
    x = layers.Flatten(name="flatten")(x)
    x = layers.Dense(4096, name="fc6")(x)
    x = layers.ReLU(name="relu6")(x)
    x = layers.Dropout(dropout, name="drop6")(x)
    x = layers.Dense(4096, name="fc7")(x)
    x = layers.ReLU(name="relu7")(x)
    x = layers.Dropout(dropout, name="drop7")(x)
    outputs = layers.Dense(num_classes, name="fc8")(x)
    return keras.Model(inputs, outputs, name="alexnet_2012")
