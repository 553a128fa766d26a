"""Duplicates: groups of identical / near-duplicate files, previewed side by side."""

from __future__ import annotations

import os

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QComboBox,
    QHBoxLayout,
    QLabel,
    QListWidget,
    QListWidgetItem,
    QPushButton,
    QSplitter,
    QVBoxLayout,
    QWidget,
)

from core.imageio import hamming64
from core.library import DuplicateGroup, FileRecord, SearchHit
from core.library.search import DUPLICATE_LEVELS
from cukd_app.results_model import TIER_LABELS, ResultsModel, format_size
from cukd_app.views.results_view import ResultsGrid

__all__ = ["LEVELS", "DuplicatesView", "exact_copies", "group_hits", "order_groups"]

#: ``{level: (label, tooltip)}`` of every level in core.library.search.DUPLICATE_LEVELS.
LEVELS = {
    "strict": ("Same picture",
               "Copies that were resized, recompressed, recoloured or mirrored (by pHash)."),
    "normal": ("Same picture or edited",
               "Also crops and other edits the model recognises (the default)."),
    "loose": ("Also look-alikes",
              "Also different shots of the same scene: bursts, retakes. Check before you "
              "tidy up."),
}


def _same_bytes(a: FileRecord, b: FileRecord) -> bool:
    return a.fingerprint is not None and a.fingerprint == b.fingerprint and a.size == b.size


def exact_copies(group: DuplicateGroup) -> int:
    """Files of the group that are byte-identical to another file of the group."""
    fs = group.files
    return sum(any(_same_bytes(a, b) for b in fs if b is not a) for a in fs)


def group_hits(group: DuplicateGroup) -> list[SearchHit]:
    """A group's files as hits (for the shared results model). A file byte-identical to
    another one of the group is tiered ``identical``; ``hamming`` holds the pHash distance
    to the first file."""
    first = group.files[0]

    def hit(r: FileRecord) -> SearchHit:
        d = (hamming64(r.phash, first.phash)
             if r.phash is not None and first.phash is not None else 0)
        same = any(_same_bytes(r, o) for o in group.files if o is not r)
        return SearchHit(file_id=r.id, path=r.path, score=1.0, hamming=d, phash_distance=d,
                         tier="identical" if same else group.tier, size=r.size,
                         mtime=r.mtime_ns / 1e9, width=r.width, height=r.height)

    return [hit(r) for r in group.files]


def order_groups(groups: list[DuplicateGroup]) -> list[DuplicateGroup]:
    """Groups with exact copies first (the safest to tidy up), then larger groups first."""
    return sorted(groups, key=lambda g: (g.tier != "identical", exact_copies(g) == 0,
                                         -len(g.files)))


class DuplicatesView(QWidget):
    """Group list on the left, the selected group's photos side by side on the right.

    Signals:
        findRequested(): compute the groups (at :meth:`level`); also sent when the user
            changes the level after groups were shown.
    """

    findRequested = Signal()

    def __init__(self, model: ResultsModel, edge: int = 160,
                 parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.model = model
        self.find_btn = QPushButton("Find duplicates")
        self.find_btn.clicked.connect(self.findRequested)
        self.summary = QLabel("Find copies and near-copies across the whole library. "
                              "Nothing is deleted.")
        self.summary.setWordWrap(True)
        self.level_box = QComboBox()
        self.level_box.setObjectName("duplicateLevel")
        for level in DUPLICATE_LEVELS:  # a level without a label fails here, not silently
            label, tip = LEVELS[level]
            self.level_box.addItem(label, level)
            self.level_box.setItemData(self.level_box.count() - 1, tip,
                                       Qt.ItemDataRole.ToolTipRole)
        self.level_box.setCurrentIndex(self.level_box.findData("normal"))
        self.level_box.setToolTip("How alike photos must be to count as duplicates")
        self.level_box.currentIndexChanged.connect(self._level_changed)
        top = QHBoxLayout()
        top.setContentsMargins(6, 4, 6, 4)
        top.addWidget(self.find_btn)
        top.addWidget(self.level_box)
        top.addWidget(self.summary, 1)
        self.groups = QListWidget()
        self.groups.setObjectName("duplicateGroups")
        self.groups.setSpacing(3)
        self.groups.setAlternatingRowColors(True)
        self.groups.currentRowChanged.connect(self._show_group)
        self.grid = ResultsGrid(edge, self, show_distance=False)
        self.grid.setModel(model)
        self.grid.setFlow(ResultsGrid.Flow.LeftToRight)
        self.details = QLabel("")
        self.details.setWordWrap(True)
        self.details.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.details.setObjectName("hint")
        right = QWidget()
        rl = QVBoxLayout(right)
        rl.setContentsMargins(0, 0, 0, 0)
        rl.addWidget(self.grid, 1)
        rl.addWidget(self.details)
        self.splitter = QSplitter()
        self.splitter.addWidget(self.groups)
        self.splitter.addWidget(right)
        self.splitter.setStretchFactor(1, 3)
        self.splitter.setSizes([260, 700])
        lay = QVBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.addLayout(top)
        lay.addWidget(self.splitter, 1)
        self._groups: list[DuplicateGroup] = []
        self._shown = False  # groups were computed at least once

    def level(self) -> str:
        """The chosen match level (``strict`` | ``normal`` | ``loose``)."""
        return str(self.level_box.currentData())

    def _level_changed(self) -> None:
        if self._shown and self.find_btn.isEnabled():
            self.findRequested.emit()

    def set_busy(self, busy: bool) -> None:
        """While groups are being computed."""
        self.find_btn.setEnabled(not busy)
        if busy:
            self.summary.setText("Looking for duplicates…")

    def set_progress(self, done: int, total: int) -> None:
        """While the pixel check looks at look-alike pairs (crops)."""
        if not self.find_btn.isEnabled() and total:
            self.summary.setText(f"Looking for duplicates… checking look-alikes {done} / "
                                 f"{total}")

    def set_groups(self, groups: list[DuplicateGroup]) -> None:
        """Show groups (largest first)."""
        self._shown = True
        self._groups = order_groups(list(groups))
        self.groups.clear()
        for g in self._groups:
            first = g.files[0]
            copies = exact_copies(g)
            kind = (TIER_LABELS.get(g.tier, g.tier) if g.tier == "identical" or not copies
                    else f"{copies} exact copies")
            item = QListWidgetItem(f"{len(g.files)} photos · {kind}"
                                   f"\n{os.path.basename(first.path)}")
            item.setToolTip("\n".join(r.path for r in g.files))
            self.groups.addItem(item)
        n = sum(len(g.files) for g in self._groups)
        self.summary.setText(f"{len(self._groups)} groups, {n} files" if self._groups
                             else "No duplicates found.")
        self.set_busy(False)
        self.find_btn.setEnabled(True)
        if self._groups:
            self.groups.setCurrentRow(0)
        else:
            self.model.clear()
            self.details.setText("")

    def _show_group(self, row: int) -> None:
        if not 0 <= row < len(self._groups):
            return
        g = self._groups[row]
        self.model.set_hits(group_hits(g))
        folders = sorted({os.path.dirname(r.path) for r in g.files})
        total = sum(r.size for r in g.files)
        self.details.setText(
            f"{len(g.files)} files, {format_size(total)} in "
            + (folders[0] if len(folders) == 1 else f"{len(folders)} folders")
            + ". Hover a photo for its path; nothing is deleted here.")
