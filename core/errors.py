"""One sentence for the user from any error a command or the app can meet.

The CLI prints it, the app shows it; tracebacks go to the log only. Qt-free.
"""

from __future__ import annotations

import errno
import sqlite3

__all__ = ["user_message"]

_REPAIR = "Run `cukd library repair` (or Library repair in the app) to rebuild it from your photos."


def user_message(exc: BaseException) -> str | None:
    """A clear sentence (with what to do) for a known kind of error, else ``None``.

    Library and model-file errors already carry such a sentence; operating-system and SQLite
    errors are translated. ``None`` means a bug: show a generic sentence and log the
    traceback.
    """
    from core.checkpoint import CheckpointError
    from core.imageio import ImageLoadError
    from core.library.errors import LibraryError

    if isinstance(exc, LibraryError | CheckpointError):
        return str(exc)
    if isinstance(exc, ImageLoadError):
        return f"{exc.path} cannot be read as an image ({exc.reason.replace('_', ' ')})."
    if isinstance(exc, sqlite3.DatabaseError):
        return f"The library catalog is damaged ({exc}). {_REPAIR}"
    if isinstance(exc, OSError):
        where = f" ({exc.filename})" if exc.filename else ""
        if exc.errno in (errno.ENOSPC, errno.EDQUOT):
            return f"The disk is full{where}: free some space and try again."
        if exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
            return f"No permission to write or read{where}: check the folder's permissions."
        if exc.errno == errno.EISDIR:
            return f"A folder stands where a file was expected{where}. {_REPAIR}"
        if exc.errno == errno.ENOENT:
            return f"Not found{where}."
        return f"{exc.strerror or exc}{where}."
    if isinstance(exc, ValueError | KeyError):
        msg = exc.args[0] if isinstance(exc, KeyError) and exc.args else exc
        return str(msg)
    return None
