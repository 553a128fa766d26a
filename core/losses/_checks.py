"""Shared input checks for the hashing losses (clear ``ValueError`` messages)."""

from __future__ import annotations

import torch

__all__ = ["check_codes", "check_labels"]


def check_codes(u: torch.Tensor, n_bits: int, name: str = "u") -> None:
    """Checks that ``u`` is a floating ``[B, n_bits]`` tensor with ``B >= 1``.

    Raises:
        ValueError: on a wrong type, rank, width or an empty batch.
    """
    if not isinstance(u, torch.Tensor):
        raise ValueError(f"{name} must be a torch.Tensor, got {type(u).__name__}")
    if u.dim() != 2:
        raise ValueError(f"{name} must have shape [B, n_bits={n_bits}], got {tuple(u.shape)}")
    if u.shape[1] != n_bits:
        raise ValueError(
            f"{name} has {u.shape[1]} columns but the loss was built for n_bits={n_bits}"
        )
    if u.shape[0] == 0:
        raise ValueError(f"{name} is an empty batch (shape {tuple(u.shape)})")
    if not u.is_floating_point():
        raise ValueError(f"{name} must be a floating tensor, got dtype {u.dtype}")


def check_labels(y: torch.Tensor, batch_size: int, n_classes: int | None = None) -> None:
    """Checks that ``y`` is a ``[B, C]`` one-/multi-hot label matrix matching the batch.

    Args:
        y: labels, shape ``[B, C]``.
        batch_size: expected ``B``.
        n_classes: expected ``C``, or ``None`` to accept any.

    Raises:
        ValueError: on a wrong type, rank, batch size or class count.
    """
    if not isinstance(y, torch.Tensor):
        raise ValueError(f"y must be a torch.Tensor, got {type(y).__name__}")
    if y.dim() != 2:
        raise ValueError(f"y must be one-/multi-hot with shape [B, C], got {tuple(y.shape)}")
    if y.shape[0] != batch_size:
        raise ValueError(f"y has {y.shape[0]} rows but u has batch size {batch_size}")
    if n_classes is not None and y.shape[1] != n_classes:
        raise ValueError(
            f"y has {y.shape[1]} columns but the loss was built for n_classes={n_classes}"
        )
