"""``cukd-app --self-test`` with a tiny model made here; the spec's module exclusions hold."""

from __future__ import annotations

import io
import os
import subprocess
import sys
from pathlib import Path

import pytest

from core.checkpoint import save_student
from core.finetune import fit_itq_head
from core.models import create_student
from cukd_app.__main__ import main
from cukd_app.paths import resources_dir
from cukd_app.selftest import MODEL_ENV, resolve_model_path, run_self_test
from tests.models_helpers import write_images

ROOT = Path(__file__).resolve().parent.parent
STEPS = ("imports", "resources", "model", "encode", "library", "train", "window")


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("selftest-model")
    save_student(d / "base.pt", create_student("cukd_mnv2_035", 64))
    images = write_images(d / "images", 10)
    fit_itq_head(d / "base.pt", images, d / "model.pt", n_bits=32, embed_dim=8, threads=1)
    return d / "model.pt"


def test_self_test_passes(tiny_model: Path) -> None:
    out = io.StringIO()
    assert run_self_test(tiny_model, out=out) == 0, out.getvalue()
    text = out.getvalue()
    for step in STEPS:
        assert f"ok   {step}" in text
    assert "self-test passed" in text


def test_missing_model_is_reported(tmp_path: Path) -> None:
    out = io.StringIO()
    assert run_self_test(tmp_path / "missing.pt", out=out) == 1
    text = out.getvalue()
    assert "FAIL model" in text and "missing.pt" in text
    assert "ok   imports" in text  # the other steps still ran
    # train and window do not need the model
    assert "self-test FAILED (model, encode, library)" in text


def test_command_line_flag(tiny_model: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--self-test", "--model", str(tiny_model)]) == 0
    assert "self-test passed" in capsys.readouterr().out


def test_model_resolution(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(MODEL_ENV, raising=False)
    assert resolve_model_path() == resources_dir() / "models" / "default.pt"
    monkeypatch.setenv(MODEL_ENV, str(tmp_path / "env.pt"))
    assert resolve_model_path() == tmp_path / "env.pt"
    assert resolve_model_path(tmp_path / "arg.pt") == tmp_path / "arg.pt"


def test_resources_found_when_frozen(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "frozen", True, raising=False)
    monkeypatch.setattr(sys, "_MEIPASS", str(tmp_path), raising=False)
    assert resources_dir() == tmp_path / "resources"
    monkeypatch.delattr(sys, "frozen")
    assert resources_dir() == ROOT / "resources"


# Runs the self-test and a short fine-tuning in a fresh interpreter in which every module
# build.spec excludes from the bundle is missing: an exclusion the app needs fails here,
# without a build.
_BLOCKED_RUN = """
import ast, sys
tree = ast.parse(open(sys.argv[1], encoding="utf-8").read())
excluded = next(ast.literal_eval(n.value) for n in tree.body if isinstance(n, ast.Assign)
                and getattr(n.targets[0], "id", "") == "EXCLUDE_MODULES")
for name in excluded:  # absent, as in the bundle: import fails, importlib.util.find_spec → None
    sys.modules[name] = None
import importlib, pkgutil, core, cukd_app
for pkg in (core, cukd_app):
    for m in pkgutil.walk_packages(pkg.__path__, pkg.__name__ + "."):
        if not m.name.endswith(("__main__", ".testing")):
            importlib.import_module(m.name)
from cukd_app.__main__ import main
code = main(["--self-test", "--model", sys.argv[2]])
# what the retrain wizard runs: a short fine-tuning of the model on labelled folders
from pathlib import Path
from core.data import list_images
from core.finetune import FinetuneConfig, finetune, split_train_val
from tests.models_helpers import write_images
out = Path(sys.argv[3])
write_images(out / "images", 9, classes=3)
train, val = split_train_val(list_images(out / "images", labelled=True), 0.34)
for mode, loss in (("head", "csq"), ("last_stages", "dch")):
    finetune(FinetuneConfig(loss=loss, n_bits=16, train_mode=mode, epochs=1, batch_size=8,
                            views=1, embed_dim=4, decode_threads=1),
             sys.argv[2], train, val, out / mode)
print("fine-tuning passed")
sys.exit(code)
"""


@pytest.mark.slow
def test_self_test_without_modules_the_spec_excludes(tiny_model: Path, tmp_path: Path) -> None:
    env = {**os.environ, "QT_QPA_PLATFORM": "offscreen", "OMP_NUM_THREADS": "1"}
    r = subprocess.run([sys.executable, "-c", _BLOCKED_RUN, str(ROOT / "build.spec"),
                        str(tiny_model), str(tmp_path)], cwd=ROOT, env=env,
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "self-test passed" in r.stdout and "fine-tuning passed" in r.stdout
