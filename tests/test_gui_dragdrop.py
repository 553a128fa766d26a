"""Dropping files and folders, pasting images and paths, the query panel."""

from __future__ import annotations

from pathlib import Path

import pytest
from PySide6.QtCore import QMimeData, QPointF, Qt, QUrl
from PySide6.QtGui import QDragEnterEvent, QDropEvent, QGuiApplication, QImage
from PySide6.QtWidgets import QApplication

from cukd_app.app import MainWindow
from cukd_app.mime import read_mime
from cukd_app.testing import make_test_context, open_library, show_window
from tests.library_helpers import make_tree, write_image


def _urls(*paths: Path) -> QMimeData:
    md = QMimeData()
    md.setUrls([QUrl.fromLocalFile(str(p)) for p in paths])
    return md


def _drag_drop(win: MainWindow, mime: QMimeData) -> bool:
    """Drag ``mime`` over the window and drop it if the window accepts it."""
    args = (QPointF(60, 60), Qt.DropAction.CopyAction, mime, Qt.MouseButton.LeftButton,
            Qt.KeyboardModifier.NoModifier)
    enter = QDragEnterEvent(*args)
    QApplication.sendEvent(win, enter)
    if not enter.isAccepted():
        return False
    QApplication.sendEvent(win, QDropEvent(*args))
    return True


@pytest.fixture
def setup(qtbot, tmp_path: Path):
    photos = tmp_path / "photos"
    make_tree(photos, 12)
    ctx = make_test_context(tmp_path)
    win = show_window(qtbot, ctx)
    open_library(qtbot, ctx, [photos])
    yield ctx, win, photos
    ctx.close()


def test_read_mime_classifies(tmp_path: Path) -> None:
    img = write_image(tmp_path / "a.jpg", 1)
    txt = tmp_path / "notes.txt"
    txt.write_text("x")
    c = read_mime(_urls(img, tmp_path, txt, tmp_path / "missing.png"))
    assert c.images == (str(img),) and c.folders == (str(tmp_path),)
    assert str(txt) in c.ignored
    md = QMimeData()
    md.setText(f'"{img}"\n')
    assert read_mime(md).images == (str(img),)
    md = QMimeData()
    md.setText(QUrl.fromLocalFile(str(img)).toString())
    assert read_mime(md).images == (str(img),)
    md = QMimeData()
    md.setImageData(QImage(8, 8, QImage.Format.Format_RGB32))
    assert read_mime(md).image is not None


def test_drop_image_file_searches(qtbot, setup, tmp_path: Path) -> None:
    ctx, win, _ = setup
    outside = write_image(tmp_path / "elsewhere" / "query.png", 3)  # not in the library
    with qtbot.waitSignal(ctx.search.finished, timeout=10000) as blocker:
        assert _drag_drop(win, _urls(outside))
    hits = blocker.args[0].hits
    assert hits and win.results_view.model.rowCount() == len(hits)
    assert Path(hits[0].path).stem == "img0003"  # same picture (seed 3), another file
    qtbot.waitUntil(lambda: "query.png" in win.query_panel.caption.text())
    assert "80 × 60" in win.query_panel.caption.text()
    assert ctx.settings.last_query == str(outside)


def test_drag_of_other_files_is_refused(setup, tmp_path: Path) -> None:
    _, win, _ = setup
    txt = tmp_path / "notes.txt"
    txt.write_text("x")
    assert not _drag_drop(win, _urls(txt))


def test_drop_several_images_asks_which(qtbot, setup) -> None:
    ctx, win, photos = setup
    a, b = photos / "img0000.png", photos / "sub" / "img0001.jpg"
    asked: list[list[str]] = []
    win.controller.choose_image = lambda paths: asked.append(paths) or paths[1]
    with qtbot.waitSignal(ctx.search.finished, timeout=10000) as blocker:
        win.controller.handle_mime(_urls(a, b))
    assert asked == [[str(a), str(b)]]
    assert blocker.args[0].request.path == str(b)
    # Cancelling the choice searches nothing.
    win.controller.choose_image = lambda paths: None
    gen = ctx.search.generation
    win.controller.handle_mime(_urls(a, b))
    assert ctx.search.generation == gen


def test_drop_folder_adds_it(qtbot, setup, tmp_path: Path) -> None:
    ctx, win, _ = setup
    more = tmp_path / "more"
    make_tree(more, 4, start_seed=100)
    before = sorted(p.name for p in more.rglob("*"))
    with qtbot.waitSignal(ctx.library.scanFinished, timeout=10000):
        assert _drag_drop(win, _urls(more))
    qtbot.waitUntil(lambda: len(win.library_panel._snap.roots) == 2, timeout=10000)
    rid = next(r.id for r in win.library_panel._snap.roots if r.path == str(more))
    qtbot.waitUntil(lambda: win.library_panel.state_of(rid)[0] == "ok", timeout=10000)
    assert sorted(p.name for p in more.rglob("*")) == before  # nothing written there


def test_paste_image_and_path(qtbot, setup) -> None:
    ctx, win, photos = setup
    img = QImage(str(photos / "img0000.png"))
    assert not img.isNull()
    QGuiApplication.clipboard().setImage(img)
    with qtbot.waitSignal(ctx.search.finished, timeout=10000) as blocker:
        win.actions_["paste"].trigger()
    out = blocker.args[0]
    assert out.request.image is not None and out.hits
    assert out.hits[0].path == str(photos / "img0000.png")  # the pasted picture itself
    assert "Pasted image" in win.query_panel.caption.text()
    QGuiApplication.clipboard().setText(str(photos / "sub" / "img0001.jpg"))
    with qtbot.waitSignal(ctx.search.finished, timeout=10000) as blocker:
        win.controller.paste()
    assert blocker.args[0].request.path == str(photos / "sub" / "img0001.jpg")


def test_paste_nothing_useful_warns(qtbot, setup) -> None:
    ctx, win, _ = setup
    QGuiApplication.clipboard().setText("just some words")
    with qtbot.waitSignal(ctx.notifier.posted, timeout=5000) as blocker:
        win.controller.paste()
    assert blocker.args[0].level == "warning"
