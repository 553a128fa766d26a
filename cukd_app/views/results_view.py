"""The results grid: a ``QListView`` in icon mode with filters, sort and a tier badge."""

from __future__ import annotations

from PySide6.QtCore import QModelIndex, QPersistentModelIndex, QRect, QSize, Qt, Signal
from PySide6.QtGui import (
    QAction,
    QColor,
    QFont,
    QFontMetrics,
    QPainter,
    QPalette,
    QPen,
    QPixmap,
)
from PySide6.QtWidgets import (
    QAbstractItemView,
    QCheckBox,
    QComboBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QListView,
    QMenu,
    QPushButton,
    QSpinBox,
    QStackedLayout,
    QStyle,
    QStyledItemDelegate,
    QStyleOptionViewItem,
    QVBoxLayout,
    QWidget,
)

from core.library import TIERS
from cukd_app.results_model import (
    SORT_KEYS,
    TIER_LABELS,
    ResultRoles,
    ResultsFilterProxy,
    ResultsModel,
    format_size,
    similarity_percent,
)

__all__ = ["TIER_COLORS", "ResultDelegate", "ResultsGrid", "ResultsView", "draw_thumbnail",
           "paint_checkerboard"]

TIER_COLORS = {"identical": QColor("#2e7d32"), "near_duplicate": QColor("#ef6c00"),
               "similar": QColor("#546e7a")}
_Index = QModelIndex | QPersistentModelIndex

#: Side of a checkerboard square behind transparent thumbnails, in logical pixels.
CHECKER = 8


def paint_checkerboard(p: QPainter, rect: QRect, palette: QPalette) -> None:
    """The usual sign of transparency behind an image: light squares in a light theme,
    dark ones in a dark theme."""
    dark = palette.color(QPalette.ColorRole.Base).lightness() < 128
    a, b = (QColor("#3a3a3a"), QColor("#4d4d4d")) if dark else (QColor("#ffffff"),
                                                                 QColor("#d4d4d4"))
    p.save()
    p.setClipRect(rect)
    p.fillRect(rect, a)
    for y in range(rect.top(), rect.bottom() + 1, CHECKER):
        odd = ((y - rect.top()) // CHECKER) % 2
        for x in range(rect.left() + odd * CHECKER, rect.right() + 1, 2 * CHECKER):
            p.fillRect(QRect(x, y, CHECKER, CHECKER), b)
    p.restore()


def draw_thumbnail(p: QPainter, box: QRect, pix: QPixmap, palette: QPalette) -> QRect:
    """Draw ``pix`` scaled to fit ``box`` (centred, aspect kept), over a checkerboard where
    it has transparency; returns where it was drawn."""
    size = pix.size() / max(pix.devicePixelRatio(), 1.0)
    size.scale(box.size(), Qt.AspectRatioMode.KeepAspectRatio)
    target = QRect(0, 0, size.width(), size.height())
    target.moveCenter(box.center())
    if pix.hasAlphaChannel():
        paint_checkerboard(p, target, palette)
    p.setRenderHint(QPainter.RenderHint.SmoothPixmapTransform)
    p.drawPixmap(target, pix)
    return target


class ResultDelegate(QStyledItemDelegate):
    """Paints a thumbnail, the file name and a badge: the similarity and tier of a search
    result (``show_distance``; its Hamming distance is in the tooltip), or the tier only."""

    def __init__(self, edge: int = 160, show_distance: bool = True,
                 parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.edge = edge
        self.show_distance = show_distance

    def sizeHint(self, option: QStyleOptionViewItem, index: _Index) -> QSize:
        """Thumbnail square plus two text lines."""
        line = option.fontMetrics.height()
        return QSize(self.edge + 12, self.edge + 2 * line + 16)

    def badge_text(self, index: _Index) -> str:
        """The badge on a tile: ``"87% · similar"`` for a search result, the tier alone in
        the duplicates grid."""
        tier = index.data(ResultRoles.Tier) or "similar"
        hit = index.data(ResultRoles.Hit)
        badge = TIER_LABELS.get(tier, tier)
        if self.show_distance and hit is not None:
            badge = f"{similarity_percent(hit)}% · {badge}"
        return badge

    @staticmethod
    def shown_name(index: _Index, fm: QFontMetrics, width: int) -> str:
        """The file name as a tile shows it: elided in the middle, so names that differ only
        at the end ("holiday-photo-0001.jpg", "holiday-photo-0002.jpg") stay apart."""
        return fm.elidedText(index.data(Qt.ItemDataRole.DisplayRole) or "",
                             Qt.TextElideMode.ElideMiddle, width)

    def name_width(self, option: QStyleOptionViewItem) -> int:
        """Width available for the name line of a tile laid out in ``option.rect``."""
        return option.rect.width() - 12

    def paint(self, p: QPainter, option: QStyleOptionViewItem, index: _Index) -> None:
        """Draw one result cell."""
        p.save()
        r = option.rect.adjusted(3, 3, -3, -3)
        pal = option.palette
        selected = bool(option.state & QStyle.StateFlag.State_Selected)
        if selected:
            p.fillRect(r, pal.color(QPalette.ColorRole.Highlight))
        elif option.state & QStyle.StateFlag.State_MouseOver:
            p.fillRect(r, pal.color(QPalette.ColorRole.AlternateBase))
        thumb = QRect(r.x() + 3, r.y() + 3, r.width() - 6, self.edge)
        pix = index.data(Qt.ItemDataRole.DecorationRole)
        text_color = pal.color(QPalette.ColorRole.HighlightedText if selected
                               else QPalette.ColorRole.Text)
        if pix is not None and not pix.isNull():
            draw_thumbnail(p, thumb, pix, pal)
        else:
            p.fillRect(thumb, pal.color(QPalette.ColorRole.Midlight))
            state = index.data(ResultRoles.ThumbnailState)
            p.setPen(pal.color(QPalette.ColorRole.PlaceholderText))
            p.drawText(thumb, Qt.AlignmentFlag.AlignCenter,
                       "cannot preview" if state == "failed" else "…")
        tier = index.data(ResultRoles.Tier) or "similar"
        hit = index.data(ResultRoles.Hit)
        badge = self.badge_text(index)
        f = QFont(option.font)
        f.setPointSizeF(max(f.pointSizeF() * 0.85, 7.0))
        f.setBold(True)
        p.setFont(f)
        fm = p.fontMetrics()
        bw, bh = fm.horizontalAdvance(badge) + 10, fm.height() + 2
        brect = QRect(thumb.left() + 4, thumb.bottom() - bh - 3, bw, bh)
        p.setRenderHint(QPainter.RenderHint.Antialiasing)
        p.setPen(Qt.PenStyle.NoPen)
        p.setBrush(TIER_COLORS.get(tier, QColor("#546e7a")))
        p.drawRoundedRect(brect, 4, 4)
        p.setPen(QPen(QColor("white")))
        p.drawText(brect, Qt.AlignmentFlag.AlignCenter, badge)
        p.setFont(option.font)
        p.setPen(text_color)
        name_rect = QRect(r.x() + 3, thumb.bottom() + 4, self.name_width(option),
                          option.fontMetrics.height())
        name = self.shown_name(index, option.fontMetrics, name_rect.width())
        p.drawText(name_rect, Qt.AlignmentFlag.AlignHCenter, name)
        if hit is not None:
            sub = QRect(name_rect.translated(0, name_rect.height()))
            p.setPen(pal.color(QPalette.ColorRole.PlaceholderText) if not selected
                     else text_color)
            dims = f"{hit.width} × {hit.height}" if hit.width and hit.height else ""
            if not self.show_distance:  # duplicates: compare sizes side by side
                dims = f"{dims} · {format_size(hit.size)}" if dims else format_size(hit.size)
            p.drawText(sub, Qt.AlignmentFlag.AlignHCenter, dims)
        p.restore()


class ResultsGrid(QListView):
    """Icon-mode list of results with a context menu and keyboard activation.

    Signals:
        activatedPath(str): double-click or Enter on a result (open it).
        menuRequested(str, QPoint): context menu for a result path at a global position.
    """

    activatedPath = Signal(str)
    menuRequested = Signal(str, object)

    def __init__(self, edge: int = 160, parent: QWidget | None = None,
                 show_distance: bool = True) -> None:
        super().__init__(parent)
        self.setViewMode(QListView.ViewMode.IconMode)
        self.setResizeMode(QListView.ResizeMode.Adjust)
        self.setMovement(QListView.Movement.Static)
        self.setUniformItemSizes(True)
        self.setSelectionMode(QAbstractItemView.SelectionMode.ExtendedSelection)
        self.setDragEnabled(True)
        self.setDragDropMode(QAbstractItemView.DragDropMode.DragOnly)
        self.setMouseTracking(True)
        self.setSpacing(4)
        self.setWordWrap(False)
        self.delegate = ResultDelegate(edge, show_distance, self)
        self.setItemDelegate(self.delegate)
        self.setContextMenuPolicy(Qt.ContextMenuPolicy.CustomContextMenu)
        self.customContextMenuRequested.connect(self._menu)
        self.activated.connect(lambda idx: self.activatedPath.emit(idx.data(ResultRoles.Path)))
        self.set_edge(edge)

    def set_edge(self, edge: int) -> None:
        """Thumbnail size in logical pixels."""
        self.delegate.edge = edge
        self.setGridSize(self.delegate.sizeHint(self.viewOptions_(), QModelIndex()))
        self.doItemsLayout()

    def viewOptions_(self) -> QStyleOptionViewItem:
        """Style options (font metrics) used for size hints."""
        opt = QStyleOptionViewItem()
        opt.initFrom(self)
        return opt

    def _menu(self, pos: object) -> None:
        idx = self.indexAt(pos)  # type: ignore[arg-type]
        if idx.isValid():
            self.menuRequested.emit(idx.data(ResultRoles.Path), self.viewport().mapToGlobal(pos))

    def current_path(self) -> str | None:
        """Path of the current result, if any."""
        idx = self.currentIndex()
        return idx.data(ResultRoles.Path) if idx.isValid() else None


class ResultsView(QWidget):
    """A two-row header (count, name filter, sort, result count; tier and distance filters)
    over the results grid or an empty-state message.

    Signals:
        filtersChanged(): tier, distance or name filter changed (settings to remember).
        countChanged(int): the result count changed (the search should be re-run).
        sortChanged(str): the sort key changed.
    """

    WELCOME = ("Drop a photo here, paste one (Ctrl+V) or open one (Ctrl+O) to find similar "
               "photos in your library.")
    #: The first step, while the library has no folder (with the Add-folder button).
    FIRST_STEP = ("Your library is empty. Start by adding a folder of photos: it is indexed "
                  "in the background, and your photos are never changed or moved.")

    filtersChanged = Signal()
    addFolderRequested = Signal()
    countChanged = Signal(int)
    sortChanged = Signal(str)

    def __init__(self, model: ResultsModel, edge: int = 160,
                 parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.model = model
        self.proxy = ResultsFilterProxy(self)
        self.proxy.setSourceModel(model)
        # Two plain rows, no QToolBar: a toolbar hides what does not fit behind a "»" menu,
        # so at 900 px the count, sort and name filter (Ctrl+F) were out of reach. Row 1
        # holds what is used most and shrinks with the window; row 2 the tier and distance
        # filters.
        self.tier_boxes: dict[str, QCheckBox] = {}
        for t in TIERS:
            cb = QCheckBox(TIER_LABELS[t].capitalize())
            cb.setChecked(True)
            cb.toggled.connect(self._apply_filters)
            self.tier_boxes[t] = cb
        self.max_distance = QSpinBox()
        self.max_distance.setRange(-1, 4096)
        self.max_distance.setSpecialValueText("any")
        self.max_distance.setValue(-1)
        self.max_distance.setSuffix(" bits")
        self.max_distance.setToolTip("Hide results whose code differs in more bits")
        self.max_distance.valueChanged.connect(self._apply_filters)
        self.count = QSpinBox()
        self.count.setRange(1, 1000)
        self.count.setValue(60)
        self.count.setKeyboardTracking(False)
        self.count.setToolTip("How many similar photos to look for")
        self.count.valueChanged.connect(self.countChanged)
        self.sort = QComboBox()
        for k in SORT_KEYS:
            self.sort.addItem({"rank": "Best match", "distance": "Distance",
                               "date": "Newest", "size": "Largest",
                               "name": "Name"}[k], k)
        self.sort.setItemData(0, "Most similar first (the percentage on each photo)",
                              Qt.ItemDataRole.ToolTipRole)
        self.sort.setItemData(1, "Fewest differing code bits first",
                              Qt.ItemDataRole.ToolTipRole)
        self.sort.currentIndexChanged.connect(self._apply_sort)
        self.name_filter = QLineEdit()
        self.name_filter.setPlaceholderText("Filter by name (Ctrl+F)")
        self.name_filter.setClearButtonEnabled(True)
        self.name_filter.textChanged.connect(self._apply_filters)
        self.name_filter.setMinimumWidth(100)
        self.summary = QLabel("")
        self.summary.setObjectName("resultsSummary")

        self.header = QWidget()
        self.header.setObjectName("resultsFilters")
        top = QHBoxLayout()
        top.setContentsMargins(0, 0, 0, 0)
        top.addWidget(self.summary)
        top.addWidget(self.name_filter, 1)
        top.addWidget(QLabel("Sort:"))
        top.addWidget(self.sort)
        top.addWidget(QLabel("Results:"))
        top.addWidget(self.count)
        filters = QHBoxLayout()
        filters.setContentsMargins(0, 0, 0, 0)
        for cb in self.tier_boxes.values():
            filters.addWidget(cb)
        filters.addSpacing(8)
        filters.addWidget(QLabel("Max distance:"))
        filters.addWidget(self.max_distance)
        filters.addStretch(1)
        hl = QVBoxLayout(self.header)
        hl.setContentsMargins(6, 4, 6, 2)
        hl.setSpacing(2)
        hl.addLayout(top)
        hl.addLayout(filters)

        self.grid = ResultsGrid(edge, self)
        self.grid.setModel(self.proxy)
        self.proxy.set_sort_key("rank")  # best match from the first results on
        self.empty = QLabel()
        self.empty.setObjectName("emptyState")
        self.empty.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.empty.setWordWrap(True)
        self.add_folder_btn = QPushButton("Add a folder of photos…")
        self.add_folder_btn.setObjectName("firstStepButton")
        self.add_folder_btn.setToolTip("Choose a folder; you can also drag one onto the window")
        self.add_folder_btn.clicked.connect(self.addFolderRequested)
        self.empty_page = QWidget()
        ep = QVBoxLayout(self.empty_page)
        ep.addStretch(1)
        ep.addWidget(self.empty)
        ep.addWidget(self.add_folder_btn, 0, Qt.AlignmentFlag.AlignHCenter)
        ep.addStretch(2)
        self.set_empty_text("Opening your library…")
        self._stack = QStackedLayout()
        self._stack.addWidget(self.empty_page)
        self._stack.addWidget(self.grid)
        lay = QVBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.addWidget(self.header)
        lay.addLayout(self._stack)
        model.modelReset.connect(self._update_empty)
        self.proxy.layoutChanged.connect(self._update_summary)
        self.proxy.rowsInserted.connect(self._update_summary)
        self.proxy.rowsRemoved.connect(self._update_summary)
        self.proxy.modelReset.connect(self._update_summary)

    def set_empty_text(self, text: str, add_folder: bool = False) -> None:
        """Message shown when there are no results; ``add_folder``: a first step, shown as
        a prominent "Add a folder of photos…" button under it."""
        self.empty.setText(text)
        self.add_folder_btn.setVisible(add_folder)
        if bool(self.empty.property("firstStep")) != add_folder:
            self.empty.setProperty("firstStep", add_folder)  # plain text colour (app.qss)
            self.empty.style().unpolish(self.empty)
            self.empty.style().polish(self.empty)

    def _update_empty(self) -> None:
        self._stack.setCurrentWidget(self.grid if self.model.rowCount() else self.empty_page)
        self._update_summary()

    def _update_summary(self) -> None:
        n, total = self.proxy.rowCount(), self.model.rowCount()
        self.summary.setText(f"{n} of {total}" if n != total else f"{total} results"
                             if total else "")

    def _apply_filters(self) -> None:
        tiers = [t for t, cb in self.tier_boxes.items() if cb.isChecked()]
        md = self.max_distance.value()
        self.proxy.set_filters(tiers, None if md < 0 else md)
        self.proxy.set_name_filter(self.name_filter.text())
        self._update_summary()
        self.filtersChanged.emit()

    def _apply_sort(self) -> None:
        key = self.sort.currentData()
        self.proxy.set_sort_key(key)
        self.sortChanged.emit(key)

    def set_state(self, tiers: tuple[str, ...], max_distance: int | None, count: int,
                  sort: str) -> None:
        """Restore remembered filters."""
        for t, cb in self.tier_boxes.items():
            cb.setChecked(t in tiers)
        self.max_distance.setValue(-1 if max_distance is None else max_distance)
        self.count.blockSignals(True)
        self.count.setValue(count)
        self.count.blockSignals(False)
        i = self.sort.findData(sort)
        if i >= 0:
            self.sort.setCurrentIndex(i)

    def state(self) -> tuple[tuple[str, ...], int | None, int, str]:
        """``(tiers, max_distance, count, sort)`` to remember."""
        md = self.max_distance.value()
        return (tuple(t for t, cb in self.tier_boxes.items() if cb.isChecked()),
                None if md < 0 else md, self.count.value(), self.sort.currentData())

    @staticmethod
    def result_menu(parent: QWidget) -> tuple[QMenu, dict[str, QAction]]:
        """The context menu of a result: open, reveal, copy path, copy image, search."""
        menu = QMenu(parent)
        acts = {
            "open": menu.addAction("Open"),
            "reveal": menu.addAction("Show in file manager"),
        }
        menu.addSeparator()
        acts["copy_path"] = menu.addAction("Copy path")
        acts["copy_image"] = menu.addAction("Copy image")
        menu.addSeparator()
        acts["search"] = menu.addAction("Search similar to this")
        return menu, acts
