"""Duplicates view (issue 17, item 5, and "transparent images on white"): group thumbnails
and names elided in the middle, transparent thumbnails over a checkerboard, selecting,
comparing, "Select all but the best", Move to folder… (never overwriting) and Move to
trash… (confirmed, Cancel by default, the system trash only), each on real files."""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

import pytest
from PIL import Image, ImageDraw
from PySide6.QtCore import QPoint, QRect, Qt, QTimer
from PySide6.QtWidgets import QApplication, QFileDialog, QMessageBox, QStyleOptionViewItem

from core.library import SearchHit
from cukd_app.file_moves import move_file, move_files
from cukd_app.results_model import ResultRoles, format_size
from cukd_app.testing import make_test_context, open_library, show_window
from cukd_app.views.duplicates_view import GroupRoles, best_index
from tests.library_helpers import make_image, make_tree, snapshot

LONG = "holiday_2019_beach_sunset_with_the_whole_family_and_friends_IMG_"


def _make_photos(photos: Path) -> dict[str, Path]:
    """Two groups whose first photos share a long name prefix, plus unrelated photos.

    Group A: ``{LONG}0001.jpg`` (160 × 120, the oldest), a byte copy (newer) and a smaller
    copy. Group B: ``{LONG}0002.png`` and a byte copy.
    """
    make_tree(photos, 4, start_seed=300)
    a = photos / f"{LONG}0001.jpg"
    make_image(21, (160, 120)).save(a, quality=92)
    copy = photos / f"{LONG}0001 copy.jpg"
    shutil.copyfile(a, copy)
    small = photos / f"{LONG}0001 small.jpg"
    make_image(21, (160, 120)).resize((80, 60)).save(small, quality=80)
    b = photos / f"{LONG}0002.png"
    make_image(22, (120, 90)).save(b)
    b_copy = photos / f"{LONG}0002 copy.png"
    shutil.copyfile(b, b_copy)
    now = time.time()
    os.utime(a, (now - 3600, now - 3600))  # the original: older than its copy
    return {"a": a, "copy": copy, "small": small, "b": b, "b_copy": b_copy}


@pytest.fixture
def dup_window(qtbot, tmp_path: Path, monkeypatch):
    """A window whose duplicates view shows the groups of :func:`_make_photos`; the
    freedesktop trash lives under ``tmp_path``."""
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    (tmp_path / "xdg").mkdir()
    photos = tmp_path / "photos"
    files = _make_photos(photos)
    ctx = make_test_context(tmp_path)
    win = show_window(qtbot, ctx)
    win.resize(1200, 800)
    open_library(qtbot, ctx, [photos])
    view = win.duplicates_view
    with qtbot.waitSignal(ctx.library.duplicatesReady, timeout=10000):
        win.actions_["duplicates"].trigger()
    qtbot.waitUntil(lambda: view.groups.count() >= 2, timeout=5000)
    yield ctx, win, view, photos, files
    ctx.close()


def _group_row(view, path: Path) -> int:
    return next(i for i, g in enumerate(view.shown_groups)
                if str(path) in {f.path for f in g.files})


def _row_of(view, path: Path) -> int:
    return next(r for r in range(view.model.rowCount()) if view.model.hit(r).path == str(path))


def _click(qtbot, grid, row: int, ctrl: bool = False) -> None:
    rect = grid.visualRect(grid.model().index(row, 0))
    mod = Qt.KeyboardModifier.ControlModifier if ctrl else Qt.KeyboardModifier.NoModifier
    qtbot.mouseClick(grid.viewport(), Qt.MouseButton.LeftButton, mod, rect.center())


def _said(ctx, level: str | None = None) -> list[str]:
    return [n.text for n in ctx.notifier.history if level is None or n.level == level]


def _answer_next_modal(qtbot, answer, seen: dict) -> None:
    """When the next modal dialog opens, call ``answer(dialog)`` (after noting its texts)."""
    def poll() -> None:
        box = QApplication.activeModalWidget()
        if box is None:
            return
        timer.stop()
        if isinstance(box, QMessageBox):
            seen.update(text=box.text(), info=box.informativeText(),
                        default=box.defaultButton().text() if box.defaultButton() else None)
        answer(box)

    timer = QTimer()
    timer.timeout.connect(poll)
    timer.start(30)
    seen["_timer"] = timer


def _press(qtbot, key_or_text: str):
    def answer(box) -> None:
        if key_or_text == "enter":
            qtbot.keyClick(box, Qt.Key.Key_Return)
        elif key_or_text == "escape":
            qtbot.keyClick(box, Qt.Key.Key_Escape)
        else:
            next(b for b in box.buttons() if b.text() == key_or_text).click()
    return answer


# --------------------------------------------------------------------------- group list
def test_group_list_has_thumbnails_middle_elided_names_and_full_paths(qtbot, dup_window):
    _ctx, win, view, _photos, files = dup_window
    rows = [_group_row(view, files["a"]), _group_row(view, files["b"])]
    items = [view.groups.item(r) for r in rows]
    # Each group row gets the first photo's thumbnail.
    qtbot.waitUntil(lambda: all(it.data(Qt.ItemDataRole.DecorationRole) is not None
                                for it in items), timeout=10000)
    assert all(not it.data(Qt.ItemDataRole.DecorationRole).isNull() for it in items)
    # The tooltip lists every file of the group with its full path.
    tip = items[0].toolTip().splitlines()
    assert sorted(tip) == sorted(str(files[k]) for k in ("a", "copy", "small"))
    # Names elided in the middle: the start and the distinguishing end stay readable, so
    # two long names that differ at the end are not shown alike.
    opt = QStyleOptionViewItem()
    opt.initFrom(view.groups)
    opt.rect = QRect(0, 0, 230, 56)
    shown = [view.group_delegate.shown_lines(opt, view.groups.model().index(r, 0))[1]
             for r in rows]
    names = [it.data(GroupRoles.Name) for it in items]
    assert names == [Path(view.shown_groups[r].files[0].path).name for r in rows]
    for s, full in zip(shown, names, strict=True):
        assert full.startswith(LONG)
        assert "…" in s and s.startswith("holiday") and s.endswith(full[-7:])
        assert opt.fontMetrics.horizontalAdvance(s) <= view.group_delegate.text_width(opt)
    assert shown[0] != shown[1]
    head = view.group_delegate.shown_lines(opt, view.groups.model().index(rows[0], 0))[0]
    assert head.startswith("3 photos")
    # The window can still be as narrow as before the actions were added.
    assert win.minimumSizeHint().width() <= 900


# --------------------------------------------------------------------------- transparency
def _transparent_ring(path: Path) -> None:
    im = Image.new("RGBA", (200, 200), (0, 0, 0, 0))
    ImageDraw.Draw(im).ellipse((40, 40, 160, 160), outline=(255, 255, 255, 255), width=16)
    im.save(path)


def _tile_corner_pixels(grid, row: int) -> tuple[tuple[int, int, int], tuple[int, int, int]]:
    """Two pixels 8 px apart in the transparent top-left corner of a tile's thumbnail."""
    d = grid.delegate
    r = grid.visualRect(grid.model().index(row, 0)).adjusted(3, 3, -3, -3)
    thumb = QRect(r.x() + 3, r.y() + 3, r.width() - 6, d.edge)
    side = min(thumb.width(), thumb.height())
    target = QRect(0, 0, side, side)
    target.moveCenter(thumb.center())
    img = grid.viewport().grab().toImage()
    dpr = img.devicePixelRatio()

    def px(p: QPoint) -> tuple[int, int, int]:
        c = img.pixelColor(int(p.x() * dpr), int(p.y() * dpr))
        return c.red(), c.green(), c.blue()

    a = target.topLeft() + QPoint(3, 3)
    return px(a), px(a + QPoint(8, 0))


def test_transparent_thumbnails_are_drawn_over_a_checkerboard(qtbot, tmp_path: Path) -> None:
    photos = tmp_path / "photos"
    make_tree(photos, 4, start_seed=400)
    _transparent_ring(photos / "ring.png")
    shutil.copyfile(photos / "ring.png", photos / "ring_copy.png")
    ctx = make_test_context(tmp_path)
    try:
        win = show_window(qtbot, ctx)
        win.resize(1200, 800)
        open_library(qtbot, ctx, [photos])
        # Results grid.
        with qtbot.waitSignal(ctx.search.finished, timeout=10000):
            win.controller.search_path(str(photos / "ring_copy.png"))
        grid = win.results_view.grid
        proxy = grid.model()
        row = next(r for r in range(proxy.rowCount())
                   if proxy.index(r, 0).data(ResultRoles.Path) == str(photos / "ring.png"))
        qtbot.waitUntil(lambda: proxy.index(row, 0).data(ResultRoles.ThumbnailState)
                        == "ready", timeout=10000)
        pix = proxy.index(row, 0).data(Qt.ItemDataRole.DecorationRole)
        assert pix.hasAlphaChannel()  # the thumbnail keeps its transparency
        a, b = _tile_corner_pixels(grid, row)
        assert a != b  # checkerboard squares, not one blank colour
        # An opaque photo's tile has no checkerboard.
        opaque = next(r for r in range(proxy.rowCount())
                      if proxy.index(r, 0).data(ResultRoles.Path).endswith(".jpg"))
        qtbot.waitUntil(lambda: proxy.index(opaque, 0).data(ResultRoles.ThumbnailState)
                        == "ready", timeout=10000)
        assert not proxy.index(opaque, 0).data(Qt.ItemDataRole.DecorationRole).hasAlphaChannel()
        # Duplicates grid: the ring and its copy, over the checkerboard as well.
        view = win.duplicates_view
        with qtbot.waitSignal(ctx.library.duplicatesReady, timeout=10000):
            win.actions_["duplicates"].trigger()
        view.groups.setCurrentRow(_group_row(view, photos / "ring.png"))
        win.tabs.setCurrentWidget(view)
        qtbot.waitUntil(lambda: all(view.model.index(r).data(ResultRoles.ThumbnailState)
                                    == "ready" for r in range(view.model.rowCount())),
                        timeout=10000)
        a, b = _tile_corner_pixels(view.grid, 0)
        assert a != b
    finally:
        ctx.close()


# --------------------------------------------------------------------------- selecting
def test_best_is_the_largest_picture_then_the_largest_file_then_the_oldest() -> None:
    def hit(i: int, w: int, h: int, size: int, mtime: float) -> SearchHit:
        return SearchHit(i, f"/p/{i}.jpg", 1.0, 0, 0, "near_duplicate", size, mtime, w, h)

    assert best_index([hit(0, 80, 60, 900, 1), hit(1, 160, 120, 500, 5)]) == 1
    assert best_index([hit(0, 160, 120, 500, 1), hit(1, 120, 160, 700, 5)]) == 1
    assert best_index([hit(0, 160, 120, 700, 5), hit(1, 160, 120, 700, 2)]) == 1
    assert best_index([hit(0, 160, 120, 700, 2), hit(1, 160, 120, 700, 2)]) == 0


def test_select_all_but_the_best_then_compare_two(qtbot, dup_window) -> None:
    _ctx, _win, view, photos, files = dup_window
    view.groups.setCurrentRow(_group_row(view, files["a"]))
    before = snapshot(photos)
    assert not view.move_btn.isEnabled() and not view.trash_btn.isEnabled()
    qtbot.mouseClick(view.keep_best_btn, Qt.MouseButton.LeftButton)
    selected = {h.path for h in view.selected_hits()}
    # Kept: the oldest of the two largest (the original; the copy is the same size).
    assert selected == {str(files["copy"]), str(files["small"])}
    assert view.selection_note.text() == (
        f"Selected 2 of 3: keeping {files['a'].name} (the oldest, "
        f"{time.strftime('%Y-%m-%d', time.localtime(files['a'].stat().st_mtime))}).")
    assert view.move_btn.isEnabled() and view.trash_btn.isEnabled()
    assert view.compare_btn.isEnabled()
    # Compare the two selected photos side by side.
    qtbot.mouseClick(view.compare_btn, Qt.MouseButton.LeftButton)
    dlg = view.compare_dialog
    assert dlg is not None and dlg.isVisible()
    assert {lab.toolTip() for lab in dlg.names} == selected
    facts = {dlg.names[i].toolTip(): [lab.text() for lab in dlg.facts[i]] for i in range(2)}
    small = files["small"]
    assert facts[str(small)][0] == "80 × 60 px"
    assert facts[str(small)][1] == format_size(small.stat().st_size)
    assert facts[str(files["copy"])][0] == "160 × 120 px"
    assert facts[str(small)][2] == time.strftime(
        "%Y-%m-%d %H:%M", time.localtime(small.stat().st_mtime))
    assert facts[str(small)][3] == str(photos)
    big = next(i for i in range(2) if dlg.names[i].toolTip() == str(files["copy"]))
    assert dlg.facts[big][0].font().bold() and not dlg.facts[1 - big][0].font().bold()
    assert all(p.pixmap is not None and not p.pixmap.isNull() for p in dlg.panes)
    dlg.close()
    # Ctrl+click picks photos one by one; the note counts them.
    _click(qtbot, view.grid, _row_of(view, files["a"]))
    assert [h.path for h in view.selected_hits()] == [str(files["a"])]
    assert view.selection_note.text() == "1 of 3 selected"
    assert not view.compare_btn.isEnabled()  # 1 of 3: which two?
    _click(qtbot, view.grid, _row_of(view, files["small"]), ctrl=True)
    assert {h.path for h in view.selected_hits()} == {str(files["a"]), str(files["small"])}
    assert view.compare_btn.isEnabled()
    assert snapshot(photos) == before  # selecting and comparing change nothing


# --------------------------------------------------------------------------- moving
def test_move_files_never_overwrites_and_skips_files_already_there(tmp_path: Path) -> None:
    src, dest = tmp_path / "src", tmp_path / "dest"
    src.mkdir()
    dest.mkdir()
    for name, data in (("a.jpg", b"new a"), ("b.jpg", b"new b")):
        (src / name).write_bytes(data)
    (dest / "a.jpg").write_bytes(b"old a")
    (dest / "a (2).jpg").write_bytes(b"old a2")
    (dest / "c.jpg").write_bytes(b"c")
    out = move_files([str(src / "a.jpg"), str(src / "b.jpg"), str(dest / "c.jpg"),
                      str(src / "gone.jpg")], str(dest))
    assert (dest / "a.jpg").read_bytes() == b"old a"
    assert (dest / "a (2).jpg").read_bytes() == b"old a2"
    assert (dest / "a (3).jpg").read_bytes() == b"new a"
    assert (dest / "b.jpg").read_bytes() == b"new b"
    assert not (src / "a.jpg").exists() and not (src / "b.jpg").exists()
    assert out.renamed == [str(dest / "a (3).jpg")]
    assert out.already_there == [str(dest / "c.jpg")]
    assert out.failed == [(str(src / "gone.jpg"), "it is no longer there")]


def test_move_to_another_drive_copies_then_removes_without_overwriting(tmp_path: Path) -> None:
    other = Path("/dev/shm")
    if not other.is_dir() or os.stat(other).st_dev == os.stat(tmp_path).st_dev:
        pytest.skip("needs a second file system (/dev/shm)")
    dest = Path(os.path.join(other, f"cukd-test-{os.getpid()}-{time.monotonic_ns()}"))
    dest.mkdir()
    try:
        (dest / "a.jpg").write_bytes(b"old")
        src = tmp_path / "a.jpg"
        src.write_bytes(b"new" * 1000)
        os.utime(src, (1_000_000, 1_000_000))
        moved = move_file(str(src), str(dest))
        assert moved == str(dest / "a (2).jpg") and not src.exists()
        assert (dest / "a.jpg").read_bytes() == b"old"
        assert Path(moved).read_bytes() == b"new" * 1000
        assert int(Path(moved).stat().st_mtime) == 1_000_000
    finally:
        shutil.rmtree(dest)


def _choose_folder(folder: Path):
    def answer(dlg) -> None:
        assert isinstance(dlg, QFileDialog)
        assert dlg.labelText(QFileDialog.DialogLabel.Accept) == "Move here"
        dlg.setDirectory(str(folder))  # the user opens the folder, then "Move here"
        dlg.accept()
    return answer


def test_move_to_folder_moves_renames_on_collision_and_updates_library(qtbot, dup_window):
    ctx, _win, view, photos, files = dup_window
    dest = photos / "set aside"
    dest.mkdir()
    small = files["small"]
    (dest / small.name).write_bytes(b"not a photo the user wants to lose")
    small_bytes = files["small"].read_bytes()
    view.groups.setCurrentRow(_group_row(view, files["a"]))
    copy_id = ctx.library.library.catalog.get_file_by_path(files["copy"]).id
    before = snapshot(photos)
    # Cancelling the folder dialog moves nothing.
    seen: dict = {}
    _answer_next_modal(qtbot, lambda dlg: dlg.reject(), seen)
    qtbot.mouseClick(view.keep_best_btn, Qt.MouseButton.LeftButton)
    qtbot.mouseClick(view.move_btn, Qt.MouseButton.LeftButton)
    assert snapshot(photos) == before
    # Choosing a folder moves the two selected photos there, never replacing a file.
    n_groups = view.groups.count()
    _answer_next_modal(qtbot, _choose_folder(dest), seen)
    with qtbot.waitSignal(ctx.library.idle, timeout=20000):
        qtbot.mouseClick(view.move_btn, Qt.MouseButton.LeftButton)
    assert not files["copy"].exists() and not files["small"].exists() and files["a"].exists()
    renamed = dest / f"{small.stem} (2).jpg"
    assert (dest / files["copy"].name).read_bytes() == files["a"].read_bytes()
    assert renamed.read_bytes() == small_bytes
    assert (dest / small.name).read_bytes() == b"not a photo the user wants to lose"
    assert _said(ctx)[-1] == (
        f"Moved 2 photos to {dest}. 1 got a new name because the folder already had a file "
        f"of that name: {renamed.name}.")
    # The group list: that group had one photo left, so it went.
    assert view.groups.count() == n_groups - 1
    assert all(str(files["a"]) not in {f.path for f in g.files} for g in view.shown_groups)
    # The catalog follows the files (a move within the library keeps the photo's row).
    cat = ctx.library.library.catalog
    assert cat.get_file_by_path(files["copy"]) is None
    assert cat.get_file_by_path(files["small"]) is None
    assert cat.get_file_by_path(dest / files["copy"].name).id == copy_id
    assert cat.get_file_by_path(renamed) is not None


# --------------------------------------------------------------------------- trash
def test_move_to_trash_asks_defaults_to_cancel_and_uses_the_system_trash(
        qtbot, dup_window, tmp_path: Path) -> None:
    ctx, _win, view, photos, files = dup_window
    view.groups.setCurrentRow(_group_row(view, files["a"]))
    qtbot.mouseClick(view.keep_best_btn, Qt.MouseButton.LeftButton)
    before = snapshot(photos)
    # Enter (the default button) and Esc keep the photos.
    for key in ("enter", "escape"):
        seen: dict = {}
        _answer_next_modal(qtbot, _press(qtbot, key), seen)
        qtbot.mouseClick(view.trash_btn, Qt.MouseButton.LeftButton)
        assert seen["text"] == "Move 2 photos to the trash?"
        assert "system trash" in seen["info"] and "Nothing is deleted for good" in seen["info"]
        assert seen["default"] == "Cancel"
        assert snapshot(photos) == before
    assert not (tmp_path / "xdg" / "Trash").exists()
    # "Move to trash": the two photos leave the folder for the (freedesktop) system trash.
    _answer_next_modal(qtbot, _press(qtbot, "Move to trash"), seen)
    with qtbot.waitSignal(ctx.library.idle, timeout=20000):
        qtbot.mouseClick(view.trash_btn, Qt.MouseButton.LeftButton)
    trash = tmp_path / "xdg" / "Trash"
    for key in ("copy", "small"):
        assert not files[key].exists()
        assert (trash / "files" / files[key].name).read_bytes()
        assert (trash / "info" / f"{files[key].name}.trashinfo").is_file()
    assert files["a"].exists()
    assert _said(ctx, "info")[-1] == ("Moved 2 photos to the trash; you can restore them from "
                                      "the system trash.")
    assert all(str(files["a"]) not in {f.path for f in g.files} for g in view.shown_groups)
    cat = ctx.library.library.catalog
    assert cat.get_file_by_path(files["copy"]) is None
    assert cat.get_file_by_path(files["a"]) is not None


def test_trashing_every_photo_of_a_group_says_so(qtbot, dup_window) -> None:
    _ctx, _win, view, _photos, files = dup_window
    view.groups.setCurrentRow(_group_row(view, files["b"]))
    view.grid.selectAll()
    seen: dict = {}
    _answer_next_modal(qtbot, _press(qtbot, "escape"), seen)
    qtbot.mouseClick(view.trash_btn, Qt.MouseButton.LeftButton)
    assert "no copy of this picture will be left" in seen["info"]
    assert files["b"].exists() and files["b_copy"].exists()


def test_without_a_system_trash_nothing_is_moved(qtbot, dup_window, tmp_path: Path,
                                                 monkeypatch) -> None:
    ctx, _win, view, photos, files = dup_window
    blocker = tmp_path / "not a folder"
    blocker.write_bytes(b"")
    monkeypatch.setenv("XDG_DATA_HOME", str(blocker / "data"))  # no trash can be made
    view.groups.setCurrentRow(_group_row(view, files["b"]))
    _click(qtbot, view.grid, _row_of(view, files["b_copy"]))
    groups = view.groups.count()
    before = snapshot(photos)
    seen: dict = {}
    _answer_next_modal(qtbot, _press(qtbot, "Move to trash"), seen)
    qtbot.mouseClick(view.trash_btn, Qt.MouseButton.LeftButton)
    assert snapshot(photos) == before and files["b_copy"].exists()
    assert _said(ctx, "warning")[-1] == ("The system trash is not available for this photo, "
                                         "so nothing was moved: it is still in its folder.")
    assert view.groups.count() == groups
