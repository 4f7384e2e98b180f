"""Numerical parity of the torch and TensorFlow definitions with transferred weights, and that the check can fail."""

import numpy as np
import pytest

import zoo
from zoo.parity import FP32_LOGITS_RTOL, GRADS_RTOL, LOGITS_RTOL

pytestmark = [pytest.mark.torch, pytest.mark.tf]


@pytest.mark.parametrize("name", zoo.list_models())
def test_logits_and_gradients_agree(name):
    from zoo.parity import check_parity

    result = check_parity(name)
    # Two images where BatchNorm mixes a batch's images in training mode; one where every layer treats each image
    # alone (a second would double the float64 passes, the cost of the proof, and prove nothing more).
    assert result.batch_size == (2 if "bn" in zoo.get_spec(name).kinds else 1)
    assert result.fp32_logits_rel_diff <= FP32_LOGITS_RTOL == 1e-4
    assert result.logits_rel_diff <= LOGITS_RTOL and result.grads_rel_diff <= GRADS_RTOL
    assert result.logits_max_abs > 0  # the comparison is not between two all-zero outputs
    assert result.passed


@pytest.fixture(scope="module")
def alexnet_2012():
    """A torch alexnet-2012 (eval mode) and its Keras twin, built once for this module's tests: one reads only the
    Keras model's structure, the other transfers the weights before reading its outputs."""
    from zoo.parity import load_frameworks

    load_frameworks()
    import torch

    torch.manual_seed(1)
    return zoo.build("alexnet-2012", "torch").eval(), zoo.build("alexnet-2012", "tf")


def _rel(expected, got):
    return float(np.max(np.abs(expected - got)) / np.max(np.abs(expected)))


def test_flatten_order_matters(alexnet_2012, monkeypatch):
    """Transferring fc6 without the NCHW -> NHWC column reorder must break parity (the check can fail)."""
    import torch

    from zoo import transfer

    torch_model, keras_model = alexnet_2012
    spec = zoo.get_spec("alexnet-2012")
    images = np.random.default_rng(1).standard_normal((2, *spec.input_shape), dtype=np.float32)
    with torch.no_grad():
        expected = torch_model(torch.from_numpy(images)).numpy()
    monkeypatch.setattr(transfer, "_flattened_from", lambda spec, name: None)
    transfer.torch_to_keras(spec, torch_model, keras_model)
    got = keras_model(images.transpose(0, 2, 3, 1), training=False).numpy()
    assert _rel(expected, got) > 100 * FP32_LOGITS_RTOL


def test_lrn_matches_torch_and_alpha_convention_matters():
    """Keras LRN equals torch's at amplitudes where the constants matter; TF's undivided alpha would not."""
    import tensorflow as tf
    import torch

    from zoo.models.alexnet import LRN_ALPHA, LRN_BETA, LRN_K, LRN_SIZE
    from zoo.models.alexnet.keras_model import LocalResponseNormalization

    activations = np.random.default_rng(2).uniform(0, 60, size=(2, 16, 7, 7)).astype(np.float32)
    expected = torch.nn.LocalResponseNorm(LRN_SIZE, LRN_ALPHA, LRN_BETA, LRN_K)(torch.from_numpy(activations)).numpy()
    nhwc = activations.transpose(0, 2, 3, 1)
    ours = LocalResponseNormalization(LRN_SIZE, LRN_ALPHA, LRN_BETA, LRN_K)(nhwc).numpy().transpose(0, 3, 1, 2)
    assert _rel(expected, ours) < 1e-5
    undivided = tf.nn.local_response_normalization(
        nhwc, depth_radius=LRN_SIZE // 2, bias=LRN_K, alpha=LRN_ALPHA, beta=LRN_BETA
    ).numpy().transpose(0, 3, 1, 2)
    assert _rel(expected, undivided) > 1e-2


def test_lrn_written_out_for_float64_is_the_same_formula():
    """The parity proof runs the float64 path of the Keras LRN (TensorFlow's kernel has no float64); it must be
    torch's LRN to float64 precision, and the fused float32 kernel must be it to float32 precision."""
    import torch

    from zoo.models.alexnet import LRN_ALPHA, LRN_BETA, LRN_K, LRN_SIZE
    from zoo.models.alexnet.keras_model import LocalResponseNormalization

    activations = np.random.default_rng(3).uniform(0, 60, size=(2, 16, 7, 7))
    expected = torch.nn.LocalResponseNorm(LRN_SIZE, LRN_ALPHA, LRN_BETA, LRN_K)(torch.from_numpy(activations)).numpy()
    layer = LocalResponseNormalization(LRN_SIZE, LRN_ALPHA, LRN_BETA, LRN_K, dtype="float64")
    written_out = layer(activations.transpose(0, 2, 3, 1)).numpy().transpose(0, 3, 1, 2)
    assert _rel(expected, written_out) < 1e-13
    fused = LocalResponseNormalization(LRN_SIZE, LRN_ALPHA, LRN_BETA, LRN_K)(
        activations.astype(np.float32).transpose(0, 2, 3, 1)).numpy().transpose(0, 3, 1, 2)
    assert _rel(written_out, fused) < 1e-6


def test_ungrouped_twin_is_refused(alexnet_2012):
    """A Keras 2012 net whose conv2 lost its two groups cannot take the torch weights: transfer says which layer."""
    import keras

    from zoo.transfer import torch_to_keras

    spec = zoo.get_spec("alexnet-2012")
    torch_model, keras_model = alexnet_2012

    def ungroup_conv2(layer):
        config = layer.get_config()
        if layer.name == "conv2":
            config["groups"] = 1
        return layer.__class__.from_config(config)

    ungrouped = keras.models.clone_model(keras_model, clone_function=ungroup_conv2)
    assert keras_model.get_layer("conv2").kernel.shape == (5, 5, 48, 256)
    with pytest.raises(ValueError, match=r"conv2.*\(5, 5, 96, 256\)"):
        torch_to_keras(spec, torch_model, ungrouped)


def test_nan_gradient_fails_parity(monkeypatch):
    from zoo import parity, transfer

    real = transfer.torch_tensor

    def nan_gradient_for_fc3_bias(module, kind, keras_name, *, gradient=False):
        tensor = real(module, kind, keras_name, gradient=gradient)
        if gradient and keras_name == "bias" and tensor.shape == (10,):
            return torch.full_like(tensor, float("nan"))
        return tensor

    import torch

    monkeypatch.setattr(transfer, "torch_tensor", nan_gradient_for_fc3_bias)
    result = parity.check_parity("lenet")
    assert result.logits_ok and not result.grads_ok and not result.passed
