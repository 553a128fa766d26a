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
