"""Both framework definitions of every model match the spec's layer table, layer by layer."""

import numpy as np
import pytest

import zoo

MODELS = zoo.list_models()


def _chw(keras_shape: tuple) -> tuple:
    """Keras (None, H, W, C) or (None, F) as the spec's channels-first per-image shape."""
    per_image = tuple(keras_shape[1:])
    return (per_image[-1], *per_image[:-1]) if len(per_image) == 3 else per_image


@pytest.mark.torch
@pytest.mark.parametrize("name", MODELS)
def test_torch_layers_match_spec(name):
    from zoo.torch_models import kind_of, layers_in_order

    spec = zoo.get_spec(name)
    model = zoo.build(name, "torch")
    shapes = {}
    hooks = [
        module.register_forward_hook(lambda m, _i, out: shapes.__setitem__(m, tuple(out.shape[1:])))
        for _, module in model.named_modules()
    ]
    import torch

    with torch.no_grad():
        model(torch.zeros(1, *spec.input_shape))
    for hook in hooks:
        hook.remove()
    torch_layers = layers_in_order(model, spec.input_shape)
    got = [(kind_of(m), shapes[m], sum(p.numel() for p in m.parameters())) for _, m in torch_layers]
    want = [(layer.kind, layer.output_shape, layer.params) for layer in spec.layers]
    assert got == want
    assert sum(p.numel() for p in model.parameters()) == spec.expected_params


@pytest.mark.tf
@pytest.mark.parametrize("name", MODELS)
def test_tf_layers_match_spec(name):
    from zoo.tf_models import kind_of, spec_layers

    spec = zoo.get_spec(name)
    model = zoo.build(name, "tf")
    got = [(layer.name, kind_of(layer), _chw(layer.output.shape), layer.count_params()) for layer in spec_layers(model)]
    want = [(layer.name, layer.kind, layer.output_shape, layer.params) for layer in spec.layers]
    assert got == want
    assert model.count_params() == spec.expected_params


@pytest.mark.tf
def test_tf_padding_layers_belong_to_the_next_convolution():
    import keras

    model = zoo.build("alexnet", "tf")
    names = [layer.name for layer in model.layers]
    for index, layer in enumerate(model.layers):
        if isinstance(layer, keras.layers.ZeroPadding2D):
            assert layer.name == names[index + 1] + "_pad"


@pytest.mark.torch
@pytest.mark.parametrize("name", MODELS)
def test_torch_macs_by_flop_counter(name):
    from zoo.torch_models import count_macs

    spec = zoo.get_spec(name)
    assert count_macs(zoo.build(name, "torch"), spec.input_shape) == spec.expected_macs


@pytest.mark.tf
@pytest.mark.parametrize("name", MODELS)
def test_tf_macs_from_layer_geometry(name):
    from zoo.tf_models import count_macs

    assert count_macs(zoo.build(name, "tf")) == zoo.get_spec(name).expected_macs


@pytest.mark.tf
def test_tf_logits_have_no_activation():
    import keras

    for name in MODELS:
        last = zoo.build(name, "tf").layers[-1]
        assert isinstance(last, keras.layers.Dense)
        assert last.get_config()["activation"] == "linear"


@pytest.mark.torch
def test_torch_logits_can_be_negative():
    import torch

    torch.manual_seed(0)
    model = zoo.build("lenet", "torch").eval()
    with torch.no_grad():
        logits = model(torch.randn(4, 1, 32, 32))
    assert (logits < 0).any()  # a ReLU on the last layer (the seed's bug) would make every logit >= 0


@pytest.mark.torch
def test_build_options_reach_the_model():
    model = zoo.build("alexnet", "torch", num_classes=10)
    assert model.classifier[-1].out_features == 10
    with pytest.raises(TypeError):
        zoo.build("alexnet", "torch", bogus=1)


@pytest.mark.torch
def test_alexnet_accepts_torchvision_weights_and_gives_same_logits():
    import torch
    import torchvision

    torch.manual_seed(0)
    reference = torchvision.models.alexnet(weights=None).eval()
    ours = zoo.build("alexnet", "torch").eval()
    ours.load_state_dict(reference.state_dict())  # strict: same keys and shapes
    images = torch.randn(2, 3, 224, 224)
    with torch.no_grad():
        np.testing.assert_array_equal(ours(images).numpy(), reference(images).numpy())


@pytest.mark.tf
def test_keras_model_round_trips_through_saving(tmp_path):
    import keras

    model = zoo.build("alexnet-2012", "tf")
    path = tmp_path / "alexnet_2012.keras"
    model.save(path)
    restored = keras.saving.load_model(path)
    assert restored.get_layer("norm1").get_config()["alpha"] == pytest.approx(1e-4)
    assert restored.count_params() == model.count_params()
