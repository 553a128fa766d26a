"""``cukd finetune | itq | evaluate | encode``: step 2, the ITQ head, evaluation and encoding.

Registered on the ``cukd`` parser by ``core.cli`` with :func:`add_commands`. Each command is a
thin shell over :mod:`core.finetune` and :mod:`core.encoder`: the same model file comes out of
``cukd finetune --from-folder DIR`` as out of the app's retrain wizard.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

__all__ = ["add_commands"]

PRESET_MODES = {"fast": "head", "balanced": "last_stages", "thorough": "full"}


def _images(source: Path, root: Path | None, labelled: bool | None = None):
    from core.data import list_images

    return list_images(source, root=root, labelled=labelled)


def _bar():
    from core.cli import ProgressBar

    return ProgressBar()


def _counter(bar: Any, label: str):
    import time

    t0 = time.perf_counter()

    def progress(done: int, total: int) -> None:
        el = time.perf_counter() - t0
        rate = done / el if el > 0 else 0.0
        bar.update(label, done, total, rate, (total - done) / rate if rate else None)

    return progress


# --------------------------------------------------------------------------- finetune


def _cmd_finetune(a: argparse.Namespace) -> int:
    from core.finetune import FinetuneConfig, finetune
    from core.models.students import create_student

    overrides = {k: v for k, v in {
        "loss": a.loss, "n_bits": a.bits, "epochs": a.epochs, "lr": a.lr,
        "batch_size": a.batch_size, "val_share": a.val_share, "patience": a.patience,
        "views": a.views, "seed": a.seed, "input_size": a.size, "embed_dim": a.embed_dim,
    }.items() if v is not None}
    cfg = FinetuneConfig.from_preset(a.preset, **overrides)
    source = a.from_folder or a.train
    train = _images(source, a.root, labelled=True)
    if not train.classes and all(lab < 0 for lab in train.labels):
        raise ValueError(f"{source} has no labels: use a folder whose sub-folders are classes")
    val_src = a.val
    val = _images(val_src, a.root, labelled=True) if val_src else None
    model: Any = a.model if a.model else create_student(a.student, a.size or 224)
    bar = _bar()

    def progress(p) -> None:
        label = "student features" if p.phase == "features" else f"epoch {p.epoch}/{p.epochs}"
        extra = "" if p.loss is None else f"loss {p.loss:.4f}"
        if p.val_map is not None:
            extra += f" val mAP {p.val_map:.3f}"
        bar.update(label, p.done, p.total, p.images_per_s, p.eta_seconds, extra)

    res = finetune(cfg, model, train, val, a.out, on_progress=progress, resume=not a.restart,
                   cache_dir=a.cache, data_description=str(source), preset=a.preset)
    bar.close()
    for h in res.history:
        print(f"epoch {h['epoch']}: loss {h['loss']:.4f}"
              + (f", val mAP {h['val_map']:.4f}" if "val_map" in h else ""))
    if res.failed_images:
        print(f"{len(res.failed_images)} unreadable images skipped", file=sys.stderr)
    if res.early_stopped:
        print(f"stopped early after epoch {res.epochs_done}; kept epoch {res.best_epoch}")
    if res.model_path:
        vm = "" if res.best_val_map is None else f", validation mAP {res.best_val_map:.4f}"
        print(f"model written to {res.model_path} ({res.wall_seconds:.0f} s{vm})")
    return 0


# --------------------------------------------------------------------------- itq


def _cmd_itq(a: argparse.Namespace) -> int:
    from core.finetune import fit_itq_head

    images = _images(a.images, a.root, labelled=False)
    bar = _bar()
    res = fit_itq_head(a.model, images, a.out, n_bits=a.bits, embed_dim=a.embed_dim,
                       seed=a.seed, input_size=a.size, batch_size=a.batch_size,
                       on_progress=_counter(bar, "features"), data_description=str(a.images))
    bar.close()
    if res.failed_images:
        print(f"{len(res.failed_images)} unreadable images skipped", file=sys.stderr)
    print(f"ITQ {res.n_bits} bits on {res.n_images} images (quantization error "
          f"{res.quantization_error:.4f}); model written to {res.model_path}")
    return 0


# --------------------------------------------------------------------------- evaluate


def _cmd_evaluate(a: argparse.Namespace) -> int:
    from core.encoder import Encoder
    from core.evaluate import save_pr_curve
    from core.finetune import evaluate_model, split_train_val

    if a.from_folder:
        train, query = split_train_val(_images(a.from_folder, a.root, labelled=True),
                                       a.val_share, a.seed)
        database = train
    else:
        if not (a.query and a.database):
            raise ValueError("give --from-folder DIR, or both --query and --database")
        query = _images(a.query, a.root, labelled=True)
        database = _images(a.database, a.root, labelled=True)
    results = {}
    rows = []
    for path in a.model:
        enc = Encoder.from_file(path, batch_size=a.batch_size)
        bar = _bar()
        res = evaluate_model(enc, query, database, map_k=a.map_k,
                             on_progress=_counter(bar, Path(path).name))
        bar.close()
        assert res is not None
        label = f"{Path(path).name} ({enc.model_id})"
        if label in results:
            label += f" #{len(results) + 1}"
        results[label] = res
        rows.append({"model": str(path), "model_id": enc.model_id, **res.to_dict()})
    ks = list(a.map_k)
    head = f"{'model':<40}{'bits':>5}{'mAP@all':>9}" + "".join(f"{'mAP@' + str(k):>10}"
                                                             for k in ks)
    print(head + f"{'P@100':>8}{'P@r2':>8}")
    for label, r in results.items():
        print(f"{label[:39]:<40}{r.n_bits:>5}{r.map:>9.4f}"
              + "".join(f"{r.map_at[k]:>10.4f}" for k in ks)
              + f"{r.precision_at.get(100, float('nan')):>8.4f}{r.precision_radius:>8.4f}")
    print(f"{len(query)} queries, {len(database)} database images")
    if a.json:
        Path(a.json).parent.mkdir(parents=True, exist_ok=True)
        Path(a.json).write_text(json.dumps({"queries": len(query), "database": len(database),
                                            "rows": rows}, indent=2))
        print(f"metrics written to {a.json}")
    if a.pr_curve:
        if save_pr_curve(results, a.pr_curve):
            print(f"precision-recall curve written to {a.pr_curve}")
        else:
            print("matplotlib is not installed: no precision-recall plot", file=sys.stderr)
    return 0


# --------------------------------------------------------------------------- encode


def _cmd_encode(a: argparse.Namespace) -> int:
    from core.encoder import Encoder

    enc = Encoder.from_file(a.model, batch_size=a.batch_size)
    paths: list[Path] = []
    for p in a.images:
        paths += list(_images(p, None, labelled=False).paths) if p.is_dir() else [p]
    out = enc.encode_paths(paths)
    for p, msg in out.failed:
        print(f"cannot read {p}: {msg}", file=sys.stderr)
    if a.json:
        items = []
        for p, c, e in zip(out.paths, out.codes, out.embeddings, strict=True):
            item: dict[str, Any] = {"path": str(p), "code": c.tobytes().hex()}
            if a.embeddings:
                item["embedding"] = [round(float(v), 6) for v in e]
            items.append(item)
        print(json.dumps({"model_id": enc.model_id, "n_bits": enc.n_bits, "codes": items,
                          "failed": [{"path": str(p), "error": m} for p, m in out.failed]},
                         indent=2))
    else:
        for p, c in zip(out.paths, out.codes, strict=True):
            print(f"{c.tobytes().hex()}  {p}")
    return 1 if out.failed and not out.paths else 0


# --------------------------------------------------------------------------- parser


def add_commands(sub: argparse._SubParsersAction) -> None:
    """Register ``finetune``, ``itq``, ``evaluate`` and ``encode`` on ``cukd``'s subparsers.

    Each sets ``func`` (``Namespace -> int``) like the other ``cukd`` commands.
    """
    f = sub.add_parser("finetune", help="step 2: train a CSQ/DCH hash head on labelled images")
    src = f.add_mutually_exclusive_group(required=True)
    src.add_argument("--from-folder", type=Path, help="folder whose sub-folders are classes")
    src.add_argument("--train", type=Path, help="list file of 'path label' lines")
    f.add_argument("--val", type=Path, default=None,
                   help="validation folder or list file (default: --val-share of the training "
                        "images, stratified)")
    f.add_argument("--root", type=Path, default=None, help="base folder of list-file paths")
    m = f.add_mutually_exclusive_group(required=True)
    m.add_argument("--model", type=Path, help="model file to start from (e.g. distilled)")
    m.add_argument("--student", help="train this student from scratch (no step 1)")
    f.add_argument("--out", type=Path, required=True, help="output folder (model.pt, last.pt)")
    f.add_argument("--loss", choices=("csq", "dch"), default="csq")
    f.add_argument("--bits", type=int, choices=(16, 32, 48, 64), default=64)
    f.add_argument("--preset", choices=tuple(PRESET_MODES), default="fast",
                   help="fast: hash head on cached features; balanced: last stages; "
                        "thorough: whole network")
    f.add_argument("--epochs", type=int, default=None)
    f.add_argument("--lr", type=float, default=None)
    f.add_argument("--batch-size", type=int, default=None)
    f.add_argument("--val-share", type=float, default=None)
    f.add_argument("--patience", type=int, default=None, help="early-stopping epochs (0: off)")
    f.add_argument("--views", type=int, default=None, help="augmented views per image")
    f.add_argument("--size", type=int, default=None, help="input size (default: the model's)")
    f.add_argument("--embed-dim", type=int, default=None, help="re-ranking embedding size")
    f.add_argument("--seed", type=int, default=None)
    f.add_argument("--cache", type=Path, default=None, help="view cache folder")
    f.add_argument("--restart", action="store_true", help="ignore a previous run's state")
    f.set_defaults(func=_cmd_finetune)

    i = sub.add_parser("itq", help="unsupervised PCA+ITQ hash head from unlabelled images")
    i.add_argument("--model", type=Path, required=True, help="student model file")
    i.add_argument("--images", type=Path, required=True, help="folder of images or list file")
    i.add_argument("--root", type=Path, default=None, help="base folder of list-file paths")
    i.add_argument("--out", type=Path, required=True, help="output model file")
    i.add_argument("--bits", type=int, default=64)
    i.add_argument("--embed-dim", type=int, default=256)
    i.add_argument("--size", type=int, default=None)
    i.add_argument("--batch-size", type=int, default=64)
    i.add_argument("--seed", type=int, default=0)
    i.set_defaults(func=_cmd_itq)

    e = sub.add_parser("evaluate", help="mAP / precision of models over Hamming ranking")
    e.add_argument("--model", type=Path, action="append", required=True,
                   help="model file (repeat to compare)")
    e.add_argument("--query", type=Path, default=None, help="query folder or list file")
    e.add_argument("--database", type=Path, default=None, help="database folder or list file")
    e.add_argument("--from-folder", type=Path, default=None,
                   help="labelled folder: validation split = queries, the rest = database "
                        "(the split of `cukd finetune`)")
    e.add_argument("--val-share", type=float, default=0.2)
    e.add_argument("--seed", type=int, default=0)
    e.add_argument("--root", type=Path, default=None)
    e.add_argument("--map-k", type=int, nargs="*", default=[100])
    e.add_argument("--batch-size", type=int, default=64)
    e.add_argument("--json", type=Path, default=None, help="write metrics as JSON")
    e.add_argument("--pr-curve", type=Path, default=None, help="write a PR-curve PNG")
    e.set_defaults(func=_cmd_evaluate)

    c = sub.add_parser("encode", help="print the binary codes of images")
    c.add_argument("--model", type=Path, required=True)
    c.add_argument("images", type=Path, nargs="+", help="image files or folders")
    c.add_argument("--json", action="store_true", help="JSON output")
    c.add_argument("--embeddings", action="store_true", help="include embeddings (JSON)")
    c.add_argument("--batch-size", type=int, default=64)
    c.set_defaults(func=_cmd_encode)
