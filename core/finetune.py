"""Step 2: context fine-tuning with a deep-hashing loss, and the unsupervised ITQ head.

CUKDFIR (Reddy et al., arXiv:2207.09070) puts a hash layer on the (distilled) student and
trains it on labelled images of the target context with DCH (Cao et al., CVPR 2018) or CSQ
(Yuan et al., CVPR 2020). Which parts train is a setting (:attr:`FinetuneConfig.train_mode`):

* ``"head"``: only the hash layer, on cached student features of a few augmented views per
  image (the student is frozen, so its outputs are computed once) — seconds on a CPU;
* ``"last_stages"``: the hash layer and the last quarter of the backbone's blocks;
* ``"full"``: the whole network.

Validation: validation images are queries, the (un-augmented) training images the database,
mAP over the whole database (mAP@all) on Hamming ranking; training stops early when it has not
improved for ``patience`` epochs and the best epoch's weights are kept. Runs on one CPU, one
GPU, or under ``torchrun`` (DDP, like :mod:`core.distill`); ``batch_size`` is per process.

Without labels, :func:`fit_itq_head` gives the student an unsupervised PCA + ITQ head (Gong &
Lazebnik, CVPR 2011) fitted on features of unlabelled images.

Model files get ``hash_head = {"kind": "linear" | "itq", "n_bits", "in_dim", "state",
"normalize", "batch_norm", "centres" (CSQ centres or None), "centre_kind", "loss" ("csq" |
"dch" | None), "embedding" (PCA of the re-ranking embedding or None)}`` — read by
:class:`core.encoder.Encoder`.
"""

from __future__ import annotations

import copy
import hashlib
import logging
import math
import os
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

from core.checkpoint import atomic_torch_save, load_student, save_student
from core.data import ImageList
from core.encoder import Encoder, file_model_id, head_input, iter_image_batches
from core.evaluate import EvalResult, evaluate_codes, mean_average_precision
from core.feature_cache import ViewCache, image_key
from core.hash_head import HashHead, pack_codes
from core.imageio import ImageLoadError, load_image
from core.itq import fit_itq, pca, quantization_error
from core.library.search import calibrate_near_duplicate_cosine
from core.losses import CSQLoss, DCHLoss
from core.models.students import Student
from core.preprocess import Augment, augment_view, to_tensor
from core.training import barrier, cosine_lr, dist_setup, image_seed

__all__ = [
    "PRESETS",
    "FinetuneConfig",
    "FinetuneProgress",
    "FinetuneResult",
    "ItqResult",
    "evaluate_model",
    "finetune",
    "fit_itq_head",
    "split_train_val",
    "trainable_blocks",
]

log = logging.getLogger(__name__)

TRAIN_MODES = ("head", "last_stages", "full")
LOSSES = ("csq", "dch")
ModelSource = Student | str | os.PathLike[str]


@dataclass(frozen=True)
class FinetuneConfig:
    """Hyper-parameters of step 2 (all saved in the model file's provenance).

    Attributes:
        loss: ``"csq"`` (default) or ``"dch"``.
        n_bits: code length (16/32/48/64 in the paper; any multiple of 8).
        train_mode: ``"head"``, ``"last_stages"`` or ``"full"`` (module docstring).
        epochs: maximum epochs; ``patience`` epochs without a better validation mAP stop early
            (0 disables early stopping).
        lr: learning rate of the hash layer; the backbone uses ``lr * backbone_lr_scale``.
        batch_size: per process.
        input_size: pixels; ``None`` keeps the student's own input size.
        val_share: share of each class held out for validation when no validation list is
            given (stratified, seeded).
        views: cached augmented views per training image (view 0 is the plain image).
        embed_dim: PCA size of the re-ranking embedding stored with the model (0: raw feature).
        lambda_q: quantization weight (``None``: the loss's paper default).
        dch_gamma: DCH Cauchy scale.
        normalize: L2-normalise student features before the hash layer.
        head_batch_norm: affine-free BatchNorm after the hash layer (balances bits).
    """

    loss: str = "csq"
    n_bits: int = 64
    train_mode: str = "head"
    epochs: int = 60
    lr: float = 1e-3
    backbone_lr_scale: float = 0.1
    weight_decay: float = 1e-5
    warmup_epochs: float = 0.0
    batch_size: int = 64
    input_size: int | None = None
    val_share: float = 0.2
    patience: int = 10
    views: int = 4
    seed: int = 0
    embed_dim: int = 256
    lambda_q: float | None = None
    dch_gamma: float = 20.0
    normalize: bool = True
    head_batch_norm: bool = False
    augment: Augment = field(default_factory=Augment)
    decode_threads: int = 2

    def __post_init__(self) -> None:
        if self.loss not in LOSSES:
            raise ValueError(f"loss must be one of {LOSSES}, got {self.loss!r}")
        if self.train_mode not in TRAIN_MODES:
            raise ValueError(f"train_mode must be one of {TRAIN_MODES}, got {self.train_mode!r}")
        if self.n_bits < 8 or self.n_bits % 8:
            raise ValueError(f"n_bits must be a positive multiple of 8, got {self.n_bits}")
        if not 0.0 <= self.val_share < 1.0:
            raise ValueError(f"val_share must be in [0, 1), got {self.val_share}")
        if self.epochs < 1 or self.views < 1 or self.batch_size < 2:
            raise ValueError("epochs and views must be >= 1 and batch_size >= 2")

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_preset(cls, preset: str, **overrides: Any) -> FinetuneConfig:
        """A config from a speed preset (``fast`` | ``balanced`` | ``thorough``) plus overrides."""
        if preset not in PRESETS:
            raise ValueError(f"unknown preset {preset!r}; choose from {', '.join(PRESETS)}")
        return cls(**{**PRESETS[preset], **overrides})


PRESETS: dict[str, dict[str, Any]] = {
    "fast": {"train_mode": "head", "epochs": 60, "lr": 1e-3, "views": 4, "patience": 10},
    "balanced": {"train_mode": "last_stages", "epochs": 15, "lr": 1e-3, "views": 4,
                 "patience": 4, "backbone_lr_scale": 0.3},
    "thorough": {"train_mode": "full", "epochs": 30, "lr": 1e-3, "views": 8, "patience": 6,
                 "backbone_lr_scale": 0.1},
}


@dataclass(frozen=True)
class FinetuneProgress:
    """One progress report; ``phase`` is ``"features"`` (caching views) or ``"train"``."""

    phase: str
    epoch: int
    epochs: int
    done: int
    total: int
    loss: float | None
    val_map: float | None
    images_per_s: float
    eta_seconds: float | None


@dataclass
class FinetuneResult:
    """What :func:`finetune` did.

    Attributes:
        model_path: the model file (``None`` when stopped before the end).
        best_val_map: best validation mAP@all (``None`` without validation images).
        best_epoch: the epoch whose weights were kept.
        metrics: full validation metrics of the kept weights (``EvalResult.to_dict()``).
        history: one dict per epoch (``epoch``, ``loss``, ``val_map``, ``seconds``).
    """

    model_path: Path | None
    best_val_map: float | None
    best_epoch: int
    epochs_done: int
    stopped: bool
    early_stopped: bool
    wall_seconds: float
    history: list[dict]
    metrics: dict | None
    failed_images: list[str]
    n_train: int
    n_val: int


@dataclass
class ItqResult:
    """What :func:`fit_itq_head` did (``model_path`` is ``None`` when stopped)."""

    model_path: Path | None
    n_images: int
    n_bits: int
    quantization_error: float | None
    wall_seconds: float
    failed_images: list[str]


# --------------------------------------------------------------------------- helpers


def split_train_val(images: ImageList, val_share: float, seed: int = 0) -> tuple[ImageList,
                                                                                ImageList]:
    """Stratified, seeded train/validation split of a labelled list.

    Each class with at least 2 images gives ``round(n * val_share)`` (at least 1) images to
    validation. Unlabelled entries (label ``-1``) are dropped.
    """
    rng = np.random.default_rng(seed)
    labels = np.asarray(images.labels)
    train_idx: list[int] = []
    val_idx: list[int] = []
    for c in np.unique(labels[labels >= 0]):
        idx = np.flatnonzero(labels == c)
        idx = idx[rng.permutation(len(idx))]
        n_val = 0 if len(idx) < 2 or val_share <= 0 else max(1, round(len(idx) * val_share))
        n_val = min(n_val, len(idx) - 1)
        val_idx += idx[:n_val].tolist()
        train_idx += idx[n_val:].tolist()
    return images.subset(sorted(train_idx)), images.subset(sorted(val_idx))


def trainable_blocks(student: Student) -> list[nn.Module]:
    """The backbone's sequential blocks, input to output (``last_stages`` trains the last
    quarter of them, at least one)."""
    bb = student.backbone
    if isinstance(getattr(bb, "features", None), nn.Sequential):
        return list(bb.features)
    if isinstance(getattr(bb, "layers", None), nn.ModuleList):
        return list(bb.layers)
    return [bb]




def _any_rank(flag: bool, world: int, device: torch.device) -> bool:
    """True on every rank when ``flag`` is true on any (keeps DDP ranks in step)."""
    if world <= 1:
        return flag
    t = torch.tensor([1.0 if flag else 0.0], device=device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return bool(t.item() > 0)


def _broadcast(values: list[float], world: int, device: torch.device) -> list[float]:
    if world <= 1:
        return values
    t = torch.tensor(values, dtype=torch.float64, device=device)
    dist.broadcast(t, 0)
    return t.tolist()



def _state_digest(student: Student) -> str:
    h = hashlib.sha1()
    for k, v in student.state_dict().items():
        h.update(k.encode())
        h.update(v.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


def _resolve_model(source: ModelSource) -> tuple[Student, dict, str]:
    """(student, model dict or {}, identity string) of a Student or a model file."""
    if isinstance(source, Student):
        return copy.deepcopy(source), {}, "student:" + _state_digest(source)
    student, d = load_student(source)
    return student, d, "file:" + file_model_id(source)



@torch.no_grad()
def _features(student: nn.Module, x: torch.Tensor, device: torch.device,
              batch_size: int = 128) -> torch.Tensor:
    """Student features ``[N, D]`` float32 (CPU) of uint8 pixels, in eval mode (restored)."""
    was = student.training
    student.eval()
    out = [student(x[i:i + batch_size].to(device)).float().cpu()
           for i in range(0, len(x), batch_size)]
    student.train(was)
    return torch.cat(out) if out else torch.zeros(0, 0)


def _near_duplicate_cosine(features: np.ndarray, embedding: dict | None) -> float:
    """Calibrated near-duplicate cosine of the re-ranking embeddings of ``features`` (the
    encoder's formula: L2-normalise, then the optional PCA, then L2-normalise)."""
    f = features / np.maximum(np.linalg.norm(features, axis=1, keepdims=True), 1e-12)
    if embedding is not None:
        f = (f - embedding["mean"].numpy()) @ embedding["projection"].numpy()
        f /= np.maximum(np.linalg.norm(f, axis=1, keepdims=True), 1e-12)
    return calibrate_near_duplicate_cosine(f)


def _embedding_pca(features: np.ndarray, dim: int) -> dict | None:
    """PCA of L2-normalised ``[N, D]`` features to ``dim`` (``None`` when not reducing)."""
    n, d = features.shape
    dim = min(int(dim), d, max(n - 1, 1))
    if dim <= 0 or dim >= d or n < 2:
        return None
    f = features / np.maximum(np.linalg.norm(features, axis=1, keepdims=True), 1e-12)
    mean, proj = pca(f, dim)
    return {"kind": "pca", "mean": torch.from_numpy(mean.astype(np.float32)),
            "projection": torch.from_numpy(np.ascontiguousarray(proj, dtype=np.float32))}


class _HashNet(nn.Module):
    """Student + input standardisation + hash layer.

    The hash layer sees ``z = (h - mean) / std`` of its input ``h`` (training-set statistics,
    fixed buffers): distilled features are post-ReLU and share a large common component, which
    makes an uncentred linear layer slow to train. On frozen (cached) features ``std`` is
    per-dimension; when the backbone trains it is the RMS entry of ``h``, since dividing by the
    small spread of moving features would amplify the backbone's updates. The affine map is
    folded into the linear layer before saving (:meth:`folded_head_state`), so the model file
    holds a plain :class:`HashHead`. ``from_features`` skips the student (cached features).
    """

    in_mean: torch.Tensor
    in_std: torch.Tensor

    def __init__(self, student: Student, head: HashHead, normalize: bool,
                 from_features: bool) -> None:
        super().__init__()
        self.student = student
        self.head = head
        self.normalize = normalize
        self.from_features = from_features
        self.register_buffer("in_mean", torch.zeros(head.in_dim))
        self.register_buffer("in_std", torch.ones(head.in_dim))

    def set_input_stats(self, features: np.ndarray) -> None:
        """Standardisation statistics from ``[N, D]`` raw student features."""
        h = head_input(torch.from_numpy(np.asarray(features, dtype=np.float32)), self.normalize)
        var = h.var(dim=0, unbiased=False)
        self.in_mean.copy_(h.mean(dim=0))
        if self.from_features:  # frozen features: per-dimension standardisation
            self.in_std.copy_((var + 0.01 * var.mean() + 1e-12).sqrt())
        else:  # a trained backbone moves the features: a fixed, data-independent scale
            self.in_std.fill_(float(h.norm(dim=1).mean() + 1e-12) / math.sqrt(h.shape[1]))

    def hash_outputs(self, f: torch.Tensor) -> torch.Tensor:
        """``[B, D]`` raw student features → ``[B, K]`` hash outputs."""
        return self.head((head_input(f, self.normalize) - self.in_mean) / self.in_std)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.hash_outputs(x if self.from_features else self.student(x))

    @torch.no_grad()
    def folded_head_state(self) -> dict[str, torch.Tensor]:
        """The hash layer's state with the standardisation folded into ``fc``."""
        state = {k: v.detach().clone().cpu() for k, v in self.head.state_dict().items()}
        w = state["fc.weight"] / self.in_std.cpu()
        state["fc.bias"] = state["fc.bias"] - w @ self.in_mean.cpu()
        state["fc.weight"] = w
        return state


def _load_views(path: Path, views: list[int], size: int, cfg: FinetuneConfig):
    try:
        im = load_image(path, draft_size=size * 2)
    except ImageLoadError as exc:
        return None, str(exc)
    seed = image_seed(path, cfg.seed)
    return [augment_view(im, size, cfg.augment, seed, v) for v in views], None


def _fill(cache: ViewCache, paths: Sequence[Path], rows: np.ndarray,
          feats_fn: Callable[[torch.Tensor], np.ndarray], size: int, cfg: FinetuneConfig,
          report: Callable[[int, int], None] | None, should_stop: Callable[[], bool] | None
          ) -> tuple[list[str], bool]:
    """Render missing views of ``rows`` into ``cache``; (failed messages, stopped)."""
    failed: list[str] = []
    todo = [(int(r), [v for v in range(cache.views) if not cache.valid[r, v]]) for r in rows]
    todo = [(r, vs) for r, vs in todo if vs]
    with ThreadPoolExecutor(max(1, cfg.decode_threads)) as pool:
        chunk = max(1, cfg.batch_size // max(1, cache.views))
        for start in range(0, len(todo), chunk):
            part = todo[start:start + chunk]
            loaded = pool.map(lambda rv: _load_views(paths[rv[0]], rv[1],
                                                     size, cfg), part)
            items = []
            for (r, vs), (ims, err) in zip(part, loaded, strict=True):
                if err is not None:
                    failed.append(err)
                    log.warning("skipping unreadable image: %s", err)
                    continue
                items += [(r, v, im) for v, im in zip(vs, ims, strict=True)]
            if items:
                x = to_tensor([im for _, _, im in items])
                f = feats_fn(x)
                px = x.numpy()
                for k, (r, v, _) in enumerate(items):
                    cache.put(r, v, f[k], px[k] if cache.store_pixels else None)
            cache.flush()
            if report:
                report(min(start + chunk, len(todo)), len(todo))
            if should_stop and should_stop():
                return failed, True
    return failed, False


# --------------------------------------------------------------------------- fine-tuning


def finetune(
    config: FinetuneConfig,
    student_or_model_path: ModelSource,
    train: ImageList,
    val: ImageList | None,
    out_dir: str | os.PathLike[str],
    *,
    on_progress: Callable[[FinetuneProgress], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
    resume: bool = True,
    cache_dir: str | os.PathLike[str] | None = None,
    device: str | torch.device | None = None,
    data_description: str = "",
    preset: str | None = None,
    model_name: str = "model.pt",
) -> FinetuneResult:
    """Train a hash layer (and optionally the backbone) on labelled images (step 2).

    Writes ``out_dir/last.pt`` (resumable state, after every epoch and on stop) and, when
    finished, ``out_dir/<model_name>``: the student with its hash head (``kind "linear"``,
    CSQ centres included), an embedding PCA, and provenance (data, classes, method, bits,
    preset, metrics, history).

    Args:
        config: hyper-parameters.
        student_or_model_path: a :class:`Student` or a model file (e.g. a distilled student).
        train: labelled training images (labels ``>= 0``; ``classes`` names them).
        val: validation images; ``None`` splits ``config.val_share`` of ``train`` off
            (stratified, seeded). With no validation images at all, the last epoch is kept.
        out_dir: output folder.
        on_progress, should_stop: callbacks; a stop saves a resumable state and returns.
        resume: continue from ``out_dir/last.pt`` when it matches this configuration.
        cache_dir: view cache parent folder (default ``out_dir/cache``).
        device: default CUDA (per local rank) when available, else CPU.
        data_description: provenance text for the data (e.g. the folder).
        preset: provenance: the preset name the config came from.
    """
    t_start = time.perf_counter()
    cfg = config
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
    if val is None:
        train, val = split_train_val(train, cfg.val_share, cfg.seed)
    train_l = [(p, lab) for p, lab in zip(train.paths, train.labels, strict=True) if lab >= 0]
    if len(train_l) < 2:
        raise ValueError("fine-tuning needs at least 2 labelled training images")
    paths = [Path(p) for p, _ in train_l]
    labels = np.array([lab for _, lab in train_l], dtype=np.int64)
    n_classes = max(len(train.classes), int(labels.max()) + 1,
                    max((lab for lab in val.labels), default=-1) + 1)
    if len(np.unique(labels)) < 2:
        raise ValueError("fine-tuning needs at least 2 classes")
    vpaths = [Path(p) for p, lab in zip(val.paths, val.labels, strict=True) if lab >= 0]
    vlabels = np.array([lab for lab in val.labels if lab >= 0], dtype=np.int64)

    student, base, base_id = _resolve_model(student_or_model_path)
    size = int(cfg.input_size or student.preprocess.input_size)
    if size != student.preprocess.input_size:
        student.preprocess = student.preprocess.with_size(size)
    torch.manual_seed(cfg.seed)
    student = student.to(device)
    head_mode = cfg.train_mode == "head"

    # ---- view caches: features of the frozen student (head) or view pixels (otherwise)
    dim = student.feature_dim if head_mode else 1
    spec = {"purpose": "finetune", "size": size, "augment": cfg.augment.to_dict(),
            "seed": cfg.seed, "student": base_id if head_mode else None,
            "pixels": not head_mode, "view_seed": "fingerprint"}
    cache_root = Path(cache_dir) if cache_dir else out_dir / "cache"
    keys = [image_key(p) for p in paths]
    vkeys = [image_key(p) for p in vpaths]
    caches: dict[str, ViewCache] = {}
    for split, k, views in (("train", keys, cfg.views), ("val", vkeys, 1)):
        if not k:
            continue
        sp = {**spec, "split": split}
        if rank == 0:
            caches[split] = ViewCache(cache_root, sp, k, views, dim, size, not head_mode)
    barrier(world)
    if rank != 0:
        for split, k, views in (("train", keys, cfg.views), ("val", vkeys, 1)):
            if k:
                caches[split] = ViewCache(cache_root, {**spec, "split": split}, k, views, dim,
                                          size, not head_mode, create=False)

    def feats_fn(x: torch.Tensor) -> np.ndarray:
        if head_mode:
            return _features(student, x, device, cfg.batch_size).numpy()
        return np.zeros((len(x), 1), np.float32)

    t_feat = time.perf_counter()
    n_total = len(paths) + len(vpaths)
    done_before = [0]

    def report(done: int, total: int) -> None:
        if on_progress and rank == 0:
            el = time.perf_counter() - t_feat
            d = done_before[0] + done
            rate = d / el if el > 0 else 0.0
            on_progress(FinetuneProgress("features", 0, cfg.epochs, d, n_total, None, None,
                                         rate, (n_total - d) / rate if rate else None))

    failed: list[str] = []
    stopped = False
    for split in ("train", "val"):
        if split not in caches:
            continue
        c = caches[split]
        miss = c.missing_rows()[rank::world]
        f, stopped = _fill(c, paths if split == "train" else vpaths, miss, feats_fn, size, cfg,
                           report, should_stop)
        failed += f
        done_before[0] += len(paths) if split == "train" else 0
        stopped = _any_rank(stopped, world, device)
        if stopped:
            break
    barrier(world)
    if stopped:
        if created_pg:
            dist.destroy_process_group()
        return FinetuneResult(None, None, 0, 0, True, False, time.perf_counter() - t_start, [],
                              None, failed, len(paths), len(vpaths))
    tc = caches["train"]
    usable = np.flatnonzero(np.asarray(tc.valid, dtype=bool).all(axis=1))
    if len(usable) < 2:
        raise ValueError("fewer than 2 training images could be read")
    vc = caches.get("val")
    v_usable = (np.flatnonzero(np.asarray(vc.valid, dtype=bool).all(axis=1)) if vc is not None
                else np.zeros(0, np.int64))
    has_val = len(v_usable) > 0

    def db_features() -> tuple[np.ndarray, np.ndarray | None]:
        """Student features of train view 0 and of val (current weights)."""
        if head_mode:
            fd = np.asarray(tc.feats[usable, 0], dtype=np.float32)
            fq = np.asarray(vc.feats[v_usable, 0], dtype=np.float32) if has_val else None
            return fd, fq
        fd = _features(student, torch.from_numpy(np.asarray(tc.pixels[usable, 0])), device,
                       cfg.batch_size).numpy()
        fq = (_features(student, torch.from_numpy(np.asarray(vc.pixels[v_usable, 0])), device,
                        cfg.batch_size).numpy() if has_val else None)
        return fd, fq

    # ---- model, loss, optimiser
    head = HashHead(student.feature_dim, cfg.n_bits, batch_norm=cfg.head_batch_norm)
    net = _HashNet(student, head, cfg.normalize, from_features=head_mode).to(device)
    net.set_input_stats(db_features()[0])  # replaced by the saved buffers when resuming
    for p in student.parameters():
        p.requires_grad_(cfg.train_mode == "full")
    blocks = trainable_blocks(student)
    train_blocks: list[nn.Module] = []
    if cfg.train_mode == "last_stages":
        train_blocks = blocks[-max(1, math.ceil(len(blocks) / 4)):]
        for b in train_blocks:
            for p in b.parameters():
                p.requires_grad_(True)
    backbone_params = [p for p in student.parameters() if p.requires_grad]
    groups = [{"params": list(head.parameters()), "lr_scale": 1.0}]
    if backbone_params:
        groups.append({"params": backbone_params, "lr_scale": cfg.backbone_lr_scale})
    opt = torch.optim.AdamW(groups, lr=cfg.lr, weight_decay=cfg.weight_decay)
    if cfg.loss == "csq":
        lq = {} if cfg.lambda_q is None else {"lambda_q": cfg.lambda_q}
        crit: nn.Module = CSQLoss(n_classes, cfg.n_bits, seed=cfg.seed, **lq).to(device)
    else:
        lq = {} if cfg.lambda_q is None else {"lambda_q": cfg.lambda_q}
        crit = DCHLoss(cfg.n_bits, gamma=cfg.dch_gamma, **lq)

    def set_train_mode() -> None:
        # Below "full", BatchNorm keeps its running statistics (eval mode) while its affine
        # parameters train: small context batches would otherwise skew statistics that the
        # frozen layers were distilled with, and train/eval outputs would differ.
        net.train()
        if cfg.train_mode != "full":
            student.eval()
            for b in train_blocks:
                b.train()
                for m in b.modules():
                    if isinstance(m, nn.modules.batchnorm._BatchNorm):
                        m.eval()

    def trained_state() -> dict[str, torch.Tensor]:
        return {k: v.detach().clone() for k, v in net.state_dict().items()}

    n_mine = len(usable) // world  # equal share per rank keeps DDP ranks in step
    steps_per_epoch = max(1, n_mine // cfg.batch_size
                          + (1 if n_mine % cfg.batch_size >= 2 else 0))
    total_steps = steps_per_epoch * cfg.epochs
    warmup = int(cfg.warmup_epochs * steps_per_epoch)

    start_epoch, start_batch, history = 0, 0, []
    partial = [0.0, 0]  # loss sum and batches of an interrupted epoch
    best_map, best_epoch, bad_epochs, best_state = -1.0, 0, 0, None
    state_path = out_dir / "last.pt"
    resume_key = {**{k: v for k, v in cfg.to_dict().items() if k != "epochs"},
                  "base": base_id, "n_train": len(paths), "n_val": len(vpaths)}
    if resume and state_path.exists():
        st = torch.load(state_path, map_location="cpu", weights_only=True)
        if st.get("resume_key") != resume_key:
            log.warning("%s was written with another configuration; starting afresh", state_path)
        else:
            net.load_state_dict(st["model"])
            opt.load_state_dict(st["optimizer"])
            start_epoch, start_batch = int(st["epoch"]), int(st["batch"])
            history = list(st["history"])
            best_map, best_epoch = float(st["best_map"]), int(st["best_epoch"])
            bad_epochs = int(st["bad_epochs"])
            best_state = st.get("best_state")
            partial = st.get("partial_loss", [0.0, 0])
            log.info("resuming at epoch %d batch %d", start_epoch, start_batch)
    train_net: nn.Module = net
    if world > 1:
        train_net = nn.parallel.DistributedDataParallel(
            net, device_ids=[device.index] if device.type == "cuda" else None)

    def save_state(epoch: int, batch: int, partial: tuple[float, int] = (0.0, 0)) -> None:
        if rank == 0:
            atomic_torch_save({"model": net.state_dict(), "optimizer": opt.state_dict(),
                               "epoch": epoch, "batch": batch, "history": history,
                               "partial_loss": list(partial),
                               "best_map": best_map, "best_epoch": best_epoch,
                               "bad_epochs": bad_epochs, "best_state": best_state,
                               "resume_key": resume_key}, state_path)

    @torch.no_grad()
    def codes_of(f: np.ndarray) -> np.ndarray:
        was = head.training
        head.eval()
        u = torch.cat([net.hash_outputs(torch.from_numpy(f[i:i + 1024]).to(device)).cpu()
                       for i in range(0, len(f), 1024)])
        head.train(was)
        return pack_codes(u)

    def validate() -> tuple[float, np.ndarray, np.ndarray | None]:
        fd, fq = db_features()
        if fq is None:
            return math.nan, fd, None
        m = mean_average_precision(codes_of(fq), codes_of(fd), vlabels[v_usable],
                                   labels[usable])
        return m, fd, fq

    early = False
    t_train = time.perf_counter()
    seen = 0
    last_val: float | None = history[-1].get("val_map") if history else None
    for epoch in range(start_epoch, cfg.epochs):
        g = np.random.default_rng([cfg.seed, epoch])
        perm = usable[g.permutation(len(usable))]
        view_of = g.integers(0, cfg.views, size=len(usable))
        mine = np.arange(len(perm))[rank::world][:n_mine]
        set_train_mode()
        t_ep, loss_sum, n_b = time.perf_counter(), 0.0, 0
        first = start_batch if epoch == start_epoch else 0
        if first:
            loss_sum, n_b = float(partial[0]), int(partial[1])
        for b in range(first, steps_per_epoch):
            sel = mine[b * cfg.batch_size:(b + 1) * cfg.batch_size]
            if len(sel) >= 2:  # BatchNorm needs 2; DCH needs pairs
                rows, views = perm[sel], view_of[sel]
                feats, pix = tc.get(rows, views)
                x = torch.from_numpy(feats if head_mode else pix).to(device, non_blocking=True)
                y = torch.from_numpy(labels[rows]).to(device)
                if cfg.loss == "dch":
                    y = F.one_hot(y, n_classes).float()
                step = epoch * steps_per_epoch + b
                for grp in opt.param_groups:
                    grp["lr"] = cosine_lr(step, total_steps, warmup, cfg.lr) * grp["lr_scale"]
                loss = crit(train_net(x), y)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                loss_sum += loss.item()
                n_b += 1
                seen += len(sel)
                if on_progress and rank == 0:
                    el = time.perf_counter() - t_train
                    rate = seen / el if el > 0 else 0.0
                    left = (total_steps - step - 1) * cfg.batch_size
                    on_progress(FinetuneProgress("train", epoch + 1, cfg.epochs, b + 1,
                                                 steps_per_epoch, loss.item(), last_val,
                                                 rate * world, left / rate if rate else None))
            if _any_rank(bool(should_stop and should_stop()), world, device):
                stopped = True
                save_state(epoch, b + 1, (loss_sum, n_b))
                break
        if stopped:
            break
        rec: dict[str, Any] = {"epoch": epoch + 1, "loss": loss_sum / max(1, n_b)}
        vmap = validate()[0] if rank == 0 and has_val else math.nan
        vmap = _broadcast([vmap], world, device)[0]
        if has_val:
            rec["val_map"] = last_val = float(vmap)
            if vmap > best_map + 1e-6:
                best_map, best_epoch, bad_epochs = float(vmap), epoch + 1, 0
                best_state = trained_state()
            else:
                bad_epochs += 1
        rec["seconds"] = time.perf_counter() - t_ep
        history.append(rec)
        log.info("epoch %d/%d loss %.4f%s", epoch + 1, cfg.epochs, rec["loss"],
                 f" val mAP {rec['val_map']:.4f}" if "val_map" in rec else "")
        early = has_val and cfg.patience > 0 and bad_epochs >= cfg.patience
        save_state(epoch + 1, 0)
        if early:
            log.info("early stop: no better validation mAP for %d epochs", cfg.patience)
            break

    model_path: Path | None = None
    metrics: dict | None = None
    if not stopped and rank == 0:
        if best_state is not None:
            net.load_state_dict(best_state)
        else:
            best_epoch = len(history)
        net.eval()
        fd, fq = db_features()
        if fq is not None:
            res = evaluate_codes(codes_of(fq), codes_of(fd), vlabels[v_usable], labels[usable],
                                 map_k=[100])
            metrics = res.to_dict()
            for k in ("pr_precision", "pr_recall"):
                metrics.pop(k, None)
        hash_head = {
            "kind": "linear", "n_bits": cfg.n_bits, "in_dim": student.feature_dim,
            "state": net.folded_head_state(),
            "batch_norm": cfg.head_batch_norm, "normalize": cfg.normalize,
            "centres": crit.centres.detach().cpu() if isinstance(crit, CSQLoss) else None,
            "centre_kind": crit.centre_kind if isinstance(crit, CSQLoss) else None,
            "loss": cfg.loss, "embedding": _embedding_pca(fd, cfg.embed_dim),
        }
        hash_head["near_duplicate_cosine"] = _near_duplicate_cosine(fd, hash_head["embedding"])
        model_path = out_dir / model_name
        for p in student.parameters():
            p.requires_grad_(True)
        save_student(model_path, student.cpu().eval(), teacher=base.get("teacher"),
                     hash_head=hash_head, provenance={
                         "step": "finetune", "method": cfg.loss, "bits": cfg.n_bits,
                         "preset": preset, "train_mode": cfg.train_mode,
                         "data": data_description or str(Path(os.path.commonpath(
                             [str(p) for p in paths])).name),
                         "classes": list(train.classes) or [str(c) for c in range(n_classes)],
                         "n_train": len(usable), "n_val": len(v_usable),
                         "base_model": base_id, "base_provenance": base.get("provenance"),
                         "config": cfg.to_dict(), "seed": cfg.seed,
                         "epochs": len(history), "best_epoch": best_epoch,
                         "val_map": best_map if has_val else None, "metrics": metrics,
                         "history": history, "wall_seconds": time.perf_counter() - t_start})
    barrier(world)
    if created_pg:
        dist.destroy_process_group()
    return FinetuneResult(model_path, best_map if has_val and history else None, best_epoch,
                          len(history), stopped, early, time.perf_counter() - t_start, history,
                          metrics, failed, len(paths), len(vpaths))


# --------------------------------------------------------------------------- evaluation


def evaluate_model(
    encoder: Encoder,
    query: ImageList,
    database: ImageList,
    *,
    map_k: int | Sequence[int] | None = (100,),
    on_progress: Callable[[int, int], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> EvalResult | None:
    """Hamming-ranking retrieval metrics of an encoder on labelled query/database lists.

    Unreadable or unlabelled images are left out. Returns ``None`` when stopped.
    """
    total = len(query) + len(database)
    offset = [0]

    def prog(done: int, _n: int) -> None:
        if on_progress:
            on_progress(offset[0] + done, total)

    out = []
    for lst in (query, database):
        keep = [i for i, lab in enumerate(lst.labels) if lab >= 0]
        enc = encoder.encode_paths([lst.paths[i] for i in keep], on_progress=prog,
                                   should_stop=should_stop)
        offset[0] += len(lst)
        if should_stop and should_stop():
            return None
        lab_of = {Path(lst.paths[i]): lst.labels[i] for i in keep}
        out.append((enc.codes, np.array([lab_of[p] for p in enc.paths], dtype=np.int64)))
    (qc, ql), (dc, dl) = out
    if len(qc) == 0 or len(dc) == 0:
        raise ValueError("no readable labelled query or database images")
    return evaluate_codes(qc, dc, ql, dl, map_k=map_k)


# --------------------------------------------------------------------------- ITQ head


def fit_itq_head(
    model: ModelSource,
    images: ImageList | Sequence[str | os.PathLike[str]],
    out_path: str | os.PathLike[str],
    *,
    n_bits: int = 64,
    embed_dim: int = 256,
    seed: int = 0,
    n_iter: int = 50,
    input_size: int | None = None,
    batch_size: int = 64,
    threads: int = 2,
    device: str | torch.device = "cpu",
    on_progress: Callable[[int, int], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
    data_description: str = "",
) -> ItqResult:
    """Give a student an unsupervised PCA + ITQ hash head (Gong & Lazebnik, CVPR 2011).

    Features of the whole (squash-resized) images are L2-normalised, then PCA + ITQ is fitted
    on them; the model file at ``out_path`` gets ``hash_head["kind"] == "itq"`` and an
    embedding PCA to ``embed_dim`` (0: keep the raw feature).

    Args:
        model: a :class:`Student` or a model file.
        images: unlabelled images (labels are ignored).
        on_progress: ``on_progress(done, total)`` images; ``should_stop`` polled per batch.
    """
    t0 = time.perf_counter()
    student, base, base_id = _resolve_model(model)
    if input_size and input_size != student.preprocess.input_size:
        student.preprocess = student.preprocess.with_size(int(input_size))
    device = torch.device(device)
    student = student.to(device).eval()
    paths = list(images.paths if isinstance(images, ImageList) else images)
    if n_bits % 8 or not 8 <= n_bits <= student.feature_dim:
        raise ValueError(f"n_bits must be a multiple of 8 in [8, {student.feature_dim}]")
    feats: list[np.ndarray] = []
    failed: list[str] = []
    done = 0
    for idx, px, bad in iter_image_batches(paths, student.preprocess.input_size, batch_size,
                                           threads):
        failed += [msg for _, msg in bad]
        if px is not None:
            feats.append(_features(student, px, device, batch_size).numpy())
        done += len(idx) + len(bad)
        if on_progress:
            on_progress(done, len(paths))
        if should_stop and should_stop():
            return ItqResult(None, done, n_bits, None, time.perf_counter() - t0, failed)
    f = np.concatenate(feats) if feats else np.zeros((0, student.feature_dim), np.float32)
    if len(f) < 2:
        raise ValueError("ITQ needs at least 2 readable images")
    fn = f / np.maximum(np.linalg.norm(f, axis=1, keepdims=True), 1e-12)
    itq = fit_itq(fn, n_bits, n_iter=n_iter, seed=seed)
    qerr = quantization_error(itq.transform(fn))
    hash_head = {"kind": "itq", "n_bits": n_bits, "in_dim": student.feature_dim,
                 "state": itq.to_state(), "normalize": True, "batch_norm": False,
                 "centres": None, "centre_kind": None, "loss": None,
                 "embedding": _embedding_pca(f, embed_dim)}
    hash_head["near_duplicate_cosine"] = _near_duplicate_cosine(f, hash_head["embedding"])
    out_path = Path(out_path)
    save_student(out_path, student.cpu().eval(), teacher=base.get("teacher"),
                 hash_head=hash_head, provenance={
                     "step": "itq", "method": "itq", "bits": n_bits,
                     "data": data_description or (str(Path(os.path.commonpath(
                         [str(p) for p in paths])).name) if paths else ""),
                     "n_images": len(f), "base_model": base_id,
                     "base_provenance": base.get("provenance"), "seed": seed,
                     "quantization_error": qerr, "wall_seconds": time.perf_counter() - t0})
    return ItqResult(out_path, len(f), n_bits, qerr, time.perf_counter() - t0, failed)

