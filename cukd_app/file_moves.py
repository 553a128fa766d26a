"""The only actions that change a user's folders: move photos to a folder, or to the trash.

They run only when the user asks (Duplicates ▸ Move to folder… / Move to trash…, the
latter after a confirmation). Nothing is ever overwritten and nothing is deleted for good:
a move that meets a file of the same name picks a free name (``name (2).jpg``), and the
trash is the system's own (``QFile.moveToTrash``), from which the user can restore files.
If the system trash cannot take a file, the file stays where it is.
"""

from __future__ import annotations

import errno
import logging
import os
import shutil
from dataclasses import dataclass, field

from PySide6.QtCore import QFile

__all__ = ["MoveOutcome", "TrashOutcome", "free_name", "move_file", "move_files",
           "problem_text", "trash_files"]

logger = logging.getLogger(__name__)


@dataclass
class MoveOutcome:
    """What :func:`move_files` did: ``moved`` ``(from, to)`` pairs, ``renamed`` (the new
    paths whose name had to change), ``already_there`` (files already in the folder, left
    alone) and ``failed`` ``(path, sentence)`` (left where they were)."""

    moved: list[tuple[str, str]] = field(default_factory=list)
    renamed: list[str] = field(default_factory=list)
    already_there: list[str] = field(default_factory=list)
    failed: list[tuple[str, str]] = field(default_factory=list)


@dataclass
class TrashOutcome:
    """What :func:`trash_files` did: ``trashed`` ``(path, where in the trash)`` pairs and
    ``failed`` ``(path, sentence)`` (left where they were)."""

    trashed: list[tuple[str, str]] = field(default_factory=list)
    failed: list[tuple[str, str]] = field(default_factory=list)


def problem_text(exc: OSError) -> str:
    """Why a file could not be moved, as words (no final full stop)."""
    if exc.errno in (errno.ENOENT,):
        return "it is no longer there"
    if exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return "there is no permission to change that folder"
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return "the drive is full"
    return (exc.strerror or str(exc)).rstrip(".").lower()


def free_name(folder: str, name: str, n: int) -> str:
    """The ``n``-th candidate path for ``name`` in ``folder``: ``name``, ``stem (2).ext``…"""
    if n <= 1:
        return os.path.join(folder, name)
    stem, ext = os.path.splitext(name)
    return os.path.join(folder, f"{stem} ({n}){ext}")


def move_file(src: str, folder: str) -> str:
    """Move ``src`` into ``folder`` without ever replacing a file there; returns the new path.

    A hard link makes the new name (it fails if the name is taken, so nothing is
    overwritten even if a file appears meanwhile), then the old name is removed. Where hard
    links are not possible (another drive, FAT), the file is copied into a newly created
    file (exclusive create, same guarantee) and the original removed once the copy is
    complete. On any failure the original stays and a partial copy is removed.

    Raises:
        OSError: the file could not be moved (it is still at ``src``).
    """
    name = os.path.basename(src)
    for n in range(1, 10_000):
        dst = free_name(folder, name, n)
        try:
            os.link(src, dst)
        except FileExistsError:
            continue
        except OSError:
            if not os.path.exists(src):
                raise
            try:
                return _copy_then_remove(src, dst)
            except FileExistsError:
                continue
        try:
            os.unlink(src)
        except OSError:
            os.unlink(dst)  # the file stays where it was, once
            raise
        return dst
    raise FileExistsError(errno.EEXIST, "no free file name", os.path.join(folder, name))


def _copy_then_remove(src: str, dst: str) -> str:
    size = os.path.getsize(src)
    with open(src, "rb") as fin, open(dst, "xb") as fout:  # "x": never an existing file
        try:
            shutil.copyfileobj(fin, fout, 1 << 20)
        except BaseException:
            fout.close()
            os.unlink(dst)
            raise
    try:
        shutil.copystat(src, dst)
        if os.path.getsize(dst) != size:
            raise OSError(errno.EIO, "the copy is incomplete", dst)
        os.unlink(src)
    except BaseException:
        os.unlink(dst)
        raise
    return dst


def move_files(paths: list[str], folder: str) -> MoveOutcome:
    """Move each file into ``folder`` (see :func:`move_file`); never raises for a file."""
    out = MoveOutcome()
    target = os.path.normcase(os.path.realpath(folder))
    for src in paths:
        if os.path.normcase(os.path.realpath(os.path.dirname(src))) == target:
            out.already_there.append(src)
            continue
        try:
            dst = move_file(src, folder)
        except OSError as exc:
            logger.warning("could not move %s to %s: %s", src, folder, exc)
            out.failed.append((src, problem_text(exc)))
            continue
        logger.info("moved %s to %s (asked by the user)", src, dst)
        out.moved.append((src, dst))
        if os.path.basename(dst) != os.path.basename(src):
            out.renamed.append(dst)
    return out


def trash_files(paths: list[str]) -> TrashOutcome:
    """Move each file to the system trash (``QFile.moveToTrash``); a file the trash does not
    take stays where it is. Never deletes anything."""
    out = TrashOutcome()
    for path in paths:
        if not os.path.lexists(path):
            out.failed.append((path, "it is no longer there"))
            continue
        f = QFile(path)
        if f.moveToTrash():
            logger.info("moved %s to the trash at %s (asked by the user)", path, f.fileName())
            out.trashed.append((path, f.fileName()))
        else:
            logger.warning("the trash did not take %s: %s", path, f.errorString())
            out.failed.append((path, "the system trash is not available for it"))
    return out
