"""Users read sentences, never developer text (issue 17, item 6): a file that is not a model,
an unexpected problem's "Details…", a truncated photo."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from PySide6.QtWidgets import QPlainTextEdit

from core.errors import user_message
from cukd_app.testing import make_test_context, open_library, show_window
from cukd_app.workers import Worker
from tests.library_helpers import make_tree, write_image

DEVELOPER_TEXT = ("weights_only", "Traceback", "torch", "Unpickl", "bytes not processed",
                  "Error:", "GLOBAL")


def _plain(text: str) -> bool:
    return not any(k.lower() in text.lower() for k in DEVELOPER_TEXT)


def test_torch_text_about_a_non_model_file_becomes_one_sentence(tmp_path: Path) -> None:
    import torch

    from core.checkpoint import CheckpointError

    jpg = write_image(tmp_path / "photo.jpg", 1)
    with pytest.raises(Exception) as raw:  # PyTorch's own error on a JPEG
        torch.load(jpg, map_location="cpu", weights_only=True)
    assert "weights_only" in str(raw.value) or "pickle" in str(raw.value).lower()
    assert user_message(raw.value) == ("This file is not a CUKD model file (it could not be "
                                       "read as one).")
    # A model-file error that carries the loader's text keeps only the sentence.
    essay = CheckpointError(f"{jpg} is not a CUKD model file: Weights only load failed. "
                            "Re-running `torch.load` with `weights_only` set to `False` will "
                            "likely succeed...\nWeightsUnpickler error: Unsupported operand")
    assert user_message(essay) == (f"{jpg} is not a CUKD model file (it could not be read as "
                                   "one).")


def test_a_photo_chosen_as_model_file_is_a_plain_sentence(qtbot, tmp_path: Path) -> None:
    jpg = write_image(tmp_path / "photo.jpg", 1)
    ctx = make_test_context(tmp_path)
    try:
        win = show_window(qtbot, ctx)
        open_library(qtbot, ctx)
        with qtbot.waitSignal(ctx.library.modelChangeEnded, timeout=60000):
            win.controller.use_model_file(jpg)
        area = win.notifications
        qtbot.waitUntil(lambda: area.current is not None and area.current.level == "error")
        text = area.text.text()
        assert f"{jpg} is not a CUKD model file (it" in text and text.endswith(".")
        assert _plain(text) and not area.details_btn.isVisible()
    finally:
        ctx.close()


def test_a_photo_chosen_as_first_model_is_one_sentence_and_not_remembered(
        qtbot, tmp_path: Path) -> None:
    jpg = write_image(tmp_path / "photo.jpg", 1)
    ctx = make_test_context(tmp_path, no_model=True)
    try:
        win = show_window(qtbot, ctx)
        open_library(qtbot, ctx)
        with qtbot.waitSignal(ctx.library.opened, timeout=60000) as opened:
            win.controller.use_model_file(jpg)
        assert opened.args[0].encoder is None
        qtbot.wait(300)  # status reads that raced the reopening would report here
        said = [n for n in ctx.notifier.history if "photo.jpg" in n.text
                and n.level != "info"]
        assert len(said) == 1, [n.text for n in said]  # one message, not two
        assert "is not a CUKD model file" in said[0].text and _plain(said[0].text)
        assert "Choose model file" in said[0].text  # what to do
        assert not [n for n in ctx.notifier.history if "closed database" in n.text]
        assert ctx.settings.model_path is None  # a file that failed is not kept for next time
    finally:
        ctx.close()


def test_details_of_an_unexpected_problem_explain_in_words(qtbot, tmp_path: Path,
                                                           caplog) -> None:
    ctx = make_test_context(tmp_path)
    try:
        win = show_window(qtbot, ctx)
        w = Worker("Sorting the results", lambda: [][1])
        w.signals.error.connect(ctx.notifier.error)
        with caplog.at_level(logging.ERROR), qtbot.waitSignal(ctx.notifier.posted,
                                                              timeout=5000):
            w.run()
        area = win.notifications
        qtbot.waitUntil(lambda: area.current is not None)
        assert area.text.text() == "Sorting the results failed because of an unexpected problem."
        assert area.details_btn.isVisible()
        area.show_details()
        details = area._dialog.findChild(QPlainTextEdit).toPlainText()
        assert _plain(details) and "IndexError" not in details
        assert "What happened" in details and "What to do" in details
        assert str(ctx.paths.log_file) in details  # where the technical details are
        assert "Traceback" in caplog.text and "IndexError" in caplog.text  # in the log only
        area._dialog.close()
    finally:
        ctx.close()


def test_a_truncated_photo_is_described_in_plain_words(qtbot, tmp_path: Path) -> None:
    photos = tmp_path / "photos"
    make_tree(photos, 3)
    data = write_image(tmp_path / "whole.jpg", 7, size=(800, 600)).read_bytes()
    (photos / "cut.jpg").write_bytes(data[:len(data) - 2000])
    query = tmp_path / "cut-query.jpg"
    query.write_bytes(data[:len(data) - 2000])
    ctx = make_test_context(tmp_path)
    try:
        win = show_window(qtbot, ctx)
        open_library(qtbot, ctx, [photos])
        # The folder list: a label and a sentence, not the decoder's text.
        panel = win.library_panel
        qtbot.waitUntil(lambda: panel.tree.topLevelItemCount() == 1
                        and panel.tree.topLevelItem(0).childCount() == 1, timeout=5000)
        row = panel.tree.topLevelItem(0).child(0)
        assert row.text(0) == "cut.jpg" and row.text(1) == "Incomplete file"
        assert "The image file is incomplete (it was cut off)." in row.toolTip(1)
        assert _plain(row.toolTip(0)) and _plain(row.toolTip(1))
        # The scan's warning and its Details.
        warned = [n for n in ctx.notifier.history if n.level == "warning"]
        assert warned and "could not be indexed" in warned[-1].text
        assert f"{photos / 'cut.jpg'}: The image file is incomplete (it was cut off)." in \
            warned[-1].detail and _plain(warned[-1].detail)
        # Searching with it.
        with qtbot.waitSignal(ctx.search.failed, timeout=10000):
            win.controller.search_path(str(query))
        area = win.notifications
        qtbot.waitUntil(lambda: area.current is not None and area.current.level == "error")
        assert "The image file is incomplete (it was cut off)." in area.text.text()
        assert _plain(area.text.text())
        qtbot.waitUntil(lambda: "incomplete" in win.query_panel.caption.text())
        assert ("<i>Cannot read this image. The image file is incomplete (it was cut off)."
                "</i>") in win.query_panel.caption.text()
    finally:
        ctx.close()
