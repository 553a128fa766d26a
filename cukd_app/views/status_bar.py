"""Status bar: indexed count, queue, current model, model switch progress, last search time."""

from __future__ import annotations

from PySide6.QtCore import Signal
from PySide6.QtWidgets import QHBoxLayout, QLabel, QProgressBar, QPushButton, QStatusBar, QWidget

from core.library import ScanProgress
from cukd_app.services.library_service import IndexState, LibrarySnapshot

__all__ = ["ModelSwitchProgress", "StatusBar"]


class ModelSwitchProgress(QWidget):
    """"Re-encoding 120 of 1,000 photos for model X" with a bar and a Stop button.

    Signals:
        stopRequested(): the user pressed Stop (the current model stays).
    """

    stopRequested = Signal()

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.name = ""
        self.bar = QProgressBar()
        self.bar.setTextVisible(True)
        self.bar.setMinimumWidth(340)
        self.stop_btn = QPushButton("Stop")
        self.stop_btn.setToolTip("Stop switching; the current model stays in use (the work "
                                 "done so far is kept for a later switch to this model)")
        self.stop_btn.clicked.connect(self.stopRequested)
        lay = QHBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.addWidget(self.bar)
        lay.addWidget(self.stop_btn)
        self.hide()

    def start(self, name: str) -> None:
        """A switch to model ``name`` began (the count is not known yet)."""
        self.name = name
        self.bar.setRange(0, 1)  # (a busy bar, range 0-0, would show no text)
        self.bar.setValue(0)
        self.bar.setFormat(f"Preparing to re-encode your photos for model {name}…")
        self.stop_btn.setEnabled(True)
        self.setToolTip("Searches use the current model until every photo is re-encoded; "
                        "then the new model takes over.")
        self.show()

    def set_progress(self, p: ScanProgress) -> None:
        """Photos re-encoded so far, and in all."""
        total = max(p.total, p.done)
        self.bar.setRange(0, max(total, 1))
        self.bar.setValue(p.done)
        if self.stop_btn.isEnabled():  # (else it says "Stopping…" until the switch ends)
            self.bar.setFormat(f"Re-encoding {p.done:,} of {total:,} photos for model "
                               f"{self.name}")

    def stopping(self) -> None:
        """Stop was pressed: the bar stays until the switch has ended."""
        self.stop_btn.setEnabled(False)
        self.bar.setFormat(f"Stopping the switch to model {self.name}…")

    @property
    def text(self) -> str:
        """What the bar says now."""
        return self.bar.text()


class StatusBar(QStatusBar):
    """Permanent labels on the right; transient messages on the left."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.indexed = QLabel("")
        self.queue = QLabel("")
        self.model = QLabel("Model: loading…")
        self.search = QLabel("")
        self.model_switch = ModelSwitchProgress()
        for w in (self.model_switch, self.indexed, self.queue, self.model, self.search):
            self.addPermanentWidget(w)

    def set_snapshot(self, snap: LibrarySnapshot) -> None:
        """Counts and model name."""
        self.indexed.setText(f"{snap.indexed:,} indexed" + (
            f" · {snap.error_count:,} failed" if snap.error_count else ""))
        self.indexed.setToolTip(f"{snap.files:,} files in the catalog, {snap.pending:,} "
                                "waiting for the model")
        self.model.setText(f"Model: {snap.model_name}")

    def set_model(self, name: str, tip: str = "") -> None:
        """Model name (the model manager's display name) and its details in the tooltip."""
        self.model.setText(f"Model: {name}")
        self.model.setToolTip(tip)

    def set_queue(self, state: IndexState, writes: int) -> None:
        """Indexing queue."""
        folders = len(state.queued) + (state.running is not None)
        if state.paused:
            self.queue.setText(f"Indexing paused · {folders} folder(s)")
        elif folders:
            self.queue.setText(f"Queue: {folders} folder(s)")
        else:
            self.queue.setText("Queue: empty" if not writes else f"Queue: {writes} task(s)")

    def set_search_time(self, ms: float, n: int) -> None:
        """Last search's duration."""
        self.search.setText(f"Last search: {ms:.0f} ms · {n} results")
