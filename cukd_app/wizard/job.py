"""The retrain job: optional step 1, step 2, and the new-vs-current comparison (Qt-free).

:func:`run_retrain` is what the wizard's training page runs on a worker thread. Step 2 is
:func:`core.finetune.finetune` with the config of :meth:`RetrainPlan.finetune_config` — the
same call, config and split as ``cukd finetune --from-folder DIR --preset P --loss L --bits
B``, so the wizard and the command line write the same model file. Everything is written
under ``plan.work_dir``; the library, its index and the current model file are never touched
(a cancelled or failed run leaves them as they were).

The comparison uses the split the new model was validated on: validation images are the
queries, training images the database, mAP over the whole database (mAP@all) on Hamming
ranking and the precision–recall curve over Hamming radii (:func:`core.evaluate
.evaluate_codes`), for the new model and for the current one (any
:class:`core.library.ImageEncoder`).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from core.data import ImageList
from core.evaluate import EvalResult, evaluate_codes, hamming_distance
from core.finetune import FinetuneConfig, FinetuneProgress, FinetuneResult, finetune
from core.imageio import ImageLoadError, load_image

__all__ = [
    "DISTILL_EPOCHS",
    "PRECISION_K",
    "ExampleQuery",
    "RetrainEvent",
    "RetrainOutcome",
    "RetrainPlan",
    "encode_list",
    "evaluate_encoder",
    "run_retrain",
]

logger = logging.getLogger(__name__)

#: Step-1 epochs per preset (distillation from the teacher on the library's images).
DISTILL_EPOCHS = {"fast": 4, "balanced": 8, "thorough": 20}
#: Images given to step 1 at most (spread over the library).
DISTILL_MAX_IMAGES = 20000
#: Cut-offs of precision@k in the comparison (the result page shows the one that can differ).
PRECISION_K = (10, 100)


@dataclass(frozen=True)
class RetrainPlan:
    """Everything one run needs (built by the wizard from its pages).

    Attributes:
        train, val: the stratified, seeded split of the context.
        preset: ``fast`` | ``balanced`` | ``thorough``.
        loss: ``csq`` | ``dch``; ``n_bits``: 16/32/48/64.
        base_model: model file to start from (the current or the default model).
        work_dir: scratch folder (training state, caches, the new model file).
        description: provenance text for the data (the context folder).
        val_share, seed: the split's settings (saved in the config).
        distill_images: unlabelled library images for step 1 (empty: no step 1).
        overrides: further :class:`FinetuneConfig` fields (tests use short runs).
        examples: example queries to show.
        distill_overrides: further :class:`core.distill.DistillConfig` fields.
        teacher: a built teacher module for step 1 (default: the installed one).
    """

    train: ImageList
    val: ImageList
    preset: str
    loss: str
    n_bits: int
    base_model: Path
    work_dir: Path
    description: str
    val_share: float = 0.2
    seed: int = 0
    distill_images: tuple[Path, ...] = ()
    overrides: tuple[tuple[str, Any], ...] = ()
    examples: int = 4
    distill_overrides: tuple[tuple[str, Any], ...] = ()
    teacher: Any = field(default=None, compare=False, repr=False)

    def finetune_config(self) -> FinetuneConfig:
        """The step-2 config (as ``cukd finetune`` builds it from the same options)."""
        return FinetuneConfig.from_preset(
            self.preset, loss=self.loss, n_bits=self.n_bits, val_share=self.val_share,
            seed=self.seed, **dict(self.overrides))


@dataclass(frozen=True)
class RetrainEvent:
    """A progress report: ``phase`` is ``distill``, ``features``, ``train``, ``evaluate``
    or ``log``; ``fraction`` of the whole run in [0, 1]; ``progress`` the fine-tuning
    report when there is one."""

    phase: str
    text: str = ""
    fraction: float | None = None
    eta_seconds: float | None = None
    progress: FinetuneProgress | None = None
    epoch_done: dict | None = None


@dataclass(frozen=True)
class ExampleQuery:
    """A validation image and the top database images of each model (``(path, relevant)``)."""

    query: Path
    label: str
    new_hits: tuple[tuple[Path, bool], ...]
    current_hits: tuple[tuple[Path, bool], ...]


@dataclass
class RetrainOutcome:
    """What :func:`run_retrain` did (``model_path`` is ``None`` when stopped).

    ``n_classes`` and ``smallest_class`` describe what the comparison covers: the classes
    of the split and the training images (the database) of its smallest class.
    """

    model_path: Path | None
    stopped: bool
    finetune: FinetuneResult | None = None
    new_eval: EvalResult | None = None
    current_eval: EvalResult | None = None
    examples: list[ExampleQuery] = field(default_factory=list)
    train_seconds: float = 0.0
    wall_seconds: float = 0.0
    failed_images: list[str] = field(default_factory=list)
    distinct_codes: int = 0
    n_classes: int = 0
    smallest_class: int = 0

    @property
    def collapsed(self) -> bool:
        """Whether the new model gives (almost) every image the same code: its mAP then
        only reflects tie order, and it must not be used."""
        return self.new_eval is not None and 0 < self.distinct_codes <= 2


def encode_list(encoder: Any, paths: Sequence[Path], *, batch_size: int = 32,
                should_stop: Callable[[], bool] | None = None,
                on_progress: Callable[[int, int], None] | None = None,
                ) -> tuple[np.ndarray, np.ndarray] | None:
    """Codes ``uint8 [N_ok, n_bits/8]`` and the indices of the readable ``paths``.

    Uses ``encoder.encode_paths`` when the encoder has it (:class:`core.encoder.Encoder`),
    otherwise decodes the images and calls ``encoder.encode`` (any ImageEncoder). ``None``
    when stopped.
    """
    if hasattr(encoder, "encode_paths"):
        out = encoder.encode_paths(list(paths), on_progress=on_progress,
                                   should_stop=should_stop)
        if should_stop and should_stop():
            return None
        pos = {Path(p): i for i, p in enumerate(paths)}
        return out.codes, np.array([pos[Path(p)] for p in out.paths], dtype=np.int64)
    size = int(getattr(encoder, "input_size", 224))
    codes: list[np.ndarray] = [np.zeros((0, encoder.n_bits // 8), np.uint8)]
    ok: list[int] = []
    for start in range(0, len(paths), batch_size):
        ims, idx = [], []
        for i in range(start, min(len(paths), start + batch_size)):
            try:
                ims.append(load_image(paths[i], draft_size=size))
                idx.append(i)
            except ImageLoadError as exc:
                logger.warning("cannot encode %s", exc)
        if ims:
            codes.append(encoder.encode(ims)[0])
            ok += idx
        if on_progress:
            on_progress(min(len(paths), start + batch_size), len(paths))
        if should_stop and should_stop():
            return None
    return np.concatenate(codes), np.asarray(ok, dtype=np.int64)


@dataclass(frozen=True)
class _Coded:
    q_codes: np.ndarray
    q_idx: np.ndarray
    d_codes: np.ndarray
    d_idx: np.ndarray


def _code_split(encoder: Any, val: ImageList, train: ImageList,
                should_stop: Callable[[], bool] | None,
                on_progress: Callable[[int, int], None] | None) -> _Coded | None:
    n = len(val) + len(train)

    def part(offset: int) -> Callable[[int, int], None] | None:
        return None if on_progress is None else (lambda d, _t: on_progress(offset + d, n))

    q = encode_list(encoder, list(val.paths), should_stop=should_stop, on_progress=part(0))
    if q is None:
        return None
    d = encode_list(encoder, list(train.paths), should_stop=should_stop,
                    on_progress=part(len(val)))
    if d is None:
        return None
    return _Coded(q[0], q[1], d[0], d[1])


def evaluate_encoder(encoder: Any, val: ImageList, train: ImageList, *,
                     should_stop: Callable[[], bool] | None = None,
                     on_progress: Callable[[int, int], None] | None = None,
                     ) -> tuple[EvalResult, _Coded] | None:
    """Validation metrics of ``encoder``: ``val`` queries against the ``train`` database."""
    coded = _code_split(encoder, val, train, should_stop, on_progress)
    if coded is None:
        return None
    ql = np.asarray(val.labels, dtype=np.int64)[coded.q_idx]
    dl = np.asarray(train.labels, dtype=np.int64)[coded.d_idx]
    if len(ql) == 0 or len(dl) == 0:
        raise ValueError("no readable validation or training images")
    return evaluate_codes(coded.q_codes, coded.d_codes, ql, dl, map_k=[100],
                          precision_k=PRECISION_K), coded


def _examples(val: ImageList, train: ImageList, new: _Coded, cur: _Coded | None, n: int,
              seed: int, top: int = 5) -> list[ExampleQuery]:
    """One validation query per class (the first ``n`` classes), seeded choice."""
    rng = np.random.default_rng(seed)
    vl = np.asarray(val.labels)
    tl = np.asarray(train.labels)
    out: list[ExampleQuery] = []
    for c in range(len(val.classes) or int(vl.max()) + 1):
        if len(out) >= n:
            break
        cand = [i for i in new.q_idx.tolist() if vl[i] == c
                and (cur is None or i in set(cur.q_idx.tolist()))]
        if not cand:
            continue
        qi = int(cand[int(rng.integers(len(cand)))])

        def hits(coded: _Coded, qi: int = qi, c: int = c) -> tuple[tuple[Path, bool], ...]:
            row = int(np.flatnonzero(coded.q_idx == qi)[0])
            dist = hamming_distance(coded.q_codes[row:row + 1], coded.d_codes)[0]
            order = np.argsort(dist, kind="stable")[:top]
            return tuple((Path(train.paths[coded.d_idx[j]]), bool(tl[coded.d_idx[j]] == c))
                         for j in order)

        name = val.classes[c] if c < len(val.classes) else str(c)
        out.append(ExampleQuery(Path(val.paths[qi]), name, hits(new),
                                hits(cur) if cur is not None else ()))
    return out


def _epoch_text(rec: dict) -> str:
    vm = rec.get("val_map")
    return (f"epoch {rec['epoch']}: loss {rec['loss']:.4f}"
            + (f", validation mAP {vm:.4f}" if vm is not None else ""))


def _distill_step(plan: RetrainPlan, emit: Callable[[RetrainEvent], None],
                  should_stop: Callable[[], bool] | None) -> Path | None:
    """Step 1 on the library's images; the new student file (``None`` when stopped)."""
    from core.distill import DistillConfig, distill

    emit(RetrainEvent("log", f"Step 1: distilling a student from the teacher on "
                             f"{len(plan.distill_images)} library images"))

    def prog(p: Any) -> None:
        frac = 0.3 * (p.epoch - 1 + p.done / max(1, p.total)) / max(1, p.epochs) \
            if p.phase == "train" else 0.0
        emit(RetrainEvent("distill", f"Step 1 {p.phase} {p.done}/{p.total}", frac,
                          p.eta_seconds))

    cfg = DistillConfig(**{"epochs": DISTILL_EPOCHS[plan.preset], "seed": plan.seed,
                           **dict(plan.distill_overrides)})
    res = distill(cfg, list(plan.distill_images), plan.work_dir / "distill", teacher=plan.teacher,
                  on_progress=prog, should_stop=should_stop, data_description="library images")
    return None if res.stopped else res.model_path


def run_retrain(
    plan: RetrainPlan, current_encoder: Any | None, *,
    on_progress: Callable[[RetrainEvent], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> RetrainOutcome:
    """Run the plan: [step 1], step 2, then compare the new and the current model.

    Args:
        plan: what to train.
        current_encoder: the library's active model (compared on the same split), or None.
        on_progress: receives :class:`RetrainEvent` (worker thread).
        should_stop: polled between batches; a stop returns ``stopped=True`` within seconds.
    """
    t0 = time.perf_counter()

    def emit(ev: RetrainEvent) -> None:
        if on_progress is not None:
            on_progress(ev)

    base: Path = plan.base_model
    start = 0.0
    if plan.distill_images:
        distilled = _distill_step(plan, emit, should_stop)
        if distilled is None:
            return RetrainOutcome(None, True, wall_seconds=time.perf_counter() - t0)
        base, start = distilled, 0.3
    cfg = plan.finetune_config()
    emit(RetrainEvent("log", f"Step 2: {cfg.loss.upper()} {cfg.n_bits} bits, preset "
                             f"{plan.preset} ({cfg.train_mode}), {len(plan.train)} training and "
                             f"{len(plan.val)} validation images"))
    span = 0.85 - start
    epoch = [0, 0.0, 0]  # current epoch, its loss sum and batches

    def prog(p: FinetuneProgress) -> None:
        if p.phase == "features":
            frac = start + 0.25 * span * p.done / max(1, p.total)
        else:
            frac = start + span * (0.25 + 0.75 * ((p.epoch - 1) + p.done / max(1, p.total))
                                   / max(1, p.epochs))
            if p.epoch != epoch[0]:
                if epoch[0] and epoch[2]:  # the previous epoch ended (and was validated)
                    rec = {"epoch": epoch[0], "loss": epoch[1] / epoch[2],
                           "val_map": p.val_map}
                    emit(RetrainEvent("log", _epoch_text(rec), epoch_done=rec))
                epoch[:] = [p.epoch, 0.0, 0]
            if p.loss is not None:
                epoch[1] += p.loss
                epoch[2] += 1
        emit(RetrainEvent(p.phase, "", frac, p.eta_seconds, p))

    t_train = time.perf_counter()
    ft = finetune(cfg, base, plan.train, plan.val, plan.work_dir / "finetune",
                  on_progress=prog, should_stop=should_stop, resume=False,
                  data_description=plan.description, preset=plan.preset)
    train_s = time.perf_counter() - t_train
    for h in ft.history:
        if h["epoch"] >= epoch[0]:  # the last epoch (and any the callbacks did not see)
            emit(RetrainEvent("log", _epoch_text(h), epoch_done=dict(h)))
    if ft.stopped or ft.model_path is None:
        return RetrainOutcome(None, True, ft, train_seconds=train_s,
                              wall_seconds=time.perf_counter() - t0,
                              failed_images=ft.failed_images)
    if ft.early_stopped:
        emit(RetrainEvent("log", f"stopped early after epoch {ft.epochs_done}; kept epoch "
                                 f"{ft.best_epoch}"))
    from core.encoder import Encoder

    new_enc = Encoder.from_file(ft.model_path)
    n_models = 2 if current_encoder is not None else 1

    def eval_prog(k: int) -> Callable[[int, int], None]:
        def f(done: int, total: int) -> None:
            emit(RetrainEvent("evaluate", "Comparing with the current model",
                              0.85 + 0.15 * (k + done / max(1, total)) / n_models))
        return f

    emit(RetrainEvent("log", "Evaluating the new model on the validation split"))
    new = evaluate_encoder(new_enc, plan.val, plan.train, should_stop=should_stop,
                           on_progress=eval_prog(0))
    if new is None:
        return RetrainOutcome(None, True, ft, train_seconds=train_s,
                              wall_seconds=time.perf_counter() - t0)
    cur = None
    if current_encoder is not None:
        emit(RetrainEvent("log", "Evaluating the current model on the same split"))
        cur = evaluate_encoder(current_encoder, plan.val, plan.train, should_stop=should_stop,
                               on_progress=eval_prog(1))
        if cur is None:
            return RetrainOutcome(None, True, ft, train_seconds=train_s,
                                  wall_seconds=time.perf_counter() - t0)
    examples = _examples(plan.val, plan.train, new[1], cur[1] if cur else None,
                         plan.examples, plan.seed)
    emit(RetrainEvent("log", f"validation mAP: new {new[0].map:.4f}"
                             + (f", current {cur[0].map:.4f}" if cur else ""), 1.0))
    distinct = len(np.unique(new[1].d_codes, axis=0)) if len(new[1].d_codes) else 0
    if distinct <= 2:
        emit(RetrainEvent("log", f"warning: the new model gives the training images only "
                                 f"{distinct} distinct code(s)"))
    db_labels = np.asarray(plan.train.labels, dtype=np.int64)[new[1].d_idx]
    per_class = np.bincount(db_labels[db_labels >= 0]) if len(db_labels) else np.zeros(0, int)
    classes = set(np.asarray(plan.val.labels).tolist()) | set(db_labels.tolist())
    return RetrainOutcome(ft.model_path, False, ft, new[0], cur[0] if cur else None, examples,
                          train_s, time.perf_counter() - t0, ft.failed_images, distinct,
                          len(classes - {-1}),
                          int(per_class[per_class > 0].min()) if per_class.any() else 0)
