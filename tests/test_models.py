"""Students, teachers' architectures, complexity counting and model files."""

from __future__ import annotations

import math
import os

import pytest
import torch
from torch import nn

from core.checkpoint import (
    FORMAT_VERSION,
    CheckpointError,
    load_model_file,
    load_student,
    save_student,
)
from core.models import count_macs, count_params, create_student, list_students, measure
from core.models.alexnet import AlexNet
from core.models.mobilenet_v2 import MobileNetV2
from core.models.resnet import ResNet50

torch.set_num_threads(1)


@pytest.mark.parametrize("name", list_students())
@pytest.mark.parametrize("size", [64, 96])
def test_every_student_shapes_and_finite(name: str, size: int) -> None:
    s = create_student(name, size).eval()
    x = torch.randint(0, 256, (2, 3, size, size), dtype=torch.uint8)
    with torch.no_grad():
        y = s(x)
    assert y.shape == (2, s.feature_dim)
    assert torch.isfinite(y).all()


@pytest.mark.parametrize("name", list_students())
def test_student_checkpoint_round_trip(tmp_path, name: str) -> None:
    s = create_student(name, 64).eval()
    path = tmp_path / "m.pt"
    save_student(path, s, teacher="tiny", provenance={"epochs": 3, "seed": 7})
    s2, d = load_student(path)
    x = torch.randint(0, 256, (2, 3, 64, 64), dtype=torch.uint8)
    with torch.no_grad():
        torch.testing.assert_close(s(x), s2(x))
    assert d["format_version"] == FORMAT_VERSION
    assert d["arch"]["name"] == name
    assert d["teacher"] == "tiny"
    assert d["provenance"]["epochs"] == 3 and d["provenance"]["seed"] == 7
    assert "git_commit" in d["provenance"] and "created" in d["provenance"]
    assert s2.preprocess.input_size == 64
    if os.name == "posix":  # readable by others, like any data file (not mkstemp's 0600)
        assert path.stat().st_mode & 0o777 == 0o644


def test_students_reject_tiny_inputs() -> None:
    with pytest.raises(ValueError, match="64"):
        create_student("cukd_mnv2_035", 48)


def test_paper_student_v1_matches_paper_size() -> None:
    # arXiv:2207.09070: v1 ≈ 3.44 M params with a 64-bit head, ≈ 1.09 G MACs at 224 px.
    s = create_student("cukd_v1", 224)
    assert s.feature_dim == 2048
    net = nn.Sequential(s.backbone, nn.Linear(2048, 64))
    c = measure(net, 224)
    assert math.isclose(c.params, 3.44e6, rel_tol=0.01)
    assert math.isclose(c.macs, 1.09e9, rel_tol=0.01)
    assert create_student("cukd_v2", 224).feature_dim == 4096


def test_efficient_student_is_under_a_quarter_of_teacher_macs() -> None:
    for size in (96, 128, 224):
        teacher = count_macs(MobileNetV2(num_classes=0), size)
        student = count_macs(create_student("cukd_mnv2_035", size).backbone, size)
        assert student <= teacher / 4


def test_count_macs_against_hand_computation() -> None:
    net = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.Conv2d(8, 8, 3, stride=2, padding=1,
                                                                  groups=8),
                        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 5))
    expected = 32 * 32 * 8 * 3 * 9 + 16 * 16 * 8 * 1 * 9 + 8 * 5
    assert count_macs(net, 32) == expected
    assert count_params(net) == (8 * 27 + 8) + (8 * 9 + 8) + (8 * 5 + 5)
    net.train()
    count_macs(net, 32)
    assert net.training, "count_macs must restore the training mode"


def test_torchvision_key_layouts() -> None:
    mnv2 = MobileNetV2().state_dict()
    assert {"features.0.0.weight", "features.1.conv.0.0.weight", "features.2.conv.3.weight",
            "features.18.1.running_var", "classifier.1.weight"} <= set(mnv2)
    assert len([k for k in mnv2 if not k.endswith("num_batches_tracked")]) == 262
    r50 = ResNet50().state_dict()
    assert {"conv1.weight", "layer1.0.downsample.0.weight", "layer4.2.bn3.bias",
            "fc.weight"} <= set(r50)
    assert len([k for k in r50 if not k.endswith("num_batches_tracked")]) == 267
    alex = AlexNet().state_dict()
    assert set(alex) == {f"features.{i}.{p}" for i in (0, 3, 6, 8, 10) for p in ("weight", "bias")
                         } | {f"classifier.{i}.{p}" for i in (1, 4, 6) for p in ("weight", "bias")}


def test_model_file_rejects_foreign_and_future_files(tmp_path) -> None:
    bad = tmp_path / "x.pt"
    torch.save({"weights": torch.zeros(2)}, bad)
    with pytest.raises(CheckpointError, match="not a CUKD model"):
        load_model_file(bad)
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a zip at all")
    with pytest.raises(CheckpointError, match="is not a CUKD model file"):
        load_model_file(junk)
    s = create_student("cukd_mnv2_035", 64)
    good = tmp_path / "m.pt"
    save_student(good, s)
    d = torch.load(good, weights_only=True)
    d["format_version"] = FORMAT_VERSION + 1
    torch.save(d, good)
    with pytest.raises(CheckpointError, match="update the program"):
        load_model_file(good)


def test_model_file_refuses_pickled_code(tmp_path) -> None:
    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    p = tmp_path / "evil.pt"
    torch.save({"format": "cukd-model", "payload": Evil()}, p)
    with pytest.raises(CheckpointError):
        load_model_file(p)


def test_features_only_complexity_excludes_the_classifier() -> None:
    full = measure(MobileNetV2(), 128)
    feats = measure(MobileNetV2(), 128, features_only=True)
    assert full.params - feats.params == 1280 * 1000 + 1000
    assert full.macs - feats.macs == 1280 * 1000
    assert feats.params == count_params(MobileNetV2(num_classes=0))
