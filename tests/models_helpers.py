"""Tiny random models and generated images for model/distillation tests."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image

from core.models.mobilenet_v2 import MobileNetV2
from core.models.teachers import Teacher
from core.preprocess import Preprocess


class CountingTeacher(Teacher):
    """A tiny random frozen teacher that counts its forward calls."""

    def __init__(self, dim: int = 48, size: int = 64) -> None:
        backbone = MobileNetV2(width=0.25, last_channel=dim, num_classes=0)
        torch.manual_seed(0)
        super().__init__("tiny", backbone, dim, Preprocess(size))
        self.calls = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        return super().forward(x)


def write_images(folder: Path, n: int, size: tuple[int, int] = (72, 56), seed: int = 0,
                 classes: int = 0) -> list[Path]:
    """``n`` random smooth colour JPEGs (in ``classes`` sub-folders when > 0)."""
    rng = np.random.default_rng(seed)
    paths = []
    for i in range(n):
        base = rng.integers(0, 256, (3, 3, 3), dtype=np.uint8)
        im = Image.fromarray(base).resize(size, Image.Resampling.BILINEAR)
        sub = folder / f"class{i % classes}" if classes else folder
        sub.mkdir(parents=True, exist_ok=True)
        p = sub / f"img{i:03d}.jpg"
        im.save(p, quality=90)
        paths.append(p)
    return paths
