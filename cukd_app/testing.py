"""Helpers for the app's tests, scripts and benchmarks: an isolated context with TinyEncoder.

Importing this module makes Qt default to the offscreen platform (no display needed).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

from core.library import ImageEncoder
from core.library.testing import TinyEncoder
from cukd_app.context import AppContext, build_context
from cukd_app.paths import AppPaths
from cukd_app.services.model_loader import ModelInfo

__all__ = ["make_test_context", "open_library", "show_window", "tiny_factory"]


def tiny_factory(encoder: ImageEncoder | None = None) -> Callable[[], ModelInfo]:
    """An encoder factory returning ``encoder`` (default: a fresh ``TinyEncoder``)."""
    def factory() -> ModelInfo:
        return ModelInfo(encoder or TinyEncoder(), "tiny (test)")
    return factory


def make_test_context(
    root: str | os.PathLike[str], *, encoder: ImageEncoder | None = None,
    no_model: bool = False, watch: bool = False,
) -> AppContext:
    """A context whose settings, cache, logs and library live under ``root``."""
    root = Path(root)
    factory = ((lambda: ModelInfo(None, "no model", "No model installed (test)."))
               if no_model else tiny_factory(encoder))
    return build_context(paths=AppPaths(root / "profile"), encoder_factory=factory,
                         library_dir=root / "library", watch=watch)


def open_library(qtbot: object, ctx: AppContext, folders: list[Path] = (),  # type: ignore[assignment]
                 timeout: int = 20000) -> None:
    """Open the library and index ``folders``, waiting with pytest-qt's ``qtbot``."""
    with qtbot.waitSignal(ctx.library.opened, timeout=timeout):  # type: ignore[attr-defined]
        ctx.library.open()
    for folder in folders:
        with qtbot.waitSignal(ctx.library.scanFinished, timeout=timeout):  # type: ignore[attr-defined]
            ctx.library.add_root(folder)
    qtbot.waitUntil(lambda: ctx.library.queue_length == 0, timeout=timeout)  # type: ignore[attr-defined]


def show_window(qtbot: object, ctx: AppContext):  # -> cukd_app.app.MainWindow
    """The main window over ``ctx``, shown and owned by pytest-qt's ``qtbot``."""
    from cukd_app.app import MainWindow

    win = MainWindow(ctx)
    qtbot.addWidget(win)  # type: ignore[attr-defined]
    win.show()
    return win
