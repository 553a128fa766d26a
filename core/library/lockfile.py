"""One writer at a time across processes: an advisory lock file in the library folder.

``fcntl.flock`` on POSIX, ``msvcrt.locking`` on Windows. The operating system drops the lock
when its holder exits or is killed, so a crash never leaves a stale lock behind. While held,
the file says who holds it (pid, host, program, what it is doing, since when), so a process
that cannot get the lock can tell the user which program to wait for or stop.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import socket
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

__all__ = ["FileLock", "LockTimeout", "describe_holder"]

logger = logging.getLogger(__name__)

if os.name == "nt":  # pragma: no cover - exercised on Windows only
    import msvcrt

    #: Windows locks are mandatory for the locked bytes: lock one byte far past the holder
    #: description so that others can still read it.
    _WIN_OFFSET = 1 << 30

    def _try_lock(fd: int) -> bool:
        os.lseek(fd, _WIN_OFFSET, os.SEEK_SET)
        try:
            msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)
        except OSError:
            return False
        return True

    def _unlock(fd: int) -> None:
        os.lseek(fd, _WIN_OFFSET, os.SEEK_SET)
        msvcrt.locking(fd, msvcrt.LK_UNLCK, 1)
else:
    import fcntl

    def _try_lock(fd: int) -> bool:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        return True

    def _unlock(fd: int) -> None:
        fcntl.flock(fd, fcntl.LOCK_UN)


class LockTimeout(Exception):
    """The lock stayed held by another process for the whole wait.

    Attributes:
        holder: what the holder wrote into the lock file (may be ``None`` if unreadable).
        waited_s: seconds waited.
    """

    def __init__(self, path: Path, holder: dict | None, waited_s: float) -> None:
        super().__init__(f"{path} is held by {describe_holder(holder)}")
        self.path = path
        self.holder = holder
        self.waited_s = waited_s


def _program() -> str:
    argv = list(sys.argv) or [""]
    first = argv[0]
    if first in ("", "-c", "-m"):
        head = [Path(sys.executable).name, *([first] if first else [])]
    else:
        head = [Path(first).name]
    return " ".join(head + argv[1:])[:300]


def describe_holder(holder: dict | None) -> str:
    """A holder record as words: ``pid 123 on host (`cukd library watch`, scanning, since
    14:02:11)``."""
    if not holder:
        return "another program (it did not say which)"
    since = holder.get("since")
    when = time.strftime("%H:%M:%S", time.localtime(since)) if isinstance(since, (int, float)) \
        else "?"
    parts = [f"`{holder.get('program', '?')}`"]
    if holder.get("action"):
        parts.append(str(holder["action"]))
    parts.append(f"since {when}")
    return f"pid {holder.get('pid', '?')} on {holder.get('host', '?')} ({', '.join(parts)})"


class FileLock:
    """An exclusive inter-process lock on ``path``, re-entrant for its owner.

    Two :class:`FileLock` objects on one path exclude each other even inside one process
    (each opens its own file description). Callers serialise their own threads; the count
    only makes nested holds by the same owner cheap.

    Args:
        path: the lock file (created on first use; its folder must exist).
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self._fd: int | None = None
        self._count = 0
        self._mutex = threading.Lock()

    @property
    def held(self) -> bool:
        """True while this object holds the lock."""
        return self._count > 0

    def _open(self) -> int:
        if self._fd is None:
            self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT | getattr(os, "O_BINARY", 0),
                               0o644)
        return self._fd

    def _write_holder(self, fd: int, action: str) -> None:
        info = json.dumps({"pid": os.getpid(), "host": socket.gethostname(),
                           "program": _program(), "action": action, "since": time.time()})
        try:
            os.ftruncate(fd, 0)
            os.lseek(fd, 0, os.SEEK_SET)
            os.write(fd, info.encode())
        except OSError as exc:  # the lock works without its description
            logger.debug("could not describe the lock holder in %s: %s", self.path, exc)

    def holder(self) -> dict | None:
        """What the current holder wrote into the lock file (``None`` if nothing readable)."""
        try:
            raw = self.path.read_bytes()[:4096]
            info = json.loads(raw) if raw.strip() else None
        except (OSError, ValueError):
            return None
        return info if isinstance(info, dict) else None

    def try_acquire(self, action: str = "") -> bool:
        """Take the lock if it is free right now; True when held afterwards."""
        with self._mutex:
            if self._count:
                self._count += 1
                return True
            fd = self._open()
            if not _try_lock(fd):
                return False
            self._count = 1
            self._write_holder(fd, action)
            return True

    def acquire(
        self, action: str = "", timeout_s: float = 60.0,
        should_stop: Callable[[], bool] | None = None,
    ) -> bool:
        """Wait (polling) until the lock is free, at most ``timeout_s`` seconds.

        Args:
            action: what the holder does, shown to processes that wait for it.
            timeout_s: longest wait; ``math.inf`` waits until ``should_stop``.
            should_stop: polled while waiting; True gives up (returns False).

        Returns:
            True when held; False when ``should_stop`` ended the wait.

        Raises:
            LockTimeout: still held by another process after ``timeout_s``.
        """
        start = time.monotonic()
        told = False
        delay = 0.01
        while not self.try_acquire(action):
            waited = time.monotonic() - start
            if should_stop is not None and should_stop():
                return False
            if waited >= timeout_s:
                raise LockTimeout(self.path, self.holder(), waited)
            if not told and waited > 1.0:
                logger.info("waiting for %s: held by %s", self.path,
                            describe_holder(self.holder()))
                told = True
            time.sleep(min(delay, max(0.0, timeout_s - waited)))
            delay = min(delay * 2, 0.2)
        return True

    def release(self) -> None:
        """Undo one :meth:`acquire` / successful :meth:`try_acquire`."""
        with self._mutex:
            assert self._count > 0, "release of a lock that is not held"
            self._count -= 1
            if self._count or self._fd is None:
                return
            with contextlib.suppress(OSError):
                os.ftruncate(self._fd, 0)  # nobody holds it: describe nobody
            _unlock(self._fd)

    def close(self) -> None:
        """Release whatever is held and close the file."""
        with self._mutex:
            if self._fd is not None:
                if self._count:
                    _unlock(self._fd)
                os.close(self._fd)
            self._fd = None
            self._count = 0
