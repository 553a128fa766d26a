"""Scanner: diffing, moves, deletions, exclusions, errors, offline roots, cancel/resume."""

from __future__ import annotations

import os
import shutil

import numpy as np
import pytest

from core.library import Catalog, Library, LibraryConfig, ScanConfig
from core.library.testing import TinyEncoder
from tests.library_helpers import make_image, make_tree, open_library, snapshot, write_image


@pytest.fixture
def lib(tmp_path):
    library = open_library(tmp_path / "lib")
    yield library
    library.close()


def _ids(lib) -> set[int]:
    return set(lib.index.ids().tolist())


def test_scan_indexes_files_and_records_errors(lib, tmp_path):
    photos = tmp_path / "photos"
    make_tree(photos, 9)
    (photos / "empty.jpg").write_bytes(b"")
    (photos / "text.png").write_bytes(b"hello, not a png")
    (photos / "notes.txt").write_text("not an image extension: ignored")
    lib.add_root(photos)
    before = snapshot(photos)
    progress = []
    r = lib.scan(on_progress=progress.append)
    assert (r.added, r.encoded, r.deleted, r.seen) == (11, 9, 0, 11)
    assert {(e.reason, os.path.basename(e.path)) for e in r.errors} == {
        ("empty", "empty.jpg"), ("not_an_image", "text.png")}
    assert lib.catalog.count_files("ok") == 9 and lib.catalog.count_files("error") == 2
    rec = lib.catalog.get_file_by_path(photos / "empty.jpg")
    assert rec.status == "error" and rec.error.startswith("empty")
    assert lib.index.ntotal == 9 and lib.phash_index.ntotal == 9
    ok = lib.catalog.get_file_by_path(photos / "img0000.png")
    assert (ok.width, ok.height) == (80, 60) and ok.phash is not None and ok.fingerprint
    enc = [p for p in progress if p.phase == "encode"]
    assert enc and enc[-1].done == enc[-1].total == 11
    assert snapshot(photos) == before  # nothing written inside the user's folder
    assert lib.catalog.root_by_path(photos).last_scan is not None


def test_rescan_unchanged_does_no_work_and_changed_keeps_row(lib, tmp_path):
    photos = tmp_path / "photos"
    paths = make_tree(photos, 6)
    lib.add_root(photos)
    lib.scan()
    calls = lib.encoder.calls
    r = lib.scan()
    assert (r.unchanged, r.encoded, r.added) == (6, 0, 0) and lib.encoder.calls == calls
    target = paths[0]
    old = lib.catalog.get_file_by_path(target)
    old_code = lib.index.reconstruct(old.id).copy()
    make_image(999, (90, 70)).save(target)
    os.utime(target, ns=(old.mtime_ns + 10**9, old.mtime_ns + 10**9))
    r = lib.scan()
    assert (r.updated, r.encoded, r.added) == (1, 1, 0)
    new = lib.catalog.get_file_by_path(target)
    assert new.id == old.id and (new.width, new.height) == (90, 70)
    assert not np.array_equal(lib.index.reconstruct(old.id), old_code)
    assert lib.catalog.count_files() == 6


def test_move_and_rename_keep_row_and_code(lib, tmp_path):
    photos, other = tmp_path / "photos", tmp_path / "other"
    paths = make_tree(photos, 6)
    other.mkdir()
    lib.add_root(photos)
    lib.add_root(other)
    lib.scan()
    ids = {p: lib.catalog.get_file_by_path(p).id for p in paths}
    codes = {i: lib.index.reconstruct(i).copy() for i in ids.values()}
    calls = lib.encoder.calls
    renamed = photos / "renamed.png"
    os.rename(paths[0], renamed)
    (photos / "deeper").mkdir()
    moved = photos / "deeper" / paths[1].name
    os.rename(paths[1], moved)
    across = other / paths[2].name
    shutil.move(paths[2], across)
    r = lib.scan()
    assert (r.moved, r.added, r.deleted, r.encoded) == (3, 0, 0, 0)
    assert lib.encoder.calls == calls  # nothing re-decoded or re-encoded
    for old, new in ((paths[0], renamed), (paths[1], moved), (paths[2], across)):
        rec = lib.catalog.get_file_by_path(new)
        assert rec.id == ids[old]
        assert lib.catalog.get_file_by_path(old) is None
        assert np.array_equal(lib.index.reconstruct(rec.id), codes[rec.id])
    assert lib.catalog.get_file_by_path(across).root_id == lib.catalog.root_by_path(other).id
    assert lib.catalog.count_files() == 6 and lib.index.ntotal == 6


def test_deletion_removes_row_and_index_entry(lib, tmp_path):
    photos = tmp_path / "photos"
    paths = make_tree(photos, 6)
    lib.add_root(photos)
    lib.scan()
    gone = lib.catalog.get_file_by_path(paths[2]).id
    paths[2].unlink()  # in the root; paths 1, 3, 5 are in sub/
    shutil.rmtree(photos / "sub")
    r = lib.scan()
    assert r.deleted == 4 and lib.catalog.count_files() == 2
    assert gone not in _ids(lib) and lib.index.ntotal == 2 == lib.phash_index.ntotal
    hits = lib.search(paths[0], k=10)
    assert all(os.path.exists(h.path) for h in hits) and len(hits) == 1


def test_exclusions(tmp_path):
    photos = tmp_path / "photos"
    keep = [write_image(photos / "a.jpg", 1), write_image(photos / "b" / "c.png", 2)]
    excluded = [
        photos / ".hidden.jpg", photos / ".cache" / "x.jpg", photos / "@eaDir" / "t.jpg",
        photos / ".thumbnails" / "t.png", photos / "$RECYCLE.BIN" / "r.jpg",
        photos / "System Volume Information" / "s.jpg", photos / "skip_me.jpg",
        photos / "Private" / "p.jpg", photos / "b" / "global.tmp.png",
    ]
    for i, p in enumerate(excluded):
        write_image(p, 10 + i)
    config = LibraryConfig(scan=ScanConfig(batch_size=4, excludes=("*.tmp.png",)))
    library = Library.open(tmp_path / "lib", TinyEncoder(), config)
    try:
        library.add_root(photos, excludes=["skip_*", "Private/*"])
        r = library.scan()
        indexed = {library.catalog.get_file(int(i)).path for i in library.index.ids()}
        assert indexed == {str(p) for p in keep}
        assert r.seen == 2 and not r.errors
        # A watcher batch naming an excluded path is ignored too.
        r = library.scan_paths([photos / "@eaDir" / "t.jpg", photos / "Private"])
        assert r.seen == 0 and library.catalog.count_files() == 2
    finally:
        library.close()


def test_offline_root_keeps_files_and_comes_back(lib, tmp_path):
    drive = tmp_path / "drive"
    photos = drive / "photos"
    make_tree(photos, 4)
    lib.add_root(photos)
    lib.scan()
    ids = _ids(lib)
    os.rename(drive, tmp_path / "unplugged")  # unmounted
    r = lib.scan()
    assert r.offline_roots == (str(photos),) and r.deleted == 0
    assert not lib.catalog.root_by_path(photos).online
    assert lib.catalog.count_files() == 4 and _ids(lib) == ids
    assert lib.status().offline_roots == (str(photos),)
    # An empty mount point (folder exists, drive not mounted) is offline too.
    photos.mkdir(parents=True)
    r = lib.scan()
    assert r.deleted == 0 and lib.catalog.count_files() == 4
    assert not lib.catalog.root_by_path(photos).online
    photos.rmdir()
    os.rename(tmp_path / "unplugged", drive)
    r = lib.scan()
    assert r.offline_roots == () and r.unchanged == 4 and r.encoded == 0
    assert lib.catalog.root_by_path(photos).online and _ids(lib) == ids


def test_cancel_then_resume(tmp_path):
    photos = tmp_path / "photos"
    make_tree(photos, 12)
    lib = open_library(tmp_path / "lib")
    try:
        lib.add_root(photos)
        def stop_after_two_batches() -> bool:
            return lib.encoder.calls >= 2

        r = lib.scan(should_stop=stop_after_two_batches)
        assert r.cancelled and r.encoded == 8
        assert lib.catalog.count_files() == 8 == lib.index.ntotal
        r = lib.scan()
        assert not r.cancelled and r.encoded == 4 and r.added == 4 and r.unchanged == 8
        assert lib.catalog.count_files() == 12 == lib.index.ntotal
    finally:
        lib.close()


class _FailingEncoder(TinyEncoder):
    fail = True

    def encode(self, images):
        if self.fail:
            raise RuntimeError("model crashed")
        return super().encode(images)


def test_encoder_failure_marks_pending_and_is_retried(tmp_path):
    photos = tmp_path / "photos"
    make_tree(photos, 3)
    enc = _FailingEncoder()
    lib = open_library(tmp_path / "lib", enc)
    try:
        lib.add_root(photos)
        r = lib.scan()
        assert {e.reason for e in r.errors} == {"encode_failed"} and r.encoded == 0
        assert lib.catalog.count_files("pending") == 3 and lib.index.ntotal == 0
        enc.fail = False
        r = lib.scan()
        assert r.encoded == 3 and lib.catalog.count_files("ok") == 3 and lib.index.ntotal == 3
    finally:
        lib.close()


def test_scan_paths_only_touches_given_paths(lib, tmp_path):
    photos = tmp_path / "photos"
    paths = make_tree(photos, 4)
    lib.add_root(photos)
    lib.scan()
    new = write_image(photos / "new.jpg", 77)
    untouched = write_image(photos / "not_reported.jpg", 78)
    paths[0].unlink()
    r = lib.scan_paths([new, paths[0], tmp_path / "outside.jpg"])
    assert (r.added, r.deleted) == (1, 1)
    assert lib.catalog.get_file_by_path(new) is not None
    assert lib.catalog.get_file_by_path(untouched) is None
    # Catalog opened directly agrees (committed, not just in memory).
    with Catalog(lib.catalog.path) as cat:
        assert cat.count_files() == 4
