"""Each backend's steps do the work their mode promises, and skips say why in one line."""

import numpy as np
import pytest

from bench.backend import Skip, load_backend, parse_device
from bench.record import Config


@pytest.mark.parametrize(
    ("device", "parsed"), [("cpu", ("cpu", 0)), ("cuda", ("cuda", 0)), ("cuda:1", ("cuda", 1)), ("CUDA:0", ("cuda", 0))]
)
def test_parse_device(device, parsed):
    assert parse_device(device) == parsed


@pytest.mark.parametrize("device", ["tpu", "cuda:x", "cpu:1", "cuda:-1", ""])
def test_parse_device_refuses_malformed(device):
    with pytest.raises(ValueError, match="accepted: cpu, cuda, cuda:N"):
        parse_device(device)


def _torch_backend():
    return load_backend("torch")


def _tf_backend():
    return load_backend("tf")


BACKENDS = [pytest.param(_torch_backend, marks=pytest.mark.torch, id="torch"),
            pytest.param(_tf_backend, marks=pytest.mark.tf, id="tf")]


@pytest.mark.parametrize("make_backend", BACKENDS)
def test_cuda_without_gpu_is_skipped_with_reason(make_backend):
    backend = make_backend()
    config = Config("lenet", backend.name, "cuda", "forward", 2)
    try:
        backend.check(config)
    except Skip as skip:
        reason = str(skip)
        assert reason.startswith(f"{backend.name}: ") and "GPU" in reason.upper() and "\n" not in reason
    else:
        pytest.skip("a GPU is visible here")


@pytest.mark.parametrize("make_backend", BACKENDS)
def test_fp16_on_cpu_is_skipped(make_backend):
    backend = make_backend()
    with pytest.raises(Skip, match="fp16"):
        backend.check(Config("lenet", backend.name, "cpu", "forward", 2, precision="fp16"))


@pytest.mark.torch
def test_torch_modes_do_their_work():
    import torch

    backend = _torch_backend()
    forward = backend.prepare(Config("lenet", "torch", "cpu", "forward", 3))
    logits = forward()
    assert logits.shape == (3, 10) and not logits.requires_grad  # no gradient tracking

    import zoo

    torch.manual_seed(0)
    backward = backend.prepare(Config("lenet", "torch", "cpu", "forward-backward", 3))
    loss = backward()
    assert loss.ndim == 0 and loss.item() > 0
    model = backend.model
    assert model.training  # dropout on
    assert all(p.grad is not None for p in model.parameters())
    before = [p.detach().clone() for p in model.parameters()]
    backward()
    assert all(torch.equal(a, p) for a, p in zip(before, model.parameters(), strict=True))  # no update
    assert zoo.get_spec("lenet").params == sum(p.numel() for p in model.parameters())

    train = backend.prepare(Config("lenet", "torch", "cpu", "train", 3))
    model = backend.model
    before = [p.detach().clone() for p in model.parameters()]
    train()
    assert all(not torch.equal(a, p) for a, p in zip(before, model.parameters(), strict=True))  # SGD step taken


@pytest.mark.torch
def test_torch_bf16_autocast_runs_on_cpu():
    import torch

    backend = _torch_backend()
    backend.check(Config("lenet", "torch", "cpu", "forward", 2, precision="bf16"))
    logits = backend.prepare(Config("lenet", "torch", "cpu", "forward", 2, precision="bf16"))()
    assert logits.dtype == torch.bfloat16


@pytest.mark.torch
def test_torch_channels_last_layout():
    import torch

    backend = _torch_backend()
    backend.prepare(Config("alexnet", "torch", "cpu", "forward", 1, channels_last=True))
    assert backend.images.is_contiguous(memory_format=torch.channels_last)
    assert backend.model.features[0].weight.is_contiguous(memory_format=torch.channels_last)


@pytest.mark.tf
def test_tf_forward_backward_computes_every_gradient():
    """Graph mode prunes unused outputs: the step must return the gradients or the backward pass vanishes."""
    import zoo

    backend = _tf_backend()
    step = backend.prepare(Config("lenet", "tf", "cpu", "forward-backward", 3))
    loss, gradients = step()
    assert float(loss) > 0
    assert len(gradients) == 10  # kernel and bias of 5 layers
    assert sum(int(np.prod(g.shape)) for g in gradients) == zoo.get_spec("lenet").params
    assert all(float(np.abs(g.numpy()).sum()) > 0 for g in gradients)


@pytest.mark.tf
def test_tf_step_is_traced_once():
    backend = _tf_backend()
    for mode in ("forward", "forward-backward", "train"):
        step = backend.prepare(Config("lenet", "tf", "cpu", mode, 2))
        for _ in range(3):
            step()
        assert backend.trace_count() == 1, mode


@pytest.mark.tf
def test_tf_train_step_updates_weights_with_decay():
    backend = _tf_backend()
    step = backend.prepare(Config("lenet", "tf", "cpu", "train", 2))
    model = backend.model
    before = [v.numpy().copy() for v in model.trainable_variables]
    step()
    after = [v.numpy() for v in model.trainable_variables]
    assert all(not np.array_equal(a, b) for a, b in zip(before, after, strict=True))


@pytest.mark.tf
def test_tf_refuses_channels_last():
    with pytest.raises(Skip, match="torch only"):
        _tf_backend().check(Config("lenet", "tf", "cpu", "forward", 2, channels_last=True))


@pytest.mark.tf
def test_tf_fp32_is_ieee_fp32_not_tf32():
    import tensorflow as tf

    _tf_backend().prepare(Config("lenet", "tf", "cpu", "forward", 2))
    assert not tf.config.experimental.tensor_float_32_execution_enabled()
