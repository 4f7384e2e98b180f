"""The Keras twins under Keras 3's JAX backend (the jax engine): built without TensorFlow, and proven the same network
as the torch twins by zoo.parity's proof.

Keras chooses its backend once, when it is first imported, and this process's Keras runs on TensorFlow; each check
runs in a process of its own that sets ``KERAS_BACKEND=jax`` first.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import zoo
from zoo.parity import FP32_LOGITS_RTOL, GRADS_RTOL, LOGITS_RTOL, STATISTICS_RTOL

pytestmark = [pytest.mark.torch, pytest.mark.jax]

REPO = Path(__file__).resolve().parents[2]

# Every model built (from zeros: only their structure and counts are read), a forward pass of alexnet-2012 with
# random weights (drawn by numpy: Keras' initialisers under JAX took seconds for its 61 million), and its LRN layer
# against the formula in float32 and float64; then which frameworks were loaded.
BUILD_AND_RUN = r"""
import json, sys

import jax

jax.config.update("jax_enable_x64", True)  # for the float64 LRN; before any JAX array exists
import keras
import numpy as np

import zoo
from zoo.keras_common import model_counts, zero_initial_weights
from zoo.models.alexnet import LRN_ALPHA, LRN_BETA, LRN_K, LRN_SIZE
from zoo.models.alexnet.keras_model import LocalResponseNormalization

counts, models = {}, {}
with zero_initial_weights():
    for name in zoo.list_models():
        models[name] = zoo.build(name, "tf")
        counts[name] = model_counts(models[name], zoo.get_spec(name))
rng = np.random.default_rng(0)
model = models["alexnet-2012"]
for variable in model.weights:
    variable.assign(rng.uniform(-0.05, 0.05, size=variable.shape).astype(np.float32))
channels, height, width = zoo.get_spec("alexnet-2012").input_shape
logits = np.asarray(model(rng.standard_normal((2, height, width, channels), dtype=np.float32), training=False))

activations = np.random.default_rng(1).uniform(0, 60, size=(2, 7, 7, 16))
half = LRN_SIZE // 2
squares = np.pad(activations ** 2, [(0, 0), (0, 0), (0, 0), (half, half)])
window = sum(squares[..., offset:offset + 16] for offset in range(LRN_SIZE))
expected = activations / (LRN_K + LRN_ALPHA / LRN_SIZE * window) ** LRN_BETA
lrn = {}
for dtype in ("float32", "float64"):
    layer = LocalResponseNormalization(LRN_SIZE, LRN_ALPHA, LRN_BETA, LRN_K, dtype=dtype)
    got = np.asarray(layer(activations.astype(dtype)))
    lrn[dtype] = {"dtype": str(got.dtype), "rel": float(np.max(np.abs(got - expected)) / np.max(np.abs(expected)))}
print(json.dumps({"backend": keras.backend.backend(), "counts": counts, "logits_shape": list(logits.shape),
                  "logits_finite": bool(np.isfinite(logits).all()), "logits_max_abs": float(np.abs(logits).max()),
                  "lrn": lrn, "tensorflow": "tensorflow" in sys.modules}))
"""

# The jax engine's proof of one model, as bench calls it.
PROVE = r"""
import json, sys

import jax

jax.config.update("jax_enable_x64", True)  # float64 proof; before any JAX array exists
from zoo.parity import prove_keras_twin

result, counts = prove_keras_twin(sys.argv[1], None, 0, "jax")
print(json.dumps({**result.to_dict(), "counts": counts, "tensorflow": "tensorflow" in sys.modules}))
"""


def _under_jax(code: str, *args: str) -> dict:
    """Run ``code`` with ``args`` in a process whose Keras runs on JAX; the JSON of its last line."""
    environment = {**os.environ, "KERAS_BACKEND": "jax"}
    completed = subprocess.run([sys.executable, "-c", code, *args], cwd=REPO, env=environment, capture_output=True,
                               text=True, timeout=600)
    assert completed.returncode == 0, completed.stderr[-3000:]
    return json.loads(completed.stdout.strip().splitlines()[-1])


def _expected_counts(name: str) -> dict:
    spec = zoo.get_spec(name)
    return {"params": spec.expected_params, "statistics": spec.statistics, "macs": spec.expected_macs}


def test_every_twin_builds_and_alexnet_2012_runs_without_tensorflow():
    report = _under_jax(BUILD_AND_RUN)
    assert report["backend"] == "jax"
    assert report["tensorflow"] is False
    assert report["counts"] == {name: _expected_counts(name) for name in zoo.list_models()}
    assert report["logits_shape"] == [2, 1000] and report["logits_finite"] and report["logits_max_abs"] > 0
    # The written-out LRN, the only one JAX has, computes in the precision asked, to its rounding.
    assert report["lrn"]["float32"]["dtype"] == "float32" and report["lrn"]["float32"]["rel"] < 1e-6
    assert report["lrn"]["float64"]["dtype"] == "float64" and report["lrn"]["float64"]["rel"] < 1e-14


# LeNet-5, and a network with BatchNorm, whose training pass updates the moving statistics that JAX returns rather
# than assigns; of those, ResNet-18 at batch 2 (two images, so that batch statistics are not one image's) costs least.
@pytest.mark.torch
@pytest.mark.parametrize("name", ["lenet", "resnet18"])
def test_jax_parity(name):
    proof = _under_jax(PROVE, name)
    assert proof["tensorflow"] is False
    assert proof["other"] == "jax" and proof["reference"] == "torch"
    assert proof["batch_size"] == (2 if "bn" in zoo.get_spec(name).kinds else 1)
    assert proof["logits_max_abs"] > 0
    assert proof["logits_rel_diff"] <= LOGITS_RTOL and proof["grads_rel_diff"] <= GRADS_RTOL
    assert proof["fp32_logits_rel_diff"] <= FP32_LOGITS_RTOL
    if "bn" in zoo.get_spec(name).kinds:
        assert proof["statistics_rel_diff"] <= STATISTICS_RTOL
    else:
        assert proof["statistics_rel_diff"] is None
    assert proof["counts"] == _expected_counts(name)
    assert proof["passed"], proof


@pytest.mark.torch
@pytest.mark.tf
def test_a_proof_names_the_engine_its_keras_runs_on():
    """This process's Keras runs on TensorFlow: a proof recorded for jax here would be TensorFlow's, so it is refused
    before anything is built."""
    from zoo.parity import check_parity

    with pytest.raises(ValueError, match="'jax' needs Keras on its backend"):
        check_parity("lenet", other="jax")
    with pytest.raises(ValueError, match="no Keras engine 'torch'"):
        check_parity("lenet", other="torch")
