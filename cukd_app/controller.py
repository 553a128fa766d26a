"""Behaviour of the main window: connects the views to the services.

The controller owns no state of its own beyond the window's; services own the data.
"""

from __future__ import annotations

import base64
import logging
import os
from collections.abc import Callable
from pathlib import Path

from PySide6.QtCore import QByteArray, QMimeData, QObject, QPoint, QThreadPool, QUrl, Slot
from PySide6.QtGui import QDesktopServices, QGuiApplication, QImage
from PySide6.QtWidgets import (
    QAbstractButton,
    QFileDialog,
    QInputDialog,
    QMessageBox,
    QWidget,
)

from core.errors import image_problem
from core.imageio import ImageLoadError, open_image
from cukd_app import file_actions
from cukd_app.context import AppContext
from cukd_app.mime import DropContent, read_mime
from cukd_app.models_manager import ModelManagerDialog
from cukd_app.notifications import Notification
from cukd_app.paths import default_model_path
from cukd_app.services.library_service import IndexState, LibrarySnapshot
from cukd_app.services.model_loader import ModelInfo, model_tooltip, resolve_encoder
from cukd_app.services.search_service import SearchOutcome, SearchRequest
from cukd_app.services.thumbnails import pil_to_qimage
from cukd_app.settings import AppSettings
from cukd_app.views.crash_dialog import CrashDialog
from cukd_app.views.main_window import MainWindowView
from cukd_app.views.results_view import ResultsView
from cukd_app.views.settings_dialog import SettingsDialog
from cukd_app.wizard import RetrainWizard, WizardServices
from cukd_app.workers import Worker, WorkerError

__all__ = ["AppController", "QueryPreview", "load_query_preview", "remove_folder_box"]

logger = logging.getLogger(__name__)

IMAGE_FILTER = ("Images (*.jpg *.jpeg *.png *.webp *.heic *.heif *.avif *.bmp *.gif *.tif "
                "*.tiff);;All files (*)")


def remove_folder_box(path: str, indexed: int, parent: QWidget | None = None
                      ) -> tuple[QMessageBox, QAbstractButton]:
    """The confirmation of Remove and its removing button: names the folder, says that
    nothing on disk changes, and defaults to Cancel (Enter and Esc keep the folder)."""
    box = QMessageBox(QMessageBox.Icon.Question, "Remove folder from the library",
                      f"Remove the folder {path} from the library?", parent=parent)
    photos = f"its {indexed:,} indexed photo(s)" if indexed else "its photos"
    box.setInformativeText(
        f"The app forgets this folder and stops searching {photos}. Nothing on disk is "
        "changed or deleted: the folder and its photos stay where they are, and you can add "
        "the folder again later.")
    remove = box.addButton("Remove from library", QMessageBox.ButtonRole.DestructiveRole)
    cancel = box.addButton(QMessageBox.StandardButton.Cancel)
    box.setDefaultButton(cancel)
    box.setEscapeButton(cancel)
    return box, remove


class QueryPreview:
    """A query image's preview and facts (built off the GUI thread)."""

    def __init__(self, path: str, image: QImage, dims: tuple[int, int], size: int) -> None:
        self.path, self.image, self.dims, self.size = path, image, dims, size


def load_query_preview(path: str, edge: int = 480) -> QueryPreview:
    """Decode a reduced preview of a query file (worker thread)."""
    loaded = open_image(path, draft_size=edge)
    im = loaded.image
    im.thumbnail((edge, edge))
    return QueryPreview(path, pil_to_qimage(im), (loaded.width, loaded.height),
                        os.path.getsize(path))


def _b64(data: QByteArray) -> str:
    return base64.b64encode(bytes(data.data())).decode("ascii")


def _unb64(text: str) -> QByteArray:
    try:
        return QByteArray(base64.b64decode(text.encode("ascii")))
    except ValueError:
        return QByteArray()


class AppController(QObject):
    """Wires one :class:`MainWindowView` to the services of an :class:`AppContext`.

    Attributes:
        choose_image: picks one of several dropped images (a dialog; tests replace it).
    """

    def __init__(self, ctx: AppContext, window: MainWindowView) -> None:
        super().__init__(window)
        self.ctx, self.win = ctx, window
        self.choose_image: Callable[[list[str]], str | None] = self._ask_which_image
        self._pool = QThreadPool(self)
        self._pool.setMaxThreadCount(1)
        self._workers: set[Worker] = set()
        self._query: SearchRequest | None = None
        self._crash: CrashDialog | None = None
        self._opened = False
        self._snapshot: LibrarySnapshot | None = None
        self._pending_search: SearchRequest | None = None
        self.models = ctx.models  # names models in the manager, status bar and messages
        self.wizard: RetrainWizard | None = None
        self.model_manager: ModelManagerDialog | None = None
        self._switching_to: str | None = None
        self._switch_name = ""  # display name of the model being switched to
        #: The library's stage when the last search ended (its outcome is what the results
        #: area says while that holds); None before any search.
        self._searched_stage: str | None = None
        self._loading_model: str | None = None  # chosen while no model was active
        self._shut_down = False
        self._connect()
        self._restore()

    # ----------------------------------------------------------------- wiring
    def _connect(self) -> None:
        ctx, w = self.ctx, self.win
        lib, search, n = ctx.library, ctx.search, ctx.notifier
        n.posted.connect(self._on_notification)
        n.crashed.connect(self.show_crash)
        lib.opened.connect(self._on_opened)
        lib.snapshot.connect(self._on_snapshot)
        lib.indexState.connect(self._on_index_state)
        lib.duplicatesReady.connect(self._on_duplicates)
        lib.duplicatesProgress.connect(self.win.duplicates_view.set_progress)
        lib.modelChanged.connect(self._on_model_changed)
        lib.modelChangeEnded.connect(self._on_model_change_ended)
        lib.modelChangeProgress.connect(w.status.model_switch.set_progress)
        w.status.model_switch.stopRequested.connect(self.stop_model_switch)
        search.started.connect(self._on_search_started)
        search.finished.connect(self._on_search_finished)
        search.failed.connect(self._on_search_failed)
        panel = w.library_panel
        panel.addFolder.connect(lib.add_root)
        panel.removeFolder.connect(self.remove_folder)
        panel.rescan.connect(lib.rescan)
        panel.pause.connect(lib.pause_indexing)
        panel.resume.connect(lib.resume_indexing)
        panel.cancel.connect(lib.cancel_indexing)
        w.query_panel.openRequested.connect(self.open_dialog)
        w.query_panel.pasteRequested.connect(self.paste)
        rv: ResultsView = w.results_view
        rv.grid.activatedPath.connect(self.open_path)
        rv.grid.menuRequested.connect(self.result_menu)
        rv.countChanged.connect(self._on_count_changed)
        rv.filtersChanged.connect(self._remember_filters)
        rv.sortChanged.connect(lambda _k: self._remember_filters())
        rv.addFolderRequested.connect(panel.choose_folder)
        dv = w.duplicates_view
        dv.findRequested.connect(self.find_duplicates)
        dv.grid.activatedPath.connect(self.open_path)
        dv.grid.menuRequested.connect(self.result_menu)
        w.dropped.connect(self.handle_mime)
        w.closing.connect(self.shutdown)
        a = w.actions_
        a["open"].triggered.connect(self.open_dialog)
        a["paste"].triggered.connect(self.paste)
        a["quit"].triggered.connect(w.close)
        a["add_folder"].triggered.connect(panel.choose_folder)
        a["rescan"].triggered.connect(lib.rescan)
        a["pause"].triggered.connect(self.toggle_pause)
        a["duplicates"].triggered.connect(self.find_duplicates)
        a["choose_model"].triggered.connect(self.choose_model)
        a["retrain"].triggered.connect(lambda: self.open_retrain_wizard())
        a["models"].triggered.connect(self.open_model_manager)
        a["settings"].triggered.connect(self.edit_settings)
        a["find"].triggered.connect(self.focus_filter)
        a["escape"].triggered.connect(self.escape)
        a["log"].triggered.connect(self.open_log_folder)
        a["about"].triggered.connect(self.about)

    def _restore(self) -> None:
        s = self.ctx.settings
        if s.window_geometry:
            self.win.restoreGeometry(_unb64(s.window_geometry))
        if s.window_state:
            self.win.restoreState(_unb64(s.window_state))
        if s.splitter_state:
            self.win.splitter.restoreState(_unb64(s.splitter_state))
        self.win.results_view.set_state(s.tier_filter, s.max_distance, s.result_count, s.sort)
        dpr = self.win.devicePixelRatioF()
        self.ctx.thumbnails.set_edge(int(s.thumbnail_size * dpr))
        self.ctx.duplicate_thumbnails.set_edge(int(s.thumbnail_size * dpr))
        if s.last_query and os.path.isfile(s.last_query):
            # The last query comes back with its results (run once the library is open).
            self._show_preview(s.last_query, note="Last query")
            self._search(SearchRequest(path=s.last_query, k=self.win.results_view.count.value()))

    def save_window_state(self) -> None:
        """Remember geometry, splitter, filters (and the last query, set when searching)."""
        s = self.ctx.settings.replace(
            window_geometry=_b64(self.win.saveGeometry()),
            window_state=_b64(self.win.saveState()),
            splitter_state=_b64(self.win.splitter.saveState()))
        try:
            self.ctx.save_settings(s)
        except OSError as exc:
            self.ctx.notifier.error(exc)

    @Slot()
    def shutdown(self) -> None:
        """Window closing (or the application quitting): save state, stop work, close the
        library. Runs once; work in progress stops at its next check (between photos), so
        this takes well under a second."""
        if self._shut_down:
            return
        self._shut_down = True
        self.save_window_state()
        if self.wizard is not None:
            self.wizard.shutdown()
        self.ctx.close()

    # ----------------------------------------------------------------- library
    @Slot(object)
    def _on_opened(self, info: ModelInfo) -> None:
        self._opened = True
        if self._loading_model is not None:  # remembered once it loaded
            if info.encoder is not None:
                try:
                    self.ctx.save_settings(
                        self.ctx.settings.replace(model_path=self._loading_model))
                except OSError as exc:
                    self.ctx.notifier.error(exc)
            self._loading_model = None
        self.win.status.set_model(info.name, model_tooltip(info))
        self.win.library_panel.set_can_index(info.encoder is not None)
        if not self.ctx.library.ready:
            self.win.results_view.set_empty_text(
                "The library could not be opened; see the message below and the log "
                "(Help ▸ Open log folder).")
            return
        self._refresh_empty_state()
        if info.encoder is None:
            return
        # The first search costs as much as later ones: the model runs once in the background
        # now (after the window is shown and the library opened), never blocking start-up.
        self.ctx.search.warm_up()
        self.ctx.library.index()  # catch up with changes made while the app was closed
        if self._pending_search is not None:
            req, self._pending_search = self._pending_search, None
            self.ctx.search.search(req)

    @Slot(object)
    def _on_snapshot(self, snap: LibrarySnapshot) -> None:
        self._snapshot = snap
        self.win.library_panel.set_snapshot(snap)
        self.win.status.set_snapshot(snap)
        self._refresh_empty_state()

    @Slot(object)
    def _on_index_state(self, state: IndexState) -> None:
        self.win.library_panel.set_index_state(state)
        self.win.status.set_queue(state, self.ctx.library.queue_length)
        self._refresh_empty_state()

    def _library_stage(self) -> str:
        """``"empty"`` (no folder yet), ``"unindexed"`` (folders, no photo indexed yet),
        ``"ready"`` (photos to search) or ``"unknown"`` (no snapshot yet)."""
        snap = self._snapshot
        if snap is None:
            return "unknown"
        if not snap.roots:
            return "empty"
        return "ready" if snap.indexed else "unindexed"

    def _refresh_empty_state(self) -> None:
        """What the results area says before a search: the first step (a prominent
        Add-folder button) while the library has no folder, and the invitation to search
        only once it has indexed photos."""
        lib, rv = self.ctx.library, self.win.results_view
        if not self._opened or not lib.ready or rv.model.rowCount():
            return
        stage = self._library_stage()
        if not lib.has_model:
            rv.set_empty_text(
                "No model is installed, so photos cannot be indexed or searched yet.\n\n"
                "Add your photo folders now; choose a model file with "
                "Library ▸ Choose model file… and they will be indexed.",
                add_folder=stage == "empty")
            return
        if self._searched_stage is not None:
            if stage in (self._searched_stage, "unknown"):
                return  # the outcome of the last search stays while it is still true
            self._searched_stage = None  # ("your library is empty" no longer is)
        if stage == "empty":
            rv.set_empty_text(ResultsView.FIRST_STEP, add_folder=True)
        elif stage == "unindexed":
            snap = self._snapshot
            assert snap is not None
            # (a folder never scanned to the end: its first scan is queued or running, or
            # this snapshot was taken before it ended)
            first_scan = any(r.last_scan is None for r in snap.roots)
            if lib.state().busy or (first_scan and not snap.partial):
                rv.set_empty_text("Indexing the photos of your folders… You can search as "
                                  "soon as the first ones are indexed.")
            elif snap.partial:
                rv.set_empty_text("Indexing was stopped before any photo was indexed. Press "
                                  "Rescan to continue.")
            else:
                rv.set_empty_text("No photos were found in your folders yet. Add a folder "
                                  "of photos, or press Rescan after copying photos into one.",
                                  add_folder=True)
        elif stage == "ready":
            rv.set_empty_text(ResultsView.WELCOME)

    @Slot(int)
    def remove_folder(self, root_id: int) -> bool:
        """Forget a folder after confirming (its files are not touched); True if removed."""
        snap = self._snapshot or LibrarySnapshot()
        path = next((r.path for r in snap.roots if r.id == root_id), None)
        if path is None:
            return False
        box, remove = remove_folder_box(path, snap.root_files.get(root_id, {}).get("ok", 0),
                                        self.win)
        box.exec()
        if box.clickedButton() is not remove:
            return False
        self.ctx.library.remove_root(root_id)
        self.ctx.notifier.info(f"Removed {path} from the library; its photos were not "
                               "touched.")
        return True

    @Slot()
    def toggle_pause(self) -> None:
        """Pause or resume indexing."""
        lib = self.ctx.library
        (lib.resume_indexing if lib.state().paused else lib.pause_indexing)()

    @Slot()
    def find_duplicates(self) -> None:
        """Compute duplicate groups and show the duplicates tab."""
        self.win.tabs.setCurrentWidget(self.win.duplicates_view)
        if self.ctx.library.has_model:
            self.win.duplicates_view.set_busy(True)
        self.ctx.library.find_duplicates(self.win.duplicates_view.level())

    @Slot(object)
    def _on_duplicates(self, groups: list) -> None:
        self.win.duplicates_view.set_groups(groups)

    # ----------------------------------------------------------------- queries
    @Slot(QMimeData)
    def handle_mime(self, mime: QMimeData) -> DropContent:
        """A drop or paste: folders are added, an image file or image is searched."""
        content = read_mime(mime)
        for folder in content.folders:
            self.ctx.library.add_root(folder)
        if content.images:
            images = list(content.images)
            path = images[0] if len(images) == 1 else self.choose_image(images)
            if path:
                self.search_path(path)
        elif content.image is not None:
            self.search_image(content.image)
        elif content.empty:
            self.ctx.notifier.warning(
                "Nothing to search: drop or paste an image file, an image, or a folder"
                + (f" (not an image: {os.path.basename(content.ignored[0])})"
                   if content.ignored else "."))
        return content

    def _ask_which_image(self, images: list[str]) -> str | None:
        names = [os.path.basename(p) for p in images]
        name, ok = QInputDialog.getItem(self.win, "Several images",
                                        "Search with which image?", names, 0, False)
        return images[names.index(name)] if ok and name in names else None

    @Slot()
    def paste(self) -> None:
        """Search with the clipboard's image, image file or file path."""
        self.handle_mime(QGuiApplication.clipboard().mimeData())

    @Slot()
    def open_dialog(self) -> None:
        """Pick an image file to search with."""
        start = os.path.dirname(self.ctx.settings.last_query or "") or str(Path.home())
        path, _ = QFileDialog.getOpenFileName(self.win, "Search with an image", start,
                                              IMAGE_FILTER)
        if path:
            self.search_path(path)

    def search_path(self, path: str) -> int:
        """Search with an image file (inside or outside the library)."""
        path = os.path.normpath(os.path.abspath(path))
        self._show_preview(path)
        return self._search(SearchRequest(path=path, k=self.win.results_view.count.value()))

    def search_image(self, image: QImage) -> int:
        """Search with an in-memory image (pasted or dropped from a browser)."""
        self.win.query_panel.show_query(image, "Pasted image", (image.width(), image.height()),
                                        None)
        return self._search(SearchRequest(image=image.copy(),
                                          k=self.win.results_view.count.value()))

    def _search(self, req: SearchRequest) -> int:
        self._query = req
        self.win.tabs.setCurrentWidget(self.win.results_view)
        if not self._opened:
            self._pending_search = req
            self.win.status.showMessage("Search starts when the library is open…", 3000)
            return 0
        return self.ctx.search.search(req)

    def _show_preview(self, path: str, note: str = "") -> None:
        def shown(p: object) -> None:
            assert isinstance(p, QueryPreview)
            self.win.query_panel.show_query(p.image, os.path.basename(p.path), p.dims, p.size,
                                            p.path, note)

        def failed(err: WorkerError) -> None:
            # The search of the same file reports the failure; here the panel says why.
            logger.info("no preview for %s: %s", path, err.exception)
            exc = err.exception
            why = (image_problem(exc.reason) if isinstance(exc, ImageLoadError)
                   else "The file could not be opened")
            self.win.query_panel.show_query(None, os.path.basename(path), None, None, path,
                                            f"Cannot read this image. {why}.")

        w = Worker(f"Opening {os.path.basename(path)}", load_query_preview, path)
        self._workers.add(w)
        w.signals.result.connect(shown)
        w.signals.error.connect(failed)
        w.signals.finished.connect(lambda: self._workers.discard(w))
        self._pool.start(w)

    @Slot(object, int)
    def _on_search_started(self, req: SearchRequest, _gen: int) -> None:
        self.win.status.showMessage(f"Searching with {req.label}…")

    @Slot(object)
    def _on_search_finished(self, out: SearchOutcome) -> None:
        self.win.results_view.model.set_hits(out.hits, out.generation)
        self._searched_stage = self._library_stage()
        self.win.results_view.set_empty_text(
            "" if out.hits else self._no_hits_text(),
            add_folder=not out.hits and self._library_stage() == "empty")
        self.win.status.set_search_time(out.elapsed_ms, len(out.hits))
        self.win.status.clearMessage()
        if out.request.path and out.request.path != self.ctx.settings.last_query:
            try:  # remembered once it worked
                self.ctx.save_settings(self.ctx.settings.replace(last_query=out.request.path))
            except OSError as exc:
                self.ctx.notifier.error(exc)

    def _no_hits_text(self) -> str:
        """Why a search found nothing: an empty library says what to do about it."""
        snap = self._snapshot
        if snap is not None and not snap.roots:
            return ("Your library is empty, so there is nothing to compare with yet. Add a "
                    "folder of photos and search again once it is indexed.")
        if snap is not None and snap.indexed == 0:
            return "No photos are indexed yet. Search again when indexing has finished."
        return "No similar photos found."

    @Slot(object)
    def _on_search_failed(self, _err: object) -> None:
        self.win.results_view.model.clear()
        self.win.results_view.set_empty_text("The search failed; see the message below.")
        self.win.status.clearMessage()

    @Slot(int)
    def _on_count_changed(self, k: int) -> None:
        self._remember_filters()
        if self._query is not None:
            q = self._query
            self._search(SearchRequest(q.path, q.image, k))

    def _remember_filters(self) -> None:
        tiers, md, count, sort = self.win.results_view.state()
        self.ctx.settings = self.ctx.settings.replace(tier_filter=tiers, max_distance=md,
                                                      result_count=count, sort=sort)

    # ----------------------------------------------------------------- results
    @Slot(str, object)
    def result_menu(self, path: str, pos: QPoint) -> None:
        """Context menu of a result."""
        menu, acts = ResultsView.result_menu(self.win)
        acts["open"].triggered.connect(lambda: self.open_path(path))
        acts["reveal"].triggered.connect(lambda: self.reveal_path(path))
        acts["copy_path"].triggered.connect(lambda: file_actions.copy_path(path))
        acts["copy_image"].triggered.connect(lambda: self.copy_image(path))
        acts["search"].triggered.connect(lambda: self.search_path(path))
        menu.exec(pos)

    @Slot(str)
    def open_path(self, path: str) -> bool:
        """Open a photo with the desktop's default application; say so when none can."""
        if file_actions.open_file(path):
            return True
        self.ctx.notifier.warning(
            f"Could not open {os.path.basename(path)}: no application is set up to open "
            "it on this computer. Right-click ▸ Copy path, and open it from your file "
            "manager or image viewer.", f"The file is {path}")
        return False

    def reveal_path(self, path: str) -> bool:
        """Show a photo in the file manager; say so when no file manager can be started."""
        if file_actions.reveal_in_file_manager(path):
            return True
        self.ctx.notifier.warning(
            f"Could not show {os.path.basename(path)} in a file manager: none is set up on "
            f"this computer. It is in the folder {os.path.dirname(path)}.",
            f"The file is {path}")
        return False

    @Slot()
    def open_log_folder(self) -> bool:
        """Help ▸ Open log folder; when no file manager opens, say where the log is."""
        folder = self.ctx.paths.log_dir
        if QDesktopServices.openUrl(QUrl.fromLocalFile(str(folder))):
            return True
        self.ctx.notifier.warning(f"Could not open a file manager: none is set up on this "
                                  f"computer. The log file is {self.ctx.paths.log_file}")
        return False

    def copy_image(self, path: str) -> None:
        """Decode the full image off the GUI thread, then put it on the clipboard."""
        w = Worker(f"Copying {os.path.basename(path)}",
                   lambda: pil_to_qimage(open_image(path).image))
        self._workers.add(w)
        w.signals.result.connect(file_actions.copy_image)
        w.signals.error.connect(self.ctx.notifier.error)
        w.signals.finished.connect(lambda: self._workers.discard(w))
        self._pool.start(w)

    @Slot()
    def focus_filter(self) -> None:
        """Ctrl+F: filter the results by name."""
        self.win.tabs.setCurrentWidget(self.win.results_view)
        self.win.results_view.name_filter.setFocus()
        self.win.results_view.name_filter.selectAll()

    @Slot()
    def escape(self) -> None:
        """Esc: cancel a running search, clear the name filter, focus the grid."""
        self.ctx.search.cancel()
        self.win.status.clearMessage()
        rv = self.win.results_view
        rv.name_filter.clear()
        rv.grid.setFocus()

    # ----------------------------------------------------------------- notifications
    @Slot(object)
    def _on_notification(self, n: Notification) -> None:
        self.win.notifications.post(n)

    @Slot(str, str)
    def show_crash(self, summary: str, tb: str) -> None:
        """Non-modal crash dialog (one at a time)."""
        if self._crash is not None and self._crash.isVisible():
            self._crash.note_another()  # the traceback is in the log only
            return
        self._crash = CrashDialog(summary, tb, str(self.ctx.paths.log_file), self.win)
        self._crash.show()

    # ----------------------------------------------------------------- settings
    @Slot()
    def edit_settings(self) -> None:
        """Settings dialog; thumbnail size and threads apply at once."""
        dlg = SettingsDialog(self.ctx.settings, self.win)
        if not dlg.exec():
            return
        self.apply_settings(dlg.result_settings())

    def apply_settings(self, s: AppSettings) -> None:
        """Save and apply new settings."""
        from cukd_app.theme import apply_theme

        old = self.ctx.settings
        self.ctx.save_settings(s)
        dpr = self.win.devicePixelRatioF()
        for loader in (self.ctx.thumbnails, self.ctx.duplicate_thumbnails):
            loader.set_edge(int(s.thumbnail_size * dpr))
        self.ctx.thumbnails.set_threads(s.worker_threads)
        self.win.results_view.grid.set_edge(s.thumbnail_size)
        self.win.duplicates_view.grid.set_edge(s.thumbnail_size)
        self.win.results_view.model.set_hits(self.win.results_view.model.hits,
                                             self.win.results_view.model.generation)
        if s.theme != old.theme:
            from PySide6.QtWidgets import QApplication

            app = QApplication.instance()
            if isinstance(app, QApplication):
                apply_theme(app, s.theme)
        if (s.exclusions, s.watch_mode) != (old.exclusions, old.watch_mode):
            self.ctx.notifier.info("Exclusions and watching mode apply from the next start.")

    @Slot()
    def choose_model(self) -> None:
        """Pick a model file and switch to it (re-encoding in the background)."""
        path, _ = QFileDialog.getOpenFileName(self.win, "Choose a model file", "",
                                              "Model files (*.pt);;All files (*)")
        if path:
            self.use_model_file(path)

    def use_model_file(self, path: str | os.PathLike[str]) -> None:
        """Switch to a model file: loaded at once when no model is active, otherwise the
        library re-encodes in the background and swaps when done (then it is remembered)."""
        path = str(path)
        lib = self.ctx.library

        def factory() -> ModelInfo:
            return resolve_encoder(path, self.models.display_name)

        name = self.models.display_name(path)
        if not lib.has_model:
            if lib.use_model(factory):
                self._loading_model = path  # remembered once it loaded (_on_opened)
                self.ctx.notifier.info(f"Loading model {name}…")
            return
        if self.switch_model(factory, name):
            self._switching_to = path

    def switch_model(self, factory: Callable[[], ModelInfo], name: str) -> bool:
        """Re-encode the library for another model in the background, with a progress bar
        and a count in the status bar ("Re-encoding 120 of 1,000 photos for model X") and
        a Stop button; when it ends the bar goes and the status bar and a notification say
        so. ``name``: the model's display name. False if a switch is already running."""
        if not self.ctx.library.change_model(factory):
            return False
        self._switch_name = name
        self.win.status.model_switch.start(name)
        return True

    @Slot()
    def stop_model_switch(self) -> None:
        """The progress bar's Stop: the current model stays."""
        self.win.status.model_switch.stopping()
        self.ctx.library.cancel_model_change()

    def active_model_path(self) -> Path | None:
        """The model file in use (``None``: none, or a built-in test encoder)."""
        enc = self.ctx.library.model.encoder
        in_use = getattr(enc, "path", None)
        if isinstance(in_use, Path) and in_use.is_file():
            return in_use
        chosen = self.ctx.settings.model_path
        if chosen:
            return Path(chosen) if os.path.isfile(chosen) else None
        d = default_model_path()
        return d if d.is_file() else None

    @Slot(object)
    def _on_model_changed(self, info: ModelInfo) -> None:
        if self._switching_to is not None:
            try:
                self.ctx.save_settings(self.ctx.settings.replace(model_path=self._switching_to))
            except OSError as exc:
                self.ctx.notifier.error(exc)
        self.win.status.set_model(info.name, model_tooltip(info))
        if self.model_manager is not None:
            self.model_manager.refresh()

    @Slot(bool)
    def _on_model_change_ended(self, swapped: bool) -> None:
        self._switching_to = None
        bar = self.win.status.model_switch
        bar.hide()
        if swapped:
            done = bar.bar.value() if bar.bar.maximum() > 1 else 0
            self.win.status.showMessage(
                f"Switched to model {self.ctx.library.model.name}"
                + (f": {done:,} photos re-encoded." if done else "."), 15000)
        else:
            self.win.status.showMessage(
                f"Not switched to model {self._switch_name}; still using "
                f"{self.ctx.library.model.name}.", 15000)

    @Slot(object, str)
    def _on_model_renamed(self, path: object, name: str) -> None:
        """A model was renamed in the manager: the status bar follows if it is in use."""
        active = self.active_model_path()
        if active is not None and os.path.realpath(active) == os.path.realpath(str(path)):
            self.ctx.library.rename_model(name)
            self.win.status.set_model(name, model_tooltip(self.ctx.library.model))

    def open_retrain_wizard(self, **options: object) -> RetrainWizard:
        """Show the retrain wizard (one at a time); ``options`` override
        :class:`WizardServices` fields (tests, scripts)."""
        if self.wizard is not None and (self.wizard.isVisible() or self.wizard.run.running):
            self.wizard.show()
            self.wizard.raise_()
            return self.wizard
        if self.wizard is not None:
            self.wizard.deleteLater()
        services = WizardServices(
            library=self.ctx.library, notifier=self.ctx.notifier, store=self.models,
            base_model=self.active_model_path(), work_root=self.ctx.paths.cache_dir / "retrain",
            adopt=self.use_model_file, active_model=self.active_model_path())
        for k, v in options.items():
            setattr(services, k, v)
        self.wizard = RetrainWizard(services, self.win)
        self.wizard.modelSaved.connect(lambda _p: self.model_manager is not None
                                       and self.model_manager.refresh())
        self.wizard.show()
        return self.wizard

    def open_model_manager(self) -> ModelManagerDialog:
        """Show the model manager (non-modal)."""
        if self.model_manager is None:
            self.model_manager = ModelManagerDialog(self.models, self.ctx.notifier,
                                                    self.active_model_path, self.win)
            self.model_manager.useRequested.connect(self.use_model_file)
            self.model_manager.renamed.connect(self._on_model_renamed)
        else:
            self.model_manager.refresh()
        self.model_manager.show()
        self.model_manager.raise_()
        return self.model_manager

    @Slot()
    def about(self) -> None:
        """About box."""
        from cukd_app import __version__

        QMessageBox.about(self.win, "About",
                          f"<b>CUKD Image Search</b> {__version__}<br>Finds similar photos in "
                          "your own folders, offline. Your photos are never modified and "
                          "nothing is sent over the network.")

    @property
    def parent_widget(self) -> QWidget:
        """The window."""
        return self.win
