"""The registry: names, lookups, errors that name the known models, and lazy framework imports."""

import json
import subprocess
import sys

import pytest

import zoo
from zoo import LayerTableBuilder, ModelSpec, UnknownNameError

EXPECTED_MODELS = ["alexnet", "alexnet-2012", "lenet"]


def test_list_models_is_sorted_and_complete():
    assert zoo.list_models() == EXPECTED_MODELS


def test_list_models_filters_with_wildcards():
    assert zoo.list_models("alexnet*") == ["alexnet", "alexnet-2012"]
    assert zoo.list_models("*net") == ["alexnet", "lenet"]
    assert zoo.list_models("vgg*") == []


@pytest.mark.parametrize(
    ("patterns", "expected"),
    [
        (["all"], EXPECTED_MODELS),
        (["lenet", "alexnet"], ["lenet", "alexnet"]),
        (["alexnet*", "alexnet"], ["alexnet", "alexnet-2012"]),
    ],
)
def test_resolve_models(patterns, expected):
    assert zoo.resolve_models(patterns) == expected


def test_unknown_model_names_known_ones_and_closest_match():
    with pytest.raises(UnknownNameError) as caught:
        zoo.get_spec("alexnt")
    message = str(caught.value)
    assert "alexnt" in message
    assert all(name in message for name in EXPECTED_MODELS)
    assert caught.value.suggestion == "alexnet"
    assert isinstance(caught.value, ValueError)


def test_wildcard_matching_nothing_is_an_error():
    with pytest.raises(UnknownNameError, match="vgg"):
        zoo.resolve_models(["vgg*"])


@pytest.mark.parametrize(
    ("spelling", "canonical"),
    [("torch", "torch"), ("pytorch", "torch"), ("PyTorch", "torch"), ("tf", "tf"), ("tensorflow", "tf")],
)
def test_framework_spellings(spelling, canonical):
    assert zoo.resolve_framework(spelling) == canonical


def test_unknown_framework_suggests_closest():
    with pytest.raises(UnknownNameError) as caught:
        zoo.build("lenet", "tensorflw")
    assert caught.value.suggestion == "tensorflow"
    assert "torch" in str(caught.value)


def test_duplicate_registration_is_refused():
    spec = zoo.get_spec("lenet")
    with pytest.raises(ValueError, match="already registered"):
        zoo.register_model(spec, torch="zoo.torch_models:lenet", tf="zoo.tf_models:lenet")


def test_spec_is_frozen():
    spec = zoo.get_spec("lenet")
    with pytest.raises(AttributeError):
        spec.num_classes = 5  # type: ignore[misc]


def _modules_after(code: str) -> dict:
    probe = code + "\nimport json, sys\nprint(json.dumps({m: m in sys.modules for m in ('torch', 'tensorflow')}))"
    completed = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    return json.loads(completed.stdout.strip().splitlines()[-1])


def test_importing_zoo_and_listing_imports_no_framework():
    loaded = _modules_after("import zoo\nzoo.list_models()\nzoo.get_spec('alexnet').layers")
    assert loaded == {"torch": False, "tensorflow": False}


@pytest.mark.torch
def test_building_torch_model_never_imports_tensorflow():
    loaded = _modules_after("import zoo\nzoo.build('lenet', 'torch')")
    assert loaded == {"torch": True, "tensorflow": False}


@pytest.mark.tf
def test_building_tf_model_never_imports_torch():
    loaded = _modules_after("import zoo\nzoo.build('lenet', 'tf')")
    assert loaded == {"torch": False, "tensorflow": True}


def test_layer_table_builder_hand_computed():
    # 3x8x8 -> conv 4@3x3 pad 1 -> 4x8x8: 4*3*9 + 4 = 112 params, 8*8*4*27 = 6912 MACs
    layers = LayerTableBuilder((3, 8, 8)).conv("c", 4, 3, padding=1).maxpool("p", 2, 2).flatten("f").dense("d", 5)
    table = layers.build()
    assert [(layer.name, layer.output_shape, layer.params, layer.macs) for layer in table] == [
        ("c", (4, 8, 8), 112, 6912),
        ("p", (4, 4, 4), 0, 0),
        ("f", (64,), 0, 0),
        ("d", (5,), 64 * 5 + 5, 64 * 5),
    ]


def test_layer_table_builder_grouped_conv_and_bad_groups():
    table = LayerTableBuilder((4, 5, 5)).conv("g", 6, 3, groups=2).build()
    assert table[0].params == 6 * 2 * 9 + 6  # each output sees 4/2 input channels
    with pytest.raises(ValueError, match="groups"):
        LayerTableBuilder((3, 5, 5)).conv("g", 6, 3, groups=2)


def test_layer_table_rejects_duplicate_names():
    with pytest.raises(ValueError, match="duplicate"):
        LayerTableBuilder((1, 4, 4)).relu("a").relu("a")


@pytest.mark.parametrize("name", EXPECTED_MODELS)
def test_layer_table_adds_up_to_published_figures(name):
    spec: ModelSpec = zoo.get_spec(name)
    assert spec.params == spec.expected_params
    assert spec.macs == spec.expected_macs
    assert spec.layers[-1].output_shape == (spec.num_classes,)


def test_published_figures():
    assert (zoo.get_spec("lenet").expected_params, zoo.get_spec("lenet").expected_macs) == (61_706, 416_520)
    assert (zoo.get_spec("alexnet").expected_params, zoo.get_spec("alexnet").expected_macs) == (
        61_100_840,
        714_188_480,
    )
    assert zoo.get_spec("alexnet-2012").expected_params == 60_965_224
    assert zoo.get_spec("alexnet-2012").layer("conv1").output_shape == (96, 55, 55)
