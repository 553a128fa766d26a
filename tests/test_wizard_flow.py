"""Retrain wizard (issue 6): every page on tiny generated data, invalid contexts, cancel
mid-training (nothing of the library changes), adopting the new model (re-encode + swap)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch
from PySide6.QtWidgets import QWizard

from core.checkpoint import save_student
from core.encoder import Encoder
from core.models import create_student
from cukd_app.app import MainWindow
from cukd_app.services.search_service import SearchRequest
from cukd_app.testing import make_test_context, open_library, show_window
from cukd_app.wizard import RetrainWizard
from tests.library_helpers import make_tree
from tests.test_finetune import make_class_tree

SHORT = (("epochs", 3), ("batch_size", 8), ("views", 2), ("embed_dim", 16),
         ("decode_threads", 1), ("patience", 0))
HINT = "weights for teacher 'mobilenet_v2' not found. Install them with: pip install x"


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    d = tmp_path_factory.mktemp("wizard")
    tree = make_class_tree(d / "ctx", 3, 8)
    torch.manual_seed(0)
    save_student(d / "base.pt", create_student("cukd_mnv2_035", 64))
    return tree, d / "base.pt"


@pytest.fixture
def app(qtbot, tmp_path: Path):
    photos = tmp_path / "photos"
    make_tree(photos, 8)
    ctx = make_test_context(tmp_path)
    win = show_window(qtbot, ctx)
    open_library(qtbot, ctx, [photos])
    yield ctx, win, photos
    if win.controller.wizard is not None:
        win.controller.wizard.shutdown()
    ctx.close()


def _wizard(win: MainWindow, base: Path, **kw: object) -> RetrainWizard:
    opts = {"base_model": base, "min_per_class": 3, "overrides": SHORT,
            "teacher_check": lambda: HINT, **kw}
    return win.controller.open_retrain_wizard(**opts)


def _check(qtbot, wiz: RetrainWizard, folder: Path) -> None:
    page = wiz.context_page
    page.set_folder(folder)
    qtbot.waitUntil(lambda: not page.scanning, timeout=10000)


def test_invalid_contexts_are_explained(qtbot, app, data, tmp_path: Path) -> None:
    _ctx, win, _ = app
    tree, base = data
    wiz = _wizard(win, base)
    page = wiz.context_page
    assert wiz.currentId() == wiz.CONTEXT and not page.isComplete()

    one = tmp_path / "one"
    shutil.copytree(tree / "class_0", one / "only")
    _check(qtbot, wiz, one)
    assert not page.isComplete() and "at least 2 are needed" in page.errors.text()

    bad = tmp_path / "bad"
    shutil.copytree(tree, bad)
    for f in list((bad / "class_2").iterdir())[1:]:
        f.unlink()
    (bad / "class_1" / "broken.jpg").write_bytes(b"\xff\xd8 not a jpeg")
    shutil.copy(bad / "class_0" / "img_0.jpg", bad / "class_0" / "copy.jpg")
    (bad / "class_0" / "deeper").mkdir()
    shutil.copy(tree / "class_2" / "img_5.jpg", bad / "class_0" / "deeper" / "nested.jpg")
    shutil.copy(tree / "class_1" / "img_2.jpg", bad / "loose.jpg")
    _check(qtbot, wiz, bad)
    rep = page.report
    assert rep is not None and not page.isComplete()
    assert "class_2 has 1" in page.errors.text() and "at least 3 readable" in page.errors.text()
    issues = page.issues.toPlainText()
    assert "broken.jpg" in issues and "copy.jpg" in issues and "loose.jpg" in issues
    counts = {c.name: c.readable for c in rep.classes}
    assert counts == {"class_0": 9, "class_1": 8, "class_2": 1}  # nested counted, copy once
    assert rep.classes[0].nested == 1

    missing = tmp_path / "missing"
    _check(qtbot, wiz, missing)
    assert "no such folder" in page.errors.text() and not page.isComplete()

    _check(qtbot, wiz, tree)  # a valid context: per-class counts, split and thumbnails
    assert page.isComplete() and page.table.rowCount() == 3
    assert [page.table.item(r, 3).text() for r in range(3)] == ["2", "2", "2"]
    assert page.table.cellWidget(0, 4).pixmap().width() > 0
    wiz.reject()


def test_every_page_then_adopt_model(qtbot, app, data) -> None:
    ctx, win, photos = app
    tree, base = data
    old_id = ctx.library.library.status().model_id
    wiz = _wizard(win, base)
    _check(qtbot, wiz, tree)
    wiz.next()
    assert wiz.currentId() == wiz.METHOD
    mp = wiz.method_page
    qtbot.waitUntil(lambda: mp.estimates["fast"].text() not in ("estimating…", ""),
                    timeout=15000)
    assert mp.estimates["fast"].text().startswith("about")
    qtbot.waitUntil(lambda: "not installed" in mp.teacher_note.text(), timeout=10000)
    assert not mp.distill.isEnabled() and "pip install" in mp.teacher_note.text()
    assert mp.loss == "csq" and mp.n_bits == 64 and mp.preset == "fast"
    mp.bits.setCurrentIndex(0)  # 16 bits

    wiz.next()
    tp = wiz.training_page
    assert wiz.currentId() == wiz.TRAINING
    assert not wiz.button(QWizard.WizardButton.BackButton).isEnabled()  # while training
    qtbot.waitUntil(lambda: wiz.currentId() == wiz.RESULT, timeout=40000)
    assert tp.state == "done" and tp.bar.value() == 1000
    assert any(s.points for s in tp.chart.series if s.name == "validation mAP")
    assert "epoch 3" in tp.log.toPlainText()

    rp = wiz.result_page
    out = rp.outcome
    assert out is not None and out.new_eval is not None and out.current_eval is not None
    assert out.distinct_codes > 2 and not out.collapsed
    assert rp.metrics.rowCount() == 4 and rp.metrics.item(0, 1).text() == f"{out.new_eval.map:.3f}"
    assert rp.pr.series[0].points and rp.pr.series[1].points
    assert len(out.examples) == 3 and rp.examples_grid.count() > 3
    rp.set_choice("use")
    rp.name.setText("My classes")
    with qtbot.waitSignal(ctx.library.modelChanged, timeout=30000) as changed:
        wiz.button(QWizard.WizardButton.FinishButton).click()
    stored = win.controller.models.entry(win.controller.models.directory / "My-classes.pt")
    assert stored is not None and stored.name == "My classes" and stored.summary["bits"] == 16
    assert not wiz.work_dir.exists()  # scratch files removed

    new_id = Encoder.from_file(stored.path).model_id
    lib = ctx.library.library
    st = lib.status()
    assert st.model_id == new_id != old_id and st.reencoding_to is None
    assert lib.catalog.active_model == new_id
    assert lib.catalog.count_codes(new_id) == st.ok == 8 and lib.catalog.count_codes(old_id) == 0
    assert lib.index.ntotal == 8
    assert changed.args[0].encoder.model_id == new_id
    assert ctx.settings.model_path == str(stored.path)
    with qtbot.waitSignal(ctx.search.finished, timeout=10000) as found:
        ctx.search.search(SearchRequest(path=str(next(photos.glob("*.png")))))
    assert found.args[0].hits
    assert win.status.model.text() == "Model: My-classes (16 bits)"


def test_cancel_mid_training_changes_nothing(qtbot, app, data) -> None:
    ctx, win, _ = app
    tree, base = data
    lib = ctx.library.library
    before_id = lib.status().model_id
    index_files = {p.name: p.read_bytes() for p in lib.directory.glob("*.cukdidx")}
    settings_before = ctx.settings.model_path
    slow = (("epochs", 400), ("batch_size", 4), ("views", 1), ("embed_dim", 16),
            ("decode_threads", 1), ("patience", 0))
    wiz = _wizard(win, base, overrides=slow)
    _check(qtbot, wiz, tree)
    wiz.next()
    wiz.next()
    tp = wiz.training_page
    qtbot.waitUntil(lambda: any(s.points for s in tp.chart.series), timeout=20000)
    assert tp.state == "running" and wiz.run.running
    tp.cancel_btn.click()
    qtbot.waitUntil(lambda: tp.state == "cancelled", timeout=5000)  # within seconds
    assert "unchanged" in tp.phase.text() and not tp.isComplete()
    assert wiz.currentId() == wiz.TRAINING
    assert wiz.button(QWizard.WizardButton.BackButton).isEnabled()
    assert not wiz.work_dir.exists()
    assert lib.status().model_id == before_id and lib.catalog.active_model == before_id
    assert lib.catalog.models() == [before_id]
    assert {p.name: p.read_bytes() for p in lib.directory.glob("*.cukdidx")} == index_files
    assert ctx.settings.model_path == settings_before
    assert not win.controller.models.directory.exists() or not list(
        win.controller.models.directory.glob("*.pt"))
    wiz.reject()


def test_keep_for_later_and_discard(qtbot, app, data) -> None:
    ctx, win, _ = app
    tree, base = data
    before_id = ctx.library.library.status().model_id
    for choice, stored in (("keep", 1), ("discard", 1)):
        wiz = _wizard(win, base, overrides=(("epochs", 1), *SHORT[1:]))
        _check(qtbot, wiz, tree)
        wiz.method_page.dch.setChecked(True)
        wiz.next()
        wiz.next()
        qtbot.waitUntil(lambda w=wiz: w.currentId() == w.RESULT, timeout=40000)
        wiz.result_page.set_choice(choice)
        wiz.button(QWizard.WizardButton.FinishButton).click()
        assert len(list(win.controller.models.directory.glob("*.pt"))) == stored
        assert ctx.library.library.status().model_id == before_id
        assert not ctx.library.changing_model
    entry = win.controller.models.list()[-1]
    assert entry.summary["method"] == "dch" and entry.summary["preset"] == "fast"


def test_step_one_offered_when_teacher_installed(qtbot, app, data) -> None:
    _ctx, win, _ = app
    tree, base = data
    wiz = _wizard(win, base, teacher_check=lambda: None)
    _check(qtbot, wiz, tree)
    wiz.next()
    mp = wiz.method_page
    qtbot.waitUntil(lambda: mp.distill.isEnabled(), timeout=10000)
    assert "8 photos of your library" in mp.teacher_note.text()
    qtbot.waitUntil(lambda: mp.estimates["fast"].text().startswith("about"), timeout=15000)
    before = dict(mp.seconds)
    mp.distill.setChecked(True)
    assert mp.use_distill and all(mp.seconds[k] > before[k] for k in before)
    plan = wiz.build_plan()
    assert len(plan.distill_images) == 8 and plan.preset == "fast"
    wiz.reject()
