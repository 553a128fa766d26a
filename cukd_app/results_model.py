"""The results grid's model: search hits with thumbnails that arrive asynchronously."""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Sequence
from typing import Any

from PySide6.QtCore import (
    QAbstractListModel,
    QModelIndex,
    QObject,
    QPersistentModelIndex,
    QSortFilterProxyModel,
    Qt,
    Slot,
)
from PySide6.QtGui import QImage, QPixmap

from core.library import TIERS, SearchHit
from cukd_app.services.thumbnails import ThumbnailLoader

__all__ = [
    "SORT_KEYS",
    "TIER_LABELS",
    "ResultRoles",
    "ResultsFilterProxy",
    "ResultsModel",
    "format_size",
    "hit_tooltip",
    "similarity_percent",
]

TIER_LABELS = {"identical": "identical", "near_duplicate": "near-duplicate",
               "similar": "similar"}
TIER_ORDER = {"identical": 0, "near_duplicate": 1, "similar": 2}
SORT_KEYS = ("rank", "distance", "date", "size", "name")

_Index = QModelIndex | QPersistentModelIndex


class ResultRoles:
    """Custom item data roles."""

    Hit = Qt.ItemDataRole.UserRole + 1
    Path = Qt.ItemDataRole.UserRole + 2
    Tier = Qt.ItemDataRole.UserRole + 3
    Distance = Qt.ItemDataRole.UserRole + 4
    Rank = Qt.ItemDataRole.UserRole + 5
    ThumbnailState = Qt.ItemDataRole.UserRole + 6  # "loading" | "ready" | "failed"
    Similarity = Qt.ItemDataRole.UserRole + 7  # the shown similarity, whole percent


def format_size(n: int) -> str:
    """``1536`` → ``"1.5 KB"``."""
    size = float(n)
    for unit in ("B", "KB", "MB", "GB"):
        if size < 1024 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{n} B"


def similarity_percent(hit: SearchHit) -> int:
    """The one score a tile shows: the hit's similarity (embedding cosine) in whole percent,
    0–100. "Best match" orders by it (see :class:`ResultsFilterProxy`)."""
    return round(min(max(hit.score, 0.0), 1.0) * 100)


def hit_tooltip(hit: SearchHit) -> str:
    """Path, dimensions, size, date, similarity, Hamming distance and tier of a hit."""
    dims = f"{hit.width} × {hit.height}" if hit.width and hit.height else "unknown size"
    date = time.strftime("%Y-%m-%d %H:%M", time.localtime(hit.mtime))
    return (f"{hit.path}\n{dims} px · {format_size(hit.size)} · {date}\n"
            f"{similarity_percent(hit)}% similar · {TIER_LABELS.get(hit.tier, hit.tier)}"
            f" · codes differ in {hit.hamming} bits (Hamming distance)")


class ResultsModel(QAbstractListModel):
    """One row per :class:`core.library.SearchHit`, in the engine's ranking order.

    Thumbnails are requested from the loader the first time a view asks for an item's
    decoration, and the row is updated (``dataChanged``) when the ``QImage`` arrives; one the
    loader already holds (a photo shown before) is returned by that first ``data()`` call.
    """

    def __init__(self, loader: ThumbnailLoader | None = None,
                 parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._hits: list[SearchHit] = []
        self._rows: dict[str, list[int]] = {}
        self._pixmaps: dict[str, QPixmap] = {}
        self._failed: set[str] = set()
        self._loader = loader
        self.generation = 0
        if loader is not None:
            loader.ready.connect(self._on_thumbnail)
            loader.failed.connect(self._on_thumbnail_failed)

    # ----------------------------------------------------------------- content
    def set_hits(self, hits: Sequence[SearchHit], generation: int = 0) -> None:
        """Replace the results (pending thumbnail loads of older results are dropped)."""
        self.beginResetModel()
        self._hits = list(hits)
        self._rows = {}
        for i, h in enumerate(self._hits):
            self._rows.setdefault(h.path, []).append(i)
        self._pixmaps.clear()
        self._failed.clear()
        self.generation = generation
        if self._loader is not None:
            self._loader.clear_pending()
        self.endResetModel()

    def clear(self) -> None:
        """No results."""
        self.set_hits([], self.generation)

    def hit(self, row: int) -> SearchHit:
        """The hit at ``row``."""
        return self._hits[row]

    @property
    def hits(self) -> tuple[SearchHit, ...]:
        """All hits, in ranking order."""
        return tuple(self._hits)

    # ----------------------------------------------------------------- Qt model API
    def rowCount(self, parent: _Index = QModelIndex()) -> int:
        """Number of hits (0 under any valid parent: a flat list)."""
        return 0 if parent.isValid() else len(self._hits)

    def flags(self, index: _Index) -> Qt.ItemFlag:
        """Selectable, enabled, draggable (as a file URL)."""
        if not index.isValid():
            return Qt.ItemFlag.NoItemFlags
        return (Qt.ItemFlag.ItemIsEnabled | Qt.ItemFlag.ItemIsSelectable
                | Qt.ItemFlag.ItemIsDragEnabled | Qt.ItemFlag.ItemNeverHasChildren)

    def data(self, index: _Index, role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        """Name, thumbnail, tooltip and the custom :class:`ResultRoles`."""
        if not index.isValid() or not 0 <= index.row() < len(self._hits):
            return None
        h = self._hits[index.row()]
        if role == Qt.ItemDataRole.DisplayRole:
            return os.path.basename(h.path)
        if role == Qt.ItemDataRole.DecorationRole:
            pix = self._pixmaps.get(h.path)
            return pix if pix is not None else self._ensure_thumbnail(h.path)
        if role == Qt.ItemDataRole.ToolTipRole:
            return hit_tooltip(h)
        if role == ResultRoles.Hit:
            return h
        if role == ResultRoles.Path:
            return h.path
        if role == ResultRoles.Tier:
            return h.tier
        if role == ResultRoles.Distance:
            return h.hamming
        if role == ResultRoles.Rank:
            return index.row()
        if role == ResultRoles.Similarity:
            return similarity_percent(h)
        if role == ResultRoles.ThumbnailState:
            if h.path in self._pixmaps:
                return "ready"
            return "failed" if h.path in self._failed else "loading"
        return None

    def mimeTypes(self) -> list[str]:
        """Results drag out as file URLs."""
        return ["text/uri-list"]

    def mimeData(self, indexes: Sequence[_Index]) -> Any:
        """File URLs of the dragged results."""
        from PySide6.QtCore import QMimeData, QUrl

        md = QMimeData()
        md.setUrls([QUrl.fromLocalFile(self._hits[i.row()].path) for i in indexes
                    if i.isValid()])
        return md

    # ----------------------------------------------------------------- thumbnails
    def _ensure_thumbnail(self, path: str) -> QPixmap | None:
        """The thumbnail at once when the loader already has it (a photo shown before:
        returned now, since no ``ready`` or ``dataChanged`` would follow to repaint it);
        otherwise request it (``dataChanged`` when it arrives) and return None."""
        if self._loader is None or path in self._failed:
            return None
        img = self._loader.cached(path)
        if img is not None:
            pix = self._pixmaps[path] = QPixmap.fromImage(img)
            return pix
        self._loader.request(path)
        return None

    @Slot(str, QImage)
    def _on_thumbnail(self, path: str, image: QImage) -> None:
        rows = self._rows.get(path)
        if not rows:
            return
        self._pixmaps[path] = QPixmap.fromImage(image)  # GUI thread only
        for r in rows:
            idx = self.index(r)
            self.dataChanged.emit(idx, idx, [Qt.ItemDataRole.DecorationRole])

    @Slot(str, str)
    def _on_thumbnail_failed(self, path: str, _reason: str) -> None:
        rows = self._rows.get(path)
        if not rows:
            return
        self._failed.add(path)
        for r in rows:
            idx = self.index(r)
            self.dataChanged.emit(idx, idx, [Qt.ItemDataRole.DecorationRole])


class ResultsFilterProxy(QSortFilterProxyModel):
    """Filters results by tier and maximum Hamming distance; sorts by a chosen key."""

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._tiers: frozenset[str] = frozenset(TIERS)
        self._max_distance: int | None = None
        self._sort_key = "rank"
        self._name = ""
        self.setDynamicSortFilter(False)

    def set_filters(self, tiers: Sequence[str], max_distance: int | None) -> None:
        """Show only these tiers and hits within ``max_distance`` bits (None: any)."""
        self._refilter(lambda: self._set(frozenset(tiers), max_distance))

    def _set(self, tiers: frozenset[str], max_distance: int | None) -> None:
        self._tiers, self._max_distance = tiers, max_distance

    def _refilter(self, change: Callable[[], object]) -> None:
        """Apply ``change`` and re-filter (Qt >= 6.9 API when available)."""
        if hasattr(self, "beginFilterChange"):
            self.beginFilterChange()
            change()
            self.endFilterChange()
        else:  # older Qt
            change()
            self.invalidateFilter()

    def set_sort_key(self, key: str) -> None:
        """``"rank"`` (best match: the shown similarity, highest first; equal percentages in
        the engine's order), ``"distance"`` (fewest differing bits), ``"date"`` (newest
        first), ``"size"`` (largest first) or ``"name"``."""
        if key not in SORT_KEYS:
            raise ValueError(f"unknown sort key {key!r}")
        self._sort_key = key
        self.invalidate()
        self.setDynamicSortFilter(False)
        self.sort(0, Qt.SortOrder.AscendingOrder)

    @property
    def sort_key(self) -> str:
        """Current sort key."""
        return self._sort_key

    def set_name_filter(self, text: str) -> None:
        """Show only hits whose path contains ``text`` (case-insensitive)."""
        name = text.strip().lower()
        self._refilter(lambda: setattr(self, "_name", name))

    def filterAcceptsRow(self, row: int, parent: _Index) -> bool:
        """Tier and distance filter."""
        hit = self.sourceModel().index(row, 0, parent).data(ResultRoles.Hit)
        if hit is None:
            return False
        if hit.tier not in self._tiers:
            return False
        if self._name and self._name not in hit.path.lower():
            return False
        return self._max_distance is None or hit.hamming <= self._max_distance

    def lessThan(self, left: _Index, right: _Index) -> bool:
        """Order by the sort key; ties by engine rank. Best match puts copies first (the
        tier the tile names: identical, then near-duplicate, then similar) and orders each
        tier by the similarity the tiles show, so within a tier the shown percentages never
        rise down the grid (a greyscale copy, lower in cosine, still comes before a merely
        similar photo)."""
        a, b = left.data(ResultRoles.Hit), right.data(ResultRoles.Hit)
        ra, rb = left.row(), right.row()
        k = self._sort_key
        if k == "distance":
            return (a.hamming, ra) < (b.hamming, rb)
        if k == "date":
            return (-a.mtime, ra) < (-b.mtime, rb)
        if k == "size":
            return (-a.size, ra) < (-b.size, rb)
        if k == "name":
            return (os.path.basename(a.path).lower(), ra) < (os.path.basename(b.path).lower(),
                                                             rb)
        return ((TIER_ORDER.get(a.tier, len(TIER_ORDER)), -similarity_percent(a), ra)
                < (TIER_ORDER.get(b.tier, len(TIER_ORDER)), -similarity_percent(b), rb))
