"""benchmarks/default_model.py: the query edits are deterministic and of the right sizes, the
ranking metrics match core.evaluate, photo discovery de-duplicates."""

from __future__ import annotations

import importlib.util
import math
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageFilter

from core.evaluate import map_float, mean_average_precision

ROOT = Path(__file__).resolve().parents[1]


def _load_bench():
    name = "bench_default_model"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, ROOT / "benchmarks" / "default_model.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod
    spec.loader.exec_module(mod)
    return mod


bench = _load_bench()


def _photo(w: int = 320, h: int = 200, seed: int = 0) -> Image.Image:
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 255, (6, 9, 3), dtype=np.uint8)
    return Image.fromarray(small).resize((w, h), Image.BICUBIC).filter(
        ImageFilter.GaussianBlur(2))


def test_edits_are_deterministic_and_sized() -> None:
    base = _photo()
    a = bench.make_queries(base, "p", seed=3)
    b = bench.make_queries(base, "p", seed=3)
    assert list(a) == list(bench.TRANSFORMS)
    for k in bench.TRANSFORMS:
        assert a[k].mode == "RGB"
        assert np.array_equal(np.asarray(a[k]), np.asarray(b[k])), k
    w, h = base.size
    cw, ch = a["crop"].size
    assert 0.5 - 0.02 <= cw * ch / (w * h) <= 0.9 + 0.02
    assert a["rescale_25"].size == (80, 50)
    for k in ("jpeg_q30", "rotate_10", "greyscale", "brightness_30", "hflip", "text_overlay"):
        assert a[k].size == base.size, k
    g = np.asarray(a["greyscale"]).astype(int)
    assert (g[..., 0] == g[..., 1]).all() and (g[..., 1] == g[..., 2]).all()
    assert np.array_equal(np.asarray(a["hflip"]), np.asarray(base)[:, ::-1])
    assert not np.array_equal(np.asarray(a["text_overlay"]), np.asarray(base))
    # Another seed or photo key gives other random choices (crop box at least).
    c = bench.make_queries(base, "q", seed=3)
    d = bench.make_queries(base, "p", seed=4)
    assert any(not np.array_equal(np.asarray(a[k]), np.asarray(x[k]))
               for x in (c, d) for k in ("crop", "text_overlay"))


def test_query_base_caps_the_longer_side() -> None:
    im = _photo(600, 300)
    assert bench.query_base(im, 200).size == (200, 100)
    assert bench.query_base(im, 1000).size == (600, 300)


def test_tie_aware_rank() -> None:
    assert bench.tie_aware(np.array([3, 1, 2]), 1) == (1.0, 1.0)
    r1, rr = bench.tie_aware(np.array([1, 1, 2, 0]), 0)
    assert r1 == 0.0 and math.isclose(rr, (1 / 2 + 1 / 3) / 2)
    r1, rr = bench.tie_aware(np.array([0.9, 0.9, 0.1]), 1, lower_is_better=False)
    assert r1 == 0.5 and math.isclose(rr, 0.75)


def test_map_matches_core_evaluate() -> None:
    rng = np.random.default_rng(0)
    q_codes = rng.integers(0, 256, (30, 8), dtype=np.uint8)
    db_codes = rng.integers(0, 256, (200, 8), dtype=np.uint8)
    ql, dl = rng.integers(0, 5, 30), rng.integers(0, 5, 200)
    assert math.isclose(bench.hamming_map(q_codes, db_codes, ql, dl, 50),
                        mean_average_precision(q_codes, db_codes, ql, dl, k=50), rel_tol=1e-9)
    qf, df = rng.normal(size=(30, 16)), rng.normal(size=(200, 16))
    assert math.isclose(bench.cosine_map(qf, df, ql, dl, 50),
                        map_float(qf, df, ql, dl, k=50), rel_tol=1e-6)


def test_leave_one_out_excludes_the_query() -> None:
    codes = np.array([[0], [0], [255]], dtype=np.uint8)
    labels = np.array([0, 1, 1])
    # Without exclusion every query finds itself first; leave-one-out it cannot.
    assert bench.hamming_map(codes, codes, labels, labels, 2) > 0.5
    assert math.isclose(bench.hamming_map(codes, codes, labels, labels, 2, exclude_self=True),
                        (0 + 1 / 2 + 1 / 2) / 3)


def test_distractor_mix() -> None:
    inv = [Path(f"in/{i:04d}.jpg") for i in range(3925)]
    cif = [Path(f"cifar/{i:05d}.jpg") for i in range(10000)]
    full = bench.distractor_set(inv, cif, 10_000)
    assert len(full) == 10_000 and set(inv) <= set(full)
    small = bench.distractor_set(inv, cif, 500)
    n_in = sum(1 for p in small if p.parts[0] == "in")
    assert len(small) == 500 and n_in == round(500 * 3925 / 10_000)


def test_find_wallpapers_deduplicates(tmp_path: Path) -> None:
    big = _photo(1200, 800, seed=1)
    big.save(tmp_path / "a_big.png")
    big.resize((1000, 667)).save(tmp_path / "b_same_smaller.png")  # same photo, lower res
    _photo(1100, 700, seed=2).save(tmp_path / "c_other.png")
    _photo(300, 200, seed=3).save(tmp_path / "d_tiny.png")  # < 0.6 MP
    pkg = tmp_path / "Pkg" / "contents" / "images"
    pkg.mkdir(parents=True)
    _photo(1300, 800, seed=4).save(pkg / "1300x800.png")
    _photo(1000, 800, seed=5).save(pkg / "1000x800.png")  # same package: only the largest
    found = bench.find_wallpapers([tmp_path], min_bytes=1000)
    names = sorted(p.path.name for p in found)
    assert names == ["1300x800.png", "a_big.png", "c_other.png"]
    assert bench.find_wallpapers([tmp_path], min_bytes=10**9) == []


def test_edit_rejects_unknown_kind() -> None:
    with pytest.raises(ValueError):
        bench.edit(_photo(), "blur", bench.query_rng(0, "p", "blur"))
