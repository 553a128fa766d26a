"""Library folders with their state, failed files, and indexing controls."""

from __future__ import annotations

import os

from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QColor
from PySide6.QtWidgets import (
    QFileDialog,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QProgressBar,
    QPushButton,
    QTreeWidget,
    QTreeWidgetItem,
    QVBoxLayout,
    QWidget,
)

from core.errors import image_problem, image_problem_label, stored_problem
from core.library import RootInfo
from cukd_app.services.library_service import IndexState, LibrarySnapshot

__all__ = ["LibraryPanel", "root_state"]

#: Red only for a folder that fails entirely or is unavailable; a few failed files in an
#: indexed folder are a warning (amber, with a mark).
_STATE_COLORS = {"indexing": "#1565c0", "paused": "#ef6c00", "queued": "#6d4c41",
                 "offline": "#c62828", "error": "#c62828", "ok": "#2e7d32",
                 "warning": "#b26a00", "partial": "#b26a00", "new": "#6d4c41"}
_WARN = "⚠ "


def root_state(root: RootInfo, snap: LibrarySnapshot, state: IndexState) -> tuple[str, str]:
    """``(kind, text)`` describing a folder: indexing with progress, paused, queued, offline,
    not indexed yet, partly indexed (a scan was stopped), up to date (watching), up to date
    with some failed files (a warning), or failed entirely."""
    counts = snap.root_files.get(root.id, {})
    errors = max(counts.get("error", 0), len(snap.errors.get(root.id, ())))
    ok = counts.get("ok", 0)
    suffix = f" · {errors} failed" if errors else ""
    if state.running == root.id:
        p = state.progress
        if state.paused:
            return "paused", "Paused" + suffix
        if p is None:
            return "indexing", "Indexing…"
        if p.phase == "walk":
            return "indexing", f"Looking for photos… {p.done}"
        return "indexing", f"Indexing {p.done} / {p.total}" + suffix
    if root.id in state.queued:
        return "queued", "Waiting to index"
    if not root.online:
        return "offline", "Unavailable (drive not connected?)" + suffix
    found = snap.partial.get(root.id)
    if root.last_scan is None or found is not None:  # never completed / stopped last time
        if not ok and not errors and root.last_scan is None:
            return "new", "Not indexed yet"
        of = f" of {found:,}" if found else ""
        return "partial", f"Partly indexed: {ok:,}{of} — Rescan to resume" + suffix
    watched = snap.watching and root.watch_mode != "off"  # "off": the user said not to
    text = "Up to date" + (" · watching" if watched else "")
    if errors and not ok:
        return "error", f"Failed: none of its {errors} file(s) could be indexed"
    if errors:
        return "warning", f"{_WARN}{text} · {errors} of {ok + errors:,} failed"
    return "ok", text


class LibraryPanel(QWidget):
    """Folders tree (folder → failed files), progress and buttons.

    Signals:
        addFolder(str): the user picked a folder to add.
        removeFolder(int): remove this root id from the library.
        rescan(), pause(), resume(), cancel(): indexing controls.
    """

    addFolder = Signal(str)
    removeFolder = Signal(int)
    rescan = Signal()
    pause = Signal()
    resume = Signal()
    cancel = Signal()

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        title = QLabel("<b>Library folders</b>")
        self.tree = QTreeWidget()
        self.tree.setObjectName("libraryTree")
        self.tree.setHeaderLabels(["Folder", "State"])
        self.tree.setRootIsDecorated(True)
        self.tree.setUniformRowHeights(True)
        # Folders and files whose names share a long start stay apart: the end shows.
        self.tree.setTextElideMode(Qt.TextElideMode.ElideMiddle)
        self.tree.header().setSectionResizeMode(0, QHeaderView.ResizeMode.Stretch)
        self.tree.header().setSectionResizeMode(1, QHeaderView.ResizeMode.ResizeToContents)
        self.tree.header().setStretchLastSection(False)
        self.tree.itemSelectionChanged.connect(self._update_buttons)
        self.hint = QLabel("No folders yet. Add a folder of photos, or drag one onto the "
                           "window.")
        self.hint.setWordWrap(True)
        self.hint.setObjectName("hint")
        self.progress = QProgressBar()
        self.progress.setTextVisible(True)
        self.progress.hide()
        self.add_btn = QPushButton("Add folder…")
        self.add_btn.clicked.connect(self.choose_folder)
        self.remove_btn = QPushButton("Remove")
        self.remove_btn.clicked.connect(self._remove)
        self.rescan_btn = QPushButton("Rescan")
        self.rescan_btn.clicked.connect(self.rescan)
        self.pause_btn = QPushButton("Pause")
        self.pause_btn.clicked.connect(self._pause_clicked)
        self.stop_btn = QPushButton("Stop")
        self.stop_btn.clicked.connect(self.cancel)
        row1 = QHBoxLayout()
        row1.addWidget(self.add_btn)
        row1.addWidget(self.remove_btn)
        row1.addWidget(self.rescan_btn)
        row2 = QHBoxLayout()
        row2.addWidget(self.progress, 1)
        row2.addWidget(self.pause_btn)
        row2.addWidget(self.stop_btn)
        lay = QVBoxLayout(self)
        lay.setContentsMargins(6, 6, 6, 6)
        lay.addWidget(title)
        lay.addWidget(self.tree, 1)
        lay.addWidget(self.hint)
        lay.addLayout(row2)
        lay.addLayout(row1)
        self._snap = LibrarySnapshot()
        self._state = IndexState()
        self._err_counts: dict[int, int] = {}
        self._can_index = False
        self._update_buttons()

    # ----------------------------------------------------------------- inputs
    def set_can_index(self, yes: bool) -> None:
        """Enable indexing controls (off when no model is installed)."""
        self._can_index = yes
        self._update_buttons()

    def set_snapshot(self, snap: LibrarySnapshot) -> None:
        """New folders, counts and errors."""
        self._snap = snap
        self._rebuild()

    def set_index_state(self, state: IndexState) -> None:
        """New indexing state and progress."""
        self._state = state
        p = state.progress
        running = state.running is not None
        self.progress.setVisible(running)
        if running:
            if p is None or p.phase == "walk" or not p.total:
                self.progress.setRange(0, 0)
                self.progress.setFormat("Looking for photos…")
            else:
                self.progress.setRange(0, p.total)
                self.progress.setValue(p.done)
                self.progress.setFormat(("Paused · " if state.paused else "")
                                        + f"{p.done} / {p.total}")
        self.pause_btn.setText("Resume" if state.paused else "Pause")
        self._refresh_states()
        self._update_buttons()

    # ----------------------------------------------------------------- tree
    def _rebuild(self) -> None:
        expanded = {self.tree.topLevelItem(i).data(0, Qt.ItemDataRole.UserRole)
                    for i in range(self.tree.topLevelItemCount())
                    if self.tree.topLevelItem(i).isExpanded()}
        selected = self.selected_root()
        items = self.tree.selectedItems()
        # A selected failed file stays selected as itself, never as its folder.
        selected_file = (items[0].data(0, Qt.ItemDataRole.UserRole + 1)
                         if items and items[0].parent() is not None else None)
        self.tree.clear()
        reselect: QTreeWidgetItem | None = None
        for root in self._snap.roots:
            item = QTreeWidgetItem([os.path.basename(root.path.rstrip(os.sep)) or root.path,
                                    ""])
            item.setData(0, Qt.ItemDataRole.UserRole, root.id)
            item.setToolTip(0, root.path)
            for err in self._snap.errors.get(root.id, ()):
                reason = stored_problem(err.reason)
                why = image_problem(reason) + "."
                child = QTreeWidgetItem([os.path.relpath(err.path, root.path),
                                         image_problem_label(reason)])
                child.setData(0, Qt.ItemDataRole.UserRole + 1, err.path)
                child.setToolTip(0, f"{err.path}\n{why} It is skipped; repair or replace "
                                    "it, then Rescan.")
                child.setToolTip(1, why)
                child.setForeground(1, QColor(_STATE_COLORS["warning"]))
                item.addChild(child)
                if root.id == selected and err.path == selected_file:
                    reselect = child
            self.tree.addTopLevelItem(item)
            n_err = item.childCount()
            newly_failed = self._err_counts.get(root.id, 0) == 0 and 0 < n_err <= 5
            self._err_counts[root.id] = n_err
            # The first few failures are shown unfolded; many stay folded.
            item.setExpanded(root.id in expanded or newly_failed)
            if root.id == selected and selected_file is None:
                reselect = item
        if reselect is not None:  # (selectable once in the tree)
            reselect.setSelected(True)
        self.hint.setVisible(not self._snap.roots)
        self._refresh_states()
        self._update_buttons()

    def _refresh_states(self) -> None:
        roots = {r.id: r for r in self._snap.roots}
        for i in range(self.tree.topLevelItemCount()):
            item = self.tree.topLevelItem(i)
            root = roots.get(item.data(0, Qt.ItemDataRole.UserRole))
            if root is None:
                continue
            kind, text = root_state(root, self._snap, self._state)
            item.setText(1, text)
            item.setForeground(1, QColor(_STATE_COLORS.get(kind, "#000")))
            item.setData(1, Qt.ItemDataRole.UserRole, kind)

    def state_of(self, root_id: int) -> tuple[str, str] | None:
        """``(kind, text)`` shown for a root (tests, screenshots)."""
        for i in range(self.tree.topLevelItemCount()):
            item = self.tree.topLevelItem(i)
            if item.data(0, Qt.ItemDataRole.UserRole) == root_id:
                return item.data(1, Qt.ItemDataRole.UserRole), item.text(1)
        return None

    def selected_folder(self) -> int | None:
        """Root id of the selected folder row (None when a failed file's row is selected)."""
        items = self.tree.selectedItems()
        if not items or items[0].parent() is not None:
            return None
        return items[0].data(0, Qt.ItemDataRole.UserRole)

    def selected_root(self) -> int | None:
        """Root id of the selected folder (or of the selected failed file's folder)."""
        items = self.tree.selectedItems()
        if not items:
            return None
        item = items[0]
        while item.parent() is not None:
            item = item.parent()
        return item.data(0, Qt.ItemDataRole.UserRole)

    # ----------------------------------------------------------------- actions
    def choose_folder(self) -> None:
        """Folder dialog → ``addFolder``."""
        path = QFileDialog.getExistingDirectory(self, "Add a folder of photos")
        if path:
            self.addFolder.emit(path)

    def _remove(self) -> None:
        rid = self.selected_folder()  # never the folder of a selected file row
        if rid is not None:
            self.removeFolder.emit(rid)

    def _pause_clicked(self) -> None:
        (self.resume if self._state.paused else self.pause).emit()

    def _update_buttons(self) -> None:
        busy = self._state.busy
        folder = self.selected_folder()
        self.remove_btn.setEnabled(folder is not None)
        if folder is None and self.selected_root() is not None:  # a failed file's row
            self.remove_btn.setToolTip(
                "Remove works on a whole folder: select the folder's row. A failed file is "
                "skipped; repair or replace it in your file manager, then Rescan.")
        else:
            self.remove_btn.setToolTip("Remove the selected folder from the library (no "
                                       "file is changed or deleted)")
        self.rescan_btn.setEnabled(self._can_index and bool(self._snap.roots))
        self.pause_btn.setEnabled(self._can_index and busy)
        self.stop_btn.setEnabled(self._can_index and busy)
