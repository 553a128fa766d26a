"""Image lists for training and evaluation: folder trees and list files."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from core.imageio import IMAGE_EXTENSIONS

__all__ = ["ImageList", "list_images", "read_list_file"]


@dataclass(frozen=True)
class ImageList:
    """Image paths with optional integer class labels (``-1`` = unlabelled).

    Attributes:
        paths: absolute image paths, in a deterministic order.
        labels: one label per path.
        classes: class names (sub-folder names for folder trees), index = label.
    """

    paths: tuple[Path, ...]
    labels: tuple[int, ...]
    classes: tuple[str, ...] = ()

    def __len__(self) -> int:
        return len(self.paths)

    def subset(self, idx: list[int]) -> ImageList:
        return ImageList(tuple(self.paths[i] for i in idx), tuple(self.labels[i] for i in idx),
                         self.classes)

    def per_class(self, n: int, seed: int = 0) -> ImageList:
        """``n`` labelled images of each class (seeded choice, original order kept)."""
        rng = np.random.default_rng(seed)
        labels = np.asarray(self.labels)
        keep: list[int] = []
        for c in np.unique(labels[labels >= 0]):
            idx = np.flatnonzero(labels == c)
            keep += rng.choice(idx, size=min(n, len(idx)), replace=False).tolist()
        return self.subset(sorted(keep))


def _is_hidden(name: str) -> bool:
    return name.startswith(".") or name in ("@eaDir", "__MACOSX")


def list_images(source: str | os.PathLike[str], *, root: str | os.PathLike[str] | None = None,
                labelled: bool | None = None) -> ImageList:
    """Images of a folder tree or a list file.

    A folder: every image below it (hidden entries skipped); when ``labelled`` (the default
    when the folder has sub-folders with images and no loose images), the first-level
    sub-folder is the class. A ``.txt`` file: see :func:`read_list_file`.
    """
    src = Path(source)
    if src.is_file():
        return read_list_file(src, root=root)
    if not src.is_dir():
        raise FileNotFoundError(f"no such folder or list file: {src}")
    paths: list[Path] = []
    for dirpath, dirnames, filenames in os.walk(src):
        dirnames[:] = sorted(d for d in dirnames if not _is_hidden(d))
        paths += [Path(dirpath, f) for f in sorted(filenames)
                  if not _is_hidden(f) and Path(f).suffix.lower() in IMAGE_EXTENSIONS]
    rel = [p.relative_to(src) for p in paths]
    if labelled is None:
        labelled = bool(rel) and all(len(r.parts) >= 2 for r in rel)
    if not labelled:
        return ImageList(tuple(paths), (-1,) * len(paths))
    classes = sorted({r.parts[0] for r in rel if len(r.parts) >= 2})
    index = {c: i for i, c in enumerate(classes)}
    keep = [(p, index[r.parts[0]]) for p, r in zip(paths, rel, strict=True) if len(r.parts) >= 2]
    return ImageList(tuple(p for p, _ in keep), tuple(lab for _, lab in keep), tuple(classes))


def read_list_file(path: str | os.PathLike[str], *,
                   root: str | os.PathLike[str] | None = None) -> ImageList:
    """Read ``relative/path [label ...]`` lines (the DeepHash / CIFAR split format).

    Paths are relative to ``root`` (default: the list file's folder). A single integer after
    the path is a class label; several 0/1 values are a multi-hot vector whose first set index
    is used as the label here (multi-label evaluation reads the file itself).
    """
    path = Path(path)
    base = Path(root) if root is not None else path.parent
    paths: list[Path] = []
    labels: list[int] = []
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            parts = line.split()
            if not parts:
                continue
            paths.append(base / parts[0])
            if len(parts) == 1:
                labels.append(-1)
            elif len(parts) == 2:
                try:
                    labels.append(int(parts[1]))
                except ValueError as exc:
                    raise ValueError(f"{path}:{n}: label {parts[1]!r} is not an integer") from exc
            else:
                hot = [i for i, v in enumerate(parts[1:]) if v not in ("0", "0.0")]
                labels.append(hot[0] if hot else -1)
    return ImageList(tuple(paths), tuple(labels))
