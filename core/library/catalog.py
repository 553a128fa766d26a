"""SQLite catalog of a photo library: the source of truth for files, codes and hashes.

One SQLite file (WAL journal) per library. Tables:

- ``roots``: folders the user added, their online state, watch mode and exclusion patterns.
- ``files``: one row per image file: absolute path, size, mtime, content fingerprint,
  pHash, full-resolution width/height, status (``ok`` / ``error`` / ``pending``) and error.
- ``codes``: packed binary code and fp16 embedding per ``(file, model_id)``, so a new model
  can be encoded beside the old one and swapped atomically (``meta.active_model``).
- ``models``: code length and embedding size of each model that has codes.
- ``meta``: key/value, including ``generation`` (bumped by every committed change, so a
  saved index can tell whether it is stale) and ``active_model``.
- ``schema_migrations``: applied schema versions.

All access goes through one connection guarded by a re-entrant lock; writes are grouped in
:meth:`Catalog.transaction` blocks (one per scan batch).
"""

from __future__ import annotations

import json
import logging
import os
import re
import sqlite3
import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import platformdirs

from .index import ID_DIGEST_MOD, ID_DIGEST_MUL, IdDigest

__all__ = [
    "APP_NAME",
    "SCHEMA_VERSION",
    "Catalog",
    "FileRecord",
    "RootInfo",
    "default_library_dir",
    "path_from_db",
    "path_to_db",
    "phash_from_db",
    "phash_to_db",
    "text_to_db",
]

logger = logging.getLogger(__name__)

APP_NAME = "cukd-image-search"
WATCH_MODES = ("native", "polling", "off")
FILE_STATUSES = ("ok", "error", "pending")

_V1 = """
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE roots (
    id INTEGER PRIMARY KEY,
    path TEXT NOT NULL UNIQUE,
    online INTEGER NOT NULL DEFAULT 1,
    watch_mode TEXT NOT NULL DEFAULT 'native',
    excludes TEXT NOT NULL DEFAULT '[]',
    added_at REAL NOT NULL,
    last_scan REAL
);
CREATE TABLE files (
    id INTEGER PRIMARY KEY,
    root_id INTEGER NOT NULL REFERENCES roots(id) ON DELETE CASCADE,
    path TEXT NOT NULL UNIQUE,
    size INTEGER NOT NULL,
    mtime_ns INTEGER NOT NULL,
    fingerprint TEXT,
    phash INTEGER,
    width INTEGER,
    height INTEGER,
    status TEXT NOT NULL DEFAULT 'pending',
    error TEXT,
    updated_at REAL NOT NULL
);
CREATE INDEX files_root ON files(root_id);
CREATE INDEX files_fingerprint ON files(fingerprint);
CREATE INDEX files_status ON files(status);
CREATE TABLE models (
    model_id TEXT PRIMARY KEY,
    n_bits INTEGER NOT NULL,
    embed_dim INTEGER NOT NULL,
    created_at REAL NOT NULL
);
CREATE TABLE codes (
    file_id INTEGER NOT NULL REFERENCES files(id) ON DELETE CASCADE,
    model_id TEXT NOT NULL REFERENCES models(model_id) ON DELETE CASCADE,
    code BLOB NOT NULL,
    embedding BLOB NOT NULL,
    PRIMARY KEY (file_id, model_id)
) WITHOUT ROWID;
CREATE INDEX codes_model ON codes(model_id);
INSERT INTO meta(key, value) VALUES ('generation', '0');
"""

#: Ordered (version, SQL) pairs; append new versions, never edit applied ones.
# v2: the pHash of each file's mirror image, so mirrored copies match (NULL until the file is
# next decoded: changed, or re-encoded for a new model).
_V2 = "ALTER TABLE files ADD COLUMN mirror_phash INTEGER"
# v3: whether a file's visible content is flat (blank, one colour: core.imageio.is_flat), so
# it is never taken for a copy of another flat file on its pHash or embedding. NULL until the
# file is next decoded (files that may have transparency are decoded once more: see the
# scanner).
_V3 = "ALTER TABLE files ADD COLUMN flat INTEGER"
MIGRATIONS: tuple[tuple[int, str], ...] = ((1, _V1), (2, _V2), (3, _V3))
SCHEMA_VERSION = MIGRATIONS[-1][0]


def default_library_dir(name: str = "default") -> Path:
    """Per-user data folder of the library called ``name`` (platformdirs)."""
    return Path(platformdirs.user_data_dir(APP_NAME, appauthor=False)) / "libraries" / name


def phash_to_db(value: int | None) -> int | None:
    """Unsigned 64-bit hash → signed SQLite INTEGER."""
    if value is None:
        return None
    return value - (1 << 64) if value >= (1 << 63) else value


def _flag_to_db(value: bool | None) -> int | None:
    return None if value is None else int(bool(value))


def phash_from_db(value: int | None) -> int | None:
    """Signed SQLite INTEGER → unsigned 64-bit hash."""
    if value is None:
        return None
    return value + (1 << 64) if value < 0 else value


_SURROGATE = re.compile("[\ud800-\udfff]")
_ESCAPED = re.compile("//([0-9a-f]{4})")


def path_to_db(path: str) -> str:
    """A path as catalog text, reversibly.

    File names that are not valid UTF-8 (a Latin-1 ``caf\\xe9.jpg`` from an old camera) reach
    Python as lone surrogates, which SQLite text cannot hold. Each becomes ``//`` and four hex
    digits: a normalised path never contains ``//``, so no real name is changed or collides.
    """
    return _SURROGATE.sub(lambda m: f"//{ord(m.group()):04x}", path)


def path_from_db(text: str) -> str:
    """Inverse of :func:`path_to_db`: the path as the operating system gave it."""
    return _ESCAPED.sub(lambda m: chr(int(m.group(1), 16)), text) if "//" in text else text


def text_to_db(text: str | None) -> str | None:
    """Free text (an error message that may quote a path) made storable; lossy, for display."""
    if text is None:
        return None
    return text.encode("utf-8", "surrogateescape").decode("utf-8", "replace")


def _refuse_emptied(path: Path) -> None:
    """SQLite takes an empty file for a new database: for a catalog emptied by a crash, a full
    disk or another program, that would silently forget every folder and photo. Its index
    files beside it give it away."""
    if path.is_file() and path.stat().st_size == 0 and any(
            p.suffix in (".cukdidx", ".cukdemb") for p in path.parent.iterdir()):
        from .errors import REPAIR_HINT, LibraryError

        raise LibraryError(
            f"The library catalog {path} is empty although the library has index files: it "
            f"was emptied (a crash, a full disk or another program). "
            f"{REPAIR_HINT.format(dir=path.parent)}.")


@dataclass(frozen=True)
class RootInfo:
    """A folder in the library."""

    id: int
    path: str
    online: bool
    watch_mode: str
    excludes: tuple[str, ...]
    last_scan: float | None


@dataclass(frozen=True)
class FileRecord:
    """A file row (without its code). ``phash`` and ``mirror_phash`` (the pHash of the mirror
    image) are unsigned; ``mtime_ns`` from ``os.stat``; ``flat``: the picture is blank or one
    colour (``None``: not known, decoded before catalog schema 3)."""

    id: int
    root_id: int
    path: str
    size: int
    mtime_ns: int
    fingerprint: str | None
    phash: int | None
    width: int | None
    height: int | None
    status: str
    error: str | None
    mirror_phash: int | None = None
    flat: bool | None = None


_FILE_COLS = (
    "id, root_id, path, size, mtime_ns, fingerprint, phash, width, height, status, error, "
    "mirror_phash, flat"
)
_N_FILE_COLS = len(_FILE_COLS.split(","))


def _file(row: Sequence) -> FileRecord:
    return FileRecord(
        id=row[0], root_id=row[1], path=path_from_db(row[2]), size=row[3], mtime_ns=row[4],
        fingerprint=row[5], phash=phash_from_db(row[6]), width=row[7], height=row[8],
        status=row[9], error=row[10], mirror_phash=phash_from_db(row[11]),
        flat=None if row[12] is None else bool(row[12]),
    )


def _root(row: Sequence) -> RootInfo:
    return RootInfo(
        id=row[0], path=path_from_db(row[1]), online=bool(row[2]), watch_mode=row[3],
        excludes=tuple(json.loads(row[4])), last_scan=row[5],
    )


class Catalog:
    """The library's SQLite catalog.

    Args:
        path: SQLite file; its folder is created. Use :func:`default_library_dir` for the
            per-user default.
        timeout_s: how long to wait for another process's write lock.
    """

    def __init__(self, path: str | os.PathLike[str], timeout_s: float = 30.0) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        _refuse_emptied(self.path)
        self._lock = threading.RLock()
        self._depth = 0
        self._reading = False
        self._conn = sqlite3.connect(
            self.path, timeout=timeout_s, isolation_level=None, check_same_thread=False
        )
        self._conn.execute("PRAGMA journal_mode=WAL")
        self._conn.execute("PRAGMA synchronous=NORMAL")
        self._conn.execute("PRAGMA foreign_keys=ON")
        self._migrate()

    # ----------------------------------------------------------------- lifecycle
    def close(self) -> None:
        """Close the connection (checkpointing the WAL)."""
        with self._lock:
            self._conn.close()

    def __enter__(self) -> Catalog:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _migrate(self) -> None:
        with self._lock:
            c = self._conn
            c.execute(
                "CREATE TABLE IF NOT EXISTS schema_migrations "
                "(version INTEGER PRIMARY KEY, applied_at REAL NOT NULL)"
            )
            done = {r[0] for r in c.execute("SELECT version FROM schema_migrations")}
            if done and max(done) > SCHEMA_VERSION:
                raise RuntimeError(
                    f"{self.path}: catalog schema {max(done)} is newer than this program "
                    f"({SCHEMA_VERSION})"
                )
            for version, sql in MIGRATIONS:
                if version in done:
                    continue
                c.execute("BEGIN IMMEDIATE")
                try:
                    if c.execute("SELECT 1 FROM schema_migrations WHERE version = ?",
                                 (version,)).fetchone():  # another process was first
                        c.execute("COMMIT")
                        continue
                    logger.info("migrating catalog %s to schema %d", self.path, version)
                    for stmt in sql.split(";"):
                        if stmt.strip():
                            c.execute(stmt)
                    c.execute(
                        "INSERT INTO schema_migrations(version, applied_at) VALUES (?, ?)",
                        (version, time.time()),
                    )
                    c.execute("COMMIT")
                except BaseException:
                    c.execute("ROLLBACK")
                    raise

    @property
    def schema_version(self) -> int:
        """Highest applied schema version."""
        with self._lock:
            return self._conn.execute("SELECT MAX(version) FROM schema_migrations").fetchone()[0]

    @contextmanager
    def transaction(self) -> Iterator[None]:
        """Group writes into one atomic commit that also bumps ``generation``.

        Re-entrant: nested blocks join the outer transaction.
        """
        with self._lock:
            if self._depth:
                self._depth += 1
                try:
                    yield
                finally:
                    self._depth -= 1
                return
            if self._reading:
                raise RuntimeError("catalog write inside a read snapshot")
            self._conn.execute("BEGIN IMMEDIATE")
            self._depth = 1
            try:
                yield
                self._conn.execute(
                    "UPDATE meta SET value = CAST(value AS INTEGER) + 1 WHERE key = 'generation'"
                )
                self._conn.execute("COMMIT")
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
            finally:
                self._depth = 0

    def _q(self, sql: str, params: Sequence | dict = ()) -> list[tuple]:
        with self._lock:
            return self._conn.execute(sql, params).fetchall()

    def _w(self, sql: str, params: Sequence | dict = ()) -> sqlite3.Cursor:
        with self._lock, self.transaction():
            return self._conn.execute(sql, params)

    # ----------------------------------------------------------------- meta
    def get_meta(self, key: str, default: str | None = None) -> str | None:
        """Value of a meta key."""
        rows = self._q("SELECT value FROM meta WHERE key = ?", (key,))
        return rows[0][0] if rows else default

    def set_meta(self, key: str, value: str) -> None:
        """Set a meta key."""
        self._w("INSERT OR REPLACE INTO meta(key, value) VALUES (?, ?)", (key, value))

    @property
    def generation(self) -> int:
        """Counter bumped by every committed transaction."""
        return int(self.get_meta("generation", "0") or 0)

    @property
    def active_model(self) -> str | None:
        """Model whose codes answer searches."""
        return self.get_meta("active_model")

    def set_active_model(self, model_id: str) -> None:
        """Make ``model_id`` the model searches use."""
        self.set_meta("active_model", model_id)

    # ----------------------------------------------------------------- roots
    def add_root(
        self, path: str | os.PathLike[str], watch_mode: str = "native",
        excludes: Iterable[str] = (),
    ) -> RootInfo:
        """Add a folder (absolute, resolved); returns the existing root if already added.

        Raises:
            ValueError: for an unknown watch mode or a folder nested in/around another root.
        """
        if watch_mode not in WATCH_MODES:
            raise ValueError(f"watch_mode must be one of {WATCH_MODES}, got {watch_mode!r}")
        p = os.path.normpath(os.path.abspath(os.fspath(path)))
        with self._lock:
            for r in self.roots():
                if r.path == p:
                    return r
                if p.startswith(r.path.rstrip(os.sep) + os.sep) or r.path.startswith(
                    p.rstrip(os.sep) + os.sep
                ):
                    raise ValueError(f"{p} overlaps the library folder {r.path}")
            self._w(
                "INSERT INTO roots(path, online, watch_mode, excludes, added_at) "
                "VALUES (?, 1, ?, ?, ?)",
                (path_to_db(p), watch_mode, json.dumps(list(excludes)), time.time()),
            )
            return self.root_by_path(p)  # type: ignore[return-value]

    def remove_root(self, root_id: int) -> list[int]:
        """Forget a folder and all its files; returns the removed file ids."""
        with self._lock, self.transaction():
            ids = [r[0] for r in self._q("SELECT id FROM files WHERE root_id = ?", (root_id,))]
            self._conn.execute("DELETE FROM roots WHERE id = ?", (root_id,))
            return ids

    def roots(self) -> list[RootInfo]:
        """All roots, by id."""
        return [_root(r) for r in self._q(
            "SELECT id, path, online, watch_mode, excludes, last_scan FROM roots ORDER BY id")]

    def root(self, root_id: int) -> RootInfo | None:
        """A root by id."""
        rows = self._q(
            "SELECT id, path, online, watch_mode, excludes, last_scan FROM roots WHERE id = ?",
            (root_id,),
        )
        return _root(rows[0]) if rows else None

    def root_by_path(self, path: str | os.PathLike[str]) -> RootInfo | None:
        """A root by its folder."""
        p = os.path.normpath(os.path.abspath(os.fspath(path)))
        rows = self._q(
            "SELECT id, path, online, watch_mode, excludes, last_scan FROM roots WHERE path = ?",
            (path_to_db(p),),
        )
        return _root(rows[0]) if rows else None

    def root_for_path(self, path: str | os.PathLike[str]) -> RootInfo | None:
        """The root containing ``path`` (or equal to it), if any."""
        p = os.path.normpath(os.path.abspath(os.fspath(path)))
        for r in self.roots():
            if p == r.path or p.startswith(r.path.rstrip(os.sep) + os.sep):
                return r
        return None

    def set_root_online(self, root_id: int, online: bool) -> None:
        """Mark a root online or offline (its files are kept either way)."""
        self._w("UPDATE roots SET online = ? WHERE id = ?", (int(online), root_id))

    def set_root_options(
        self, root_id: int, *, watch_mode: str | None = None,
        excludes: Iterable[str] | None = None,
    ) -> None:
        """Change a root's watch mode and/or exclusion patterns."""
        if watch_mode is not None:
            if watch_mode not in WATCH_MODES:
                raise ValueError(f"watch_mode must be one of {WATCH_MODES}")
            self._w("UPDATE roots SET watch_mode = ? WHERE id = ?", (watch_mode, root_id))
        if excludes is not None:
            self._w("UPDATE roots SET excludes = ? WHERE id = ?",
                    (json.dumps(list(excludes)), root_id))

    def mark_root_scanned(self, root_id: int, when: float | None = None) -> None:
        """Record the end of a complete scan of a root."""
        self._w("UPDATE roots SET last_scan = ? WHERE id = ?", (when or time.time(), root_id))

    # ----------------------------------------------------------------- models
    def ensure_model(self, model_id: str, n_bits: int, embed_dim: int) -> None:
        """Register a model's sizes (no-op if known with the same sizes).

        Raises:
            ValueError: if ``model_id`` is known with other sizes.
        """
        rows = self._q("SELECT n_bits, embed_dim FROM models WHERE model_id = ?", (model_id,))
        if rows:
            if tuple(rows[0]) != (n_bits, embed_dim):
                raise ValueError(
                    f"model {model_id!r} is registered as {rows[0]}, not {(n_bits, embed_dim)}"
                )
            return
        self._w("INSERT INTO models(model_id, n_bits, embed_dim, created_at) VALUES (?,?,?,?)",
                (model_id, n_bits, embed_dim, time.time()))

    def model_sizes(self, model_id: str) -> tuple[int, int] | None:
        """``(n_bits, embed_dim)`` of a registered model."""
        rows = self._q("SELECT n_bits, embed_dim FROM models WHERE model_id = ?", (model_id,))
        return (rows[0][0], rows[0][1]) if rows else None

    def drop_model(self, model_id: str) -> None:
        """Delete a model and all its codes."""
        self._w("DELETE FROM models WHERE model_id = ?", (model_id,))

    def models(self) -> list[str]:
        """Registered model ids."""
        return [r[0] for r in self._q("SELECT model_id FROM models ORDER BY created_at")]

    # ----------------------------------------------------------------- files: reads
    def get_file(self, file_id: int) -> FileRecord | None:
        """A file by row id."""
        rows = self._q(f"SELECT {_FILE_COLS} FROM files WHERE id = ?", (file_id,))
        return _file(rows[0]) if rows else None

    def get_file_by_path(self, path: str | os.PathLike[str]) -> FileRecord | None:
        """A file by absolute path."""
        p = os.path.normpath(os.path.abspath(os.fspath(path)))
        rows = self._q(f"SELECT {_FILE_COLS} FROM files WHERE path = ?", (path_to_db(p),))
        return _file(rows[0]) if rows else None

    def files_in_scope(
        self, root_id: int, prefix: str | None = None, model_id: str | None = None
    ) -> dict[str, tuple[FileRecord, bool]]:
        """Files of a root (optionally only ``prefix`` itself or below it).

        Returns:
            ``{path: (record, has_code_for_model_id)}``.
        """
        sql = (f"SELECT {', '.join('f.' + c.strip() for c in _FILE_COLS.split(','))}, "
               "c.file_id IS NOT NULL FROM files f "
               "LEFT JOIN codes c ON c.file_id = f.id AND c.model_id = ? WHERE f.root_id = ?")
        params: list = [model_id or "", root_id]
        if prefix is not None:
            p = prefix.rstrip(os.sep)
            sql += " AND (f.path = ? OR substr(f.path, 1, ?) = ?)"
            p = path_to_db(p)
            params += [p, len(p) + 1, p + os.sep]
        out: dict[str, tuple[FileRecord, bool]] = {}
        for r in self._q(sql, params):
            f = _file(r)
            out[f.path] = (f, bool(r[_N_FILE_COLS]))
        return out

    def files_by_fingerprint(self, fingerprint: str) -> list[FileRecord]:
        """Files whose content fingerprint equals ``fingerprint``."""
        return [_file(r) for r in self._q(
            f"SELECT {_FILE_COLS} FROM files WHERE fingerprint = ?", (fingerprint,))]

    def files_missing_code(
        self, model_id: str, limit: int | None = None, root_ids: Sequence[int] | None = None
    ) -> list[FileRecord]:
        """``ok`` files of online roots that have no code for ``model_id``."""
        sql = (f"SELECT {', '.join('f.' + c.strip() for c in _FILE_COLS.split(','))} "
               "FROM files f JOIN roots r ON r.id = f.root_id "
               "LEFT JOIN codes c ON c.file_id = f.id AND c.model_id = ? "
               "WHERE f.status = 'ok' AND c.file_id IS NULL AND r.online = 1")
        params: list = [model_id]
        if root_ids is not None:
            sql += f" AND f.root_id IN ({','.join('?' * len(root_ids))})"
            params += list(root_ids)
        sql += " ORDER BY f.id"
        if limit is not None:
            sql += f" LIMIT {int(limit)}"
        return [_file(r) for r in self._q(sql, params)]

    def count_files(self, status: str | None = None) -> int:
        """Number of file rows (of a status)."""
        if status is None:
            return self._q("SELECT COUNT(*) FROM files")[0][0]
        return self._q("SELECT COUNT(*) FROM files WHERE status = ?", (status,))[0][0]

    def count_files_by_root(self) -> dict[int, dict[str, int]]:
        """``{root id: {status: number of file rows}}`` (folders without files are absent)."""
        out: dict[int, dict[str, int]] = {}
        for root_id, status, n in self._q(
                "SELECT root_id, status, COUNT(*) FROM files GROUP BY root_id, status"):
            out.setdefault(root_id, {})[status] = n
        return out

    def count_phashes(self) -> int:
        """Number of ``ok`` files with a pHash."""
        return self._q(
            "SELECT COUNT(*) FROM files WHERE status = 'ok' AND phash IS NOT NULL")[0][0]

    def count_codes(self, model_id: str) -> int:
        """Number of files with a code for ``model_id``."""
        return self._q("SELECT COUNT(*) FROM codes WHERE model_id = ?", (model_id,))[0][0]

    def errors(self, limit: int = 1000) -> list[FileRecord]:
        """Files that failed to decode."""
        return [_file(r) for r in self._q(
            f"SELECT {_FILE_COLS} FROM files WHERE status = 'error' ORDER BY path LIMIT ?",
            (limit,))]

    def iter_codes(
        self, model_id: str, chunk: int = 65536
    ) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """All codes of a model, in chunks of ``(ids int64 [n], codes uint8 [n, n_bits//8])``."""
        return self._iter_column(model_id, "code", np.uint8, chunk)

    def iter_embeddings(
        self, model_id: str, chunk: int = 32768
    ) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """All embeddings of a model, in chunks of ``(ids int64 [n], float16 [n, d])``."""
        return self._iter_column(model_id, "embedding", np.float16, chunk)

    def _iter_column(
        self, model_id: str, column: str, dtype: type, chunk: int
    ) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """A blob column of ``codes`` for one model, by file id, in keyset-paged chunks."""
        last = -1
        while True:
            rows = self._q(
                f"SELECT file_id, {column} FROM codes WHERE model_id = ? AND file_id > ? "
                "ORDER BY file_id LIMIT ?", (model_id, last, chunk))
            if not rows:
                return
            ids = np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows))
            vals = np.frombuffer(b"".join(r[1] for r in rows), dtype=dtype).reshape(
                len(rows), -1)
            yield ids, vals
            last = int(ids[-1])

    def all_phashes(self, *, mirror: bool = False) -> tuple[np.ndarray, np.ndarray]:
        """``(ids int64 [n], pHash uint64 [n])`` of every ``ok`` file that has one; with
        ``mirror`` the pHashes of the files' mirror images."""
        col = "mirror_phash" if mirror else "phash"
        rows = self._q(f"SELECT id, {col} FROM files WHERE status = 'ok' AND {col} IS NOT NULL "
                       "ORDER BY id")
        ids = np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows))
        ph = np.fromiter((r[1] for r in rows), dtype=np.int64, count=len(rows)).view(np.uint64)
        return ids, ph

    def flat_ids(self) -> set[int]:
        """Ids of the ``ok`` files whose picture is flat (blank or one colour)."""
        return {int(r[0]) for r in self._q(
            "SELECT id FROM files WHERE status = 'ok' AND flat = 1")}

    def all_embeddings(self, model_id: str) -> tuple[np.ndarray, np.ndarray]:
        """``(ids int64 [n], embeddings float32 [n, d])`` of a model, by id."""
        sizes = self.model_sizes(model_id)
        rows = self._q("SELECT file_id, embedding FROM codes WHERE model_id = ? ORDER BY file_id",
                       (model_id,))
        d = sizes[1] if sizes else 0
        ids = np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows))
        emb = np.frombuffer(b"".join(r[1] for r in rows), dtype=np.float16).reshape(len(rows), d)
        return ids, emb.astype(np.float32)

    def fetch_for_ranking(
        self, ids: Sequence[int], model_id: str
    ) -> dict[int, tuple[FileRecord, np.ndarray | None, np.ndarray | None]]:
        """Records, codes and float32 embeddings of the given file ids (missing ids skipped;
        a non-finite embedding comes back as None)."""
        out: dict[int, tuple[FileRecord, np.ndarray | None, np.ndarray | None]] = {}
        ids = [int(i) for i in ids]
        cols = ", ".join("f." + c.strip() for c in _FILE_COLS.split(","))
        for s in range(0, len(ids), 900):
            part = ids[s:s + 900]
            rows = self._q(
                f"SELECT {cols}, c.code, c.embedding FROM files f "
                "LEFT JOIN codes c ON c.file_id = f.id AND c.model_id = ? "
                f"WHERE f.id IN ({','.join('?' * len(part))})", [model_id, *part])
            for r in rows:
                code_blob, emb_blob = r[_N_FILE_COLS], r[_N_FILE_COLS + 1]
                code = np.frombuffer(code_blob, dtype=np.uint8) if code_blob is not None else None
                emb = (np.frombuffer(emb_blob, dtype=np.float16).astype(np.float32)
                       if emb_blob is not None else None)
                if emb is not None and not np.isfinite(emb).all():
                    emb = None  # damaged: the caller re-encodes
                out[r[0]] = (_file(r), code, emb)
        return out

    def get_files(self, ids: Sequence[int]) -> dict[int, FileRecord]:
        """File records by id (missing ids skipped)."""
        out: dict[int, FileRecord] = {}
        ids = [int(i) for i in ids]
        for s in range(0, len(ids), 900):
            part = ids[s:s + 900]
            for r in self._q(f"SELECT {_FILE_COLS} FROM files WHERE id IN "
                             f"({','.join('?' * len(part))})", part):
                out[r[0]] = _file(r)
        return out

    def fetch_embeddings(self, ids: Sequence[int], model_id: str) -> dict[int, np.ndarray]:
        """float32 embeddings of a model for the given file ids (ids without a usable one,
        finite and not all zero, skipped)."""
        out: dict[int, np.ndarray] = {}
        for fid, blob in self.fetch_embedding_blobs(ids, model_id).items():
            emb = np.frombuffer(blob, dtype=np.float16).astype(np.float32)
            if np.isfinite(emb).all() and emb.any():  # a damaged row is no embedding
                out[fid] = emb
        return out

    # ----------------------------------------------------------------- files: writes
    def upsert_file(
        self, *, root_id: int, path: str, size: int, mtime_ns: int,
        fingerprint: str | None, status: str, error: str | None = None,
        phash: int | None = None, width: int | None = None, height: int | None = None,
        mirror_phash: int | None = None, flat: bool | None = None,
    ) -> int:
        """Insert or update the row of ``path`` (keeping its id); returns the row id.

        Codes of an updated row are deleted (its content changed); write new ones with
        :meth:`put_codes` in the same transaction.
        """
        if status not in FILE_STATUSES:
            raise ValueError(f"status must be one of {FILE_STATUSES}")
        with self._lock, self.transaction():
            c = self._conn
            path = path_to_db(path)
            row = c.execute("SELECT id FROM files WHERE path = ?", (path,)).fetchone()
            vals = (root_id, size, mtime_ns, fingerprint, phash_to_db(phash), width, height,
                    status, text_to_db(error), time.time(), phash_to_db(mirror_phash),
                    _flag_to_db(flat))
            if row is None:
                cur = c.execute(
                    "INSERT INTO files(root_id, size, mtime_ns, fingerprint, phash, width, "
                    "height, status, error, updated_at, mirror_phash, flat, path) "
                    "VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)", (*vals, path))
                return int(cur.lastrowid)  # type: ignore[arg-type]
            fid = int(row[0])
            c.execute(
                "UPDATE files SET root_id=?, size=?, mtime_ns=?, fingerprint=?, phash=?, "
                "width=?, height=?, status=?, error=?, updated_at=?, mirror_phash=?, flat=? "
                "WHERE id=?", (*vals, fid))
            c.execute("DELETE FROM codes WHERE file_id = ?", (fid,))
            return fid

    def set_file_decoded(
        self, file_id: int, *, status: str, error: str | None, phash: int | None,
        width: int | None, height: int | None, mirror_phash: int | None = None,
        flat: bool | None = None,
    ) -> None:
        """Update decode results of an unchanged file, keeping its codes."""
        if status not in FILE_STATUSES:
            raise ValueError(f"status must be one of {FILE_STATUSES}")
        self._w("UPDATE files SET status=?, error=?, phash=?, width=?, height=?, updated_at=?, "
                "mirror_phash=?, flat=? WHERE id=?",
                (status, text_to_db(error), phash_to_db(phash), width, height, time.time(),
                 phash_to_db(mirror_phash), _flag_to_db(flat), file_id))

    def move_file(self, file_id: int, new_path: str, root_id: int, mtime_ns: int) -> None:
        """Give a row a new path (a moved/renamed file keeps its id, codes and hashes)."""
        with self._lock, self.transaction():
            self._conn.execute(
                "UPDATE files SET path = ?, root_id = ?, mtime_ns = ?, updated_at = ? "
                "WHERE id = ?", (path_to_db(new_path), root_id, mtime_ns, time.time(), file_id))

    def delete_files(self, ids: Iterable[int]) -> None:
        """Delete file rows (and their codes)."""
        with self._lock, self.transaction():
            self._conn.executemany("DELETE FROM files WHERE id = ?", [(int(i),) for i in ids])

    def put_codes(
        self, model_id: str, ids: Sequence[int], codes: np.ndarray, embeddings: np.ndarray
    ) -> None:
        """Store codes uint8 ``[n, n_bits//8]`` and embeddings ``[n, d]`` (as fp16)."""
        assert len(ids) == len(codes) == len(embeddings), "ids/codes/embeddings length differ"
        emb16 = np.ascontiguousarray(embeddings, dtype=np.float16)
        codes = np.ascontiguousarray(codes, dtype=np.uint8)
        with self._lock, self.transaction():
            self._conn.executemany(
                "INSERT OR REPLACE INTO codes(file_id, model_id, code, embedding) "
                "VALUES (?,?,?,?)",
                [(int(i), model_id, codes[j].tobytes(), emb16[j].tobytes())
                 for j, i in enumerate(ids)])

    # ----------------------------------------------------------------- integrity
    @contextmanager
    def snapshot(self) -> Iterator[None]:
        """Run the reads inside in one read transaction: they all see one committed state
        (so a generation read first matches the rows read after it). Other threads of this
        process wait; other processes' writers do not (WAL). No writes inside."""
        with self._lock:
            if self._depth or self._reading:  # already one state
                yield
                return
            self._conn.execute("BEGIN")
            self._reading = True
            try:
                yield
            finally:
                self._reading = False
                self._conn.execute("COMMIT")

    def code_digest(self, model_id: str) -> IdDigest:
        """:class:`~.index.IdDigest` of the file ids that have a code for ``model_id``."""
        return self._digest("file_id", "codes WHERE model_id = ?", (model_id,))

    def phash_digest(self) -> IdDigest:
        """:class:`~.index.IdDigest` of the ``ok`` files that have a pHash."""
        return self._digest("id", "files WHERE status = 'ok' AND phash IS NOT NULL", ())

    def _digest(self, col: str, source: str, params: Sequence) -> IdDigest:
        m, k = ID_DIGEST_MOD, ID_DIGEST_MUL
        row = self._q(f"SELECT COUNT(*), COALESCE(SUM({col}), 0), "
                      f"COALESCE(SUM((({col} % {m}) * {k}) % {m}), 0), "
                      f"COALESCE(MAX({col}), -1) FROM {source}", params)[0]
        return IdDigest(*(int(v) for v in row))

    def sample_embedding_blobs(
        self, model_id: str, n: int = 32, seed: int | None = None
    ) -> tuple[list[int], list[bytes]]:
        """Up to ``n`` file ids of a model spread over its id range, with their fp16
        embedding bytes (all of them when the model has at most ``n``)."""
        # each an index seek (a COUNT of the whole model would scan it)
        lo = self._q("SELECT MIN(file_id) FROM codes WHERE model_id = ?", (model_id,))[0][0]
        if lo is None:
            return [], []
        hi = self._q("SELECT MAX(file_id) FROM codes WHERE model_id = ?", (model_id,))[0][0]
        few = self._q("SELECT COUNT(*) FROM (SELECT 1 FROM codes WHERE model_id = ? LIMIT ?)",
                      (model_id, n + 1))[0][0]
        if few <= n:
            rows = self._q("SELECT file_id, embedding FROM codes WHERE model_id = ? "
                           "ORDER BY file_id", (model_id,))
        else:
            targets = np.random.default_rng(seed).integers(lo, hi + 1, n).tolist()
            rows = []
            for t in sorted(set(targets)):
                rows += self._q("SELECT file_id, embedding FROM codes WHERE model_id = ? "
                                "AND file_id >= ? ORDER BY file_id LIMIT 1", (model_id, t))
            rows = list(dict(rows).items())
        return [int(r[0]) for r in rows], [bytes(r[1]) for r in rows]

    def fetch_embedding_blobs(self, ids: Sequence[int], model_id: str) -> dict[int, bytes]:
        """fp16 embedding bytes of a model for the given file ids (ids without one skipped)."""
        out: dict[int, bytes] = {}
        ids = [int(i) for i in ids]
        for s in range(0, len(ids), 900):
            part = ids[s:s + 900]
            for fid, blob in self._q(
                    "SELECT file_id, embedding FROM codes WHERE model_id = ? AND file_id IN "
                    f"({','.join('?' * len(part))})", [model_id, *part]):
                out[fid] = bytes(blob)
        return out

    def integrity_problems(self, limit: int = 20) -> list[str]:
        """SQLite's ``integrity_check``: an empty list when the file is sound."""
        rows = self._q(f"PRAGMA integrity_check({int(limit)})")
        msgs = [str(r[0]) for r in rows]
        return [] if msgs == ["ok"] else msgs
