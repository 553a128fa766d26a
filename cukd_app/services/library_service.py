"""The library as the app sees it: one engine instance, one writer queue, indexing state.

All writes (open, add/remove folder, scans, close) run one at a time on a single-thread pool:
the *writer queue*. Reads (status snapshots, duplicates) run on a separate pool and never
wait for a scan (the engine's searches and counts are safe while a scan writes).

Pause blocks the running scan inside its ``should_stop`` callback (between files and batches),
so resuming continues exactly where it stopped; cancel stops it (committed batches stay and
the next scan resumes from there).
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from PySide6.QtCore import QObject, QThreadPool, QTimer, Signal, Slot

from core.errors import image_problem, user_message
from core.library import (
    Catalog,
    DuplicateGroup,
    Library,
    LibraryConfig,
    LibraryStatus,
    ModelChange,
    RootInfo,
    ScanConfig,
    ScanProgress,
    ScanResult,
    WatchConfig,
    default_library_dir,
)
from cukd_app.notifications import Notifier
from cukd_app.services.model_loader import EncoderFactory, ModelInfo
from cukd_app.settings import AppSettings
from cukd_app.workers import Worker, WorkerError

__all__ = ["IndexState", "LibraryService", "LibrarySnapshot", "RootError"]

logger = logging.getLogger(__name__)

#: The engine's catalog file name (core.library.library.CATALOG_FILE), for model-less mode.
_CATALOG_FILE = "catalog.sqlite3"
#: Progress signals are emitted at most this often.
_PROGRESS_INTERVAL_S = 0.1


@dataclass(frozen=True)
class RootError:
    """A file of a library folder that could not be indexed, and why."""

    path: str
    reason: str


@dataclass(frozen=True)
class LibrarySnapshot:
    """What the library panel and status bar show (computed off the GUI thread)."""

    roots: tuple[RootInfo, ...] = ()
    errors: dict[int, tuple[RootError, ...]] = field(default_factory=dict)
    #: ``{root id: {file status: count}}`` ("ok" = indexed, "error", "pending").
    root_files: dict[int, dict[str, int]] = field(default_factory=dict)
    #: Folders whose last scan was stopped: ``{root id: photos found on disk}``.
    partial: dict[int, int] = field(default_factory=dict)
    files: int = 0
    indexed: int = 0
    pending: int = 0
    error_count: int = 0
    watching: bool = False
    model_name: str = ""
    has_model: bool = False


@dataclass(frozen=True)
class IndexState:
    """Indexing activity: the folder being scanned, queued folders, pause and progress."""

    running: int | None = None
    queued: tuple[int, ...] = ()
    paused: bool = False
    progress: ScanProgress | None = None

    @property
    def busy(self) -> bool:
        """Whether a scan runs or waits."""
        return self.running is not None or bool(self.queued)


class LibraryService(QObject):
    """Owns the :class:`core.library.Library` and all writes to it.

    Args:
        settings: current settings (exclusions, watch mode).
        encoder_factory: returns the model to use (called on the writer thread).
        notifier: the error path.
        library_dir: library folder; ``None`` → ``settings.library_dir`` or the engine default.
        watch: start watching folders after the first scans (off in tests).

    Signals:
        opened(ModelInfo): the library is ready (``encoder`` None: no model, folders only).
        snapshot(LibrarySnapshot): fresh counts, folders and per-folder errors.
        indexState(IndexState): indexing started/progressed/paused/stopped.
        scanFinished(int, ScanResult): one folder's scan ended (root id).
        duplicatesReady(list): ``DuplicateGroup`` list.
        duplicatesProgress(int, int): look-alike pairs checked so far, and in all.
        idle(): the writer queue became empty.
        modelChangeProgress(ScanProgress): re-encoding with the next model progressed.
        modelChanged(ModelInfo): the new model is active (re-encoded and swapped).
        modelChangeEnded(bool): a model change ended (True: swapped; False: cancelled or
            failed — the previous model stays active).
    """

    opened = Signal(object)
    snapshot = Signal(object)
    indexState = Signal(object)
    scanFinished = Signal(int, object)
    duplicatesReady = Signal(object)
    duplicatesProgress = Signal(int, int)
    idle = Signal()
    modelChangeProgress = Signal(object)
    modelChanged = Signal(object)
    modelChangeEnded = Signal(bool)
    # Cross-thread notifications from the writer/watcher threads (queued to the GUI thread).
    _watchResult = Signal(object)
    _scanStarted = Signal(int)
    _scanProgress = Signal(int, object)

    def __init__(
        self, settings: AppSettings, encoder_factory: EncoderFactory, notifier: Notifier, *,
        library_dir: str | os.PathLike[str] | None = None, watch: bool = True,
        parent: QObject | None = None,
    ) -> None:
        super().__init__(parent)
        self.settings = settings
        self._factory = encoder_factory
        self.notifier = notifier
        d = library_dir if library_dir is not None else settings.library_dir
        self.directory = Path(d) if d is not None else default_library_dir()
        self._watch = watch
        self.library: Library | None = None
        self._catalog: Catalog | None = None  # model-less mode only
        self.model = ModelInfo(None, "loading…")
        self._writer = QThreadPool(self)
        self._writer.setMaxThreadCount(1)
        self._reader = QThreadPool(self)
        self._reader.setMaxThreadCount(1)
        self._changer = QThreadPool(self)  # model changes (they interleave with scans)
        self._changer.setMaxThreadCount(1)
        self._finder = QThreadPool(self)  # duplicates: seconds on a large library
        self._finder.setMaxThreadCount(1)
        self._dup_worker: Worker | None = None
        self._change_worker: Worker | None = None
        self._pending_writes = 0
        self._workers: set[Worker] = set()
        # Indexing state (GUI thread) and the flags scans poll (any thread).
        self._queued: list[int] = []
        self._running: int | None = None
        self._progress: ScanProgress | None = None
        self._pause = threading.Event()
        self._cancel_gen = 0
        self._closing = threading.Event()
        self._snap_busy = False
        self._snap_again = False
        self._snap_timer = QTimer(self)
        self._snap_timer.setInterval(1000)
        self._snap_timer.timeout.connect(self.refresh)
        self._watchResult.connect(self._on_watch_result)
        self._scanStarted.connect(self._on_scan_started)
        self._scanProgress.connect(self._on_scan_progress)
        self._watching_started = False
        self._partial: dict[int, int] = {}  # root id -> files found by a stopped scan
        self._rescanning: dict[int, ScanResult | None] = {}  # a Rescan's folders (results)

    # ------------------------------------------------------------------ plumbing
    @property
    def ready(self) -> bool:
        """Whether the library is open (with or without a model)."""
        return self.library is not None or self._catalog is not None

    @property
    def has_model(self) -> bool:
        """Whether indexing and search are possible."""
        return self.library is not None

    @property
    def queue_length(self) -> int:
        """Writes waiting or running (scans included)."""
        return self._pending_writes

    def _submit(self, pool: QThreadPool, worker: Worker,
                on_result: Callable[[Any], None] | None = None,
                on_error: Callable[[Any], None] | None = None) -> Worker:
        """Connect the worker's signals and start it; keeps it alive until finished."""
        self._workers.add(worker)
        if on_result is not None:
            worker.signals.result.connect(on_result)
        worker.signals.error.connect(on_error or self.notifier.error)
        worker.signals.finished.connect(lambda: self._workers.discard(worker))
        if pool is self._writer:
            self._pending_writes += 1
            worker.signals.finished.connect(self._write_done)
        pool.start(worker)
        return worker

    @Slot()
    def _write_done(self) -> None:
        self._pending_writes -= 1
        self.refresh()
        self._emit_state()
        if self._pending_writes == 0:
            self.idle.emit()

    def write(self, task: str, fn: Callable[..., Any], *args: Any,
              on_result: Callable[[Any], None] | None = None) -> Worker:
        """Queue a write on the writer thread."""
        return self._submit(self._writer, Worker(task, fn, *args), on_result)

    # ------------------------------------------------------------------ open / close
    def open(self) -> None:
        """Open the library (and load the model) on the writer thread."""
        self._submit(self._writer, Worker("Opening the library", self._open_blocking),
                     self._on_opened, self._open_failed)

    @Slot(object)
    def _open_failed(self, err: WorkerError) -> None:
        """The library folder could not be opened: say so; the window stays usable."""
        self.notifier.error(err)
        self.model = ModelInfo(None, "library not open",
                               f"The library in {self.directory} could not be opened.")
        self.opened.emit(self.model)

    def _config(self) -> LibraryConfig:
        s = self.settings
        return LibraryConfig(
            scan=ScanConfig(excludes=tuple(s.exclusions), decode_workers=2),
            watch=WatchConfig(force_polling=s.watch_mode == "polling"))

    @contextlib.contextmanager
    def _locked(self, action: str) -> Iterator[None]:
        """The library's cross-process writer lock, for catalog writes without a Library."""
        from core.library.errors import LOCK_FILE, LibraryBusyError
        from core.library.lockfile import FileLock, LockTimeout, describe_holder

        lock = FileLock(self.directory / LOCK_FILE)
        try:
            lock.acquire(action, timeout_s=30.0)
        except LockTimeout as exc:
            raise LibraryBusyError(
                f"The library is busy: {describe_holder(exc.holder)} is changing it. Try "
                "again when it has finished.", exc.holder) from exc
        try:
            yield
        finally:
            lock.release()

    def _open_blocking(self) -> ModelInfo:
        try:
            info = self._factory()
        except Exception as exc:
            # One sentence for the user (posted by _on_opened); the traceback to the log.
            logger.warning("the model could not be loaded", exc_info=True)
            why = user_message(exc) or ("The model file could not be loaded because of an "
                                        "unexpected problem (details in the log).")
            info = ModelInfo(None, "model failed to load",
                             f"{why} Folders can be added; indexing and search stay off "
                             "until a model file is chosen (Library ▸ Choose model file…).")
        if info.encoder is not None:
            self.library = Library.open(self.directory, info.encoder, self._config())
            self.library.on_watch_result = self._watchResult.emit
        else:
            self._catalog = Catalog(self.directory / _CATALOG_FILE)
        return info

    @Slot(object)
    def _on_opened(self, info: ModelInfo) -> None:
        self.model = info
        if info.message:
            (self.notifier.warning if info.encoder is None else self.notifier.info)(info.message)
        self.opened.emit(info)
        self.refresh()

    def use_model(self, factory: EncoderFactory) -> bool:
        """Load another model now if none is active (returns False otherwise: a library that
        has a model switches at the next start, when it is re-encoded)."""
        if self.has_model:
            return False
        self._factory = factory

        def reopen() -> ModelInfo:
            old = self._catalog
            info = self._open_blocking()  # replaces the model-less catalog or opens a Library
            if old is not None:
                if self._catalog is old:
                    self._catalog = None
                # A status read may still use the old catalog: close it when reads are done.
                self._reader.waitForDone()
                old.close()
            return info

        self.write("Loading the model", reopen, on_result=self._on_opened)
        return True

    def rename_model(self, name: str) -> None:
        """The active model got a new display name (renamed in the model manager)."""
        if name and name != self.model.name:
            self.model = dataclasses.replace(self.model, name=name)
            self.refresh()

    @property
    def changing_model(self) -> bool:
        """Whether a model change (re-encode) is running."""
        return self._change_worker is not None

    def change_model(self, factory: EncoderFactory) -> bool:
        """Switch to another model.

        Without an active model it loads at once (:meth:`use_model`). Otherwise the library
        re-encodes every file with the new model in the background
        (:meth:`core.library.Library.change_encoder`): searches and scans keep using the
        current model and index until the swap, then ``modelChanged`` is emitted. Returns
        False (and says why) when a change is already running.
        """
        if not self.has_model:
            return self.use_model(factory)
        if self._change_worker is not None:
            self.notifier.warning("The library is already switching to another model.")
            return False
        lib = self.library
        assert lib is not None
        last = [0.0]

        def work(on_progress: Callable[[Any], None],
                 should_stop: Callable[[], bool]) -> tuple[ModelInfo, ModelChange]:
            info = factory()
            if info.encoder is None:
                raise ValueError(info.message or "the model could not be loaded")

            latest: list[ScanProgress] = []

            def progress(p: ScanProgress) -> None:
                latest[:] = [p]
                now = time.monotonic()
                if now - last[0] >= _PROGRESS_INTERVAL_S:
                    last[0] = now
                    on_progress(p)

            def stop() -> bool:
                return should_stop() or self._closing.is_set()

            change = lib.change_encoder(info.encoder, on_progress=progress, should_stop=stop,
                                        background=False)
            if latest:  # the final count, which the throttle may have held back
                on_progress(latest[0])
            if change.error is not None:
                raise change.error
            return info, change

        w = Worker("Switching the model", work)
        self._change_worker = w
        w.signals.progress.connect(self.modelChangeProgress.emit)
        w.signals.error.connect(lambda _e: self.modelChangeEnded.emit(False))
        w.signals.finished.connect(self._change_done)
        self._submit(self._changer, w, self._on_model_changed)
        return True

    def cancel_model_change(self) -> None:
        """Stop a running model change (the current model stays; new codes are kept for a
        later change to the same model)."""
        if self._change_worker is not None:
            self._change_worker.cancel()

    @Slot()
    def _change_done(self) -> None:
        self._change_worker = None

    @Slot(object)
    def _on_model_changed(self, out: tuple[ModelInfo, ModelChange]) -> None:
        info, change = out
        if change.swapped:
            self.model = info
            self.notifier.info(f"Now using {info.name}: {change.encoded} photo(s) re-encoded.")
            self.modelChanged.emit(info)
            self.modelChangeEnded.emit(True)
        else:
            self.notifier.info(f"Switching to {info.name} was cancelled; still using "
                               f"{self.model.name}.")
            self.modelChangeEnded.emit(False)
        self.refresh()

    def close(self, timeout_ms: int = 30000) -> None:
        """Stop indexing and watching, wait for the writer, save and close (blocking)."""
        self._closing.set()
        self.cancel_indexing()
        self.cancel_model_change()
        self._snap_timer.stop()
        if self._dup_worker is not None:
            self._dup_worker.cancel()
        self._changer.waitForDone(timeout_ms)
        self._writer.waitForDone(timeout_ms)
        self._reader.waitForDone(timeout_ms)
        self._finder.waitForDone(timeout_ms)
        if self.library is not None:
            self.library.close()
            self.library = None
        if self._catalog is not None:
            self._catalog.close()
            self._catalog = None

    # ------------------------------------------------------------------ folders
    def add_root(self, path: str | os.PathLike[str], *, scan: bool = True) -> None:
        """Add a folder (never written to) and index it."""
        p = os.path.normpath(os.path.abspath(os.fspath(path)))
        mode = self.settings.watch_mode

        def add() -> tuple[RootInfo, bool]:
            cat = self.library.catalog if self.library is not None else self._catalog
            assert cat is not None
            known = cat.root_by_path(p)
            if known is not None:
                return known, False
            if self.library is not None:
                return self.library.add_root(p, watch_mode=mode), True
            with self._locked("adding a folder"), cat.transaction():
                return cat.add_root(Path(p), mode, ()), True

        def added(out: tuple[RootInfo, bool]) -> None:
            root, new = out
            if not new:
                self.notifier.info(f"{root.path} is already in the library"
                                   + (": Rescan looks for new or changed photos in it."
                                      if self.has_model else "."))
                return
            self.notifier.info(f"Added folder {root.path}")
            if scan and self.has_model:
                self.index([root.id])

        self.write("Adding a folder", add, on_result=added)

    def remove_root(self, root_id: int) -> None:
        """Forget a folder and its index entries (nothing on disk is touched)."""
        if self._running == root_id:
            self.cancel_indexing()
        elif root_id in self._queued:
            self._queued.remove(root_id)
            self._emit_state()

        def remove() -> None:
            if self.library is not None:
                self.library.remove_root(root_id)
            elif self._catalog is not None:
                with self._locked("removing a folder"), self._catalog.transaction():
                    self._catalog.remove_root(root_id)

        self.write("Removing a folder", remove)

    # ------------------------------------------------------------------ indexing
    def index(self, root_ids: Sequence[int] | None = None) -> None:
        """Queue incremental scans (one per folder; all folders if ``None``)."""
        if not self.has_model:
            self.notifier.warning("Indexing needs a model; none is installed.")
            return
        ids = list(root_ids) if root_ids is not None else [r.id for r in self._roots()]
        for rid in ids:
            if rid in self._queued or rid == self._running:
                continue
            self._queued.append(rid)
            gen = self._cancel_gen
            self.write("Indexing", self._scan_blocking, rid, gen,
                       on_result=self._on_scanned)
        self._emit_state()
        self._snap_timer.start()

    def rescan_paths(self, paths: Sequence[str]) -> None:
        """Bring the catalog up to date with files the user just moved or sent to the trash
        (old and new paths; paths outside the library folders are ignored). A move within
        the library keeps the photo's codes."""
        lib = self.library
        if lib is None or not paths:
            return
        paths = list(paths)
        self.write("Updating the library", lambda: lib.scan_paths(paths))

    def _roots(self) -> list[RootInfo]:
        if self.library is not None:
            return self.library.roots()
        return self._catalog.roots() if self._catalog is not None else []

    def _scan_blocking(self, root_id: int, gen: int) -> tuple[int, ScanResult | None]:
        """Writer thread: scan one folder with throttled progress and pause/cancel."""
        lib = self.library

        def stopped() -> bool:
            return gen != self._cancel_gen or self._closing.is_set()

        if lib is None or stopped():
            return root_id, None
        self._startedScan(root_id)
        last = [0.0]

        def should_stop() -> bool:
            while self._pause.is_set() and not stopped():
                time.sleep(0.05)
            return stopped()

        def on_progress(p: ScanProgress) -> None:
            now = time.monotonic()
            if now - last[0] >= _PROGRESS_INTERVAL_S:
                last[0] = now
                self._progressed(root_id, p)

        result = lib.scan([root_id], on_progress=on_progress, should_stop=should_stop)
        if self._watch and not self._closing.is_set() and not self._watching_started:
            self._watching_started = True
            lib.start_watching()
        return root_id, result

    def _startedScan(self, root_id: int) -> None:
        self._scanStarted.emit(root_id)

    def _progressed(self, root_id: int, p: ScanProgress) -> None:
        self._scanProgress.emit(root_id, p)

    @Slot(int)
    def _on_scan_started(self, root_id: int) -> None:
        if root_id in self._queued:
            self._queued.remove(root_id)
        self._running, self._progress = root_id, None
        self._emit_state()

    @Slot(int, object)
    def _on_scan_progress(self, root_id: int, p: ScanProgress) -> None:
        if root_id == self._running:
            self._progress = p
            self._emit_state()

    @Slot(object)
    def _on_scanned(self, out: tuple[int, ScanResult | None]) -> None:
        root_id, result = out
        if root_id in self._queued:
            self._queued.remove(root_id)
        if self._running == root_id:
            self._running, self._progress = None, None
        if result is not None:
            if result.cancelled and result.seen:
                self._partial[root_id] = result.seen
            elif not result.cancelled and not result.offline_roots:
                self._partial.pop(root_id, None)
            if result.errors:
                self._warn_failed(root_id, result)
            self.scanFinished.emit(root_id, result)
        self._rescan_done(root_id, result)
        if not self._queued and self._running is None:
            self._pause.clear()
            self._snap_timer.stop()
        self._emit_state()
        # The periodic snapshot may predate the scan's final commit (the folder's "scanned"
        # stamp): without a fresh one the folder would keep showing "Not indexed yet".
        self.refresh()

    def _warn_failed(self, root_id: int, result: ScanResult) -> None:
        """Files of a folder could not be indexed: say so; "Details…" lists them in words."""
        folder = next((r.path for r in self._roots() if r.id == root_id), "")
        errs = result.errors
        lines = [f"{e.path}: {image_problem(e.reason)}." for e in errs[:20]]
        if len(errs) > 20:
            lines.append(f"… and {len(errs) - 20} more (the folder list shows them all).")
        self.notifier.warning(
            f"{len(errs)} file(s) in {os.path.basename(folder) or folder or 'a folder'} "
            "could not be indexed; they are skipped.",
            "\n".join(lines) + "\n\nThese files are left as they are; the other photos of "
            "the folder are indexed. Repair or replace them, then press Rescan.")

    def pause_indexing(self) -> None:
        """Pause the running scan at its next check (resume continues where it stopped)."""
        if self.state().busy:
            self._pause.set()
            self._emit_state()

    def resume_indexing(self) -> None:
        """Resume a paused scan."""
        self._pause.clear()
        self._emit_state()

    def cancel_indexing(self) -> None:
        """Stop the running scan and drop queued ones (committed work is kept)."""
        self._cancel_gen += 1
        self._queued.clear()
        self._pause.clear()
        self._emit_state()

    def rescan(self) -> None:
        """Rescan every folder; when all are done, say what changed ("No changes in …")."""
        if not self.has_model:
            self.index(None)  # says that indexing needs a model
            return
        ids = [r.id for r in self._roots()]
        if not ids:
            self.notifier.info("There is no folder to rescan yet: add a folder of photos.")
            return
        self._rescanning = {rid: None for rid in ids}  # (a stuck earlier one is dropped)
        self.index(ids)

    def _rescan_done(self, root_id: int, result: ScanResult | None) -> None:
        """One folder of a Rescan ended; after the last, one sentence about all of them."""
        if root_id not in self._rescanning:
            return
        self._rescanning[root_id] = result or ScanResult(cancelled=True)
        if any(r is None for r in self._rescanning.values()):
            return
        results, self._rescanning = self._rescanning, {}
        if any(r.cancelled for r in results.values()):
            return  # stopped: the folder list says how far each got
        paths = {r.id: r.path for r in self._roots()}
        names = [paths.get(rid, "a folder") for rid in results]
        where = names[0] if len(names) == 1 else (
            ", ".join(names[:-1]) + f" and {names[-1]}" if len(names) <= 3
            else f"the {len(names)} folders")
        total = ScanResult(**{k: sum(getattr(r, k) for r in results.values()) for k in
                              ("added", "updated", "moved", "deleted")})
        offline = [paths.get(rid, "?") for rid, r in results.items() if r.offline_roots]
        parts = [f"{n} {what}" for n, what in ((total.added, "new"),
                                                (total.updated, "changed"),
                                                (total.moved, "moved"),
                                                (total.deleted, "removed")) if n]
        failed = sum(len(r.errors) for r in results.values())
        if failed:
            parts.append(f"{failed} could not be indexed")
        text = (f"Rescanned {where}: " + ", ".join(parts) + " photo(s)." if parts
                else f"No changes in {where}.")
        if offline:
            text += (f" Not available (drive not connected?): {', '.join(offline)}.")
        self.notifier.info(text)

    def state(self) -> IndexState:
        """Current indexing state."""
        return IndexState(self._running, tuple(self._queued), self._pause.is_set(),
                          self._progress)

    def _emit_state(self) -> None:
        self.indexState.emit(self.state())

    @Slot(object)
    def _on_watch_result(self, result: ScanResult) -> None:
        if result.errors:
            self.notifier.warning(f"{len(result.errors)} changed file(s) could not be indexed")
        self.refresh()

    # ------------------------------------------------------------------ reads
    @Slot()
    def refresh(self) -> None:
        """Recompute the snapshot off the GUI thread (coalesced)."""
        if not self.ready or self._closing.is_set():
            return
        if self._snap_busy:
            self._snap_again = True
            return
        self._snap_busy = True
        w = Worker("Reading the library status", self._snapshot_blocking)
        w.signals.finished.connect(self._snap_done)
        self._submit(self._reader, w, self.snapshot.emit)

    @Slot()
    def _snap_done(self) -> None:
        self._snap_busy = False
        if self._snap_again:
            self._snap_again = False
            self.refresh()

    def _snapshot_blocking(self) -> LibrarySnapshot:
        name, has = self.model.name, self.model.encoder is not None
        if self.library is not None:
            st: LibraryStatus = self.library.status()
            errors = self._errors(self.library.catalog)
            return LibrarySnapshot(st.roots, errors, self.library.catalog.count_files_by_root(),
                                   dict(self._partial), st.files, st.indexed, st.pending,
                                   st.errors, st.watching, name, has)
        cat = self._catalog
        if cat is None:
            return LibrarySnapshot(model_name=name)
        return LibrarySnapshot(tuple(cat.roots()), self._errors(cat),
                               cat.count_files_by_root(), dict(self._partial),
                               cat.count_files(), 0, cat.count_files("pending"),
                               cat.count_files("error"), False, name, has)

    @staticmethod
    def _errors(cat: Catalog, limit: int = 2000) -> dict[int, tuple[RootError, ...]]:
        out: dict[int, list[RootError]] = {}
        for rec in cat.errors(limit):
            out.setdefault(rec.root_id, []).append(RootError(rec.path, rec.error or "error"))
        return {k: tuple(v) for k, v in out.items()}

    def find_duplicates(self, level: str = "normal") -> None:
        """Compute duplicate groups off the GUI thread (→ ``duplicatesReady``); ``level``:
        one of ``core.library.search.DUPLICATE_LEVELS``."""
        if self.library is None:
            self.notifier.warning("Finding duplicates needs a model; none is installed.")
            return
        if self._dup_worker is not None:  # a newer request (another level) wins
            self._dup_worker.cancel()
        worker = Worker("Finding duplicates", self.library.duplicates, level)
        self._dup_worker = worker

        def done(groups: list[DuplicateGroup]) -> None:
            if not worker.cancelled:
                self.duplicatesReady.emit(groups)

        def progress(p: tuple[int, int]) -> None:
            if not worker.cancelled:
                self.duplicatesProgress.emit(*p)

        worker.signals.progress.connect(progress)

        self._submit(self._finder, worker, done)

    def duplicates_blocking(self, level: str = "normal") -> list[DuplicateGroup]:
        """Duplicate groups (caller's thread; for scripts and tests)."""
        return self.library.duplicates(level) if self.library is not None else []
