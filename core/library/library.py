"""The photo library facade: catalog + indexes + scanner + watcher + search.

Typical use::

    lib = Library.open(None, encoder)          # per-user data dir; or a folder for tests
    lib.add_root("~/Pictures")
    lib.scan(on_progress=..., should_stop=...)
    hits = lib.search("query.jpg", k=20)
    lib.start_watching()
    ...
    lib.close()

All catalog/index writes go through one writer lock (scans, watcher batches, root changes,
the model swap, saves); searches read a consistent ``(encoder, code index)`` snapshot and are
safe while writes happen. The writer lock spans processes: a lock file in the library folder
(:class:`~.lockfile.FileLock`) lets one process write at a time, so a ``cukd library scan``
and a running ``cukd library watch`` (or the app) take turns; a writer that cannot get it
within ``LibraryConfig.lock_timeout_s`` raises :class:`LibraryBusyError` naming the holder.
Reading (search, status) never takes it.

The faiss indexes and the embedding store are caches of the catalog (the source of truth),
saved on every scan and at close. One is trusted only when it provably matches the catalog:
its generation stamp equals the catalog's, its ids equal the catalog's
(:class:`~.index.IdDigest`) and, for the store, its size and a sample of rows agree. A
process that holds the writer lock first catches up with whatever another process committed
(:meth:`Library.refresh` does the same for readers), so no process stamps a cache it has not
seen. Problems the user can act on (a damaged catalog, a busy library, a full disk) raise
:class:`LibraryError` with one sentence saying what to do; :meth:`Library.repair` checks and
rebuilds what it can.
"""

from __future__ import annotations

import hashlib
import logging
import math
import os
import re
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path

from PIL import Image

from .catalog import Catalog, RootInfo, default_library_dir
from .embeddings import EmbeddingStore, open_store
from .encoder import ImageEncoder
from .errors import (
    CATALOG_FILE,
    LOCK_FILE,
    LibraryBusyError,
    LibraryError,
    catalog_error,
    disk_error,
    is_db_problem,
)
from .index import BinaryIndex, id_digest, load_or_rebuild, move_aside, remove_stale_temps
from .lockfile import FileLock, LockTimeout, describe_holder
from .repair import RepairReport, repair_library
from .scanner import BatchChange, ScanConfig, Scanner, ScanProgress, ScanResult
from .search import (
    DuplicateGroup,
    SearchConfig,
    SearchHit,
    TierThresholds,
    duplicate_level,
    find_duplicates,
    phash_codes,
    prepare_query,
    run_search,
)
from .verify import CROP_CHECK_FLOOR, CropVerifier
from .watcher import LibraryWatcher, WatchConfig

__all__ = [
    "Library",
    "LibraryBusyError",
    "LibraryConfig",
    "LibraryError",
    "LibraryStatus",
    "ModelChange",
    "RepairReport",
]

logger = logging.getLogger(__name__)

#: Catalog meta key prefix of a model's calibrated near-duplicate cosine.
_NEAR_DUP_KEY = "near_duplicate_cosine:"
PHASH_INDEX_FILE = "phash.cukdidx"


@dataclass(frozen=True)
class LibraryConfig:
    """Settings of a library (scan, search and watch)."""

    scan: ScanConfig = field(default_factory=ScanConfig)
    search: SearchConfig = field(default_factory=SearchConfig)
    watch: WatchConfig = field(default_factory=WatchConfig)
    #: Watcher batches save the index files at most this often (full scans always save).
    save_interval_s: float = 10.0
    #: How long a write (scan, root change, save) waits for another process's write to end
    #: before it raises :class:`LibraryBusyError` (watcher batches wait as long as it takes).
    lock_timeout_s: float = 60.0


class _Stopped(LibraryError):
    """The library closed (or the caller stopped) while a write waited for the lock."""


@dataclass(frozen=True)
class LibraryStatus:
    """A snapshot for status bars and ``cukd library status``."""

    directory: str
    model_id: str
    files: int
    ok: int
    errors: int
    pending: int
    indexed: int
    roots: tuple[RootInfo, ...]
    offline_roots: tuple[str, ...]
    watching: bool
    reencoding_to: str | None


@dataclass
class ModelChange:
    """Handle of a background re-encode (see :meth:`Library.change_encoder`)."""

    model_id: str
    thread: threading.Thread | None = None
    done: threading.Event = field(default_factory=threading.Event)
    swapped: bool = False
    cancelled: bool = False
    error: BaseException | None = None
    encoded: int = 0

    def wait(self, timeout: float | None = None) -> bool:
        """Wait for the re-encode to end; True if it ended."""
        return self.done.wait(timeout)


def _index_file(model_id: str) -> str:
    slug = re.sub(r"[^A-Za-z0-9._-]+", "_", model_id)[:48]
    return f"codes-{slug}-{hashlib.blake2b(model_id.encode(), digest_size=4).hexdigest()}.cukdidx"


def _store_file(model_id: str) -> str:
    return _index_file(model_id)[:-len(".cukdidx")] + ".cukdemb"


class Library:
    """A photo library: one folder holding the catalog and its index files.

    Use :meth:`open`; the constructor takes the same arguments.

    Args:
        directory: library folder (created); ``None`` → the per-user default.
        encoder: the active model.
        config: settings.

    Raises:
        LibraryError: the catalog is damaged or cannot be opened, the folder is not
            writable, or another process holds the writer lock for longer than
            ``config.lock_timeout_s`` while this open needs to write.
    """

    def __init__(
        self, directory: str | os.PathLike[str] | None, encoder: ImageEncoder,
        config: LibraryConfig = LibraryConfig(),
    ) -> None:
        self.directory = Path(directory) if directory is not None else default_library_dir()
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise disk_error(self.directory, exc, "create the library folder") from exc
        self.config = config
        self._write_lock = threading.RLock()
        self._write_depth = 0
        self._flock = FileLock(self.directory / LOCK_FILE)
        self._watcher: LibraryWatcher | None = None
        self._change: ModelChange | None = None
        self._pending_index: BinaryIndex | None = None
        self._pending_store: EmbeddingStore | None = None
        self._closing = threading.Event()
        self._last_save = 0.0
        self._saved_generation = -1
        #: Catalog generation the in-memory indexes match (all commits up to it mirrored).
        self._synced_gen = -1
        self._store_suspect = False  # reads found rows that differ from the catalog
        self._store_checked_gen = -2  # generation of the last failed store check
        self._dirty = False  # this process committed changes not saved to the cache files
        self._encoder = encoder
        #: Called (on the watcher thread) with the result of each watcher batch.
        self.on_watch_result: Callable[[ScanResult], None] | None = None
        self._rebuilt: list[str] = []
        self.catalog = self._open_catalog()
        try:
            with self._guard():
                self._setup(encoder)
        except BaseException:
            self.catalog.close()
            self._flock.close()
            raise
        self._scanner = self._make_scanner(encoder)
        #: Index files rebuilt from the catalog when opening (missing, corrupt or stale).
        self.rebuilt_indexes: tuple[str, ...] = tuple(self._rebuilt)

    @classmethod
    def open(
        cls, directory: str | os.PathLike[str] | None, encoder: ImageEncoder,
        config: LibraryConfig = LibraryConfig(),
    ) -> Library:
        """Open (or create) the library in ``directory`` with ``encoder`` as active model."""
        return cls(directory, encoder, config)

    def __enter__(self) -> Library:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ----------------------------------------------------------------- open
    def _open_catalog(self) -> Catalog:
        lock_path = self.directory / LOCK_FILE
        if lock_path.is_dir() and not lock_path.is_symlink():
            move_aside(lock_path)
        cat = self.directory / CATALOG_FILE
        try:
            return Catalog(cat)
        except sqlite3.Error as exc:
            if is_db_problem(exc):
                raise catalog_error(self.directory, exc) from exc
            raise
        except OSError as exc:
            raise disk_error(self.directory, exc, "open the library catalog") from exc

    def _setup(self, encoder: ImageEncoder) -> None:
        """Register the model (under the writer lock when that writes), then load caches."""
        mid = encoder.model_id
        calib = getattr(encoder, "near_duplicate_cosine", None)
        calib_key = f"{_NEAR_DUP_KEY}{mid}"
        if (self.catalog.active_model != mid
                or self.catalog.model_sizes(mid) != (encoder.n_bits, encoder.embed_dim)
                or (calib is not None and self.catalog.get_meta(calib_key)
                    != repr(float(calib)))):
            with self._writing("opening the library", sync=False):
                active = self.catalog.active_model
                if active is not None and active != mid:
                    logger.warning("library model changes from %s to %s on open: old codes "
                                   "dropped, files are re-encoded by the next scan",
                                   active, mid)
                    self.catalog.drop_model(active)
                    for name in (_index_file(active), _store_file(active)):
                        (self.directory / name).unlink(missing_ok=True)
                self.catalog.ensure_model(mid, encoder.n_bits, encoder.embed_dim)
                self._remember_calibration(encoder)
                if active != mid:
                    self.catalog.set_active_model(mid)
        owner = self._try_lock("loading the library")
        try:
            if owner:
                remove_stale_temps(self.directory)
            self._load_caches(encoder, locked=owner)
        finally:
            if owner:
                self._flock.release()

    def _load_caches(self, encoder: ImageEncoder, *, locked: bool) -> None:
        """Load the index files and the store, rebuilding what does not match the catalog
        (saved only when ``locked``: the caller holds the writer lock)."""
        mid = encoder.model_id
        with self.catalog.snapshot():
            gen = self.catalog.generation
            code_digest = self.catalog.code_digest(mid)

            def rebuild_codes(idx: BinaryIndex) -> None:
                for ids, codes in self.catalog.iter_codes(mid):
                    idx.add(ids, codes)

            def rebuild_phash(idx: BinaryIndex) -> None:
                ids, ph = self.catalog.all_phashes()
                if len(ids):
                    idx.add(ids, phash_codes(ph.tolist()))

            self._index, rebuilt_codes = load_or_rebuild(
                self.directory / _index_file(mid), model_id=mid, n_bits=encoder.n_bits,
                generation=gen, expected_count=code_digest.count,
                expected_digest=code_digest, rebuild=rebuild_codes, save=False)
            ph_digest = self.catalog.phash_digest()
            self.phash_index, rebuilt_ph = load_or_rebuild(
                self.directory / PHASH_INDEX_FILE, model_id="phash", n_bits=64,
                generation=gen, expected_count=ph_digest.count,
                expected_digest=ph_digest, rebuild=rebuild_phash, save=False)
            store_args = dict(
                model_id=mid, dim=encoder.embed_dim, generation=gen,
                rebuild=lambda: self.catalog.iter_embeddings(mid), digest=code_digest,
                sample=self.catalog.sample_embedding_blobs(mid), fallback=self._fallback(mid),
                on_damage=self._on_store_damage)
            store_path = self.directory / _store_file(mid)
            try:
                self._store, _ = open_store(store_path, may_rebuild=locked, **store_args)
                if locked and rebuilt_codes:
                    self._index.save(self.directory / _index_file(mid), gen)
                if locked and rebuilt_ph:
                    self.phash_index.save(self.directory / PHASH_INDEX_FILE, gen)
            except OSError as exc:  # a cache we cannot write: work from memory / catalog
                logger.warning("%s", disk_error(self.directory, exc, "save the library index"))
                locked = False
                if not hasattr(self, "_store"):
                    try:
                        self._store, _ = open_store(store_path, may_rebuild=False,
                                                    **store_args)
                    except OSError as exc2:
                        raise disk_error(self.directory, exc2,
                                          "open the embedding store") from exc2
        if rebuilt_codes:
            logger.info("rebuilt code index of %s (%d codes)", mid, self._index.ntotal)
            self._rebuilt.append(mid)
        if rebuilt_ph:
            self._rebuilt.append("phash")
        self._synced_gen = gen
        if locked or not (rebuilt_codes or rebuilt_ph):
            self._saved_generation = gen if self._store.verified else -1

    # ----------------------------------------------------------------- indexes
    @property
    def encoder(self) -> ImageEncoder:
        """The active encoder."""
        return self._encoder

    @property
    def index(self) -> BinaryIndex:
        """The active model's code index."""
        return self._index

    def _fallback(self, model_id: str) -> Callable[[Sequence[int]], dict[int, bytes]]:
        return lambda ids: self.catalog.fetch_embedding_blobs(ids, model_id)

    def _on_store_damage(self, n: int) -> None:
        """A read found ``n`` store rows that differ from the catalog. Only a store stamped
        with the catalog's generation claims to match it (a writer may be mid-batch)."""
        try:
            if self._store.header_generation() == self.catalog.generation:
                self._store_suspect = True
        except (OSError, ValueError, sqlite3.Error):
            self._store_suspect = True

    def _build_code_index(self, model_id: str, n_bits: int) -> BinaryIndex:
        idx = BinaryIndex(n_bits, model_id)
        for ids, codes in self.catalog.iter_codes(model_id):
            idx.add(ids, codes)
        return idx

    def _build_phash_index(self) -> BinaryIndex:
        idx = BinaryIndex(64, "phash")
        ids, ph = self.catalog.all_phashes()
        if len(ids):
            idx.add(ids, phash_codes(ph.tolist()))
        return idx

    def _reload_indexes(self, *, locked: bool) -> None:
        """Rebuild the in-memory indexes from one catalog state (another process wrote)."""
        with self.catalog.snapshot():
            gen = self.catalog.generation
            code = self._build_code_index(self._encoder.model_id, self._encoder.n_bits)
            ph = self._build_phash_index()
            pending = self._pending_index
            if pending is not None:
                pending = self._build_code_index(pending.model_id, pending.n_bits)
                if locked and self._pending_store is not None:
                    self._pending_store.rebuild(
                        self.catalog.iter_embeddings(pending.model_id))
        self._index, self.phash_index = code, ph
        if pending is not None:
            self._pending_index = pending
        self._synced_gen = gen

    def _check_store(self, *, locked: bool, force: bool = False) -> None:
        """Trust the store only if it provably matches the catalog; rebuild it when
        ``locked`` (the writer lock is ours), else leave it unused (searches read the
        catalog)."""
        mid = self._encoder.model_id
        with self.catalog.snapshot():
            gen = self.catalog.generation
            digest = self.catalog.code_digest(mid)
            if not force and not self._store_suspect:
                if not locked and gen == self._store_checked_gen:
                    return  # checked and failed at this generation already
                problems = self._store.problems(gen, digest,
                                                self.catalog.sample_embedding_blobs(mid))
                if not problems:
                    self._store.verified = True
                    return
            else:
                problems = [f"{self._store.damaged_rows} damaged rows read" if
                            self._store_suspect else "rebuild requested"]
            if not locked:
                self._store.verified = False
                self._store_checked_gen = gen
                logger.info("embedding store not usable yet (%s); searches read the catalog",
                            "; ".join(problems))
                return
            logger.warning("embedding store %s: %s; rebuilding from catalog",
                           self._store.path, "; ".join(problems))
            try:
                self._store.rebuild(self.catalog.iter_embeddings(mid))
                self._store.save(gen, digest)
            except OSError as exc:
                raise disk_error(self.directory, exc, "rebuild the embedding store") from exc
        self._store.verified = True
        self._store_suspect = False
        self._store_checked_gen = -2

    def _sync(self, *, locked: bool) -> bool:
        """Catch up with commits of other processes (caller holds ``_write_lock``).

        Returns:
            True if the in-memory indexes were rebuilt.

        Raises:
            LibraryError: another process switched the library to another model.
        """
        active = self.catalog.active_model
        if active is not None and active != self._encoder.model_id:
            raise LibraryError(
                f"Another program switched the library {self.directory} to the model "
                f"{active}; reopen the library (restart the app) to use it.")
        changed = self.catalog.generation != self._synced_gen
        if changed:
            logger.info("catalog changed by another process; reloading indexes")
            self._reload_indexes(locked=locked)
        if changed or self._store_suspect or not self._store.verified:
            self._check_store(locked=locked)
        return changed

    def _make_scanner(self, encoder: ImageEncoder) -> Scanner:
        return Scanner(self.catalog, encoder, self.config.scan, on_batch=self._apply)

    def _apply(self, change: BatchChange) -> None:
        """Mirror a committed batch into the in-memory indexes."""
        pending = self._pending_index
        live = [self._index] + ([pending] if pending is not None else [])
        stores = [self._store] + ([self._pending_store] if self._pending_store else [])
        for idx in live:
            idx.remove(change.removed_ids)
        for store in stores:
            try:
                store.clear(change.removed_ids)
            except OSError:
                store.verified = False
        if len(change.phash_ids):
            self.phash_index.add(change.phash_ids, phash_codes(change.phashes.tolist()))
        self.phash_index.remove(change.removed_ids)
        for idx in live:
            if idx.model_id == change.model_id:
                if len(change.ids):
                    idx.add(change.ids, change.codes)
            else:  # content changed: the other model's code is gone from the catalog
                idx.remove(change.replaced_ids)
        for store in stores:
            try:
                if store.model_id == change.model_id:
                    if len(change.ids) and len(change.embeddings):
                        store.put(change.ids, change.embeddings)
                else:
                    store.clear(change.replaced_ids)
            except OSError as exc:  # full disk: the catalog has the batch; rebuilt later
                logger.warning("embedding store %s not updated (%s); searches read the "
                               "catalog until it is rebuilt", store.path, exc)
                store.verified = False

    @contextmanager
    def _guard(self) -> Iterator[None]:
        """Turn a damaged or unusable catalog into a :class:`LibraryError`."""
        try:
            yield
        except sqlite3.Error as exc:
            if is_db_problem(exc):
                raise catalog_error(self.directory, exc) from exc
            raise

    @contextmanager
    def _writing(
        self, action: str, *, wait_s: float | None = None, sync: bool = True,
        should_stop: Callable[[], bool] | None = None,
    ) -> Iterator[None]:
        """Hold the writer lock of this process and of the library (the lock file).

        The outermost hold first catches up with other processes' commits; at its end the
        catalog generation is what the in-memory indexes mirror (every commit in between
        was ours and went through :meth:`_apply`).

        Args:
            action: what we do, shown to processes that wait for us.
            wait_s: longest wait for another process (default ``config.lock_timeout_s``;
                ``math.inf``: until the library closes or ``should_stop``).
            sync: catch up first (False only while opening, before the indexes exist).

        Raises:
            LibraryBusyError: another process kept the lock for the whole wait.
        """
        with self._write_lock:
            if self._write_depth:
                self._write_depth += 1
                try:
                    yield
                finally:
                    self._write_depth -= 1
                return
            timeout = self.config.lock_timeout_s if wait_s is None else wait_s

            def stop() -> bool:
                return self._closing.is_set() or bool(should_stop and should_stop())

            try:
                got = self._flock.acquire(action, timeout, should_stop=stop)
            except LockTimeout as exc:
                raise LibraryBusyError(
                    f"The library {self.directory} is busy: {describe_holder(exc.holder)} is "
                    f"changing it (waited {exc.waited_s:.0f} s). Try again when it has "
                    "finished, or stop it.", exc.holder) from None
            except OSError as exc:
                raise disk_error(self.directory, exc, "lock the library") from exc
            if not got:
                raise _Stopped(f"The library {self.directory} is closing.")
            self._write_depth = 1
            ok = False
            try:
                if sync:
                    self._sync(locked=True)
                start = self.catalog.generation
                yield
                ok = True
            finally:
                self._write_depth = 0
                try:
                    # After an error a commit may have missed its mirror: reload next time.
                    gen = self.catalog.generation
                    self._synced_gen = gen if ok else -1
                    if gen != self._saved_generation and (not ok or gen != start):
                        self._dirty = True
                        if ok and sync:  # (not while opening: no store yet)
                            self._stamp_store(gen)
                except sqlite3.Error:
                    self._synced_gen = -1
                self._flock.release()

    def _stamp_store(self, gen: int) -> None:
        """Before handing the lock on with unsaved changes, stamp the store (an fsync and a
        header write, not a rewrite): its rows mirror every commit we made, so the next
        writer need not rebuild it."""
        if not self._store.verified or self._store_suspect:
            return
        try:
            self._store.save(gen, id_digest(self._index.ids()))
        except (OSError, ValueError) as exc:
            logger.warning("embedding store %s not stamped: %s", self._store.path, exc)
            self._store.verified = False

    def _try_lock(self, action: str) -> bool:
        """Take the writer lock if it is free now, for optional work (False on a folder
        where no lock file can be made, e.g. read-only media: then only reads happen)."""
        try:
            return self._flock.try_acquire(action)
        except OSError as exc:
            logger.debug("no writer lock in %s: %s", self.directory, exc)
            return False

    def save(self, *, force: bool = True) -> None:
        """Save the indexes (atomically) stamped with the catalog generation they match.

        Args:
            force: if False, skip unless ``config.save_interval_s`` passed since the last save
                (a crash before the next save only costs a rebuild on open).

        Raises:
            LibraryError: the disk is full or the folder is not writable (the catalog is
                intact), or another process kept the writer lock too long.
        """
        with self._guard(), self._writing("saving the index"):
            gen = self.catalog.generation
            if gen == self._saved_generation and self._store.verified:
                return
            if not force and (time.monotonic() - self._last_save
                              < self.config.save_interval_s):
                return
            self._save_locked(check=force)

    def _save_locked(self, *, check: bool = True) -> None:
        """Write the caches (the caller holds the writer lock, so memory == catalog).

        Args:
            check: first compare the code index's ids with the catalog's (a scan of the
                model's codes; skipped for the frequent watcher saves) and rebuild on a
                difference, so no save ever writes a commit that was not mirrored.
        """
        mid = self._index.model_id
        if not self._store.verified or self._store_suspect:
            self._check_store(locked=True)
        digest = id_digest(self._index.ids())
        if check:
            with self.catalog.snapshot():
                gen = self.catalog.generation
                expected = self.catalog.code_digest(mid)
            if digest != expected:  # a commit was not mirrored
                logger.warning("code index of %s does not match the catalog; rebuilding it "
                               "before saving", mid)
                self._reload_indexes(locked=True)
                self._check_store(locked=True, force=True)
                gen, digest = self._synced_gen, id_digest(self._index.ids())
        else:
            gen = self.catalog.generation
        try:
            self._index.save(self.directory / _index_file(mid), gen)
            self.phash_index.save(self.directory / PHASH_INDEX_FILE, gen)
            self._store.save(gen, digest)
        except OSError as exc:
            raise disk_error(self.directory, exc, "save the library index") from exc
        self._last_save = time.monotonic()
        self._saved_generation = gen
        self._dirty = False

    def refresh(self) -> bool:
        """Follow changes another process committed to the catalog (reload the in-memory
        indexes; re-check the embedding store, repairing it when the writer lock is free).

        Returns:
            True if the indexes were rebuilt. Never blocks on a running scan (returns False).
        """
        if not self._write_lock.acquire(blocking=False):
            return False
        try:
            if self._pending_index is not None:
                return False
            with self._guard():
                if (self.catalog.generation == self._synced_gen and not self._store_suspect
                        and self._store.verified):
                    return False
                locked = self._try_lock("repairing the index")
                try:
                    return self._sync(locked=locked)
                finally:
                    if locked:
                        self._flock.release()
        finally:
            self._write_lock.release()

    # ----------------------------------------------------------------- repair
    @classmethod
    def repair(
        cls, directory: str | os.PathLike[str] | None, *, lock_timeout_s: float = 60.0,
    ) -> RepairReport:
        """Check and repair a library folder (see :func:`core.library.repair.repair_library`)."""
        return repair_library(directory, lock_timeout_s=lock_timeout_s)

    # ----------------------------------------------------------------- roots
    def add_root(
        self, path: str | os.PathLike[str], *, watch_mode: str = "native",
        excludes: Iterable[str] = (),
    ) -> RootInfo:
        """Add a folder (not scanned until :meth:`scan`); watched if watching."""
        with self._guard(), self._writing("adding a folder"):
            root = self.catalog.add_root(Path(path).expanduser(), watch_mode, excludes)
        if self._watcher is not None:
            self._watcher.refresh()
        return root

    def remove_root(self, root: int | str | os.PathLike[str]) -> None:
        """Forget a folder and its files (nothing on disk is touched)."""
        with self._guard(), self._writing("removing a folder"):
            info = (self.catalog.root(root) if isinstance(root, int)
                    else self.catalog.root_by_path(Path(root).expanduser()))
            if info is None:
                raise KeyError(f"not a library folder: {root}")
            ids = self.catalog.remove_root(info.id)
            for idx in (self._index, self.phash_index, self._pending_index):
                if idx is not None:
                    idx.remove(ids)
            for store in (self._store, self._pending_store):
                if store is not None:
                    store.clear(ids)
            self.save()
        if self._watcher is not None:
            self._watcher.refresh()

    def roots(self) -> list[RootInfo]:
        """Library folders."""
        with self._guard():
            return self.catalog.roots()

    # ----------------------------------------------------------------- scanning
    def scan(
        self, root_ids: Sequence[int] | None = None, *,
        on_progress: Callable[[ScanProgress], None] | None = None,
        should_stop: Callable[[], bool] | None = None,
        lock_timeout_s: float | None = None,
    ) -> ScanResult:
        """Full incremental scan of all (or some) roots; see :class:`Scanner`.

        One scan at a time per library, across processes: this waits for another process's
        write (a scan that comes second then finds the photos already indexed). A
        ``should_stop`` (or :meth:`close`) during the wait returns a cancelled result.

        Args:
            lock_timeout_s: how long to wait for another process's write (default
                ``config.lock_timeout_s``; ``math.inf``: as long as it takes).

        Raises:
            LibraryBusyError: another process kept writing for the whole wait.
            LibraryError: damaged catalog, full disk.
        """
        try:
            with self._guard(), self._writing("scanning", wait_s=lock_timeout_s,
                                              should_stop=should_stop):
                try:
                    result = self._scanner.scan(root_ids, on_progress=on_progress,
                                                should_stop=should_stop)
                except BaseException:
                    try:
                        self.save()
                    except LibraryError as exc:  # keep the scan's own error
                        logger.warning("%s", exc)
                    raise
                self.save()
                return result
        except _Stopped:  # stopped (or closed) while waiting for another process
            return ScanResult(cancelled=True)

    def scan_paths(
        self, paths: Iterable[str | os.PathLike[str]], *,
        should_stop: Callable[[], bool] | None = None,
        lock_timeout_s: float | None = None,
    ) -> ScanResult:
        """Rescan only these files/folders (what the watcher calls); saves index files at
        most every ``config.save_interval_s`` (a failed save is logged: the catalog holds
        the batch and the index is rebuilt from it when needed)."""
        try:
            with self._guard(), self._writing("indexing changed files",
                                              wait_s=lock_timeout_s, should_stop=should_stop):
                try:
                    return self._scanner.scan_paths(paths, should_stop=should_stop)
                finally:
                    try:
                        self.save(force=False)
                    except LibraryError as exc:
                        logger.warning("%s", exc)
        except _Stopped:
            return ScanResult(cancelled=True)

    # ----------------------------------------------------------------- search
    def _remember_calibration(self, encoder: ImageEncoder) -> None:
        """Keep the model's calibrated near-duplicate cosine in the catalog, so that a
        library opened without the model (``cukd duplicates``) still uses it."""
        value = getattr(encoder, "near_duplicate_cosine", None)
        key = f"{_NEAR_DUP_KEY}{encoder.model_id}"
        if value is not None and self.catalog.get_meta(key) != repr(float(value)):
            self.catalog.set_meta(key, repr(float(value)))

    def _thresholds(self, encoder: ImageEncoder) -> TierThresholds:
        """The configured tiers with the model's calibrated near-duplicate cosine."""
        value = getattr(encoder, "near_duplicate_cosine", None)
        if value is None:
            stored = self.catalog.get_meta(f"{_NEAR_DUP_KEY}{encoder.model_id}")
            value = float(stored) if stored else None
        return self.config.search.thresholds.with_model_cosine(value)

    def search(
        self, query: str | os.PathLike[str] | Image.Image | int, k: int = 20, *,
        radius: int | None = None, robust: bool = False,
    ) -> list[SearchHit]:
        """Find similar photos; see :mod:`core.library.search` for stages and tiers.

        Never waits for another process's write; scores are always finite.

        Args:
            query: image path, in-memory image or indexed file id.
            k: number of results (cap for radius queries).
            radius: Hamming radius on codes instead of top-k.
            robust: also match rotated/mirrored versions (8 encodes per query).

        Raises:
            core.imageio.ImageLoadError: query file cannot be decoded.
            KeyError: unknown file id.
            LibraryError: damaged catalog.
        """
        with self._guard():
            self.refresh()  # cheap unless another process changed the catalog
            # one consistent snapshot
            encoder, index, store = self._encoder, self._index, self._store
            q = prepare_query(query, catalog=self.catalog, encoder=encoder,
                              decode_size=self._scanner.decode_size, robust=robust)
            hits = run_search(q, catalog=self.catalog, model_id=encoder.model_id,
                              code_index=index, phash_index=self.phash_index, k=k,
                              radius=radius, config=replace(
                                  self.config.search, thresholds=self._thresholds(encoder)),
                              embeddings=store if store.verified else None)
        return [h for h in hits if math.isfinite(h.score)]

    def duplicates(self, level: str = "normal", *,
                   should_stop: Callable[[], bool] | None = None,
                   on_progress: Callable[[tuple[int, int]], None] | None = None,
                   ) -> list[DuplicateGroup]:
        """Groups of identical / near-duplicate files over the whole library.

        Args:
            level: how alike files must be, one of
                :data:`~core.library.search.DUPLICATE_LEVELS`.
            should_stop: polled during the pixel checks of the ``normal`` level; a stop
                returns ``[]``.
            on_progress: ``on_progress((done, total))`` over those pixel checks (one
                argument, as the app's workers report progress).
        """
        with self._guard():
            self.refresh()
            encoder, index = self._encoder, self._index
            return find_duplicates(
                catalog=self.catalog, model_id=encoder.model_id, code_index=index,
                phash_index=self.phash_index,
                thresholds=duplicate_level(self._thresholds(encoder), level),
                mirror_phash_radius=self.config.search.mirror_phash_radius,
                check_pair=CropVerifier() if level == "normal" else None,
                check_floor=CROP_CHECK_FLOOR, should_stop=should_stop,
                on_progress=(None if on_progress is None else
                             lambda done, total: on_progress((done, total))))

    # ----------------------------------------------------------------- status
    def status(self) -> LibraryStatus:
        """Counts, roots and activity (``indexed``: files with a code in the catalog, i.e.
        what the next search can find)."""
        with self._guard():
            roots = tuple(self.catalog.roots())
            return LibraryStatus(
                directory=str(self.directory), model_id=self._encoder.model_id,
                files=self.catalog.count_files(), ok=self.catalog.count_files("ok"),
                errors=self.catalog.count_files("error"),
                pending=self.catalog.count_files("pending"),
                indexed=self.catalog.count_codes(self._encoder.model_id),
                roots=roots, offline_roots=tuple(r.path for r in roots if not r.online),
                watching=self._watcher is not None,
                reencoding_to=self._change.model_id
                if self._change and not self._change.done.is_set() else None,
            )

    # ----------------------------------------------------------------- watching
    def start_watching(self) -> None:
        """Watch all roots (watch_mode != "off") and index changes as they happen."""
        if self._watcher is not None:
            return
        self._watcher = LibraryWatcher(self.catalog.roots, self._on_watch_paths,
                                       self._on_root_state, self.config.watch)
        self._watcher.start()

    def stop_watching(self) -> None:
        """Stop watching."""
        if self._watcher is not None:
            self._watcher.stop()
            self._watcher = None

    def watcher_idle(self) -> bool:
        """True when the watcher has nothing pending or in progress (or is not running)."""
        return self._watcher is None or self._watcher.idle()

    def _on_watch_paths(self, paths: list[str]) -> None:
        own = str(self.directory.resolve()).rstrip(os.sep) + os.sep
        paths = [p for p in paths if not os.path.abspath(p).startswith(own)]  # our own files
        if not paths:
            return
        # another process's scan: wait for it, however long (a lost batch is lost)
        result = self.scan_paths(paths, lock_timeout_s=math.inf)
        if self._closing.is_set():
            return
        logger.info("watcher batch: %d paths, +%d ~%d >%d -%d, %d errors", len(paths),
                    result.added, result.updated, result.moved, result.deleted,
                    len(result.errors))
        if self.on_watch_result is not None:
            self.on_watch_result(result)

    def _on_root_state(self, root: RootInfo, online: bool) -> None:
        try:
            if online:  # marks it online unless it looks unmounted
                result = self.scan([root.id], lock_timeout_s=math.inf)
                if self.on_watch_result is not None and not self._closing.is_set():
                    self.on_watch_result(result)
            else:
                with self._guard(), self._writing("marking a folder offline",
                                                  wait_s=math.inf):
                    self.catalog.set_root_online(root.id, False)
        except _Stopped:
            return

    # ----------------------------------------------------------------- model change
    def change_encoder(
        self, encoder: ImageEncoder, *,
        on_progress: Callable[[ScanProgress], None] | None = None,
        should_stop: Callable[[], bool] | None = None, background: bool = True,
        chunk: int = 256,
    ) -> ModelChange:
        """Re-encode the library with a new model, then swap atomically.

        Searches keep using the old encoder and index until the swap. Codes already written
        for the new model (an earlier, interrupted change) are reused. On cancel the old
        model stays active and the new codes stay in the catalog for a later resume. Each
        chunk waits as long as needed for other processes' writes.

        Args:
            encoder: the new model.
            on_progress, should_stop: as for scans (called on the worker thread).
            background: run on a thread (else block until done).
            chunk: files re-encoded per writer-lock hold (watcher batches interleave).
        """
        if encoder.model_id == self._encoder.model_id:
            change = ModelChange(encoder.model_id, swapped=True)
            change.done.set()
            return change
        if self._change is not None and not self._change.done.is_set():
            raise RuntimeError(f"already changing model to {self._change.model_id}")
        change = ModelChange(encoder.model_id)
        self._change = change

        def work() -> None:
            try:
                with self._guard():
                    self._reencode(encoder, change, on_progress, should_stop, chunk)
            except _Stopped:
                change.cancelled = True
            except BaseException as exc:
                logger.exception("re-encoding with %s failed", encoder.model_id)
                change.error = exc
            finally:
                with self._write_lock:
                    self._pending_index = None
                    if self._pending_store is not None:  # not swapped in: rebuilt when used
                        self._pending_store.close()
                        self._pending_store = None
                change.done.set()

        if background:
            change.thread = threading.Thread(target=work, name="cukd-reencode", daemon=True)
            change.thread.start()
        else:
            work()
        return change

    def _reencode(
        self, encoder: ImageEncoder, change: ModelChange,
        on_progress: Callable[[ScanProgress], None] | None,
        should_stop: Callable[[], bool] | None, chunk: int,
    ) -> None:
        with self._writing("changing the model", wait_s=math.inf, should_stop=should_stop):
            self.catalog.ensure_model(encoder.model_id, encoder.n_bits, encoder.embed_dim)
            new_index = self._build_code_index(encoder.model_id, encoder.n_bits)
            new_store = EmbeddingStore(self.directory / _store_file(encoder.model_id),
                                       encoder.model_id, encoder.embed_dim,
                                       fallback=self._fallback(encoder.model_id),
                                       on_damage=self._on_store_damage)
            new_store.rebuild(self.catalog.iter_embeddings(encoder.model_id))
            new_store.verified = True
            self._pending_index, self._pending_store = new_index, new_store
            scanner = Scanner(self.catalog, encoder, self.config.scan, on_batch=self._apply)
            total = max(0, self.catalog.count_files("ok")
                        - self.catalog.count_codes(encoder.model_id))
        base = 0

        def progress(p: ScanProgress) -> None:
            if on_progress is not None:
                on_progress(ScanProgress("reencode", base + p.done, max(total, base + p.done),
                                         p.path))

        while True:
            if (should_stop and should_stop()) or self._closing.is_set():
                change.cancelled = True
                return
            with self._writing("changing the model", wait_s=math.inf,
                               should_stop=should_stop):
                result = scanner.encode_missing(on_progress=progress,
                                                should_stop=should_stop, max_files=chunk)
                change.encoded += result.encoded
                base += result.seen
                if result.cancelled:
                    change.cancelled = True
                    return
                if result.seen == 0 or self._closing.is_set():
                    if self._closing.is_set():
                        change.cancelled = True
                        return
                    # Nothing left to encode: swap under the lock.
                    old = self._encoder.model_id
                    with self.catalog.transaction():
                        self.catalog.set_active_model(encoder.model_id)
                        self.catalog.drop_model(old)
                    self._remember_calibration(encoder)
                    old_store = self._store
                    self._encoder, self._index, self._scanner = encoder, new_index, scanner
                    self._store = new_store
                    self._pending_index = self._pending_store = None
                    old_store.close()  # searches still holding it fall back to the catalog
                    Path(self.directory / _index_file(old)).unlink(missing_ok=True)
                    Path(self.directory / _store_file(old)).unlink(missing_ok=True)
                    self.save()
                    change.swapped = True
                    logger.info("model changed from %s to %s", old, encoder.model_id)
                    return

    # ----------------------------------------------------------------- close
    def close(self) -> None:
        """Stop watching and background work, save the indexes, close the catalog.

        Waits for the writer lock (at most 5 s) only to save this process's own changes; a
        save that cannot happen (another process writing, a full disk) is logged, not
        raised: the catalog is intact and the next open rebuilds what is stale.
        """
        self._closing.set()
        self.stop_watching()
        if self._change is not None and self._change.thread is not None:
            self._change.thread.join()
        with self._write_lock:
            try:
                self._closing.clear()  # let save() take the lock like any write
                # Our own unsaved changes are worth a short wait; else save only if free
                # (a writer elsewhere saves what it writes, the next open rebuilds the rest).
                try:
                    got = (self._flock.acquire("saving the index",
                                               min(self.config.lock_timeout_s, 5.0))
                           if self._dirty else self._try_lock("saving the index"))
                except (LockTimeout, OSError) as exc:
                    got = False
                    logger.info("index not saved at close: %s", exc)
                if got:
                    try:
                        self.save()
                    finally:
                        self._flock.release()
            except LibraryError as exc:
                logger.warning("index not saved at close: %s", exc)
            except sqlite3.Error as exc:
                logger.warning("index not saved at close: %s", exc)
            finally:
                self._closing.set()
                self._store.close()
                self.catalog.close()
                self._flock.close()


# --------------------------------------------------------------------- repair helpers
#: Tables copied out of a damaged catalog, parents first, with the key to page through.
