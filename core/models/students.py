"""Student networks and their registry.

A student maps uint8 RGB batches ``[B, 3, S, S]`` to features ``[B, feature_dim]`` (it
normalises its own input). Registered students:

- ``cukd_v1``: the paper's student for a ResNet-50 teacher (arXiv:2207.09070, ``network.py``):
  BasicBlock stages [2, 3, 5, 3, 2] × [64, 64, 128, 128, 128], 128×4×4 = 2048-d.
- ``cukd_v2``: the paper's student for an AlexNet teacher, last stage 256 channels → 4096-d.
  The paper's code regresses AlexNet's 9216-d conv5 (256×6×6) with this 4096-d output, a size
  mismatch that cannot run as written; here the mismatch is resolved by the generic
  distillation-only regression projection (4096 → teacher dim), so the deployed student keeps
  the paper's 4096-d output.
- ``cukd_mnv2_035`` / ``cukd_mnv2_050``: our efficient CPU students, MobileNetV2-style inverted
  residuals at width 0.35 / 0.5 with a 1280-d output that matches MobileNetV2 and
  EfficientNet-Lite teachers directly (~0.19 / 0.32 of MobileNetV2's MACs at any size).
- ``cukd_mnv2_035t``: the 0.35 student with its two last (1/32-resolution) stages widened
  (80 and 192 channels instead of 56 and 112): 0.66 M instead of 0.40 M parameters for 0.24
  of MobileNetV2's MACs.
- ``cukd_mnv2_pruned``: MobileNetV2 itself (width 1.0, same block outputs) with narrower
  expanded layers, one width per block in ``hidden``. It starts from the frozen teacher's
  own weights, the least important expanded channels removed (:mod:`core.models.prune`),
  and is then distilled like any student: it inherits what the teacher knows about the
  world instead of relearning it from a few tens of thousands of photos.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import nn

from core.models.mobilenet_v2 import MobileNetV2
from core.models.resnet import CUKDStudent
from core.preprocess import Preprocess

__all__ = ["STUDENTS", "Student", "create_student", "list_students", "register_student"]

STUDENTS: dict[str, Callable[..., nn.Module]] = {}


def register_student(name: str) -> Callable[[Callable[..., nn.Module]], Callable[..., nn.Module]]:
    """Decorator adding a backbone builder (returning a module with ``forward_features`` and
    ``num_features``) to the registry."""

    def deco(fn: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        if name in STUDENTS:
            raise ValueError(f"student {name!r} registered twice")
        STUDENTS[name] = fn
        return fn

    return deco


@register_student("cukd_v1")
def _cukd_v1() -> nn.Module:
    return CUKDStudent((2, 3, 5, 3, 2), (64, 64, 128, 128, 128))


@register_student("cukd_v2")
def _cukd_v2() -> nn.Module:
    return CUKDStudent((2, 3, 5, 3, 2), (64, 64, 128, 128, 256))


@register_student("cukd_mnv2_035")
def _cukd_mnv2_035(last_channel: int = 1280) -> nn.Module:
    return MobileNetV2(width=0.35, last_channel=last_channel, num_classes=0)


# Width 0.35 where the feature maps are large (cheap in MACs, few parameters) but wider in the
# two last stages, which run at 1/32 of the input size: more capacity for the regression of
# the teacher's features at 0.24 of MobileNetV2's MACs (the 0.35 student underfits).
TAIL_WIDE_SETTING: tuple[tuple[int, int, int, int], ...] = (
    (1, 8, 1, 1),
    (6, 8, 2, 2),
    (6, 16, 3, 2),
    (6, 24, 4, 2),
    (6, 32, 3, 1),
    (6, 80, 3, 2),
    (6, 192, 1, 1),
)


@register_student("cukd_mnv2_035t")
def _cukd_mnv2_035t(last_channel: int = 1280) -> nn.Module:
    return MobileNetV2(width=1.0, last_channel=last_channel, setting=TAIL_WIDE_SETTING,
                       num_classes=0, first_channel=16)


@register_student("cukd_mnv2_pruned")
def _cukd_mnv2_pruned(hidden: Sequence[int] | None = None, last_channel: int = 1280
                      ) -> nn.Module:
    return MobileNetV2(width=1.0, last_channel=last_channel, num_classes=0,
                       hidden=None if hidden is None else [int(h) for h in hidden])


@register_student("cukd_mnv2_050")
def _cukd_mnv2_050(last_channel: int = 1280) -> nn.Module:
    return MobileNetV2(width=0.5, last_channel=last_channel, num_classes=0)


class Student(nn.Module):
    """A registered backbone plus its preprocessing.

    Attributes:
        arch: registry name; ``arch_args``: builder keyword arguments (saved in checkpoints).
        feature_dim: output size.
        preprocess: input size and normalisation.
    """

    def __init__(self, arch: str, preprocess: Preprocess, **arch_args: Any) -> None:
        super().__init__()
        if arch not in STUDENTS:
            raise KeyError(f"unknown student {arch!r}; available: {', '.join(STUDENTS)}")
        self.arch = arch
        self.arch_args = dict(arch_args)
        self.backbone = STUDENTS[arch](**arch_args)
        self.feature_dim: int = self.backbone.num_features
        self.preprocess = preprocess

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """uint8 (or 0–255 float) ``[B, 3, S, S]`` → ``[B, feature_dim]``."""
        return self.backbone.forward_features(self.preprocess.normalize(x))


def create_student(name: str, input_size: int = 224, **arch_args: Any) -> Student:
    """Build a randomly initialised student by registry name (any ``input_size`` ≥ 64)."""
    if input_size < 64:
        raise ValueError(f"students need input_size >= 64, got {input_size}")
    return Student(name, Preprocess(input_size), **arch_args)


def list_students() -> list[str]:
    return list(STUDENTS)
