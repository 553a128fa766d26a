"""Check and repair a library folder: SQLite integrity check, recovery of every readable row
into a new catalog (the damaged one kept as ``*.broken``), caches dropped to be rebuilt from
the catalog, stale temp files of killed saves removed. Photo folders are never touched.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import tempfile
from dataclasses import dataclass
from pathlib import Path

from .catalog import SCHEMA_VERSION, Catalog, default_library_dir
from .errors import CATALOG_FILE, LOCK_FILE, LibraryBusyError, LibraryError, disk_error
from .index import move_aside, remove_stale_temps
from .lockfile import FileLock, LockTimeout, describe_holder

__all__ = ["RepairReport", "repair_library"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class RepairReport:
    """What :meth:`Library.repair` found and did.

    Attributes:
        directory: the library folder.
        catalog_problems: what SQLite's integrity check (or opening) reported; empty when
            the catalog was sound.
        recovered: rows copied from a damaged catalog into the new one, by table (empty
            when the catalog was sound and kept).
        moved_aside: damaged files kept as ``*.broken`` for inspection.
        caches_removed: index / embedding files deleted (rebuilt from the catalog on open).
        temps_removed: stale temp files of killed saves that were deleted.
    """

    directory: str
    catalog_problems: tuple[str, ...] = ()
    recovered: tuple[tuple[str, int], ...] = ()
    moved_aside: tuple[str, ...] = ()
    caches_removed: tuple[str, ...] = ()
    temps_removed: int = 0

    @property
    def catalog_ok(self) -> bool:
        """True when the catalog passed the integrity check as it was."""
        return not self.catalog_problems




_RECOVER_TABLES = (("meta", "rowid"), ("roots", "id"), ("models", "rowid"),
                   ("files", "id"), ("codes", "file_id"))


def _catalog_problems(path: Path) -> list[str]:
    """Why ``path`` is not a sound catalog (empty: it is)."""
    if path.is_dir():
        return [f"{path.name} is a folder"]
    conn = None
    try:
        conn = sqlite3.connect(f"file:{path}?mode=rw", uri=True, timeout=5.0)
        rows = conn.execute("PRAGMA integrity_check(20)").fetchall()
        msgs = [str(r[0]) for r in rows]
        if msgs != ["ok"]:
            return msgs
        names = {r[0] for r in conn.execute("SELECT name FROM sqlite_master")}
        missing = {"meta", "roots", "files", "codes", "models", "schema_migrations"} - names
        if missing:
            return [f"tables missing: {', '.join(sorted(missing))}"]
        newest = conn.execute("SELECT MAX(version) FROM schema_migrations").fetchone()[0]
        if newest is not None and newest > SCHEMA_VERSION:
            raise LibraryError(f"The library catalog {path} was made by a newer version of "
                               f"this program (schema {newest}); update the program instead "
                               "of repairing.")
        return []
    except sqlite3.DatabaseError as exc:
        return [str(exc)]
    finally:
        if conn is not None:
            conn.close()


def _copy_rows(conn: sqlite3.Connection, table: str, key: str) -> int:
    """Copy the readable rows of ``old.table`` into ``main.table``; returns how many."""
    try:
        old_cols = [r[1] for r in conn.execute(f"PRAGMA old.table_info({table})")]
    except sqlite3.DatabaseError:
        return 0
    new_cols = [r[1] for r in conn.execute(f"PRAGMA main.table_info({table})")]
    cols = ", ".join(c for c in new_cols if c in old_cols)
    if not cols:
        return 0
    where = "WHERE key != 'generation'" if table == "meta" else ""
    before = conn.execute(f"SELECT COUNT(*) FROM main.{table}").fetchone()[0]
    try:
        conn.execute(f"INSERT OR IGNORE INTO main.{table}({cols}) SELECT {cols} "
                     f"FROM old.{table} {where}")
    except sqlite3.DatabaseError:  # damaged pages: copy key ranges around them
        try:
            conn.execute(f"SELECT 1 FROM old.{table} LIMIT 1").fetchall()
        except sqlite3.DatabaseError:
            return 0  # its root page is unreadable: nothing of it can be reached
        try:
            hi = int(conn.execute(f"SELECT MAX({key}) FROM old.{table}").fetchone()[0] or 0)
        except sqlite3.DatabaseError:
            hi = 1 << 20
        extra = "AND key != 'generation'" if table == "meta" else ""
        sql = (f"INSERT OR IGNORE INTO main.{table}({cols}) SELECT {cols} FROM "
               f"old.{table} WHERE {key} BETWEEN ? AND ? {extra}")
        budget = [20_000]  # failed reads before giving up on the table

        def copy(lo: int, hi: int) -> None:
            try:
                conn.execute(sql, (lo, hi))
            except sqlite3.DatabaseError:
                budget[0] -= 1
                if lo < hi and budget[0] > 0:  # halve the range around the damage
                    mid = (lo + hi) // 2
                    copy(lo, mid)
                    copy(mid + 1, hi)

        for lo in range(0, hi + 1, 256):
            if budget[0] <= 0:
                break
            copy(lo, min(lo + 255, hi))
    return conn.execute(f"SELECT COUNT(*) FROM main.{table}").fetchone()[0] - before


def _recover_catalog(path: Path) -> tuple[Path, dict[str, int]]:
    """Build a new catalog next to ``path`` from the rows of ``path`` that can be read."""
    fd, name = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
    os.close(fd)
    os.unlink(name)
    tmp = Path(name)
    Catalog(tmp).close()  # current schema
    counts: dict[str, int] = {}
    conn = sqlite3.connect(tmp, isolation_level=None)
    try:
        conn.execute("PRAGMA foreign_keys=OFF")
        conn.execute("PRAGMA synchronous=OFF")  # a temp file until the final rename
        old_gen = 0
        attached = False
        if not path.is_dir():
            try:
                conn.execute("ATTACH DATABASE ? AS old", (str(path),))
                attached = True
            except sqlite3.DatabaseError as exc:
                logger.warning("cannot read %s at all: %s", path, exc)
        if attached:
            try:
                row = conn.execute(
                    "SELECT value FROM old.meta WHERE key = 'generation'").fetchone()
                old_gen = int(row[0]) if row else 0
            except (sqlite3.DatabaseError, ValueError):
                old_gen = 0
            for table, key in _RECOVER_TABLES:  # autocommit: damage aborts one statement
                counts[table] = _copy_rows(conn, table, key)
            # rows whose parent was lost go too
            conn.execute("DELETE FROM files WHERE root_id NOT IN (SELECT id FROM roots)")
            conn.execute("DELETE FROM codes WHERE file_id NOT IN (SELECT id FROM files) "
                         "OR model_id NOT IN (SELECT model_id FROM models)")
            for table in ("roots", "files", "codes"):
                counts[table] = conn.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0]
            conn.execute("DETACH DATABASE old")
        # a generation no earlier reader of the old file has seen
        conn.execute("UPDATE meta SET value = ? WHERE key = 'generation'",
                     (str(old_gen + 1_000_000),))
        conn.execute("PRAGMA journal_mode=DELETE")
    finally:
        conn.close()
    return tmp, counts


def _repair_locked(d: Path) -> RepairReport:
    """:meth:`Library.repair` with the writer lock held."""
    temps = remove_stale_temps(d)
    cat = d / CATALOG_FILE
    problems: list[str] = []
    moved: list[str] = []
    recovered: dict[str, int] = {}
    if cat.exists() or cat.is_symlink():
        problems = _catalog_problems(cat)
    if problems:
        logger.warning("catalog %s is damaged (%s); recovering what can be read", cat,
                       "; ".join(problems[:3]))
        tmp, recovered = _recover_catalog(cat)
        target = move_aside(cat, "is damaged")
        moved.append(str(target))
        for suffix in ("-wal", "-shm", "-journal"):
            side = cat.with_name(cat.name + suffix)
            if side.exists():
                os.replace(side, target.with_name(target.name + suffix))
                moved.append(str(target) + suffix)
        os.replace(tmp, cat)
    removed = []
    for p in sorted(d.iterdir()):
        if p.suffix in (".cukdidx", ".cukdemb"):
            if p.is_dir() and not p.is_symlink():
                moved.append(str(move_aside(p)))
            else:
                p.unlink()
                removed.append(p.name)
    logger.info("repaired library %s: catalog %s, %d cache file(s) removed", d,
                "recovered" if problems else "sound", len(removed))
    return RepairReport(directory=str(d), catalog_problems=tuple(problems),
                        recovered=tuple(recovered.items()), moved_aside=tuple(moved),
                        caches_removed=tuple(removed), temps_removed=len(temps))


def repair_library(
    directory: str | os.PathLike[str] | None, *, lock_timeout_s: float = 60.0,
) -> RepairReport:
    """Check and repair a library folder; the library need not open (close it first).

    Runs SQLite's integrity check on the catalog. A damaged catalog (or a file that is
    no catalog) is moved aside as ``catalog.sqlite3.broken`` and replaced by a new one
    holding every row that could still be read (folders, files, codes). Then deletes the
    index and embedding files and stale temp files: the next open rebuilds them from the
    catalog, the next scan re-encodes whatever was lost. Photo folders are never touched.

    Args:
        directory: the library folder (``None``: the per-user default).
        lock_timeout_s: how long to wait for another process's write.

    Raises:
        LibraryError: no library there, another process keeps writing, or the catalog
            was made by a newer version of this program.
    """
    d = Path(directory) if directory is not None else default_library_dir()
    if not d.is_dir():
        raise LibraryError(f"There is no library folder at {d}.")
    lock_path = d / LOCK_FILE
    if lock_path.is_dir() and not lock_path.is_symlink():
        move_aside(lock_path)
    lock = FileLock(lock_path)
    try:
        lock.acquire("repairing the library", lock_timeout_s)
    except LockTimeout as exc:
        lock.close()
        raise LibraryBusyError(
            f"Cannot repair {d} now: {describe_holder(exc.holder)} is using it. Stop it "
            "and try again.", exc.holder) from None
    try:
        return _repair_locked(d)
    except OSError as exc:
        raise disk_error(d, exc, "repair the library") from exc
    finally:
        lock.close()
