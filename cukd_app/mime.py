"""What a drop or a paste carries: image files, folders, an in-memory image or a path."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from urllib.parse import unquote, urlparse

from PySide6.QtCore import QMimeData
from PySide6.QtGui import QImage

from core.imageio import is_image_path

__all__ = ["DropContent", "read_mime"]


@dataclass(frozen=True)
class DropContent:
    """Classified contents of a ``QMimeData``.

    Attributes:
        images: existing image files.
        folders: existing folders.
        image: an in-memory image (pasted screenshot, image dragged from a browser).
        ignored: local paths that are neither (non-image files, missing paths).
    """

    images: tuple[str, ...] = ()
    folders: tuple[str, ...] = ()
    image: QImage | None = field(default=None, compare=False)
    ignored: tuple[str, ...] = ()

    @property
    def empty(self) -> bool:
        """Nothing usable."""
        return not self.images and not self.folders and self.image is None


def _text_paths(text: str) -> list[str]:
    """Paths in pasted text: one per line, ``file://`` URLs or plain (quoted) paths."""
    out = []
    for line in text.splitlines():
        line = line.strip().strip('"').strip("'")
        if not line:
            continue
        if line.startswith("file://"):
            line = unquote(urlparse(line).path)
            if os.name == "nt" and line.startswith("/") and line[2:3] == ":":
                line = line[1:]
        out.append(os.path.expanduser(line))
    return out


def read_mime(mime: QMimeData | None) -> DropContent:
    """Classify a drop/paste; local file URLs win over images, images over text."""
    if mime is None:
        return DropContent()
    paths: list[str] = []
    if mime.hasUrls():
        paths = [u.toLocalFile() for u in mime.urls() if u.isLocalFile()]
    if not paths and mime.hasText():
        candidates = _text_paths(mime.text())
        paths = [p for p in candidates if os.path.exists(p)]
    images, folders, ignored = [], [], []
    for p in paths:
        p = os.path.normpath(os.path.abspath(p))
        if os.path.isdir(p):
            folders.append(p)
        elif os.path.isfile(p) and is_image_path(p):
            images.append(p)
        else:
            ignored.append(p)
    image = None
    if not images and not folders and mime.hasImage():
        data = mime.imageData()
        if isinstance(data, QImage) and not data.isNull():
            image = data
    return DropContent(tuple(images), tuple(folders), image, tuple(ignored))
