"""benchmarks/neardup.py: the hard edits are deterministic and do what they say (crop area,
exact pixel rotations, frames of the stated fraction, collage scale), on generated images."""

from __future__ import annotations

import importlib.util
import random
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageFilter

ROOT = Path(__file__).resolve().parents[1]


def _load_bench():
    name = "bench_neardup"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, ROOT / "benchmarks" / "neardup.py")
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


BACKGROUNDS = [_photo(300, 240, seed=7), _photo(200, 300, seed=8)]


def test_every_edit_is_deterministic() -> None:
    base = _photo()
    a = bench.make_queries(base, "p", 3, backgrounds=BACKGROUNDS)
    b = bench.make_queries(base, "p", 3, backgrounds=BACKGROUNDS)
    assert list(a) == list(bench.EDITS)
    assert set(bench.NEW_EDITS) <= set(a)
    for k in bench.EDITS:
        assert a[k].mode == "RGB", k
        assert np.array_equal(np.asarray(a[k]), np.asarray(b[k])), k
    # The random edits depend on the photo key and the seed.
    c = bench.make_queries(base, "q", 3, backgrounds=BACKGROUNDS)
    d = bench.make_queries(base, "p", 4, backgrounds=BACKGROUNDS)
    for k in ("crop_25_40", "frame_margin", "perspective", "watermark", "collage"):
        assert any(x[k].size != a[k].size or not np.array_equal(np.asarray(x[k]),
                                                                 np.asarray(a[k]))
                   for x in (c, d)), k
    # The existing edits are default_model.py's own, with the same seeds.
    old = bench.dm.make_queries(base, "p", 3)
    for k in bench.dm.TRANSFORMS:
        assert np.array_equal(np.asarray(a[k]), np.asarray(old[k])), k


def test_crop_keeps_25_to_40_percent_of_the_area() -> None:
    base = _photo(400, 300)
    for i in range(40):
        out = bench.crop_area(base, random.Random(i))
        cw, ch = out.size
        assert 0.25 - 0.01 <= cw * ch / (400 * 300) <= 0.40 + 0.01
        assert 3 / 4 - 0.02 <= (cw / ch) / (400 / 300) <= 4 / 3 + 0.02


def test_rotations_are_exact_pixel_rotations() -> None:
    base = _photo(64, 40)
    px = np.asarray(base)
    q = bench.make_queries(base, "p", 0, kinds=tuple(bench.ROTATIONS))
    assert np.array_equal(np.asarray(q["rotate_90"]), np.rot90(px, 1))
    assert np.array_equal(np.asarray(q["rotate_180"]), np.rot90(px, 2))
    assert np.array_equal(np.asarray(q["rotate_270"]), np.rot90(px, 3))
    assert np.array_equal(np.asarray(q["mirror_rotate_90"]), px.transpose(1, 0, 2))


@pytest.mark.parametrize("kind", bench.FRAMES)
def test_frames_add_margins_of_the_stated_fraction(kind: str) -> None:
    base = _photo(300, 200)
    lo, hi = bench.FRAME_FRACTION
    for i in range(12):
        out, (x0, y0, x1, y1) = bench.frame(base, kind, random.Random(i))
        W, H = out.size
        assert (x1 - x0, y1 - y0) == base.size
        # The photo itself is untouched inside the frame.
        assert np.array_equal(np.asarray(out.crop((x0, y0, x1, y1))), np.asarray(base))
        fx, fy = 1 - 300 / W, 1 - 200 / H
        padded = [f for f in (fx, fy) if f > 0]
        assert padded, kind
        for f in padded:
            assert lo - 0.005 <= f <= hi + 0.005, (kind, fx, fy)
        if kind in ("frame_window", "frame_margin"):
            assert fx > 0 and fy > 0
        if kind == "frame_phone":
            assert fx == 0 and fy > 0
        if kind == "frame_letterbox":
            assert (fx == 0) != (fy == 0)
            side = (np.asarray(out)[:y0] if fy else np.asarray(out)[:, :x0])
            assert side.max() <= 16 and np.ptp(side) == 0
        if kind == "frame_window":  # chrome drawn in the margins
            assert np.ptp(np.asarray(out)[:y0]) > 0
        # The frame's own pixels, via edit(), are the same.
        ed = bench.edit(base, kind, random.Random(i))
        assert np.array_equal(np.asarray(ed), np.asarray(out))


def test_collage_pastes_at_40_to_60_percent() -> None:
    base = _photo(320, 200)
    lo, hi = bench.COLLAGE_SCALE
    for i in range(20):
        out, (x0, y0, x1, y1) = bench.collage(base, random.Random(i), BACKGROUNDS)
        W, H = out.size
        assert max(W, H) == max(base.size)
        pw, ph = x1 - x0, y1 - y0
        assert abs(pw / ph - 320 / 200) < 0.05
        s = max(pw / W, ph / H)  # the limiting side
        assert lo - 0.01 <= s <= hi + 0.01
        assert x0 >= 0 and y0 >= 0 and x1 <= W and y1 <= H
    with pytest.raises(ValueError):
        bench.collage(base, random.Random(0), [])


def test_perspective_and_watermark_keep_the_size_and_change_pixels() -> None:
    base = _photo()
    for kind in ("perspective", "watermark"):
        for i in range(6):
            out = bench.edit(base, kind, random.Random(i))
            assert out.size == base.size
            assert not np.array_equal(np.asarray(out), np.asarray(base))


def test_labeller_names_are_relative(tmp_path: Path) -> None:
    (tmp_path / "eval" / "cat").mkdir(parents=True)
    f = tmp_path / "eval" / "cat" / "a.jpg"
    f.write_bytes(b"")
    lab = bench.Labeller({"photos": tmp_path, "cifar10": None})
    assert lab(f) == "photos/eval/cat/a.jpg"
    assert lab(tmp_path.parent / "elsewhere.jpg") == "elsewhere.jpg"
    assert bench.rel_to_root(ROOT / "resources" / "models" / "default.pt") == \
        "resources/models/default.pt"
