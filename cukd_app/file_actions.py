"""Read-only actions on a user's file: open, reveal in the file manager, copy path or image.

None of these writes, moves or deletes anything in the user's folders.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys

from PySide6.QtCore import QUrl
from PySide6.QtGui import QDesktopServices, QGuiApplication, QImage

__all__ = ["copy_image", "copy_path", "open_file", "reveal_in_file_manager"]

logger = logging.getLogger(__name__)


def open_file(path: str) -> bool:
    """Open with the desktop's default application."""
    return QDesktopServices.openUrl(QUrl.fromLocalFile(path))


def reveal_in_file_manager(path: str) -> bool:
    """Show the file selected in the platform file manager (its folder on Linux)."""
    try:
        if sys.platform == "darwin":
            subprocess.Popen(["open", "-R", path])
            return True
        if sys.platform == "win32":
            subprocess.Popen(["explorer", "/select,", os.path.normpath(path)])
            return True
    except OSError as exc:
        logger.warning("cannot reveal %s: %s", path, exc)
    return QDesktopServices.openUrl(QUrl.fromLocalFile(os.path.dirname(path)))


def copy_path(path: str) -> None:
    """Put the path on the clipboard."""
    QGuiApplication.clipboard().setText(path)


def copy_image(image: QImage) -> None:
    """Put an image on the clipboard (GUI thread)."""
    QGuiApplication.clipboard().setImage(image)
