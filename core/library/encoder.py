"""The encoder interface the library engine needs, and code packing helpers.

The engine never imports a model: anything with these attributes and an ``encode`` method
works (the CUKD student with its hash head, a teacher + ITQ, or the cheap test encoder in
:mod:`core.library.testing`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, runtime_checkable

import numpy as np
from PIL import Image

__all__ = ["ImageEncoder", "check_encoder_output", "pack_signs"]


@runtime_checkable
class ImageEncoder(Protocol):
    """Turns decoded RGB images into packed binary codes and float embeddings.

    Attributes:
        model_id: stable id of the model; codes of different ids are never mixed.
        n_bits: code length, a multiple of 8.
        embed_dim: size of the float embedding used for re-ranking.
        input_size: pixels the encoder wants; the loader may draft-decode to at least this.
    """

    model_id: str
    n_bits: int
    embed_dim: int
    input_size: int

    def encode(self, images: Sequence[Image.Image]) -> tuple[np.ndarray, np.ndarray]:
        """Encode a batch of whole (uncropped) RGB images.

        Returns:
            ``(codes, embeddings)``: codes uint8 ``[N, n_bits // 8]`` (``np.packbits`` of the
            sign bits, big-endian within a byte), embeddings float32 ``[N, embed_dim]``,
            L2-normalised.
        """
        ...


def pack_signs(x: np.ndarray) -> np.ndarray:
    """Pack ``x > 0`` of a float array ``[N, n_bits]`` into uint8 ``[N, n_bits // 8]``."""
    assert x.ndim == 2 and x.shape[1] % 8 == 0, f"expected [N, 8k], got {x.shape}"
    return np.packbits(x > 0, axis=1)


def check_encoder_output(
    encoder: ImageEncoder, n: int, codes: np.ndarray, embeddings: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Validate and normalise an encoder's output for ``n`` images.

    Returns:
        Contiguous ``(codes uint8 [n, n_bits//8], embeddings float32 [n, embed_dim])``.

    Raises:
        ValueError: if shapes or dtypes do not match the encoder's declared sizes.
    """
    codes = np.ascontiguousarray(codes)
    embeddings = np.ascontiguousarray(embeddings, dtype=np.float32)
    if codes.dtype != np.uint8 or codes.shape != (n, encoder.n_bits // 8):
        raise ValueError(
            f"{encoder.model_id}: codes must be uint8 [{n}, {encoder.n_bits // 8}], "
            f"got {codes.dtype} {codes.shape}"
        )
    if embeddings.shape != (n, encoder.embed_dim):
        raise ValueError(
            f"{encoder.model_id}: embeddings must be [{n}, {encoder.embed_dim}], "
            f"got {embeddings.shape}"
        )
    return codes, embeddings
