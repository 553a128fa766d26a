"""Duplicates: groups of identical / near-duplicate files, previewed side by side, and what
the user can do with them: compare two, select all but the best, move the selected photos to
a folder or to the system trash (after a confirmation). Nothing happens to a file unless the
user asks for it; nothing is ever deleted for good (see :mod:`cukd_app.file_moves`)."""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from dataclasses import replace

from PySide6.QtCore import (
    QItemSelection,
    QItemSelectionModel,
    QModelIndex,
    QPersistentModelIndex,
    QRect,
    QSize,
    Qt,
    Signal,
)
from PySide6.QtGui import (
    QFont,
    QFontMetrics,
    QGuiApplication,
    QImage,
    QPainter,
    QPalette,
    QPixmap,
)
from PySide6.QtWidgets import (
    QAbstractButton,
    QComboBox,
    QFileDialog,
    QGridLayout,
    QHBoxLayout,
    QLabel,
    QListWidget,
    QListWidgetItem,
    QMessageBox,
    QPushButton,
    QSplitter,
    QStyle,
    QStyledItemDelegate,
    QStyleOptionViewItem,
    QVBoxLayout,
    QWidget,
)

from core.imageio import hamming64
from core.library import DuplicateGroup, FileRecord, SearchHit
from core.library.search import DUPLICATE_LEVELS
from cukd_app.file_moves import move_files, trash_files
from cukd_app.results_model import TIER_LABELS, ResultsModel, format_size
from cukd_app.services.thumbnails import ThumbnailCache, ThumbnailLoader
from cukd_app.views.compare_dialog import CompareDialog
from cukd_app.views.results_view import ResultsGrid, draw_thumbnail

__all__ = ["LEVELS", "DuplicatesView", "GroupDelegate", "GroupRoles", "best_index",
           "exact_copies", "group_hits", "order_groups", "photos", "trash_box"]

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

_Index = QModelIndex | QPersistentModelIndex


def photos(n: int) -> str:
    """``"1 photo"``, ``"3 photos"``."""
    return f"{n} photo" if n == 1 else f"{n} photos"


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


def _pixels(h: SearchHit) -> int:
    return (h.width or 0) * (h.height or 0)


def best_index(hits: Sequence[SearchHit]) -> int:
    """The photo of a group to keep: the largest resolution, then the largest file, then the
    oldest (most likely the original); a full tie keeps the first."""
    return min(range(len(hits)),
               key=lambda i: (-_pixels(hits[i]), -hits[i].size, hits[i].mtime, i))


def _why_best(hits: Sequence[SearchHit], best: int) -> str:
    """Which rule picked ``best``, in words."""
    b = hits[best]
    others = [h for i, h in enumerate(hits) if i != best]
    if all(_pixels(h) < _pixels(b) for h in others):
        return f"the largest picture, {b.width} × {b.height} px"
    if all(_pixels(h) < _pixels(b) or h.size < b.size for h in others):
        return f"the largest file, {format_size(b.size)}"
    if all(_pixels(h) < _pixels(b) or h.size < b.size or h.mtime > b.mtime for h in others):
        return "the oldest, " + time.strftime("%Y-%m-%d", time.localtime(b.mtime))
    return "the first of equals"


def trash_box(paths: Sequence[str], whole_group: bool, parent: QWidget | None = None
              ) -> tuple[QMessageBox, QAbstractButton]:
    """The confirmation of Move to trash and its trashing button: names the count, says the
    photos go to the system trash (restorable), defaults to Cancel (Enter and Esc keep
    them)."""
    n = len(paths)
    box = QMessageBox(QMessageBox.Icon.Question, "Move to trash",
                      f"Move {photos(n)} to the trash?", parent=parent)
    names = ", ".join(os.path.basename(p) for p in paths[:5]) + (", …" if n > 5 else "")
    info = (f"{names}\n\nThey go to the system trash, where you can restore them. Nothing is "
            "deleted for good.")
    if whole_group:
        info += (" These are all the photos of this group: no copy of this picture will be "
                 "left in your folders.")
    box.setInformativeText(info)
    trash = box.addButton("Move to trash", QMessageBox.ButtonRole.DestructiveRole)
    cancel = box.addButton(QMessageBox.StandardButton.Cancel)
    box.setDefaultButton(cancel)
    box.setEscapeButton(cancel)
    return box, trash


class GroupRoles:
    """Item data roles of the group list."""

    Head = Qt.ItemDataRole.UserRole + 1  # "3 photos · identical"
    Name = Qt.ItemDataRole.UserRole + 2  # the first photo's file name
    FirstPath = Qt.ItemDataRole.UserRole + 3


class GroupDelegate(QStyledItemDelegate):
    """A group row: the first photo's thumbnail, then two lines: what the group is, and the
    first photo's name, elided in the middle (the start and the end, where copies differ,
    stay readable; the full paths are in the tooltip)."""

    THUMB = 48

    def sizeHint(self, option: QStyleOptionViewItem, index: _Index) -> QSize:
        line = option.fontMetrics.height()
        return QSize(160, max(self.THUMB, 2 * line) + 10)

    def text_width(self, option: QStyleOptionViewItem) -> int:
        """Width left for the two text lines."""
        return max(option.rect.width() - self.THUMB - 20, 10)

    @staticmethod
    def _bold(option: QStyleOptionViewItem) -> QFont:
        f = QFont(option.font)
        f.setBold(True)
        return f

    def shown_lines(self, option: QStyleOptionViewItem, index: _Index) -> tuple[str, str]:
        """The two lines as drawn at ``option.rect``'s width."""
        w = self.text_width(option)
        head = QFontMetrics(self._bold(option)).elidedText(
            index.data(GroupRoles.Head) or "", Qt.TextElideMode.ElideRight, w)
        name = option.fontMetrics.elidedText(index.data(GroupRoles.Name) or "",
                                             Qt.TextElideMode.ElideMiddle, w)
        return head, name

    def paint(self, p: QPainter, option: QStyleOptionViewItem, index: _Index) -> None:
        p.save()
        pal = option.palette
        r = option.rect
        selected = bool(option.state & QStyle.StateFlag.State_Selected)
        if selected:
            p.fillRect(r, pal.color(QPalette.ColorRole.Highlight))
        elif option.state & QStyle.StateFlag.State_MouseOver:
            p.fillRect(r, pal.color(QPalette.ColorRole.AlternateBase))
        box = QRect(r.left() + 6, r.top() + (r.height() - self.THUMB) // 2, self.THUMB,
                    self.THUMB)
        pix = index.data(Qt.ItemDataRole.DecorationRole)
        if isinstance(pix, QPixmap) and not pix.isNull():
            draw_thumbnail(p, box, pix, pal)
        else:
            p.fillRect(box, pal.color(QPalette.ColorRole.Midlight))
        head, name = self.shown_lines(option, index)
        line = option.fontMetrics.height()
        x = box.right() + 8
        top = r.top() + (r.height() - 2 * line) // 2
        p.setPen(pal.color(QPalette.ColorRole.HighlightedText if selected
                           else QPalette.ColorRole.Text))
        w = self.text_width(option)
        p.setFont(self._bold(option))
        p.drawText(QRect(x, top, w, line),
                   Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignVCenter, head)
        p.setFont(option.font)
        p.drawText(QRect(x, top + line, w, line),
                   Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignVCenter, name)
        p.restore()


class ActionBar(QWidget):
    """Groups of buttons in one row, or one row per group where the row does not fit (the
    window stays as narrow as before: 900 px leave room for the library panel), with a note
    that takes the rest of the width."""

    def __init__(self, groups: list[list[QWidget]], note: QLabel,
                 parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.button_groups = groups
        self.note = note
        self._layout = QGridLayout(self)
        self._layout.setContentsMargins(0, 2, 0, 2)
        self._layout.setSizeConstraint(QGridLayout.SizeConstraint.SetNoConstraint)
        self.one_row: bool | None = None
        self._arrange(True)

    def _row_width(self, group: list[QWidget]) -> int:
        gap = self._layout.horizontalSpacing() if self._layout.horizontalSpacing() >= 0 else 6
        return sum(w.sizeHint().width() for w in group) + gap * len(group)

    def minimumSizeHint(self) -> QSize:
        """As narrow as the widest group of buttons."""
        m = self._layout.contentsMargins()
        h = super().minimumSizeHint().height()
        return QSize(max(self._row_width(g) for g in self.button_groups) + m.left()
                     + m.right(), h)

    def sizeHint(self) -> QSize:
        return QSize(sum(self._row_width(g) for g in self.button_groups) + 120,
                     super().sizeHint().height())

    def _arrange(self, one_row: bool) -> None:
        if one_row == self.one_row:
            return
        self.one_row = one_row
        lay = self._layout
        for g in self.button_groups:
            for w in g:
                lay.removeWidget(w)
        lay.removeWidget(self.note)
        col = 0
        for r, g in enumerate(self.button_groups):
            row = 0 if one_row else r
            if not one_row:
                col = 0
            for w in g:
                lay.addWidget(w, row, col)
                col += 1
            if one_row and r < len(self.button_groups) - 1:
                lay.setColumnMinimumWidth(col, 12)
                col += 1
        if one_row:
            lay.addWidget(self.note, 0, col)
        else:
            lay.addWidget(self.note, len(self.button_groups), 0, 1, 3)
        for c in range(lay.columnCount()):
            lay.setColumnStretch(c, 0)
        lay.setColumnStretch(col if one_row else 2, 1)
        self.updateGeometry()

    def resizeEvent(self, event: object) -> None:
        m = self._layout.contentsMargins()
        need = sum(self._row_width(g) for g in self.button_groups) + 12 + m.left() + m.right()
        self._arrange(self.width() >= need)
        super().resizeEvent(event)  # type: ignore[arg-type]


class DuplicatesView(QWidget):
    """Group list on the left, the selected group's photos side by side on the right, with
    the actions on the selected photos above them.

    Args:
        model: the grid's model (its thumbnail loader draws the photos).
        edge: thumbnail size of the grid.
        thumbnail_cache: where the group list's small thumbnails come from (none: no
            thumbnails in the list).

    Signals:
        findRequested(): compute the groups (at :meth:`level`); also sent when the user
            changes the level after groups were shown.
        notify(str, str, str): level (``info`` | ``warning``), sentence and details of what
            an action did, for the notification area.
        filesChanged(list): paths an action moved or sent to the trash (old and new), for
            the library catalog to catch up.
    """

    findRequested = Signal()
    notify = Signal(str, str, str)
    filesChanged = Signal(list)

    def __init__(self, model: ResultsModel, edge: int = 160,
                 parent: QWidget | None = None, *,
                 thumbnail_cache: ThumbnailCache | None = None) -> None:
        super().__init__(parent)
        self.model = model
        self.find_btn = QPushButton("Find duplicates")
        self.find_btn.clicked.connect(self.findRequested)
        self.summary = QLabel("Find copies and near-copies across the whole library. "
                              "Nothing is moved or deleted unless you ask.")
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
        self.groups.setSpacing(1)
        self.groups.setMouseTracking(True)
        self.group_delegate = GroupDelegate(self.groups)
        self.groups.setItemDelegate(self.group_delegate)
        self.groups.setTextElideMode(Qt.TextElideMode.ElideMiddle)
        self.groups.currentRowChanged.connect(self._show_group)
        self._group_thumbs: ThumbnailLoader | None = None
        if thumbnail_cache is not None:
            dpr = QGuiApplication.primaryScreen().devicePixelRatio() if (
                QGuiApplication.primaryScreen() is not None) else 1.0
            self._group_thumbs = ThumbnailLoader(
                thumbnail_cache, int(GroupDelegate.THUMB * max(dpr, 1.0)), 1, parent=self)
            self._group_thumbs.ready.connect(self._on_group_thumbnail)
        self.grid = ResultsGrid(edge, self, show_distance=False)
        self.grid.setModel(model)
        self.grid.setFlow(ResultsGrid.Flow.LeftToRight)
        self.grid.selectionModel().selectionChanged.connect(self._update_actions)
        model.modelReset.connect(self._update_actions)

        self.compare_btn = QPushButton("Compare")
        self.compare_btn.setToolTip("The two selected photos side by side, with their "
                                    "dimensions, sizes and dates")
        self.compare_btn.clicked.connect(self.compare_selected)
        self.keep_best_btn = QPushButton("Select all but the best")
        self.keep_best_btn.setToolTip("Select every photo of the group except the one to "
                                      "keep: the largest picture, then the largest file, "
                                      "then the oldest")
        self.keep_best_btn.clicked.connect(self.select_all_but_best)
        self.move_btn = QPushButton("Move to folder…")
        self.move_btn.setToolTip("Move the selected photos to a folder you choose (a file of "
                                 "the same name there is never replaced)")
        self.move_btn.clicked.connect(self.move_selected)
        self.trash_btn = QPushButton("Move to trash…")
        self.trash_btn.setToolTip("Move the selected photos to the system trash, after you "
                                  "confirm (you can restore them from there)")
        self.trash_btn.clicked.connect(self.trash_selected)
        self.selection_note = QLabel("")
        self.selection_note.setObjectName("hint")
        self.selection_note.setWordWrap(True)
        self.actions_bar = ActionBar(
            [[self.keep_best_btn, self.compare_btn], [self.move_btn, self.trash_btn]],
            self.selection_note)

        self.details = QLabel("")
        self.details.setWordWrap(True)
        self.details.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.details.setObjectName("hint")
        right = QWidget()
        rl = QVBoxLayout(right)
        rl.setContentsMargins(0, 0, 0, 0)
        rl.addWidget(self.actions_bar)
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
        self._last_folder = ""
        self.compare_dialog: CompareDialog | None = None
        self._best_note: tuple[frozenset[int], str] | None = None
        self._update_actions()

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

    # ----------------------------------------------------------------- groups
    def set_groups(self, groups: list[DuplicateGroup]) -> None:
        """Show groups (exact copies first, then larger groups)."""
        self._shown = True
        self.set_busy(False)
        self.find_btn.setEnabled(True)
        self._fill(order_groups(list(groups)), 0)

    @property
    def shown_groups(self) -> tuple[DuplicateGroup, ...]:
        """The groups in the list, in its order."""
        return tuple(self._groups)

    def _fill(self, groups: list[DuplicateGroup], row: int) -> None:
        self._groups = groups
        self.groups.clear()
        for g in groups:
            first = g.files[0]
            copies = exact_copies(g)
            kind = (TIER_LABELS.get(g.tier, g.tier) if g.tier == "identical" or not copies
                    else f"{copies} exact copies")
            item = QListWidgetItem()
            item.setData(GroupRoles.Head, f"{photos(len(g.files))} · {kind}")
            item.setData(GroupRoles.Name, os.path.basename(first.path))
            item.setData(GroupRoles.FirstPath, first.path)
            item.setToolTip("\n".join(r.path for r in g.files))
            self.groups.addItem(item)
            if self._group_thumbs is not None:
                self._group_thumbs.request(first.path)
        n = sum(len(g.files) for g in groups)
        self.summary.setText(f"{len(groups)} groups, {n} files" if groups
                             else "No duplicates found.")
        if groups:
            self.groups.setCurrentRow(min(max(row, 0), len(groups) - 1))
        else:
            self.model.clear()
            self.details.setText("")

    def _on_group_thumbnail(self, path: str, image: QImage) -> None:
        pix = None
        for i in range(self.groups.count()):
            item = self.groups.item(i)
            if item.data(GroupRoles.FirstPath) == path:
                pix = pix or QPixmap.fromImage(image)
                item.setData(Qt.ItemDataRole.DecorationRole, pix)

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
            + ". Hover a photo for its path; Ctrl+click or Shift+click selects several.")
        self._update_actions()

    def _forget(self, paths: Sequence[str]) -> None:
        """Take files the user moved away out of the groups; a group left with one photo
        goes. The list keeps its order and its place."""
        gone = set(paths)
        current = row = self.groups.currentRow()
        kept = []
        for i, g in enumerate(self._groups):
            files = tuple(f for f in g.files if f.path not in gone)
            if len(files) >= 2:
                kept.append(replace(g, files=files))
            elif i < current:
                row -= 1  # a group above the current one went
        self._fill(kept, row)

    # ----------------------------------------------------------------- selection
    def selected_hits(self) -> list[SearchHit]:
        """The selected photos of the shown group, in the grid's order."""
        rows = sorted({i.row() for i in self.grid.selectionModel().selectedIndexes()})
        return [self.model.hit(r) for r in rows if 0 <= r < self.model.rowCount()]

    def _update_actions(self) -> None:
        n, shown = len(self.selected_hits()), self.model.rowCount()
        self.compare_btn.setEnabled(n == 2 or (n < 2 and shown == 2))
        self.keep_best_btn.setEnabled(shown >= 2)
        self.move_btn.setEnabled(n >= 1)
        self.trash_btn.setEnabled(n >= 1)
        rows = frozenset(i.row() for i in self.grid.selectionModel().selectedIndexes())
        if self._best_note is not None and rows == self._best_note[0]:
            self.selection_note.setText(self._best_note[1])
        else:
            self._best_note = None
            self.selection_note.setText(f"{n} of {shown} selected" if n else "")

    def select_all_but_best(self) -> None:
        """Select every photo of the shown group except the best one (see
        :func:`best_index`), and say which one is kept and why."""
        hits = self.model.hits
        if len(hits) < 2:
            return
        best = best_index(hits)
        sel = QItemSelection()
        for r in range(len(hits)):
            if r != best:
                idx = self.model.index(r)
                sel.select(idx, idx)
        sm = self.grid.selectionModel()
        sm.setCurrentIndex(self.model.index(best), QItemSelectionModel.SelectionFlag.NoUpdate)
        self._best_note = (frozenset(r for r in range(len(hits)) if r != best),
                           f"Selected {len(hits) - 1} of {len(hits)}: keeping "
                           f"{os.path.basename(hits[best].path)} ({_why_best(hits, best)}).")
        sm.select(sel, QItemSelectionModel.SelectionFlag.ClearAndSelect)
        self._update_actions()

    # ----------------------------------------------------------------- actions
    def compare_selected(self) -> CompareDialog | None:
        """Open the two selected photos (or the group's two) side by side."""
        sel = self.selected_hits()
        pair = sel if len(sel) == 2 else (list(self.model.hits) if len(sel) < 2
                                          and self.model.rowCount() == 2 else None)
        if not pair:
            return None
        if self.compare_dialog is not None:
            self.compare_dialog.close()
        self.compare_dialog = CompareDialog(pair[0], pair[1], self)
        self.compare_dialog.open()
        return self.compare_dialog

    def move_selected(self) -> None:
        """Ask for a folder, then move the selected photos there (nothing if cancelled)."""
        hits = self.selected_hits()
        if not hits:
            return
        dlg = QFileDialog(self, f"Move {photos(len(hits))} to a folder")
        dlg.setFileMode(QFileDialog.FileMode.Directory)
        dlg.setOption(QFileDialog.Option.ShowDirsOnly, True)
        dlg.setLabelText(QFileDialog.DialogLabel.Accept, "Move here")
        dlg.setDirectory(self._last_folder or os.path.dirname(hits[0].path))
        if dlg.exec() != QFileDialog.DialogCode.Accepted or not dlg.selectedFiles():
            return
        self.move_to(hits, dlg.selectedFiles()[0])

    def move_to(self, hits: Sequence[SearchHit], folder: str) -> None:
        """Move these photos into ``folder`` (never replacing a file there), update the
        groups and report what happened."""
        folder = os.path.normpath(folder)
        self._last_folder = folder
        QGuiApplication.setOverrideCursor(Qt.CursorShape.WaitCursor)
        try:
            out = move_files([h.path for h in hits], folder)
        finally:
            QGuiApplication.restoreOverrideCursor()
        parts = []
        if out.moved:
            parts.append(f"Moved {photos(len(out.moved))} to {folder}.")
        if out.renamed:
            parts.append(f"{len(out.renamed)} got a new name because the folder already had "
                         "a file of that name: "
                         + ", ".join(os.path.basename(p) for p in out.renamed) + ".")
        if out.already_there:
            parts.append(f"{photos(len(out.already_there))} already in that folder stayed "
                         "where they were.")
        if out.failed:
            parts.append(("Nothing was moved: " if not out.moved else
                          f"{photos(len(out.failed))} could not be moved and stayed where "
                          "they were: ")
                         + "; ".join(f"{os.path.basename(p)} ({why})" for p, why in out.failed)
                         + ".")
        detail = "\n".join(f"{a} → {b}" for a, b in out.moved)
        self.notify.emit("warning" if out.failed else "info", " ".join(parts), detail)
        if out.moved:
            self._forget([a for a, _ in out.moved])
            self.filesChanged.emit([p for pair in out.moved for p in pair])

    def trash_selected(self) -> None:
        """After the user confirms (Cancel is the default), move the selected photos to the
        system trash; nothing happens without the confirmation."""
        hits = self.selected_hits()
        if not hits:
            return
        paths = [h.path for h in hits]
        box, trash = trash_box(paths, len(hits) == self.model.rowCount(), self)
        box.exec()
        if box.clickedButton() is not trash:
            return
        self.trash(paths)

    def trash(self, paths: Sequence[str]) -> None:
        """Move these files to the system trash (confirmed by the caller), update the groups
        and report what happened. A file the trash does not take stays where it is."""
        QGuiApplication.setOverrideCursor(Qt.CursorShape.WaitCursor)
        try:
            out = trash_files(list(paths))
        finally:
            QGuiApplication.restoreOverrideCursor()
        detail = "\n".join(f"{p}: {why}" for p, why in out.failed)
        if not out.trashed:
            self.notify.emit(
                "warning", "The system trash is not available for "
                + ("this photo" if len(paths) == 1 else "these photos")
                + ", so nothing was moved: "
                + ("it is" if len(paths) == 1 else "they are all") + " still in "
                + ("its folder." if len(paths) == 1 else "their folders."), detail)
            return
        text = (f"Moved {photos(len(out.trashed))} to the trash; you can restore them from "
                "the system trash.")
        if out.failed:
            text += (f" {photos(len(out.failed))} could not be moved there and stayed where "
                     "they were: " + ", ".join(os.path.basename(p) for p, _ in out.failed)
                     + ".")
        self.notify.emit("warning" if out.failed else "info", text, detail)
        gone = [p for p, _ in out.trashed]
        self._forget(gone)
        self.filesChanged.emit(gone)
