"""The encoding API: images → packed binary codes and float embeddings.

One call, :meth:`Encoder.encode`, is used by the library engine (it satisfies
:class:`core.library.encoder.ImageEncoder`), the CLI (``cukd encode`` / ``cukd evaluate``) and
fine-tuning validation. An encoder is a student (CUKDFIR, Reddy et al., arXiv:2207.09070) plus
the hash head stored in its model file:

* ``hash_head["kind"] == "linear"``: a trained :class:`~core.hash_head.HashHead` (CSQ, Yuan et
  al. CVPR 2020, or DCH, Cao et al. CVPR 2018; see :mod:`core.finetune`);
* ``hash_head["kind"] == "itq"``: unsupervised PCA + ITQ (Gong & Lazebnik, CVPR 2011), turned
  into the same linear layer by :meth:`core.itq.ITQModel.as_linear`.

The pipeline for a batch of whole RGB images (no centre crop — DESIGN.md)::

    x = squash-resize to input_size, uint8 [B, 3, S, S]
    f = student(x)                                     [B, D]
    h = l2_normalize(f) if head["normalize"] else f    input of the hash layer
    codes = pack_codes(head(h))                        uint8 [B, n_bits / 8], big-endian bits
    emb = l2_normalize((f_l2 - mean) @ P)              float32 [B, E]

The re-ranking embedding is the L2-normalised student feature, optionally reduced by a PCA
(``mean [D]``, ``projection [D, E]``) stored as ``hash_head["embedding"]``; without it
``E = D``. Keep this simple: cosine on the student's own feature is what re-ranking needs.
"""

from __future__ import annotations

import hashlib
import io
import logging
import os
import threading
from collections.abc import Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from core.checkpoint import CheckpointError, load_model_file, student_from_dict
from core.hash_head import HashHead, pack_codes
from core.imageio import ImageLoadError, load_image
from core.itq import ITQModel
from core.models.fuse import fold_batchnorm
from core.models.students import Student
from core.preprocess import to_tensor

__all__ = [
    "Encoder",
    "PathEncoding",
    "build_hash_head",
    "file_model_id",
    "head_input",
    "iter_image_batches",
]

log = logging.getLogger(__name__)


def file_model_id(path: str | os.PathLike[str]) -> str:
    """Stable model id: the first 16 hex digits of the file's sha256."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()[:16]


def head_input(features: torch.Tensor, normalize: bool) -> torch.Tensor:
    """Input of the hash layer: ``[B, D]`` student features, L2-normalised when asked."""
    return F.normalize(features.float(), dim=1) if normalize else features.float()


def build_hash_head(spec: dict[str, Any]) -> HashHead:
    """Rebuild the hash layer of a model file's ``hash_head`` entry (eval mode).

    Args:
        spec: ``{"kind": "linear" | "itq", "n_bits": K, "state": {...}, "in_dim": D, ...}``.
            ``linear`` states are :class:`HashHead` state dicts (``batch_norm`` says whether it
            has the BatchNorm layer); ``itq`` states are :meth:`ITQModel.to_state` tensors.

    Raises:
        CheckpointError: on an unknown kind or tensors that do not fit.
    """
    kind = spec.get("kind")
    try:
        if kind == "itq":
            itq = ITQModel.from_state(spec["state"])
            head = HashHead(itq.in_dim, itq.n_bits)
            head.load_linear(*itq.as_linear())
        elif kind == "linear":
            state = spec["state"]
            in_dim = int(spec.get("in_dim", state["fc.weight"].shape[1]))
            head = HashHead(in_dim, int(spec["n_bits"]), batch_norm=bool(spec.get("batch_norm")))
            head.load_state_dict(state, strict=True)
        else:
            raise CheckpointError(f"unknown hash head kind {kind!r}")
    except (KeyError, ValueError, RuntimeError) as exc:
        if isinstance(exc, CheckpointError):
            raise
        raise CheckpointError(f"invalid {kind} hash head: {exc}") from exc
    if head.n_bits != int(spec.get("n_bits", head.n_bits)) or head.n_bits % 8:
        raise CheckpointError(f"hash head has {head.n_bits} bits, a multiple of 8 is required")
    return head.eval()


def _load_resized(path: Path, size: int) -> Image.Image | str:
    """Decode (JPEG draft ≥ ``size``) and squash-resize; an error message on failure."""
    try:
        im = load_image(path, draft_size=size)
    except ImageLoadError as exc:
        return str(exc)
    return im.resize((size, size), Image.BILINEAR, reducing_gap=3.0)


def iter_image_batches(
    paths: Sequence[str | os.PathLike[str]], size: int, batch_size: int = 64, threads: int = 2
) -> Iterator[tuple[list[int], torch.Tensor | None, list[tuple[int, str]]]]:
    """Decode images in a thread pool and yield whole-frame (squash-resized) batches.

    The next batch is decoding while the caller works on the current one (PIL releases the
    GIL), so decoding overlaps the network instead of adding to it.

    Yields:
        ``(indices, pixels, failures)`` per chunk of ``batch_size`` paths: the indices into
        ``paths`` of the readable images, their uint8 ``[b, 3, size, size]`` pixels (``None``
        when none was readable) and ``(index, message)`` for unreadable files.
    """
    starts = range(0, len(paths), batch_size)
    with ThreadPoolExecutor(max(1, threads)) as pool:
        def submit(start: int) -> tuple[list[int], list[Future]]:
            idx = list(range(start, min(start + batch_size, len(paths))))
            return idx, [pool.submit(_load_resized, Path(paths[i]), size) for i in idx]

        ahead = submit(starts[0]) if starts else None
        for k in range(len(starts)):
            assert ahead is not None
            idx, futures = ahead
            loaded = [f.result() for f in futures]
            ahead = submit(starts[k + 1]) if k + 1 < len(starts) else None
            ok = [(i, im) for i, im in zip(idx, loaded, strict=True) if not isinstance(im, str)]
            bad = [(i, im) for i, im in zip(idx, loaded, strict=True) if isinstance(im, str)]
            px = to_tensor([im for _, im in ok]) if ok else None
            yield [i for i, _ in ok], px, bad


@dataclass
class PathEncoding:
    """Result of :meth:`Encoder.encode_paths`.

    Attributes:
        paths: the readable images, in input order.
        codes: uint8 ``[N, n_bits // 8]`` codes of ``paths``.
        embeddings: float32 ``[N, embed_dim]`` L2-normalised embeddings of ``paths``.
        failed: ``(path, message)`` of every unreadable file.
    """

    paths: list[Path]
    codes: np.ndarray
    embeddings: np.ndarray
    failed: list[tuple[Path, str]] = field(default_factory=list)


class Encoder:
    """A student with its hash head, ready to encode images (see the module docstring).

    Satisfies :class:`core.library.encoder.ImageEncoder`. Thread-safe: forward passes are
    serialised by a lock, so the scanner and interactive queries may share one encoder.

    Attributes:
        model_id: first 16 hex digits of the model file's sha256 (stable across runs).
        n_bits: code length.
        embed_dim: size of the re-ranking embedding.
        input_size: square input side in pixels.
        student: the backbone (eval mode); ``head``: the hash layer (eval mode).
        model: the model file dict it was built from.
        path: the model file, or ``None`` when built in memory.
    """

    def __init__(self, student: Student, head_spec: dict[str, Any], *, model_id: str,
                 model: dict | None = None, path: Path | None = None, batch_size: int = 64,
                 device: str | torch.device = "cpu") -> None:
        self.device = torch.device(device)
        # BatchNorm folded into the convolutions: same features, ~1.4x faster on CPU.
        self.student = fold_batchnorm(student).to(self.device)
        self.head = build_hash_head(head_spec).to(self.device)
        if self.head.in_dim != student.feature_dim:
            raise CheckpointError(f"hash head expects {self.head.in_dim}-d features, the "
                                  f"student gives {student.feature_dim}")
        self.head_spec = head_spec
        self.normalize = bool(head_spec.get("normalize", False))
        ndc = head_spec.get("near_duplicate_cosine")
        #: Cosine of two embeddings above which the library calls them near-duplicates,
        #: calibrated when the head was made (None: the library's fallback).
        self.near_duplicate_cosine = float(ndc) if ndc is not None else None
        self.model_id = model_id
        self.n_bits = self.head.n_bits
        self.input_size = int(student.preprocess.input_size)
        self.batch_size = int(batch_size)
        self.model = model or {}
        self.path = path
        emb = head_spec.get("embedding")
        self._emb_mean: torch.Tensor | None = None
        self._emb_proj: torch.Tensor | None = None
        if emb:
            mean = torch.as_tensor(emb["mean"], dtype=torch.float32)
            proj = torch.as_tensor(emb["projection"], dtype=torch.float32)
            if mean.shape != (student.feature_dim,) or proj.shape[0] != student.feature_dim:
                raise CheckpointError(f"embedding PCA of shape {tuple(proj.shape)} does not fit "
                                      f"{student.feature_dim}-d features")
            self._emb_mean, self._emb_proj = mean.to(self.device), proj.to(self.device)
        self.embed_dim = (int(self._emb_proj.shape[1]) if self._emb_proj is not None
                          else student.feature_dim)
        self._lock = threading.Lock()

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_dict(cls, model: dict, *, model_id: str | None = None, path: Path | None = None,
                  **kwargs: Any) -> Encoder:
        """Build from a model file dict (see :mod:`core.checkpoint`).

        Raises:
            CheckpointError: when the model has no hash head or the head does not fit.
        """
        spec = model.get("hash_head")
        if not spec:
            raise CheckpointError("this model has no hash head; fit one with `cukd itq` "
                                  "or train one with `cukd finetune`")
        if model_id is None:
            buf = io.BytesIO()
            torch.save(model, buf)
            model_id = hashlib.sha256(buf.getvalue()).hexdigest()[:16]
        return cls(student_from_dict(model), spec, model_id=model_id, model=model, path=path,
                   **kwargs)

    @classmethod
    def from_file(cls, path: str | os.PathLike[str], **kwargs: Any) -> Encoder:
        """Load a model file (``weights_only``); ``model_id`` is its sha256 prefix."""
        path = Path(path)
        return cls.from_dict(load_model_file(path), model_id=file_model_id(path), path=path,
                             **kwargs)

    # ------------------------------------------------------------------ encoding
    @torch.no_grad()
    def _forward(self, x: torch.Tensor) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        f = self.student(x.to(self.device)).float()
        u = self.head(head_input(f, self.normalize))
        e = F.normalize(f, dim=1)
        if self._emb_proj is not None:
            e = F.normalize((e - self._emb_mean) @ self._emb_proj, dim=1)
        return pack_codes(u), e.cpu().numpy().astype(np.float32), f.cpu().numpy()

    def encode_pixels(self, x: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
        """Encode already resized uint8 pixels ``[N, 3, S, S]`` (batched, eval, no grad).

        Returns:
            ``(codes uint8 [N, n_bits // 8], embeddings float32 [N, embed_dim])``.
        """
        codes = [np.zeros((0, self.n_bits // 8), np.uint8)]
        embs = [np.zeros((0, self.embed_dim), np.float32)]
        with self._lock:
            for i in range(0, len(x), self.batch_size):
                c, e, _ = self._forward(x[i:i + self.batch_size])
                codes.append(c)
                embs.append(e)
        return np.concatenate(codes), np.concatenate(embs)

    def encode(self, images: Sequence[Image.Image]) -> tuple[np.ndarray, np.ndarray]:
        """Encode whole RGB images (squash-resized to ``input_size``, no centre crop).

        Returns:
            ``(codes, embeddings)``: uint8 ``[N, n_bits // 8]`` packed sign bits (big-endian
            within a byte) and float32 ``[N, embed_dim]`` L2-normalised embeddings.
        """
        codes = [np.zeros((0, self.n_bits // 8), np.uint8)]
        embs = [np.zeros((0, self.embed_dim), np.float32)]
        s = self.input_size
        for i in range(0, len(images), self.batch_size):
            chunk = images[i:i + self.batch_size]
            x = to_tensor([im.convert("RGB").resize((s, s), Image.BILINEAR, reducing_gap=3.0)
                           for im in chunk])
            c, e = self.encode_pixels(x)
            codes.append(c)
            embs.append(e)
        return np.concatenate(codes), np.concatenate(embs)

    def features(self, x: torch.Tensor) -> np.ndarray:
        """Raw student features float32 ``[N, D]`` of uint8 pixels ``[N, 3, S, S]``."""
        out = [np.zeros((0, self.student.feature_dim), np.float32)]
        with self._lock:
            for i in range(0, len(x), self.batch_size):
                out.append(self._forward(x[i:i + self.batch_size])[2])
        return np.concatenate(out)

    def encode_paths(self, paths: Sequence[str | os.PathLike[str]], *, threads: int = 2,
                     on_progress: Any = None, should_stop: Any = None) -> PathEncoding:
        """Decode and encode image files; unreadable files are reported, never raised.

        Args:
            paths: image files.
            threads: decoding threads.
            on_progress: ``on_progress(done, total)`` after each batch.
            should_stop: polled between batches; a stop returns what was encoded so far.
        """
        ok: list[Path] = []
        failed: list[tuple[Path, str]] = []
        codes = [np.zeros((0, self.n_bits // 8), np.uint8)]
        embs = [np.zeros((0, self.embed_dim), np.float32)]
        done = 0
        for idx, px, bad in iter_image_batches(paths, self.input_size, self.batch_size, threads):
            for i, msg in bad:
                log.warning("cannot encode %s", msg)
                failed.append((Path(paths[i]), msg))
            if px is not None:
                c, e = self.encode_pixels(px)
                codes.append(c)
                embs.append(e)
                ok.extend(Path(paths[i]) for i in idx)
            done += len(idx) + len(bad)
            if on_progress:
                on_progress(done, len(paths))
            if should_stop and should_stop():
                break
        return PathEncoding(ok, np.concatenate(codes), np.concatenate(embs), failed)

    def __repr__(self) -> str:
        kind = self.head_spec.get("kind")
        return (f"Encoder({self.model_id}, {self.student.arch}, {kind} {self.n_bits} bits, "
                f"embed {self.embed_dim}, {self.input_size} px)")
