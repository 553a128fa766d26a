"""Retrain wizard benchmark (issue 6): the fast and balanced presets on Imagenette.

The shared Imagenette train split is the context (its 10 classes), its val split the
validation images; the base model is the shipped default (``resources/models/default.pt``).
Each preset runs the wizard's own job (:func:`cukd_app.wizard.job.run_retrain`: 64-bit CSQ,
fresh feature cache) and both the default and the new model are scored the way the wizard's
result page scores them: val images as queries, train images as the database, mAP over the
whole database (mAP@all) on Hamming ranking.

Usage (data unpacked as in ../shared/data/README.md)::

    OMP_NUM_THREADS=2 python benchmarks/retrain.py --imagenette /tmp/data/imagenette
    ... --quick     # smoke run: 30 train + 10 val images per class, balanced capped at
                    # 2 epochs; about 40 s on one thread; writes retrain.quick.json/.md

Run time of the full run, extrapolated from the quick run's rates on one thread of a busy
2-core machine (not measured): fast about 5-6 min (caching 4 views of 9 469 images
dominates), balanced about 30-35 min for all 15 epochs (early stopping may end sooner);
plus about 2 min per model for the final evaluation (not counted in ``*_seconds``).

Writes ``docs/benchmarks/retrain.json`` and ``.md`` (``--out`` overrides) with
``fast_seconds``, ``balanced_seconds`` (training wall time: feature/pixel caching, epochs,
validation, writing the model), ``map_default``, ``map_fast``, ``map_balanced`` and details
(epochs, early stopping, evaluation time, the presets' settings, the machine).

Targets: fast <= 5 min, balanced <= 30 min, ``map_fast - map_default >= 0.15``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from core.data import ImageList, list_images
from core.finetune import PRESETS
from cukd_app.wizard.job import RetrainPlan, evaluate_encoder, run_retrain

ROOT = Path(__file__).resolve().parent.parent
TARGETS = {"fast_seconds": 300.0, "balanced_seconds": 1800.0, "fast_improvement": 0.15}
QUICK = {"train_per_class": 30, "val_per_class": 10, "balanced_epochs": 2}


def run_preset(preset: str, model: Path, train: ImageList, val: ImageList, work: Path,
               overrides: tuple = ()) -> dict:
    """One wizard run of ``preset`` (fresh work folder); timings and scores."""
    shutil.rmtree(work, ignore_errors=True)
    plan = RetrainPlan(train, val, preset, "csq", 64, model, work, "imagenette train",
                       overrides=overrides, examples=0)
    last = [0.0]

    def progress(ev) -> None:
        now = time.monotonic()
        if ev.phase == "log" and ev.text:
            print(f"  [{preset}] {ev.text}", flush=True)
        elif now - last[0] > 30 and ev.fraction is not None:
            last[0] = now
            print(f"  [{preset}] {ev.phase} {100 * ev.fraction:.0f}%", flush=True)

    out = run_retrain(plan, None, on_progress=progress)
    assert out.model_path is not None and out.new_eval is not None and out.finetune is not None
    ft = out.finetune
    return {
        "seconds": out.train_seconds,
        "map": out.new_eval.map,
        "map_at_100": out.new_eval.map_at.get(100),
        "finetune_val_map": ft.best_val_map,
        "epochs_done": ft.epochs_done,
        "best_epoch": ft.best_epoch,
        "early_stopped": ft.early_stopped,
        "evaluation_seconds": out.wall_seconds - out.train_seconds,
        "failed_images": len(out.failed_images),
        "config": plan.finetune_config().to_dict(),
        "history": ft.history,
    }


def write_markdown(res: dict, path: Path) -> None:
    """The report as a short Markdown table."""
    t = res["targets"]

    def mark(ok: bool | None) -> str:
        return "—" if ok is None else ("yes" if ok else "**no**")

    lines = [
        "# Retrain wizard: fast and balanced presets on Imagenette" + (
            " (quick smoke run)" if res["quick"] else ""), "",
        f"Context: Imagenette train ({res['n_train']} images, 10 classes); validation: "
        f"Imagenette val ({res['n_val']} images). Base: `{res['model']}`. 64-bit CSQ. "
        f"Machine: {res['machine']['cpus']} CPUs, {res['machine']['torch_threads']} torch "
        f"thread(s). mAP@all, val queries against the train database (Hamming ranking).", "",
        "| model | training time | val mAP@all | mAP@100 | epochs (best) |",
        "|---|---:|---:|---:|---:|",
        f"| default | — | {res['map_default']:.4f} | {res['default'].get('map_at_100', 0):.4f} "
        "| — |",
    ]
    for p in res["presets"]:
        d = res[p]
        lines.append(f"| {p} | {d['seconds'] / 60:.1f} min | {d['map']:.4f} | "
                     f"{d['map_at_100']:.4f} | {d['epochs_done']} ({d['best_epoch']}) |")
    lines += ["", "| target | value | met |", "|---|---:|---:|"]
    if "fast" in res["presets"]:
        lines.append(f"| fast ≤ {t['fast_seconds'] / 60:.0f} min | "
                     f"{res['fast_seconds'] / 60:.1f} min | {mark(res['meets']['fast_time'])} |")
        lines.append(f"| fast − default ≥ {t['fast_improvement']} | "
                     f"{res['fast_improvement']:+.4f} | {mark(res['meets']['fast_gain'])} |")
    if "balanced" in res["presets"]:
        lines.append(f"| balanced ≤ {t['balanced_seconds'] / 60:.0f} min | "
                     f"{res['balanced_seconds'] / 60:.1f} min | "
                     f"{mark(res['meets']['balanced_time'])} |")
    if res["quick"]:
        lines += ["", "Quick mode: a small subset and capped epochs; the numbers only show "
                      "that the benchmark runs, not the targets."]
    if res.get("analysis"):
        lines += ["", "## Analysis", "", res["analysis"]]
    lines += ["", f"Evaluating the default model took {res['default']['seconds']:.0f} s. "
                  "Command: `" + res["command"] + "`", ""]
    path.write_text("\n".join(lines), encoding="utf-8")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--imagenette", type=Path, required=True,
                    help="unpacked Imagenette (train/ and val/ class folders)")
    ap.add_argument("--model", type=Path, default=ROOT / "resources" / "models" / "default.pt")
    ap.add_argument("--presets", default="fast,balanced")
    ap.add_argument("--quick", action="store_true", help="small smoke run (< 3 min)")
    ap.add_argument("--work", type=Path, default=None, help="scratch folder (default: temp)")
    ap.add_argument("--out", type=Path, default=None, help="JSON path (.md written beside)")
    a = ap.parse_args(argv)
    from core.runtime import tune_allocator

    tune_allocator()  # as cukd-app does at start (the wizard's job runs in the app process)
    presets = [p.strip() for p in a.presets.split(",") if p.strip()]
    for p in presets:
        if p not in PRESETS:
            ap.error(f"unknown preset {p}")
    if not a.model.is_file():
        ap.error(f"model file not found: {a.model}")
    import torch

    train = list_images(a.imagenette / "train", labelled=True)
    val = list_images(a.imagenette / "val", labelled=True)
    if a.quick:
        train = train.per_class(QUICK["train_per_class"])
        val = val.per_class(QUICK["val_per_class"])
    out = a.out or ROOT / "docs" / "benchmarks" / ("retrain.quick.json" if a.quick
                                                    else "retrain.json")
    work = a.work or Path(tempfile.mkdtemp(prefix="cukd-retrain-bench-"))
    print(f"{len(train)} train / {len(val)} val images; base {a.model}", flush=True)

    from core.encoder import Encoder

    t = time.perf_counter()
    ev = evaluate_encoder(Encoder.from_file(a.model), val, train)
    assert ev is not None
    default = {"map": ev[0].map, "map_at_100": ev[0].map_at.get(100),
               "seconds": time.perf_counter() - t}
    print(f"default model: val mAP@all {default['map']:.4f} ({default['seconds']:.0f} s)",
          flush=True)
    res: dict = {
        "quick": a.quick, "model": os.path.relpath(a.model, ROOT) if a.model.is_relative_to(
            ROOT) else a.model.name,
        "n_train": len(train), "n_val": len(val), "bits": 64, "loss": "csq",
        "presets": presets, "targets": TARGETS, "default": default,
        "map_default": default["map"],
        "machine": {"cpus": os.cpu_count(), "torch_threads": torch.get_num_threads(),
                    "omp_num_threads": os.environ.get("OMP_NUM_THREADS"),
                    "platform": platform.platform(), "python": platform.python_version(),
                    "torch": torch.__version__},
        "command": "python benchmarks/retrain.py" + (" --quick" if a.quick else ""),
    }
    for p in presets:
        overrides: tuple = ()
        if a.quick and p != "fast":
            overrides = (("epochs", QUICK["balanced_epochs"]),)
        print(f"preset {p}…", flush=True)
        d = run_preset(p, a.model, train, val, work / p, overrides)
        res[p] = d
        res[f"{p}_seconds"] = d["seconds"]
        res[f"map_{p}"] = d["map"]
        print(f"preset {p}: {d['seconds']:.0f} s, val mAP@all {d['map']:.4f}", flush=True)
    meets: dict = {}
    if "fast" in presets:
        res["fast_improvement"] = res["map_fast"] - res["map_default"]
        meets["fast_time"] = res["fast_seconds"] <= TARGETS["fast_seconds"]
        meets["fast_gain"] = res["fast_improvement"] >= TARGETS["fast_improvement"]
    if "balanced" in presets:
        res["balanced_improvement"] = res["map_balanced"] - res["map_default"]
        meets["balanced_time"] = res["balanced_seconds"] <= TARGETS["balanced_seconds"]
    res["meets"] = meets
    if a.work is None:
        shutil.rmtree(work, ignore_errors=True)
    out.parent.mkdir(parents=True, exist_ok=True)
    if out.exists():  # a hand-written analysis of an earlier run is kept (revise it)
        old = json.loads(out.read_text(encoding="utf-8"))
        if old.get("analysis"):
            res["analysis"] = old["analysis"]
    out.write_text(json.dumps(res, indent=2, default=str), encoding="utf-8")
    write_markdown(res, out.with_suffix(".md"))
    print(f"wrote {out} and {out.with_suffix('.md')}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
