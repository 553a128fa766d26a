"""The notification area: newest on top, "+N more" opens the earlier ones, and a banner never
moves the window's controls (issue 17, item 8)."""

from __future__ import annotations

from pathlib import Path

import pytest
from PySide6.QtCore import QPoint, QRect, Qt
from PySide6.QtWidgets import QLabel, QWidget

from cukd_app.testing import make_test_context, show_window


@pytest.fixture
def win(qtbot, tmp_path: Path):
    ctx = make_test_context(tmp_path)
    w = show_window(qtbot, ctx)
    w.resize(900, 600)
    qtbot.waitExposed(w)
    yield w
    ctx.close()


def geometry_in(win: QWidget, w: QWidget) -> QRect:
    return QRect(w.mapTo(win, QPoint(0, 0)), w.size())


def on_top_at(win: QWidget, w: QWidget) -> bool:
    """The widget the user would click at ``w``'s centre is ``w`` (nothing covers it)."""
    hit = win.childAt(w.mapTo(win, w.rect().center()))
    return hit is w or (hit is not None and w.isAncestorOf(hit))


def test_newest_on_top_and_more_lists_the_earlier(qtbot, win) -> None:
    area, notifier, rv = win.notifications, win.ctx.notifier, win.results_view
    before = {w: geometry_in(win, w) for w in (rv, rv.grid, rv.name_filter, win.tabs)}
    notifier.error("The folder Holidays cannot be read.")
    notifier.warning("3 photos could not be indexed.")
    assert area.isVisible() and on_top_at(win, area.text)
    assert area.text.text() == "3 photos could not be indexed."  # the newest
    assert area.current.level == "warning"
    # A banner floats over the results: nothing moved under the user's mouse.
    assert {w: geometry_in(win, w) for w in before} == before
    assert win.rect().contains(geometry_in(win, area))
    assert area.more.isVisible() and area.more.text() == "+1 more" and on_top_at(win, area.more)
    assert not area.earlier.isVisible()
    qtbot.mouseClick(area.more, Qt.MouseButton.LeftButton)
    shown = [lb.text() for lb in area.earlier.findChildren(QLabel) if lb.isVisible()]
    assert len(shown) == 1 and "The folder Holidays cannot be read." in shown[0]
    assert area.earlier_texts() == ["The folder Holidays cannot be read."]
    assert on_top_at(win, area.earlier) and area.more.text() == "Hide earlier"
    assert {w: geometry_in(win, w) for w in before} == before
    # "Show" brings the earlier one to the top; the other waits behind "+1 more".
    show = next(b for b in area.earlier.findChildren(type(area.more)) if b.text() == "Show")
    qtbot.mouseClick(show, Qt.MouseButton.LeftButton)
    assert area.text.text() == "The folder Holidays cannot be read."
    assert area.earlier_texts() == ["3 photos could not be indexed."]
    # Dismissing shows the one waiting; dismissing that hides the area.
    qtbot.mouseClick(area.close_btn, Qt.MouseButton.LeftButton)
    assert area.text.text() == "3 photos could not be indexed." and not area.more.isVisible()
    qtbot.mouseClick(area.close_btn, Qt.MouseButton.LeftButton)
    assert not area.isVisible()
    assert {w: geometry_in(win, w) for w in before} == before


def test_info_after_an_error_is_shown_and_the_error_comes_back(qtbot, win) -> None:
    area, notifier = win.notifications, win.ctx.notifier
    area.INFO_MS = 200
    notifier.error("The search failed.")
    notifier.info("Added folder Photos.")
    assert area.text.text() == "Added folder Photos." and area.more.text() == "+1 more"
    qtbot.waitUntil(lambda: area.text.text() == "The search failed.", timeout=3000)
    assert area.isVisible() and area.current.level == "error" and not area.more.isVisible()
    # A newer info replaces an older info (no pile of stale infos).
    area.dismiss()
    notifier.info("One.")
    notifier.info("Two.")
    assert area.text.text() == "Two." and not area.more.isVisible()


def test_banner_follows_the_window_size(qtbot, win) -> None:
    area = win.notifications
    win.ctx.notifier.warning("A long warning " + "that wraps over several lines " * 8)
    for size in ((900, 600), (1400, 900), (760, 500)):
        win.resize(*size)
        qtbot.waitUntil(lambda s=size: win.size().width() == s[0])
        host = area.parentWidget()
        g = area.geometry()
        assert host.rect().contains(g) and g.width() > host.width() - 20
        assert g.bottom() >= host.height() - area.MARGIN - 2  # at the bottom of the results
        assert area.text.height() >= area.text.heightForWidth(area.text.width()) - 1


def test_many_earlier_messages_stay_inside_the_window(qtbot, win) -> None:
    area = win.notifications
    for i in range(9):
        win.ctx.notifier.warning(f"Problem number {i}.")
    assert area.text.text() == "Problem number 8." and area.more.text() == "+8 more"
    qtbot.mouseClick(area.more, Qt.MouseButton.LeftButton)
    texts = [lb.text() for lb in area.earlier.findChildren(QLabel) if lb.isVisible()]
    assert len(texts) == 7  # the 6 newest of the 8 earlier ones, newest first, then a note
    assert [t.rsplit("  ", 1)[-1] for t in texts[:6]] == [f"Problem number {i}."
                                                          for i in range(7, 1, -1)]
    assert texts[-1].startswith("2 older messages")
    assert area.parentWidget().rect().contains(area.geometry())
