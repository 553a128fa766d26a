"""Step 1: context-unaware knowledge distillation (Reddy et al., arXiv:2207.09070).

A student regresses (MSE) the pooled features of a frozen, never fine-tuned ImageNet teacher
on unlabelled images. The teacher's outputs for every (image, augmented view) are computed
once into a :class:`~core.feature_cache.ViewCache`; epochs then cost only student passes.

The teacher may see each view at a larger size than the student (``teacher_size``): the
student then learns to predict, from its small input, what the teacher sees at full
resolution. ``init`` starts from an already distilled student, which is how the shipped
default model is finished (whole-photo views, teacher at 224 px, student at 160 px).

Runs unchanged on one CPU, one GPU, or under ``torchrun --nproc_per_node=N``
(DistributedDataParallel: gloo on CPU, nccl on GPU). ``batch_size`` is per process.
"""

from __future__ import annotations

import logging
import math
import os
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

from core.checkpoint import CheckpointError, atomic_torch_save, load_student, save_student
from core.data import ImageList
from core.feature_cache import ViewCache, image_key
from core.imageio import ImageLoadError, load_image
from core.models.fuse import fold_batchnorm
from core.models.students import Student, create_student
from core.models.teachers import create_teacher
from core.preprocess import Augment, augment_view, to_tensor
from core.training import barrier, cosine_lr, dist_setup, image_seed

__all__ = [
    "DistillConfig",
    "DistillProgress",
    "DistillResult",
    "distill",
    "distill_loss",
    "distill_within",
    "feature_cosine",
]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DistillConfig:
    """Hyper-parameters of step 1 (all saved in the checkpoint's provenance).

    ``input_size``: pixels of the cached views (and the student's input unless
    ``student_size`` is set).
    ``teacher_size``: pixels the teacher sees of each view (``None``: ``input_size``).
    ``student_size``: pixels the student sees: each cached view is resized (bilinear,
    antialiased) on the fly, so one teacher pass serves students of several sizes (``None``:
    ``input_size``).
    ``init``: a model file whose student (same architecture) starts the training instead of
    random weights (``""``: random).
    """

    student: str = "cukd_mnv2_035t"
    teacher: str = "mobilenet_v2"
    input_size: int = 128
    epochs: int = 20
    batch_size: int = 64
    lr: float = 3e-3
    weight_decay: float = 1e-5
    warmup_epochs: float = 1.0
    views: int = 8
    seed: int = 0
    augment: Augment = field(default_factory=Augment)
    cache_pixels: bool = True
    decode_threads: int = 2
    cosine_weight: float = 0.0
    teacher_size: int | None = None
    init: str = ""
    student_size: int | None = None

    def __post_init__(self) -> None:
        if self.epochs < 1 or self.batch_size < 1 or self.views < 1:
            raise ValueError("epochs, batch_size and views must be >= 1")
        if self.cosine_weight < 0:
            raise ValueError("cosine_weight must be >= 0")
        if self.teacher_size is not None and self.teacher_size < 32:
            raise ValueError(f"teacher_size must be >= 32, got {self.teacher_size}")
        if self.student_size is not None and self.student_size < 64:
            raise ValueError(f"student_size must be >= 64, got {self.student_size}")

    @property
    def teacher_px(self) -> int:
        """The teacher's input size."""
        return self.teacher_size or self.input_size

    @property
    def student_px(self) -> int:
        """The student's input size."""
        return self.student_size or self.input_size

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class DistillProgress:
    """One progress report. ``phase`` is ``"cache"`` (teacher pass) or ``"train"``."""

    phase: str
    epoch: int
    epochs: int
    done: int
    total: int
    loss: float | None
    images_per_s: float
    eta_seconds: float | None


@dataclass
class DistillResult:
    model_path: Path | None
    epochs_done: int
    stopped: bool
    wall_seconds: float
    teacher_batches: int
    cache_seconds: float
    history: list[dict]
    failed_images: list[str]


# --------------------------------------------------------------------------- helpers


class _DistillModel(nn.Module):
    """Student plus a regression projection used only during distillation."""

    def __init__(self, student: Student, teacher_dim: int) -> None:
        super().__init__()
        self.student = student
        self.projection = (nn.Identity() if student.feature_dim == teacher_dim
                           else nn.Linear(student.feature_dim, teacher_dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        size = self.student.preprocess.input_size
        if x.shape[-1] != size or x.shape[-2] != size:  # a cached view for another size
            x = nn.functional.interpolate(x.float(), size=(size, size), mode="bilinear",
                                          antialias=True, align_corners=False)
        return self.projection(self.student(x))





def _load_views(path: Path, views: list[int], cfg: DistillConfig):
    """Decode one image and render the requested views (runs in a worker thread).

    Returns ``([(student view, teacher view), ...], None)`` or ``(None, message)``; the two
    views of a pair are the same crop, at ``input_size`` and at the teacher's size.
    """
    s, t = cfg.input_size, cfg.teacher_px
    try:
        im = load_image(path, draft_size=max(s, t) * 2)
    except ImageLoadError as exc:
        return None, str(exc)
    seed = image_seed(path, cfg.seed)
    out = []
    for v in views:
        small = augment_view(im, s, cfg.augment, seed, v)
        out.append((small, small if t == s else augment_view(im, t, cfg.augment, seed, v)))
    return out, None


def _initial_student(cfg: DistillConfig) -> Student:
    """A random student, or ``cfg.init``'s weights at ``cfg.input_size``."""
    if not cfg.init:
        return create_student(cfg.student, cfg.student_px)
    start, _ = load_student(cfg.init)
    if start.arch != cfg.student:
        raise CheckpointError(f"{cfg.init} holds a {start.arch} student, not "
                              f"{cfg.student}")
    # the init's own architecture arguments (a pruned student's per-block widths)
    student = create_student(cfg.student, cfg.student_px, **start.arch_args)
    student.load_state_dict(start.state_dict())
    return student


def distill_loss(pred: torch.Tensor, target: torch.Tensor, cosine_weight: float = 0.0
                 ) -> torch.Tensor:
    """MSE to the teacher's features (the paper's step-1 loss), plus optionally
    ``cosine_weight * (1 - cos(pred, target))`` averaged over the batch, which weights the
    feature *direction* that retrieval by cosine or sign codes depends on.

    Args:
        pred, target: ``[B, D]``.
    """
    if pred.shape != target.shape:
        raise ValueError(f"student output {tuple(pred.shape)} does not match teacher "
                         f"features {tuple(target.shape)}")
    loss = F.mse_loss(pred, target)
    if cosine_weight:
        loss = loss + cosine_weight * (1 - F.cosine_similarity(pred, target, dim=1)).mean()
    return loss


def _resume_key(cfg: dict) -> dict:
    """Settings that must match to resume (more epochs may be asked for)."""
    # a state written before ``student_size`` existed resumes as ``student_size=None``
    return {k: v for k, v in cfg.items()
            if k != "epochs" and not (k == "student_size" and v is None)}



@torch.no_grad()
def feature_cosine(student: nn.Module, teacher: nn.Module, images: torch.Tensor,
                   batch_size: int = 128, teacher_images: torch.Tensor | None = None
                   ) -> np.ndarray:
    """Per-image cosine similarity between student and teacher features.

    Args:
        images: uint8 ``[N, 3, S, S]``.
        teacher_images: the same images at the teacher's size (default ``images``).
    Returns:
        ``[N]`` float array. The student's mode is restored afterwards.
    """
    was = student.training
    student.eval()
    dev = next(student.parameters()).device
    out = []
    for i in range(0, len(images), batch_size):
        x = images[i:i + batch_size].to(dev)
        xt = x if teacher_images is None else teacher_images[i:i + batch_size].to(dev)
        out.append(F.cosine_similarity(student(x).float(), teacher(xt).float(), dim=1).cpu())
    student.train(was)
    return torch.cat(out).numpy()


# --------------------------------------------------------------------------- main loop


def _fill_cache(cache: ViewCache, paths: Sequence[Path], rows: np.ndarray, teacher: nn.Module,
                cfg: DistillConfig, device: torch.device, on_progress, should_stop,
                counter: list[int]) -> list[str]:
    """Compute missing teacher features for ``rows``; returns failed image messages."""
    failed: list[str] = []
    todo = [(int(r), [v for v in range(cache.views) if not cache.valid[r, v]]) for r in rows]
    todo = [(r, vs) for r, vs in todo if vs]
    if not todo:
        return failed
    t0 = time.perf_counter()
    done = 0
    pending: list[tuple[int, int, tuple]] = []

    def flush_batch() -> None:
        if not pending:
            return
        x = to_tensor([pair[1] for _, _, pair in pending])
        feats = teacher(x.to(device)).float().cpu().numpy()
        counter[0] += 1
        if not cache.store_pixels:
            px = [None] * len(pending)
        elif cfg.teacher_px == cfg.input_size:  # the pairs hold one image twice
            px = x.numpy()
        else:
            px = to_tensor([pair[0] for _, _, pair in pending]).numpy()
        for (r, v, _), f, p in zip(pending, feats, px, strict=True):
            cache.put(r, v, f, p)
        pending.clear()

    with ThreadPoolExecutor(max(1, cfg.decode_threads)) as pool:
        chunk = 64
        for start in range(0, len(todo), chunk):
            part = todo[start:start + chunk]
            results = pool.map(lambda rv: _load_views(paths[rv[0]], rv[1],
                                                      cfg), part)
            for (r, vs), (ims, err) in zip(part, results, strict=True):
                if err is not None:
                    failed.append(err)
                    log.warning("skipping unreadable image: %s", err)
                    continue
                pending.extend((r, v, im) for v, im in zip(vs, ims, strict=True))
                while len(pending) >= cfg.batch_size:
                    batch, rest = pending[:cfg.batch_size], pending[cfg.batch_size:]
                    pending[:] = batch
                    flush_batch()
                    pending.extend(rest)
            flush_batch()
            cache.flush()
            done += len(part)
            if on_progress:
                el = time.perf_counter() - t0
                rate = done / el if el > 0 else 0.0
                on_progress(DistillProgress("cache", 0, cfg.epochs, done, len(todo), None, rate,
                                            (len(todo) - done) / rate if rate else None))
            if should_stop and should_stop():
                break
    return failed


def distill(
    config: DistillConfig,
    images: ImageList | Sequence[str | os.PathLike[str]],
    out_dir: str | os.PathLike[str],
    *,
    teacher: nn.Module | None = None,
    teacher_weights: str | os.PathLike[str] | None = None,
    cache_dir: str | os.PathLike[str] | None = None,
    val_images: ImageList | Sequence[str | os.PathLike[str]] | None = None,
    resume: bool = True,
    device: str | torch.device | None = None,
    on_progress: Callable[[DistillProgress], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
    data_description: str = "",
) -> DistillResult:
    """Distil ``config.student`` from a frozen teacher on unlabelled ``images``.

    Writes ``out_dir/last.pt`` (resumable training state, after every epoch and on stop) and
    ``out_dir/student.pt`` (the versioned model file) when all epochs are done.

    Args:
        config: hyper-parameters.
        images: training images (labels, if any, are ignored).
        out_dir: output folder.
        teacher: an already built teacher module (``feature_dim`` attribute, uint8 input);
            default: ``create_teacher(config.teacher, teacher_weights)``.
        cache_dir: feature cache parent folder (default ``out_dir/cache``).
        val_images: optional images to report mean student–teacher cosine after each epoch.
        resume: continue from ``out_dir/last.pt`` when it exists.
        device: default CUDA (per local rank) when available, else CPU.
        on_progress, should_stop: callbacks; a stop saves a resumable state and returns.
    """
    t_start = time.perf_counter()
    rank, world, created_pg = dist_setup()
    if device is None:
        if torch.cuda.is_available():
            device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
            torch.cuda.set_device(device)
        else:
            device = torch.device("cpu")
    device = torch.device(device)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = [Path(p) for p in (images.paths if isinstance(images, ImageList) else images)]
    if not paths:
        raise ValueError("no training images")
    torch.manual_seed(config.seed)

    if teacher is None:
        teacher = create_teacher(config.teacher, teacher_weights, input_size=config.teacher_px)
    teacher = teacher.to(device).eval()
    teacher_dim = int(teacher.feature_dim)

    keys = [image_key(p) for p in paths]
    spec = {"teacher": getattr(teacher, "name", config.teacher), "dim": teacher_dim,
            "teacher_id": config.teacher, "size": config.input_size,
            "augment": config.augment.to_dict(), "seed": config.seed, "view_seed": "fingerprint"}
    if config.teacher_px != config.input_size:
        spec["teacher_size"] = config.teacher_px
    cache_root = Path(cache_dir) if cache_dir else out_dir / "cache"
    if rank == 0:
        cache = ViewCache(cache_root, spec, keys, config.views, teacher_dim, config.input_size,
                          config.cache_pixels, create=True)
    barrier(world)
    if rank != 0:
        cache = ViewCache(cache_root, spec, keys, config.views, teacher_dim, config.input_size,
                          config.cache_pixels, create=False)

    # ---- teacher pass (only what is missing; each rank fills its own rows)
    t_cache = time.perf_counter()
    teacher_calls = [0]
    missing = cache.missing_rows()
    # The frozen teacher only runs inference: BatchNorm folded into its convolutions (in
    # place: same features to ~1e-5, later calls included) makes it about 2x faster on CPU.
    if len(missing):
        fold_batchnorm(teacher, inplace=True)
    failed = _fill_cache(cache, paths, missing[rank::world], teacher, config, device,
                         on_progress if rank == 0 else None, should_stop, teacher_calls)
    barrier(world)
    cache_seconds = time.perf_counter() - t_cache
    usable = np.flatnonzero(np.asarray(cache.valid, dtype=bool).all(axis=1))
    if len(usable) == 0:
        raise ValueError("none of the training images could be read")

    val_x = val_xt = None
    if val_images is not None:
        vpaths = val_images.paths if isinstance(val_images, ImageList) else val_images
        pairs = []
        for p in vpaths:
            views, err = _load_views(Path(p), [0], config)
            if views is None:
                log.warning("validation image skipped: %s", err)
            else:
                pairs += views
        if pairs:
            val_x = to_tensor([s for s, _ in pairs])
            val_xt = (None if config.teacher_px == config.input_size
                      else to_tensor([t for _, t in pairs]))

    # ---- student
    student = _initial_student(config)
    model = _DistillModel(student, teacher_dim).to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    steps_per_epoch = math.ceil(len(usable) / world / config.batch_size)
    total_steps = steps_per_epoch * config.epochs
    warmup = int(config.warmup_epochs * steps_per_epoch)

    start_epoch, start_batch, history = 0, 0, []
    state_path = out_dir / "last.pt"
    if resume and state_path.exists():
        st = torch.load(state_path, map_location="cpu", weights_only=True)
        if _resume_key(st.get("config", {})) != _resume_key(config.to_dict()):
            log.warning("%s was written with another configuration; starting afresh", state_path)
        else:
            model.load_state_dict(st["model"])
            opt.load_state_dict(st["optimizer"])
            start_epoch, start_batch = int(st["epoch"]), int(st["batch"])
            history = list(st["history"])
            log.info("resuming at epoch %d batch %d", start_epoch, start_batch)
    train_model: nn.Module = model
    if world > 1:
        train_model = nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None)

    def save_state(epoch: int, batch: int) -> None:
        if rank == 0:
            atomic_torch_save({"model": model.state_dict(), "optimizer": opt.state_dict(),
                               "epoch": epoch, "batch": batch, "history": history,
                               "config": config.to_dict()}, state_path)

    stopped = False
    t_train = time.perf_counter()
    seen = 0
    for epoch in range(start_epoch, config.epochs):
        g = np.random.default_rng([config.seed, epoch])
        perm = usable[g.permutation(len(usable))]
        view_of = g.integers(0, config.views, size=len(usable))
        mine = np.arange(len(perm))[rank::world]
        train_model.train()
        t_ep, loss_sum, n_b = time.perf_counter(), 0.0, 0
        first = start_batch if epoch == start_epoch else 0
        for b in range(first, steps_per_epoch):
            sel = mine[b * config.batch_size:(b + 1) * config.batch_size]
            if len(sel) == 0:
                continue
            rows, views = perm[sel], view_of[sel]
            feats, pix = cache.get(rows, views)
            if pix is None:
                pix = to_tensor([_load_views(paths[r], [int(v)], config)[0][0][0]
                                 for r, v in zip(rows, views, strict=True)]).numpy()
            x = torch.from_numpy(pix).to(device, non_blocking=True)
            y = torch.from_numpy(feats).to(device, non_blocking=True)
            step = epoch * steps_per_epoch + b
            for grp in opt.param_groups:
                grp["lr"] = cosine_lr(step, total_steps, warmup, config.lr)
            loss = distill_loss(train_model(x), y, config.cosine_weight)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            loss_val = loss.item()
            loss_sum += loss_val
            n_b += 1
            seen += len(sel)
            if on_progress and rank == 0:
                el = time.perf_counter() - t_train
                rate = seen / el if el > 0 else 0.0
                left = (total_steps - step - 1) * config.batch_size
                on_progress(DistillProgress("train", epoch + 1, config.epochs, b + 1,
                                            steps_per_epoch, loss_val, rate * world,
                                            left / rate if rate else None))
            if should_stop and should_stop():
                stopped = True
                save_state(epoch, b + 1)
                break
        if stopped:
            break
        rec = {"epoch": epoch + 1, "loss": loss_sum / max(1, n_b),
               "seconds": time.perf_counter() - t_ep}
        if val_x is not None and rank == 0:
            rec["val_cosine"] = float(feature_cosine(model, teacher, val_x,
                                                     teacher_images=val_xt).mean())
        history.append(rec)
        log.info("epoch %d/%d loss %.4f%s", epoch + 1, config.epochs, rec["loss"],
                 f" val cosine {rec['val_cosine']:.4f}" if "val_cosine" in rec else "")
        save_state(epoch + 1, 0)
        barrier(world)

    model_path = None
    epochs_done = len(history)
    if not stopped and rank == 0:
        model_path = out_dir / "student.pt"
        save_student(model_path, student.cpu(), teacher=getattr(teacher, "name", config.teacher),
                     provenance={"step": "distill", "data": data_description or str(
                         Path(os.path.commonpath([str(p) for p in paths])).name),
                         "n_images": len(usable), "config": config.to_dict(),
                         "epochs": epochs_done, "seed": config.seed,
                         "wall_seconds": time.perf_counter() - t_start,
                         "history": history})
    barrier(world)
    if created_pg:
        dist.destroy_process_group()
    return DistillResult(model_path, epochs_done, stopped, time.perf_counter() - t_start,
                         teacher_calls[0], cache_seconds, history, failed)


def distill_within(
    config: DistillConfig,
    images: ImageList | Sequence[str | os.PathLike[str]],
    out_dir: str | os.PathLike[str],
    budget_seconds: float,
    *,
    margin_seconds: float = 20.0,
    max_epochs: int | None = None,
    teacher: nn.Module | None = None,
    teacher_weights: str | os.PathLike[str] | None = None,
    cache_dir: str | os.PathLike[str] | None = None,
    **kwargs,
) -> DistillResult:
    """Distil for as many epochs as fit in ``budget_seconds`` (wall clock, teacher pass included).

    Fills the teacher cache and trains one probe epoch (``out_dir/probe``), times it, then trains
    a fresh student with a full cosine schedule of ``min(max_epochs or config.epochs, fitting)``
    epochs in ``out_dir`` — so the run ends at a small learning rate instead of being cut off
    mid-schedule. Single process only. Other keyword arguments go to :func:`distill`.
    """
    t0 = time.perf_counter()
    out_dir = Path(out_dir)
    cache_dir = Path(cache_dir) if cache_dir else out_dir / "cache"
    if teacher is None:
        teacher = create_teacher(config.teacher, teacher_weights, input_size=config.teacher_px)
    kwargs.pop("resume", None)
    val = kwargs.pop("val_images", None)
    probe = distill(replace(config, epochs=1), images, out_dir / "probe", teacher=teacher,
                    cache_dir=cache_dir, resume=False, **kwargs)
    if probe.stopped or not probe.history:
        return probe
    epoch_s = float(probe.history[0]["seconds"])
    left = budget_seconds - (time.perf_counter() - t0) - margin_seconds
    epochs = max(1, min(max_epochs or config.epochs, int(left / max(epoch_s, 1e-6))))
    log.info("teacher pass %.0f s, probe epoch %.1f s: %d epochs fit in the %.0f s left",
             probe.cache_seconds, epoch_s, epochs, left)
    res = distill(replace(config, epochs=epochs), images, out_dir, teacher=teacher,
                  cache_dir=cache_dir, resume=False, val_images=val, **kwargs)
    res.cache_seconds += probe.cache_seconds
    res.wall_seconds = time.perf_counter() - t0
    res.failed_images = probe.failed_images + res.failed_images
    return res
