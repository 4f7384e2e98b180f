"""Both framework definitions of every model match the spec's layer table, layer by layer."""

import pytest

import zoo

MODELS = zoo.list_models()


@pytest.fixture(scope="module")
def built():
    """``built(name, framework)``: each model built once for this module's checks, which only read it."""
    cache = {}

    def build(name: str, framework: str):
        if (name, framework) not in cache:
            cache[(name, framework)] = _build(name, framework)
        return cache[(name, framework)]

    yield build
    cache.clear()


def _build(name: str, framework: str):
    """The checks read the structure, never the weights: torch models live on the meta device (shapes without
    values, so tracing and counting the forward pass cost nothing), Keras models start from zeros."""
    if framework == "torch":
        import torch

        with torch.device("meta"):
            return zoo.build(name, framework)
    from zoo.keras_common import zero_initial_weights

    with zero_initial_weights():
        return zoo.build(name, framework)


def _chw(keras_shape: tuple) -> tuple:
    """Keras (None, H, W, C) or (None, F) as the spec's channels-first per-image shape."""
    per_image = tuple(keras_shape[1:])
    return (per_image[-1], *per_image[:-1]) if len(per_image) == 3 else per_image


def _spec_graph(spec):
    """The spec's layers as (kind, shape, params, positions of the layers read; -1 the images)."""
    position = {layer.name: index for index, layer in enumerate(spec.layers)} | {zoo.IMAGES: -1}
    return [(layer.kind, layer.output_shape, layer.params, tuple(position[name] for name in layer.inputs))
            for layer in spec.layers]


@pytest.mark.torch
@pytest.mark.parametrize("name", MODELS)
def test_torch_graph_matches_spec(name, built):
    """Layer by layer in the order forward runs them: kind, output shape, parameters and which layers it reads."""
    from zoo.torch_common import statistics, traced_layers, trainable_params

    spec = zoo.get_spec(name)
    model = built(name, "torch")
    traced = traced_layers(model, spec.input_shape)
    position = {layer.path: index for index, layer in enumerate(traced)} | {zoo.IMAGES: -1}
    got = [(layer.kind, layer.output_shape, layer.params, tuple(position[path] for path in layer.inputs))
           for layer in traced]
    assert got == _spec_graph(spec)
    assert trainable_params(model) == spec.expected_params
    assert statistics(model) == spec.statistics


@pytest.mark.tf
@pytest.mark.parametrize("name", MODELS)
def test_tf_graph_matches_spec(name, built):
    """Every spec layer by name: kind, output shape, trainable parameters, kept statistics, the layers it reads."""
    from zoo.keras_common import input_names, kind_of, spec_layers, statistics, trainable_params

    spec = zoo.get_spec(name)
    model = built(name, "tf")
    got = {layer.name: (kind_of(layer), _chw(layer.output.shape), trainable_params(layer), statistics(layer),
                        input_names(layer)) for layer in spec_layers(model)}
    want = {layer.name: (layer.kind, layer.output_shape, layer.params, layer.statistics, layer.inputs)
            for layer in spec.layers}
    assert got == want
    assert trainable_params(model) == spec.expected_params
    assert statistics(model) == spec.statistics


@pytest.mark.tf
@pytest.mark.parametrize("name", MODELS)
def test_tf_paddings_belong_to_the_next_layer_and_pools_pad_only_non_negative_inputs(name, built):
    """Each ZeroPadding2D is ``<layer>_pad`` and feeds that layer alone. A padded max-pool reads only values >= 0
    (a ReLU, or pools and concatenations of ReLUs): zeros then never win a window, as torch's -inf never does."""
    import keras

    def non_negative(layer):
        if layer.kind in ("maxpool", "concat"):
            return all(non_negative(spec.layer(source)) for source in layer.inputs)
        return layer.kind == "relu"

    spec = zoo.get_spec(name)
    model = built(name, "tf")
    for layer in model.layers:
        if not isinstance(layer, keras.layers.ZeroPadding2D):
            continue
        (consumer,) = [node.operation for node in layer._outbound_nodes]
        assert layer.name == consumer.name + "_pad"
        if isinstance(consumer, keras.layers.MaxPooling2D):
            assert non_negative(spec.input_of(consumer.name)), consumer.name


@pytest.mark.torch
@pytest.mark.parametrize("name", MODELS)
def test_torch_macs_by_flop_counter(name, built):
    from zoo.torch_common import count_macs

    spec = zoo.get_spec(name)
    assert count_macs(built(name, "torch"), spec.input_shape) == spec.expected_macs


@pytest.mark.tf
@pytest.mark.parametrize("name", MODELS)
def test_tf_macs_from_layer_geometry(name, built):
    from zoo.keras_common import count_macs

    assert count_macs(built(name, "tf")) == zoo.get_spec(name).expected_macs


@pytest.mark.tf
def test_tf_logits_have_no_activation(built):
    import keras

    for name in MODELS:
        last = built(name, "tf").layers[-1]
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


@pytest.mark.tf
def test_keras_model_round_trips_through_saving(tmp_path, built):
    import keras

    model = built("alexnet-2012", "tf")
    path = tmp_path / "alexnet_2012.keras"
    model.save(path)
    restored = keras.saving.load_model(path)
    assert restored.get_layer("norm1").get_config()["alpha"] == pytest.approx(1e-4)
    assert restored.count_params() == model.count_params()
