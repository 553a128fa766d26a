"""Faiss binary index keyed by catalog row id: a rebuildable cache of the catalog's codes.

``faiss.IndexBinaryIDMap2(faiss.IndexBinaryFlat(n_bits))``: exact Hamming search, a few ms
per million 64-bit codes. Saved as one file (header + serialised index) written to a temp
file and ``os.replace``-d, so a crash leaves either the old or the new file. The header
records the model id, code length, entry count, the catalog ``generation`` it matches and a
checksum; :func:`load_or_rebuild` rebuilds from the catalog when the file is missing,
corrupt, for another model, stale (another generation) or holds another set of ids than the
catalog (:class:`IdDigest`, compared on every open).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import struct
import tempfile
import threading
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import NamedTuple

import faiss
import numpy as np

__all__ = [
    "BinaryIndex",
    "IdDigest",
    "IndexLoadError",
    "id_digest",
    "load_or_rebuild",
    "move_aside",
    "remove_stale_temps",
]

logger = logging.getLogger(__name__)

_MAGIC = b"CUKDIDX1"

#: Query batches up to this size are searched on the calling thread only. A flat Hamming scan
#: of a million 64-bit codes takes about a millisecond on one core and gains nothing from a
#: second one, while an OpenMP team competing with busy encoder threads (indexing runs while
#: the user searches) can wait many milliseconds for its workers.
SINGLE_THREAD_QUERIES = 16


@contextmanager
def _threads_for(n_queries: int) -> Iterator[None]:
    """Run faiss with one OpenMP thread for small query batches (per-thread setting)."""
    if n_queries > SINGLE_THREAD_QUERIES:
        yield
        return
    prev = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(1)
    try:
        yield
    finally:
        faiss.omp_set_num_threads(prev)


class IndexLoadError(Exception):
    """An index file is missing, corrupt or does not match what the caller expects."""


#: :class:`IdDigest` mixes each id as ``((id % MOD) * MUL) % MOD`` (the same formula in SQL,
#: see :meth:`core.library.catalog.Catalog.code_digest`; no 64-bit overflow for any row id).
ID_DIGEST_MOD = 1_000_000_007
ID_DIGEST_MUL = 1_654_435_754


class IdDigest(NamedTuple):
    """Order-free summary of a set of row ids: equal sets give equal digests, and a set that
    lost or gained ids almost surely does not (count, sum and a mixed sum must all agree)."""

    count: int
    total: int
    mixed: int
    max_id: int


def id_digest(ids: np.ndarray | Iterable[int]) -> IdDigest:
    """The :class:`IdDigest` of distinct int64 row ids."""
    a = np.asarray(ids if isinstance(ids, np.ndarray) else list(ids), dtype=np.int64).ravel()
    if not len(a):
        return IdDigest(0, 0, 0, -1)
    mixed = (a % ID_DIGEST_MOD) * ID_DIGEST_MUL % ID_DIGEST_MOD
    return IdDigest(len(a), int(a.sum()), int(mixed.sum()), int(a.max()))


#: Temp files this package writes next to its files (``mkstemp(prefix=name + ".")``).
_TEMP_NAME = re.compile(
    r"^(?:[A-Za-z0-9._-]+\.cukd(?:idx|emb)|catalog\.sqlite3)\.[A-Za-z0-9_]{6,12}\.tmp"
    r"(?:-wal|-shm|-journal)?$")


def remove_stale_temps(directory: str | os.PathLike[str]) -> list[Path]:
    """Delete the temp files a killed save left in a library folder (not below it).

    Only regular files named like this package's own temp files are touched. Call it only
    while holding the library's writer lock (a running save of another process owns its
    temp file).

    Returns:
        The removed files.
    """
    removed = []
    try:
        entries = list(os.scandir(directory))
    except OSError:
        return removed
    for e in entries:
        if _TEMP_NAME.match(e.name) and e.is_file(follow_symlinks=False):
            try:
                os.unlink(e.path)
                removed.append(Path(e.path))
            except OSError as exc:
                logger.warning("could not remove stale temp file %s: %s", e.path, exc)
    if removed:
        logger.info("removed %d stale temp file(s) in %s", len(removed), directory)
    return removed


def move_aside(path: str | os.PathLike[str], why: str = "was in the way") -> Path:
    """Rename a damaged library file, or something that blocks one (a folder where an index
    file belongs), to ``<name>.broken`` (or ``.broken-2`` ...) in the same folder."""
    p = Path(path)
    for n in range(1, 1000):
        target = p.with_name(p.name + (".broken" if n == 1 else f".broken-{n}"))
        if not target.exists() and not target.is_symlink():
            os.rename(p, target)
            logger.warning("%s %s; moved it to %s", p, why, target)
            return target
    raise OSError(f"cannot move {p} aside: too many .broken copies")


class BinaryIndex:
    """Thread-safe Hamming index of packed codes keyed by int64 ids.

    One lock serialises writers and readers (faiss is not safe to search while adding);
    exact searches over a million codes take milliseconds, so readers barely wait.

    Args:
        n_bits: code length, a multiple of 8.
        model_id: model whose codes this holds (recorded in saved files).
    """

    def __init__(self, n_bits: int, model_id: str = "") -> None:
        assert n_bits % 8 == 0 and n_bits > 0, f"n_bits must be a multiple of 8, got {n_bits}"
        self.n_bits = n_bits
        self.model_id = model_id
        self.generation = -1
        self._lock = threading.RLock()
        self._index = faiss.IndexBinaryIDMap2(faiss.IndexBinaryFlat(n_bits))

    @property
    def ntotal(self) -> int:
        """Number of codes."""
        with self._lock:
            return int(self._index.ntotal)

    def __len__(self) -> int:
        return self.ntotal

    def _check(self, codes: np.ndarray) -> np.ndarray:
        codes = np.ascontiguousarray(codes, dtype=np.uint8)
        if codes.ndim == 1:
            codes = codes[None]
        assert codes.shape[1] == self.n_bits // 8, (
            f"codes must be [N, {self.n_bits // 8}] uint8, got {codes.shape}")
        return codes

    def add(self, ids: Iterable[int] | np.ndarray, codes: np.ndarray) -> None:
        """Add or replace codes ``[N, n_bits//8]`` under ``ids`` (existing ids are replaced)."""
        ids = np.ascontiguousarray(np.asarray(ids, dtype=np.int64).ravel())
        codes = self._check(codes)
        assert len(ids) == len(codes), "ids and codes differ in length"
        if not len(ids):
            return
        with self._lock:
            self._index.remove_ids(ids)
            self._index.add_with_ids(codes, ids)

    def remove(self, ids: Iterable[int] | np.ndarray) -> int:
        """Remove ids (unknown ids are ignored); returns how many were removed."""
        ids = np.ascontiguousarray(np.asarray(list(ids) if not isinstance(ids, np.ndarray)
                                              else ids, dtype=np.int64).ravel())
        if not len(ids):
            return 0
        with self._lock:
            return int(self._index.remove_ids(ids))

    def reconstruct(self, file_id: int) -> np.ndarray | None:
        """The stored code of an id, or None."""
        with self._lock:
            try:
                return self._index.reconstruct(int(file_id))
            except RuntimeError:
                return None

    def search(self, codes: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """k nearest codes by Hamming distance.

        Returns:
            ``(distances int32 [Q, k], ids int64 [Q, k])``; missing slots have id -1.
        """
        codes = self._check(codes)
        with self._lock:
            k = max(1, min(int(k), max(1, int(self._index.ntotal))))
            with _threads_for(len(codes)):
                d, i = self._index.search(codes, k)
        return d.astype(np.int32), i

    def range_search(self, codes: np.ndarray, radius: int) -> list[tuple[np.ndarray, np.ndarray]]:
        """All codes within Hamming distance ``<= radius`` of each query.

        Returns:
            One ``(distances int32 [m], ids int64 [m])`` per query, sorted by distance.
        """
        codes = self._check(codes)
        with self._lock:
            if self._index.ntotal == 0:
                return [(np.zeros(0, np.int32), np.zeros(0, np.int64)) for _ in codes]
            # faiss' binary range search is strict (< radius).
            with _threads_for(len(codes)):
                lims, d, i = self._index.range_search(codes, int(radius) + 1)
        out = []
        for q in range(len(codes)):
            dq = d[lims[q]:lims[q + 1]].astype(np.int32)
            iq = i[lims[q]:lims[q + 1]].astype(np.int64)
            order = np.argsort(dq, kind="stable")
            out.append((dq[order], iq[order]))
        return out

    def ids(self) -> np.ndarray:
        """All ids in the index (int64)."""
        with self._lock:
            n = self._index.ntotal
            return faiss.vector_to_array(self._index.id_map).astype(np.int64)[:n]

    # ----------------------------------------------------------------- persistence
    def save(self, path: str | os.PathLike[str], generation: int | None = None) -> None:
        """Write atomically (temp file in the same folder + ``os.replace``)."""
        p = Path(path)
        p.parent.mkdir(parents=True, exist_ok=True)
        if p.is_dir() and not p.is_symlink():
            move_aside(p)
        with self._lock:
            if generation is not None:
                self.generation = generation
            payload = faiss.serialize_index_binary(self._index).tobytes()
            header = json.dumps({
                "model_id": self.model_id, "n_bits": self.n_bits,
                "ntotal": int(self._index.ntotal), "generation": self.generation,
                "blake2b": hashlib.blake2b(payload, digest_size=16).hexdigest(),
            }).encode()
        fd, tmp = tempfile.mkstemp(prefix=p.name + ".", suffix=".tmp", dir=p.parent)
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(_MAGIC + struct.pack("<I", len(header)) + header + payload)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, p)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> BinaryIndex:
        """Read a file written by :meth:`save`.

        Raises:
            IndexLoadError: missing, truncated, corrupt or inconsistent file.
        """
        try:
            data = Path(path).read_bytes()
        except OSError as exc:
            raise IndexLoadError(f"{path}: {exc}") from exc
        if len(data) < 12 or data[:8] != _MAGIC:
            raise IndexLoadError(f"{path}: not an index file")
        (hlen,) = struct.unpack("<I", data[8:12])
        try:
            header = json.loads(data[12:12 + hlen])
            payload = data[12 + hlen:]
            if hashlib.blake2b(payload, digest_size=16).hexdigest() != header["blake2b"]:
                raise IndexLoadError(f"{path}: checksum mismatch")
            raw = faiss.deserialize_index_binary(np.frombuffer(payload, dtype=np.uint8))
        except IndexLoadError:
            raise
        except Exception as exc:  # json, KeyError, faiss RuntimeError
            raise IndexLoadError(f"{path}: corrupt ({exc})") from exc
        if raw.ntotal != header["ntotal"] or raw.d != header["n_bits"]:
            raise IndexLoadError(f"{path}: header does not match index")
        idx = cls(int(header["n_bits"]), str(header["model_id"]))
        idx._index = faiss.downcast_IndexBinary(raw) if not isinstance(
            raw, faiss.IndexBinaryIDMap2) else raw
        if not isinstance(idx._index, faiss.IndexBinaryIDMap2):
            raise IndexLoadError(f"{path}: unexpected index type {type(idx._index).__name__}")
        idx.generation = int(header["generation"])
        return idx


def load_or_rebuild(
    path: str | os.PathLike[str],
    *,
    model_id: str,
    n_bits: int,
    generation: int,
    expected_count: int,
    rebuild: Callable[[BinaryIndex], None],
    expected_digest: IdDigest | None = None,
    save: bool = True,
) -> tuple[BinaryIndex, bool]:
    """Load a saved index, or rebuild it when missing, corrupt, foreign or stale.

    Args:
        path: index file.
        model_id, n_bits: what the index must hold.
        generation: the catalog's current generation; any other value means stale.
        expected_count: how many codes the catalog has for the model.
        rebuild: fills an empty index from the catalog.
        expected_digest: the catalog's ids for the model; the loaded index's ids must match.
        save: save a rebuilt index (callers that do not hold the writer lock pass False).

    Returns:
        ``(index, rebuilt)``; a rebuilt index is saved before returning when ``save``.
    """
    try:
        idx = BinaryIndex.load(path)
        problems = []
        if idx.model_id != model_id or idx.n_bits != n_bits:
            problems.append(f"model {idx.model_id}/{idx.n_bits} != {model_id}/{n_bits}")
        if idx.generation != generation:
            problems.append(f"generation {idx.generation} != catalog {generation}")
        if idx.ntotal != expected_count:
            problems.append(f"{idx.ntotal} codes != catalog {expected_count}")
        elif expected_digest is not None and id_digest(idx.ids()) != expected_digest:
            problems.append("its ids differ from the catalog's")
        if not problems:
            return idx, False
        logger.info("index %s is stale (%s); rebuilding", path, "; ".join(problems))
    except IndexLoadError as exc:
        if Path(path).exists():
            logger.warning("index unusable, rebuilding from catalog: %s", exc)
        else:
            logger.info("no index at %s; building from catalog", path)
    idx = BinaryIndex(n_bits, model_id)
    rebuild(idx)
    idx.generation = generation
    if save:
        idx.save(path, generation)
    return idx, True
