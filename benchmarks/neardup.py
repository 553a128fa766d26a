"""A harder near-duplicate benchmark (issue 16): find the original photo whatever was done to
it - strong crops, screenshots, lost rotation, collages - through the app's full search path.

Usage (data laid out as in ../shared/data/README.md: photos.tar unpacked with ``eval/``,
Imagenette with ``val/`` and ``train/``, CIFAR-10 with ``test/``; on Debian the wallpaper
packages put real photos under /usr/share/wallpapers, /usr/share/backgrounds and
/usr/share/palapeli)::

    OMP_NUM_THREADS=2 python benchmarks/neardup.py --model resources/models/default.pt \\
        --wallpapers /usr/share/wallpapers /usr/share/backgrounds /usr/share/palapeli \\
        --photos /tmp/data/photos --imagenette /tmp/data/imagenette --cifar /tmp/data/cifar10

    # smoke run (a few minutes on one thread; never into docs/):
    OMP_NUM_THREADS=1 python benchmarks/neardup.py ... --originals 4 --distractors 100 \\
        --distinct 4 --out /tmp/neardup-smoke/neardup.json

Writes ``docs/benchmarks/neardup.json`` and ``.md`` (``--out`` elsewhere). Every path in them
is relative (to the checkout, or ``<data set>/<path inside it>``).

Set-up
------
* **Originals**, photos this project never trained on: every distinct Debian wallpaper photo
  (``default_model.find_wallpapers``: 0.6-24 MP, the largest file per package, no two within
  8 pHash bits), then photos of ``<photos>/eval`` (the labelled evaluation set, 224 px on the
  shorter side) spread over its classes up to ``--originals`` (300). ``<photos>/unlabelled``
  is never used: the default model is distilled on it. A smaller ``--originals`` keeps the
  full run's wallpaper/eval mix.
* **Library**: the originals and ``--distractors`` (10 000) others in a real
  :class:`core.library.Library` (temporary folder of symlinks, scanned with the app's
  settings except that symlinks are followed; the sources are never modified): all
  Imagenette val, the eval photos that are neither originals nor distinct queries, then
  CIFAR-10 test spread over the classes (a smaller ``--distractors`` keeps the full run's
  mix). Eval photos within 8 pHash bits of another eval photo (the data set's own
  duplicates) are left out of every role, so "distinct" means distinct.
* **Queries**: each original, reduced to 2048 px on its longer side, gets every edit of
  :data:`EDITS`, each from its own RNG seeded by (``--seed``, photo, edit), so a photo's
  queries do not depend on the run's size or order. The edited copy, an in-memory image
  without EXIF, is the query of ``Library.search(image, k=--k)`` - the engine's whole path
  with the app's settings (and whatever it does by default as it evolves). Relevant = the
  one original.
* **Distinct queries**: ``--distinct`` (200) eval photos kept out of the library, each
  unedited, searched the same way; everything they find is a different photo.

Edits (:func:`edit`): the 8 of ``benchmarks/default_model.py`` (crop 50-90 %, rescale_25,
jpeg_q30, rotate_10, greyscale, brightness_30, hflip, text_overlay) plus

* ``crop_25_40``: a crop keeping 25-40 % of the area, aspect ratio changed by up to 4:3
  either way, random position;
* ``frame_window`` / ``frame_phone`` / ``frame_letterbox`` / ``frame_margin``: the photo,
  pixel for pixel, inside a UI frame that takes 10-25 % of the output's width and/or height:
  a desktop viewer window (title bar with buttons and a file name, toolbar, side bar with a
  file list, status line; light or dark), a phone screenshot (status bar with time, signal
  and battery, app bar, bottom tool bar; margins above and below), letterbox or pillarbox
  bars (near-black, one axis), or coloured margins (a random colour, all four sides);
* ``rotate_90`` / ``rotate_180`` / ``rotate_270`` / ``mirror_rotate_90``: exact pixel
  rotations (counter-clockwise) and the mirrored quarter turn (PIL ``TRANSPOSE``; the plain
  mirror is ``hflip``), as a file whose EXIF orientation was lost;
* ``perspective``: tilted as when photographing a screen or print: the far edge 10-25 %
  shorter, the quad shrunk to 85-100 % and jittered, a grey background around it;
* ``watermark``: a semi-transparent corner logo (15-25 % of the width) or a stock-photo
  text watermark across the picture;
* ``collage``: the photo scaled to 40-60 % of another photo's size (along the limiting
  side) and pasted at a random place into it. The other photo is an Imagenette *train*
  image (never in the library, so the original stays the one relevant file).

Metrics per edit:

* ``recall_at_1`` (the original is the first hit) and ``mrr`` (reciprocal rank of the
  original, 0 outside the top k) of the default search; ``recall_at_k``;
* ``phash_recall_at_1``: imagehash ``phash`` of the full decode, Hamming ranking over the
  library; ``teacher_recall_at_1``: the teacher's float features (MobileNetV2 at 224 px,
  whole frame, cosine) over the library; ties shared (expected value under random order);
* stage diagnostics from the engine's pieces: ``codes`` (Hamming ranking of every stored
  code) and ``embedding_exhaustive`` (cosine of every stored embedding), and whether the
  original was among the stage-1 candidates (the ``k'`` nearest codes, or within the pHash
  / mirror-pHash radius of the hash channel), so ``original_rank`` tells "not retrieved"
  from "retrieved but not re-ranked first": first / in the top k below first / among the
  candidates but below the top k / not a candidate (with the median rank when not first);
* ``original_tier``: how the default search tiers the original (identical /
  near_duplicate / similar / absent from the top k);
* ``false_near_duplicate_rate``: of all the *distinct* photos the default search returns
  over the run (every hit of the top k of every edited and every distinct query that is
  not the query's original), the share tiered near_duplicate or identical; with the
  per-edit rates, the distinct queries' own rate and the share of queries with at least
  one such false flag. An edited copy is never in the library, so every hit but the
  original is a different photo.
* ``--robust`` also runs ``Library.search(..., robust=True)`` (8 orientations; slower).

The unedited full-resolution original is a control query (``identical_copy``), not part of
the means or the false-flag rates. Targets (issue 16, stored under ``targets``): recall@1
>= 0.95 on every edit, mean >= 0.97, false near-duplicate rate <= 0.005.

Costs: ``costs`` holds the seconds of each phase, the scan rate, the seconds per original
(its 21 queries with edits, teacher features and diagnostics) by source and
``Library.search`` latency (p50/p99 at this library size).

Run time: the smoke run above (4 originals, 100 distractors) took about 30 s on one niced
thread of a 2-core machine busy with a training job (about 15-20 s of it choosing the data:
pHash of the 2 800 eval photos and of the wallpapers). The full run is estimated from its
rates, not yet measured, at about 15-25 minutes on 2 cores with ``OMP_NUM_THREADS=2`` (up
to about 30 on one busy thread): scanning ~10 300 files (1-3 min), teacher features of the
10 000 distractors (2-5 min) and 6 300 edited queries (smoke: 4.6 s per wallpaper original,
1.7 s per eval original, so 8-12 min, more as the search grows); ``--robust`` adds 8
student encodes per query (about 2x).
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import random
import shutil
import statistics
import sys
import tempfile
import time
import traceback
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
for _p in (ROOT, ROOT / "benchmarks"):
    if str(_p) not in sys.path:
        sys.path.insert(0, str(_p))

import default_model as dm  # noqa: E402
import numpy as np  # noqa: E402
from PIL import Image, ImageDraw, ImageFont  # noqa: E402

from core.imageio import ImageLoadError, load_image  # noqa: E402

log = logging.getLogger("bench.neardup")

FRAMES = ("frame_window", "frame_phone", "frame_letterbox", "frame_margin")
ROTATIONS: dict[str, Image.Transpose] = {
    "rotate_90": Image.Transpose.ROTATE_90,
    "rotate_180": Image.Transpose.ROTATE_180,
    "rotate_270": Image.Transpose.ROTATE_270,
    "mirror_rotate_90": Image.Transpose.TRANSPOSE,
}
NEW_EDITS = ("crop_25_40", *FRAMES, *ROTATIONS, "perspective", "watermark", "collage")
#: Every edit of the benchmark: default_model.py's 8, then the harder ones.
EDITS = (*dm.TRANSFORMS, *NEW_EDITS)
CONTROL = "identical_copy"
#: Fraction of the output's width/height a frame takes.
FRAME_FRACTION = (0.10, 0.25)
#: Fraction of the area a ``crop_25_40`` keeps.
CROP_AREA = (0.25, 0.40)
#: Linear size of a collage's pasted photo relative to the other photo.
COLLAGE_SCALE = (0.40, 0.60)
DEFAULT_ORIGINALS = 300
DEFAULT_DISTRACTORS = 10_000
DEFAULT_DISTINCT = 200
DUP_BITS = 8  # eval photos this close by pHash count as one photo
TITLES = ("IMG_2041.JPG", "DSC04417.jpg", "holiday.jpg", "PXL_20230611.jpg", "scan 3.png",
          "photo (1).jpg", "export-final.jpg", "20190804_151233.jpg")
FOLDERS = ("Pictures", "Downloads", "Camera", "Holiday 2019", "Family", "Screenshots",
           "Desktop", "Documents", "Shared", "Favourites", "Edits", "Phone backup")
MARKS = ("stockphotos", "PREVIEW", "SAMPLE", "shutterpix", "do not copy", "dreamstock")
STUDIOS = ("Studio Lumen", "A. Berg Photo", "pixelhaus", "NORDLICHT", "mk images", "Foto Rio")


# --------------------------------------------------------------------------- edits


def _font(size: float) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    return ImageFont.load_default(size=max(6, int(size)))


def _outer(n: int, f: float) -> int:
    """Output length along an axis where a frame takes the fraction ``f`` of it."""
    return max(n + 1, round(n / (1.0 - f)))


def crop_area(im: Image.Image, rng: random.Random,
              area: tuple[float, float] = CROP_AREA) -> Image.Image:
    """A crop keeping ``area`` (25-40 %) of the pixels, its aspect ratio up to 4:3 away from
    the photo's, at a random position."""
    w, h = im.size
    frac = rng.uniform(*area)
    r = math.exp(rng.uniform(math.log(3 / 4), math.log(4 / 3)))
    cw = min(w, max(1, round(w * math.sqrt(frac * r))))
    ch = min(h, max(1, round(w * h * frac / cw)))
    x0, y0 = rng.randint(0, w - cw), rng.randint(0, h - ch)
    return im.crop((x0, y0, x0 + cw, y0 + ch))


def _window(out: Image.Image, box: tuple[int, int, int, int], rng: random.Random) -> None:
    """Desktop image-viewer chrome around ``box`` (drawn before the photo is pasted)."""
    W, H = out.size
    x0, y0, _, y1 = box
    dark = rng.random() < 0.5
    bg, panel, fg = ((38, 38, 42), (52, 52, 58), (220, 220, 220)) if dark else (
        (236, 236, 236), (222, 224, 228), (40, 40, 40))
    d = ImageDraw.Draw(out)
    d.rectangle((0, 0, W, H), fill=bg)
    tb = max(1, round(y0 * rng.uniform(0.45, 0.6)))  # title bar
    d.rectangle((0, 0, W, tb), fill=panel)
    font = _font(tb * 0.6)
    if rng.random() < 0.5:  # traffic lights on the left, title centred
        r = max(1, tb // 4)
        for i, c in enumerate(((255, 95, 86), (255, 189, 46), (39, 201, 63))):
            cx = r * 2 + i * r * 3
            d.ellipse((cx - r, tb // 2 - r, cx + r, tb // 2 + r), fill=c)
        tx = W // 2 - W // 8
    else:  # Windows-style buttons on the right, title on the left
        s = max(2, tb // 3)
        for i in range(3):
            cx = W - (i + 1) * tb * 1.4
            d.rectangle((cx - s, tb // 2 - s, cx + s, tb // 2 + s), outline=fg)
        tx = max(2, tb // 3)
    d.text((tx, tb * 0.18), f"{rng.choice(TITLES)} - Photos", font=font, fill=fg)
    # toolbar buttons under the title bar
    bx = x0 + 4
    for _ in range(rng.randint(3, 6)):
        bw = max(4, round((y0 - tb) * rng.uniform(1.2, 2.2)))
        d.rounded_rectangle((bx, tb + (y0 - tb) * 0.2, bx + bw, y0 - (y0 - tb) * 0.2),
                            radius=max(1, (y0 - tb) // 5), fill=panel)
        bx += bw + 6
    # side bar with a file list
    d.rectangle((0, tb, x0 - 1, H), fill=panel)
    row = max(8, round(tb * 0.9))
    sel = rng.randint(0, 6)
    for i, y in enumerate(range(y0 + row // 2, H - row, row)):
        if i == sel:
            d.rectangle((0, y - 2, x0 - 1, y + row - 4), fill=(70, 120, 220))
        d.text((row // 2, y), rng.choice(FOLDERS), font=_font(row * 0.55), fill=fg)
    # status line
    if H - y1 > 2:
        d.text((x0 + 4, y1 + (H - y1) * 0.15),
               f"{rng.randint(1, 40)} of {rng.randint(41, 300)}   {rng.choice(TITLES)}   "
               f"{rng.randint(40, 100)} %", font=_font((H - y1) * 0.6), fill=fg)


def _phone(out: Image.Image, box: tuple[int, int, int, int], rng: random.Random) -> None:
    """Phone screenshot chrome above and below ``box``."""
    W, H = out.size
    _, y0, _, y1 = box
    dark = rng.random() < 0.5
    bg, fg = ((0, 0, 0), (245, 245, 245)) if dark else ((250, 250, 250), (20, 20, 20))
    d = ImageDraw.Draw(out)
    d.rectangle((0, 0, W, H), fill=bg)
    sb = max(2, round(y0 * rng.uniform(0.4, 0.6)))  # status bar
    font = _font(sb * 0.6)
    d.text((sb * 0.6, sb * 0.15), f"{rng.randint(0, 23)}:{rng.randint(0, 59):02d}", font=font,
           fill=fg)
    bh = max(2, round(sb * 0.5))
    bw = bh * 2
    bx = W - sb * 0.6 - bw
    d.rectangle((bx, (sb - bh) / 2, bx + bw, (sb + bh) / 2), outline=fg)
    d.rectangle((bx + 1, (sb - bh) / 2 + 1, bx + 1 + (bw - 2) * rng.uniform(0.2, 1.0),
                 (sb + bh) / 2 - 1), fill=fg)
    for i in range(4):  # signal bars
        x = bx - sb * 1.6 + i * max(2, sb // 6)
        d.rectangle((x, sb * (0.75 - 0.12 * i), x + max(1, sb // 10), sb * 0.75), fill=fg)
    ab = y0 - sb  # app bar
    if ab > 2:
        d.text((sb * 0.5, sb + ab * 0.2), rng.choice(("< Album", "< Recents", "< Back")),
               font=_font(ab * 0.5), fill=(10, 132, 255))
        d.text((W - ab * 2.2, sb + ab * 0.2), rng.choice(("Edit", "Share", "...")),
               font=_font(ab * 0.5), fill=(10, 132, 255))
    tb = H - y1  # bottom tool bar and home indicator
    if tb > 3:
        r = max(1, round(tb * 0.18))
        for i in range(4):
            cx = W * (i + 1) / 5
            cy = y1 + tb * 0.4
            if i % 2:
                d.ellipse((cx - r, cy - r, cx + r, cy + r), outline=fg, width=max(1, r // 4))
            else:
                d.rectangle((cx - r, cy - r, cx + r, cy + r), outline=fg, width=max(1, r // 4))
        d.rounded_rectangle((W * 0.35, H - tb * 0.15, W * 0.65, H - tb * 0.08),
                            radius=max(1, tb // 20), fill=fg)


def frame(im: Image.Image, kind: str, rng: random.Random) -> tuple[
        Image.Image, tuple[int, int, int, int]]:
    """The photo inside a :data:`FRAMES` frame, and its box ``(x0, y0, x1, y1)`` there.

    The photo is pasted pixel for pixel (not resized); the frame takes a fraction in
    :data:`FRAME_FRACTION` of the output's width (``frame_window``, ``frame_margin``, a
    pillarbox) and/or height (all but a pillarbox)."""
    im = im.convert("RGB")
    w, h = im.size
    lo, hi = FRAME_FRACTION
    if kind == "frame_letterbox":
        g = rng.randint(0, 16)
        colour = (g, g, g)
        f = rng.uniform(lo, hi)
        W, H = (w, _outer(h, f)) if rng.random() < 0.5 else (_outer(w, f), h)
        x0, y0 = (W - w) // 2, (H - h) // 2
    elif kind == "frame_margin":
        colour = tuple(rng.randint(0, 255) for _ in range(3))
        W, H = _outer(w, rng.uniform(lo, hi)), _outer(h, rng.uniform(lo, hi))
        x0 = round((W - w) * rng.uniform(0.3, 0.7))
        y0 = round((H - h) * rng.uniform(0.3, 0.7))
    elif kind == "frame_phone":
        colour = (0, 0, 0)
        W, H = w, _outer(h, rng.uniform(lo, hi))
        x0, y0 = 0, round((H - h) * rng.uniform(0.35, 0.6))
    elif kind == "frame_window":
        colour = (0, 0, 0)
        W, H = _outer(w, rng.uniform(lo, hi)), _outer(h, rng.uniform(lo, hi))
        x0 = round((W - w) * rng.uniform(0.6, 0.9))  # side bar left, thin border right
        y0 = round((H - h) * rng.uniform(0.55, 0.8))  # title + tool bar, status line below
    else:
        raise ValueError(f"unknown frame {kind!r}")
    out = Image.new("RGB", (W, H), colour)
    box = (x0, y0, x0 + w, y0 + h)
    if kind == "frame_window":
        _window(out, box, rng)
    elif kind == "frame_phone":
        _phone(out, box, rng)
    out.paste(im, (x0, y0))
    return out, box


def _perspective_coeffs(dst: Sequence[tuple[float, float]],
                        src: Sequence[tuple[float, float]]) -> list[float]:
    """PIL PERSPECTIVE coefficients mapping output points ``dst`` to input points ``src``."""
    a, b = [], []
    for (x, y), (u, v) in zip(dst, src, strict=True):
        a.append([x, y, 1, 0, 0, 0, -u * x, -u * y])
        b.append(u)
        a.append([0, 0, 0, x, y, 1, -v * x, -v * y])
        b.append(v)
    return np.linalg.solve(np.asarray(a, np.float64), np.asarray(b, np.float64)).tolist()


def perspective(im: Image.Image, rng: random.Random) -> Image.Image:
    """Tilted about a vertical or horizontal axis (the far edge 10-25 % shorter), the quad
    shrunk to 85-100 % and its corners jittered by up to 2 %, grey around it; same size."""
    im = im.convert("RGB")
    w, h = im.size
    t = rng.uniform(0.10, 0.25)
    side = rng.choice(("left", "right", "top", "bottom"))
    # Corners tl, tr, br, bl in unit coordinates.
    q = [[0.0, 0.0], [1.0, 0.0], [1.0, 1.0], [0.0, 1.0]]
    far = {"left": (0, 3), "right": (1, 2), "top": (0, 1), "bottom": (3, 2)}[side]
    for i in far:
        if side in ("left", "right"):
            q[i][1] += t / 2 if q[i][1] == 0 else -t / 2
            q[i][0] += t * 0.4 if q[i][0] == 0 else -t * 0.4
        else:
            q[i][0] += t / 2 if q[i][0] == 0 else -t / 2
            q[i][1] += t * 0.4 if q[i][1] == 0 else -t * 0.4
    s = rng.uniform(0.85, 1.0)
    dst = [((0.5 + (x - 0.5) * s + rng.uniform(-0.02, 0.02)) * w,
            (0.5 + (y - 0.5) * s + rng.uniform(-0.02, 0.02)) * h) for x, y in q]
    src = [(0.0, 0.0), (float(w), 0.0), (float(w), float(h)), (0.0, float(h))]
    g = rng.randint(20, 230)
    return im.transform((w, h), Image.Transform.PERSPECTIVE, _perspective_coeffs(dst, src),
                        Image.Resampling.BICUBIC, fillcolor=(g, g, g))


def watermark(im: Image.Image, rng: random.Random) -> Image.Image:
    """A semi-transparent logo in a corner, or stock-photo text across the picture."""
    im = im.convert("RGB")
    w, h = im.size
    layer = Image.new("RGBA", (w, h), (0, 0, 0, 0))
    if rng.random() < 0.5:  # corner logo
        lw = max(8, round(w * rng.uniform(0.15, 0.25)))
        lh = max(4, round(lw * 0.35))
        m = round(min(w, h) * 0.03)
        x = m if rng.random() < 0.5 else w - lw - m
        y = m if rng.random() < 0.5 else h - lh - m
        a = rng.randint(130, 220)
        light = rng.random() < 0.5
        fill, ink = ((255, 255, 255, a), (20, 20, 20, 255)) if light else (
            (20, 20, 20, a), (255, 255, 255, 255))
        d = ImageDraw.Draw(layer)
        d.rounded_rectangle((x, y, x + lw, y + lh), radius=max(1, lh // 4), fill=fill)
        r = lh * 0.32
        cx, cy = x + lh * 0.5, y + lh * 0.5
        d.ellipse((cx - r, cy - r, cx + r, cy + r),
                  fill=(rng.randint(0, 255), rng.randint(0, 255), rng.randint(0, 255), 255))
        text = "© " + rng.choice(STUDIOS)
        size = lh * 0.45
        room = lw - lh * 1.2  # right of the emblem
        size *= min(1.0, room / max(1.0, d.textlength(text, font=_font(size))))
        d.text((x + lh, y + (lh - size) / 2), text, font=_font(size), fill=ink)
    else:  # stock watermark: rows of text, rotated
        big = Image.new("RGBA", (w * 2, h * 2), (0, 0, 0, 0))
        d = ImageDraw.Draw(big)
        size = max(8, round(min(w, h) * rng.uniform(0.07, 0.11)))
        font = _font(size)
        text = rng.choice(MARKS)
        a = rng.randint(70, 130)
        for j, y in enumerate(range(0, h * 2, size * 3)):
            for x in range(-(j % 2) * size * 3, w * 2, size * len(text)):
                d.text((x, y), text, font=font, fill=(255, 255, 255, a),
                       stroke_width=max(1, size // 20), stroke_fill=(0, 0, 0, a // 2))
        big = big.rotate(rng.uniform(20, 40), resample=Image.Resampling.BILINEAR)
        layer = big.crop((w // 2, h // 2, w // 2 + w, h // 2 + h))
    return Image.alpha_composite(im.convert("RGBA"), layer).convert("RGB")


def collage(im: Image.Image, rng: random.Random,
            backgrounds: Sequence[Path | Image.Image]) -> tuple[
        Image.Image, tuple[int, int, int, int]]:
    """The photo scaled to :data:`COLLAGE_SCALE` (40-60 %) of another photo's size along
    the limiting side and pasted at a random place into it; the other photo (one of
    ``backgrounds``, picked by ``rng``) is first scaled so its longer side matches the
    photo's. Returns the collage and the pasted box."""
    if not backgrounds:
        raise ValueError("collage needs background photos")
    im = im.convert("RGB")
    bg = backgrounds[rng.randrange(len(backgrounds))]
    bg = (load_image(bg) if isinstance(bg, str | os.PathLike) else bg).convert("RGB")
    w, h = im.size
    f = max(w, h) / max(bg.size)
    bw, bh = max(1, round(bg.width * f)), max(1, round(bg.height * f))
    canvas = bg.resize((bw, bh), Image.Resampling.BILINEAR)
    s = rng.uniform(*COLLAGE_SCALE) * min(bw / w, bh / h)
    pw, ph = max(1, round(w * s)), max(1, round(h * s))
    small = im.resize((pw, ph), Image.Resampling.LANCZOS)
    x0, y0 = rng.randint(0, bw - pw), rng.randint(0, bh - ph)
    canvas.paste(small, (x0, y0))
    return canvas, (x0, y0, x0 + pw, y0 + ph)


def edit(im: Image.Image, kind: str, rng: random.Random,
         backgrounds: Sequence[Path | Image.Image] = ()) -> Image.Image:
    """One edit of :data:`EDITS` applied to an image (RGB out); see the module docstring.
    default_model.py's edits are its own :func:`default_model.edit`."""
    if kind in dm.TRANSFORMS:
        return dm.edit(im, kind, rng)
    im = im.convert("RGB")
    if kind == "crop_25_40":
        return crop_area(im, rng)
    if kind in FRAMES:
        return frame(im, kind, rng)[0]
    if kind in ROTATIONS:
        return im.transpose(ROTATIONS[kind])
    if kind == "perspective":
        return perspective(im, rng)
    if kind == "watermark":
        return watermark(im, rng)
    if kind == "collage":
        return collage(im, rng, backgrounds)[0]
    raise ValueError(f"unknown edit {kind!r}")


def make_queries(base: Image.Image, key: str, seed: int, kinds: Sequence[str] = EDITS,
                 backgrounds: Sequence[Path | Image.Image] = ()) -> dict[str, Image.Image]:
    """The edited copies of one photo, each from its own RNG (seed, photo key, edit)."""
    return {k: edit(base, k, dm.query_rng(seed, key, k), backgrounds) for k in kinds}


# --------------------------------------------------------------------------- data


@dataclass(frozen=True)
class Original:
    """A photo that gets edited: its file, its label in the report and where it is from."""

    path: Path
    label: str
    source: str  # "wallpaper" or "eval"


class Labeller:
    """Report names of data files: ``<data set>/<path inside it>`` (never absolute)."""

    def __init__(self, roots: dict[str, Path | None]) -> None:
        self.roots = [(n, r) for n, root in roots.items() if root is not None
                      for r in dict.fromkeys((Path(os.path.abspath(root)),
                                              Path(root).resolve()))]

    def __call__(self, p: Path | str) -> str:
        for cand in dict.fromkeys((Path(os.path.abspath(p)), Path(p).resolve())):
            for name, root in self.roots:
                if cand.is_relative_to(root):
                    return f"{name}/{cand.relative_to(root).as_posix()}"
        return Path(p).name


def rel_to_root(p: Path) -> str:
    """``p`` relative to the checkout, else its file name."""
    rp = Path(p).resolve()
    return rp.relative_to(ROOT).as_posix() if rp.is_relative_to(ROOT) else rp.name


def _eval_singletons(paths: Sequence[Path]) -> tuple[list[Path], int]:
    """The eval photos with no other eval photo within :data:`DUP_BITS` pHash bits (both
    of a pair go), and how many were dropped."""
    from core.imageio import phash

    hashes = np.zeros(len(paths), np.uint64)
    ok = np.zeros(len(paths), bool)
    for i, p in enumerate(paths):
        try:
            hashes[i] = np.uint64(phash(load_image(p, draft_size=256)))
            ok[i] = True
        except ImageLoadError:
            pass
    keep = ok.copy()
    for i in np.flatnonzero(ok):
        d = dm.popcount64(np.bitwise_xor(hashes, hashes[i]))
        d[i] = 99
        if ((d <= DUP_BITS) & ok).any():
            keep[i] = False
    return [p for p, k in zip(paths, keep, strict=True) if k], int(ok.sum() - keep.sum())


def select_data(a: argparse.Namespace, label: Labeller) -> dict[str, Any]:
    """Originals, distinct queries, distractors and collage backgrounds (all deterministic)."""
    walls = dm.find_wallpapers(a.wallpapers, exclude=a.exclude) if a.wallpapers else []
    eval_all = dm.list_image_files(a.photos / "eval")
    eval_pool, dups = _eval_singletons(eval_all)
    n_found = len(walls)
    n_wall = 0
    if walls and a.originals > 0:
        n_wall = min(len(walls), round(a.originals * len(walls)
                                       / max(a.originals, DEFAULT_ORIGINALS)))
        n_wall = max(n_wall, 1 if a.originals > 1 or not eval_pool else 0)
    walls = dm.spread(walls, n_wall)[:n_wall]
    n_eval = max(0, a.originals - len(walls))
    eval_orig = dm.spread(eval_pool, n_eval)[:n_eval] if n_eval else []
    chosen = set(eval_orig)
    rest = [p for p in eval_pool if p not in chosen]
    distinct = dm.spread(rest, a.distinct)[:a.distinct] if a.distinct > 0 else []
    dset = set(distinct)
    eval_distr = [p for p in rest if p not in dset]
    in_val = dm.list_image_files(a.imagenette / "val")
    cifar = dm.list_image_files(a.cifar / "test") if a.cifar else []
    n = a.distractors
    full = max(n, DEFAULT_DISTRACTORS)
    n_in = min(len(in_val), round(n * len(in_val) / full))
    n_ev = min(len(eval_distr), round(n * len(eval_distr) / full))
    n_cf = min(len(cifar), max(0, n - n_in - n_ev))
    distractors = (dm.spread(in_val, n_in)[:n_in] + dm.spread(eval_distr, n_ev)[:n_ev]
                   + dm.spread(cifar, n_cf)[:n_cf])
    if len(distractors) < n:
        log.warning("only %d distractors available (asked for %d)", len(distractors), n)
    train = a.imagenette / "train"
    if train.is_dir():
        backgrounds, bg_source = dm.spread(dm.list_image_files(train), a.backgrounds), \
            "imagenette/train"
    else:
        backgrounds, bg_source = list(distinct), "photos/eval (distinct queries)"
    originals = ([Original(p.path, label(p.path), "wallpaper") for p in walls]
                 + [Original(p, label(p), "eval") for p in eval_orig])
    return {
        "originals": originals, "distinct": distinct, "distractors": distractors,
        "backgrounds": backgrounds, "wallpapers_found": n_found,
        "composition": {
            "originals_wallpaper": len(walls), "originals_eval": len(eval_orig),
            "distractors_imagenette_val": n_in, "distractors_eval": n_ev,
            "distractors_cifar10_test": n_cf, "distinct_queries_eval": len(distinct),
            "eval_photos": len(eval_all), "eval_dropped_as_duplicates": dups,
            "collage_backgrounds": len(backgrounds), "collage_background_source": bg_source,
            "unlabelled_used": False},
    }


# --------------------------------------------------------------------------- run


def _mean(v: Sequence[float]) -> float | None:
    return round(float(np.mean(v)), 4) if len(v) else None


def _ms_quantiles(v: Sequence[float]) -> dict[str, float | None]:
    if not v:
        return {"p50": None, "p99": None, "mean": None}
    x = np.asarray(v) * 1000
    return {"p50": round(float(np.percentile(x, 50)), 2),
            "p99": round(float(np.percentile(x, 99)), 2), "mean": round(float(x.mean()), 2)}


def run(a: argparse.Namespace) -> dict[str, Any]:
    """The whole benchmark; returns the report dict."""
    from core.encoder import Encoder
    from core.library import Library, LibraryConfig, prepare_query
    from core.library.search import hamming_matrix, phash_codes
    from core.runtime import tune_allocator

    tune_allocator()  # as the CLI and the app do
    costs: dict[str, Any] = {}
    t_all = time.perf_counter()
    label = Labeller({"photos": a.photos, "imagenette": a.imagenette, "cifar10": a.cifar,
                      **{Path(d).name: Path(d) for d in a.wallpapers}})
    kinds = list(a.kinds)
    with dm.timed("select", costs):
        data = select_data(a, label)
    originals: list[Original] = data["originals"]
    distractors: list[Path] = data["distractors"]
    if not originals:
        raise RuntimeError("no originals found")
    log.info("%d originals, %d distractors, %d distinct queries, %d edits", len(originals),
             len(distractors), len(data["distinct"]), len(kinds))
    encoder = Encoder.from_file(a.model)
    tf = dm.TeacherFeatures(a.teacher, a.decode_threads)
    base_cfg = LibraryConfig()
    config = replace(base_cfg, scan=replace(base_cfg.scan, follow_symlinks=True))
    dsize = config.scan.decode_size or max(int(encoder.input_size), 64)
    kprime = max(config.search.candidate_factor * a.k, config.search.min_candidates)
    per_query: list[dict[str, Any]] = []
    distinct_rows: list[dict[str, Any]] = []
    false_examples: list[dict[str, Any]] = []
    q_teacher: list[tuple[int, str, np.ndarray, int]] = []
    search_s: list[float] = []
    robust_s: list[float] = []
    photo_s: dict[str, list[float]] = {}  # seconds per original (all its queries), by source
    work = Path(tempfile.mkdtemp(prefix="cukd-neardup-", dir=a.work))
    try:
        root = work / "root"
        orig_links = dm._link_tree([o.path for o in originals], root / "originals", a.copy)
        distr_links = dm._link_tree(distractors, root / "distractors", a.copy)
        link_label = {os.path.normpath(os.path.abspath(p)): lab for p, lab in zip(
            orig_links + distr_links, [o.label for o in originals]
            + [label(p) for p in distractors], strict=True)}
        with Library.open(work / "library", encoder, config) as lib:
            lib.add_root(root, watch_mode="off")
            with dm.timed("scan", costs):
                scan = lib.scan()
            costs["scan_files_per_s"] = round(scan.seen / max(costs["scan"], 1e-9), 1)
            if scan.errors:
                log.warning("%d files failed to index: %s", len(scan.errors), scan.errors[:3])
            cat, mid = lib.catalog, encoder.model_id
            targets: list[int] = []
            target_phash: list[int | None] = []
            for p in orig_links:
                rec = cat.get_file_by_path(os.path.normpath(os.path.abspath(p)))
                targets.append(rec.id if rec else -1)
                target_phash.append(rec.phash if rec else None)
            ids, codes = [], []
            for i, c in cat.iter_codes(mid):
                ids.append(i)
                codes.append(c)
            all_codes = np.concatenate(codes)
            pos = {int(i): j for j, i in enumerate(np.concatenate(ids))}
            e_ids, embs = cat.all_embeddings(mid)
            e_pos = {int(i): j for j, i in enumerate(e_ids)}
            embs = np.asarray(embs, np.float32)
            sc = config.search
            with dm.timed("teacher_db", costs):
                t_db = tf.of_paths(distractors, [a.teacher_size], with_phash=True,
                                   progress="teacher/pHash of distractors")[a.teacher_size]

            def flags(hits: Sequence[Any], target: int) -> tuple[int, int, list[Any]]:
                other = [h for h in hits if h.file_id != target]
                bad = [h for h in other if h.tier != "similar"]
                return len(bad), len(other), bad

            with dm.timed("queries", costs):
                for pi, (orig, target) in enumerate(zip(originals, targets, strict=True)):
                    if target < 0:
                        log.warning("%s was not indexed; skipped", orig.label)
                        continue
                    t_photo = time.perf_counter()
                    full = load_image(orig.path)
                    tf.add_images([str(orig.path)], [full], [a.teacher_size], with_phash=True)
                    queries = make_queries(dm.query_base(full), orig.label, a.seed, kinds,
                                           data["backgrounds"])
                    queries[CONTROL] = full
                    tq = tf.of_images(list(queries.values()), a.teacher_size)
                    for (kind, qim), tfeat in zip(queries.items(), tq, strict=True):
                        q_teacher.append((pi, kind, tfeat, dm.imagehash_phash(qim)))
                        t0 = time.perf_counter()
                        hits = lib.search(qim, k=a.k)
                        search_s.append(time.perf_counter() - t0)
                        rank = dm.rank_in_hits(hits, target)
                        # Stage diagnostics from the engine's pieces (first orientation).
                        q = prepare_query(qim, catalog=cat, encoder=encoder, decode_size=dsize)
                        _, knn = lib.index.search(q.codes, kprime)
                        tph = target_phash[pi]
                        ph_d = (int(hamming_matrix(phash_codes(q.phashes),
                                                   phash_codes([tph])).min())
                                if tph is not None and q.phashes else None)
                        mph_d = (((q.mirror_phash ^ tph) & (2**64 - 1)).bit_count()
                                 if tph is not None and q.mirror_phash is not None else None)
                        in_cand = bool(target in set(knn.ravel().tolist())
                                       or (ph_d is not None and sc.phash_radius > 0
                                           and ph_d <= sc.phash_radius)
                                       or (mph_d is not None and sc.mirror_phash_radius > 0
                                           and mph_d <= sc.mirror_phash_radius))
                        c_r1, c_rr = dm.tie_aware(hamming_matrix(q.codes[:1], all_codes)[0],
                                                  pos[target])
                        e_r1, e_rr = dm.tie_aware(embs @ q.embeddings[0], e_pos[target], False)
                        n_bad, n_other, bad = flags(hits, target)
                        row = {
                            "edit": kind, "source": orig.source, "photo": orig.label,
                            "rank": rank, "in_candidates": in_cand or rank is not None,
                            "tier": hits[rank - 1].tier if rank else "absent",
                            "codes_r1": c_r1, "codes_rr": c_rr, "emb_r1": e_r1,
                            "emb_rr": e_rr, "false_flags": n_bad, "others": n_other,
                            "phash_distance": ph_d,
                        }
                        if not hits or rank != 1:
                            row["top_hit"] = link_label.get(hits[0].path, "?") if hits else None
                            row["top_tier"] = hits[0].tier if hits else None
                            row["top_score"] = dm.rnd(hits[0].score) if hits else None
                            row["target_score"] = dm.rnd(hits[rank - 1].score) if rank else None
                        if a.robust:
                            t0 = time.perf_counter()
                            rh = lib.search(qim, k=a.k, robust=True)
                            robust_s.append(time.perf_counter() - t0)
                            row["robust_rank"] = dm.rank_in_hits(rh, target)
                            row["robust_false_flags"], row["robust_others"], _ = flags(
                                rh, target)
                        per_query.append(row)
                        if kind != CONTROL:
                            for h in bad[:3]:
                                if len(false_examples) < 200:
                                    false_examples.append({
                                        "query": f"{orig.label} ({kind})",
                                        "hit": link_label.get(h.path, "?"), "tier": h.tier,
                                        "cosine": dm.rnd(h.score),
                                        "phash_distance": h.phash_distance})
                    del full, queries
                    photo_s.setdefault(orig.source, []).append(time.perf_counter() - t_photo)
                    if pi % 10 == 9 or pi == len(originals) - 1:
                        log.info("queries: %d/%d photos (%.0f s)", pi + 1, len(originals),
                                 time.perf_counter() - t_all)
            with dm.timed("distinct_queries", costs):
                for p in data["distinct"]:
                    try:
                        im = load_image(p)
                    except ImageLoadError:
                        continue
                    t0 = time.perf_counter()
                    hits = lib.search(im, k=a.k)
                    search_s.append(time.perf_counter() - t0)
                    n_bad, n_other, bad = flags(hits, -1)
                    distinct_rows.append({"false_flags": n_bad, "others": n_other})
                    for h in bad[:3]:
                        if len(false_examples) < 250:
                            false_examples.append({
                                "query": f"{label(p)} (distinct)",
                                "hit": link_label.get(h.path, "?"), "tier": h.tier,
                                "cosine": dm.rnd(h.score), "phash_distance": h.phash_distance})
            lib_files = scan.seen
            scan_errors = len(scan.errors)
            near_cos = config.search.thresholds.with_model_cosine(
                getattr(encoder, "near_duplicate_cosine", None)).near_duplicate_cosine
    finally:
        shutil.rmtree(work, ignore_errors=True)

    # Teacher float features and imagehash pHash over the same database.
    with dm.timed("teacher_phash_ranking", costs):
        nan = np.full(t_db.shape[1], np.nan, np.float32)
        t_orig = np.stack([tf.feats.get((a.teacher_size, str(o.path)), nan)
                           for o in originals])
        t_lib = dm.l2n(np.concatenate([t_orig, t_db]))
        t_lib[~np.isfinite(t_lib).all(axis=1)] = 0.0
        ph_lib = np.asarray([tf.phashes.get(str(o.path), 0) for o in originals]
                            + [tf.phashes.get(str(p), 0) for p in distractors], np.uint64)
        ref: dict[str, dict[str, list[float]]] = {m: {} for m in
                                                  ("teacher_r1", "teacher_rr", "phash_r1",
                                                   "phash_rr")}
        for pi, kind, tfeat, qph in q_teacher:
            r1, rr = dm.tie_aware(t_lib @ dm.l2n(tfeat[None])[0], pi, False)
            ref["teacher_r1"].setdefault(kind, []).append(r1)
            ref["teacher_rr"].setdefault(kind, []).append(rr)
            r1, rr = dm.tie_aware(dm.popcount64(np.bitwise_xor(ph_lib, np.uint64(qph))), pi)
            ref["phash_r1"].setdefault(kind, []).append(r1)
            ref["phash_rr"].setdefault(kind, []).append(rr)
    costs["seconds"] = round(time.perf_counter() - t_all, 1)
    costs["search_ms"] = _ms_quantiles(search_s)
    if robust_s:
        costs["robust_search_ms"] = _ms_quantiles(robust_s)
    costs["queries_per_s"] = round(len(per_query) / max(costs["queries"], 1e-9), 2)
    costs["seconds_per_original"] = {src: round(float(np.mean(v)), 2)
                                     for src, v in photo_s.items()}
    return summarise(a, data, per_query, distinct_rows, false_examples, ref, costs, {
        "library_files": lib_files, "scan_errors": scan_errors, "kprime": kprime,
        "decode_size": dsize, "near_duplicate_cosine": dm.rnd(near_cos),
        "search_config": {"candidate_factor": config.search.candidate_factor,
                          "min_candidates": config.search.min_candidates,
                          "phash_radius": config.search.phash_radius,
                          "mirror_phash_radius": config.search.mirror_phash_radius,
                          "near_duplicate_phash": config.search.thresholds.near_duplicate_phash},
    }, encoder)


def summarise(a: argparse.Namespace, data: dict[str, Any], rows: list[dict[str, Any]],
              distinct_rows: list[dict[str, Any]], false_examples: list[dict[str, Any]],
              ref: dict[str, dict[str, list[float]]], costs: dict[str, Any],
              lib_info: dict[str, Any], encoder: Any) -> dict[str, Any]:
    """Per-edit metrics, the false near-duplicate rates, set-up and costs."""
    kinds = list(a.kinds)
    by: dict[str, list[dict[str, Any]]] = {k: [] for k in (*kinds, CONTROL)}
    for r in rows:
        by[r["edit"]].append(r)

    def per_edit(fn: Any, ks: Sequence[str] = kinds) -> dict[str, Any]:
        return {k: fn(by[k]) for k in ks}

    r1 = per_edit(lambda rs: _mean([float(r["rank"] == 1) for r in rs]))
    mrr = per_edit(lambda rs: _mean([1.0 / r["rank"] if r["rank"] else 0.0 for r in rs]))
    rk = per_edit(lambda rs: _mean([float(r["rank"] is not None) for r in rs]))

    def rank_split(rs: list[dict[str, Any]]) -> dict[str, Any]:
        n = max(1, len(rs))
        not_first = [r["rank"] for r in rs if r["rank"] and r["rank"] > 1]
        return {
            "first": round(sum(r["rank"] == 1 for r in rs) / n, 4),
            "top_k_not_first": round(len(not_first) / n, 4),
            "candidate_below_top_k": round(sum(r["rank"] is None and r["in_candidates"]
                                               for r in rs) / n, 4),
            "not_candidate": round(sum(not r["in_candidates"] for r in rs) / n, 4),
            "median_rank_when_not_first": (statistics.median(not_first) if not_first
                                           else None),
        }

    def tiers(rs: list[dict[str, Any]]) -> dict[str, float]:
        n = max(1, len(rs))
        return {t: round(sum(r["tier"] == t for r in rs) / n, 4)
                for t in ("identical", "near_duplicate", "similar", "absent")}

    def false_rate(rs: Sequence[dict[str, Any]], bad: str = "false_flags",
                   other: str = "others") -> float | None:
        n = sum(r[other] for r in rs)
        return round(sum(r[bad] for r in rs) / n, 5) if n else None

    def query_rate(rs: Sequence[dict[str, Any]], bad: str = "false_flags") -> float | None:
        return round(sum(r[bad] > 0 for r in rs) / len(rs), 4) if rs else None

    edited = [r for r in rows if r["edit"] != CONTROL]
    pooled = edited + distinct_rows
    ref_mean = {m: {k: _mean(v) for k, v in ref[m].items()} for m in ref}
    ph_r1 = {k: ref_mean["phash_r1"].get(k) for k in kinds}
    t_r1 = {k: ref_mean["teacher_r1"].get(k) for k in kinds}

    def mean_of(d: dict[str, Any]) -> float | None:
        return _mean([v for v in d.values() if v is not None])

    stages = {
        "codes": per_edit(lambda rs: _mean([r["codes_r1"] for r in rs])),
        "embedding_exhaustive": per_edit(lambda rs: _mean([r["emb_r1"] for r in rs])),
    }
    out: dict[str, Any] = {
        "recall_at_1": r1,
        "recall_at_1_mean": mean_of(r1),
        "false_near_duplicate_rate": false_rate(pooled),
        "phash_recall_at_1": ph_r1,
        "phash_recall_at_1_mean": mean_of(ph_r1),
        "teacher_recall_at_1": t_r1,
        "teacher_recall_at_1_mean": mean_of(t_r1),
        "mrr": mrr, "mrr_mean": mean_of(mrr),
        "recall_at_k": rk,
        "phash_mrr": {k: ref_mean["phash_rr"].get(k) for k in kinds},
        "teacher_mrr": {k: ref_mean["teacher_rr"].get(k) for k in kinds},
        "original_rank": per_edit(rank_split),
        "original_tier": per_edit(tiers, (*kinds, CONTROL)),
        "false_near_duplicate": {
            "rate": false_rate(pooled),
            "definition": "hits tiered near_duplicate/identical that are not the query's "
                          "original / all hits that are not the query's original (top k of "
                          "every edited and every distinct query)",
            "flagged_hits": sum(r["false_flags"] for r in pooled),
            "distinct_hits": sum(r["others"] for r in pooled),
            "edited_queries_rate": false_rate(edited),
            "distinct_queries_rate": false_rate(distinct_rows),
            "queries_with_a_false_flag": query_rate(pooled),
            "distinct_queries_with_a_false_flag": query_rate(distinct_rows),
            "by_edit": per_edit(false_rate),
            "examples": false_examples[:100],
        },
        "stages": {s: {"recall_at_1": v, "recall_at_1_mean": mean_of(v)}
                   for s, v in stages.items()},
        "recall_at_1_by_source": {
            src: {k: _mean([float(r["rank"] == 1) for r in by[k] if r["source"] == src])
                  for k in kinds}
            for src in ("wallpaper", "eval")},
        "identical_copy": {"recall_at_1": _mean([float(r["rank"] == 1) for r in by[CONTROL]]),
                           "phash_recall_at_1": ref_mean["phash_r1"].get(CONTROL),
                           "teacher_recall_at_1": ref_mean["teacher_r1"].get(CONTROL)},
        "misses": [{k: r.get(k) for k in ("photo", "edit", "rank", "in_candidates", "tier",
                                          "top_hit", "top_tier", "top_score", "target_score")}
                   for r in edited if r["rank"] != 1][:300],
    }
    if a.robust:
        rr1 = per_edit(lambda rs: _mean([float(r["robust_rank"] == 1) for r in rs]))
        out["robust"] = {"recall_at_1": rr1, "recall_at_1_mean": mean_of(rr1),
                         "false_near_duplicate_rate_edited": false_rate(
                             edited, "robust_false_flags", "robust_others")}
    comp = data["composition"]
    out["setup"] = {
        "originals": len(data["originals"]), **comp,
        "wallpapers_found": data["wallpapers_found"],
        "distractors": len(data["distractors"]),
        "queries_per_edit": {k: len(by[k]) for k in kinds},
        "queries": len(edited), "distinct_queries": len(distinct_rows),
        "edits": kinds, "k": a.k, "seed": a.seed, "query_max_side": dm.QUERY_MAX_SIDE,
        "teacher": a.teacher, "teacher_size": a.teacher_size, "robust": a.robust,
        "data": {"wallpapers": [Path(d).name for d in a.wallpapers],
                 "photos": "photos/eval", "imagenette": "imagenette/val (+ train for "
                 "collage backgrounds)", "cifar10": "cifar10/test" if a.cifar else None},
        "original_files": [o.label for o in data["originals"]],
        **lib_info,
    }
    info = dm.model_info(a.model, encoder)
    info["path"] = rel_to_root(a.model)
    out["model"] = info
    out["machine"] = dm.machine_info()
    out["costs"] = costs
    out["targets"] = targets(out)
    return out


def targets(d: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Issue 16's "done when" on this run."""
    t: dict[str, dict[str, Any]] = {}
    r1 = {k: v for k, v in d["recall_at_1"].items() if v is not None}
    if r1:
        worst = min(r1, key=r1.get)
        t["recall_at_1_every_edit"] = {"target": ">= 0.95 on every edit",
                                       "value": f"{worst} {r1[worst]}",
                                       "pass": r1[worst] >= 0.95}
    m = d.get("recall_at_1_mean")
    if m is not None:
        t["recall_at_1_mean"] = {"target": ">= 0.97", "value": m, "pass": m >= 0.97}
    f = d.get("false_near_duplicate_rate")
    if f is not None:
        t["false_near_duplicate_rate"] = {"target": "<= 0.005", "value": f, "pass": f <= 0.005}
    return t


# --------------------------------------------------------------------------- report


def write_md(d: dict[str, Any], path: Path) -> None:
    """The human-readable report."""
    f = dm._f
    s, c, mod, m = d["setup"], d["costs"], d["model"], d["machine"]
    kinds = s["edits"]
    fd = d["false_near_duplicate"]
    lines = [
        "# Hard near-duplicates (issue 16)", "",
        f"{s['originals']} originals ({s['originals_wallpaper']} Debian wallpaper photos, "
        f"{s['originals_eval']} photos/eval photos) among {s['distractors']} distractors "
        f"({s['distractors_imagenette_val']} Imagenette val, {s['distractors_eval']} other "
        f"photos/eval, {s['distractors_cifar10_test']} CIFAR-10 test); {s['queries']} edited "
        f"queries ({len(kinds)} edits, seed {s['seed']}) and {s['distinct_queries']} distinct "
        f"queries (photos/eval photos kept out of the library). Search: `Library.search(image, "
        f"k={s['k']})`, the app's full path and settings. pHash: imagehash `phash`, Hamming "
        f"ranking; teacher: {s['teacher']} {s['teacher_size']} px float features, cosine; "
        "ties shared. Written by `benchmarks/neardup.py` (edits and metrics in its docstring).",
        "",
        f"Model `{mod.get('path')}` ({mod.get('model_id')}, {mod.get('arch')} at "
        f"{mod.get('input_size')} px, near-duplicate cosine {s.get('near_duplicate_cosine')}). "
        f"Machine {m.get('machine')}, {m.get('cpu_count')} cores, torch {m.get('torch')} with "
        f"{m.get('torch_threads')} threads; {m.get('date')}, commit {m.get('git_commit')}.", "",
    ]
    tg = d.get("targets", {})
    if tg:
        lines += ["| target | value | result |", "|---|---|---|"]
        for name, t in tg.items():
            lines.append(f"| {name} ({t['target']}) | {f(t['value'])} | "
                         f"**{'PASS' if t['pass'] else 'FAIL'}** |")
        lines.append("")
    lines += [
        f"Mean recall@1: **{f(d['recall_at_1_mean'])}** (pHash {f(d['phash_recall_at_1_mean'])}"
        f", teacher {f(d['teacher_recall_at_1_mean'])}); false near-duplicate rate "
        f"**{f(d['false_near_duplicate_rate'], 4)}** ({fd['flagged_hits']} of "
        f"{fd['distinct_hits']} distinct photos returned were tiered near-duplicate/identical; "
        f"{f(fd['queries_with_a_false_flag'])} of queries had at least one; distinct queries "
        f"alone {f(fd['distinct_queries_rate'], 4)}).", "",
        "| edit | recall@1 | MRR | pHash r@1 | teacher r@1 | codes r@1 | embedding r@1 | "
        "first / top-k / candidate / missed | original tier id / near / sim / absent | "
        "false near-dup |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for k in kinds:
        rs, ti = d["original_rank"][k], d["original_tier"][k]
        lines.append(
            f"| {k} | **{f(d['recall_at_1'][k])}** | {f(d['mrr'][k])} | "
            f"{f(d['phash_recall_at_1'][k])} | {f(d['teacher_recall_at_1'][k])} | "
            f"{f(d['stages']['codes']['recall_at_1'][k])} | "
            f"{f(d['stages']['embedding_exhaustive']['recall_at_1'][k])} | "
            f"{f(rs['first'], 2)} / {f(rs['top_k_not_first'], 2)} / "
            f"{f(rs['candidate_below_top_k'], 2)} / {f(rs['not_candidate'], 2)} | "
            f"{f(ti['identical'], 2)} / {f(ti['near_duplicate'], 2)} / {f(ti['similar'], 2)} / "
            f"{f(ti['absent'], 2)} | {f(fd['by_edit'][k], 4)} |")
    lines.append(f"| **mean** | **{f(d['recall_at_1_mean'])}** | {f(d['mrr_mean'])} | "
                 f"{f(d['phash_recall_at_1_mean'])} | {f(d['teacher_recall_at_1_mean'])} | "
                 f"{f(d['stages']['codes']['recall_at_1_mean'])} | "
                 f"{f(d['stages']['embedding_exhaustive']['recall_at_1_mean'])} | | | |")
    ic = d["identical_copy"]
    lines += [
        "", "Columns: *codes* = Hamming ranking of every stored code; *embedding* = cosine of "
        "every stored embedding (both from the engine's stored data, the first orientation); "
        "*first / top-k / candidate / missed* = share of queries whose original is the first "
        f"hit / in the top {s['k']} below first / among the stage-1 candidates (the "
        f"{s['kprime']} nearest codes or the pHash channel) but below the top {s['k']} / not a "
        "candidate; *original tier* = the tier the default search gave the original.", "",
        f"Control, the unedited full-resolution original: recall@1 {f(ic['recall_at_1'])} "
        f"(pHash {f(ic['phash_recall_at_1'])}, teacher {f(ic['teacher_recall_at_1'])}).", ""]
    bs = d["recall_at_1_by_source"]
    lines += ["Recall@1 by source of the original:", "",
              "| source | " + " | ".join(kinds) + " |", "|---" * (len(kinds) + 1) + "|"]
    for src, v in bs.items():
        lines.append(f"| {src} | " + " | ".join(f(v[k], 2) for k in kinds) + " |")
    lines.append("")
    if "robust" in d:
        rb = d["robust"]
        lines += [f"`robust=True` (8 orientations): mean recall@1 {f(rb['recall_at_1_mean'])}, "
                  f"false near-duplicate rate on edited queries "
                  f"{f(rb['false_near_duplicate_rate_edited'], 4)}; per edit: "
                  + ", ".join(f"{k} {f(v)}" for k, v in rb["recall_at_1"].items()) + ".", ""]
    if fd["examples"]:
        lines += ["False near-duplicates (first 15):", "",
                  "| query | hit | tier | cosine | pHash distance |", "|---|---|---|---|---|"]
        for x in fd["examples"][:15]:
            lines.append(f"| {x['query']} | {x['hit']} | {x['tier']} | {f(x['cosine'])} | "
                         f"{f(x['phash_distance'])} |")
        lines.append("")
    if d["misses"]:
        lines += [f"Misses of the default search (first 15 of {len(d['misses'])} listed):", "",
                  "| photo | edit | rank | candidate | first hit (tier, cosine) |",
                  "|---|---|---|---|---|"]
        for x in d["misses"][:15]:
            lines.append(f"| {x['photo']} | {x['edit']} | {f(x['rank'])} | "
                         f"{x['in_candidates']} | {x['top_hit']} ({x['top_tier']}, "
                         f"{f(x['top_score'])}) |")
        lines.append("")
    sm = c.get("search_ms", {})
    lines += ["## Costs", "",
              f"{c.get('seconds')} s in all: select {c.get('select')} s, scan {c.get('scan')} s "
              f"({c.get('scan_files_per_s')} files/s, {s['library_files']} files), teacher "
              f"features of the distractors {c.get('teacher_db')} s, queries "
              f"{c.get('queries')} s ({c.get('queries_per_s')} queries/s including edits, "
              f"teacher and diagnostics), distinct queries {c.get('distinct_queries')} s. "
              f"`Library.search` at {s['library_files']} files: p50 {f(sm.get('p50'))} ms, "
              f"p99 {f(sm.get('p99'))} ms.", ""]
    if d.get("analysis"):
        lines += ["## Analysis", "", d["analysis"], ""]
    if d.get("errors"):
        lines += ["## Errors", ""] + [f"- {e.splitlines()[-1]}" for e in d["errors"]] + [""]
    path.write_text("\n".join(lines))


# --------------------------------------------------------------------------- main


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", type=Path, default=ROOT / "resources" / "models" / "default.pt",
                   help="model file (default: resources/models/default.pt)")
    p.add_argument("--wallpapers", type=Path, nargs="*", default=[],
                   help="folders with real photos, e.g. /usr/share/wallpapers "
                        "/usr/share/backgrounds /usr/share/palapeli")
    p.add_argument("--photos", type=Path, required=True,
                   help="unpacked photos/ with eval/ (unlabelled/ is not used)")
    p.add_argument("--imagenette", type=Path, required=True,
                   help="Imagenette root with val/ (distractors) and train/ (collage "
                        "backgrounds)")
    p.add_argument("--cifar", type=Path, help="CIFAR-10 root with test/<class>/ images")
    p.add_argument("--originals", type=int, default=DEFAULT_ORIGINALS,
                   help=f"edited photos: all wallpapers, then photos/eval (default "
                        f"{DEFAULT_ORIGINALS})")
    p.add_argument("--distractors", type=int, default=DEFAULT_DISTRACTORS,
                   help=f"other photos in the library (default {DEFAULT_DISTRACTORS})")
    p.add_argument("--distinct", type=int, default=DEFAULT_DISTINCT,
                   help=f"unedited photos/eval photos kept out of the library, searched for "
                        f"the false near-duplicate rate (default {DEFAULT_DISTINCT})")
    p.add_argument("--backgrounds", type=int, default=500,
                   help="Imagenette train images to draw collage backgrounds from")
    p.add_argument("--kinds", default=",".join(EDITS),
                   help="comma-separated subset of the edits (default: all)")
    p.add_argument("--robust", action="store_true",
                   help="also run Library.search(robust=True) on every query (slower)")
    p.add_argument("--out", type=Path, default=dm.OUT / "neardup.json",
                   help="JSON output (the .md goes beside it)")
    p.add_argument("--teacher", default="mobilenet_v2")
    p.add_argument("--teacher-size", type=int, default=224)
    p.add_argument("--k", type=int, default=20, help="results per search")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--exclude", nargs="*", default=[],
                   help="skip wallpaper files whose path contains any of these strings")
    p.add_argument("--copy", action="store_true",
                   help="copy files into the temporary library folder instead of symlinking")
    p.add_argument("--decode-threads", type=int, default=2)
    p.add_argument("--work", type=Path, default=None, help="parent of the temporary folder")
    a = p.parse_args(argv)
    a.kinds = [k.strip() for k in a.kinds.split(",") if k.strip()]
    unknown = set(a.kinds) - set(EDITS)
    if unknown:
        p.error(f"unknown edits {sorted(unknown)}")
    return a


def main(argv: Sequence[str] | None = None) -> int:
    a = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    prev: dict[str, Any] = {}
    if a.out.exists():
        try:
            prev = json.loads(a.out.read_text())
        except (ValueError, OSError):
            prev = {}
    try:
        d = run(a)
        rc = 0
    except Exception:
        log.exception("benchmark failed")
        d = {"errors": [traceback.format_exc()]}
        rc = 1
    if prev.get("analysis"):  # the hand-written analysis survives a rerun
        d["analysis"] = prev["analysis"]
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps(d, indent=2) + "\n")
    if rc == 0:
        write_md(d, a.out.with_suffix(".md"))
        print(f"wrote {a.out} and {a.out.with_suffix('.md')} in {d['costs']['seconds']} s")
        for name, t in d["targets"].items():
            print(f"{'PASS' if t['pass'] else 'FAIL'}  {name}: {t['value']} "
                  f"(target {t['target']})")
    return rc


if __name__ == "__main__":
    sys.exit(main())
