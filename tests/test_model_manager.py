"""Model store and manager dialog (issue 6): list with provenance, rename, delete (not the
default, not the active one), export, import validated without unsafe unpickling, switch."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest
import torch

from core.checkpoint import load_model_file, save_student
from core.cli_hashing import add_commands
from core.data import list_images
from core.models import create_student
from cukd_app import testing  # noqa: F401  (offscreen Qt platform)
from cukd_app.models_manager import ModelManagerDialog, ModelStore, ModelStoreError
from cukd_app.notifications import Notifier
from cukd_app.wizard.context_scan import ContextSource, scan_context
from cukd_app.wizard.job import RetrainPlan, run_retrain
from tests.test_finetune import make_class_tree


class Evil:
    """Unpickling this would run code: the store must refuse the file, not load it."""

    ran = False

    def __reduce__(self):
        return (setattr, (Evil, "ran", True))


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("models")
    tree = make_class_tree(d / "ctx", 3, 8)
    torch.manual_seed(0)
    base = d / "base.pt"
    save_student(base, create_student("cukd_mnv2_035", 64))
    rep = scan_context(ContextSource(folder=tree), min_per_class=3)
    assert rep is not None and rep.valid
    train, val = rep.split(0.2, 0)
    plan = RetrainPlan(train, val, "fast", "csq", 16, base, d / "app", str(tree), 0.2, 0, (),
                       (("epochs", 2), ("batch_size", 8), ("views", 1), ("embed_dim", 8)))
    out = run_retrain(plan, None)
    assert out.model_path is not None and out.current_eval is None
    return {"tree": tree, "base": base, "trained": out.model_path, "dir": d}


def _cli(*argv: object) -> int:
    p = argparse.ArgumentParser(prog="cukd")
    add_commands(p.add_subparsers(dest="command", required=True))
    a = p.parse_args([str(x) for x in argv])
    return a.func(a)


def test_wizard_and_cli_write_the_same_model(models: dict[str, Path], tmp_path: Path) -> None:
    assert _cli("finetune", "--from-folder", models["tree"], "--model", models["base"],
                "--out", tmp_path / "cli", "--bits", 16, "--preset", "fast", "--epochs", 2,
                "--batch-size", 8, "--views", 1, "--embed-dim", 8) == 0
    a = load_model_file(models["trained"])
    b = load_model_file(tmp_path / "cli" / "model.pt")
    assert a.keys() == b.keys() and a["format_version"] == b["format_version"]
    for k, v in a["state_dict"].items():
        assert torch.equal(v, b["state_dict"][k]), k
    ha, hb = a["hash_head"], b["hash_head"]
    assert ha.keys() == hb.keys()
    for k, v in ha["state"].items():
        assert torch.allclose(v, hb["state"][k], atol=1e-6), k
    assert torch.equal(ha["centres"], hb["centres"])
    pa, pb = a["provenance"], b["provenance"]
    assert pa.keys() == pb.keys()
    for key in ("method", "bits", "preset", "train_mode", "classes", "n_train", "n_val",
                "config", "data", "val_map"):
        assert pa[key] == pb[key], key
    assert list_images(models["tree"]).classes == tuple(pa["classes"])


def test_store_lists_renames_deletes_exports_imports(models: dict[str, Path],
                                                     tmp_path: Path) -> None:
    default = tmp_path / "resources" / "default.pt"
    default.parent.mkdir()
    default.write_bytes(models["trained"].read_bytes())
    store = ModelStore(tmp_path / "models", default)
    assert [e.name for e in store.list()] == ["Default model"]
    dest = store.add(models["trained"], "Birds / CSQ")
    assert dest.name == "Birds-CSQ.pt" and models["trained"].exists()  # copied
    entries = store.list()
    assert [e.is_default for e in entries] == [True, False]
    s = entries[1].summary
    assert s["method"] == "csq" and s["bits"] == 16 and s["preset"] == "fast"
    assert s["classes"] == ["class_0", "class_1", "class_2"] and s["created"]
    assert s["data"] == str(models["tree"]) and 0 <= s["val_map"] <= 1
    assert entries[1].describe() == "CSQ, 16 bits, fast"

    store.rename(dest, "Garden birds")
    assert store.entry(dest).name == "Garden birds"
    assert dest.read_bytes() == models["trained"].read_bytes()  # the file itself is untouched
    with pytest.raises(ModelStoreError):
        store.rename(default, "x")
    with pytest.raises(ModelStoreError):
        store.delete(default)
    with pytest.raises(ModelStoreError, match="in use"):
        store.delete(dest, active=dest)
    out = store.export(dest, tmp_path)
    assert out.read_bytes() == dest.read_bytes()

    evil = tmp_path / "evil.pt"
    torch.save({"format": "cukd-model", "x": Evil()}, evil)
    with pytest.raises(ModelStoreError, match="is not a CUKD model file"):
        store.import_file(evil)
    assert not Evil.ran
    no_head = tmp_path / "nohead.pt"
    save_student(no_head, create_student("cukd_mnv2_035", 64))
    with pytest.raises(ModelStoreError, match="no hash head"):
        store.import_file(no_head)
    text = tmp_path / "notes.pt"
    text.write_text("hello")
    with pytest.raises(ModelStoreError):
        store.import_file(text)
    assert len(list((tmp_path / "models").glob("*.pt"))) == 1  # nothing half-imported

    imported = store.import_file(out)
    assert imported != dest and len(store.list()) == 3
    store.delete(dest)
    assert not dest.exists() and [e.path for e in store.list()][1:] == [imported]


def test_manager_dialog(qtbot, models: dict[str, Path], tmp_path: Path) -> None:
    store = ModelStore(tmp_path / "models", tmp_path / "missing-default.pt")
    a = store.add(models["trained"], "first")
    b = store.add(models["trained"], "second")
    notifier = Notifier()
    active = [a]
    dlg = ModelManagerDialog(store, notifier, lambda: active[0])
    qtbot.addWidget(dlg)
    dlg.show()
    assert dlg.tree.topLevelItemCount() == 2
    assert dlg.selected().path == a and "(in use)" in dlg.tree.currentItem().text(0)
    assert not dlg.delete_btn.isEnabled() and not dlg.use_btn.isEnabled()
    assert "class_0" in dlg.details.toPlainText() and "CSQ, 16 bits" in dlg.details.toPlainText()
    dlg.select(b)
    assert dlg.delete_btn.isEnabled() and dlg.use_btn.isEnabled()
    with qtbot.waitSignal(dlg.useRequested) as used:
        dlg.use_btn.click()
    assert used.args == [b]
    assert dlg.rename(dlg.selected(), "renamed")
    assert any(e.name == "renamed" for e in dlg.entries)
    assert dlg.export_to(dlg.selected(), tmp_path / "out.pt") == tmp_path / "out.pt"
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"junk")
    with qtbot.waitSignal(notifier.posted) as posted:
        assert dlg.import_from(bad) is None
    assert posted.args[0].level == "error" and "bad.pt" in posted.args[0].text
    assert dlg.import_from(tmp_path / "out.pt") is not None
    assert dlg.tree.topLevelItemCount() == 3
    dlg.select(b)
    assert dlg.delete(dlg.selected()) and dlg.tree.topLevelItemCount() == 2


def test_rename_dialog_fits_its_title(qtbot, models: dict[str, Path], tmp_path: Path) -> None:
    """The Rename… button's prompt is wide enough that the title is not cut ("Rena… model")."""
    from PySide6.QtCore import QTimer
    from PySide6.QtWidgets import QApplication, QInputDialog

    from cukd_app.views.small_dialogs import MIN_WIDTH

    store = ModelStore(tmp_path / "models", tmp_path / "missing-default.pt")
    a = store.add(models["trained"], "first")
    dlg = ModelManagerDialog(store, Notifier(), lambda: None)
    qtbot.addWidget(dlg)
    dlg.show()
    dlg.select(a)
    seen: dict[str, object] = {}

    def answer() -> None:
        box = QApplication.activeModalWidget()
        if not isinstance(box, QInputDialog):
            QTimer.singleShot(20, answer)
            return
        seen.update(title=box.windowTitle(), width=box.width(), text=box.textValue())
        box.setTextValue("Garden birds")
        box.accept()

    QTimer.singleShot(0, answer)
    dlg.rename_btn.click()  # runs the real prompt until answer() accepts it
    assert seen["title"] == "Rename model" and seen["text"] == "first"
    assert seen["width"] >= MIN_WIDTH
    assert store.entry(a).name == "Garden birds"


def test_step_one_then_step_two(models: dict[str, Path], tmp_path: Path) -> None:
    """With library images, the job distils a new student first and fine-tunes that."""
    from tests.test_finetune import ColourTeacher

    rep = scan_context(ContextSource(folder=models["tree"]), min_per_class=3)
    train, val = rep.split(0.2, 0)
    events = []
    plan = RetrainPlan(train, val, "fast", "dch", 16, models["base"], tmp_path, "ctx",
                       distill_images=tuple(train.paths[:12]),
                       overrides=(("epochs", 1), ("batch_size", 8), ("views", 1),
                                  ("embed_dim", 8)),
                       distill_overrides=(("input_size", 64), ("epochs", 1), ("views", 1),
                                          ("batch_size", 8), ("decode_threads", 1)),
                       teacher=ColourTeacher())
    out = run_retrain(plan, None, on_progress=events.append)
    assert out.model_path is not None
    prov = load_model_file(out.model_path)["provenance"]
    assert prov["method"] == "dch" and prov["base_provenance"]["step"] == "distill"
    assert "distill" in {e.phase for e in events}
    assert (tmp_path / "distill" / "student.pt").exists()
