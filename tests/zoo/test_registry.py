"""The registry: names, lookups, errors that name the known models, and lazy framework imports."""

import json
import subprocess
import sys

import pytest

import zoo
from zoo import LayerTableBuilder, ModelSpec, UnknownNameError

EXPECTED_MODELS = ["alexnet", "alexnet-2012", "googlenet", "lenet", "resnet18", "resnet50", "vgg11", "vgg16"]


def test_list_models_is_sorted_and_complete():
    assert zoo.list_models() == EXPECTED_MODELS


def test_list_models_filters_with_wildcards():
    assert zoo.list_models("alexnet*") == ["alexnet", "alexnet-2012"]
    assert zoo.list_models("*net") == ["alexnet", "googlenet", "lenet"]
    assert zoo.list_models("vgg*") == ["vgg11", "vgg16"]
    assert zoo.list_models("inception*") == []


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
    with pytest.raises(UnknownNameError, match="inception"):
        zoo.resolve_models(["inception*"])


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
        zoo.register_model(spec, family="zoo.models.lenet")


def test_spec_is_frozen():
    spec = zoo.get_spec("lenet")
    with pytest.raises(AttributeError):
        spec.num_classes = 5  # type: ignore[misc]


# Reports the frameworks imported, then ends without the interpreter's teardown (a second after torch or TensorFlow).
_REPORT = """
import json, os, sys
print(json.dumps({m: m in sys.modules for m in ("torch", "tensorflow")}), flush=True)
os._exit(0)
"""


def _modules_after(code: str) -> dict:
    completed = subprocess.run([sys.executable, "-c", code + _REPORT], capture_output=True, text=True, check=True)
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


def test_register_model_needs_a_builder_for_every_framework():
    spec = ModelSpec("probe", "probe", "-", (1, 4, 4), 2, 0, 0, LayerTableBuilder((1, 4, 4)).build())
    with pytest.raises(ValueError, match="one builder per framework"):
        zoo.register_model(spec, torch="pkg.torch_model:probe")
    assert "probe" not in zoo.list_models()


def test_a_family_names_its_builders_by_convention():
    """``family=`` names each framework's builder in the folder's ``torch_model`` / ``keras_model`` module, after
    the model (the definition tests build every model in both frameworks through these names)."""
    import zoo._registry as registry

    assert registry._REGISTRY["alexnet-2012"].builders == {
        "torch": "zoo.models.alexnet.torch_model:alexnet_2012", "tf": "zoo.models.alexnet.keras_model:alexnet_2012"}


def test_graph_builder_branches_adds_and_concatenates():
    table = (LayerTableBuilder((4, 6, 6)).conv("a", 8, 3, padding=1, bias=False).bn("a_bn")
             .conv("b", 8, 1, after=zoo.IMAGES).add("sum", ["a_bn", "b"])
             .maxpool("p", 3, 1, padding=1, ceil_mode=True, after="a").concat("cat", ["sum", "p"]).build())
    by_name = {layer.name: layer for layer in table}
    assert by_name["a"].params == 8 * 4 * 9 and by_name["a_bn"].params == 16 and by_name["a_bn"].statistics == 16
    assert by_name["b"].inputs == (zoo.IMAGES,) and by_name["sum"].inputs == ("a_bn", "b")
    assert by_name["cat"].output_shape == (16, 6, 6)
    with pytest.raises(ValueError, match="one shape"):
        LayerTableBuilder((4, 6, 6)).conv("a", 8, 1).conv("b", 4, 1, after=zoo.IMAGES).add("sum", ["a", "b"])
    with pytest.raises(ValueError, match="unknown input"):
        LayerTableBuilder((4, 6, 6)).relu("r", after="nowhere")


@pytest.mark.torch
@pytest.mark.parametrize(("size", "kernel", "stride", "padding", "ceil", "expected"), [
    (112, 3, 2, 0, False, 55), (112, 3, 2, 0, True, 56), (14, 2, 2, 0, True, 7), (13, 2, 2, 0, True, 7),
    (28, 3, 1, 1, True, 28), (5, 2, 2, 1, True, 3),  # a last window starting in the right padding is dropped
])
def test_pool_output_sizes_are_torchs(size, kernel, stride, padding, ceil, expected):
    import torch

    from zoo._spec import pool_out

    assert pool_out(size, kernel, stride, padding, ceil) == expected
    pool = torch.nn.MaxPool2d(kernel, stride, padding, ceil_mode=ceil)
    assert pool(torch.zeros(1, 1, size, size)).shape[-1] == expected


def test_published_figures():
    assert (zoo.get_spec("lenet").expected_params, zoo.get_spec("lenet").expected_macs) == (61_706, 416_520)
    assert (zoo.get_spec("alexnet").expected_params, zoo.get_spec("alexnet").expected_macs) == (
        61_100_840,
        714_188_480,
    )
    assert zoo.get_spec("alexnet-2012").expected_params == 60_965_224
    assert zoo.get_spec("alexnet-2012").layer("conv1").output_shape == (96, 55, 55)
    canon = {name: (zoo.get_spec(name).expected_params, zoo.get_spec(name).expected_macs)
             for name in ("vgg11", "vgg16", "googlenet", "resnet18", "resnet50")}
    assert canon == {
        "vgg11": (132_863_336, 7_609_090_048), "vgg16": (138_357_544, 15_470_264_320),
        "googlenet": (6_624_904, 1_498_376_192), "resnet18": (11_689_512, 1_814_073_344),
        "resnet50": (25_557_032, 4_089_184_256),
    }
    assert zoo.get_spec("resnet50").statistics == 53_120 and zoo.get_spec("vgg16").statistics == 0
