"""Time estimates of the speed presets on this machine (Qt-free).

:func:`measure_speed` does a few real steps of a run before anything is estimated: it loads
the base model file (timed on a second load: a run loads a model twice), times its forward (and
forward+backward) pass on a small batch at its input size, saves its weights once (a run
saves its state after every epoch) and decodes and augments a few of the user's own photos
(large photos decode far slower than small ones). :func:`estimate_range` turns that into the
shortest and the longest time of a preset — the shortest when early stopping ends training
after ``patience + 1`` epochs, the longest when every epoch runs — including the fixed costs
(loading, saving, comparing both models on the split) and not only the training steps, and
widened by :data:`VARIATION` for a busy computer.
"""

from __future__ import annotations

import io
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from core.finetune import FinetuneConfig

__all__ = ["MachineSpeed", "estimate_range", "estimate_seconds", "format_duration",
           "format_range", "measure_speed"]

#: Seconds to decode one photo and to augment one view when no photo could be timed.
DECODE_S = 0.004
VIEW_S = 0.002
#: Setting up a run (caches, threads, the embedding PCA) beyond what is measured.
SETUP_S = 0.5
#: State saves per epoch, in units of one save of the model's weights (the training state
#: holds the network, its best copy and the optimiser).
SAVES_PER_EPOCH = 4
#: How much a run may differ from the measured costs (other programs, disk caches): the range
#: is widened by this share on both sides.
VARIATION = 0.2
#: Photos timed by :func:`measure_speed`.
SAMPLE_PHOTOS = 4


@dataclass(frozen=True)
class MachineSpeed:
    """Measured costs on this machine.

    Attributes:
        forward_s, train_s: seconds per image of a forward (eval) and a forward + backward
            (train) pass.
        input_size: the model's input size.
        load_s: loading the model file once.
        decode_s: decoding one photo (at twice the input size, as training does).
        view_s: augmenting one view of a decoded photo.
        save_s: saving the model's weights once.
    """

    forward_s: float
    train_s: float
    input_size: int
    load_s: float = 0.0
    decode_s: float = DECODE_S
    view_s: float = VIEW_S
    save_s: float = 0.0


def measure_speed(model_path: str | os.PathLike[str], batch: int = 8,
                  samples: Sequence[str | os.PathLike[str]] = ()) -> MachineSpeed:
    """Time loading, a few passes, a save and a few ``samples`` photos (a few seconds)."""
    import torch

    from core.checkpoint import load_student
    from core.imageio import ImageLoadError, load_image
    from core.preprocess import augment_view

    student, _ = load_student(Path(model_path))  # the first load also imports modules
    t = time.perf_counter()
    load_student(Path(model_path))
    load = time.perf_counter() - t
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
    t = time.perf_counter()
    torch.save(student.state_dict(), io.BytesIO())
    save = time.perf_counter() - t

    aug = FinetuneConfig().augment
    decodes: list[float] = []
    views: list[float] = []
    for p in list(samples)[:SAMPLE_PHOTOS]:
        t = time.perf_counter()
        try:
            im = load_image(p, draft_size=2 * size)
        except ImageLoadError:
            continue
        t1 = time.perf_counter()
        augment_view(im, size, aug, 0, 1)
        decodes.append(t1 - t)
        views.append(time.perf_counter() - t1)
    return MachineSpeed(fwd, max(train, fwd), size, load,
                        _median(decodes) if decodes else DECODE_S,
                        _median(views) if views else VIEW_S, save)


def _median(values: list[float]) -> float:
    v = sorted(values)
    mid = len(v) // 2
    return v[mid] if len(v) % 2 else (v[mid - 1] + v[mid]) / 2


def estimate_range(speed: MachineSpeed, n_train: int, n_val: int, preset: str, *,
                   distill_images: int = 0, distill_epochs: int = 0, compare: bool = True,
                   overrides: Sequence[tuple[str, Any]] = ()) -> tuple[float, float]:
    """Shortest and longest wall seconds of one preset, fixed costs included.

    Args:
        speed: :func:`measure_speed` of the base model.
        n_train, n_val: images of the split.
        preset: ``fast`` | ``balanced`` | ``thorough``; ``overrides`` change its config the
            way the run's overrides do.
        distill_images, distill_epochs: step 1 (0: none).
        compare: the current model is evaluated on the split too.
    """
    cfg = FinetuneConfig.from_preset(preset, **dict(overrides))
    views, epochs = cfg.views, cfg.epochs
    min_epochs = min(epochs, cfg.patience + 1) if cfg.patience > 0 else epochs
    threads = max(1, cfg.decode_threads)
    n_img = n_train + n_val
    n_views = n_train * views + n_val
    prepare = (n_img * speed.decode_s + n_views * speed.view_s) / threads
    per_epoch = SAVES_PER_EPOCH * speed.save_s
    if cfg.train_mode == "head":
        prepare += n_views * speed.forward_s  # features computed once
        per_epoch += n_train * 2e-5 + n_img * 1e-5
    else:
        per_img = speed.train_s * (0.45 if cfg.train_mode == "last_stages" else 1.0)
        per_epoch += n_train * (per_img + speed.forward_s) + n_img * speed.forward_s
    fixed = SETUP_S + 2 * speed.load_s + speed.save_s  # load the base and the new model, save
    evaluate = (2 if compare else 1) * n_img * (speed.decode_s / 2 + speed.forward_s)
    distill = 0.0
    if distill_images:
        distill = distill_images * 6 * speed.decode_s + distill_epochs * distill_images * (
            speed.train_s + 3 * speed.forward_s)
    base = fixed + prepare + evaluate + distill
    return ((1 - VARIATION) * (base + min_epochs * per_epoch),
            (1 + VARIATION) * (base + epochs * per_epoch))


def estimate_seconds(speed: MachineSpeed, n_train: int, n_val: int, preset: str,
                     **kw: Any) -> float:
    """The longest time of :func:`estimate_range` (every epoch runs)."""
    return estimate_range(speed, n_train, n_val, preset, **kw)[1]


def format_duration(seconds: float) -> str:
    """``"about 40 s"``, ``"about 3 min"``, ``"about 1 h 20 min"``."""
    return "about " + _duration(seconds)


def _duration(seconds: float) -> str:
    if seconds < 60:
        return f"{max(5, round(seconds / 5) * 5):.0f} s"
    minutes = round(seconds / 60)
    if minutes < 60:
        return f"{minutes} min"
    return f"{minutes // 60} h {minutes % 60:02d} min"


def format_range(low: float, high: float) -> str:
    """``"about 15–25 s"``, ``"about 2–5 min"``, ``"about 40 s – 2 min"`` (one value when
    both round to the same)."""
    a, b = _duration(low), _duration(max(low, high))
    if a == b:
        return f"about {a}"
    ua, ub = a.split(" ", 1)[1], b.split(" ", 1)[1]
    if ua == ub and ua in ("s", "min"):
        return f"about {a.split(' ')[0]}–{b}"
    return f"about {a} – {b}"
