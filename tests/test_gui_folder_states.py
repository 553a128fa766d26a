"""Folder states and the feedback around them (issue 17, item 9): Rescan and re-adding say
what happened, Remove on a failed file never removes its folder and defaults to Cancel, the
last query returns with its results, filters that hide everything say so, one window per
library, and a missing file opener is reported."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

import pytest
from PySide6.QtCore import Qt, QTimer
from PySide6.QtWidgets import QApplication, QMessageBox

from cukd_app.testing import make_test_context, open_library, show_window
from tests.library_helpers import make_tree, write_image


@pytest.fixture
def indexed(qtbot, tmp_path: Path):
    """A window over a library with one indexed folder of 8 photos."""
    photos = tmp_path / "photos"
    make_tree(photos, 8)
    ctx = make_test_context(tmp_path)
    win = show_window(qtbot, ctx)
    open_library(qtbot, ctx, [photos])
    qtbot.waitUntil(lambda: win.library_panel.tree.topLevelItemCount() == 1, timeout=5000)
    yield ctx, win, photos
    ctx.close()


def _infos(ctx) -> list[str]:
    return [n.text for n in ctx.notifier.history if n.level == "info"]


def test_rescan_says_no_changes_or_what_changed(qtbot, indexed) -> None:
    ctx, win, photos = indexed
    with qtbot.waitSignal(ctx.library.idle, timeout=20000):
        win.library_panel.rescan_btn.click()
    qtbot.waitUntil(lambda: f"No changes in {photos}." in _infos(ctx), timeout=5000)
    write_image(photos / "new.jpg", 99)
    with qtbot.waitSignal(ctx.library.idle, timeout=20000):
        win.library_panel.rescan_btn.click()
    qtbot.waitUntil(lambda: f"Rescanned {photos}: 1 new photo(s)." in _infos(ctx),
                    timeout=5000)
    assert win.notifications.text.text() == f"Rescanned {photos}: 1 new photo(s)."


def test_adding_a_folder_again_says_it_is_already_there(qtbot, indexed) -> None:
    ctx, win, photos = indexed
    before = len(ctx.notifier.history)
    with qtbot.waitSignal(ctx.library.idle, timeout=10000):
        win.library_panel.addFolder.emit(str(photos))  # what "Add folder…" emits
    said = [n.text for n in ctx.notifier.history[before:]]
    assert said == [f"{photos} is already in the library: Rescan looks for new or changed "
                    "photos in it."]
    assert not any(t.startswith("Added folder") for t in said)
    assert len(ctx.library.library.roots()) == 1


def _answer_next_box(qtbot, button: str, seen: dict) -> None:
    """When the next message box opens: note its texts and default button, press
    ``button`` ("enter": the default one, "escape", or a button's text)."""
    def poll() -> None:
        box = QApplication.activeModalWidget()
        if not isinstance(box, QMessageBox):
            return
        timer.stop()
        seen.update(text=box.text(), info=box.informativeText(),
                    default=box.defaultButton().text() if box.defaultButton() else None)
        if button == "enter":
            qtbot.keyClick(box, Qt.Key.Key_Return)
        elif button == "escape":
            qtbot.keyClick(box, Qt.Key.Key_Escape)
        else:
            next(b for b in box.buttons() if b.text() == button).click()

    timer = QTimer()
    timer.timeout.connect(poll)
    timer.start(30)
    seen["_timer"] = timer


def test_remove_never_takes_a_failed_files_folder_and_defaults_to_cancel(
        qtbot, tmp_path: Path) -> None:
    photos = tmp_path / "photos"
    make_tree(photos, 5)
    (photos / "broken.jpg").write_bytes(b"\xff\xd8 not really")
    ctx = make_test_context(tmp_path)
    try:
        win = show_window(qtbot, ctx)
        open_library(qtbot, ctx, [photos])
        panel = win.library_panel
        qtbot.waitUntil(lambda: panel.tree.topLevelItemCount() == 1
                        and panel.tree.topLevelItem(0).childCount() == 1, timeout=5000)
        folder = panel.tree.topLevelItem(0)
        rid = folder.data(0, Qt.ItemDataRole.UserRole)
        # A failed file's row: Remove is off, and stays off when the list refreshes.
        panel.tree.setCurrentItem(folder.child(0))
        assert not panel.remove_btn.isEnabled() and "whole folder" in panel.remove_btn.toolTip()
        with qtbot.assertNotEmitted(panel.removeFolder):
            qtbot.mouseClick(panel.remove_btn, Qt.MouseButton.LeftButton)
        with qtbot.waitSignal(ctx.library.snapshot, timeout=5000):
            ctx.library.refresh()
        assert panel.selected_folder() is None and not panel.remove_btn.isEnabled()
        assert panel.tree.selectedItems()[0].text(0) == "broken.jpg"
        # The folder's row: the confirmation names it, says nothing on disk changes, and
        # Enter (its default) and Esc keep the folder.
        panel.tree.setCurrentItem(panel.tree.topLevelItem(0))
        assert panel.remove_btn.isEnabled()
        for key in ("enter", "escape"):
            seen: dict = {}
            _answer_next_box(qtbot, key, seen)
            panel.remove_btn.click()
            assert seen["default"] == "Cancel"
            assert str(photos) in seen["text"] and "5 indexed photo(s)" in seen["info"]
            assert "Nothing on disk is changed or deleted" in seen["info"]
        qtbot.wait(200)
        assert [r.id for r in ctx.library.library.roots()] == [rid]
        files = sorted(p.name for p in photos.rglob("*") if p.is_file())
        seen = {}
        _answer_next_box(qtbot, "Remove from library", seen)
        with qtbot.waitSignal(ctx.library.idle, timeout=10000):
            panel.remove_btn.click()
        assert ctx.library.library.roots() == []
        assert sorted(p.name for p in photos.rglob("*") if p.is_file()) == files  # untouched
    finally:
        ctx.close()


def test_last_query_returns_with_its_results_after_restart(qtbot, indexed,
                                                           tmp_path: Path) -> None:
    ctx, win, photos = indexed
    query = str(photos / "img0000.png")
    with qtbot.waitSignal(ctx.search.finished, timeout=10000) as first:
        win.controller.search_path(query)
    shown = [h.path for h in first.args[0].hits]
    win.close()
    ctx2 = make_test_context(tmp_path)
    try:
        win2 = show_window(qtbot, ctx2)
        with qtbot.waitSignal(ctx2.search.finished, timeout=20000) as again:
            open_library(qtbot, ctx2)
        assert again.args[0].request.path == query
        assert [h.path for h in win2.results_view.model.hits] == shown
        qtbot.waitUntil(lambda: "Last query" in win2.query_panel.caption.text(), timeout=5000)
    finally:
        ctx2.close()


def test_filters_that_hide_every_result_say_so_with_a_clear_button(qtbot, indexed) -> None:
    ctx, win, photos = indexed
    rv, notice = win.results_view, win.filtered_out
    with qtbot.waitSignal(ctx.search.finished, timeout=10000):
        win.controller.search_path(str(photos / "img0000.png"))
    total = rv.model.rowCount()
    assert total > 0 and not notice.isVisible()
    rv.name_filter.setText("no such name")
    assert rv.proxy.rowCount() == 0 and notice.isVisible()
    assert notice.label.text() == (f"No results match the filters: all {total} results are "
                                   "hidden by them.")
    for cb in rv.tier_boxes.values():
        cb.setChecked(False)
    assert notice.isVisible()
    qtbot.mouseClick(notice.clear_btn, Qt.MouseButton.LeftButton)
    assert rv.proxy.rowCount() == total and not notice.isVisible()
    assert rv.name_filter.text() == "" and all(cb.isChecked() for cb in rv.tier_boxes.values())
    assert ctx.settings.tier_filter == tuple(rv.tier_boxes)  # remembered like any change


def test_a_second_window_on_the_same_library_says_so_and_quits(qtbot, tmp_path: Path) -> None:
    from cukd_app.app import run
    from cukd_app.single_instance import LibraryWindowLock

    library = tmp_path / "library"
    first = LibraryWindowLock(library)
    assert first.acquire()
    raised: list[bool] = []
    first.raiseRequested.connect(lambda: raised.append(True))
    handlers = list(logging.getLogger().handlers)
    seen: dict = {}
    _answer_next_box(qtbot, "enter", seen)
    try:
        args = argparse.Namespace(library=str(library), profile=str(tmp_path / "second"),
                                  model="tiny", search=None, duplicates=False, quit_after=8)
        assert run(args) == 0
        assert "is already open in another CUKD Image Search window" in seen["text"]
        assert str(library) in seen["text"]
        qtbot.waitUntil(lambda: raised == [True], timeout=5000)  # the first came forward
        assert "brought to the front" in seen["text"]
        assert not (tmp_path / "second" / "config" / "settings.json").exists()
    finally:
        for h in logging.getLogger().handlers:
            if h not in handlers:
                logging.getLogger().removeHandler(h)
                h.close()
        first.release()
    again = LibraryWindowLock(library)  # released: the next start gets the library
    assert again.acquire()
    again.release()


def test_open_and_show_in_file_manager_say_so_without_an_opener(qtbot, indexed) -> None:
    # The offscreen platform has no desktop services: like a system with no file opener.
    ctx, win, photos = indexed
    with qtbot.waitSignal(ctx.search.finished, timeout=10000):
        win.controller.search_path(str(photos / "img0000.png"))
    grid = win.results_view.grid
    rect = grid.visualRect(grid.model().index(0, 0))
    qtbot.mouseClick(grid.viewport(), Qt.MouseButton.LeftButton, pos=rect.center())
    with qtbot.waitSignal(ctx.notifier.posted, timeout=5000) as said:  # double-click: Open
        qtbot.mouseDClick(grid.viewport(), Qt.MouseButton.LeftButton, pos=rect.center())
    n = said.args[0]
    assert n.level == "warning" and n.text.startswith("Could not open ")
    assert "no application is set up" in n.text
    path = grid.current_path()
    assert path is not None and Path(path).name in n.text
    with qtbot.waitSignal(ctx.notifier.posted, timeout=5000) as said:
        assert win.controller.reveal_path(path) is False
    assert said.args[0].text.startswith(f"Could not show {Path(path).name} in a file manager")
    assert str(Path(path).parent) in said.args[0].text
    with qtbot.waitSignal(ctx.notifier.posted, timeout=5000) as said:
        win.actions_["log"].trigger()
    assert str(ctx.paths.log_file) in said.args[0].text


def test_a_library_folder_that_cannot_hold_the_window_lock_is_not_refused(
        tmp_path: Path) -> None:
    from cukd_app.single_instance import LibraryWindowLock

    blocked = tmp_path / "library"
    blocked.write_text("a file where the library folder should be")
    claim = LibraryWindowLock(blocked)
    assert claim.acquire() and not claim.held  # opening the library reports the problem
    claim.release()
