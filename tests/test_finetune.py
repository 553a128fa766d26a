"""Step 2 fine-tuning (CSQ / DCH, head / last stages / full), resume, stop, and the ITQ head.

The base model is a tiny student distilled for a few epochs from a colour "teacher" on
generated solid-colour classes, with its BatchNorm statistics re-estimated, so that its
features separate the classes a little (a random student's barely do) and eval mode is sane.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from core.checkpoint import load_model_file, save_student
from core.data import ImageList, list_images
from core.distill import DistillConfig, distill
from core.encoder import Encoder
from core.finetune import (
    PRESETS,
    FinetuneConfig,
    evaluate_model,
    finetune,
    fit_itq_head,
    split_train_val,
    trainable_blocks,
)
from core.library.search import calibrate_near_duplicate_cosine
from core.models import create_student
from core.preprocess import to_tensor

COLOURS = [(230, 30, 30), (30, 200, 40), (30, 50, 230), (240, 220, 30)]
SIZE = 64


def make_class_tree(root: Path, n_classes: int = 3, per_class: int = 12, seed: int = 0) -> Path:
    """``root/class_<c>/img_<i>.jpg``: noisy solid colours, one hue per class, varied widths."""
    rng = np.random.default_rng(seed)
    for c in range(n_classes):
        d = root / f"class_{c}"
        d.mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            base = np.array(COLOURS[c]) + rng.integers(-25, 25, 3)
            w = SIZE + int(rng.integers(0, 24))
            arr = np.clip(base + rng.normal(0, 20, (SIZE, w, 3)), 0, 255).astype(np.uint8)
            Image.fromarray(arr).save(d / f"img_{i}.jpg", quality=90)
    return root


class ColourTeacher(nn.Module):
    """A stand-in teacher: 4x4 average colours (48-d) of a uint8 batch."""

    feature_dim = 48
    name = "colour4x4"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return nn.functional.adaptive_avg_pool2d(x.float() / 255.0, 4).flatten(1)


def make_base_model(tree: Path, out: Path) -> Path:
    """Distil a tiny student briefly, re-estimate BatchNorm statistics, save it."""
    images = list_images(tree)
    torch.manual_seed(0)
    res = distill(DistillConfig(input_size=SIZE, epochs=4, batch_size=16, views=2, lr=1e-2,
                                decode_threads=1), images, out / "distill",
                  teacher=ColourTeacher())
    from core.checkpoint import load_student

    student, _ = load_student(res.model_path)
    x = to_tensor([Image.open(p).convert("RGB").resize((SIZE, SIZE)) for p in images.paths])
    for m in student.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.reset_running_stats()
            m.momentum = None  # cumulative average over the one calibration pass
    student.train()
    with torch.no_grad():
        student(x)
    student.eval()
    path = out / "base.pt"
    save_student(path, student, teacher="colour4x4", provenance={"step": "distill"})
    return path


@pytest.fixture(scope="module")
def tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_class_tree(tmp_path_factory.mktemp("ctx"))


@pytest.fixture(scope="module")
def base_model(tree: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_base_model(tree, tmp_path_factory.mktemp("base"))


def _cfg(**kw) -> FinetuneConfig:
    args = {"n_bits": 16, "epochs": 6, "batch_size": 16, "views": 2, "patience": 0,
            "embed_dim": 16, "decode_threads": 1}
    return FinetuneConfig(**{**args, **kw})


# --------------------------------------------------------------------------- split, config


def test_split_is_stratified_and_seeded(tree: Path) -> None:
    images = list_images(tree)
    tr, va = split_train_val(images, 0.25, seed=3)
    assert len(tr) + len(va) == len(images)
    assert set(tr.paths).isdisjoint(va.paths)
    assert np.bincount(va.labels).tolist() == [3, 3, 3]
    assert split_train_val(images, 0.25, seed=3)[1].paths == va.paths
    assert split_train_val(images, 0.25, seed=4)[1].paths != va.paths
    assert va.classes == images.classes


def test_config_validation_and_presets() -> None:
    with pytest.raises(ValueError):
        FinetuneConfig(loss="bce")
    with pytest.raises(ValueError):
        FinetuneConfig(n_bits=12)
    with pytest.raises(ValueError):
        FinetuneConfig(train_mode="some")
    assert FinetuneConfig.from_preset("fast").train_mode == "head"
    assert FinetuneConfig.from_preset("balanced", n_bits=32).train_mode == "last_stages"
    assert FinetuneConfig.from_preset("thorough").train_mode == "full"
    assert set(PRESETS) == {"fast", "balanced", "thorough"}
    with pytest.raises(ValueError):
        FinetuneConfig.from_preset("instant")


def test_trainable_blocks_cover_both_student_families() -> None:
    assert len(trainable_blocks(create_student("cukd_mnv2_035", 64))) == 19
    assert len(trainable_blocks(create_student("cukd_v1", 64))) == 5


# --------------------------------------------------------------------------- training


@pytest.mark.parametrize("mode,loss", [("head", "csq"), ("head", "dch"),
                                       ("last_stages", "csq"), ("last_stages", "dch")])
def test_finetune_learns_separable_classes(tree: Path, base_model: Path, tmp_path: Path,
                                           mode: str, loss: str) -> None:
    images = list_images(tree)
    train, val = split_train_val(images, 0.25, seed=0)
    seen = []
    res = finetune(_cfg(loss=loss, train_mode=mode), base_model, train, val, tmp_path,
                   on_progress=seen.append, data_description="ctx", preset="test")
    assert res.model_path is not None and res.model_path.exists()
    assert not res.stopped and res.epochs_done == 6
    # chance (random ranking) mAP is about 1/3 for 3 balanced classes
    assert res.best_val_map is not None and res.best_val_map > 0.7
    assert res.best_val_map >= res.history[0]["val_map"]
    assert {p.phase for p in seen} == {"features", "train"}

    d = load_model_file(res.model_path)
    hh = d["hash_head"]
    assert hh["kind"] == "linear" and hh["n_bits"] == 16 and hh["loss"] == loss
    assert (hh["centres"] is not None) == (loss == "csq")
    if loss == "csq":
        assert hh["centres"].shape == (3, 16)
    prov = d["provenance"]
    assert prov["classes"] == ["class_0", "class_1", "class_2"]
    assert prov["method"] == loss and prov["bits"] == 16 and prov["preset"] == "test"
    assert prov["data"] == "ctx" and prov["metrics"]["map"] == pytest.approx(res.best_val_map)
    assert d["teacher"] == "colour4x4"

    # the saved model (standardisation folded into the layer) reproduces validation mAP
    enc = Encoder.from_file(res.model_path)
    ev = evaluate_model(enc, val, train)
    assert ev is not None and ev.map == pytest.approx(res.best_val_map, abs=0.1)
    # its near-duplicate cosine is calibrated on the training photos' own embeddings
    emb = enc.encode_paths(train.paths).embeddings
    assert enc.near_duplicate_cosine == pytest.approx(
        calibrate_near_duplicate_cosine(emb), abs=1e-3)


def test_full_mode_and_scratch_student_run(tree: Path, tmp_path: Path) -> None:
    images = list_images(tree)
    torch.manual_seed(0)
    student = create_student("cukd_mnv2_035", SIZE)
    before = {k: v.clone() for k, v in student.state_dict().items()}
    res = finetune(_cfg(train_mode="full", epochs=2), student, images, None, tmp_path)
    assert res.model_path is not None and res.epochs_done == 2 and res.n_val == 6
    after = load_model_file(res.model_path)["state_dict"]
    assert any(not torch.equal(before[k], after[k]) for k in before)
    # the caller's student is not modified
    assert all(torch.equal(before[k], v) for k, v in student.state_dict().items())


def test_early_stopping_keeps_best_epoch(tree: Path, base_model: Path, tmp_path: Path) -> None:
    train, val = split_train_val(list_images(tree), 0.25)
    res = finetune(_cfg(epochs=40, patience=2, lr=3e-3), base_model, train, val, tmp_path)
    maps = [h["val_map"] for h in res.history]
    assert res.early_stopped and res.epochs_done < 40
    assert res.best_val_map == pytest.approx(max(maps))
    assert maps[res.best_epoch - 1] == pytest.approx(max(maps))


def test_stop_then_resume_matches_uninterrupted(tree: Path, base_model: Path,
                                                tmp_path: Path) -> None:
    train, val = split_train_val(list_images(tree), 0.25)
    cfg = _cfg(epochs=4)
    ref = finetune(cfg, base_model, train, val, tmp_path / "ref")

    calls = {"n": 0}

    def stop_after_5_train_steps() -> bool:
        return calls["n"] >= 5

    def count(p) -> None:
        if p.phase == "train":
            calls["n"] += 1

    out = tmp_path / "run"
    part = finetune(cfg, base_model, train, val, out, on_progress=count,
                    should_stop=stop_after_5_train_steps)
    assert part.stopped and part.model_path is None and (out / "last.pt").exists()
    done = finetune(cfg, base_model, train, val, out)
    assert not done.stopped and done.epochs_done == 4
    assert [h["loss"] for h in done.history] == pytest.approx([h["loss"] for h in ref.history],
                                                               rel=1e-4)
    a = load_model_file(ref.model_path)["hash_head"]["state"]
    b = load_model_file(done.model_path)["hash_head"]["state"]
    for k in a:
        torch.testing.assert_close(a[k], b[k], atol=1e-5, rtol=1e-4)


def test_stop_during_feature_caching(tree: Path, base_model: Path, tmp_path: Path) -> None:
    res = finetune(_cfg(), base_model, list_images(tree), None, tmp_path,
                   should_stop=lambda: True)
    assert res.stopped and res.model_path is None and res.epochs_done == 0


def test_bad_inputs(tree: Path, base_model: Path, tmp_path: Path) -> None:
    images = list_images(tree)
    one_class = images.subset([i for i, lab in enumerate(images.labels) if lab == 0])
    with pytest.raises(ValueError, match="2 classes"):
        finetune(_cfg(), base_model, one_class, None, tmp_path / "a")
    # an unreadable training image is skipped and reported
    bad_tree = tmp_path / "bad"
    shutil.copytree(tree, bad_tree)
    (bad_tree / "class_1" / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not a jpeg")
    res = finetune(_cfg(epochs=1), base_model, list_images(bad_tree), None, tmp_path / "b")
    assert res.model_path is not None
    assert len(res.failed_images) == 1 and "broken.jpg" in res.failed_images[0]


# --------------------------------------------------------------------------- ITQ


def test_fit_itq_head(tree: Path, base_model: Path, tmp_path: Path) -> None:
    images = list_images(tree, labelled=False)
    out = tmp_path / "itq.pt"
    res = fit_itq_head(base_model, images, out, n_bits=32, embed_dim=8, threads=1)
    assert res.model_path == out and res.n_images == len(images) and res.failed_images == []
    d = load_model_file(out)
    assert d["hash_head"]["kind"] == "itq" and d["hash_head"]["n_bits"] == 32
    assert d["provenance"]["step"] == "itq"
    enc = Encoder.from_file(out)
    assert enc.n_bits == 32 and enc.embed_dim == 8
    encoded = enc.encode_paths(images.paths)
    codes = encoded.codes
    # near-duplicate cosine calibrated on the fitting photos, within the clip range
    assert d["hash_head"]["near_duplicate_cosine"] == enc.near_duplicate_cosine
    assert enc.near_duplicate_cosine == pytest.approx(
        calibrate_near_duplicate_cosine(encoded.embeddings), abs=1e-3)
    assert 0.95 <= enc.near_duplicate_cosine <= 0.99
    bits = np.unpackbits(codes, axis=1)
    # PCA-ITQ bits are roughly balanced on the data they were fitted on
    assert 0.2 < bits.mean() < 0.8
    # label-free codes still group the colour classes above chance
    labelled = list_images(tree)
    ev = evaluate_model(enc, labelled, labelled)
    assert ev is not None and ev.map > 0.45


def test_fit_itq_head_stop(tree: Path, base_model: Path, tmp_path: Path) -> None:
    res = fit_itq_head(base_model, ImageList(tuple(list_images(tree).paths), (-1,) * 36),
                       tmp_path / "x.pt", n_bits=16, batch_size=8, should_stop=lambda: True)
    assert res.model_path is None and not (tmp_path / "x.pt").exists()
