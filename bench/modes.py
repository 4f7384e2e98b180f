"""The one table of benchmark modes: what a timed step contains, and how many FLOPs it does.

Each backend builds its step from a mode's parts (``backward``, ``update``), never from its name, so a mode
missing here is an error everywhere instead of silently becoming some other step.
"""

from __future__ import annotations

from dataclasses import dataclass

from zoo import ModelSpec

# SGD of the 2012 paper, used by the train mode in both frameworks.
SGD_LR, SGD_MOMENTUM, SGD_WEIGHT_DECAY = 0.01, 0.9, 5e-4


@dataclass(frozen=True)
class Mode:
    """A kind of timed step.

    ``backward``: training mode (dropout on), mean cross-entropy against fixed labels, and the gradient of every
    parameter; otherwise eval mode with no gradient tracking. ``update``: an optimizer step after the backward pass.
    ``network``: whether the step runs the network at all; without it the step is the input pipeline's next batch
    alone (``bench.pipeline``), shaped for the model's input.
    """

    name: str
    description: str
    backward: bool
    update: bool
    network: bool = True

    def flops_per_image(self, spec: ModelSpec) -> int:
        """FLOPs of one image's share of the step, under ``FLOP_CONVENTION``.

        A backward pass computes, for every conv and dense layer, the weight gradient (as many multiply-accumulates
        as the forward pass) and the gradient with respect to the layer's input (as many again), except for the
        first layer, whose input is the images: nobody asks for that gradient, and neither framework computes it.
        """
        if not self.network:
            return 0
        forward = spec.macs
        if not self.backward:
            return 2 * forward
        weight_gradients = spec.macs
        input_gradients = spec.macs - spec.input_layer_macs
        return 2 * (forward + weight_gradients + input_gradients)


MODES: dict[str, Mode] = {
    mode.name: mode
    for mode in (
        Mode("forward", "eval mode (dropout off), no gradient tracking: logits = model(images)",
             backward=False, update=False),
        Mode("forward-backward", "training mode (dropout on): logits, mean cross-entropy against fixed random "
             "labels, gradients with respect to every parameter; no optimizer update", backward=True, update=False),
        Mode("train", f"forward-backward plus an SGD step (lr {SGD_LR:g}, momentum {SGD_MOMENTUM:g}, weight decay "
             f"{SGD_WEIGHT_DECAY:g} added to the gradient)", backward=True, update=True),
        Mode("input", "the input pipeline alone, no network: JPEG files read, decoded, resized, cropped, flipped, "
             "normalised and batched in the model's input shape, one batch per step", backward=False, update=False,
             network=False),
    )
}

FLOP_CONVENTION = (
    "2 FLOPs per multiply-accumulate of conv and dense weights; forward-backward and train = forward + weight "
    "gradients (1x forward) + input gradients of every layer but the first (1x forward less the first layer); "
    "the optimizer update is not counted"
)


def get_mode(name: str) -> Mode:
    """The mode called ``name``; ValueError naming the accepted ones otherwise."""
    try:
        return MODES[name]
    except KeyError:
        raise ValueError(f"mode must be one of {', '.join(MODES)}. Received: mode={name!r}") from None


def step_flops(spec: ModelSpec, batch_size: int, mode: str) -> int:
    """FLOPs of one step of ``mode`` on a batch, under ``FLOP_CONVENTION``."""
    return get_mode(mode).flops_per_image(spec) * batch_size
