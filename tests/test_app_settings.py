"""Settings: typed dataclass, JSON round-trip, bad files and values."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from cukd_app.settings import AppSettings, SettingsStore


def test_round_trip(tmp_path: Path) -> None:
    store = SettingsStore(tmp_path / "cfg" / "settings.json")
    s = AppSettings(thumbnail_size=200, worker_threads=3, exclusions=("*.tmp", "Private/*"),
                    watch_mode="polling", theme="dark", result_count=25, max_distance=12,
                    tier_filter=("identical",), sort="date", last_query="/x/q.jpg",
                    window_geometry="AAA=")
    store.save(s)
    assert store.load() == s
    assert json.loads(store.path.read_text())["exclusions"] == ["*.tmp", "Private/*"]


def test_missing_and_corrupt_files_give_defaults(tmp_path: Path) -> None:
    store = SettingsStore(tmp_path / "settings.json")
    assert store.load() == AppSettings()
    store.path.write_text("{not json")
    assert store.load() == AppSettings()


def test_bad_values_fall_back_and_unknown_keys_survive(tmp_path: Path) -> None:
    store = SettingsStore(tmp_path / "settings.json")
    store.path.write_text(json.dumps({"thumbnail_size": 5, "theme": "dark",
                                      "future_option": 1}))
    s = store.load()
    assert s.thumbnail_size == AppSettings().thumbnail_size and s.theme == "dark"
    store.save(s.replace(result_count=7))
    data = json.loads(store.path.read_text())
    assert data["future_option"] == 1 and data["result_count"] == 7


def test_validation() -> None:
    with pytest.raises(ValueError):
        AppSettings(watch_mode="sometimes")
    with pytest.raises(ValueError):
        AppSettings().replace(worker_threads=0)
