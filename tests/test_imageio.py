"""Image loading: every format, every mode, EXIF orientation, draft decoding, bad files,
fingerprints and the numpy pHash against imagehash."""

from __future__ import annotations

import io
import os

import imagehash
import numpy as np
import pytest
from PIL import Image, ImageDraw, features

from core import imageio
from core.imageio import (
    ALPHA_BACKGROUND,
    ImageLoadError,
    file_fingerprint,
    hamming64,
    is_flat,
    load_image,
    open_image,
    phash,
    register_codecs,
)
from tests.library_helpers import make_image

register_codecs()


def _heif_can_write() -> bool:
    try:
        make_image(0, (16, 16)).save(io.BytesIO(), "HEIF")
        return True
    except Exception:
        return False


def _mean_abs(a: Image.Image, b: Image.Image) -> float:
    return float(np.abs(np.asarray(a, float) - np.asarray(b, float)).mean())


FORMATS = [
    ("a.jpg", {}, 6.0),
    ("a.png", {}, 0.0),
    ("a.webp", {"quality": 95}, 6.0),
    ("a.gif", {}, 12.0),
    ("a.bmp", {}, 0.0),
    ("a.tiff", {}, 0.0),
    pytest.param("a.heic", {"quality": 95}, 8.0, marks=pytest.mark.skipif(
        not _heif_can_write(), reason="no HEIF encoder installed")),
    pytest.param("a.avif", {"quality": 95}, 8.0, marks=pytest.mark.skipif(
        not features.check("avif"), reason="Pillow built without AVIF")),
]


@pytest.mark.parametrize(("name", "kw", "tol"), FORMATS)
def test_formats_decode_to_rgb(tmp_path, name, kw, tol):
    src = make_image(1, (64, 48))
    p = tmp_path / name
    src.save(p, **kw)
    loaded = open_image(p)
    assert loaded.image.mode == "RGB"
    assert loaded.image.size == (64, 48) == (loaded.width, loaded.height)
    assert _mean_abs(loaded.image, src) <= tol


def test_gif_first_frame(tmp_path):
    red = Image.new("RGB", (20, 20), (255, 0, 0))
    blue = Image.new("RGB", (20, 20), (0, 0, 255))
    p = tmp_path / "anim.gif"
    red.save(p, save_all=True, append_images=[blue], duration=100, loop=0)
    px = load_image(p).getpixel((10, 10))
    assert px[0] > 200 and px[2] < 50


@pytest.mark.parametrize("mode", ["P", "RGBA", "LA", "PA"])
def test_alpha_and_palette_composited_on_grey(tmp_path, mode):
    im = Image.new("RGBA", (10, 10), (0, 0, 0, 0))
    im.paste((255, 0, 0, 255), (0, 0, 5, 10))
    if mode == "P":
        im = im.convert("P")  # transparency kept as palette index
        p = tmp_path / "p.png"
    elif mode == "LA":
        im = im.convert("LA")
        p = tmp_path / "la.png"
    elif mode == "PA":
        im = im.convert("RGBA").convert("P", palette=Image.Palette.ADAPTIVE)
        im.info["transparency"] = im.getpixel((9, 9))
        p = tmp_path / "pa.png"
    else:
        p = tmp_path / "rgba.png"
    im.save(p, transparency=im.info.get("transparency")) if mode in ("P", "PA") else im.save(p)
    out = load_image(p)
    assert out.mode == "RGB"
    assert out.getpixel((8, 5)) == ALPHA_BACKGROUND == (128, 128, 128)  # transparent → grey
    left = out.getpixel((2, 5))
    assert left != ALPHA_BACKGROUND
    # for display, the transparency is kept
    shown = load_image(p, keep_alpha=True)
    assert shown.mode == "RGBA" and shown.getpixel((8, 5))[3] == 0


def test_images_without_transparency_decode_exactly_as_before(tmp_path):
    # Only images with an alpha channel changed (composited on grey, not white): photos,
    # greyscale and fully opaque RGBA files give the very same pixels (so their pHashes and
    # embeddings do not change).
    src = make_image(3, (64, 48))
    src.save(tmp_path / "rgb.png")
    src.save(tmp_path / "rgb.jpg", quality=90)
    src.convert("L").save(tmp_path / "grey.png")
    src.convert("RGBA").save(tmp_path / "opaque.png")
    for name in ("rgb.png", "rgb.jpg", "grey.png"):
        with Image.open(tmp_path / name) as im:
            expected = np.asarray(im.convert("RGB"))
        assert np.array_equal(np.asarray(load_image(tmp_path / name)), expected), name
    white = Image.new("RGB", src.size, (255, 255, 255))  # the old compositing
    with Image.open(tmp_path / "opaque.png") as im:
        white.paste(im, mask=im.getchannel("A"))
    assert np.array_equal(np.asarray(load_image(tmp_path / "opaque.png")), np.asarray(white))
    assert np.array_equal(np.asarray(white), np.asarray(src))


def test_white_artwork_on_transparency_stays_visible_and_flat_pictures_are_known(tmp_path):
    # White logos on a transparent background all decoded to one blank white picture.
    paths = []
    for i, box in enumerate([(10, 10, 50, 50), (30, 5, 60, 60), (0, 20, 64, 30)]):
        im = Image.new("RGBA", (64, 64), (0, 0, 0, 0))
        (ImageDraw.Draw(im).ellipse if i % 2 else ImageDraw.Draw(im).rectangle)(
            box, fill=(255, 255, 255, 255))
        paths.append(tmp_path / f"logo{i}.png")
        im.save(paths[-1])
    decoded = [load_image(p) for p in paths]
    assert not any(is_flat(im) for im in decoded)
    hashes = [phash(im) for im in decoded]
    assert min(hamming64(a, b) for a in hashes for b in hashes if a is not b) > 10
    # Flat: blank, one colour (also as a noisy JPEG), fully transparent.
    Image.new("RGBA", (40, 30), (9, 9, 9, 0)).save(tmp_path / "empty.png")
    Image.new("RGB", (40, 30), (20, 90, 200)).save(tmp_path / "blue.jpg", quality=70)
    assert is_flat(load_image(tmp_path / "empty.png"))
    assert is_flat(load_image(tmp_path / "blue.jpg"))
    assert not is_flat(make_image(5))


def test_cmyk_jpeg_and_tiff(tmp_path):
    src = Image.new("RGB", (16, 16), (200, 30, 40))
    for name in ("c.jpg", "c.tiff"):
        p = tmp_path / name
        src.convert("CMYK").save(p)
        out = load_image(p)
        assert out.mode == "RGB"
        r, g, b = out.getpixel((8, 8))
        assert r > 150 and g < 90 and b < 90, (name, (r, g, b))


def test_16bit_greyscale_scaled_not_clipped(tmp_path):
    arr = np.zeros((8, 16), dtype=np.uint16)
    arr[:, 8:] = 65535
    arr[:, :8] = 32768
    p = tmp_path / "g16.png"
    Image.fromarray(arr).save(p)
    assert Image.open(p).mode.startswith("I")
    out = load_image(p)
    assert out.getpixel((12, 4)) == (255, 255, 255)
    assert abs(out.getpixel((2, 4))[0] - 128) <= 1  # not clipped to 255


@pytest.mark.parametrize("mode", ["L", "1"])
def test_greyscale_and_bilevel(tmp_path, mode):
    im = Image.new("L", (8, 8), 0)
    im.paste(255, (4, 0, 8, 8))
    p = tmp_path / f"g{mode}.png"
    im.convert(mode).save(p)
    out = load_image(p)
    assert out.mode == "RGB" and out.getpixel((6, 3)) == (255, 255, 255)
    assert out.getpixel((1, 3)) == (0, 0, 0)


@pytest.mark.parametrize(("orientation", "top_is_red"), [(1, False), (6, True), (8, False)])
def test_exif_orientation_applied(tmp_path, orientation, top_is_red):
    im = Image.new("RGB", (40, 20), (0, 0, 255))
    im.paste((255, 0, 0), (0, 0, 20, 20))  # left half red
    exif = Image.Exif()
    exif[0x0112] = orientation
    p = tmp_path / f"o{orientation}.jpg"
    im.save(p, exif=exif.tobytes(), quality=95)
    loaded = open_image(p)
    if orientation == 1:
        assert loaded.image.size == (40, 20) and (loaded.width, loaded.height) == (40, 20)
        return
    assert loaded.image.size == (20, 40)
    assert (loaded.width, loaded.height) == (20, 40)
    top = loaded.image.getpixel((10, 5))
    bottom = loaded.image.getpixel((10, 35))
    red_top = top[0] > 200 and top[2] < 60
    red_bottom = bottom[0] > 200 and bottom[2] < 60
    assert red_top == top_is_red and red_bottom != top_is_red


def test_jpeg_draft_decode_reduces_but_reports_full_size(tmp_path):
    p = tmp_path / "big.jpg"
    make_image(3, (1600, 1200)).save(p, quality=90)
    loaded = open_image(p, draft_size=200)
    assert (loaded.width, loaded.height) == (1600, 1200)
    assert 200 <= min(loaded.image.size) < 1200
    assert loaded.image.size[0] * 3 == loaded.image.size[1] * 4  # whole frame, no crop
    assert open_image(p).image.size == (1600, 1200)


# ----------------------------------------------------------------- bad files
def _half(data: bytes) -> bytes:
    return data[: len(data) // 2]


def _encoded(fmt: str) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (200, 300, 3), dtype=np.uint8)
                    ).save(buf, fmt)
    return buf.getvalue()


@pytest.mark.parametrize(("name", "content", "reason"), [
    ("empty.jpg", b"", "empty"),
    ("text.jpg", b"this is not an image at all" * 10, "not_an_image"),
    ("random.png", bytes(np.random.default_rng(1).integers(0, 256, 4096, dtype=np.uint8)),
     "not_an_image"),
    ("cut.jpg", "JPEG", "truncated"),
    ("cut.png", "PNG", "truncated"),
    ("cut.webp", "WEBP", "truncated"),
    ("cut.gif", "GIF", "truncated"),
    ("cut.tiff", "TIFF", "truncated"),
])
def test_bad_files_raise_typed_errors(tmp_path, name, content, reason):
    p = tmp_path / name
    p.write_bytes(_half(_encoded(content)) if isinstance(content, str) else content)
    with pytest.raises(ImageLoadError) as err:
        load_image(p)
    assert err.value.reason == reason
    assert err.value.path == str(p)
    assert reason in imageio.LOAD_ERROR_REASONS


def test_corrupt_png_checksum(tmp_path):
    data = bytearray(_encoded("PNG"))
    data[200:220] = b"\0" * 20
    p = tmp_path / "bad.png"
    p.write_bytes(bytes(data))
    with pytest.raises(ImageLoadError) as err:
        load_image(p)
    assert err.value.reason in ("corrupt", "truncated")


def test_missing_file_and_directory_are_unreadable(tmp_path):
    for p in (tmp_path / "nope.jpg", tmp_path):
        with pytest.raises(ImageLoadError) as err:
            load_image(p)
        assert err.value.reason == "unreadable"


def test_decompression_bomb_refused(tmp_path, monkeypatch):
    p = tmp_path / "bomb.png"
    Image.new("RGB", (200, 200)).save(p)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 10_000)
    with pytest.raises(ImageLoadError) as err:
        load_image(p)
    assert err.value.reason == "too_large"
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 30_000)  # 40k px: between 1x and 2x: a warning
    with pytest.raises(ImageLoadError) as err:
        load_image(p)
    assert err.value.reason == "too_large"


# ----------------------------------------------------------------- hashes
def test_phash_matches_imagehash_reference():
    for seed in range(12):
        rng = np.random.default_rng(seed)
        im = Image.fromarray(rng.integers(0, 255, (37 + seed, 53, 3), dtype=np.uint8))
        im = im.resize((120 + seed, 90), Image.Resampling.BILINEAR)
        ref = int(str(imagehash.phash(im)), 16)
        assert hamming64(phash(im), ref) <= 1, seed
    assert 0 <= phash(make_image(1)) < 2**64


def test_phash_robust_to_resize_not_to_content():
    a = make_image(5, (200, 150))
    assert hamming64(phash(a), phash(a.resize((100, 75)))) <= 4
    assert hamming64(phash(a), phash(make_image(6, (200, 150)))) > 12


def test_fingerprint(tmp_path):
    big = os.urandom(300_000)
    a, b, c, d = (tmp_path / n for n in "abcd")
    a.write_bytes(big)
    b.write_bytes(big)
    c.write_bytes(big[:-1] + bytes([big[-1] ^ 1]))  # last byte differs
    d.write_bytes(big[:150_000] + bytes([big[150_000] ^ 1]) + big[150_001:])  # middle differs
    fa = file_fingerprint(a)
    assert fa == file_fingerprint(b) == file_fingerprint(a, 300_000)
    assert fa != file_fingerprint(c)
    assert fa == file_fingerprint(d)  # documented: only head and tail are read
    small = tmp_path / "s"
    small.write_bytes(b"x" * 100)
    assert file_fingerprint(small) != file_fingerprint(a)
    assert len(fa) == 32
