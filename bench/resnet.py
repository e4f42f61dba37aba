"""ResNets for the speed benchmark, written here (torchvision does not import beside torch 2.13).

``resnet20``: the CIFAR-style ResNet-20 (3 stages × 3 basic blocks, 16/32/64 channels) at
3×32×32. ``resnet18`` / ``resnet50``: the ImageNet ResNets at 3×224×224 (random weights:
only their cost matters there).
"""

from __future__ import annotations

import torch
from torch import nn


def _shortcut(cin: int, cout: int, stride: int) -> nn.Module:
    """Identity, or a strided 1×1 conv with batch norm where the shape changes."""
    if stride == 1 and cin == cout:
        return nn.Sequential()
    return nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))


class BasicBlock(nn.Module):
    expansion = 1

    def __init__(self, cin: int, cout: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.relu = nn.ReLU()
        self.out_relu = nn.ReLU()  # the block's output: what the benchmark ablates
        self.short = _shortcut(cin, cout, stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.relu(self.bn1(self.conv1(x)))
        y = self.bn2(self.conv2(y))
        return self.out_relu(y + self.short(x))


class Bottleneck(nn.Module):
    expansion = 4

    def __init__(self, cin: int, width: int, stride: int = 1) -> None:
        super().__init__()
        cout = width * 4
        self.conv1 = nn.Conv2d(cin, width, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = nn.Conv2d(width, width, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(width)
        self.conv3 = nn.Conv2d(width, cout, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(cout)
        self.relu = nn.ReLU()
        self.out_relu = nn.ReLU()
        self.short = _shortcut(cin, cout, stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.relu(self.bn1(self.conv1(x)))
        y = self.relu(self.bn2(self.conv2(y)))
        y = self.bn3(self.conv3(y))
        return self.out_relu(y + self.short(x))


class ResNet(nn.Module):
    def __init__(self, block: type[nn.Module], stages: list[int], widths: list[int],
                 classes: int, imagenet_stem: bool) -> None:
        super().__init__()
        if imagenet_stem:
            self.stem = nn.Sequential(nn.Conv2d(3, widths[0], 7, 2, 3, bias=False),
                                      nn.BatchNorm2d(widths[0]), nn.ReLU(), nn.MaxPool2d(3, 2, 1))
            cin = widths[0]
        else:
            self.stem = nn.Sequential(nn.Conv2d(3, widths[0], 3, 1, 1, bias=False),
                                      nn.BatchNorm2d(widths[0]), nn.ReLU())
            cin = widths[0]
        blocks: list[nn.Module] = []
        for i, (n, w) in enumerate(zip(stages, widths, strict=True)):
            for j in range(n):
                stride = 2 if i > 0 and j == 0 else 1
                blocks.append(block(cin, w, stride))
                cin = w * block.expansion  # type: ignore[attr-defined]
        self.blocks = nn.Sequential(*blocks)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(cin, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.flatten(self.pool(self.blocks(self.stem(x))), 1))


def resnet20(classes: int = 10) -> ResNet:
    return ResNet(BasicBlock, [3, 3, 3], [16, 32, 64], classes, imagenet_stem=False)


def resnet18(classes: int = 1000) -> ResNet:
    return ResNet(BasicBlock, [2, 2, 2, 2], [64, 128, 256, 512], classes, imagenet_stem=True)


def resnet50(classes: int = 1000) -> ResNet:
    return ResNet(Bottleneck, [3, 4, 6, 3], [64, 128, 256, 512], classes, imagenet_stem=True)
