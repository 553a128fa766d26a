"""Robust image loading, content fingerprints and perceptual hashes.

Every decode failure is raised as :class:`ImageLoadError` with a short machine-readable
``reason`` (one of :data:`LOAD_ERROR_REASONS`), so a scan can record it and go on.

Formats: JPEG (draft-mode reduced decoding), PNG, WebP, GIF (first frame), BMP, TIFF, and
AVIF/HEIC/HEIF through Pillow's own AVIF plugin or pillow-heif when installed. EXIF
orientation is applied and every mode (palette, alpha, CMYK, 16-bit, greyscale, bilevel) is
converted to RGB, alpha composited on :data:`ALPHA_BACKGROUND` (mid grey: white or black
artwork on a transparent background stays visible, so different logos and icons do not all
decode to one blank picture). Images without an alpha channel decode exactly as before.
"""

from __future__ import annotations

import hashlib
import logging
import os
import threading
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageFile, ImageOps, UnidentifiedImageError

__all__ = [
    "ALLOWED_FORMATS",
    "ALPHA_BACKGROUND",
    "FLAT_STD",
    "IMAGE_EXTENSIONS",
    "LOAD_ERROR_REASONS",
    "MAX_DECODE_BYTES",
    "MAX_IMAGE_PIXELS",
    "ImageLoadError",
    "LoadedImage",
    "decode_bytes",
    "file_fingerprint",
    "hamming64",
    "is_flat",
    "is_image_path",
    "load_image",
    "mirror_phash",
    "open_image",
    "phash",
    "register_codecs",
    "to_rgb",
]

logger = logging.getLogger(__name__)

IMAGE_EXTENSIONS = frozenset(
    {".jpg", ".jpeg", ".jpe", ".jfif", ".png", ".webp", ".gif", ".bmp", ".dib", ".tif",
     ".tiff", ".avif", ".heic", ".heif"}
)

#: Reasons an :class:`ImageLoadError` can carry.
LOAD_ERROR_REASONS = frozenset(
    {"empty", "truncated", "corrupt", "not_an_image", "too_large", "unreadable"}
)

#: Images with more pixels than this are refused as decompression bombs (≈ 200 MP).
MAX_IMAGE_PIXELS = 200_000_000

#: The only decoders a user's file is ever handed to, chosen by content (Pillow format names).
#: All are pure raster decoders inside the process. Everything else is "not an image": in
#: particular EPS/PostScript (Pillow would run Ghostscript on it), PDF, WMF and the
#: scientific containers are never opened, whatever the file is named.
ALLOWED_FORMATS = ("JPEG", "MPO", "PNG", "WEBP", "GIF", "BMP", "DIB", "TIFF", "HEIF", "AVIF")

#: Decoded images larger than this in memory are refused (after JPEG DCT reduction):
#: a 16-bit PNG of 14 000 x 14 000 is under the pixel limit yet needs 392 MB as decoded and
#: gigabytes more to convert. 64 MP of RGB fits; peak memory stays within about three times this.
MAX_DECODE_BYTES = 256 * 1024 * 1024

# Bytes per pixel of Pillow's in-memory image modes (RGB is stored as 4 bytes).
_MODE_BYTES = {"1": 1, "L": 1, "P": 1, "I;16": 2, "I;16L": 2, "I;16B": 2, "I;16N": 2,
               "LA": 4, "PA": 4, "La": 4}

# Pillow warns above MAX_IMAGE_PIXELS and errors above twice that; we turn the warning into
# an error as well (see open_image), so the effective limit is MAX_IMAGE_PIXELS.
Image.MAX_IMAGE_PIXELS = MAX_IMAGE_PIXELS
ImageFile.LOAD_TRUNCATED_IMAGES = False

#: What transparent pixels become when an image is decoded to RGB (for indexing, queries,
#: pixel checks and training). Mid grey rather than white: on white, white artwork on a
#: transparent background (logos, icons) vanished, and every such file decoded to the same
#: blank picture with one pHash and one embedding, so unrelated files were grouped as
#: identical copies.
ALPHA_BACKGROUND = (128, 128, 128)

#: An image whose visible content varies by at most this (standard deviation of each RGB
#: channel, 0-255, over a 32 x 32 reduction) is *flat*: a blank canvas, a solid colour, a
#: fully transparent file. Its pHash and embedding say nothing about what it shows (all flat
#: images get about the same ones), so it is never called a copy of another file on them.
FLAT_STD = 2.5

_FINGERPRINT_CHUNK = 64 * 1024
_codecs_lock = threading.Lock()
_codecs_registered = False


class ImageLoadError(Exception):
    """An image file could not be decoded; ``reason`` is a short machine-readable kind."""

    def __init__(self, path: str | os.PathLike[str], reason: str, detail: str = "") -> None:
        self.path = str(path)
        self.reason = reason
        self.detail = detail
        super().__init__(f"{self.path}: {reason}" + (f" ({detail})" if detail else ""))


@dataclass(frozen=True)
class LoadedImage:
    """A decoded RGB image plus facts about the file it came from.

    Attributes:
        image: RGB image (RGBA with ``keep_alpha`` where it has transparency), EXIF
            orientation applied, possibly draft-reduced.
        width: full-resolution width after orientation (not the draft size).
        height: full-resolution height after orientation.
        format: Pillow format name, e.g. ``"JPEG"``.
    """

    image: Image.Image
    width: int
    height: int
    format: str


def register_codecs() -> None:
    """Register optional HEIC/HEIF (and AVIF, if Pillow lacks it) openers once."""
    global _codecs_registered
    if _codecs_registered:
        return
    with _codecs_lock:
        if _codecs_registered:
            return
        try:
            import pillow_heif

            pillow_heif.register_heif_opener()
            if "AVIF" not in Image.registered_extensions().values() and hasattr(
                pillow_heif, "register_avif_opener"
            ):
                pillow_heif.register_avif_opener()
        except ImportError:
            logger.info("pillow-heif not installed: HEIC/HEIF files cannot be read")
        _codecs_registered = True


def _open_formats() -> list[str]:
    """The allowed formats that have an opener here (MPO is opened by the JPEG plugin)."""
    Image.init()
    return [f for f in ALLOWED_FORMATS if f in Image.OPEN]


def is_image_path(path: str | os.PathLike[str]) -> bool:
    """Whether the file name has an image extension we try to decode."""
    return os.path.splitext(os.fspath(path))[1].lower() in IMAGE_EXTENSIONS


def load_image(path: str | os.PathLike[str], *, draft_size: int | None = None,
               keep_alpha: bool = False) -> Image.Image:
    """Load an image as RGB with EXIF orientation applied.

    Args:
        path: image file.
        draft_size: if given, JPEGs are decoded at a reduced scale whose shorter side is still
            at least this many pixels (much faster for large photos).
        keep_alpha: return an image with transparency as RGBA instead (for display).

    Raises:
        ImageLoadError: for missing, empty, truncated, non-image or oversized files.
    """
    return open_image(path, draft_size=draft_size, keep_alpha=keep_alpha).image


def open_image(path: str | os.PathLike[str], *, draft_size: int | None = None,
               keep_alpha: bool = False) -> LoadedImage:
    """Decode an image file to RGB and report its full-resolution size.

    Args:
        path: image file.
        draft_size: if given, JPEGs are decoded with DCT scaling to the smallest scale whose
            shorter side is still ``>= draft_size`` pixels.
        keep_alpha: an image with transparency comes back as RGBA, not composited (for
            display: a thumbnail drawn over a checkerboard). Others are RGB as usual.

    Raises:
        ImageLoadError: ``reason`` is ``empty``, ``truncated``, ``corrupt``, ``not_an_image``,
            ``too_large`` or ``unreadable``.
    """
    register_codecs()
    p = Path(path)
    try:
        size = p.stat().st_size
        if p.is_dir():
            raise IsADirectoryError(21, "is a directory")
    except OSError as exc:
        raise ImageLoadError(p, "unreadable", exc.strerror or str(exc)) from exc
    if size == 0:
        raise ImageLoadError(p, "empty", "zero-byte file")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(p, formats=_open_formats()) as im:
                fmt = im.format or ""
                full_w, full_h = im.size
                if draft_size and fmt in ("JPEG", "MPO"):
                    _draft(im, draft_size)
                if getattr(im, "n_frames", 1) > 1:
                    im.seek(0)
                _check_decode_memory(p, im)
                im.load()
                orientation = im.getexif().get(0x0112, 1)
                if orientation in (5, 6, 7, 8):
                    full_w, full_h = full_h, full_w
                im = ImageOps.exif_transpose(im)
                rgb = _to_rgba(im) if keep_alpha and _has_alpha(im) else _to_rgb(im)
                rgb.load()
                return LoadedImage(rgb, full_w, full_h, fmt)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise ImageLoadError(p, "too_large", str(exc)) from exc
    except UnidentifiedImageError as exc:
        raise ImageLoadError(p, "not_an_image", "unrecognised image format") from exc
    except PermissionError as exc:
        raise ImageLoadError(p, "unreadable", exc.strerror or str(exc)) from exc
    except EOFError as exc:
        raise ImageLoadError(p, "truncated", str(exc) or "unexpected end of file") from exc
    except (OSError, SyntaxError, ValueError, MemoryError, RuntimeError) as exc:
        msg = str(exc)
        low = msg.lower()
        if "truncat" in low or "end of file" in low or "premature" in low:
            raise ImageLoadError(p, "truncated", msg) from exc
        if "security limit" in low or "too large" in low:
            raise ImageLoadError(p, "too_large", msg) from exc
        if _container_truncated(p, size):
            raise ImageLoadError(p, "truncated", msg) from exc
        raise ImageLoadError(p, "corrupt", msg) from exc


def decode_bytes(mode: str, size: tuple[int, int]) -> int:
    """Bytes Pillow needs to hold an image of ``mode`` and ``size`` decoded."""
    return size[0] * size[1] * _MODE_BYTES.get(mode, 4)


def _check_decode_memory(path: Path, im: Image.Image) -> None:
    """Refuse, before decoding, an image whose pixels would not fit :data:`MAX_DECODE_BYTES`."""
    need = decode_bytes(im.mode, im.size)
    if need > MAX_DECODE_BYTES:
        w, h = im.size
        raise ImageLoadError(
            path, "too_large",
            f"{w}x{h} pixels would need {need / 2**20:.0f} MB to decode "
            f"(limit {MAX_DECODE_BYTES / 2**20:.0f} MB)")


def _container_truncated(path: Path, size: int) -> bool:
    """After a decode error: does the container say the file is cut short?

    RIFF (WebP) declares its length; JPEG must end with EOI, PNG with IEND.
    """
    try:
        with open(path, "rb") as f:
            head = f.read(12)
            f.seek(max(0, size - 12))
            tail = f.read(12)
    except OSError:
        return False
    if head[:4] == b"RIFF" and len(head) >= 8:
        return int.from_bytes(head[4:8], "little") + 8 > size
    if head[:2] == b"\xff\xd8":
        return b"\xff\xd9" not in tail
    if head[:8] == b"\x89PNG\r\n\x1a\n":
        return b"IEND" not in tail
    return False


def _draft(im: Image.Image, draft_size: int) -> None:
    """Ask the JPEG decoder for the smallest DCT scale with shorter side >= draft_size."""
    w, h = im.size
    short = min(w, h)
    if short <= draft_size:
        return
    scale = draft_size / short
    # draft() picks a scale so that the result is >= the requested size in both dimensions.
    im.draft("RGB", (max(1, int(np.ceil(w * scale))), max(1, int(np.ceil(h * scale)))))


def to_rgb(im: Image.Image) -> Image.Image:
    """An in-memory image (pasted, dropped) as RGB, the way files decode: transparency
    composited on :data:`ALPHA_BACKGROUND`."""
    return _to_rgb(im)


def _has_alpha(im: Image.Image) -> bool:
    """Whether the decoded image carries transparency (an alpha band or a palette key)."""
    return im.mode in ("RGBA", "LA", "PA", "RGBa", "La") or (
        im.mode == "P" and "transparency" in im.info)


def _to_rgba(im: Image.Image) -> Image.Image:
    """An image with transparency as straight-alpha RGBA."""
    return im.convert("RGBA")


def _to_rgb(im: Image.Image) -> Image.Image:
    """Convert any mode (P, LA, RGBA, CMYK, I;16, F, 1, ...) to RGB, compositing alpha on
    :data:`ALPHA_BACKGROUND`. RGB, greyscale, CMYK etc. (no alpha) convert as Pillow does."""
    if im.mode == "RGB":
        return im
    if im.mode in ("I;16", "I;16B", "I;16L", "I;16N"):
        arr = np.asarray(im)  # uint16: 2 bytes a pixel, no float copy
        return Image.fromarray((arr >> 8).astype(np.uint8), "L").convert("RGB")
    if im.mode == "I":
        arr = np.asarray(im)
        if arr.max(initial=0) > 255:
            arr = arr >> 8
        return Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8), "L").convert("RGB")
    if im.mode == "F":
        arr = np.asarray(im, dtype=np.float64)
        hi = 1.0 if arr.max(initial=0) <= 1.0 else 255.0
        return Image.fromarray(np.clip(arr * (255.0 / hi), 0, 255).astype(np.uint8), "L").convert(
            "RGB"
        )
    if im.mode == "P":
        im = im.convert("RGBA")
    if im.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        im = im.convert("RGBA")
        bg = Image.new("RGB", im.size, ALPHA_BACKGROUND)
        bg.paste(im, mask=im.getchannel("A"))
        return bg
    return im.convert("RGB")  # L, 1, CMYK (Pillow handles Adobe-inverted JPEGs), YCbCr, LAB


def file_fingerprint(path: str | os.PathLike[str], size: int | None = None) -> str:
    """Fast content fingerprint: blake2b-128 over the size and the first/last 64 KiB.

    Good enough to recognise a moved or renamed file without reading it whole. Two files
    that differ only in the middle of a large file collide; callers pair it with size and
    are fine with that for move detection.

    Raises:
        OSError: if the file cannot be read.
    """
    h = hashlib.blake2b(digest_size=16)
    with open(path, "rb") as f:
        if size is None:
            size = os.fstat(f.fileno()).st_size
        h.update(size.to_bytes(8, "little"))
        h.update(f.read(_FINGERPRINT_CHUNK))
        if size > 2 * _FINGERPRINT_CHUNK:
            f.seek(size - _FINGERPRINT_CHUNK)
            h.update(f.read(_FINGERPRINT_CHUNK))
        elif size > _FINGERPRINT_CHUNK:
            h.update(f.read())
    return h.hexdigest()


def _dct_matrix(n: int) -> np.ndarray:
    """Unnormalised DCT-II matrix ``C[k, i] = 2 cos(pi k (2i + 1) / 2n)`` (as scipy's dct)."""
    k = np.arange(n)[:, None]
    i = np.arange(n)[None, :]
    return 2.0 * np.cos(np.pi * k * (2 * i + 1) / (2 * n))


_DCT32 = _dct_matrix(32)


def phash(image: Image.Image, hash_size: int = 8, highfreq_factor: int = 4) -> int:
    """64-bit perceptual hash (pHash) of an already-decoded image.

    Same algorithm and bit order as ``imagehash.phash`` (greyscale, Lanczos resize to 32x32,
    2-D DCT-II, top-left 8x8 block compared with its median), written with numpy only.

    Returns:
        An unsigned int in ``[0, 2**64)``; bit 63 is the first DCT coefficient.
    """
    n = hash_size * highfreq_factor
    grey = image.convert("L").resize((n, n), Image.Resampling.LANCZOS)
    pixels = np.asarray(grey, dtype=np.float64)
    c = _DCT32 if n == 32 else _dct_matrix(n)
    dct = c @ pixels @ c.T
    low = dct[:hash_size, :hash_size]
    bits = (low > np.median(low)).ravel()
    value = 0
    for b in bits:
        value = (value << 1) | int(b)
    return value


def is_flat(image: Image.Image) -> bool:
    """Whether an already-decoded image's visible content is (nearly) uniform: each RGB
    channel varies by at most :data:`FLAT_STD` over a 32 x 32 reduction (see there)."""
    small = image.convert("RGB").resize((32, 32), Image.Resampling.BOX)
    pixels = np.asarray(small, dtype=np.float64).reshape(-1, 3)
    return bool(pixels.std(axis=0).max() <= FLAT_STD)


def mirror_phash(image: Image.Image) -> int:
    """:func:`phash` of the image mirrored left-right (a flipped copy's pHash matches it)."""
    return phash(image.transpose(Image.Transpose.FLIP_LEFT_RIGHT))


def hamming64(a: int, b: int) -> int:
    """Hamming distance between two 64-bit hashes (signed or unsigned ints)."""
    return ((a ^ b) & 0xFFFF_FFFF_FFFF_FFFF).bit_count()
