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
def count_macs(model: nn.Module, input_size: int) -> int:
    """MACs of one forward pass of a single ``3×input_size×input_size`` image.

    Counts convolutions and linear layers (the standard convention; BN, activations and
    pooling are not counted). Restores the model's train/eval mode.
    """
    total = 0

    def conv_hook(m: nn.Conv2d, _inp, out: torch.Tensor) -> None:
        nonlocal total
        kh, kw = m.kernel_size
        total += out.numel() // out.shape[0] * (m.in_channels // m.groups) * kh * kw

    def linear_hook(m: nn.Linear, _inp, out: torch.Tensor) -> None:
        nonlocal total
        total += out.numel() // out.shape[0] * m.in_features

    hooks = []
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            hooks.append(m.register_forward_hook(conv_hook))
        elif isinstance(m, nn.Linear):
            hooks.append(m.register_forward_hook(linear_hook))
    was_training = model.training
    model.eval()
    try:
        device = next(model.parameters()).device
        model(torch.zeros(1, 3, input_size, input_size, device=device))
    finally:
        model.train(was_training)
        for h in hooks:
            h.remove()
    return total


def measure(model: nn.Module, input_size: int) -> Complexity:
    return Complexity(count_params(model), count_macs(model, input_size), input_size)
