"""Real watchdog observers (native and polling) on temp folders feeding the index."""

from __future__ import annotations

import os
import shutil

import pytest

from tests.library_helpers import make_image, make_tree, open_library, wait_until, write_image


def _indexed(lib, path) -> int | None:
    """Row id if ``path`` is in the catalog as ok and in the code index, else None."""
    rec = lib.catalog.get_file_by_path(path)
    if rec is None or rec.status != "ok" or rec.id not in set(lib.index.ids().tolist()):
        return None
    return rec.id


@pytest.mark.parametrize("mode", ["native", "polling"])
def test_watcher_events_reach_index(tmp_path, mode):
    photos = tmp_path / "photos"
    make_tree(photos, 3)
    lib = open_library(tmp_path / "lib")
    try:
        lib.add_root(photos, watch_mode=mode)
        lib.scan()
        results = []
        lib.on_watch_result = results.append
        lib.start_watching()
        assert lib.status().watching
        # created
        new = write_image(photos / "new.jpg", 50)
        assert wait_until(lambda: _indexed(lib, new) is not None)
        fid = _indexed(lib, new)
        assert lib.search(new, k=1)  # searchable
        # modified (different content and size): same row, new code
        old_code = lib.index.reconstruct(fid).copy()
        make_image(51, (100, 80)).save(new)
        assert wait_until(lambda: (lib.catalog.get_file_by_path(new).width == 100
                                   and _indexed(lib, new) == fid))
        # The catalog (source of truth) commits first; the index follows within the batch.
        assert wait_until(lambda: (lib.index.reconstruct(fid) != old_code).any())
        # moved/renamed: same row
        moved = photos / "sub" / "renamed.jpg"
        os.rename(new, moved)
        assert wait_until(lambda: _indexed(lib, moved) == fid)
        assert wait_until(lambda: lib.catalog.get_file_by_path(new) is None)
        # a folder moved in from outside the library
        outside = tmp_path / "outside"
        make_tree(outside, 2, start_seed=300)
        shutil.move(outside, photos / "imported")
        imported = photos / "imported" / "img0300.png"
        assert wait_until(lambda: _indexed(lib, imported) is not None)
        # deleted
        moved.unlink()
        assert wait_until(lambda: lib.catalog.get_file_by_path(moved) is None)
        assert wait_until(lambda: fid not in set(lib.index.ids().tolist()))
        # excluded folders stay out
        write_image(photos / "@eaDir" / "thumb.jpg", 60)
        write_image(photos / "late.png", 61)
        assert wait_until(lambda: _indexed(lib, photos / "late.png") is not None)
        assert wait_until(lib.watcher_idle)
        assert lib.catalog.get_file_by_path(photos / "@eaDir" / "thumb.jpg") is None
        assert results and all(not r.errors or all(e.reason == "truncated" for e in r.errors)
                               for r in results)
        assert lib.catalog.count_files() == lib.index.ntotal == 6
    finally:
        lib.close()


def test_root_that_disappears_goes_offline_and_comes_back(tmp_path):
    drive = tmp_path / "drive"
    photos = drive / "photos"
    make_tree(photos, 4)
    lib = open_library(tmp_path / "lib")
    try:
        lib.add_root(photos)
        lib.scan()
        ids = set(lib.index.ids().tolist())
        lib.start_watching()
        os.rename(drive, tmp_path / "unplugged")
        assert wait_until(lambda: not lib.catalog.root_by_path(photos).online)
        assert wait_until(lib.watcher_idle)
        assert lib.catalog.count_files() == 4 and set(lib.index.ids().tolist()) == ids
        os.rename(tmp_path / "unplugged", drive)
        assert wait_until(lambda: lib.catalog.root_by_path(photos).online)
        # The observer was restarted: new files are picked up again.
        late = write_image(photos / "after_return.jpg", 70)
        assert wait_until(lambda: _indexed(lib, late) is not None)
        assert ids < set(lib.index.ids().tolist())
    finally:
        lib.close()
