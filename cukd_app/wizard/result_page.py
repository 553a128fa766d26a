"""Wizard page 4: the new model next to the current one; use it, keep it for later, or discard."""

from __future__ import annotations

import math
from pathlib import Path

from PySide6.QtCore import Qt, QThreadPool
from PySide6.QtGui import QColor, QImage, QPainter, QPen, QPixmap
from PySide6.QtWidgets import (
    QButtonGroup,
    QGridLayout,
    QGroupBox,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QLineEdit,
    QRadioButton,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
    QWizardPage,
)

from core.evaluate import EvalResult
from core.imageio import load_image
from cukd_app.services.thumbnails import pil_to_qimage
from cukd_app.wizard.chart import LineChart, Series
from cukd_app.wizard.job import ExampleQuery, RetrainOutcome
from cukd_app.workers import Worker

__all__ = ["CHOICES", "ResultPage"]

#: The choices on this page: use the new model, keep it for later, discard it.
CHOICES = ("use", "keep", "discard")
_EDGE = 52


def _load_thumbs(paths: list[Path], edge: int = _EDGE) -> dict[str, QImage]:
    """Worker: small QImages of the example images (unreadable ones are left out)."""
    out: dict[str, QImage] = {}
    for p in paths:
        try:
            im = load_image(p, draft_size=edge)
        except Exception:  # a file removed since training; the cell stays empty
            continue
        im.thumbnail((edge, edge))
        out[str(p)] = pil_to_qimage(im)
    return out


def _metric_rows(new: EvalResult, cur: EvalResult | None) -> list[tuple[str, float, float]]:
    def get(r: EvalResult | None, key: str) -> float:
        if r is None:
            return math.nan
        if key == "map":
            return r.map
        if key == "map100":
            return r.map_at.get(100, math.nan)
        if key == "p100":
            return r.precision_at.get(100, math.nan)
        return r.precision_radius

    names = {"map": "mAP (whole database)", "map100": "mAP@100", "p100": "precision@100",
             "radius": "precision within 2 bits"}
    return [(label, get(new, k), get(cur, k)) for k, label in names.items()]


def _pr_points(r: EvalResult) -> list[tuple[float, float]]:
    return [(rc, pr) for rc, pr in zip(r.pr_recall, r.pr_precision, strict=False)
            if math.isfinite(rc) and math.isfinite(pr)]


class ResultPage(QWizardPage):
    """Validation mAP and precision–recall of both models, example queries, the choice."""

    def __init__(self, pool: QThreadPool, has_current: bool) -> None:
        super().__init__()
        self.setTitle("Result")
        self.setSubTitle("Both models are measured on the same validation images: each is a "
                         "query against your training images.")
        self.setFinalPage(True)
        self._pool = pool
        self._has_current = has_current
        self.outcome: RetrainOutcome | None = None
        self._workers: set[Worker] = set()

        self.metrics = QTableWidget(0, 3)
        self.metrics.setHorizontalHeaderLabels(["", "New model", "Current model"])
        self.metrics.verticalHeader().setVisible(False)
        self.metrics.setEditTriggers(QTableWidget.EditTrigger.NoEditTriggers)
        self.metrics.horizontalHeader().setSectionResizeMode(0, QHeaderView.ResizeMode.Stretch)
        self.metrics.setMaximumHeight(128)
        self.metrics.verticalHeader().setDefaultSectionSize(24)
        self.verdict = QLabel("")
        self.verdict.setWordWrap(True)
        self.pr = LineChart("recall", left_label="precision", left_range=(0.0, 1.0),
                            x_range=(0.0, 1.0))
        self.pr.add_series(Series("new model", "#27ae60", markers=True))
        self.pr.add_series(Series("current model", "#7f8c8d", markers=True, dashed=True))
        self.pr.setMinimumHeight(160)
        self.pr.setMaximumHeight(200)
        self.examples = QWidget()
        self.examples_grid = QGridLayout(self.examples)
        self.examples_grid.setContentsMargins(0, 0, 0, 0)
        self.examples_grid.setSpacing(3)
        ex_box = QGroupBox("Example queries (green border: same class)")
        QVBoxLayout(ex_box).addWidget(self.examples)

        self.name = QLineEdit()
        self.use = QRadioButton("Use this model (the library is re-encoded in the background "
                                "and switches when done)")
        self.keep = QRadioButton("Keep the current model; save the new one for later "
                                 "(Library ▸ Manage models)")
        self.discard = QRadioButton("Keep the current model; discard the new one")
        self.choice_group = QButtonGroup(self)
        for b in (self.use, self.keep, self.discard):
            self.choice_group.addButton(b)
        self.use.setChecked(True)
        choose = QGroupBox("What now?")
        cl = QVBoxLayout(choose)
        nrow = QHBoxLayout()
        nrow.addWidget(QLabel("Name of the new model:"))
        nrow.addWidget(self.name, 1)
        cl.addLayout(nrow)
        for b in (self.use, self.keep, self.discard):
            cl.addWidget(b)

        top = QHBoxLayout()
        left = QVBoxLayout()
        left.addWidget(self.metrics)
        left.addWidget(self.verdict)
        left.addStretch(1)
        top.addLayout(left, 1)
        top.addWidget(self.pr, 1)
        lay = QVBoxLayout(self)
        lay.addLayout(top)
        lay.addWidget(ex_box)
        lay.addWidget(choose)

    # ------------------------------------------------------------------ values
    @property
    def choice(self) -> str:
        """``use``, ``keep`` or ``discard``."""
        return "use" if self.use.isChecked() else "keep" if self.keep.isChecked() else "discard"

    def set_choice(self, choice: str) -> None:
        """Select one of :data:`CHOICES`."""
        {"use": self.use, "keep": self.keep, "discard": self.discard}[choice].setChecked(True)

    # ------------------------------------------------------------------ content
    def show_outcome(self, out: RetrainOutcome, default_name: str) -> None:
        """Fill the page from a finished run."""
        self.outcome = out
        if not self.name.text():
            self.name.setText(default_name)
        new, cur = out.new_eval, out.current_eval
        assert new is not None
        rows = _metric_rows(new, cur)
        self.metrics.setRowCount(len(rows))
        for r, (label, a, b) in enumerate(rows):
            self.metrics.setItem(r, 0, QTableWidgetItem(label))
            for c, v in ((1, a), (2, b)):
                item = QTableWidgetItem("—" if not math.isfinite(v) else f"{v:.3f}")
                item.setTextAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
                if r == 0 and c == 1 and cur is not None and v > cur.map:
                    item.setForeground(QColor("#27ae60"))
                self.metrics.setItem(r, c, item)
        self.pr.set_points("new model", _pr_points(new))
        self.pr.set_points("current model", _pr_points(cur) if cur is not None else [])
        self.verdict.setStyleSheet("")
        if out.collapsed:
            self.verdict.setText(f"The new model gives almost all photos the same code "
                                 f"({out.distinct_codes} distinct); its score only reflects "
                                 "ties. Do not use it: try another preset, more photos per "
                                 "class, or DCH.")
            self.verdict.setStyleSheet("color: #c0392b;")
            self.discard.setChecked(True)
        elif cur is None:
            self.verdict.setText("There is no current model to compare with.")
        elif new.map > cur.map:
            self.verdict.setText(f"The new model finds photos of the same class better: mAP "
                                 f"{new.map:.3f} instead of {cur.map:.3f}.")
        else:
            self.verdict.setText(f"The new model is not better on these photos (mAP "
                                 f"{new.map:.3f}, current {cur.map:.3f}); keeping the "
                                 "current model is suggested.")
            self.keep.setChecked(True)
        self._show_examples(out.examples)

    def _show_examples(self, examples: list[ExampleQuery]) -> None:
        while self.examples_grid.count():
            w = self.examples_grid.takeAt(0).widget()
            if w is not None:
                w.deleteLater()
        paths: list[Path] = []
        for ex in examples:
            paths += [ex.query] + [p for p, _ in ex.new_hits] + [p for p, _ in ex.current_hits]
        self._cells: list[tuple[QLabel, str, bool | None]] = []
        self.examples.setMinimumHeight(len(examples) * (_EDGE + 9) + 22)
        head = ["query", "new model: top 5", "current model: top 5"]
        for c, h in enumerate(head):
            lbl = QLabel(h)
            lbl.setStyleSheet("font-weight: bold;")
            self.examples_grid.addWidget(lbl, 0, [0, 1, 7][c], 1, 1 if c == 0 else 5)
        for r, ex in enumerate(examples, start=1):
            cells = [(ex.query, None), *ex.new_hits, (None, None), *ex.current_hits]
            for c, (p, rel) in enumerate(cells):
                if p is None:
                    self.examples_grid.addItem(_spacer(), r, c)
                    continue
                lbl = QLabel()
                lbl.setFixedSize(_EDGE + 6, _EDGE + 6)
                lbl.setToolTip(f"{p.name}" + ("" if rel is None else
                                              (" — same class" if rel else " — other class")))
                self.examples_grid.addWidget(lbl, r, c)
                self._cells.append((lbl, str(p), rel))
        w = Worker("Loading example images", _load_thumbs, paths)
        self._workers.add(w)
        w.signals.result.connect(self._thumbs_loaded)
        w.signals.finished.connect(lambda: self._workers.discard(w))
        self._pool.start(w)

    def _thumbs_loaded(self, images: dict[str, QImage]) -> None:
        for lbl, key, rel in self._cells:
            im = images.get(key)
            if im is None:
                continue
            pm = QPixmap(_EDGE + 6, _EDGE + 6)
            pm.fill(QColor(0, 0, 0, 0))
            p = QPainter(pm)
            s = QPixmap.fromImage(im)
            p.drawPixmap((pm.width() - s.width()) // 2, (pm.height() - s.height()) // 2, s)
            if rel is not None:
                p.setPen(QPen(QColor("#27ae60" if rel else "#c0392b"), 3))
                p.drawRect(1, 1, pm.width() - 3, pm.height() - 3)
            p.end()
            lbl.setPixmap(pm)


def _spacer():
    from PySide6.QtWidgets import QSpacerItem

    return QSpacerItem(14, 1)
