"""Copy a folder tree of photos as small WebP files (short side N px), keeping sub-folders.

The default model's step 1 trains on Imagenette shrunk this way (160 px, quality 76): it is
what fitted the training set into a lent GPU machine's 64 MiB transfer, and it makes decoding
cheap. Unreadable files are reported and skipped.

    python benchmarks/shrink_images.py SRC DST [--side 160] [--quality 76] [--workers 2]
"""

from __future__ import annotations

import argparse
import os
import sys
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from PIL import Image

from core.data import list_images
from core.imageio import ImageLoadError, load_image


def shrink(job: tuple[str, str, int, int]) -> str | None:
    src, dst, side, quality = job
    try:
        im = load_image(src, draft_size=side * 2)
    except ImageLoadError as exc:
        return str(exc)
    w, h = im.size
    r = side / min(w, h)
    if r < 1:
        im = im.resize((max(side, round(w * r)), max(side, round(h * r))), Image.LANCZOS)
    Path(dst).parent.mkdir(parents=True, exist_ok=True)
    tmp = dst + ".part"
    im.save(tmp, "WEBP", quality=quality, method=4)
    os.replace(tmp, dst)
    return None


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("src", type=Path)
    ap.add_argument("dst", type=Path)
    ap.add_argument("--side", type=int, default=160)
    ap.add_argument("--quality", type=int, default=76)
    ap.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    a = ap.parse_args(argv)
    jobs = []
    for p in list_images(a.src).paths:
        out = (a.dst / Path(p).relative_to(a.src)).with_suffix(".webp")
        if not out.exists():
            jobs.append((str(p), str(out), a.side, a.quality))
    with ProcessPoolExecutor(max(1, a.workers)) as ex:
        errors = [e for e in ex.map(shrink, jobs, chunksize=64) if e]
    for e in errors:
        print(f"skipped: {e}", file=sys.stderr)
    print(f"{len(jobs) - len(errors)} images written to {a.dst} ({len(errors)} skipped)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
