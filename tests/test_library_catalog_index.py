"""Catalog (real SQLite files) and faiss binary index: persistence, staleness, rebuilds."""

from __future__ import annotations

import sqlite3

import numpy as np
import pytest

from core.library import BinaryIndex, Catalog, IndexLoadError, load_or_rebuild
from core.library.catalog import MIGRATIONS, SCHEMA_VERSION, phash_from_db, phash_to_db
from core.library.library import PHASH_INDEX_FILE, _index_file
from core.library.search import hamming_matrix
from tests.library_helpers import make_tree, open_library, write_image


def test_catalog_schema_wal_and_reopen(tmp_path):
    db = tmp_path / "lib" / "catalog.sqlite3"
    with Catalog(db) as cat:
        assert cat.schema_version == SCHEMA_VERSION
        root = cat.add_root(tmp_path / "photos", "polling", ["*.tmp"])
        assert root.watch_mode == "polling" and root.excludes == ("*.tmp",) and root.online
        assert cat.add_root(tmp_path / "photos").id == root.id  # idempotent
        with pytest.raises(ValueError):
            cat.add_root(tmp_path / "photos" / "inner")  # nested roots are refused
        with pytest.raises(ValueError):
            cat.add_root(tmp_path / "x", "sometimes")
        cat.ensure_model("m", 16, 4)
        fid = cat.upsert_file(root_id=root.id, path=str(tmp_path / "photos" / "a.jpg"), size=10,
                              mtime_ns=123, fingerprint="f", status="ok", phash=2**64 - 5,
                              width=4, height=3)
        cat.put_codes("m", [fid], np.array([[1, 2]], np.uint8), np.array([[0.5, 0.5, 0.5, 0.5]]))
        gen = cat.generation
    raw = sqlite3.connect(db)
    assert raw.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert raw.execute("SELECT version FROM schema_migrations").fetchall() == [
        (v,) for v, _ in MIGRATIONS]
    raw.close()
    with Catalog(db) as cat:  # reopen: no migration re-run, data intact
        assert cat.generation == gen
        rec = cat.get_file(fid)
        assert rec.phash == 2**64 - 5 and rec.width == 4 and rec.status == "ok"
        rows = cat.fetch_for_ranking([fid], "m")
        assert rows[fid][1].tolist() == [1, 2]
        assert rows[fid][2].dtype == np.float32 and np.allclose(rows[fid][2], 0.5)
        # Updating a path keeps its id and drops its (now stale) codes.
        assert cat.upsert_file(root_id=root.id, path=rec.path, size=11, mtime_ns=124,
                               fingerprint="g", status="ok") == fid
        assert cat.count_codes("m") == 0
        cat.remove_root(root.id)
        assert cat.count_files() == 0


def test_catalog_migrates_a_v1_library_and_keeps_its_files(tmp_path):
    db = tmp_path / "c.sqlite3"
    raw = sqlite3.connect(db)  # a library written before schema 2 (no mirror pHash)
    raw.executescript(dict(MIGRATIONS)[1])
    raw.execute("CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY, "
                "applied_at REAL NOT NULL)")
    raw.execute("INSERT INTO schema_migrations VALUES (1, 0)")
    raw.execute("INSERT INTO roots(path, added_at) VALUES (?, 0)", (str(tmp_path / "photos"),))
    raw.execute("INSERT INTO files(root_id, path, size, mtime_ns, status, phash, updated_at) "
                "VALUES (1, ?, 5, 7, 'ok', ?, 0)", (str(tmp_path / "photos" / "a.jpg"),
                                                    phash_to_db(2**63 + 3)))
    raw.commit()
    raw.close()
    with Catalog(db) as cat:
        assert cat.schema_version == SCHEMA_VERSION == 3
        rec = cat.get_file_by_path(tmp_path / "photos" / "a.jpg")
        assert rec.phash == 2**63 + 3 and rec.mirror_phash is None and rec.size == 5
        assert rec.flat is None and cat.flat_ids() == set()  # not known before schema 3
        assert len(cat.all_phashes(mirror=True)[0]) == 0
        cat.set_file_decoded(rec.id, status="ok", error=None, phash=rec.phash, width=4,
                             height=3, mirror_phash=2**64 - 1)
        assert cat.get_file(rec.id).mirror_phash == 2**64 - 1
        assert cat.get_file(rec.id).flat is None
        cat.set_file_decoded(rec.id, status="ok", error=None, phash=rec.phash, width=4,
                             height=3, mirror_phash=2**64 - 1, flat=True)
        assert cat.get_file(rec.id).flat is True and cat.flat_ids() == {rec.id}
        ids, mirrors = cat.all_phashes(mirror=True)
        assert ids.tolist() == [rec.id] and mirrors.tolist() == [2**64 - 1]


def test_catalog_refuses_newer_schema(tmp_path):
    db = tmp_path / "c.sqlite3"
    Catalog(db).close()
    raw = sqlite3.connect(db)
    raw.execute("INSERT INTO schema_migrations VALUES (99, 0)")
    raw.commit()
    raw.close()
    with pytest.raises(RuntimeError, match="newer"):
        Catalog(db)


def test_phash_signed_roundtrip():
    for v in (0, 1, 2**63 - 1, 2**63, 2**64 - 1):
        s = phash_to_db(v)
        assert -(2**63) <= s < 2**63 and phash_from_db(s) == v


def test_transaction_rolls_back(tmp_path):
    with Catalog(tmp_path / "c.sqlite3") as cat:
        root = cat.add_root(tmp_path)
        gen = cat.generation
        with pytest.raises(RuntimeError), cat.transaction():
            cat.upsert_file(root_id=root.id, path="/x/a.jpg", size=1, mtime_ns=1,
                            fingerprint=None, status="pending")
            raise RuntimeError("boom")
        assert cat.count_files() == 0 and cat.generation == gen


def test_binary_index_add_replace_remove_search(tmp_path):
    rng = np.random.default_rng(0)
    codes = rng.integers(0, 256, (200, 8), dtype=np.uint8)
    ids = np.arange(1000, 1200)
    idx = BinaryIndex(64, "m")
    idx.add(ids, codes)
    d, i = idx.search(codes[:5], 3)
    assert (i[:, 0] == ids[:5]).all() and (d[:, 0] == 0).all()
    # distances agree with a plain popcount
    ref = hamming_matrix(codes[:5], codes)
    assert np.array_equal(np.sort(ref, axis=1)[:, :3], d)
    # range search: exactly the codes within the radius (inclusive)
    res = idx.range_search(codes[:1], 28)[0]
    assert set(res[1].tolist()) == set(ids[ref[0] <= 28].tolist())
    # replacing an id does not duplicate it
    idx.add([1000], codes[7:8])
    assert idx.ntotal == 200
    assert idx.search(codes[7:8], 2)[1][0].tolist().count(1000) == 1
    assert idx.remove([1000, 1001, 5]) == 2 and idx.ntotal == 198
    assert 1000 not in idx.ids()


def test_index_save_load_and_corruption(tmp_path):
    idx = BinaryIndex(32, "m")
    idx.add([3, 4], np.array([[1, 2, 3, 4], [5, 6, 7, 8]], np.uint8))
    p = tmp_path / "i.cukdidx"
    idx.save(p, generation=7)
    back = BinaryIndex.load(p)
    assert back.ntotal == 2 and back.generation == 7 and back.model_id == "m"
    assert back.search(np.array([[5, 6, 7, 8]], np.uint8), 1)[1][0, 0] == 4
    assert not list(tmp_path.glob("*.tmp"))  # temp file replaced
    data = bytearray(p.read_bytes())
    data[-3] ^= 0xFF
    p.write_bytes(bytes(data))
    with pytest.raises(IndexLoadError):
        BinaryIndex.load(p)
    p.write_bytes(b"garbage")
    with pytest.raises(IndexLoadError):
        BinaryIndex.load(p)


def test_load_or_rebuild_detects_stale_and_foreign(tmp_path):
    p = tmp_path / "i.cukdidx"
    calls = []

    def rebuild(idx):
        calls.append(1)
        idx.add([1], np.zeros((1, 8), np.uint8))

    idx, rebuilt = load_or_rebuild(p, model_id="m", n_bits=64, generation=1, expected_count=1,
                                   rebuild=rebuild)
    assert rebuilt and idx.ntotal == 1 and p.exists()
    _, rebuilt = load_or_rebuild(p, model_id="m", n_bits=64, generation=1, expected_count=1,
                                 rebuild=rebuild)
    assert not rebuilt
    for kw in ({"generation": 2}, {"model_id": "other"}, {"expected_count": 5}):
        args = {"model_id": "m", "n_bits": 64, "generation": 1, "expected_count": 1, **kw}
        _, rebuilt = load_or_rebuild(p, rebuild=rebuild, **args)
        assert rebuilt, kw
        load_or_rebuild(p, rebuild=rebuild, model_id="m", n_bits=64, generation=1,
                        expected_count=1)  # restore


@pytest.mark.parametrize("damage", ["delete", "corrupt", "stale"])
def test_library_rebuilds_index_from_catalog(tmp_path, damage):
    photos = tmp_path / "photos"
    make_tree(photos, 10)
    lib = open_library(tmp_path / "lib")
    lib.add_root(photos)
    lib.scan()
    before = lib.search(photos / "img0000.png", k=5)
    lib.close()
    code_file = tmp_path / "lib" / _index_file(lib.encoder.model_id)
    ph_file = tmp_path / "lib" / PHASH_INDEX_FILE
    assert code_file.exists() and ph_file.exists()
    if damage == "delete":
        code_file.unlink()
        ph_file.unlink()
    elif damage == "corrupt":
        code_file.write_bytes(code_file.read_bytes()[:40])
        ph_file.write_bytes(b"\0" * 100)
    else:  # catalog changed behind the index's back (e.g. killed before saving)
        with Catalog(tmp_path / "lib" / "catalog.sqlite3") as cat:
            rec = cat.get_file_by_path(photos / "sub" / "img0001.jpg")
            cat.delete_files([rec.id])
    lib = open_library(tmp_path / "lib")
    try:
        expected = lib.catalog.count_codes(lib.encoder.model_id)
        assert lib.index.ntotal == expected == (9 if damage == "stale" else 10)
        assert lib.phash_index.ntotal == expected
        after = lib.search(photos / "img0000.png", k=5)
        if damage != "stale":
            assert [h.file_id for h in after] == [h.file_id for h in before]
        assert BinaryIndex.load(code_file).ntotal == expected  # rebuilt index was saved
    finally:
        lib.close()


def test_clean_reopen_does_not_rebuild(tmp_path):
    photos = tmp_path / "photos"
    make_tree(photos, 6)
    lib = open_library(tmp_path / "lib")
    assert set(lib.rebuilt_indexes) == {"phash", lib.encoder.model_id}  # first open: built
    lib.add_root(photos)
    lib.scan()
    lib.close()
    lib = open_library(tmp_path / "lib")
    try:
        assert lib.rebuilt_indexes == () and lib.index.ntotal == 6
    finally:
        lib.close()


def test_refresh_sees_changes_made_by_another_process(tmp_path):
    photos = tmp_path / "photos"
    paths = make_tree(photos, 6)
    gui = open_library(tmp_path / "lib")
    cli = open_library(tmp_path / "lib")  # stands in for `cukd library scan` elsewhere
    try:
        gui.add_root(photos)
        gui.scan()
        assert gui.refresh() is False  # our own writes do not trigger a reload
        paths[0].unlink()
        write_image(photos / "extra.jpg", 99)
        cli.scan()
        extra_id = gui.catalog.get_file_by_path(photos / "extra.jpg").id
        assert extra_id not in set(gui.index.ids().tolist())  # stale until refreshed
        hits = gui.search(photos / "extra.jpg", k=10)  # search refreshes first
        assert gui.index.ntotal == 6 and gui.phash_index.ntotal == 6
        assert not any(h.path == str(paths[0]) for h in hits)
        assert extra_id in set(gui.index.ids().tolist())
    finally:
        cli.close()
        gui.close()
