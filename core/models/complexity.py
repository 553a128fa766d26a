"""Parameter and multiply–accumulate (MAC) counts, measured by running the model once."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

__all__ = ["Complexity", "count_macs", "count_params", "measure"]


@dataclass(frozen=True)
class Complexity:
    params: int
    macs: int
    input_size: int


def count_params(model: nn.Module) -> int:
    """Number of parameters (trainable or not; buffers excluded)."""
    return sum(p.numel() for p in model.parameters())


@torch.no_grad()
def _run_counting(model: nn.Module, input_size: int, features_only: bool) -> tuple[int, int]:
    """Run one ``3×input_size×input_size`` image; return (MACs, parameters of modules used)."""
    macs = 0
    used: dict[int, nn.Module] = {}

    def hook(m: nn.Module, _inp, out) -> None:
        nonlocal macs
        used[id(m)] = m
        if isinstance(m, nn.Conv2d):
            kh, kw = m.kernel_size
            macs += out.numel() // out.shape[0] * (m.in_channels // m.groups) * kh * kw
        elif isinstance(m, nn.Linear):
            macs += out.numel() // out.shape[0] * m.in_features

    hooks = [m.register_forward_hook(hook) for m in model.modules()]
    was_training = model.training
    model.eval()
    try:
        device = next(model.parameters()).device
        x = torch.zeros(1, 3, input_size, input_size, device=device)
        model.forward_features(x) if features_only else model(x)
    finally:
        model.train(was_training)
        for h in hooks:
            h.remove()
    params = sum(p.numel() for m in used.values() for p in m.parameters(recurse=False))
    return macs, params


def count_macs(model: nn.Module, input_size: int, *, features_only: bool = False) -> int:
    """MACs of one forward pass of a single ``3×input_size×input_size`` image.

    Counts convolutions and linear layers (the standard convention; BN, activations and
    pooling are not counted). ``features_only`` runs ``model.forward_features`` (a backbone
    without its classifier). Restores the model's train/eval mode.
    """
    return _run_counting(model, input_size, features_only)[0]


def measure(model: nn.Module, input_size: int, *, features_only: bool = False) -> Complexity:
    """Parameters and MACs; with ``features_only`` both cover only the feature extractor
    (e.g. a teacher without its ImageNet classifier)."""
    macs, used_params = _run_counting(model, input_size, features_only)
    return Complexity(used_params if features_only else count_params(model), macs, input_size)
