"""The application window opens offscreen; command line; start-up without a model."""

from __future__ import annotations

from pathlib import Path

import pytest
from PySide6.QtGui import QKeySequence

from cukd_app.__main__ import build_parser
from cukd_app.app import APP_NAME, MainWindow
from cukd_app.testing import make_test_context


@pytest.fixture
def ctx(tmp_path: Path):
    c = make_test_context(tmp_path)
    yield c
    c.close()


def test_main_window_shows(qtbot, ctx) -> None:
    win = MainWindow(ctx)
    qtbot.addWidget(win)
    win.show()
    qtbot.waitExposed(win)
    assert win.windowTitle() == APP_NAME
    assert win.isVisible()


def test_command_line_options() -> None:
    a = build_parser().parse_args(["--library", "L", "--search", "q.jpg", "--model", "tiny"])
    assert a.library == "L" and a.search == "q.jpg" and a.model == "tiny"


def test_shortcuts_and_no_destructive_delete(qtbot, ctx) -> None:
    win = MainWindow(ctx)
    qtbot.addWidget(win)
    keys = {k: a.shortcut().toString() for k, a in win.actions_.items()}
    assert keys["open"] == QKeySequence("Ctrl+O").toString()
    assert keys["paste"] == QKeySequence("Ctrl+V").toString()
    assert keys["find"] == QKeySequence("Ctrl+F").toString()
    assert keys["escape"] == QKeySequence("Esc").toString()
    delete = QKeySequence("Del").toString()
    assert all(delete not in a.shortcut().toString() for a in win.findChildren(type(
        win.actions_["open"])))


def test_starts_without_a_model(qtbot, tmp_path: Path) -> None:
    ctx = make_test_context(tmp_path, no_model=True)
    try:
        win = MainWindow(ctx)
        qtbot.addWidget(win)
        win.show()
        with qtbot.waitSignal(ctx.library.opened, timeout=10000) as blocker:
            ctx.library.open()
        assert blocker.args[0].encoder is None
        assert "No model" in win.results_view.empty.text()
        qtbot.waitUntil(lambda: win.notifications.isVisible())
        assert win.notifications.current.level == "warning"
        assert not win.library_panel.rescan_btn.isEnabled()
        photos = tmp_path / "photos"
        photos.mkdir()
        with qtbot.waitSignal(ctx.library.snapshot, timeout=10000,
                              check_params_cb=lambda s: len(s.roots) == 1):
            ctx.library.add_root(photos)
        assert "model" in win.status.model.text().lower()
    finally:
        ctx.close()


def test_model_chosen_later_is_loaded_at_once(qtbot, tmp_path: Path) -> None:
    from cukd_app.testing import open_library, tiny_factory
    from tests.library_helpers import make_tree

    photos = tmp_path / "photos"
    make_tree(photos, 4)
    ctx = make_test_context(tmp_path, no_model=True)
    try:
        win = MainWindow(ctx)
        qtbot.addWidget(win)
        win.show()
        open_library(qtbot, ctx, [])
        with qtbot.waitSignal(ctx.library.snapshot, timeout=10000,
                              check_params_cb=lambda s: len(s.roots) == 1):
            ctx.library.add_root(photos)  # folders can be added without a model
        with qtbot.waitSignal(ctx.library.scanFinished, timeout=10000) as blocker:
            assert ctx.library.use_model(tiny_factory())
        assert blocker.args[1].added == 4 and ctx.library.has_model
        # (the search invitation once the library's status shows the indexed photos)
        qtbot.waitUntil(lambda: win.results_view.empty.text() == win.results_view.WELCOME,
                        timeout=10000)
        assert win.library_panel.rescan_btn.isEnabled()
        assert not ctx.library.use_model(tiny_factory())  # with a model: next start
    finally:
        ctx.close()


def test_remove_folder_forgets_it_without_touching_files(qtbot, tmp_path: Path) -> None:
    from cukd_app.testing import open_library
    from tests.library_helpers import make_tree

    photos = tmp_path / "photos"
    make_tree(photos, 4)
    before = sorted(photos.rglob("*"))
    ctx = make_test_context(tmp_path)
    try:
        win = MainWindow(ctx)
        qtbot.addWidget(win)
        open_library(qtbot, ctx, [photos])
        rid = ctx.library.library.roots()[0].id
        with qtbot.waitSignal(ctx.library.snapshot, timeout=10000,
                              check_params_cb=lambda s: not s.roots and s.files == 0):
            ctx.library.remove_root(rid)
        assert sorted(photos.rglob("*")) == before
        assert win.library_panel.tree.topLevelItemCount() == 0
    finally:
        ctx.close()


def test_settings_apply_thumbnail_size(qtbot, tmp_path: Path) -> None:
    ctx = make_test_context(tmp_path)
    try:
        win = MainWindow(ctx)
        qtbot.addWidget(win)
        win.controller.apply_settings(ctx.settings.replace(thumbnail_size=96, worker_threads=3))
        assert win.results_view.grid.delegate.edge == 96
        assert ctx.store.load().thumbnail_size == 96 and ctx.store.load().worker_threads == 3
    finally:
        ctx.close()


def test_library_that_cannot_open_is_reported(qtbot, tmp_path: Path) -> None:
    (tmp_path / "library").write_text("a file where the library folder should be")
    ctx = make_test_context(tmp_path)
    try:
        win = MainWindow(ctx)
        qtbot.addWidget(win)
        with qtbot.waitSignal(ctx.library.opened, timeout=10000) as blocker:
            ctx.library.open()
        assert blocker.args[0].encoder is None and not ctx.library.ready
        assert "could not be opened" in win.results_view.empty.text()
        assert any(n.level == "error" and "Opening the library" in n.text
                   for n in ctx.notifier.history)
    finally:
        ctx.close()
