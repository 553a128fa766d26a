"""General semantic retrieval on photos nobody tuned on (issue 15): ``../shared/data/photos/eval``.

112 classes x 25 photos (100 Caltech-101 classes plus 12 others), disjoint from the unlabelled
corpus the default student is distilled on. Every photo is a query against all the others
(leave-one-out), class = relevance:

- **mAP@all of 64-bit codes** (Hamming ranking, ties by database index as in
  ``core.evaluate``) and **mAP@all of float features** (cosine) for every offline teacher at
  every ``--sizes`` (each teacher with its own PCA + ITQ head fitted on ``--fit-images``
  photos of the *unlabelled* corpus, never on the eval photos) and for every student model
  file (its own shipped head and re-rank embedding, through the app's decode path);
- **precision@10 through ``Library.search``** for every student: a real library of the eval
  photos plus ``--distractors`` unlabelled photos, each eval photo searched by path, itself
  excluded;
- the same two mAPs on the 12 non-Caltech classes alone (Caltech dominates the set and other
  Caltech photos are in the unlabelled corpus);
- teacher-pass seconds per image, so quality can be weighed against cost.

Usage::

    OMP_NUM_THREADS=2 python benchmarks/general.py --photos /tmp/data/photos \\
        --models resources/models/default.pt [--teachers mobilenet_v2,efficientnet_lite0] \\
        [--sizes 160,224] [--out docs/benchmarks/general.json] [--merge-default]

``--merge-default`` also writes the issue's ``general_*`` keys (the first model against
``--reference-teacher`` at 224 px) into ``docs/benchmarks/default_model.json``.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
for p in (ROOT, ROOT / "benchmarks"):
    if str(p) not in sys.path:
        sys.path.insert(0, str(p))

import default_model as dm  # noqa: E402

log = logging.getLogger("bench.general")

NON_CALTECH = ("abyssinian", "american-bulldog", "bee", "bengal", "daisy", "dandelion",
               "giraffe", "horse", "house", "receipt", "roses", "tulips")
ALL_TEACHERS = ("mobilenet_v2", "efficientnet_lite0", "efficientnet_lite1",
                "efficientnet_lite2", "mobilenet_v2+efficientnet_lite2")


def _maps(codes: np.ndarray | None, feats: np.ndarray, y: np.ndarray,
          mask: np.ndarray) -> dict[str, float | None]:
    """mAP@all leave-one-out of codes and features, on all photos and on ``mask`` alone."""
    out: dict[str, float | None] = {}
    n = len(y)
    for tag, sel in (("", np.ones(n, bool)), ("_non_caltech", mask)):
        f, yy = feats[sel], y[sel]
        out[f"map_embedding{tag}"] = dm.rnd(dm.cosine_map(f, f, yy, yy, len(yy), True))
        if codes is not None:
            c = codes[sel]
            out[f"map_codes{tag}"] = dm.rnd(dm.hamming_map(c, c, yy, yy, len(yy), True))
    return out


def teacher_rows(names: list[str], sizes: list[int], fit: list[Path], paths: list[Path],
                 y: np.ndarray, mask: np.ndarray, threads: int, seed: int,
                 rows: dict[str, Any], save: Any) -> None:
    """Each teacher at each size: its own ITQ-64 head on the fit photos, mAPs on the eval.
    Rows are added to ``rows`` and ``save()`` runs after each (a long run can be stopped)."""
    from core.hash_head import pack_codes
    from core.itq import fit_itq

    for name in names:
        tf = dm.TeacherFeatures(name, threads)
        for size in sizes:
            t0 = time.perf_counter()
            f_eval = tf.of_paths(paths, [size], progress=f"{name} {size}px eval")[size]
            secs = (time.perf_counter() - t0) / max(1, len(paths))
            f_fit = tf.of_paths(fit, [size], progress=f"{name} {size}px fit")[size]
            f_fit = dm.l2n(f_fit[np.isfinite(f_fit).all(axis=1)])
            itq = fit_itq(f_fit, 64, seed=seed)
            fv = dm.l2n(f_eval)
            codes = pack_codes(itq.transform(fv))
            row = {"teacher": name, "size": size, "seconds_per_image": round(secs, 5),
                   "fit_images": len(f_fit), **_maps(codes, fv, y, mask)}
            rows[f"{name}@{size}"] = row
            log.info("%s", row)
            save()
            tf.feats.clear()


def student_row(model: Path, paths: list[Path], y: np.ndarray, mask: np.ndarray,
                distractors: list[Path], threads: int) -> dict[str, Any]:
    """A model file's codes and embedding mAPs, and precision@10 through Library.search."""
    from core.encoder import Encoder

    enc = Encoder.from_file(model)
    t0 = time.perf_counter()
    codes, embs, _feats, ok = dm.student_val(enc, paths, threads)
    secs = (time.perf_counter() - t0) / max(1, len(paths))
    yy, mm = y[ok], mask[ok]
    row: dict[str, Any] = {"model": str(model.relative_to(ROOT) if model.is_relative_to(ROOT)
                                        else model),
                           "model_id": enc.model_id, "seconds_per_image": round(secs, 5)}
    m = _maps(codes, embs, yy, mm)
    row.update(m)
    row["precision_at_10_search"] = library_precision(enc, paths, y, distractors)
    return row


def library_precision(enc: Any, paths: list[Path], y: np.ndarray,
                      distractors: list[Path], k: int = 10) -> float | None:
    """precision@k of ``Library.search`` (the app's whole search path), the query excluded."""
    from core.library import Library, LibraryConfig, ScanConfig

    with tempfile.TemporaryDirectory(prefix="cukd-general-") as tmp:
        tree = Path(tmp) / "photos"
        eval_links = dm._link_tree(paths, tree / "eval", copy=False)
        dm._link_tree(distractors, tree / "distractors", copy=False)
        cfg = LibraryConfig(scan=ScanConfig(follow_symlinks=True))
        with Library.open(Path(tmp) / "lib", enc, cfg) as lib:
            lib.add_root(tree)
            lib.scan()
            label = {str(p): int(c) for p, c in zip(eval_links, y, strict=True)}
            precs = []
            for p, c in zip(eval_links, y, strict=True):
                hits = [h for h in lib.search(p, k=k + 1) if h.path != str(p)][:k]
                precs.append(sum(label.get(h.path, -1) == c for h in hits) / k)
    return dm.rnd(float(np.mean(precs))) if precs else None


def write_md(d: dict[str, Any], path: Path) -> None:
    s = d["setup"]
    lines = [
        "# General semantic retrieval (photos/eval)", "",
        f"{s['classes']} classes, {s['images']} photos; leave-one-out, class = relevance, "
        "mAP over the whole set (Hamming for codes, cosine for float features). Teachers get "
        f"a PCA + ITQ 64-bit head fitted on {s['fit_images']} unlabelled-corpus photos (never "
        "the eval photos). Written by `benchmarks/general.py`.", "",
        "| model | input px | codes mAP@all | float mAP@all | non-Caltech codes | "
        "non-Caltech float | P@10 search | s / image |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for key, r in d.get("students", {}).items():
        lines.append(f"| student `{key}` | {r.get('input_size', '')} | "
                     f"{dm._f(r.get('map_codes'))} | {dm._f(r.get('map_embedding'))} (embedding)"
                     f" | {dm._f(r.get('map_codes_non_caltech'))} | "
                     f"{dm._f(r.get('map_embedding_non_caltech'))} | "
                     f"{dm._f(r.get('precision_at_10_search'))} | "
                     f"{r['seconds_per_image'] * 1000:.1f} ms |")
    for r in d.get("teachers", {}).values():
        lines.append(f"| teacher {r['teacher']} | {r['size']} | {dm._f(r.get('map_codes'))} | "
                     f"{dm._f(r.get('map_embedding'))} (features) | "
                     f"{dm._f(r.get('map_codes_non_caltech'))} | "
                     f"{dm._f(r.get('map_embedding_non_caltech'))} | – | "
                     f"{r['seconds_per_image'] * 1000:.1f} ms |")
    lines += ["", "Seconds per image are the end-to-end feature pass (decode + network) on "
              "this machine, measured while other work may have been running: compare them "
              "within one run only.", ""]
    if d.get("analysis"):
        lines += ["## Analysis", "", d["analysis"], ""]
    lines += [f"Measured {d['machine']['date']} on {d['machine']['cpu_count']} cores, commit "
              f"{d['machine']['git_commit']}."]
    path.write_text("\n".join(lines) + "\n")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--photos", type=Path, required=True, help="unpacked photos/ (eval/, "
                   "unlabelled/)")
    p.add_argument("--models", type=Path, nargs="*", default=[])
    p.add_argument("--teachers", default=",".join(ALL_TEACHERS))
    p.add_argument("--sizes", default="160,224")
    p.add_argument("--fit-images", type=int, default=2000)
    p.add_argument("--distractors", type=int, default=2000)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, default=dm.OUT / "general.json")
    p.add_argument("--name", default=None, help="row name of the (single) model")
    p.add_argument("--merge-default", action="store_true")
    p.add_argument("--reference-teacher", default="mobilenet_v2")
    a = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    paths, y = dm.labelled_images(a.photos / "eval")
    classes = sorted({pp.parent.name for pp in paths})
    mask = np.array([pp.parent.name in NON_CALTECH for pp in paths])
    unl = dm.list_image_files(a.photos / "unlabelled")
    fit = dm.spread(unl, a.fit_images)
    fit_set = set(fit)
    distractors = dm.spread([u for u in unl if u not in fit_set], a.distractors)
    prev = json.loads(a.out.read_text()) if a.out.exists() else {}
    d: dict[str, Any] = {
        "setup": {"classes": len(classes), "images": len(paths),
                  "non_caltech_classes": list(NON_CALTECH), "fit_images": len(fit),
                  "fit_source": "photos/unlabelled, spread", "distractors": len(distractors),
                  "leave_one_out": True, "n_bits": 64},
        "students": prev.get("students", {}), "teachers": prev.get("teachers", {}),
        "analysis": prev.get("analysis", ""), "machine": dm.machine_info(),
    }
    names = [t for t in a.teachers.split(",") if t]
    sizes = [int(s) for s in a.sizes.split(",") if s]

    def save() -> None:
        a.out.parent.mkdir(parents=True, exist_ok=True)
        a.out.write_text(json.dumps(d, indent=2) + "\n")
        write_md(d, a.out.with_suffix(".md"))

    if names:
        teacher_rows(names, sizes, fit, paths, y, mask, a.threads, a.seed, d["teachers"], save)
    from core.encoder import Encoder

    for m in a.models:
        row = student_row(m, paths, y, mask, distractors, a.threads)
        row["input_size"] = int(Encoder.from_file(m).input_size)
        d["students"][a.name or m.stem] = row
        log.info("%s", row)
        save()
    save()
    if a.merge_default and a.models:
        merge_default(d, a.name or a.models[0].stem, a.reference_teacher)
    return 0


def merge_default(d: dict[str, Any], student: str, teacher: str) -> None:
    """The issue's ``general_*`` keys in docs/benchmarks/default_model.json."""
    path = dm.OUT / "default_model.json"
    out = json.loads(path.read_text()) if path.exists() else {}
    s, t = d["students"][student], d["teachers"].get(f"{teacher}@224", {})
    out.update({
        "general_map_codes_student": s.get("map_codes"),
        "general_map_codes_teacher": t.get("map_codes"),
        "general_map_embedding_student": s.get("map_embedding"),
        "general_map_embedding_teacher": t.get("map_embedding"),
        "general_map_codes_student_non_caltech": s.get("map_codes_non_caltech"),
        "general_map_embedding_student_non_caltech": s.get("map_embedding_non_caltech"),
        "general_precision_at_10_search": s.get("precision_at_10_search"),
        "general_classes": d["setup"]["classes"], "general_images": d["setup"]["images"],
        "general_teacher": f"{teacher}@224",
    })
    path.write_text(json.dumps(out, indent=2) + "\n")


if __name__ == "__main__":
    sys.exit(main())
