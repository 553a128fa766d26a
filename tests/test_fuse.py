"""BatchNorm folding for inference."""

from __future__ import annotations

import torch
from torch import nn

from core.models import create_student
from core.models.fuse import fold_batchnorm
from tests.models_helpers import CountingTeacher


def _trained_bn_stats(model: nn.Module) -> None:
    """Non-trivial running statistics and affine parameters in every BatchNorm."""
    g = torch.Generator().manual_seed(0)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            n = m.num_features
            m.running_mean.copy_(torch.randn(n, generator=g) * 0.5)
            m.running_var.copy_(torch.rand(n, generator=g) + 0.5)
            m.weight.data.copy_(torch.rand(n, generator=g) + 0.5)
            m.bias.data.copy_(torch.randn(n, generator=g) * 0.2)


def test_folded_student_and_teacher_give_the_same_features() -> None:
    x = torch.randint(0, 256, (4, 3, 64, 64), dtype=torch.uint8)
    for model in (create_student("cukd_mnv2_035t", 64), CountingTeacher()):
        _trained_bn_stats(model)
        model.eval()
        folded = fold_batchnorm(model)
        assert not any(isinstance(m, nn.BatchNorm2d) for m in folded.modules())
        assert any(isinstance(m, nn.BatchNorm2d) for m in model.modules())  # a copy
        with torch.no_grad():
            torch.testing.assert_close(folded(x), model(x), rtol=1e-4, atol=1e-4)


def test_only_conv_then_batchnorm_pairs_are_folded() -> None:
    seq = nn.Sequential(nn.BatchNorm2d(3), nn.Conv2d(3, 4, 1), nn.ReLU(), nn.BatchNorm2d(4))
    _trained_bn_stats(seq)
    folded = fold_batchnorm(seq)
    kinds = [type(m) for m in folded]
    assert kinds == [nn.BatchNorm2d, nn.Conv2d, nn.ReLU, nn.BatchNorm2d]
    seq2 = nn.Sequential(nn.Conv2d(3, 4, 3, bias=True), nn.BatchNorm2d(4))
    _trained_bn_stats(seq2)
    seq2.eval()
    x = torch.randn(2, 3, 8, 8)
    with torch.no_grad():
        ref = seq2(x)
        fold_batchnorm(seq2, inplace=True)
        assert isinstance(seq2[1], nn.Identity)
        torch.testing.assert_close(seq2(x), ref, rtol=1e-4, atol=1e-5)
