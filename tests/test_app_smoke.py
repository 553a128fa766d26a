"""The application window opens offscreen."""

from __future__ import annotations

from cukd_app.__main__ import build_parser
from cukd_app.app import APP_NAME, MainWindow


def test_main_window_shows(qtbot) -> None:
    win = MainWindow()
    qtbot.addWidget(win)
    win.show()
    qtbot.waitExposed(win)
    assert win.windowTitle() == APP_NAME
    assert win.isVisible()


def test_command_line_options() -> None:
    a = build_parser().parse_args(["--library", "L", "--search", "q.jpg"])
    assert a.library == "L" and a.search == "q.jpg"
