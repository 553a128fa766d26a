"""MobileNetV2 (Sandler et al., CVPR 2018), written to load torchvision's state-dict layout.

Used twice: as the ImageNet *teacher* (width 1.0, torchvision checkpoint
``mobilenet_v2-b0353104.pth``) and, narrower and shallower, as the product's efficient
*student* (see :mod:`core.models.students`).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

__all__ = ["MOBILENET_V2_SETTING", "MobileNetV2", "make_divisible"]

# (expand ratio t, output channels c, repeats n, first stride s) -- the paper's Table 2.
MOBILENET_V2_SETTING: tuple[tuple[int, int, int, int], ...] = (
    (1, 16, 1, 1),
    (6, 24, 2, 2),
    (6, 32, 3, 2),
    (6, 64, 4, 2),
    (6, 96, 3, 1),
    (6, 160, 3, 2),
    (6, 320, 1, 1),
)


def make_divisible(v: float, divisor: int = 8) -> int:
    """Round ``v`` to a multiple of ``divisor`` without going below 90 % of it."""
    new_v = max(divisor, int(v + divisor / 2) // divisor * divisor)
    if new_v < 0.9 * v:
        new_v += divisor
    return new_v


class ConvBNReLU(nn.Sequential):
    """Conv → BatchNorm → ReLU6 (keys ``0``, ``1`` as in torchvision)."""

    def __init__(self, cin: int, cout: int, kernel: int = 3, stride: int = 1, groups: int = 1):
        super().__init__(
            nn.Conv2d(cin, cout, kernel, stride, (kernel - 1) // 2, groups=groups, bias=False),
            nn.BatchNorm2d(cout),
            nn.ReLU6(inplace=True),
        )


class InvertedResidual(nn.Module):
    """Expand (1×1) → depthwise 3×3 → linear project (1×1), residual when shapes allow."""

    def __init__(self, cin: int, cout: int, stride: int, expand_ratio: int,
                 hidden: int | None = None) -> None:
        super().__init__()
        if hidden is None:
            hidden = round(cin * expand_ratio)
        elif expand_ratio == 1 and hidden != cin:
            raise ValueError("a block without expansion keeps its input width")
        self.use_res_connect = stride == 1 and cin == cout
        layers: list[nn.Module] = []
        if expand_ratio != 1:
            layers.append(ConvBNReLU(cin, hidden, kernel=1))
        layers += [
            ConvBNReLU(hidden, hidden, stride=stride, groups=hidden),
            nn.Conv2d(hidden, cout, 1, 1, 0, bias=False),
            nn.BatchNorm2d(cout),
        ]
        self.conv = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv(x) if self.use_res_connect else self.conv(x)


class MobileNetV2(nn.Module):
    """MobileNetV2 backbone with global average pooling and an optional classifier.

    Args:
        width: channel multiplier.
        last_channel: width of the final 1×1 conv (torchvision: 1280 for width ≤ 1).
        setting: inverted-residual stages ``(t, c, n, s)``.
        num_classes: size of the classifier, 0 for none.
        first_channel: stem width before the multiplier.
        hidden: per-block width of the expanded (depthwise) layer, one entry per inverted
            residual block; ``None`` keeps ``cin × t``. A pruned teacher (see
            :mod:`core.models.prune`) has narrower hidden layers and the same block outputs.
    """

    def __init__(
        self,
        width: float = 1.0,
        last_channel: int | None = None,
        setting: Sequence[Sequence[int]] = MOBILENET_V2_SETTING,
        num_classes: int = 1000,
        first_channel: int = 32,
        hidden: Sequence[int] | None = None,
    ) -> None:
        super().__init__()
        cin = make_divisible(first_channel * width)
        self.last_channel = last_channel or make_divisible(1280 * max(1.0, width))
        feats: list[nn.Module] = [ConvBNReLU(3, cin, stride=2)]
        blocks = sum(n for _t, _c, n, _s in setting)
        if hidden is not None and len(hidden) != blocks:
            raise ValueError(f"hidden needs one width per block ({blocks}), got {len(hidden)}")
        b = 0
        for t, c, n, s in setting:
            cout = make_divisible(c * width)
            for i in range(n):
                feats.append(InvertedResidual(cin, cout, s if i == 0 else 1, t,
                                              None if hidden is None else int(hidden[b])))
                cin = cout
                b += 1
        feats.append(ConvBNReLU(cin, self.last_channel, kernel=1))
        self.features = nn.Sequential(*feats)
        self.num_features = self.last_channel
        self.classifier = (
            nn.Sequential(nn.Dropout(0.2), nn.Linear(self.last_channel, num_classes))
            if num_classes
            else None
        )
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, 0, 0.01)
                nn.init.zeros_(m.bias)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """[B, 3, H, W] → pooled features [B, last_channel]."""
        return self.features(x).mean((2, 3))

    def forward_head(self, f: torch.Tensor) -> torch.Tensor:
        if self.classifier is None:
            raise RuntimeError("this MobileNetV2 has no classifier")
        return self.classifier(f)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        f = self.forward_features(x)
        return f if self.classifier is None else self.forward_head(f)
