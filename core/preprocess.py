"""Image → tensor preprocessing and training augmentations, without torchvision.

Indexing encodes the *whole frame* (``resize="squash"``): a centre crop would drop the sides
of wide photos. ``"center_crop"`` (resize shorter side, crop) exists for ImageNet-style
classification checks.
"""

from __future__ import annotations

import math
import random
from dataclasses import asdict, dataclass

import numpy as np
import torch
from PIL import Image, ImageEnhance, ImageOps

__all__ = [
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "Augment",
    "Preprocess",
    "augment_view",
    "to_tensor",
]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class Preprocess:
    """How a model wants its input.

    Attributes:
        input_size: square side in pixels fed to the network.
        mean, std: per-channel normalisation of [0, 1] RGB.
        resize: ``"squash"`` (whole frame resized to a square) or ``"center_crop"``.
        crop_ratio: for ``"center_crop"``, input_size / resized shorter side.
    """

    input_size: int = 224
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    resize: str = "squash"
    crop_ratio: float = 0.875

    def __post_init__(self) -> None:
        if self.input_size < 32:
            raise ValueError(f"input_size must be >= 32, got {self.input_size}")
        if self.resize not in ("squash", "center_crop"):
            raise ValueError(f"unknown resize mode {self.resize!r}")

    def with_size(self, input_size: int) -> Preprocess:
        return Preprocess(input_size, self.mean, self.std, self.resize, self.crop_ratio)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["mean"], d["std"] = list(self.mean), list(self.std)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> Preprocess:
        return cls(int(d["input_size"]), tuple(d["mean"]), tuple(d["std"]), d["resize"],
                   float(d["crop_ratio"]))

    def resize_image(self, im: Image.Image) -> Image.Image:
        """PIL RGB image → ``input_size`` square RGB image."""
        s = self.input_size
        if self.resize == "squash":
            return im.resize((s, s), Image.BILINEAR, reducing_gap=3.0)
        short = round(s / self.crop_ratio)
        w, h = im.size
        scale = short / min(w, h)
        im = im.resize((max(s, round(w * scale)), max(s, round(h * scale))), Image.BILINEAR)
        w, h = im.size
        left, top = (w - s) // 2, (h - s) // 2
        return im.crop((left, top, left + s, top + s))

    def normalize(self, x: torch.Tensor) -> torch.Tensor:
        """uint8 [B, 3, H, W] (or float in [0, 255]) → normalised float32."""
        mean = torch.tensor(self.mean, device=x.device).view(1, 3, 1, 1) * 255.0
        std = torch.tensor(self.std, device=x.device).view(1, 3, 1, 1) * 255.0
        y = (x.float() - mean) / std
        # NHWC lets oneDNN (and cuDNN) pick their fast convolution kernels: about 1.4x faster
        # inference and 1.5x faster training on CPU for these MobileNet-style networks.
        return y.contiguous(memory_format=torch.channels_last) if y.dim() == 4 else y

    def __call__(self, images: list[Image.Image]) -> torch.Tensor:
        """List of PIL images → normalised float32 batch [B, 3, S, S]."""
        return self.normalize(to_tensor([self.resize_image(im) for im in images]))


def to_tensor(images: list[Image.Image]) -> torch.Tensor:
    """Equal-size RGB PIL images → uint8 tensor [B, 3, H, W]."""
    arr = np.stack([np.asarray(im.convert("RGB"), dtype=np.uint8) for im in images])
    return torch.from_numpy(arr).permute(0, 3, 1, 2).contiguous()


@dataclass(frozen=True)
class Augment:
    """Distillation augmentations (each drawn from a per-(image, view) seeded RNG).

    View 0 is always the plain whole-frame resize, so the cache also holds each image's
    un-augmented teacher feature.
    """

    scale: tuple[float, float] = (0.35, 1.0)
    ratio: tuple[float, float] = (3 / 4, 4 / 3)
    hflip: float = 0.5
    brightness: float = 0.3
    contrast: float = 0.3
    saturation: float = 0.3
    grayscale: float = 0.1
    rotate: float = 10.0

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def light(cls) -> Augment:
        """Mild views for finishing a distilled student on whole photos: crops of 60–100 %
        of the frame, flips and slight colour changes, no rotation or grey-scale. Near the
        squash-resized whole frames the student sees at search time."""
        return cls(scale=(0.6, 1.0), brightness=0.1, contrast=0.1, saturation=0.1,
                   grayscale=0.0, rotate=0.0)


AUGMENTS = {"strong": Augment, "light": Augment.light}


def _random_resized_box(w: int, h: int, rng: random.Random, aug: Augment):
    area = w * h
    for _ in range(10):
        target = area * rng.uniform(*aug.scale)
        log_r = (math.log(aug.ratio[0]), math.log(aug.ratio[1]))
        r = math.exp(rng.uniform(*log_r))
        cw, ch = round(math.sqrt(target * r)), round(math.sqrt(target / r))
        if 0 < cw <= w and 0 < ch <= h:
            x, y = rng.randint(0, w - cw), rng.randint(0, h - ch)
            return x, y, x + cw, y + ch
    return 0, 0, w, h


def augment_view(im: Image.Image, size: int, aug: Augment, seed: int, view: int) -> Image.Image:
    """Deterministic augmented view ``view`` of ``im`` at ``size``×``size``.

    The same ``(seed, view)`` always gives the same pixels, which is what lets the teacher's
    output for a view be cached and reused in later epochs.
    """
    if view == 0:
        return im.resize((size, size), Image.BILINEAR, reducing_gap=3.0)
    rng = random.Random(seed * 1_000_003 + view)
    if aug.rotate and rng.random() < 0.3:
        im = im.rotate(rng.uniform(-aug.rotate, aug.rotate), Image.BILINEAR, expand=False)
    box = _random_resized_box(*im.size, rng, aug)
    im = im.resize((size, size), Image.BILINEAR, box=box, reducing_gap=3.0)
    if rng.random() < aug.hflip:
        im = ImageOps.mirror(im)
    ops = [
        (ImageEnhance.Brightness, aug.brightness),
        (ImageEnhance.Contrast, aug.contrast),
        (ImageEnhance.Color, aug.saturation),
    ]
    rng.shuffle(ops)
    for op, strength in ops:
        if strength:
            im = op(im).enhance(rng.uniform(1 - strength, 1 + strength))
    if rng.random() < aug.grayscale:
        im = ImageOps.grayscale(im).convert("RGB")
    return im
