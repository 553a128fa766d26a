"""What the retrain wizard needs from the app, and the background run of a retrain plan."""

from __future__ import annotations

import logging
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from PySide6.QtCore import QObject, QThreadPool, Signal, Slot

from cukd_app.models_manager.store import ModelStore
from cukd_app.notifications import Notifier
from cukd_app.services.library_service import LibraryService
from cukd_app.wizard.context_scan import MIN_IMAGES_PER_CLASS
from cukd_app.wizard.job import RetrainEvent, RetrainOutcome, RetrainPlan, run_retrain
from cukd_app.workers import Worker, WorkerError

__all__ = ["RetrainRun", "WizardServices", "library_images", "teacher_status"]

logger = logging.getLogger(__name__)


def teacher_status(name: str = "mobilenet_v2") -> str | None:
    """``None`` when the step-1 teacher is installed, else how to install it (worker thread)."""
    from core.models.teachers import TeacherWeightsError, create_teacher

    try:
        create_teacher(name)
    except TeacherWeightsError as exc:
        return str(exc)
    except Exception as exc:  # an unexpected failure: step 1 is simply not offered
        logger.warning("teacher %s unavailable: %s", name, exc)
        return f"The teacher could not be loaded ({exc})."
    return None


def library_images(library: LibraryService, limit: int = 20000) -> list[Path]:
    """Readable images of the library (spread evenly when more than ``limit``)."""
    lib = library.library
    if lib is None:
        return []
    paths: list[Path] = []
    for root in lib.roots():
        paths += [Path(p) for p, (rec, _) in lib.catalog.files_in_scope(root.id).items()
                  if rec.status == "ok"]
    paths.sort()
    if len(paths) > limit:
        step = len(paths) / limit
        paths = [paths[int(i * step)] for i in range(limit)]
    return paths


@dataclass
class WizardServices:
    """The app services and settings the wizard uses (never the main window).

    Attributes:
        library: the library service (current model, re-encode on adoption, step-1 images).
        notifier: the error path.
        store: the user's models.
        base_model: model file to start from (``None``: none installed — training is off).
        work_root: scratch folder for runs (features, training state).
        adopt: ``adopt(model_path)`` makes the library switch to a stored model.
        active_model: the model file in use (``None``: the default).
        min_per_class: minimum readable images per class.
        teacher_check: returns ``None`` when step 1 is possible, else an install hint.
        overrides: extra fine-tuning settings (tests use short runs).
    """

    library: LibraryService
    notifier: Notifier
    store: ModelStore
    base_model: Path | None
    work_root: Path
    adopt: Callable[[Path], None]
    active_model: Path | None = None
    min_per_class: int = MIN_IMAGES_PER_CLASS
    teacher_check: Callable[[], str | None] = teacher_status
    overrides: tuple[tuple[str, Any], ...] = ()


class RetrainRun(QObject):
    """One background run of :func:`run_retrain` (at most one at a time).

    Signals:
        event(RetrainEvent): progress, log lines, finished epochs.
        finished(RetrainOutcome): the run ended (``stopped`` when cancelled).
        failed(WorkerError): the run raised (also reported through the notifier).
    """

    event = Signal(object)
    finished = Signal(object)
    failed = Signal(object)

    def __init__(self, notifier: Notifier, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.notifier = notifier
        self._pool = QThreadPool(self)
        self._pool.setMaxThreadCount(1)
        self._worker: Worker | None = None
        self.started_at = 0.0

    @property
    def running(self) -> bool:
        """Whether a run is in progress."""
        return self._worker is not None

    def start(self, plan: RetrainPlan, current_encoder: Any | None) -> None:
        """Start training in the background (the app stays usable)."""
        if self._worker is not None:
            raise RuntimeError("a retrain run is already in progress")
        w = Worker("Retraining the model", run_retrain, plan, current_encoder)
        self._worker = w
        self.started_at = time.monotonic()
        w.signals.progress.connect(self.event.emit)
        w.signals.result.connect(self.finished.emit)
        w.signals.error.connect(self._failed)
        w.signals.finished.connect(self._done)
        self._pool.start(w)

    def cancel(self) -> None:
        """Ask the run to stop (it returns within seconds, nothing of the library changed)."""
        if self._worker is not None:
            self._worker.cancel()

    def wait(self, timeout_ms: int = 30000) -> bool:
        """Block until the run ended (tests, shutdown)."""
        return self._pool.waitForDone(timeout_ms)

    @Slot(object)
    def _failed(self, err: WorkerError) -> None:
        self.notifier.error(err)
        self.failed.emit(err)

    @Slot()
    def _done(self) -> None:
        self._worker = None


def remove_work_dir(path: Path) -> None:
    """Delete a run's scratch folder (features, training state)."""
    shutil.rmtree(path, ignore_errors=True)


RunOutcome = RetrainOutcome
RunEvent = RetrainEvent
