"""Dialog for unexpected errors: what happened in words, what to do, where the log is.

The traceback is written to the log file only (the notifier logs it); the dialog never shows
it.
"""

from __future__ import annotations

from PySide6.QtCore import QUrl
from PySide6.QtGui import QDesktopServices
from PySide6.QtWidgets import (
    QDialog,
    QDialogButtonBox,
    QLabel,
    QPlainTextEdit,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from cukd_app.notifications import bug_explanation

__all__ = ["CrashDialog"]


class CrashDialog(QDialog):
    """Explains an unexpected error in plain words; the app keeps running.

    Args:
        summary: the exception in one line (logged; not shown: it is developer text).
        traceback_text: the traceback (already in the log; not shown).
        log_file: the log file, named so the user can send it.
    """

    def __init__(self, summary: str, traceback_text: str, log_file: str = "",
                 parent: QWidget | None = None) -> None:
        super().__init__(parent)
        del summary, traceback_text  # both are in the log file
        self.setWindowTitle("Something went wrong")
        self.log_file = log_file
        msg = QLabel("<b>Something went wrong inside CUKD Image Search.</b><br>You can keep "
                     "working: your photos were not touched.")
        msg.setWordWrap(True)
        self.text = QPlainTextEdit(bug_explanation(
            "an action stopped because of a problem in the program.", log_file or None))
        self.text.setReadOnly(True)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close)
        if log_file:
            open_log = QPushButton("Open log folder")
            open_log.clicked.connect(self.open_log_folder)
            buttons.addButton(open_log, QDialogButtonBox.ButtonRole.ActionRole)
        buttons.rejected.connect(self.reject)
        lay = QVBoxLayout(self)
        lay.addWidget(msg)
        lay.addWidget(self.text, 1)
        lay.addWidget(buttons)
        self.resize(620, 320)

    def note_another(self) -> None:
        """Another unexpected error while the dialog is open."""
        self.text.appendPlainText("\nAnother unexpected problem occurred (also in the log).")

    def open_log_folder(self) -> bool:
        """Show the folder of the log file (False: no file manager could be started)."""
        from pathlib import Path

        ok = QDesktopServices.openUrl(QUrl.fromLocalFile(str(Path(self.log_file).parent)))
        if not ok:
            self.text.appendPlainText(f"\nNo file manager could be opened. The log file is "
                                      f"{self.log_file}")
        return ok
