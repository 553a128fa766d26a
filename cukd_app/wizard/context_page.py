"""Wizard page 1: the context — classes, counts, thumbnails, checks, validation share."""

from __future__ import annotations

import os
from pathlib import Path

from PySide6.QtCore import Qt, QThreadPool, Slot
from PySide6.QtGui import QColor, QImage, QPainter, QPixmap
from PySide6.QtWidgets import (
    QDoubleSpinBox,
    QFileDialog,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QLineEdit,
    QPlainTextEdit,
    QPushButton,
    QSpinBox,
    QTableWidget,
    QTableWidgetItem,
    QToolButton,
    QVBoxLayout,
    QWidget,
    QWizardPage,
)

from cukd_app.services.thumbnails import pil_to_qimage
from cukd_app.views.small_dialogs import ask_text
from cukd_app.wizard.context_scan import ContextReport, ContextSource, scan_context
from cukd_app.workers import Worker, WorkerError

__all__ = ["ContextPage"]

_THUMB = 56


def _scan(source: ContextSource, min_per_class: int, on_progress, should_stop
          ) -> tuple[ContextReport | None, list[list[QImage]]]:
    """Worker: scan the context and turn thumbnails into QImages (never QPixmap here)."""
    rep = scan_context(source, min_per_class=min_per_class,
                       on_progress=lambda d, t: on_progress((d, t)), should_stop=should_stop)
    thumbs = [] if rep is None else [[pil_to_qimage(t) for t in c.thumbnails]
                                     for c in rep.classes]
    return rep, thumbs


def _strip(images: list[QImage], edge: int = _THUMB) -> QPixmap:
    """Thumbnails side by side (GUI thread)."""
    pm = QPixmap(max(1, len(images)) * (edge + 4), edge)
    pm.fill(QColor(0, 0, 0, 0))
    p = QPainter(pm)
    for i, im in enumerate(images):
        s = QPixmap.fromImage(im).scaled(edge, edge, Qt.AspectRatioMode.KeepAspectRatio,
                                         Qt.TransformationMode.SmoothTransformation)
        p.drawPixmap(i * (edge + 4) + (edge - s.width()) // 2, (edge - s.height()) // 2, s)
    p.end()
    return pm


class ContextPage(QWizardPage):
    """Pick a folder whose sub-folders are the classes (or add class folders one by one).

    The page is complete when the scan found no blocking problem; unreadable files,
    duplicates and ignored loose images are listed but do not block.
    """

    def __init__(self, min_per_class: int, pool: QThreadPool) -> None:
        super().__init__()
        self.setTitle("Your photos: the context to adapt to")
        self.setSubTitle("Choose a folder whose sub-folders are the classes (one sub-folder "
                         "per kind of photo), or add class folders one by one.")
        self.min_per_class = min_per_class
        self._pool = pool
        self.source: ContextSource | None = None
        self.report: ContextReport | None = None
        self._worker: Worker | None = None
        self._gen = 0

        self.folder = QLineEdit()
        self.folder.setPlaceholderText("Folder with one sub-folder per class")
        self.folder.returnPressed.connect(lambda: self.set_folder(self.folder.text()))
        choose = QPushButton("Choose folder…")
        choose.clicked.connect(self._choose_folder)
        add = QPushButton("Add class folder…")
        add.setToolTip("Add a folder as one class and name it")
        add.clicked.connect(self._add_class)
        row = QHBoxLayout()
        row.addWidget(self.folder, 1)
        row.addWidget(choose)
        row.addWidget(add)

        self.table = QTableWidget(0, 5)
        self.table.setHorizontalHeaderLabels(["Class", "Readable", "Training", "Held back",
                                              "Examples"])
        self.table.horizontalHeaderItem(3).setToolTip(
            "Validation images: held back from training; both models are tested on them")
        self.table.verticalHeader().setVisible(False)
        self.table.setEditTriggers(QTableWidget.EditTrigger.NoEditTriggers)
        self.table.verticalHeader().setDefaultSectionSize(_THUMB + 6)
        hh = self.table.horizontalHeader()
        hh.setSectionResizeMode(0, QHeaderView.ResizeMode.ResizeToContents)
        hh.setSectionResizeMode(4, QHeaderView.ResizeMode.Stretch)
        self.status = QLabel("")
        self.status.setWordWrap(True)
        self.errors = QLabel("")
        self.errors.setWordWrap(True)
        self.errors.setStyleSheet("color: #c0392b; font-weight: bold;")
        self.issues = QPlainTextEdit()
        self.issues.setReadOnly(True)
        self.issues.setMaximumHeight(90)
        self.issues.setVisible(False)

        self.val_share = QDoubleSpinBox()
        self.val_share.setRange(5, 50)
        self.val_share.setSingleStep(5)
        self.val_share.setValue(20)
        self.val_share.setSuffix(" %")
        self.val_share.valueChanged.connect(self._update_split)
        share_tip = ("Validation share: this part of each class is not trained on; the new "
                     "and the current model are both tested on it")
        self.val_share.setToolTip(share_tip)
        self.seed = QSpinBox()
        self.seed.setRange(0, 1_000_000)
        self.seed.valueChanged.connect(self._update_split)
        self.seed.setToolTip("Split seed: the number that draws which photos are held back "
                             "(the same number always holds back the same photos)")
        share_label = QLabel("Photos held back for testing (per class):")
        share_label.setToolTip(share_tip)
        self.advanced_btn = QToolButton()
        self.advanced_btn.setText("Advanced")
        self.advanced_btn.setCheckable(True)
        self.advanced_btn.setArrowType(Qt.ArrowType.RightArrow)
        self.advanced_btn.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextBesideIcon)
        self.advanced_btn.setAutoRaise(True)
        self.advanced = QWidget()
        adv = QHBoxLayout(self.advanced)
        adv.setContentsMargins(0, 0, 0, 0)
        seed_label = QLabel("Draw a different set of held-back photos:")
        seed_label.setToolTip(self.seed.toolTip())
        adv.addWidget(seed_label)
        adv.addWidget(self.seed)
        adv.addStretch(1)
        self.advanced.setVisible(False)
        self.advanced_btn.toggled.connect(self._show_advanced)
        opts = QHBoxLayout()
        opts.addWidget(share_label)
        opts.addWidget(self.val_share)
        opts.addSpacing(16)
        opts.addWidget(self.advanced_btn)
        opts.addStretch(1)

        lay = QVBoxLayout(self)
        lay.addLayout(row)
        lay.addWidget(self.status)
        lay.addWidget(self.table, 1)
        lay.addWidget(self.errors)
        lay.addWidget(self.issues)
        lay.addLayout(opts)
        lay.addWidget(self.advanced)
        self._classes: list[tuple[str, Path]] = []

    @Slot(bool)
    def _show_advanced(self, on: bool) -> None:
        self.advanced.setVisible(on)
        self.advanced_btn.setArrowType(Qt.ArrowType.DownArrow if on else Qt.ArrowType.RightArrow)

    # ------------------------------------------------------------------ input
    @Slot()
    def _choose_folder(self) -> None:
        path = QFileDialog.getExistingDirectory(self, "Folder with one sub-folder per class",
                                                self.folder.text() or str(Path.home()))
        if path:
            self.set_folder(path)

    @Slot()
    def _add_class(self) -> None:
        path = QFileDialog.getExistingDirectory(self, "A folder of one class", str(Path.home()))
        if not path:
            return
        name, ok = ask_text(self, "Class name", "Name of this class:",
                            os.path.basename(path.rstrip(os.sep)))
        if ok and name.strip():
            self.add_class(name.strip(), path)

    def set_folder(self, path: str | os.PathLike[str]) -> None:
        """Use a folder whose sub-folders are the classes, and check it."""
        self._classes = []
        self.folder.setText(str(path))
        self._start(ContextSource(folder=Path(path)))

    def add_class(self, name: str, path: str | os.PathLike[str]) -> None:
        """Add one class folder (switches to named-classes mode) and check the context."""
        self._classes.append((name, Path(path)))
        self.folder.setText("; ".join(f"{n}: {p}" for n, p in self._classes))
        self._start(ContextSource(classes=tuple(self._classes)))

    # ------------------------------------------------------------------ scanning
    def _start(self, source: ContextSource) -> None:
        if self._worker is not None:
            self._worker.cancel()
        self._gen += 1
        gen = self._gen
        self.source, self.report = source, None
        self.table.setRowCount(0)
        self.errors.setText("")
        self.issues.setVisible(False)
        self.status.setText("Checking the images…")
        w = Worker("Checking the context", _scan, source, self.min_per_class)
        self._worker = w
        w.signals.progress.connect(
            lambda dt: gen == self._gen and self.status.setText(
                f"Checking the images… {dt[0]} / {dt[1]}"))
        w.signals.result.connect(lambda out: self._scanned(gen, out))
        w.signals.error.connect(lambda err: self._failed(gen, err))
        self.completeChanged.emit()
        self._pool.start(w)

    @property
    def scanning(self) -> bool:
        """Whether a check is running."""
        return self._worker is not None

    def _failed(self, gen: int, err: WorkerError) -> None:
        if gen != self._gen:
            return
        self._worker = None
        self.status.setText("")
        self.errors.setText(str(err.exception))
        self.completeChanged.emit()

    def _scanned(self, gen: int, out: tuple[ContextReport | None, list[list[QImage]]]) -> None:
        if gen != self._gen:
            return
        self._worker = None
        rep, thumbs = out
        if rep is None:
            return
        self.report = rep
        self.table.setRowCount(len(rep.classes))
        for r, (c, ims) in enumerate(zip(rep.classes, thumbs, strict=True)):
            self.table.setItem(r, 0, QTableWidgetItem(c.name))
            item = QTableWidgetItem(str(c.readable))
            if c.readable < rep.min_per_class:
                item.setForeground(QColor("#c0392b"))
            tip = f"{c.found} image file(s) found"
            if c.nested:
                tip += f", {c.nested} of them in nested folders (counted for this class)"
            item.setToolTip(tip)
            self.table.setItem(r, 1, item)
            lbl = QLabel()
            lbl.setPixmap(_strip(ims))
            self.table.setCellWidget(r, 4, lbl)
        n = len(rep.images)
        self.status.setText(f"{len(rep.classes)} classes, {n} readable images"
                            + (f" from {rep.source.folder}" if rep.source.folder else "") + ".")
        self.errors.setText("\n".join(rep.errors))
        self._show_issues(rep)
        self._update_split()
        self.completeChanged.emit()

    def _show_issues(self, rep: ContextReport) -> None:
        lines: list[str] = []
        if rep.unreadable:
            lines.append(f"{len(rep.unreadable)} unreadable file(s), left out:")
            lines += [f"  {p}: {why}" for p, why in rep.unreadable]
        if rep.duplicates:
            lines.append(f"{len(rep.duplicates)} duplicate(s) kept once:")
            lines += [f"  {p} (same as {k.name})" for p, k in rep.duplicates]
        if rep.ignored:
            lines.append(f"{len(rep.ignored)} image(s) outside the class folders, ignored:")
            lines += [f"  {p}" for p in rep.ignored]
        self.issues.setPlainText("\n".join(lines))
        self.issues.setVisible(bool(lines))

    @Slot()
    def _update_split(self) -> None:
        rep = self.report
        if rep is None:
            return
        train, val = rep.split(self.val_share.value() / 100, self.seed.value())
        for r in range(len(rep.classes)):
            self.table.setItem(r, 2, QTableWidgetItem(str(sum(lab == r for lab in train.labels))))
            self.table.setItem(r, 3, QTableWidgetItem(str(sum(lab == r for lab in val.labels))))

    # ------------------------------------------------------------------ wizard
    def isComplete(self) -> bool:
        """A checked, valid context."""
        return self.report is not None and self.report.valid and self._worker is None

