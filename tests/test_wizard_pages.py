"""Retrain wizard pages without a training run (issue 17, item 7): the result page says what
the comparison covers and preselects "Use this model" only on enough evidence, metrics that
cannot differ on the split are hidden, the training chart has whole-epoch ticks, and the
time estimate is measured on real photos, includes the fixed costs and is a range."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PySide6.QtCore import QThreadPool

from core.checkpoint import save_student
from core.evaluate import EvalResult, evaluate_codes
from core.models import create_student
from cukd_app import testing  # noqa: F401  (offscreen Qt platform)
from cukd_app.views.small_dialogs import MIN_WIDTH, TITLE_BAR_EXTRA, text_dialog
from cukd_app.wizard.chart import LineChart, Series
from cukd_app.wizard.estimate import (
    DECODE_S,
    MachineSpeed,
    estimate_range,
    format_range,
    measure_speed,
)
from cukd_app.wizard.job import PRECISION_K, RetrainOutcome
from cukd_app.wizard.result_page import ResultPage, metric_rows
from tests.test_finetune import make_class_tree


def _eval(n_classes: int, n_val_per: int, n_db_per: int, noise: float, seed: int = 0
          ) -> EvalResult:
    """Real metrics of random 32-bit codes: one centre per class, ``noise`` bits flipped."""
    rng = np.random.default_rng(seed)
    centres = rng.integers(0, 2, (n_classes, 32), dtype=np.uint8)

    def codes(per: int) -> tuple[np.ndarray, np.ndarray]:
        labels = np.repeat(np.arange(n_classes), per)
        bits = centres[labels] ^ (rng.random((len(labels), 32)) < noise).astype(np.uint8)
        return np.packbits(bits, axis=1), labels

    q, ql = codes(n_val_per)
    d, dl = codes(n_db_per)
    return evaluate_codes(q, d, ql, dl, map_k=[100], precision_k=PRECISION_K)


def _outcome(n_classes: int, n_val_per: int, n_db_per: int, new_noise: float = 0.05,
             cur_noise: float | None = 0.4) -> RetrainOutcome:
    new = _eval(n_classes, n_val_per, n_db_per, new_noise)
    cur = None if cur_noise is None else _eval(n_classes, n_val_per, n_db_per, cur_noise, 1)
    return RetrainOutcome(Path("new.pt"), False, new_eval=new, current_eval=cur,
                          distinct_codes=50, n_classes=n_classes, smallest_class=n_db_per)


@pytest.fixture
def page(qtbot) -> ResultPage:
    p = ResultPage(QThreadPool(), has_current=True)
    qtbot.addWidget(p)
    p.show()
    return p


def test_few_validation_photos_preselect_nothing_and_say_what_was_tested(page) -> None:
    out = _outcome(3, 8, 32)  # 24 validation photos of 3 classes, the new model better
    assert out.new_eval.map > out.current_eval.map
    page.show_outcome(out, "ctx", library_photos=388)
    assert page.choice is None and not page.isComplete()  # Finish waits for a choice
    assert "better" in page.verdict.text() and "too few photos" in page.verdict.text()
    assert "100 held-back photos of 5 classes" in page.verdict.text()
    scope = page.scope.text()
    assert "Tested on 24 held-back photos of 3 classes" in scope
    assert "among 96 training photos" in scope
    assert "rest of your library (388 photos) was not part of this test" in scope
    page.set_choice("use")
    assert page.choice == "use" and page.isComplete()


def test_enough_evidence_preselects_use_a_worse_model_keep(page) -> None:
    page.show_outcome(_outcome(5, 20, 30), "ctx")  # 100 photos of 5 classes
    assert page.choice == "use" and "too few" not in page.verdict.text()
    page.show_outcome(_outcome(6, 20, 30, new_noise=0.4, cur_noise=0.05), "ctx")
    assert page.choice == "keep" and "not better" in page.verdict.text()
    page.show_outcome(_outcome(2, 5, 10, cur_noise=None), "ctx")  # nothing to compare with
    assert page.choice is None and "no current model" in page.verdict.text()


def test_metrics_that_cannot_differ_are_hidden(page) -> None:
    # 96 training photos (32 per class): any model ranks all of them within 100
    small = _outcome(3, 8, 32)
    rows = metric_rows(small.new_eval, small.current_eval, small.smallest_class)
    terms = [t for _, t, _, _ in rows]
    assert "mAP@100" not in terms and "precision@100" not in terms
    assert "precision@10" in terms
    cur = small.current_eval
    assert cur.precision_at[100] == pytest.approx(small.new_eval.precision_at[100])  # why
    # 300 training photos, 50 per class: mAP@100 differs; precision@100 could not reach 1
    mid = _outcome(6, 5, 50)
    terms = [t for _, t, _, _ in metric_rows(mid.new_eval, mid.current_eval, 50)]
    assert "mAP@100" in terms and "precision@10" in terms and "precision@100" not in terms
    # more than 100 training photos in every class: precision@100 is meaningful
    big = _outcome(3, 4, 120)
    terms = [t for _, t, _, _ in metric_rows(big.new_eval, big.current_eval, 120)]
    assert "precision@100" in terms and "precision@10" not in terms

    page.show_outcome(small, "ctx")
    labels = [page.metrics.item(r, 0).text() for r in range(page.metrics.rowCount())]
    assert labels == ["Search quality (0 to 1)", "Same class among the first 10 results",
                      "Same class among near-identical codes"]
    assert all("mAP" not in lab and "precision" not in lab for lab in labels)  # plain words
    assert page.metrics.item(0, 0).toolTip().startswith("mAP: mean average precision")


def test_epoch_ticks_are_whole_numbers(qtbot) -> None:
    chart = LineChart("epoch", integer_x=True)
    qtbot.addWidget(chart)
    chart.add_series(Series("training error", "#2e86de"))
    chart.resize(420, 220)
    chart.show()
    for i in range(1, 60):
        chart.append("training error", i * 0.098, 1.0 / i)  # up to epoch 5.78
    ticks = chart.x_ticks()
    assert [label for _, label in ticks] == ["0", "2", "4", "6"]
    assert all(v == int(v) for v, _ in ticks)
    assert not chart.grab().isNull()  # paints with those ticks
    chart.clear()
    chart.append("training error", 0.05, 1.0)  # the first batches: the axis is epoch 0 to 1
    assert [label for _, label in chart.x_ticks()] == ["0", "1"]
    plain = LineChart("recall", x_range=(0.0, 1.0))
    assert [label for _, label in plain.x_ticks()] == ["0", "0.25", "0.5", "0.75", "1"]


def test_estimate_counts_fixed_costs_and_early_stopping() -> None:
    bare = MachineSpeed(0.01, 0.03, 160)
    slow_load = MachineSpeed(0.01, 0.03, 160, load_s=2.0, save_s=0.05)
    lo0, hi0 = estimate_range(bare, 96, 24, "fast")
    lo, hi = estimate_range(slow_load, 96, 24, "fast")
    assert lo - lo0 > 2 * 2.0 * 0.8  # the base and the new model are both loaded
    assert hi - hi0 > 60 * 4 * 0.05  # the training state is saved after each of 60 epochs
    assert lo < hi  # fast stops early after 11 epochs at best, runs 60 at most
    no_cur = estimate_range(slow_load, 96, 24, "fast", compare=False)
    assert no_cur[1] < hi  # the current model is not evaluated
    short = estimate_range(slow_load, 96, 24, "fast", overrides=(("epochs", 3),))
    assert short[1] < hi  # follows the run's overrides
    assert format_range(12, 26) == "about 10–25 s"
    assert format_range(40, 150) == "about 40 s – 2 min"
    assert format_range(180, 300) == "about 3–5 min"
    assert format_range(21, 22) == "about 20 s"


def test_speed_is_measured_on_real_photos(tmp_path: Path) -> None:
    tree = make_class_tree(tmp_path / "ctx", 2, 3)
    torch.manual_seed(0)
    save_student(tmp_path / "base.pt", create_student("cukd_mnv2_035", 64))
    photos = sorted(tree.rglob("*.jpg"))
    speed = measure_speed(tmp_path / "base.pt", samples=photos)
    assert speed.load_s > 0 and speed.save_s > 0 and speed.forward_s > 0
    assert speed.decode_s != DECODE_S and speed.decode_s > 0  # timed, not assumed
    (tmp_path / "broken.jpg").write_bytes(b"\xff\xd8 not a jpeg")
    fallback = measure_speed(tmp_path / "base.pt", samples=[tmp_path / "broken.jpg"])
    assert fallback.decode_s == DECODE_S  # nothing readable: the default cost


def test_small_dialog_is_wide_enough_for_its_title(qtbot) -> None:
    dlg = text_dialog(None, "Rename model", "New name:", "birds")
    qtbot.addWidget(dlg)
    dlg.show()
    title = dlg.fontMetrics().horizontalAdvance("Rename model")
    assert dlg.width() >= max(MIN_WIDTH, title + TITLE_BAR_EXTRA)
    assert dlg.minimumWidth() >= MIN_WIDTH  # the user cannot shrink it to "Rena… model"
    long = "Name of the class you are adding from this folder"
    wide = text_dialog(None, long, "Name:")
    qtbot.addWidget(wide)
    wide.show()
    assert wide.width() >= wide.fontMetrics().horizontalAdvance(long) + TITLE_BAR_EXTRA
