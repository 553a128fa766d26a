"""The pruned-teacher student: cut out of a MobileNetV2, saved, validated, distilled from."""

from __future__ import annotations

import pytest
import torch

from core.checkpoint import CheckpointError, load_student, save_student, validate_model_dict
from core.cli import main
from core.distill import DistillConfig, distill
from core.models.mobilenet_v2 import MobileNetV2
from core.models.prune import channel_importance, hidden_widths, prune_mobilenet_v2
from core.preprocess import Preprocess
from tests.models_helpers import write_images

torch.set_num_threads(1)


def _teacher() -> MobileNetV2:
    torch.manual_seed(0)
    net = MobileNetV2(num_classes=10).eval()
    # non-trivial BatchNorm statistics, so a wrong channel mapping shows
    for m in net.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.2, 0.2)
            m.running_var.uniform_(0.5, 2.0)
            m.weight.data.uniform_(0.2, 1.5)
            m.bias.data.uniform_(-0.2, 0.2)
    return net


def _images(n: int = 6, size: int = 64) -> torch.Tensor:
    g = torch.Generator().manual_seed(1)
    return torch.randint(0, 256, (n, 3, size, size), dtype=torch.uint8, generator=g)


def test_keeping_every_channel_reproduces_the_teacher_exactly() -> None:
    net, x, pre = _teacher(), _images(), Preprocess(64)
    imp = channel_importance(net, x, pre)
    student = prune_mobilenet_v2(net, hidden_widths(net, 1.0), imp, 64).eval()
    with torch.no_grad():
        torch.testing.assert_close(student(x), net.forward_features(pre.normalize(x)))


def test_pruning_keeps_the_important_channels_and_stays_close() -> None:
    net, x, pre = _teacher(), _images(), Preprocess(64)
    imp = channel_importance(net, x, pre)
    assert len(imp) == 17 and all((v >= 0).all() for v in imp)
    hidden = hidden_widths(net, 0.5)
    assert hidden[0] == 32  # the block without expansion keeps its width
    assert hidden[1:] == [w // 2 for w in hidden_widths(net, 1.0)[1:]]
    best = prune_mobilenet_v2(net, hidden, imp, 64).eval()
    # the same widths keeping the *least* important channels instead
    worst = prune_mobilenet_v2(net, hidden, [-v for v in imp], 64).eval()
    with torch.no_grad():
        ref = net.forward_features(pre.normalize(x))
        err_best = (best(x) - ref).pow(2).mean()
        err_worst = (worst(x) - ref).pow(2).mean()
    assert err_best < err_worst
    n_params = sum(p.numel() for p in best.parameters())
    assert n_params < sum(p.numel() for n, p in net.named_parameters() if "classifier" not in n)


def test_pruned_student_round_trips_through_a_model_file(tmp_path) -> None:
    net, x = _teacher(), _images()
    student = prune_mobilenet_v2(net, hidden_widths(net, 0.25),
                                 channel_importance(net, x, Preprocess(64)), 64).eval()
    path = tmp_path / "pruned.pt"
    save_student(path, student, teacher="mobilenet_v2")
    loaded, d = load_student(path)
    assert loaded.arch == "cukd_mnv2_pruned"
    assert loaded.arch_args["hidden"] == hidden_widths(net, 0.25)
    with torch.no_grad():
        torch.testing.assert_close(loaded.eval()(x), student(x))
    bad = dict(d, arch={"name": "cukd_mnv2_pruned", "args": {"hidden": [32] + [10 ** 9] * 16}})
    with pytest.raises(CheckpointError, match="out of range"):
        validate_model_dict(bad)
    short = dict(d, arch={"name": "cukd_mnv2_pruned", "args": {"hidden": [32, 16]}})
    with pytest.raises(CheckpointError, match="cannot be built"):
        validate_model_dict(short)


def test_cli_prune_then_distill_from_it(tmp_path, monkeypatch) -> None:
    from tests.test_teachers import _torchvision_style_file

    weights = tmp_path / "mnv2.pth"
    _torchvision_style_file(MobileNetV2(num_classes=1000).eval(), weights)
    photos = write_images(tmp_path / "photos", 6, size=(80, 64))
    out = tmp_path / "init.pt"
    rc = main(["prune", str(tmp_path / "photos"), "--out", str(out), "--teacher-weights",
               str(weights), "--no-verify-teacher", "--size", "64", "--keep", "0.5",
               "--keep-early", "0.25", "--early-blocks", "4", "--workers", "1"])
    assert rc == 0
    init, d = load_student(out)
    hidden = init.arch_args["hidden"]
    assert hidden[:4] == [32, 24, 32, 32]
    assert d["provenance"]["step"] == "prune"
    # distillation starts from the pruned weights, at the init's own widths
    from core.models import create_teacher

    teacher = create_teacher("mobilenet_v2", weights, verify=False, input_size=64)
    # views cached at 80 px, the student trained on them resized to its own 64 px
    cfg = DistillConfig(student="cukd_mnv2_pruned", input_size=80, student_size=64, epochs=1,
                        batch_size=4, lr=0.0, views=1, init=str(out))
    res = distill(cfg, photos, tmp_path / "kd", teacher=teacher)
    after, d = load_student(res.model_path)
    assert after.arch_args["hidden"] == hidden
    assert after.preprocess.input_size == 64
    assert d["provenance"]["config"]["student_size"] == 64
    assert torch.equal(after.state_dict()["backbone.features.2.conv.0.0.weight"],
                       init.state_dict()["backbone.features.2.conv.0.0.weight"])


def test_distill_model_resizes_views_for_a_smaller_student() -> None:
    from core.distill import _DistillModel
    net = _teacher()
    student = prune_mobilenet_v2(net, hidden_widths(net, 0.5),
                                 channel_importance(net, _images(), Preprocess(64)), 64).eval()
    model = _DistillModel(student, 1280).eval()
    x = _images(2, 80)
    small = torch.nn.functional.interpolate(x.float(), size=(64, 64), mode="bilinear",
                                            antialias=True, align_corners=False)
    with torch.no_grad():
        torch.testing.assert_close(model(x), student(small))
        assert (model(x) - student(x)).abs().max() > 1e-3
