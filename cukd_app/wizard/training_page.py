"""Wizard page 3: training in the background — progress, ETA, live chart, log, Cancel."""

from __future__ import annotations

import time
from collections.abc import Callable

from PySide6.QtCore import Signal, Slot
from PySide6.QtWidgets import (
    QHBoxLayout,
    QLabel,
    QPlainTextEdit,
    QProgressBar,
    QPushButton,
    QVBoxLayout,
    QWizardPage,
)

from cukd_app.wizard.chart import LineChart, Series
from cukd_app.wizard.job import RetrainEvent, RetrainOutcome
from cukd_app.wizard.services import RetrainRun
from cukd_app.workers import WorkerError

__all__ = ["LOSS_SERIES", "SCORE_SERIES", "TrainingPage"]

#: The chart's series: the training loss and the validation mAP, in plain words.
LOSS_SERIES = "training error"
SCORE_SERIES = "test score"

PHASES = {"distill": "Step 1: the reference model teaches the new model",
          "features": "Preparing the images",
          "train": "Training", "evaluate": "Comparing with the current model"}


def _eta(seconds: float | None) -> str:
    if seconds is None or seconds != seconds:
        return ""
    seconds = int(seconds)
    if seconds < 60:
        return f"about {seconds} s left"
    return f"about {seconds // 60} min {seconds % 60:02d} s left"


class TrainingPage(QWizardPage):
    """Starts the run when shown; complete when it finished with a new model.

    Args:
        run: the background run.
        start: starts the run (the wizard builds the plan from the earlier pages).

    Signals:
        ended(str): ``"done"``, ``"cancelled"`` or ``"failed"``.
    """

    ended = Signal(str)

    def __init__(self, run: RetrainRun, start: Callable[[], None]) -> None:
        super().__init__()
        self.setTitle("Training")
        self.setSubTitle("Training runs in the background: you can keep searching, and "
                         "closing this window asks whether to keep it running. Cancel stops "
                         "it within seconds; your current model and index stay as they are.")
        self.run, self._start = run, start
        self.outcome: RetrainOutcome | None = None
        self.state = "idle"
        #: Cancel was pressed and the run is stopping.
        self.cancelling = False
        self.phase = QLabel("Starting…")
        self.eta = QLabel("")
        self.bar = QProgressBar()
        self.bar.setRange(0, 1000)
        self.cancel_btn = QPushButton("Cancel training")
        self.cancel_btn.clicked.connect(self.cancel)
        top = QHBoxLayout()
        top.addWidget(self.phase, 1)
        top.addWidget(self.eta)
        self.chart = LineChart("epoch (one pass over your training photos)",
                               left_label="training error", right_label="test score",
                               right_range=(0.0, 1.0), integer_x=True)
        self.chart.add_series(Series(LOSS_SERIES, "#2e86de"))
        self.chart.add_series(Series(SCORE_SERIES, "#e67e22", axis="right", markers=True))
        self.chart.setToolTip("Training error (the loss) should fall. The test score (mAP: "
                              "mean average precision on the held-back photos, 0 to 1) should "
                              "rise; training stops early when it stops improving.")
        self.chart.empty_text = "The chart starts with the first training batches"
        self.log = QPlainTextEdit()
        self.log.setReadOnly(True)
        self.log.setMaximumBlockCount(2000)
        self.log.setMaximumHeight(120)
        row = QHBoxLayout()
        row.addWidget(self.bar, 1)
        row.addWidget(self.cancel_btn)
        lay = QVBoxLayout(self)
        lay.addLayout(top)
        lay.addLayout(row)
        lay.addWidget(self.chart, 1)
        lay.addWidget(self.log)
        run.event.connect(self._on_event)
        run.finished.connect(self._on_finished)
        run.failed.connect(self._on_failed)
        self._last_loss_x = -1.0
        self._t0 = 0.0

    # ------------------------------------------------------------------ run
    def initializePage(self) -> None:
        """Start training."""
        self.outcome = None
        self.chart.clear()
        self.log.clear()
        self.bar.setValue(0)
        self.eta.setText("")
        self.phase.setText("Starting…")
        self.cancel_btn.setEnabled(True)
        self._last_loss_x = -1.0
        self._t0 = time.monotonic()
        self.state = "running"
        self.cancelling = False
        self.completeChanged.emit()
        self.append_log("Training started.")
        self._start()

    @Slot()
    def cancel(self) -> None:
        """Stop the run (returns within seconds)."""
        if self.run.running:
            self.cancelling = True
            self.cancel_btn.setEnabled(False)
            self.phase.setText("Cancelling…")
            self.append_log("Cancelling…")
            self.run.cancel()

    def append_log(self, text: str) -> None:
        """One log line with the elapsed time."""
        el = int(time.monotonic() - self._t0) if self._t0 else 0
        self.log.appendPlainText(f"[{el // 60:02d}:{el % 60:02d}] {text}")

    @Slot(object)
    def _on_event(self, ev: RetrainEvent) -> None:
        if self.state != "running":
            return
        if ev.fraction is not None:
            self.bar.setValue(int(1000 * min(1.0, ev.fraction)))
        if ev.phase in PHASES:
            text = PHASES[ev.phase]
            p = ev.progress
            if p is not None and ev.phase == "train":
                text += f": epoch {p.epoch} of at most {p.epochs}"
            elif p is not None:
                text += f" ({p.done} / {p.total})"
            if self.phase.text() != "Cancelling…":
                self.phase.setText(text)
            self.eta.setText(_eta(ev.eta_seconds))
        p = ev.progress
        if p is not None and p.phase == "train" and p.loss is not None:
            x = (p.epoch - 1) + p.done / max(1, p.total)
            if x - self._last_loss_x >= 0.05 or p.done == p.total:
                self._last_loss_x = x
                self.chart.append(LOSS_SERIES, x, p.loss)
        if ev.epoch_done is not None and ev.epoch_done.get("val_map") is not None:
            self.chart.append(SCORE_SERIES, float(ev.epoch_done["epoch"]),
                              float(ev.epoch_done["val_map"]))
        if ev.phase == "log" and ev.text:
            self.append_log(ev.text)

    @Slot(object)
    def _on_finished(self, out: RetrainOutcome) -> None:
        self.outcome = out
        self.cancel_btn.setEnabled(False)
        self.eta.setText("")
        if out.stopped:
            self.state = "cancelled"
            self.phase.setText("Cancelled. Your current model and index are unchanged.")
            self.append_log("Cancelled; nothing was changed.")
        else:
            self.state = "done"
            self.bar.setValue(1000)
            mins, secs = divmod(int(out.wall_seconds), 60)
            self.phase.setText(f"Done in {mins} min {secs:02d} s. Press Next to see the "
                               "result.")
            if out.failed_images:
                self.append_log(f"{len(out.failed_images)} image(s) could not be read and "
                                "were skipped.")
        self.completeChanged.emit()
        self.ended.emit(self.state)

    @Slot(object)
    def _on_failed(self, err: WorkerError) -> None:
        self.state = "failed"
        self.cancel_btn.setEnabled(False)
        self.phase.setText("Training failed; see the message in the main window.")
        self.append_log(err.message)
        self.completeChanged.emit()
        self.ended.emit(self.state)

    def isComplete(self) -> bool:
        """Finished with a new model."""
        return self.state == "done"
