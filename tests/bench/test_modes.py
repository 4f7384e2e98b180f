"""The modes table: what each step contains, and the FLOPs of the step that really runs."""

import pytest

import zoo
from bench.config import Config
from bench.modes import FLOP_CONVENTION, MODES, get_mode, step_flops


def test_lenet_flops_by_hand():
    spec = zoo.get_spec("lenet")
    # Forward: 416,520 MACs. conv1 (6 filters of 1x5x5 over 28x28 outputs) is 117,600 of them.
    assert spec.input_layer_macs == 6 * 25 * 28 * 28 == 117_600
    assert step_flops(spec, 1, "forward") == 2 * 416_520
    # Backward: weight gradients (416,520) + input gradients of every layer but conv1 (416,520 - 117,600).
    assert step_flops(spec, 1, "forward-backward") == 2 * (416_520 + 416_520 + 416_520 - 117_600) == 2_263_920
    assert step_flops(spec, 4, "train") == 4 * 2_263_920  # the optimizer update is not counted
    # "3 x forward" would have counted 2,499,120: 10.4% too many.
    assert 3 * 2 * 416_520 / 2_263_920 == pytest.approx(1.104, abs=1e-3)


def test_alexnet_backward_leaves_out_conv1_input_gradient():
    spec = zoo.get_spec("alexnet")
    assert spec.input_layer_macs == 64 * 3 * 11 * 11 * 55 * 55 == 70_276_800
    assert step_flops(spec, 1, "forward-backward") == 2 * (3 * 714_188_480 - 70_276_800)
    assert 3 * 2 * 714_188_480 / step_flops(spec, 1, "forward-backward") == pytest.approx(1.034, abs=1e-3)


def test_every_mode_is_one_entry_with_its_parts():
    assert [(m.name, m.backward, m.update, m.network) for m in MODES.values()] == [
        ("forward", False, False, True), ("forward-backward", True, False, True), ("train", True, True, True),
        ("input", False, False, False)]
    assert "input gradients of every layer but the first" in FLOP_CONVENTION
    assert step_flops(zoo.get_spec("alexnet"), 8, "input") == 0  # the input pipeline alone runs no network
    with pytest.raises(ValueError, match="mode must be one of forward, forward-backward, train, input"):
        get_mode("inference")


def _grouped_conv_backward_flop(grad_out_shape, x_shape, w_shape, bias, stride, padding, dilation, transposed,
                                output_padding, groups, output_mask, out_shape, **kwargs):
    """torch's formula for convolution_backward, with the weight gradient of a grouped convolution divided by its
    groups: torch (2.14) counts that gradient as if every input channel met every filter, ``groups`` times the
    multiply-accumulates it does (alexnet-2012's conv2, conv4 and conv5 come out 3x forward instead of 2x)."""
    from torch.utils.flop_counter import conv_backward_flop

    def part(mask):
        return conv_backward_flop(grad_out_shape, x_shape, w_shape, bias, stride, padding, dilation, transposed,
                                  output_padding, groups, mask, out_val=out_shape)

    return part([output_mask[0], False, False]) + part([False, output_mask[1], False]) // groups


def _counted_flops(model: str, mode: str, *, corrected: bool, batch: int = 2) -> int:
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from bench.engines import load_backend

    backend = load_backend("torch")
    step = backend.prepare(Config(model=model, framework="torch", device="cpu", mode=mode, batch_size=batch))
    if get_mode(mode).update:
        step()  # the momentum buffers exist before the counted call; a step without an update leaves no state
    mapping = {torch.ops.aten.convolution_backward: _grouped_conv_backward_flop} if corrected else None
    counter = FlopCounterMode(display=False, custom_mapping=mapping)
    with counter:
        step()
    return counter.get_total_flops()


# The train mode's rule is forward-backward's (the update is not counted): it is checked on the small networks, and
# every network is checked in the two modes that differ. One image a step: the count is linear in the batch.
STEP_CASES = [(model, mode) for model in zoo.list_models() for mode in ("forward", "forward-backward")] + [
    ("lenet", "train"), ("alexnet", "train"), ("resnet18", "train")]


@pytest.mark.torch
@pytest.mark.parametrize(("model", "mode"), STEP_CASES)
def test_step_flops_match_torch_flop_counter_on_the_real_step(model, mode):
    """torch.utils.flop_counter counts the convolutions and matrix products the torch step really runs, backward
    included (it knows conv1's input gradient is not asked for); the convention must agree within 1%."""
    counted = _counted_flops(model, mode, corrected=True, batch=1)
    expected = step_flops(zoo.get_spec(model), 1, mode)
    assert counted == pytest.approx(expected, rel=0.01), (counted, expected)


@pytest.mark.torch
def test_the_counter_correction_only_touches_grouped_weight_gradients():
    """Uncorrected, the counter agrees on the ungrouped networks and over-counts alexnet-2012's backward by the
    second group of conv2, conv4 and conv5's weight gradients, and by nothing else."""
    spec = zoo.get_spec("alexnet-2012")
    assert _counted_flops("alexnet", "forward-backward", corrected=False) == step_flops(
        zoo.get_spec("alexnet"), 2, "forward-backward")
    grouped_macs = sum(spec.layer(name).macs for name in ("conv2", "conv4", "conv5"))
    raw = _counted_flops("alexnet-2012", "forward-backward", corrected=False)
    assert raw == step_flops(spec, 2, "forward-backward") + 2 * grouped_macs * 2  # 2 FLOPs x batch 2
