"""The model manager: list models with provenance; use, rename, delete, export, import."""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from pathlib import Path

from PySide6.QtCore import Qt, Signal, Slot
from PySide6.QtGui import QFont
from PySide6.QtWidgets import (
    QDialog,
    QDialogButtonBox,
    QFileDialog,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QMessageBox,
    QPlainTextEdit,
    QPushButton,
    QSplitter,
    QTreeWidget,
    QTreeWidgetItem,
    QVBoxLayout,
    QWidget,
)

from cukd_app.models_manager.store import ModelEntry, ModelStore, ModelStoreError
from cukd_app.notifications import Notifier
from cukd_app.views.small_dialogs import ask_text

__all__ = ["ModelManagerDialog"]

logger = logging.getLogger(__name__)

COLUMNS = ("Name", "Method", "Data", "Classes", "Val. mAP", "Created")


def _details(e: ModelEntry) -> str:
    s = e.summary
    if e.error:
        return f"{e.path}\n\nThis file cannot be used: {e.error}"
    classes = s.get("classes") or []
    lines = [
        f"File: {e.path}",
        f"Method: {e.describe()}" + (f" — step {s['step']}" if s.get("step") else ""),
        f"Network: {s.get('arch') or '?'} at {s.get('input_size') or '?'} px",
        f"Data: {s.get('data') or '—'}",
        f"Classes ({len(classes)}): {', '.join(classes) if classes else '—'}",
        f"Training / validation images: {s.get('n_train') or '—'} / {s.get('n_val') or '—'}",
        f"Validation mAP: {s['val_map']:.4f}" if s.get("val_map") is not None
        else "Validation mAP: —",
        f"Created: {s.get('created') or '—'}",
    ]
    return "\n".join(lines)


class ModelManagerDialog(QDialog):
    """Lists the default and the user's models.

    Args:
        store: the models folder.
        notifier: the error path.
        active: returns the model file in use (``None``: none).

    Signals:
        useRequested(Path): switch the library to this model.
        renamed(Path, str): a model got a new display name.
    """

    useRequested = Signal(object)
    renamed = Signal(object, str)

    def __init__(self, store: ModelStore, notifier: Notifier,
                 active: Callable[[], Path | None], parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("Models")
        self.resize(900, 520)
        self.store, self.notifier, self._active = store, notifier, active
        self.entries: list[ModelEntry] = []
        self.tree = QTreeWidget()
        self.tree.setHeaderLabels(list(COLUMNS))
        self.tree.setRootIsDecorated(False)
        self.tree.setAlternatingRowColors(True)
        self.tree.setTextElideMode(Qt.TextElideMode.ElideMiddle)  # "…copy 2" stays apart
        self.tree.header().setSectionResizeMode(0, QHeaderView.ResizeMode.Stretch)
        self.tree.currentItemChanged.connect(self._selected)
        self.tree.itemDoubleClicked.connect(lambda *_: self.use_selected())
        self.details = QPlainTextEdit()
        self.details.setReadOnly(True)
        split = QSplitter(Qt.Orientation.Vertical)
        split.addWidget(self.tree)
        split.addWidget(self.details)
        split.setSizes([300, 160])
        self.use_btn = QPushButton("Use this model")
        self.rename_btn = QPushButton("Rename…")
        self.delete_btn = QPushButton("Delete")
        self.export_btn = QPushButton("Export…")
        self.import_btn = QPushButton("Import…")
        self.use_btn.clicked.connect(self.use_selected)
        self.rename_btn.clicked.connect(self._rename)
        self.delete_btn.clicked.connect(self._delete)
        self.export_btn.clicked.connect(self._export)
        self.import_btn.clicked.connect(self._import)
        row = QHBoxLayout()
        for b in (self.use_btn, self.rename_btn, self.delete_btn, self.export_btn):
            row.addWidget(b)
        row.addStretch(1)
        row.addWidget(self.import_btn)
        self.note = QLabel("")
        self.note.setWordWrap(True)
        close = QDialogButtonBox(QDialogButtonBox.StandardButton.Close)
        close.rejected.connect(self.reject)
        lay = QVBoxLayout(self)
        lay.addWidget(split, 1)
        lay.addLayout(row)
        lay.addWidget(self.note)
        lay.addWidget(close)
        self.refresh()

    # ------------------------------------------------------------------ list
    def refresh(self, select: Path | None = None) -> None:
        """Re-read the models folder."""
        active = self._active()
        self.entries = self.store.list(external=active)
        self.tree.clear()
        bold = QFont(self.font())
        bold.setBold(True)
        for e in self.entries:
            s = e.summary
            vm = s.get("val_map")
            is_active = active is not None and _same(e.path, active)
            item = QTreeWidgetItem([
                e.name + ("  (in use)" if is_active else ""),
                "—" if e.error else e.describe(),
                Path(str(s.get("data") or "—")).name or str(s.get("data")),
                str(len(s.get("classes") or [])) if s.get("classes") else "—",
                f"{vm:.3f}" if isinstance(vm, float) else "—",
                str(s.get("created") or "—")[:16].replace("T", " "),
            ])
            item.setData(0, Qt.ItemDataRole.UserRole, str(e.path))
            if is_active:
                for c in range(len(COLUMNS)):
                    item.setFont(c, bold)
            item.setToolTip(0, e.error or str(e.path))
            self.tree.addTopLevelItem(item)
        for c in range(1, len(COLUMNS)):
            self.tree.resizeColumnToContents(c)
        target = select or active
        for i, e in enumerate(self.entries):
            if target is not None and _same(e.path, target):
                self.tree.setCurrentItem(self.tree.topLevelItem(i))
                break
        else:
            if self.entries:
                self.tree.setCurrentItem(self.tree.topLevelItem(0))
        if not self.entries:
            self.details.setPlainText("No models yet: the default model is not installed and "
                                      "none was trained or imported.")
        self._selected()

    def selected(self) -> ModelEntry | None:
        """The highlighted model."""
        item = self.tree.currentItem()
        if item is None:
            return None
        path = item.data(0, Qt.ItemDataRole.UserRole)
        return next((e for e in self.entries if str(e.path) == path), None)

    def select(self, path: Path) -> None:
        """Highlight a model by file."""
        for i, e in enumerate(self.entries):
            if _same(e.path, path):
                self.tree.setCurrentItem(self.tree.topLevelItem(i))

    @Slot()
    def _selected(self, *_args: object) -> None:
        e = self.selected()
        active = self._active()
        is_active = e is not None and active is not None and _same(e.path, active)
        self.details.setPlainText(_details(e) if e is not None else "")
        self.use_btn.setEnabled(e is not None and not e.error and not is_active)
        self.rename_btn.setEnabled(e is not None and not e.is_default)
        self.delete_btn.setEnabled(e is not None and not e.is_default and not is_active)
        self.export_btn.setEnabled(e is not None and not e.error)
        self.note.setText("This model is not in the models folder, so it cannot be renamed or "
                          "deleted here." if e is not None and e.is_default
                          and not self.store.is_default(e.path) else
                          "The default model cannot be renamed or deleted." if e is not None
                          and e.is_default else "The model in use cannot be deleted."
                          if is_active else "")

    # ------------------------------------------------------------------ actions
    @Slot()
    def use_selected(self) -> None:
        """Ask the library to switch to the highlighted model."""
        e = self.selected()
        if e is None or e.error:
            return
        self.useRequested.emit(e.path)
        self.notifier.info(f"Switching to “{e.name}”: the library is re-encoded in the "
                           "background; searches use the current model until it is done.")

    def rename(self, e: ModelEntry, name: str) -> bool:
        """Rename a user model (errors go to the notifier)."""
        try:
            self.store.rename(e.path, name)
        except ModelStoreError as exc:
            self.notifier.error(str(exc))
            return False
        self.refresh(e.path)
        self.renamed.emit(e.path, self.store.display_name(e.path))
        return True

    @Slot()
    def _rename(self) -> None:
        e = self.selected()
        if e is None:
            return
        name, ok = ask_text(self, "Rename model", "New name:", e.name)
        if ok:
            self.rename(e, name)

    def delete(self, e: ModelEntry) -> bool:
        """Delete a user model (never the default or the active one)."""
        try:
            self.store.delete(e.path, active=self._active())
        except (ModelStoreError, OSError) as exc:
            self.notifier.error(str(exc))
            return False
        self.notifier.info(f"Deleted model “{e.name}”.")
        self.refresh()
        return True

    @Slot()
    def _delete(self) -> None:
        e = self.selected()
        if e is None:
            return
        answer = QMessageBox.question(self, "Delete model",
                                      f"Delete the model “{e.name}”? This cannot be undone.")
        if answer == QMessageBox.StandardButton.Yes:
            self.delete(e)

    def export_to(self, e: ModelEntry, dest: str | os.PathLike[str]) -> Path | None:
        """Copy a model file out (errors go to the notifier)."""
        try:
            out = self.store.export(e.path, dest)
        except OSError as exc:
            self.notifier.error(exc)
            return None
        self.notifier.info(f"Exported “{e.name}” to {out}")
        return out

    @Slot()
    def _export(self) -> None:
        e = self.selected()
        if e is None:
            return
        dest, _ = QFileDialog.getSaveFileName(self, "Export model", str(Path.home() / (
            e.name.replace(os.sep, "-") + ".pt")), "Model files (*.pt)")
        if dest:
            self.export_to(e, dest)

    def import_from(self, path: str | os.PathLike[str]) -> Path | None:
        """Validate and import a model file (``weights_only`` load; errors to the notifier)."""
        try:
            dest = self.store.import_file(path)
        except (ModelStoreError, OSError) as exc:
            self.notifier.error(f"Cannot import {Path(path).name}: {exc}")
            return None
        self.notifier.info(f"Imported model {Path(path).name}")
        self.refresh(dest)
        return dest

    @Slot()
    def _import(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Import a model file", str(Path.home()),
                                              "Model files (*.pt);;All files (*)")
        if path:
            self.import_from(path)


def _same(a: Path, b: Path) -> bool:
    return os.path.realpath(a) == os.path.realpath(b)
