"""Builds the services one app instance uses (injectable for tests, scripts, benchmarks)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from cukd_app.models_manager.store import ModelStore
from cukd_app.notifications import Notifier
from cukd_app.paths import AppPaths, default_model_path
from cukd_app.services.library_service import LibraryService
from cukd_app.services.model_loader import EncoderFactory, ModelInfo, resolve_encoder
from cukd_app.services.search_service import SearchService
from cukd_app.services.thumbnails import ThumbnailCache, ThumbnailLoader
from cukd_app.settings import AppSettings, SettingsStore

__all__ = ["AppContext", "build_context", "library_directory"]


@dataclass
class AppContext:
    """The services of one window. ``settings`` is replaced (never mutated) on change;
    ``models`` is the user's models folder (it names models everywhere)."""

    paths: AppPaths
    store: SettingsStore
    settings: AppSettings
    notifier: Notifier
    library: LibraryService
    search: SearchService
    thumbnails: ThumbnailLoader
    duplicate_thumbnails: ThumbnailLoader
    models: ModelStore

    def save_settings(self, settings: AppSettings) -> None:
        """Remember and persist new settings."""
        self.settings = settings
        self.store.save(settings)

    def close(self) -> None:
        """Stop background work and close the library (blocking)."""
        self.search.wait(10000)
        self.thumbnails.clear_pending()
        self.duplicate_thumbnails.clear_pending()
        self.thumbnails.wait(10000)
        self.duplicate_thumbnails.wait(10000)
        self.library.close()


def library_directory(paths: AppPaths, settings: AppSettings,
                      library_dir: str | os.PathLike[str] | None = None) -> Path:
    """The library folder a window opens: ``library_dir``, else the setting, else
    ``paths.data_dir`` (a profile's), else the engine's per-user default."""
    from core.library import default_library_dir

    chosen = library_dir or settings.library_dir or paths.data_dir
    return Path(chosen) if chosen else default_library_dir()


def build_context(
    *, paths: AppPaths | None = None, settings_path: str | os.PathLike[str] | None = None,
    model: str | None = None, encoder_factory: EncoderFactory | None = None,
    library_dir: str | os.PathLike[str] | None = None, watch: bool = True,
) -> AppContext:
    """Create the services (nothing is opened yet: call ``ctx.library.open()``).

    Args:
        paths: config/cache/log folders (default: the platform's per-user folders).
        settings_path: settings JSON (default: ``paths.settings_file``).
        model: model file or ``"tiny"`` (default: the setting, then the shipped default).
        encoder_factory: overrides ``model`` (tests pass a ``TinyEncoder``).
        library_dir: library folder (default: the setting, then ``paths.data_dir`` or the
            engine's per-user default).
        watch: watch folders for changes after indexing.
    """
    paths = paths or AppPaths()
    store = SettingsStore(settings_path or paths.settings_file)
    settings = store.load()
    notifier = Notifier(log_file=paths.log_file)
    models = ModelStore(paths.models_dir, default_model_path())
    if encoder_factory is None:
        chosen = model or settings.model_path

        def encoder_factory() -> ModelInfo:
            return resolve_encoder(chosen, models.display_name)

    library = LibraryService(settings, encoder_factory, notifier,
                             library_dir=library_directory(paths, settings, library_dir),
                             watch=watch)
    search = SearchService(library, notifier)
    cache = ThumbnailCache(paths.thumbnail_dir)
    thumbs = ThumbnailLoader(cache, settings.thumbnail_size, settings.worker_threads)
    dup_thumbs = ThumbnailLoader(cache, settings.thumbnail_size, 1)
    return AppContext(paths, store, settings, notifier, library, search, thumbs, dup_thumbs,
                      models)
