"""Draw the app icon (a photo with a magnifier) and write PNG, ICO and ICNS next to this file.

Run once after changing the drawing: ``python resources/icons/make_icons.py``.
"""

from __future__ import annotations

from pathlib import Path

from PIL import Image, ImageDraw

HERE = Path(__file__).resolve().parent
NAME = "cukd-app"
SIZE = 512  # drawn large, scaled down for the smaller sizes


def draw(size: int = SIZE) -> Image.Image:
    """The icon as an RGBA image of ``size`` x ``size`` pixels."""
    s = size / 512
    im = Image.new("RGBA", (size, size), (0, 0, 0, 0))
    d = ImageDraw.Draw(im)
    # a photo: rounded card, sky, sun, two hills
    d.rounded_rectangle([40 * s, 72 * s, 400 * s, 392 * s], radius=36 * s,
                        fill=(250, 250, 250, 255), outline=(52, 73, 94, 255), width=round(14 * s))
    d.rounded_rectangle([70 * s, 102 * s, 370 * s, 362 * s], radius=18 * s,
                        fill=(133, 193, 233, 255))
    d.ellipse([270 * s, 130 * s, 330 * s, 190 * s], fill=(244, 208, 63, 255))
    d.polygon([(70 * s, 362 * s), (170 * s, 220 * s), (270 * s, 362 * s)],
              fill=(39, 174, 96, 255))
    d.polygon([(190 * s, 362 * s), (280 * s, 262 * s), (370 * s, 362 * s)],
              fill=(30, 132, 73, 255))
    # a magnifier over the lower right corner
    cx, cy, r = 330 * s, 330 * s, 100 * s
    d.line([(cx + 0.68 * r, cy + 0.68 * r), (470 * s, 470 * s)], fill=(52, 73, 94, 255),
           width=round(44 * s))
    d.ellipse([cx - r, cy - r, cx + r, cy + r], fill=(255, 255, 255, 170),
              outline=(52, 73, 94, 255), width=round(26 * s))
    d.ellipse([cx - 0.55 * r, cy - 0.6 * r, cx - 0.15 * r, cy - 0.35 * r],
              fill=(255, 255, 255, 230))
    return im


def main() -> None:
    """Write ``cukd-app.png`` (256 px), ``cukd-app.ico`` and ``cukd-app.icns``."""
    big = draw()
    big.resize((256, 256), Image.Resampling.LANCZOS).save(HERE / f"{NAME}.png", optimize=True)
    big.save(HERE / f"{NAME}.ico", sizes=[(16, 16), (24, 24), (32, 32), (48, 48), (64, 64),
                                          (128, 128), (256, 256)])
    big.save(HERE / f"{NAME}.icns")


if __name__ == "__main__":
    main()
