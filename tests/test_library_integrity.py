"""Two writers, damaged caches, damaged catalogs, full disks: issue 14 points 4, 6, 7 and 9.

Everything runs on real files: generated photos, real SQLite catalogs and faiss/embedding
files, and real second processes (``sys.executable -c``) that hold the library's writer lock.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import sqlite3
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from core.library import (
    BinaryIndex,
    Catalog,
    Library,
    LibraryBusyError,
    LibraryError,
)
from core.library.embeddings import HEADER
from core.library.library import CATALOG_FILE, PHASH_INDEX_FILE, _index_file, _store_file
from core.library.search import prepare_query, run_search
from core.library.testing import TinyEncoder
from tests.library_helpers import fast_config, make_tree, open_library, write_image

REPO = Path(__file__).resolve().parents[1]

#: Prelude of every child process: a gated tiny encoder (``encode`` blocks until the gate
#: file exists, after saying so on stdout) and the test library settings.
_CHILD = textwrap.dedent("""
    import json, os, sys, time
    from pathlib import Path
    sys.path.insert(0, {repo!r})
    from core.library import Library, LibraryConfig, ScanConfig
    from core.library.testing import TinyEncoder

    class Gated(TinyEncoder):
        def __init__(self, gate, **kw):
            super().__init__(**kw)
            self.gate = Path(gate) if gate else None

        def encode(self, images):
            if self.gate is not None:
                print("encoding", flush=True)
                deadline = time.monotonic() + 60
                while not self.gate.exists() and time.monotonic() < deadline:
                    time.sleep(0.02)
            return super().encode(images)

    CONFIG = LibraryConfig(scan=ScanConfig(batch_size=4, decode_workers=1))
""")


def _child(body: str, *args: object) -> subprocess.Popen:
    """Start ``python -c`` with the prelude and ``body``; ``sys.argv[1:]`` are ``args``."""
    code = _CHILD.format(repo=str(REPO)) + textwrap.dedent(body)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.Popen([sys.executable, "-c", code, *map(str, args)], cwd=REPO, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _wait_line(proc: subprocess.Popen, expected: str, timeout: float = 30.0) -> None:
    """Read the child's stdout until a line equals ``expected``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if line.strip() == expected:
            return
        if not line and proc.poll() is not None:
            break
    proc.kill()
    raise AssertionError(f"child never said {expected!r}: {proc.stderr.read()[-3000:]}")


def _finish(proc: subprocess.Popen, timeout: float = 60.0) -> list[str]:
    """Wait for the child; its remaining stdout lines (fails on a non-zero exit)."""
    out, err = proc.communicate(timeout=timeout)
    assert proc.returncode == 0, err[-3000:]
    return [ln for ln in out.splitlines() if ln.strip()]


def _catalog_ids(lib: Library) -> set[int]:
    ids = set()
    for chunk, _ in lib.catalog.iter_codes(lib.encoder.model_id):
        ids.update(chunk.tolist())
    return ids


_SCAN_GATED = """
    lib = Library.open(sys.argv[1], Gated(sys.argv[2]), CONFIG)
    r = lib.scan()
    lib.close()
    print(json.dumps({"encoded": r.encoded, "added": r.added}), flush=True)
"""


# --------------------------------------------------------------------- 4: two writers
def test_second_writer_waits_names_the_holder_and_readers_keep_working(tmp_path):
    photos, lib_dir, gate = tmp_path / "photos", tmp_path / "lib", tmp_path / "gate"
    make_tree(photos, 6)
    lib = open_library(lib_dir)
    try:
        lib.add_root(photos)
        lib.scan()
        new = [write_image(photos / f"new{i}.jpg", 100 + i) for i in range(4)]
        child = _child(_SCAN_GATED, lib_dir, gate)
        try:
            _wait_line(child, "encoding")  # the child holds the writer lock now
            # A reader neither waits nor fails.
            t0 = time.monotonic()
            assert lib.search(photos / "img0000.png", k=3)
            assert lib.status().files >= 6
            assert time.monotonic() - t0 < 5
            # A process that opens now rebuilds a missing cache in memory but writes nothing
            # (not the cache, not a temp file of the running save) and can search.
            stray = lib_dir / "phash.cukdidx.abcd1234.tmp"
            stray.write_bytes(b"x")
            (lib_dir / PHASH_INDEX_FILE).unlink()
            with open_library(lib_dir) as other:
                assert "phash" in other.rebuilt_indexes
                assert other.search(photos / "img0000.png", k=3)
            assert stray.exists() and not (lib_dir / PHASH_INDEX_FILE).exists()
            # A second writer waits, then names the holder.
            t0 = time.monotonic()
            with pytest.raises(LibraryBusyError) as err:
                lib.scan(lock_timeout_s=0.5)
            assert time.monotonic() - t0 >= 0.5
            msg = str(err.value)
            assert f"pid {child.pid}" in msg and "scanning" in msg and str(lib_dir) in msg
            assert err.value.holder["pid"] == child.pid
            assert isinstance(err.value, LibraryError)
        finally:
            gate.touch()
        result = json.loads(_finish(child)[-1])
        assert result["encoded"] == 4
        # The other process's photos are searchable here, and our next scan has nothing to do.
        copy = shutil.copy(new[2], tmp_path / "query.jpg")
        hits = lib.search(copy, k=3)
        assert hits[0].path == str(new[2]) and hits[0].tier == "identical"
        assert lib.status().indexed == 10
        again = lib.scan()
        assert again.encoded == 0 and again.added == 0
        assert set(lib.index.ids().tolist()) == _catalog_ids(lib)
    finally:
        lib.close()
    open_library(lib_dir).close()  # nobody writes now: the stale temp file goes at open
    assert not stray.exists()


def _saved_caches_agree(lib_dir: Path, lib: Library) -> None:
    """A cache file stamped with the catalog's generation holds exactly the catalog's ids."""
    gen = lib.catalog.generation
    for name, ids in ((_index_file(lib.encoder.model_id), _catalog_ids(lib)),
                      (PHASH_INDEX_FILE, set(lib.catalog.all_phashes()[0].tolist()))):
        saved = BinaryIndex.load(lib_dir / name)
        if saved.generation == gen:
            assert set(saved.ids().tolist()) == ids, name


def test_concurrent_scan_and_watcher_batch_never_save_a_stale_index(tmp_path):
    photos, lib_dir, gate = tmp_path / "photos", tmp_path / "lib", tmp_path / "gate"
    paths = make_tree(photos, 8)
    watch = open_library(lib_dir)  # the `cukd library watch` process
    try:
        watch.add_root(photos)
        watch.scan()
        for i in range(3):
            write_image(photos / f"scan{i}.jpg", 200 + i)
        child = _child(_SCAN_GATED, lib_dir, gate)  # `cukd library scan`
        try:
            _wait_line(child, "encoding")
            # While the scan runs: two photos deleted, two added; the watcher's batch.
            for p in paths[:2]:
                p.unlink()
            added = [write_image(photos / f"watch{i}.jpg", 300 + i) for i in range(2)]
            batch = threading.Thread(
                target=watch.scan_paths, args=([*map(str, paths[:2]), *map(str, added)],))
            batch.start()
            time.sleep(1.0)  # without a cross-process lock the batch is done by now
        finally:
            gate.touch()
        _finish(child)
        batch.join(60)
        assert not batch.is_alive()
        expected = 8 - 2 + 3 + 2
        assert watch.catalog.count_codes(watch.encoder.model_id) == expected
        _saved_caches_agree(lib_dir, watch)
        fresh = open_library(lib_dir)  # trusts only caches that match the catalog
        try:
            assert set(fresh.index.ids().tolist()) == _catalog_ids(fresh)
            assert fresh.index.ntotal == expected == fresh.status().indexed
            copy = shutil.copy(added[1], tmp_path / "query.jpg")
            hits = fresh.search(copy, k=20)
            assert hits[0].path == str(added[1]) and hits[0].tier == "identical"
            assert not {str(p) for p in paths[:2]} & {h.path for h in hits}
        finally:
            fresh.close()
        assert set(watch.index.ids().tolist()) == _catalog_ids(watch)  # watcher followed
    finally:
        watch.close()
    reopened = open_library(lib_dir)
    try:
        assert reopened.rebuilt_indexes == ()  # what close saved is current and trusted
        assert set(reopened.index.ids().tolist()) == _catalog_ids(reopened)
    finally:
        reopened.close()


def test_index_files_stamped_current_but_holding_other_ids_are_rebuilt(tmp_path):
    photos, lib_dir = tmp_path / "photos", tmp_path / "lib"
    paths = make_tree(photos, 10)
    lib = open_library(lib_dir)
    lib.add_root(photos)
    lib.scan()
    mid = lib.encoder.model_id
    old_codes, old_ph = BinaryIndex.load(lib_dir / _index_file(mid)), BinaryIndex.load(
        lib_dir / PHASH_INDEX_FILE)
    for p in paths[:3]:
        p.unlink()
    added = [write_image(photos / f"late{i}.jpg", 400 + i) for i in range(3)]
    lib.scan()
    gen = lib.catalog.generation
    lib.close()
    # What the race used to leave: the old ids, stamped with the current generation (the
    # entry count even matches: 3 deleted, 3 added).
    old_codes.save(lib_dir / _index_file(mid), gen)
    old_ph.save(lib_dir / PHASH_INDEX_FILE, gen)
    lib = open_library(lib_dir)
    try:
        assert set(lib.rebuilt_indexes) == {mid, "phash"}
        assert set(lib.index.ids().tolist()) == _catalog_ids(lib)
        copy = shutil.copy(added[0], tmp_path / "query.jpg")
        hits = lib.search(copy, k=5)
        assert hits[0].path == str(added[0]) and hits[0].tier == "identical"
    finally:
        lib.close()


# --------------------------------------------------------------------- 6: embedding file
def _scanned(tmp_path: Path, n: int = 12) -> tuple[Library, list[Path]]:
    photos = tmp_path / "photos"
    paths = make_tree(photos, n)
    lib = open_library(tmp_path / "lib")
    lib.add_root(photos)
    lib.scan()
    return lib, paths


def _store_rows_equal_catalog(lib: Library) -> bool:
    """Every catalog embedding sits, byte for byte, at its row of the store file."""
    data = lib._store.path.read_bytes()
    rb = lib._store.row_bytes
    for ids, emb in lib.catalog.iter_embeddings(lib.encoder.model_id):
        for i, row in zip(ids.tolist(), emb, strict=True):
            if data[HEADER + i * rb:HEADER + (i + 1) * rb] != row.tobytes():
                return False
    return True


def _damage(path: Path, how: str, seed: int = 0) -> None:
    data = bytearray(path.read_bytes())
    if how == "truncate":
        data = data[:HEADER]
    elif how == "random":
        data[HEADER:] = np.random.default_rng(seed).bytes(len(data) - HEADER)
    else:
        data[HEADER:] = bytes(len(data) - HEADER)
    with open(path, "r+b") as f:  # in place: an open library keeps reading this file
        f.write(bytes(data))
        f.truncate(len(data))


@pytest.mark.parametrize("how", ["truncate", "random", "zero"])
def test_damaged_embedding_file_is_rebuilt_on_open(tmp_path, how):
    lib, paths = _scanned(tmp_path)
    store_path = lib._store.path
    lib.close()
    _damage(store_path, how)
    lib = open_library(tmp_path / "lib")
    try:
        assert _store_rows_equal_catalog(lib)
        copy = shutil.copy(paths[4], tmp_path / "query.png")
        hits = lib.search(copy, k=5)
        assert hits and hits[0].path == str(paths[4]) and hits[0].tier == "identical"
    finally:
        lib.close()


def test_embedding_file_damaged_while_open_gives_finite_scores_then_is_repaired(tmp_path):
    lib, paths = _scanned(tmp_path)
    try:
        mid = lib.encoder.model_id
        q = prepare_query(paths[5], catalog=lib.catalog, encoder=lib.encoder,
                          decode_size=lib._scanner.decode_size)
        reference = run_search(q, catalog=lib.catalog, model_id=mid, code_index=lib.index,
                               phash_index=lib.phash_index, k=8, embeddings=None,
                               config=lib.config.search)
        assert reference

        def same_as_reference() -> None:
            hits = lib.search(paths[5], k=8)
            assert all(math.isfinite(h.score) for h in hits)
            json.dumps([h.score for h in hits], allow_nan=False)  # what --json prints
            assert [(h.file_id, h.tier) for h in hits] == [(h.file_id, h.tier)
                                                            for h in reference]

        for how in ("random", "zero", "truncate"):
            _damage(lib._store.path, how, seed=3)
            same_as_reference()
        # The next write (a scan with nothing to do) rebuilds the file from the catalog.
        assert lib.scan().encoded == 0
        assert _store_rows_equal_catalog(lib) and lib._store.damaged_rows == 0
        same_as_reference()
    finally:
        lib.close()
    lib = open_library(tmp_path / "lib")
    try:
        assert lib.rebuilt_indexes == () and _store_rows_equal_catalog(lib)
    finally:
        lib.close()


# --------------------------------------------------------------------- 7: clear errors
def _sqlite_free(exc: BaseException) -> None:
    """The error (and what it was raised from) is a LibraryError, not an sqlite3 error."""
    assert isinstance(exc, LibraryError) and not isinstance(exc, sqlite3.Error)


def test_a_file_that_is_no_catalog_gives_a_clear_error_and_repair_recovers(tmp_path):
    lib_dir = tmp_path / "lib"
    lib_dir.mkdir()
    (lib_dir / CATALOG_FILE).write_bytes(b"these are not the bytes of a database\n" * 200)
    with pytest.raises(LibraryError) as err:
        open_library(lib_dir)
    _sqlite_free(err.value)
    assert "damaged" in str(err.value) and "cukd library repair" in str(err.value)
    report = Library.repair(lib_dir)
    assert not report.catalog_ok and report.moved_aside
    assert (lib_dir / (CATALOG_FILE + ".broken")).exists()
    photos = tmp_path / "photos"
    make_tree(photos, 4)
    lib = open_library(lib_dir)
    try:
        lib.add_root(photos)
        assert lib.scan().encoded == 4
    finally:
        lib.close()
    assert Library.repair(lib_dir).catalog_ok  # a sound catalog is kept


def test_malformed_catalog_gives_a_clear_error_and_repair_keeps_what_it_can(tmp_path):
    lib, paths = _scanned(tmp_path, n=60)
    lib_dir = lib.directory
    lib.close()
    db = lib_dir / CATALOG_FILE
    assert not (lib_dir / (CATALOG_FILE + "-wal")).exists()
    raw = sqlite3.connect(db)
    page = raw.execute("PRAGMA page_size").fetchone()[0]
    root_page = raw.execute("SELECT rootpage FROM sqlite_master WHERE name = 'files'"
                            ).fetchone()[0]
    raw.close()
    with open(db, "r+b") as f:  # the last leaf page of the files table becomes noise
        f.seek((root_page - 1) * page)
        header = f.read(12)
        assert header[0] == 5  # an interior table page: its right-most child is bytes 8-11
        f.seek((int.from_bytes(header[8:12], "big") - 1) * page)
        f.write(np.random.default_rng(1).bytes(page))
    opened: list[Library] = []
    with pytest.raises(LibraryError) as err:
        opened.append(open_library(lib_dir))
        opened[0].scan()
        opened[0].search(paths[0])
    for lib in opened:
        lib.close()  # logs what it cannot save
    _sqlite_free(err.value)
    assert "damaged" in str(err.value) and "cukd library repair" in str(err.value)
    report = Library.repair(lib_dir)
    recovered = dict(report.recovered)
    assert not report.catalog_ok and recovered["roots"] == 1
    assert 0 < recovered["files"] < 60 and recovered["codes"] == recovered["files"]
    assert set(report.caches_removed) >= {PHASH_INDEX_FILE}
    lib = open_library(lib_dir)
    try:
        assert [r.path for r in lib.roots()] == [str(tmp_path / "photos")]
        # what the damaged page held comes back from the photos, and only that is encoded
        assert lib.scan().encoded == 60 - recovered["files"]
        assert lib.catalog.count_codes(lib.encoder.model_id) == 60
        copy = shutil.copy(paths[-1], tmp_path / "query.jpg")
        assert lib.search(copy, k=3)[0].path == str(paths[-1])
    finally:
        lib.close()
    assert Library.repair(lib_dir).catalog_ok


def test_folders_where_index_files_belong_are_moved_aside(tmp_path):
    lib, paths = _scanned(tmp_path, n=6)
    lib_dir, mid = lib.directory, lib.encoder.model_id
    lib.close()
    names = (_index_file(mid), PHASH_INDEX_FILE, _store_file(mid))
    for name in names:
        (lib_dir / name).unlink()
        (lib_dir / name).mkdir()
        (lib_dir / name / "keep.txt").write_text("x")
    lib = open_library(lib_dir)
    try:
        copy = shutil.copy(paths[1], tmp_path / "query.jpg")
        assert lib.search(copy, k=3)[0].path == str(paths[1])
        for name in names:
            assert (lib_dir / name).is_file()
            assert (lib_dir / (name + ".broken") / "keep.txt").exists()
    finally:
        lib.close()


_FULL_DISK = """
    import resource, signal
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails (EFBIG)
    from core.library import LibraryError
    lib = Library.open(sys.argv[1], Gated(""), CONFIG)
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    for limit, action in ((40_000, "save"), (1_000, "add_root")):
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, hard))
        try:
            if action == "save":
                lib.add_root(sys.argv[2])  # a small catalog write still fits ...
                lib.save()  # ... the 80 KB index file does not
            else:
                lib.add_root(sys.argv[3])
            print(json.dumps({"action": action, "error": None}), flush=True)
        except LibraryError as exc:
            print(json.dumps({"action": action, "error": str(exc)}), flush=True)
    lib.close()  # logs, does not raise
    print(json.dumps({"closed": True}), flush=True)
"""


def test_full_disk_gives_a_clear_error_and_loses_nothing(tmp_path):
    lib_dir = tmp_path / "lib"
    rng = np.random.default_rng(0)
    enc = TinyEncoder()
    n = 5000  # enough codes for an index file larger than the small catalog writes
    with Catalog(lib_dir / CATALOG_FILE) as cat, cat.transaction():
        cat.ensure_model(enc.model_id, enc.n_bits, enc.embed_dim)
        cat.set_active_model(enc.model_id)
        root = cat.add_root(tmp_path / "photos")
        ids = [cat.upsert_file(root_id=root.id, path=str(tmp_path / "photos" / f"{i}.jpg"),
                               size=1, mtime_ns=1, fingerprint=str(i), status="ok",
                               phash=int(i)) for i in range(n)]
        emb = rng.standard_normal((n, enc.embed_dim)).astype(np.float32)
        cat.put_codes(enc.model_id, ids, rng.integers(0, 256, (n, 8), dtype=np.uint8),
                      emb / np.linalg.norm(emb, axis=1, keepdims=True))
    open_library(lib_dir).close()  # caches built and saved
    for d in ("a", "b"):
        (tmp_path / d).mkdir()
    child = _child(_FULL_DISK, lib_dir, tmp_path / "a", tmp_path / "b")
    lines = [json.loads(ln) for ln in _finish(child)]
    save, write = lines[0], lines[1]
    assert save["action"] == "save" and "disk is full" in save["error"]
    assert str(lib_dir) in save["error"]
    assert write["action"] == "add_root" and "full" in write["error"]
    assert lines[-1] == {"closed": True}
    lib = open_library(lib_dir)  # nothing lost: the catalog and the caches are sound
    try:
        assert lib.index.ntotal == n and _store_rows_equal_catalog(lib)
        assert [r.path for r in lib.roots()] == [str(tmp_path / "photos"), str(tmp_path / "a")]
    finally:
        lib.close()


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0,
                    reason="root writes into read-only folders")
def test_unwritable_library_folder_gives_a_clear_error_on_save(tmp_path):
    lib, _ = _scanned(tmp_path, n=4)
    try:
        lib.catalog.set_meta("touch", "1")  # something to save
        os.chmod(lib.directory, 0o500)
        with pytest.raises(LibraryError, match="writable"):
            lib.save()
    finally:
        os.chmod(lib.directory, 0o700)
        lib.close()


# --------------------------------------------------------------------- 9: temps, two scans
def test_stale_temp_files_are_removed_at_open_and_nothing_else(tmp_path):
    lib, _ = _scanned(tmp_path, n=4)
    lib_dir, mid = lib.directory, lib.encoder.model_id
    lib.close()
    ours = [lib_dir / f"{_index_file(mid)}.k3j_x9q2.tmp", lib_dir / "phash.cukdidx.abcdefgh.tmp",
            lib_dir / f"{_store_file(mid)}.zz12zz12.tmp",
            lib_dir / f"{CATALOG_FILE}.a1b2c3d4.tmp-wal"]
    others = [lib_dir / "notes.tmp", lib_dir / "phash.cukdidx.tmp",
              tmp_path / "photos" / "phash.cukdidx.abcdefgh.tmp"]
    for p in ours + others:
        p.write_bytes(b"left by a killed save")
    open_library(lib_dir).close()
    assert not any(p.exists() for p in ours)
    assert all(p.exists() for p in others)


_SCAN_SLOW = """
    lib = Library.open(sys.argv[1], TinyEncoder(delay_s=0.25), CONFIG)
    lib.add_root(sys.argv[2])
    print("ready", flush=True)
    while not Path(sys.argv[3]).exists():
        time.sleep(0.01)
    r = lib.scan()
    lib.close()
    print(json.dumps({"encoded": r.encoded}), flush=True)
"""


def test_two_scans_at_once_encode_each_photo_once(tmp_path):
    photos, lib_dir, go = tmp_path / "photos", tmp_path / "lib", tmp_path / "go"
    make_tree(photos, 16)
    children = [_child(_SCAN_SLOW, lib_dir, photos, go) for _ in range(2)]
    for c in children:  # both opened the new library at once (and both added the folder)
        _wait_line(c, "ready")
    go.touch()  # both scans start together
    encoded = [json.loads(_finish(c)[-1])["encoded"] for c in children]
    assert sum(encoded) == 16 and sorted(encoded) == [0, 16]
    with Library.open(lib_dir, TinyEncoder(), fast_config()) as lib:
        assert lib.catalog.count_codes(lib.encoder.model_id) == 16 == lib.index.ntotal
