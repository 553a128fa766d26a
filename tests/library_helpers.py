"""Shared helpers for the library engine tests: generated images and polling waits."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from core.library import Library, LibraryConfig, ScanConfig, WatchConfig
from core.library.testing import TinyEncoder


def make_image(seed: int, size: tuple[int, int] = (80, 60)) -> Image.Image:
    """A random colour image (smooth 4x4 background + a few shapes), distinct per seed."""
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, (4, 4, 3), dtype=np.uint8)
    im = Image.fromarray(small).resize((160, 120), Image.Resampling.BILINEAR)
    draw = ImageDraw.Draw(im)
    for _ in range(4):
        x0, y0 = int(rng.integers(0, 120)), int(rng.integers(0, 90))
        w, h = int(rng.integers(20, 60)), int(rng.integers(15, 45))
        colour = tuple(int(c) for c in rng.integers(0, 256, 3))
        (draw.ellipse if rng.random() < 0.5 else draw.rectangle)(
            (x0, y0, x0 + w, y0 + h), fill=colour)
    return im.resize(size, Image.Resampling.LANCZOS)


def write_image(path: Path, seed: int = 0, size: tuple[int, int] = (80, 60),
                **save_kw: object) -> Path:
    """Write ``make_image(seed, size)`` to ``path`` (format from the extension)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    make_image(seed, size).save(path, **save_kw)
    return path


def make_tree(root: Path, n: int, start_seed: int = 0) -> list[Path]:
    """``n`` JPEG/PNG files spread over ``root`` and ``root/sub``."""
    paths = []
    for i in range(n):
        sub = root / "sub" if i % 2 else root
        ext = ".jpg" if i % 3 else ".png"
        paths.append(write_image(sub / f"img{start_seed + i:04d}{ext}", start_seed + i))
    return paths


def wait_until(pred: Callable[[], bool], timeout: float = 30.0, interval: float = 0.1) -> bool:
    """Poll ``pred`` until it is true or ``timeout`` seconds pass; returns its last value."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return True
        time.sleep(interval)
    return bool(pred())


def fast_config(**watch: float | bool) -> LibraryConfig:
    """Small batches and short watcher timings for tests."""
    return LibraryConfig(
        scan=ScanConfig(batch_size=4, decode_workers=2),
        watch=WatchConfig(**{"debounce_s": 0.3, "max_delay_s": 2.0, "poll_interval_s": 0.5,
                             "health_interval_s": 0.5, **watch}),
    )


def open_library(directory: Path, encoder: TinyEncoder | None = None, **watch: float | bool
                 ) -> Library:
    """A library in ``directory`` with the tiny test encoder and fast settings."""
    return Library.open(directory, encoder or TinyEncoder(), fast_config(**watch))


def snapshot(folder: Path) -> dict[str, tuple[int, int]]:
    """``{relative path: (size, mtime_ns)}`` of everything under ``folder``."""
    out = {}
    for p in sorted(folder.rglob("*")):
        st = p.stat()
        out[str(p.relative_to(folder))] = (st.st_size, st.st_mtime_ns)
    return out
