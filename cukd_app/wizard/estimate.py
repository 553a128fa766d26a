"""Time estimates of the speed presets on this machine (Qt-free).

:func:`measure_speed` times the base model's forward (and forward+backward) pass on a small
batch at its input size; :func:`estimate_seconds` turns that into an estimate of each preset
from the number of training and validation images and the preset's epochs and views (an
upper bound: early stopping often ends sooner). Decoding is counted at a fixed cost per view.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path

from core.finetune import PRESETS

__all__ = ["MachineSpeed", "estimate_seconds", "format_duration", "measure_speed"]

#: Seconds to decode and augment one view (JPEG draft, small photos), per decode thread.
DECODE_S = 0.004


@dataclass(frozen=True)
class MachineSpeed:
    """Seconds per image: forward (eval), forward + backward (train)."""

    forward_s: float
    train_s: float
    input_size: int


def measure_speed(model_path: str | os.PathLike[str], batch: int = 8) -> MachineSpeed:
    """Time the model file's student on random pixels (a second or two)."""
    import torch

    from core.checkpoint import load_student

    student, _ = load_student(Path(model_path))
    size = int(student.preprocess.input_size)
    x = torch.randint(0, 256, (batch, 3, size, size), dtype=torch.uint8)
    with torch.no_grad():
        student(x[:2])  # warm-up
        t = time.perf_counter()
        student(x)
        fwd = (time.perf_counter() - t) / batch
    student.train()
    t = time.perf_counter()
    student(x).float().pow(2).mean().backward()
    train = (time.perf_counter() - t) / batch
    return MachineSpeed(fwd, max(train, fwd), size)


def estimate_seconds(speed: MachineSpeed, n_train: int, n_val: int, preset: str,
                     *, distill_images: int = 0, distill_epochs: int = 0) -> float:
    """Estimated wall seconds of one preset (features/pixels, epochs, validation)."""
    p = PRESETS[preset]
    views, epochs, mode = int(p.get("views", 4)), int(p["epochs"]), p["train_mode"]
    decode = (n_train * views + n_val) * DECODE_S / 2
    if mode == "head":
        s = decode + (n_train * views + n_val) * speed.forward_s + epochs * n_train * 2e-5
    else:
        per_img = speed.train_s * (0.45 if mode == "last_stages" else 1.0) + speed.forward_s
        validate = (n_train + n_val) * speed.forward_s
        s = decode + epochs * (n_train * per_img + validate)
    s += 2 * (n_train + n_val) * speed.forward_s  # comparison with the current model
    if distill_images:
        s += distill_images * 6 * DECODE_S + distill_epochs * distill_images * (
            speed.train_s + 3 * speed.forward_s)
    return s


def format_duration(seconds: float) -> str:
    """``"about 40 s"``, ``"about 3 min"``, ``"about 1 h 20 min"``."""
    if seconds < 60:
        return f"about {max(5, round(seconds / 5) * 5):.0f} s"
    minutes = round(seconds / 60)
    if minutes < 60:
        return f"about {minutes} min"
    return f"about {minutes // 60} h {minutes % 60:02d} min"
