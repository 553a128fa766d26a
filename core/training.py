"""Helpers shared by the training loops (step 1 distillation, step 2 fine-tuning)."""

from __future__ import annotations

import hashlib
import math
import os

import torch
import torch.distributed as dist

from core.imageio import file_fingerprint

__all__ = ["barrier", "cosine_lr", "dist_setup", "image_seed"]


def dist_setup() -> tuple[int, int, bool]:
    """(rank, world size, whether this call initialised the process group).

    Under ``torchrun`` (``WORLD_SIZE`` > 1) the group uses nccl with CUDA, else gloo.
    """
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return 0, 1, False
    created = False
    if not dist.is_initialized():
        dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
        created = True
    return dist.get_rank(), dist.get_world_size(), created


def barrier(world: int) -> None:
    if world > 1:
        dist.barrier()


def image_seed(path: str | os.PathLike[str], seed: int) -> int:
    """Per-image augmentation seed from the file's content fingerprint
    (:func:`core.imageio.file_fingerprint`), so a copy of the data set on another machine or
    in another folder gets the same views (a file that cannot be read: its path)."""
    try:
        digest = bytes.fromhex(file_fingerprint(path))
    except OSError:
        digest = hashlib.sha1(os.fsencode(path)).digest()
    return int.from_bytes(digest[:4], "little") ^ seed


def cosine_lr(step: int, total: int, warmup: int, base: float) -> float:
    """Linear warm-up over ``warmup`` steps, then cosine decay to 0 at ``total``."""
    if step < warmup:
        return base * (step + 1) / warmup
    t = (step - warmup) / max(1, total - warmup)
    return base * 0.5 * (1 + math.cos(math.pi * min(1.0, t)))
