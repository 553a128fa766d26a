"""Application start-up: QApplication, services, the main window, the event loop."""

from __future__ import annotations

import argparse
import logging
import time

from PySide6.QtCore import QTimer
from PySide6.QtGui import QIcon
from PySide6.QtWidgets import QApplication

from cukd_app import STARTED, __version__
from cukd_app.context import AppContext, build_context, library_directory
from cukd_app.controller import AppController
from cukd_app.notifications import install_crash_hooks, setup_logging
from cukd_app.paths import AppPaths, app_icon_path
from cukd_app.results_model import ResultsModel
from cukd_app.settings import SettingsStore
from cukd_app.single_instance import LibraryWindowLock, already_open_box
from cukd_app.theme import apply_theme
from cukd_app.views.duplicates_view import DuplicatesView
from cukd_app.views.library_panel import LibraryPanel
from cukd_app.views.main_window import MainWindowView
from cukd_app.views.query_panel import QueryPanel
from cukd_app.views.results_view import ResultsView

__all__ = ["APP_NAME", "MainWindow", "run"]

logger = logging.getLogger(__name__)

APP_NAME = "CUKD Image Search"


class MainWindow(MainWindowView):
    """The application window: the views composed over one :class:`AppContext`.

    Args:
        ctx: the services (see :func:`cukd_app.context.build_context`). The library is not
            opened here: call ``ctx.library.open()`` (``run`` does).
    """

    def __init__(self, ctx: AppContext) -> None:
        s = ctx.settings
        results = ResultsView(ResultsModel(ctx.thumbnails), s.thumbnail_size)
        duplicates = DuplicatesView(ResultsModel(ctx.duplicate_thumbnails), s.thumbnail_size,
                                    thumbnail_cache=ctx.duplicate_thumbnails.cache)
        super().__init__(LibraryPanel(), QueryPanel(), results, duplicates, APP_NAME)
        self.ctx = ctx
        self.controller = AppController(ctx, self)
        # What the user did to duplicates: a notification, and the catalog catches up.
        duplicates.notify.connect(
            lambda level, text, detail: getattr(ctx.notifier, level)(text, detail))
        duplicates.filesChanged.connect(ctx.library.rescan_paths)


def run(args: argparse.Namespace) -> int:
    """Start the app with parsed command-line arguments; returns the exit code."""
    app = QApplication.instance() or QApplication([])
    assert isinstance(app, QApplication)
    app.setApplicationName(APP_NAME)
    app.setApplicationVersion(__version__)
    app.setDesktopFileName("cukd-image-search")
    app.setWindowIcon(QIcon(str(app_icon_path())))
    paths = AppPaths(getattr(args, "profile", None))
    setup_logging(paths.log_file)
    directory = library_directory(paths, SettingsStore(paths.settings_file).load(),
                                  args.library)
    claim = LibraryWindowLock(directory)
    if not claim.acquire():  # another window has this library: say so, bring it forward
        raised = claim.ask_holder_to_raise()
        logger.info("library %s is open in another window; this start quits", directory)
        already_open_box(directory, claim.holder(), raised).exec()
        return 0
    ctx = build_context(paths=paths, model=getattr(args, "model", None),
                        library_dir=directory)
    install_crash_hooks(ctx.notifier)
    apply_theme(app, ctx.settings.theme)
    win = MainWindow(ctx)
    claim.raiseRequested.connect(win.bring_to_front)
    app.aboutToQuit.connect(win.controller.shutdown)  # quit without closing the window too
    app.aboutToQuit.connect(claim.release)
    win.show()
    logger.info("window shown %.0f ms after start-up", (time.perf_counter() - STARTED) * 1e3)
    ctx.library.opened.connect(lambda info: logger.info(
        "library ready (%s) %.0f ms after start-up", info.name,
        (time.perf_counter() - STARTED) * 1e3))
    ctx.library.open()
    if args.search:
        win.controller.search_path(args.search)
    if getattr(args, "duplicates", False):
        ctx.library.opened.connect(lambda _info: win.controller.find_duplicates())
    if args.quit_after is not None:
        QTimer.singleShot(int(args.quit_after * 1000), win.close)
    return app.exec()
