"""Duplicate finding on real photos: are the groups really copies of one picture?

A library is built in a temporary folder from

* distinct photos: Imagenette val (``--distinct``, 3925 photos; none is a copy of another,
  but many show the same kind of subject, which is what fools a semantic embedding), and
* real photos with edited copies: each wallpaper photo (as ``default_model.py`` finds them,
  reduced to ``--max-side`` 1024 px) next to its edits, all JPEG files (the near-duplicate
  benchmark's seeded transforms, minus text overlay and rotation unless ``--kinds`` says
  otherwise),

indexed with the model through :class:`core.library.Library` and grouped by
``Library.duplicates()``. Every file has a *source* (the photo it was made from), so:

* ``pair_precision``: of all file pairs that share a group, the share with one source;
* ``distinct_flagged``: share of the distinct photos that end up in any group (all such
  groupings are false, up to the odd real duplicate inside Imagenette);
* ``edit_recall``: per edit kind, the share of edited copies grouped with their original;
* group count, largest group, seconds.

The script uses only ``Library`` / ``Encoder`` calls that exist since the library engine
landed, so a copy of it in an older checkout's ``benchmarks/`` measures that checkout.

Usage::

    python benchmarks/duplicates.py --model resources/models/default.pt \\
        --imagenette /tmp/data/imagenette \\
        --wallpapers /usr/share/wallpapers /usr/share/backgrounds /usr/share/palapeli

Writes docs/benchmarks/duplicates.json (``--out`` to change; ``--label`` names the run and
results of other labels in the file are kept).
"""

from __future__ import annotations

import argparse
import itertools
import json
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import default_model as dm  # the near-duplicate benchmark's data and edits

log = logging.getLogger("bench.duplicates")

KINDS = ("crop", "rescale_25", "jpeg_q30", "greyscale", "brightness_30", "hflip")


def build_folder(a: argparse.Namespace, folder: Path) -> dict[str, str]:
    """Link/write the photos into ``folder``; ``{file name: source}``."""
    from core.imageio import load_image

    source: dict[str, str] = {}
    val, _ = dm.labelled_images(a.imagenette / "val")
    for p in dm.spread(val, a.distinct):
        name = f"d_{p.parent.name}_{p.name}"
        try:  # a hard link costs no space; the scanner does not follow symbolic links
            os.link(p.resolve(), folder / name)
        except OSError:
            shutil.copyfile(p, folder / name)
        source[name] = name
    photos = dm.find_wallpapers(a.wallpapers)[:a.max_photos or None]
    for i, ph in enumerate(photos):
        key = f"w{i:03d}"
        base = dm.query_base(load_image(ph.path), a.max_side)
        base.save(folder / f"{key}_original.jpg", quality=95)
        source[f"{key}_original.jpg"] = key
        for kind in a.kinds:
            # every copy is a JPEG file as a user would have it (jpeg_q30's artefacts are
            # already in the pixels the edit returns)
            name = f"{key}_{kind}.jpg"
            dm.edit(base, kind, dm.query_rng(a.seed, str(ph.path), kind)).save(
                folder / name, quality=95)
            source[name] = key
    log.info("%d distinct photos, %d wallpapers x %d edits", a.distinct, len(photos),
             len(a.kinds))
    return source


def measure(a: argparse.Namespace, folder: Path, source: dict[str, str]) -> dict:
    from core.encoder import Encoder
    from core.library import Library, LibraryConfig

    encoder = Encoder.from_file(a.model)
    with tempfile.TemporaryDirectory() as libdir:
        lib = Library.open(Path(libdir), encoder, LibraryConfig())
        try:
            lib.add_root(folder)
            t0 = time.perf_counter()
            lib.scan()
            scan_s = time.perf_counter() - t0
            t0 = time.perf_counter()
            groups = lib.duplicates(a.level) if a.level != "normal" else lib.duplicates()
            dup_s = time.perf_counter() - t0
        finally:
            lib.close()
    names = [[Path(f.path).name for f in g.files] for g in groups]
    pairs = same = 0
    flagged: set[str] = set()
    together: set[tuple[str, str]] = set()
    for g in names:
        for x, y in itertools.combinations(g, 2):
            pairs += 1
            same += source[x] == source[y]
            together.add((x, y))
            together.add((y, x))
        flagged.update(n for n in g if n.startswith("d_"))
    recall = {}
    keys = sorted({s for n, s in source.items() if not n.startswith("d_")})
    for kind in a.kinds:
        hit = 0
        for key in keys:
            hit += (f"{key}_original.jpg", f"{key}_{kind}.jpg") in together
        recall[kind] = round(hit / max(len(keys), 1), 4)
    distinct = sum(n.startswith("d_") for n in source)
    return {
        "model": str(a.model), "model_id": encoder.model_id,
        "near_duplicate_cosine": getattr(encoder, "near_duplicate_cosine", None),
        "files": len(source), "distinct_photos": distinct, "edited_photos": len(keys),
        "groups": len(groups), "largest_group": max((len(g) for g in names), default=0),
        "files_in_groups": sum(len(g) for g in names),
        "pair_precision": round(same / pairs, 4) if pairs else None, "pairs": pairs,
        "distinct_flagged": round(len(flagged) / max(distinct, 1), 4),
        "edit_recall": recall,
        "edit_recall_mean": round(sum(recall.values()) / max(len(recall), 1), 4),
        "scan_seconds": round(scan_s, 1), "duplicates_seconds": round(dup_s, 2),
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", type=Path, default=Path("resources/models/default.pt"))
    ap.add_argument("--imagenette", type=Path, required=True)
    ap.add_argument("--wallpapers", type=Path, nargs="+", required=True)
    ap.add_argument("--distinct", type=int, default=0, help="distinct photos (0: all val)")
    ap.add_argument("--max-photos", type=int, default=0, help="wallpapers (0: all found)")
    ap.add_argument("--max-side", type=int, default=1024,
                    help="longer side of the photos the edits start from")
    ap.add_argument("--kinds", nargs="+", default=list(KINDS), choices=list(dm.TRANSFORMS))
    ap.add_argument("--level", default="normal", choices=("strict", "normal", "loose"),
                    help="Library.duplicates level (older checkouts: normal only)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--label", default="current")
    ap.add_argument("--out", type=Path,
                    default=Path(__file__).resolve().parent.parent / "docs" / "benchmarks"
                    / "duplicates.json")
    a = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    if not a.distinct:
        a.distinct = len(dm.labelled_images(a.imagenette / "val")[0])
    work = Path(tempfile.mkdtemp(prefix="cukd-dups-"))
    try:
        folder = work / "photos"
        folder.mkdir()
        source = build_folder(a, folder)
        res = measure(a, folder, source)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                                text=True, cwd=Path(__file__).parent, check=False).stdout.strip()
    except OSError:
        commit = ""
    import core

    res.update({"level": a.level,
                "core_from": str(Path(core.__file__).resolve().parent.parent.name),
                "git_commit": commit, "kinds": list(a.kinds), "seed": a.seed,
                "date": time.strftime("%Y-%m-%d %H:%M:%S")})
    out = json.loads(a.out.read_text()) if a.out.exists() else {}
    out[a.label] = res
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps(out, indent=2) + "\n")
    print(json.dumps(res, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
