"""Thumbnails decoded off the GUI thread, with an on-disk cache in the user cache dir.

Workers return ``QImage`` (never ``QPixmap``); the GUI converts when painting. The cache key
is the file's path, size, mtime and the thumbnail edge, so an edited photo gets a new
thumbnail. Nothing is written next to the user's photos. A photo with transparency keeps it
(RGBA): the grids draw a checkerboard behind it instead of a blank white tile.
"""

from __future__ import annotations

import hashlib
import io
import logging
import os
from collections import OrderedDict
from pathlib import Path

from PIL import Image
from PySide6.QtCore import QObject, QThreadPool, Signal, Slot
from PySide6.QtGui import QImage

from core.imageio import ImageLoadError, load_image
from cukd_app.workers import Worker, WorkerError

__all__ = ["CACHE_VERSION", "ThumbnailCache", "ThumbnailLoader", "pil_to_qimage"]

logger = logging.getLogger(__name__)


def pil_to_qimage(im: Image.Image) -> QImage:
    """An RGB/RGBA PIL image as a ``QImage`` that owns its pixels (thread-safe)."""
    if im.mode not in ("RGB", "RGBA"):
        im = im.convert("RGBA" if "A" in im.getbands() else "RGB")
    fmt = QImage.Format.Format_RGBA8888 if im.mode == "RGBA" else QImage.Format.Format_RGB888
    data = im.tobytes()
    bpl = len(im.mode) * im.width
    return QImage(data, im.width, im.height, bpl, fmt).copy()


#: Part of every cache key; raised when thumbnails are made differently (2: transparency
#: kept instead of composited on white), so older cached ones are not shown.
CACHE_VERSION = 2


class ThumbnailCache:
    """JPEG/PNG thumbnails under ``directory``, named by a hash of the source's identity."""

    def __init__(self, directory: str | os.PathLike[str]) -> None:
        self.directory = Path(directory)

    def key(self, path: str, edge: int) -> str | None:
        """Cache key for ``path`` at ``edge`` pixels, or None if the file is unreadable."""
        try:
            st = os.stat(path)
        except OSError:
            return None
        ident = f"{os.path.abspath(path)}|{st.st_size}|{st.st_mtime_ns}|{edge}|v{CACHE_VERSION}"
        return hashlib.sha1(ident.encode("utf-8", "surrogatepass")).hexdigest()

    def file(self, key: str) -> Path:
        """Where a key's thumbnail lives."""
        return self.directory / key[:2] / f"{key}.png"

    def load(self, path: str, edge: int) -> QImage:
        """The thumbnail (from the cache, or decoded and cached). Raises ImageLoadError."""
        key = self.key(path, edge)
        if key is None:
            raise ImageLoadError(path, "unreadable", "file missing")
        cached = self.file(key)
        if cached.is_file():
            img = QImage(str(cached))
            if not img.isNull():
                return img
        im = load_image(path, draft_size=edge, keep_alpha=True)
        im.thumbnail((edge, edge), Image.Resampling.BILINEAR, reducing_gap=2.0)
        try:
            cached.parent.mkdir(parents=True, exist_ok=True)
            buf = io.BytesIO()
            im.save(buf, "PNG", compress_level=1)
            tmp = cached.with_suffix(".tmp")
            tmp.write_bytes(buf.getvalue())
            os.replace(tmp, cached)
        except OSError as exc:  # a full or read-only cache must not break browsing
            logger.warning("cannot write thumbnail cache %s: %s", cached, exc)
        return pil_to_qimage(im)


class ThumbnailLoader(QObject):
    """Loads thumbnails on a thread pool; results arrive as ``ready(path, QImage)``.

    Signals:
        ready(str, QImage): a thumbnail for ``path``.
        failed(str, str): ``path`` could not be decoded (reason).
    """

    ready = Signal(str, QImage)
    failed = Signal(str, str)

    def __init__(self, cache: ThumbnailCache, edge: int = 160, threads: int = 2,
                 memory_items: int = 600, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.cache = cache
        self.edge = edge
        self._pool = QThreadPool(self)
        self._pool.setMaxThreadCount(max(1, threads))
        self._pending: set[str] = set()
        self._memory: OrderedDict[str, QImage] = OrderedDict()
        self._memory_items = memory_items
        self._workers: set[Worker] = set()

    def set_threads(self, threads: int) -> None:
        """Change the pool size."""
        self._pool.setMaxThreadCount(max(1, threads))

    def set_edge(self, edge: int) -> None:
        """Change the thumbnail size (forgets in-memory thumbnails)."""
        if edge != self.edge:
            self.edge = edge
            self._memory.clear()

    def cached(self, path: str) -> QImage | None:
        """An already loaded thumbnail, if any (GUI thread)."""
        img = self._memory.get(path)
        if img is not None:
            self._memory.move_to_end(path)
        return img

    def request(self, path: str) -> None:
        """Load ``path`` unless loaded or pending; ``ready`` fires later (even if cached)."""
        if path in self._pending:
            return
        img = self.cached(path)
        if img is not None:
            self.ready.emit(path, img)
            return
        self._pending.add(path)
        edge = self.edge
        w = Worker("Loading a thumbnail", self.cache.load, path, edge)
        w.expected_errors = (ImageLoadError,)
        self._workers.add(w)
        w.signals.result.connect(lambda img, p=path, e=edge: self._done(p, e, img))
        w.signals.error.connect(lambda err, p=path: self._error(p, err))
        w.signals.finished.connect(lambda: self._workers.discard(w))
        self._pool.start(w)

    def clear_pending(self) -> None:
        """Drop queued (not yet started) requests, e.g. when results change."""
        self._pool.clear()
        self._pending.clear()

    def _done(self, path: str, edge: int, img: QImage) -> None:
        self._pending.discard(path)
        if edge != self.edge:
            return
        self._memory[path] = img
        while len(self._memory) > self._memory_items:
            self._memory.popitem(last=False)
        self.ready.emit(path, img)

    @Slot(str, object)
    def _error(self, path: str, err: WorkerError) -> None:
        self._pending.discard(path)
        exc = err.exception
        reason = exc.reason if isinstance(exc, ImageLoadError) else str(exc)
        logger.info("no thumbnail for %s: %s", path, reason)
        self.failed.emit(path, reason)

    def wait(self, ms: int = 30000) -> bool:
        """Wait for running loads (shutdown and tests)."""
        return self._pool.waitForDone(ms)
