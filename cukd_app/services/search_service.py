"""Searches off the GUI thread; the newest request wins (generation token).

Each :meth:`SearchService.search` bumps the generation; a result whose generation is not the
current one is dropped (``stale`` signal) instead of replacing newer results.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path

from PIL import Image
from PySide6.QtCore import QObject, QThreadPool, Signal, Slot
from PySide6.QtGui import QImage

from core.library import SearchHit
from cukd_app.notifications import Notifier
from cukd_app.services.library_service import LibraryService
from cukd_app.workers import Worker, WorkerError

__all__ = ["SearchOutcome", "SearchRequest", "SearchService", "qimage_to_pil"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class SearchRequest:
    """A query: an image file (inside or outside the library) or an in-memory image."""

    path: str | None = None
    image: QImage | None = field(default=None, compare=False)
    k: int = 60

    @property
    def label(self) -> str:
        """Short description for the UI."""
        return Path(self.path).name if self.path else "pasted image"


@dataclass(frozen=True)
class SearchOutcome:
    """Results of one request."""

    request: SearchRequest
    generation: int
    hits: tuple[SearchHit, ...]
    elapsed_ms: float


def qimage_to_pil(image: QImage) -> Image.Image:
    """Copy a ``QImage`` into an RGB PIL image (safe on any thread)."""
    img = image.convertToFormat(QImage.Format.Format_RGB888)
    w, h, bpl = img.width(), img.height(), img.bytesPerLine()
    data = bytes(img.constBits())[: bpl * h]
    return Image.frombuffer("RGB", (w, h), data, "raw", "RGB", bpl, 1).copy()


class SearchService(QObject):
    """Runs searches against the library service's engine.

    Signals:
        started(SearchRequest, int): a request began (its generation).
        finished(SearchOutcome): results of the current request.
        failed(WorkerError): the current request failed (also sent to the notifier).
        stale(int): a result of an older generation was dropped.
        warmedUp(float): :meth:`warm_up` ran its search (milliseconds it took).
    """

    started = Signal(object, int)
    finished = Signal(object)
    failed = Signal(object)
    stale = Signal(int)
    warmedUp = Signal(float)

    def __init__(self, library: LibraryService, notifier: Notifier, threads: int = 1,
                 parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._library = library
        self._notifier = notifier
        self._pool = QThreadPool(self)
        self._pool.setMaxThreadCount(max(1, threads))
        self._warm_pool = QThreadPool(self)
        self._warm_pool.setMaxThreadCount(1)
        self.generation = 0
        self.last: SearchOutcome | None = None
        self._workers: set[Worker] = set()

    def search(self, request: SearchRequest) -> int:
        """Start a search; returns its generation (older pending results will be dropped)."""
        self.generation += 1
        gen = self.generation
        lib = self._library.library
        if lib is None:
            self._notifier.warning("Search needs a model; none is installed."
                                   if self._library.ready else "The library is still opening.")
            return gen

        def run() -> SearchOutcome:
            t0 = time.perf_counter()
            query = request.path if request.path is not None else qimage_to_pil(
                request.image) if request.image is not None else None
            if query is None:
                raise ValueError("empty query")
            hits = lib.search(query, k=request.k)
            return SearchOutcome(request, gen, tuple(hits), (time.perf_counter() - t0) * 1e3)

        w = Worker(f"Searching with {request.label}", run)
        self._workers.add(w)
        w.signals.result.connect(self._on_result)
        w.signals.error.connect(lambda err, g=gen: self._on_error(err, g))
        w.signals.finished.connect(lambda: self._workers.discard(w))
        self.started.emit(request, gen)
        # Newest first: a queued older request is not worth running.
        self._pool.clear()
        self._pool.start(w)
        return gen

    def warm_up(self) -> bool:
        """Run one tiny search in the background, so the first search the user makes is as
        fast as later ones: the model's first forward pass (its threads and buffers), the
        query path and the index pages are all paid for here. It runs on a thread of its
        own (a search requested meanwhile never queues behind it) and never shows results.
        Returns False when there is no model to warm."""
        lib = self._library.library
        if lib is None:
            return False

        def run() -> float:
            t0 = time.perf_counter()
            probe = Image.linear_gradient("L").resize((96, 64)).convert("RGB")
            lib.search(probe, k=1)
            return (time.perf_counter() - t0) * 1e3

        w = Worker("Preparing the model", run)
        self._workers.add(w)
        w.signals.result.connect(self._on_warmed_up)
        w.signals.error.connect(lambda err: logger.info("warm-up search failed: %s",
                                                        err.exception))
        w.signals.finished.connect(lambda: self._workers.discard(w))
        self._warm_pool.start(w)
        return True

    @Slot(float)
    def _on_warmed_up(self, ms: float) -> None:
        logger.info("model warmed up in %.0f ms", ms)
        self.warmedUp.emit(ms)

    def cancel(self) -> None:
        """Forget the running request (its result will be dropped)."""
        self.generation += 1
        self._pool.clear()

    @Slot(object)
    def _on_result(self, out: SearchOutcome) -> None:
        if out.generation != self.generation:
            logger.debug("dropping stale results of generation %d", out.generation)
            self.stale.emit(out.generation)
            return
        self.last = out
        self.finished.emit(out)

    def _on_error(self, err: WorkerError, gen: int) -> None:
        if gen != self.generation:
            self.stale.emit(gen)
            return
        self._notifier.error(err)
        self.failed.emit(err)

    def wait(self, ms: int = 30000) -> bool:
        """Wait for running searches and the warm-up (shutdown and tests)."""
        return self._pool.waitForDone(ms) and self._warm_pool.waitForDone(ms)
