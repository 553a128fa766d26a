"""A deterministic, cheap encoder so library tests and benchmarks need no torch model."""

from __future__ import annotations

import time
from collections.abc import Sequence

import numpy as np
from PIL import Image

from .encoder import pack_signs

__all__ = ["TinyEncoder"]


class TinyEncoder:
    """Whole image → 8x8 RGB thumbnail → fixed random projections.

    Codes are the signs of one projection, embeddings the L2-normalised other projection.
    Similar-looking images get close codes and embeddings, which is all the engine's tests
    need. Satisfies :class:`core.library.encoder.ImageEncoder`.

    Args:
        n_bits: code length (multiple of 8).
        embed_dim: embedding size.
        seed: projection seed; part of ``model_id`` so two seeds are two models.
        delay_s: artificial seconds per ``encode`` call (to test cancellation and kills).
        near_duplicate_cosine: the model's calibrated near-duplicate cosine (``None``: none).
    """

    input_size = 32

    def __init__(
        self, n_bits: int = 64, embed_dim: int = 32, seed: int = 0, delay_s: float = 0.0,
        near_duplicate_cosine: float | None = None,
    ) -> None:
        assert n_bits % 8 == 0 and n_bits > 0, f"n_bits must be a multiple of 8, got {n_bits}"
        self.n_bits = n_bits
        self.embed_dim = embed_dim
        self.seed = seed
        self.delay_s = delay_s
        self.near_duplicate_cosine = near_duplicate_cosine
        self.model_id = f"tiny-{n_bits}b-{embed_dim}d-s{seed}"
        rng = np.random.default_rng(seed)
        self._w_code = rng.standard_normal((192, n_bits)).astype(np.float32)
        self._w_emb = rng.standard_normal((192, embed_dim)).astype(np.float32)
        self.calls = 0

    def features(self, images: Sequence[Image.Image]) -> np.ndarray:
        """Centred 8x8 RGB thumbnails, float32 ``[N, 192]``."""
        x = np.stack(
            [
                np.asarray(im.convert("RGB").resize((8, 8), Image.Resampling.BILINEAR),
                           dtype=np.float32).ravel()
                for im in images
            ]
        ) if images else np.zeros((0, 192), np.float32)
        return x / 255.0 - 0.5

    def encode(self, images: Sequence[Image.Image]) -> tuple[np.ndarray, np.ndarray]:
        """Returns ``(codes uint8 [N, n_bits//8], embeddings float32 [N, embed_dim])``."""
        self.calls += 1
        if self.delay_s:
            time.sleep(self.delay_s)
        x = self.features(images)
        codes = pack_signs(x @ self._w_code)
        emb = x @ self._w_emb
        emb /= np.maximum(np.linalg.norm(emb, axis=1, keepdims=True), 1e-12)
        return codes, emb.astype(np.float32)
