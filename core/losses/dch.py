"""Deep Cauchy Hashing loss (Cao, Long, Liu, Wang; CVPR 2018).

DCH is one of the two step-2 losses of CUKDFIR (Reddy et al., arXiv:2207.09070). For a batch of
real-valued hash-layer outputs ``u`` (``[B, K]``) and labels ``y`` (``[B, C]``):

* pairwise similarity ``s_ij = 1`` when images ``i`` and ``j`` share at least one label;
* normalized distance (DCH eq. 6) ``d_ij = K/2 * (1 - cos(u_i, u_j))``, which equals the Hamming
  distance when ``u`` is a ±1 code;
* Cauchy probability ``sigma(d) = gamma / (gamma + d)`` and Cauchy cross-entropy (eq. 8)
  ``l_ij = s_ij log(1 + d_ij/gamma) + (1 - s_ij) log(1 + gamma/d_ij)``;
* pair weights (eq. 2) ``w_ij = |S| / |S_1|`` for similar and ``|S| / |S_0|`` for dissimilar pairs,
  so each kind of pair contributes half of the pairwise term;
* Cauchy quantization loss (eq. 9) ``q_i = log(1 + d(|u_i|, 1) / gamma)``.

The loss is ``mean_ij(w_ij l_ij) + lambda_q * mean_i(q_i)`` (eq. 7).

Differences from the DeepHash-pytorch code that CUKDFIR copies, all deliberate:

* self pairs ``(i, i)`` are left out (they carry no information and, with the cosine clamp, no
  gradient; the reference code counts them as similar pairs in the weights);
* nothing depends on a captured batch size or device, so the last partial batch and ``B = 1``
  work (with one image there are no pairs and only the quantization term remains);
* ``log(1 + x)`` is computed with ``log1p``.

The cosine is clamped to ``max_cos`` (0.99 as in the reference code) so that ``d`` of a
dissimilar pair never reaches 0 and ``log(1 + gamma/d)`` stays finite.
"""

from __future__ import annotations

import torch
from torch import nn

from core.losses._checks import check_codes, check_labels

__all__ = ["DCHLoss"]


class DCHLoss(nn.Module):
    """Deep Cauchy Hashing loss (Cao et al., CVPR 2018).

    Args:
        n_bits: code length ``K``.
        gamma: Cauchy scale; 20 in the DCH / CUKDFIR code.
        lambda_q: weight of the Cauchy quantization loss; 0.1 in the DCH / CUKDFIR code.
        normed: use the normalized (cosine) distance ``K/2 (1 - cos)`` of DCH eq. 6. When
            ``False`` use ``||u_i - u_j||^2 / 4``, which also equals the Hamming distance on ±1
            codes but is not scale invariant.
        max_cos: upper clamp of the cosine (normed) or matching lower clamp ``K/2 (1 - max_cos)``
            of the distance, keeping ``log(1 + gamma/d)`` finite.

    Shapes:
        ``u``: ``[B, K]`` real-valued hash-layer outputs (no ``tanh`` needed); ``y``: ``[B, C]``
        one-hot or multi-hot labels (any numeric dtype). Returns a scalar.
    """

    def __init__(
        self,
        n_bits: int,
        gamma: float = 20.0,
        lambda_q: float = 0.1,
        normed: bool = True,
        max_cos: float = 0.99,
    ) -> None:
        super().__init__()
        if n_bits < 1:
            raise ValueError(f"n_bits must be >= 1, got {n_bits}")
        if gamma <= 0:
            raise ValueError(f"gamma must be > 0, got {gamma}")
        if lambda_q < 0:
            raise ValueError(f"lambda_q must be >= 0, got {lambda_q}")
        if not -1.0 < max_cos < 1.0:
            raise ValueError(f"max_cos must be in (-1, 1), got {max_cos}")
        self.n_bits = int(n_bits)
        self.gamma = float(gamma)
        self.lambda_q = float(lambda_q)
        self.normed = bool(normed)
        self.max_cos = float(max_cos)

    def extra_repr(self) -> str:
        return (
            f"n_bits={self.n_bits}, gamma={self.gamma}, lambda_q={self.lambda_q}, "
            f"normed={self.normed}"
        )

    def distance(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        """Clamped DCH distance between rows of ``a`` (``[N, K]``) and ``b`` (``[M, K]``).

        Returns:
            ``[N, M]`` distances in ``[K/2 (1 - max_cos), ...]``.
        """
        half_k = self.n_bits / 2.0
        d_min = half_k * (1.0 - self.max_cos)
        if self.normed:
            a_n = a / a.norm(dim=1, keepdim=True).clamp_min(1e-4)
            b_n = b / b.norm(dim=1, keepdim=True).clamp_min(1e-4)
            cos = (a_n @ b_n.t()).clamp(max=self.max_cos)
            return half_k * (1.0 - cos)
        sq = (a * a).sum(1, keepdim=True) + (b * b).sum(1).unsqueeze(0) - 2.0 * (a @ b.t())
        return (sq / 4.0).clamp_min(d_min)

    def forward(self, u: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Computes the DCH loss.

        Args:
            u: ``[B, K]`` real-valued hash-layer outputs.
            y: ``[B, C]`` one-hot or multi-hot labels; images sharing >= 1 label are similar.

        Returns:
            Scalar loss tensor.

        Raises:
            ValueError: on badly shaped inputs.
        """
        check_codes(u, self.n_bits)
        check_labels(y, u.shape[0])
        b = u.shape[0]
        y = y.to(dtype=u.dtype)
        quant = torch.log1p(self.distance(u.abs(), torch.ones_like(u[:1])) / self.gamma).mean()
        if b < 2:
            return self.lambda_q * quant

        off_diag = ~torch.eye(b, dtype=torch.bool, device=u.device)
        s = ((y @ y.t()) > 0) & off_diag
        dis = (~s) & off_diag
        n_pairs = b * (b - 1)
        n_sim = s.sum()
        n_dis = dis.sum()
        s_f = s.to(u.dtype)
        dis_f = dis.to(u.dtype)
        if n_sim > 0 and n_dis > 0:
            w = s_f * (n_pairs / n_sim) + dis_f * (n_pairs / n_dis)
        else:
            w = off_diag.to(u.dtype)

        d = self.distance(u, u)
        cauchy = s_f * torch.log1p(d / self.gamma) + dis_f * torch.log1p(self.gamma / d)
        pair_loss = (w * cauchy).sum() / n_pairs
        return pair_loss + self.lambda_q * quant
