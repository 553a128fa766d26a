"""Library engine benchmark (issue 4): scan+encode throughput, search latency and memory at
scale, a watched-folder burst, and near-duplicate recall@1 of each search stage.

Usage (imagenette unpacked as in ../shared/data/README.md; on Debian the wallpaper packages
put real photos under /usr/share/wallpapers, /usr/share/backgrounds, /usr/share/palapeli):

    python benchmarks/library.py --data /tmp/data/imagenette \\
        --photos /usr/share/wallpapers /usr/share/backgrounds /usr/share/palapeli \\
        --student /tmp/cukd-distill-bench/student.pt --teacher mobilenet_v2

    python benchmarks/library.py --quick --data ... --photos ...   # smoke run, ~1-2 min

Writes docs/benchmarks/library.json and library.md (a ``--quick`` run writes
``<work>/library-quick.json``/``.md`` instead, unless ``--out`` is given). ``--parts``
runs a subset (``encode,search,burst,recall,photos``, run in that order); results merge into
the existing JSON. A part that fails is recorded under ``errors`` and the others still run;
parts starting after ``--budget-minutes`` are skipped.

Parts (full-run sizes; about 15-25 minutes on 2 cores, see ``docs/benchmarks/library.md``):

* ``encode``: ``Library.scan`` of a fresh library over ``--encode-images`` (1000) Imagenette
  val JPEGs (224 px), median of ``--reps`` (3) runs, with the student, the teacher pipeline and
  the tiny no-model encoder (the engine's own cost: walk, decode, pHash, fingerprint, SQLite);
  next to imagehash's ``phash`` over the same files (a thread pool as wide as the scanner's
  decoders, and one thread). Page cache warmed first.
* ``photos``: the same on the real photos found under ``--photos`` (1-24 MP, >= 200 KB,
  near-identical files and multi-resolution packages deduplicated, at most ``--max-photos``).
* ``search``: synthetic random codes, pHashes and fp16 embeddings (the student's sizes) at
  ``--search-sizes`` (10k, 100k, 1M); in a fresh child process per size (no torch loaded):
  ``Library.search(file_id, k=20)`` latency p50/p99 over ``--queries`` (500) random files
  (stage 1 + re-rank + tiers, query encoding excluded) and RSS; then the same process loads
  the student and times ``Library.search(image_path)`` end to end (decode + encode + search).
* ``burst``: ``--burst-files`` (10 000) Imagenette JPEGs copied into a watched (native
  observer) folder as fast as possible; seconds from the first copy until all are searchable.
* ``recall``: the photos are indexed among the Imagenette val images as distractors; 8 edited
  copies of each photo (JPEG q20, 1/4 scale, blur, colour, 49 % crop, border, 90° rotation,
  shorter side squashed by 0.75; made from the photo reduced to 2048 px) are the queries.
  Recall@1 (is the original the first result) of each stage: codes only (Hamming ranking,
  ties shared), + re-rank (cosine of the stored embeddings, no pHash), + hash channel (the
  default search), + robust (8 orientations); exhaustive float cosine and pHash alone as
  references.

The teacher pipeline is the teacher's pooled features + a PCA/ITQ head and a PCA embedding fitted
on ``--fit-images`` Imagenette train images, exactly like the student's (``fit_itq_head``); a
student model file without a hash head gets one the same way (cached in ``--work``).
Without ``--student`` a randomly initialised ``cukd_mnv2_035`` is used (speed only).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import os
import platform
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
from PIL import Image, ImageEnhance, ImageFilter, ImageOps  # noqa: E402

from core.imageio import is_image_path  # noqa: E402
from core.library import Library, LibraryConfig  # noqa: E402

log = logging.getLogger("bench.library")

OUT = ROOT / "docs" / "benchmarks"
PARTS = ("encode", "search", "burst", "recall", "photos")  # most wanted first
TRANSFORMS = ("jpeg_q20", "scale_0.25", "blur", "colour", "crop_49", "border", "rotate_90",
              "squash_0.75")
STAGES = ("codes", "codes+rerank", "codes+rerank+hash", "robust")


# --------------------------------------------------------------------------- small helpers


def label_n(n: int) -> str:
    """1000000 → "1m", 100000 → "100k", 2500 → "2500"."""
    if n % 1_000_000 == 0:
        return f"{n // 1_000_000}m"
    if n % 1000 == 0:
        return f"{n // 1000}k"
    return str(n)


def rss_mb() -> tuple[float, float]:
    """(current RSS, peak RSS) of this process in MiB."""
    cur = peak = 0.0
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                cur = int(line.split()[1]) / 1024
            elif line.startswith("VmHWM:"):
                peak = int(line.split()[1]) / 1024
    except OSError:
        import resource

        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        cur = peak
    return round(cur, 1), round(peak, 1)


def list_image_files(folder: Path) -> list[Path]:
    """Image files below ``folder`` (sorted, hidden entries skipped)."""
    out = []
    for dirpath, dirnames, filenames in os.walk(folder):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        out += [Path(dirpath, f) for f in sorted(filenames)
                if not f.startswith(".") and is_image_path(f)]
    return out


def spread(paths: Sequence[Path], n: int) -> list[Path]:
    """``n`` paths spread evenly over a sorted list (so every class is represented)."""
    if n >= len(paths):
        return list(paths)
    step = len(paths) / n
    return [paths[int(i * step)] for i in range(n)]


def link_files(paths: Sequence[Path], dest: Path) -> list[Path]:
    """Hard-link (else copy) ``paths`` into a fresh ``dest`` with unique names."""
    shutil.rmtree(dest, ignore_errors=True)
    dest.mkdir(parents=True)
    out = []
    for i, p in enumerate(paths):
        target = dest / f"{i:05d}_{p.name}"
        p = p.resolve()  # wallpaper packages use relative symlinks between sizes
        try:
            os.link(p, target)
        except OSError:
            shutil.copyfile(p, target)
        out.append(target)
    return out


def warm_cache(paths: Sequence[Path]) -> None:
    for p in paths:
        with open(p, "rb") as f:
            while f.read(1 << 20):
                pass


def median_rate(rates: Sequence[float]) -> float:
    return round(statistics.median(rates), 1)


def bench_config() -> LibraryConfig:
    """The app's default library settings."""
    return LibraryConfig()


def decode_size(encoder: Any, config: LibraryConfig) -> int:
    """The size the scanner decodes to for ``encoder`` (mirrors ``Scanner``)."""
    return config.scan.decode_size or max(int(encoder.input_size), 64)


# --------------------------------------------------------------------------- encoders


def model_features(model: Any, x: Any, batch_size: int = 64) -> np.ndarray:
    """float32 features ``[N, D]`` of uint8 pixels ``[N, 3, S, S]`` (eval, no grad)."""
    import torch

    out = []
    with torch.no_grad():
        for i in range(0, len(x), batch_size):
            out.append(model(x[i:i + batch_size]).float().numpy())
    return np.concatenate(out)


class FeatureEncoder:
    """A frozen feature extractor + PCA/ITQ head + PCA embedding (an ``ImageEncoder``).

    Mirrors :class:`core.encoder.Encoder` with an ITQ head from ``fit_itq_head``: whole image
    squash-resized to ``input_size``, features L2-normalised, ``codes = sign(ITQ(f))``,
    ``embedding = l2norm((f - mean) @ P)``.
    """

    def __init__(self, model: Any, input_size: int, itq: Any, emb_mean: np.ndarray,
                 emb_proj: np.ndarray, model_id: str, batch_size: int = 64) -> None:
        self.model = model.eval()
        self.input_size = int(input_size)
        self.itq = itq
        self.emb_mean = emb_mean.astype(np.float32)
        self.emb_proj = emb_proj.astype(np.float32)
        self.model_id = model_id
        self.n_bits = int(itq.n_bits)
        self.embed_dim = int(emb_proj.shape[1])
        self.batch_size = batch_size
        self._lock = threading.Lock()

    def features(self, x: Any) -> np.ndarray:
        with self._lock:
            return model_features(self.model, x, self.batch_size)

    def encode(self, images: Sequence[Image.Image]) -> tuple[np.ndarray, np.ndarray]:
        from core.hash_head import pack_codes
        from core.preprocess import to_tensor

        s = self.input_size
        x = to_tensor([im.convert("RGB").resize((s, s), Image.BILINEAR, reducing_gap=3.0)
                       for im in images])
        f = self.features(x)
        fn = f / np.maximum(np.linalg.norm(f, axis=1, keepdims=True), 1e-12)
        codes = pack_codes(self.itq.transform(fn))
        e = (fn - self.emb_mean) @ self.emb_proj
        e /= np.maximum(np.linalg.norm(e, axis=1, keepdims=True), 1e-12)
        return codes, e.astype(np.float32)


def teacher_encoder(name: str, size: int, fit_paths: Sequence[Path], n_bits: int,
                    embed_dim: int, work: Path, threads: int) -> FeatureEncoder:
    """The teacher pipeline: ``create_teacher`` features + PCA/ITQ + PCA embedding (cached);
    BatchNorm folded, as the student's Encoder does."""
    from core.encoder import iter_image_batches
    from core.itq import ITQModel, fit_itq, pca
    from core.models import create_teacher
    from core.models.fuse import fold_batchnorm

    teacher = fold_batchnorm(create_teacher(name, input_size=size), inplace=True)
    cache = work / f"teacher-{name}-{size}px-{n_bits}b-{embed_dim}d-fit{len(fit_paths)}.npz"
    if cache.exists():
        z = np.load(cache)
        itq = ITQModel(z["mean"], z["projection"], z["rotation"])
        mean, proj = z["emb_mean"], z["emb_proj"]
    else:
        t0 = time.perf_counter()
        teacher.eval()
        feats = [model_features(teacher, px) for _, px, _ in iter_image_batches(
            fit_paths, size, 64, threads) if px is not None]
        f = np.concatenate(feats)
        fn = f / np.maximum(np.linalg.norm(f, axis=1, keepdims=True), 1e-12)
        itq = fit_itq(fn, n_bits, seed=0)
        mean, proj = pca(fn, min(embed_dim, fn.shape[1], len(fn) - 1))
        np.savez(cache, mean=itq.mean, projection=itq.projection, rotation=itq.rotation,
                 emb_mean=mean, emb_proj=proj)
        log.info("teacher %s: ITQ fitted on %d images in %.0f s", name, len(f),
                 time.perf_counter() - t0)
    return FeatureEncoder(teacher, size, itq, np.asarray(mean), np.asarray(proj),
                          f"bench-teacher-{name}-{size}px-itq{n_bits}-{cache.stem[-12:]}")


def student_encoder(path: Path | None, fit_paths: Sequence[Path], work: Path, n_bits: int,
                    embed_dim: int, threads: int) -> tuple[Any, Path, str]:
    """(``core.encoder.Encoder``, its model file, description) for ``--student``.

    A model file without a hash head gets a PCA/ITQ head (``fit_itq_head``), cached in
    ``work``; no file → a randomly initialised ``cukd_mnv2_035`` at 128 px (speed only).
    """
    from core.checkpoint import CheckpointError, load_model_file, save_student
    from core.encoder import Encoder, file_model_id
    from core.finetune import fit_itq_head

    desc = path.name if path else "random-init cukd_mnv2_035 @128 px (speed only)"
    if path is None:
        from core.models import create_student

        path = work / "random-student.pt"
        if not path.exists():
            save_student(path, create_student("cukd_mnv2_035", 128),
                         provenance={"step": "random-init", "note": "benchmark speed only"})
    if load_model_file(path).get("hash_head"):
        try:
            return Encoder.from_file(path), path, desc
        except CheckpointError as exc:
            log.warning("%s: %s; fitting a new ITQ head", path, exc)
    out = work / f"student-itq-{file_model_id(path)}-{n_bits}b-fit{len(fit_paths)}.pt"
    if not out.exists():
        t0 = time.perf_counter()
        fit_itq_head(path, list(fit_paths), out, n_bits=n_bits, embed_dim=embed_dim,
                     threads=threads, data_description=f"imagenette train ({len(fit_paths)})")
        log.info("student: ITQ head fitted in %.0f s", time.perf_counter() - t0)
    return Encoder.from_file(out), out, desc + f" + ITQ {n_bits}-bit head (fitted here)"


def warm_up(encoder: Any) -> None:
    s = int(encoder.input_size)
    encoder.encode([Image.new("RGB", (s, s), (i * 30, 90, 160)) for i in range(8)])


# --------------------------------------------------------------------------- throughput


def scan_rate(encoder: Any, files: Sequence[Path], folder: Path, work: Path, tag: str,
              reps: int) -> dict:
    """Median images/s of ``Library.scan`` over ``folder`` in a fresh library per run."""
    rates, secs, errors = [], [], 0
    for r in range(reps):
        libdir = work / f"lib-{tag}-{r}"
        shutil.rmtree(libdir, ignore_errors=True)
        lib = Library.open(libdir, encoder, bench_config())
        try:
            lib.add_root(folder, watch_mode="off")
            t0 = time.perf_counter()
            res = lib.scan()
            dt = time.perf_counter() - t0
        finally:
            lib.close()
        shutil.rmtree(libdir, ignore_errors=True)
        errors = len(res.errors)
        rates.append(len(files) / dt)
        secs.append(round(dt, 2))
        log.info("%s run %d: %d files in %.1f s (%.1f img/s, %d errors)", tag, r, len(files),
                 dt, rates[-1], errors)
    return {"images_per_s": median_rate(rates), "runs_seconds": secs, "errors": errors}


_DECODED: dict[tuple[int, int], list[Image.Image]] = {}


def encode_only_rate(encoder: Any, files: Sequence[Path], reps: int) -> float:
    """Median images/s of ``encoder.encode`` on already decoded (index-size) images."""
    from core.library import decode_for_index

    size = decode_size(encoder, bench_config())
    key = (hash(tuple(files[:256])), size)
    if key not in _DECODED:
        _DECODED.clear()
        with ThreadPoolExecutor(bench_config().scan.decode_workers) as pool:
            decoded = pool.map(lambda p: decode_for_index(p, size), files[:256])
            _DECODED[key] = [d.image for d in decoded if d.image is not None]
    ims = _DECODED[key]
    rates = []
    for _ in range(reps):
        t0 = time.perf_counter()
        for i in range(0, len(ims), 32):
            encoder.encode(ims[i:i + 32])
        rates.append(len(ims) / (time.perf_counter() - t0))
    return median_rate(rates)


def imagehash_rate(files: Sequence[Path], threads: int, reps: int) -> float:
    """Median images/s of ``imagehash.phash(Image.open(path))`` over ``files``."""
    import imagehash

    def one(p: Path) -> Any:
        with Image.open(p) as im:
            return imagehash.phash(im)

    rates = []
    for _ in range(reps):
        t0 = time.perf_counter()
        if threads > 1:
            with ThreadPoolExecutor(threads) as pool:
                list(pool.map(one, files))
        else:
            for p in files:
                one(p)
        rates.append(len(files) / (time.perf_counter() - t0))
    return median_rate(rates)


def throughput_block(files: Sequence[Path], folder: Path, encoders: dict[str, Any],
                     work: Path, tag: str, reps: int) -> dict:
    warm_cache(files)
    workers = bench_config().scan.decode_workers
    out: dict[str, Any] = {"files": len(files)}
    for name, enc in encoders.items():
        row = scan_rate(enc, files, folder, work, f"{tag}-{name}", reps)
        if name != "tiny":
            row["encode_only_images_per_s"] = encode_only_rate(enc, files, reps)
        out[name] = row
    out["imagehash_phash"] = {
        "images_per_s": imagehash_rate(files, workers, reps),
        "images_per_s_1thread": imagehash_rate(files, 1, 1),
        "threads": workers}
    s = out.get("student", {}).get("images_per_s")
    if s:
        if out.get("teacher", {}).get("images_per_s"):
            out["student_vs_teacher"] = round(s / out["teacher"]["images_per_s"], 2)
        out["student_vs_imagehash"] = round(s / out["imagehash_phash"]["images_per_s"], 2)
    return out


def part_encode(a: argparse.Namespace, ctx: dict) -> dict:
    files = spread(list_image_files(a.data / "val"), a.encode_images)
    folder = ctx["work"] / "encode-imagenette"
    link_files(files, folder)
    linked = list_image_files(folder)
    r = throughput_block(linked, folder, ctx["encoders"], ctx["work"], "imagenette", a.reps)
    res: dict[str, Any] = {"throughput_imagenette": r}
    if "student" in r:
        res["encode_images_per_s_imagenette"] = r["student"]["images_per_s"]
    if "teacher" in r:
        res["encode_images_per_s_imagenette_teacher"] = r["teacher"]["images_per_s"]
    res["phash_images_per_s_imagenette"] = r["imagehash_phash"]["images_per_s"]
    return res


def find_photos(dirs: Sequence[Path], limit: int, min_bytes: int = 200_000,
                mp_range: tuple[float, float] = (1.0, 24.0)) -> list[tuple[Path, int, int]]:
    """Real photos under ``dirs``: ``(path, width, height)``, largest first, one per
    wallpaper package (``…/NAME/contents/images*/``) and no two with pHash distance <= 8."""
    from core.imageio import phash

    cands = []
    for d in dirs:
        for p in list_image_files(d):
            if p.suffix.lower() not in (".jpg", ".jpeg", ".png", ".webp"):
                continue
            try:
                if p.stat().st_size < min_bytes:
                    continue
                with Image.open(p) as im:
                    w, h = im.size
            except (OSError, ValueError, Image.DecompressionBombError):
                continue
            if mp_range[0] <= w * h / 1e6 <= mp_range[1]:
                cands.append((p, w, h))
    cands.sort(key=lambda c: (-c[1] * c[2], str(c[0])))
    kept: list[tuple[Path, int, int]] = []
    packages: set[str] = set()
    hashes: list[int] = []
    for p, w, h in cands:
        parts = p.parts
        pkg = str(Path(*parts[:parts.index("contents")])) if "contents" in parts else ""
        if pkg and pkg in packages:
            continue
        try:
            with Image.open(p) as im:
                im.draft("RGB", (256, 256))
                ph = phash(im.convert("RGB"))
        except OSError:
            continue
        if any(((ph ^ o) & (2**64 - 1)).bit_count() <= 8 for o in hashes):
            continue
        if pkg:
            packages.add(pkg)
        hashes.append(ph)
        kept.append((p, w, h))
        if len(kept) >= limit:
            break
    return kept


def photo_set(a: argparse.Namespace, ctx: dict) -> list[tuple[Path, int, int]]:
    if "photos" not in ctx:
        ctx["photos"] = find_photos(a.photos, a.max_photos)
        log.info("%d photos found (%s)", len(ctx["photos"]),
                 ", ".join(f"{w}x{h}" for _, w, h in ctx["photos"][:6]))
    if not ctx["photos"]:
        raise RuntimeError(f"no photos (1-24 MP, >= 200 KB) under {a.photos}")
    return ctx["photos"]


def part_photos(a: argparse.Namespace, ctx: dict) -> dict:
    photos = photo_set(a, ctx)
    folder = ctx["work"] / "encode-photos"
    linked = link_files([p for p, _, _ in photos], folder)
    r = throughput_block(linked, folder, ctx["encoders"], ctx["work"], "photos", a.reps)
    mps = sorted(w * h / 1e6 for _, w, h in photos)
    r["megapixels"] = {"min": round(mps[0], 1), "median": round(statistics.median(mps), 1),
                       "max": round(mps[-1], 1), "total": round(sum(mps), 1)}
    r["sources"] = sorted({str(d) for d in a.photos})
    res: dict[str, Any] = {"throughput_photos": r}
    for name in ("student", "teacher"):
        if name in r:
            res["encode_images_per_s_photos" + ("" if name == "student" else "_teacher")] = (
                r[name]["images_per_s"])
    res["phash_images_per_s_photos"] = r["imagehash_phash"]["images_per_s"]
    return res


# --------------------------------------------------------------------------- search at scale


class _StubEncoder:
    """The synthetic library's model sizes; never encodes (search by file id)."""

    input_size = 64

    def __init__(self, model_id: str, n_bits: int, embed_dim: int) -> None:
        self.model_id, self.n_bits, self.embed_dim = model_id, n_bits, embed_dim

    def encode(self, images: Any) -> Any:
        raise RuntimeError("the synthetic benchmark library does not encode")


def fill_synthetic(directory: Path, start: int, stop: int, model_id: str, n_bits: int,
                   embed_dim: int, seed: int = 0, chunk: int = 20_000) -> None:
    """Add files ``start..stop-1`` with random codes, pHashes and embeddings to the catalog."""
    from core.library.catalog import Catalog
    from core.library.library import CATALOG_FILE

    rng = np.random.default_rng(seed + start)
    with Catalog(directory / CATALOG_FILE) as cat:
        root = cat.add_root(directory / "synthetic-photos", "off")
        cat.ensure_model(model_id, n_bits, embed_dim)
        if cat.active_model is None:
            cat.set_active_model(model_id)
        for s in range(start, stop, chunk):
            n = min(chunk, stop - s)
            codes = rng.integers(0, 256, (n, n_bits // 8), dtype=np.uint8)
            emb = rng.standard_normal((n, embed_dim)).astype(np.float32)
            emb /= np.linalg.norm(emb, axis=1, keepdims=True)
            ph = rng.integers(0, 2**64, n, dtype=np.uint64, endpoint=False)
            with cat.transaction():
                ids = [cat.upsert_file(
                    root_id=root.id,
                    path=os.path.join(root.path, f"{(s + i) // 1000:04d}", f"{s + i:07d}.jpg"),
                    size=2_000_000 + i, mtime_ns=1_700_000_000_000_000_000 + s + i,
                    fingerprint=f"{s + i:016x}", status="ok", phash=int(ph[i]),
                    width=4000, height=3000) for i in range(n)]
                cat.put_codes(model_id, ids, codes, emb)


def search_child(cfg: dict) -> dict:
    """Runs in a fresh process: open the synthetic library, time searches, report RSS."""
    import gc

    logging.basicConfig(level=logging.WARNING)
    rss0 = rss_mb()[0]
    t0 = time.perf_counter()
    lib = Library.open(cfg["dir"], _StubEncoder(cfg["model_id"], cfg["n_bits"],
                                                cfg["embed_dim"]))
    open_s = time.perf_counter() - t0
    n = lib.index.ntotal
    rng = random.Random(0)
    ids = [rng.randint(1, n) for _ in range(cfg["queries"] + 10)]
    for i in ids[:10]:  # warm-up
        lib.search(i, k=20)
    times = []
    for i in ids[10:]:
        t = time.perf_counter()
        lib.search(i, k=20)
        times.append((time.perf_counter() - t) * 1e3)
    gc.collect()
    cur, peak = rss_mb()
    out = {"n": n, "queries": len(times), "open_seconds": round(open_s, 2),
           "p50_ms": round(float(np.percentile(times, 50)), 2),
           "p99_ms": round(float(np.percentile(times, 99)), 2),
           "mean_ms": round(float(np.mean(times)), 2), "rss_mb": cur, "rss_peak_mb": peak,
           "rss_python_start_mb": rss0, "torch_loaded": "torch" in sys.modules}
    lib.close()
    if cfg.get("student_path") and cfg.get("query_images"):
        from core.encoder import Encoder

        enc = Encoder.from_file(cfg["student_path"])
        lib = Library.open(cfg["dir"], enc)
        qs = cfg["query_images"]
        for p in qs[:3]:
            lib.search(p, k=20)
        e2e = []
        for p in qs:
            t = time.perf_counter()
            lib.search(p, k=20)
            e2e.append((time.perf_counter() - t) * 1e3)
        out.update({"e2e_queries": len(e2e),
                    "e2e_p50_ms": round(float(np.percentile(e2e, 50)), 2),
                    "e2e_p99_ms": round(float(np.percentile(e2e, 99)), 2),
                    "rss_with_student_mb": rss_mb()[0]})
        lib.close()
    return out


def part_search(a: argparse.Namespace, ctx: dict) -> dict:
    st = ctx["encoders"].get("student")
    model_id, n_bits, embed_dim = ((st.model_id, st.n_bits, st.embed_dim) if st is not None
                                   else ("synthetic", 64, 256))
    directory = ctx["work"] / "synthetic-library"
    shutil.rmtree(directory, ignore_errors=True)
    queries = []
    if a.data is not None:
        queries = [str(p) for p in spread(list_image_files(a.data / "val"), 50)]
    rows, have = [], 0
    res: dict[str, Any] = {}
    for n in sorted(a.search_sizes):
        t0 = time.perf_counter()
        fill_synthetic(directory, have, n, model_id, n_bits, embed_dim)
        have = n
        lib = Library.open(directory, _StubEncoder(model_id, n_bits, embed_dim))
        lib.close()  # builds and saves the index files, so the child only loads them
        build_s = time.perf_counter() - t0
        cfg = {"dir": str(directory), "model_id": model_id, "n_bits": n_bits,
               "embed_dim": embed_dim, "queries": a.queries,
               "student_path": str(ctx["student_path"]) if st is not None else None,
               "query_images": queries}
        proc = subprocess.run([sys.executable, __file__, "--search-child", json.dumps(cfg)],
                              capture_output=True, text=True, timeout=1800)
        if proc.returncode != 0:
            raise RuntimeError(f"search child failed at {n}: {proc.stderr[-2000:]}")
        row = json.loads(proc.stdout.strip().splitlines()[-1])
        row["build_seconds"] = round(build_s, 1)
        row["catalog_mb"] = round(sum(f.stat().st_size for f in directory.iterdir()
                                      if f.is_file()) / 2**20, 1)
        log.info("search at %d: %s", n, row)
        rows.append(row)
        lab = label_n(n)
        res[f"search_p50_ms_{lab}"] = row["p50_ms"]
        res[f"search_p99_ms_{lab}"] = row["p99_ms"]
        res[f"rss_mb_{lab}"] = row["rss_mb"]
        if "e2e_p50_ms" in row:
            res[f"search_e2e_p50_ms_{lab}"] = row["e2e_p50_ms"]
    shutil.rmtree(directory, ignore_errors=True)
    res["search"] = {"rows": rows, "model_id": model_id, "n_bits": n_bits,
                     "embed_dim": embed_dim, "k": 20}
    return res


# --------------------------------------------------------------------------- burst


def part_burst(a: argparse.Namespace, ctx: dict) -> dict:
    enc_name = "student" if "student" in ctx["encoders"] else "tiny"
    enc = ctx["encoders"][enc_name]
    src = list_image_files(a.data / "train") + list_image_files(a.data / "val")
    files = [src[i % len(src)] for i in range(a.burst_files)]
    warm_cache(files[:len(src)])
    base = ctx["work"] / "burst"
    shutil.rmtree(base, ignore_errors=True)
    folder = base / "watched"
    folder.mkdir(parents=True)
    lib = Library.open(base / "library", enc, bench_config())
    try:
        lib.add_root(folder, watch_mode="native")
        lib.start_watching()
        time.sleep(1.0)  # observers up
        t0 = time.perf_counter()
        for i, p in enumerate(files):
            shutil.copyfile(p, folder / f"IMG_{i:05d}{p.suffix.lower()}")
        copy_s = time.perf_counter() - t0
        deadline = t0 + a.burst_timeout
        n = len(files)
        last, last_change = -1, time.perf_counter()
        while (done := lib.index.ntotal + lib.catalog.count_files("error")) < n:
            now = time.perf_counter()
            if done != last:
                last, last_change = done, now
            if now > deadline or (now - last_change > 60 and lib.watcher_idle()):
                log.error("burst: %d of %d files indexed; giving up", done, n)
                break  # timed out, or events were lost (watcher idle, nothing new)
            time.sleep(0.05)
        done_s = time.perf_counter() - t0
        indexed = lib.index.ntotal
        while not lib.watcher_idle() and time.perf_counter() < deadline:
            time.sleep(0.1)
        probe = folder / f"IMG_{n - 1:05d}{files[-1].suffix.lower()}"
        hits = lib.search(probe, k=1) if indexed else []
    finally:
        lib.close()
    shutil.rmtree(base, ignore_errors=True)
    complete = indexed >= n
    out = {"files": n, "encoder": enc_name, "copy_seconds": round(copy_s, 1),
           "all_searchable_seconds": round(done_s, 1) if complete else None,
           "indexed": indexed, "complete": complete,
           "images_per_s": round(indexed / done_s, 1),
           "probe_found": bool(hits), "timeout_s": a.burst_timeout}
    log.info("burst: %s", out)
    res: dict[str, Any] = {"burst": out, f"burst_{label_n(n)}_seconds":
                           out["all_searchable_seconds"]}
    return res


# --------------------------------------------------------------------------- recall


def transform(im: Image.Image, kind: str) -> tuple[Image.Image, int]:
    """An edited copy of ``im`` and the JPEG quality it is saved with."""
    w, h = im.size
    if kind == "jpeg_q20":
        return im, 20
    if kind == "scale_0.25":
        return im.resize((max(64, w // 4), max(48, h // 4)), Image.Resampling.LANCZOS), 90
    if kind == "blur":
        return im.filter(ImageFilter.GaussianBlur(radius=max(1.5, min(w, h) / 300))), 90
    if kind == "colour":
        im = ImageEnhance.Brightness(im).enhance(1.25)
        im = ImageEnhance.Contrast(im).enhance(1.2)
        return ImageEnhance.Color(im).enhance(1.4), 90
    if kind == "crop_49":
        return im.crop((int(0.1 * w), int(0.05 * h), int(0.8 * w), int(0.75 * h))), 90
    if kind == "border":
        return ImageOps.expand(im, border=max(8, int(0.08 * max(w, h))), fill=(0, 0, 0)), 90
    if kind == "rotate_90":
        return im.transpose(Image.Transpose.ROTATE_90), 90
    if kind == "squash_0.75":  # the shorter side scaled by 0.75 (aspect ratio changes)
        size = (w, max(1, round(h * 0.75))) if w >= h else (max(1, round(w * 0.75)), h)
        return im.resize(size, Image.Resampling.BILINEAR), 90
    raise ValueError(kind)


def make_queries(photos: Sequence[Path], dest: Path) -> list[tuple[Path, int, str]]:
    """``(query file, index of its original, transform)`` for every photo and transform."""
    from core.imageio import load_image

    dest.mkdir(parents=True, exist_ok=True)
    out = []
    for i, p in enumerate(photos):
        todo = [(t, dest / f"{i:03d}_{t}.jpg") for t in TRANSFORMS]
        if not all(q.exists() for _, q in todo):
            im = load_image(p)
            im.thumbnail((2048, 2048), Image.Resampling.LANCZOS)
            for t, q in todo:
                edited, quality = transform(im, t)
                edited.convert("RGB").save(q, quality=quality)
        out += [(q, i, t) for t, q in todo]
    return out


def _rank1_credit(dist: np.ndarray, target: int, lower_is_better: bool = True) -> float:
    """1 if ``target`` is strictly best, 1/k if tied with k-1 others, else 0."""
    d = dist if lower_is_better else -dist
    best = d.min()
    if d[target] > best:
        return 0.0
    return 1.0 / int((d == best).sum())


def recall_for(encoder: Any, photos: Sequence[Path], distractors: Sequence[Path],
               queries: list[tuple[Path, int, str]], work: Path, tag: str) -> dict:
    """Recall@1 of each stage for one encoder (and the encoder-free references)."""
    from core.library import SearchConfig, prepare_query, run_search
    from core.library.search import hamming_matrix

    libdir = work / f"recall-lib-{tag}"
    shutil.rmtree(libdir, ignore_errors=True)
    root = work / "recall-root"
    config = bench_config()
    lib = Library.open(libdir, encoder, config)
    try:
        lib.add_root(root, watch_mode="off")
        t0 = time.perf_counter()
        scan = lib.scan()
        scan_s = time.perf_counter() - t0
        cat, mid = lib.catalog, encoder.model_id
        orig_ids = []
        for p in photos:
            rec = cat.get_file_by_path(os.path.abspath(p))
            orig_ids.append(rec.id if rec else -1)
        all_ids, all_codes = [], []
        for ids, codes in cat.iter_codes(mid):
            all_ids.append(ids)
            all_codes.append(codes)
        ids = np.concatenate(all_ids)
        codes = np.concatenate(all_codes)
        pos = {int(i): j for j, i in enumerate(ids)}
        e_ids, embs = cat.all_embeddings(mid)
        assert np.array_equal(e_ids, ids), "codes and embeddings differ"
        ph_ids, phs = cat.all_phashes()
        ph_pos = {int(i): j for j, i in enumerate(ph_ids)}
        size = decode_size(encoder, config)
        no_hash = SearchConfig(phash_radius=0)
        hits: dict[str, dict[str, list[float]]] = {
            s: {t: [] for t in TRANSFORMS} for s in (*STAGES, "float_exhaustive",
                                                      "phash_only")}
        for qpath, oi, t in queries:
            target = orig_ids[oi]
            if target < 0:
                continue
            q = prepare_query(qpath, catalog=cat, encoder=encoder, decode_size=size)
            ham = hamming_matrix(q.codes[:1], codes)[0]
            hits["codes"][t].append(_rank1_credit(ham, pos[target]))
            cos = embs @ q.embeddings[0]
            hits["float_exhaustive"][t].append(_rank1_credit(cos, pos[target], False))
            if q.phashes and target in ph_pos:
                x = np.bitwise_xor(phs, np.uint64(q.phashes[0]))
                pd = np.unpackbits(x.view(np.uint8).reshape(-1, 8), axis=1).sum(axis=1)
                hits["phash_only"][t].append(_rank1_credit(pd, ph_pos[target]))
            r = run_search(q, catalog=cat, model_id=mid, code_index=lib.index,
                           phash_index=None, k=10, config=no_hash)
            hits["codes+rerank"][t].append(float(bool(r) and r[0].file_id == target))
            r = run_search(q, catalog=cat, model_id=mid, code_index=lib.index,
                           phash_index=lib.phash_index, k=10, config=config.search)
            hits["codes+rerank+hash"][t].append(float(bool(r) and r[0].file_id == target))
            qr = prepare_query(qpath, catalog=cat, encoder=encoder, decode_size=size,
                               robust=True)
            r = run_search(qr, catalog=cat, model_id=mid, code_index=lib.index,
                           phash_index=lib.phash_index, k=10, config=config.search)
            hits["robust"][t].append(float(bool(r) and r[0].file_id == target))
    finally:
        lib.close()
    shutil.rmtree(libdir, ignore_errors=True)

    def mean(v: list[float]) -> float | None:
        return round(float(np.mean(v)), 3) if v else None

    stages = {s: {"all": mean([x for t in TRANSFORMS for x in v[t]]),
                  **{t: mean(v[t]) for t in TRANSFORMS}} for s, v in hits.items()}
    return {"model_id": encoder.model_id, "n_bits": encoder.n_bits,
            "embed_dim": encoder.embed_dim, "library_files": scan.seen,
            "scan_errors": len(scan.errors), "scan_seconds": round(scan_s, 1),
            "queries": sum(len(v) for v in hits["codes"].values()), "recall_at_1": stages}


def part_recall(a: argparse.Namespace, ctx: dict) -> dict:
    photos = [p for p, _, _ in photo_set(a, ctx)][:a.recall_photos]
    distractors = spread(list_image_files(a.data / "val"), a.distractors)
    root = ctx["work"] / "recall-root"
    shutil.rmtree(root, ignore_errors=True)
    linked_photos = link_files(photos, root / "photos")
    link_files(distractors, root / "distractors")
    key = hashlib.blake2b("\n".join(map(str, photos)).encode(), digest_size=6).hexdigest()
    queries = make_queries(photos, ctx["work"] / f"recall-queries-{key}")
    out: dict[str, Any] = {"photos": len(photos), "distractors": len(distractors),
                           "queries": len(queries), "transforms": list(TRANSFORMS),
                           "encoders": {}}
    for name, enc in ctx["encoders"].items():
        if name == "tiny":
            continue
        t0 = time.perf_counter()
        r = recall_for(enc, linked_photos, distractors, queries, ctx["work"], name)
        r["seconds"] = round(time.perf_counter() - t0, 1)
        log.info("recall %s: %s", name, {s: v["all"] for s, v in r["recall_at_1"].items()})
        out["encoders"][name] = r
    shutil.rmtree(root, ignore_errors=True)
    return {"recall": out}


# --------------------------------------------------------------------------- report


def machine_info() -> dict:
    import faiss
    import torch

    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT,
                                capture_output=True, text=True).stdout.strip() or None
    except OSError:
        commit = None
    return {"machine": platform.machine(), "system": platform.system(),
            "cpu_count": os.cpu_count(), "torch": torch.__version__,
            "torch_threads": torch.get_num_threads(), "faiss": faiss.__version__,
            "numpy": np.__version__, "python": platform.python_version(),
            "omp_num_threads": os.environ.get("OMP_NUM_THREADS"), "git_commit": commit,
            "date": time.strftime("%Y-%m-%d %H:%M:%S")}


def _fmt(v: Any, nd: int = 1) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.{nd}f}"
    return str(v)


def write_md(d: dict, path: Path) -> None:
    m = d.get("machine", {})
    cfg = d.get("config", {})
    lines = ["# Library engine benchmark (issue 4)", "",
             f"Machine: {m.get('machine')}, {m.get('cpu_count')} CPU cores, torch "
             f"{m.get('torch')} ({m.get('torch_threads')} threads), faiss {m.get('faiss')}; "
             f"{m.get('date')}, commit {m.get('git_commit')}."
             + (" **Quick smoke run: sizes are tiny, numbers are not representative.**"
                if cfg.get("quick") else ""), "",
             "Command: `python benchmarks/library.py --data <imagenette> --photos <photo "
             "folders> --student <model file> --teacher mobilenet_v2` (see the script's "
             "docstring). Speeds are medians of repeated runs in one process; ratios compare "
             "numbers measured in the same run.", ""]
    if cfg:
        lines += [f"Student: `{cfg.get('student')}` ({cfg.get('student_model_id')}, "
                  f"{cfg.get('student_input_size')} px); teacher pipeline: "
                  f"`{cfg.get('teacher')}` @ {cfg.get('teacher_size')} px + PCA/ITQ "
                  f"{cfg.get('n_bits')}-bit head and {cfg.get('embed_dim')}-d PCA embedding "
                  f"fitted on {cfg.get('fit_images')} Imagenette train images. Library "
                  f"settings: the app defaults (batch {bench_config().scan.batch_size}, "
                  f"{bench_config().scan.decode_workers} decoding threads).", ""]
    head = ("| pipeline | scan images/s | encode only images/s | runs (s) |",
            "|---|---|---|---|")
    for key, title in (("throughput_imagenette", "Scan + encode: Imagenette val (224 px JPEG)"),
                       ("throughput_photos", "Scan + encode: real photos")):
        r = d.get(key)
        if not r:
            continue
        lines += [f"## {title}", ""]
        if "megapixels" in r:
            mp = r["megapixels"]
            lines += [f"{r['files']} photos, {mp['min']}-{mp['max']} MP (median "
                      f"{mp['median']}), from {', '.join(r.get('sources', []))}.", ""]
        else:
            lines += [f"{r['files']} files, fresh library per run.", ""]
        lines += list(head)
        names = {"student": "student (scan: decode + pHash + encode + catalog)",
                 "teacher": "teacher pipeline (same)",
                 "tiny": "no model (engine cost: walk, decode, pHash, fingerprint, SQLite)"}
        for n, label in names.items():
            if n in r:
                lines.append(f"| {label} | **{_fmt(r[n]['images_per_s'])}** | "
                             f"{_fmt(r[n].get('encode_only_images_per_s'))} | "
                             f"{', '.join(str(x) for x in r[n]['runs_seconds'])} |")
        ih = r["imagehash_phash"]
        lines.append(f"| imagehash `phash(Image.open(p))`, {ih['threads']} threads "
                     f"(1 thread: {_fmt(ih['images_per_s_1thread'])}) | "
                     f"**{_fmt(ih['images_per_s'])}** | - | - |")
        ratios = [f"student / teacher = **{r['student_vs_teacher']}x**"
                  if "student_vs_teacher" in r else "",
                  f"student / imagehash = **{r['student_vs_imagehash']}x**"
                  if "student_vs_imagehash" in r else ""]
        if any(ratios):
            lines += ["", "Ratios: " + "; ".join(x for x in ratios if x) + "."]
        lines.append("")
    s = d.get("search")
    if s:
        lines += ["## Search latency and memory (synthetic codes)", "",
                  f"Random {s['n_bits']}-bit codes, 64-bit pHashes and {s['embed_dim']}-d fp16 "
                  f"embeddings in a real catalog; `Library.search(file_id, k={s['k']})` "
                  "(faiss Hamming top-k' + hash channel + re-rank of the candidates by "
                  "cosine + tiers; the query's code is read from the catalog, so no image is "
                  "encoded). Fresh child process per size without torch; RSS after the "
                  "searches. End to end: `Library.search(image path)` of Imagenette val "
                  "images with the student loaded (decode + encode + search).", "",
                  "| codes | p50 ms | p99 ms | mean ms | RSS MiB | open s | end-to-end p50 ms |"
                  " RSS with student MiB | catalog MiB |",
                  "|---|---|---|---|---|---|---|---|---|"]
        for row in s["rows"]:
            lines.append(f"| {row['n']:,} | **{_fmt(row['p50_ms'], 2)}** | "
                         f"{_fmt(row['p99_ms'], 2)} | {_fmt(row['mean_ms'], 2)} | "
                         f"{_fmt(row['rss_mb'])} | {_fmt(row['open_seconds'], 2)} | "
                         f"{_fmt(row.get('e2e_p50_ms'), 1)} | "
                         f"{_fmt(row.get('rss_with_student_mb'))} | "
                         f"{_fmt(row.get('catalog_mb'))} |")
        lines.append("")
    b = d.get("burst")
    if b:
        lines += ["## Burst into a watched folder", "",
                  f"{b['files']:,} JPEGs copied into a folder watched by the native observer "
                  f"(encoder: {b['encoder']}; watcher defaults: 1 s debounce, 10 s max delay). "
                  f"Copying took {b['copy_seconds']} s; all searchable after "
                  f"**{_fmt(b['all_searchable_seconds'])} s** "
                  f"({b['indexed']:,} indexed, {b['images_per_s']} images/s overall"
                  + ("" if b["complete"] else f"; NOT complete within {b['timeout_s']} s")
                  + ").", ""]
    rc = d.get("recall")
    if rc and rc.get("encoders"):
        lines += ["## Near-duplicate recall@1 per search stage", "",
                  f"{rc['photos']} real photos indexed among {rc['distractors']:,} Imagenette "
                  f"val distractors; {rc['queries']} queries = 8 edited copies of each photo "
                  "(made from the photo reduced to 2048 px). Recall@1: the original is the "
                  "first result. `codes`: Hamming ranking of the binary codes alone (ties "
                  "shared); `+rerank`: top-k' codes re-ranked by embedding cosine; `+hash`: "
                  "plus the pHash channel and tiers (the default search); `robust`: the query "
                  "in 8 orientations. References: exhaustive cosine over all embeddings, and "
                  "pHash alone.", ""]
        stages = (*STAGES, "float_exhaustive", "phash_only")
        lines += ["| encoder | " + " | ".join(stages) + " |",
                  "|---" * (len(stages) + 1) + "|"]
        for name, r in rc["encoders"].items():
            ra = r["recall_at_1"]
            lines.append(f"| {name} ({r['n_bits']} bits) | "
                         + " | ".join(_fmt(ra[s]["all"], 3) for s in stages) + " |")
        lines += ["", "Per edit (default search = codes+rerank+hash; robust in brackets):", "",
                  "| encoder | " + " | ".join(TRANSFORMS) + " |",
                  "|---" * (len(TRANSFORMS) + 1) + "|"]
        for name, r in rc["encoders"].items():
            ra = r["recall_at_1"]
            lines.append(f"| {name} | " + " | ".join(
                f"{_fmt(ra['codes+rerank+hash'][t], 2)} ({_fmt(ra['robust'][t], 2)})"
                for t in TRANSFORMS) + " |")
        lines += ["", "| reference | " + " | ".join(TRANSFORMS) + " |",
                  "|---" * (len(TRANSFORMS) + 1) + "|"]
        first = next(iter(rc["encoders"].values()))["recall_at_1"]
        lines.append("| pHash alone | " + " | ".join(_fmt(first["phash_only"][t], 2)
                                                     for t in TRANSFORMS) + " |")
        for name, r in rc["encoders"].items():
            lines.append(f"| {name} codes alone | " + " | ".join(
                _fmt(r["recall_at_1"]["codes"][t], 2) for t in TRANSFORMS) + " |")
        lines.append("")
    keys = ["encode_images_per_s_imagenette", "encode_images_per_s_imagenette_teacher",
            "phash_images_per_s_imagenette", "search_p50_ms_1m", "search_p99_ms_1m",
            "rss_mb_1m", "burst_10k_seconds"]
    lines += ["## Headline numbers", "", "| key | value |", "|---|---|"]
    lines += [f"| `{k}` | {_fmt(d.get(k), 2)} |" for k in keys]
    if d.get("errors"):
        lines += ["", "## Parts that failed", ""]
        lines += [f"- {k}: `{v.splitlines()[-1] if v else v}`" for k, v in d["errors"].items()]
    if d.get("part_seconds"):
        lines += ["", "Part wall times (s): " + ", ".join(
            f"{k} {v}" for k, v in d["part_seconds"].items()) + "."]
    if d.get("notes"):  # hand-written, kept across runs (merged JSON)
        lines += ["", "## Notes", ""] + [f"- {n}" for n in d["notes"]]
    path.write_text("\n".join(lines) + "\n")


# --------------------------------------------------------------------------- main


#: Sizes of the full run (about 15-25 min on 2 cores) and of ``--quick`` (about 1 min).
FULL = {"fit_images": 1000, "reps": 3, "encode_images": 1000, "max_photos": 100,
        "search_sizes": [10_000, 100_000, 1_000_000], "queries": 500, "burst_files": 10_000,
        "burst_timeout": 600.0, "recall_photos": 100, "distractors": 100_000,
        "budget_minutes": 25.0}
QUICK = {"fit_images": 48, "reps": 2, "encode_images": 48, "max_photos": 4,
         "search_sizes": [2000, 10_000], "queries": 50, "burst_files": 120,
         "burst_timeout": 120.0, "recall_photos": 3, "distractors": 60, "budget_minutes": 5.0}


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=None,
                    help="unpacked imagenette folder (train/ and val/), e.g. /tmp/data/imagenette")
    ap.add_argument("--photos", type=Path, nargs="*", default=[],
                    help="folders with real photos, e.g. /usr/share/wallpapers "
                         "/usr/share/backgrounds /usr/share/palapeli")
    ap.add_argument("--student", type=Path, default=None, help="student model file")
    ap.add_argument("--teacher", default="mobilenet_v2", help="teacher name ('' to skip)")
    ap.add_argument("--teacher-size", type=int, default=224)
    ap.add_argument("--n-bits", type=int, default=64, help="bits of fitted ITQ heads")
    ap.add_argument("--embed-dim", type=int, default=256, help="embedding size of fitted heads")
    ap.add_argument("--parts", default=",".join(PARTS), help=f"comma list of {PARTS}")
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: all)")
    ap.add_argument("--quick", action="store_true", help="tiny sizes: a smoke run")
    ap.add_argument("--work", type=Path,
                    default=Path(tempfile.gettempdir()) / "cukd-library-bench")
    ap.add_argument("--out", type=Path, default=None,
                    help="JSON output (default docs/benchmarks/library.json; quick: in --work)")
    ap.add_argument("--fresh", action="store_true", help="do not merge into an existing JSON")
    ap.add_argument("--search-child", default=None, help=argparse.SUPPRESS)
    sizes = ap.add_argument_group("sizes (defaults: full run / --quick)")
    for key, full in FULL.items():
        flag = "--" + key.replace("_", "-")
        kw: dict[str, Any] = {"default": None, "help": f"{full} / {QUICK[key]}"}
        if isinstance(full, list):
            kw.update(type=int, nargs="+")
        else:
            kw["type"] = type(full)
        sizes.add_argument(flag, **kw)
    a = ap.parse_args(argv)
    for key, full in FULL.items():
        if getattr(a, key) is None:
            setattr(a, key, QUICK[key] if a.quick else full)
    return a


def main(argv: Sequence[str] | None = None) -> int:
    a = parse_args(argv)
    if a.search_child:
        print(json.dumps(search_child(json.loads(a.search_child))))
        return 0
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    logging.getLogger("core").setLevel(logging.WARNING)  # index rebuilds etc. are expected
    import torch

    from core.runtime import tune_allocator

    tune_allocator()
    if a.threads:
        torch.set_num_threads(a.threads)
    parts = [p.strip() for p in a.parts.split(",") if p.strip()]
    unknown = set(parts) - set(PARTS)
    if unknown:
        raise SystemExit(f"unknown parts {sorted(unknown)}; choose from {PARTS}")
    needs_data = {"encode", "burst", "recall"} & set(parts)
    if needs_data and (a.data is None or not (a.data / "val").is_dir()):
        raise SystemExit(f"--data with train/ and val/ is needed for {sorted(needs_data)}")
    if {"photos", "recall"} & set(parts) and not a.photos:
        raise SystemExit("--photos FOLDER... is needed for the photos and recall parts")
    a.work.mkdir(parents=True, exist_ok=True)
    out = a.out or (a.work / "library-quick.json" if a.quick else OUT / "library.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    d: dict[str, Any] = {} if a.fresh or not out.exists() else json.loads(out.read_text())
    d.setdefault("errors", {})
    d.setdefault("part_seconds", {})
    t_start = time.perf_counter()

    ctx: dict[str, Any] = {"work": a.work}
    threads = min(4, os.cpu_count() or 2)
    fit = spread(list_image_files(a.data / "train"), a.fit_images) if a.data else []
    from core.library.testing import TinyEncoder

    encoders: dict[str, Any] = {}
    try:
        st, st_path, st_desc = student_encoder(a.student, fit, a.work, a.n_bits, a.embed_dim,
                                               threads)
        encoders["student"] = st
        ctx["student_path"] = st_path
        d["errors"].pop("student", None)
    except Exception:
        log.exception("cannot load the student")
        d["errors"]["student"] = traceback.format_exc()
        st, st_desc = None, None
    if a.teacher:
        try:
            if not fit:
                raise RuntimeError("--data is needed to fit the teacher's ITQ head")
            encoders["teacher"] = teacher_encoder(a.teacher, a.teacher_size, fit, a.n_bits,
                                                  a.embed_dim, a.work, threads)
            d["errors"].pop("teacher", None)
        except Exception:
            log.exception("cannot build the teacher pipeline")
            d["errors"]["teacher"] = traceback.format_exc()
    encoders["tiny"] = TinyEncoder()
    for enc in encoders.values():
        warm_up(enc)
    ctx["encoders"] = encoders
    d["machine"] = machine_info()
    d["config"] = {
        "quick": a.quick, "student": st_desc,
        "student_model_id": st.model_id if st is not None else None,
        "student_input_size": st.input_size if st is not None else None,
        "teacher": a.teacher or None, "teacher_size": a.teacher_size, "n_bits": a.n_bits,
        "embed_dim": a.embed_dim, "fit_images": len(fit), "reps": a.reps,
        "encode_images": a.encode_images, "search_sizes": a.search_sizes,
        "queries": a.queries, "burst_files": a.burst_files}

    funcs: dict[str, Callable[[argparse.Namespace, dict], dict]] = {
        "encode": part_encode, "photos": part_photos, "search": part_search,
        "burst": part_burst, "recall": part_recall}
    for part in parts:
        elapsed = time.perf_counter() - t_start
        if elapsed > a.budget_minutes * 60:
            log.error("skipping part %s: over the %.0f min budget", part, a.budget_minutes)
            d["errors"][part] = f"skipped: over the {a.budget_minutes:.0f} min budget"
            continue
        log.info("=== part %s (%.0f s so far)", part, elapsed)
        t0 = time.perf_counter()
        try:
            d.update(funcs[part](a, ctx))
            d["errors"].pop(part, None)
        except Exception:
            log.exception("part %s failed", part)
            d["errors"][part] = traceback.format_exc()
        d["part_seconds"][part] = round(time.perf_counter() - t0, 1)
        d["total_seconds"] = round(time.perf_counter() - t_start, 1)
        out.write_text(json.dumps(d, indent=2) + "\n")
        write_md(d, out.with_suffix(".md"))
    log.info("wrote %s and %s in %.0f s", out, out.with_suffix(".md"),
             time.perf_counter() - t_start)
    return 1 if any(p in d["errors"] for p in parts) else 0


if __name__ == "__main__":
    sys.exit(main())
