"""Thumbnails already loaded once paint at once when they are shown again (issue 17, item 1).

What the grid painted is read back from the offscreen window's backing store
(``QScreen.grabWindow``), which does not repaint: a tile left grey ("…") after a new search
stays grey there until something else repaints it, as the user saw.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from PySide6.QtCore import QEvent, QObject, QPoint, Qt
from PySide6.QtGui import QColor, QPalette, QPixmap
from PySide6.QtWidgets import QWidget

from core.library import SearchHit
from cukd_app.results_model import ResultRoles, ResultsModel
from cukd_app.services.thumbnails import ThumbnailCache, ThumbnailLoader
from cukd_app.testing import make_test_context, open_library, show_window
from cukd_app.views.results_view import ResultsGrid
from tests.library_helpers import make_tree


def visible_rows(grid: ResultsGrid) -> list[int]:
    """Rows whose tile lies in the grid's viewport."""
    model = grid.model()
    return [r for r in range(model.rowCount())
            if grid.visualRect(model.index(r, 0)).intersects(grid.viewport().rect())]


def unpainted_tiles(grid: ResultsGrid) -> list[int]:
    """Rows of the visible tiles whose thumbnail area does not show a picture on screen: the
    grey placeholder was painted there, or nothing was painted yet."""
    win = grid.window()
    shot = win.screen().grabWindow(win.winId()).toImage()
    grey = grid.palette().color(QPalette.ColorRole.Midlight).rgb()
    edge = grid.delegate.edge
    model = grid.model()
    rows = []
    for r in visible_rows(grid):
        rect = grid.visualRect(model.index(r, 0))
        cx, cy = rect.center().x(), rect.y() + 6 + edge // 2  # the thumbnail's centre
        points = [grid.viewport().mapTo(win, QPoint(cx + dx, cy + dy))
                  for dx in (-edge // 4, edge // 4) for dy in (-edge // 8, edge // 8)]
        if not all(shot.valid(p) for p in points) or {
                QColor(shot.pixel(p)).rgb() for p in points} == {grey}:
            rows.append(r)
    return rows


def all_painted(grid: ResultsGrid, n: int | None = None) -> bool:
    """Every visible tile (at least one; ``n`` when given) shows its thumbnail."""
    rows = visible_rows(grid)
    return bool(rows) and (n is None or len(rows) == n) and not unpainted_tiles(grid)


class PaintCounter(QObject):
    """Counts the paint events a widget receives (to know the grid has repainted)."""

    def __init__(self, widget: QWidget) -> None:
        super().__init__(widget)
        self.count = 0
        widget.installEventFilter(self)

    def eventFilter(self, obj: QObject, event: QEvent) -> bool:
        if event.type() == QEvent.Type.Paint:
            self.count += 1
        return False


def test_second_search_paints_thumbnails_without_hover(qtbot, tmp_path: Path) -> None:
    make_tree(tmp_path / "photos", 6)
    ctx = make_test_context(tmp_path)
    try:
        win = show_window(qtbot, ctx)
        qtbot.waitExposed(win)
        open_library(qtbot, ctx, [tmp_path / "photos"])
        rv = win.results_view
        paints = PaintCounter(rv.grid.viewport())
        changed_at: list[int] = []  # paint count when the shown tiles last changed
        rv.model.modelReset.connect(lambda: changed_at.append(paints.count))
        rv.proxy.layoutChanged.connect(lambda: changed_at.append(paints.count))

        def shows_thumbnails_after_repaint() -> None:
            qtbot.waitUntil(lambda: bool(changed_at) and paints.count > changed_at[-1],
                            timeout=5000)
            qtbot.waitUntil(lambda: all_painted(rv.grid), timeout=10000)

        query = str(tmp_path / "photos" / "img0000.png")
        for _ in range(2):  # the second search shows only photos already shown once
            with qtbot.waitSignal(ctx.search.finished, timeout=10000):
                win.controller.search_path(query)
            shows_thumbnails_after_repaint()
            assert all(isinstance(rv.proxy.index(r, 0).data(Qt.ItemDataRole.DecorationRole),
                                  QPixmap) for r in visible_rows(rv.grid))
        rv.sort.setCurrentIndex(rv.sort.findData("name"))  # a sort change shows them too
        shows_thumbnails_after_repaint()
    finally:
        ctx.close()


@pytest.mark.parametrize("show_distance", [True, False])  # results grid, duplicates grid
def test_model_reset_with_same_paths_returns_loaded_thumbnails(
        qtbot, tmp_path: Path, show_distance: bool) -> None:
    photos = make_tree(tmp_path / "photos", 5)
    loader = ThumbnailLoader(ThumbnailCache(tmp_path / "thumbs"), edge=96)
    try:
        model = ResultsModel(loader)
        grid = ResultsGrid(96, show_distance=show_distance)
        qtbot.addWidget(grid)
        grid.setModel(model)
        grid.resize(700, 400)
        grid.show()
        qtbot.waitExposed(grid)
        hits = [SearchHit(file_id=i, path=str(p), score=0.9, hamming=i, phash_distance=None,
                          tier="similar", size=1, mtime=0.0, width=80, height=60)
                for i, p in enumerate(photos)]
        model.set_hits(hits, 1)
        qtbot.waitUntil(lambda: all_painted(grid, 5), timeout=10000)
        paints = PaintCounter(grid.viewport())
        at_reset: list[int] = []
        model.modelReset.connect(lambda: at_reset.append(paints.count))
        model.set_hits(list(reversed(hits)), 2)  # e.g. the next group, a new search
        qtbot.waitUntil(lambda: paints.count > at_reset[-1], timeout=5000)
        qtbot.waitUntil(lambda: all_painted(grid, 5), timeout=2000)  # no hover, no scroll
        model.set_hits(hits, 3)
        # The very first decoration request after the reset already has the picture.
        first = [model.index(r).data(Qt.ItemDataRole.DecorationRole) for r in range(5)]
        assert all(isinstance(p, QPixmap) and not p.isNull() for p in first)
        assert all(model.index(r).data(ResultRoles.ThumbnailState) == "ready" for r in range(5))
    finally:
        loader.clear_pending()
        loader.wait()
