"""``explain``: a layer made slow in one framework is found in both views, the ledger adds up, and every convolution
and dense layer of the zoo is attributed in each framework."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from bench import ledger as ld
from bench.ledger import ALONE, IN_MODEL, Explanation

PROJECT = Path(__file__).resolve().parents[2]

# Two convolutions and a dense layer; the torch twin's conv2 does its work sixteen times over and returns the same
# output (so the twins stay one network), as a slow kernel would.
PLANTED = {
    "__init__.py": '''
        from zoo import LayerTableBuilder, ModelSpec, register_model

        SPEC = (LayerTableBuilder((3, 32, 32)).conv("conv1", 16, 3, padding=1).relu("relu1")
                .conv("conv2", 16, 3, padding=1).relu("relu2").flatten("flatten").dense("fc", 4).build())
        PLANTNET = register_model(
            ModelSpec(name="plantnet", title="a slow conv2 in torch", reference="this test", input_shape=(3, 32, 32),
                      num_classes=4, expected_params=sum(layer.params for layer in SPEC),
                      expected_macs=sum(layer.macs for layer in SPEC), layers=SPEC),
            family=__name__,
        )
    ''',
    "torch_model.py": '''
        from torch import nn


        class SlowConv(nn.Conv2d):
            spec_kind = "conv"

            def forward(self, x):
                for _ in range(15):
                    super().forward(x)
                return super().forward(x)


        def plantnet():
            return nn.Sequential(nn.Conv2d(3, 16, 3, padding=1), nn.ReLU(), SlowConv(16, 16, 3, padding=1), nn.ReLU(),
                                 nn.Flatten(), nn.Linear(16 * 32 * 32, 4))
    ''',
    "keras_model.py": '''
        import keras
        from keras import layers

        from zoo.keras_common import conv2d, image_input


        def plantnet():
            inputs = image_input((3, 32, 32))
            x = layers.ReLU(name="relu1")(conv2d(inputs, 16, 3, padding=1, name="conv1"))
            x = layers.ReLU(name="relu2")(conv2d(x, 16, 3, padding=1, name="conv2"))
            outputs = layers.Dense(4, name="fc")(layers.Flatten(name="flatten")(x))
            return keras.Model(inputs, outputs, name="plantnet")
    ''',
}


@pytest.fixture(scope="module")
def planted_explanation(tmp_path_factory) -> tuple[Explanation, Path]:
    copy = tmp_path_factory.mktemp("project")
    for name in ("zoo", "bench", "reports"):
        shutil.copytree(PROJECT / name, copy / name, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy2(PROJECT / "cli.py", copy / "cli.py")
    folder = copy / "zoo" / "models" / "plantnet"
    folder.mkdir()
    for file_name, text in PLANTED.items():
        (folder / file_name).write_text(textwrap.dedent(text).lstrip())
    out = copy / "run"
    completed = subprocess.run(
        [sys.executable, "cli.py", "explain", "plantnet", "--frameworks", "torch,tf", "--modes", "forward-backward",
         "--batch-size", "8", "--warmup", "2", "--iters", "10", "--windows", "3", "--out", str(out), "--json"],
        cwd=copy, env={**os.environ, "PYTHONPATH": str(copy)}, capture_output=True, text=True, timeout=300)
    assert completed.returncode == 0, completed.stderr[-3000:]
    (document,) = json.loads(completed.stdout)["explanations"]
    assert json.loads((out / "explain.json").read_text())["explanations"] == [document]
    return Explanation.from_dict(document), out


@pytest.mark.torch
@pytest.mark.tf
@pytest.mark.slow
def test_the_planted_slow_layer_explains_most_of_the_difference_in_both_views(planted_explanation):
    entry, out = planted_explanation
    for view in (IN_MODEL, ALONE):
        # Where torch spends most beyond what tf spends on the same layer: conv2, done sixteen times over in torch.
        _, parts = entry.contributors("torch", "tf", view)
        assert max(parts, key=lambda part: part[1])[0] == "conv2", (view, parts)
    difference, parts = entry.contributors("torch", "tf", IN_MODEL)
    assert difference > 0 and parts[0][0] == "conv2", parts[:3]  # and in the model it is most of the difference
    assert (out / "explain.md").read_text().startswith("# Where the time goes")
    assert list(out.glob("explain-plantnet-*-ledger.png"))


@pytest.mark.torch
@pytest.mark.tf
@pytest.mark.slow
def test_the_ledger_adds_up_to_the_profiled_step_and_names_every_layer(planted_explanation):
    entry, _ = planted_explanation
    for framework in ("torch", "tf"):
        step = entry.step(framework)
        layers = sum(row.median_ms for row in entry.rows(framework, IN_MODEL))
        assert layers + step.unattributed_ms == pytest.approx(step.profiled_step_ms, rel=1e-12)
        assert step.in_model_layers_ms == pytest.approx(layers, rel=1e-12) and step.profiled_steps == 3
        names = {row.layer for row in entry.rows(framework, IN_MODEL)}
        assert names == {row.layer for row in entry.rows(framework, ALONE)} == {"conv1", "relu1", "conv2", "relu2",
                                                                                  "flatten", "fc"}
        for layer in ("conv1", "conv2", "fc"):
            assert entry.layer_totals(framework)[layer] > 0, (framework, layer)
        passes = {row.pass_ for row in entry.rows(framework, IN_MODEL)}
        assert passes == {ld.FORWARD, ld.BACKWARD}


def test_in_model_rows_take_medians_and_leave_the_rest_unattributed():
    windows = [{"conv": {"forward": 3.0, "backward": 5.0}}, {"conv": {"forward": 1.0}},
               {"conv": {"forward": 2.0, "backward": 4.0}}]
    rows, profiled, unattributed = ld.in_model_rows("torch", {"conv": "conv", "relu": "relu"}, windows,
                                                    [10.0, 12.0, 11.0], {"relu": "not marked"})
    by_key = {(row.layer, row.pass_): row for row in rows}
    assert profiled == 11.0
    assert by_key["conv", "forward"].median_ms == 2.0 and by_key["conv", "backward"].median_ms == 4.0
    assert by_key["relu", "forward"].median_ms == 0.0 and by_key["relu", "forward"].note == "not marked"
    assert unattributed == pytest.approx(11.0 - 6.0)


@pytest.mark.parametrize(("scope", "expected"), [
    ("conv1_1", ("conv1", False)), ("conv2_1", ("conv2_1", False)), ("conv2_1_1", ("conv2_1", False)),
    ("conv1_pad_1", ("conv1", True)), ("layer1.0.conv2_1", ("layer1.0.conv2", False)), ("SGD", (None, False)),
])
def test_a_profiler_scope_is_read_as_its_spec_layer(scope, expected):
    assert ld.layer_of_scope(scope, ["conv1", "conv2_1", "layer1.0.conv2"]) == expected


def test_contributors_add_up_to_the_difference():
    def rows(framework, times):
        return [ld.LayerTime(layer, "conv", framework, ld.FORWARD, IN_MODEL, ms) for layer, ms in times.items()]

    steps = [ld.StepLedger("a", 10.0, 12.0, 9.0, 3.0, None, "p", 3), ld.StepLedger("b", 6.0, 7.0, 6.0, 1.0, None,
                                                                                    "p", 3)]
    entry = Explanation("m", "forward", "cpu", 1, "fp32", steps,
                        rows("a", {"x": 6.0, "y": 3.0}) + rows("b", {"x": 2.0, "y": 4.0}))
    difference, parts = entry.contributors("a", "b")
    assert difference == pytest.approx(12.0 - 7.0)
    assert parts == [("x", 4.0), ("unattributed", 2.0), ("y", -1.0)]


@pytest.mark.torch
@pytest.mark.tf
@pytest.mark.slow
def test_every_convolution_and_dense_layer_of_the_zoo_is_attributed_in_each_framework(tmp_path):
    """The models that between them hold every kind of layer of the zoo (tests/benchmarks/test_steps.py's quick
    set), and VGG-11, whose layer names (conv2_1) look like the copies a traced function makes of a scope."""
    import zoo

    models = ["alexnet-2012", "googlenet", "resnet18", "vgg11"]
    completed = subprocess.run(
        [sys.executable, "cli.py", "explain", ",".join(models), "--batch-size", "1", "--views", "in-model",
         "--windows", "1", "--warmup", "1", "--iters", "2", "--out", str(tmp_path), "--json"],
        cwd=PROJECT, capture_output=True, text=True, timeout=600)
    assert completed.returncode == 0, completed.stderr[-3000:]
    explanations = [Explanation.from_dict(entry) for entry in json.loads(completed.stdout)["explanations"]]
    assert [entry.model for entry in explanations] == models
    for entry in explanations:
        weighted = [layer.name for layer in zoo.get_spec(entry.model).layers if layer.kind in ("conv", "dense")]
        for framework in ("torch", "tf"):
            totals = entry.layer_totals(framework)
            assert [name for name in weighted if not totals.get(name)] == [], (entry.model, framework)
            step = entry.step(framework)
            assert step.in_model_layers_ms + step.unattributed_ms == pytest.approx(step.profiled_step_ms)
