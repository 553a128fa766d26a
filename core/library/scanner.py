"""Incremental scanning: walk library folders, diff against the catalog, decode and encode.

A scan (or a watcher batch, :meth:`Scanner.scan_paths`) works in three steps:

1. **Walk** each folder in scope, skipping hidden files and folders, NAS/OS clutter
   (``@eaDir``, ``.thumbnails``, ``$RECYCLE.BIN``, ``System Volume Information``, ...) and
   the user's glob patterns. A root that is missing, or an existing but empty folder while
   the catalog has files for it (an unmounted mount point), is marked **offline** and left
   alone: its files are kept.
2. **Diff** against the catalog: new, changed (size or mtime), gone, and moved/renamed
   (a gone file and a new file with the same size and content fingerprint, across roots too:
   the row keeps its id, code and hashes). Moves and deletions commit in one transaction.
3. **Decode and encode**: a thread pool decodes ahead (EXIF, RGB, pHash, draft JPEG) while
   the calling thread encodes batches; each batch commits in one transaction, so a kill
   loses at most the batch in flight and the next scan resumes with what is left.

Nothing is ever written inside the user's folders.
"""

from __future__ import annotations

import fnmatch
import json
import logging
import os
import stat as stat_mod
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np
from PIL import Image

from ..imageio import (
    ImageLoadError,
    file_fingerprint,
    is_flat,
    is_image_path,
    mirror_phash,
    open_image,
    phash,
)
from .catalog import Catalog, FileRecord, RootInfo
from .encoder import ImageEncoder, check_encoder_output

__all__ = [
    "DEFAULT_EXCLUDED_NAMES",
    "BatchChange",
    "DecodedFile",
    "ScanConfig",
    "ScanError",
    "ScanProgress",
    "ScanResult",
    "Scanner",
    "decode_for_index",
    "is_excluded",
    "reduce_for_index",
]

logger = logging.getLogger(__name__)

#: Folder/file names never scanned (compared case-insensitively).
DEFAULT_EXCLUDED_NAMES = frozenset(
    n.lower() for n in (
        "@eaDir", ".thumbnails", "$RECYCLE.BIN", "System Volume Information", "#recycle",
        "#snapshot", ".Trash", ".Trashes", ".Spotlight-V100", ".fseventsd", "lost+found",
    )
)


@dataclass(frozen=True)
class ScanConfig:
    """How scans behave.

    Attributes:
        batch_size: images per encoder call and per catalog commit.
        decode_workers: decoding threads running ahead of the encoder.
        decode_size: shorter side images are decoded/reduced to (JPEG draft); ``None`` uses
            ``max(encoder.input_size, 64)``. The whole frame is kept (no crop).
        skip_hidden: skip dot-files/folders (and Windows hidden files).
        follow_symlinks: follow symlinked folders/files (off: avoids loops and double counts).
        excludes: extra glob patterns for every root, matched against names and root-relative
            POSIX paths (``"*.tmp"``, ``"Private/*"``).
    """

    batch_size: int = 32
    decode_workers: int = 2
    decode_size: int | None = None
    skip_hidden: bool = True
    follow_symlinks: bool = False
    excludes: tuple[str, ...] = ()


@dataclass(frozen=True)
class ScanError:
    """A file that could not be indexed."""

    path: str
    reason: str
    detail: str = ""


@dataclass(frozen=True)
class ScanProgress:
    """Progress report: ``phase`` is ``"walk"`` or ``"encode"``; ``total`` may be 0."""

    phase: str
    done: int
    total: int
    path: str = ""


@dataclass(frozen=True)
class ScanResult:
    """What a scan did."""

    seen: int = 0
    added: int = 0
    updated: int = 0
    moved: int = 0
    deleted: int = 0
    unchanged: int = 0
    encoded: int = 0
    errors: tuple[ScanError, ...] = ()
    offline_roots: tuple[str, ...] = ()
    cancelled: bool = False
    seconds: float = 0.0
    unavailable: int = 0
    unavailable_dirs: tuple[str, ...] = ()


@dataclass(frozen=True)
class BatchChange:
    """Committed catalog changes an index must mirror.

    Attributes:
        model_id: model of ``codes``.
        ids: file ids whose code was (re)written, int64 ``[n]``.
        codes: uint8 ``[n, n_bits//8]``.
        embeddings: float ``[n, embed_dim]`` re-rank embeddings of ``ids`` (may be empty
            when ``ids`` is).
        phash_ids: file ids whose pHash was (re)written, int64 ``[m]``.
        phashes: uint64 ``[m]``.
        removed_ids: file ids whose code and pHash must go (deleted, now failing).
        replaced_ids: file ids whose content changed, so other models' codes are gone too.
    """

    model_id: str
    ids: np.ndarray
    codes: np.ndarray
    phash_ids: np.ndarray
    phashes: np.ndarray
    removed_ids: np.ndarray
    replaced_ids: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    embeddings: np.ndarray = field(default_factory=lambda: np.zeros((0, 0), np.float32))


@dataclass(frozen=True)
class DecodedFile:
    """A file decoded for indexing (or a failure)."""

    path: str
    image: Image.Image | None
    phash: int | None = None
    width: int | None = None
    height: int | None = None
    fingerprint: str | None = None
    error: ImageLoadError | None = None
    mirror_phash: int | None = None
    flat: bool | None = None


@dataclass
class _Item:
    root_id: int
    path: str
    size: int
    mtime_ns: int
    kind: str  # "new" | "changed" | "encode"
    fingerprint: str | None = None
    file_id: int | None = None  # known row ("encode" items)


@dataclass
class _Counts:
    seen: int = 0
    added: int = 0
    updated: int = 0
    moved: int = 0
    deleted: int = 0
    unchanged: int = 0
    encoded: int = 0
    errors: list[ScanError] = field(default_factory=list)
    offline: list[str] = field(default_factory=list)
    unavailable: int = 0
    unavailable_dirs: list[str] = field(default_factory=list)


def decode_for_index(
    path: str | os.PathLike[str], decode_size: int, *, fingerprint: bool = True,
    size: int | None = None,
) -> DecodedFile:
    """Decode a file the way indexing does: RGB, EXIF applied, reduced, pHash computed.

    The image's shorter side is reduced to ``decode_size`` (whole frame, aspect kept).
    Never raises for a bad image: the error is returned in ``DecodedFile.error``.
    """
    p = os.fspath(path)
    try:
        loaded = open_image(p, draft_size=decode_size)
        img = reduce_for_index(loaded.image, decode_size)
        fp = None
        if fingerprint:
            try:
                fp = file_fingerprint(p, size)
            except OSError as exc:
                raise ImageLoadError(p, "unreadable", str(exc)) from exc
        return DecodedFile(p, img, phash(img), loaded.width, loaded.height, fp,
                           mirror_phash=mirror_phash(img), flat=is_flat(img))
    except ImageLoadError as exc:
        return DecodedFile(p, None, error=exc)
    except Exception as exc:  # a decoder bug must not stop a scan
        logger.exception("unexpected error decoding %s", p)
        return DecodedFile(p, None, error=ImageLoadError(p, "corrupt", repr(exc)))


#: Extensions of formats that can carry transparency (everything but JPEG).
_ALPHA_EXTENSIONS = frozenset({".png", ".webp", ".gif", ".bmp", ".dib", ".tif", ".tiff",
                               ".avif", ".heic", ".heif"})


def may_have_alpha(path: str) -> bool:
    """Whether the file's format can have an alpha channel (judged by its extension)."""
    return os.path.splitext(path)[1].lower() in _ALPHA_EXTENSIONS


def reduce_for_index(image: Image.Image, decode_size: int) -> Image.Image:
    """Shrink so the shorter side is ``decode_size`` (aspect kept, whole frame, no upscaling)."""
    short = min(image.size)
    if short <= decode_size:
        return image
    scale = decode_size / short
    size = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
    return image.resize(size, Image.Resampling.BILINEAR, reducing_gap=2.0)


def is_excluded(rel_posix: str, name: str, patterns: Iterable[str], skip_hidden: bool) -> bool:
    """Whether a file/folder is excluded, given its root-relative POSIX path and name."""
    if skip_hidden and name.startswith("."):
        return True
    if name.lower() in DEFAULT_EXCLUDED_NAMES or name.lower().startswith(".trash-"):
        return True
    return any(fnmatch.fnmatch(name, p) or fnmatch.fnmatch(rel_posix, p) for p in patterns)


def _hidden_attr(st: os.stat_result) -> bool:
    attrs = getattr(st, "st_file_attributes", 0)
    return bool(attrs & getattr(stat_mod, "FILE_ATTRIBUTE_HIDDEN", 0))


class Scanner:
    """Keeps the catalog in step with the folders on disk.

    Args:
        catalog: the library catalog (the only place anything is written).
        encoder: model producing codes and embeddings.
        config: scan settings.
        on_batch: called after each commit with what the indexes must mirror.
    """

    def __init__(
        self, catalog: Catalog, encoder: ImageEncoder, config: ScanConfig = ScanConfig(),
        on_batch: Callable[[BatchChange], None] | None = None,
    ) -> None:
        self.catalog = catalog
        self.encoder = encoder
        self.config = config
        self.on_batch = on_batch
        self.decode_size = config.decode_size or max(int(encoder.input_size), 64)
        catalog.ensure_model(encoder.model_id, encoder.n_bits, encoder.embed_dim)

    # ----------------------------------------------------------------- public
    def scan(
        self, root_ids: Sequence[int] | None = None, *,
        on_progress: Callable[[ScanProgress], None] | None = None,
        should_stop: Callable[[], bool] | None = None,
    ) -> ScanResult:
        """Full scan of the given roots (default: all).

        Args:
            root_ids: roots to scan; ``None`` for all.
            on_progress: called with :class:`ScanProgress` now and then.
            should_stop: polled between files and batches; True cancels (committed work stays).
        """
        roots = [r for r in self.catalog.roots() if root_ids is None or r.id in root_ids]
        scopes = [(r, r.path) for r in roots]
        return self._run(scopes, on_progress, should_stop, full=True)

    def scan_paths(
        self, paths: Iterable[str | os.PathLike[str]], *,
        on_progress: Callable[[ScanProgress], None] | None = None,
        should_stop: Callable[[], bool] | None = None,
    ) -> ScanResult:
        """Rescan only these files/folders (created, modified, moved or deleted ones).

        Paths outside every root are ignored; a missing path deletes its catalog rows
        (unless its root is offline).
        """
        roots = self.catalog.roots()
        scopes: dict[str, tuple[RootInfo, str]] = {}
        for raw in paths:
            p = os.path.normpath(os.path.abspath(os.fspath(raw)))
            root = next((r for r in roots if p == r.path
                         or p.startswith(r.path.rstrip(os.sep) + os.sep)), None)
            if root is not None:
                scopes[p] = (root, p)
        # Drop scopes inside another scope.
        keys = sorted(scopes)
        kept = [k for k in keys if not any(
            k != o and k.startswith(o.rstrip(os.sep) + os.sep) for o in keys)]
        return self._run([scopes[k] for k in kept], on_progress, should_stop, full=False)

    # ----------------------------------------------------------------- internals
    def _root_state(self, root: RootInfo, counts: _Counts) -> bool:
        """Check a root is reachable; update online/offline. Returns True if online."""
        online = os.path.isdir(root.path)
        was_mount = self.catalog.get_meta(_root_mount_key(root.id)) == "1"
        if online and _is_mount_point(root.path):
            if not was_mount:
                self.catalog.set_meta(_root_mount_key(root.id), "1")
        elif online and was_mount:
            logger.warning("%s was a mounted drive and is not mounted now: treating it as "
                           "offline", root.path)
            online = False
        if online:
            try:
                empty = not any(True for _ in os.scandir(root.path))
            except OSError:
                online, empty = False, True
            if online and empty and self.catalog.files_in_scope(root.id):
                logger.warning("%s is empty but the library has files there: treating it "
                               "as an unmounted drive (offline)", root.path)
                online = False
        if online != root.online:
            logger.info("library folder %s is now %s", root.path,
                        "online" if online else "offline")
            self.catalog.set_root_online(root.id, online)
        if not online:
            counts.offline.append(root.path)
        return online

    def _walk(
        self, root: RootInfo, scope: str, should_stop: Callable[[], bool] | None,
        on_progress: Callable[[ScanProgress], None] | None, counts: _Counts,
    ) -> dict[str, tuple[int, int]] | None:
        """``{path: (size, mtime_ns)}`` of image files in scope; None if cancelled."""
        patterns = (*self.config.excludes, *root.excludes)
        cfg = self.config
        found: dict[str, tuple[int, int]] = {}

        def rel(p: str) -> str:
            return os.path.relpath(p, root.path).replace(os.sep, "/")

        # A scope below the root must not lie in an excluded folder.
        if scope != root.path:
            parts = rel(scope).split("/")
            for i, name in enumerate(parts):
                if is_excluded("/".join(parts[:i + 1]), name, patterns, cfg.skip_hidden):
                    return found
            try:
                st = os.stat(scope, follow_symlinks=cfg.follow_symlinks)
            except OSError:
                return found
            if stat_mod.S_ISREG(st.st_mode):
                if is_image_path(scope) and not (cfg.skip_hidden and _hidden_attr(st)):
                    found[scope] = (st.st_size, st.st_mtime_ns)
                return found
            if not stat_mod.S_ISDIR(st.st_mode):
                return found
        known_mounts = self._known_mounts(root)
        mounts: set[str] = set()
        try:
            top = os.stat(scope)
        except OSError as exc:
            counts.unavailable_dirs.append(scope)
            logger.warning("cannot read %s: %s", scope, exc)
            return found
        seen_dirs = {(top.st_dev, top.st_ino)}  # loop guard when following links
        stack = [(scope, top.st_dev)]
        while stack:
            if should_stop and should_stop():
                return None
            d, dev = stack.pop()
            try:
                entries = list(os.scandir(d))
            except OSError as exc:
                # Files below are kept (marked unavailable), never taken for deleted.
                logger.warning("cannot list %s: %s", d, exc)
                counts.unavailable_dirs.append(d)
                counts.errors.append(ScanError(
                    d, "unreadable", f"folder cannot be listed: {exc.strerror or exc}"))
                continue
            for e in entries:
                r = rel(e.path)
                if is_excluded(r, e.name, patterns, cfg.skip_hidden):
                    continue
                try:
                    link = e.is_symlink()
                    if link and not cfg.follow_symlinks:
                        if is_image_path(e.name) or e.is_dir():
                            counts.errors.append(ScanError(
                                e.path, "symlink", "a symbolic link (following links is off)"))
                        continue
                    if e.is_dir(follow_symlinks=cfg.follow_symlinks):
                        st = e.stat(follow_symlinks=cfg.follow_symlinks)
                        if (st.st_dev, st.st_ino) in seen_dirs:
                            counts.errors.append(ScanError(
                                e.path, "symlink", "a link back to a folder already scanned"))
                            continue
                        seen_dirs.add((st.st_dev, st.st_ino))
                        if st.st_dev != dev and not link:
                            mounts.add(r)
                        stack.append((e.path, st.st_dev))
                        continue
                    if not e.is_file(follow_symlinks=cfg.follow_symlinks) or not is_image_path(
                            e.name):
                        continue
                    st = e.stat(follow_symlinks=cfg.follow_symlinks)
                except OSError as exc:  # e.g. a path longer than the system allows
                    counts.errors.append(ScanError(e.path, "unreadable", exc.strerror or str(exc)))
                    counts.unavailable_dirs.append(e.path)  # if it is a folder, keep its files
                    continue
                if cfg.skip_hidden and _hidden_attr(st):
                    continue
                found[e.path] = (st.st_size, st.st_mtime_ns)
            if on_progress and len(found) % 500 < 50:
                on_progress(ScanProgress("walk", len(found), 0, d))
        # A folder that was a mount point and is not one now is an unmounted drive: its
        # files are unavailable, not deleted.
        in_scope = [m for m in known_mounts
                    if scope == root.path or _under(os.path.join(root.path, m), scope)]
        for m in in_scope:
            if m not in mounts:
                counts.unavailable_dirs.append(os.path.join(root.path, m))
        missing = {m for m in in_scope if m not in mounts}
        self._remember_mounts(root, (known_mounts - set(in_scope)) | mounts | missing)
        return found

    def _known_mounts(self, root: RootInfo) -> set[str]:
        raw = self.catalog.get_meta(_mounts_key(root.id))
        return set(json.loads(raw)) if raw else set()

    def _remember_mounts(self, root: RootInfo, mounts: set[str]) -> None:
        if mounts != self._known_mounts(root):
            self.catalog.set_meta(_mounts_key(root.id), json.dumps(sorted(mounts)))

    def _run(
        self, scopes: list[tuple[RootInfo, str]],
        on_progress: Callable[[ScanProgress], None] | None,
        should_stop: Callable[[], bool] | None, *, full: bool,
    ) -> ScanResult:
        t0 = time.monotonic()
        counts = _Counts()
        model_id = self.encoder.model_id
        online: dict[int, bool] = {}
        work: list[_Item] = []
        gone: dict[str, FileRecord] = {}
        new: list[_Item] = []
        for root, scope in scopes:
            if root.id not in online:
                online[root.id] = self._root_state(root, counts)
            if not online[root.id]:
                continue
            disk = self._walk(root, scope, should_stop, on_progress, counts)
            if disk is None:
                return self._result(counts, t0, cancelled=True)
            known = self.catalog.files_in_scope(
                root.id, None if scope == root.path else scope, model_id)
            counts.seen += len(disk)
            for path, (size, mtime_ns) in disk.items():
                rec = known.get(path)
                if rec is None:
                    new.append(_Item(root.id, path, size, mtime_ns, "new"))
                    continue
                r, has_code = rec
                if r.size != size or r.mtime_ns != mtime_ns:
                    work.append(_Item(root.id, path, size, mtime_ns, "changed"))
                elif r.status == "pending" or (r.status == "ok" and (
                        not has_code or r.mirror_phash is None
                        or (r.flat is None and may_have_alpha(path)))):
                    # (no mirror pHash: indexed before catalog schema 2; not known whether
                    # flat, in a format with transparency: indexed before schema 3, when
                    # transparency was composited on white; either is decoded once more)
                    work.append(_Item(root.id, path, size, mtime_ns, "encode", r.fingerprint,
                                      r.id))
                else:
                    counts.unchanged += 1
            blocked = [d for d in counts.unavailable_dirs if _under(d, scope) or _under(scope, d)]
            for path, (r, _) in known.items():
                if path in disk:
                    continue
                if any(_under(path, d) for d in blocked):
                    counts.unavailable += 1  # kept: its folder cannot be read right now
                else:
                    gone[path] = r

        # Moves: a gone row and a new file with the same size and fingerprint.
        moves: list[tuple[FileRecord, _Item]] = []
        if gone and new:
            by_key: dict[tuple[int, str], list[FileRecord]] = {}
            gone_sizes = {r.size for r in gone.values()}
            for r in gone.values():
                if r.fingerprint:
                    by_key.setdefault((r.size, r.fingerprint), []).append(r)
            still_new = []
            for it in new:
                if it.size in gone_sizes:
                    try:
                        it.fingerprint = file_fingerprint(it.path, it.size)
                    except OSError:
                        it.fingerprint = None
                    cands = by_key.get((it.size, it.fingerprint or ""))
                    if cands:
                        r = cands.pop(0)
                        del gone[r.path]
                        moves.append((r, it))
                        continue
                still_new.append(it)
            new = still_new
        if gone or moves:
            with self.catalog.transaction():
                for r, it in moves:
                    self.catalog.move_file(r.id, it.path, it.root_id, it.mtime_ns)
                    logger.debug("moved %s -> %s", r.path, it.path)
                self.catalog.delete_files(r.id for r in gone.values())
            counts.moved += len(moves)
            counts.deleted += len(gone)
            if gone and self.on_batch:
                self.on_batch(_change(model_id, removed=[r.id for r in gone.values()]))
            # A moved file that had no code yet still needs one.
            for r, it in moves:
                if r.status == "pending":
                    work.append(_Item(it.root_id, it.path, it.size, it.mtime_ns, "encode",
                                      r.fingerprint, r.id))
        work.extend(new)
        cancelled = self._encode(work, counts, on_progress, should_stop)
        if full and not cancelled:
            for root, _ in scopes:
                if online.get(root.id):
                    self.catalog.mark_root_scanned(root.id)
        return self._result(counts, t0, cancelled=cancelled)

    def encode_missing(
        self, *, on_progress: Callable[[ScanProgress], None] | None = None,
        should_stop: Callable[[], bool] | None = None, chunk: int = 4096,
        max_files: int | None = None,
    ) -> ScanResult:
        """Encode ``ok`` files that have no code for this scanner's model (model change).

        Rows are re-decoded from disk; a file that vanished or changed on disk is left for
        the next scan. ``result.seen`` counts the files attempted (0: nothing left to do).

        Args:
            on_progress, should_stop: as for :meth:`scan`.
            chunk: rows fetched from the catalog at a time.
            max_files: stop after attempting about this many files (``None``: all).
        """
        t0 = time.monotonic()
        counts = _Counts()
        total = self.catalog.count_files("ok") - self.catalog.count_codes(self.encoder.model_id)
        skipped: set[int] = set()
        while max_files is None or counts.seen < max_files:
            limit = chunk if max_files is None else min(chunk, max_files - counts.seen)
            recs = self.catalog.files_missing_code(self.encoder.model_id,
                                                   limit=limit + len(skipped))
            items = []
            for r in recs:
                if r.id in skipped:
                    continue
                try:
                    st = os.stat(r.path)
                except OSError:
                    st = None
                if st is None or st.st_size != r.size or st.st_mtime_ns != r.mtime_ns:
                    skipped.add(r.id)  # gone or changed: the next scan handles it
                    continue
                items.append(_Item(r.root_id, r.path, r.size, r.mtime_ns, "encode",
                                   r.fingerprint, r.id))
                if len(items) >= limit:
                    break
            if not items:
                break
            offset = counts.seen
            counts.seen += len(items)
            if self._encode(items, counts, on_progress, should_stop, total=max(total, 1),
                            offset=offset):
                return self._result(counts, t0, cancelled=True)
        return self._result(counts, t0, cancelled=False)

    def _decode_stream(
        self, items: list[_Item], executor: ThreadPoolExecutor
    ) -> Iterator[tuple[_Item, DecodedFile]]:
        """Decoded items in order, decoding up to two batches ahead."""
        ahead = max(2 * self.config.batch_size, 4)
        pending: deque[tuple[_Item, Future[DecodedFile]]] = deque()
        it = iter(items)

        def submit() -> None:
            nxt = next(it, None)
            if nxt is not None:
                pending.append((nxt, executor.submit(
                    decode_for_index, nxt.path, self.decode_size,
                    fingerprint=nxt.fingerprint is None, size=nxt.size)))

        for _ in range(ahead):
            submit()
        while pending:
            item, fut = pending.popleft()
            submit()
            yield item, fut.result()

    def _encode(
        self, items: list[_Item], counts: _Counts,
        on_progress: Callable[[ScanProgress], None] | None,
        should_stop: Callable[[], bool] | None, *, total: int | None = None, offset: int = 0,
    ) -> bool:
        """Decode+encode+commit ``items`` in batches. Returns True if cancelled."""
        if not items:
            return False
        total = total or len(items)
        done = offset
        bs = self.config.batch_size
        executor = ThreadPoolExecutor(max(1, self.config.decode_workers),
                                      thread_name_prefix="cukd-decode")
        try:
            batch: list[tuple[_Item, DecodedFile]] = []
            for pair in self._decode_stream(items, executor):
                # Between files, not only between batches: a stop (quitting the app) must
                # not wait for a whole batch of large photos to be decoded first.
                if should_stop and should_stop():
                    return True
                batch.append(pair)
                if len(batch) >= bs:
                    self._commit_batch(batch, counts)
                    done += len(batch)
                    batch = []
                    if on_progress:
                        on_progress(ScanProgress("encode", done, total, pair[0].path))
            if batch:
                if should_stop and should_stop():
                    return True
                self._commit_batch(batch, counts)
                done += len(batch)
                if on_progress:
                    on_progress(ScanProgress("encode", done, total, batch[-1][0].path))
            return False
        finally:
            executor.shutdown(wait=True, cancel_futures=True)

    def _commit_batch(self, batch: list[tuple[_Item, DecodedFile]], counts: _Counts) -> None:
        """Encode the decoded images of a batch and commit the batch in one transaction."""
        enc = self.encoder
        good = [(it, d) for it, d in batch if d.error is None]
        bad = [(it, d) for it, d in batch if d.error is not None]
        codes = emb = None
        encode_error = ""
        if good:
            try:
                codes, emb = enc.encode([d.image for _, d in good])
                codes, emb = check_encoder_output(enc, len(good), codes, emb)
            except Exception as exc:
                logger.exception("encoder %s failed on a batch of %d", enc.model_id, len(good))
                encode_error = f"encode_failed: {exc!r}"
        ids: list[int] = []
        replaced: list[int] = []
        removed: list[int] = []
        ph_ids: list[int] = []
        phs: list[int] = []
        with self.catalog.transaction():
            for it, d in bad:
                assert d.error is not None
                fid = self.catalog.upsert_file(
                    root_id=it.root_id, path=it.path, size=it.size, mtime_ns=it.mtime_ns,
                    fingerprint=d.fingerprint or it.fingerprint, status="error",
                    error=f"{d.error.reason}: {d.error.detail}" if d.error.detail
                    else d.error.reason)
                removed.append(fid)
                counts.errors.append(ScanError(it.path, d.error.reason, d.error.detail))
                self._count(it, counts)
            for it, d in good:
                status = "pending" if encode_error else "ok"
                if it.file_id is not None and it.kind == "encode":
                    # Same content: keep the row and other models' codes.
                    fid = it.file_id
                    self.catalog.set_file_decoded(fid, status=status, error=encode_error or None,
                                                  phash=d.phash, width=d.width, height=d.height,
                                                  mirror_phash=d.mirror_phash, flat=d.flat)
                else:
                    fid = self.catalog.upsert_file(
                        root_id=it.root_id, path=it.path, size=it.size, mtime_ns=it.mtime_ns,
                        fingerprint=d.fingerprint or it.fingerprint, status=status,
                        error=encode_error or None, phash=d.phash, width=d.width,
                        height=d.height, mirror_phash=d.mirror_phash, flat=d.flat)
                    replaced.append(fid)
                ids.append(fid)
                ph_ids.append(fid)
                phs.append(d.phash or 0)
                self._count(it, counts)
                if encode_error:
                    counts.errors.append(ScanError(it.path, "encode_failed", encode_error))
            if codes is not None and emb is not None:
                self.catalog.put_codes(enc.model_id, ids, codes, emb)
                counts.encoded += len(ids)
        if self.on_batch:
            if codes is None:
                removed += ids
                ids = []
            self.on_batch(_change(enc.model_id, ids=ids, codes=codes, embeddings=emb,
                                  removed=removed, phash_ids=ph_ids, phashes=phs,
                                  replaced=replaced))

    @staticmethod
    def _count(it: _Item, counts: _Counts) -> None:
        if it.kind == "new":
            counts.added += 1
        elif it.kind == "changed":
            counts.updated += 1

    @staticmethod
    def _result(counts: _Counts, t0: float, *, cancelled: bool) -> ScanResult:
        return ScanResult(
            seen=counts.seen, added=counts.added, updated=counts.updated, moved=counts.moved,
            deleted=counts.deleted, unchanged=counts.unchanged, encoded=counts.encoded,
            errors=tuple(counts.errors), offline_roots=tuple(counts.offline),
            cancelled=cancelled, seconds=time.monotonic() - t0,
            unavailable=counts.unavailable, unavailable_dirs=tuple(counts.unavailable_dirs),
        )


def _under(path: str, folder: str) -> bool:
    """Whether ``path`` is ``folder`` or lies below it."""
    return path == folder or path.startswith(folder.rstrip(os.sep) + os.sep)


def _is_mount_point(path: str) -> bool:
    """A folder on another device than its parent (or a mount point by the OS's account)."""
    try:
        return os.path.ismount(path) or os.stat(path).st_dev != os.stat(
            os.path.dirname(os.path.abspath(path))).st_dev
    except OSError:
        return False


def _mounts_key(root_id: int) -> str:
    return f"mounts:{root_id}"


def _root_mount_key(root_id: int) -> str:
    return f"root_mount:{root_id}"


def _change(
    model_id: str, *, ids: Sequence[int] = (), codes: np.ndarray | None = None,
    embeddings: np.ndarray | None = None, removed: Sequence[int] = (),
    phash_ids: Sequence[int] = (), phashes: Sequence[int] = (), replaced: Sequence[int] = (),
) -> BatchChange:
    return BatchChange(
        model_id=model_id,
        ids=np.asarray(ids, dtype=np.int64),
        codes=codes if codes is not None and len(ids) else np.zeros((0, 0), np.uint8),
        phash_ids=np.asarray(phash_ids, dtype=np.int64),
        phashes=np.asarray([int(p) for p in phashes], dtype=np.uint64),
        removed_ids=np.asarray(removed, dtype=np.int64),
        replaced_ids=np.asarray(replaced, dtype=np.int64),
        embeddings=(embeddings if embeddings is not None and len(ids)
                    else np.zeros((0, 0), np.float32)),
    )
