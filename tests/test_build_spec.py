"""build.spec stays valid: it executes with stubs of PyInstaller's classes (no build) and every
file or folder it names exists."""

from __future__ import annotations

import importlib.util
import shutil
import sys
import tomllib
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
SPEC = ROOT / "build.spec"


class _Target:
    """Records the arguments of a PyInstaller build target (Analysis, PYZ, EXE, ...)."""

    calls: list[_Target]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.args, self.kwargs = args, kwargs
        self.calls.append(self)


def _run_spec(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, **env: str) -> dict[str, Any]:
    """Execute build.spec with stubs; returns its namespace and the targets it created."""
    for key in ("CUKD_ONEFILE", "CUKD_NO_SLIM"):
        monkeypatch.delenv(key, raising=False)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    calls: list[_Target] = []

    class Analysis(_Target):
        def __init__(self, scripts: list[str], **kwargs: Any) -> None:
            super().__init__(scripts, **kwargs)
            self.scripts = [("main", s, "PYSOURCE") for s in scripts]
            self.pure: list[tuple[str, str, str]] = []
            self.datas = [(str(Path(dest) / Path(src).name), src, "DATA")
                          for src, dest in kwargs["datas"]] + [
                ("torch/bin/protoc", "", "DATA"),
                ("torch/bin/torch_shm_manager", "", "DATA"),
                ("torch/cuda/__init__.py", "", "DATA"),
                ("PySide6/Qt/translations/qtbase_de.qm", "", "DATA"),
            ]
            self.binaries = [
                ("torch/lib/libtorch_cpu.so", "", "BINARY"),
                ("torch/lib/libtorch_cuda.so", "", "BINARY"),
                ("nvidia/cudnn/lib/libcudnn.so.9", "", "BINARY"),
                ("libcublasLt.so.12", "", "BINARY"),
                ("torch/lib/libtorchbind_test.so", "", "BINARY"),
                ("PySide6/Qt/lib/libQt6Quick.so.6", "", "BINARY"),
                ("PySide6/Qt/lib/libQt6Widgets.so.6", "", "BINARY"),
                ("PySide6/Qt/lib/libicudata.so.73", "", "BINARY"),
            ]

    names = {n: type(n, (_Target,), {"calls": calls}) for n in ("PYZ", "EXE", "COLLECT",
                                                                  "BUNDLE")}
    Analysis.calls = calls
    ns: dict[str, Any] = {"__name__": "__main__", "__file__": str(SPEC), "SPECPATH": str(ROOT),
                          "workpath": str(tmp_path / "work"), "Analysis": Analysis, **names}
    exec(compile(SPEC.read_text(encoding="utf-8"), str(SPEC), "exec"), ns)
    ns["_calls"] = calls
    return ns


def _by_type(ns: dict[str, Any], name: str) -> list[_Target]:
    return [c for c in ns["_calls"] if type(c).__name__ == name]


def test_spec_reads_pyproject(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    ns = _run_spec(tmp_path, monkeypatch)
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    assert ns["NAME"] == project["name"] and ns["VERSION"] == project["version"]
    assert ns["EXE_NAME"] in project["gui-scripts"]
    (coll,) = _by_type(ns, "COLLECT")
    assert coll.kwargs["name"] == project["name"]


def test_spec_names_existing_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    ns = _run_spec(tmp_path, monkeypatch)
    (analysis,) = _by_type(ns, "Analysis")
    for script in analysis.args[0]:
        assert Path(script).is_file(), script
    for src, dest in analysis.kwargs["datas"]:
        assert Path(src).is_file(), src
        assert dest.replace("\\", "/").startswith("resources"), dest
    for path in (ns["RESOURCES"], ns["ICON_PNG"], ns["ICON_ICO"], ns["ICON_ICNS"],
                 ns["RESOURCES"] / "style" / "app.qss"):
        assert Path(path).exists(), path
    bundled = {Path(src).relative_to(ROOT).as_posix() for src, _ in analysis.kwargs["datas"]}
    assert "resources/style/app.qss" in bundled and "resources/icons/cukd-app.png" in bundled
    assert not any(p.endswith(".py") for p in bundled)
    exe = _by_type(ns, "EXE")[0]
    assert Path(exe.kwargs["icon"]).is_file()
    assert exe.kwargs["upx"] is False


def test_hidden_imports_exist(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    ns = _run_spec(tmp_path, monkeypatch)
    (analysis,) = _by_type(ns, "Analysis")
    for name in analysis.kwargs["hiddenimports"]:
        assert importlib.util.find_spec(name) is not None, name
    excluded = set(analysis.kwargs["excludes"])
    assert not any(h == e or h.startswith(e + ".") for h in analysis.kwargs["hiddenimports"]
                   for e in excluded)
    # what the app imports is never excluded
    for needed in ("torch", "torch.nn", "torch.distributed", "torch.testing", "faiss",
                   "PySide6.QtWidgets", "PySide6.QtGui", "numpy", "PIL", "watchdog", "core",
                   "cukd_app", "unittest"):
        assert not any(needed == e or needed.startswith(e + ".") for e in excluded), needed


def test_cuda_and_unneeded_files_dropped(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    ns = _run_spec(tmp_path, monkeypatch)
    (analysis,) = _by_type(ns, "Analysis")
    binaries = {d for d, *_ in analysis.binaries}
    datas = {d for d, *_ in analysis.datas}
    assert binaries == {"torch/lib/libtorch_cpu.so", "PySide6/Qt/lib/libQt6Widgets.so.6",
                        "PySide6/Qt/lib/libicudata.so.73"}  # ICU data is not CUDA
    assert "torch/cuda/__init__.py" in datas  # the torch.cuda module is not a CUDA library
    assert "torch/bin/protoc" not in datas
    assert "torch/bin/torch_shm_manager" in datas  # `import torch` needs it
    assert not any("translations" in d for d in datas)
    report = (tmp_path / "work" / "slim-report.json").read_text(encoding="utf-8")
    assert "libcudnn.so.9" in report


def test_no_slim_still_drops_cuda(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    ns = _run_spec(tmp_path, monkeypatch, CUKD_NO_SLIM="1")
    (analysis,) = _by_type(ns, "Analysis")
    binaries = {d for d, *_ in analysis.binaries}
    assert "torch/lib/libtorchbind_test.so" in binaries
    assert "PySide6/Qt/lib/libicudata.so.73" in binaries
    assert not any("cudnn" in b or "cublas" in b or "_cuda" in b for b in binaries)


def test_onefile(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    ns = _run_spec(tmp_path, monkeypatch, CUKD_ONEFILE="1")
    assert not _by_type(ns, "COLLECT")
    (exe,) = _by_type(ns, "EXE")
    assert len(exe.args) >= 4  # pyz, scripts, binaries, datas all inside the executable


@pytest.mark.skipif(not sys.platform.startswith("linux") or not shutil.which("strip"),
                    reason="stripping is done on Linux only")
def test_strip_makes_a_stripped_copy(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    ns = _run_spec(tmp_path, monkeypatch)
    torch_dir = Path(importlib.util.find_spec("torch").submodule_search_locations[0])
    lib = next((torch_dir / "lib").glob("libshm.so*"))
    report: list[dict] = []
    toc = [("torch/lib/libshm.so", str(lib), "BINARY"), ("numpy.libs/x.so", str(lib), "BINARY")]
    out = ns["_strip"](toc, tmp_path / "work", report)
    assert out[1] == toc[1]  # auditwheel-repaired folders are left alone
    copy = Path(out[0][1])
    assert copy.is_file() and copy.is_relative_to(tmp_path) and lib.is_file()
    assert report[0]["bytes_after"] <= report[0]["bytes_before"]


def test_desktop_entry() -> None:
    entry = ROOT / "resources" / "linux" / "cukd-image-search.desktop"
    keys = dict(line.split("=", 1) for line in entry.read_text(encoding="utf-8").splitlines()
                if "=" in line)
    assert keys["Type"] == "Application" and keys["Name"] == "CUKD Image Search"
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    assert keys["Exec"].split()[0] in project["gui-scripts"]
    assert (ROOT / "resources" / "icons" / f"{keys['Icon']}.png").is_file()
    assert keys["Terminal"] == "false"
