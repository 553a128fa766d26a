"""Results model (qtmodeltester), filters and sort, thumbnails arriving asynchronously."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from PySide6.QtCore import QPoint, QRect, QSize, Qt
from PySide6.QtGui import QPixmap
from PySide6.QtWidgets import QApplication

from core.library import SearchHit
from cukd_app.results_model import ResultRoles, ResultsFilterProxy, ResultsModel, hit_tooltip
from cukd_app.services.thumbnails import ThumbnailCache, ThumbnailLoader
from cukd_app.testing import make_test_context, open_library, show_window
from cukd_app.views.results_view import ResultsGrid, ResultsView
from tests.library_helpers import make_tree


def _hit(i: int, path: str, tier: str = "similar", hamming: int = 10, size: int = 1000,
         mtime: float = 1.7e9) -> SearchHit:
    return SearchHit(file_id=i, path=path, score=1 - i / 100, hamming=hamming,
                     phash_distance=None, tier=tier, size=size, mtime=mtime, width=80,
                     height=60)


@pytest.fixture
def photos(tmp_path: Path) -> list[Path]:
    return make_tree(tmp_path / "photos", 6)


@pytest.fixture
def loader(qtbot, tmp_path: Path):
    ld = ThumbnailLoader(ThumbnailCache(tmp_path / "cache" / "thumbs"), edge=64, threads=2)
    yield ld
    ld.clear_pending()
    ld.wait()


def test_model_passes_qtmodeltester(qtmodeltester, photos, loader) -> None:
    model = ResultsModel(loader)
    hits = [_hit(i, str(p), tier=("identical", "near_duplicate", "similar")[i % 3],
                 hamming=i * 3) for i, p in enumerate(photos)]
    model.set_hits(hits, 1)
    qtmodeltester.check(model)
    proxy = ResultsFilterProxy()
    proxy.setSourceModel(model)
    proxy.set_filters(["similar", "near_duplicate"], 9)
    proxy.set_sort_key("distance")
    qtmodeltester.check(proxy)


def test_roles_and_tooltip(photos) -> None:
    model = ResultsModel(None)
    h = _hit(0, str(photos[0]), tier="near_duplicate", hamming=4, size=2048)
    model.set_hits([h])
    idx = model.index(0)
    assert idx.data() == photos[0].name
    assert idx.data(ResultRoles.Hit) == h and idx.data(ResultRoles.Distance) == 4
    tip = idx.data(Qt.ItemDataRole.ToolTipRole)
    assert str(photos[0]) in tip and "80 × 60" in tip and "2.0 KB" in tip and "4 bits" in tip
    assert tip == hit_tooltip(h)


def test_filters_and_sort(photos) -> None:
    model = ResultsModel(None)
    hits = [_hit(0, str(photos[0]), "identical", 0, size=10, mtime=1),
            _hit(1, str(photos[1]), "near_duplicate", 8, size=30, mtime=3),
            _hit(2, str(photos[2]), "similar", 5, size=20, mtime=2)]
    model.set_hits(hits)
    proxy = ResultsFilterProxy()
    proxy.setSourceModel(model)

    def paths() -> list[str]:
        return [proxy.index(r, 0).data(ResultRoles.Path) for r in range(proxy.rowCount())]

    assert paths() == [h.path for h in hits]
    proxy.set_sort_key("distance")
    assert paths() == [hits[0].path, hits[2].path, hits[1].path]
    proxy.set_sort_key("date")
    assert paths() == [hits[1].path, hits[2].path, hits[0].path]
    proxy.set_sort_key("size")
    assert paths() == [hits[1].path, hits[2].path, hits[0].path]
    proxy.set_sort_key("rank")
    proxy.set_filters(["identical", "similar"], None)
    assert paths() == [hits[0].path, hits[2].path]
    proxy.set_filters(["identical", "near_duplicate", "similar"], 5)
    assert paths() == [hits[0].path, hits[2].path]
    proxy.set_name_filter(photos[2].name.upper())
    assert paths() == [hits[2].path]


def test_thumbnails_arrive_after_the_grid_shows(qtbot, photos, loader, tmp_path) -> None:
    before = {p: p.stat().st_mtime_ns for p in (tmp_path / "photos").rglob("*")}
    model = ResultsModel(loader)
    grid = ResultsGrid(64)
    qtbot.addWidget(grid)
    grid.setModel(model)
    grid.show()
    qtbot.waitExposed(grid)
    model.set_hits([_hit(i, str(p)) for i, p in enumerate(photos)])
    idx = model.index(0)
    first = idx.data(Qt.ItemDataRole.DecorationRole)  # nothing yet: a request is queued
    assert first is None or isinstance(first, QPixmap)
    qtbot.waitUntil(lambda: all(model.index(r).data(ResultRoles.ThumbnailState) == "ready"
                                for r in range(model.rowCount())), timeout=10000)
    pix = idx.data(Qt.ItemDataRole.DecorationRole)
    assert isinstance(pix, QPixmap) and max(pix.width(), pix.height()) == 64
    # Cached on disk in the cache dir, nothing written beside the photos.
    assert len(list((tmp_path / "cache" / "thumbs").rglob("*.png"))) == len(photos)
    assert {p: p.stat().st_mtime_ns for p in (tmp_path / "photos").rglob("*")} == before
    # A second loader reads the disk cache.
    again = ThumbnailLoader(loader.cache, edge=64)
    with qtbot.waitSignal(again.ready, timeout=5000) as blocker:
        again.request(str(photos[1]))
    assert blocker.args[0] == str(photos[1]) and not blocker.args[1].isNull()
    again.wait()


def test_unreadable_file_shows_failed_state(qtbot, tmp_path, loader) -> None:
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"not a jpeg")
    model = ResultsModel(loader)
    model.set_hits([_hit(0, str(bad))])
    with qtbot.waitSignal(loader.failed, timeout=5000):
        model.index(0).data(Qt.ItemDataRole.DecorationRole)
    assert model.index(0).data(ResultRoles.ThumbnailState) == "failed"


def test_results_tab_filters_in_window(qtbot, tmp_path) -> None:
    make_tree(tmp_path / "photos", 8)
    ctx = make_test_context(tmp_path)
    try:
        win = show_window(qtbot, ctx)
        open_library(qtbot, ctx, [tmp_path / "photos"])
        with qtbot.waitSignal(ctx.search.finished, timeout=10000) as blocker:
            win.controller.search_path(str(tmp_path / "photos" / "img0000.png"))
        n = len(blocker.args[0].hits)
        rv = win.results_view
        assert rv.proxy.rowCount() == n and rv.grid.isVisible()
        rv.tier_boxes["similar"].setChecked(False)
        assert rv.proxy.rowCount() == sum(h.tier != "similar" for h in blocker.args[0].hits)
        rv.tier_boxes["similar"].setChecked(True)
        rv.max_distance.setValue(0)
        assert rv.proxy.rowCount() == sum(h.hamming == 0 for h in blocker.args[0].hits)
        # The result count re-runs the search with the new k.
        rv.max_distance.setValue(-1)
        with qtbot.waitSignal(ctx.search.finished, timeout=10000) as blocker:
            rv.count.setValue(3)
        assert len(blocker.args[0].hits) == 3 and ctx.settings.result_count == 3
    finally:
        ctx.close()


def _scored(i: int, path: str, score: float, hamming: int, tier: str = "similar") -> SearchHit:
    return SearchHit(file_id=i, path=path, score=score, hamming=hamming, phash_distance=None,
                     tier=tier, size=1000, mtime=1.7e9, width=80, height=60)


def test_best_match_orders_by_the_shown_similarity(qtbot, photos) -> None:
    # Engine order (tier and pHash first) where neither the bits nor the cosine are monotone:
    # a 3-bit hit behind 29-bit ones, 5 bits after 8 bits, 80 % before 97 %.
    hits = [_scored(0, str(photos[0]), 0.80, 3, "near_duplicate"),
            _scored(1, str(photos[1]), 0.97, 8, "near_duplicate"),
            _scored(2, str(photos[2]), 0.93, 5),
            _scored(3, str(photos[3]), 0.941, 29),
            _scored(4, str(photos[4]), 0.904, 29),
            _scored(5, str(photos[5]), 0.90, 2)]
    view = ResultsView(ResultsModel(None))
    qtbot.addWidget(view)
    view.show()
    view.model.set_hits(hits)
    assert view.sort.currentData() == "rank" and view.sort.currentText() == "Best match"
    delegate = view.grid.delegate
    rows = [view.proxy.index(r, 0) for r in range(view.proxy.rowCount())]
    badges = [delegate.badge_text(i) for i in rows]
    shown = [int(re.match(r"(\d+)% · ", b).group(1)) for b in badges]  # type: ignore[union-attr]
    # copies first (the tier on the badge), each tier by the shown percentage
    assert shown == [97, 80, 94, 93, 90, 90]
    assert [b.split(" · ")[1] for b in badges] == ["near-duplicate"] * 2 + ["similar"] * 4
    assert shown[2:] == sorted(shown[2:], reverse=True)
    assert all("bits" not in b for b in badges)  # one score on the tile
    # Equal percentages keep the engine's order; the bits are in the tooltip.
    assert [i.data(ResultRoles.Path) for i in rows][4:6] == [hits[4].path, hits[5].path]
    for i, pct in zip(rows, shown, strict=True):
        tip = i.data(Qt.ItemDataRole.ToolTipRole)
        hit = i.data(ResultRoles.Hit)
        assert f"{pct}% similar" in tip and f"{hit.hamming} bits" in tip
        assert i.data(ResultRoles.Similarity) == pct
    # Distance still orders by bits; a new search is again ordered by best match.
    view.sort.setCurrentIndex(view.sort.findData("distance"))
    assert [view.proxy.index(r, 0).data(ResultRoles.Distance)
            for r in range(view.proxy.rowCount())] == [2, 3, 5, 8, 29, 29]
    view.sort.setCurrentIndex(view.sort.findData("rank"))
    view.model.set_hits(list(reversed(hits)), 2)
    again = [view.proxy.index(r, 0).data(ResultRoles.Similarity)
             for r in range(view.proxy.rowCount())]
    assert again == [97, 80, 94, 93, 90, 90]


def test_header_fits_at_900_by_600_and_ctrl_f_filters(qtbot, tmp_path) -> None:
    make_tree(tmp_path / "photos", 8)
    ctx = make_test_context(tmp_path)
    try:
        win = show_window(qtbot, ctx)
        win.resize(900, 600)
        qtbot.waitExposed(win)
        open_library(qtbot, ctx, [tmp_path / "photos"])
        with qtbot.waitSignal(ctx.search.finished, timeout=10000) as blocker:
            win.controller.search_path(str(tmp_path / "photos" / "img0000.png"))
        n = len(blocker.args[0].hits)
        rv = win.results_view
        assert win.size() == QSize(900, 600) and rv.summary.text() == f"{n} results"
        for w in (rv.summary, rv.name_filter, rv.sort, rv.count, rv.max_distance,
                  *rv.tier_boxes.values()):
            assert w.isVisible(), w
            top_left = w.mapTo(win, QPoint(0, 0))
            assert win.rect().contains(QRect(top_left, w.size())), w
            # Not covered or cut off by anything (a toolbar's overflow clips it away).
            assert w.visibleRegion().boundingRect() == w.rect(), w
        rv.grid.setFocus()
        win.activateWindow()
        qtbot.waitUntil(lambda: win.isActiveWindow())
        qtbot.keyClick(win, Qt.Key.Key_F, Qt.KeyboardModifier.ControlModifier)
        assert rv.name_filter.hasFocus()
        focused = QApplication.focusWidget()
        assert focused is rv.name_filter
        qtbot.keyClicks(focused, "img0001")  # typed where the focus is, as a user does
        assert rv.name_filter.text() == "img0001"
        assert 0 < rv.proxy.rowCount() < n
        assert all("img0001" in rv.proxy.index(r, 0).data(ResultRoles.Path)
                   for r in range(rv.proxy.rowCount()))
        assert rv.summary.text() == f"{rv.proxy.rowCount()} of {n}"
    finally:
        ctx.close()
