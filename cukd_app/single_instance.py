"""One window per library.

Two app instances over one library would both index, watch and write it without a word. The
first window holds an inter-process lock in the library folder (:class:`core.library.lockfile.
FileLock`: the operating system drops it when the process ends, so a crash leaves no stale
lock) and listens on a local socket. A second start finds the lock taken, asks the first
window to come to the front, tells the user in a sentence and quits.
"""

from __future__ import annotations

import hashlib
import logging
import os
import time
from pathlib import Path

from PySide6.QtCore import QObject, Signal, Slot
from PySide6.QtNetwork import QLocalServer, QLocalSocket
from PySide6.QtWidgets import QMessageBox, QWidget

from core.library.lockfile import FileLock

__all__ = ["WINDOW_LOCK_FILE", "LibraryWindowLock", "already_open_box", "already_open_text"]

logger = logging.getLogger(__name__)

#: In the library folder, beside the engine's writer lock (``library.lock``).
WINDOW_LOCK_FILE = "window.lock"
_RAISE = b"raise\n"


class LibraryWindowLock(QObject):
    """The claim of one window on a library folder.

    Args:
        directory: the library folder (created if missing).

    Signals:
        raiseRequested(): another start on this library asked this window to come forward.
    """

    raiseRequested = Signal()

    def __init__(self, directory: str | os.PathLike[str],
                 parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.directory = Path(directory)
        self._lock: FileLock | None = None
        self._server: QLocalServer | None = None
        digest = hashlib.sha256(os.fspath(self.directory.resolve()).encode()).hexdigest()
        self.server_name = f"cukd-image-search-{digest[:20]}"

    @property
    def held(self) -> bool:
        """Whether this window holds the library."""
        return self._lock is not None and self._lock.held

    def acquire(self) -> bool:
        """Claim the library for this window; False when another window has it.

        A folder that cannot hold the lock (read-only, a file in its place) is not claimed
        but not refused either: opening the library then says what is wrong with it.
        """
        if self.held:
            return True
        lock = FileLock(self.directory / WINDOW_LOCK_FILE)
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            if not lock.try_acquire("the CUKD Image Search window"):
                lock.close()
                return False
        except OSError as exc:
            logger.warning("cannot lock the library folder %s for this window: %s",
                           self.directory, exc)
            lock.close()
            return True
        self._lock = lock
        server = QLocalServer(self)
        server.setSocketOptions(QLocalServer.SocketOption.UserAccessOption)
        QLocalServer.removeServer(self.server_name)  # a crashed holder's socket: we hold it
        if server.listen(self.server_name):
            server.newConnection.connect(self._on_connection)
            self._server = server
        else:  # the lock still works; only bringing this window forward does not
            logger.info("cannot listen on %s: %s", self.server_name, server.errorString())
        return True

    def holder(self) -> dict | None:
        """What the window that holds the library wrote into the lock file."""
        return FileLock(self.directory / WINDOW_LOCK_FILE).holder()

    def ask_holder_to_raise(self, timeout_ms: int = 1000) -> bool:
        """Ask the window holding the library to come to the front (True: it was asked)."""
        sock = QLocalSocket()
        sock.connectToServer(self.server_name)
        if not sock.waitForConnected(timeout_ms):
            return False
        sock.write(_RAISE)
        sent = sock.waitForBytesWritten(timeout_ms)
        sock.disconnectFromServer()
        return sent

    @Slot()
    def _on_connection(self) -> None:
        assert self._server is not None
        while (sock := self._server.nextPendingConnection()) is not None:
            sock.readyRead.connect(lambda s=sock: self._on_message(s))
            sock.disconnected.connect(sock.deleteLater)
            if sock.bytesAvailable():
                self._on_message(sock)

    def _on_message(self, sock: QLocalSocket) -> None:
        if bytes(sock.readAll().data()).startswith(_RAISE.strip()):
            self.raiseRequested.emit()

    def release(self) -> None:
        """Give the library up (at exit)."""
        if self._server is not None:
            self._server.close()
            self._server = None
        if self._lock is not None:
            self._lock.close()
            self._lock = None


def already_open_text(directory: str | os.PathLike[str], holder: dict | None,
                      raised: bool) -> str:
    """The sentence a second start shows."""
    since = holder.get("since") if holder else None
    when = (f" (started at {time.strftime('%H:%M', time.localtime(since))})"
            if isinstance(since, int | float) else "")
    front = (" That window was brought to the front." if raised
             else " Switch to that window to go on.")
    return (f"The library {directory} is already open in another CUKD Image Search "
            f"window{when}.{front} Only one window at a time can use a library, so this one "
            "closes. To work with another library at the same time, start the app with "
            "--library and another folder.")


def already_open_box(directory: str | os.PathLike[str], holder: dict | None, raised: bool,
                     parent: QWidget | None = None) -> QMessageBox:
    """The message box of a second start (the caller runs ``exec()``)."""
    box = QMessageBox(QMessageBox.Icon.Information, "Library already open",
                      already_open_text(directory, holder, raised),
                      QMessageBox.StandardButton.Ok, parent)
    box.setObjectName("alreadyOpenBox")
    return box
