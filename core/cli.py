"""The ``cukd`` command line."""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

__all__ = ["ProgressBar", "main"]

log = logging.getLogger("cukd")


class ProgressBar:
    """A single-line terminal progress bar with rate and ETA (written to stderr).

    When the stream is not a terminal (a log file, CI), it writes one plain line per
    ``log_interval`` seconds, per phase change and at the end, instead of redrawing a line.
    """

    def __init__(self, stream=None, width: int = 30, min_interval: float = 0.2,
                 log_interval: float = 10.0) -> None:
        self.stream = stream or sys.stderr
        self.width = width
        isatty = getattr(self.stream, "isatty", None)
        self.tty = bool(isatty and isatty())
        self.min_interval = min_interval if self.tty else log_interval
        self._last = 0.0
        self._label = ""
        self._open = False

    def update(self, label: str, done: int, total: int, rate: float, eta: float | None,
               extra: str = "") -> None:
        now = time.monotonic()
        if now - self._last < self.min_interval and done < total and label == self._label:
            return
        self._last = now
        if label != self._label and self._open:
            self.stream.write("\n")
            self._open = False
        self._label = label
        frac = done / total if total else 1.0
        bar = "#" * int(frac * self.width) + "-" * (self.width - int(frac * self.width))
        eta_s = "--:--" if eta is None else time.strftime("%H:%M:%S", time.gmtime(eta))
        line = f"{label} [{bar}] {done}/{total} {rate:6.1f} img/s ETA {eta_s} {extra}"
        if self.tty:
            self.stream.write(f"\r{line}  ")
            self._open = True
        else:
            self.stream.write(line.rstrip() + "\n")
        self.stream.flush()

    def close(self) -> None:
        if self._open:
            self.stream.write("\n")
            self.stream.flush()
        self._label = ""
        self._open = False


# --------------------------------------------------------------------------- commands


def _cmd_models(a: argparse.Namespace) -> int:
    from core.models import TEACHERS, create_student, measure
    from core.models.teachers import TEACHER_ARCHS, TeacherWeightsError, create_teacher

    rows = []
    for name in TEACHERS:
        try:
            model = create_teacher(name, input_size=a.size).backbone
            status = "installed"
        except TeacherWeightsError:
            if name not in TEACHER_ARCHS:
                rows.append((name, "teacher", None, None, "weights not installed"))
                continue
            model, status = TEACHER_ARCHS[name](), "weights not installed"
        c = measure(model, a.size)
        rows.append((name, "teacher", c.params, c.macs, status))
    from core.models import list_students

    for name in list_students():
        s = create_student(name, a.size)
        c = measure(s.backbone, a.size)
        rows.append((name, "student", c.params, c.macs, f"{s.feature_dim}-d output"))
    if a.json:
        print(json.dumps([dict(zip(("name", "role", "params", "macs", "note"), r, strict=True))
                          for r in rows], indent=2))
        return 0
    print(f"{'model':<22}{'role':<9}{'params (M)':>11}{'MACs (M) @' + str(a.size):>15}  note")
    for name, role, p, m, note in rows:
        ps = f"{p / 1e6:11.2f}" if p is not None else f"{'-':>11}"
        ms = f"{m / 1e6:15.1f}" if m is not None else f"{'-':>15}"
        print(f"{name:<22}{role:<9}{ps}{ms}  {note}")
    return 0


def _cmd_distill(a: argparse.Namespace) -> int:
    from core.data import list_images
    from core.distill import DistillConfig, distill, distill_within
    from core.preprocess import AUGMENTS

    epochs = a.epochs or (1000 if a.budget else 20)
    cfg = DistillConfig(student=a.student, teacher=a.teacher, input_size=a.size,
                        epochs=epochs, batch_size=a.batch_size, lr=a.lr, views=a.views,
                        seed=a.seed, cache_pixels=not a.no_pixel_cache,
                        cosine_weight=a.cosine_weight, decode_threads=a.workers,
                        teacher_size=a.teacher_size, init=str(a.init or ""),
                        student_size=a.student_size,
                        augment=AUGMENTS[a.augment](),
                        warmup_epochs=a.warmup)
    images = list_images(a.images)
    val = list_images(a.val) if a.val else None
    from core.models import create_teacher

    teacher = create_teacher(a.teacher, a.teacher_weights, input_size=cfg.teacher_px,
                             verify=not a.no_verify_teacher)
    bar = ProgressBar()

    def progress(p) -> None:
        label = "teacher features" if p.phase == "cache" else f"epoch {p.epoch}/{p.epochs}"
        bar.update(label, p.done, p.total, p.images_per_s, p.eta_seconds,
                   "" if p.loss is None else f"loss {p.loss:.4f}")

    if a.budget:
        res = distill_within(cfg, images, a.out, a.budget, teacher=teacher, cache_dir=a.cache,
                             val_images=val, on_progress=progress,
                             data_description=str(a.images))
    else:
        res = distill(cfg, images, a.out, teacher=teacher, cache_dir=a.cache,
                      val_images=val, resume=not a.restart, on_progress=progress,
                      data_description=str(a.images))
    bar.close()
    for h in res.history:
        print(f"epoch {h['epoch']}: loss {h['loss']:.4f}"
              + (f", val cosine {h['val_cosine']:.4f}" if "val_cosine" in h else ""))
    if res.failed_images:
        print(f"{len(res.failed_images)} unreadable images skipped", file=sys.stderr)
    if res.model_path:
        print(f"model written to {res.model_path} ({res.wall_seconds:.0f} s)")
    return 0


def _cmd_prune(a: argparse.Namespace) -> int:
    import torch

    from core.checkpoint import save_student
    from core.data import list_images
    from core.encoder import iter_image_batches
    from core.models import create_teacher
    from core.models.mobilenet_v2 import MobileNetV2
    from core.models.prune import (
        channel_importance,
        hidden_widths,
        prune_mobilenet_v2,
        reconstruct_projections,
    )
    from core.preprocess import Preprocess

    teacher = create_teacher(a.teacher, a.teacher_weights, verify=not a.no_verify_teacher)
    net = getattr(teacher, "backbone", None)
    if not isinstance(net, MobileNetV2):
        print(f"cukd prune: teacher {a.teacher} is not a MobileNetV2", file=sys.stderr)
        return 2
    paths = list_images(a.images).paths
    if len(paths) > a.calibration:  # an even spread, the same on every run
        step = len(paths) / a.calibration
        paths = [paths[int(i * step)] for i in range(a.calibration)]
    px = [p for _, p, _ in iter_image_batches(paths, a.size, 64, a.workers) if p is not None]
    if not px:
        print("cukd prune: none of the calibration images could be read", file=sys.stderr)
        return 1
    images = torch.cat(px)
    late = hidden_widths(net, a.keep)
    early = hidden_widths(net, a.keep_early if a.keep_early else a.keep)
    hidden = early[:a.early_blocks] + late[a.early_blocks:]
    imp = channel_importance(net, images, Preprocess(a.size))
    student = prune_mobilenet_v2(net, hidden, imp, a.size)
    errors = reconstruct_projections(student, net, images) if a.reconstruct else []
    if errors:
        print("relative error of the refitted blocks: "
              + " ".join(f"{e:.3f}" for e in errors))
    save_student(a.out, student, teacher=a.teacher, provenance={
        "step": "prune", "teacher": a.teacher, "keep": a.keep,
        "keep_early": a.keep_early or a.keep, "early_blocks": a.early_blocks,
        "calibration_images": len(images), "size": a.size, "hidden": hidden,
        "reconstructed": bool(a.reconstruct), "block_errors": [round(e, 4) for e in errors]})
    print(f"pruned {a.teacher}: expanded widths {hidden}; written to {a.out}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="cukd", description="CUKD Image Search command line.")
    p.add_argument("-v", "--verbose", action="store_true", help="log more")
    sub = p.add_subparsers(dest="command", required=True)

    m = sub.add_parser("models", help="list models with parameters and MACs")
    m.add_argument("--size", type=int, default=224, help="input size in pixels")
    m.add_argument("--json", action="store_true")
    m.set_defaults(func=_cmd_models)

    d = sub.add_parser("distill", help="step 1: distil a student from a frozen teacher")
    d.add_argument("images", type=Path, help="folder of images or list file")
    d.add_argument("--out", type=Path, required=True, help="output folder")
    d.add_argument("--student", default="cukd_mnv2_035t")
    d.add_argument("--teacher", default="mobilenet_v2", help="name, or a+b for an ensemble")
    d.add_argument("--teacher-weights", type=Path, default=None)
    d.add_argument("--no-verify-teacher", action="store_true",
                   help="skip the sha256 check of known teacher files (custom weights)")
    d.add_argument("--size", type=int, default=128, help="the student's input size")
    d.add_argument("--teacher-size", type=int, default=None, metavar="PX",
                   help="the teacher sees each view at this size (default: --size)")
    d.add_argument("--student-size", type=int, default=None, metavar="PX",
                   help="the student sees each cached --size view resized to this size "
                        "(default: --size)")
    d.add_argument("--init", type=Path, default=None, metavar="MODEL",
                   help="start from this model file's student (same --student) instead of "
                        "random weights")
    d.add_argument("--augment", choices=("strong", "light"), default="strong",
                   help="view augmentations: strong (crops from 35%%, rotation, colour, "
                        "grey) or light (crops from 60%%, flips, slight colour)")
    d.add_argument("--warmup", type=float, default=1.0, metavar="EPOCHS",
                   help="learning-rate warm-up epochs (default 1)")
    d.add_argument("--epochs", type=int, default=None,
                   help="epochs (default 20); with --budget, the most epochs to train")
    d.add_argument("--budget", type=float, default=None, metavar="SECONDS",
                   help="train as many epochs as fit in this wall-clock time (teacher pass "
                        "included), with a full learning-rate schedule")
    d.add_argument("--workers", type=int, default=2, help="image decoding threads")
    d.add_argument("--batch-size", type=int, default=64)
    d.add_argument("--lr", type=float, default=3e-3)
    d.add_argument("--views", type=int, default=8, help="cached augmented views per image")
    d.add_argument("--seed", type=int, default=0)
    d.add_argument("--cosine-weight", type=float, default=0.0,
                   help="add this weight x (1 - cosine) to the MSE loss (0: the paper's MSE)")
    d.add_argument("--cache", type=Path, default=None, help="teacher feature cache folder")
    d.add_argument("--no-pixel-cache", action="store_true",
                   help="decode images every epoch instead of caching view pixels")
    d.add_argument("--val", type=Path, default=None, help="images for validation cosine")
    d.add_argument("--restart", action="store_true", help="ignore a previous run's state")
    d.set_defaults(func=_cmd_distill)

    r = sub.add_parser("prune", help="step 1a: cut a cukd_mnv2_pruned student out of a "
                                     "MobileNetV2 teacher (start for distil --init)")
    r.add_argument("images", type=Path, help="calibration photos (folder or list file)")
    r.add_argument("--out", type=Path, required=True, help="model file to write")
    r.add_argument("--teacher", default="mobilenet_v2")
    r.add_argument("--teacher-weights", type=Path, default=None)
    r.add_argument("--no-verify-teacher", action="store_true")
    r.add_argument("--size", type=int, default=160, help="the student's input size")
    r.add_argument("--keep", type=float, default=0.4,
                   help="fraction of each block's expanded channels to keep")
    r.add_argument("--keep-early", type=float, default=None,
                   help="the fraction for the first --early-blocks blocks (high resolution)")
    r.add_argument("--early-blocks", type=int, default=7)
    r.add_argument("--calibration", type=int, default=512, help="photos to rank channels on")
    r.add_argument("--no-reconstruct", dest="reconstruct", action="store_false",
                   help="keep the teacher's projection weights instead of refitting each "
                        "pruned block to the teacher's block output (least squares)")
    r.add_argument("--workers", type=int, default=2, help="image decoding threads")
    r.set_defaults(func=_cmd_prune)

    from core.cli_hashing import add_commands as add_hashing_commands

    add_hashing_commands(sub)

    from core.cli_library import add_commands as add_library_commands

    add_library_commands(sub)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    for stream in (sys.stdout, sys.stderr):  # names that are not UTF-8 print as the OS has them
        if hasattr(stream, "reconfigure"):
            stream.reconfigure(errors="surrogateescape")
    parser = build_parser()
    a = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if a.verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    from core.runtime import tune_allocator

    tune_allocator()
    func: Callable[[argparse.Namespace], int] = a.func
    try:
        return func(a)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except Exception as exc:
        from core.errors import user_message

        msg = user_message(exc)
        if msg is None and isinstance(exc, RuntimeError):
            msg = str(exc)
        if msg is None:
            if a.verbose:
                raise
            logging.getLogger("cukd").debug("unexpected error", exc_info=True)
            msg = (f"unexpected error ({type(exc).__name__}: {exc}); run with -v for the "
                   "details and please report it")
        print(f"cukd {a.command}: error: {msg}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
