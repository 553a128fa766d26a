"""Retrain wizard (issue 6): every page on tiny generated data, invalid contexts, cancel
mid-training (nothing of the library changes), adopting the new model (re-encode + swap).
Issue 17: closing while training asks (keep it in the background, stop, stay), Back is off on
the first page, plain labels with the technical terms in tooltips, whole-epoch chart ticks,
no preselected "Use this model" on a handful of validation photos."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch
from PySide6.QtWidgets import QAbstractButton, QGroupBox, QLabel, QWizard, QWizardPage

from core.checkpoint import save_student
from core.encoder import Encoder
from core.models import create_student
from cukd_app.app import MainWindow
from cukd_app.services.search_service import SearchRequest
from cukd_app.testing import make_test_context, open_library, show_window
from cukd_app.wizard import RetrainWizard
from cukd_app.wizard.training_page import SCORE_SERIES
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
    low, high = mp.ranges["fast"]
    assert 0 < low < high  # early stopping may end sooner: a range, not one number
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
    assert any(s.points for s in tp.chart.series if s.name == SCORE_SERIES)
    assert "epoch 3" in tp.log.toPlainText()
    ticks = [label for _, label in tp.chart.x_ticks()]
    assert ticks and all(t.isdigit() for t in ticks)  # epochs 0, 1, 2, 3 — never 2.25

    rp = wiz.result_page
    out = rp.outcome
    assert out is not None and out.new_eval is not None and out.current_eval is not None
    assert out.distinct_codes > 2 and not out.collapsed
    # 18 training photos: mAP@100 and precision@100 would equal mAP / the class share for
    # any model, so they are not shown; precision@10 can differ
    labels = [rp.metrics.item(r, 0).text() for r in range(rp.metrics.rowCount())]
    assert labels == ["Search quality (0 to 1)", "Same class among the first 10 results",
                      "Same class among near-identical codes"]
    assert rp.metrics.item(0, 1).text() == f"{out.new_eval.map:.3f}"
    assert rp.metrics.item(1, 0).toolTip() == "precision@10"
    # 6 validation photos of 3 classes are too few for "Use this model" to be preselected
    assert rp.choice != "use" and "6 held-back photos of 3 classes" in rp.scope.text()
    assert "rest of your library (8 photos)" in rp.scope.text()
    assert rp.pr.series[0].points and rp.pr.series[1].points
    assert len(out.examples) == 3 and rp.examples_grid.count() > 3
    rp.set_choice(None)
    assert not wiz.button(QWizard.WizardButton.FinishButton).isEnabled()  # a choice is needed
    rp.set_choice("use")
    assert wiz.button(QWizard.WizardButton.FinishButton).isEnabled()
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
    assert win.status.model.text() == f"Model: {stored.name}"  # as the model manager says


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
    assert not wiz.training  # stopping: closing now would not ask "Training is running"
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


SLOW = (("epochs", 400), ("batch_size", 4), ("views", 1), ("embed_dim", 16),
        ("decode_threads", 1), ("patience", 0))


def _start_training(qtbot, wiz: RetrainWizard, folder: Path) -> None:
    _check(qtbot, wiz, folder)
    wiz.next()
    wiz.next()
    assert wiz.currentId() == wiz.TRAINING and wiz.run.running


def _answer(wiz: RetrainWizard, answer: str) -> None:
    box = wiz.close_question
    assert box is not None and box.isVisible()
    button: QAbstractButton = wiz.close_answers[answer]
    assert button in box.buttons()
    button.click()


def test_back_is_off_on_the_first_page(qtbot, app, data) -> None:
    _ctx, win, _ = app
    tree, base = data
    wiz = _wizard(win, base)
    back = wiz.button(QWizard.WizardButton.BackButton)
    assert wiz.currentId() == wiz.CONTEXT and not back.isEnabled()
    _check(qtbot, wiz, tree)  # the page turns complete: the buttons are updated again
    assert not back.isEnabled()
    wiz.next()
    assert wiz.currentId() == wiz.METHOD and back.isEnabled()
    back.click()
    assert wiz.currentId() == wiz.CONTEXT and not back.isEnabled()
    wiz.reject()


def test_closing_while_training_asks_and_keeps_it_in_the_background(qtbot, app, data) -> None:
    ctx, win, _ = app
    tree, base = data
    wiz = _wizard(win, base, overrides=SLOW)
    _start_training(qtbot, wiz, tree)
    tp = wiz.training_page
    assert "closing this window asks" in tp.subTitle()

    wiz.close()  # the window's close button: a question, not a silent cancel
    box = wiz.close_question
    assert box is not None and box.isVisible() and wiz.isVisible() and wiz.run.running
    assert box.text().startswith("Training is running.")
    assert box.defaultButton() is wiz.close_answers["keep"]
    assert wiz.close_answers["keep"].text() == "Keep training in background"
    assert wiz.close_answers["stop"].text() == "Stop training and close"
    _answer(wiz, "stay")
    assert wiz.close_question is None and wiz.isVisible() and tp.state == "running"

    wiz.button(QWizard.WizardButton.CancelButton).click()  # Cancel asks the same
    assert wiz.close_question is not None and wiz.run.running
    statuses: list[str] = []
    wiz.backgroundStatus.connect(statuses.append)
    with qtbot.waitSignal(ctx.notifier.posted, timeout=5000) as posted:
        _answer(wiz, "keep")
    assert not wiz.isVisible() and wiz.in_background and wiz.run.running
    assert "continues in the background" in posted.args[0].text
    menu_item = "Library ▸ " + win.actions_["retrain"].text().replace("&", "")
    assert menu_item in posted.args[0].text  # names the real menu item that reopens it
    qtbot.waitUntil(lambda: any("epoch" in s for s in statuses), timeout=20000)
    assert tp.state == "running"

    again = win.controller.open_retrain_wizard()  # the menu shows the same, running wizard
    assert again is wiz and wiz.isVisible() and not wiz.in_background
    assert wiz.currentId() == wiz.TRAINING and wiz.run.running
    assert statuses[-1] == ""

    wiz.close()
    _answer(wiz, "stop")  # stop and close: nothing of the library changes
    assert not wiz.isVisible()
    qtbot.waitUntil(lambda: tp.state == "cancelled", timeout=10000)
    assert not wiz.work_dir.exists() and not wiz.run.running


def test_training_in_the_background_brings_its_result_back(qtbot, app, data) -> None:
    ctx, win, _ = app
    tree, base = data
    wiz = _wizard(win, base)
    _start_training(qtbot, wiz, tree)
    wiz.close()
    _answer(wiz, "keep")
    assert not wiz.isVisible()
    at_end: list[tuple[str, bool]] = []
    wiz.training_page.ended.connect(lambda state: at_end.append((state, wiz.training)))
    qtbot.waitUntil(lambda: wiz.isVisible(), timeout=40000)  # back when training is done
    assert wiz.currentId() == wiz.RESULT and wiz.result_page.outcome is not None
    assert any(n.text.startswith("Training finished") for n in ctx.notifier.history)
    assert at_end == [("done", False)]  # the result is in, even before the worker is gone
    wiz.close()  # no training running: closes without a question
    assert wiz.close_question is None and not wiz.isVisible()


def _visible_texts(page: QWizardPage) -> list[str]:
    texts = [page.title(), page.subTitle()]
    for w in page.findChildren(QAbstractButton) + page.findChildren(QLabel):
        if w.isVisibleTo(page):
            texts.append(w.text())
    texts += [g.title() for g in page.findChildren(QGroupBox) if g.isVisibleTo(page)]
    return texts


def test_plain_labels_with_technical_terms_in_tooltips(qtbot, app, data) -> None:
    _ctx, win, _ = app
    tree, base = data
    wiz = _wizard(win, base)
    _check(qtbot, wiz, tree)
    cp = wiz.context_page
    shown = " ".join(_visible_texts(cp))
    assert "seed" not in shown.lower() and "validation" not in shown.lower()
    assert not cp.seed.isVisibleTo(cp) and "Split seed" in cp.seed.toolTip()
    cp.advanced_btn.click()  # the seed is under "Advanced"
    assert cp.seed.isVisibleTo(cp)
    assert "Validation share" in cp.val_share.toolTip()
    wiz.next()
    mp = wiz.method_page
    shown = " ".join(_visible_texts(mp))
    for term in ("CSQ", "DCH", "distil", "student", "mAP", "hash layer"):
        assert term not in shown, term
    assert mp.csq.toolTip().startswith("CSQ — central similarity quantization")
    assert mp.dch.toolTip().startswith("DCH — deep Cauchy hashing")
    assert "distillation" in mp.distill.toolTip() and "student" in mp.distill.toolTip()
    assert "hash layer" in mp.presets["fast"].toolTip()
    tp = wiz.training_page
    assert all("mAP" not in s.name and "loss" not in s.name for s in tp.chart.series)
    assert "mAP" in tp.chart.toolTip() and "loss" in tp.chart.toolTip()
    wiz.reject()
