"""Wizard page 4: the new model next to the current one; use it, keep it for later, or discard.

The page says what the comparison covers (how many held-back photos of how many classes; the
rest of the library is not part of it). "Use this model" is preselected only when the new
model is better on enough evidence (:data:`MIN_EVIDENCE_IMAGES` held-back photos of
:data:`MIN_EVIDENCE_CLASSES` classes); on less, nothing is preselected and Finish waits for
the user's choice. Metrics that cannot differ between the models on this split (a cut-off at
or beyond the number of training photos) are not shown.
"""

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

__all__ = ["CHOICES", "MIN_EVIDENCE_CLASSES", "MIN_EVIDENCE_IMAGES", "ResultPage",
           "metric_rows"]

#: The choices on this page: use the new model, keep it for later, discard it.
CHOICES = ("use", "keep", "discard")
#: Least held-back photos and classes on which "Use this model" is preselected.
MIN_EVIDENCE_IMAGES = 100
MIN_EVIDENCE_CLASSES = 5
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


def metric_rows(new: EvalResult, cur: EvalResult | None, smallest_class: int = 0
                ) -> list[tuple[str, str, float, float]]:
    """``(plain label, technical name, new, current)`` of the metrics that can differ.

    A cut-off ``k`` at or beyond the number of training photos (the database) ranks all of
    them, so mAP@k equals mAP and precision@k is the share of the class for any model: such
    rows are left out. Precision is taken at 100 only when every class has more than 100
    training photos (else a perfect model could not reach 1), otherwise at 10.
    """
    def val(r: EvalResult | None, key: str, k: int = 0) -> float:
        if r is None:
            return math.nan
        if key == "map":
            return r.map
        if key == "map_at":
            return r.map_at.get(k, math.nan)
        if key == "p_at":
            return r.precision_at.get(k, math.nan)
        return r.precision_radius

    n_db = new.n_database
    rows = [("Search quality (0 to 1)", "mAP: mean average precision over all training "
             "photos; 1 means every photo of the same class comes before all others",
             val(new, "map"), val(cur, "map"))]
    if n_db > 100 and 100 in new.map_at:
        rows.append(("Search quality of the first 100 results", "mAP@100",
                     val(new, "map_at", 100), val(cur, "map_at", 100)))
    k = 100 if smallest_class > 100 else 10
    if n_db > k and k in new.precision_at:
        rows.append((f"Same class among the first {k} results", f"precision@{k}",
                     val(new, "p_at", k), val(cur, "p_at", k)))
    rows.append(("Same class among near-identical codes",
                 f"precision within Hamming radius {new.radius} (codes differing in at most "
                 f"{new.radius} bits)", val(new, "radius"), val(cur, "radius")))
    return rows


def _pr_points(r: EvalResult) -> list[tuple[float, float]]:
    return [(rc, pr) for rc, pr in zip(r.pr_recall, r.pr_precision, strict=False)
            if math.isfinite(rc) and math.isfinite(pr)]


class ResultPage(QWizardPage):
    """Validation mAP and precision–recall of both models, example queries, the choice."""

    def __init__(self, pool: QThreadPool, has_current: bool) -> None:
        super().__init__()
        self.setTitle("Result")
        self.setSubTitle("Both models are tested on the same held-back photos of your "
                         "folders: each one is searched for among your training photos.")
        self.setFinalPage(True)
        self._pool = pool
        self._has_current = has_current
        self.outcome: RetrainOutcome | None = None
        self._workers: set[Worker] = set()

        self.metrics = QTableWidget(0, 3)
        self.metrics.setHorizontalHeaderLabels(["", "New model", "Current model"])
        self.metrics.setToolTip("Point at a row for its technical name")
        self.metrics.verticalHeader().setVisible(False)
        self.metrics.setEditTriggers(QTableWidget.EditTrigger.NoEditTriggers)
        self.metrics.horizontalHeader().setSectionResizeMode(0, QHeaderView.ResizeMode.Stretch)
        self.metrics.setMaximumHeight(128)
        self.metrics.verticalHeader().setDefaultSectionSize(24)
        self.verdict = QLabel("")
        self.verdict.setWordWrap(True)
        self.scope = QLabel("")
        self.scope.setWordWrap(True)
        self.pr = LineChart("share of the same-class photos found", left_label="share right",
                            left_range=(0.0, 1.0), x_range=(0.0, 1.0))
        self.pr.setToolTip("Precision–recall curve: each point is a code distance; the "
                           "higher and further right a line runs, the better")
        self.pr.add_series(Series("new model", "#27ae60", markers=True))
        self.pr.add_series(Series("current model", "#7f8c8d", markers=True, dashed=True))
        self.pr.setMinimumHeight(160)
        self.pr.setMaximumHeight(200)
        self.examples = QWidget()
        self.examples_grid = QGridLayout(self.examples)
        self.examples_grid.setContentsMargins(0, 0, 0, 0)
        self.examples_grid.setSpacing(3)
        ex_box = QGroupBox("Example searches (green border: same class)")
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
        self.choice_group.buttonToggled.connect(lambda *_: self.completeChanged.emit())
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
        left.addWidget(self.scope)
        left.addStretch(1)
        top.addLayout(left, 1)
        top.addWidget(self.pr, 1)
        lay = QVBoxLayout(self)
        lay.addLayout(top)
        lay.addWidget(ex_box)
        lay.addWidget(choose)

    # ------------------------------------------------------------------ values
    @property
    def choice(self) -> str | None:
        """``use``, ``keep``, ``discard``, or ``None`` while nothing is chosen."""
        for key, b in (("use", self.use), ("keep", self.keep), ("discard", self.discard)):
            if b.isChecked():
                return key
        return None

    def set_choice(self, choice: str | None) -> None:
        """Select one of :data:`CHOICES` (``None``: none)."""
        if choice is None:
            self.choice_group.setExclusive(False)
            for b in (self.use, self.keep, self.discard):
                b.setChecked(False)
            self.choice_group.setExclusive(True)
            return
        {"use": self.use, "keep": self.keep, "discard": self.discard}[choice].setChecked(True)

    def isComplete(self) -> bool:
        """Finish needs a choice."""
        return self.choice is not None

    # ------------------------------------------------------------------ content
    def show_outcome(self, out: RetrainOutcome, default_name: str,
                     library_photos: int = 0) -> None:
        """Fill the page from a finished run (``library_photos``: photos of the library,
        none of which were part of the comparison)."""
        self.outcome = out
        if not self.name.text():
            self.name.setText(default_name)
        new, cur = out.new_eval, out.current_eval
        assert new is not None
        rows = metric_rows(new, cur, out.smallest_class)
        self.metrics.setRowCount(len(rows))
        for r, (label, term, a, b) in enumerate(rows):
            head = QTableWidgetItem(label)
            head.setToolTip(term)
            self.metrics.setItem(r, 0, head)
            for c, v in ((1, a), (2, b)):
                item = QTableWidgetItem("—" if not math.isfinite(v) else f"{v:.3f}")
                item.setTextAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
                item.setToolTip(term)
                if r == 0 and c == 1 and cur is not None and v > cur.map:
                    item.setForeground(QColor("#27ae60"))
                self.metrics.setItem(r, c, item)
        self.pr.set_points("new model", _pr_points(new))
        self.pr.set_points("current model", _pr_points(cur) if cur is not None else [])
        self.scope.setText(self._scope_text(out, library_photos))
        self.verdict.setStyleSheet("")
        small = self.evidence_is_small(out)
        few = (f" The test has too few photos for a firm verdict (that needs at least "
               f"{MIN_EVIDENCE_IMAGES} held-back photos of {MIN_EVIDENCE_CLASSES} classes), so "
               "nothing is chosen for you: pick one below.") if small else ""
        if out.collapsed:
            self.verdict.setText(f"The new model gives almost all photos the same code "
                                 f"({out.distinct_codes} distinct); its score only reflects "
                                 "ties. Do not use it: try another speed, more photos per "
                                 "class, or the alternative training method.")
            self.verdict.setStyleSheet("color: #c0392b;")
            self.set_choice("discard")
        elif cur is None:
            self.verdict.setText("There is no current model to compare with." + few)
            self.set_choice(None if small else "use")
        elif new.map > cur.map:
            self.verdict.setText(f"The new model finds photos of the same class better: "
                                 f"search quality {new.map:.3f} instead of {cur.map:.3f}." + few)
            self.set_choice(None if small else "use")
        else:
            self.verdict.setText(f"The new model is not better on these photos (search "
                                 f"quality {new.map:.3f}, current {cur.map:.3f}); keeping the "
                                 "current model is suggested.")
            self.set_choice("keep")
        self.completeChanged.emit()
        self._show_examples(out.examples)

    @staticmethod
    def evidence_is_small(out: RetrainOutcome) -> bool:
        """Fewer than :data:`MIN_EVIDENCE_IMAGES` held-back photos or
        :data:`MIN_EVIDENCE_CLASSES` classes."""
        n = out.new_eval.n_queries if out.new_eval is not None else 0
        return n < MIN_EVIDENCE_IMAGES or out.n_classes < MIN_EVIDENCE_CLASSES

    @staticmethod
    def _scope_text(out: RetrainOutcome, library_photos: int) -> str:
        new = out.new_eval
        assert new is not None
        text = (f"Tested on {new.n_queries} held-back photo{'s' if new.n_queries != 1 else ''}"
                f" of {out.n_classes} classes from your folders, each searched for among "
                f"{new.n_database} training photos. ")
        lib = f" ({library_photos} photos)" if library_photos else ""
        text += (f"The rest of your library{lib} was not part of this test: the new model may "
                 "find those photos better or worse.")
        return text

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
