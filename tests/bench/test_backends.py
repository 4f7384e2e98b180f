"""Each backend's steps do the work their mode promises, and skips say why in one line."""

import dataclasses

import numpy as np
import pytest

from bench.backend import Skip, cpu_has_native_bf16, parse_device, precision_skip_reason
from bench.config import Config
from bench.engines import load_backend


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


@pytest.mark.no_gpu
@pytest.mark.parametrize("make_backend", BACKENDS)
def test_cuda_without_gpu_is_skipped_with_reason(make_backend):
    backend = make_backend()
    with pytest.raises(Skip) as skip:
        backend.check(Config(model="lenet", framework=backend.name, device="cuda", mode="forward", batch_size=2))
    reason = str(skip.value)
    assert reason.startswith(f"{backend.name}: ") and "GPU" in reason.upper() and "\n" not in reason


@pytest.mark.parametrize(
    ("capability", "precision", "refused"),
    [((7, 5), "bf16", True), ((8, 0), "bf16", False), ((9, 0), "bf16", False), ((6, 1), "fp16", True),
     ((7, 0), "fp16", False), ((6, 1), "fp32", False)],
)
def test_gpu_precision_needs_native_support_on_the_requested_device(capability, precision, refused):
    reason = precision_skip_reason("torch", "NVIDIA T4", capability, precision)
    assert (reason is not None) == refused
    if refused:
        assert reason.startswith(f"torch: {precision} needs compute capability") and "NVIDIA T4 has" in reason


@pytest.mark.parametrize("make_backend", BACKENDS)
def test_fp16_on_cpu_is_skipped(make_backend):
    backend = make_backend()
    with pytest.raises(Skip, match="fp16"):
        backend.check(Config(model="lenet", framework=backend.name, device="cpu", mode="forward", batch_size=2,
                             precision="fp16"))


@pytest.mark.torch
def test_torch_modes_do_their_work():
    import torch

    backend = _torch_backend()
    forward = backend.prepare(Config(model="lenet", framework="torch", device="cpu", mode="forward", batch_size=3))
    logits = forward()
    assert logits.shape == (3, 10) and not logits.requires_grad  # no gradient tracking

    import zoo

    torch.manual_seed(0)
    backward = backend.prepare(Config(model="lenet", framework="torch", device="cpu", mode="forward-backward",
                                      batch_size=3))
    loss = backward()
    assert loss.ndim == 0 and loss.item() > 0
    model = backend.model
    assert model.training  # dropout on
    assert all(p.grad is not None for p in model.parameters())
    before = [p.detach().clone() for p in model.parameters()]
    backward()
    assert all(torch.equal(a, p) for a, p in zip(before, model.parameters(), strict=True))  # no update
    assert zoo.get_spec("lenet").params == sum(p.numel() for p in model.parameters())

    train = backend.prepare(Config(model="lenet", framework="torch", device="cpu", mode="train", batch_size=3))
    model = backend.model
    before = [p.detach().clone() for p in model.parameters()]
    train()
    assert all(not torch.equal(a, p) for a, p in zip(before, model.parameters(), strict=True))  # SGD step taken


@pytest.mark.parametrize("make_backend", BACKENDS)
def test_bf16_on_cpu_runs_only_where_the_cpu_has_bf16_instructions(make_backend):
    backend = make_backend()
    config = Config(model="lenet", framework=backend.name, device="cpu", mode="forward", batch_size=2, precision="bf16")
    if not cpu_has_native_bf16():
        with pytest.raises(Skip, match="bf16 on this CPU would be emulated"):
            backend.check(config)
        return
    backend.check(config)
    logits = backend.prepare(config)()
    assert "bfloat16" in str(logits.dtype)


@pytest.mark.torch
@pytest.mark.tf
def test_both_frameworks_time_the_same_numbers():
    """The inputs and labels come from one seed on the host; TensorFlow's are the NHWC transpose of torch's."""
    torch_backend, tf_backend = _torch_backend(), _tf_backend()
    torch_backend.prepare(Config(model="lenet", framework="torch", device="cpu", mode="forward-backward", batch_size=3))
    tf_backend.prepare(Config(model="lenet", framework="tf", device="cpu", mode="forward-backward", batch_size=3))
    np.testing.assert_array_equal(torch_backend.images.numpy().transpose(0, 2, 3, 1), tf_backend.images.numpy())
    np.testing.assert_array_equal(torch_backend.labels.numpy(), tf_backend.labels.numpy())


@pytest.mark.torch
def test_torch_channels_last_layout():
    import torch

    backend = _torch_backend()
    backend.prepare(Config(model="alexnet", framework="torch", device="cpu", mode="forward", batch_size=1,
                           channels_last=True))
    assert backend.images.is_contiguous(memory_format=torch.channels_last)
    assert backend.model.features[0].weight.is_contiguous(memory_format=torch.channels_last)


@pytest.mark.tf
def test_tf_forward_backward_computes_every_gradient():
    """Graph mode prunes unused outputs: the step must return the gradients or the backward pass vanishes."""
    import zoo

    backend = _tf_backend()
    step = backend.prepare(Config(model="lenet", framework="tf", device="cpu", mode="forward-backward", batch_size=3))
    loss, gradients = step()
    assert float(loss) > 0
    assert len(gradients) == 10  # kernel and bias of 5 layers
    assert sum(int(np.prod(g.shape)) for g in gradients) == zoo.get_spec("lenet").params
    assert all(float(np.abs(g.numpy()).sum()) > 0 for g in gradients)


@pytest.mark.tf
def test_tf_step_is_traced_once():
    backend = _tf_backend()
    for mode in ("forward", "forward-backward", "train"):
        step = backend.prepare(Config(model="lenet", framework="tf", device="cpu", mode=mode, batch_size=2))
        for _ in range(3):
            step()
        assert backend.trace_count() == 1, mode


@pytest.mark.tf
def test_tf_train_step_updates_weights_with_decay():
    backend = _tf_backend()
    step = backend.prepare(Config(model="lenet", framework="tf", device="cpu", mode="train", batch_size=2))
    model = backend.model
    before = [v.numpy().copy() for v in model.trainable_variables]
    step()
    after = [v.numpy() for v in model.trainable_variables]
    assert all(not np.array_equal(a, b) for a, b in zip(before, after, strict=True))


def test_the_engine_table_refuses_what_an_engine_cannot_run_before_any_process_starts():
    from bench.engines import ENGINES

    channels_last = Config(model="lenet", framework="tf", device="cpu", mode="forward", batch_size=2,
                           channels_last=True)
    assert ENGINES["tf"].refusal(channels_last) == (
        "tf: --channels-last applies to torch only (TensorFlow runs NHWC throughout)")
    assert ENGINES["torch"].refusal(dataclasses.replace(channels_last, framework="torch")) is None


@pytest.mark.tf
def test_tf_fp32_is_ieee_fp32_not_tf32_and_recorded_per_configuration():
    import tensorflow as tf

    backend = _tf_backend()
    config = Config(model="lenet", framework="tf", device="cpu", mode="forward", batch_size=2, compile=True)
    backend.prepare(config)
    assert not tf.config.experimental.tensor_float_32_execution_enabled()
    settings = backend.settings(config)
    assert settings["tf32"] is False and settings["mixed_precision_policy"] == "float32"
    assert settings["compile"] == "XLA jit_compile (whole step)"


@pytest.mark.torch
def test_torch_settings_say_layout_and_compile():
    backend = _torch_backend()
    settings = backend.settings(Config(model="alexnet", framework="torch", device="cpu", mode="forward",
                                       batch_size=1, channels_last=True))
    assert settings["memory_format"] == "channels_last" and settings["compile"] == "eager"
    assert settings["threads"] >= 1


@pytest.mark.parametrize("make_backend", [pytest.param(_torch_backend, marks=pytest.mark.torch),
                                          pytest.param(_tf_backend, marks=pytest.mark.tf)])
def test_a_cpu_step_has_no_device_busy_figure(make_backend):
    backend = make_backend()
    backend.prepare(Config(model="lenet", framework=backend.name, device="cpu", mode="forward", batch_size=2))
    assert backend.device_busy(2) is None
