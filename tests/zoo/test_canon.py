"""The canon's twins: torchvision's weights load unchanged, and the checks fail on each way a twin can go wrong.

Each mutation is a Keras twin that differs from torch the way a hand-written or ``keras.applications`` network
typically does; it takes the same weights (the shapes all agree) and must then miss the float32 logit bound
``FP32_LOGITS_RTOL`` by far, while the unmutated twin meets it on the same weights and images.
"""

import numpy as np
import pytest

import zoo
from zoo.parity import FP32_LOGITS_RTOL

# name -> how torchvision builds the same network with random weights.
TORCHVISION = {
    "alexnet": lambda tv: tv.alexnet(weights=None),
    "vgg11": lambda tv: tv.vgg11(weights=None),
    "vgg16": lambda tv: tv.vgg16(weights=None),
    "googlenet": lambda tv: tv.googlenet(weights=None, aux_logits=False, init_weights=True),
    "resnet18": lambda tv: tv.resnet18(weights=None),
    "resnet50": lambda tv: tv.resnet50(weights=None),
}


@pytest.mark.torch
@pytest.mark.parametrize("name", list(TORCHVISION))
def test_torch_twin_takes_torchvision_weights_and_gives_identical_logits(name):
    import torch
    import torchvision

    from zoo.parity import randomise_batchnorm

    torch.manual_seed(0)
    reference = TORCHVISION[name](torchvision.models).eval()
    randomise_batchnorm(reference, seed=0)  # so that the running statistics loaded are not the identity
    with torch.device("meta"):  # no weights of its own to draw: it takes the state_dict's tensors
        ours = zoo.build(name, "torch").eval()
    ours.load_state_dict(reference.state_dict(), assign=True)  # strict: the same keys and shapes, nothing left over
    images = torch.randn(1, *zoo.get_spec(name).input_shape)
    with torch.no_grad():
        np.testing.assert_array_equal(ours(images).numpy(), reference(images).numpy())


def _twin_and_logits(name: str, seed: int = 0):
    """A torch model with randomised BatchNorm and its layers by spec name, its Keras twin with its weights, images
    and the torch logits."""
    from zoo.parity import load_frameworks, randomise_batchnorm
    from zoo.transfer import torch_layers_by_spec_name, torch_to_keras

    load_frameworks()
    import torch

    from zoo.keras_common import zero_initial_weights

    torch.manual_seed(seed)
    spec = zoo.get_spec(name)
    torch_model = zoo.build(name, "torch").eval()
    randomise_batchnorm(torch_model, seed)
    with zero_initial_weights():  # every weight comes from torch
        keras_model = zoo.build(name, "tf")
    layers = torch_layers_by_spec_name(spec, torch_model)
    torch_to_keras(spec, torch_model, keras_model, layers)
    images = np.random.default_rng(seed).standard_normal((1, *spec.input_shape), dtype=np.float32)
    with torch.no_grad():
        expected = torch_model(torch.from_numpy(images)).numpy()
    return spec, torch_model, layers, keras_model, images, expected


def _logit_error(keras_model, images, expected) -> float:
    got = keras_model(images.transpose(0, 2, 3, 1), training=False).numpy()
    return float(np.max(np.abs(expected - got)) / np.max(np.abs(expected)))


@pytest.fixture(scope="module")
def twin_and_logits():
    """``twin_and_logits(name)``: ``_twin_and_logits(name)``, made once per model for this module's mutation tests,
    which only read it (each mutant is a clone given the torch weights)."""
    cache = {}

    def make(name: str):
        if name not in cache:
            cache[name] = _twin_and_logits(name)
        return cache[name]

    yield make
    cache.clear()


def _mutated(twin_and_logits, name: str, change):
    """The model's Keras twin rebuilt with ``change(layer, config)`` applied to every layer's config, holding the
    torch weights; with the unmutated twin's logit error and the mutant's."""
    import keras

    from zoo.keras_common import zero_initial_weights
    from zoo.transfer import torch_to_keras

    spec, torch_model, layers, keras_model, images, expected = twin_and_logits(name)

    def clone(layer):
        config = layer.get_config()
        return layer.__class__.from_config(change(layer, config) or config)

    with zero_initial_weights():
        mutant = keras.models.clone_model(keras_model, clone_function=clone)
    torch_to_keras(spec, torch_model, mutant, layers)  # the same weights fit: every kernel keeps its shape
    return _logit_error(keras_model, images, expected), _logit_error(mutant, images, expected), mutant


@pytest.mark.torch
@pytest.mark.tf
def test_resnet50_with_the_stride_on_the_1x1_convolution_v1_is_another_network(twin_and_logits):
    def stride_on_conv1(layer, config):
        # The first block of stages 2-4 downsamples: v1.5 strides conv2 (3x3), v1 strides conv1 (1x1).
        if layer.name in {f"layer{stage}.0.conv1" for stage in (2, 3, 4)}:
            config["strides"] = (2, 2)
        if layer.name in {f"layer{stage}.0.conv2" for stage in (2, 3, 4)}:
            config["strides"] = (1, 1)
        return config

    twin, v1, mutant = _mutated(twin_and_logits, "resnet50", stride_on_conv1)
    assert mutant.get_layer("layer2.0.conv1").strides == (2, 2)
    assert twin <= FP32_LOGITS_RTOL < 100 * FP32_LOGITS_RTOL < v1


@pytest.mark.torch
@pytest.mark.tf
def test_tensorflow_same_padding_on_a_strided_convolution_is_another_network(twin_and_logits):
    """ResNet's 7x7/2 stem: "same" pads 2 rows above and 3 below where torch pads 3 and 3; the output size is the
    same (112), every window is shifted."""

    def same_padding(layer, config):
        if layer.name == "conv1_pad":
            config["padding"] = ((0, 0), (0, 0))
        if layer.name == "conv1":
            config["padding"] = "same"
        return config

    twin, same, mutant = _mutated(twin_and_logits, "resnet18", same_padding)
    assert mutant.get_layer("conv1_pad").padding == ((0, 0), (0, 0))
    assert mutant.get_layer("conv1").output.shape == (None, 112, 112, 64)
    assert twin <= FP32_LOGITS_RTOL < 100 * FP32_LOGITS_RTOL < same


@pytest.mark.torch
@pytest.mark.tf
def test_googlenet_with_floor_mode_pooling_is_another_network(twin_and_logits):
    """Without the ceil mode's partial last window the stage pools give 55, 27, 13, 6 instead of 56, 28, 14, 7.

    maxpool4 (2x2/2) has no padding to remove: on 14 rows both modes give 7; on the 13 that floor-mode maxpool3
    leaves it gives 6, where torch's ceil mode would keep a seventh, partial window."""

    def floor_mode(layer, config):
        if layer.name in {f"maxpool{index}_pad" for index in (1, 2, 3)}:
            config["padding"] = ((0, 0), (0, 0))
        return config

    twin, floor, mutant = _mutated(twin_and_logits, "googlenet", floor_mode)
    assert [mutant.get_layer(f"maxpool{index}").output.shape[1] for index in (1, 2, 3, 4)] == [55, 27, 13, 6]
    assert twin <= FP32_LOGITS_RTOL < 10 * FP32_LOGITS_RTOL < floor  # measured: 4.3e-3


@pytest.mark.torch
@pytest.mark.tf
def test_keras_default_batchnorm_epsilon_is_another_network(twin_and_logits):
    """ResNet's BatchNorm divides by sqrt(var + 1e-5); Keras' default 1e-3 changes all twenty of them."""
    from zoo.keras_common import TorchBatchNormalization

    def keras_epsilon(layer, config):
        if isinstance(layer, TorchBatchNormalization):
            config["epsilon"] = 1e-3
        return config

    twin, epsilon, _ = _mutated(twin_and_logits, "resnet18", keras_epsilon)
    assert twin <= FP32_LOGITS_RTOL < 10 * FP32_LOGITS_RTOL < epsilon


@pytest.mark.torch
@pytest.mark.tf
def test_batchnorm_moving_variance_is_torchs_unbiased_one_and_plain_keras_differs_by_exactly_that():
    """One training pass from the same statistics. torch updates the running variance with the unbiased batch
    variance; Keras' BatchNormalization with the biased one. The twin's layer matches torch to float64 rounding;
    plain Keras (with torch's epsilon and momentum mapped) differs by exactly momentum x variance / (n - 1)."""
    import keras
    import torch

    from zoo.keras_common import TorchBatchNormalization

    batch, channels, height, width = 2, 3, 5, 4
    n = batch * height * width
    activations = np.random.default_rng(4).normal(1.0, 2.0, size=(batch, channels, height, width))
    torch_bn = torch.nn.BatchNorm2d(channels, dtype=torch.float64).train()
    torch_outputs = torch_bn(torch.from_numpy(activations)).detach().numpy()
    nhwc = activations.transpose(0, 2, 3, 1)

    twin = TorchBatchNormalization.like_torch(name="bn", epsilon=1e-5, torch_momentum=0.1, dtype="float64")
    plain = keras.layers.BatchNormalization(epsilon=1e-5, momentum=0.9, dtype="float64")
    outputs = twin(nhwc, training=True).numpy()
    plain(nhwc, training=True)

    expected_variance = torch_bn.running_var.numpy()
    np.testing.assert_allclose(twin.moving_variance.numpy(), expected_variance, rtol=1e-14)
    np.testing.assert_allclose(twin.moving_mean.numpy(), torch_bn.running_mean.numpy(), rtol=1e-14)
    biased = activations.var(axis=(0, 2, 3))
    np.testing.assert_allclose(expected_variance - plain.moving_variance.numpy(), 0.1 * biased / (n - 1), rtol=1e-12)
    # Normalising, both use the biased variance: the outputs are torch's.
    np.testing.assert_allclose(outputs.transpose(0, 3, 1, 2), torch_outputs, rtol=1e-12, atol=1e-12)


@pytest.mark.tf
def test_twin_batchnorm_under_mixed_precision_keeps_float32_statistics_and_returns_the_compute_dtype():
    """Under the mixed_float16 policy the benchmark's TensorFlow step uses, the layer computes its statistics in
    float32 (as Keras' own BatchNormalization does), returns float16 and updates float32 moving statistics with the
    unbiased variance."""
    import keras

    from zoo.keras_common import TorchBatchNormalization

    activations = np.random.default_rng(5).normal(1.0, 2.0, size=(2, 4, 4, 3)).astype(np.float16)
    layer = TorchBatchNormalization.like_torch(name="bn", dtype=keras.DTypePolicy("mixed_float16"))
    outputs = layer(activations, training=True)
    n = 2 * 4 * 4
    unbiased = activations.astype(np.float64).var(axis=(0, 1, 2)) * n / (n - 1)
    assert outputs.dtype == "float16" and layer.moving_variance.dtype == "float32"
    np.testing.assert_allclose(layer.moving_variance.numpy(), 0.9 + 0.1 * unbiased, rtol=1e-3)
