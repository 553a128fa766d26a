"""One sentence for the user from any error a command or the app can meet.

The CLI prints it, the app shows it; tracebacks go to the log only. Qt-free.
"""

from __future__ import annotations

import errno
import pickle
import re
import sqlite3

__all__ = ["image_problem", "image_problem_label", "stored_problem", "user_message"]

_REPAIR = "Run `cukd library repair` (or Library repair in the app) to rebuild it from your photos."

#: ``ImageLoadError.reason`` (and the scanner's ``encode_failed``) → (short label for a list
#: row, the sentence that explains it).
_IMAGE_PROBLEMS = {
    "empty": ("Empty file", "The file is empty (0 bytes)"),
    "truncated": ("Incomplete file", "The image file is incomplete (it was cut off)"),
    "corrupt": ("Damaged image", "The image data is damaged"),
    "not_an_image": ("Not an image", "The file is not an image this program can read"),
    "too_large": ("Too large", "The image is too large to open safely"),
    "unreadable": ("Cannot be read",
                   "The file could not be read (it was moved, or permission is missing)"),
    "encode_failed": ("Not indexed yet",
                      "The model failed on this photo; it is tried again at the next scan"),
}

#: Text of PyTorch's loader (its ``weights_only`` essay, pickle errors): never for users.
_TORCH_LOADER = ("weights_only", "unpickl", "pickle", "torch.load", "global ")


def image_problem(reason: str) -> str:
    """The sentence (without the final full stop) for an image file's failure ``reason``."""
    return _IMAGE_PROBLEMS.get(reason, ("", "The file could not be indexed"))[1]


def image_problem_label(reason: str) -> str:
    """A short label for a failure ``reason`` (a row in the folder list)."""
    return _IMAGE_PROBLEMS.get(reason, ("Could not be indexed", ""))[0]


def stored_problem(error: str) -> str:
    """The failure ``reason`` of an error as the catalog stores it (``"truncated: image
    file is truncated (8 bytes not processed)"`` → ``"truncated"``)."""
    return error.split(":", 1)[0].strip()


def _sentence(text: str) -> str:
    text = text.strip()
    return text if text.endswith((".", "!", "?")) else text + "."


def _model_file_message(text: str) -> str:
    """A model-file error as a sentence; PyTorch's own loader text is replaced."""
    first = text.strip().splitlines()[0] if text.strip() else ""
    if any(k in text.lower() for k in _TORCH_LOADER) or len(first) > 400:
        m = re.match(r"(.+?) is not a CUKD model file", first)
        what = m.group(1) if m else "This file"
        return f"{what} is not a CUKD model file (it could not be read as one)."
    return _sentence(first)


def user_message(exc: BaseException) -> str | None:
    """A clear sentence (with what to do) for a known kind of error, else ``None``.

    Library and model-file errors already carry such a sentence; operating-system and SQLite
    errors are translated. ``None`` means a bug: show a generic sentence and log the
    traceback.
    """
    from core.checkpoint import CheckpointError
    from core.imageio import ImageLoadError
    from core.library.errors import LibraryError

    if isinstance(exc, CheckpointError):
        return _model_file_message(str(exc))
    if isinstance(exc, pickle.UnpicklingError) or (
            isinstance(exc, RuntimeError) and "weights_only" in str(exc)):
        return _model_file_message(str(exc))  # a model file read without load_model_file
    if isinstance(exc, LibraryError):
        return str(exc)
    if isinstance(exc, ImageLoadError):
        return f"{exc.path} cannot be read as an image. {image_problem(exc.reason)}."
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
