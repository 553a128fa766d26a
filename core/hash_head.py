"""Hash layer and binary-code packing (step 2 of CUKDFIR, Reddy et al., arXiv:2207.09070).

:class:`HashHead` maps backbone features to ``n_bits`` real values ``u``. It applies no
``tanh``: the losses do what they need (CSQ applies ``tanh``; DCH uses the scale-free cosine
distance), and ``sign(u) == sign(tanh(u))`` so codes are the same either way.

Codes are packed with :func:`pack_codes`: bit ``k`` of a code is ``1`` when ``u[k] >= 0``; bits
are packed **big-endian** within each byte (``np.packbits(..., bitorder="big")``), so bit 0 is
the most significant bit of byte 0. The packed layout is the one ``faiss.IndexBinaryFlat``
expects (``n_bits / 8`` bytes per code); Hamming distances do not depend on the bit order.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

__all__ = ["HashHead", "pack_codes", "unpack_codes"]


class HashHead(nn.Module):
    """Linear hash layer: optional dropout, ``Linear(in_dim, n_bits)``, optional BatchNorm.

    Args:
        in_dim: feature dimension ``D`` of the backbone.
        n_bits: code length ``K`` (16/32/48/64 in the paper; any multiple of 8 packs).
        batch_norm: add an affine-free ``BatchNorm1d(K)`` after the linear layer, which centres
            each output and so balances the bits.
        dropout: dropout probability on the input features (0 disables it).

    Shapes:
        ``forward``: ``[B, D]`` -> ``[B, K]`` real-valued outputs ``u`` (no ``tanh``).
    """

    def __init__(
        self, in_dim: int, n_bits: int, batch_norm: bool = False, dropout: float = 0.0
    ) -> None:
        super().__init__()
        if in_dim < 1 or n_bits < 1:
            raise ValueError(f"in_dim and n_bits must be >= 1, got {in_dim}, {n_bits}")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {dropout}")
        self.in_dim = int(in_dim)
        self.n_bits = int(n_bits)
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.fc = nn.Linear(self.in_dim, self.n_bits)
        self.bn = nn.BatchNorm1d(self.n_bits, affine=False) if batch_norm else nn.Identity()

    @property
    def out_dim(self) -> int:
        """Output dimension (``n_bits``)."""
        return self.n_bits

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Maps ``[B, D]`` features to ``[B, K]`` real-valued hash outputs."""
        if x.dim() != 2 or x.shape[1] != self.in_dim:
            raise ValueError(f"expected features [B, {self.in_dim}], got {tuple(x.shape)}")
        return self.bn(self.fc(self.dropout(x)))

    @torch.no_grad()
    def load_linear(self, weight: torch.Tensor, bias: torch.Tensor) -> HashHead:
        """Copies a ``[K, D]`` weight and ``[K]`` bias into the linear layer.

        Used to start from an unsupervised ITQ head (``core.itq.ITQModel.as_linear``).

        Returns:
            ``self``.
        """
        weight = torch.as_tensor(weight)
        bias = torch.as_tensor(bias)
        if tuple(weight.shape) != (self.n_bits, self.in_dim) or tuple(bias.shape) != (self.n_bits,):
            raise ValueError(
                f"expected weight [{self.n_bits}, {self.in_dim}] and bias [{self.n_bits}], "
                f"got {tuple(weight.shape)} and {tuple(bias.shape)}"
            )
        self.fc.weight.copy_(weight)
        self.fc.bias.copy_(bias)
        return self


def pack_codes(u: torch.Tensor | np.ndarray) -> np.ndarray:
    """Binarises real-valued outputs (``u >= 0`` -> 1) and packs 8 bits per byte, big-endian.

    Args:
        u: ``[N, K]`` real values (``>= 0`` -> 1), or a bool array (``True`` -> 1); ``K``
            must be a multiple of 8. Unsigned 0/1 arrays are *not* bits here (all ``>= 0``).

    Returns:
        ``[N, K/8]`` uint8 packed codes.

    Raises:
        ValueError: if ``u`` is not 2-D or ``K`` is not a multiple of 8.
    """
    if isinstance(u, torch.Tensor):
        u = u.detach().cpu().numpy()
    u = np.asarray(u)
    if u.ndim != 2:
        raise ValueError(f"codes must have shape [N, n_bits], got {u.shape}")
    if u.shape[1] % 8 != 0:
        raise ValueError(f"n_bits must be a multiple of 8 to pack, got {u.shape[1]}")
    bits = u if u.dtype == np.bool_ else u >= 0
    return np.packbits(bits, axis=1, bitorder="big")


def unpack_codes(codes: np.ndarray, n_bits: int | None = None, signed: bool = False) -> np.ndarray:
    """Inverse of :func:`pack_codes`.

    Args:
        codes: ``[N, B]`` uint8 packed codes.
        n_bits: number of bits to keep (default ``8 * B``).
        signed: return ±1 float32 instead of 0/1 uint8.

    Returns:
        ``[N, n_bits]`` uint8 bits in {0, 1}, or float32 in {-1, +1} when ``signed``.
    """
    codes = np.asarray(codes)
    if codes.ndim != 2 or codes.dtype != np.uint8:
        raise ValueError(
            f"packed codes must be uint8 [N, n_bytes], got {codes.dtype} {codes.shape}"
        )
    n_bits = codes.shape[1] * 8 if n_bits is None else int(n_bits)
    if not 0 < n_bits <= codes.shape[1] * 8:
        raise ValueError(f"n_bits={n_bits} does not fit {codes.shape[1]} bytes")
    bits = np.unpackbits(codes, axis=1, count=n_bits, bitorder="big")
    if signed:
        return bits.astype(np.float32) * 2.0 - 1.0
    return bits
