"""Duplicates view; window state remembered across runs."""

from __future__ import annotations

import shutil
from pathlib import Path

from PIL import Image

from cukd_app.app import MainWindow
from cukd_app.testing import make_test_context, open_library, show_window
from tests.library_helpers import make_image, make_tree


def test_duplicates_view_groups_side_by_side(qtbot, tmp_path: Path) -> None:
    photos = tmp_path / "photos"
    paths = make_tree(photos, 6)
    shutil.copy(paths[0], photos / "copy_of_first.png")
    Image.open(paths[1]).resize((160, 120)).save(photos / "bigger_second.jpg", quality=92)
    ctx = make_test_context(tmp_path)
    try:
        win = show_window(qtbot, ctx)
        open_library(qtbot, ctx, [photos])
        view = win.duplicates_view
        with qtbot.waitSignal(ctx.library.duplicatesReady, timeout=10000) as blocker:
            win.actions_["duplicates"].trigger()
        groups = blocker.args[0]
        assert win.tabs.currentWidget() is view
        assert view.groups.count() == len(groups) >= 2
        names = [{Path(f.path).name for f in g.files} for g in groups]
        assert {"copy_of_first.png", paths[0].name} in names
        assert any("bigger_second.jpg" in n for n in names)
        view.groups.setCurrentRow(0)
        assert view.model.rowCount() == len(groups[0].files)
        qtbot.waitUntil(lambda: all(view.model.index(r).data(0x0100 + 6) == "ready"
                                    for r in range(view.model.rowCount())), timeout=10000)
    finally:
        ctx.close()


def test_match_level_regroups(qtbot, tmp_path: Path) -> None:
    # A 5 % crop: a near-duplicate by the model's cosine, not by pHash.
    photos = tmp_path / "photos"
    make_tree(photos, 4, start_seed=100)
    im = make_image(9, (160, 120))
    im.save(photos / "full.png")
    im.crop((8, 6, 152, 114)).save(photos / "crop.png")
    ctx = make_test_context(tmp_path)
    try:
        win = show_window(qtbot, ctx)
        open_library(qtbot, ctx, [photos])
        view = win.duplicates_view
        assert view.level() == "normal"
        with qtbot.waitSignal(ctx.library.duplicatesReady, timeout=10000) as blocker:
            view.find_btn.click()

        def has_crop_pair(groups) -> bool:
            return any({"full.png", "crop.png"} <= {Path(f.path).name for f in g.files}
                       for g in groups)

        assert has_crop_pair(blocker.args[0])
        # Choosing another level recomputes the groups at once.
        with qtbot.waitSignal(ctx.library.duplicatesReady, timeout=10000) as blocker:
            view.level_box.setCurrentIndex(view.level_box.findData("strict"))
        assert view.level() == "strict" and not has_crop_pair(blocker.args[0])
        qtbot.waitUntil(lambda: view.find_btn.isEnabled(), timeout=5000)
        assert view.summary.text().startswith(("No duplicates", f"{view.groups.count()} groups"))
        # the pixel check's progress shows while busy, and only then
        view.set_progress(3, 10)
        assert "3 / 10" not in view.summary.text()
        view.set_busy(True)
        view.set_progress(3, 10)
        assert view.summary.text().endswith("checking look-alikes 3 / 10")
    finally:
        ctx.close()


def test_window_state_and_last_query_are_remembered(qtbot, tmp_path: Path) -> None:
    photos = tmp_path / "photos"
    make_tree(photos, 4)
    ctx = make_test_context(tmp_path)
    win = show_window(qtbot, ctx)
    open_library(qtbot, ctx, [photos])
    win.resize(760, 560)  # within the offscreen screen (restoreGeometry clamps to it)
    win.splitter.setSizes([280, 480])
    sizes, size = win.splitter.sizes(), win.size()
    with qtbot.waitSignal(ctx.search.finished, timeout=10000):
        win.controller.search_path(str(photos / "img0000.png"))
    win.results_view.sort.setCurrentIndex(win.results_view.sort.findData("name"))
    win.close()  # saves and closes the library
    ctx2 = make_test_context(tmp_path)
    try:
        assert ctx2.settings.last_query == str(photos / "img0000.png")
        assert ctx2.settings.sort == "name"
        win2 = MainWindow(ctx2)
        qtbot.addWidget(win2)
        win2.show()
        assert win2.size() == size and win2.splitter.sizes() == sizes
        assert win2.results_view.sort.currentData() == "name"
        qtbot.waitUntil(lambda: "img0000.png" in win2.query_panel.caption.text(), timeout=5000)
    finally:
        ctx2.close()


def test_group_order_and_exact_copy_badges() -> None:
    from core.library import DuplicateGroup, FileRecord
    from cukd_app.views.duplicates_view import exact_copies, group_hits, order_groups

    def rec(i: int, fp: str, size: int = 100) -> FileRecord:
        return FileRecord(i, 1, f"/p/{i}.jpg", size, 0, fp, 0, 10, 10, "ok", None)

    big = DuplicateGroup("near_duplicate", (rec(1, "a"), rec(2, "b"), rec(3, "c")))
    copies = DuplicateGroup("near_duplicate", (rec(4, "x"), rec(5, "x"), rec(6, "y", 50)))
    assert exact_copies(copies) == 2 and exact_copies(big) == 0
    assert order_groups([big, copies]) == [copies, big]
    assert [h.tier for h in group_hits(copies)] == ["identical", "identical", "near_duplicate"]
