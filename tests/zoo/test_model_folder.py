"""A model is one folder: one added under ``zoo/models/`` of a copy of the project, and nothing else edited, is
listed, verified and benchmarked, in every installed engine."""

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import zoo
from bench.engines import ENGINES, installed_engines

PROJECT = Path(__file__).resolve().parents[2]

FOLDER = {
    "__init__.py": '''
        from zoo import LayerTableBuilder, ModelSpec, register_model

        TINYNET = register_model(
            ModelSpec(
                name="tinynet", title="a convolution, BatchNorm and a dense layer", reference="this test",
                input_shape=(3, 8, 8), num_classes=4, expected_params=108 + 8 + 260, expected_macs=1_728 + 256,
                layers=(LayerTableBuilder((3, 8, 8)).conv("conv", 4, 3, stride=2, padding=1, bias=False)
                        .bn("bn").relu("relu").flatten("flatten").dense("fc", 4).build()),
            ),
            family=__name__,
        )
    ''',
    "torch_model.py": '''
        from torch import nn


        def tinynet():
            return nn.Sequential(nn.Conv2d(3, 4, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(4), nn.ReLU(),
                                 nn.Flatten(), nn.Linear(64, 4))
    ''',
    "keras_model.py": '''
        import keras
        from keras import layers

        from zoo.keras_common import TorchBatchNormalization, conv2d, image_input


        def tinynet():
            inputs = image_input((3, 8, 8))
            x = conv2d(inputs, 4, 3, stride=2, padding=1, use_bias=False, name="conv")
            x = layers.ReLU(name="relu")(TorchBatchNormalization.like_torch(name="bn")(x))
            outputs = layers.Dense(4, name="fc")(layers.Flatten(name="flatten")(x))
            return keras.Model(inputs, outputs, name="tinynet")
    ''',
}


@pytest.fixture(scope="module")
def project_with_tinynet(tmp_path_factory) -> Path:
    copy = tmp_path_factory.mktemp("project")
    for name in ("zoo", "bench", "reports"):
        shutil.copytree(PROJECT / name, copy / name, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy2(PROJECT / "cli.py", copy / "cli.py")
    folder = copy / "zoo" / "models" / "tinynet"
    folder.mkdir()
    for file_name, text in FOLDER.items():
        (folder / file_name).write_text(textwrap.dedent(text).lstrip())
    return copy


def _cli(project: Path, *args: str) -> subprocess.CompletedProcess:
    # The copy comes first on the path, for the CLI and the workers it starts, ahead of the installed project.
    env = {**os.environ, "PYTHONPATH": str(project), "TF_CPP_MIN_LOG_LEVEL": "3"}
    return subprocess.run([sys.executable, "cli.py", *args], cwd=project, env=env, capture_output=True, text=True,
                          errors="replace", timeout=300)


def test_a_new_folder_is_listed(project_with_tinynet):
    completed = _cli(project_with_tinynet, "list", "--json")
    assert completed.returncode == 0, completed.stderr
    models = {row["name"]: row for row in json.loads(completed.stdout)["models"]}
    assert models["tinynet"]["params"] == 376 and models["tinynet"]["statistics"] == 8
    assert len(models) == len(zoo.list_models()) + 1  # the project's and the new one


@pytest.mark.torch
@pytest.mark.tf
def test_a_new_folder_is_verified(project_with_tinynet):
    completed = _cli(project_with_tinynet, "verify", "tinynet", "--json")
    assert completed.returncode == 0, completed.stderr
    document = json.loads(completed.stdout)  # nothing but the document on stdout
    (report,) = document["models"]
    assert document["passed"] and report["passed"] and report["counts_ok"]
    counts = {"params": 376, "statistics": 8, "macs": 1_984}
    assert report["expected"] == report["frameworks"]["torch"] == report["frameworks"]["tf"] == counts
    parities = {parity["other"]: parity for parity in report["parity"]}
    proven = [name for name in installed_engines() if name != "torch"]
    assert sorted(parities) == sorted(proven) and all(parity["reference"] == "torch" for parity in parities.values())
    for parity in parities.values():
        assert parity["passed"] and parity["fp32_logits_rel_diff"] <= 1e-4
    for other in {"tf", "jax"} & set(parities):  # the Keras twin, under each Keras backend
        parity = parities[other]
        assert parity["batch_size"] == 2  # BatchNorm: two images, so that batch statistics are batch statistics
        assert parity["grads_rel_diff"] <= 1e-10
        assert parity["statistics_rel_diff"] <= 1e-10  # its BatchNorm statistics were compared
    if "jax" in parities:
        assert report["frameworks"]["jax"] == counts


@pytest.mark.torch
@pytest.mark.tf
def test_a_new_folder_is_benchmarked_in_every_installed_engine(project_with_tinynet, tmp_path):
    completed = _cli(project_with_tinynet, "bench", "tinynet", "--frameworks", "all", "--modes", "forward,train",
                     "--batch-size", "2", "--iters", "5", "--warmup", "1", "--no-peak", "--out", str(tmp_path / "run"),
                     "--json")
    assert completed.returncode == 0, completed.stderr
    results = json.loads(completed.stdout)["results"]
    expected = {(engine, mode): "ok" if mode in ENGINES[engine].modes else "skipped"
                for engine in installed_engines() for mode in ("forward", "train")}
    assert {(r["framework"], r["mode"]): r["status"] for r in results if r["model"] == "tinynet"} == expected
    for result in results:
        if result["status"] == "skipped":  # an inference runtime asked to train, refused in one line
            assert result["reason"] == (f"{result['framework']}: runs the modes forward, not train "
                                        "(an inference runtime: no gradients)")
        else:
            assert len(result["samples_ms"]) == 5 and result["first_step_ms"] > 0
