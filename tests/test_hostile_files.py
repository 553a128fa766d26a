"""Hostile and odd files (issue 14): names, foreign formats, bombs, unreadable and unmounted
folders, links. Every case uses real files, folders and (where permitted) real mounts."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zlib
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from core.imageio import MAX_DECODE_BYTES, ImageLoadError, open_image
from core.library import Catalog, ScanConfig
from core.library.catalog import path_from_db, path_to_db
from tests.library_helpers import (
    fast_config,
    make_tree,
    open_library,
    wait_until,
    write_image,
)


@pytest.fixture
def lib(tmp_path):
    library = open_library(tmp_path / "lib")
    yield library
    library.close()


def _bytes_path(folder: Path, name: bytes) -> Path:
    return Path(os.fsdecode(os.path.join(os.fsencode(folder), name)))


# --------------------------------------------------------------------------- 1. names
def test_path_escape_round_trips_and_leaves_real_names_alone():
    for raw in (b"/p/caf\xe9.jpg", b"/p/\xff\xfe.jpg", b"/p/ok.jpg", b"/p/a\xc3\xa9b/c\x80.png"):
        p = os.fsdecode(raw)
        text = path_to_db(p)
        text.encode("utf-8")  # storable
        assert path_from_db(text) == p
    assert path_to_db("/p/café ☃.jpg") == "/p/café ☃.jpg"


def test_non_utf8_names_are_indexed_and_searchable(lib, tmp_path):
    photos = tmp_path / "photos"
    make_tree(photos, 6)
    odd = [_bytes_path(photos, n) for n in (b"caf\xe9.jpg", b"\xff\xfe.jpg", b"z\x80z.png")]
    for i, p in enumerate(odd):
        write_image(p, 100 + i)
    lib.add_root(photos)
    r = lib.scan()
    assert (r.added, r.encoded, r.errors) == (9, 9, ())
    for p in odd:
        rec = lib.catalog.get_file_by_path(p)
        assert rec is not None and rec.status == "ok" and rec.path == str(p)
    hits = lib.search(odd[0], k=20)
    assert {Path(h.path) for h in hits} >= set(odd[1:])
    assert all(Path(h.path).is_file() for h in hits)  # paths come back as the OS has them
    r = lib.scan()  # a rescan finds them unchanged (not new, not gone)
    assert (r.unchanged, r.added, r.deleted) == (9, 0, 0)
    os.rename(odd[0], _bytes_path(photos, b"moved\xe9.jpg"))
    r = lib.scan()
    assert (r.moved, r.deleted) == (1, 0)


def test_watcher_batch_with_a_non_utf8_name_loses_nothing(tmp_path):
    photos = tmp_path / "photos"
    photos.mkdir()
    lib = open_library(tmp_path / "lib")
    try:
        lib.add_root(photos, watch_mode="polling")
        lib.scan()
        lib.start_watching()
        good = [write_image(photos / f"g{i}.jpg", 200 + i) for i in range(5)]
        write_image(_bytes_path(photos, b"\xe9t\xe9.jpg"), 210)
        assert wait_until(lambda: lib.catalog.count_files("ok") == 6)
        assert all(lib.catalog.get_file_by_path(p).status == "ok" for p in good)
    finally:
        lib.close()


def test_cli_prints_a_non_utf8_name(tmp_path):
    photos = tmp_path / "photos"
    write_image(_bytes_path(photos, b"caf\xe9.jpg"), 1)
    env = {**os.environ, "CUKD_LIBRARY": str(tmp_path / "lib"), "PYTHONIOENCODING": "utf-8"}
    run = [sys.executable, "-m", "core.cli", "library", "--model", "tiny:"]
    assert subprocess.run([*run, "add", str(photos)], env=env, capture_output=True).returncode == 0
    out = subprocess.run([*run, "scan"], env=env, capture_output=True)
    assert out.returncode == 0, out.stderr
    assert b"1 encoded" in out.stdout


# --------------------------------------------------------------------------- 2. formats
POSTSCRIPT_LOOP = b"%!PS\n{} loop\n"
EPS = b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 10 10\nnewpath 0 0 moveto showpage\n"


@pytest.mark.parametrize("name,content", [
    ("loop.jpg", POSTSCRIPT_LOOP), ("drawing.png", EPS), ("doc.jpg", b"%PDF-1.4\n%\xe2\xe3\n"),
    ("pic.gif", b"<svg xmlns='http://www.w3.org/2000/svg'/>"),
])
def test_foreign_formats_are_not_an_image_and_run_nothing(tmp_path, name, content):
    p = tmp_path / name
    p.write_bytes(content)
    with pytest.raises(ImageLoadError) as err:
        open_image(p)
    assert err.value.reason == "not_an_image"


def test_scan_of_postscript_named_jpg_finishes_without_ghostscript(lib, tmp_path):
    photos = tmp_path / "photos"
    make_tree(photos, 3)
    (photos / "loop.jpg").write_bytes(POSTSCRIPT_LOOP)
    lib.add_root(photos)
    r = lib.scan()
    assert r.encoded == 3
    assert [(Path(e.path).name, e.reason) for e in r.errors] == [("loop.jpg", "not_an_image")]


def test_allowed_formats_still_decode(tmp_path):
    im = Image.fromarray(np.random.default_rng(0).integers(0, 255, (40, 50, 3), np.uint8))
    for ext in ("jpg", "png", "webp", "gif", "bmp", "tif"):
        im.save(tmp_path / f"a.{ext}")
        assert open_image(tmp_path / f"a.{ext}").image.size == (50, 40)


# --------------------------------------------------------------------------- 3. bombs
def _png_bomb(path: Path, w: int, h: int, bits: int = 16) -> None:
    """A grey PNG of w x h zeros, compressed to a few hundred KB (written by hand)."""
    row = b"\x00" + b"\x00" * (w * bits // 8)
    comp = zlib.compressobj(9)
    data = b"".join(comp.compress(row) for _ in range(h)) + comp.flush()

    def chunk(kind: bytes, body: bytes) -> bytes:
        return (len(body).to_bytes(4, "big") + kind + body
                + zlib.crc32(kind + body).to_bytes(4, "big"))
    ihdr = w.to_bytes(4, "big") + h.to_bytes(4, "big") + bytes([bits, 0, 0, 0, 0])
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", data)
                     + chunk(b"IEND", b""))


def test_sixteen_bit_bomb_under_the_pixel_limit_is_refused_quickly(tmp_path):
    p = tmp_path / "bomb.png"
    _png_bomb(p, 14_000, 14_000)
    assert p.stat().st_size < 1_000_000
    with pytest.raises(ImageLoadError) as err:
        open_image(p)
    assert err.value.reason == "too_large" and "MB" in err.value.detail


def test_scan_over_bombs_stays_small(tmp_path):
    """A scan in its own process over four bombs: peak RSS far below what they would need."""
    photos = tmp_path / "photos"
    make_tree(photos, 2)
    for i in range(4):
        _png_bomb(photos / f"bomb{i}.png", 14_000, 13_000 + i)
    code = f"""
import resource, sys
sys.path.insert(0, {str(Path(__file__).resolve().parents[1])!r})
from tests.library_helpers import open_library
lib = open_library({str(tmp_path / 'lib')!r})
lib.add_root({str(photos)!r})
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024
r = lib.scan()
lib.close()
print(r.encoded, sorted(e.reason for e in r.errors),
      resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024 - before)
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr
    encoded, *_, growth_mb = out.stdout.split()
    assert int(encoded) == 2 and out.stdout.count("too_large") == 4
    # Peak memory growth of the scan itself (the interpreter, torch and the library are
    # already loaded): decoding even one of these bombs would take 364 MB (5 GB as RGB float).
    assert int(growth_mb) < MAX_DECODE_BYTES // 2**20


def test_large_jpeg_is_decoded_reduced(tmp_path):
    p = tmp_path / "big.jpg"
    Image.new("RGB", (12_000, 9_000), (40, 90, 200)).save(p, quality=50)
    got = open_image(p, draft_size=160)
    assert (got.width, got.height) == (12_000, 9_000) and got.image.size == (1500, 1125)  # 1/8 DCT


# --------------------------------------------------------------------------- 5. offline
def _can_mount() -> bool:
    return sys.platform.startswith("linux") and os.geteuid() == 0


def _mount_tmpfs(path: Path) -> bool:
    path.mkdir(parents=True, exist_ok=True)
    return subprocess.run(["mount", "-t", "tmpfs", "none", str(path)],
                          capture_output=True).returncode == 0


def _umount(path: Path) -> None:
    subprocess.run(["umount", str(path)], capture_output=True, check=False)


_UNLISTABLE = """
import os, sys
from pathlib import Path
sys.path.insert(0, sys.argv[2])
from tests.library_helpers import make_tree, open_library, write_image
top = Path(sys.argv[1])
photos = top / "photos"
make_tree(photos, 4)
for i in range(5):
    write_image(photos / "locked" / f"l{i}.jpg", 40 + i)
lib = open_library(top / "lib")
lib.add_root(photos)
lib.scan()
os.chmod(photos / "locked", 0)
try:
    r = lib.scan()
finally:
    os.chmod(photos / "locked", 0o755)
print(r.deleted, r.unavailable, lib.catalog.count_files(), lib.index.ntotal,
      [e.reason for e in r.errors])
lib.close()
"""


def test_unlistable_subfolder_keeps_its_files(tmp_path):
    """Root lists any folder, so as root the scan runs without the capability to."""
    cmd = [sys.executable, "-c", _UNLISTABLE, str(tmp_path), str(Path(__file__).parents[1])]
    if os.geteuid() == 0:
        if not shutil.which("setpriv"):
            pytest.skip("running as root without setpriv to drop the override capability")
        cmd = ["setpriv", "--bounding-set", "-dac_override,-dac_read_search", *cmd]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split(maxsplit=4)[:4] == ["0", "5", "9", "9"]
    assert "unreadable" in out.stdout


@pytest.mark.skipif(not _can_mount(), reason="needs root on Linux to mount a tmpfs")
def test_unmounted_nested_drive_keeps_its_files(lib, tmp_path):
    photos = tmp_path / "photos"
    make_tree(photos, 3)
    drive = photos / "drive"
    if not _mount_tmpfs(drive):
        pytest.skip("mount not permitted here")
    try:
        for i in range(6):
            write_image(drive / f"d{i}.jpg", 60 + i)
        lib.add_root(photos)
        assert lib.scan().encoded == 9
        _umount(drive)
        write_image(drive / "stray.jpg", 99)  # a stray file in the bare mount point
        r = lib.scan()
        assert r.deleted == 0 and r.unavailable == 6 and lib.catalog.count_files() == 10
        assert lib.index.ntotal == 10
        (drive / "stray.jpg").unlink()
        assert _mount_tmpfs(drive)
        for i in range(6):
            write_image(drive / f"d{i}.jpg", 60 + i)
        r = lib.scan()  # back: not deleted, so nothing to re-add (only changed mtimes)
        assert r.added == 0 and r.unavailable == 0
    finally:
        _umount(drive)


@pytest.mark.skipif(not _can_mount(), reason="needs root on Linux to mount a tmpfs")
def test_unmounted_root_with_a_stray_file_is_offline(lib, tmp_path):
    root = tmp_path / "usb"
    if not _mount_tmpfs(root):
        pytest.skip("mount not permitted here")
    try:
        make_tree(root, 5)
        lib.add_root(root)
        assert lib.scan().encoded == 5
        _umount(root)
        write_image(root / "stray.jpg", 98)
        r = lib.scan()
        assert r.offline_roots == (str(root),) and r.deleted == 0
        assert lib.catalog.count_files() == 5
    finally:
        _umount(root)


# --------------------------------------------------------------------------- 9. links, long
def test_symlinks_are_recorded_and_followed_loop_safely(tmp_path):
    photos = tmp_path / "photos"
    make_tree(photos, 2)
    elsewhere = tmp_path / "elsewhere"
    target = write_image(elsewhere / "t.jpg", 70)
    os.symlink(target, photos / "link.jpg")
    os.symlink(photos, photos / "sub" / "loop")  # a folder link back up
    lib = open_library(tmp_path / "lib")
    try:
        lib.add_root(photos)
        r = lib.scan()
        assert r.encoded == 2
        assert {(Path(e.path).name, e.reason) for e in r.errors} == {
            ("link.jpg", "symlink"), ("loop", "symlink")}
    finally:
        lib.close()
    follow = replace(fast_config(), scan=ScanConfig(batch_size=4, follow_symlinks=True))
    from core.library import Library
    from core.library.testing import TinyEncoder
    lib = Library.open(tmp_path / "lib2", TinyEncoder(), follow)
    try:
        lib.add_root(photos)
        r = lib.scan()  # terminates despite the loop; the linked photo is indexed
        assert r.encoded == 3
        assert [e.reason for e in r.errors] == ["symlink"]
    finally:
        lib.close()


def test_path_longer_than_the_os_limit_is_recorded(lib, tmp_path):
    photos = tmp_path / "photos"
    make_tree(photos, 2)
    deep = os.fsencode(photos)
    fd = os.open(deep, os.O_RDONLY)
    try:
        for _ in range(20):  # ~5000 bytes of path, built relative to a folder descriptor
            os.mkdir(b"d" * 250, dir_fd=fd)
            nfd = os.open(b"d" * 250, os.O_RDONLY, dir_fd=fd)
            os.close(fd)
            fd = nfd
        with os.fdopen(os.open(b"deep.jpg", os.O_WRONLY | os.O_CREAT, dir_fd=fd), "wb") as f:
            f.write(b"\xff\xd8\xff")
    finally:
        os.close(fd)
    lib.add_root(photos)
    r = lib.scan()
    assert r.encoded == 2
    assert any(e.reason == "unreadable" for e in r.errors), r


def test_catalog_path_helpers_in_a_real_catalog(tmp_path):
    with Catalog(tmp_path / "c.db") as cat:
        root = cat.add_root(tmp_path)
        p = os.fsdecode(os.fsencode(tmp_path) + b"/x\xe9.jpg")
        fid = cat.upsert_file(root_id=root.id, path=p, size=1, mtime_ns=1, fingerprint="f",
                              status="error", error=f"{p}: corrupt")
        assert cat.get_file_by_path(p).id == fid
        assert list(cat.files_in_scope(root.id)) == [p]
        assert list(cat.files_in_scope(root.id, str(tmp_path))) == [p]
        assert "\ufffd" in cat.get_file(fid).error


# --------------------------------------------------------------------------- 8. model files
def _model(tmp_path: Path) -> tuple[Path, dict]:
    import torch

    from core.checkpoint import save_student
    from core.models.students import create_student
    path = tmp_path / "m.pt"
    save_student(path, create_student("cukd_mnv2_035", 64))
    return path, torch.load(path, weights_only=True)


@pytest.mark.parametrize("damage,match", [
    (lambda d: d["preprocess"].update(input_size=30_000), "input size"),
    (lambda d: d["arch"]["args"].update(surprise=3), "takes no argument surprise"),
    (lambda d: d["arch"].update(name="cukd_v1", args={"widths": (64, 64, 128, 128, 4000)}),
     r"takes no argument|cannot be built|out of range|far more"),
    (lambda d: d["arch"].update(name="nonesuch"), "unknown architecture"),
    (lambda d: d["state_dict"].popitem(), "do not fit"),
    (lambda d: next(iter(d["state_dict"].values())).fill_(float("nan")), "non-finite"),
    (lambda d: next(iter(d["state_dict"].values())).mul_(1.0001), "checksum"),
])
def test_model_file_is_validated_before_anything_is_built(tmp_path, damage, match):
    import torch

    from core.checkpoint import CheckpointError, load_model_file
    path, d = _model(tmp_path)
    damage(d)
    torch.save(d, path)
    with pytest.raises(CheckpointError, match=match):
        load_model_file(path)


def test_random_bytes_in_the_tensor_data_are_detected(tmp_path):
    import zipfile

    import torch

    from core.checkpoint import CheckpointError, load_model_file
    path, _ = _model(tmp_path)
    with zipfile.ZipFile(path) as z:
        big = max(z.infolist(), key=lambda i: i.file_size)
        offset = big.header_offset + 30 + len(big.filename) + len(big.extra)
    raw = bytearray(path.read_bytes())
    start = offset + big.file_size // 2
    raw[start:start + 64] = np.random.default_rng(0).integers(0, 256, 64, np.uint8).tobytes()
    path.write_bytes(bytes(raw))
    torch.load(path, weights_only=True)  # PyTorch itself reads the damaged file...
    with pytest.raises(CheckpointError, match=r"checksum|non-finite"):  # ...we refuse it
        load_model_file(path)


def test_a_jpeg_as_model_file_gets_a_sentence(tmp_path):
    from core.checkpoint import CheckpointError, load_model_file
    p = write_image(tmp_path / "photo.jpg", 3)
    with pytest.raises(CheckpointError) as err:
        load_model_file(p)
    assert str(err.value) == f"{p} is not a CUKD model file (it cannot be read as one)"


# --------------------------------------------------------------------------- 7. emptied catalog
def test_emptied_catalog_is_an_error_and_repair_then_rescan_recovers(tmp_path):
    from core.library import Library, LibraryError
    photos = tmp_path / "photos"
    make_tree(photos, 3)
    lib = open_library(tmp_path / "lib")
    lib.add_root(photos)
    lib.scan()
    lib.close()
    (tmp_path / "lib" / "catalog.sqlite3").write_bytes(b"")
    with pytest.raises(LibraryError, match="is empty although"):
        open_library(tmp_path / "lib")
    rep = Library.repair(tmp_path / "lib")
    assert rep.catalog_problems
    lib = open_library(tmp_path / "lib")
    try:
        lib.add_root(photos)
        assert lib.scan().encoded == 3 and lib.index.ntotal == 3
    finally:
        lib.close()


def test_cli_repair_command(tmp_path):
    env = {**os.environ, "CUKD_LIBRARY": str(tmp_path / "lib")}
    photos = tmp_path / "photos"
    make_tree(photos, 2)
    run = [sys.executable, "-m", "core.cli", "library", "--model", "tiny:"]
    assert subprocess.run([*run, "add", str(photos)], env=env, capture_output=True).returncode == 0
    assert subprocess.run([*run, "scan"], env=env, capture_output=True).returncode == 0
    (tmp_path / "lib" / "catalog.sqlite3").write_bytes(b"garbage" * 100)
    out = subprocess.run([*run, "status"], env=env, capture_output=True, text=True)
    assert out.returncode == 2 and "Traceback" not in out.stderr
    assert "cukd library repair" in out.stderr
    out = subprocess.run([*run, "repair"], env=env, capture_output=True, text=True)
    assert out.returncode == 0 and "catalog was damaged" in out.stdout, out.stderr
    assert subprocess.run([*run, "status"], env=env, capture_output=True).returncode == 0
