"""Small dialogs (a name to type) wide enough for their window title.

Qt sizes a ``QInputDialog`` to its label and field only, so a window manager cuts the title
of a short prompt ("Rena… model"). These helpers give such dialogs a minimum width that
fits the title next to the title bar's own buttons.
"""

from __future__ import annotations

from PySide6.QtGui import QFont, QFontMetrics
from PySide6.QtWidgets import QDialog, QInputDialog, QLayout, QWidget

__all__ = ["MIN_WIDTH", "ask_text", "fit_title", "text_dialog"]

#: The narrowest small dialog.
MIN_WIDTH = 360
#: Room in a title bar beside the title: the window icon and the close/maximise/minimise
#: buttons of common window managers, and their margins.
TITLE_BAR_EXTRA = 170


def fit_title(dialog: QWidget) -> None:
    """Give ``dialog`` a minimum width at which its window title is shown whole."""
    font = QFont(dialog.font())
    font.setBold(True)  # most window managers draw titles in bold
    need = QFontMetrics(font).horizontalAdvance(dialog.windowTitle()) + TITLE_BAR_EXTRA
    dialog.setMinimumWidth(max(dialog.minimumWidth(), MIN_WIDTH, need))


def text_dialog(parent: QWidget | None, title: str, label: str, text: str = "") -> QInputDialog:
    """A one-line text prompt sized for its title (not shown yet)."""
    dlg = QInputDialog(parent)
    dlg.setInputMode(QInputDialog.InputMode.TextInput)
    dlg.setWindowTitle(title)
    dlg.setLabelText(label)
    dlg.setTextValue(text)
    dlg.sizeHint()  # builds the dialog's layout, which would otherwise fix its width on show
    lay = dlg.layout()
    if lay is not None:
        lay.setSizeConstraint(QLayout.SizeConstraint.SetDefaultConstraint)
    fit_title(dlg)
    dlg.resize(dlg.minimumWidth(), dlg.sizeHint().height())
    return dlg


def ask_text(parent: QWidget | None, title: str, label: str, text: str = "") -> tuple[str, bool]:
    """Like ``QInputDialog.getText``: the typed text and whether the user pressed OK."""
    dlg = text_dialog(parent, title, label, text)
    ok = dlg.exec() == QDialog.DialogCode.Accepted
    value = dlg.textValue()
    dlg.deleteLater()
    return value, ok
