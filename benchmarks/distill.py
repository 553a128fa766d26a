"""Distillation benchmark (issue 2): model throughput on this machine and a distillation of
the efficient student on the shared Imagenette train split, judged by mean cosine similarity
to the teacher's features on Imagenette val.

Usage (data unpacked as in ../shared/data/README.md):
    python benchmarks/distill.py --data /tmp/data/imagenette --part all
Writes docs/benchmarks/distill.json and distill.md (parts merge into the existing JSON).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import statistics
import sys
import time
from dataclasses import replace
from pathlib import Path

import torch

from core.data import list_images
from core.distill import DistillConfig, distill, distill_within, feature_cosine
from core.imageio import load_image
from core.models import create_student, create_teacher, measure
from core.preprocess import to_tensor
from core.runtime import tune_allocator

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "docs" / "benchmarks"


def throughput(model: torch.nn.Module, size: int, batch: int = 64, reps: int = 5) -> float:
    """Median images/s of inference on uint8 batches of ``size`` px."""
    model.eval()
    x = torch.randint(0, 256, (batch, 3, size, size), dtype=torch.uint8)
    with torch.no_grad():
        model(x)
        times = []
        for _ in range(reps):
            t = time.perf_counter()
            model(x)
            times.append(time.perf_counter() - t)
    return batch / statistics.median(times)


def part_throughput(sizes: list[int]) -> dict:
    rows = []
    for size in sizes:
        for name in ["mobilenet_v2", "efficientnet_lite0", "efficientnet_lite1",
                     "efficientnet_lite2"]:
            t = create_teacher(name, input_size=size)
            c = measure(t.backbone, size, features_only=True)
            rows.append({"model": name, "role": "teacher", "input_size": size,
                         "params": c.params, "macs": c.macs,
                         "images_per_s": round(throughput(t, size), 1)})
            logging.info("%s", rows[-1])
        for name in ["cukd_mnv2_035", "cukd_mnv2_035t", "cukd_mnv2_050", "cukd_v1"]:
            s = create_student(name, size)
            c = measure(s.backbone, size, features_only=True)
            rows.append({"model": name, "role": "student", "input_size": size,
                         "params": c.params, "macs": c.macs,
                         "images_per_s": round(throughput(s, size), 1)})
            logging.info("%s", rows[-1])
    return {"throughput": rows}


def part_distill(data: Path, epochs: int, views: int, size: int, work: Path,
                 cosine_weight: float, student: str, batch_size: int = 64, lr: float = 3e-3,
                 budget: float | None = None, workers: int = 2) -> dict:
    cfg = DistillConfig(student=student, teacher="mobilenet_v2", input_size=size,
                        epochs=epochs, views=views, batch_size=batch_size, lr=lr, seed=0,
                        cosine_weight=cosine_weight, decode_threads=workers)
    train = list_images(data / "train")
    val = list_images(data / "val")
    t0 = time.perf_counter()
    last = [0.0]

    def progress(p) -> None:
        if time.perf_counter() - last[0] > 30:
            last[0] = time.perf_counter()
            logging.info("%s epoch %d %d/%d loss %s %.0f img/s eta %s s", p.phase, p.epoch,
                         p.done, p.total, p.loss, p.images_per_s, p.eta_seconds)

    desc = "imagenette-224 train (9469)"
    if budget:
        res = distill_within(cfg, train, work, budget, cache_dir=work / "cache",
                             on_progress=progress, data_description=desc)
        cfg = replace(cfg, epochs=res.epochs_done)
    else:
        res = distill(cfg, train, work, cache_dir=work / "cache", val_images=None,
                      on_progress=progress, data_description=desc)
    wall = time.perf_counter() - t0
    # Final judgement on the whole val split, whole frame resized to the input size.
    teacher = create_teacher(cfg.teacher, input_size=size)
    from core.checkpoint import load_student

    student, _ = load_student(res.model_path)
    ims = [load_image(p).resize((size, size)) for p in val.paths]
    cos = feature_cosine(student, teacher, to_tensor(ims))
    s_c = measure(student.backbone, size, features_only=True)
    t_c = measure(teacher.backbone, size, features_only=True)
    return {
        "teacher": cfg.teacher,
        "student": cfg.student,
        "input_size": size,
        "config": cfg.to_dict(),
        "budget_seconds": budget,
        "train_images": len(train),
        "val_images": len(ims),
        "wall_seconds": round(wall, 1),
        "teacher_cache_seconds": round(res.cache_seconds, 1),
        "student_cosine_to_teacher_val": round(float(cos.mean()), 4),
        "student_cosine_to_teacher_val_p10": round(float(sorted(cos)[len(cos) // 10]), 4),
        "student_macs": s_c.macs,
        "teacher_macs": t_c.macs,
        "student_params": s_c.params,
        "teacher_params": t_c.params,
        "student_macs_ratio": round(s_c.macs / t_c.macs, 4),
        "student_params_ratio": round(s_c.params / t_c.params, 4),
        "history": res.history,
    }


def write_md(d: dict) -> None:
    lines = ["# Distillation benchmark (issue 2)", "",
             f"Machine: {platform.machine()}, {os.cpu_count()} CPU cores, torch "
             f"{torch.__version__}, {torch.get_num_threads()} threads. "
             "Command: `" + d.get("command", "python benchmarks/distill.py --data <unpacked "
                                  "imagenette> --part all") + "`.",
             ""]
    if "student_cosine_to_teacher_val" in d:
        lines += [
            "## Distillation of the efficient student on Imagenette train", "",
            f"- teacher `{d['teacher']}`, student `{d['student']}`, input {d['input_size']} px, "
            f"{d['config']['epochs']} epochs, {d['config']['views']} cached augmented views per "
            f"image, seed {d['config']['seed']}",
            f"- wall time (teacher cache included): **{d['wall_seconds']:.0f} s** "
            f"(teacher pass {d['teacher_cache_seconds']:.0f} s)",
            f"- mean cosine similarity student vs teacher features on Imagenette val "
            f"({d['val_images']} images): **{d['student_cosine_to_teacher_val']:.3f}** "
            f"(10th percentile {d['student_cosine_to_teacher_val_p10']:.3f})",
            f"- student MACs / teacher MACs at {d['input_size']} px: "
            f"**{d['student_macs_ratio']:.3f}** ({d['student_macs'] / 1e6:.1f} M vs "
            f"{d['teacher_macs'] / 1e6:.1f} M); params ratio {d['student_params_ratio']:.3f} "
            f"({d['student_params'] / 1e6:.2f} M vs {d['teacher_params'] / 1e6:.2f} M)", ""]
    if "runs" in d:
        lines += ["## Runs", "",
                  "| px | epochs | views | cosine weight | wall s | teacher pass s | val cosine "
                  "| note |",
                  "|---|---|---|---|---|---|---|---|"]
        lines += [f"| {r.get('input_size', 128)} | {r['epochs']} | {r['views']} | "
                  f"{r['cosine_weight']} | "
                  f"{r['wall_seconds']:.0f} | {r['teacher_cache_seconds']:.0f} | "
                  f"{r['student_cosine_to_teacher_val']:.4f} | {r['note']} |" for r in d["runs"]]
        lines.append("")
    if "analysis" in d:
        lines += ["## Analysis", "", d["analysis"], ""]
    if "throughput" in d:
        lines += ["## Inference throughput (batch 64, uint8 input, median of 5)", "",
                  "| model | role | px | params (M) | MACs (M) | images/s |",
                  "|---|---|---|---|---|---|"]
        lines += [f"| {r['model']} | {r['role']} | {r['input_size']} | {r['params'] / 1e6:.2f} "
                  f"| {r['macs'] / 1e6:.1f} | {r['images_per_s']:.0f} |" for r in d["throughput"]]
        lines.append("")
    (OUT / "distill.md").write_text("\n".join(lines))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--data", type=Path, required=True, help="unpacked imagenette folder")
    ap.add_argument("--part", choices=["throughput", "distill", "all"], default="all")
    ap.add_argument("--epochs", type=int, default=20)
    ap.add_argument("--views", type=int, default=6)
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--cosine-weight", type=float, default=0.0)
    ap.add_argument("--student", default="cukd_mnv2_035t")
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--lr", type=float, default=3e-3)
    ap.add_argument("--workers", type=int, default=2, help="image decoding threads")
    ap.add_argument("--budget", type=float, default=None, metavar="SECONDS",
                    help="as many epochs as fit in this wall time (--epochs is then the cap)")
    ap.add_argument("--work", type=Path, default=Path("/tmp/cukd-distill-bench"))
    a = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    tune_allocator()
    OUT.mkdir(parents=True, exist_ok=True)
    path = OUT / "distill.json"
    d = json.loads(path.read_text()) if path.exists() else {}
    if a.part in ("distill", "all"):
        argv = sys.argv[1:]
        d["command"] = "python benchmarks/distill.py " + " ".join(
            "<unpacked imagenette>" if i and argv[i - 1] == "--data" else x
            for i, x in enumerate(argv))
        d.update(part_distill(a.data, a.epochs, a.views, a.size, a.work, a.cosine_weight,
                              a.student, a.batch_size, a.lr, a.budget, a.workers))
        path.write_text(json.dumps(d, indent=2))
    if a.part in ("throughput", "all"):
        d.update(part_throughput(sorted({a.size, 224})))
        path.write_text(json.dumps(d, indent=2))
    write_md(d)


if __name__ == "__main__":
    main()
