"""Two-stage search, tiers, radius queries, rotation-robust queries, duplicates, model change."""

from __future__ import annotations

import itertools
import shutil
import sqlite3
import threading
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from PIL import Image, ImageDraw

from core.imageio import ImageLoadError, phash
from core.library import Library, LibraryConfig, ScanConfig, SearchConfig
from core.library.library import CATALOG_FILE
from core.library.search import (
    SearchHit,
    TierThresholds,
    calibrate_near_duplicate_cosine,
    centre_linkage,
    find_duplicates,
    hamming_matrix,
    order_hits,
)
from core.library.testing import TinyEncoder
from core.library.verify import CROP_SCORE_MIN, CropVerifier, crop_score
from tests.library_helpers import make_image, make_tree, open_library, write_image


@pytest.fixture
def setup(tmp_path):
    photos = tmp_path / "photos"
    paths = make_tree(photos, 30)
    original = write_image(photos / "original.png", 500, (160, 120))
    shutil.copyfile(original, photos / "byte_copy.png")
    Image.open(original).resize((120, 90), Image.Resampling.LANCZOS).save(
        photos / "smaller.jpg", quality=85)
    Image.open(original).rotate(90, expand=True).save(photos / "rotated.png")
    lib = open_library(tmp_path / "lib")
    lib.add_root(photos)
    lib.scan()
    yield lib, photos, paths
    lib.close()


def test_search_by_path_image_and_id_agree_and_exclude_self(setup):
    lib, photos, _ = setup
    q = photos / "original.png"
    qid = lib.catalog.get_file_by_path(q).id
    by_path = lib.search(q, k=5)
    by_id = lib.search(qid, k=5)
    assert qid not in {h.file_id for h in by_path + by_id}
    assert [h.file_id for h in by_path] == [h.file_id for h in by_id]
    by_image = lib.search(Image.open(q), k=5)  # not excluded: it is not a catalog file
    copy_id = lib.catalog.get_file_by_path(photos / "byte_copy.png").id
    assert {h.file_id for h in by_image[:2]} == {qid, copy_id}
    assert by_image[0].tier == by_image[1].tier == "identical"
    assert [h.file_id for h in by_image[2:5]] == [h.file_id for h in by_path[1:4]]


def test_tiers_and_metadata(setup):
    lib, photos, _ = setup
    hits = lib.search(photos / "original.png", k=10)
    by_name = {h.path.rsplit("/", 1)[-1]: h for h in hits}
    assert hits[0].path.endswith("byte_copy.png") and hits[0].tier == "identical"
    assert by_name["smaller.jpg"].tier == "near_duplicate"
    assert by_name["smaller.jpg"].phash_distance <= 10
    assert hits[1].path.endswith("smaller.jpg")
    assert all(h.tier == "similar" for h in hits[2:] if "rotated" not in h.path)
    h = by_name["smaller.jpg"]
    assert (h.width, h.height) == (120, 90) and h.size > 0 and h.mtime > 0
    assert -1.0 <= h.score <= 1.0 and 0 <= h.hamming <= 64
    ranks = [("identical", "near_duplicate", "similar").index(x.tier) for x in hits]
    assert ranks == sorted(ranks)
    assert len(lib.search(photos / "original.png", k=3)) == 3


def test_radius_query_matches_brute_force(setup):
    lib, photos, _ = setup
    qid = lib.catalog.get_file_by_path(photos / "img0002.jpg").id
    qcode = lib.index.reconstruct(qid)[None]
    ids = lib.index.ids()
    dist = hamming_matrix(qcode, np.stack([lib.index.reconstruct(int(i)) for i in ids]))[0]
    radius = int(np.sort(dist)[6])  # a radius that holds a handful of codes
    hits = lib.search(qid, k=1000, radius=radius)
    expected = {int(i) for i, d in zip(ids, dist, strict=True) if d <= radius and i != qid}
    within = {h.file_id for h in hits if h.hamming <= radius}
    assert within == expected
    assert all(h.hamming <= radius or h.tier != "similar" for h in hits)


def test_robust_query_finds_rotated_copy(setup):
    lib, photos, _ = setup
    rotated_id = lib.catalog.get_file_by_path(photos / "rotated.png").id
    plain = lib.search(photos / "original.png", k=40)
    robust = lib.search(photos / "original.png", k=5, robust=True)
    r = next(h for h in robust if h.file_id == rotated_id)
    assert r.tier in ("identical", "near_duplicate") and r.phash_distance <= 2
    p = next((h for h in plain if h.file_id == rotated_id), None)
    assert p is None or p.score < r.score


def test_mirrored_copy_is_a_near_duplicate_through_the_hash_channel(tmp_path):
    # The model's cosine says "similar" (calibrated 0.999); the mirrored query's pHash
    # vouches for the copy.
    photos = tmp_path / "photos"
    make_tree(photos, 8, start_seed=200)
    im = make_image(11, (160, 120))
    im.save(photos / "photo.png")
    mirrored = im.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    mirrored.save(tmp_path / "mirrored.png")
    lib = open_library(tmp_path / "lib", TinyEncoder(near_duplicate_cosine=0.999))
    try:
        lib.add_root(photos)
        lib.scan()
        rec = lib.catalog.get_file_by_path(photos / "photo.png")
        assert bin(phash(mirrored) ^ rec.phash).count("1") > 10  # plain pHash misses it
        for query in (tmp_path / "mirrored.png", mirrored):
            hit = lib.search(query, k=3)[0]
            assert hit.file_id == rec.id and hit.tier == "near_duplicate"
            assert hit.phash_distance <= SearchConfig().mirror_phash_radius and hit.score < 0.999
        # Once indexed, the copy's stored mirror pHash does the same without decoding it,
        # and the duplicates view puts the two together.
        shutil.copyfile(tmp_path / "mirrored.png", photos / "mirrored.png")
        lib.scan()
        copy = lib.catalog.get_file_by_path(photos / "mirrored.png")
        assert copy.mirror_phash is not None
        for query in (copy.id, photos / "mirrored.png"):
            hit = lib.search(query, k=3)[0]
            assert hit.file_id == rec.id and hit.tier == "near_duplicate"
        assert any({rec.id, copy.id} <= {f.id for f in g.files} for g in lib.duplicates())
    finally:
        lib.close()


def test_scan_fills_the_mirror_phash_of_files_indexed_before_it_existed(tmp_path):
    photos = tmp_path / "photos"
    make_tree(photos, 5)
    with open_library(tmp_path / "lib") as lib:
        lib.add_root(photos)
        lib.scan()
        ids = sorted(int(i) for i in lib.catalog.all_phashes(mirror=True)[0])
        assert len(ids) == 5
        expected = {i: lib.catalog.get_file(i).mirror_phash for i in ids}
    raw = sqlite3.connect(tmp_path / "lib" / CATALOG_FILE)  # as before catalog schema 2
    raw.execute("UPDATE files SET mirror_phash = NULL")
    raw.commit()
    raw.close()
    lib = open_library(tmp_path / "lib")
    try:
        assert len(lib.catalog.all_phashes(mirror=True)[0]) == 0
        result = lib.scan()
        assert result.encoded == 5
        assert {i: lib.catalog.get_file(i).mirror_phash for i in ids} == expected
        assert lib.scan().encoded == 0  # once
    finally:
        lib.close()


def _icons(folder: Path) -> list[str]:
    """Different artwork on transparent backgrounds (white logos, a black bar), two blank
    transparent canvases, and byte copies of one logo and of one blank canvas."""
    folder.mkdir(parents=True, exist_ok=True)

    def icon(name, draw, colour=(255, 255, 255, 255), size=(200, 200)):
        im = Image.new("RGBA", size, (0, 0, 0, 0))
        draw(ImageDraw.Draw(im), colour)
        im.save(folder / name)

    icon("ring.png", lambda d, c: d.ellipse((30, 30, 170, 170), outline=c, width=18))
    icon("square.png", lambda d, c: d.rectangle((50, 50, 150, 150), fill=c))
    icon("triangle.png", lambda d, c: d.polygon([(100, 20), (180, 180), (20, 180)], fill=c))
    icon("slash.png", lambda d, c: d.line([(20, 20), (180, 180)], fill=c, width=24))
    icon("pie.png", lambda d, c: d.pieslice((30, 30, 170, 170), 30, 300, fill=c))
    icon("black_bar.png", lambda d, c: d.rectangle((20, 80, 180, 120), fill=c), (0, 0, 0, 255))
    icon("empty.png", lambda d, c: None)
    icon("empty_wide.png", lambda d, c: None, size=(300, 150))
    shutil.copyfile(folder / "triangle.png", folder / "triangle_copy.png")
    shutil.copyfile(folder / "empty.png", folder / "empty_copy.png")
    return ["ring.png", "square.png", "triangle.png", "slash.png", "pie.png", "black_bar.png",
            "empty.png", "empty_wide.png"]


def test_transparent_pictures_are_not_duplicates_of_each_other_but_copies_are(tmp_path):
    # Issue 17: unrelated transparent PNGs were one "identical" group at every level (their
    # transparent pixels decoded to one blank white picture: one pHash, one embedding).
    photos = tmp_path / "photos"
    make_tree(photos, 6)
    originals = _icons(photos)
    with open_library(tmp_path / "lib") as lib:
        lib.add_root(photos)
        lib.scan()
        flat = {Path(lib.catalog.get_file(i).path).name for i in lib.catalog.flat_ids()}
        assert flat == {"empty.png", "empty_copy.png", "empty_wide.png"}
        for level in ("strict", "normal", "loose"):
            groups = [{Path(f.path).name for f in g.files} for g in lib.duplicates(level)]
            for g in groups:
                assert len(g & set(originals)) <= 1, (level, g)
            assert {"triangle.png", "triangle_copy.png"} in groups, level
            assert {"empty.png", "empty_copy.png"} in groups, level
        # Searching: a blank canvas is identical to its byte copy only, never a
        # near-duplicate of another blank canvas (nor of anything else).
        hits = lib.search(photos / "empty.png", k=8)
        tiers = {Path(h.path).name: h.tier for h in hits}
        assert tiers.pop("empty_copy.png") == "identical"
        assert set(tiers.values()) == {"similar"}
        assert "empty_wide.png" in tiers
        hits = lib.search(photos / "triangle.png", k=8)
        tiers = {Path(h.path).name: h.tier for h in hits}
        assert tiers.pop("triangle_copy.png") == "identical"
        assert set(tiers.values()) == {"similar"}
        # A pasted transparent image decodes the way the file does.
        with Image.open(photos / "ring.png") as im:
            pasted = im.copy()
        top = lib.search(pasted, k=1)[0]
        assert Path(top.path).name == "ring.png" and top.tier == "identical"


def test_scan_decodes_once_more_transparent_formats_indexed_before_flat_was_known(tmp_path):
    # Files indexed before catalog schema 3 had transparency composited on white and no
    # "flat" flag: the formats that can be transparent are decoded (and encoded) once more;
    # JPEGs, which cannot, are left alone.
    photos = tmp_path / "photos"
    make_tree(photos, 6)  # 2 PNGs, 4 JPEGs
    _icons(photos)
    with open_library(tmp_path / "lib") as lib:
        lib.add_root(photos)
        lib.scan()
    raw = sqlite3.connect(tmp_path / "lib" / CATALOG_FILE)
    raw.execute("UPDATE files SET flat = NULL")
    raw.commit()
    raw.close()
    with open_library(tmp_path / "lib") as lib:
        assert lib.catalog.flat_ids() == set()
        assert lib.scan().encoded == 2 + 10  # the PNGs
        assert len(lib.catalog.flat_ids()) == 3
        assert lib.scan().encoded == 0  # once
        groups = [{Path(f.path).name for f in g.files} for g in lib.duplicates("strict")]
        assert {"empty.png", "empty_copy.png"} in groups
        assert not any("empty_wide.png" in g for g in groups)


def test_unreadable_query_and_unknown_id(setup, tmp_path):
    lib, _, _ = setup
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"nope")
    with pytest.raises(ImageLoadError):
        lib.search(bad)
    with pytest.raises(KeyError):
        lib.search(10**9)


def test_find_duplicates(setup):
    lib, photos, _ = setup
    groups = lib.duplicates()
    names = [sorted(f.path.rsplit("/", 1)[-1] for f in g.files) for g in groups]
    assert ["byte_copy.png", "original.png", "smaller.jpg"] in names
    assert all(len(g.files) >= 2 for g in groups)
    big = next(g for g in groups if len(g.files) >= 3)
    assert big.tier == "near_duplicate"
    # Two byte-identical files alone form an "identical" group.
    write_image(photos / "lonely.png", 4242, (64, 64))
    shutil.copyfile(photos / "lonely.png", photos / "lonely_copy.png")
    lib.scan()
    groups = lib.duplicates()
    pair = next(g for g in groups if any("lonely" in f.path for f in g.files))
    assert pair.tier == "identical" and len(pair.files) == 2


def test_centre_linkage_groups_a_photo_with_its_copies_and_breaks_chains():
    def make(pairs, n):
        ok = np.zeros((n, n), dtype=bool)
        for x, y in pairs:
            ok[x, y] = ok[y, x] = True
        return lambda j, others: ok[j, others]

    # A chain 0-1-2-3-4-5-6: only neighbours are compatible. The first centre (most links,
    # lowest position) is 1 with 0 and 2; then 3 with 4; then 5 with 6. No group spans the
    # chain.
    chain = make([(i, i + 1) for i in range(6)], 7)
    assert centre_linkage(7, chain) == [[1, 0, 2], [3, 4], [5, 6]]
    # A photo (0) with three copies that are not like each other (grey, crop, flip) plus an
    # unrelated pair: the copies stay with their photo, centre first.
    star = make([(0, 1), (0, 2), (0, 3), (4, 5)], 6)
    assert centre_linkage(6, star) == [[0, 1, 2, 3], [4, 5]]
    assert centre_linkage(3, make([], 3)) == []


def test_find_duplicates_does_not_chain_a_panning_burst(tmp_path):
    # Eight frames of a slow pan: each is a near-duplicate of the next, the first and the
    # last share little. Linking pairs alone put all eight in one group.
    photos = tmp_path / "photos"
    make_tree(photos, 10)
    rng = np.random.default_rng(7)
    wide = Image.fromarray(rng.integers(0, 256, (3, 12, 3), dtype=np.uint8)).resize(
        (960, 120), Image.Resampling.BICUBIC)
    for i in range(8):
        wide.crop((8 * i, 0, 8 * i + 160, 120)).save(photos / f"pan{i}.png")
    lib = open_library(tmp_path / "lib")
    try:
        lib.add_root(photos)
        lib.scan()
        t = TierThresholds()
        ids = {lib.catalog.get_file_by_path(photos / f"pan{i}.png").id: i for i in range(8)}
        e_ids, embs = lib.catalog.all_embeddings(lib.encoder.model_id)
        emb = {int(i): embs[j] for j, i in enumerate(e_ids)}

        def compatible(a, b):
            ra, rb = lib.catalog.get_file(a), lib.catalog.get_file(b)
            return (bin(ra.phash ^ rb.phash).count("1") <= t.near_duplicate_phash
                    or float(emb[a] @ emb[b]) >= t.near_duplicate_cosine)

        pan = sorted(ids, key=ids.get)
        assert all(compatible(a, b) for a, b in itertools.pairwise(pan))  # a chain
        assert not compatible(pan[0], pan[-1])
        # (the loose level links by pHash and cosine only, as `compatible` does; the normal
        # level's pixel check also links overlapping frames, but chains no more than this)
        groups = [[f.id for f in g.files] for g in lib.duplicates("loose")]
        pan_groups = [[ids[i] for i in g if i in ids] for g in groups if set(g) & set(ids)]
        assert len(pan_groups) >= 2
        assert not any({0, 7} <= set(g) for g in pan_groups)
        assert sum(len(g) for g in pan_groups) >= 6  # most frames still have their twins
        for g in groups:  # every file is a near-duplicate of its group's first file
            assert all(compatible(g[0], b) for b in g[1:]), g
        normal = [{f.id for f in g.files} for g in lib.duplicates()]
        assert not any({pan[0], pan[-1]} <= g for g in normal)
    finally:
        lib.close()


def test_find_duplicates_keeps_unlike_copies_with_their_photo(tmp_path):
    # A grey-scale copy (pHash twin) and a 5 % crop (cosine twin) of one photo are both its
    # copies although they are not near-duplicates of each other: one group, photo first.
    photos = tmp_path / "photos"
    make_tree(photos, 6, start_seed=100)
    im = make_image(9, (160, 120))
    im.save(photos / "full.png")
    im.convert("L").convert("RGB").save(photos / "grey.png")
    im.crop((8, 6, 152, 114)).save(photos / "crop.png")
    lib = open_library(tmp_path / "lib")
    try:
        lib.add_root(photos)
        lib.scan()
        rec = {n: lib.catalog.get_file_by_path(photos / f"{n}.png") for n in
               ("full", "grey", "crop")}
        t = TierThresholds()
        assert bin(rec["grey"].phash ^ rec["crop"].phash).count("1") > t.near_duplicate_phash
        groups = [[f.id for f in g.files] for g in lib.duplicates()]
        group = next(g for g in groups if rec["full"].id in g)
        assert group[0] == rec["full"].id
        assert set(group) == {r.id for r in rec.values()}
    finally:
        lib.close()


def test_crop_score_finds_a_crop_inside_its_photo_not_another_photo(tmp_path):
    photo = make_image(9, (160, 120)).convert("L")
    photo.thumbnail((64, 64))
    crop = make_image(9, (160, 120)).crop((30, 10, 150, 100)).convert("L")  # 56 % of the area
    crop.thumbnail((64, 64))
    other = make_image(10, (160, 120)).convert("L")
    other.thumbnail((64, 64))
    assert crop_score(photo, crop) >= CROP_SCORE_MIN
    assert crop_score(crop, photo) == crop_score(photo, crop)  # either way round
    assert crop_score(photo, other) < CROP_SCORE_MIN
    flat = Image.new("L", (40, 30), 128)
    assert crop_score(photo, flat) <= 0.0  # a flat patch proves nothing
    # The verifier reads files (read-only) and never accepts an unreadable one.
    make_image(9, (160, 120)).save(tmp_path / "photo.png")
    make_image(9, (160, 120)).crop((30, 10, 150, 100)).save(tmp_path / "crop.jpg", quality=90)
    (tmp_path / "broken.jpg").write_bytes(b"not a jpeg")
    check = CropVerifier()
    assert check(tmp_path / "photo.png", tmp_path / "crop.jpg")
    assert not check(tmp_path / "photo.png", tmp_path / "broken.jpg")


def test_calibrate_near_duplicate_cosine():
    rng = np.random.default_rng(0)

    def unit(x):
        return x / np.linalg.norm(x, axis=1, keepdims=True)

    # Unrelated photos: nobody is close, the floor applies.
    assert calibrate_near_duplicate_cosine(unit(rng.standard_normal((300, 64)))) == 0.95
    # Pairs of different photos at cosine 0.97 (one subject, two shots): the threshold
    # rises above them, so they are not called near-duplicates.
    base = unit(rng.standard_normal((150, 64)))
    ortho = rng.standard_normal((150, 64))
    ortho = unit(ortho - (ortho * base).sum(1, keepdims=True) * base)
    twins = 0.97 * base + np.sqrt(1 - 0.97**2) * ortho
    value = calibrate_near_duplicate_cosine(np.concatenate([base, twins]))
    assert 0.969 < value < 0.972
    # ... but never above the cap, and a huge false rate gives a lower quantile.
    assert calibrate_near_duplicate_cosine(np.concatenate([base, base])) == 0.99
    assert calibrate_near_duplicate_cosine(np.concatenate([base, base]), cap=1.0) > 0.999
    assert calibrate_near_duplicate_cosine(base[:1]) == 0.95
    # A subsample spread over the whole set: the twins at the end still count.
    spread = calibrate_near_duplicate_cosine(
        np.concatenate([unit(rng.standard_normal((300, 64))), base, twins]), max_images=300)
    assert spread > 0.955


@pytest.mark.parametrize("calibrated", [None, 0.999])
def test_model_calibrated_near_duplicate_cosine_decides_cosine_only_tiers(tmp_path, calibrated):
    # A 5 % crop: pHash too far for a near-duplicate, cosine 0.98 under the test encoder.
    photos = tmp_path / "photos"
    make_tree(photos, 6, start_seed=100)
    im = make_image(9, (160, 120))
    im.save(photos / "full.png")
    im.crop((8, 6, 152, 114)).save(photos / "crop.png")
    encoder = TinyEncoder(near_duplicate_cosine=calibrated)
    lib = open_library(tmp_path / "lib", encoder)
    try:
        lib.add_root(photos)
        lib.scan()
        crop = lib.catalog.get_file_by_path(photos / "crop.png")
        full = lib.catalog.get_file_by_path(photos / "full.png")
        assert bin(crop.phash ^ full.phash).count("1") > TierThresholds().near_duplicate_phash
        hit = next(h for h in lib.search(photos / "full.png", k=5) if h.file_id == crop.id)
        grouped = any({crop.id, full.id} <= {f.id for f in g.files} for g in lib.duplicates())
        if calibrated is None:  # the fallback 0.95
            assert hit.score >= 0.95 and hit.tier == "near_duplicate" and grouped
            # the strict level trusts pHash only, so the crop is not grouped there
            assert not any({crop.id, full.id} <= {f.id for f in g.files}
                           for g in lib.duplicates("strict"))
            with pytest.raises(ValueError):
                lib.duplicates("sloppy")
        else:
            assert hit.score < calibrated and hit.tier == "similar"
            # By the cosine alone the crop is no near-duplicate at this calibration ...
            by_cosine = find_duplicates(
                catalog=lib.catalog, model_id=encoder.model_id, code_index=lib.index,
                phash_index=lib.phash_index, thresholds=TierThresholds(
                    near_duplicate_cosine=calibrated))
            assert not any({crop.id, full.id} <= {f.id for f in g.files} for g in by_cosine)
            # ... but the pixel check of the normal level finds it inside the photo, and the
            # loose level takes look-alikes down to cosine 0.95.
            assert grouped
            assert any({crop.id, full.id} <= {f.id for f in g.files}
                       for g in lib.duplicates("loose"))
            assert lib.duplicates(should_stop=lambda: True) == []  # stopped in the check
            seen = []
            lib.duplicates(on_progress=seen.append)
            assert seen[0][0] == 0 and seen[-1][0] == seen[-1][1] >= 1
            # A user who fixed the threshold keeps it.
            lib.config = replace(lib.config, search=replace(
                lib.config.search, thresholds=TierThresholds(model_calibrated=False)))
            hit = next(h for h in lib.search(photos / "full.png", k=5) if h.file_id == crop.id)
            assert hit.tier == "near_duplicate"
    finally:
        lib.close()
    # Opened again without the model (as `cukd duplicates` does, with a stand-in that only
    # names the model), the library remembers the model's calibration.
    stand_in = SimpleNamespace(model_id=encoder.model_id, n_bits=encoder.n_bits,
                               embed_dim=encoder.embed_dim, input_size=32, encode=None)
    with Library.open(tmp_path / "lib", stand_in) as lib:
        hit = next(h for h in lib.search(full.id, k=5) if h.file_id == crop.id)
        assert hit.tier == ("near_duplicate" if calibrated is None else "similar")


def test_model_change_reencodes_in_background_and_swaps(tmp_path):
    photos = tmp_path / "photos"
    make_tree(photos, 16)
    old = TinyEncoder(seed=0)
    lib = open_library(tmp_path / "lib", old)
    try:
        lib.add_root(photos)
        lib.scan()
        new = TinyEncoder(n_bits=128, embed_dim=16, seed=1, delay_s=0.05)
        release = threading.Event()
        seen_old_searches = []

        def slow_stop() -> bool:
            # While the re-encode runs, searches still answer with the old model.
            if not release.is_set():
                hits = lib.search(photos / "img0000.png", k=3)
                seen_old_searches.append(lib.encoder.model_id)
                assert hits and lib.index.model_id == old.model_id
                release.set()
            return False

        progress = []
        change = lib.change_encoder(new, should_stop=slow_stop, chunk=4,
                                    on_progress=progress.append)
        assert change.wait(60) and change.swapped and change.error is None
        assert progress[-1].phase == "reencode" and progress[-1].done == progress[-1].total == 16
        assert [p.done for p in progress] == sorted(p.done for p in progress)
        assert seen_old_searches == [old.model_id]
        assert lib.encoder is new and lib.index.model_id == new.model_id
        assert lib.index.ntotal == 16 and lib.index.n_bits == 128
        assert lib.catalog.active_model == new.model_id
        assert lib.catalog.count_codes(old.model_id) == 0
        assert lib.search(photos / "img0000.png", k=3)
        assert lib.status().model_id == new.model_id
    finally:
        lib.close()
    reopened = open_library(tmp_path / "lib", TinyEncoder(n_bits=128, embed_dim=16, seed=1))
    try:
        assert reopened.index.ntotal == 16
        assert reopened.scan().encoded == 0
    finally:
        reopened.close()


def test_model_change_cancel_keeps_old_model(tmp_path):
    photos = tmp_path / "photos"
    make_tree(photos, 12)
    lib = open_library(tmp_path / "lib")
    try:
        lib.add_root(photos)
        lib.scan()
        new = TinyEncoder(seed=7)
        change = lib.change_encoder(new, should_stop=lambda: new.calls >= 1, background=False,
                                    chunk=4)
        assert change.cancelled and not change.swapped
        assert lib.catalog.active_model == lib.encoder.model_id != new.model_id
        partial = lib.catalog.count_codes(new.model_id)
        assert 0 < partial < 12  # kept for resuming
        change = lib.change_encoder(new, background=False)
        assert change.swapped and change.encoded == 12 - partial
    finally:
        lib.close()


def test_make_image_distinct():
    a, b = np.asarray(make_image(1), float), np.asarray(make_image(2), float)
    assert np.abs(a - b).mean() > 20


class _UselessCodes(TinyEncoder):
    """Same code for every image: stage 1 by codes alone cannot find anything."""

    def encode(self, images):
        codes, emb = super().encode(images)
        return np.zeros_like(codes), emb


def test_hash_channel_recovers_near_duplicates_lost_by_codes(tmp_path):
    photos = tmp_path / "photos"
    make_tree(photos, 40)
    original = write_image(photos / "zz_original.png", 500, (160, 120))
    Image.open(original).resize((120, 90), Image.Resampling.LANCZOS).save(
        photos / "zz_smaller.jpg", quality=85)
    few = SearchConfig(candidate_factor=1, min_candidates=5)
    for phash_radius, found in ((0, False), (10, True)):
        config = LibraryConfig(scan=ScanConfig(batch_size=8),
                               search=replace(few, phash_radius=phash_radius))
        lib = Library.open(tmp_path / f"lib{phash_radius}", _UselessCodes(), config)
        try:
            lib.add_root(photos)
            lib.scan()
            hits = lib.search(original, k=1)
            assert (hits[0].path.endswith("zz_smaller.jpg")) == found, hits
            if found:
                assert hits[0].tier == "near_duplicate" and hits[0].phash_distance <= 10
        finally:
            lib.close()


def _hit(fid: int, score: float, ph: int | None, dims=(1920, 1200), tier="similar") -> SearchHit:
    return SearchHit(fid, f"/p/{fid}.jpg", score, 10, ph, tier, 1, 0.0, *dims)


def test_near_ties_are_broken_by_phash_then_aspect_ratio() -> None:
    t = TierThresholds()
    # Three look-alikes within 0.005 cosine: the smaller pHash distance wins, and between equal
    # distances the file with the query's aspect ratio.
    hits = [_hit(1, 0.8994, 34), _hit(2, 0.8980, 12, (1920, 1440)), _hit(3, 0.8978, 12)]
    assert [h.file_id for h in order_hits(hits, t, (960, 600), 0.005)] == [3, 2, 1]
    # Portrait copy of a landscape photo: either orientation matches the aspect ratio.
    assert [h.file_id for h in order_hits(hits, t, (600, 960), 0.005)] == [3, 2, 1]
    # near_tie 0: cosine alone.
    assert [h.file_id for h in order_hits(hits, t, (960, 600), 0.0)] == [1, 2, 3]
    # A clear cosine lead is kept whatever the pHash says.
    far = [_hit(1, 0.95, 40), _hit(2, 0.90, 11)]
    assert [h.file_id for h in order_hits(far, t, None, 0.005)] == [1, 2]
    # Tiers and pHash-vouched matches still come first.
    mixed = [_hit(1, 0.99, 40), _hit(2, 0.80, 3, tier="near_duplicate"), _hit(3, 0.991, None)]
    assert [h.file_id for h in order_hits(mixed, t, None, 0.005)] == [2, 1, 3]
