"""CSQLoss (Yuan et al., CVPR 2020): hash centres and the loss against a plain reference."""

from __future__ import annotations

import io
import math

import numpy as np
import pytest
import torch

from core.losses import CSQLoss, hadamard_matrix, hash_centres


def reference_csq(loss_fn: CSQLoss, u: torch.Tensor, y: torch.Tensor, multi: bool) -> float:
    """CSQ eqs. 5-6 written out element by element, in float64 Python."""
    centres = loss_fn.centres.tolist()
    tie = loss_fn.tie_break.tolist()
    k = len(centres[0])
    total_bce, total_q, n = 0.0, 0.0, 0
    for row_u, row_y in zip(u.double().tolist(), y.tolist(), strict=True):
        if multi:
            summed = [
                sum(c[b] for c, on in zip(centres, row_y, strict=True) if on > 0) for b in range(k)
            ]
            target = [tie[b] if s == 0 else (1.0 if s > 0 else -1.0) for b, s in enumerate(summed)]
        else:
            target = centres[row_y.index(max(row_y))]
        for x, t in zip(row_u, target, strict=True):
            p = (math.tanh(x) + 1) / 2
            t01 = (t + 1) / 2
            total_bce -= t01 * math.log(p) + (1 - t01) * math.log(1 - p)
            total_q += (abs(math.tanh(x)) - 1) ** 2
            n += 1
    return total_bce / n + loss_fn.lambda_q * total_q / n


def _onehot(labels: list[int], c: int) -> torch.Tensor:
    return torch.nn.functional.one_hot(torch.tensor(labels), c).float()


@pytest.mark.parametrize("n_classes,n_bits", [(10, 16), (10, 48), (40, 16)])
def test_single_label_matches_reference(n_classes: int, n_bits: int) -> None:
    loss_fn = CSQLoss(n_classes, n_bits, lambda_q=0.1)
    g = torch.Generator().manual_seed(1)
    u = torch.randn(7, n_bits, generator=g)
    y = _onehot(torch.randint(n_classes, (7,), generator=g).tolist(), n_classes)
    loss = loss_fn(u, y)
    assert loss.dim() == 0
    assert loss.item() == pytest.approx(reference_csq(loss_fn, u, y, False), abs=1e-5, rel=1e-5)
    # integer class vector gives the same loss
    assert loss_fn(u, y.argmax(1)).item() == pytest.approx(loss.item(), abs=1e-6)


def test_multi_label_matches_reference() -> None:
    loss_fn = CSQLoss(6, 32, lambda_q=1e-4, multi_label=True)
    g = torch.Generator().manual_seed(2)
    u = torch.randn(9, 32, generator=g)
    y = (torch.rand(9, 6, generator=g) < 0.4).float()
    y[0] = 0.0  # no label: target is the tie-break vector
    y[1] = torch.tensor([1.0, 1.0, 0, 0, 0, 0])  # two centres: ties where they differ
    loss = loss_fn(u, y)
    assert loss.item() == pytest.approx(reference_csq(loss_fn, u, y, True), abs=1e-5, rel=1e-5)


def test_multi_label_centre_is_sign_of_sum_with_deterministic_ties() -> None:
    loss_fn = CSQLoss(4, 16, multi_label=True)
    c = loss_fn.centres
    y = torch.tensor([[1.0, 1.0, 1.0, 0.0], [1.0, 1.0, 0.0, 0.0], [0.0, 0.0, 1.0, 0.0]])
    t = loss_fn.targets(y)
    assert torch.equal(t[0], torch.sign(c[0] + c[1] + c[2]))  # odd count: never a tie
    s = c[0] + c[1]
    assert torch.equal(t[1][s != 0], torch.sign(s[s != 0]))
    assert torch.equal(t[1][s == 0], loss_fn.tie_break[s == 0])
    assert (s == 0).any()
    assert torch.equal(t[2], c[2])
    assert set(t.unique().tolist()) <= {-1.0, 1.0}
    assert torch.equal(CSQLoss(4, 16, multi_label=True).targets(y), t)  # deterministic


@pytest.mark.parametrize("n_bits", [16, 32, 48, 64])
def test_hadamard_centres_are_orthogonal(n_bits: int) -> None:
    loss_fn = CSQLoss(n_bits, n_bits)
    assert loss_fn.centre_kind == "hadamard"
    c = loss_fn.centres
    assert torch.equal(c @ c.t(), n_bits * torch.eye(n_bits))
    # rows of -H follow: 2K classes, distances K/2 or K (a centre and its negation)
    c2 = CSQLoss(2 * n_bits, n_bits).centres
    assert torch.equal(c2[n_bits:], -c2[:n_bits])
    ham = (n_bits - c2 @ c2.t()) / 2
    off = ham[~torch.eye(2 * n_bits, dtype=torch.bool)]
    assert set(off.unique().tolist()) == {n_bits / 2, float(n_bits)}


def test_hadamard_matrix_constructions() -> None:
    h16 = hadamard_matrix(16)
    h8 = hadamard_matrix(8)
    assert np.array_equal(h16, np.block([[h8, h8], [h8, -h8]]))  # Sylvester, as scipy
    for n in (1, 2, 4, 12, 20, 24, 28, 40, 48, 56, 96):
        h = hadamard_matrix(n)
        assert h is not None and h.shape == (n, n)
        assert np.array_equal(h @ h.T, n * np.eye(n))
    assert hadamard_matrix(6) is None  # no Hadamard matrix of order 6 exists


def test_random_centres_balanced_reproducible_and_spread() -> None:
    a = CSQLoss(100, 32, seed=7)
    assert a.centre_kind == "random"  # 100 > 2 * 32
    c = a.centres
    assert c.shape == (100, 32)
    assert torch.equal(c.sum(1), torch.zeros(100))  # balanced: 16 bits at -1, 16 at +1
    assert torch.equal(CSQLoss(100, 32, seed=7).centres, c)
    assert not torch.equal(CSQLoss(100, 32, seed=8).centres, c)
    ham = (32 - c @ c.t()) / 2
    off = ham[~torch.eye(100, dtype=torch.bool)]
    assert off.min() > 32 / 4
    assert off.mean() >= 32 / 2
    centres, kind = hash_centres(33, 16, seed=3)  # 33 > 2 * 16
    assert kind == "random" and torch.equal(centres, hash_centres(33, 16, seed=3)[0])


def test_centres_live_in_state_dict() -> None:
    a = CSQLoss(100, 32, seed=1, multi_label=True)
    state = a.state_dict()
    assert torch.equal(state["centres"], a.centres)
    assert torch.equal(state["tie_break"], a.tie_break)
    buf = io.BytesIO()
    torch.save(state, buf)
    buf.seek(0)
    b = CSQLoss(100, 32, seed=2, multi_label=True)
    assert not torch.equal(b.centres, a.centres)
    b.load_state_dict(torch.load(buf, weights_only=True))
    assert torch.equal(b.centres, a.centres)
    assert torch.equal(b.tie_break, a.tie_break)


def test_batch_size_one_and_finite_gradients_when_saturated() -> None:
    loss_fn = CSQLoss(10, 16)
    u = torch.full((1, 16), 40.0, requires_grad=True)  # tanh saturates at exactly 1.0
    loss = loss_fn(u, _onehot([3], 10))
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(u.grad).all()
    u = (torch.randn(5, 16) * 3).requires_grad_(True)
    loss = loss_fn(u, _onehot([0, 1, 2, 3, 9], 10))
    loss.backward()
    assert torch.isfinite(u.grad).all()


def test_training_reaches_the_centre() -> None:
    loss_fn = CSQLoss(4, 16)
    y = _onehot([0, 1, 2, 3, 0, 1], 4)
    u = torch.zeros(6, 16, requires_grad=True)
    opt = torch.optim.SGD([u], lr=1.0)
    for _ in range(30):
        opt.zero_grad()
        loss_fn(u, y).backward()
        opt.step()
    assert torch.equal(torch.sign(u.detach()), loss_fn.targets(y))


def test_bad_inputs_raise() -> None:
    loss_fn = CSQLoss(10, 16)
    y = _onehot([0, 1, 2], 10)
    with pytest.raises(ValueError, match="n_bits=16"):
        loss_fn(torch.randn(3, 32), y)
    with pytest.raises(ValueError, match="batch size 3"):
        loss_fn(torch.randn(3, 16), y[:2])
    with pytest.raises(ValueError, match="n_classes=10"):
        loss_fn(torch.randn(3, 16), y[:, :5])
    with pytest.raises(ValueError, match="exactly one positive label"):
        loss_fn(torch.randn(3, 16), y + _onehot([5, 5, 5], 10))
    with pytest.raises(ValueError, match="class indices"):
        loss_fn(torch.randn(3, 16), torch.tensor([0, 1, 10]))
    with pytest.raises(ValueError, match="integer classes"):
        loss_fn(torch.randn(3, 16), torch.tensor([0.0, 1.0, 2.0]))
    with pytest.raises(ValueError, match=r"\[B, C\]"):
        CSQLoss(10, 16, multi_label=True)(torch.randn(3, 16), torch.tensor([0, 1, 2]))
