"""ResNet building blocks: ResNet-50 (He et al., CVPR 2016; torchvision key layout, the paper's
teacher) and the CUKD students v1/v2 (Reddy et al., arXiv:2207.09070, ``network.py`` of the
paper's code).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

__all__ = ["BasicBlock", "Bottleneck", "CUKDStudent", "ResNet50"]


def _downsample(cin: int, cout: int, stride: int) -> nn.Module | None:
    if stride == 1 and cin == cout:
        return None
    return nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))


class BasicBlock(nn.Module):
    """Two 3×3 convs with identity/projection shortcut."""

    expansion = 1

    def __init__(self, cin: int, planes: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, planes, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = _downsample(cin, planes, stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        idt = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        return self.relu(self.bn2(self.conv2(out)) + idt)


class Bottleneck(nn.Module):
    """1×1 → 3×3 (stride here, torchvision's "v1.5") → 1×1 ×4."""

    expansion = 4

    def __init__(self, cin: int, planes: int, stride: int = 1) -> None:
        super().__init__()
        cout = planes * self.expansion
        self.conv1 = nn.Conv2d(cin, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, cout, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(cout)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = _downsample(cin, cout, stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        idt = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        return self.relu(self.bn3(self.conv3(out)) + idt)


def _stage(block: type[BasicBlock | Bottleneck], cin: int, planes: int, n: int, stride: int):
    layers = [block(cin, planes, stride)]
    cin = planes * block.expansion
    layers += [block(cin, planes) for _ in range(n - 1)]
    return nn.Sequential(*layers), cin


class ResNet50(nn.Module):
    """ResNet-50 with torchvision's parameter names; ``forward_features`` → 2048-d pooled."""

    def __init__(self, num_classes: int = 1000) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 64, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        cin = 64
        self.layer1, cin = _stage(Bottleneck, cin, 64, 3, 1)
        self.layer2, cin = _stage(Bottleneck, cin, 128, 4, 2)
        self.layer3, cin = _stage(Bottleneck, cin, 256, 6, 2)
        self.layer4, cin = _stage(Bottleneck, cin, 512, 3, 2)
        self.num_features = cin
        self.fc = nn.Linear(cin, num_classes)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return x.mean((2, 3))

    def forward_head(self, f: torch.Tensor) -> torch.Tensor:
        return self.fc(f)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))


class CUKDStudent(nn.Module):
    """The paper's student: ResNet BasicBlocks, stages ``depths`` × ``widths``.

    Stem conv 7×7/2 + max-pool, stage 1 at stride 1 and the others at stride 2; the last
    feature map is flattened (the paper's 128×4×4 = 2048-d at 224 px for v1, 256×4×4 = 4096-d
    for v2). To accept any input size ≥ 64 px the map is adaptively average-pooled to
    ``out_grid``×``out_grid`` first — an identity at 224 px, so the paper's network is unchanged.
    """

    def __init__(
        self,
        depths: Sequence[int] = (2, 3, 5, 3, 2),
        widths: Sequence[int] = (64, 64, 128, 128, 128),
        out_grid: int = 4,
    ) -> None:
        super().__init__()
        if len(depths) != len(widths):
            raise ValueError("depths and widths must have the same length")
        self.conv1 = nn.Conv2d(3, 64, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        cin = 64
        stages = []
        for i, (d, w) in enumerate(zip(depths, widths, strict=True)):
            stage, cin = _stage(BasicBlock, cin, w, d, 1 if i == 0 else 2)
            stages.append(stage)
        self.layers = nn.ModuleList(stages)
        self.pool = nn.AdaptiveAvgPool2d(out_grid)
        self.num_features = cin * out_grid * out_grid

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        for stage in self.layers:
            x = stage(x)
        return self.pool(x).flatten(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_features(x)
