"""``cukd library|search|duplicates``: real SQLite + faiss + watchdog, the tiny test encoder."""

from __future__ import annotations

import json
import shutil
import threading
import time
from pathlib import Path

import pytest

from core import cli_library
from core.cli_library import main
from tests.library_helpers import write_image

TINY = ["--model", "tiny:"]


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CUKD_LIBRARY", raising=False)
    monkeypatch.delenv("CUKD_MODEL", raising=False)


@pytest.fixture
def photos(tmp_path: Path) -> Path:
    """Six distinct photos, a byte copy of the first, one non-image and one excluded file."""
    root = tmp_path / "photos"
    for i in range(6):
        write_image(root / ("sub" if i % 2 else "") / f"p{i}.jpg", i, (120, 90))
    shutil.copy(root / "p0.jpg", root / "copy_of_p0.jpg")
    (root / "broken.jpg").write_bytes(b"this is not a JPEG")
    write_image(root / "skip.tmp.png", 99)
    return root


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    rc = main(list(argv))
    out = capsys.readouterr()
    return rc, out.out, out.err


def run_json(capsys: pytest.CaptureFixture[str], *argv: str) -> object:
    rc, out, err = run(capsys, *argv, "--json")
    assert rc == 0, err
    return json.loads(out)


@pytest.fixture
def scanned(tmp_path: Path, photos: Path, capsys: pytest.CaptureFixture[str]) -> Path:
    """A library with ``photos`` added (excluding ``*.tmp.*``) and scanned."""
    lib = tmp_path / "lib"
    rc, out, err = run(capsys, "library", "add", str(photos), "--exclude", "*.tmp.*",
                       "--library", str(lib))
    assert rc == 0, err
    assert "cukd library scan" in out
    rc, out, err = run(capsys, "library", "scan", "--library", str(lib), *TINY)
    assert rc == 0, err
    assert "indexing" in err  # the progress bar (stderr)
    return lib


def test_add_scan_then_search_finds_the_exact_copy_first(scanned: Path, photos: Path,
                                                         capsys) -> None:
    res = run_json(capsys, "search", str(photos / "p0.jpg"), "-k", "3",
                   "--library", str(scanned), *TINY)
    assert res["searched"] == 7  # 6 photos + the copy; broken and excluded files are not
    hits = res["results"]
    assert len(hits) == 3
    assert hits[0]["path"] == str(photos / "copy_of_p0.jpg")
    assert hits[0]["tier"] == "identical" and hits[0]["rank"] == 1
    assert all(h["path"] != str(photos / "p0.jpg") for h in hits)  # the query itself
    assert {"score", "hamming", "phash_distance", "width", "height", "size"} <= set(hits[0])
    # Human-readable output: a table with the copy on the first row.
    rc, out, _ = run(capsys, "search", str(photos / "p0.jpg"), "-k", "2", "--library",
                     str(scanned), *TINY)
    assert rc == 0
    first = out.splitlines()[2]
    assert "identical" in first and first.endswith("copy_of_p0.jpg")


def test_scan_reports_failed_files_and_why(tmp_path: Path, photos: Path, capsys) -> None:
    lib = str(tmp_path / "lib")
    assert run(capsys, "library", "add", str(photos), "--library", lib)[0] == 0
    rc, out, _ = run(capsys, "library", "scan", "--no-progress", "--library", lib, *TINY)
    assert rc == 0
    assert "1 file could not be indexed" in out
    line = next(x for x in out.splitlines() if "broken.jpg" in x)
    assert "not_an_image" in line
    assert "9 files" in out and "8 encoded, 1 failed" in out  # *.tmp.png not excluded here
    # JSON form, and a second scan finds nothing to do.
    res = run_json(capsys, "library", "scan", "--library", lib, *TINY)
    assert res["unchanged"] == 9 and res["encoded"] == 0 and res["indexed"] == 8
    # status --errors lists it too.
    rc, out, _ = run(capsys, "library", "status", "--errors", "--library", lib)
    assert rc == 0 and "broken.jpg: not_an_image" in out


def test_status(scanned: Path, photos: Path, capsys) -> None:
    st = run_json(capsys, "library", "status", "--library", str(scanned))
    assert st["files"] == 8 and st["ok"] == 7 and st["errors"] == 1 and st["indexed"] == 7
    assert st["model_id"].startswith("tiny-") and st["model_sizes"] == [64, 32]
    (root,) = st["roots"]
    assert root["path"] == str(photos) and root["excludes"] == ["*.tmp.*"]
    assert root["online"] and root["watch_mode"] == "native" and root["last_scan"]
    rc, out, _ = run(capsys, "library", "status", "--library", str(scanned))
    assert rc == 0
    assert "8 files, online, watch native" in out and "7 searchable" in out
    # --library also works before the subcommand; a new library has no model yet.
    empty = str(scanned.parent / "empty")
    rc, out, _ = run(capsys, "library", "--library", empty, "status")
    assert rc == 0 and "model: none yet" in out and "folders: none" in out


def test_duplicates(scanned: Path, photos: Path, capsys) -> None:
    groups = run_json(capsys, "duplicates", "--library", str(scanned))
    assert len(groups) == 1
    assert groups[0]["tier"] == "identical"
    assert sorted(f["path"] for f in groups[0]["files"]) == [
        str(photos / "copy_of_p0.jpg"), str(photos / "p0.jpg")]
    rc, out, _ = run(capsys, "duplicates", "--library", str(scanned))
    assert rc == 0 and "identical (2 files)" in out
    # every level keeps the byte copy; a looser level groups at least as many files
    grouped = {}
    for level in cli_library.DUPLICATE_LEVELS:
        found = run_json(capsys, "duplicates", "--library", str(scanned), "--level", level)
        assert any(g["tier"] == "identical" for g in found)
        grouped[level] = {f["path"] for g in found for f in g["files"]}
    assert grouped["strict"] <= grouped["normal"] <= grouped["loose"]
    from core.library.search import DUPLICATE_LEVELS

    assert cli_library.DUPLICATE_LEVELS == DUPLICATE_LEVELS
    with pytest.raises(SystemExit):
        main(["duplicates", "--library", str(scanned), "--level", "sloppy"])


def test_remove_forgets_the_folder_not_the_files(scanned: Path, photos: Path, capsys) -> None:
    rc, out, err = run(capsys, "library", "remove", str(photos), "--library", str(scanned))
    assert rc == 0, err
    assert "8 files forgotten" in out
    assert (photos / "p0.jpg").exists()
    st = run_json(capsys, "library", "status", "--library", str(scanned))
    assert st["files"] == 0 and st["indexed"] == 0 and st["roots"] == []
    res = run_json(capsys, "search", str(photos / "p2.jpg"), "--library", str(scanned), *TINY)
    assert res["results"] == []
    rc, _, err = run(capsys, "library", "remove", str(photos), "--library", str(scanned))
    assert rc == 2 and "not a library folder" in err


def test_clear_errors(tmp_path: Path, photos: Path, scanned: Path, capsys,
                      monkeypatch: pytest.MonkeyPatch) -> None:
    lib = str(scanned)
    rc, _, err = run(capsys, "library", "add", str(tmp_path / "nope"), "--library", lib)
    assert rc == 2 and "not a folder" in err
    rc, _, err = run(capsys, "search", str(photos / "p2.jpg"), "--library", lib,
                     "--model", str(tmp_path / "missing.pt"))
    assert rc == 2 and "model file not found" in err
    # The default model, when it is not installed.
    monkeypatch.setattr(cli_library, "default_model_path", lambda: tmp_path / "default.pt")
    rc, _, err = run(capsys, "search", str(photos / "p2.jpg"), "--library", lib)
    assert rc == 2 and "default model is not installed" in err and "--model" in err
    # Another model than the library's: refused instead of dropping the library's codes.
    rc, _, err = run(capsys, "search", str(photos / "p2.jpg"), "--library", lib,
                     "--model", "tiny:128")
    assert rc == 2 and "indexed with model" in err
    assert run_json(capsys, "library", "status", "--library", lib)["indexed"] == 7
    rc, _, err = run(capsys, "search", str(photos / "broken.jpg"), "--library", lib, *TINY)
    assert rc == 2 and "cannot read the query image" in err
    rc, _, err = run(capsys, "library", "scan", "--library", str(tmp_path / "new"), *TINY)
    assert rc == 2 and "no folders" in err


def test_watch_indexes_new_files(scanned: Path, photos: Path, capsys) -> None:
    new = photos / "sub" / "arrived.png"

    def write_later() -> None:
        time.sleep(1.0)
        write_image(new, 1234, (100, 80))

    t = threading.Thread(target=write_later)
    t.start()
    rc, out, err = run(capsys, "library", "watch", "--duration", "4", "--library",
                       str(scanned), *TINY)
    t.join()
    assert rc == 0, err
    assert "initial scan" in out and f"watching {photos}" in out
    assert "indexed: 1 new" in out
    res = run_json(capsys, "search", str(new), "-k", "1", "--library", str(scanned), *TINY)
    assert res["searched"] == 8


def test_wired_into_cukd(scanned: Path, photos: Path, capsys) -> None:
    from core import cli

    parser = cli.build_parser()
    try:
        parser.parse_args(["duplicates", "--library", str(scanned)])
    except SystemExit:
        pytest.skip("core.cli does not register the library commands yet")
    capsys.readouterr()
    assert cli.main(["search", str(photos / "p0.jpg"), "--json", "--library", str(scanned),
                     *TINY]) == 0
    assert json.loads(capsys.readouterr().out)["results"][0]["tier"] == "identical"


def test_real_model_file(tmp_path: Path, photos: Path, capsys) -> None:
    """A student model file with an ITQ head indexes and searches; one without is refused."""
    import torch

    from core.checkpoint import save_student
    from core.finetune import fit_itq_head
    from core.models import create_student

    torch.manual_seed(0)
    student = create_student("cukd_mnv2_035", 64)
    bare, model = tmp_path / "bare.pt", tmp_path / "model.pt"
    save_student(bare, student)
    fit_itq_head(student, sorted(photos.rglob("p*.jpg")), model, n_bits=32, embed_dim=4,
                 threads=1)
    lib = str(tmp_path / "lib")
    assert run(capsys, "library", "add", str(photos), "--library", lib)[0] == 0
    rc, _, err = run(capsys, "library", "scan", "--library", lib, "--model", str(bare))
    assert rc == 2 and "no hash head" in err
    res = run_json(capsys, "library", "scan", "--library", lib, "--model", str(model))
    assert res["indexed"] == 8
    res = run_json(capsys, "search", str(photos / "p0.jpg"), "-k", "2", "--library", lib,
                   "--model", str(model))
    assert res["model_id"] == run_json(capsys, "library", "status", "--library", lib)[
        "model_id"]
    assert res["results"][0]["path"] == str(photos / "copy_of_p0.jpg")
    assert res["results"][0]["tier"] == "identical"
