"""Dialog for unexpected errors: what happened, the traceback, where the log is."""

from __future__ import annotations

from PySide6.QtGui import QGuiApplication
from PySide6.QtWidgets import (
    QDialog,
    QDialogButtonBox,
    QLabel,
    QPlainTextEdit,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

__all__ = ["CrashDialog"]


class CrashDialog(QDialog):
    """Shows an unexpected error with its traceback; the app keeps running."""

    def __init__(self, summary: str, traceback_text: str, log_file: str = "",
                 parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("Unexpected error")
        msg = QLabel(f"<b>Something went wrong.</b><br>{summary}<br><br>"
                     "Your photos were not touched. The details below were written to the log"
                     + (f":<br><code>{log_file}</code>" if log_file else "."))
        msg.setWordWrap(True)
        self.text = QPlainTextEdit(traceback_text)
        self.text.setReadOnly(True)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close)
        copy = QPushButton("Copy details")
        copy.clicked.connect(lambda: QGuiApplication.clipboard().setText(traceback_text))
        buttons.addButton(copy, QDialogButtonBox.ButtonRole.ActionRole)
        buttons.rejected.connect(self.reject)
        lay = QVBoxLayout(self)
        lay.addWidget(msg)
        lay.addWidget(self.text, 1)
        lay.addWidget(buttons)
        self.resize(760, 460)
