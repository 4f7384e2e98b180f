"""The zoo's networks in TensorFlow: Keras functional models, NHWC, every layer named after the spec's table."""

from __future__ import annotations

import keras
import tensorflow as tf
from keras import layers

from zoo.specs import ALEXNET, ALEXNET_2012, LENET, LRN_ALPHA, LRN_BETA, LRN_K, LRN_SIZE


@keras.saving.register_keras_serializable(package="zoo")
class LocalResponseNormalization(layers.Layer):
    """Local response normalisation across channels (NHWC), in the Caffe/torch convention.

    ``alpha`` is divided by ``size`` here, as Caffe and ``torch.nn.LocalResponseNorm`` do;
    ``tf.nn.local_response_normalization`` does not divide, so it receives ``alpha / size``. TensorFlow's LRN
    kernel has no float64, which the parity proof computes in (``zoo.parity``); there the same formula is
    written out with elementary ops, and a test holds the fused kernel to it in float32.
    """

    def __init__(self, size: int = 5, alpha: float = 1e-4, beta: float = 0.75, k: float = 2.0, **kwargs) -> None:
        super().__init__(**kwargs)
        if size % 2 != 1:
            raise ValueError(f"LRN size must be odd. Received: size={size}")
        self.size, self.alpha, self.beta, self.k = size, alpha, beta, k

    def call(self, inputs):
        if inputs.dtype == tf.float64:
            return self._written_out(inputs)
        return tf.nn.local_response_normalization(
            inputs, depth_radius=self.size // 2, bias=self.k, alpha=self.alpha / self.size, beta=self.beta
        )

    def _written_out(self, inputs):
        """b = a / (k + alpha / size * sum of a^2 over the ``size`` channels centred on a's) ** beta."""
        half = self.size // 2
        squares = tf.pad(tf.square(inputs), [[0, 0], [0, 0], [0, 0], [half, half]])
        channels = inputs.shape[-1]
        window = tf.add_n([squares[..., offset:offset + channels] for offset in range(self.size)])
        return inputs / tf.pow(self.k + self.alpha / self.size * window, self.beta)

    def get_config(self) -> dict:
        return {**super().get_config(), "size": self.size, "alpha": self.alpha, "beta": self.beta, "k": self.k}


def _input(shape_chw: tuple[int, ...]) -> keras.KerasTensor:
    channels, height, width = shape_chw
    return keras.Input(shape=(height, width, channels), name="images")


def lenet(*, num_classes: int = 10) -> keras.Model:
    """LeNet-5 with random weights; input NHWC 32x32x1."""
    inputs = _input(LENET.input_shape)
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


def alexnet(*, num_classes: int = 1000, dropout: float = 0.5) -> keras.Model:
    """AlexNet in torchvision's layout with random weights; input NHWC 224x224x3."""
    inputs = _input(ALEXNET.input_shape)
    # Block 1: 'same' padding would pad 224 asymmetrically to give 56x56; torchvision pads 2 on every side.
    x = layers.ZeroPadding2D(2, name="conv1_pad")(inputs)
    x = layers.Conv2D(64, 11, strides=4, name="conv1")(x)
    x = layers.ReLU(name="relu1")(x)
    x = layers.MaxPooling2D(3, strides=2, name="pool1")(x)
    # Block 2: stride 1 and an odd kernel, so 'same' pads symmetrically, exactly as padding=2 in torch.
    x = layers.Conv2D(192, 5, padding="same", name="conv2")(x)
    x = layers.ReLU(name="relu2")(x)
    x = layers.MaxPooling2D(3, strides=2, name="pool2")(x)
    # Block 3
    x = layers.Conv2D(384, 3, padding="same", name="conv3")(x)
    x = layers.ReLU(name="relu3")(x)
    x = layers.Conv2D(256, 3, padding="same", name="conv4")(x)
    x = layers.ReLU(name="relu4")(x)
    x = layers.Conv2D(256, 3, padding="same", name="conv5")(x)
    x = layers.ReLU(name="relu5")(x)
    x = layers.MaxPooling2D(3, strides=2, name="pool5")(x)
    # Classifier
    x = layers.AdaptiveAveragePooling2D(6, name="avgpool")(x)
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

    inputs = _input(ALEXNET_2012.input_shape)
    # Block 1
    x = layers.Conv2D(96, 11, strides=4, name="conv1")(inputs)
    x = layers.ReLU(name="relu1")(x)
    x = lrn("norm1")(x)
    x = layers.MaxPooling2D(3, strides=2, name="pool1")(x)
    # Block 2
    x = layers.Conv2D(256, 5, padding="same", groups=2, name="conv2")(x)
    x = layers.ReLU(name="relu2")(x)
    x = lrn("norm2")(x)
    x = layers.MaxPooling2D(3, strides=2, name="pool2")(x)
    # Block 3
    x = layers.Conv2D(384, 3, padding="same", name="conv3")(x)
    x = layers.ReLU(name="relu3")(x)
    x = layers.Conv2D(384, 3, padding="same", groups=2, name="conv4")(x)
    x = layers.ReLU(name="relu4")(x)
    x = layers.Conv2D(256, 3, padding="same", groups=2, name="conv5")(x)
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


_KINDS = {
    layers.Conv2D: "conv",
    layers.ReLU: "relu",
    layers.MaxPooling2D: "maxpool",
    LocalResponseNormalization: "lrn",
    layers.AdaptiveAveragePooling2D: "avgpool",
    layers.Flatten: "flatten",
    layers.Dropout: "dropout",
    layers.Dense: "dense",
}


def spec_layers(model: keras.Model) -> list[layers.Layer]:
    """The model's layers that the spec's table lists, in order.

    Left out: the input layer, and ``ZeroPadding2D`` layers named ``<conv>_pad``, which belong to the
    convolution that follows them (torch folds padding into ``Conv2d``).
    """
    return [
        layer
        for layer in model.layers
        if not isinstance(layer, (keras.layers.InputLayer, layers.ZeroPadding2D))
    ]


def kind_of(layer: layers.Layer) -> str:
    """The spec's kind for a Keras layer (``"conv"``, ``"dense"``, ...)."""
    return _KINDS[type(layer)]


def count_macs(model: keras.Model) -> int:
    """Forward multiply-accumulates per image, from each Keras layer's own kernel and output shapes."""
    macs = 0
    for layer in model.layers:
        if isinstance(layer, layers.Conv2D):
            _, out_h, out_w, _ = layer.output.shape
            macs += out_h * out_w * int(layer.kernel.numpy().size)  # kernel holds kH*kW*(in/groups)*out values
        elif isinstance(layer, layers.Dense):
            macs += int(layer.kernel.shape[0]) * int(layer.kernel.shape[1])
    return macs
