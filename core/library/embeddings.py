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
ids are zeroed. Like the code index, the file is trusted only when its generation equals the
catalog's; otherwise it is rebuilt from the catalog (:func:`open_store`). Rows are written in
place as batches commit, and the generation is stamped by :meth:`EmbeddingStore.save`; a crash
in between leaves a generation behind the catalog's, hence a rebuild on the next open.
"""

from __future__ import annotations

import json
import logging
import os
import threading
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

import numpy as np

__all__ = ["EmbeddingStore", "open_store"]

logger = logging.getLogger(__name__)

_MAGIC = b"CUKDEMB1"
HEADER = 4096


class EmbeddingStore:
    """fp16 embeddings ``[*, dim]`` addressed by int64 file id.

    Reads (``pread``) and writes (``pwrite``) are positional, so readers need no lock;
    writers are serialised by the library's writer lock.

    Args:
        path: the file (created if missing).
        model_id: model whose embeddings it holds.
        dim: embedding size.
    """

    def __init__(self, path: str | os.PathLike[str], model_id: str, dim: int) -> None:
        assert dim > 0, f"dim must be positive, got {dim}"
        self.path = Path(path)
        self.model_id = model_id
        self.dim = int(dim)
        self.row_bytes = 2 * self.dim
        self._zero = bytes(self.row_bytes)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._fd: int | None = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        self._lock = threading.Lock()

    # ----------------------------------------------------------------- header
    def header(self) -> dict | None:
        """The header's fields, or None when the file has no valid header."""
        raw = os.pread(self._fileno(), HEADER, 0)
        if len(raw) < HEADER or raw[:8] != _MAGIC:
            return None
        try:
            return json.loads(raw[8:].rstrip(b"\0"))
        except ValueError:
            return None

    def _write_header(self, generation: int) -> None:
        body = json.dumps({"model_id": self.model_id, "dim": self.dim,
                           "generation": int(generation)}).encode()
        assert len(body) + 8 <= HEADER, "embedding store header too long"
        os.pwrite(self._fileno(), (_MAGIC + body).ljust(HEADER, b"\0"), 0)

    def matches(self, generation: int) -> bool:
        """True if the file holds this model's embeddings at this catalog generation."""
        h = self.header()
        return (h is not None and h.get("model_id") == self.model_id
                and h.get("dim") == self.dim and h.get("generation") == generation)

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
            return n

    def save(self, generation: int) -> None:
        """Flush the rows to disk, then stamp the catalog generation they match."""
        with self._lock:
            fd = self._fileno()
            os.fsync(fd)
            self._write_header(generation)
            os.fsync(fd)

    # ----------------------------------------------------------------- reads
    def get(self, ids: Iterable[int]) -> tuple[list[int], np.ndarray]:
        """Embeddings of the ids that have one.

        Returns:
            ``(found ids in the given order, float32 [len(found), dim])``.
        """
        fd, rb, zero = self._fileno(), self.row_bytes, self._zero
        found: list[int] = []
        rows: list[bytes] = []
        for i in ids:
            if i < 0:
                continue
            b = os.pread(fd, rb, HEADER + i * rb)
            if len(b) == rb and b != zero:
                found.append(i)
                rows.append(b)
        emb = np.frombuffer(b"".join(rows), dtype=np.float16).reshape(len(found), self.dim)
        return found, emb.astype(np.float32)

    def close(self) -> None:
        with self._lock:
            if self._fd is not None:
                os.close(self._fd)
                self._fd = None


def open_store(
    path: str | os.PathLike[str], *, model_id: str, dim: int, generation: int,
    rebuild: Callable[[], Iterator[tuple[np.ndarray, np.ndarray]]],
) -> tuple[EmbeddingStore, bool]:
    """Open the store file, rebuilding it from the catalog unless it matches ``generation``.

    Args:
        rebuild: yields the catalog's ``(ids, embeddings)`` of the model in chunks.

    Returns:
        ``(store, rebuilt)``; a rebuilt store is saved (stamped) before returning.
    """
    store = EmbeddingStore(path, model_id, dim)
    if store.matches(generation):
        return store, False
    h = store.header()
    logger.info("embedding store %s %s; rebuilding from catalog", path,
                "missing" if h is None else f"stale ({h})")
    n = store.rebuild(rebuild())
    store.save(generation)
    logger.info("rebuilt embedding store of %s (%d rows)", model_id, n)
    return store, True
