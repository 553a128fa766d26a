"""Background work: a ``QRunnable`` plus a separate ``QObject`` carrying its signals.

``run()`` always emits ``error`` *or* ``result``, then ``finished`` (napari / superqt). The
function runs with keyword arguments ``on_progress`` and ``should_stop`` when it asks for them
(Orange3 / Anki style), so core functions stay Qt-free and cancellation is cooperative.
Workers never touch widgets or ``QPixmap``; results reach the GUI thread through queued
signals.
"""

from __future__ import annotations

import inspect
import logging
import threading
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from PySide6.QtCore import QObject, QRunnable, QThreadPool, Signal

__all__ = ["Worker", "WorkerError", "WorkerSignals", "start_worker"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class WorkerError:
    """A failure handed to the GUI: what was being done, the exception and its traceback."""

    task: str
    exception: BaseException
    traceback: str

    @property
    def message(self) -> str:
        """One sentence for the notification area (never a traceback)."""
        from core.errors import user_message

        msg = user_message(self.exception)
        if msg is None:
            # The exception's own text is for developers: it goes to the log with the
            # traceback; "Details…" explains in words.
            return f"{self.task} failed because of an unexpected problem."
        return f"{self.task} failed: {msg}"

    @property
    def expected(self) -> bool:
        """A known kind of problem (bad file, full disk, damaged library), not a bug."""
        from core.errors import user_message

        return user_message(self.exception) is not None


class WorkerSignals(QObject):
    """Signals of one :class:`Worker` (a QRunnable cannot have signals itself)."""

    started = Signal()
    progress = Signal(object)
    result = Signal(object)
    error = Signal(object)  # WorkerError
    finished = Signal()


class Worker(QRunnable):
    """Run ``fn(*args, **kwargs)`` on a thread pool.

    Args:
        task: human-readable name ("Searching", "Indexing Photos"), used in error messages.
        fn: the function; if it accepts ``on_progress`` / ``should_stop`` they are passed.
    """

    #: Exception types that are an expected outcome (logged briefly, without a traceback).
    expected_errors: tuple[type[BaseException], ...] = ()

    def __init__(self, task: str, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> None:
        super().__init__()
        self.setAutoDelete(True)
        self.task = task
        self.signals = WorkerSignals()
        self._fn, self._args, self._kwargs = fn, args, kwargs
        self._stop = threading.Event()
        try:
            params = inspect.signature(fn).parameters
        except (TypeError, ValueError):
            params = {}  # type: ignore[assignment]
        if "on_progress" in params:
            self._kwargs.setdefault("on_progress", self.signals.progress.emit)
        if "should_stop" in params:
            self._kwargs.setdefault("should_stop", self._stop.is_set)

    def cancel(self) -> None:
        """Ask the function to stop at its next ``should_stop`` check."""
        self._stop.set()

    @property
    def cancelled(self) -> bool:
        """Whether :meth:`cancel` was called."""
        return self._stop.is_set()

    def run(self) -> None:
        """Emit started, then error or result, then finished."""
        sig = self.signals
        try:
            sig.started.emit()
            try:
                out = self._fn(*self._args, **self._kwargs)
            except Exception as exc:
                if isinstance(exc, self.expected_errors):
                    logger.info("%s failed: %s", self.task, exc)
                else:
                    logger.exception("%s failed", self.task)
                sig.error.emit(WorkerError(self.task, exc, traceback.format_exc()))
            else:
                sig.result.emit(out)
            finally:
                sig.finished.emit()
        except RuntimeError:  # signals object deleted at shutdown
            logger.debug("%s: receiver gone", self.task)


def start_worker(pool: QThreadPool, worker: Worker, *, priority: int = 0) -> Worker:
    """Start ``worker`` on ``pool`` and return it (for chaining signal connections)."""
    pool.start(worker, priority)
    return worker
