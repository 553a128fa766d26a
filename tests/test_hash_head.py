"""HashHead and the packed binary code format."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from core.hash_head import HashHead, pack_codes, unpack_codes


def test_forward_shapes_and_options() -> None:
    x = torch.randn(5, 20)
    for head in (HashHead(20, 32), HashHead(20, 32, batch_norm=True, dropout=0.2)):
        head.train()
        assert head(x).shape == (5, 32)
        head.eval()
        assert head(x[:1]).shape == (1, 32)
        assert head.out_dim == 32
    with pytest.raises(ValueError, match=r"\[B, 20\]"):
        HashHead(20, 32)(torch.randn(5, 21))
    with pytest.raises(ValueError, match="dropout"):
        HashHead(20, 32, dropout=1.0)


def test_load_linear() -> None:
    head = HashHead(6, 8)
    w, b = torch.randn(8, 6), torch.randn(8)
    head.load_linear(w, b)
    x = torch.randn(3, 6)
    torch.testing.assert_close(head(x), x @ w.t() + b)
    with pytest.raises(ValueError, match=r"weight \[8, 6\]"):
        head.load_linear(w.t(), b)


def test_pack_is_big_endian_sign_bits() -> None:
    u = np.array([[1.0, -1.0, 0.0, -0.5, -2, -2, -2, 3.0] + [-1.0] * 7 + [0.1]])
    codes = pack_codes(u)
    assert codes.dtype == np.uint8 and codes.shape == (1, 2)
    assert codes.tolist() == [[0b10100001, 0b00000001]]
    assert np.array_equal(pack_codes(torch.from_numpy(u)), codes)
    assert np.array_equal(pack_codes(u >= 0), codes)


def test_unpack_roundtrip() -> None:
    rng = np.random.default_rng(0)
    u = rng.standard_normal((50, 64))
    codes = pack_codes(u)
    assert codes.shape == (50, 8)
    bits = unpack_codes(codes)
    assert np.array_equal(bits, (u >= 0).astype(np.uint8))
    signed = unpack_codes(codes, signed=True)
    assert signed.dtype == np.float32
    assert np.array_equal(signed, np.where(u >= 0, 1.0, -1.0))
    assert unpack_codes(codes, n_bits=12).shape == (50, 12)


def test_bad_inputs_raise() -> None:
    with pytest.raises(ValueError, match="multiple of 8"):
        pack_codes(np.zeros((2, 12)))
    with pytest.raises(ValueError, match=r"\[N, n_bits\]"):
        pack_codes(np.zeros(16))
    with pytest.raises(ValueError, match="uint8"):
        unpack_codes(np.zeros((2, 2), dtype=np.int32))
    with pytest.raises(ValueError, match="does not fit"):
        unpack_codes(np.zeros((2, 2), dtype=np.uint8), n_bits=17)


@pytest.mark.parametrize("loss_name", ["csq", "dch"])
def test_head_trained_with_each_loss_retrieves_clusters(loss_name: str) -> None:
    """Smoke test of head + loss + packing + evaluation on separable synthetic features."""
    from core.evaluate import evaluate_codes
    from core.losses import CSQLoss, DCHLoss

    means = torch.randn(5, 32, generator=torch.Generator().manual_seed(99))

    def data(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
        g = torch.Generator().manual_seed(seed)
        y = torch.randint(5, (n,), generator=g)
        return means[y] + torch.randn(n, 32, generator=g), y

    torch.manual_seed(0)
    (x_tr, y_tr), (x_q, y_q), (x_db, y_db) = data(300, 1), data(50, 2), data(300, 3)
    head = HashHead(32, 16)
    loss_fn = CSQLoss(5, 16) if loss_name == "csq" else DCHLoss(16)
    opt = torch.optim.Adam(head.parameters(), lr=1e-2)
    onehot = torch.nn.functional.one_hot(y_tr, 5).float()
    for _ in range(100):
        idx = torch.randint(300, (64,))
        opt.zero_grad()
        loss_fn(head(x_tr[idx]), onehot[idx]).backward()
        opt.step()
    with torch.no_grad():
        res = evaluate_codes(pack_codes(head(x_q)), pack_codes(head(x_db)), y_q, y_db)
    assert res.map > 0.9
