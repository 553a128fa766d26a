"""The non-blocking notification area: the latest message, its details, a dismiss button."""

from __future__ import annotations

import time

from PySide6.QtCore import Qt, QTimer, Slot
from PySide6.QtWidgets import (
    QDialog,
    QDialogButtonBox,
    QFrame,
    QHBoxLayout,
    QLabel,
    QPlainTextEdit,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from cukd_app.notifications import Notification

__all__ = ["NotificationArea"]

_ICONS = {"info": "ℹ", "warning": "⚠", "error": "✖"}


class NotificationArea(QFrame):
    """A slim banner; info messages hide after a few seconds, warnings and errors stay until
    dismissed. "Details…" shows the detail text (e.g. a traceback) without blocking."""

    INFO_MS = 6000

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("notificationArea")
        self.icon = QLabel()
        self.text = QLabel()
        self.text.setWordWrap(True)
        self.text.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.more = QLabel()
        self.details_btn = QPushButton("Details…")
        self.details_btn.setFlat(True)
        self.details_btn.clicked.connect(self.show_details)
        self.close_btn = QPushButton("✕")
        self.close_btn.setFlat(True)
        self.close_btn.setToolTip("Dismiss")
        self.close_btn.setFixedWidth(28)
        self.close_btn.clicked.connect(self.dismiss)
        lay = QHBoxLayout(self)
        lay.setContentsMargins(10, 4, 4, 4)
        lay.addWidget(self.icon)
        lay.addWidget(self.text, 1)
        lay.addWidget(self.more)
        lay.addWidget(self.details_btn)
        lay.addWidget(self.close_btn)
        self._timer = QTimer(self)
        self._timer.setSingleShot(True)
        self._timer.timeout.connect(self.dismiss)
        self.current: Notification | None = None
        self.unseen: list[Notification] = []
        self._dialog: QDialog | None = None
        self.hide()

    @Slot(object)
    def post(self, n: Notification) -> None:
        """Show a notification (an error is not replaced by a later info)."""
        if (self.current is not None and self.isVisible() and self.current.level == "error"
                and n.level == "info"):
            self.unseen.append(n)
            self._update_more()
            return
        if self.current is not None and self.isVisible() and self.current.level != "info":
            self.unseen.append(self.current)
        self.current = n
        self.icon.setText(_ICONS.get(n.level, ""))
        self.text.setText(n.text)
        self.setProperty("level", n.level)
        self.style().unpolish(self)
        self.style().polish(self)
        self.details_btn.setVisible(bool(n.detail))
        self._update_more()
        self.show()
        if n.level == "info":
            self._timer.start(self.INFO_MS)
        else:
            self._timer.stop()

    def _update_more(self) -> None:
        k = len(self.unseen)
        self.more.setText(f"+{k} more" if k else "")

    @Slot()
    def dismiss(self) -> None:
        """Hide the current message; show the previous unseen warning/error, if any."""
        self._timer.stop()
        while self.unseen:
            n = self.unseen.pop()
            if n.level != "info":
                self.current = None
                self.post(n)
                return
        self.current = None
        self.hide()

    @Slot()
    def show_details(self) -> None:
        """A non-modal window with the detail text."""
        n = self.current
        if n is None:
            return
        dlg = QDialog(self.window())
        dlg.setWindowTitle("Details")
        dlg.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        text = QPlainTextEdit(f"{time.strftime('%H:%M:%S', time.localtime(n.when))}  "
                              f"{n.text}\n\n{n.detail}")
        text.setReadOnly(True)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close)
        buttons.rejected.connect(dlg.close)
        lay = QVBoxLayout(dlg)
        lay.addWidget(text)
        lay.addWidget(buttons)
        dlg.resize(700, 400)
        dlg.show()
        self._dialog = dlg
