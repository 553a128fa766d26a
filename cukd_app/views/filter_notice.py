"""The sentence shown when the filters hide every result, with a "Clear filters" button.

Without it a search whose results are all filtered out showed an empty grid and "0 of 60" in
a corner. The notice floats over the results grid of a :class:`ResultsView` (it only uses the
view's public widgets and models).
"""

from __future__ import annotations

from PySide6.QtCore import QEvent, QObject, Qt, Slot
from PySide6.QtWidgets import QLabel, QPushButton, QVBoxLayout, QWidget

from cukd_app.views.results_view import ResultsView

__all__ = ["FilteredOutNotice"]


class FilteredOutNotice(QWidget):
    """Centred over ``view.grid`` while results exist but none passes the filters."""

    def __init__(self, view: ResultsView) -> None:
        super().__init__(view.grid)
        self.setObjectName("filteredOutNotice")
        self.view = view
        self.label = QLabel()
        self.label.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.label.setWordWrap(True)
        self.clear_btn = QPushButton("Clear filters")
        self.clear_btn.setToolTip("Show all kinds of match, any distance and any name")
        self.clear_btn.clicked.connect(self.clear_filters)
        lay = QVBoxLayout(self)
        lay.addWidget(self.label)
        lay.addWidget(self.clear_btn, 0, Qt.AlignmentFlag.AlignHCenter)
        proxy = view.proxy
        for sig in (proxy.layoutChanged, proxy.rowsInserted, proxy.rowsRemoved,
                    proxy.modelReset):
            sig.connect(self.update_state)
        view.filtersChanged.connect(self.update_state)
        view.grid.installEventFilter(self)
        self.hide()

    def eventFilter(self, obj: QObject, event: QEvent) -> bool:
        """Stay centred when the grid resizes."""
        if obj is self.view.grid and event.type() == QEvent.Type.Resize:
            self._place()
        return False

    def _place(self) -> None:
        grid = self.view.grid
        w = min(max(grid.width() - 40, 160), 460)
        self.setFixedWidth(w)
        self.adjustSize()
        self.move((grid.width() - w) // 2, max((grid.height() - self.height()) // 3, 0))
        self.raise_()

    @Slot()
    def update_state(self) -> None:
        """Show or hide (after the results or the filters changed)."""
        total, shown = self.view.model.rowCount(), self.view.proxy.rowCount()
        hidden = total > 0 and shown == 0
        if hidden:
            self.label.setText(f"No results match the filters: all {total} results are "
                               "hidden by them.")
            self._place()
        self.setVisible(hidden)

    @Slot()
    def clear_filters(self) -> None:
        """Every tier, any distance, no name filter."""
        v = self.view
        for cb in v.tier_boxes.values():
            cb.setChecked(True)
        v.max_distance.setValue(v.max_distance.minimum())  # "any"
        v.name_filter.clear()
