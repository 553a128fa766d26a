"""Two photos side by side with their facts: dimensions, file size, date and folder."""

from __future__ import annotations

import os
import time

from PySide6.QtCore import QRect, QSize, Qt
from PySide6.QtGui import QPainter, QPixmap
from PySide6.QtWidgets import (
    QDialog,
    QDialogButtonBox,
    QGridLayout,
    QLabel,
    QSizePolicy,
    QVBoxLayout,
    QWidget,
)

from core.errors import image_problem
from core.imageio import ImageLoadError, open_image
from core.library import SearchHit
from cukd_app.results_model import format_size
from cukd_app.services.thumbnails import pil_to_qimage
from cukd_app.views.results_view import draw_thumbnail

__all__ = ["CompareDialog", "ImagePane", "photo_facts"]

#: Longest side photos are decoded at for the comparison.
PREVIEW_EDGE = 900


def photo_facts(hit: SearchHit) -> list[str]:
    """The lines under a compared photo: dimensions, file size, date, folder."""
    dims = (f"{hit.width} × {hit.height} px" if hit.width and hit.height
            else "Dimensions unknown")
    return [dims, format_size(hit.size),
            time.strftime("%Y-%m-%d %H:%M", time.localtime(hit.mtime)),
            os.path.dirname(hit.path)]


class ImagePane(QWidget):
    """A photo scaled to fit (a checkerboard behind transparency), or a sentence why not."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.pixmap: QPixmap | None = None
        self.problem = ""
        self.setMinimumSize(260, 220)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Expanding)

    def sizeHint(self) -> QSize:
        return QSize(440, 360)

    def load(self, path: str) -> None:
        """Decode ``path`` reduced to :data:`PREVIEW_EDGE`."""
        try:
            im = open_image(path, draft_size=PREVIEW_EDGE, keep_alpha=True).image
            im.thumbnail((PREVIEW_EDGE, PREVIEW_EDGE))
            self.pixmap, self.problem = QPixmap.fromImage(pil_to_qimage(im)), ""
        except ImageLoadError as exc:
            self.pixmap = None
            self.problem = f"Cannot show this photo. {image_problem(exc.reason)}."
        self.update()

    def paintEvent(self, _event: object) -> None:
        p = QPainter(self)
        box = QRect(0, 0, self.width(), self.height())
        if self.pixmap is not None and not self.pixmap.isNull():
            draw_thumbnail(p, box, self.pixmap, self.palette())
        else:
            p.drawText(box.adjusted(8, 8, -8, -8),
                       Qt.AlignmentFlag.AlignCenter | Qt.TextFlag.TextWordWrap, self.problem)
        p.end()


class CompareDialog(QDialog):
    """Two photos of a duplicate group side by side, each with its name (full path in the
    tooltip), dimensions, size, date and folder; the larger value of each fact in bold."""

    def __init__(self, a: SearchHit, b: SearchHit, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("Compare photos")
        self.hits = (a, b)
        self.panes: list[ImagePane] = []
        self.names: list[QLabel] = []
        self.facts: list[list[QLabel]] = []
        grid = QGridLayout()
        grid.setHorizontalSpacing(16)
        for col, hit in enumerate(self.hits):
            pane = ImagePane(self)
            pane.load(hit.path)
            name = QLabel(os.path.basename(hit.path))
            name.setToolTip(hit.path)
            name.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
            name.setWordWrap(True)
            f = name.font()
            f.setBold(True)
            name.setFont(f)
            grid.addWidget(pane, 0, col)
            grid.addWidget(name, 1, col)
            lines = []
            for row, text in enumerate(photo_facts(hit), start=2):
                lab = QLabel(text)
                lab.setWordWrap(True)
                lab.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
                grid.addWidget(lab, row, col)
                lines.append(lab)
            self.panes.append(pane)
            self.names.append(name)
            self.facts.append(lines)
        grid.setRowStretch(0, 1)
        self._bold_larger(0, lambda h: (h.width or 0) * (h.height or 0))
        self._bold_larger(1, lambda h: h.size)
        self._bold_larger(2, lambda h: -h.mtime)  # the older one: likely the original
        self.facts[0][2].setToolTip("Modified")
        self.facts[1][2].setToolTip("Modified")
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close)
        buttons.rejected.connect(self.reject)
        buttons.accepted.connect(self.accept)
        lay = QVBoxLayout(self)
        lay.addLayout(grid, 1)
        lay.addWidget(buttons)
        self.resize(960, 620)

    def _bold_larger(self, row: int, key: object) -> None:
        a, b = (key(h) for h in self.hits)  # type: ignore[operator]
        if a == b:
            return
        lab = self.facts[0 if a > b else 1][row]
        f = lab.font()
        f.setBold(True)
        lab.setFont(f)
