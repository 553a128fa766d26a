"""The query: the image being searched for, its size, and ways to choose one."""

from __future__ import annotations

import os

from PySide6.QtCore import QSize, Qt, Signal
from PySide6.QtGui import QImage, QPixmap
from PySide6.QtWidgets import QHBoxLayout, QLabel, QPushButton, QSizePolicy, QVBoxLayout, QWidget

from cukd_app.results_model import format_size

__all__ = ["QueryPanel"]


class QueryPanel(QWidget):
    """Shows the query image with its name, pixel size and file size.

    Signals:
        openRequested(): the user wants a file dialog.
        pasteRequested(): the user wants to paste from the clipboard.
    """

    openRequested = Signal()
    pasteRequested = Signal()

    PREVIEW = 240

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        title = QLabel("<b>Query</b>")
        self.image = QLabel("Drop a photo anywhere on this window\nor paste one (Ctrl+V)")
        self.image.setObjectName("queryImage")
        self.image.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.image.setMinimumSize(QSize(160, 140))
        self.image.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Expanding)
        self.image.setWordWrap(True)
        self.caption = QLabel("")
        self.caption.setWordWrap(True)
        self.caption.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.open_btn = QPushButton("Open image…")
        self.open_btn.setToolTip("Ctrl+O")
        self.open_btn.clicked.connect(self.openRequested)
        self.paste_btn = QPushButton("Paste")
        self.paste_btn.setToolTip("Ctrl+V: an image or a file path")
        self.paste_btn.clicked.connect(self.pasteRequested)
        row = QHBoxLayout()
        row.addWidget(self.open_btn)
        row.addWidget(self.paste_btn)
        lay = QVBoxLayout(self)
        lay.setContentsMargins(6, 6, 6, 6)
        lay.addWidget(title)
        lay.addWidget(self.image, 1)
        lay.addWidget(self.caption)
        lay.addLayout(row)
        self.path: str | None = None

    def show_query(self, preview: QImage | None, name: str, dims: tuple[int, int] | None,
                   size: int | None, path: str | None = None, note: str = "") -> None:
        """Display a query (GUI thread: the preview becomes a pixmap here)."""
        self.path = path
        if preview is not None and not preview.isNull():
            dpr = self.devicePixelRatioF()
            edge = int(self.PREVIEW * dpr)
            img = preview.scaled(edge, edge, Qt.AspectRatioMode.KeepAspectRatio,
                                 Qt.TransformationMode.SmoothTransformation)
            pix = QPixmap.fromImage(img)
            pix.setDevicePixelRatio(dpr)
            self.image.setPixmap(pix)
        else:
            self.image.setPixmap(QPixmap())
            self.image.setText("(no preview)")
        parts = [f"<b>{name}</b>"]
        if dims:
            parts.append(f"{dims[0]} × {dims[1]} px")
        if size is not None:
            parts.append(format_size(size))
        text = " · ".join(parts)
        if path:
            text += f"<br><small>{os.path.dirname(path)}</small>"
        if note:
            text += f"<br><i>{note}</i>"
        self.caption.setText(text)
        self.caption.setToolTip(path or "")
