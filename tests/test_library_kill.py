"""A scan SIGKILLed mid-way loses at most the batch in flight and resumes cleanly."""

from __future__ import annotations

import signal
import sqlite3
import subprocess
import sys
import time

import pytest

from core.library.testing import TinyEncoder
from tests.library_helpers import make_tree, open_library

pytestmark = pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs SIGKILL")

_SCRIPT = """
import sys
from core.library import Library, LibraryConfig, ScanConfig
from core.library.testing import TinyEncoder
lib = Library.open(sys.argv[1], TinyEncoder(delay_s=0.15),
                   LibraryConfig(scan=ScanConfig(batch_size=4, decode_workers=1)))
lib.add_root(sys.argv[2])
lib.scan()
print("finished", flush=True)
"""


def _count_ok(db) -> int:
    try:
        con = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5)
        try:
            return con.execute("SELECT COUNT(*) FROM codes").fetchone()[0]
        finally:
            con.close()
    except sqlite3.Error:
        return 0


def _kill_mid_scan(lib_dir, photos, at_least: int) -> int:
    proc = subprocess.Popen([sys.executable, "-c", _SCRIPT, str(lib_dir), str(photos)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    db = lib_dir / "catalog.sqlite3"
    deadline = time.monotonic() + 60
    try:
        while time.monotonic() < deadline and proc.poll() is None:
            if db.exists() and _count_ok(db) >= at_least:
                break
            time.sleep(0.02)
        assert proc.poll() is None, proc.communicate()
        proc.send_signal(signal.SIGKILL)
        proc.wait(30)
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.communicate()
    assert proc.returncode == -signal.SIGKILL
    return _count_ok(db)


def test_sigkill_mid_scan_then_resume(tmp_path):
    photos = tmp_path / "photos"
    n = 48
    make_tree(photos, n)
    lib_dir = tmp_path / "lib"
    first = _kill_mid_scan(lib_dir, photos, at_least=8)
    assert 8 <= first < n and first % 4 == 0  # only whole batches were committed
    second = _kill_mid_scan(lib_dir, photos, at_least=first + 8)  # resumes, killed again
    assert first + 8 <= second < n

    enc = TinyEncoder()
    lib = open_library(lib_dir, enc)
    try:
        assert lib.index.ntotal == second  # stale/missing index rebuilt from the catalog
        r = lib.scan()
        assert not r.cancelled and r.unchanged == second and r.added == n - second
        assert r.encoded == n - second  # no finished work redone
        assert lib.catalog.count_files() == lib.catalog.count_files("ok") == n
        assert lib.index.ntotal == lib.phash_index.ntotal == n
        con = sqlite3.connect(lib_dir / "catalog.sqlite3")
        dup = con.execute("SELECT path, COUNT(*) FROM files GROUP BY path HAVING COUNT(*) > 1"
                          ).fetchall()
        codes = con.execute("SELECT COUNT(*), COUNT(DISTINCT file_id) FROM codes").fetchone()
        con.close()
        assert dup == [] and codes == (n, n)
        assert lib.search(photos / "img0000.png", k=3)
    finally:
        lib.close()
