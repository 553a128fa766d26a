"""PCA + ITQ (Gong & Lazebnik, CVPR 2011)."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch

from core.hash_head import HashHead
from core.itq import ITQModel, fit_itq, pca, quantization_error


def _features(n: int = 1500, d: int = 48, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    mix = rng.standard_normal((d, d)) * np.linspace(2.0, 0.1, d)[:, None] * (0.3 / np.sqrt(d))
    return (rng.standard_normal((n, d)) @ mix + 3.0).astype(np.float32)


def test_rotation_orthogonal_and_error_below_pca() -> None:
    x = _features()
    model = fit_itq(x, 16, n_iter=50, seed=0)
    assert model.n_bits == 16 and model.in_dim == 48
    np.testing.assert_allclose(model.rotation @ model.rotation.T, np.eye(16), atol=1e-5)
    np.testing.assert_allclose(model.projection.T @ model.projection, np.eye(16), atol=1e-5)
    v_pca = (x - model.mean) @ model.projection
    err_pca = quantization_error(v_pca)
    err_itq = quantization_error(model.transform(x))
    assert err_itq < 0.95 * err_pca
    # each ITQ step is a block-coordinate descent: more iterations never hurt
    err_random = quantization_error(fit_itq(x, 16, n_iter=0, seed=0).transform(x))
    err_5 = quantization_error(fit_itq(x, 16, n_iter=5, seed=0).transform(x))
    assert err_itq <= err_5 + 1e-6 < err_random


def test_bits_are_roughly_balanced() -> None:
    x = _features()
    bits = fit_itq(x, 16).transform(x) >= 0
    assert np.all(np.abs(bits.mean(0) - 0.5) < 0.2)


def test_near_identical_points_share_codes() -> None:
    x = _features()
    model = fit_itq(x, 32)
    v = model.transform(x)
    safe = x[np.abs(v).min(axis=1) > 1e-2][:200]  # points not on a bit boundary
    assert len(safe) > 20
    noisy = safe + np.random.default_rng(1).standard_normal(safe.shape).astype(np.float32) * 1e-5
    assert np.array_equal(model.encode(safe), model.encode(noisy))
    assert model.encode(safe).shape == (len(safe), 4)


def test_deterministic_and_linear_equivalent() -> None:
    x = _features()
    a, b = fit_itq(x, 16, seed=3), fit_itq(x, 16, seed=3)
    assert np.array_equal(a.rotation, b.rotation)
    w, bias = a.as_linear()
    assert w.shape == (16, 48) and bias.shape == (16,)
    xt = torch.from_numpy(x)
    np.testing.assert_allclose((xt @ w.t() + bias).numpy(), a.transform(x), atol=1e-3)
    head = HashHead(48, 16).load_linear(w, bias)
    with torch.no_grad():
        out = head(xt).numpy()
    np.testing.assert_allclose(out, a.transform(xt), atol=1e-3)


def test_state_roundtrip_through_torch_save() -> None:
    x = _features()
    model = fit_itq(x, 24)
    buf = io.BytesIO()
    torch.save({"itq": model.to_state()}, buf)
    buf.seek(0)
    state = torch.load(buf, weights_only=True)["itq"]
    assert all(isinstance(t, torch.Tensor) for t in state.values())
    back = ITQModel.from_state(state)
    assert np.array_equal(back.encode(x), model.encode(x))
    assert np.array_equal(
        ITQModel.from_state({k: t.numpy() for k, t in state.items()}).rotation, model.rotation
    )
    with pytest.raises(ValueError, match="lacks"):
        ITQModel.from_state({"mean": state["mean"]})


def test_pca_paths_agree_and_fewer_samples_than_dims() -> None:
    x = _features(n=40, d=64)
    mean, proj = pca(x, 8)  # N < D: SVD path
    gram_mean, gram_proj = pca(np.concatenate([x, x]), 8)  # N >= D: eigh path, same covariance
    np.testing.assert_allclose(mean, gram_mean, atol=1e-4)
    np.testing.assert_allclose(proj, gram_proj, atol=1e-3)
    assert fit_itq(x, 8).encode(x).shape == (40, 1)


def test_bad_inputs_raise() -> None:
    x = _features(n=50, d=8)
    with pytest.raises(ValueError, match="n_bits"):
        fit_itq(x, 16)
    with pytest.raises(ValueError, match=r"\[N >= 2, D\]"):
        fit_itq(x[0], 4)
    bad = x.copy()
    bad[0, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        fit_itq(bad, 4)
    with pytest.raises(ValueError, match=r"\[N, 8\]"):
        fit_itq(x, 8).transform(np.zeros((3, 9)))
    with pytest.raises(ValueError, match="inconsistent"):
        ITQModel(np.zeros(8), np.zeros((8, 4)), np.zeros((3, 3)))
