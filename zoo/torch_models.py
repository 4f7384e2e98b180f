"""The zoo's networks in PyTorch, written in the style of torchvision (``features`` / ``classifier``)."""

from __future__ import annotations

import torch
from torch import nn

from zoo.specs import LRN_ALPHA, LRN_BETA, LRN_K, LRN_SIZE


class LeNet(nn.Module):
    """LeNet-5 in its common modern form: ReLU activations and max-pooling, 1x32x32 input."""

    def __init__(self, num_classes: int = 10) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, 6, kernel_size=5),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(kernel_size=2, stride=2),
            nn.Conv2d(6, 16, kernel_size=5),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(kernel_size=2, stride=2),
        )
        self.flatten = nn.Flatten()
        self.classifier = nn.Sequential(
            nn.Linear(16 * 5 * 5, 120),
            nn.ReLU(inplace=True),
            nn.Linear(120, 84),
            nn.ReLU(inplace=True),
            nn.Linear(84, num_classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.flatten(self.features(x)))


class AlexNet(nn.Module):
    """AlexNet as torchvision defines it; its ``state_dict`` keys and shapes are torchvision's.

    ``flatten`` is a module here (torchvision calls ``torch.flatten`` in ``forward``); it holds no weights, so
    ``load_state_dict(torchvision.models.alexnet().state_dict())`` works unchanged.
    """

    def __init__(self, num_classes: int = 1000, dropout: float = 0.5) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 64, kernel_size=11, stride=4, padding=2),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(kernel_size=3, stride=2),
            nn.Conv2d(64, 192, kernel_size=5, padding=2),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(kernel_size=3, stride=2),
            nn.Conv2d(192, 384, kernel_size=3, padding=1),
            nn.ReLU(inplace=True),
            nn.Conv2d(384, 256, kernel_size=3, padding=1),
            nn.ReLU(inplace=True),
            nn.Conv2d(256, 256, kernel_size=3, padding=1),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(kernel_size=3, stride=2),
        )
        self.avgpool = nn.AdaptiveAvgPool2d((6, 6))
        self.flatten = nn.Flatten()
        self.classifier = nn.Sequential(
            nn.Dropout(p=dropout),
            nn.Linear(256 * 6 * 6, 4096),
            nn.ReLU(inplace=True),
            nn.Dropout(p=dropout),
            nn.Linear(4096, 4096),
            nn.ReLU(inplace=True),
            nn.Linear(4096, num_classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.flatten(self.avgpool(self.features(x))))


class AlexNet2012(nn.Module):
    """The network of Krizhevsky, Sutskever and Hinton (2012), 227x227 input.

    conv2, conv4 and conv5 use ``groups=2``: each half of their filters sees only the half of the input
    channels that lived on the same GPU in the paper's two-GPU split. LRN follows the ReLU of conv1 and conv2.
    """

    def __init__(self, num_classes: int = 1000, dropout: float = 0.5) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 96, kernel_size=11, stride=4),
            nn.ReLU(inplace=True),
            nn.LocalResponseNorm(LRN_SIZE, alpha=LRN_ALPHA, beta=LRN_BETA, k=LRN_K),
            nn.MaxPool2d(kernel_size=3, stride=2),
            nn.Conv2d(96, 256, kernel_size=5, padding=2, groups=2),
            nn.ReLU(inplace=True),
            nn.LocalResponseNorm(LRN_SIZE, alpha=LRN_ALPHA, beta=LRN_BETA, k=LRN_K),
            nn.MaxPool2d(kernel_size=3, stride=2),
            nn.Conv2d(256, 384, kernel_size=3, padding=1),
            nn.ReLU(inplace=True),
            nn.Conv2d(384, 384, kernel_size=3, padding=1, groups=2),
            nn.ReLU(inplace=True),
            nn.Conv2d(384, 256, kernel_size=3, padding=1, groups=2),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(kernel_size=3, stride=2),
        )
        self.flatten = nn.Flatten()
        self.classifier = nn.Sequential(
            nn.Linear(256 * 6 * 6, 4096),
            nn.ReLU(inplace=True),
            nn.Dropout(p=dropout),
            nn.Linear(4096, 4096),
            nn.ReLU(inplace=True),
            nn.Dropout(p=dropout),
            nn.Linear(4096, num_classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.flatten(self.features(x)))


def lenet(*, num_classes: int = 10) -> LeNet:
    """LeNet-5 with random weights."""
    return LeNet(num_classes=num_classes)


def alexnet(*, num_classes: int = 1000, dropout: float = 0.5) -> AlexNet:
    """AlexNet (torchvision layout) with random weights; accepts ``torchvision.models.alexnet`` weights."""
    return AlexNet(num_classes=num_classes, dropout=dropout)


def alexnet_2012(*, num_classes: int = 1000, dropout: float = 0.5) -> AlexNet2012:
    """AlexNet of the 2012 paper with random weights."""
    return AlexNet2012(num_classes=num_classes, dropout=dropout)


_KINDS = {
    nn.Conv2d: "conv",
    nn.ReLU: "relu",
    nn.MaxPool2d: "maxpool",
    nn.LocalResponseNorm: "lrn",
    nn.AdaptiveAvgPool2d: "avgpool",
    nn.Flatten: "flatten",
    nn.Dropout: "dropout",
    nn.Linear: "dense",
}


def layers_in_order(model: nn.Module, input_shape: tuple[int, ...]) -> list[tuple[str, nn.Module]]:
    """The model's leaf modules in the order ``forward`` runs them, as ``(path, module)`` pairs.

    The zoo's torch models are straight chains, so this order lines up with the spec's layer table.
    """
    order: list[tuple[str, nn.Module]] = []
    names = {module: path for path, module in model.named_modules()}
    handles = [
        module.register_forward_hook(lambda module, _inputs, _output: order.append((names[module], module)))
        for module in model.modules()
        if not list(module.children())
    ]
    parameter = next(model.parameters())
    try:
        with torch.no_grad():
            model(torch.zeros(1, *input_shape, dtype=parameter.dtype, device=parameter.device))
    finally:
        for handle in handles:
            handle.remove()
    return order


def kind_of(module: nn.Module) -> str:
    """The spec's kind for a torch layer (``"conv"``, ``"dense"``, ...)."""
    return _KINDS[type(module)]


def count_macs(model: nn.Module, input_shape: tuple[int, ...]) -> int:
    """Forward multiply-accumulates per image, counted by ``torch.utils.flop_counter`` (2 FLOPs per MAC)."""
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        model(torch.zeros(1, *input_shape))
    return counter.get_total_flops() // 2
