"""Library errors: one sentence that says what happened and what to do.

Also the names of the files a library folder holds (the catalog and the writer lock), which
the errors, the repair and the library share.
"""

from __future__ import annotations

import errno
import sqlite3
from pathlib import Path

__all__ = [
    "CATALOG_FILE",
    "LOCK_FILE",
    "REPAIR_HINT",
    "LibraryBusyError",
    "LibraryError",
    "catalog_error",
    "disk_error",
    "is_db_problem",
]

CATALOG_FILE = "catalog.sqlite3"
#: The inter-process writer lock (see core.library.library's docstring).
LOCK_FILE = "library.lock"


class LibraryError(Exception):
    """A library problem the user can act on; ``str()`` says what happened and what to do."""


class LibraryBusyError(LibraryError):
    """Another process holds the library's writer lock.

    Attributes:
        holder: what that process wrote into the lock file (pid, host, program, action,
            since), or None.
    """

    def __init__(self, message: str, holder: dict | None = None) -> None:
        super().__init__(message)
        self.holder = holder




_DAMAGE = ("malformed", "not a database", "file is encrypted", "corrupt", "no such table",
           "no such column")
_FULL = (errno.ENOSPC, errno.EFBIG, getattr(errno, "EDQUOT", errno.ENOSPC))
_DENIED = (errno.EACCES, errno.EPERM, errno.EROFS)
REPAIR_HINT = ("Run `cukd library repair` to recover what it can, or delete the library "
                "folder {dir} and scan your photo folders again")


def catalog_error(directory: Path, exc: sqlite3.Error) -> LibraryError:
    """A :class:`LibraryError` for an SQLite error of the catalog in ``directory``."""
    path = directory / CATALOG_FILE
    msg = str(exc)
    low = msg.lower()
    hint = REPAIR_HINT.format(dir=directory)
    if path.is_dir():
        return LibraryError(f"The library catalog {path} is a folder, not a catalog file. "
                            f"{hint}.")
    if any(k in low for k in _DAMAGE):
        return LibraryError(f"The library catalog {path} is damaged ({msg}). {hint}.")
    if "locked" in low or "busy" in low:
        return LibraryBusyError(f"The library catalog {path} is locked by another program "
                                f"({msg}); try again when it has finished.")
    if "full" in low:
        return LibraryError(f"Could not write the library catalog {path}: the disk is full. "
                            "Free some space and try again.")
    if "i/o" in low:
        return LibraryError(f"Could not read or write the library catalog {path} ({msg}): "
                            "the disk may be full, read-only or disconnected. Free some space "
                            "or reconnect it, then try again.")
    if "readonly" in low or "unable to open" in low:
        return LibraryError(f"Could not open or write the library catalog {path} ({msg}). "
                            f"Check that the folder {directory} is writable and its disk is "
                            "connected.")
    return LibraryError(f"The library catalog {path} failed: {msg}. {hint}.")


def disk_error(directory: Path, exc: OSError, doing: str) -> LibraryError:
    """A :class:`LibraryError` for an OSError while ``doing`` something in ``directory``."""
    if exc.errno in _FULL:
        return LibraryError(f"Could not {doing} in {directory}: the disk is full. Free some "
                            "space and try again (the catalog is intact; the index is "
                            "rebuilt from it if needed).")
    if exc.errno in _DENIED:
        return LibraryError(f"Could not {doing} in {directory}: {exc.strerror or exc}. Make "
                            "the library folder writable, or use another library folder.")
    return LibraryError(f"Could not {doing} in {directory}: {exc.strerror or exc}.")


def is_db_problem(exc: BaseException) -> bool:
    """SQLite errors that come from the file, not from a bug in this program."""
    return isinstance(exc, sqlite3.DatabaseError) and not isinstance(
        exc, sqlite3.IntegrityError | sqlite3.ProgrammingError | sqlite3.NotSupportedError)
