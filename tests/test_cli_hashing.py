"""``cukd finetune | itq | evaluate | encode`` through the parser of :mod:`core.cli_hashing`."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest
import torch

from core.checkpoint import load_model_file, save_student
from core.cli_hashing import add_commands
from core.models import create_student
from tests.test_finetune import make_class_tree


def _run(*argv: str) -> int:
    p = argparse.ArgumentParser(prog="cukd")
    add_commands(p.add_subparsers(dest="command", required=True))
    a = p.parse_args([str(x) for x in argv])
    return a.func(a)


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    d = tmp_path_factory.mktemp("cli")
    tree = make_class_tree(d / "ctx", per_class=8)
    torch.manual_seed(0)
    student_file = d / "student.pt"
    save_student(student_file, create_student("cukd_mnv2_035", 64))
    return tree, student_file


def test_finetune_evaluate_encode(setup: tuple[Path, Path], tmp_path: Path,
                                  capsys: pytest.CaptureFixture[str]) -> None:
    tree, student_file = setup
    out = tmp_path / "ft"
    assert _run("finetune", "--from-folder", tree, "--model", student_file, "--out", out,
                "--bits", 16, "--preset", "fast", "--epochs", 2, "--batch-size", 8,
                "--views", 1, "--embed-dim", 8) == 0
    text = capsys.readouterr().out
    assert "epoch 2:" in text and "model written to" in text
    model = out / "model.pt"
    prov = load_model_file(model)["provenance"]
    assert prov["preset"] == "fast" and prov["train_mode"] == "head" and prov["bits"] == 16

    js = tmp_path / "eval.json"
    assert _run("evaluate", "--model", model, "--from-folder", tree, "--json", js,
                "--pr-curve", tmp_path / "pr.png") == 0
    text = capsys.readouterr().out
    assert "mAP@all" in text and "6 queries, 18 database images" in text
    rows = json.loads(js.read_text())["rows"]
    assert len(rows) == 1 and 0.0 <= rows[0]["map"] <= 1.0 and rows[0]["n_bits"] == 16

    img = next((tree / "class_0").iterdir())
    assert _run("encode", "--model", model, img, tree / "class_1") == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 9 and len(lines[0].split()[0]) == 4  # 16 bits = 4 hex digits
    assert _run("encode", "--model", model, "--json", "--embeddings", img) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["n_bits"] == 16 and len(data["codes"][0]["embedding"]) == 8


def test_itq_and_list_files(setup: tuple[Path, Path], tmp_path: Path,
                            capsys: pytest.CaptureFixture[str]) -> None:
    tree, student_file = setup
    out = tmp_path / "itq.pt"
    assert _run("itq", "--model", student_file, "--images", tree, "--out", out,
                "--bits", 16, "--embed-dim", 4) == 0
    assert "model written to" in capsys.readouterr().out
    assert load_model_file(out)["hash_head"]["kind"] == "itq"

    paths = sorted(tree.rglob("*.jpg"))
    lines = [f"{p.relative_to(tree)} {int(p.parent.name[-1])}" for p in paths]
    (tree / "query.txt").write_text("\n".join(lines[::4]) + "\n")
    (tree / "db.txt").write_text("\n".join(lines) + "\n")
    assert _run("evaluate", "--model", out, "--model", out, "--query", tree / "query.txt",
                "--database", tree / "db.txt", "--map-k", 5) == 0
    text = capsys.readouterr().out
    assert "mAP@5" in text and text.count("itq.pt") == 2


def test_finetune_requires_labels(setup: tuple[Path, Path], tmp_path: Path) -> None:
    _, student_file = setup
    flat = tmp_path / "flat"
    flat.mkdir()
    with pytest.raises(SystemExit):
        _run("finetune", "--model", student_file, "--out", tmp_path / "o")  # no data source
