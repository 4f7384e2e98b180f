"""GoogLeNet in PyTorch, as torchvision writes it with ``aux_logits=False``; its state_dict keys."""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional

from zoo.models.googlenet import BN_EPSILON, BN_MOMENTUM, INCEPTIONS, STAGES


class BasicConv2d(nn.Module):
    """Convolution without bias, BatchNorm (eps 1e-3), ReLU."""

    def __init__(self, in_channels: int, out_channels: int, **conv_options) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, bias=False, **conv_options)
        self.bn = nn.BatchNorm2d(out_channels, eps=BN_EPSILON, momentum=BN_MOMENTUM)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return functional.relu(self.bn(self.conv(x)), inplace=True)


class Inception(nn.Module):
    """Four branches concatenated: 1x1; 1x1 then 3x3; 1x1 then 3x3 (torchvision's, the paper's 5x5); 3x3 max-pool
    then 1x1."""

    def __init__(self, in_channels: int, ch1: int, ch3_reduce: int, ch3: int, ch5_reduce: int, ch5: int,
                 pool_proj: int) -> None:
        super().__init__()
        self.branch1 = BasicConv2d(in_channels, ch1, kernel_size=1)
        self.branch2 = nn.Sequential(BasicConv2d(in_channels, ch3_reduce, kernel_size=1),
                                     BasicConv2d(ch3_reduce, ch3, kernel_size=3, padding=1))
        self.branch3 = nn.Sequential(BasicConv2d(in_channels, ch5_reduce, kernel_size=1),
                                     BasicConv2d(ch5_reduce, ch5, kernel_size=3, padding=1))
        self.branch4 = nn.Sequential(nn.MaxPool2d(kernel_size=3, stride=1, padding=1, ceil_mode=True),
                                     BasicConv2d(in_channels, pool_proj, kernel_size=1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.branch1(x), self.branch2(x), self.branch3(x), self.branch4(x)], 1)


class GoogLeNet(nn.Module):
    """torchvision's GoogLeNet without auxiliary classifiers or input transform. ``flatten`` is a module here
    (torchvision calls ``torch.flatten``); it holds no weights, so
    ``load_state_dict(torchvision.models.googlenet(aux_logits=False).state_dict())`` works unchanged."""

    def __init__(self, num_classes: int = 1000, dropout: float = 0.2) -> None:
        super().__init__()
        channels = 3
        for stage in STAGES:
            if stage[0] == "conv":
                _, name, out_channels, kernel, stride, padding = stage
                module = BasicConv2d(channels, out_channels, kernel_size=kernel, stride=stride, padding=padding)
                channels = out_channels
            elif stage[0] == "pool":
                _, name, kernel, stride = stage
                module = nn.MaxPool2d(kernel, stride=stride, ceil_mode=True)
            else:
                name = stage[1]
                module = Inception(channels, *INCEPTIONS[name])
                ch1, _, ch3, _, ch5, pool_proj = INCEPTIONS[name]
                channels = ch1 + ch3 + ch5 + pool_proj
            self.add_module(name, module)
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.flatten = nn.Flatten()
        self.dropout = nn.Dropout(p=dropout)
        self.fc = nn.Linear(1024, num_classes)
        # torchvision's initialisation: truncated normal (std 0.01, within +-2) for convolutions and the dense layer.
        for module in self.modules():
            if isinstance(module, (nn.Conv2d, nn.Linear)):
                nn.init.trunc_normal_(module.weight, mean=0.0, std=0.01, a=-2, b=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for stage in STAGES:
            x = getattr(self, stage[1])(x)
        return self.fc(self.dropout(self.flatten(self.avgpool(x))))


def googlenet(*, num_classes: int = 1000, dropout: float = 0.2) -> GoogLeNet:
    """GoogLeNet with random weights; accepts ``torchvision.models.googlenet(aux_logits=False)`` weights."""
    return GoogLeNet(num_classes=num_classes, dropout=dropout)
