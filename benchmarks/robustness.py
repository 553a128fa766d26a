"""Robustness benchmark (issue 14): hostile and odd files, damaged caches.

Builds, in a temporary folder, a photo folder per *bad-input kind* (three good tiny JPEGs next
to one odd or hostile entry) and runs the real engine on it through the ``cukd library`` CLI in
a subprocess (``scan --json`` of a fresh temporary ``--library`` made by ``cukd library add``,
never the user's own; model encode with ``OMP_NUM_THREADS=1`` under ``nice``, each CLI process
capped by ``prlimit --as``). Per kind it records the observed outcome. A kind is **handled**
when the scan

* finished within ``--timeout`` (not hung) with exit status 0 and no Python traceback,
* indexed every good file next to the bad one,
* left the bad entry as expected: recorded as an error with a reason (in the catalog or in
  the scan's error list), or indexed where it is a real image, or (kinds marked ``any``, e.g. a
  FIFO or a dangling link) anything, as long as the scan is fine,
* started no external program (stand-ins for ``gs``, ``convert``, ... first on ``PATH`` log
  any call and exit 1: an attempt is seen whether or not Ghostscript is installed, and a
  hostile PostScript file cannot hang the benchmark),
* stayed under ``--rss-limit-mb`` peak RSS and left no process behind.

Categories: ``format`` (content of other formats, mostly named ``.jpg``: Pillow picks the
decoder by content), ``damaged``, ``name``, ``permission`` (the benchmark usually runs as
root, which reads ``chmod 000`` files anyway; the JSON says whether it did), ``size``
(decompression bombs, dimension claims, extreme shapes, a 40 MP JPEG) and ``race``
(best-effort timing: the change is made when the scan's progress line shows the file was
listed, before it is decoded; ``race_hit`` says whether the change landed first).

To save CLI starts (a torch start costs seconds on a busy machine), up to ``--group-size``
kinds of one category share a scan, one sub-folder each. A kind counts as handled from a
group only when that scan was clean and the kind's own files came out right; every other kind
is scanned again alone and that result is reported (``scan`` says which). Bombs, the 40 MP
photo, races and kinds that could hang always run alone; ``--group-size 1`` runs all alone.

Also measured:

* ``scan_peak_rss_mb_bombs``: peak RSS of one scan over a folder of four bomb PNGs (16-bit
  14000x14000 twice, 8-bit RGB 20000x10000, 16-bit RGBA 10000x10000) and three good JPEGs.
  Peak RSS everywhere is the scan process's ``VmHWM`` sampled every 20 ms.
* ``external_programs_started``: ``execve`` calls after the CLI's own, traced with
  ``strace -f -e trace=execve`` over one scan of every format and damaged kind at once and
  searches with a PostScript and an EPS query (``None`` without strace);
  ``external_programs_on_user_files`` counts those whose arguments name a photo.
* Damaged caches: after a good scan of six photos the library's own files are damaged one at
  a time (catalog truncated / emptied / garbage / a bad page / not a database; code index
  deleted / truncated / random / a directory / stale; embedding file truncated to its header /
  random rows / zeroed rows / stale; stale ``*.tmp`` files), then ``cukd search --json`` with
  an edited copy of a photo, ``cukd library scan`` and the search again. **Recovered**: no
  traceback, hang, NaN or invalid JSON at any step and the last search finds the photo first
  (for catalog damage, a clear short error at every step counts too). This library uses
  ``--cache-model`` (default ``tiny:``, the CLI's test encoder: the library's files do not
  depend on the model and it starts in well under a second).

Usage::

    python benchmarks/robustness.py [--out docs/benchmarks] [--model PATH]
    python benchmarks/robustness.py --only ps_loop_named_jpg,index_deleted --keep

Writes ``robustness.json`` and ``robustness.md`` into ``--out`` (``--only`` without ``--out``
writes them into the work folder). About 4-6 minutes on 2 busy cores, most of it CLI starts.
The script only drives the CLI (it imports nothing from ``core``), so a copy of it measures an
older checkout too.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import logging
import math
import os
import platform
import queue
import random
import re
import shlex
import shutil
import signal
import socket
import sqlite3
import stat
import struct
import subprocess
import sys
import tempfile
import threading
import time
import traceback
import zipfile
import zlib
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

log = logging.getLogger("bench.robustness")

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "docs" / "benchmarks"
DEFAULT_MODEL = ROOT / "resources" / "models" / "default.pt"
TRACEBACK = "Traceback (most recent call last)"
#: Programs a decoder might start on a user's file (Pillow's EPS plugin runs ``gs``).
CANARIES = ("gs", "gsc", "gswin64c", "convert", "magick", "identify", "inkscape",
            "rsvg-convert", "xdg-open", "display", "dcraw", "ffmpeg", "sh-canary")
#: Expected fate of the bad entry: see :func:`judge_bad`.
EXPECTS = ("ok", "error", "ok_or_error", "not_ok", "any")
N_GOOD = 3
#: Environment variable naming the log the stand-in programs append to (one per CLI run).
CANARY_ENV = "CUKD_BENCH_CANARY_LOG"


# --------------------------------------------------------------------------- subprocesses


@dataclass
class Run:
    """One finished (or killed) subprocess."""

    rc: int | None
    timed_out: bool
    seconds: float
    stdout: str
    stderr: str
    peak_rss_mb: float | None
    leftover: bool = False

    @property
    def traceback(self) -> bool:
        return TRACEBACK in self.stderr

    def last_err(self, n: int = 240) -> str:
        lines = [x for x in self.stderr.strip().splitlines() if x.strip()]
        return clip(lines[-1], n) if lines else ""


def clip(s: str, n: int = 240) -> str:
    """``s`` as valid UTF-8 (lone surrogates escaped), at most ``n`` characters."""
    s = s.encode("utf-8", "backslashreplace").decode("utf-8")
    return s if len(s) <= n else s[:n - 3] + "..."


def run_proc(cmd: Sequence[str], *, env: dict[str, str], timeout: float,
             on_stderr_line: Callable[[str], None] | None = None) -> Run:
    """Run ``cmd`` in its own session; kill the whole group after ``timeout`` seconds.

    Peak RSS is the process's ``VmHWM`` (``/proc/PID/status``, the high-water mark of the
    memory of the program it finally ``exec``s), sampled every 20 ms until it exits.
    ``os.wait4``'s ``ru_maxrss`` is no use here: a child forked or vforked from this process
    starts its count at this process's size, so it is only the fallback without ``/proc``.
    """
    t0 = time.monotonic()
    p = subprocess.Popen(list(cmd), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, env=env, start_new_session=True)
    out: list[bytes] = []
    err: list[bytes] = []

    def pump(stream: Any, sink: list[bytes], cb: Callable[[str], None] | None) -> None:
        for line in iter(stream.readline, b""):
            sink.append(line)
            if cb is not None:
                try:
                    cb(line.decode("utf-8", "replace"))
                except Exception:  # a race trigger must never break the run
                    log.exception("stderr callback failed")
        stream.close()

    threads = [threading.Thread(target=pump, args=(p.stdout, out, None), daemon=True),
               threading.Thread(target=pump, args=(p.stderr, err, on_stderr_line),
                                daemon=True)]
    for t in threads:
        t.start()
    timed_out = False
    status, ru = 0, None
    hwm: float | None = None
    status_file = f"/proc/{p.pid}/status"
    try:
        while True:
            pid, status, ru = os.wait4(p.pid, os.WNOHANG)
            if pid:
                break
            hwm = _vm_hwm_mb(status_file) or hwm
            if time.monotonic() - t0 > timeout:
                timed_out = True
                _killpg(p.pid)
                _, status, ru = os.wait4(p.pid, 0)
                break
            time.sleep(0.02)
    except BaseException:  # Ctrl+C: take the CLI (and whatever it started) down too
        _killpg(p.pid)
        raise
    seconds = time.monotonic() - t0
    p.returncode = os.waitstatus_to_exitcode(status)
    leftover = _group_alive(p.pid)
    if leftover:
        _killpg(p.pid)
    for t in threads:
        t.join(timeout=5)
    return Run(rc=None if timed_out else p.returncode, timed_out=timed_out,
               seconds=round(seconds, 2),
               stdout=b"".join(out).decode("utf-8", "replace"),
               stderr=b"".join(err).decode("utf-8", "replace"),
               peak_rss_mb=hwm if hwm is not None else (
                   round(ru.ru_maxrss / 1024, 1) if ru is not None else None),
               leftover=leftover)


def _vm_hwm_mb(status_file: str) -> float | None:
    try:
        with open(status_file) as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return round(int(line.split()[1]) / 1024, 1)
    except (OSError, ValueError):
        pass
    return None


def _killpg(pgid: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signal.SIGKILL)


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
        return True
    except (ProcessLookupError, PermissionError):
        return False


@dataclass
class Env:
    """How to start the CLI: command prefix, environment, limits."""

    cukd: list[str]
    model: str
    env: dict[str, str]
    prefix: list[str]
    canary_log: Path
    timeout: float

    def cmd(self, *args: str, library: Path, model: bool = True) -> list[str]:
        extra = ["--model", self.model] if model else []
        return [*self.prefix, *self.cukd, *args, "--library", str(library), *extra]

    def run(self, *args: str, library: Path, model: bool = True, timeout: float | None = None,
            on_stderr_line: Callable[[str], None] | None = None,
            wrap: Sequence[str] = (), canary: Path | None = None) -> Run:
        cmd = [*wrap, *self.cmd(*args, library=library, model=model)]
        env = dict(self.env, CUKD_LIBRARY=str(library))
        if canary is not None:
            env[CANARY_ENV] = str(canary)
        return run_proc(cmd, env=env, timeout=timeout or self.timeout,
                        on_stderr_line=on_stderr_line)


def find_cukd() -> list[str]:
    for c in (Path(sys.executable).parent / "cukd", ROOT / ".venv" / "bin" / "cukd"):
        if c.is_file():
            return [str(c)]
    found = shutil.which("cukd")
    return [found] if found else [sys.executable, "-m", "core.cli"]


def make_env(a: argparse.Namespace, work: Path) -> Env:
    canary_dir = work / "canary-bin"
    canary_dir.mkdir(parents=True, exist_ok=True)
    canary_log = work / "canary.log"
    canary_log.touch()
    for name in CANARIES:
        p = canary_dir / name
        p.write_text(f"#!/bin/sh\necho \"$0 $*\" >> \"${{{CANARY_ENV}:-{canary_log}}}\"\nexit 1\n")
        p.chmod(0o755)
    env = dict(os.environ)
    env.pop("CUKD_MODEL", None)
    env.update(OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1",
               PYTHONDONTWRITEBYTECODE="1", PYTHONFAULTHANDLER="1")
    if not a.real_path:
        env["PATH"] = f"{canary_dir}{os.pathsep}{env.get('PATH', '')}"
    prefix: list[str] = []
    if shutil.which("nice"):
        prefix += ["nice", "-n", str(a.nice)]
    if a.mem_limit_gb and shutil.which("prlimit"):
        prefix += ["prlimit", f"--as={int(a.mem_limit_gb * 2 ** 30)}", "--"]
    cukd = shlex.split(a.cli) if a.cli else find_cukd()
    return Env(cukd=cukd, model=str(a.model), env=env, prefix=prefix,
               canary_log=canary_log, timeout=a.timeout)


def canary_calls(log_path: Path) -> list[str]:
    """The stand-in program calls logged in ``log_path`` (``program args``)."""
    try:
        lines = log_path.read_text(errors="replace").splitlines()
    except OSError:
        return []
    return [clip(x, 160) for x in lines if x.strip()]


# --------------------------------------------------------------------------- file makers


def good_image(i: int, size: tuple[int, int] = (128, 96)) -> Image.Image:
    """A distinct synthetic photo: a coloured gradient with rectangles and a disc."""
    rng = np.random.default_rng(1000 + i)
    w, h = size
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    c0, c1 = rng.integers(0, 256, 3), rng.integers(0, 256, 3)
    t = (xx / max(w - 1, 1) * rng.uniform(0.2, 1) + yy / max(h - 1, 1) * rng.uniform(0, 0.8))
    t = (t / t.max())[..., None]
    img = c0 * (1 - t) + c1 * t
    for _ in range(3):
        x0, y0 = rng.integers(0, w * 3 // 4), rng.integers(0, h * 3 // 4)
        x1, y1 = x0 + rng.integers(w // 8, w // 2), y0 + rng.integers(h // 8, h // 2)
        img[y0:y1, x0:x1] = rng.integers(0, 256, 3)
    cx, cy, r = rng.integers(0, w), rng.integers(0, h), rng.integers(h // 8, h // 3)
    img[(xx - cx) ** 2 + (yy - cy) ** 2 < r * r] = rng.integers(0, 256, 3)
    img += rng.normal(0, 6, img.shape)
    return Image.fromarray(np.clip(img, 0, 255).astype(np.uint8), "RGB")


def encode(im: Image.Image, fmt: str = "JPEG", **kw: Any) -> bytes:
    b = io.BytesIO()
    im.save(b, fmt, **kw)
    return b.getvalue()


def jpeg(i: int = 50, size: tuple[int, int] = (128, 96), **kw: Any) -> bytes:
    return encode(good_image(i, size), "JPEG", quality=kw.pop("quality", 88), **kw)


def write(d: Path | bytes, name: str | bytes, data: bytes) -> None:
    base = os.fsencode(d)
    p = os.path.join(base, os.fsencode(name))
    with open(p, "wb") as f:
        f.write(data)


def png_chunk(kind: bytes, data: bytes) -> bytes:
    return (struct.pack(">I", len(data)) + kind + data
            + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))


def stream_png(path: Path, width: int, height: int, bit_depth: int, color_type: int) -> None:
    """A PNG of zero pixels written without holding the image (a decompression bomb)."""
    channels = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}[color_type]
    row = bytes(1 + width * channels * bit_depth // 8)
    per = max(1, (1 << 22) // len(row))  # rows per compress call (~4 MB)
    comp = zlib.compressobj(9)
    with open(path, "wb") as f:
        f.write(b"\x89PNG\r\n\x1a\n")
        f.write(png_chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, bit_depth,
                                                color_type, 0, 0, 0)))
        left = height
        block = row * per
        while left > 0:
            k = min(per, left)
            data = comp.compress(block if k == per else row * k)
            if data:
                f.write(png_chunk(b"IDAT", data))
            left -= k
        f.write(png_chunk(b"IDAT", comp.flush()))
        f.write(png_chunk(b"IEND", b""))


def small_png(width: int, height: int, raw_rows: bytes, bit_depth: int = 8,
              color_type: int = 2, extra_chunks: Sequence[bytes] = ()) -> bytes:
    return (b"\x89PNG\r\n\x1a\n"
            + png_chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, bit_depth,
                                             color_type, 0, 0, 0))
            + b"".join(extra_chunks)
            + png_chunk(b"IDAT", zlib.compress(raw_rows)) + png_chunk(b"IEND", b""))


def exif_app1(entries: Sequence[tuple[int, int, int, bytes]], *, next_ifd: int = 0,
              extra: bytes = b"", header: bytes | None = None) -> bytes:
    """An APP1 EXIF segment: little-endian TIFF header and one IFD of raw entries."""
    tiff = header if header is not None else b"II*\x00" + struct.pack("<I", 8)
    ifd = struct.pack("<H", len(entries)) + b"".join(
        struct.pack("<HHI", tag, typ, count) + value.ljust(4, b"\0")[:4]
        for tag, typ, count, value in entries) + struct.pack("<I", next_ifd)
    payload = b"Exif\x00\x00" + tiff + ifd + extra
    return b"\xff\xe1" + struct.pack(">H", len(payload) + 2) + payload


def with_app1(jpg: bytes, app1: bytes) -> bytes:
    return jpg[:2] + app1 + jpg[2:]


def patch_sof(jpg: bytes, width: int, height: int) -> bytes:
    i = jpg.find(b"\xff\xc0")
    if i < 0:
        i = jpg.find(b"\xff\xc2")
    b = bytearray(jpg)
    struct.pack_into(">HH", b, i + 5, height, width)
    return bytes(b)


def bmp_rle8(width: int = 16, height: int = 8) -> bytes:
    palette = b"".join(bytes((b, g, r, 0)) for r, g, b in
                       ((200, 30, 30), (30, 200, 30), (30, 30, 200), (240, 240, 240)))
    data = bytearray()
    for y in range(height):
        data += bytes((width // 2, y % 4, width - width // 2, (y + 1) % 4, 0, 0))
    data += b"\x00\x01"
    off = 14 + 40 + len(palette)
    info = struct.pack("<IiiHHIIiiII", 40, width, height, 1, 8, 1, len(data), 2835, 2835, 4, 0)
    return b"BM" + struct.pack("<IHHI", off + len(data), 0, 0, off) + info + palette + data


def psd(width: int = 32, height: int = 24) -> bytes:
    head = b"8BPS" + struct.pack(">H6xHIIHH", 1, 3, height, width, 8, 3)
    planes = b"".join(bytes([v]) * (width * height) for v in (200, 60, 20))
    return head + struct.pack(">III", 0, 0, 0) + struct.pack(">H", 0) + planes


def fli(width: int = 32, height: int = 24) -> bytes:
    head = bytearray(128)
    struct.pack_into("<IHHHHHHI", head, 0, 128 + 22, 0xAF12, 1, width, height, 8, 3, 5)
    frame = struct.pack("<IHH8x", 22, 0xF1FA, 1) + struct.pack("<IH", 6, 13)  # BLACK chunk
    return bytes(head) + frame


def xcf(width: int = 32, height: int = 24) -> bytes:
    return b"gimp xcf v011\x00" + struct.pack(">III", width, height, 0) + bytes(64)


def dos_eps_with_tiff_preview() -> bytes:
    ps = (b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 32 24\n"
          b"newpath 0 0 moveto 32 24 lineto stroke showpage\n%%EOF\n")
    tiff = encode(good_image(7, (32, 24)), "TIFF")
    head_len = 30
    head = struct.pack("<IIIIIIIH", 0xC6D3D0C5, head_len, len(ps), 0, 0, head_len + len(ps),
                       len(tiff), 0xFFFF)
    return head + ps + tiff


def webp_huge_canvas() -> bytes:
    a, b = good_image(3, (8, 8)), good_image(4, (8, 8))
    data = bytearray(encode(a, "WEBP", save_all=True, append_images=[b], duration=100,
                            loop=0, lossless=True))
    i = data.find(b"VP8X")
    for off in (12, 15):  # canvas width-1, height-1 (24-bit little-endian)
        data[i + off:i + off + 3] = (16382).to_bytes(3, "little")
    return bytes(data)


def gif_huge_dims() -> bytes:
    data = bytearray(encode(Image.new("P", (1, 1)), "GIF"))
    struct.pack_into("<HH", data, 6, 65535, 65535)
    return bytes(data)


def tiff_huge_claim() -> bytes:
    entries = [(256, 4, 1, 100_000), (257, 4, 1, 100_000), (258, 3, 1, 8), (259, 3, 1, 1),
               (262, 3, 1, 1), (273, 4, 1, 8), (278, 4, 1, 100_000), (279, 4, 1, 64)]
    ifd = struct.pack("<H", len(entries)) + b"".join(
        struct.pack("<HHII", t, typ, c, v) for t, typ, c, v in entries) + b"\0\0\0\0"
    return b"II*\x00" + struct.pack("<I", 8 + 64) + bytes(64) + ifd


def bmp_huge_claim() -> bytes:
    info = struct.pack("<IiiHHIIiiII", 40, 50_000, 50_000, 1, 24, 0, 0, 2835, 2835, 0, 0)
    return b"BM" + struct.pack("<IHHI", 54 + 64, 0, 0, 54) + info + bytes(64)


def truncate(data: bytes, frac: float) -> bytes:
    return data[:max(1, int(len(data) * frac))]


def flipped_middle(data: bytes, n: int = 64) -> bytes:
    b = bytearray(data)
    mid = len(b) // 2
    for i in range(mid, min(mid + n, len(b) - 2)):
        b[i] ^= 0xFF
    return bytes(b)


def png_bad_crc() -> bytes:
    b = bytearray(encode(good_image(9, (64, 48)), "PNG"))
    b[29] ^= 0xFF  # IHDR CRC (8 signature + 4 length + 4 type + 13 data)
    return bytes(b)


def zip_bytes() -> bytes:
    b = io.BytesIO()
    with zipfile.ZipFile(b, "w") as z:
        z.writestr("photo.jpg", jpeg(11))
        z.writestr("readme.txt", "not a photo")
    return b.getvalue()


def heif_bytes() -> bytes | None:
    try:
        import pillow_heif
    except ImportError:
        return None
    b = io.BytesIO()
    pillow_heif.from_pillow(good_image(21, (64, 48))).save(b, format="HEIF", quality=80)
    return b.getvalue()


def avif_bytes() -> bytes | None:
    try:
        return encode(good_image(22, (64, 48)), "AVIF", quality=70)
    except (KeyError, OSError, ValueError):
        return None


class Skip(Exception):
    """This kind cannot be made here (missing codec, no privilege)."""


def need(data: bytes | None, what: str) -> bytes:
    if data is None:
        raise Skip(f"{what} cannot be written here")
    return data


# --------------------------------------------------------------------------- bomb assets


class Assets:
    """Big generated files, made once per run and hard-linked into case folders."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self._lock = threading.Lock()
        self.seconds: dict[str, float] = {}

    def get(self, name: str, make: Callable[[Path], None]) -> Path:
        with self._lock:
            p = self.folder / name
            if not p.exists():
                t0 = time.monotonic()
                self.folder.mkdir(parents=True, exist_ok=True)
                tmp = p.with_name(p.name + ".part")
                make(tmp)
                tmp.rename(p)
                self.seconds[name] = round(time.monotonic() - t0, 2)
            return p

    def link(self, name: str, make: Callable[[Path], None], dest: Path) -> None:
        src = self.get(name, make)
        try:
            os.link(src, dest)
        except OSError:
            shutil.copyfile(src, dest)

    # the bombs
    def png16_14000(self, dest: Path) -> None:
        self.link("png16-14000.png", lambda p: stream_png(p, 14000, 14000, 16, 0), dest)

    def png8_rgb_20000x10000(self, dest: Path) -> None:
        self.link("png8-rgb-20000x10000.png",
                  lambda p: stream_png(p, 20000, 10000, 8, 2), dest)

    def png16_rgba_10000(self, dest: Path) -> None:
        self.link("png16-rgba-10000.png", lambda p: stream_png(p, 10000, 10000, 16, 6), dest)

    def png_over_limit(self, dest: Path) -> None:
        self.link("png8-grey-21000.png", lambda p: stream_png(p, 21000, 21000, 8, 0), dest)

    def jpeg_40mp(self, dest: Path) -> None:
        def make(p: Path) -> None:
            w, h = 7300, 5480
            x = np.linspace(0, 255, w, dtype=np.float32)[None, :]
            y = np.linspace(0, 255, h, dtype=np.float32)[:, None]
            arr = np.empty((h, w, 3), np.uint8)
            arr[..., 0] = (x * 0.7 + y * 0.3).astype(np.uint8)
            arr[..., 1] = (255 - x * 0.5 - y * 0.5).astype(np.uint8)
            arr[..., 2] = ((x + y) % 256).astype(np.uint8)
            Image.fromarray(arr, "RGB").save(p, "JPEG", quality=80)
        self.link("jpeg-40mp.jpg", make, dest)


# --------------------------------------------------------------------------- cases


@dataclass
class Case:
    """One bad-input kind: ``make(folder)`` puts the bad entry into the photo folder."""

    kind: str
    category: str
    make: Callable[[Path], None]
    expect: str = "ok_or_error"
    note: str = ""
    n_bad: int = 1
    race: str | None = None  # "delete", "dir", "truncate", "replace", "grow"
    good: int = N_GOOD
    alone: bool = False  # never scanned in a group (bombs, races, possible hangs)


@dataclass
class CaseResult:
    kind: str
    category: str
    expect: str
    outcome: str
    handled: bool | None
    seconds: float
    peak_rss_mb: float | None = None
    exit_code: int | None = None
    timed_out: bool = False
    traceback: bool = False
    good_indexed: int = 0
    good_total: int = 0
    bad_state: str = ""
    failures: list[str] = field(default_factory=list)
    note: str = ""
    race_hit: bool | None = None
    external_calls: list[str] = field(default_factory=list)
    scan: str = ""  # "alone" or "group of N" (see run_group)


def build_cases(assets: Assets, as_root: bool) -> list[Case]:
    """Every bad-input kind, in table order."""
    C: list[Case] = []

    def add(kind: str, category: str, make: Callable[[Path], None], expect: str = "ok_or_error",
            note: str = "", **kw: Any) -> None:
        assert expect in EXPECTS, expect
        kw.setdefault("alone", category == "race")
        C.append(Case(kind, category, make, expect, note, **kw))

    def data(name: str, blob: Callable[[], bytes | None], what: str = "") -> Callable[[Path], None]:
        def make(d: Path) -> None:
            write(d, name, need(blob(), what or name))
        return make

    im = lambda i=30, s=(64, 48): good_image(i, s)  # noqa: E731

    # ---- formats (content sniffing: most are named .jpg)
    ps = (b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 32 24\n"
          b"newpath 0 0 moveto 32 24 lineto stroke showpage\n")
    add("ps_named_jpg", "format", data("drawing.jpg", lambda: ps), "error",
        "PostScript drawing named .jpg (Pillow would hand it to Ghostscript)")
    add("ps_loop_named_jpg", "format",
        data("loop.jpg", lambda: b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 1 1\n{} loop\n"),
        "error", "57-byte PostScript infinite loop named .jpg (hangs Ghostscript forever)",
        alone=True)
    add("ps_bare_loop_named_jpg", "format", data("bare.jpg", lambda: b"%!PS\n{} loop\n"),
        "error", "`%!PS {} loop` without a bounding box")
    add("eps_named_jpg", "format", data("eps.jpg", lambda: encode(im(), "EPS")), "error",
        "EPS written by Pillow, named .jpg")
    add("eps_tiff_preview_named_jpg", "format",
        data("preview.jpg", dos_eps_with_tiff_preview), "error",
        "DOS EPS binary with a TIFF preview")
    add("pdf_named_jpg", "format", data("doc.jpg", lambda: encode(im(), "PDF")), "error")
    add("svg_named_png", "format", data("vector.png", lambda: (
        b'<?xml version="1.0"?><svg xmlns="http://www.w3.org/2000/svg" width="64" '
        b'height="48"><rect width="64" height="48" fill="red"/></svg>')), "error")
    add("xcf_named_jpg", "format", data("gimp.jpg", xcf), "error", "GIMP XCF header")
    for kind, fmt, kw in (("ico", "ICO", {"sizes": [(32, 32)]}), ("tga", "TGA", {}),
                          ("pcx", "PCX", {}), ("ppm", "PPM", {}), ("jpeg2000", "JPEG2000", {}),
                          ("dds", "DDS", {}), ("icns", "ICNS", {}), ("sgi", "SGI", {}),
                          ("qoi", "QOI", {}), ("pillow_im", "IM", {})):
        add(f"{kind}_named_jpg", "format",
            data(f"{kind}.jpg", lambda fmt=fmt, kw=kw: encode(im(), fmt, **kw)),
            note="raster format outside the photo formats, named .jpg")
    add("spider_named_jpg", "format",
        data("spider.jpg", lambda: encode(im().convert("F"), "SPIDER")),
        note="SPIDER scientific format named .jpg")
    add("psd_named_jpg", "format", data("layers.jpg", psd), note="Photoshop PSD named .jpg")
    add("fli_named_jpg", "format", data("anim.jpg", fli), note="Autodesk FLI named .jpg")
    add("natural_extensions_ignored", "format", lambda d: (
        write(d, "a.ppm", encode(im(), "PPM")), write(d, "b.tga", encode(im(), "TGA")),
        write(d, "c.eps", ps), write(d, "d.psd", psd()), write(d, "e.txt", b"hello")),
        "any", "non-photo extensions (.ppm .tga .eps .psd .txt): ignoring them is fine",
        n_bad=5)
    add("mpo_jpg", "format", data("stereo.jpg", lambda: encode(
        im(31), "MPO", save_all=True, append_images=[im(32)])), "ok", "multi-picture JPEG")
    add("heic", "format", data("phone.heic", heif_bytes, "HEIC"), "ok")
    add("avif", "format", data("phone.avif", avif_bytes, "AVIF"), "ok")
    add("animated_gif", "format", data("anim.gif", lambda: encode(
        im(33), "GIF", save_all=True, append_images=[im(34), im(35)], duration=80, loop=0)),
        "ok")
    add("animated_webp", "format", data("anim.webp", lambda: encode(
        im(36), "WEBP", save_all=True, append_images=[im(37)], duration=80, loop=0)), "ok")
    add("apng", "format", data("anim.png", lambda: encode(
        im(38), "PNG", save_all=True, append_images=[im(39)], duration=80)), "ok")
    add("cmyk_jpeg", "format", data("cmyk.jpg", lambda: encode(im(40).convert("CMYK"),
                                                               "JPEG")), "ok")
    add("progressive_jpeg", "format", data("prog.jpg", lambda: encode(
        im(41), "JPEG", progressive=True)), "ok")
    add("png_16bit_grey", "format", data("grey16.png", lambda: encode(Image.fromarray(
        np.asarray(im(42).convert("L"), np.uint16) * 257), "PNG")), "ok")
    add("png_16bit_rgb", "format", data("rgb16.png", lambda: small_png(
        32, 24, b"".join(b"\0" + (np.asarray(im(43, (32, 24)))[y].astype(">u2") * 257)
                         .tobytes() for y in range(24)), 16, 2)), "ok")
    add("png_palette_transparency", "format", data("pal.png", lambda: encode(
        im(44).convert("P", palette=Image.Palette.ADAPTIVE, colors=16), "PNG",
        transparency=0)), "ok")
    add("png_grey_alpha", "format", data("la.png", lambda: encode(
        im(45).convert("LA"), "PNG")), "ok")
    add("png_fully_transparent", "format", data("clear.png", lambda: encode(
        Image.new("RGBA", (64, 48), (0, 0, 0, 0)), "PNG")), "ok")
    add("tiff_1bit", "format", data("bilevel.tif", lambda: encode(
        im(46).convert("1"), "TIFF", compression="group4")), "ok")
    add("tiff_multipage", "format", data("pages.tif", lambda: encode(
        im(47), "TIFF", save_all=True, append_images=[im(48), im(49)])), "ok")
    add("tiff_jpeg", "format", data("jpeg.tif", lambda: encode(
        im(50), "TIFF", compression="jpeg")), "ok")
    add("tiff_lzw", "format", data("lzw.tif", lambda: encode(
        im(51), "TIFF", compression="tiff_lzw")), "ok")
    add("tiff_float32", "format", data("float.tif", lambda: encode(
        im(52).convert("F"), "TIFF")), note="32-bit float greyscale TIFF")
    add("bmp_rle8", "format", data("rle.bmp", bmp_rle8), "ok")
    add("png_named_jpg", "format", data("really-png.jpg", lambda: encode(im(53), "PNG")),
        "ok", "a real PNG with the wrong extension")

    # ---- damaged files
    j = jpeg(60, (160, 120))
    p = encode(good_image(61, (160, 120)), "PNG")
    w = encode(good_image(62, (160, 120)), "WEBP", quality=80)
    add("zero_bytes", "damaged", data("empty.jpg", lambda: b""), "error")
    add("jpeg_soi_only", "damaged", data("soi.jpg", lambda: b"\xff\xd8\xff\xd9"), "error")
    for frac in (0.02, 0.5, 0.9):
        add(f"jpeg_truncated_{int(frac * 100)}pct", "damaged",
            data(f"cut{int(frac * 100)}.jpg", lambda frac=frac: truncate(j, frac)),
            "error" if frac < 0.1 else "ok_or_error")
    add("png_truncated_after_ihdr", "damaged", data("cut.png", lambda: p[:33]), "error")
    add("png_truncated_50pct", "damaged", data("cut50.png", lambda: truncate(p, 0.5)))
    add("webp_truncated_50pct", "damaged", data("cut50.webp", lambda: truncate(w, 0.5)))
    add("gif_truncated_50pct", "damaged", data("cut50.gif", lambda: truncate(
        encode(im(63), "GIF"), 0.5)))
    add("random_bytes_named_jpg", "damaged", data("noise.jpg", lambda: random.Random(
        1).randbytes(20_000)), "error")
    add("jpeg_header_then_random", "damaged", data("halfnoise.jpg", lambda: j[:600]
        + random.Random(2).randbytes(8000)))
    add("jpeg_garbage_appended", "damaged", data("tail.jpg", lambda: j + random.Random(
        3).randbytes(100_000)), "ok", "100 KB of garbage after the end-of-image marker")
    add("jpeg_flipped_bytes_middle", "damaged", data("flip.jpg", lambda: flipped_middle(j)))
    add("png_bad_crc", "damaged", data("crc.png", png_bad_crc))
    add("png_zero_width", "damaged", data("zero-w.png", lambda: small_png(
        0, 4, b"\0" * 4, 8, 2)), "error")
    add("png_ztxt_bomb", "damaged", data("ztxt.png", lambda: small_png(
        8, 8, b"".join(b"\0" + bytes(24) for _ in range(8)), extra_chunks=[png_chunk(
            b"zTXt", b"Comment\0\0" + zlib.compress(bytes(64 << 20), 9))])),
        note="a zTXt chunk inflating to 64 MB")
    add("png_iccp_bomb", "damaged", data("iccp.png", lambda: small_png(
        8, 8, b"".join(b"\0" + bytes(24) for _ in range(8)), extra_chunks=[png_chunk(
            b"iCCP", b"icc\0\0" + zlib.compress(bytes(64 << 20), 9))])),
        note="an ICC profile chunk inflating to 64 MB")
    add("gif_no_frames", "damaged", data("empty.gif", lambda: b"GIF89a" + struct.pack(
        "<HHBBB", 8, 8, 0, 0, 0) + b";"), "error")
    add("tiff_bad_ifd_offset", "damaged", data("ifd.tif", lambda: b"II*\x00" + struct.pack(
        "<I", 0xFFFFFF00) + bytes(32)), "error")
    add("exif_orientation_9", "damaged", data("orient9.jpg", lambda: with_app1(
        j, exif_app1([(0x0112, 3, 1, struct.pack("<H", 9))]))), "ok",
        "EXIF orientation 9 (valid values are 1-8)")
    add("exif_orientation_65535", "damaged", data("orient65535.jpg", lambda: with_app1(
        j, exif_app1([(0x0112, 3, 1, struct.pack("<H", 65535))]))), "ok")
    add("exif_orientation_as_text", "damaged", data("orienttxt.jpg", lambda: with_app1(
        j, exif_app1([(0x0112, 2, 4, b"six\0")]))), "ok", "orientation stored as ASCII")
    add("exif_orientation_6", "damaged", data("orient6.jpg", lambda: with_app1(
        j, exif_app1([(0x0112, 3, 1, struct.pack("<H", 6))]))), "ok",
        "a legitimate rotation (control)")
    add("exif_huge_60kb", "damaged", data("bigexif.jpg", lambda: with_app1(j, exif_app1(
        [(0x0112, 3, 1, struct.pack("<H", 1)), (0x927C, 7, 60_000, struct.pack("<I", 38))],
        extra=random.Random(4).randbytes(60_000)))), "ok", "a 60 KB MakerNote")
    add("exif_invalid_header", "damaged", data("badexif.jpg", lambda: with_app1(
        j, exif_app1([], header=b"II*\x00" + struct.pack("<I", 0xFFFFFFF0),
                     extra=random.Random(5).randbytes(200)))), "ok",
        "EXIF whose IFD offset points past the end")
    add("exif_ifd_loop", "damaged", data("loopexif.jpg", lambda: with_app1(j, exif_app1(
        [(0x0112, 3, 1, struct.pack("<H", 1)), (0x8769, 4, 1, struct.pack("<I", 8))],
        next_ifd=8))), "ok", "EXIF IFD whose next-IFD and sub-IFD point back at itself")
    add("exif_tag_count_2g", "damaged", data("countexif.jpg", lambda: with_app1(j, exif_app1(
        [(0x010E, 2, 0x7FFFFFFF, struct.pack("<I", 26))]))), "ok",
        "a tag claiming 2 GB of text")
    add("text_named_png", "damaged", data("notes.png", lambda: b"just some text\n" * 20),
        "error")
    add("html_named_jpg", "damaged", data("page.jpg", lambda: (
        b"<!DOCTYPE html><html><body><img src=x onerror=alert(1)></body></html>\n")), "error")
    add("python_named_jpg", "damaged", data("script.jpg", lambda: (
        b"#!/usr/bin/env python3\nimport os\nos.system('touch /tmp/cukd-pwned')\n")), "error")
    add("zip_named_jpg", "damaged", data("archive.jpg", zip_bytes), "error")
    add("shell_named_png", "damaged", data("run.png", lambda: (
        b"#!/bin/sh\ntouch /tmp/cukd-pwned\n")), "error")

    # ---- names
    add("non_utf8_latin1", "name", lambda d: write(d, b"caf\xe9.jpg", jpeg(70)), "ok",
        "b'caf\\xe9.jpg' (Latin-1 from an old camera)")
    add("non_utf8_ff_fe", "name", lambda d: write(d, b"\xff\xfe.jpg", jpeg(71)), "ok")
    add("non_utf8_folder", "name", lambda d: (
        os.mkdir(os.path.join(os.fsencode(d), b"Fotos \xe9t\xe9")),
        write(os.path.join(os.fsencode(d), b"Fotos \xe9t\xe9"), "beach.jpg", jpeg(72))), "ok")
    add("newline_in_name", "name", lambda d: write(d, "two\nlines.jpg", jpeg(73)), "ok")
    add("leading_dash", "name", lambda d: write(d, "-rf --help.jpg", jpeg(74)), "ok")
    add("spaces", "name", lambda d: write(d, "  spaced   name .jpg", jpeg(75)), "ok")
    add("emoji", "name", lambda d: write(d, "📷 beach 🏖️.jpg", jpeg(76)), "ok")
    add("rtl_override", "name", lambda d: write(d, "صورة \u202egpj.exe.jpg", jpeg(77)), "ok",
        "Arabic with a right-to-left override")
    add("control_chars", "name", lambda d: write(d, "tab\tbell\x07esc\x1b.jpg", jpeg(78)),
        "ok")
    add("format_string", "name", lambda d: write(d, "%s%n%x{0}$(id).jpg", jpeg(79)), "ok")
    add("backslash", "name", lambda d: write(d, "back\\slash\\.jpg", jpeg(80)), "ok")
    add("long_name_255_bytes", "name", lambda d: write(d, "a" * 251 + ".jpg", jpeg(81)), "ok")
    add("long_utf8_name_254_bytes", "name", lambda d: write(d, "é" * 125 + ".jpg", jpeg(82)),
        "ok")
    add("path_longer_than_path_max", "name", make_deep_path,
        note="a photo below 17 nested 250-byte folders (> 4096 bytes)")
    add("name_just_dot_jpg", "name", lambda d: write(d, ".jpg", jpeg(83)), "any",
        "a hidden file by Unix convention")
    add("uppercase_extension", "name", lambda d: write(d, "IMG_0001.JPG", jpeg(84)), "ok")
    add("nfc_nfd_twins", "name", lambda d: (write(d, "caf\u00e9.jpg", jpeg(85)),
                                            write(d, "cafe\u0301.jpg", jpeg(86))), "ok",
        "NFC and NFD spellings of one name, two files", n_bad=2)

    # ---- permissions and file types
    add("unreadable_file_chmod_000", "permission", lambda d: (
        write(d, "secret.jpg", jpeg(90)), os.chmod(d / "secret.jpg", 0)),
        note="root reads it anyway" if as_root else "")
    add("unreadable_dir_chmod_000", "permission", lambda d: (
        (d / "locked").mkdir(), write(d / "locked", "in.jpg", jpeg(91)),
        os.chmod(d / "locked", 0)), "any", "root lists it anyway" if as_root else "")
    add("fifo_named_jpg", "permission", lambda d: os.mkfifo(d / "pipe.jpg"), "any",
        "must not hang", alone=True)
    add("socket_named_jpg", "permission", make_socket, "any")
    add("char_device_named_jpg", "permission", make_device, "any",
        "a character device like /dev/zero (endless bytes)", alone=True)
    add("symlink_to_file", "permission", lambda d: os.symlink(
        d / "good_0.jpg", d / "link.jpg"), "ok_or_error",
        "recorded as skipped with a reason, or indexed when links are followed")
    add("symlink_loop", "permission", lambda d: (
        os.symlink(d / "loop_b.jpg", d / "loop_a.jpg"),
        os.symlink(d / "loop_a.jpg", d / "loop_b.jpg")), "any", n_bad=2)
    add("symlink_dir_loop", "permission", lambda d: (
        (d / "sub").mkdir(), os.symlink("..", d / "sub" / "up")), "any", alone=True)
    add("dangling_symlink", "permission", lambda d: os.symlink(
        d / "gone.jpg", d / "dangling.jpg"), "any")
    add("symlink_outside_root", "permission", make_outside_link, "ok_or_error", alone=True)
    add("symlink_to_dev_zero", "permission", lambda d: os.symlink(
        "/dev/zero", d / "zero.jpg"), "any", "must not read forever", alone=True)
    add("hard_link", "permission", lambda d: os.link(d / "good_0.jpg", d / "hard.jpg"), "ok",
        "a second name of a good file")

    # ---- sizes
    add("png16_14000x14000_bomb", "size", lambda d: assets.png16_14000(d / "bomb16.png"),
        note="381 KB, under the pixel limit, 392 MB decoded, GBs to convert", alone=True)
    add("png8_rgb_20000x10000", "size",
        lambda d: assets.png8_rgb_20000x10000(d / "wide.png"), note="200 MP at the limit",
        alone=True)
    add("png16_rgba_10000x10000", "size",
        lambda d: assets.png16_rgba_10000(d / "rgba16.png"), note="800 MB decoded", alone=True)
    add("png_over_pixel_limit", "size", lambda d: assets.png_over_limit(d / "over.png"),
        "error", "441 MP greyscale (over twice Pillow's limit)", alone=True)
    add("gif_claims_65535x65535", "size", data("huge.gif", gif_huge_dims), "ok_or_error")
    add("webp_claims_16383x16383", "size", data("huge.webp", webp_huge_canvas), "ok_or_error",
        "animated WebP canvas 16383x16383 with 8x8 frames")
    add("jpeg_sof_claims_65500x65500", "size", data("huge.jpg", lambda: patch_sof(
        jpeg(93, (64, 48)), 65500, 65500)), "error")
    add("tiff_claims_100000x100000", "size", data("huge.tif", tiff_huge_claim), "error")
    add("bmp_claims_50000x50000", "size", data("huge.bmp", bmp_huge_claim), "error")
    add("jpeg_1x60000", "size", data("tall.jpg", lambda: encode(Image.new(
        "L", (1, 60000), 128), "JPEG")), "ok_or_error")
    add("jpeg_60000x1", "size", data("flat.jpg", lambda: encode(Image.new(
        "RGB", (60000, 1), (10, 120, 200)), "JPEG")), "ok_or_error")
    add("jpeg_1x1", "size", data("dot.jpg", lambda: encode(Image.new(
        "RGB", (1, 1), (200, 10, 10)), "JPEG")), "ok")
    add("png_1x1", "size", data("dot.png", lambda: encode(Image.new(
        "RGBA", (1, 1), (200, 10, 10, 128)), "PNG")), "ok")
    add("gif_2000_frames", "size", data("many.gif", lambda: encode(
        Image.new("P", (16, 16)), "GIF", save_all=True, append_images=[
            Image.new("P", (16, 16), i % 200) for i in range(1999)], duration=10)), "ok")
    add("jpeg_40mp", "size", lambda d: assets.jpeg_40mp(d / "big40mp.jpg"), "ok",
        "a legitimate 7300x5480 photo", alone=True)

    # ---- races (best-effort timing, see the module docstring)
    note = "best-effort timing: changed when the progress line shows it listed"
    add("race_deleted_after_listing", "race", make_victim, "any", note, race="delete", good=40)
    add("race_replaced_by_directory", "race", make_victim, "any", note, race="dir", good=40)
    add("race_truncated_after_listing", "race", make_victim, "ok_or_error", note,
        race="truncate", good=40)
    add("race_content_replaced_after_listing", "race", make_victim, "ok", note,
        race="replace", good=40)
    add("race_growing_file", "race", make_victim_dir, "ok_or_error",
        "best-effort timing: written in 12 pieces over ~4 s while the scan starts", race="grow",
        good=40)
    return C


def make_deep_path(d: Path) -> None:
    fd = os.open(d, os.O_RDONLY | os.O_DIRECTORY)
    try:
        for i in range(17):
            name = f"{i:02d}" + "d" * 248
            os.mkdir(name, dir_fd=fd)
            nfd = os.open(name, os.O_RDONLY | os.O_DIRECTORY, dir_fd=fd)
            os.close(fd)
            fd = nfd
        f = os.open("deep.jpg", os.O_WRONLY | os.O_CREAT, 0o644, dir_fd=fd)
        os.write(f, jpeg(87))
        os.close(f)
    finally:
        os.close(fd)


def make_socket(d: Path) -> None:
    path = str(d / "sock.jpg")
    if len(path) > 100:
        raise Skip("socket path too long for AF_UNIX")
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        s.bind(path)
    finally:
        s.close()


def make_device(d: Path) -> None:
    try:
        os.mknod(d / "zero.jpg", 0o644 | stat.S_IFCHR, os.makedev(1, 5))
    except (OSError, AttributeError) as exc:
        raise Skip(f"cannot make a device node here: {exc}") from exc


def make_outside_link(d: Path) -> None:
    outside = d.parent / "outside"
    outside.mkdir(exist_ok=True)
    write(outside, "elsewhere.jpg", jpeg(94))
    os.symlink(outside / "elsewhere.jpg", d / "elsewhere.jpg")


def make_victim(d: Path) -> None:
    (d / "zz").mkdir()
    write(d / "zz", "victim.jpg", jpeg(95, (200, 150)))


def make_victim_dir(d: Path) -> None:
    (d / "zz").mkdir()


# --------------------------------------------------------------------------- judging


def read_catalog(lib: Path) -> list[tuple[str, str, str, int | None, int | None]] | None:
    """``(path, status, error, width, height)`` of every catalog row (a copy is read)."""
    src = lib / "catalog.sqlite3"
    if not src.is_file():
        return None
    tmp = Path(tempfile.mkdtemp(prefix="cat-", dir=lib.parent))
    try:
        for suffix in ("", "-wal"):
            s = Path(str(src) + suffix)
            if s.exists():
                shutil.copyfile(s, tmp / ("c.sqlite3" + suffix))
        con = sqlite3.connect(tmp / "c.sqlite3")
        con.text_factory = lambda b: b.decode("utf-8", "surrogateescape")
        try:
            try:
                rows = con.execute(
                    "SELECT path, status, error, width, height FROM files").fetchall()
            except sqlite3.Error:
                rows = [(*r, None, None) for r in con.execute(
                    "SELECT path, status, error FROM files").fetchall()]
        finally:
            con.close()
        return [(str(p), str(s), str(e or ""), wd, ht) for p, s, e, wd, ht in rows]
    except sqlite3.Error as exc:
        log.warning("cannot read %s: %s", src, exc)
        return None
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def parse_json(text: str) -> Any:
    """Strict JSON (NaN/Infinity refused); None when invalid."""
    def bad(c: str) -> Any:
        raise ValueError(f"non-standard JSON constant {c}")
    try:
        return json.loads(text, parse_constant=bad)
    except ValueError:
        return None


def judge_bad(expect: str, n_bad: int, rows: list[tuple], scan_errors: list[dict]) -> tuple[
        bool, str]:
    """Whether the bad entries ended up as ``expect`` says, and a description.

    ``rows`` are the catalog rows that are not good files; ``scan_errors`` the scan's error
    entries about them. ``ok``: indexed (``n_bad`` rows); ``error``: recorded with a reason,
    not indexed; ``ok_or_error``: either; ``not_ok``: not indexed; ``any``: anything.
    """
    ok_rows = [r for r in rows if r[1] == "ok"]
    err_rows = [r for r in rows if r[1] != "ok"]
    parts = []
    if ok_rows:
        dims = ", ".join(f"{r[3]}x{r[4]}" for r in ok_rows[:3] if r[3])
        parts.append(f"indexed{f' ({dims})' if dims else ''}"
                     + (f" x{len(ok_rows)}" if len(ok_rows) > 1 else ""))
    for r in err_rows[:2]:
        parts.append(f"{r[1]}: {clip(r[2] or '(no reason)', 90)}")
    cat_paths = {r[0] for r in rows}
    only_scan = [e for e in scan_errors if e.get("path") not in cat_paths]
    for e in only_scan[:2]:
        detail = f" ({clip(str(e.get('detail')), 60)})" if e.get("detail") else ""
        parts.append(f"scan error: {e.get('reason')}{detail}")
    if not parts:
        parts.append("ignored (not in the catalog, no error)")
    recorded = bool(err_rows or only_scan)
    indexed = len(ok_rows) >= n_bad
    good = {"ok": indexed and not recorded, "error": recorded and not ok_rows,
            "ok_or_error": bool(ok_rows) or recorded, "not_ok": not ok_rows,
            "any": True}[expect]
    return good, "; ".join(parts)


class Slot:
    """A case folder reused by one worker: ``case/photos`` is the library folder of
    ``pristine``, a library made once by ``cukd library add``; each case scans a copy of it
    (saves one CLI start per case)."""

    def __init__(self, root: Path, env: Env) -> None:
        self.root = root
        self.case = root / "case"
        self.photos = self.case / "photos"
        self.pristine = root / "lib-pristine"
        self.photos.mkdir(parents=True)
        add = env.run("library", "add", str(self.photos), "--no-watch", library=self.pristine,
                      model=False, timeout=120)
        if add.rc != 0:
            raise RuntimeError(f"`cukd library add` failed ({add.rc}): {add.last_err()}")
        cleanup(self.photos)

    def fresh(self) -> tuple[Path, Path]:
        """An empty photo folder and a copy of the pristine library."""
        cleanup(self.case)
        self.photos.mkdir(parents=True)
        lib = self.case / "lib"
        shutil.copytree(self.pristine, lib)
        return self.photos, lib

    def done(self, keep_as: Path | None) -> None:
        if keep_as is not None:
            keep_as.parent.mkdir(parents=True, exist_ok=True)
            os.rename(self.case, keep_as)
        else:
            cleanup(self.case)


def judge(case: Case, res: CaseResult, run: Run, scan: dict | None, rows: list[tuple],
          folder: Path, calls: list[str], rss_limit: float, timeout: float) -> CaseResult:
    """Fill ``res`` from one scan: the rows and scan errors below ``folder`` belong to
    ``case`` (its good files and its bad entry)."""
    root = str(folder.resolve())
    prefix = root + os.sep
    mine = [r for r in rows if r[0].startswith(prefix)]
    good_paths = {os.path.join(root, f"good_{i}.jpg") for i in range(case.good)}
    good_ok = sum(1 for r in mine if r[0] in good_paths and r[1] == "ok")
    bad_rows = [r for r in mine if r[0] not in good_paths]
    scan_errors = [e for e in (scan or {}).get("errors", [])
                   if str(e.get("path", "")).startswith(prefix) and e.get("path") not in good_paths]
    expect_ok, state = judge_bad(case.expect, case.n_bad, bad_rows, scan_errors)
    res.exit_code, res.timed_out, res.traceback = run.rc, run.timed_out, run.traceback
    res.peak_rss_mb, res.good_indexed, res.bad_state = run.peak_rss_mb, good_ok, state
    res.external_calls = calls
    fails = []
    if run.timed_out:
        fails.append(f"hung: killed after {timeout:.0f} s")
    elif run.rc != 0:
        fails.append(f"scan exit {run.rc}: {run.last_err()}")
    elif scan is None:
        fails.append("scan --json printed invalid JSON")
    if run.traceback:
        tb_last = [x for x in run.stderr.splitlines() if x.strip() and not x.startswith(" ")]
        fails.append(f"traceback ({clip(tb_last[-1], 120) if tb_last else '?'})")
    if good_ok < case.good:
        fails.append(f"{case.good - good_ok} of {case.good} good files not indexed")
    if not expect_ok and not run.timed_out:
        fails.append(f"bad entry not {case.expect.replace('_', ' ')}")
    if calls:
        progs = sorted({c.split()[0].rsplit("/", 1)[-1] for c in calls})
        fails.append(f"started {', '.join(progs)}")
    if run.peak_rss_mb and run.peak_rss_mb > rss_limit:
        fails.append(f"peak RSS {run.peak_rss_mb:.0f} MB > {rss_limit:.0f} MB")
    if run.leftover:
        fails.append("left processes running")
    res.failures = fails
    res.handled = not fails
    res.outcome = ("; ".join(fails) + " | " + state) if fails else state
    return res


def scan_once(env: Env, slot: Slot, lib: Path, *, progress: bool = False,
              on_line: Callable[[str], None] | None = None) -> tuple[Run, dict | None,
                                                                    list[tuple], list[str]]:
    """``cukd library scan --json`` of the slot's library: (run, JSON, rows, stand-in calls)."""
    canary = slot.case / "canary.log"
    args = ["library", "scan", "--json"] + ([] if progress else ["--no-progress"])
    run = env.run(*args, library=lib, on_stderr_line=on_line, canary=canary)
    scan = parse_json(run.stdout) if run.rc == 0 else None
    return run, scan, read_catalog(lib) or [], canary_calls(canary)


def new_result(case: Case) -> CaseResult:
    return CaseResult(case.kind, case.category, case.expect, "", None, 0.0, note=case.note,
                      good_total=case.good)


def fill_folder(case: Case, folder: Path, goods: list[bytes], first: int = 0) -> None:
    for i in range(case.good):
        write(folder, f"good_{i}.jpg", goods[(first + i) % len(goods)])
    case.make(folder)


def run_alone(case: Case, slot: Slot, env: Env, rss_limit: float, goods: list[bytes],
              keep_as: Path | None) -> CaseResult:
    """Build the case's folder next to a fresh library, scan it alone, judge."""
    t0 = time.monotonic()
    res = new_result(case)
    res.scan = "alone"
    try:
        photos, lib = slot.fresh()
        try:
            fill_folder(case, photos, goods)
        except Skip as exc:
            res.outcome = f"skipped: {exc}"
            return res
        trigger = RaceTrigger(case, photos) if case.race else None
        if trigger is not None:
            trigger.before_scan()
        try:
            run, scan, rows, calls = scan_once(env, slot, lib, progress=trigger is not None,
                                               on_line=trigger.on_line if trigger else None)
        finally:
            if trigger is not None:
                trigger.after_scan()
        judge(case, res, run, scan, rows, photos, calls, rss_limit, env.timeout)
        if trigger is not None:
            root = str(photos.resolve()) + os.sep
            res.race_hit = trigger.hit([r for r in rows if r[0].startswith(root)
                                        and "good_" not in r[0]])
            if res.race_hit is False:
                res.outcome += " (race missed: the file was read before the change)"
        return res
    except Exception as exc:  # the benchmark's own failure: recorded, never fatal
        log.exception("case %s failed", case.kind)
        res.outcome = f"benchmark error: {clip(repr(exc), 200)}"
        res.handled = False
        res.failures = ["benchmark error"]
        return res
    finally:
        res.seconds = round(time.monotonic() - t0, 2)
        try:
            slot.done(keep_as)
        except OSError as exc:
            log.warning("cannot clean up after %s: %s", case.kind, exc)


def run_group(cases: list[Case], slot: Slot, env: Env, rss_limit: float, goods: list[bytes],
              keep_as: Callable[[Case], Path | None]) -> list[CaseResult]:
    """Scan several kinds at once (one sub-folder each, with its own good files).

    A kind counts as handled from the group scan only when that scan was clean (finished,
    exit 0, no traceback, nothing started, RSS under the limit) and its own files came out
    right; every other kind is run again alone, and that result is the one reported.
    """
    t0 = time.monotonic()
    results: dict[str, CaseResult] = {}
    rerun: list[Case] = []
    try:
        photos, lib = slot.fresh()
        members: list[tuple[Case, Path]] = []
        for j, case in enumerate(cases):
            sub = photos / f"k{j:02d}"
            sub.mkdir()
            try:
                fill_folder(case, sub, goods, first=3 * j)
                members.append((case, sub))
            except Skip as exc:
                r = new_result(case)
                r.outcome = f"skipped: {exc}"
                results[case.kind] = r
        run, scan, rows, calls = scan_once(env, slot, lib)
        clean = (not run.timed_out and run.rc == 0 and scan is not None and not run.traceback
                 and not calls and not run.leftover
                 and not (run.peak_rss_mb and run.peak_rss_mb > rss_limit))
        seconds = round(time.monotonic() - t0, 2)
        for case, sub in members:
            r = judge(case, new_result(case), run, scan, rows, sub, [], rss_limit, env.timeout)
            if clean and r.handled:
                r.scan, r.seconds = f"group of {len(members)}", seconds
                results[case.kind] = r
            else:
                rerun.append(case)
        if not clean:
            log.info("group scan of %d kinds not clean (%s): running each alone",
                     len(members), clip(run.last_err() or f"exit {run.rc}", 100))
    except Exception:
        log.exception("group scan failed; running each alone")
        rerun = [c for c in cases if c.kind not in results]
    finally:
        try:
            slot.done(None)
        except OSError as exc:
            log.warning("cannot clean up after a group: %s", exc)
    for case in rerun:
        results[case.kind] = run_alone(case, slot, env, rss_limit, goods, keep_as(case))
    return [results[c.kind] for c in cases]


def cleanup(d: Path) -> None:
    for dirpath, dirnames, _ in os.walk(d):
        for n in dirnames:
            p = os.path.join(dirpath, n)
            with contextlib.suppress(OSError):
                if not os.path.islink(p):
                    os.chmod(p, 0o755)
    shutil.rmtree(d, ignore_errors=True)


class RaceTrigger:
    """Changes ``zz/victim.jpg`` once the scan's walk progress shows it was listed.

    The progress bar (not a terminal: one plain line per phase and per folder walked) prints
    ``finding files [...] N/N`` after each folder; the victim's folder ``zz`` is walked after
    the good files, so ``N > good`` means the victim was listed. Decoding starts right after
    the walk, with the victim queued behind the good files.
    """

    def __init__(self, case: Case, photos: Path) -> None:
        self.case, self.photos = case, photos
        self.victim = photos / "zz" / "victim.jpg"
        self.fired = False
        self.fired_at_s: float | None = None
        self._writer: threading.Thread | None = None
        self._stop = threading.Event()
        self._t0 = time.monotonic()

    def before_scan(self) -> None:
        self._t0 = time.monotonic()
        if self.case.race == "grow":
            data = jpeg(96, (200, 150))
            pieces = 12

            def grow() -> None:
                with open(self.victim, "wb") as f:
                    for k in range(pieces):
                        f.write(data[k * len(data) // pieces:(k + 1) * len(data) // pieces])
                        f.flush()
                        if self._stop.wait(0.35):
                            f.write(data[(k + 1) * len(data) // pieces:])
                            return

            self._writer = threading.Thread(target=grow, daemon=True)
            self._writer.start()

    def on_line(self, line: str) -> None:
        if self.fired or self.case.race == "grow" or not line.startswith("finding files"):
            return
        m = re.search(r"(\d+)/(\d+)", line)
        if not m or int(m.group(1)) <= self.case.good:
            return
        self.fired = True
        self.fired_at_s = round(time.monotonic() - self._t0, 2)
        race = self.case.race
        if race == "delete":
            os.unlink(self.victim)
        elif race == "dir":
            os.unlink(self.victim)
            os.mkdir(self.victim)
        elif race == "truncate":
            os.truncate(self.victim, 100)
        elif race == "replace":
            tmp = self.victim.with_name("victim.new")
            tmp.write_bytes(jpeg(97, (180, 140)))
            os.replace(tmp, self.victim)

    def after_scan(self) -> None:
        self._stop.set()
        if self._writer is not None:
            self._writer.join(timeout=10)

    def hit(self, bad_rows: list[tuple]) -> bool | None:
        """Did the change land before the file was read? (None: cannot tell.)"""
        race = self.case.race
        if race == "grow":
            return None
        if not self.fired:
            return False
        ok = [r for r in bad_rows if r[1] == "ok"]
        if race in ("delete", "dir", "truncate"):
            return not ok  # indexed means it was read before the change
        return None  # replace: either content is a valid photo


# --------------------------------------------------------------------------- bombs, strace


def bombs_rss(env: Env, work: Path, assets: Assets, goods: list[bytes]) -> dict[str, Any]:
    """Peak RSS of one scan over four bombs and three good files."""
    d = work / "bombs"
    photos, lib = d / "photos", d / "lib"
    photos.mkdir(parents=True)
    for i in range(N_GOOD):
        write(photos, f"good_{i}.jpg", goods[i])
    assets.png16_14000(photos / "bomb16-a.png")
    assets.png16_14000(photos / "bomb16-b.png")
    assets.png8_rgb_20000x10000(photos / "bomb-rgb.png")
    assets.png16_rgba_10000(photos / "bomb-rgba16.png")
    files = sorted(p.name for p in photos.iterdir())
    env.run("library", "add", str(photos), "--no-watch", library=lib, model=False, timeout=60)
    run = env.run("library", "scan", "--json", "--no-progress", library=lib,
                  timeout=max(env.timeout, 180))
    scan = parse_json(run.stdout) or {}
    out = {"files": files, "peak_rss_mb": run.peak_rss_mb, "seconds": run.seconds,
           "exit_code": run.rc, "timed_out": run.timed_out, "traceback": run.traceback,
           "indexed": scan.get("indexed"),
           "errors": [f"{Path(e['path']).name}: {e.get('reason')}"
                      for e in scan.get("errors", [])],
           "stderr_tail": run.last_err()}
    cleanup(d)
    return out


def strace_check(env: Env, work: Path, cases: list[Case], goods: list[bytes]) -> dict[str, Any]:
    """execve calls of a scan over every format/damaged file and of two hostile searches."""
    strace = shutil.which("strace")
    if not strace:
        return {"available": False, "external_programs_started": None}
    d = work / "strace"
    photos, lib = d / "photos", d / "lib"
    photos.mkdir(parents=True)
    for i in range(N_GOOD):
        write(photos, f"good_{i}.jpg", goods[i])
    used = []
    for c in cases:
        if c.category not in ("format", "damaged"):
            continue
        sub = photos / c.kind
        sub.mkdir()
        try:
            c.make(sub)
            used.append(c.kind)
        except Skip:
            shutil.rmtree(sub, ignore_errors=True)
    env.run("library", "add", str(photos), "--no-watch", library=lib, model=False, timeout=60)
    steps: dict[str, Any] = {}
    programs: list[str] = []
    queries = [("scan", ["library", "scan", "--json", "--no-progress"])]
    for kind, name in (("ps_loop_named_jpg", "loop.jpg"),
                       ("eps_tiff_preview_named_jpg", "preview.jpg")):
        q = photos / kind / name
        if q.exists():
            queries.append((f"search {kind}", ["search", str(q), "--json"]))
    for label, args in queries:
        trace = d / f"trace-{len(steps)}.txt"
        canary = d / f"canary-{len(steps)}.log"
        run = env.run(*args, library=lib, timeout=max(env.timeout, 120), canary=canary,
                      wrap=[strace, "-f", "-qq", "-s", "256", "-e", "trace=execve", "-o",
                            str(trace)])
        calls = parse_execve(trace, env)
        programs += calls
        steps[label] = {"exit_code": run.rc, "timed_out": run.timed_out,
                        "traceback": run.traceback, "seconds": run.seconds,
                        "execve_after_cli": calls, "stand_in_calls": canary_calls(canary),
                        "stderr_tail": run.last_err(160)}
    on_files = [c for c in programs if str(photos) in c]
    cleanup(d)
    return {"available": True, "external_programs_started": len(programs),
            "external_programs_on_user_files": len(on_files),
            "external_programs": sorted(set(programs)), "kinds_in_folder": len(used),
            "steps": steps}


def parse_execve(trace: Path, env: Env) -> list[str]:
    """``program args`` of every successful execve after the CLI's own interpreter started
    (the ``nice``/``prlimit`` wrappers before it are not counted)."""
    try:
        lines = trace.read_text(errors="replace").splitlines()
    except OSError:
        return []
    entry = env.cukd[0]
    calls = []
    started = False
    for line in lines:
        m = re.search(r'execve\("([^"]*)", \[(.*?)\](?:, 0x[0-9a-f]+| ?/\*)', line)
        if not m:
            continue
        prog = m.group(1)
        if not started:
            started = prog == entry or (len(env.cukd) > 1 and prog == sys.executable)
            continue
        if re.search(r"= -1 E[A-Z]+", line):
            continue  # a PATH lookup miss, not a start
        argv = [x.strip().strip('"') for x in m.group(2).split(", ")][1:]
        calls.append(clip(" ".join([prog, *argv]), 200))
    return calls


# --------------------------------------------------------------------------- damaged caches


@dataclass
class CacheCase:
    name: str
    damage: Callable[[Path, Path], None]  # (library dir, stale snapshot dir)
    clear_error_ok: bool = False
    note: str = ""
    check_tmp: bool = False


def _one(lib: Path, pattern: str) -> Path:
    found = sorted(p for p in lib.glob(pattern) if not p.name.startswith("phash"))
    if not found:
        raise FileNotFoundError(f"no {pattern} in {lib}")
    return found[0]


def _replace_by_dir(p: Path) -> None:
    p.unlink()
    p.mkdir()
    (p / "junk").write_bytes(b"x")


def _truncate(p: Path, n: int) -> None:
    os.truncate(p, n)


def _randomise(p: Path, start: int = 0, n: int | None = None, seed: int = 7) -> None:
    size = p.stat().st_size
    n = size - start if n is None else n
    with open(p, "r+b") as f:
        f.seek(start)
        f.write(random.Random(seed).randbytes(n))


def _zero(p: Path, start: int) -> None:
    size = p.stat().st_size
    with open(p, "r+b") as f:
        f.seek(start)
        f.write(bytes(max(0, size - start)))


EMB_HEADER = 4096  # core/library/embeddings.py: a 4 KiB header, then fp16 rows


def build_cache_cases() -> list[CacheCase]:
    cat = "catalog.sqlite3"
    emb, idx = "*.cukdemb", "codes-*.cukdidx"

    def stale(pattern: str) -> Callable[[Path, Path], None]:
        def damage(lib: Path, snap: Path) -> None:
            shutil.copyfile(_one(snap, pattern), _one(lib, pattern))
        return damage

    def tmp_files(lib: Path, snap: Path) -> None:
        for p in (_one(lib, idx), lib / "phash.cukdidx", _one(lib, emb)):
            (p.parent / f"{p.name}.k1ll3d.tmp").write_bytes(random.Random(1).randbytes(1 << 20))

    return [
        CacheCase("catalog_truncated_half", lambda lb, s: _truncate(
            lb / cat, (lb / cat).stat().st_size // 2), True),
        CacheCase("catalog_zero_bytes", lambda lb, s: _truncate(lb / cat, 0), True),
        CacheCase("catalog_random_bytes", lambda lb, s: _randomise(lb / cat), True,
                  "overwritten with garbage, same size"),
        CacheCase("catalog_page_garbage", lambda lb, s: _randomise(lb / cat, 8192, 4096), True,
                  "one 4 KB page in the middle overwritten (database disk image is malformed)"),
        CacheCase("catalog_not_a_database", lambda lb, s: (lb / cat).write_text(
            "this is not a database\n"), True),
        CacheCase("index_deleted", lambda lb, s: _one(lb, idx).unlink()),
        CacheCase("index_truncated", lambda lb, s: _truncate(
            _one(lb, idx), _one(lb, idx).stat().st_size // 2)),
        CacheCase("index_random_bytes", lambda lb, s: _randomise(_one(lb, idx))),
        CacheCase("index_replaced_by_directory", lambda lb, s: _replace_by_dir(_one(lb, idx))),
        CacheCase("index_stale_valid", stale(idx), note="a valid index saved before the last "
                  "two photos were added"),
        CacheCase("embeddings_truncated_to_header", lambda lb, s: _truncate(
            _one(lb, emb), EMB_HEADER)),
        CacheCase("embeddings_random_rows", lambda lb, s: _randomise(_one(lb, emb),
                                                                    EMB_HEADER)),
        CacheCase("embeddings_zeroed_rows", lambda lb, s: _zero(_one(lb, emb), EMB_HEADER),
                  note="rows present but all zero"),
        CacheCase("embeddings_stale_valid", stale(emb), note="a valid file saved before the "
                  "last two photos were added"),
        CacheCase("stale_tmp_files", tmp_files, note="1 MB *.tmp leftovers of a killed save; "
                  "recovered only if they are cleaned up", check_tmp=True),
    ]


def judge_search(run: Run, expect_path: str) -> dict[str, Any]:
    """``{state, correct, clear_error, bad}`` of one ``cukd search --json`` run."""
    out: dict[str, Any] = {"exit_code": run.rc, "seconds": run.seconds}
    if run.timed_out:
        return {**out, "state": "hung", "correct": False, "clear_error": False, "bad": True}
    if run.traceback:
        return {**out, "state": f"traceback: {run.last_err(120)}", "correct": False,
                "clear_error": False, "bad": True}
    if run.rc != 0:
        err = [x for x in run.stderr.strip().splitlines() if x.strip()]
        clear = 1 <= len(err) <= 3 and len(" ".join(err)) < 400
        return {**out, "state": f"error: {clip(' '.join(err), 160)}", "correct": False,
                "clear_error": clear, "bad": not clear}
    d = parse_json(run.stdout)
    if d is None:
        nan = bool(re.search(r"\bNaN\b|\bInfinity\b", run.stdout))
        return {**out, "state": "NaN in output (invalid JSON)" if nan else "invalid JSON",
                "correct": False, "clear_error": False, "bad": True}
    results = d.get("results") or []
    scores = [r.get("score") for r in results]
    if any(not isinstance(s, (int, float)) or not math.isfinite(s) for s in scores):
        return {**out, "state": "non-finite scores", "correct": False, "clear_error": False,
                "bad": True}
    if not results:
        return {**out, "state": f"no results (searched {d.get('searched')})",
                "correct": False, "clear_error": False, "bad": False}
    top = results[0].get("path")
    ok = top == expect_path
    return {**out, "state": "correct" if ok else f"wrong top result {Path(str(top)).name} "
            f"of {len(results)}", "correct": ok, "clear_error": False, "bad": False}


def cache_cases(env: Env, work: Path, jobs: int, keep: bool, model: str,
                only: set[str] | None = None) -> dict[str, Any]:
    """Damage a scanned library's files one at a time; search, rescan, search.

    ``model`` indexes and searches this library (default ``tiny:``, the CLI's test encoder:
    the library's own files do not depend on the model, and each CLI call then costs well
    under a second instead of a torch start).
    """
    env = replace(env, model=model)
    base = work / "cache"
    photos, queries = base / "photos", base / "queries"
    photos.mkdir(parents=True)
    queries.mkdir()
    pristine, snap = base / "lib-pristine", base / "lib-snapshot"
    n, target = 6, 5
    for i in range(4):
        write(photos, f"photo_{i}.jpg", jpeg(200 + i, (160, 120)))
    env.run("library", "add", str(photos), "--no-watch", library=pristine, model=False,
            timeout=60)
    env.run("library", "scan", "--json", "--no-progress", library=pristine)
    shutil.copytree(pristine, snap)
    for i in range(4, n):
        write(photos, f"photo_{i}.jpg", jpeg(200 + i, (160, 120)))
    scan = env.run("library", "scan", "--json", "--no-progress", library=pristine)
    q = good_image(200 + target, (160, 120)).resize((136, 102), Image.Resampling.BILINEAR)
    query = queries / "query.jpg"
    q.save(query, "JPEG", quality=70)
    expect_path = str((photos / f"photo_{target}.jpg").resolve())
    baseline = judge_search(env.run("search", str(query), "--json", "-k", "5",
                                    library=pristine), expect_path)
    if not baseline["correct"]:
        log.warning("baseline search is not correct (%s): cache cases cannot recover",
                    baseline["state"])
    info: dict[str, Any] = {"photos": n, "model": model,
                            "query": "photo_5 resized to 85 % and saved at JPEG q70",
                            "baseline_search": baseline["state"],
                            "baseline_scan_exit": scan.rc}
    cases = [c for c in build_cache_cases() if not only or c.name in only]

    def one(c: CacheCase) -> dict[str, Any]:
        t0 = time.monotonic()
        lib = base / f"lib-{c.name}"
        r: dict[str, Any] = {"name": c.name, "note": c.note}
        try:
            shutil.copytree(pristine, lib)
            c.damage(lib, snap)
            s1 = judge_search(env.run("search", str(query), "--json", "-k", "5", library=lib),
                              expect_path)
            sc = env.run("library", "scan", "--json", "--no-progress", library=lib)
            scan_json = parse_json(sc.stdout) if sc.rc == 0 else None
            if sc.timed_out:
                scan_state = "hung"
            elif sc.traceback:
                scan_state = f"traceback: {sc.last_err(120)}"
            elif sc.rc != 0:
                scan_state = f"error: {sc.last_err(160)}"
            elif scan_json is None:
                scan_state = "invalid JSON"
            else:
                scan_state = (f"ok: {scan_json.get('indexed')} searchable, "
                              f"{scan_json.get('encoded')} encoded")
            scan_clear = (not sc.timed_out and not sc.traceback and sc.rc not in (0, None)
                          and len(sc.stderr.strip().splitlines()) <= 3)
            s2 = judge_search(env.run("search", str(query), "--json", "-k", "5", library=lib),
                              expect_path)
            tmp_left = sorted(p.name for p in lib.glob("*.tmp")) if c.check_tmp else []
            bad = (s1["bad"] or s2["bad"] or sc.timed_out or sc.traceback
                   or (sc.rc == 0 and scan_json is None))
            ok_end = s2["correct"] or (c.clear_error_ok and s1["clear_error"] and scan_clear
                                       and s2["clear_error"])
            recovered = bool(ok_end and not bad and not tmp_left)
            r.update(first_search=s1["state"], rescan=scan_state, search_after_rescan=s2["state"],
                     recovered=recovered, tmp_files_left=tmp_left,
                     first_search_correct=s1["correct"])
            fails = []
            if not ok_end:
                fails.append("not recovered")
            if tmp_left:
                fails.append(f"{len(tmp_left)} *.tmp files left")
            r["outcome"] = ("recovered" if recovered else "; ".join(fails) or "bad step") + (
                f" | search: {s1['state']} -> scan: {scan_state} -> search: {s2['state']}")
        except Exception as exc:
            log.exception("cache case %s failed", c.name)
            r.update(recovered=False, outcome=f"benchmark error: {clip(repr(exc), 200)}")
        finally:
            r["seconds"] = round(time.monotonic() - t0, 2)
            if not keep:
                cleanup(lib)
        return r

    with ThreadPoolExecutor(max(1, jobs)) as ex:
        results = list(ex.map(one, cases))
    if not keep:
        cleanup(base)
    info["cases"] = results
    return info


# --------------------------------------------------------------------------- report


def machine_info(env: Env) -> dict[str, Any]:
    def version(mod: str) -> str | None:
        try:
            return __import__(mod).__version__
        except Exception:
            return None

    def git(*args: str) -> str:
        try:
            return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True,
                                  timeout=20).stdout.rstrip()
        except (OSError, subprocess.TimeoutExpired):
            return ""

    mem = None
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem = round(int(line.split()[1]) / 2 ** 20, 1)
    except OSError:
        pass
    dirty = [x[3:] for x in git("status", "--porcelain", "--untracked-files=no").splitlines()]
    return {"machine": platform.machine(), "system": platform.system(),
            "kernel": platform.release(), "cpu_count": os.cpu_count(), "memory_gb": mem,
            "load_average": [round(x, 2) for x in os.getloadavg()],
            "python": platform.python_version(), "pillow": Image.__version__,
            "pillow_heif": version("pillow_heif"), "numpy": np.__version__,
            "running_as_root": hasattr(os, "geteuid") and os.geteuid() == 0,
            "ghostscript_installed": bool(shutil.which("gs", path=os.environ.get("PATH"))),
            "strace": bool(shutil.which("strace")),
            "git_commit": git("rev-parse", "--short", "HEAD").strip() or None,
            "uncommitted_changes": dirty, "cli": " ".join(env.cukd),
            "cli_prefix": " ".join(env.prefix), "date": time.strftime("%Y-%m-%d %H:%M:%S")}


def md_cell(s: Any) -> str:
    return clip(str(s), 400).replace("|", "\\|").replace("\n", " ")


def write_md(d: dict[str, Any], path: Path) -> None:
    m = d["machine"]
    cfg = d["config"]
    lines = [
        "# Robustness: hostile and odd files, damaged caches (issue 14)", "",
        f"`python benchmarks/robustness.py` on {m['cpu_count']} CPU cores ({m['machine']}, "
        f"{m['memory_gb']} GB), Python {m['python']}, Pillow {m['pillow']}, pillow-heif "
        f"{m['pillow_heif']}; commit {m['git_commit']}"
        + (f" with uncommitted changes in {', '.join(m['uncommitted_changes'])}"
           if m["uncommitted_changes"] else "") + f"; {m['date']}; {d['total_seconds']} s.",
        "",
        f"Each kind is its own folder: {N_GOOD} good 128x96 JPEGs (40 for the races) and the bad "
        "entry, in a fresh temporary library scanned by `cukd library scan --json` "
        f"(model `{cfg['model']}`, `OMP_NUM_THREADS=1`, `{m['cli_prefix']}`, timeout "
        f"{cfg['timeout_s']} s). To save CLI starts, up to {cfg['group_size']} kinds of a "
        "category share one scan (one sub-folder each, column *scan*); a kind only counts as "
        "handled from such a scan if the scan was clean and its own files came out right; "
        "every other kind is scanned again alone and that result is reported. Bombs, the 40 MP "
        "photo, races and possible hangs always run alone. Peak RSS: `VmHWM` of the scan "
        "process (a group's for grouped kinds). **Handled**: finished in time, exit 0, no "
        "traceback, every good "
        "file indexed, the bad entry as expected (`error`: recorded with a reason in the catalog "
        "or the scan's error list; `ok`: indexed; `ok_or_error`: either; `any`: anything), no "
        f"external program started, peak RSS under {cfg['rss_limit_mb']} MB, no process left.",
        "",
        "Notes: the benchmark ran as " + ("**root**, so `chmod 000` files and folders are "
                                          "readable to it; " if m["running_as_root"] else
                                          "a normal user; ")
        + ("Ghostscript is installed, but " if m["ghostscript_installed"] else
           "Ghostscript is not installed here; ")
        + "a stand-in `gs` (and `convert`, `magick`, ...) first on `PATH` logs any call and "
        "exits 1, so an attempt to run one is seen and cannot hang. Race kinds use best-effort "
        "timing (`race_hit` in the JSON).", "",
        "## Summary", "", "| key | value |", "|---|---|",
        f"| `bad_input_kinds` | {d['bad_input_kinds']} |",
        f"| `bad_input_handled` | **{d['bad_input_handled']}** |",
        f"| `scan_peak_rss_mb_bombs` | {d['scan_peak_rss_mb_bombs']} |",
        f"| `external_programs_started` | {d['external_programs_started']} |",
        f"| `cache_damage_cases` | {d['cache_damage_cases']} |",
        f"| `cache_damage_recovered` | **{d['cache_damage_recovered']}** |", "",
        "| category | kinds | handled |", "|---|---|---|"]
    for cat, v in d["by_category"].items():
        lines.append(f"| {cat} | {v['kinds']} | {v['handled']} |")
    lines += ["", "## Bad inputs", "",
              "| kind | category | expected | handled | outcome | scan | s | peak RSS MB |",
              "|---|---|---|---|---|---|---|---|"]
    for c in d["cases"]:
        h = "-" if c["handled"] is None else ("yes" if c["handled"] else "**no**")
        note = f" ({c['note']})" if c.get("note") else ""
        lines.append(f"| `{c['kind']}` | {c['category']} | {c['expect']} | {h} | "
                     f"{md_cell(c['outcome'] + note)} | {c.get('scan') or '-'} | "
                     f"{c['seconds']} | "
                     f"{c['peak_rss_mb'] if c['peak_rss_mb'] is not None else '-'} |")
    b = d.get("bombs") or {}
    lines += ["", "## Peak RSS of a scan over bombs", "",
              f"One scan over {', '.join(b.get('files', []))}: peak RSS **{b.get('peak_rss_mb')} "
              f"MB**, {b.get('seconds')} s, exit {b.get('exit_code')}"
              + (", **hung**" if b.get("timed_out") else "")
              + (", **traceback**" if b.get("traceback") else "")
              + f", {b.get('indexed')} searchable; errors: "
              + (", ".join(b.get("errors", [])) or "none") + "."]
    s = d.get("strace") or {}
    lines += ["", "## External programs", ""]
    if not s.get("available"):
        lines.append("strace is not available: not measured.")
    elif "steps" not in s:
        lines.append("Not run (`--only` / `--skip`).")
    else:
        lines.append(f"`strace -f -e trace=execve` over one scan of a folder with every format "
                     f"and damaged kind ({s.get('kinds_in_folder')} kinds) and searches with "
                     f"PostScript/EPS queries: **{s['external_programs_started']}** programs "
                     "started after the CLI's own interpreter"
                     + (f" (`{'`, `'.join(s['external_programs'])}`)" if s["external_programs"]
                        else "") + f", {s.get('external_programs_on_user_files')} of them on a "
                     "file of the photo folder.")
        lines += ["", "| step | exit | execve after the CLI | stand-in calls | s |",
                  "|---|---|---|---|---|"]
        for k, v in s.get("steps", {}).items():
            lines.append(f"| {md_cell(k)} | {v['exit_code']}"
                         + (" (hung)" if v["timed_out"] else "")
                         + (" (traceback)" if v["traceback"] else "")
                         + f" | {md_cell(', '.join(v['execve_after_cli']) or 'none')} | "
                         f"{md_cell(', '.join(v.get('stand_in_calls', [])) or 'none')} | "
                         f"{v['seconds']} |")
    cc = d.get("cache") or {}
    lines += ["", "## Damaged caches", "",
              f"A library of {cc.get('photos')} photos indexed with `--model "
              f"{cc.get('model')}`"
              + (" (the CLI's test encoder: the library's files do not depend on the model, "
                 "and it starts in well under a second)" if str(cc.get("model")).startswith(
                     "tiny:") else "") + f" (baseline search: "
              f"{cc.get('baseline_search')}); each case damages a copy, then `cukd search "
              "--json` (query: an edited copy of one photo, which must come first), `cukd "
              "library scan`, and the search again. Recovered: no traceback/hang/NaN/invalid "
              "JSON at any step and the last search correct (catalog damage: or a clear error at "
              "every step).", "",
              "| case | recovered | first search | rescan | search after rescan | s |",
              "|---|---|---|---|---|---|"]
    for c in d["cache_cases"]:
        note = f" ({c['note']})" if c.get("note") else ""
        lines.append(f"| `{c['name']}`{md_cell(note)} | "
                     f"{'yes' if c.get('recovered') else '**no**'} | "
                     f"{md_cell(c.get('first_search', c.get('outcome', '')))} | "
                     f"{md_cell(c.get('rescan', '-'))} | "
                     f"{md_cell(c.get('search_after_rescan', '-'))}"
                     + (f"; tmp left: {len(c['tmp_files_left'])}" if c.get("tmp_files_left")
                        else "") + f" | {c.get('seconds')} |")
    if d.get("errors"):
        lines += ["", "## Parts that failed", ""]
        lines += [f"- {k}: `{md_cell(v.strip().splitlines()[-1])}`" for k, v in d["errors"].items()]
    skipped = [c for c in d["cases"] if c["handled"] is None]
    if skipped:
        lines += ["", "Skipped (not counted): " + ", ".join(
            f"`{c['kind']}` ({md_cell(c['outcome'])})" for c in skipped) + "."]
    path.write_bytes(("\n".join(lines) + "\n").encode("utf-8", "backslashreplace"))


# --------------------------------------------------------------------------- main


def run_cases(selected: list[Case], env: Env, work: Path, a: argparse.Namespace,
              goods: list[bytes]) -> list[CaseResult]:
    """All kinds: groups and single kinds on ``--jobs`` workers, then the races alone."""
    index = {c.kind: i for i, c in enumerate(selected)}
    tasks: list[list[Case]] = []
    by_cat: dict[str, list[Case]] = {}
    for c in selected:
        if c.race:
            continue
        if c.alone or a.group_size <= 1:
            tasks.append([c])
        else:
            by_cat.setdefault(c.category, []).append(c)
    for members in by_cat.values():
        tasks += [members[i:i + a.group_size] for i in range(0, len(members), a.group_size)]
    tasks.sort(key=lambda t: -len(t))  # groups first: their reruns come early
    races = [c for c in selected if c.race]
    jobs = max(1, min(a.jobs, len(tasks) or 1))
    slots: queue.Queue[Slot] = queue.Queue()
    with ThreadPoolExecutor(jobs) as ex:
        for sl in ex.map(lambda k: Slot(work / f"slot-{k}", env), range(jobs)):
            slots.put(sl)

    def keep_as(c: Case) -> Path | None:
        return work / "cases" / f"{index[c.kind]:03d}-{c.kind}" if a.keep else None

    def go(task: list[Case]) -> list[CaseResult]:
        slot = slots.get()
        try:
            if len(task) == 1:
                out = [run_alone(task[0], slot, env, a.rss_limit_mb, goods, keep_as(task[0]))]
            else:
                out = run_group(task, slot, env, a.rss_limit_mb, goods, keep_as)
        finally:
            slots.put(slot)
        for r in out:
            log.info("%-36s %-4s %6.1fs %-11s %s", r.kind, {True: "ok", False: "FAIL",
                                                            None: "skip"}[r.handled],
                     r.seconds, r.scan, clip(r.outcome, 140))
        return out

    results: list[CaseResult] = []
    with ThreadPoolExecutor(jobs) as ex:
        for out in ex.map(go, tasks):
            results += out
    for c in races:  # one at a time: their timing must not be disturbed
        results += go([c])
    results.sort(key=lambda r: index[r.kind])
    return results


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=None,
                    help="output folder for robustness.json/.md (default docs/benchmarks)")
    ap.add_argument("--model", default=str(DEFAULT_MODEL), help="model file for the scans")
    ap.add_argument("--cache-model", default="tiny:",
                    help="model of the damaged-cache library (default tiny:, the CLI's test "
                         "encoder; pass a model file to use it there too)")
    ap.add_argument("--timeout", type=float, default=60.0, help="seconds per CLI call")
    ap.add_argument("--jobs", type=int, default=2, help="scans run at once (races run alone)")
    ap.add_argument("--group-size", type=int, default=8,
                    help="kinds scanned together before any that fails is rerun alone "
                         "(1: every kind alone)")
    ap.add_argument("--nice", type=int, default=10, help="nice level of the CLI processes")
    ap.add_argument("--rss-limit-mb", type=float, default=2048.0,
                    help="a case over this peak RSS is not handled")
    ap.add_argument("--mem-limit-gb", type=float, default=8.0,
                    help="address-space cap of each CLI process (prlimit; 0: none)")
    ap.add_argument("--only", default="", help="comma list of kinds / cache cases to run")
    ap.add_argument("--skip", default="", help="comma list of parts to skip: "
                                               "cases,bombs,strace,cache")
    ap.add_argument("--real-path", action="store_true",
                    help="no stand-in gs etc. on PATH (a real Ghostscript may hang until the "
                         "timeout)")
    ap.add_argument("--cli", default=None,
                    help="command that runs the CLI (default: the venv's cukd), e.g. "
                         "'python -m core.cli' run from another checkout")
    ap.add_argument("--work", type=Path, default=None, help="work folder (default: a temp dir)")
    ap.add_argument("--keep", action="store_true", help="keep the work folder")
    return ap.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    a = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    for m in (a.model, a.cache_model):
        if not m.startswith("tiny:") and not Path(m).is_file():
            raise SystemExit(f"model file not found: {m} (pass --model PATH)")
    t_start = time.monotonic()
    work = a.work or Path(tempfile.mkdtemp(prefix="cukd-robustness-"))
    work.mkdir(parents=True, exist_ok=True)
    only = {x.strip() for x in a.only.split(",") if x.strip()}
    skip = {x.strip() for x in a.skip.split(",") if x.strip()}
    out_dir = a.out or (work if only else OUT)
    out_dir.mkdir(parents=True, exist_ok=True)
    env = make_env(a, work)
    as_root = hasattr(os, "geteuid") and os.geteuid() == 0
    assets = Assets(work / "assets")
    goods = [jpeg(i) for i in range(40)]
    cases = build_cases(assets, as_root)
    names = [c.kind for c in cases]
    assert len(names) == len(set(names)), "duplicate kind names"
    selected = [c for c in cases if not only or c.kind in only]
    log.info("work folder %s; %d kinds; CLI %s", work, len(selected), " ".join(env.cukd))
    d: dict[str, Any] = {"config": {"model": a.model, "timeout_s": a.timeout, "jobs": a.jobs,
                                    "group_size": a.group_size, "cache_model": a.cache_model,
                                    "nice": a.nice, "rss_limit_mb": a.rss_limit_mb,
                                    "mem_limit_gb": a.mem_limit_gb, "good_files": N_GOOD,
                                    "only": sorted(only), "stand_in_programs": not a.real_path}}
    d["errors"] = {}

    def part(name: str, func: Callable[[], Any], default: Any) -> Any:
        """Run one part; a failure is recorded under ``errors``, never fatal."""
        try:
            return func()
        except Exception:
            log.exception("part %s failed", name)
            d["errors"][name] = traceback.format_exc(limit=4)
            return default

    results: list[CaseResult] = []
    if "cases" not in skip:
        results = part("cases", lambda: run_cases(selected, env, work, a, goods), [])
    counted = [r for r in results if r.handled is not None]
    d["bad_input_kinds"] = len(counted)
    d["bad_input_handled"] = sum(1 for r in counted if r.handled)
    cats: dict[str, dict[str, int]] = {}
    for r in counted:
        v = cats.setdefault(r.category, {"kinds": 0, "handled": 0})
        v["kinds"] += 1
        v["handled"] += int(bool(r.handled))
    d["by_category"] = cats
    d["cases"] = [asdict(r) for r in results]
    d["not_handled"] = [r.kind for r in counted if not r.handled]
    d["bombs"] = {}
    if "bombs" not in skip and not only:
        log.info("bombs: one scan over four bomb images")
        d["bombs"] = part("bombs", lambda: bombs_rss(env, work, assets, goods), {})
    d["scan_peak_rss_mb_bombs"] = d["bombs"].get("peak_rss_mb")
    d["strace"] = {"available": bool(shutil.which("strace"))}
    if "strace" not in skip and not only:
        log.info("strace: execve over a scan of every format/damaged kind and two searches")
        d["strace"] = part("strace", lambda: strace_check(env, work, cases, goods),
                           d["strace"])
    d["external_programs_started"] = d["strace"].get("external_programs_started")
    d["cache"] = {}
    if "cache" not in skip and (not only or any(
            c.name in only for c in build_cache_cases())):
        log.info("damaged caches")
        cc = part("cache", lambda: cache_cases(env, work, a.jobs, a.keep, a.cache_model, only),
                  {"cases": []})
        d["cache"] = cc
        for c in cc["cases"]:
            log.info("%-36s %-4s %6.1fs  %s", c["name"], "ok" if c.get("recovered") else "FAIL",
                     c.get("seconds", 0), clip(c.get("outcome", ""), 150))
    d["cache_cases"] = d["cache"].pop("cases", [])
    d["cache_damage_cases"] = len(d["cache_cases"])
    d["cache_damage_recovered"] = sum(1 for c in d["cache_cases"] if c.get("recovered"))
    d["asset_seconds"] = assets.seconds
    d["machine"] = machine_info(env)
    d["total_seconds"] = round(time.monotonic() - t_start, 1)
    keys = ["bad_input_kinds", "bad_input_handled", "scan_peak_rss_mb_bombs",
            "external_programs_started", "cache_damage_cases", "cache_damage_recovered"]
    d = {**{k: d[k] for k in keys}, **{k: v for k, v in d.items() if k not in keys}}
    out = out_dir / "robustness.json"
    out.write_bytes((json.dumps(d, indent=2, ensure_ascii=False) + "\n").encode(
        "utf-8", "backslashreplace"))
    write_md(d, out.with_suffix(".md"))
    log.info("handled %d of %d kinds; caches recovered %d of %d; bombs peak RSS %s MB; "
             "external programs %s; %.0f s; wrote %s and %s", d["bad_input_handled"],
             d["bad_input_kinds"], d["cache_damage_recovered"], d["cache_damage_cases"],
             d["scan_peak_rss_mb_bombs"], d["external_programs_started"], d["total_seconds"],
             out, out.with_suffix(".md"))
    if not a.keep and a.work is None:
        cleanup(work)
    return 1 if d["errors"] else 0


if __name__ == "__main__":
    sys.exit(main())
