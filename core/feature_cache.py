"""On-disk cache of a frozen teacher's features for augmented views of images.

Context-unaware distillation regresses a *frozen* teacher, so the teacher's output for a
given (image, view) never changes and is computed once. Views are deterministic functions of
(image identity, seed, view index) — see :func:`core.preprocess.augment_view` — so the cache
is keyed by image (path, size, mtime) and view. Optionally the view's pixels are cached too,
so later epochs cost only student passes (no JPEG decoding or augmentation).

Layout of one cache folder (named by a hash of teacher, input size, augmentation and seed):
``meta.json`` (image keys, shapes), ``feats.f16`` ``[N, V, D]`` float16, ``valid.u8`` ``[N, V]``,
and with pixels ``pixels.u8`` ``[N, V, 3, S, S]`` — all numpy memmaps.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
from pathlib import Path

import numpy as np

__all__ = ["ViewCache", "image_key"]

log = logging.getLogger(__name__)


def image_key(path: str | os.PathLike[str]) -> str:
    """Identity of an image file for caching: absolute path, size and mtime."""
    p = Path(path).resolve()
    st = p.stat()
    return f"{p}|{st.st_size}|{st.st_mtime_ns}"


class ViewCache:
    """Teacher features (and optionally pixels) for ``views`` views of ``len(keys)`` images.

    Args:
        root: parent folder for caches.
        spec: everything that determines the teacher's output apart from the image (teacher
            name and weights, input size, augmentation, seed); hashed into the folder name.
        keys: image identities (see :func:`image_key`), row order of the arrays.
        views, dim, input_size: array shapes.
        store_pixels: also keep the uint8 view pixels.
        create: allocate the files (only one process should; others pass ``False`` and open
            them after a barrier).
    """

    def __init__(self, root: str | os.PathLike[str], spec: dict, keys: list[str], views: int,
                 dim: int, input_size: int, store_pixels: bool, create: bool = True) -> None:
        digest = hashlib.sha1(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:16]
        self.dir = Path(root) / digest
        self.keys = list(keys)
        self.n, self.views, self.dim, self.size = len(keys), views, dim, input_size
        self.store_pixels = store_pixels
        if create:
            self._prepare(spec)
        self._open()

    # ----------------------------------------------------------------- files
    def _shapes(self) -> dict[str, tuple[tuple[int, ...], type]]:
        s = {"feats.f16": ((self.n, self.views, self.dim), np.float16),
             "valid.u8": ((self.n, self.views), np.uint8)}
        if self.store_pixels:
            s["pixels.u8"] = ((self.n, self.views, 3, self.size, self.size), np.uint8)
        return s

    def _prepare(self, spec: dict) -> None:
        meta_path = self.dir / "meta.json"
        old = None
        if meta_path.exists():
            try:
                old = json.loads(meta_path.read_text())
            except (OSError, ValueError):
                old = None
        if (old and old.get("keys") == self.keys and old.get("views") == self.views
                and old.get("store_pixels") == self.store_pixels
                and all((self.dir / f).exists() for f in self._shapes())):
            return
        tmp = self.dir.with_name(self.dir.name + ".new")
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        for name, (shape, dtype) in self._shapes().items():
            np.memmap(tmp / name, dtype=dtype, mode="w+", shape=shape).flush()
        if old and old.get("views") == self.views and old.get("dim") == self.dim:
            self._carry_over(old, tmp)
        (tmp / "meta.json").write_text(json.dumps(
            {"spec": spec, "keys": self.keys, "views": self.views, "dim": self.dim,
             "input_size": self.size, "store_pixels": self.store_pixels}))
        shutil.rmtree(self.dir, ignore_errors=True)
        os.replace(tmp, self.dir)

    def _carry_over(self, old: dict, tmp: Path) -> None:
        """Keep cached rows of images that are still in the list."""
        index = {k: i for i, k in enumerate(old["keys"])}
        pairs = [(index[k], j) for j, k in enumerate(self.keys) if k in index]
        if not pairs:
            return
        src_rows, dst_rows = (np.array(x) for x in zip(*pairs, strict=True))
        n_old = len(old["keys"])
        for name, (shape, dtype) in self._shapes().items():
            if not (self.dir / name).exists():
                continue
            src = np.memmap(self.dir / name, dtype=dtype, mode="r", shape=(n_old, *shape[1:]))
            dst = np.memmap(tmp / name, dtype=dtype, mode="r+", shape=shape)
            dst[dst_rows] = src[src_rows]
            dst.flush()
        log.info("feature cache: kept %d of %d images", len(pairs), self.n)

    def _open(self) -> None:
        shapes = self._shapes()
        self.feats = np.memmap(self.dir / "feats.f16", dtype=np.float16, mode="r+",
                               shape=shapes["feats.f16"][0])
        self.valid = np.memmap(self.dir / "valid.u8", dtype=np.uint8, mode="r+",
                               shape=shapes["valid.u8"][0])
        self.pixels = (np.memmap(self.dir / "pixels.u8", dtype=np.uint8, mode="r+",
                                 shape=shapes["pixels.u8"][0]) if self.store_pixels else None)

    # ----------------------------------------------------------------- access
    def missing_rows(self) -> np.ndarray:
        """Rows with at least one view not yet computed."""
        return np.flatnonzero(~np.asarray(self.valid, dtype=bool).all(axis=1))

    def put(self, row: int, view: int, feat: np.ndarray, pixels: np.ndarray | None) -> None:
        self.feats[row, view] = feat.astype(np.float16)
        if self.pixels is not None and pixels is not None:
            self.pixels[row, view] = pixels
        self.valid[row, view] = 1

    def flush(self) -> None:
        self.feats.flush()
        self.valid.flush()
        if self.pixels is not None:
            self.pixels.flush()

    def get(self, rows: np.ndarray, views: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        """Features ``[B, D]`` float32 and pixels ``[B, 3, S, S]`` (or ``None``)."""
        order = np.argsort(rows, kind="stable")  # sequential reads are much faster
        inv = np.empty_like(order)
        inv[order] = np.arange(len(order))
        r, v = rows[order], views[order]
        f = np.asarray(self.feats[r, v], dtype=np.float32)[inv]
        p = None if self.pixels is None else np.asarray(self.pixels[r, v])[inv]
        return f, p
