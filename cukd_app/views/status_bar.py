"""Status bar: indexed count, queue, current model, last search time."""

from __future__ import annotations

from PySide6.QtWidgets import QLabel, QStatusBar, QWidget

from cukd_app.services.library_service import IndexState, LibrarySnapshot

__all__ = ["StatusBar"]


class StatusBar(QStatusBar):
    """Permanent labels on the right; transient messages on the left."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.indexed = QLabel("")
        self.queue = QLabel("")
        self.model = QLabel("Model: loading…")
        self.search = QLabel("")
        for w in (self.indexed, self.queue, self.model, self.search):
            self.addPermanentWidget(w)

    def set_snapshot(self, snap: LibrarySnapshot) -> None:
        """Counts and model name."""
        self.indexed.setText(f"{snap.indexed:,} indexed" + (
            f" · {snap.error_count:,} failed" if snap.error_count else ""))
        self.indexed.setToolTip(f"{snap.files:,} files in the catalog, {snap.pending:,} "
                                "waiting for the model")
        self.model.setText(f"Model: {snap.model_name}")

    def set_model(self, name: str) -> None:
        """Model name."""
        self.model.setText(f"Model: {name}")

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
