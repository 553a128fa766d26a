"""Where the app keeps its own files (never inside the user's photo folders)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import platformdirs

__all__ = [
    "APP_DIR_NAME",
    "AppPaths",
    "app_icon_path",
    "default_model_path",
    "is_frozen",
    "resources_dir",
]

#: Same per-user folder name as the library engine's catalog (core.library.catalog.APP_NAME).
APP_DIR_NAME = "cukd-image-search"


def is_frozen() -> bool:
    """True inside a PyInstaller build (``build.spec``)."""
    return bool(getattr(sys, "frozen", False)) and hasattr(sys, "_MEIPASS")


def resources_dir() -> Path:
    """The ``resources/`` folder (icons, style, models).

    From source: next to the packages. In a PyInstaller build: ``sys._MEIPASS/resources``
    (``build.spec`` puts it there; one-folder and one-file builds alike).
    """
    if is_frozen():
        return Path(sys._MEIPASS) / "resources"  # type: ignore[attr-defined]
    return Path(__file__).resolve().parent.parent / "resources"


def app_icon_path() -> Path:
    """The application icon (PNG)."""
    return resources_dir() / "icons" / "cukd-app.png"


def default_model_path() -> Path:
    """The shipped default model file (it may not be installed)."""
    return resources_dir() / "models" / "default.pt"


class AppPaths:
    """Per-user config, cache and log folders (platformdirs), overridable for tests.

    Args:
        root: if given, ``config/``, ``cache/``, ``logs/``, ``data/`` and ``models/`` are
            created below it instead of the platform folders.

    Attributes:
        models_dir: the user's trained and imported models (the model manager's folder).
    """

    def __init__(self, root: str | os.PathLike[str] | None = None) -> None:
        if root is None:
            self.config_dir = Path(platformdirs.user_config_dir(APP_DIR_NAME, appauthor=False))
            self.cache_dir = Path(platformdirs.user_cache_dir(APP_DIR_NAME, appauthor=False))
            self.log_dir = Path(platformdirs.user_log_dir(APP_DIR_NAME, appauthor=False))
            self.data_dir: Path | None = None  # the engine's default library folder
            self.models_dir = Path(platformdirs.user_data_dir(APP_DIR_NAME,
                                                              appauthor=False)) / "models"
        else:
            r = Path(root)
            self.config_dir, self.cache_dir = r / "config", r / "cache"
            self.log_dir, self.data_dir = r / "logs", r / "data"
            self.models_dir = r / "models"

    @property
    def settings_file(self) -> Path:
        """The settings JSON file."""
        return self.config_dir / "settings.json"

    @property
    def thumbnail_dir(self) -> Path:
        """On-disk thumbnail cache."""
        return self.cache_dir / "thumbnails"

    @property
    def log_file(self) -> Path:
        """The application log file."""
        return self.log_dir / "cukd-app.log"
