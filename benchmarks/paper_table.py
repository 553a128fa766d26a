"""The paper's comparison on CIFAR-10 (issue 3): teacher, scratch student, distilled students.

On the fixed split in ../shared/data/cifar10 (``train.txt`` 5 000 labelled images, the only
labels used; ``query.txt`` 1 000; ``database.txt`` 54 000) and for DCH and CSQ at 16/32/48/64
bits, every row is scored by mAP over the whole database (mAP@all, Hamming ranking,
:func:`core.evaluate.evaluate_codes`) plus precision within Hamming radius 2:

* ``teacher_frozen``: MobileNetV2 (ImageNet weights, frozen) + a hash head trained by
  :func:`core.finetune.finetune` (``train_mode="head"``) on its cached features; query and
  database features are computed once (npy in ``--work``) and every head codes them.
* ``teacher_finetuned``: MobileNetV2 fine-tuned end to end (``--teacher-finetune``; off by
  default: it is the most expensive row group on a CPU).
* ``student_scratch``: the efficient student (``--student``), randomly initialised and trained
  end to end on the labelled train split only (no step 1); scored with the whole network
  through :class:`core.encoder.Encoder`.
* ``student_kd``: step 1, :func:`core.distill.distill` from MobileNetV2 on the *unlabelled*
  CIFAR-10 ``train/`` images (one checkpoint reused by every row), then step 2: a hash head on
  the frozen distilled student's cached features; ``--kd-full-bits`` adds rows where the
  network is fine-tuned too (``--kd-full-mode``).
* ``student_kd`` with ``student: cukd_v1``: the paper's student at a CPU-sized setting
  (``--v1-size``, ``--v1-kd-images``), head-only step 2.

Validation for early stopping is a stratified ``--val-share`` of the 5 000 train images; query
and database labels are used for scoring only.

How ``train_seconds`` counts shared costs: it is what producing that row's model alone would
cost — the row's own training epochs (validation included) **plus, in full, every shared
training cost it depends on**: the caching of augmented train views (backbone features for
head rows, pixels for fine-tuned rows; paid once per backbone, measured on the row that filled
the cache) and, for ``student_kd`` rows, the whole step 1 (teacher pass + distillation epochs).
Summing ``train_seconds`` over rows therefore over-counts shared work; the parts are in
``train_seconds_parts``. Encoding the query/database images is evaluation, not training.

Usage (CIFAR-10 unpacked as in ../shared/data/README.md)::

    python benchmarks/paper_table.py --data /tmp/data/cifar10            # default rows
    python benchmarks/paper_table.py --data ... --rows teacher --bits 64 # a subset
    python benchmarks/paper_table.py --md-only   # rewrite .md/PNGs from the JSON (+ `analysis`)
    # smoke test (a few minutes): 20 images per class in every split, tiny epochs
    python benchmarks/paper_table.py --data /tmp/data/cifar10 --tiny 20 \\
        --work /tmp/cukd-paper-tiny --out-dir /tmp/paper-tiny --head-epochs 3 --kd-epochs 1 \\
        --scratch-epochs 1 --kd-full-bits 64 --kd-full-epochs 1 --v1-kd-epochs 1

Writes ``paper_table.json`` (top-level ``rows``; every finished row is merged in at once, keyed
by model, student, loss, bits and train mode, so an interrupted run keeps its rows and a rerun
skips them unless ``--force``), ``paper_table.md`` and ``paper_table_pr_<loss>_<bits>.png``
into ``--out-dir`` (default docs/benchmarks). Step 1, feature caches and per-row training
states live in ``--work`` and are reused (delete it to start over).

Targets checked (issue 3, CSQ at 64 bits): distilled student mAP >= 0.75, >= scratch + 0.10,
within 0.05 of the best teacher row, with <= 1/4 of the teacher's MACs (``targets`` key).

Run time with the defaults on 2 CPU cores (estimated from the measured throughputs in
DESIGN.md and docs/benchmarks/distill.json — MobileNetV2 at 96 px ~320 img/s inference, the
student ~170 img/s in training — not measured end to end): teacher rows ~10 min; step 1 of
the efficient student ~15 min teacher pass + ~5 min per epoch (~1 h 55 min for 20 epochs);
its head rows ~8 min; scratch rows ~15 min each at 30 epochs (~2 h for 8, less with early
stopping); ``cukd_v1`` ~30 min; ``--kd-full-bits 64`` ~10 min per loss at 15 epochs.

Without matplotlib (not a dependency) the PR plots are drawn with PIL.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.util
import json
import logging
import math
import os
import platform
import shutil
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from core.checkpoint import load_model_file, load_student
from core.data import ImageList, list_images
from core.distill import DistillConfig, distill
from core.encoder import Encoder, build_hash_head, file_model_id, head_input, iter_image_batches
from core.evaluate import EvalResult, evaluate_codes, save_pr_curve
from core.finetune import FinetuneConfig, FinetuneProgress, finetune
from core.hash_head import pack_codes
from core.models import Student, Teacher, create_student, create_teacher, measure
from core.runtime import tune_allocator

ROOT = Path(__file__).resolve().parents[1]
TEACHER = "mobilenet_v2"
MODEL_ORDER = ("teacher_frozen", "teacher_finetuned", "student_scratch", "student_kd")
GROUPS = ("teacher", "teacher_finetuned", "kd", "scratch", "v1")
TARGETS = {"loss": "csq", "bits": 64, "kd_map": 0.75, "kd_minus_scratch": 0.10,
           "teacher_gap": 0.05, "macs_ratio": 0.25}
TEACHER_FT_SKIPPED = (
    "not run: end-to-end fine-tuning of MobileNetV2 costs roughly 4x a student's full "
    "fine-tune per epoch and 4x its evaluation on 2 CPU cores, for 8 rows; enable with "
    "`--teacher-finetune` (e.g. on a GPU). The frozen-teacher rows are the teacher reference.")

log = logging.getLogger("paper_table")


# --------------------------------------------------------------------------- data


def read_split(path: Path, root: Path, classes: tuple[str, ...] = ()) -> ImageList:
    """A ``relative/path label`` list (labels are class names or integers) as an ImageList;
    ``classes`` fixes the label order (default: sorted names of this file)."""
    rows = [line.split() for line in path.read_text(encoding="utf-8").splitlines()
            if line.strip()]
    classes = classes or tuple(sorted({r[1] for r in rows}))
    index = {c: i for i, c in enumerate(classes)}
    return ImageList(tuple(root / r[0] for r in rows), tuple(index[r[1]] for r in rows),
                     classes)


def capped(images: ImageList, n: int, seed: int = 0) -> ImageList:
    """At most ``n`` images (seeded choice, original order kept)."""
    if n <= 0 or n >= len(images):
        return images
    idx = np.random.default_rng(seed).choice(len(images), size=n, replace=False)
    return images.subset(sorted(idx.tolist()))


def list_digest(images: ImageList) -> str:
    return hashlib.sha1("\n".join(map(str, images.paths)).encode()).hexdigest()[:12]


# --------------------------------------------------------------------------- models


class TeacherBackbone(Student):
    """A teacher's backbone seen as a :class:`Student`, so that :func:`core.finetune.finetune`
    trains a hash head on it (``head``) or fine-tunes it end to end (``full``) unchanged.

    Its model files name the architecture ``teacher:<name>``; they are read back with
    :func:`part_teacher_finetuned`'s encoder, not :func:`core.checkpoint.load_student`.
    """

    def __init__(self, teacher: Teacher) -> None:
        nn.Module.__init__(self)
        self.arch = f"teacher:{teacher.name}"
        self.arch_args: dict = {}
        self.backbone = teacher.backbone
        self.feature_dim = int(teacher.feature_dim)
        self.preprocess = teacher.preprocess


def teacher_backbone(size: int) -> TeacherBackbone:
    return TeacherBackbone(create_teacher(TEACHER, input_size=size))


def complexity(backbone: nn.Module, size: int, in_dim: int, bits: int) -> dict:
    """Parameters and MACs of backbone (features only) + hash head at ``size`` px."""
    c = measure(backbone, size, features_only=True)
    return {"params": c.params + in_dim * bits + bits, "macs": c.macs + in_dim * bits,
            "backbone_params": c.params, "backbone_macs": c.macs}


def head_codes(spec: dict, feats: np.ndarray) -> np.ndarray:
    """Packed codes of cached raw backbone features: the pipeline of
    :meth:`core.encoder.Encoder.encode` after the backbone (``head(head_input(f))``)."""
    head = build_hash_head(spec)
    norm = bool(spec.get("normalize", False))
    with torch.no_grad():
        out = [pack_codes(head(head_input(torch.from_numpy(np.asarray(feats[i:i + 8192])),
                                          norm)))
               for i in range(0, len(feats), 8192)]
    return np.concatenate(out)


# --------------------------------------------------------------------------- progress


class Progress:
    """Throttled progress log with rate and ETA."""

    def __init__(self, what: str, every: float) -> None:
        self.what, self.every = what, every
        self.t0 = time.perf_counter()
        self.last = -math.inf

    def __call__(self, done: int, total: int, extra: str = "", force: bool = False) -> None:
        now = time.perf_counter()
        if not force and now - self.last < self.every:
            return
        self.last = now
        el = now - self.t0
        rate = done / el if el > 0 else 0.0
        eta = (total - done) / rate if rate > 0 else math.nan
        log.info("%s: %d/%d (%.0f/s) %s elapsed %.0f s, ETA %.0f s", self.what, done, total,
                 rate, extra, el, eta)

    def training(self, p) -> None:
        """Adapter for :class:`FinetuneProgress` / :class:`DistillProgress`."""
        now = time.perf_counter()
        if now - self.last < self.every:
            return
        self.last = now
        loss = "" if p.loss is None else f" loss {p.loss:.4f}"
        val = getattr(p, "val_map", None)
        val = "" if val is None else f" val mAP {val:.4f}"
        eta = "?" if p.eta_seconds is None else f"{p.eta_seconds:.0f} s"
        log.info("%s: %s epoch %d/%d step %d/%d%s%s, %.0f img/s, ETA %s (elapsed %.0f s)",
                 self.what, p.phase, p.epoch, p.epochs, p.done, p.total, loss, val,
                 p.images_per_s, eta, now - self.t0)


# --------------------------------------------------------------------------- results file


def row_key(r: dict) -> tuple:
    return (r["model"], r.get("student"), r["loss"], int(r["bits"]), r.get("train_mode", "head"))


def row_order(r: dict) -> tuple:
    return (r["loss"], int(r["bits"]), MODEL_ORDER.index(r["model"]), r.get("student") or "",
            r.get("train_mode", "head"))


class Table:
    """``paper_table.json``: rows merged in one at a time (re-read before every write, so keys
    added by hand, such as ``analysis``, survive a running benchmark)."""

    def __init__(self, out_dir: Path) -> None:
        self.path = out_dir / "paper_table.json"
        self.out_dir = out_dir
        self.d = self._read()

    def _read(self) -> dict:
        d = json.loads(self.path.read_text(encoding="utf-8")) if self.path.exists() else {}
        d.setdefault("rows", [])
        return d

    def done(self, key: tuple) -> dict | None:
        return next((r for r in self.d["rows"] if row_key(r) == key), None)

    def shared(self, key: str, seconds: float | None = None, what: str = "") -> float:
        """A shared cost in seconds; ``seconds`` records a measurement (by the call that
        computed the shared thing; rows on a warm cache read it back)."""
        costs = self.d.setdefault("shared_seconds", {})
        if seconds is not None:
            costs[key] = {"seconds": round(seconds, 1), "what": what}
        return float(costs.get(key, {}).get("seconds", 0.0))

    def save(self, row: dict | None = None, **top: object) -> None:
        d = self._read()
        d["shared_seconds"] = {**d.get("shared_seconds", {}),
                               **self.d.get("shared_seconds", {})}
        d["skipped"] = self.d.get("skipped", {})
        d.update(top)
        if row is not None:
            d["rows"] = [r for r in d["rows"] if row_key(r) != row_key(row)] + [row]
        d["rows"].sort(key=row_order)
        d["targets"] = check_targets(d["rows"], d.get("settings", {}).get("student"))
        self.d = d
        self.out_dir.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(d, indent=2), encoding="utf-8")
        os.replace(tmp, self.path)
        write_md(d, self.out_dir)


# --------------------------------------------------------------------------- context


@dataclass
class Ctx:
    a: argparse.Namespace
    table: Table
    train: ImageList
    query: ImageList
    database: ImageList
    kd_pool: ImageList  # unlabelled CIFAR-10 train/ images
    device: torch.device
    device_desc: str
    work: Path

    def labels(self, split: ImageList) -> np.ndarray:
        return np.asarray(split.labels, dtype=np.int64)


@torch.no_grad()
def cached_features(ctx: Ctx, model: Student, ident: str, split: str,
                    images: ImageList) -> tuple[np.ndarray, float]:
    """Raw features ``[N, D]`` float32 of whole (squash-resized) images, as the Encoder
    computes them; cached as npy in ``--work/features`` (resumable in parts of 4096 images).

    Returns (features, seconds spent now).
    """
    size = model.preprocess.input_size
    path = ctx.work / "features" / f"{ident}-{size}px-{split}-{list_digest(images)}.npy"
    if path.exists():
        return np.load(path), 0.0
    parts = path.with_suffix(".parts")
    parts.mkdir(parents=True, exist_ok=True)
    model = model.to(ctx.device).eval()
    t0 = time.perf_counter()
    prog = Progress(f"{ident} {split} features", ctx.a.log_every)
    chunk, out = 4096, []
    paths = images.paths
    for start in range(0, len(paths), chunk):
        p = parts / f"{start // chunk:05d}.npy"
        if not p.exists():
            feats = []
            sub = paths[start:start + chunk]
            for idx, px, bad in iter_image_batches(sub, size, ctx.a.batch_size * 2, 2):
                if bad:
                    raise RuntimeError(f"unreadable images: {bad[:3]}")
                if px is not None:
                    feats.append(model(px.to(ctx.device)).float().cpu().numpy())
                prog(start + idx[-1] + 1, len(paths))
            np.save(p, np.concatenate(feats))
        out.append(np.load(p))
    f = np.concatenate(out)
    np.save(path.with_suffix(".tmp.npy"), f)
    os.replace(path.with_suffix(".tmp.npy"), path)
    shutil.rmtree(parts, ignore_errors=True)
    seconds = time.perf_counter() - t0
    log.info("%s %s features: %s in %.0f s", ident, split, f.shape, seconds)
    return f, seconds


def query_db_features(ctx: Ctx, model: Student, ident: str) -> tuple[np.ndarray, np.ndarray]:
    qf, s1 = cached_features(ctx, model, ident, "query", ctx.query)
    df, s2 = cached_features(ctx, model, ident, "database", ctx.database)
    if s1 + s2 > 0:
        ctx.table.shared(f"encode|{ident}|{model.preprocess.input_size}px", s1 + s2,
                         "query+database features (evaluation; not in train_seconds)")
    return qf, df


def score(ctx: Ctx, qc: np.ndarray, dc: np.ndarray) -> dict:
    """mAP@all and friends of packed codes on the query/database split."""
    t0 = time.perf_counter()
    res = evaluate_codes(qc, dc, ctx.labels(ctx.query), ctx.labels(ctx.database),
                         map_k=(1000,), precision_k=(100, 1000), radius=2)
    d = res.to_dict()
    return {"map": round(res.map, 5), "map_at_1000": d["map_at"]["1000"],
            "precision_radius2": d["precision_radius"], "precision_at": d["precision_at"],
            "pr": {"precision": d["pr_precision"], "recall": d["pr_recall"]},
            "n_query": res.n_queries, "n_database": res.n_database,
            "eval_seconds": round(time.perf_counter() - t0, 1)}


# --------------------------------------------------------------------------- rows


@dataclass
class RowGroup:
    """Rows sharing a backbone and a training recipe (one per loss × bits).

    ``source()`` gives finetune's model source (a fresh one per row); head rows score the
    cached query/database features ``features()``; other rows are scored through
    ``encoder(model_path)`` on the images.
    """

    model: str
    student: str | None
    teacher: str | None
    train_mode: str
    size: int
    combos: list[tuple[str, int]]
    source: Callable[[], Student | Path]
    config: Callable[[str, int], FinetuneConfig]
    backbone: nn.Module
    in_dim: int
    cache_key: str
    notes: str
    features: Callable[[], tuple[np.ndarray, np.ndarray]] | None = None
    encoder: Callable[[Path], Encoder] | None = None
    step1_seconds: float = 0.0
    extra: dict = field(default_factory=dict)


def todo(ctx: Ctx, model: str, student: str | None, train_mode: str,
         combos: list[tuple[str, int]]) -> list[tuple[str, int]]:
    if ctx.a.force:
        return combos
    return [(lo, b) for lo, b in combos
            if ctx.table.done((model, student, lo, b, train_mode)) is None]


def run_group(ctx: Ctx, g: RowGroup) -> None:
    t_group = time.perf_counter()
    combos = todo(ctx, g.model, g.student, g.train_mode, g.combos)
    qf = df = None
    for i, (loss, bits) in enumerate(combos):
        name = f"{g.model}-{g.student or g.teacher}-{g.train_mode}-{g.size}px-{loss}{bits}"
        out = ctx.work / "rows" / name
        if ctx.a.force:
            shutil.rmtree(out, ignore_errors=True)
        cfg = g.config(loss, bits)
        log.info("row %s (%d/%d of this group)", name, i + 1, len(combos))
        prog = Progress(name, ctx.a.log_every)
        t0 = time.perf_counter()
        first_step: list[float] = []
        filled: list[bool] = []

        def on_progress(p: FinetuneProgress, prog: Progress = prog, t0: float = t0,
                        first_step: list[float] = first_step, filled: list[bool] = filled
                        ) -> None:
            if p.phase == "features" and not filled:  # only reported while filling the cache
                filled.append(True)
            if p.phase == "train" and not first_step:
                first_step.append(time.perf_counter() - t0)
            prog.training(p)

        model_path = out / "model.pt"
        if model_path.exists():  # trained by an earlier run that stopped before scoring
            log.info("reusing %s", model_path)
        else:
            res = finetune(cfg, g.source(), ctx.train, None, out, on_progress=on_progress,
                           cache_dir=ctx.work / "finetune-cache", device=ctx.device,
                           data_description=f"CIFAR-10 train.txt ({len(ctx.train)})")
            if res.model_path is None:
                raise RuntimeError(f"fine-tuning of {name} stopped")
            if filled:  # this row filled (part of) the cache: its set-up time is the cost
                ctx.table.shared(g.cache_key, first_step[0] if first_step else res.wall_seconds,
                                 "caching augmented train views (+ validation images)")
        model = load_model_file(model_path)
        prov = model["provenance"]
        history = prov.get("history", [])
        epoch_seconds = sum(h.get("seconds", 0.0) for h in history)
        cache_seconds = ctx.table.shared(g.cache_key)
        if g.features is not None:
            if qf is None:
                qf, df = g.features()
            t_enc = time.perf_counter()
            qc, dc = head_codes(model["hash_head"], qf), head_codes(model["hash_head"], df)
            enc_seconds = time.perf_counter() - t_enc
        else:
            assert g.encoder is not None
            enc = g.encoder(model_path)
            t_enc = time.perf_counter()
            codes = []
            for split, images in (("query", ctx.query), ("database", ctx.database)):
                ep = Progress(f"{name} encode {split}", ctx.a.log_every)
                r = enc.encode_paths(images.paths, threads=2, on_progress=ep)
                if r.failed:
                    raise RuntimeError(f"unreadable images: {r.failed[:3]}")
                codes.append(r.codes)
            qc, dc = codes
            enc_seconds = time.perf_counter() - t_enc
        metrics = score(ctx, qc, dc)
        row = {
            "model": g.model, "student": g.student, "teacher": g.teacher, "loss": loss,
            "bits": bits, "train_mode": g.train_mode, "map": metrics.pop("map"),
            **complexity(g.backbone, g.size, g.in_dim, bits), "input_size": g.size,
            "train_seconds": round(g.step1_seconds + cache_seconds + epoch_seconds, 1),
            "train_seconds_parts": {"step1": round(g.step1_seconds, 1),
                                    "train_view_cache": round(cache_seconds, 1),
                                    "epochs": round(epoch_seconds, 1)},
            "device": ctx.device_desc,
            "epochs": len(history), "max_epochs": cfg.epochs,
            "best_epoch": prov.get("best_epoch"), "val_map": prov.get("val_map"),
            "n_train": prov.get("n_train"), "n_val": prov.get("n_val"),
            "config": {k: v for k, v in cfg.to_dict().items() if k != "augment"},
            **g.extra, **metrics, "encode_seconds": round(enc_seconds, 1),
            "notes": g.notes, "tiny": ctx.a.tiny or None,
            "finished": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        }
        ctx.table.save(row)
        el = time.perf_counter() - t_group
        log.info("%s: mAP@all %.4f, P@r<=2 %.4f, train %.0f s — %d/%d rows, %.0f s, ETA %.0f s",
                 name, row["map"], row["precision_radius2"] or 0.0, row["train_seconds"],
                 i + 1, len(combos), el, el / (i + 1) * (len(combos) - i - 1))


def head_config(ctx: Ctx, loss: str, bits: int, size: int) -> FinetuneConfig:
    a = ctx.a
    return FinetuneConfig.from_preset(
        "fast", loss=loss, n_bits=bits, input_size=size, epochs=a.head_epochs,
        patience=a.head_patience, views=a.head_views, lr=a.head_lr, val_share=a.val_share,
        batch_size=a.batch_size, seed=0)


def full_config(ctx: Ctx, loss: str, bits: int, size: int, *, mode: str, epochs: int,
                lr: float, backbone_lr_scale: float, warmup: float = 0.0,
                patience: int | None = None) -> FinetuneConfig:
    a = ctx.a
    return FinetuneConfig.from_preset(
        "thorough", loss=loss, n_bits=bits, input_size=size, train_mode=mode, epochs=epochs,
        patience=a.full_patience if patience is None else patience, views=a.full_views, lr=lr,
        backbone_lr_scale=backbone_lr_scale, warmup_epochs=warmup, val_share=a.val_share,
        batch_size=a.batch_size, seed=0)


def combos_of(losses: list[str], bits: list[int]) -> list[tuple[str, int]]:
    return [(lo, b) for lo in losses for b in bits]


def part_teacher(ctx: Ctx) -> None:
    a = ctx.a
    combos = combos_of(a.losses, a.bits)
    if not todo(ctx, "teacher_frozen", None, "head", combos):
        return
    tb = teacher_backbone(a.size)
    ident = f"teacher-{TEACHER}"
    run_group(ctx, RowGroup(
        model="teacher_frozen", student=None, teacher=TEACHER, train_mode="head", size=a.size,
        combos=combos, source=lambda: tb, config=lambda lo, b: head_config(ctx, lo, b, a.size),
        backbone=tb.backbone, in_dim=tb.feature_dim,
        cache_key=f"train-views|{ident}|{a.size}px|head",
        features=lambda: query_db_features(ctx, tb, ident),
        notes=f"{TEACHER} (ImageNet weights) frozen; hash head trained on cached features of "
              f"{a.head_views} views per train image; query/database coded from cached "
              "features of the whole images."))


def part_teacher_finetuned(ctx: Ctx) -> None:
    a = ctx.a
    size = a.size

    def encoder(path: Path) -> Encoder:
        d = load_model_file(path)
        tb = teacher_backbone(size)
        tb.load_state_dict(d["state_dict"], strict=True)
        return Encoder(tb, d["hash_head"], model_id=file_model_id(path), model=d, path=path,
                       batch_size=a.batch_size * 2, device=ctx.device)

    tb = teacher_backbone(size)
    run_group(ctx, RowGroup(
        model="teacher_finetuned", student=None, teacher=TEACHER, train_mode="full", size=size,
        combos=combos_of(a.losses, a.bits), source=lambda: teacher_backbone(size),
        config=lambda lo, b: full_config(ctx, lo, b, size, mode="full",
                                         epochs=a.teacher_ft_epochs, lr=a.full_lr,
                                         backbone_lr_scale=0.1),
        backbone=tb.backbone, in_dim=tb.feature_dim,
        cache_key=f"train-views|pixels|{size}px|views{a.full_views}",
        encoder=encoder,
        notes=f"{TEACHER} (ImageNet weights) + hash head fine-tuned end to end; scored "
              "through the encoder on the images."))


def distilled_student(ctx: Ctx, student: str, size: int, images: ImageList, epochs: int,
                      views: int) -> tuple[Path, dict]:
    """Step 1 (cached: reused while its configuration and images are the same)."""
    a = ctx.a
    cfg = DistillConfig(student=student, teacher=TEACHER, input_size=size, epochs=epochs,
                        views=views, batch_size=a.batch_size, lr=a.kd_lr, seed=0,
                        cosine_weight=a.kd_cosine_weight)
    kd_dir = ctx.work / f"kd-{student}-{size}px-{len(images)}img-{list_digest(images)}"
    summary_path = kd_dir / "summary.json"
    cfg_json = json.loads(json.dumps(cfg.to_dict()))
    if summary_path.exists() and (kd_dir / "student.pt").exists():
        s = json.loads(summary_path.read_text(encoding="utf-8"))
        if s.get("config") == cfg_json:
            log.info("step 1: reusing %s (%.0f s)", kd_dir / "student.pt", s["seconds"])
            return kd_dir / "student.pt", s
    log.info("step 1: distilling %s from %s on %d unlabelled images at %d px, %d epochs, "
             "%d views", student, TEACHER, len(images), size, epochs, views)
    prog = Progress(f"step 1 {student}", a.log_every)
    res = distill(cfg, images, kd_dir, cache_dir=ctx.work / "kd-cache", device=ctx.device,
                  on_progress=prog.training,
                  data_description=f"CIFAR-10 train/ unlabelled ({len(images)})")
    if res.model_path is None:
        raise RuntimeError("distillation stopped")
    # history (kept across resumed runs) + this run's teacher pass, or the wall time if larger
    seconds = max(res.wall_seconds,
                  res.cache_seconds + sum(h["seconds"] for h in res.history))
    s = {"config": cfg_json, "n_images": len(images), "seconds": round(seconds, 1),
         "teacher_pass_seconds": round(res.cache_seconds, 1),
         "final_loss": res.history[-1]["loss"] if res.history else None,
         "history": res.history, "device": ctx.device_desc}
    summary_path.write_text(json.dumps(s, indent=2), encoding="utf-8")
    return res.model_path, s


def kd_groups(ctx: Ctx, student: str, size: int, images: ImageList, epochs: int, views: int,
              head_combos: list[tuple[str, int]], full_combos: list[tuple[str, int]]) -> None:
    """Step 1 once, then the head rows and (optionally) the fine-tuned rows."""
    a = ctx.a
    need_head = todo(ctx, "student_kd", student, "head", head_combos)
    need_full = todo(ctx, "student_kd", student, a.kd_full_mode, full_combos)
    if not need_head and not need_full:
        return
    path, s1 = distilled_student(ctx, student, size, images, epochs, views)
    st, _ = load_student(path)
    ident = f"kd-{student}-{file_model_id(path)}"
    extra = {"kd_images": len(images), "kd_epochs": epochs, "kd_views": views,
             "kd_seconds": s1["seconds"], "kd_final_loss": s1.get("final_loss")}
    # diagnostic: cosine to the teacher's features on the query images (same size and dim)
    teacher_q = (ctx.work / "features" /
                 f"teacher-{TEACHER}-{size}px-query-{list_digest(ctx.query)}.npy")
    step1_note = (f"step 1: {s1['config']['epochs']} epochs on {len(images)} unlabelled "
                  f"CIFAR-10 train/ images at {size} px, {views} views "
                  f"({s1['seconds']:.0f} s, counted in full in train_seconds)")

    def features() -> tuple[np.ndarray, np.ndarray]:
        qf, df = query_db_features(ctx, st, ident)
        tq = np.load(teacher_q) if teacher_q.exists() else None
        if tq is not None and tq.shape == qf.shape:
            cos = (qf * tq).sum(1) / np.maximum(
                np.linalg.norm(qf, axis=1) * np.linalg.norm(tq, axis=1), 1e-12)
            extra["kd_query_cosine_to_teacher"] = round(float(cos.mean()), 4)
        return qf, df

    run_group(ctx, RowGroup(
        model="student_kd", student=student, teacher=TEACHER, train_mode="head", size=size,
        combos=head_combos, source=lambda: path,
        config=lambda lo, b: head_config(ctx, lo, b, size), backbone=st.backbone,
        in_dim=st.feature_dim, cache_key=f"train-views|{ident}|{size}px|head",
        features=features, step1_seconds=s1["seconds"], extra=extra,
        notes=f"{step1_note}; step 2: hash head on the frozen distilled student."))
    if need_full:
        run_group(ctx, RowGroup(
            model="student_kd", student=student, teacher=TEACHER, train_mode=a.kd_full_mode,
            size=size, combos=full_combos, source=lambda: path,
            config=lambda lo, b: full_config(ctx, lo, b, size, mode=a.kd_full_mode,
                                             epochs=a.kd_full_epochs, lr=a.full_lr,
                                             backbone_lr_scale=0.1),
            backbone=st.backbone, in_dim=st.feature_dim,
            cache_key=f"train-views|pixels|{size}px|views{a.full_views}",
            encoder=lambda p: Encoder.from_file(p, batch_size=a.batch_size * 2,
                                                device=ctx.device),
            step1_seconds=s1["seconds"], extra=extra,
            notes=f"{step1_note}; step 2: {a.kd_full_mode} fine-tune of the distilled "
                  "student + hash head, scored through the encoder on the images."))


def part_kd(ctx: Ctx) -> None:
    a = ctx.a
    images = capped(ctx.kd_pool, a.kd_images)
    kd_groups(ctx, a.student, a.size, images, a.kd_epochs, a.kd_views,
              combos_of(a.losses, a.bits), combos_of(a.losses, a.kd_full_bits))


def part_v1(ctx: Ctx) -> None:
    a = ctx.a
    images = capped(ctx.kd_pool, a.v1_kd_images)
    kd_groups(ctx, "cukd_v1", a.v1_size, images, a.v1_kd_epochs or a.kd_epochs,
              a.v1_kd_views or a.kd_views, combos_of(a.v1_losses, a.v1_bits), [])


def part_scratch(ctx: Ctx) -> None:
    a = ctx.a
    size, name = a.size, a.student

    def fresh() -> Student:
        torch.manual_seed(0)
        return create_student(name, size)

    st = create_student(name, size)
    run_group(ctx, RowGroup(
        model="student_scratch", student=name, teacher=None, train_mode="full", size=size,
        combos=combos_of(a.losses, a.bits), source=fresh,
        config=lambda lo, b: full_config(ctx, lo, b, size, mode="full",
                                         epochs=a.scratch_epochs, lr=a.scratch_lr,
                                         backbone_lr_scale=1.0, warmup=1.0,
                                         patience=a.scratch_patience),
        backbone=st.backbone, in_dim=st.feature_dim,
        cache_key=f"train-views|pixels|{size}px|views{a.full_views}",
        encoder=lambda p: Encoder.from_file(p, batch_size=a.batch_size * 2, device=ctx.device),
        notes="random initialisation, trained end to end on the labelled train split only "
              "(no step 1); scored through the encoder on the images."))


# --------------------------------------------------------------------------- targets


def check_targets(rows: list[dict], student: str | None) -> dict:
    """Issue 3's targets for CSQ at 64 bits, per student with distilled rows; the top-level
    entries are those of ``student`` (the efficient student of this run)."""
    t = TARGETS

    def sel(model: str, **kw: object) -> list[dict]:
        return [r for r in rows if r["model"] == model and r["loss"] == t["loss"]
                and int(r["bits"]) == t["bits"] and all(r.get(k) == v for k, v in kw.items())]

    def best(rs: list[dict]) -> dict | None:
        return max(rs, key=lambda r: r["map"], default=None)

    def brief(r: dict | None) -> dict | None:
        return None if r is None else {k: r.get(k) for k in (
            "model", "student", "teacher", "train_mode", "input_size", "map", "macs")}

    teacher_best = best(sel("teacher_frozen") + sel("teacher_finetuned"))
    by_student = {}
    for s in sorted({r["student"] for r in sel("student_kd")}):
        kd = best(sel("student_kd", student=s))
        assert kd is not None
        scratch = best(sel("student_scratch", student=s))
        # MACs against the teacher at the same input size (frozen and fine-tuned cost the same)
        ref = next((r for r in sel("teacher_frozen") + sel("teacher_finetuned")
                    if r["input_size"] == kd["input_size"]), None)
        checks = {
            f"kd_map_ge_{t['kd_map']}": kd["map"] >= t["kd_map"],
            f"kd_minus_scratch_ge_{t['kd_minus_scratch']}":
                None if scratch is None else kd["map"] - scratch["map"] >= t["kd_minus_scratch"],
            f"kd_within_{t['teacher_gap']}_of_best_teacher":
                None if teacher_best is None else teacher_best["map"] - kd["map"]
                <= t["teacher_gap"],
            f"kd_macs_le_{t['macs_ratio']}_teacher":
                None if ref is None else kd["macs"] <= t["macs_ratio"] * ref["macs"],
        }
        by_student[s] = {
            "kd_row": brief(kd), "scratch_row": brief(scratch),
            "best_teacher_row": brief(teacher_best),
            "kd_minus_scratch": None if scratch is None else round(kd["map"] - scratch["map"], 4),
            "best_teacher_minus_kd": (None if teacher_best is None
                                      else round(teacher_best["map"] - kd["map"], 4)),
            "macs_ratio": None if ref is None else round(kd["macs"] / ref["macs"], 4),
            "checks": checks,
            "all_met": (all(checks.values()) if None not in checks.values() else
                        (False if False in checks.values() else None)),
        }
    main = by_student.get(student or "") or {}
    return {"definition": t, "student": student if main else None, **main,
            "by_student": by_student}


# --------------------------------------------------------------------------- report


def _fmt(v: float | None, spec: str = ".4f") -> str:
    return "—" if v is None else format(v, spec)


def write_md(d: dict, out_dir: Path) -> None:
    s = d.get("settings", {})
    rows = d["rows"]
    lines = [
        "# The paper's comparison on CIFAR-10 (issue 3)", "",
        "Fixed split of ../shared/data/cifar10: train 5 000 labelled images (the only labels "
        "used; a stratified share is held out for early stopping), query 1 000, database "
        "54 000. **mAP@all** = mAP over the whole database on Hamming ranking; P@r≤2 = "
        "precision within Hamming radius 2 (no hit counts 0). Params and MACs: backbone "
        "(features only) + hash head at the row's input size.", ""]
    if s.get("tiny"):
        lines += [f"**Smoke run**: {s['tiny']} images per class in every split; the numbers "
                  "only show that the benchmark runs.", ""]
    lines += ["## Results", "",
              "| model | student | mode | loss | bits | mAP@all | P@r≤2 | params (M) | "
              "MACs (M) | px | epochs (best) | train s | device |",
              "|---|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---|"]
    for r in rows:
        lines.append(
            f"| {r['model']} | {r.get('student') or '—'} | {r.get('train_mode', 'head')} | "
            f"{r['loss']} | {r['bits']} | **{r['map']:.4f}** | "
            f"{_fmt(r.get('precision_radius2'))} | {r['params'] / 1e6:.2f} | "
            f"{r['macs'] / 1e6:.1f} | {r['input_size']} | {r.get('epochs')}/"
            f"{r.get('max_epochs')} ({r.get('best_epoch')}) | {r['train_seconds']:.0f} | "
            f"{r['device']} |")
    lines.append("")
    t = d.get("targets") or {}
    lines += [f"## Targets (CSQ, 64 bits, student `{t.get('student') or '—'}`)", ""]
    if t.get("checks"):
        mark = {True: "yes", False: "**no**", None: "— (row missing)"}
        kd, sc, tb = t["kd_row"], t.get("scratch_row"), t.get("best_teacher_row")
        df = TARGETS
        met = [mark[v] for v in t["checks"].values()]  # in check_targets' order
        lines += [
            "| target | value | met |", "|---|---|---|",
            f"| distilled student mAP ≥ {df['kd_map']} | {kd['map']:.4f} "
            f"({kd['train_mode']}) | {met[0]} |",
            f"| ≥ scratch + {df['kd_minus_scratch']} | "
            f"{_fmt(t['kd_minus_scratch'], '+.4f')} (scratch {_fmt(sc and sc['map'])}) | "
            f"{met[1]} |",
            f"| within {df['teacher_gap']} of the best teacher row | "
            f"{_fmt(t['best_teacher_minus_kd'], '.4f')} below ({tb and tb['model']} "
            f"{_fmt(tb and tb['map'])}) | {met[2]} |",
            f"| MACs ≤ {df['macs_ratio']} × teacher | {_fmt(t['macs_ratio'], '.3f')} | "
            f"{met[3]} |", ""]
        for name, o in t.get("by_student", {}).items():
            if name != t.get("student"):
                lines.append(f"- `{name}` (CSQ 64): mAP {o['kd_row']['map']:.4f}, "
                             f"{_fmt(o['best_teacher_minus_kd'])} below the best teacher, "
                             f"MACs {_fmt(o['macs_ratio'], '.3f')} × teacher at "
                             f"{o['kd_row']['input_size']} px.")
        lines.append("")
    else:
        lines += ["No distilled CSQ 64-bit row yet.", ""]
    lines += ["## Settings", ""]
    if s:
        lines += [
            f"- input size {s['size']} px (MobileNetV2 teacher, efficient student "
            f"`{s['student']}`); `cukd_v1` at {s['v1_size']} px",
            f"- train {s['n_train']} labelled images, {s['val_share']} held out per class for "
            f"early stopping; query {s['n_query']}, database {s['n_database']}",
            f"- head rows: up to {s['head_epochs']} epochs (patience {s['head_patience']}), "
            f"{s['head_views']} cached augmented views per image, lr {s['head_lr']}",
            f"- step 1: {s['kd_epochs']} epochs on {s['kd_images']} unlabelled CIFAR-10 train/ "
            f"images, {s['kd_views']} cached views, lr {s['kd_lr']}, cosine weight "
            f"{s['kd_cosine_weight']}; `cukd_v1`: {s['v1_kd_epochs']} epochs on "
            f"{s['v1_kd_images']} images",
            f"- scratch rows: up to {s['scratch_epochs']} epochs, lr {s['scratch_lr']} "
            f"(backbone too), {s['full_views']} cached views, patience "
            f"{s.get('scratch_patience')}",
            f"- fine-tuned distilled rows ({s['kd_full_mode']}): bits {s['kd_full_bits'] or '—'},"
            f" up to {s['kd_full_epochs']} epochs (patience {s['full_patience']}), lr "
            f"{s['full_lr']} (backbone × 0.1)",
            f"- batch {s['batch_size']}, seed 0, {s['threads']} torch threads; machine: "
            f"{s.get('machine', '')}",
            f"- command: `{s.get('command', '')}`", ""]
    lines += [
        "`train_seconds` = the row's own epochs (with validation) + in full every shared "
        "training cost it depends on: the cached augmented train views of its backbone "
        "(features for head rows, pixels for fine-tuned rows; measured on the row that filled "
        "the cache) and, for distilled rows, the whole step 1. Summing the column over-counts "
        "shared work; the parts are in the JSON (`train_seconds_parts`, `shared_seconds`). "
        "Encoding query and database is evaluation and not counted.", ""]
    skipped = dict(d.get("skipped", {}))
    if not any(r["model"] == "teacher_finetuned" for r in rows):
        skipped.setdefault("teacher_finetuned", TEACHER_FT_SKIPPED)
    if skipped:
        lines += ["## Skipped rows", ""] + [f"- `{k}`: {v}" for k, v in skipped.items()] + [""]
    pngs = sorted(out_dir.glob("paper_table_pr_*.png"))
    if pngs:
        lines += ["## Precision–recall (Hamming radius 0..bits)", ""]
        lines += [f"![{p.stem}]({p.name})" for p in pngs] + [""]
    lines += ["## Analysis", "", d.get("analysis") or
              "_Not written yet: put it in the JSON's `analysis` key and run `--md-only`._", ""]
    (out_dir / "paper_table.md").write_text("\n".join(lines), encoding="utf-8")


def _pil_pr_curve(results: dict[str, EvalResult], path: Path, title: str) -> None:
    """Fallback PR plot with PIL when matplotlib is not installed."""
    from PIL import Image, ImageDraw

    w, h, left, top, right = 640, 520, 60, 40, 20
    im = Image.new("RGB", (w, h + 14 * len(results)), "white")
    dr = ImageDraw.Draw(im)
    pw, ph = w - left - right, h - top - 60

    def xy(rc: float, pr: float) -> tuple[float, float]:
        return left + rc * pw, top + (1 - pr) * ph

    for k in range(11):
        v = k / 10
        dr.line([xy(v, 0), xy(v, 1)], fill=(230, 230, 230))
        dr.line([xy(0, v), xy(1, v)], fill=(230, 230, 230))
        dr.text((xy(v, 0)[0] - 8, top + ph + 4), f"{v:.1f}", fill="black")
        dr.text((8, xy(0, v)[1] - 6), f"{v:.1f}", fill="black")
    dr.rectangle([left, top, left + pw, top + ph], outline="black")
    dr.text((left, 12), title, fill="black")
    dr.text((left + pw // 2 - 20, top + ph + 20), "recall", fill="black")
    dr.text((4, top - 16), "precision", fill="black")
    colours = [(31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40), (148, 103, 189),
               (140, 86, 75), (227, 119, 194), (127, 127, 127)]
    for i, (label, res) in enumerate(results.items()):
        c = colours[i % len(colours)]
        pts = [xy(r, p) for r, p in zip(res.pr_recall, res.pr_precision, strict=True)
               if not math.isnan(p)]
        if len(pts) > 1:
            dr.line(pts, fill=c, width=2)
        for x, y in pts:
            dr.ellipse([x - 2, y - 2, x + 2, y + 2], fill=c)
        ly = top + ph + 40 + 14 * i
        dr.line([(left, ly + 6), (left + 20, ly + 6)], fill=c, width=3)
        dr.text((left + 26, ly), label, fill="black")
    im.save(path)


def write_pr_curves(d: dict, out_dir: Path, bits_list: list[int]) -> list[Path]:
    """One PNG per (loss, bits in ``bits_list``) with every row's curve."""
    written = []
    for loss in sorted({r["loss"] for r in d["rows"]}):
        for bits in bits_list:
            rs = [r for r in d["rows"] if r["loss"] == loss and int(r["bits"]) == bits
                  and r.get("pr")]
            if not rs:
                continue
            results = {}
            for r in rs:
                label = (f"{r['model']} {r.get('student') or r.get('teacher')} "
                         f"{r.get('train_mode', 'head')} {r['input_size']}px "
                         f"(mAP {r['map']:.3f})")
                nan = [math.nan if v is None else v for v in r["pr"]["precision"]]
                results[label] = EvalResult(map=r["map"], pr_precision=tuple(nan),
                                            pr_recall=tuple(r["pr"]["recall"]))
            path = out_dir / f"paper_table_pr_{loss}_{bits}.png"
            title = f"CIFAR-10, {loss.upper()} {bits} bits: precision-recall"
            if importlib.util.find_spec("matplotlib") is None:  # not a dependency
                _pil_pr_curve(results, path, title)
            else:
                save_pr_curve(results, path, title=title)
            written.append(path)
    return written


# --------------------------------------------------------------------------- main


def ints(s: str) -> list[int]:
    return [int(x) for x in s.split(",") if x.strip()]


def words(s: str) -> list[str]:
    return [x.strip() for x in s.split(",") if x.strip()]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    ap.add_argument("--data", type=Path, help="unpacked cifar10/ (train/ and test/ folders)")
    ap.add_argument("--split-dir", type=Path, default=ROOT.parent / "shared" / "data" / "cifar10")
    ap.add_argument("--out-dir", type=Path, default=ROOT / "docs" / "benchmarks")
    ap.add_argument("--work", type=Path, default=Path("/tmp/cukd-paper"), help="caches")
    ap.add_argument("--rows", type=words, default=words("teacher,kd,scratch,v1"),
                    help=f"row groups, any of {','.join(GROUPS)}")
    ap.add_argument("--teacher-finetune", action="store_true",
                    help="also run teacher_finetuned (end to end; expensive on a CPU)")
    ap.add_argument("--bits", type=ints, default=ints("16,32,48,64"))
    ap.add_argument("--losses", type=words, default=words("csq,dch"))
    ap.add_argument("--size", type=int, default=96, help="input px (teacher and student)")
    ap.add_argument("--student", default="cukd_mnv2_035t", help="the efficient student")
    ap.add_argument("--val-share", type=float, default=0.1)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--head-epochs", type=int, default=60)
    ap.add_argument("--head-patience", type=int, default=10)
    ap.add_argument("--head-views", type=int, default=4)
    ap.add_argument("--head-lr", type=float, default=1e-3)
    ap.add_argument("--kd-images", type=int, default=50000, help="cap (0: all)")
    ap.add_argument("--kd-epochs", type=int, default=20)
    ap.add_argument("--kd-views", type=int, default=4)
    ap.add_argument("--kd-lr", type=float, default=3e-3)
    ap.add_argument("--kd-cosine-weight", type=float, default=1.0)
    ap.add_argument("--kd-full-bits", type=ints, default=[],
                    help="bits of extra distilled rows fine-tuned beyond the head")
    ap.add_argument("--kd-full-mode", choices=["last_stages", "full"], default="full")
    ap.add_argument("--kd-full-epochs", type=int, default=15)
    ap.add_argument("--full-lr", type=float, default=1e-3)
    ap.add_argument("--full-views", type=int, default=8)
    ap.add_argument("--full-patience", type=int, default=5)
    ap.add_argument("--scratch-epochs", type=int, default=30)
    ap.add_argument("--scratch-lr", type=float, default=2e-3)
    ap.add_argument("--scratch-patience", type=int, default=10)
    ap.add_argument("--teacher-ft-epochs", type=int, default=10)
    ap.add_argument("--v1-size", type=int, default=64)
    ap.add_argument("--v1-kd-images", type=int, default=10000)
    ap.add_argument("--v1-kd-epochs", type=int, default=0, help="0: --kd-epochs")
    ap.add_argument("--v1-kd-views", type=int, default=0, help="0: --kd-views")
    ap.add_argument("--v1-bits", type=ints, default=ints("64"))
    ap.add_argument("--v1-losses", type=words, default=words("csq"))
    ap.add_argument("--tiny", type=int, default=0, help="N images per class in every split")
    ap.add_argument("--force", action="store_true",
                    help="redo rows already in the JSON (step 1 and feature caches in --work "
                         "are still reused: delete --work to redo them)")
    ap.add_argument("--md-only", action="store_true", help="rewrite .md and PNGs from the JSON")
    ap.add_argument("--pr-bits", type=ints, default=ints("64"))
    ap.add_argument("--device", default="auto", help="auto | cpu | cuda")
    ap.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    ap.add_argument("--log-every", type=float, default=30.0, help="seconds between progress")
    a = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    table = Table(a.out_dir)
    if a.md_only:
        write_pr_curves(table.d, a.out_dir, a.pr_bits)
        table.save()
        log.info("wrote %s", a.out_dir / "paper_table.md")
        return 0
    if a.data is None:
        ap.error("--data is required (unless --md-only)")
    groups = [*a.rows, *(["teacher_finetuned"] if a.teacher_finetune else [])]
    groups = ["teacher_finetuned" if g == "teacher_ft" else g for g in groups]
    for g in groups:
        if g not in GROUPS:
            ap.error(f"unknown row group {g!r}; choose from {', '.join(GROUPS)}")
    tune_allocator()
    torch.set_num_threads(a.threads)
    if a.device == "auto":
        device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    else:
        device = torch.device(a.device)
    device_desc = (f"cuda, {torch.cuda.get_device_name(device)}" if device.type == "cuda"
                   else f"cpu, {os.cpu_count()} cores")

    train = read_split(a.split_dir / "train.txt", a.data)
    query = read_split(a.split_dir / "query.txt", a.data, train.classes)
    database = read_split(a.split_dir / "database.txt", a.data, train.classes)
    kd_pool = list_images(a.data / "train")
    if a.tiny:
        train, query, database, kd_pool = (x.per_class(a.tiny)
                                           for x in (train, query, database, kd_pool))
    a.v1_kd_epochs = a.v1_kd_epochs or a.kd_epochs
    a.v1_kd_views = a.v1_kd_views or a.kd_views
    log.info("train %d, query %d, database %d, unlabelled pool %d; groups %s; %s",
             len(train), len(query), len(database), len(kd_pool), groups, device_desc)
    settings = {k.replace("-", "_"): v for k, v in vars(a).items()
                if k not in ("data", "split_dir", "out_dir", "work", "md_only", "force")}
    settings.update({
        "n_train": len(train), "n_query": len(query), "n_database": len(database),
        "kd_images": len(capped(kd_pool, a.kd_images)),
        "v1_kd_images": len(capped(kd_pool, a.v1_kd_images)),
        "machine": f"{platform.machine()}, {os.cpu_count()} CPU cores, torch "
                   f"{torch.__version__}, {device_desc}",
        "command": "python benchmarks/paper_table.py " + " ".join(
            argv if argv is not None else sys.argv[1:]),
    })
    skipped = table.d.setdefault("skipped", {})
    if "teacher_finetuned" in groups:
        skipped.pop("teacher_finetuned", None)
    elif not any(r["model"] == "teacher_finetuned" for r in table.d["rows"]):
        skipped["teacher_finetuned"] = TEACHER_FT_SKIPPED
    table.save(settings=settings)
    ctx = Ctx(a, table, train, query, database, kd_pool, device, device_desc, a.work)
    parts = {"teacher": part_teacher, "teacher_finetuned": part_teacher_finetuned,
             "kd": part_kd, "scratch": part_scratch, "v1": part_v1}
    t0 = time.perf_counter()
    for g in GROUPS:  # fixed order: teacher features first (the KD cosine diagnostic uses them)
        if g in groups:
            log.info("=== %s (%.0f s so far)", g, time.perf_counter() - t0)
            parts[g](ctx)
    write_pr_curves(table.d, a.out_dir, a.pr_bits)
    table.save()
    t = table.d["targets"]
    log.info("targets (CSQ 64, %s): %s -> all met: %s", t.get("student"),
             t.get("checks"), t.get("all_met"))
    log.info("done in %.0f s: %s", time.perf_counter() - t0, a.out_dir / "paper_table.md")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
