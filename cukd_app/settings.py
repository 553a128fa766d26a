"""Application settings: one frozen, typed dataclass saved as JSON (injectable path)."""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["THEMES", "WATCH_MODES", "AppSettings", "SettingsStore"]

logger = logging.getLogger(__name__)

THEMES = ("system", "light", "dark")
WATCH_MODES = ("native", "polling")


@dataclass(frozen=True)
class AppSettings:
    """Everything the user can change, plus remembered window state.

    Attributes:
        thumbnail_size: thumbnail edge in logical pixels (grid and cache).
        worker_threads: threads for thumbnails and searches.
        exclusions: glob patterns never indexed (``"*.tmp"``, ``"Private/*"``).
        watch_mode: ``"native"`` file-system events or ``"polling"`` (network drives).
        theme: ``"system"`` follows the desktop's light/dark scheme.
        result_count: results asked from a search.
        max_distance: hide results farther than this many bits (``None``: no limit).
        tier_filter: tiers shown (subset of ``core.library.TIERS``).
        sort: ``"rank"``, ``"distance"``, ``"date"``, ``"size"`` or ``"name"``.
        model_path: model file; ``None`` uses ``resources/models/default.pt``.
        library_dir: library folder; ``None`` uses the engine's per-user default.
        last_query: path of the last query image.
        window_geometry, window_state, splitter_state: base64 Qt state blobs.
    """

    thumbnail_size: int = 160
    worker_threads: int = 2
    exclusions: tuple[str, ...] = ()
    watch_mode: str = "native"
    theme: str = "system"
    result_count: int = 60
    max_distance: int | None = None
    tier_filter: tuple[str, ...] = ("identical", "near_duplicate", "similar")
    sort: str = "rank"
    model_path: str | None = None
    library_dir: str | None = None
    last_query: str | None = None
    window_geometry: str = ""
    window_state: str = ""
    splitter_state: str = ""
    extra: dict[str, Any] = field(default_factory=dict, compare=False)

    def __post_init__(self) -> None:
        if not 48 <= self.thumbnail_size <= 512:
            raise ValueError(f"thumbnail_size must be 48..512, got {self.thumbnail_size}")
        if not 1 <= self.worker_threads <= 32:
            raise ValueError(f"worker_threads must be 1..32, got {self.worker_threads}")
        if self.watch_mode not in WATCH_MODES:
            raise ValueError(f"watch_mode must be one of {WATCH_MODES}, got {self.watch_mode}")
        if self.theme not in THEMES:
            raise ValueError(f"theme must be one of {THEMES}, got {self.theme}")
        if self.result_count < 1:
            raise ValueError(f"result_count must be >= 1, got {self.result_count}")

    def replace(self, **changes: Any) -> AppSettings:
        """A copy with some fields changed (validated)."""
        return dataclasses.replace(self, **changes)

    def to_json(self) -> dict[str, Any]:
        """JSON-ready dict (tuples become lists)."""
        d = dataclasses.asdict(self)
        d.pop("extra")
        return {k: list(v) if isinstance(v, tuple) else v for k, v in d.items()}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> AppSettings:
        """Build from a dict; unknown keys are kept aside, bad values fall back to defaults."""
        known = {f.name: f for f in dataclasses.fields(cls) if f.name != "extra"}
        defaults = cls()
        kwargs: dict[str, Any] = {}
        for k, v in data.items():
            if k not in known:
                continue
            if isinstance(getattr(defaults, k), tuple) and isinstance(v, list):
                v = tuple(str(x) for x in v)
            kwargs[k] = v
        extra = {k: v for k, v in data.items() if k not in known}
        try:
            return cls(**kwargs, extra=extra)
        except (TypeError, ValueError) as exc:
            logger.warning("settings file has invalid values (%s); checking one by one", exc)
        good: dict[str, Any] = {}
        for k, v in kwargs.items():
            try:
                cls(**good, **{k: v})
                good[k] = v
            except (TypeError, ValueError):
                logger.warning("ignoring invalid setting %s=%r", k, v)
        return cls(**good, extra=extra)


class SettingsStore:
    """Loads and saves :class:`AppSettings` as JSON at ``path`` (atomic writes)."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)

    def load(self) -> AppSettings:
        """The saved settings, or defaults if the file is missing or unreadable."""
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return AppSettings()
        except (OSError, ValueError) as exc:
            logger.warning("cannot read settings %s (%s); using defaults", self.path, exc)
            return AppSettings()
        if not isinstance(data, dict):
            return AppSettings()
        return AppSettings.from_json(data)

    def save(self, settings: AppSettings) -> None:
        """Write atomically (temp file + rename)."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        data = {**settings.extra, **settings.to_json()}
        fd, tmp = tempfile.mkstemp(prefix=".settings-", dir=self.path.parent)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                json.dump(data, f, indent=2, sort_keys=True)
            os.replace(tmp, self.path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
