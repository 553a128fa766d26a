"""Central Similarity Quantization loss (Yuan et al., CVPR 2020).

CSQ is one of the two step-2 losses of CUKDFIR (Reddy et al., arXiv:2207.09070). Every class ``c``
gets a fixed ±1 *hash centre* ``h_c`` (``K`` bits); an image is pulled towards the centre of its
class by a bitwise binary cross-entropy between ``(tanh(u) + 1)/2`` and ``(h + 1)/2`` (the central
similarity term), plus ``lambda_q * mean((|tanh(u)| - 1)^2)`` (the quantization term of the
CSQ code).
Since ``(tanh(u) + 1)/2 = sigmoid(2u)`` the BCE is computed on the logits ``2u``, which is the
same function but stays finite when ``tanh`` saturates.

Hash centres (CSQ Sec. 3.2):

* **Hadamard centres** when ``n_classes <= 2 * n_bits`` and a Hadamard matrix of order
  ``n_bits`` can be built: the rows of ``H`` then of ``-H``; any two distinct centres are
  ``K/2`` (rows of ``H``) or ``K`` (a row and its negation) apart. Sylvester's construction
  covers powers of two (16, 32, 64); other orders multiple of 4 are built as a Kronecker product
  of a Sylvester matrix and a Paley matrix, e.g. ``H_48 = H_4 ⊗ Paley-I(11)``, so 48 bits also
  get exact Hadamard centres (the CSQ / DeepHash code, using ``scipy.linalg.hadamard``, cannot).
* **Random balanced centres** otherwise: each centre has ``K//2`` bits at -1 and the rest at +1,
  drawn from a seeded ``torch.Generator``; each new centre is the best of several candidates by
  minimum Hamming distance to the centres already chosen, aiming for a minimum pairwise distance
  above ``K/4`` (the CSQ code's acceptance test). A warning is logged when it is not reached.

Centres and the multi-label tie-break vector are registered buffers: they are saved in the
``state_dict`` (hence in checkpoints) and restored by ``load_state_dict``.

Multi-label images (``multi_label=True``) use the sign of the sum of their labels' centres; bits
where the sum is 0 take the value of a fixed, seeded ±1 ``tie_break`` vector (the CSQ code uses
a random 0/1 vector for the same purpose).
"""

from __future__ import annotations

import logging

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from core.losses._checks import check_codes, check_labels

__all__ = ["CSQLoss", "hadamard_matrix", "hash_centres", "random_balanced_centres"]

logger = logging.getLogger(__name__)


def _is_prime(n: int) -> bool:
    if n < 2:
        return False
    return all(n % p for p in range(2, int(n**0.5) + 1))


def _jacobsthal(q: int) -> np.ndarray:
    """Jacobsthal matrix ``Q[i, j] = chi(j - i)`` of the prime ``q`` (quadratic character)."""
    squares = {(x * x) % q for x in range(1, q)}
    chi = np.array([0] + [1 if a in squares else -1 for a in range(1, q)], dtype=np.int64)
    idx = (np.arange(q)[None, :] - np.arange(q)[:, None]) % q
    return chi[idx]


def _paley(m: int) -> np.ndarray | None:
    """Paley Hadamard matrix of order ``m`` from a prime ``q``, or ``None`` if there is none."""
    q = m - 1
    if q % 4 == 3 and _is_prime(q):  # Paley I: order q + 1
        s = np.zeros((m, m), dtype=np.int64)
        s[0, 1:] = 1
        s[1:, 0] = -1
        s[1:, 1:] = _jacobsthal(q)
        return s + np.eye(m, dtype=np.int64)
    if m % 2 == 0:
        q = m // 2 - 1
        if q % 4 == 1 and _is_prime(q):  # Paley II: order 2 (q + 1)
            c = np.zeros((q + 1, q + 1), dtype=np.int64)
            c[0, 1:] = 1
            c[1:, 0] = 1
            c[1:, 1:] = _jacobsthal(q)
            zero_block = np.array([[1, -1], [-1, -1]], dtype=np.int64)
            one_block = np.array([[1, 1], [1, -1]], dtype=np.int64)
            return np.kron(c, one_block) + np.kron(np.eye(q + 1, dtype=np.int64), zero_block)
    return None


def hadamard_matrix(n: int) -> np.ndarray | None:
    """Builds a Hadamard matrix of order ``n`` (``H @ H.T == n * I``), or ``None``.

    Uses Sylvester's construction for powers of two (identical to ``scipy.linalg.hadamard``)
    and ``Sylvester(2^a) ⊗ Paley(m)`` for ``n = 2^a * m`` with a Paley I or II matrix of order
    ``m`` built from a prime. Returns ``None`` where neither applies.

    Args:
        n: order, ``n >= 1``.

    Returns:
        ``[n, n]`` int64 ±1 matrix or ``None``.
    """
    if n < 1:
        return None
    a, m = 0, n
    while m % 2 == 0:
        a, m = a + 1, m // 2
    # try the largest Sylvester factor first, moving powers of two into the Paley factor
    for k in range(a, -1, -1):
        core_order = m * 2 ** (a - k)
        if core_order == 1:
            core = np.ones((1, 1), dtype=np.int64)
        elif core_order == 2:
            core = np.array([[1, 1], [1, -1]], dtype=np.int64)
        else:
            core = _paley(core_order)
        if core is None:
            continue
        h = core
        for _ in range(k):
            h = np.block([[h, h], [h, -h]])
        if not np.array_equal(h @ h.T, n * np.eye(n, dtype=np.int64)):  # pragma: no cover
            raise AssertionError(f"Hadamard construction of order {n} is wrong")
        return h
    return None


def random_balanced_centres(
    n_classes: int,
    n_bits: int,
    generator: torch.Generator,
    n_candidates: int = 64,
) -> torch.Tensor:
    """Draws balanced ±1 centres (``n_bits // 2`` bits at -1) with a large minimum distance.

    Centres are chosen one by one; each is the candidate (of ``n_candidates`` drawn) with the
    largest minimum Hamming distance to the centres already chosen.

    Args:
        n_classes: number of centres ``C``.
        n_bits: code length ``K``.
        generator: seeded CPU generator; the result depends only on its state.
        n_candidates: candidates drawn per centre.

    Returns:
        ``[C, K]`` float32 ±1 centres.
    """
    n_neg = n_bits // 2
    centres = torch.empty(n_classes, n_bits)
    for c in range(n_classes):
        keys = torch.rand(n_candidates, n_bits, generator=generator)
        ranks = keys.argsort(dim=1).argsort(dim=1)  # a random permutation per row
        cand = torch.where(ranks < n_neg, -1.0, 1.0)
        if c == 0:
            centres[0] = cand[0]
            continue
        dist = (n_bits - cand @ centres[:c].t()) / 2  # [n_candidates, c] Hamming distances
        centres[c] = cand[dist.min(dim=1).values.argmax()]
    if n_classes > 1:
        d = (n_bits - centres @ centres.t()) / 2
        iu = torch.triu_indices(n_classes, n_classes, offset=1)
        pair = d[iu[0], iu[1]]
        d_min, d_mean = float(pair.min()), float(pair.mean())
        logger.debug("random hash centres: min distance %.0f, mean %.2f", d_min, d_mean)
        if d_min <= n_bits / 4:
            logger.warning(
                "random hash centres for %d classes at %d bits: minimum pairwise distance %.0f "
                "<= K/4 = %.1f; consider more bits",
                n_classes,
                n_bits,
                d_min,
                n_bits / 4,
            )
    return centres


def hash_centres(n_classes: int, n_bits: int, seed: int = 0) -> tuple[torch.Tensor, str]:
    """Hash centres for CSQ: Hadamard rows when possible, else random balanced centres.

    Args:
        n_classes: number of classes ``C``.
        n_bits: code length ``K``.
        seed: seed of the random centres (unused for Hadamard centres).

    Returns:
        ``([C, K]`` float32 ±1 centres, ``"hadamard"`` or ``"random"``).
    """
    h = hadamard_matrix(n_bits) if n_classes <= 2 * n_bits else None
    if h is not None:
        both = np.concatenate([h, -h], axis=0)[:n_classes]
        return torch.from_numpy(both.astype(np.float32)), "hadamard"
    gen = torch.Generator().manual_seed(seed)
    return random_balanced_centres(n_classes, n_bits, gen), "random"


class CSQLoss(nn.Module):
    """Central Similarity Quantization loss (Yuan et al., CVPR 2020).

    Args:
        n_classes: number of classes ``C``.
        n_bits: code length ``K``.
        lambda_q: weight of the quantization term; 1e-4 in the CSQ / CUKDFIR code.
        seed: seed of the random centres and of the multi-label tie-break vector.
        multi_label: labels are multi-hot; the target is the sign of the summed centres.

    Shapes:
        ``u``: ``[B, K]`` real-valued hash-layer outputs (``tanh`` is applied here). ``y``:
        ``[B, C]`` one-hot (single-label) or multi-hot labels; single-label also accepts an
        integer class vector ``[B]``. Returns a scalar.

    Attributes:
        centres: ``[C, K]`` ±1 buffer of hash centres.
        tie_break: ``[K]`` ±1 buffer used where summed multi-label centres are 0.
        centre_kind: ``"hadamard"`` or ``"random"`` (how the centres were built).
    """

    centres: torch.Tensor
    tie_break: torch.Tensor

    def __init__(
        self,
        n_classes: int,
        n_bits: int,
        lambda_q: float = 1e-4,
        seed: int = 0,
        multi_label: bool = False,
    ) -> None:
        super().__init__()
        if n_classes < 1:
            raise ValueError(f"n_classes must be >= 1, got {n_classes}")
        if n_bits < 2:
            raise ValueError(f"n_bits must be >= 2, got {n_bits}")
        if lambda_q < 0:
            raise ValueError(f"lambda_q must be >= 0, got {lambda_q}")
        self.n_classes = int(n_classes)
        self.n_bits = int(n_bits)
        self.lambda_q = float(lambda_q)
        self.seed = int(seed)
        self.multi_label = bool(multi_label)
        centres, self.centre_kind = hash_centres(self.n_classes, self.n_bits, self.seed)
        gen = torch.Generator().manual_seed(self.seed + 1)
        tie = torch.where(torch.rand(self.n_bits, generator=gen) < 0.5, -1.0, 1.0)
        self.register_buffer("centres", centres)
        self.register_buffer("tie_break", tie)
        logger.debug("CSQ: %s centres, %d classes x %d bits", self.centre_kind, n_classes, n_bits)

    def extra_repr(self) -> str:
        return (
            f"n_classes={self.n_classes}, n_bits={self.n_bits}, lambda_q={self.lambda_q}, "
            f"multi_label={self.multi_label}, centres={self.centre_kind}"
        )

    def targets(self, y: torch.Tensor) -> torch.Tensor:
        """Hash-centre targets of a batch of labels.

        Args:
            y: ``[B, C]`` one-/multi-hot labels, or ``[B]`` integer classes (single-label).

        Returns:
            ``[B, K]`` ±1 targets in the dtype of the centres.

        Raises:
            ValueError: on bad shapes, out-of-range classes, or (single-label) rows that do not
                hold exactly one label.
        """
        if not isinstance(y, torch.Tensor):
            raise ValueError(f"y must be a torch.Tensor, got {type(y).__name__}")
        if y.dim() == 1 and not self.multi_label:
            if y.is_floating_point() or y.dtype == torch.bool:
                raise ValueError(f"a 1-D y must hold integer classes, got dtype {y.dtype}")
            if y.numel() and (int(y.min()) < 0 or int(y.max()) >= self.n_classes):
                raise ValueError(f"class indices must be in [0, {self.n_classes})")
            return self.centres[y.long()]
        check_labels(y, y.shape[0], self.n_classes)
        y = y.to(self.centres.dtype)
        if not self.multi_label:
            if not bool(((y > 0).sum(dim=1) == 1).all()):
                raise ValueError(
                    "single-label CSQ needs exactly one positive label per row; "
                    "use multi_label=True for multi-hot targets"
                )
            return self.centres[y.argmax(dim=1)]
        summed = y @ self.centres
        sign = torch.sign(summed)
        return torch.where(sign == 0, self.tie_break.expand_as(sign), sign)

    def forward(self, u: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Computes the CSQ loss.

        Args:
            u: ``[B, K]`` real-valued hash-layer outputs (before ``tanh``).
            y: ``[B, C]`` one-/multi-hot labels, or ``[B]`` integer classes (single-label).

        Returns:
            Scalar loss tensor.

        Raises:
            ValueError: on badly shaped inputs.
        """
        check_codes(u, self.n_bits)
        if isinstance(y, torch.Tensor) and y.dim() >= 1 and y.shape[0] != u.shape[0]:
            raise ValueError(f"y has {y.shape[0]} rows but u has batch size {u.shape[0]}")
        target = self.targets(y).to(u.dtype)
        centre_loss = F.binary_cross_entropy_with_logits(2.0 * u, 0.5 * (target + 1.0))
        quant = (torch.tanh(u).abs() - 1.0).pow(2).mean()
        return centre_loss + self.lambda_q * quant
