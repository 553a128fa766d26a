"""The re-rank embedding store: a flat file of fp16 rows by file id, rebuilt when stale."""

from __future__ import annotations

import numpy as np
from PIL import Image

from core.library.embeddings import HEADER, EmbeddingStore, open_store
from core.library.library import _store_file
from core.library.search import run_search
from tests.library_helpers import make_tree, open_library, write_image


def _unit(rng: np.random.Generator, n: int, d: int) -> np.ndarray:
    x = rng.standard_normal((n, d)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def test_store_put_get_clear_and_generation(tmp_path):
    rng = np.random.default_rng(0)
    store = EmbeddingStore(tmp_path / "e.cukdemb", "m", 8)
    emb = _unit(rng, 5, 8)
    ids = np.array([7, 3, 4, 5, 100])  # unsorted, with a contiguous run and a gap
    store.put(ids, emb)
    found, got = store.get([100, 3, 6, 7, -1, 5000])
    assert found == [100, 3, 7]  # 6 was never written, 5000 lies beyond the file
    np.testing.assert_allclose(got, emb[[4, 1, 0]], atol=1e-3)  # fp16 storage
    assert got.dtype == np.float32
    store.clear([3, 5000])
    assert store.get([3, 4])[0] == [4]
    assert not store.matches(0)  # never stamped
    store.save(12)
    assert store.matches(12) and not store.matches(13)
    assert (tmp_path / "e.cukdemb").stat().st_size == HEADER + 101 * 16
    store.close()
    reopened = EmbeddingStore(tmp_path / "e.cukdemb", "m", 8)
    assert reopened.matches(12) and reopened.get([7])[0] == [7]
    assert not EmbeddingStore(tmp_path / "e.cukdemb", "other", 8).matches(12)
    reopened.close()


def test_open_store_rebuilds_when_missing_stale_or_damaged(tmp_path):
    rng = np.random.default_rng(1)
    emb = _unit(rng, 4, 6)
    calls = []

    def rebuild():
        calls.append(1)
        yield np.array([1, 2]), emb[:2]
        yield np.array([9, 10]), emb[2:]

    path = tmp_path / "s.cukdemb"
    store, rebuilt = open_store(path, model_id="m", dim=6, generation=3, rebuild=rebuild)
    assert rebuilt and store.get([1, 2, 9, 10])[0] == [1, 2, 9, 10]
    store.close()
    store, rebuilt = open_store(path, model_id="m", dim=6, generation=3, rebuild=rebuild)
    assert not rebuilt and len(calls) == 1
    store.put([50], emb[:1])  # a row the catalog does not have ...
    store.close()
    store, rebuilt = open_store(path, model_id="m", dim=6, generation=4, rebuild=rebuild)
    assert rebuilt and store.get([50])[0] == []  # ... is gone after the stale-file rebuild
    store.close()
    path.write_bytes(b"garbage")
    store, rebuilt = open_store(path, model_id="m", dim=6, generation=4, rebuild=rebuild)
    assert rebuilt and store.get([10])[0] == [10]
    store.close()


def test_library_search_reads_the_store_and_matches_the_catalog(tmp_path):
    photos = tmp_path / "photos"
    paths = make_tree(photos, 12)
    lib = open_library(tmp_path / "lib")
    try:
        lib.add_root(photos)
        lib.scan()
        store_path = tmp_path / "lib" / _store_file(lib.encoder.model_id)
        assert store_path.exists() and lib._store.matches(lib.catalog.generation)
        ids, ref = lib.catalog.all_embeddings(lib.encoder.model_id)
        found, got = lib._store.get(ids.tolist())
        assert found == ids.tolist()
        np.testing.assert_array_equal(got, ref)  # same fp16 values as the catalog
        # The same search through the catalog fallback gives the same hits.
        from core.library.search import prepare_query

        q = prepare_query(paths[3], catalog=lib.catalog, encoder=lib.encoder,
                          decode_size=lib._scanner.decode_size)
        common = dict(catalog=lib.catalog, model_id=lib.encoder.model_id,
                      code_index=lib.index, phash_index=lib.phash_index, k=8)
        with_store = run_search(q, embeddings=lib._store, **common)
        without = run_search(q, embeddings=None, **common)
        assert [(h.file_id, h.tier) for h in with_store] == [(h.file_id, h.tier)
                                                             for h in without]
        assert with_store and all(h.path != str(paths[3]) for h in with_store)  # self excluded
        # Deleting a photo zeroes its row; a new one gets its row when indexed.
        gone = lib.catalog.get_file_by_path(paths[0]).id
        paths[0].unlink()
        write_image(photos / "new.jpg", 77)
        lib.scan()
        new_id = lib.catalog.get_file_by_path(photos / "new.jpg").id
        found, _ = lib._store.get([gone, new_id])
        assert found == ([new_id] if new_id != gone else [gone])
        with Image.open(photos / "new.jpg") as im:  # in-memory query: finds the file itself
            assert lib.search(im.convert("RGB"), k=3)[0].path == str(photos / "new.jpg")
    finally:
        lib.close()


def test_store_rebuilt_after_crash_between_commit_and_save(tmp_path):
    photos = tmp_path / "photos"
    paths = make_tree(photos, 6)
    lib = open_library(tmp_path / "lib")
    lib.add_root(photos)
    lib.scan()
    mid, dim = lib.encoder.model_id, lib.encoder.embed_dim
    lib.close()
    store_path = tmp_path / "lib" / _store_file(mid)
    # Zero every row behind the library's back, as if the writes were lost, and leave the
    # stamp one generation behind the catalog (a crash before save()).
    data = bytearray(store_path.read_bytes())
    data[HEADER:] = bytes(len(data) - HEADER)
    store_path.write_bytes(bytes(data))
    s = EmbeddingStore(store_path, mid, dim)
    s.save(-5)
    s.close()
    lib = open_library(tmp_path / "lib")
    try:
        ids, _ = lib.catalog.all_embeddings(mid)
        assert lib._store.get(ids.tolist())[0] == ids.tolist()  # rebuilt from the catalog
        with Image.open(paths[2]) as im:
            hits = lib.search(im.convert("RGB"), k=3)
        assert hits and hits[0].path == str(paths[2])
    finally:
        lib.close()
