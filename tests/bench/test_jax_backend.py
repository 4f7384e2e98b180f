"""The jax engine's steps do the work the other engines do: two train steps of LeNet-5 under JAX move every weight
as two steps of torch's SGD (momentum, weight decay added to the gradient) move the same weights on the same batch."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.torch, pytest.mark.jax]

REPO = Path(__file__).resolve().parents[2]

# Runs in a process of its own: the jax engine's Keras must be the only Keras of its process.
TWO_TRAIN_STEPS = r'''
import json

import bench.jax_backend as jax_backend  # selects Keras' JAX backend before anything imports Keras
import numpy as np
import torch

import zoo
from bench.backend import host_data
from bench.config import Config
from bench.modes import SGD_LR, SGD_MOMENTUM, SGD_WEIGHT_DECAY
from zoo.transfer import from_keras, keras_variables, torch_layers_by_spec_name, torch_layout, torch_tensor

config = Config(model="lenet", framework="jax", device="cpu", mode="train", batch_size=4)
backend = jax_backend.JaxBackend()
backend.configure(config, 1)
step = backend.prepare(config)
spec = zoo.get_spec("lenet")
paths = [variable.path for variable in backend.model.trainable_variables]
before = {path: np.array(value) for path, value in zip(paths, backend.state["trainable"], strict=True)}

# The torch twin, holding the Keras twin's initial weights.
torch_model = zoo.build("lenet", "torch")
modules = torch_layers_by_spec_name(spec, torch_model)
with torch.no_grad():
    for name, module in modules.items():
        for label, variable in keras_variables(backend.model.get_layer(name)).items():
            target = torch_tensor(module, spec.layer(name).kind, label)
            target.copy_(torch_layout(spec, name, label, from_keras(variable)).reshape(target.shape))
images, labels = (torch.from_numpy(array) for array in host_data(spec.input_shape, spec.num_classes, 4))
optimizer = torch.optim.SGD(torch_model.parameters(), lr=SGD_LR, momentum=SGD_MOMENTUM, weight_decay=SGD_WEIGHT_DECAY)
torch_model.train()
for _ in range(2):
    step()
    optimizer.zero_grad()
    torch.nn.functional.cross_entropy(torch_model(images), labels).backward()
    optimizer.step()
backend.synchronize()

worst = {}
after = dict(zip(paths, backend.state["trainable"], strict=True))
for name, module in modules.items():
    for label, variable in keras_variables(backend.model.get_layer(name)).items():
        jax_moved = torch_layout(spec, name, label, torch.from_numpy(np.array(after[variable.path]) -
                                                                    before[variable.path]))
        torch_weight = torch_tensor(module, spec.layer(name).kind, label).detach()
        torch_moved = torch_weight - torch_layout(spec, name, label, torch.from_numpy(before[variable.path])).reshape(
            torch_weight.shape)
        difference = float((jax_moved.reshape(torch_moved.shape) - torch_moved).abs().max())
        worst[f"{name}.{label}"] = difference / float(torch_moved.abs().max())
print(json.dumps(worst))
'''


@pytest.mark.slow
def test_two_train_steps_move_every_weight_as_torch_sgd_does():
    completed = subprocess.run([sys.executable, "-c", TWO_TRAIN_STEPS], cwd=REPO, capture_output=True, text=True,
                               timeout=300, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
    assert completed.returncode == 0, completed.stderr[-3000:]
    worst = json.loads(completed.stdout.strip().splitlines()[-1])
    # Every conv and dense weight and bias of LeNet-5; float32 updates agree to rounding (an update that left out
    # the momentum, the decay or one of the two steps would differ by more than a tenth).
    assert len(worst) == 10
    assert max(worst.values()) < 1e-4, worst
