"""VGG in PyTorch, as torchvision writes it: ``features``, ``avgpool``, ``classifier``; its state_dict keys."""

from __future__ import annotations

import torch
from torch import nn

from zoo.models.vgg import CONFIGS


class VGG(nn.Module):
    """torchvision's VGG. ``flatten`` is a module here (torchvision calls ``torch.flatten``); it holds no weights,
    so ``load_state_dict(torchvision.models.vgg11().state_dict())`` works unchanged."""

    def __init__(self, config: list[int | str], num_classes: int = 1000, dropout: float = 0.5) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        in_channels = 3
        for item in config:
            if item == "M":
                layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
            else:
                layers += [nn.Conv2d(in_channels, item, kernel_size=3, padding=1), nn.ReLU(inplace=True)]
                in_channels = item
        self.features = nn.Sequential(*layers)
        self.avgpool = nn.AdaptiveAvgPool2d((7, 7))
        self.flatten = nn.Flatten()
        self.classifier = nn.Sequential(
            nn.Linear(512 * 7 * 7, 4096),
            nn.ReLU(inplace=True),
            nn.Dropout(p=dropout),
            nn.Linear(4096, 4096),
            nn.ReLU(inplace=True),
            nn.Dropout(p=dropout),
            nn.Linear(4096, num_classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.flatten(self.avgpool(self.features(x))))


def vgg11(*, num_classes: int = 1000, dropout: float = 0.5) -> VGG:
    """VGG-A with random weights; accepts ``torchvision.models.vgg11`` weights."""
    return VGG(CONFIGS["vgg11"], num_classes=num_classes, dropout=dropout)


def vgg16(*, num_classes: int = 1000, dropout: float = 0.5) -> VGG:
    """VGG-D with random weights; accepts ``torchvision.models.vgg16`` weights."""
    return VGG(CONFIGS["vgg16"], num_classes=num_classes, dropout=dropout)
