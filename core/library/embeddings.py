"""Re-rank embeddings of one model in a flat file: a rebuildable cache of the catalog's.

Stage 2 of a search reads the float embeddings of a few hundred candidates picked at random
from the whole library. From SQLite that is one B-tree descent per candidate through a table
as large as the library (512 bytes per photo at 256-d fp16), which costs milliseconds at a
million photos. Here row ``i`` of the file holds the embedding of catalog file id ``i`` at a
fixed offset, so a candidate costs one positional read (``os.pread``) from the OS page cache
and the process keeps no copy in memory (its resident size does not grow with the library).

File layout: a 4 KiB header (magic, JSON with model id, dimension and the catalog generation
the file matches) then fp16 rows of ``dim`` values at ``HEADER + id * dim * 2``; ids without
an embedding read as zeros (never a valid embedding: stored ones are L2-normalised), deleted
ids are zeroed. Like the code index, the file is trusted only when it provably matches the
catalog; otherwise it is rebuilt from the catalog (:func:`open_store`). Rows are written in
place as batches commit, and the generation is stamped by :meth:`EmbeddingStore.save`; a crash
in between leaves a generation behind the catalog's, hence a rebuild on the next open.

Damage is caught twice. On open (:meth:`EmbeddingStore.problems`): the header must name this
model, dimension, catalog generation and the catalog's id set (:class:`~.index.IdDigest`), the
file must reach the highest id's row, and a sample of rows must equal the catalog's bytes. On
every read (:meth:`EmbeddingStore.get`): a row that is not finite, not unit length or zero is
looked up in the catalog (the ``fallback``); a row that differs from the catalog's is reported
(``on_damage``) and the catalog's value is used, so a search never sees NaN or a lost row.
"""

from __future__ import annotations

import json
import logging
import os
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path

import numpy as np

from .index import IdDigest, move_aside

__all__ = ["EmbeddingStore", "open_store"]

logger = logging.getLogger(__name__)

_MAGIC = b"CUKDEMB1"
HEADER = 4096
#: A stored (L2-normalised, fp16) row whose norm is outside this range is damaged.
_NORM_RANGE = (0.5, 2.0)

#: ``fallback(ids)``: the catalog's fp16 embedding bytes of those ids that have one.
Fallback = Callable[[Sequence[int]], dict[int, bytes]]


class EmbeddingStore:
    """fp16 embeddings ``[*, dim]`` addressed by int64 file id.

    Reads (``pread``) and writes (``pwrite``) are positional, so readers need no lock;
    writers are serialised by the library's writer lock.

    Args:
        path: the file (created if missing; a folder in its place is moved aside).
        model_id: model whose embeddings it holds.
        dim: embedding size.
        fallback: where :meth:`get` looks up rows that are missing or look damaged (the
            catalog); without it such rows are left out.
        on_damage: called with the number of rows :meth:`get` found to differ from the
            ``fallback`` (the file needs a rebuild).
    """

    def __init__(
        self, path: str | os.PathLike[str], model_id: str, dim: int, *,
        fallback: Fallback | None = None, on_damage: Callable[[int], None] | None = None,
    ) -> None:
        assert dim > 0, f"dim must be positive, got {dim}"
        self.path = Path(path)
        self.model_id = model_id
        self.dim = int(dim)
        self.row_bytes = 2 * self.dim
        self.fallback = fallback
        self.on_damage = on_damage
        #: Rows found damaged by reads since the last rebuild.
        self.damaged_rows = 0
        #: Set by :func:`open_store`: True when the file was checked against the catalog.
        self.verified = False
        self._zero = bytes(self.row_bytes)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if self.path.is_dir() and not self.path.is_symlink():
            move_aside(self.path)
        self._fd: int | None = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        self._lock = threading.Lock()

    # ----------------------------------------------------------------- header
    def header(self) -> dict | None:
        """The header's fields, or None when the file has no valid header."""
        raw = os.pread(self._fileno(), HEADER, 0)
        if len(raw) < HEADER or raw[:8] != _MAGIC:
            return None
        try:
            h = json.loads(raw[8:].rstrip(b"\0"))
        except ValueError:
            return None
        return h if isinstance(h, dict) else None

    def header_generation(self) -> int | None:
        """The catalog generation the header is stamped with (None: no valid header)."""
        h = self.header()
        g = h.get("generation") if h else None
        return g if isinstance(g, int) else None

    def _write_header(self, generation: int, digest: IdDigest | None = None) -> None:
        fields: dict = {"model_id": self.model_id, "dim": self.dim,
                        "generation": int(generation)}
        if digest is not None:
            fields["ids"] = [int(v) for v in digest]
        body = json.dumps(fields).encode()
        assert len(body) + 8 <= HEADER, "embedding store header too long"
        os.pwrite(self._fileno(), (_MAGIC + body).ljust(HEADER, b"\0"), 0)

    def matches(self, generation: int) -> bool:
        """True if the header says: this model's embeddings at this catalog generation."""
        h = self.header()
        return (h is not None and h.get("model_id") == self.model_id
                and h.get("dim") == self.dim and h.get("generation") == generation)

    def problems(
        self, generation: int, digest: IdDigest | None = None,
        sample: tuple[Sequence[int], Sequence[bytes]] | None = None,
    ) -> list[str]:
        """Why the file cannot be trusted to hold the catalog's embeddings (empty: it can).

        Args:
            generation: the catalog's generation.
            digest: the catalog's ids of this model; the header must record the same, and
                the file must reach the row of the highest id.
            sample: ``(ids, fp16 bytes)`` of a few catalog rows the file must hold exactly.
        """
        h = self.header()
        if h is None:
            return ["no valid header"]
        out = []
        if h.get("model_id") != self.model_id or h.get("dim") != self.dim:
            out.append(f"holds {h.get('model_id')}/{h.get('dim')}")
        if h.get("generation") != generation:
            out.append(f"generation {h.get('generation')} != catalog {generation}")
        if digest is not None:
            if h.get("ids") != [int(v) for v in digest]:
                out.append("its ids differ from the catalog's")
            need = HEADER + (digest.max_id + 1) * self.row_bytes if digest.count else HEADER
            size = os.fstat(self._fileno()).st_size
            if size < need:
                out.append(f"truncated ({size} bytes, the catalog's rows need {need})")
        if sample is not None and len(sample[0]) and not out:
            fd, rb = self._fileno(), self.row_bytes
            bad = sum(os.pread(fd, rb, HEADER + int(i) * rb) != bytes(b)
                      for i, b in zip(sample[0], sample[1], strict=True))
            if bad:
                out.append(f"{bad} of {len(sample[0])} sampled rows differ from the catalog")
        return out

    # ----------------------------------------------------------------- writes
    def _fileno(self) -> int:
        if self._fd is None:
            raise ValueError(f"embedding store {self.path} is closed")
        return self._fd

    def put(self, ids: Iterable[int] | np.ndarray, embeddings: np.ndarray) -> None:
        """Write the rows of ``ids`` (``embeddings`` ``[n, dim]``, stored as fp16)."""
        ids = np.asarray(list(ids) if not isinstance(ids, np.ndarray) else ids, np.int64).ravel()
        emb = np.ascontiguousarray(embeddings, dtype=np.float16).reshape(len(ids), -1)
        assert emb.shape[1] == self.dim or not len(ids), (
            f"embeddings must be [n, {self.dim}], got {emb.shape}")
        fd = self._fileno()
        order = np.argsort(ids, kind="stable")
        ids, emb = ids[order], emb[order]
        s = 0
        while s < len(ids):  # contiguous runs of ids become one write
            e = s + 1
            while e < len(ids) and ids[e] == ids[e - 1] + 1:
                e += 1
            assert ids[s] >= 0, "file ids are non-negative"
            os.pwrite(fd, emb[s:e].tobytes(), HEADER + int(ids[s]) * self.row_bytes)
            s = e

    def clear(self, ids: Iterable[int] | np.ndarray) -> None:
        """Forget the rows of ``ids`` (zeroed where the file reaches them)."""
        fd = self._fileno()
        size = os.fstat(fd).st_size
        for i in np.asarray(list(ids) if not isinstance(ids, np.ndarray) else ids,
                            np.int64).ravel().tolist():
            off = HEADER + i * self.row_bytes
            if i >= 0 and off < size:
                os.pwrite(fd, self._zero, off)

    def rebuild(self, chunks: Iterator[tuple[np.ndarray, np.ndarray]]) -> int:
        """Replace the content by ``(ids, embeddings)`` chunks; returns the row count."""
        with self._lock:
            fd = self._fileno()
            os.ftruncate(fd, 0)
            self._write_header(-1)
            n = 0
            for ids, emb in chunks:
                self.put(ids, emb)
                n += len(ids)
            self.damaged_rows = 0
            return n

    def save(self, generation: int, digest: IdDigest | None = None) -> None:
        """Flush the rows to disk, then stamp the catalog generation (and id set) they match."""
        with self._lock:
            fd = self._fileno()
            os.fsync(fd)
            self._write_header(generation, digest)
            os.fsync(fd)

    # ----------------------------------------------------------------- reads
    def get(self, ids: Iterable[int]) -> tuple[list[int], np.ndarray]:
        """Embeddings of the ids that have one; never a non-finite or damaged row.

        Rows that are zero (no embedding, or lost), short, not finite or not unit length are
        looked up through ``fallback``; those it has are returned with its values, and the
        ones whose bytes differ from the file's are counted as damage (``on_damage``).

        Returns:
            ``(found ids in the given order, float32 [len(found), dim])``.
        """
        fd, rb, zero = self._fileno(), self.row_bytes, self._zero
        want = [int(i) for i in ids if i >= 0]
        raw = [os.pread(fd, rb, HEADER + i * rb) for i in want]
        raw = [b if len(b) == rb else zero for b in raw]
        arr = np.frombuffer(b"".join(raw), dtype=np.float16).reshape(len(want), self.dim)
        with np.errstate(all="ignore"):
            norm = np.linalg.norm(arr.astype(np.float32), axis=1)
        good = np.isfinite(norm) & (norm > _NORM_RANGE[0]) & (norm < _NORM_RANGE[1])
        doubt = np.flatnonzero(~good).tolist()
        if doubt:
            replaced = self._resolve(want, raw, doubt)
            keep = good.copy()
            for j, b in replaced.items():
                raw[j] = b
                keep[j] = True
        else:
            keep = good
        found = [want[j] for j in np.flatnonzero(keep).tolist()]
        rows = [raw[j] for j in np.flatnonzero(keep).tolist()]
        emb = np.frombuffer(b"".join(rows), dtype=np.float16).reshape(len(found), self.dim)
        return found, emb.astype(np.float32)

    def _resolve(self, want: list[int], raw: list[bytes], doubt: list[int]) -> dict[int, bytes]:
        """Positions in ``doubt`` that the fallback can fill, with its bytes."""
        zero = self._zero
        catalog = self.fallback([want[j] for j in doubt]) if self.fallback else {}
        out: dict[int, bytes] = {}
        damaged = 0
        for j in doubt:
            b = catalog.get(want[j])
            if b is None:
                if self.fallback is None and raw[j] != zero:
                    damaged += 1  # without a catalog to ask, a non-zero bad row is damage
                continue
            if bytes(b) != raw[j]:
                damaged += 1
            v = np.frombuffer(b, dtype=np.float16).astype(np.float32)
            if len(v) == self.dim and np.isfinite(v).all() and v.any():
                out[j] = bytes(b)
        if damaged:
            self.damaged_rows += damaged
            logger.warning("embedding store %s: %d damaged row(s) read; using the catalog's",
                           self.path, damaged)
            if self.on_damage is not None:
                self.on_damage(damaged)
        return out

    def close(self) -> None:
        with self._lock:
            if self._fd is not None:
                os.close(self._fd)
                self._fd = None


def open_store(
    path: str | os.PathLike[str], *, model_id: str, dim: int, generation: int,
    rebuild: Callable[[], Iterator[tuple[np.ndarray, np.ndarray]]],
    digest: IdDigest | None = None, sample: tuple[Sequence[int], Sequence[bytes]] | None = None,
    fallback: Fallback | None = None, on_damage: Callable[[int], None] | None = None,
    may_rebuild: bool = True,
) -> tuple[EmbeddingStore, bool]:
    """Open the store file, rebuilding it from the catalog unless it provably matches.

    Args:
        generation, digest, sample: what the file must match (see
            :meth:`EmbeddingStore.problems`).
        rebuild: yields the catalog's ``(ids, embeddings)`` of the model in chunks.
        fallback, on_damage: passed to the store (see :class:`EmbeddingStore`).
        may_rebuild: False when the caller does not hold the writer lock: a file that does
            not match is left alone and the store comes back with ``verified`` False.

    Returns:
        ``(store, rebuilt)``; a rebuilt store is saved (stamped) before returning.
    """
    store = EmbeddingStore(path, model_id, dim, fallback=fallback, on_damage=on_damage)
    problems = store.problems(generation, digest, sample)
    if not problems:
        store.verified = True
        return store, False
    if not may_rebuild:
        logger.info("embedding store %s not usable (%s); another process is writing",
                    path, "; ".join(problems))
        return store, False
    logger.info("embedding store %s: %s; rebuilding from catalog", path, "; ".join(problems))
    n = store.rebuild(rebuild())
    store.save(generation, digest)
    store.verified = True
    logger.info("rebuilt embedding store of %s (%d rows)", model_id, n)
    return store, True
