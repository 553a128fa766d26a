"""The one error path: notifications to the user, the log file, and the crash hook.

Every background failure goes to :meth:`Notifier.error` (from any worker's ``error`` signal),
which logs it and emits :attr:`Notifier.posted` for the non-blocking notification area.
Unexpected exceptions (``sys.excepthook`` / ``threading.excepthook``) are logged and shown in
a crash dialog. Users read sentences: a traceback goes to the log file only.
"""

from __future__ import annotations

import logging
import sys
import threading
import time
import traceback
from dataclasses import dataclass, field
from logging.handlers import RotatingFileHandler
from pathlib import Path
from types import TracebackType

from PySide6.QtCore import QObject, Signal, Slot

from cukd_app.workers import WorkerError

__all__ = ["Notification", "Notifier", "bug_explanation", "install_crash_hooks",
           "setup_logging"]

logger = logging.getLogger(__name__)

LEVELS = ("info", "warning", "error")


def bug_explanation(what: str, log_file: str | Path | None = None) -> str:
    """What "Details…" says about an unexpected problem (a bug): what happened, that nothing
    was changed, what to do, and where the technical details (the traceback) are."""
    log = (f"the log file {log_file}" if log_file
           else "the log file (Help ▸ Open log folder)")
    return (f"What happened: {what}\n\n"
            "This is a problem inside CUKD Image Search, not in your photos: no photo was "
            "changed or deleted, and the library stays as it was.\n\n"
            "What to do: try again. If it happens again, restart the app. To report the "
            f"problem, send {log}: the technical details were written there.")


@dataclass(frozen=True)
class Notification:
    """One message for the notification area."""

    level: str
    text: str
    detail: str = ""
    when: float = field(default_factory=time.time)


class Notifier(QObject):
    """Collects notifications (thread-safe to call; delivery happens on the GUI thread).

    Signals:
        posted(Notification): a new message for the notification area.
        crashed(str, str): an unexpected exception (summary, traceback) for the crash dialog.
    """

    posted = Signal(object)
    crashed = Signal(str, str)

    def __init__(self, parent: QObject | None = None, *,
                 log_file: Path | None = None) -> None:
        super().__init__(parent)
        #: Where tracebacks go (named in the explanation of an unexpected problem).
        self.log_file = log_file
        self.history: list[Notification] = []
        self.posted.connect(self._remember)

    @Slot(object)
    def _remember(self, n: Notification) -> None:
        self.history.append(n)
        del self.history[:-200]

    def info(self, text: str, detail: str = "") -> None:
        """An informational message (logged at INFO)."""
        logger.info("%s%s", text, f" ({detail})" if detail else "")
        self.posted.emit(Notification("info", text, detail))

    def warning(self, text: str, detail: str = "") -> None:
        """A warning (logged at WARNING)."""
        logger.warning("%s%s", text, f" ({detail})" if detail else "")
        self.posted.emit(Notification("warning", text, detail))

    @Slot(object)
    def error(self, err: WorkerError | BaseException | str, detail: str = "") -> None:
        """A failure: a worker's :class:`WorkerError`, an exception or a message."""
        from core.errors import user_message

        tb = ""
        if isinstance(err, WorkerError):
            text, tb = err.message, err.traceback
            known = err.expected
        elif isinstance(err, BaseException):
            msg = user_message(err)
            known = msg is not None
            text = msg or "An unexpected problem occurred."
            tb = "".join(traceback.format_exception(err))
        else:
            text, known = err, True
        logger.error("%s%s", text, f"\n{tb or detail}" if (tb or detail) else "")
        # A known problem is a sentence with what to do; a bug's "Details…" explains in
        # words (its traceback is in the log only).
        self.posted.emit(Notification(
            "error", text, detail or ("" if known else bug_explanation(text, self.log_file))))

    def crash(self, exc_type: type[BaseException], exc: BaseException,
              tb: TracebackType | None) -> None:
        """An unexpected exception: log it and ask the GUI to show the crash dialog."""
        text = "".join(traceback.format_exception(exc_type, exc, tb))
        logger.critical("unexpected error\n%s", text)
        self.crashed.emit(f"{exc_type.__name__}: {exc}", text)


def setup_logging(log_file: Path, level: int = logging.INFO) -> logging.Handler:
    """Log to a rotating file in the user log dir (and keep stderr warnings)."""
    log_file.parent.mkdir(parents=True, exist_ok=True)
    handler = RotatingFileHandler(log_file, maxBytes=2_000_000, backupCount=3, encoding="utf-8")
    handler.setFormatter(logging.Formatter(
        "%(asctime)s %(levelname)s %(threadName)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.addHandler(handler)
    root.setLevel(min(root.level or level, level))
    return handler


def install_crash_hooks(notifier: Notifier) -> None:
    """Route uncaught exceptions (main and other threads) to ``notifier.crash``."""
    def hook(exc_type: type[BaseException], exc: BaseException,
             tb: TracebackType | None) -> None:
        if issubclass(exc_type, KeyboardInterrupt):
            sys.__excepthook__(exc_type, exc, tb)
            return
        notifier.crash(exc_type, exc, tb)

    def thread_hook(args: threading.ExceptHookArgs) -> None:
        if args.exc_value is not None:
            hook(args.exc_type, args.exc_value, args.exc_traceback)

    sys.excepthook = hook
    threading.excepthook = thread_hook
