"""Evaluation of the shipped default model (issue 7): near-duplicates on real photos, semantic
neighbours on Imagenette and encode throughput against the teacher.

Usage (data laid out as in ../shared/data/README.md; on Debian the wallpaper packages put real
photos under /usr/share/wallpapers, /usr/share/backgrounds and /usr/share/palapeli)::

    OMP_NUM_THREADS=2 python benchmarks/default_model.py \\
        --model resources/models/default.pt \\
        --wallpapers /usr/share/wallpapers /usr/share/backgrounds /usr/share/palapeli \\
        --imagenette /tmp/data/imagenette --cifar /tmp/data/cifar10

    ... --quick        # smoke run (~30 photos x 8 edits, 500 distractors, 300 val images),
                       # < 3 min on one thread; writes default_model.quick.json/.md

Writes ``docs/benchmarks/default_model.json`` and ``.md`` (``--quick``:
``default_model.quick.*``; ``--out`` overrides). ``--parts neardup,semantic,throughput`` runs
a subset; results merge into an existing JSON at the same place.

Run time: ``--quick`` took 2 min 20 s on one thread of a 2-core machine busy with a training
job. The full run is estimated (from the quick run's rates, not yet measured) at about 12-20
minutes on 2 idle cores with ``OMP_NUM_THREADS=2``; MobileNetV2 at 224 px dominates (about
22 000 forward passes: the 10 000 distractors, 5 000 ITQ fitting images, the queries and the
throughput runs). ``--fit-images``, ``--distractors`` etc. override the sizes; ``--parts``
splits a run.

Parts:

1. ``neardup``: every wallpaper photo (0.6-24 MP, >= 200 KB; one file per wallpaper package,
   the largest; no two with pHash distance <= 8, so identical content and the same photo at
   several resolutions count once) is indexed with ``--distractors`` (10 000) others - all
   Imagenette val images, then CIFAR-10 test images spread over the classes (a smaller
   ``--distractors`` keeps the full run's mix) - in a real :class:`core.library.Library`
   (temporary folder of symlinks, scanned with the app's settings except that symlinks are
   followed; the sources are never modified). Each photo, reduced to 2048 px on its longer
   side, gets 8 seeded edits (:data:`TRANSFORMS`) and each edited copy, as an in-memory image,
   is the query of ``Library.search(image, k=--k)``: the engine's full path (stage 1 Hamming
   candidates + hash channel, stage 2 embedding re-rank, pHash tiers). Relevant = the one
   original. Recall@1 is "the original is the first hit"; AP with a single relevant item is
   the reciprocal rank (0 if the original is not among the k hits). Next to it, on the same
   queries and database: imagehash's ``phash`` (full decode, Hamming ranking) and the teacher's
   own float features (MobileNetV2 at 224 px, whole frame, cosine ranking); ties in their
   rankings are shared (expected recall@1 and reciprocal rank under random tie order). Search
   stages from the engine's pieces: ``codes`` (Hamming ranking of all stored codes),
   ``codes+rerank`` (``run_search`` without the hash channel), ``codes+rerank+hash`` (the
   default ``Library.search``), ``robust`` (the same with ``robust=True``) and
   ``embedding_exhaustive`` (cosine of the stored embeddings over the whole library). The
   unedited full-resolution photo is an extra control query (``identical_copy``), not part of
   the means.
2. ``semantic``: Imagenette val (``--semantic-images``, all 3925 by default); every image is a
   query against all the others (leave-one-out), class = relevance, mAP@100 over Hamming
   ranking of the model's 64-bit codes; the teacher's features at 224 px and at the model's
   input size with a PCA + ITQ 64-bit head fitted on ``--fit-images`` (5000) Imagenette
   train images (L2-normalised features, as ``fit_itq_head`` does); float-feature mAP@100
   (cosine) of each for context.
3. ``throughput``: ``--throughput-images`` (1000) Imagenette val files, median of ``--reps``
   (5) rounds after a warm-up (each round runs every model once, in turn), page cache warm,
   BatchNorm folded into the convolutions in student and teacher alike: end to end (decode
   with JPEG draft + squash resize in ``--decode-threads`` threads, overlapping the
   network; the student through ``Encoder.encode_paths``, the teacher through the same
   ``iter_image_batches``) for the
   student, the teacher at the student's input size and the teacher at its native 224 px;
   and network only (pre-decoded pixels, batches of 64).

Targets (printed as PASS/FAIL and stored under ``targets``): near-duplicate recall@1 mean over
the 8 edits >= 0.95 and ahead of pHash on every edit (a tie counts only when both are 1.0);
semantic mAP@100 within 0.05 of the better teacher size; throughput >= 4x the teacher at 224.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import logging
import math
import os
import platform
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
from PIL import Image, ImageDraw, ImageEnhance, ImageFont  # noqa: E402

from core.imageio import IMAGE_EXTENSIONS, ImageLoadError, load_image  # noqa: E402

log = logging.getLogger("bench.default_model")

OUT = ROOT / "docs" / "benchmarks"
PARTS = ("neardup", "semantic", "throughput")
TRANSFORMS = ("crop", "rescale_25", "jpeg_q30", "rotate_10", "greyscale", "brightness_30",
              "hflip", "text_overlay")
STAGES = ("codes", "codes+rerank", "codes+rerank+hash", "robust", "embedding_exhaustive")
FULL_STAGE = "codes+rerank+hash"
#: The distractor mix of the full run (all Imagenette val, CIFAR-10 test for the rest).
FULL_DISTRACTORS = 10_000
QUERY_MAX_SIDE = 2048
WORDS = ("holiday", "2019", "beach", "family", "copyright", "sunset", "ANNA", "trip", "best",
         "day", "ever", "summer", "camera", "roll", "IMG", "photo", "do not share", "view",
         "mountain", "weekend", "#travel", "love", "home", "edit")


@dataclass(frozen=True)
class Sizes:
    """How much of each data set a run uses."""

    photos: int
    distractors: int
    semantic_images: int
    fit_images: int
    throughput_images: int
    reps: int


FULL = Sizes(photos=0, distractors=FULL_DISTRACTORS, semantic_images=0, fit_images=5000,
             throughput_images=1000, reps=5)
QUICK = Sizes(photos=30, distractors=500, semantic_images=300, fit_images=200,
              throughput_images=48, reps=3)


# --------------------------------------------------------------------------- small helpers


def list_image_files(folder: Path) -> list[Path]:
    """Image files below ``folder`` (sorted, hidden entries skipped, symlinks to folders not
    followed)."""
    out = []
    for dirpath, dirnames, filenames in os.walk(folder):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        out += [Path(dirpath, f) for f in sorted(filenames)
                if not f.startswith(".") and Path(f).suffix.lower() in IMAGE_EXTENSIONS]
    return out


def spread(items: Sequence[Any], n: int) -> list[Any]:
    """``n`` items spread evenly over a sorted list (so every class is represented);
    ``n <= 0`` or ``n >= len`` keeps them all."""
    if n <= 0 or n >= len(items):
        return list(items)
    step = len(items) / n
    return [items[int(i * step)] for i in range(n)]


def labelled_images(folder: Path) -> tuple[list[Path], np.ndarray]:
    """Images of a class-per-subfolder tree and their int labels (sorted class names)."""
    from core.data import list_images

    il = list_images(folder, labelled=True)
    return list(il.paths), np.asarray(il.labels, dtype=np.int64)


def l2n(x: np.ndarray) -> np.ndarray:
    """Row-wise L2 normalisation (float32)."""
    x = np.asarray(x, dtype=np.float32)
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def rnd(v: float | None, nd: int = 4) -> float | None:
    """Round for the report (None and NaN stay None)."""
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return None
    return round(float(v), nd)


def squash(im: Image.Image, size: int) -> Image.Image:
    """Whole-frame resize to a square, as :meth:`core.encoder.Encoder.encode` does."""
    return im.convert("RGB").resize((size, size), Image.BILINEAR, reducing_gap=3.0)


def imagehash_phash(im: Image.Image) -> int:
    """imagehash's 64-bit pHash of a decoded image as an unsigned int."""
    import imagehash

    return int(str(imagehash.phash(im)), 16)


def popcount64(x: np.ndarray) -> np.ndarray:
    """Set bits of each uint64."""
    if hasattr(np, "bitwise_count"):
        return np.bitwise_count(x).astype(np.int32)
    return np.unpackbits(x.view(np.uint8).reshape(-1, 8), axis=1).sum(axis=1).astype(np.int32)


@contextlib.contextmanager
def timed(name: str, sink: dict[str, float]) -> Iterator[None]:
    """Log and record the wall time of a block."""
    t0 = time.perf_counter()
    try:
        yield
    finally:
        sink[name] = round(time.perf_counter() - t0, 1)
        log.info("%s: %.1f s", name, sink[name])


# --------------------------------------------------------------------------- edits


def query_rng(seed: int, key: str, kind: str) -> random.Random:
    """A deterministic RNG per (seed, photo key, edit) - independent of the run's order."""
    return random.Random(f"{seed}/{key}/{kind}")


def _text_overlay(im: Image.Image, rng: random.Random) -> Image.Image:
    w, h = im.size
    out = im.copy()
    draw = ImageDraw.Draw(out)
    size = max(10, h // 12)
    font = ImageFont.load_default(size=size)
    x = int(rng.uniform(0.03, 0.35) * w)
    y = int(rng.uniform(0.03, 0.45) * h)
    colour = rng.choice([(255, 255, 255), (255, 230, 0), (20, 20, 20)])
    stroke = (0, 0, 0) if sum(colour) > 300 else (255, 255, 255)
    for line in range(3):
        text = " ".join(rng.choice(WORDS) for _ in range(rng.randint(2, 4)))
        draw.text((x, y + line * int(size * 1.25)), text, font=font, fill=colour,
                  stroke_width=max(1, size // 15), stroke_fill=stroke)
    return out


def edit(im: Image.Image, kind: str, rng: random.Random) -> Image.Image:
    """One edit of :data:`TRANSFORMS` applied to an RGB image.

    * ``crop``: a random crop keeping 50-90 % of the area, the photo's aspect ratio, random
      position;
    * ``rescale_25``: 25 % of the width and height (Lanczos);
    * ``jpeg_q30``: re-encoded as JPEG quality 30;
    * ``rotate_10``: rotated by 10 degrees (random direction) about the centre, same size,
      black corners;
    * ``greyscale``: luminance only (stored as RGB);
    * ``brightness_30``: brightness x1.3 or x0.7 (random);
    * ``hflip``: mirrored left-right;
    * ``text_overlay``: 3 lines of random words (height/12 px font, white/yellow/black with a
      contrasting outline) at a random place.
    """
    im = im.convert("RGB")
    w, h = im.size
    if kind == "crop":
        s = math.sqrt(rng.uniform(0.5, 0.9))
        cw, ch = max(1, round(w * s)), max(1, round(h * s))
        x0, y0 = rng.randint(0, w - cw), rng.randint(0, h - ch)
        return im.crop((x0, y0, x0 + cw, y0 + ch))
    if kind == "rescale_25":
        return im.resize((max(1, round(w * 0.25)), max(1, round(h * 0.25))),
                         Image.Resampling.LANCZOS)
    if kind == "jpeg_q30":
        buf = io.BytesIO()
        im.save(buf, "JPEG", quality=30)
        buf.seek(0)
        with Image.open(buf) as j:
            return j.convert("RGB")
    if kind == "rotate_10":
        return im.rotate(rng.choice((-10.0, 10.0)), resample=Image.Resampling.BICUBIC,
                         expand=False, fillcolor=(0, 0, 0))
    if kind == "greyscale":
        return im.convert("L").convert("RGB")
    if kind == "brightness_30":
        return ImageEnhance.Brightness(im).enhance(rng.choice((0.7, 1.3)))
    if kind == "hflip":
        return im.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    if kind == "text_overlay":
        return _text_overlay(im, rng)
    raise ValueError(f"unknown edit {kind!r}")


def query_base(full: Image.Image, max_side: int = QUERY_MAX_SIDE) -> Image.Image:
    """The photo the edits start from: reduced to ``max_side`` on its longer side."""
    im = full.convert("RGB")
    if max(im.size) > max_side:
        im = im.copy()
        im.thumbnail((max_side, max_side), Image.Resampling.LANCZOS)
    return im


def make_queries(base: Image.Image, key: str, seed: int,
                 kinds: Sequence[str] = TRANSFORMS) -> dict[str, Image.Image]:
    """The edited copies of one photo, each from its own seeded RNG."""
    return {k: edit(base, k, query_rng(seed, key, k)) for k in kinds}


# --------------------------------------------------------------------------- data sets


@dataclass(frozen=True)
class Photo:
    """A wallpaper photo: path, pixel size, byte size."""

    path: Path
    width: int
    height: int
    bytes: int


def _package(p: Path) -> str:
    parts = p.parts
    return str(Path(*parts[:parts.index("contents")])) if "contents" in parts else ""


def find_wallpapers(dirs: Sequence[Path], *, min_bytes: int = 200_000,
                    mp_range: tuple[float, float] = (0.6, 24.0),
                    exclude: Sequence[str] = ()) -> list[Photo]:
    """Distinct real photos below ``dirs``, sorted by path.

    Kept: JPEG/PNG/WebP files of ``mp_range`` megapixels and at least ``min_bytes``; per
    wallpaper package (``NAME/contents/images*/``) only the largest file; then, largest first,
    no two files with the same resolved path or a pHash distance <= 8 (identical content, the
    same photo at another resolution). ``exclude``: substrings of paths to skip.
    """
    from core.imageio import phash

    cands: list[Photo] = []
    for d in dirs:
        for p in list_image_files(d):
            if p.suffix.lower() not in (".jpg", ".jpeg", ".png", ".webp"):
                continue
            if any(x in str(p) for x in exclude):
                continue
            try:
                size = p.stat().st_size
                if size < min_bytes:
                    continue
                with Image.open(p) as im:
                    w, h = im.size
            except (OSError, ValueError, Image.DecompressionBombError):
                continue
            if mp_range[0] <= w * h / 1e6 <= mp_range[1]:
                cands.append(Photo(p, w, h, size))
    cands.sort(key=lambda c: (-c.width * c.height, -c.bytes, str(c.path)))
    kept: list[Photo] = []
    packages: set[str] = set()
    real: set[str] = set()
    hashes: list[int] = []
    for c in cands:
        pkg = _package(c.path)
        rp = os.path.realpath(c.path)
        if (pkg and pkg in packages) or rp in real:
            continue
        try:
            with Image.open(c.path) as im:
                im.draft("RGB", (256, 256))
                ph = phash(im.convert("RGB"))
        except OSError:
            continue
        if any(((ph ^ o) & (2**64 - 1)).bit_count() <= 8 for o in hashes):
            continue
        if pkg:
            packages.add(pkg)
        real.add(rp)
        hashes.append(ph)
        kept.append(c)
    return sorted(kept, key=lambda c: str(c.path))


def distractor_set(imagenette_val: Sequence[Path], cifar_test: Sequence[Path],
                   n: int) -> list[Path]:
    """``n`` distractors: Imagenette val first, CIFAR-10 test to fill up.

    At ``n >= FULL_DISTRACTORS`` all Imagenette val images are used; a smaller ``n`` keeps
    the full run's mix (so a quick run sees both kinds). Both lists are spread over classes.
    """
    share = len(imagenette_val) / max(n, FULL_DISTRACTORS)
    n_in = min(len(imagenette_val), n, round(n * share))
    return spread(imagenette_val, n_in) + spread(cifar_test, n - n_in)[:max(0, n - n_in)]


# --------------------------------------------------------------------------- metrics


def tie_aware(scores: np.ndarray, target: int, lower_is_better: bool = True) -> tuple[
        float, float]:
    """(expected recall@1, expected reciprocal rank) of ``target`` when tied items are in
    random order."""
    s = scores if lower_is_better else -scores
    v = s[target]
    better = int((s < v).sum())
    ties = int((s == v).sum())  # includes target
    r1 = 1.0 / ties if better == 0 else 0.0
    rr = float(np.mean(1.0 / np.arange(better + 1, better + ties + 1)))
    return r1, rr


def rank_in_hits(hits: Sequence[Any], target: int) -> int | None:
    """1-based position of ``target`` among search hits (None if absent)."""
    for i, h in enumerate(hits, start=1):
        if h.file_id == target:
            return i
    return None


def map_at_k(dist_fn: Callable[[int, int], np.ndarray], q_labels: np.ndarray,
             db_labels: np.ndarray, k: int, *, exclude_self: bool = False,
             chunk: int = 256) -> float:
    """mAP@k (DeepHash ``CalcTopMap``: ``sum rel_i P@i / R_k``, 0 when nothing relevant in
    the top k) over a distance ranking, ties by database index.

    Args:
        dist_fn: ``dist_fn(start, stop)`` → distances of queries ``start:stop`` to the whole
            database ``[stop - start, N_db]`` (smaller = closer).
        exclude_self: queries are the database (leave-one-out): query i never retrieves i.
    """
    n_q = len(q_labels)
    k = min(k, len(db_labels) - (1 if exclude_self else 0))
    aps = []
    for s in range(0, n_q, chunk):
        e = min(s + chunk, n_q)
        d = np.asarray(dist_fn(s, e), dtype=np.float64)
        if exclude_self:
            d[np.arange(e - s), np.arange(s, e)] = np.inf
        order = np.argsort(d, axis=1, kind="stable")[:, :k]
        rel = db_labels[order] == q_labels[s:e, None]
        prec = np.cumsum(rel, axis=1) / np.arange(1, k + 1)
        rk = rel.sum(axis=1)
        aps.append(np.where(rk > 0, (prec * rel).sum(axis=1) / np.maximum(rk, 1), 0.0))
    return float(np.concatenate(aps).mean()) if aps else math.nan


def hamming_map(q_codes: np.ndarray, db_codes: np.ndarray, q_labels: np.ndarray,
                db_labels: np.ndarray, k: int, exclude_self: bool = False) -> float:
    """mAP@k of packed codes ranked by Hamming distance."""
    from core.library.search import hamming_matrix

    return map_at_k(lambda s, e: hamming_matrix(q_codes[s:e], db_codes), q_labels, db_labels,
                    k, exclude_self=exclude_self)


def cosine_map(q_feats: np.ndarray, db_feats: np.ndarray, q_labels: np.ndarray,
               db_labels: np.ndarray, k: int, exclude_self: bool = False) -> float:
    """mAP@k of float features ranked by cosine similarity."""
    q, d = l2n(q_feats), l2n(db_feats)
    return map_at_k(lambda s, e: -(q[s:e] @ d.T), q_labels, db_labels, k,
                    exclude_self=exclude_self)


# --------------------------------------------------------------------------- models


def load_teacher(name: str, size: int) -> Any:
    """A frozen teacher at ``size`` px, BatchNorm folded as the student's Encoder does (the
    same inference optimisation on both sides of every comparison)."""
    from core.models import create_teacher
    from core.models.fuse import fold_batchnorm

    return fold_batchnorm(create_teacher(name, input_size=size), inplace=True)


def forward(model: Callable[[Any], Any], x: Any, batch_size: int = 64) -> np.ndarray:
    """float32 outputs of ``model`` on uint8 pixels ``[N, 3, S, S]`` (no grad, batched)."""
    import torch

    out = []
    with torch.no_grad():
        for i in range(0, len(x), batch_size):
            out.append(model(x[i:i + batch_size]).float().numpy())
    return np.concatenate(out) if out else np.zeros((0, 0), np.float32)


def pixels(images: Sequence[Image.Image], size: int) -> Any:
    """Squash-resized uint8 tensor ``[N, 3, size, size]``."""
    from core.preprocess import to_tensor

    return to_tensor([squash(im, size) for im in images])


class TeacherFeatures:
    """Teacher features per (size, path), computed once (full decode + squash resize), with
    imagehash pHashes of the same decodes."""

    def __init__(self, name: str, threads: int) -> None:
        self.name = name
        self.threads = max(1, threads)
        self.models: dict[int, Any] = {}
        self.feats: dict[tuple[int, str], np.ndarray] = {}
        self.phashes: dict[str, int] = {}

    def model(self, size: int) -> Any:
        """The teacher at ``size`` px (loaded on first use)."""
        if size not in self.models:
            self.models[size] = load_teacher(self.name, size)
        return self.models[size]

    def of_images(self, images: Sequence[Image.Image], size: int) -> np.ndarray:
        """Features of in-memory images."""
        return forward(self.model(size), pixels(images, size))

    def add_images(self, keys: Sequence[str], images: Sequence[Image.Image],
                   sizes: Sequence[int], with_phash: bool = False) -> None:
        """Compute and store features (and pHashes) of decoded images under ``keys``."""
        for size in sizes:
            for key, f in zip(keys, self.of_images(images, size), strict=True):
                self.feats[(size, key)] = f
        if with_phash:
            for key, im in zip(keys, images, strict=True):
                self.phashes[key] = imagehash_phash(im)

    def of_paths(self, paths: Sequence[Path], sizes: Sequence[int], *,
                 with_phash: bool = False, chunk: int = 64,
                 progress: str = "") -> dict[int, np.ndarray]:
        """``{size: [N, D]}`` features of image files; unreadable files get NaN rows."""
        todo = [p for p in paths if any((s, str(p)) not in self.feats for s in sizes)
                or (with_phash and str(p) not in self.phashes)]
        t0 = time.perf_counter()

        def decode(p: Path) -> Image.Image | None:
            try:
                return load_image(p)
            except ImageLoadError as exc:
                log.warning("cannot decode %s", exc)
                return None

        with ThreadPoolExecutor(self.threads) as pool:
            for s in range(0, len(todo), chunk):
                part = todo[s:s + chunk]
                ims = list(pool.map(decode, part))
                ok = [(str(p), im) for p, im in zip(part, ims, strict=True) if im is not None]
                if ok:
                    self.add_images([k for k, _ in ok], [im for _, im in ok], sizes,
                                    with_phash)
                if progress and (s // chunk) % 20 == 19:
                    log.info("%s: %d/%d images (%.0f s)", progress, s + len(part), len(todo),
                             time.perf_counter() - t0)
        dim = self.model(sizes[0]).feature_dim
        nan = np.full(dim, np.nan, np.float32)
        return {s: np.stack([self.feats.get((s, str(p)), nan) for p in paths])
                if paths else np.zeros((0, dim), np.float32) for s in sizes}


def model_info(path: Path, encoder: Any) -> dict:
    """What the report says about the evaluated model file."""
    from core.checkpoint import load_model_file

    d = load_model_file(path)
    prov = d.get("provenance") or {}
    arch = d.get("arch")
    return {"path": str(path), "model_id": encoder.model_id,
            "file_mb": round(path.stat().st_size / 2**20, 2),
            "arch": arch.get("name") if isinstance(arch, dict) else arch,
            "input_size": encoder.input_size, "n_bits": encoder.n_bits,
            "embed_dim": encoder.embed_dim, "hash_head": encoder.head_spec.get("kind"),
            "teacher": d.get("teacher"),
            "provenance": {k: v for k, v in prov.items()
                           if isinstance(v, str | int | float | bool) or v is None}}


# --------------------------------------------------------------------------- part 1


def _link_tree(files: Sequence[Path], dest: Path, copy: bool) -> list[Path]:
    """Symlink (or copy) ``files`` into ``dest`` with unique names; the new paths."""
    dest.mkdir(parents=True, exist_ok=True)
    out = []
    for i, p in enumerate(files):
        target = dest / f"{i:05d}_{p.name}"
        if copy:
            shutil.copyfile(p, target)
        else:
            os.symlink(os.path.abspath(p), target)
        out.append(target)
    return out


def _mean(v: Sequence[float]) -> float | None:
    return round(float(np.mean(v)), 4) if len(v) else None


def _per_transform(values: dict[str, list[float]], kinds: Sequence[str]) -> dict[str, Any]:
    return {t: _mean(values.get(t, [])) for t in kinds}


def part_neardup(a: argparse.Namespace, ctx: dict) -> dict:
    """Near-duplicate retrieval of edited wallpaper photos among distractors."""
    from core.library import Library, LibraryConfig, prepare_query, run_search
    from core.library.search import hamming_matrix

    encoder, tf, sizes = ctx["encoder"], ctx["teacher"], ctx["sizes"]
    photos = find_wallpapers(a.wallpapers, exclude=a.exclude)
    if not photos:
        raise RuntimeError(f"no photos (0.6-24 MP, >= 200 KB) under {a.wallpapers}")
    n_found = len(photos)
    photos = spread(photos, sizes.photos)
    in_val, _ = labelled_images(a.imagenette / "val")
    cifar, _ = labelled_images(a.cifar / "test")
    distractors = distractor_set(in_val, cifar, sizes.distractors)
    in_set = set(in_val)
    n_in = sum(1 for p in distractors if p in in_set)
    log.info("near-dup: %d of %d photos, %d distractors (%d Imagenette, %d CIFAR)",
             len(photos), n_found, len(distractors), n_in, len(distractors) - n_in)
    times: dict[str, float] = {}
    work = Path(tempfile.mkdtemp(prefix="cukd-default-model-", dir=a.work))
    try:
        root = work / "root"
        orig_links = _link_tree([p.path for p in photos], root / "originals", a.copy)
        _link_tree(distractors, root / "distractors", a.copy)
        base = LibraryConfig()
        config = replace(base, scan=replace(base.scan, follow_symlinks=True))
        lib = Library.open(work / "library", encoder, config)
        try:
            lib.add_root(root, watch_mode="off")
            with timed("neardup_scan", times):
                scan = lib.scan()
            if scan.errors:
                log.warning("%d files failed to index: %s", len(scan.errors), scan.errors[:3])
            cat, mid = lib.catalog, encoder.model_id
            target_ids = []
            for p in orig_links:
                rec = cat.get_file_by_path(os.path.normpath(os.path.abspath(p)))
                target_ids.append(rec.id if rec else -1)
            ids, codes = [], []
            for i, c in cat.iter_codes(mid):
                ids.append(i)
                codes.append(c)
            all_ids, all_codes = np.concatenate(ids), np.concatenate(codes)
            pos = {int(i): j for j, i in enumerate(all_ids)}
            e_ids, embs = cat.all_embeddings(mid)
            e_pos = {int(i): j for j, i in enumerate(e_ids)}
            embs = np.asarray(embs, np.float32)
            dsize = config.scan.decode_size or max(int(encoder.input_size), 64)
            no_hash = replace(config.search, phash_radius=0)

            # Teacher features and imagehash pHashes of the database (same order as links).
            with timed("neardup_teacher_db", times):
                db_paths = [p.path for p in photos] + list(distractors)
                t_db = tf.of_paths(distractors, [a.teacher_size], with_phash=True,
                                   progress="teacher/pHash of distractors")[a.teacher_size]
            kinds = (*TRANSFORMS, "identical_copy")
            res: dict[str, dict[str, dict[str, list[float]]]] = {
                m: {"r1": {t: [] for t in kinds}, "rr": {t: [] for t in kinds}}
                for m in (*STAGES, "phash", "teacher")}
            tier_ok: dict[str, list[float]] = {t: [] for t in kinds}
            misses: list[dict] = []
            q_feats: list[tuple[int, str, np.ndarray, int]] = []
            with timed("neardup_queries", times):
                for pi, (ph, target) in enumerate(zip(photos, target_ids, strict=True)):
                    if target < 0:
                        log.warning("%s was not indexed; skipped", ph.path)
                        continue
                    full = load_image(ph.path)
                    # The original's teacher feature and imagehash pHash (database side).
                    key = str(ph.path)
                    tf.add_images([key], [full], [a.teacher_size], with_phash=True)
                    queries = make_queries(query_base(full), ph.path.stem, a.seed)
                    queries["identical_copy"] = full
                    tq = tf.of_images(list(queries.values()), a.teacher_size)
                    for (kind, qim), tfeat in zip(queries.items(), tq, strict=True):
                        q_feats.append((pi, kind, tfeat, imagehash_phash(qim)))
                        q = prepare_query(qim, catalog=cat, encoder=encoder, decode_size=dsize)
                        r1, rr = tie_aware(hamming_matrix(q.codes[:1], all_codes)[0],
                                           pos[target])
                        res["codes"]["r1"][kind].append(r1)
                        res["codes"]["rr"][kind].append(rr)
                        r1, rr = tie_aware(embs @ q.embeddings[0], e_pos[target], False)
                        res["embedding_exhaustive"]["r1"][kind].append(r1)
                        res["embedding_exhaustive"]["rr"][kind].append(rr)
                        runs = {
                            "codes+rerank": run_search(
                                q, catalog=cat, model_id=mid, code_index=lib.index,
                                phash_index=None, k=a.k, config=no_hash),
                            FULL_STAGE: lib.search(qim, k=a.k),
                            "robust": lib.search(qim, k=a.k, robust=True),
                        }
                        for stage, hits in runs.items():
                            rank = rank_in_hits(hits, target)
                            res[stage]["r1"][kind].append(float(rank == 1))
                            res[stage]["rr"][kind].append(1.0 / rank if rank else 0.0)
                        hits = runs[FULL_STAGE]
                        tier_ok[kind].append(float(bool(hits) and hits[0].file_id == target
                                                   and hits[0].tier != "similar"))
                        if not hits or hits[0].file_id != target:
                            rank = rank_in_hits(hits, target)
                            misses.append({
                                "photo": ph.path.name, "edit": kind, "rank": rank,
                                "top_hit": Path(hits[0].path).name if hits else None,
                                "top_score": rnd(hits[0].score) if hits else None,
                                "target_score": rnd(hits[rank - 1].score) if rank else None})
                    del full
                    if pi % 10 == 9:
                        log.info("near-dup queries: %d/%d photos", pi + 1, len(photos))
        finally:
            lib.close()
    finally:
        shutil.rmtree(work, ignore_errors=True)

    # Teacher float features and imagehash pHash over the same database.
    nan = np.full(t_db.shape[1], np.nan, np.float32)
    t_orig = np.stack([tf.feats.get((a.teacher_size, str(p.path)), nan) for p in photos])
    t_all = l2n(np.concatenate([t_orig, t_db]))
    valid = np.isfinite(t_all).all(axis=1)
    t_all[~valid] = 0.0
    ph_all = np.asarray([tf.phashes.get(str(p), 0) for p in db_paths], dtype=np.uint64)
    for pi, kind, tfeat, qph in q_feats:
        r1, rr = tie_aware(t_all @ l2n(tfeat[None])[0], pi, False)
        res["teacher"]["r1"][kind].append(r1)
        res["teacher"]["rr"][kind].append(rr)
        r1, rr = tie_aware(popcount64(np.bitwise_xor(ph_all, np.uint64(qph))), pi)
        res["phash"]["r1"][kind].append(r1)
        res["phash"]["rr"][kind].append(rr)

    def summary(m: str, what: str) -> dict:
        return _per_transform(res[m][what], TRANSFORMS)

    full_r1 = summary(FULL_STAGE, "r1")
    ph_r1 = summary("phash", "r1")
    t_r1 = summary("teacher", "r1")
    out = {
        "neardup_recall_at_1": full_r1,
        "neardup_recall_at_1_mean": _mean([v for v in full_r1.values() if v is not None]),
        "neardup_map": summary(FULL_STAGE, "rr"),
        "neardup_map_mean": _mean([x for t in TRANSFORMS for x in res[FULL_STAGE]["rr"][t]]),
        "phash_recall_at_1": ph_r1,
        "phash_recall_at_1_mean": _mean([v for v in ph_r1.values() if v is not None]),
        "phash_map": summary("phash", "rr"),
        "teacher_recall_at_1": t_r1,
        "teacher_recall_at_1_mean": _mean([v for v in t_r1.values() if v is not None]),
        "teacher_map": summary("teacher", "rr"),
        "neardup_tier_rate": _per_transform(tier_ok, TRANSFORMS),
        "neardup_stages": {
            s: {"recall_at_1": summary(s, "r1"),
                "recall_at_1_mean": _mean([x for t in TRANSFORMS for x in res[s]["r1"][t]]),
                "map_mean": _mean([x for t in TRANSFORMS for x in res[s]["rr"][t]])}
            for s in STAGES},
        "identical_copy_recall_at_1": {
            m: _mean(res[m]["r1"]["identical_copy"])
            for m in (FULL_STAGE, "codes", "phash", "teacher")},
        "neardup_misses": [m for m in misses if m["edit"] != "identical_copy"][:200],
        "neardup_setup": {
            "photos": len(photos), "photos_found": n_found,
            "photo_files": [str(p.path) for p in photos],
            "megapixels": {"min": round(min(p.width * p.height for p in photos) / 1e6, 2),
                           "max": round(max(p.width * p.height for p in photos) / 1e6, 2),
                           "median": round(statistics.median(
                               p.width * p.height for p in photos) / 1e6, 2)},
            "distractors": len(distractors),
            "distractors_imagenette": n_in,
            "library_files": scan.seen, "scan_errors": len(scan.errors),
            "queries": sum(len(v) for t, v in res[FULL_STAGE]["r1"].items()
                           if t != "identical_copy"),
            "transforms": list(TRANSFORMS), "k": a.k, "seed": a.seed,
            "query_max_side": QUERY_MAX_SIDE, "teacher_size": a.teacher_size,
            "search_config": {"candidate_factor": config.search.candidate_factor,
                              "min_candidates": config.search.min_candidates,
                              "phash_radius": config.search.phash_radius},
            "decode_size": dsize},
        "neardup_seconds": times,
    }
    return out


# --------------------------------------------------------------------------- part 2


def student_val(encoder: Any, paths: Sequence[Path], threads: int) -> tuple[
        np.ndarray, np.ndarray, np.ndarray, list[int]]:
    """(codes, re-ranking embeddings, raw features, readable indices) of image files through
    the encoder's own decode path."""
    from core.encoder import iter_image_batches

    codes, embs, feats, ok = [], [], [], []
    for idx, px, _bad in iter_image_batches(paths, encoder.input_size, 64, threads):
        if px is None:
            continue
        c, e = encoder.encode_pixels(px)
        codes.append(c)
        embs.append(e)
        feats.append(encoder.features(px))
        ok += idx
    return np.concatenate(codes), np.concatenate(embs), np.concatenate(feats), ok


def part_semantic(a: argparse.Namespace, ctx: dict) -> dict:
    """mAP@100 of class neighbours on Imagenette val (leave-one-out)."""
    from core.hash_head import pack_codes
    from core.itq import fit_itq

    encoder, tf, sizes = ctx["encoder"], ctx["teacher"], ctx["sizes"]
    k = a.map_k
    times: dict[str, float] = {}
    val, val_y = labelled_images(a.imagenette / "val")
    keep = spread(list(range(len(val))), sizes.semantic_images)
    val, val_y = [val[i] for i in keep], val_y[keep]
    train, _ = labelled_images(a.imagenette / "train")
    fit = spread(train, sizes.fit_images)
    log.info("semantic: %d val queries, ITQ fitted on %d train images", len(val), len(fit))
    with timed("semantic_student", times):
        codes, embs, feats, ok = student_val(encoder, val, a.decode_threads)
    y = val_y[ok]
    out: dict[str, Any] = {
        "semantic_map100_student": rnd(hamming_map(codes, codes, y, y, k, True)),
        "semantic_float_map100_student_embedding": rnd(cosine_map(embs, embs, y, y, k, True)),
        "semantic_float_map100_student_features": rnd(cosine_map(feats, feats, y, y, k,
                                                                 True)),
    }
    teacher_sizes = sorted({a.teacher_size, int(encoder.input_size)}, reverse=True)
    per_size: dict[str, dict] = {}
    for size in teacher_sizes:
        with timed(f"semantic_teacher_{size}px", times):
            f_fit = tf.of_paths(fit, [size], progress=f"teacher {size}px fit set")[size]
            f_val = tf.of_paths(val, [size], progress=f"teacher {size}px val")[size]
            f_fit = l2n(f_fit[np.isfinite(f_fit).all(axis=1)])
            good = np.isfinite(f_val).all(axis=1)
            fv, yv = l2n(f_val[good]), val_y[good]
            itq = fit_itq(f_fit, encoder.n_bits, seed=a.seed)
            tc = pack_codes(itq.transform(fv))
            per_size[str(size)] = {
                "map100_itq": rnd(hamming_map(tc, tc, yv, yv, k, True)),
                "float_map100": rnd(cosine_map(fv, fv, yv, yv, k, True)),
                "fit_images": len(f_fit), "queries": int(good.sum())}
        log.info("teacher %d px: %s", size, per_size[str(size)])
    best = max(per_size, key=lambda s: per_size[s]["map100_itq"] or -1)
    out.update({
        "semantic_map100_teacher": per_size[best]["map100_itq"],
        "semantic_map100_teacher_size": int(best),
        "semantic_map100_teacher_by_size": {s: v["map100_itq"] for s, v in per_size.items()},
        "semantic_float_map100_teacher_by_size": {s: v["float_map100"]
                                                  for s, v in per_size.items()},
        "semantic_setup": {"queries": len(y), "database": len(y) - 1, "k": k,
                           "leave_one_out": True, "n_bits": encoder.n_bits,
                           "fit_images": len(fit), "fit_source": "imagenette train (spread "
                           "over classes)", "teacher_sizes": teacher_sizes,
                           "student_input_size": int(encoder.input_size)},
        "semantic_seconds": times,
    })
    return out


# --------------------------------------------------------------------------- part 3


def _warm_cache(paths: Sequence[Path]) -> None:
    for p in paths:
        with open(p, "rb") as f:
            while f.read(1 << 20):
                pass


def _interleaved_rates(fns: dict[str, Callable[[], int]], reps: int
                       ) -> dict[str, tuple[float, list[float]]]:
    """Median images/s of each ``fn`` (returns the number of images) over ``reps`` rounds;
    each round runs every ``fn`` once, in turn, so a slow spell of this shared machine
    falls on all of them rather than on whichever ran then."""
    rates: dict[str, list[float]] = {k: [] for k in fns}
    secs: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(reps):
        for k, fn in fns.items():
            t0 = time.perf_counter()
            n = fn()
            dt = time.perf_counter() - t0
            rates[k].append(n / dt)
            secs[k].append(round(dt, 2))
    return {k: (round(statistics.median(rates[k]), 1), secs[k]) for k in fns}


def part_throughput(a: argparse.Namespace, ctx: dict) -> dict:
    """Images/s of the student vs. the teacher, end to end and network only."""
    import torch

    from core.encoder import iter_image_batches

    encoder, tf, sizes = ctx["encoder"], ctx["teacher"], ctx["sizes"]
    val, _ = labelled_images(a.imagenette / "val")
    files = spread(val, sizes.throughput_images)
    _warm_cache(files)
    s_size = int(encoder.input_size)
    t_sizes = sorted({s_size, a.teacher_size})
    teachers = {s: tf.model(s) for s in t_sizes}

    def student_e2e() -> int:
        return len(encoder.encode_paths(files, threads=a.decode_threads).paths)

    def teacher_e2e(size: int) -> Callable[[], int]:
        def run() -> int:
            n = 0
            with torch.no_grad():
                for idx, px, _ in iter_image_batches(files, size, 64, a.decode_threads):
                    if px is not None:
                        teachers[size](px)
                        n += len(idx)
            return n
        return run

    out: dict[str, Any] = {"files": len(files), "reps": sizes.reps,
                           "decode_threads": a.decode_threads,
                           "torch_threads": torch.get_num_threads()}
    e2e: dict[str, Any] = {}
    net: dict[str, Any] = {}
    # Warm-up (allocator, first-call overheads) on a few files.
    encoder.encode_paths(files[:16], threads=a.decode_threads)
    px_by_size: dict[int, Any] = {}
    for s in sorted({s_size, *t_sizes}):
        px_by_size[s] = torch.cat([px for _, px, _ in iter_image_batches(
            files, s, 64, a.decode_threads) if px is not None])
        forward(teachers[s], px_by_size[s][:16])
    size_of = {"student": s_size, **{f"teacher_{s}px": s for s in t_sizes}}
    runs = _interleaved_rates({"student": student_e2e, **{f"teacher_{s}px": teacher_e2e(s)
                                                          for s in t_sizes}}, sizes.reps)
    for k, (rate, secs) in runs.items():
        e2e[k] = {"size": size_of[k], "images_per_s": rate, "runs_seconds": secs}
    log.info("end to end: %s", {k: v["images_per_s"] for k, v in e2e.items()})

    x = px_by_size[s_size]
    runs = _interleaved_rates({"student": lambda: len(encoder.encode_pixels(x)[0]),
                               **{f"teacher_{s}px": (lambda xs=px_by_size[s], s=s:
                                                     len(forward(teachers[s], xs)))
                                  for s in t_sizes}}, sizes.reps)
    for k, (rate, secs) in runs.items():
        net[k] = {"size": size_of[k], "images_per_s": rate, "runs_seconds": secs}
    log.info("network only: %s", {k: v["images_per_s"] for k, v in net.items()})

    def ratio(d: dict, size: int) -> float:
        return round(d["student"]["images_per_s"] / d[f"teacher_{size}px"]["images_per_s"], 2)

    out.update({"end_to_end": e2e, "network_only": net})
    return {
        "throughput": out,
        "throughput_student_images_per_s": e2e["student"]["images_per_s"],
        "throughput_teacher_images_per_s": e2e[f"teacher_{a.teacher_size}px"]["images_per_s"],
        "throughput_ratio_vs_teacher": ratio(e2e, a.teacher_size),
        "throughput_ratio_vs_teacher_same_size": ratio(e2e, s_size),
        "throughput_ratio_vs_teacher_network_only": ratio(net, a.teacher_size),
        "throughput_ratio_vs_teacher_same_size_network_only": ratio(net, s_size),
    }


# --------------------------------------------------------------------------- targets, report


def evaluate_targets(d: dict) -> dict[str, dict]:
    """PASS/FAIL of the issue's targets on whatever parts are present."""
    t: dict[str, dict] = {}
    if d.get("neardup_recall_at_1_mean") is not None:
        m = d["neardup_recall_at_1_mean"]
        t["neardup_recall_at_1_mean"] = {"target": ">= 0.95", "value": m, "pass": m >= 0.95}
        behind = []
        for k, v in d["neardup_recall_at_1"].items():
            p = d["phash_recall_at_1"].get(k)
            if v is None or p is None:
                continue
            if not (v > p or (v == p == 1.0)):
                behind.append(k)
        t["ahead_of_phash"] = {
            "target": "recall@1 > pHash on every edit (a tie only counts at 1.0)",
            "value": f"not ahead on {', '.join(behind)}" if behind else "ahead on all",
            "pass": not behind}
    if d.get("semantic_map100_student") is not None and d.get("semantic_map100_teacher"):
        gap = round(d["semantic_map100_teacher"] - d["semantic_map100_student"], 4)
        for bound, issue in ((0.05, "issue 7"), (0.03, "issue 15")):
            t[f"semantic_within_{bound}_of_teacher"] = {
                "target": f"teacher - student <= {bound} ({issue})", "value": gap,
                "pass": gap <= bound}
    if d.get("throughput_ratio_vs_teacher") is not None:
        r = d["throughput_ratio_vs_teacher"]
        t["throughput_ratio_vs_teacher"] = {"target": ">= 3x (issue 15; 4x in issue 7)",
                                            "value": r, "pass": r >= 3.0}
    # Issue 15: general retrieval on photos/eval (benchmarks/general.py --merge-default).
    gc, tc = d.get("general_map_codes_student"), d.get("general_map_codes_teacher")
    ge, te = d.get("general_map_embedding_student"), d.get("general_map_embedding_teacher")
    if gc is not None and tc is not None:
        t["general_codes_within_0.03_of_teacher_itq"] = {
            "target": "student codes >= teacher ITQ-64 - 0.03 (photos/eval mAP@all)",
            "value": round(tc - gc, 4), "pass": gc >= tc - 0.03}
    if ge is not None and te is not None:
        t["general_embedding_within_0.05_of_teacher_cosine"] = {
            "target": "student embedding >= teacher cosine - 0.05 (photos/eval mAP@all)",
            "value": round(te - ge, 4), "pass": ge >= te - 0.05}
    if d.get("neardup_recall_at_1_mean") is not None:
        m = d["neardup_recall_at_1_mean"]
        t["neardup_not_below_0.970"] = {"target": ">= 0.970 (issue 15)", "value": m,
                                        "pass": m >= 0.970}
    return t


def machine_info() -> dict:
    """Where and when the numbers were measured."""
    import torch

    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT,
                                capture_output=True, text=True).stdout.strip() or None
    except OSError:
        commit = None
    return {"machine": platform.machine(), "cpu_count": os.cpu_count(),
            "torch": torch.__version__, "torch_threads": torch.get_num_threads(),
            "omp_num_threads": os.environ.get("OMP_NUM_THREADS"),
            "python": platform.python_version(), "git_commit": commit,
            "date": time.strftime("%Y-%m-%d %H:%M:%S")}


def _f(v: Any, nd: int = 3) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.{nd}f}"
    return str(v)


def write_md(d: dict, path: Path) -> None:
    """The human-readable report."""
    m, mod, cfg = d.get("machine", {}), d.get("model", {}), d.get("config", {})
    lines = ["# The default model (issue 7)", ""]
    if cfg.get("quick"):
        lines += ["**Quick smoke run: tiny sizes, the numbers are not the model's result.**",
                  ""]
    lines += [f"Model `{mod.get('path')}` ({mod.get('model_id')}, {mod.get('arch')} at "
              f"{mod.get('input_size')} px, {mod.get('hash_head')} {mod.get('n_bits')}-bit "
              f"head, {mod.get('embed_dim')}-d embedding, {mod.get('file_mb')} MB; teacher "
              f"{mod.get('teacher')}). Machine: {m.get('machine')}, {m.get('cpu_count')} "
              f"cores, torch {m.get('torch')} with {m.get('torch_threads')} threads; "
              f"{m.get('date')}, commit {m.get('git_commit')}; {d.get('seconds')} s in all.",
              "", "Command: `python benchmarks/default_model.py --model <model> --wallpapers "
              "<dirs> --imagenette <dir> --cifar <dir>` (see the script's docstring).", ""]
    tg = d.get("targets", {})
    if tg:
        lines += ["## Targets", "", "| target | value | result |", "|---|---|---|"]
        for name, t in tg.items():
            lines.append(f"| {name} ({t['target']}) | {_f(t['value'])} | "
                         f"**{'PASS' if t['pass'] else 'FAIL'}** |")
        lines.append("")
    if "neardup_recall_at_1" in d:
        s = d["neardup_setup"]
        lines += ["## 1. Near-duplicates on real photos", "",
                  f"{s['photos']} wallpaper photos ({s['megapixels']['min']}-"
                  f"{s['megapixels']['max']} MP, median {s['megapixels']['median']}) among "
                  f"{s['distractors']} distractors ({s['distractors_imagenette']} Imagenette "
                  f"val, the rest CIFAR-10 test); {s['queries']} queries (each photo reduced "
                  f"to {s['query_max_side']} px, 8 seeded edits, seed {s['seed']}). Search: "
                  f"`Library.search(image, k={s['k']})`, the engine's full path with the app's "
                  f"settings. mAP = mean reciprocal rank of the original (0 outside the top "
                  f"k). pHash: imagehash `phash` of the full decode, Hamming ranking; teacher: "
                  f"MobileNetV2 {s['teacher_size']} px features, cosine ranking; ties shared.",
                  "", "| edit | recall@1 | mAP | pHash recall@1 | pHash mAP | teacher "
                  "recall@1 | teacher mAP | original found with tier near-dup/identical |",
                  "|---|---|---|---|---|---|---|---|"]
        for t in TRANSFORMS:
            lines.append(
                f"| {t} | **{_f(d['neardup_recall_at_1'].get(t))}** | "
                f"{_f(d['neardup_map'].get(t))} | {_f(d['phash_recall_at_1'].get(t))} | "
                f"{_f(d['phash_map'].get(t))} | {_f(d['teacher_recall_at_1'].get(t))} | "
                f"{_f(d['teacher_map'].get(t))} | {_f(d['neardup_tier_rate'].get(t))} |")
        lines.append(f"| **mean** | **{_f(d['neardup_recall_at_1_mean'])}** | "
                     f"{_f(d['neardup_map_mean'])} | {_f(d['phash_recall_at_1_mean'])} | - | "
                     f"{_f(d['teacher_recall_at_1_mean'])} | - | - |")
        ic = d["identical_copy_recall_at_1"]
        lines += ["", f"Control, the unedited full-resolution photo as query: recall@1 "
                  f"{_f(ic.get(FULL_STAGE))} (codes only {_f(ic.get('codes'))}, pHash "
                  f"{_f(ic.get('phash'))}, teacher {_f(ic.get('teacher'))}).", "",
                  "Search stages (recall@1 per edit; `codes`: Hamming ranking of every stored "
                  "code, ties shared; `codes+rerank`: `run_search` without the hash channel; "
                  "`codes+rerank+hash`: the default search; `robust`: 8 orientations; "
                  "`embedding_exhaustive`: cosine of the stored embeddings over the whole "
                  "library):", "",
                  "| stage | " + " | ".join(TRANSFORMS) + " | mean | mAP |",
                  "|---" * (len(TRANSFORMS) + 3) + "|"]
        for st, v in d["neardup_stages"].items():
            lines.append(f"| {st} | " + " | ".join(_f(v["recall_at_1"].get(t))
                                                   for t in TRANSFORMS)
                         + f" | **{_f(v['recall_at_1_mean'])}** | {_f(v['map_mean'])} |")
        miss = d.get("neardup_misses", [])
        if miss:
            lines += ["", f"Misses of the default search ({len(miss)}; first 15):", "",
                      "| photo | edit | rank of original | first hit (cosine) |",
                      "|---|---|---|---|"]
            for x in miss[:15]:
                lines.append(f"| {x['photo']} | {x['edit']} | {_f(x['rank'])} | "
                             f"{x['top_hit']} ({_f(x['top_score'])}) |")
        lines.append("")
    if "semantic_map100_student" in d:
        s = d["semantic_setup"]
        lines += ["## 2. Semantic neighbours (Imagenette val)", "",
                  f"{s['queries']} queries, each against the {s['database']} others, class = "
                  f"relevance, mAP@{s['k']}. Teacher: MobileNetV2 features + PCA/ITQ "
                  f"{s['n_bits']} bits fitted on {s['fit_images']} {s['fit_source']}.", "",
                  f"| model | {s['n_bits']}-bit codes mAP@{s['k']} | float mAP@{s['k']} |",
                  "|---|---|---|",
                  f"| student ({s['student_input_size']} px) | "
                  f"**{_f(d['semantic_map100_student'])}** | "
                  f"{_f(d['semantic_float_map100_student_features'])} (features), "
                  f"{_f(d['semantic_float_map100_student_embedding'])} (embedding) |"]
        for size, v in d["semantic_map100_teacher_by_size"].items():
            lines.append(f"| teacher {size} px | {_f(v)} | "
                         f"{_f(d['semantic_float_map100_teacher_by_size'][size])} |")
        lines.append("")
    if "throughput" in d:
        th = d["throughput"]
        lines += ["## 3. Encode throughput", "",
                  f"{th['files']} Imagenette val files, median of {th['reps']} rounds (each "
                  "round runs every model once, in turn), page cache warm; BatchNorm folded "
                  f"into the convolutions in every network; {th['decode_threads']} decoding "
                  "threads, "
                  f"{th['torch_threads']} torch threads. End to end = decode (JPEG draft) + "
                  "squash resize + network; network only = pre-decoded pixels, batches of 64.",
                  "", "| model | px | end to end images/s | network only images/s |",
                  "|---|---|---|---|"]
        for name, v in th["end_to_end"].items():
            lines.append(f"| {name} | {v['size']} | **{_f(v['images_per_s'], 1)}** | "
                         f"{_f(th['network_only'][name]['images_per_s'], 1)} |")
        lines += ["", f"Student / teacher at 224 px: **{_f(d['throughput_ratio_vs_teacher'], 2)}"
                  f"x** end to end ({_f(d['throughput_ratio_vs_teacher_network_only'], 2)}x "
                  f"network only); at the same input size "
                  f"{_f(d['throughput_ratio_vs_teacher_same_size'], 2)}x "
                  f"({_f(d['throughput_ratio_vs_teacher_same_size_network_only'], 2)}x).", ""]
    if d.get("general_map_codes_student") is not None:
        lines += ["## 4. General retrieval on photos nobody tuned on (photos/eval)", "",
                  f"{d.get('general_classes')} classes, {d.get('general_images')} photos, "
                  "leave-one-out mAP@all (class = relevance); teacher "
                  f"{d.get('general_teacher')} with its own ITQ-64 head fitted on unlabelled "
                  "photos. From `benchmarks/general.py --merge-default` (details in "
                  "general.md).", "",
                  "| | student | teacher |", "|---|---|---|",
                  f"| 64-bit codes (Hamming) | **{_f(d['general_map_codes_student'])}** | "
                  f"{_f(d.get('general_map_codes_teacher'))} (ITQ-64) |",
                  f"| float (cosine) | **{_f(d.get('general_map_embedding_student'))}** "
                  f"(embedding) | {_f(d.get('general_map_embedding_teacher'))} (features) |",
                  f"| non-Caltech classes, codes / embedding | "
                  f"{_f(d.get('general_map_codes_student_non_caltech'))} / "
                  f"{_f(d.get('general_map_embedding_student_non_caltech'))} | |",
                  f"| precision@10 through Library.search | "
                  f"{_f(d.get('general_precision_at_10_search'))} | |", ""]
    if d.get("part_seconds"):
        sz = cfg.get("sizes", {})
        lines += ["## Run", "", "Sizes: " + ", ".join(f"{k} {v}" for k, v in sz.items())
                  + " (0 = all). Wall time per part (s): "
                  + ", ".join(f"{k} {v}" for k, v in d["part_seconds"].items()) + ".", ""]
    if d.get("analysis"):
        lines += ["## Analysis", "", d["analysis"], ""]
    if d.get("errors"):
        lines += ["## Errors", ""] + [f"- {k}: {v.splitlines()[-1]}"
                                     for k, v in d["errors"].items()] + [""]
    path.write_text("\n".join(lines))


# --------------------------------------------------------------------------- main


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", type=Path, default=ROOT / "resources" / "models" / "default.pt",
                   help="model file to evaluate (default: resources/models/default.pt)")
    p.add_argument("--wallpapers", type=Path, nargs="+", default=[],
                   help="folders with real photos, e.g. /usr/share/wallpapers "
                        "/usr/share/backgrounds /usr/share/palapeli")
    p.add_argument("--imagenette", type=Path, required=True,
                   help="Imagenette root with train/ and val/ (class sub-folders)")
    p.add_argument("--cifar", type=Path, help="CIFAR-10 root with test/<class>/ images")
    p.add_argument("--quick", action="store_true", help="smoke run with tiny sizes")
    p.add_argument("--parts", default=",".join(PARTS), help=f"subset of {','.join(PARTS)}")
    p.add_argument("--out", type=Path, help="JSON output (the .md goes beside it)")
    p.add_argument("--teacher", default="mobilenet_v2", help="teacher name (create_teacher)")
    p.add_argument("--teacher-size", type=int, default=224, help="teacher's native input size")
    p.add_argument("--k", type=int, default=20, help="results per search (cukd search's "
                   "default; the app shows 60)")
    p.add_argument("--map-k", type=int, default=100, help="cut-off of the semantic mAP")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--exclude", nargs="*", default=[],
                   help="skip wallpaper files whose path contains any of these strings")
    p.add_argument("--copy", action="store_true",
                   help="copy files into the temporary library folder instead of symlinking")
    p.add_argument("--decode-threads", type=int, default=2,
                   help="decoding threads (the scanner's default is 2)")
    p.add_argument("--work", type=Path, default=None, help="parent of the temporary folder")
    for f in Sizes.__dataclass_fields__:
        p.add_argument(f"--{f.replace('_', '-')}", type=int, default=None,
                       help=f"override the run size (full {getattr(FULL, f)}, quick "
                            f"{getattr(QUICK, f)}; 0 = all where it applies)")
    a = p.parse_args(argv)
    a.parts = [x.strip() for x in a.parts.split(",") if x.strip()]
    unknown = set(a.parts) - set(PARTS)
    if unknown:
        p.error(f"unknown parts {sorted(unknown)}")
    if "neardup" in a.parts and (not a.wallpapers or a.cifar is None):
        p.error("the neardup part needs --wallpapers and --cifar")
    return a


def main(argv: Sequence[str] | None = None) -> int:
    a = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    from core.encoder import Encoder
    from core.runtime import tune_allocator

    tune_allocator()  # as the CLI and the app do

    base = QUICK if a.quick else FULL
    sizes = replace(base, **{f: getattr(a, f) for f in Sizes.__dataclass_fields__
                             if getattr(a, f) is not None})
    out = a.out or OUT / ("default_model.quick.json" if a.quick else "default_model.json")
    t0 = time.perf_counter()
    encoder = Encoder.from_file(a.model)
    ctx = {"encoder": encoder, "teacher": TeacherFeatures(a.teacher, a.decode_threads),
           "sizes": sizes}
    d: dict[str, Any] = {}
    if out.exists():
        with contextlib.suppress(ValueError, OSError):
            prev = json.loads(out.read_text())
            # A full run starts afresh but keeps the hand-written analysis.
            d = prev if set(a.parts) != set(PARTS) else {
                k: prev[k] for k in ("analysis",) if k in prev}
    d.update({"model": model_info(a.model, encoder), "machine": machine_info(),
              "config": {"quick": a.quick, "sizes": sizes.__dict__, "parts": a.parts,
                         "teacher": a.teacher, "teacher_size": a.teacher_size,
                         "k": a.k, "seed": a.seed, "decode_threads": a.decode_threads}})
    errors = dict(d.get("errors", {}))
    parts = {"neardup": part_neardup, "semantic": part_semantic,
             "throughput": part_throughput}
    for name in a.parts:
        errors.pop(name, None)
        tp = time.perf_counter()
        try:
            d.update(parts[name](a, ctx))
        except Exception:
            log.exception("part %s failed", name)
            errors[name] = traceback.format_exc()
        d.setdefault("part_seconds", {})[name] = round(time.perf_counter() - tp, 1)
    d["errors"] = errors
    d["seconds"] = round(time.perf_counter() - t0, 1)
    d["targets"] = evaluate_targets(d)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(d, indent=2) + "\n")
    write_md(d, out.with_suffix(".md"))
    print(f"wrote {out} and {out.with_suffix('.md')} in {d['seconds']} s")
    for name, t in d["targets"].items():
        print(f"{'PASS' if t['pass'] else 'FAIL'}  {name}: {t['value']} (target {t['target']})")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
