"""Results model (qtmodeltester), filters and sort, thumbnails arriving asynchronously."""

from __future__ import annotations

from pathlib import Path

import pytest
from PySide6.QtCore import Qt
from PySide6.QtGui import QPixmap

from core.library import SearchHit
from cukd_app.results_model import ResultRoles, ResultsFilterProxy, ResultsModel, hit_tooltip
from cukd_app.services.thumbnails import ThumbnailCache, ThumbnailLoader
from cukd_app.testing import make_test_context, open_library, show_window
from cukd_app.views.results_view import ResultsGrid
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
