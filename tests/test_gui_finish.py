"""Issue 17, the points that looked unfinished: names that elide alike, one model name,
the first run's first step, model switch progress, a prompt quit, a warm first search."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest
import torch
from PIL import Image
from PySide6.QtCore import QModelIndex, QRect, QThreadPool, QTimer
from PySide6.QtWidgets import QApplication, QFileDialog, QStyleOptionViewItem

from core.finetune import fit_itq_head
from core.library import RootInfo
from core.library.testing import TinyEncoder
from core.models import create_student
from cukd_app.context import build_context
from cukd_app.paths import AppPaths
from cukd_app.results_model import ResultsModel
from cukd_app.services.library_service import LibrarySnapshot
from cukd_app.services.model_loader import ModelInfo
from cukd_app.testing import make_test_context, open_library, show_window
from cukd_app.views.library_panel import LibraryPanel
from cukd_app.views.results_view import ResultsView
from tests.library_helpers import make_tree
from tests.test_gui_results import _hit

LONG = "holiday-at-the-seaside-with-the-whole-family-summer-2023-"


# ----------------------------------------------------------------- a. elided names
def test_long_names_sharing_a_start_stay_apart_in_tiles(qtbot, tmp_path: Path) -> None:
    paths = [str(tmp_path / f"{LONG}{i:04d}.jpg") for i in (1, 2)]
    model = ResultsModel()
    view = ResultsView(model, 120)
    qtbot.addWidget(view)
    view.resize(700, 500)
    view.show()
    model.set_hits([_hit(0, paths[0]), _hit(1, paths[1])], 1)
    grid = view.grid
    option = QStyleOptionViewItem()
    option.initFrom(grid)
    option.rect = grid.visualRect(grid.model().index(0, 0))
    width = grid.delegate.name_width(option)
    shown = [grid.delegate.shown_name(grid.model().index(r, 0), grid.fontMetrics(), width)
             for r in range(2)]
    assert all("…" in s for s in shown)  # too long for the tile: elided…
    assert shown[0] != shown[1]  # …yet told apart, by their ends
    assert shown[0].endswith("0001.jpg") and shown[1].endswith("0002.jpg")


def _name_pixels(panel: LibraryPanel, row: int):
    """How the folder list draws the name of row ``row`` (its first column)."""
    tree = panel.tree
    y = tree.visualItemRect(tree.topLevelItem(row))
    rect = QRect(tree.columnViewportPosition(0), y.y(), tree.columnWidth(0), y.height())
    return tree.viewport().grab(rect).toImage()


def test_long_folder_names_sharing_a_start_stay_apart_in_the_folder_list(
        qtbot, tmp_path: Path) -> None:
    panel = LibraryPanel()
    qtbot.addWidget(panel)
    panel.resize(300, 400)
    panel.show()
    roots = tuple(RootInfo(i, str(tmp_path / f"{LONG}{i}"), True, "native", (), 1.0)
                  for i in (1, 2))
    panel.set_snapshot(LibrarySnapshot(roots=roots, root_files={1: {"ok": 1}, 2: {"ok": 1}}))
    tree = panel.tree
    tree.clearSelection()
    tree.setCurrentIndex(QModelIndex())  # both rows drawn alike but for their text
    qtbot.wait(50)
    assert tree.fontMetrics().horizontalAdvance(tree.topLevelItem(0).text(0)) > \
        tree.columnWidth(0)  # elided in the list
    assert _name_pixels(panel, 0) != _name_pixels(panel, 1)  # yet drawn differently


# ----------------------------------------------------------------- b. one model name
@pytest.fixture(scope="module")
def model_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("model")
    images = make_tree(d / "images", 10)
    torch.manual_seed(0)
    out = d / "model.pt"
    fit_itq_head(create_student("cukd_mnv2_035", 64), images, out, n_bits=32, embed_dim=6,
                 threads=1)
    return out


def test_status_bar_names_the_model_as_the_manager_does(qtbot, tmp_path: Path,
                                                        model_file: Path) -> None:
    photos = tmp_path / "photos"
    make_tree(photos, 4)
    ctx = make_test_context(tmp_path)
    try:
        stored = ctx.models.add(model_file, "Garden birds")
        win = show_window(qtbot, ctx)
        open_library(qtbot, ctx, [photos])
        with qtbot.waitSignal(ctx.library.modelChanged, timeout=30000):
            win.controller.use_model_file(stored)  # re-encoded, then in use
        manager = win.controller.open_model_manager()
        qtbot.addWidget(manager)
        entry = next(e for e in manager.entries if e.path == stored)
        assert entry.name == "Garden birds"
        assert "(in use)" in manager.tree.currentItem().text(0)
        assert win.status.model.text() == f"Model: {entry.name}"
        assert "32-bit codes" in win.status.model.toolTip()
        assert any(n.text.startswith("Now using Garden birds:") for n in ctx.notifier.history)
        # Renamed in the manager: the status bar follows, its next snapshot too.
        assert manager.rename(entry, "Seaside")
        assert win.status.model.text() == "Model: Seaside"
        with qtbot.waitSignal(ctx.library.snapshot, timeout=10000,
                              check_params_cb=lambda snap: snap.model_name == "Seaside"):
            ctx.library.refresh()
        assert win.status.model.text() == "Model: Seaside"
    finally:
        ctx.close()
    # At the next start (the setting names the file) it is called the same.
    ctx = build_context(paths=AppPaths(tmp_path / "profile"), library_dir=tmp_path / "lib2",
                        watch=False)
    try:
        win = show_window(qtbot, ctx)
        open_library(qtbot, ctx)
        assert ctx.settings.model_path == str(stored)
        assert win.status.model.text() == "Model: Seaside" == \
            f"Model: {ctx.models.display_name(stored)}"
    finally:
        ctx.close()


# ----------------------------------------------------------------- c. first run
def _choose_folder_when_asked(folder: Path, seen: dict) -> QTimer:
    """Answer the next folder dialog with ``folder`` (the real dialog, accepted)."""
    def poll() -> None:
        dlg = QApplication.activeModalWidget()
        if not isinstance(dlg, QFileDialog):
            return
        timer.stop()
        seen["title"] = dlg.windowTitle()
        dlg.setDirectory(str(folder))  # (a folder dialog chooses the folder it shows)
        dlg.accept()

    timer = QTimer()
    timer.timeout.connect(poll)
    timer.start(30)
    return timer


def test_first_run_shows_adding_a_folder_as_the_first_step(qtbot, tmp_path: Path) -> None:
    photos = tmp_path / "photos"
    make_tree(photos, 4)
    ctx = make_test_context(tmp_path)
    try:
        win = show_window(qtbot, ctx)
        open_library(qtbot, ctx)
        rv = win.results_view
        qtbot.waitUntil(lambda: rv.add_folder_btn.isVisible(), timeout=10000)
        assert rv.add_folder_btn.isEnabled() and rv.add_folder_btn.text() == \
            "Add a folder of photos…"
        assert rv.empty.text() == ResultsView.FIRST_STEP
        assert "Drop a photo" not in rv.empty.text() and "search" not in rv.empty.text()
        seen: dict = {}
        timer = _choose_folder_when_asked(photos, seen)
        with qtbot.waitSignal(ctx.library.scanFinished, timeout=20000) as done:
            rv.add_folder_btn.click()  # the real folder dialog, then the folder is added
        timer.stop()
        assert seen["title"] == "Add a folder of photos" and done.args[1].added == 4
        assert [r.path for r in ctx.library.library.roots()] == [str(photos)]
        # With photos in the library: the invitation to search, no first step any more.
        qtbot.waitUntil(lambda: rv.empty.text() == ResultsView.WELCOME, timeout=10000)
        assert not rv.add_folder_btn.isVisible()
    finally:
        ctx.close()


def test_a_search_in_an_empty_library_offers_the_first_step_too(qtbot, tmp_path: Path) -> None:
    query = make_tree(tmp_path / "elsewhere", 1)[0]
    ctx = make_test_context(tmp_path)
    try:
        win = show_window(qtbot, ctx)
        open_library(qtbot, ctx)
        with qtbot.waitSignal(ctx.search.finished, timeout=10000):
            win.controller.search_path(str(query))
        rv = win.results_view
        assert "library is empty" in rv.empty.text() and rv.add_folder_btn.isVisible()
    finally:
        ctx.close()


# ----------------------------------------------------------------- d. model switch
def test_switching_model_shows_progress_with_a_count_and_its_end(qtbot,
                                                                 tmp_path: Path) -> None:
    photos = tmp_path / "photos"
    make_tree(photos, 70)
    ctx = make_test_context(tmp_path)
    try:
        win = show_window(qtbot, ctx)
        open_library(qtbot, ctx, [photos])
        bar = win.status.model_switch
        assert not bar.isVisible()
        texts: list[str] = []
        # (connected after the status bar: the text it shows for each progress report)
        ctx.library.modelChangeProgress.connect(lambda _p: texts.append(bar.text))
        new = TinyEncoder(seed=1, delay_s=0.15)  # three batches of 32, 32 and 6 photos
        with qtbot.waitSignal(ctx.library.modelChangeEnded, timeout=30000) as ended:
            assert win.controller.switch_model(lambda: ModelInfo(new, "Beach"), "Beach")
            assert bar.isVisible() and "model Beach" in bar.text
            assert bar.stop_btn.isEnabled()
        assert ended.args == [True]
        assert texts[0].startswith("Re-encoding ") and "of 70 photos for model Beach" in \
            texts[0]
        assert texts[-1] == "Re-encoding 70 of 70 photos for model Beach"
        assert len(texts) >= 2  # it moved while it ran
        assert not bar.isVisible()  # finished: the bar goes, and the status bar says so
        assert win.status.currentMessage() == "Switched to model Beach: 70 photos re-encoded."
        assert win.status.model.text() == "Model: Beach"
        assert ctx.library.library.encoder is new
    finally:
        ctx.close()


def test_stopping_a_model_switch_keeps_the_model(qtbot, tmp_path: Path) -> None:
    photos = tmp_path / "photos"
    make_tree(photos, 70)
    ctx = make_test_context(tmp_path)
    try:
        win = show_window(qtbot, ctx)
        open_library(qtbot, ctx, [photos])
        old = ctx.library.library.encoder
        bar = win.status.model_switch
        with qtbot.waitSignal(ctx.library.modelChangeEnded, timeout=30000) as ended:
            win.controller.switch_model(
                lambda: ModelInfo(TinyEncoder(seed=2, delay_s=0.3), "Forest"), "Forest")
            qtbot.waitUntil(lambda: "Re-encoding 32 of 70" in bar.text, timeout=20000)
            bar.stop_btn.click()
            assert bar.text == "Stopping the switch to model Forest…"
        assert ended.args == [False] and not bar.isVisible()
        assert "Not switched to model Forest" in win.status.currentMessage()
        assert ctx.library.library.encoder is old
    finally:
        ctx.close()


# ----------------------------------------------------------------- e. quit
def _big_slow_photos(folder: Path, n: int) -> None:
    """``n`` distinct files of one large PNG (~0.3 s each to decode; little disk)."""
    L = Image.radial_gradient("L").resize((6000, 4000), Image.Resampling.BILINEAR)
    im = Image.merge("RGB", (L, L.transpose(Image.Transpose.FLIP_LEFT_RIGHT),
                             L.transpose(Image.Transpose.FLIP_TOP_BOTTOM)))
    folder.mkdir(parents=True)
    first = folder / "big-000.png"
    im.save(first, compress_level=1)
    data = first.read_bytes()
    for i in range(1, n):  # bytes after the PNG's end: another file, the same picture
        (folder / f"big-{i:03d}.png").write_bytes(data + f"copy {i}".encode())


def _app_threads(before: set[threading.Thread]) -> list[str]:
    """Python threads started since ``before`` that still run (Qt pool threads that ran
    Python show up as "Dummy" threads forever, so the pools are checked separately)."""
    return [t.name for t in threading.enumerate() if t not in before and t.is_alive()
            and not isinstance(t, threading._DummyThread)]  # type: ignore[attr-defined]


def test_quit_while_a_folder_is_scanned_and_watched_is_prompt(qtbot, tmp_path: Path) -> None:
    small, big = tmp_path / "small", tmp_path / "big"
    make_tree(small, 3)
    _big_slow_photos(big, 34)
    before = set(threading.enumerate())
    ctx = make_test_context(tmp_path, watch=True)
    try:
        win = show_window(qtbot, ctx)
        open_library(qtbot, ctx, [small])  # watching starts after the first scan
        qtbot.waitUntil(lambda: ctx.library.library.status().watching, timeout=10000)
        ctx.library.add_root(big)
        qtbot.waitUntil(lambda: ctx.library.state().running is not None
                        and ctx.library.state().progress is not None, timeout=20000)
        qtbot.wait(600)  # decoding the first of the big photos
        assert ctx.library.state().busy and _app_threads(before)  # decoders and watcher
        pools = [p for svc in (ctx.library, ctx.search, ctx.thumbnails,
                               ctx.duplicate_thumbnails, win.controller)
                 for p in svc.findChildren(QThreadPool)]
        t0 = time.monotonic()
        win.actions_["quit"].trigger()
        qtbot.waitUntil(lambda: not _app_threads(before)
                        and all(p.activeThreadCount() == 0 for p in pools), timeout=10000)
        elapsed = time.monotonic() - t0
        assert not win.isVisible() and ctx.library.library is None  # closed and saved
        assert elapsed < 2.0, f"quitting took {elapsed:.1f} s"
    finally:
        ctx.close()


# ----------------------------------------------------------------- f. warm first search
class _ThreadNotingEncoder(TinyEncoder):
    """TinyEncoder that notes the thread of each encode."""

    def __init__(self) -> None:
        super().__init__()
        self.threads: list[str] = []

    def encode(self, images):
        self.threads.append(threading.current_thread().name)
        return super().encode(images)


def test_model_is_warmed_up_in_the_background_after_start(qtbot, tmp_path: Path) -> None:
    photos = tmp_path / "photos"
    make_tree(photos, 4)
    query = make_tree(tmp_path / "elsewhere", 1, start_seed=50)[0]
    encoder = _ThreadNotingEncoder()
    loads: list[int] = []

    def factory() -> ModelInfo:
        loads.append(1)
        return ModelInfo(encoder, "tiny (test)")

    ctx = build_context(paths=AppPaths(tmp_path / "profile"), encoder_factory=factory,
                        library_dir=tmp_path / "library", watch=False)
    try:
        win = show_window(qtbot, ctx)
        with qtbot.waitSignal(ctx.search.warmedUp, timeout=20000):
            ctx.library.open()  # (the window is shown first, as at start-up)
        assert len(loads) == 1 and encoder.calls >= 1  # loaded, and ran once…
        assert ctx.search.last is None  # …before any search,
        assert threading.main_thread().name not in encoder.threads  # off the GUI thread
        with qtbot.waitSignal(ctx.library.scanFinished, timeout=20000):
            ctx.library.add_root(photos)
        with qtbot.waitSignal(ctx.search.finished, timeout=10000) as found:
            win.controller.search_path(str(query))
        assert found.args[0].hits and len(loads) == 1  # the first search loaded nothing
    finally:
        ctx.close()


def test_warm_up_needs_a_model(qtbot, tmp_path: Path) -> None:
    ctx = make_test_context(tmp_path, no_model=True)
    try:
        show_window(qtbot, ctx)
        open_library(qtbot, ctx)
        assert not ctx.search.warm_up()
    finally:
        ctx.close()
