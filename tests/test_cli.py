"""The ``cukd`` command line: models table and distillation."""

from __future__ import annotations

import io
import json

import torch

from core.checkpoint import load_student
from core.cli import ProgressBar, main
from core.models import list_students
from core.models.mobilenet_v2 import MobileNetV2
from tests.models_helpers import write_images


def test_models_lists_every_model_with_counted_macs(capsys) -> None:
    assert main(["models", "--size", "64", "--json"]) == 0
    rows = {r["name"]: r for r in json.loads(capsys.readouterr().out)}
    for name in list_students():
        assert rows[name]["role"] == "student" and rows[name]["macs"] > 0
    assert {"mobilenet_v2", "resnet50", "alexnet", "efficientnet_lite0"} <= set(rows)
    # Counted, not hard-coded: MACs scale with the input area.
    assert main(["models", "--size", "128", "--json"]) == 0
    big = {r["name"]: r for r in json.loads(capsys.readouterr().out)}
    ratio = big["cukd_mnv2_035"]["macs"] / rows["cukd_mnv2_035"]["macs"]
    assert 3.5 < ratio < 4.5


def test_models_table_is_readable(capsys) -> None:
    assert main(["models", "--size", "96"]) == 0
    out = capsys.readouterr().out
    assert "cukd_v1" in out and "MACs" in out


def test_distill_command_writes_a_model(tmp_path, capsys) -> None:
    write_images(tmp_path / "imgs", 12)
    weights = tmp_path / "mnv2.pth"
    torch.save(MobileNetV2().state_dict(), weights)
    rc = main(["distill", str(tmp_path / "imgs"), "--out", str(tmp_path / "run"),
               "--teacher", "mobilenet_v2", "--teacher-weights", str(weights),
               "--no-verify-teacher", "--size", "64", "--epochs", "1", "--views", "1",
               "--batch-size", "6"])
    captured = capsys.readouterr()
    assert rc == 0, captured.err
    assert (tmp_path / "run" / "student.pt").exists()
    assert "model written to" in captured.out
    assert "ETA" in captured.err  # progress bar goes to stderr


def test_distill_command_finishes_a_student_with_a_larger_teacher_input(tmp_path,
                                                                       capsys) -> None:
    write_images(tmp_path / "imgs", 12)
    weights = tmp_path / "mnv2.pth"
    torch.save(MobileNetV2().state_dict(), weights)
    common = ["--teacher", "mobilenet_v2", "--teacher-weights", str(weights),
              "--no-verify-teacher", "--size", "64", "--epochs", "1", "--batch-size", "6"]
    assert main(["distill", str(tmp_path / "imgs"), "--out", str(tmp_path / "a"), *common,
                 "--views", "1"]) == 0
    rc = main(["distill", str(tmp_path / "imgs"), "--out", str(tmp_path / "b"), *common,
               "--views", "2", "--init", str(tmp_path / "a" / "student.pt"),
               "--teacher-size", "96", "--augment", "light", "--warmup", "0"])
    assert rc == 0, capsys.readouterr().err
    _, d = load_student(tmp_path / "b" / "student.pt")
    cfg = d["provenance"]["config"]
    assert cfg["teacher_size"] == 96 and cfg["input_size"] == 64
    assert cfg["init"] == str(tmp_path / "a" / "student.pt")
    assert cfg["augment"]["rotate"] == 0.0 and cfg["augment"]["scale"][0] == 0.6
    assert cfg["warmup_epochs"] == 0.0


def test_distill_command_reports_missing_teacher_clearly(tmp_path, capsys) -> None:
    write_images(tmp_path / "imgs", 2)
    rc = main(["distill", str(tmp_path / "imgs"), "--out", str(tmp_path / "run"),
               "--teacher", "resnet50"])
    assert rc == 2
    assert "--teacher-weights" in capsys.readouterr().err


class _Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_bar_redraws_on_a_terminal_and_logs_plain_lines_elsewhere() -> None:
    log = io.StringIO()
    bar = ProgressBar(log, log_interval=3600)
    for i in range(1, 501):
        bar.update("features", i, 500, 100.0, (500 - i) / 100)
    bar.update("train", 1, 10, 5.0, None)
    bar.close()
    lines = log.getvalue().splitlines()
    # One line at the start, one at the end of the phase, one for the next phase; no redraws.
    assert "\r" not in log.getvalue() and len(lines) == 3
    assert lines[0].startswith("features") and "1/500" in lines[0]
    assert "500/500" in lines[1] and lines[2].startswith("train")
    tty = _Tty()
    bar = ProgressBar(tty, min_interval=0.0)
    for i in range(1, 4):
        bar.update("features", i, 3, 10.0, 0.0)
    bar.close()
    assert tty.getvalue().count("\r") == 3 and tty.getvalue().endswith("\n")
