"""DCHLoss (Cao et al., CVPR 2018) against a plain loop-based reference computation."""

from __future__ import annotations

import math

import pytest
import torch

from core.losses import DCHLoss


def reference_dch(
    u: torch.Tensor,
    y: torch.Tensor,
    gamma: float = 20.0,
    lambda_q: float = 0.1,
    normed: bool = True,
    max_cos: float = 0.99,
) -> float:
    """DCH eq. 7 written out pair by pair (self pairs excluded), in float64 Python."""
    u_l = u.double().tolist()
    y_l = y.tolist()
    b, k = len(u_l), len(u_l[0])
    d_min = k / 2 * (1 - max_cos)

    def dist(a: list[float], c: list[float]) -> float:
        if normed:
            na = math.sqrt(sum(x * x for x in a))
            nc = math.sqrt(sum(x * x for x in c))
            cos = min(sum(x * z for x, z in zip(a, c, strict=True)) / (na * nc), max_cos)
            return k / 2 * (1 - cos)
        return max(sum((x - z) ** 2 for x, z in zip(a, c, strict=True)) / 4, d_min)

    pairs = []
    for i in range(b):
        for j in range(b):
            if i != j:
                sim = any(p > 0 and q > 0 for p, q in zip(y_l[i], y_l[j], strict=True))
                pairs.append((i, j, sim))
    n_sim = sum(1 for *_, s in pairs if s)
    n_dis = len(pairs) - n_sim
    pair_loss = 0.0
    for i, j, sim in pairs:
        if n_sim and n_dis:
            w = len(pairs) / n_sim if sim else len(pairs) / n_dis
        else:
            w = 1.0
        d = dist(u_l[i], u_l[j])
        # DCH eq. 8 as written in the paper: s log(d / gamma) + log(1 + gamma / d)
        pair_loss += w * ((1.0 if sim else 0.0) * math.log(d / gamma) + math.log(1 + gamma / d))
    pair_loss = pair_loss / len(pairs) if pairs else 0.0
    quant = sum(math.log(1 + dist([abs(x) for x in row], [1.0] * k) / gamma) for row in u_l) / b
    return pair_loss + lambda_q * quant


def _batch(b: int, k: int, n_classes: int, multi: bool, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    u = torch.randn(b, k, generator=g)
    if multi:
        y = (torch.rand(b, n_classes, generator=g) < 0.3).float()
    else:
        y = torch.nn.functional.one_hot(
            torch.randint(n_classes, (b,), generator=g), n_classes
        ).float()
    return u, y


@pytest.mark.parametrize("multi", [False, True])
@pytest.mark.parametrize("normed", [True, False])
def test_matches_reference(multi: bool, normed: bool) -> None:
    u, y = _batch(9, 16, 4, multi)
    loss = DCHLoss(16, gamma=20.0, lambda_q=0.1, normed=normed)(u, y)
    assert loss.dim() == 0
    assert loss.item() == pytest.approx(reference_dch(u, y, normed=normed), abs=1e-5, rel=1e-5)


def test_other_hyper_parameters_and_one_pair_kind() -> None:
    u, _ = _batch(6, 32, 3, False, seed=3)
    y = torch.ones(6, 1)  # all pairs similar: no reweighting
    loss = DCHLoss(32, gamma=5.0, lambda_q=0.5)(u, y)
    assert loss.item() == pytest.approx(reference_dch(u, y, 5.0, 0.5), abs=1e-5, rel=1e-5)
    y = torch.eye(6)  # all pairs dissimilar
    loss = DCHLoss(32, gamma=5.0, lambda_q=0.5)(u, y)
    assert loss.item() == pytest.approx(reference_dch(u, y, 5.0, 0.5), abs=1e-5, rel=1e-5)


def test_any_batch_size_and_finite_gradients() -> None:
    loss_fn = DCHLoss(16)
    for b in (1, 2, 5, 13):
        u, y = _batch(b, 16, 3, True, seed=b)
        u.requires_grad_(True)
        loss = loss_fn(u, y)
        loss.backward()
        assert torch.isfinite(loss)
        assert torch.isfinite(u.grad).all()
        assert loss.item() == pytest.approx(reference_dch(u.detach(), y), abs=1e-5, rel=1e-5)


def test_degenerate_inputs_stay_finite() -> None:
    u = torch.zeros(4, 8)
    u[1] = 1.0
    u[2] = 1.0  # identical codes, dissimilar labels: d hits the clamp
    u.requires_grad_(True)
    y = torch.eye(4)
    loss = DCHLoss(8)(u, y)
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(u.grad).all()


def test_training_pulls_similar_pairs_together() -> None:
    torch.manual_seed(0)
    y = torch.nn.functional.one_hot(torch.arange(8) % 2, 2).float()
    u = torch.randn(8, 16, requires_grad=True)
    loss_fn = DCHLoss(16)
    opt = torch.optim.Adam([u], lr=0.05)
    first = loss_fn(u, y).item()
    for _ in range(100):
        opt.zero_grad()
        loss = loss_fn(u, y)
        loss.backward()
        opt.step()
    assert loss.item() < first
    codes = torch.sign(u.detach())
    ham = (16 - codes @ codes.t()) / 2
    same = y @ y.t() > 0
    assert ham[same].mean() < ham[~same].mean()


def test_bad_shapes_raise() -> None:
    loss_fn = DCHLoss(16)
    u, y = _batch(4, 16, 3, False)
    with pytest.raises(ValueError, match="n_bits=16"):
        loss_fn(torch.randn(4, 8), y)
    with pytest.raises(ValueError, match=r"shape \[B, n_bits"):
        loss_fn(torch.randn(16), y)
    with pytest.raises(ValueError, match="batch size 4"):
        loss_fn(u, y[:3])
    with pytest.raises(ValueError, match=r"\[B, C\]"):
        loss_fn(u, torch.tensor([0, 1, 2, 0]))
    with pytest.raises(ValueError, match="empty batch"):
        loss_fn(torch.randn(0, 16), y[:0])
    with pytest.raises(ValueError, match="gamma"):
        DCHLoss(16, gamma=0.0)
