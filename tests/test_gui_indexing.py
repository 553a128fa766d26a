"""Indexing from the GUI: progress, pause/resume, cancel, per-folder state and errors."""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import pytest

from core.library.testing import TinyEncoder
from cukd_app.testing import make_test_context, open_library, show_window
from cukd_app.views.library_panel import root_state
from tests.library_helpers import make_tree


@pytest.fixture
def slow(qtbot, tmp_path: Path):
    """A window over a library whose encoder takes 0.15 s per batch of 32 images."""
    photos = tmp_path / "photos"
    make_tree(photos, 100)
    ctx = make_test_context(tmp_path, encoder=TinyEncoder(delay_s=0.15))
    win = show_window(qtbot, ctx)
    open_library(qtbot, ctx)
    yield ctx, win, photos
    ctx.close()


def _wait_encoding(qtbot, ctx) -> None:
    qtbot.waitUntil(lambda: ctx.library.state().progress is not None
                    and ctx.library.state().progress.phase == "encode", timeout=10000)


def test_pause_and_resume(qtbot, slow) -> None:
    ctx, win, photos = slow
    ctx.library.add_root(photos)
    _wait_encoding(qtbot, ctx)
    win.library_panel.pause_btn.click()
    assert ctx.library.state().paused and win.library_panel.pause_btn.text() == "Resume"
    qtbot.wait(400)  # let the batch in flight finish
    done = ctx.library.state().progress.done
    qtbot.wait(600)
    assert ctx.library.state().progress.done == done < 100  # nothing moves while paused
    rid = ctx.library.state().running
    assert win.library_panel.state_of(rid)[0] == "paused"
    with qtbot.waitSignal(ctx.library.scanFinished, timeout=20000) as blocker:
        win.library_panel.pause_btn.click()  # resume
    result = blocker.args[1]
    assert not result.cancelled and result.added == 100
    qtbot.waitUntil(lambda: win.library_panel.state_of(rid)[0] == "ok", timeout=5000)
    assert "100 indexed" in win.status.indexed.text()


def test_cancel_keeps_committed_work_and_rescan_resumes(qtbot, slow) -> None:
    ctx, win, photos = slow
    ctx.library.add_root(photos)
    _wait_encoding(qtbot, ctx)
    with qtbot.waitSignal(ctx.library.scanFinished, timeout=10000) as blocker:
        win.library_panel.stop_btn.click()
    first = blocker.args[1]
    assert first.cancelled and first.added < 100
    assert not ctx.library.state().busy
    rid = blocker.args[0]
    # Stopped part-way: "Partly indexed: N of 100", not "Not indexed yet".
    qtbot.waitUntil(lambda: (win.library_panel.state_of(rid) or ("",))[0] == "partial",
                    timeout=5000)
    assert win.library_panel.state_of(rid)[1].startswith(
        f"Partly indexed: {first.added} of 100 — Rescan to resume")
    with qtbot.waitSignal(ctx.library.scanFinished, timeout=20000) as blocker:
        win.library_panel.rescan_btn.click()
    second = blocker.args[1]
    assert not second.cancelled and first.added + second.added == 100
    assert second.unchanged == first.added  # committed batches were kept


def test_pause_while_closing_does_not_hang(qtbot, slow) -> None:
    ctx, win, photos = slow
    ctx.library.add_root(photos)
    _wait_encoding(qtbot, ctx)
    ctx.library.pause_indexing()
    t0 = time.monotonic()
    win.close()  # saves state, cancels the paused scan, closes the library
    assert time.monotonic() - t0 < 5


def test_failed_files_and_offline_folder(qtbot, tmp_path: Path) -> None:
    photos = tmp_path / "photos"
    make_tree(photos, 6)
    (photos / "broken.jpg").write_bytes(b"\xff\xd8 not really")
    (photos / "empty.png").write_bytes(b"")
    ctx = make_test_context(tmp_path)
    try:
        win = show_window(qtbot, ctx)
        with qtbot.waitSignal(ctx.notifier.posted, timeout=20000,
                              check_params_cb=lambda n: n.level == "warning"):
            open_library(qtbot, ctx, [photos])
        panel = win.library_panel
        qtbot.waitUntil(lambda: panel.tree.topLevelItemCount() == 1
                        and panel.tree.topLevelItem(0).childCount() == 2, timeout=5000)
        item = panel.tree.topLevelItem(0)
        failed = {item.child(i).text(0): item.child(i).text(1) for i in range(2)}
        # Plain words for each failed file, not the decoder's reason codes.
        assert failed == {"broken.jpg": "Not an image", "empty.png": "Empty file"}
        rid = ctx.library.library.roots()[0].id
        # The failed files can arrive in a snapshot taken just before the scan stamps the
        # folder as scanned; the folder's state catches up with the next snapshot.
        qtbot.waitUntil(lambda: (panel.state_of(rid) or ("",))[0] == "warning", timeout=5000)
        kind, text = panel.state_of(rid)
        # 6 of 8 indexed: a warning (amber, marked), not a folder drawn all red.
        assert kind == "warning" and text.startswith("⚠ Up to date") and "2 of 8 failed" in text
        assert item.foreground(1).color().name() != "#c62828"
        assert "failed" in win.status.indexed.text()
        # The drive goes away: the folder shows offline, its files stay in the library.
        shutil.rmtree(photos)
        with qtbot.waitSignal(ctx.library.scanFinished, timeout=10000):
            ctx.library.rescan()
        qtbot.waitUntil(lambda: (panel.state_of(rid) or ("",))[0] == "offline", timeout=5000)
        assert "6 indexed" in win.status.indexed.text()
    finally:
        ctx.close()


def test_root_state_texts() -> None:
    from core.library import RootInfo, ScanProgress
    from cukd_app.services.library_service import IndexState, LibrarySnapshot, RootError

    r = RootInfo(1, "/p", True, "native", (), 1.0)
    snap = LibrarySnapshot(roots=(r,), watching=True)
    assert root_state(r, snap, IndexState()) == ("ok", "Up to date · watching")
    unwatched = RootInfo(1, "/p", True, "off", (), 1.0)  # added with watching off
    assert root_state(unwatched, snap, IndexState()) == ("ok", "Up to date")
    assert root_state(r, snap, IndexState(queued=(1,)))[0] == "queued"
    busy = IndexState(running=1, progress=ScanProgress("encode", 5, 20))
    assert root_state(r, snap, busy) == ("indexing", "Indexing 5 / 20")
    some = LibrarySnapshot(roots=(r,), errors={1: (RootError("/p/x.jpg", "corrupt"),)},
                           root_files={1: {"ok": 384, "error": 1}})
    assert root_state(r, some, IndexState()) == ("warning", "⚠ Up to date · 1 of 385 failed")
    bad = LibrarySnapshot(roots=(r,), errors={1: (RootError("/p/x.jpg", "corrupt"),)},
                          root_files={1: {"error": 1}})
    assert root_state(r, bad, IndexState())[0] == "error"  # red: nothing could be indexed
    off = RootInfo(1, "/p", False, "native", (), 1.0)
    assert root_state(off, snap, IndexState())[0] == "offline"
    never = RootInfo(1, "/p", True, "native", (), None)
    assert root_state(never, snap, IndexState()) == ("new", "Not indexed yet")
    stopped = LibrarySnapshot(roots=(never,), root_files={1: {"ok": 896}}, partial={1: 1000})
    assert root_state(never, stopped, IndexState()) == (
        "partial", "Partly indexed: 896 of 1,000 — Rescan to resume")
    after_restart = LibrarySnapshot(roots=(never,), root_files={1: {"ok": 896}})
    assert root_state(never, after_restart, IndexState())[0] == "partial"
