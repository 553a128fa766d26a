"""Where the app keeps its own files (never inside the user's photo folders)."""

from __future__ import annotations

import os
from pathlib import Path

import platformdirs

__all__ = [
    "APP_DIR_NAME",
    "AppPaths",
    "default_model_path",
    "resources_dir",
]

#: Same per-user folder name as the library engine's catalog (core.library.catalog.APP_NAME).
APP_DIR_NAME = "cukd-image-search"


def resources_dir() -> Path:
    """The ``resources/`` folder next to the packages (icons, style, models)."""
    return Path(__file__).resolve().parent.parent / "resources"


def default_model_path() -> Path:
    """The shipped default model file (it may not be installed)."""
    return resources_dir() / "models" / "default.pt"


class AppPaths:
    """Per-user config, cache and log folders (platformdirs), overridable for tests.

    Args:
        root: if given, ``config/``, ``cache/``, ``logs/`` and ``data/`` are created below
            it instead of the platform folders.
    """

    def __init__(self, root: str | os.PathLike[str] | None = None) -> None:
        if root is None:
            self.config_dir = Path(platformdirs.user_config_dir(APP_DIR_NAME, appauthor=False))
            self.cache_dir = Path(platformdirs.user_cache_dir(APP_DIR_NAME, appauthor=False))
            self.log_dir = Path(platformdirs.user_log_dir(APP_DIR_NAME, appauthor=False))
            self.data_dir: Path | None = None  # the engine's default library folder
        else:
            r = Path(root)
            self.config_dir, self.cache_dir = r / "config", r / "cache"
            self.log_dir, self.data_dir = r / "logs", r / "data"

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
