"""Searches run off the GUI thread; stale results are dropped; errors reach the user."""

from __future__ import annotations

import sys
import threading
from pathlib import Path

import pytest

from cukd_app.notifications import install_crash_hooks
from cukd_app.services.search_service import SearchRequest
from cukd_app.testing import make_test_context, open_library, show_window
from tests.library_helpers import make_tree


@pytest.fixture
def setup(qtbot, tmp_path: Path):
    photos = tmp_path / "photos"
    make_tree(photos, 10)
    ctx = make_test_context(tmp_path)
    win = show_window(qtbot, ctx)
    open_library(qtbot, ctx, [photos])
    yield ctx, win, photos
    ctx.close()


def test_stale_results_are_dropped(qtbot, setup) -> None:
    ctx, win, photos = setup
    lib = ctx.library.library
    real_search = lib.search
    release = threading.Event()

    def search(query, k=20, **kw):  # the first (older) query is slow
        if str(query).endswith("img0000.png"):
            release.wait(10)
        return real_search(query, k=k, **kw)

    lib.search = search  # type: ignore[method-assign]
    ctx.search._pool.setMaxThreadCount(2)  # let the newer query overtake the older one
    old = ctx.search.search(SearchRequest(path=str(photos / "img0000.png")))
    with qtbot.waitSignal(ctx.search.finished, timeout=10000) as blocker:
        new = win.controller.search_path(str(photos / "sub" / "img0001.jpg"))
    assert new > old and blocker.args[0].generation == new
    shown = win.results_view.model.hits
    with qtbot.waitSignal(ctx.search.stale, timeout=10000) as stale:
        release.set()
    assert stale.args == [old]
    qtbot.wait(50)
    assert win.results_view.model.hits == shown  # the late, older result did not replace it
    assert win.results_view.model.generation == new


def test_escape_cancels_running_search(qtbot, setup) -> None:
    ctx, win, photos = setup
    lib = ctx.library.library
    real_search = lib.search
    release = threading.Event()
    lib.search = lambda q, k=20, **kw: (release.wait(10), real_search(q, k=k, **kw))[1]
    gen = ctx.search.search(SearchRequest(path=str(photos / "img0000.png")))
    win.actions_["escape"].trigger()
    with qtbot.waitSignal(ctx.search.stale, timeout=10000) as stale:
        release.set()
    assert stale.args == [gen] and win.results_view.model.rowCount() == 0


def test_search_error_reaches_notification_area(qtbot, setup, tmp_path: Path) -> None:
    ctx, win, _ = setup
    bad = tmp_path / "broken.jpg"
    bad.write_bytes(b"\xff\xd8 this is not really a jpeg")
    with qtbot.waitSignal(ctx.search.failed, timeout=10000) as failed:
        win.controller.search_path(str(bad))
    assert "broken.jpg" in str(failed.args[0].exception)
    qtbot.waitUntil(lambda: win.notifications.isVisible())
    area = win.notifications
    assert area.current.level == "error" and "Searching with broken.jpg" in area.text.text()
    # A bad image is a known problem: one sentence, no traceback behind Details.
    assert "cannot be read as an image" in area.text.text()
    assert "Traceback" not in area.text.text() and not area.details_btn.isVisible()
    qtbot.waitUntil(lambda: "Cannot read this image" in win.query_panel.caption.text())
    assert [n.level for n in ctx.notifier.history].count("error") == 1  # reported once
    area.dismiss()
    assert not area.isVisible()


def test_worker_errors_are_logged_to_file(qtbot, tmp_path: Path) -> None:
    import logging

    from cukd_app.notifications import Notifier, setup_logging
    from cukd_app.workers import Worker

    handler = setup_logging(tmp_path / "logs" / "app.log")
    try:
        notifier = Notifier()
        w = Worker("Doing a thing", lambda: 1 / 0)
        w.signals.error.connect(notifier.error)
        with qtbot.waitSignals([notifier.posted, w.signals.finished], timeout=5000):
            w.run()
        assert notifier.history[-1].level == "error"
        assert "Doing a thing failed" in notifier.history[-1].text
        handler.flush()
        text = (tmp_path / "logs" / "app.log").read_text()
        assert "Doing a thing failed" in text and "ZeroDivisionError" in text
    finally:
        logging.getLogger().removeHandler(handler)
        handler.close()


def test_crash_hook_shows_dialog(qtbot, setup) -> None:
    ctx, win, _ = setup
    old_hook, old_thread_hook = sys.excepthook, threading.excepthook
    install_crash_hooks(ctx.notifier)
    try:
        try:
            raise RuntimeError("boom in a slot")
        except RuntimeError as exc:
            with qtbot.waitSignal(ctx.notifier.crashed, timeout=5000) as blocker:
                sys.excepthook(type(exc), exc, exc.__traceback__)
        assert "boom in a slot" in blocker.args[0]
        dlg = win.controller._crash
        assert dlg is not None and dlg.isVisible()
        # Words for the user; the traceback is in the log file only.
        shown = dlg.text.toPlainText()
        assert "Traceback" not in shown and "RuntimeError" not in shown
        assert "not in your photos" in shown and str(ctx.paths.log_file) in shown
        assert "What to do" in shown
        dlg.close()
    finally:
        sys.excepthook, threading.excepthook = old_hook, old_thread_hook


def test_search_in_an_empty_library_says_to_add_a_folder(qtbot, tmp_path: Path) -> None:
    query = make_tree(tmp_path / "elsewhere", 1)[0]
    ctx = make_test_context(tmp_path)
    try:
        win = show_window(qtbot, ctx)
        with qtbot.waitSignal(ctx.library.snapshot, timeout=20000):
            open_library(qtbot, ctx)
        with qtbot.waitSignal(ctx.search.finished, timeout=10000):
            win.controller.search_path(str(query))
        assert win.results_view.model.rowCount() == 0
        assert "Add a folder" in win.results_view.empty.text()
    finally:
        ctx.close()
