"""ResNet in PyTorch, as torchvision writes it (``conv1``/``bn1``/``layer1``...``fc``); its state_dict keys."""

from __future__ import annotations

import torch
from torch import nn

from zoo.models.resnet import ARCHITECTURES, BN_EPSILON, BN_MOMENTUM, WIDTHS


def _bn(channels: int) -> nn.BatchNorm2d:
    return nn.BatchNorm2d(channels, eps=BN_EPSILON, momentum=BN_MOMENTUM)


class BasicBlock(nn.Module):
    expansion = 1

    def __init__(self, in_channels: int, width: int, stride: int = 1, downsample: nn.Module | None = None) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, width, 3, stride=stride, padding=1, bias=False)
        self.bn1 = _bn(width)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(width, width, 3, padding=1, bias=False)
        self.bn2 = _bn(width)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        if self.downsample is not None:
            identity = self.downsample(x)
        out += identity
        return self.relu(out)


class Bottleneck(nn.Module):
    """ResNet v1.5's bottleneck: the stride sits on the 3x3 convolution (conv2), as in torchvision."""

    expansion = 4

    def __init__(self, in_channels: int, width: int, stride: int = 1, downsample: nn.Module | None = None) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, width, 1, bias=False)
        self.bn1 = _bn(width)
        self.conv2 = nn.Conv2d(width, width, 3, stride=stride, padding=1, bias=False)
        self.bn2 = _bn(width)
        self.conv3 = nn.Conv2d(width, width * self.expansion, 1, bias=False)
        self.bn3 = _bn(width * self.expansion)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        if self.downsample is not None:
            identity = self.downsample(x)
        out += identity
        return self.relu(out)


class ResNet(nn.Module):
    """torchvision's ResNet. ``flatten`` is a module here (torchvision calls ``torch.flatten``); it holds no
    weights, so ``load_state_dict(torchvision.models.resnet50().state_dict())`` works unchanged."""

    def __init__(self, block: type[BasicBlock | Bottleneck], depths: tuple[int, ...], num_classes: int = 1000) -> None:
        super().__init__()
        self.in_channels = 64
        self.conv1 = nn.Conv2d(3, 64, kernel_size=7, stride=2, padding=3, bias=False)
        self.bn1 = _bn(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        self.layer1 = self._stage(block, WIDTHS[0], depths[0], stride=1)
        self.layer2 = self._stage(block, WIDTHS[1], depths[1], stride=2)
        self.layer3 = self._stage(block, WIDTHS[2], depths[2], stride=2)
        self.layer4 = self._stage(block, WIDTHS[3], depths[3], stride=2)
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.flatten = nn.Flatten()
        self.fc = nn.Linear(512 * block.expansion, num_classes)
        # torchvision's initialisation: He-normal convolutions, BatchNorm scale 1 and shift 0.
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")

    def _stage(self, block: type[BasicBlock | Bottleneck], width: int, depth: int, stride: int) -> nn.Sequential:
        downsample = None
        if stride != 1 or self.in_channels != width * block.expansion:
            downsample = nn.Sequential(
                nn.Conv2d(self.in_channels, width * block.expansion, 1, stride=stride, bias=False),
                _bn(width * block.expansion),
            )
        blocks = [block(self.in_channels, width, stride, downsample)]
        self.in_channels = width * block.expansion
        blocks += [block(self.in_channels, width) for _ in range(1, depth)]
        return nn.Sequential(*blocks)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(self.flatten(self.avgpool(x)))


_BLOCKS = {"basic": BasicBlock, "bottleneck": Bottleneck}


def _resnet(name: str, num_classes: int) -> ResNet:
    kind, depths, _ = ARCHITECTURES[name]
    return ResNet(_BLOCKS[kind], depths, num_classes=num_classes)


def resnet18(*, num_classes: int = 1000) -> ResNet:
    """ResNet-18 with random weights; accepts ``torchvision.models.resnet18`` weights."""
    return _resnet("resnet18", num_classes)


def resnet50(*, num_classes: int = 1000) -> ResNet:
    """ResNet-50 v1.5 with random weights; accepts ``torchvision.models.resnet50`` weights."""
    return _resnet("resnet50", num_classes)
