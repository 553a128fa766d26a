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
the model swap); searches read a consistent ``(encoder, code index)`` snapshot and are safe
while writes happen. The faiss indexes are caches of the catalog, saved on every scan and at
close and rebuilt on open when missing, corrupt or stale.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
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
from .index import BinaryIndex, load_or_rebuild
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

__all__ = ["Library", "LibraryConfig", "LibraryStatus", "ModelChange"]

logger = logging.getLogger(__name__)

CATALOG_FILE = "catalog.sqlite3"
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
    """

    def __init__(
        self, directory: str | os.PathLike[str] | None, encoder: ImageEncoder,
        config: LibraryConfig = LibraryConfig(),
    ) -> None:
        self.directory = Path(directory) if directory is not None else default_library_dir()
        self.directory.mkdir(parents=True, exist_ok=True)
        self.config = config
        self.catalog = Catalog(self.directory / CATALOG_FILE)
        self._write_lock = threading.RLock()
        self._watcher: LibraryWatcher | None = None
        self._change: ModelChange | None = None
        self._pending_index: BinaryIndex | None = None
        self._pending_store: EmbeddingStore | None = None
        self._closing = threading.Event()
        self._last_save = 0.0
        self._saved_generation = -1
        #: Called (on the watcher thread) with the result of each watcher batch.
        self.on_watch_result: Callable[[ScanResult], None] | None = None

        active = self.catalog.active_model
        if active is not None and active != encoder.model_id:
            logger.warning("library model changes from %s to %s on open: old codes dropped, "
                           "files are re-encoded by the next scan", active, encoder.model_id)
            self.catalog.drop_model(active)
            for name in (_index_file(active), _store_file(active)):
                (self.directory / name).unlink(missing_ok=True)
        self.catalog.ensure_model(encoder.model_id, encoder.n_bits, encoder.embed_dim)
        self._remember_calibration(encoder)
        if active != encoder.model_id:
            self.catalog.set_active_model(encoder.model_id)
        self._rebuilt: list[str] = []
        self.phash_index = self._load_phash_index()
        self._encoder = encoder
        self._index = self._load_code_index(encoder)
        self._store = self._load_store(encoder)
        self._scanner = self._make_scanner(encoder)
        #: Index files rebuilt from the catalog when opening (missing, corrupt or stale).
        self.rebuilt_indexes: tuple[str, ...] = tuple(self._rebuilt)
        self._seen_generation = self.catalog.generation

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

    # ----------------------------------------------------------------- indexes
    @property
    def encoder(self) -> ImageEncoder:
        """The active encoder."""
        return self._encoder

    @property
    def index(self) -> BinaryIndex:
        """The active model's code index."""
        return self._index

    def _load_code_index(self, encoder: ImageEncoder) -> BinaryIndex:
        mid = encoder.model_id

        def rebuild(idx: BinaryIndex) -> None:
            for ids, codes in self.catalog.iter_codes(mid):
                idx.add(ids, codes)

        idx, rebuilt = load_or_rebuild(
            self.directory / _index_file(mid), model_id=mid, n_bits=encoder.n_bits,
            generation=self.catalog.generation, expected_count=self.catalog.count_codes(mid),
            rebuild=rebuild)
        if rebuilt:
            logger.info("rebuilt code index of %s (%d codes)", mid, idx.ntotal)
            self._rebuilt.append(mid)
        return idx

    def _load_store(self, encoder: ImageEncoder) -> EmbeddingStore:
        mid = encoder.model_id
        store, _ = open_store(self.directory / _store_file(mid), model_id=mid,
                              dim=encoder.embed_dim, generation=self.catalog.generation,
                              rebuild=lambda: self.catalog.iter_embeddings(mid))
        return store

    def _load_phash_index(self) -> BinaryIndex:
        def rebuild(idx: BinaryIndex) -> None:
            ids, ph = self.catalog.all_phashes()
            if len(ids):
                idx.add(ids, phash_codes(ph.tolist()))

        idx, rebuilt = load_or_rebuild(
            self.directory / PHASH_INDEX_FILE, model_id="phash", n_bits=64,
            generation=self.catalog.generation, expected_count=self.catalog.count_phashes(),
            rebuild=rebuild)
        if rebuilt:
            self._rebuilt.append("phash")
        return idx

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
            store.clear(change.removed_ids)
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
            if store.model_id == change.model_id:
                if len(change.ids) and len(change.embeddings):
                    store.put(change.ids, change.embeddings)
            else:
                store.clear(change.replaced_ids)

    @contextmanager
    def _writing(self) -> Iterator[None]:
        """Hold the writer lock; afterwards remember the catalog generation we produced."""
        with self._write_lock:
            try:
                yield
            finally:
                self._seen_generation = self.catalog.generation

    def save(self, *, force: bool = True) -> None:
        """Save the indexes (atomically) stamped with the catalog generation.

        Args:
            force: if False, skip unless ``config.save_interval_s`` passed since the last save
                (a crash before the next save only costs a rebuild on open).
        """
        with self._write_lock:
            gen = self.catalog.generation
            if not force and (gen == self._saved_generation or time.monotonic()
                              - self._last_save < self.config.save_interval_s):
                return
            self._index.save(self.directory / _index_file(self._index.model_id), gen)
            self.phash_index.save(self.directory / PHASH_INDEX_FILE, gen)
            self._store.save(gen)
            self._last_save = time.monotonic()
            self._saved_generation = gen

    def refresh(self) -> bool:
        """Rebuild the in-memory indexes if another process changed the catalog.

        Returns:
            True if the indexes were rebuilt. Never blocks on a running scan (returns False).
        """
        if not self._write_lock.acquire(blocking=False):
            return False
        try:
            if (self.catalog.generation == self._seen_generation
                    or self._pending_index is not None):
                return False
            logger.info("catalog changed by another process; reloading indexes")
            code_index = BinaryIndex(self._encoder.n_bits, self._encoder.model_id)
            for ids, codes in self.catalog.iter_codes(self._encoder.model_id):
                code_index.add(ids, codes)
            ph_index = BinaryIndex(64, "phash")
            ids, ph = self.catalog.all_phashes()
            if len(ids):
                ph_index.add(ids, phash_codes(ph.tolist()))
            self._index, self.phash_index = code_index, ph_index
            if not self._store.matches(self.catalog.generation):
                mid = self._encoder.model_id
                self._store.rebuild(self.catalog.iter_embeddings(mid))
            self._seen_generation = self.catalog.generation
            return True
        finally:
            self._write_lock.release()

    # ----------------------------------------------------------------- roots
    def add_root(
        self, path: str | os.PathLike[str], *, watch_mode: str = "native",
        excludes: Iterable[str] = (),
    ) -> RootInfo:
        """Add a folder (not scanned until :meth:`scan`); watched if watching."""
        with self._writing():
            root = self.catalog.add_root(Path(path).expanduser(), watch_mode, excludes)
        if self._watcher is not None:
            self._watcher.refresh()
        return root

    def remove_root(self, root: int | str | os.PathLike[str]) -> None:
        """Forget a folder and its files (nothing on disk is touched)."""
        with self._writing():
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
        return self.catalog.roots()

    # ----------------------------------------------------------------- scanning
    def scan(
        self, root_ids: Sequence[int] | None = None, *,
        on_progress: Callable[[ScanProgress], None] | None = None,
        should_stop: Callable[[], bool] | None = None,
    ) -> ScanResult:
        """Full incremental scan of all (or some) roots; see :class:`Scanner`."""
        with self._writing():
            try:
                return self._scanner.scan(root_ids, on_progress=on_progress,
                                          should_stop=should_stop)
            finally:
                self.save()

    def scan_paths(
        self, paths: Iterable[str | os.PathLike[str]], *,
        should_stop: Callable[[], bool] | None = None,
    ) -> ScanResult:
        """Rescan only these files/folders (what the watcher calls); saves index files at
        most every ``config.save_interval_s``."""
        with self._writing():
            try:
                return self._scanner.scan_paths(paths, should_stop=should_stop)
            finally:
                self.save(force=False)

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

        Args:
            query: image path, in-memory image or indexed file id.
            k: number of results (cap for radius queries).
            radius: Hamming radius on codes instead of top-k.
            robust: also match rotated/mirrored versions (8 encodes per query).

        Raises:
            core.imageio.ImageLoadError: query file cannot be decoded.
            KeyError: unknown file id.
        """
        self.refresh()  # cheap unless another process changed the catalog
        # one consistent snapshot
        encoder, index, store = self._encoder, self._index, self._store
        q = prepare_query(query, catalog=self.catalog, encoder=encoder,
                          decode_size=self._scanner.decode_size, robust=robust)
        return run_search(q, catalog=self.catalog, model_id=encoder.model_id,
                          code_index=index, phash_index=self.phash_index, k=k, radius=radius,
                          config=replace(self.config.search,
                                         thresholds=self._thresholds(encoder)),
                          embeddings=store)

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
        encoder, index = self._encoder, self._index
        return find_duplicates(catalog=self.catalog, model_id=encoder.model_id,
                               code_index=index, phash_index=self.phash_index,
                               thresholds=duplicate_level(self._thresholds(encoder), level),
                               mirror_phash_radius=self.config.search.mirror_phash_radius,
                               check_pair=CropVerifier() if level == "normal" else None,
                               check_floor=CROP_CHECK_FLOOR, should_stop=should_stop,
                               on_progress=(None if on_progress is None else
                                            lambda done, total: on_progress((done, total))))

    # ----------------------------------------------------------------- status
    def status(self) -> LibraryStatus:
        """Counts, roots and activity."""
        roots = tuple(self.catalog.roots())
        return LibraryStatus(
            directory=str(self.directory), model_id=self._encoder.model_id,
            files=self.catalog.count_files(), ok=self.catalog.count_files("ok"),
            errors=self.catalog.count_files("error"),
            pending=self.catalog.count_files("pending"), indexed=self._index.ntotal,
            roots=roots, offline_roots=tuple(r.path for r in roots if not r.online),
            watching=self._watcher is not None,
            reencoding_to=self._change.model_id if self._change and not self._change.done.is_set()
            else None,
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
        result = self.scan_paths(paths)
        logger.info("watcher batch: %d paths, +%d ~%d >%d -%d, %d errors", len(paths),
                    result.added, result.updated, result.moved, result.deleted,
                    len(result.errors))
        if self.on_watch_result is not None:
            self.on_watch_result(result)

    def _on_root_state(self, root: RootInfo, online: bool) -> None:
        if online:
            result = self.scan([root.id])  # marks it online unless it looks unmounted
            if self.on_watch_result is not None:
                self.on_watch_result(result)
        else:
            with self._writing():
                self.catalog.set_root_online(root.id, False)

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
        model stays active and the new codes stay in the catalog for a later resume.

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
                self._reencode(encoder, change, on_progress, should_stop, chunk)
            except BaseException as exc:
                logger.exception("re-encoding with %s failed", encoder.model_id)
                change.error = exc
            finally:
                with self._writing():
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
        with self._writing():
            self.catalog.ensure_model(encoder.model_id, encoder.n_bits, encoder.embed_dim)
            new_index = BinaryIndex(encoder.n_bits, encoder.model_id)
            for ids, codes in self.catalog.iter_codes(encoder.model_id):
                new_index.add(ids, codes)
            new_store = EmbeddingStore(self.directory / _store_file(encoder.model_id),
                                       encoder.model_id, encoder.embed_dim)
            new_store.rebuild(self.catalog.iter_embeddings(encoder.model_id))
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
            with self._writing():
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
        """Stop watching and background work, save the indexes, close the catalog."""
        self._closing.set()
        self.stop_watching()
        if self._change is not None and self._change.thread is not None:
            self._change.thread.join()
        with self._write_lock:
            self.save()
            self._store.close()
            self.catalog.close()
