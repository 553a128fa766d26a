"""Is one photo a crop of another? A pixel check for near-duplicate candidates.

A semantic embedding scores a 50-90 % crop of a photo about as close to it as another shot
of the same kind of scene (cosine ~0.96 for both with the default model), so the cosine
alone cannot tell them apart. The pixels can: the crop reappears inside the photo. Both are
reduced to small grey thumbnails; the smaller (in content) is resized over a range of scales
at which it covers 40-100 % of the other, slid over it, and the best normalised
cross-correlation is the score. On the duplicates benchmark every 50-90 % crop scored at
least 0.92 against its photo and its unmirrored copies, and 606 of 607 pairs of different
photos scored below 0.9 (docs/benchmarks/duplicates.md).
"""

from __future__ import annotations

import logging
import os

import numpy as np
from PIL import Image

from ..imageio import ImageLoadError, load_image

__all__ = ["CROP_CHECK_FLOOR", "CROP_SCORE_MIN", "CropVerifier", "crop_score"]

logger = logging.getLogger(__name__)

#: ``crop_score`` at which one photo is taken for a crop of the other.
CROP_SCORE_MIN = 0.92
#: Near neighbours down to this embedding cosine get the pixel check (docs/benchmarks/
#: duplicates.md: lower finds more crops, and costs more pairs to check).
CROP_CHECK_FLOOR = 0.90
#: Longer side of the grey thumbnails compared.
THUMB_SIDE = 64
#: A first look at half the size and 4 scales: pairs scoring below this are not crops
#: (on the benchmark's 898 candidate pairs it dropped 90 % of the rejected pairs and none of
#: the accepted ones, whose first-look scores were all >= 0.84).
COARSE_SCORE_MIN = 0.75


def _window_sums(a: np.ndarray, h: int, w: int) -> np.ndarray:
    """Sums of every ``h x w`` window of ``a`` (valid positions), from an integral image."""
    s = np.zeros((a.shape[0] + 1, a.shape[1] + 1), np.float64)
    s[1:, 1:] = a.cumsum(0).cumsum(1)
    return s[h:, w:] - s[:-h, w:] - s[h:, :-w] + s[:-h, :-w]


def _inside_score(outer: np.ndarray, inner: Image.Image, *, min_area: float,
                  n_scales: int) -> float:
    """Best normalised cross-correlation of ``inner`` slid over ``outer`` (grey float
    ``[H, W]``), at scales where it covers ``min_area``-100 % of ``outer``.

    The correlation of every position comes from one FFT product; window means and norms
    from integral images."""
    h_out, w_out = outer.shape
    w_in, h_in = inner.size
    lo = np.sqrt(min_area * w_out * h_out / (w_in * h_in))
    hi = min(w_out / w_in, h_out / h_in)
    best = -1.0
    if lo > hi:
        return best
    f_outer = np.fft.rfft2(outer)
    sums, sq_sums = {}, {}
    for r in np.linspace(lo, hi, n_scales):
        w, h = max(4, round(w_in * r)), max(4, round(h_in * r))
        if w > w_out or h > h_out:
            continue
        b = np.asarray(inner.resize((w, h), Image.Resampling.BILINEAR), np.float64)
        b = b - b.mean()
        nb = float(np.linalg.norm(b))
        if nb < 1e-3:  # a flat patch matches anything
            continue
        # sum over the window of outer * b (b has zero mean, so outer's mean drops out)
        full = np.fft.irfft2(f_outer * np.fft.rfft2(b[::-1, ::-1], s=outer.shape),
                             s=outer.shape)
        num = full[h - 1:, w - 1:]
        if (h, w) not in sums:
            sums[h, w] = _window_sums(outer, h, w)
            sq_sums[h, w] = _window_sums(outer * outer, h, w)
        var = np.maximum(sq_sums[h, w] - sums[h, w] ** 2 / (h * w), 0.0)
        corr = np.where(var > 0.01 * h * w,  # a flat window matches nothing
                        num / (np.sqrt(var) * nb + 1e-6), 0.0)
        best = max(best, float(corr.max()))
    return best


def crop_score(a: Image.Image, b: Image.Image, *, min_area: float = 0.4,
               n_scales: int = 8) -> float:
    """How well one grey thumbnail reappears inside the other (-1..1, either way round)."""
    fa, fb = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return max(_inside_score(fa, b, min_area=min_area, n_scales=n_scales),
               _inside_score(fb, a, min_area=min_area, n_scales=n_scales))


class CropVerifier:
    """``verifier(path_a, path_b) -> bool``: whether one file is a crop of the other.

    Thumbnails are decoded once per file (read-only; an unreadable file is never a crop).
    """

    def __init__(self, min_score: float = CROP_SCORE_MIN, side: int = THUMB_SIDE) -> None:
        self.min_score = min_score
        self.side = side
        self._thumbs: dict[str, Image.Image | None] = {}
        self._small: dict[str, Image.Image] = {}

    def thumbnail(self, path: str | os.PathLike[str]) -> Image.Image | None:
        key = os.fspath(path)
        if key not in self._thumbs:
            try:
                im = load_image(key, draft_size=self.side * 2).convert("L")
                im.thumbnail((self.side, self.side), Image.Resampling.BILINEAR)
                self._thumbs[key] = im
            except (ImageLoadError, OSError) as exc:
                logger.info("crop check skips %s: %s", key, exc)
                self._thumbs[key] = None
        return self._thumbs[key]

    def _half(self, key: str, im: Image.Image) -> Image.Image:
        if key not in self._small:
            small = im.copy()
            small.thumbnail((self.side // 2, self.side // 2), Image.Resampling.BILINEAR)
            self._small[key] = small
        return self._small[key]

    def __call__(self, path_a: str | os.PathLike[str], path_b: str | os.PathLike[str]) -> bool:
        a, b = self.thumbnail(path_a), self.thumbnail(path_b)
        if a is None or b is None:
            return False
        first = crop_score(self._half(os.fspath(path_a), a), self._half(os.fspath(path_b), b),
                           n_scales=4)
        return first >= COARSE_SCORE_MIN and crop_score(a, b) >= self.min_score
