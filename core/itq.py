"""Unsupervised hash head: PCA + Iterative Quantization (Gong & Lazebnik, CVPR 2011).

Used for the out-of-the-box, label-free model of CUKDFIR (Reddy et al., arXiv:2207.09070): fitted
on distilled features of unlabelled images. Given centred features ``X`` (``[N, D]``):

1. PCA: ``V = (X - mean) @ P`` with ``P`` (``[D, K]``) the top-``K`` principal directions;
2. ITQ: starting from a seeded random orthogonal ``R`` (``[K, K]``), alternate
   ``B = sign(V R)`` and the orthogonal Procrustes update ``R = S Ŝᵀ`` where
   ``Vᵀ B = S Ω Ŝᵀ`` (ITQ Sec. 3), which lowers the quantization loss ``||B - V R||²_F``.

The code of ``x`` is ``sign((x - mean) @ P @ R)``, i.e. a linear layer with weight
``(P R)ᵀ`` and bias ``-mean @ P R`` (:meth:`ITQModel.as_linear`). Normalise features (e.g. L2)
before fitting and encoding if the backbone expects cosine similarity; the model does not.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import numpy as np
import torch

from core.hash_head import pack_codes

__all__ = ["ITQModel", "fit_itq", "pca", "quantization_error"]

logger = logging.getLogger(__name__)

_STATE_KEYS = ("mean", "projection", "rotation")


def _to_numpy(x: torch.Tensor | np.ndarray) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        return x.detach().cpu().numpy()
    return np.asarray(x)


def _sign(v: np.ndarray) -> np.ndarray:
    """``sign`` with 0 mapped to +1, matching :func:`core.hash_head.pack_codes`."""
    return np.where(v >= 0, 1.0, -1.0)


def quantization_error(v: np.ndarray) -> float:
    """ITQ quantization loss ``||sign(v) - v||²_F / N`` of ``[N, K]`` projected data."""
    v = np.asarray(v, dtype=np.float64)
    return float(((_sign(v) - v) ** 2).sum() / max(len(v), 1))


def pca(features: np.ndarray, n_components: int) -> tuple[np.ndarray, np.ndarray]:
    """Mean and top principal directions of ``features``.

    Each direction's sign is fixed (largest-magnitude entry positive) so the result does not
    depend on the LAPACK build.

    Args:
        features: ``[N, D]`` data.
        n_components: number of directions ``K <= D``.

    Returns:
        ``(mean [D], projection [D, K])`` in float64, columns ordered by decreasing variance.
    """
    x = np.asarray(features)
    mean = x.mean(axis=0, dtype=np.float64)
    # float32 centred copy keeps memory at N*D*4 bytes; the Gram matrix goes to float64
    xc = x.astype(np.float32) - mean.astype(np.float32)
    n, d = xc.shape
    if n >= d:
        evals, evecs = np.linalg.eigh((xc.T @ xc).astype(np.float64))
        proj = evecs[:, np.argsort(evals)[::-1][:n_components]]
    else:
        _, _, vt = np.linalg.svd(xc.astype(np.float64), full_matrices=True)
        proj = vt[:n_components].T
    flip = np.sign(proj[np.abs(proj).argmax(axis=0), np.arange(proj.shape[1])])
    flip[flip == 0] = 1.0
    return mean, proj * flip


@dataclass(frozen=True, eq=False)
class ITQModel:
    """A fitted PCA + ITQ hash head (Gong & Lazebnik, CVPR 2011).

    Attributes:
        mean: ``[D]`` float32 feature mean.
        projection: ``[D, K]`` float32 PCA directions.
        rotation: ``[K, K]`` float32 orthogonal ITQ rotation.
    """

    mean: np.ndarray
    projection: np.ndarray
    rotation: np.ndarray

    def __post_init__(self) -> None:
        for name in _STATE_KEYS:
            arr = np.array(_to_numpy(getattr(self, name)), dtype=np.float32)
            arr.setflags(write=False)
            object.__setattr__(self, name, arr)
        d, k = self.projection.shape if self.projection.ndim == 2 else (-1, -1)
        if self.mean.shape != (d,) or self.rotation.shape != (k, k) or k < 1:
            raise ValueError(
                "inconsistent ITQ shapes: mean "
                f"{self.mean.shape}, projection {self.projection.shape}, "
                f"rotation {self.rotation.shape}"
            )

    @property
    def in_dim(self) -> int:
        """Feature dimension ``D``."""
        return int(self.projection.shape[0])

    @property
    def n_bits(self) -> int:
        """Code length ``K``."""
        return int(self.projection.shape[1])

    @cached_property
    def _weight(self) -> np.ndarray:
        return (self.projection.astype(np.float64) @ self.rotation).astype(np.float32)

    def transform(self, x: torch.Tensor | np.ndarray) -> np.ndarray:
        """Real-valued ITQ outputs ``(x - mean) @ P @ R``.

        Args:
            x: ``[N, D]`` features.

        Returns:
            ``[N, K]`` float32; their signs are the code bits.
        """
        x = _to_numpy(x)
        if x.ndim != 2 or x.shape[1] != self.in_dim:
            raise ValueError(f"expected features [N, {self.in_dim}], got {x.shape}")
        return (x.astype(np.float32) - self.mean) @ self._weight

    def encode(self, x: torch.Tensor | np.ndarray) -> np.ndarray:
        """Packed binary codes of ``[N, D]`` features: ``[N, K/8]`` uint8 (see ``pack_codes``)."""
        return pack_codes(self.transform(x))

    def as_linear(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The head as a linear layer, e.g. for ``HashHead.load_linear``.

        Returns:
            ``(weight [K, D], bias [K])`` float32 tensors with
            ``x @ weight.T + bias == transform(x)``.
        """
        w = torch.from_numpy(self._weight.T.copy())
        b = torch.from_numpy(-(self.mean @ self._weight))
        return w, b

    def to_state(self) -> dict[str, torch.Tensor]:
        """Plain tensors for a checkpoint (loadable with ``torch.load(weights_only=True)``)."""
        return {name: torch.from_numpy(getattr(self, name).copy()) for name in _STATE_KEYS}

    @classmethod
    def from_state(cls, state: Mapping[str, Any]) -> ITQModel:
        """Rebuilds a model from :meth:`to_state` output (tensors or arrays)."""
        missing = [k for k in _STATE_KEYS if k not in state]
        if missing:
            raise ValueError(f"ITQ state lacks {missing}")
        return cls(**{k: _to_numpy(state[k]) for k in _STATE_KEYS})


def fit_itq(
    features: torch.Tensor | np.ndarray, n_bits: int, n_iter: int = 50, seed: int = 0
) -> ITQModel:
    """Fits PCA + ITQ (Gong & Lazebnik, CVPR 2011) on unlabelled features.

    Args:
        features: ``[N, D]`` features, ``N >= 2``, ``n_bits <= D``.
        n_bits: code length ``K``.
        n_iter: ITQ iterations (50 in the ITQ paper).
        seed: seed of the random orthogonal initial rotation.

    Returns:
        The fitted :class:`ITQModel`.

    Raises:
        ValueError: on bad shapes, non-finite features or ``n_bits > D``.
    """
    x = _to_numpy(features)
    if x.ndim != 2 or x.shape[0] < 2:
        raise ValueError(f"features must have shape [N >= 2, D], got {x.shape}")
    if not 1 <= n_bits <= x.shape[1]:
        raise ValueError(f"n_bits must be in [1, D={x.shape[1]}], got {n_bits}")
    if n_iter < 0:
        raise ValueError(f"n_iter must be >= 0, got {n_iter}")
    if not np.isfinite(x).all():
        raise ValueError("features contain NaN or inf")

    mean, proj = pca(x, n_bits)
    v = ((x.astype(np.float32) - mean.astype(np.float32)) @ proj.astype(np.float32)).astype(
        np.float64
    )
    rng = np.random.default_rng(seed)
    q, r = np.linalg.qr(rng.standard_normal((n_bits, n_bits)))
    rot = q * np.where(np.diag(r) >= 0, 1.0, -1.0)
    err0 = quantization_error(v @ rot)
    for _ in range(n_iter):
        b = _sign(v @ rot)
        s, _, sh_t = np.linalg.svd(v.T @ b)
        rot = s @ sh_t
    logger.info(
        "ITQ %d bits on %d x %d: quantization error %.4f -> %.4f after %d iterations",
        n_bits,
        x.shape[0],
        x.shape[1],
        err0,
        quantization_error(v @ rot),
        n_iter,
    )
    return ITQModel(mean=mean, projection=proj, rotation=rot)
