"""Retrieval evaluation over Hamming ranking (protocol of DCH CVPR 2018, CSQ CVPR 2020, CUKDFIR).

Everything is vectorised with numpy: queries are processed in chunks of ``chunk_size`` against
the whole database (no Python loop per query), so memory is ``O(chunk_size * N_db)``.

Conventions (each is what the paper code computes unless said otherwise):

* **Relevance**: a database item is relevant to a query when they share at least one label.
  Labels are either an integer class vector ``[N]`` or a one-/multi-hot matrix ``[N, C]``; query
  and database labels must use the same form.
* **Ranking**: by Hamming distance, ties broken by database index (stable sort), so results
  are deterministic. Float features (:func:`map_float`) rank by cosine similarity, ties again by
  database index.
* **AP@k** (DeepHash ``CalcTopMap``): ``sum_{i<=k} rel_i * P@i / R_k`` with ``R_k`` the number of
  relevant items in the top ``k``; a query with ``R_k = 0`` has AP 0 and still counts in the mean.
  ``mAP@all`` uses ``k = N_db``.
* **Precision@k**: relevant items in the top ``k`` divided by ``k`` (``k`` is capped at
  ``N_db``).
* **Precision within Hamming radius r** (``r = 2`` by default, as in DCH): relevant / retrieved
  among database items at distance ``<= r``; a query that retrieves nothing scores **0** (the
  DCH convention, which penalises codes that scatter similar items).
* **PR curve over Hamming radii** ``r = 0..K``: precision is averaged over the queries that
  retrieve at least one item within ``r`` (``NaN`` if none does), recall over the queries that
  have at least one relevant item in the database.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

__all__ = [
    "EvalResult",
    "count_params",
    "evaluate_codes",
    "hamming_distance",
    "map_float",
    "mean_average_precision",
    "save_pr_curve",
]

logger = logging.getLogger(__name__)

ArrayLike = np.ndarray | torch.Tensor
ProgressFn = Callable[[int, int], None]


@dataclass(frozen=True)
class EvalResult:
    """Retrieval metrics of one set of codes.

    Attributes:
        map: mAP over the whole database (mAP@all).
        map_at: ``{k: mAP@k}``.
        precision_at: ``{k: precision@k}``.
        precision_radius: mean precision within Hamming radius ``radius`` (no hit = 0).
        radius: the radius of ``precision_radius``.
        pr_precision: precision at Hamming radius ``0..n_bits`` (``NaN`` where undefined).
        pr_recall: recall at Hamming radius ``0..n_bits``.
        n_queries: number of queries.
        n_database: number of database items.
        n_bits: code length.
    """

    map: float
    map_at: dict[int, float] = field(default_factory=dict)
    precision_at: dict[int, float] = field(default_factory=dict)
    precision_radius: float = math.nan
    radius: int = 2
    pr_precision: tuple[float, ...] = ()
    pr_recall: tuple[float, ...] = ()
    n_queries: int = 0
    n_database: int = 0
    n_bits: int = 0

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict: int keys become strings, ``NaN`` becomes ``None``."""

        def clean(v: Any) -> Any:
            if isinstance(v, float) and math.isnan(v):
                return None
            if isinstance(v, dict):
                return {str(k): clean(x) for k, x in v.items()}
            if isinstance(v, list | tuple):
                return [clean(x) for x in v]
            return v

        return {k: clean(v) for k, v in asdict(self).items()}


def _to_numpy(x: ArrayLike) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        return x.detach().cpu().numpy()
    return np.asarray(x)


def _check_codes(query: ArrayLike, db: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    q, d = _to_numpy(query), _to_numpy(db)
    for name, c in (("query_codes", q), ("db_codes", d)):
        if c.ndim != 2 or c.dtype != np.uint8:
            raise ValueError(f"{name} must be packed uint8 [N, n_bytes], got {c.dtype} {c.shape}")
    if q.shape[1] != d.shape[1]:
        raise ValueError(f"query codes have {q.shape[1]} bytes, database codes {d.shape[1]}")
    if len(d) == 0:
        raise ValueError("the database is empty")
    return q, d


def _check_labels(
    query_labels: ArrayLike, db_labels: ArrayLike, n_query: int, n_db: int
) -> tuple[np.ndarray, np.ndarray]:
    ql, dl = _to_numpy(query_labels), _to_numpy(db_labels)
    if ql.ndim != dl.ndim or ql.ndim not in (1, 2):
        raise ValueError(
            "labels must both be integer vectors [N] or both one-/multi-hot matrices [N, C], "
            f"got shapes {ql.shape} and {dl.shape}"
        )
    if ql.ndim == 2 and ql.shape[1] != dl.shape[1]:
        raise ValueError(f"query labels have {ql.shape[1]} classes, database {dl.shape[1]}")
    if len(ql) != n_query or len(dl) != n_db:
        raise ValueError(
            f"{len(ql)} query labels for {n_query} queries or "
            f"{len(dl)} database labels for {n_db} items"
        )
    if ql.ndim == 2:
        return ql.astype(np.float32), dl.astype(np.float32)
    return ql, dl


def _relevance(ql: np.ndarray, dl: np.ndarray) -> np.ndarray:
    """``[q, N_db]`` bool: shares at least one label."""
    if ql.ndim == 1:
        return ql[:, None] == dl[None, :]
    return (ql @ dl.T) > 0


def _signed_bits(codes: np.ndarray) -> np.ndarray:
    return np.unpackbits(codes, axis=1).astype(np.float32) * 2.0 - 1.0


def hamming_distance(query_codes: ArrayLike, db_codes: ArrayLike) -> np.ndarray:
    """Hamming distances between packed codes.

    Args:
        query_codes: ``[Nq, n_bytes]`` uint8.
        db_codes: ``[Nd, n_bytes]`` uint8.

    Returns:
        ``[Nq, Nd]`` int32 distances.
    """
    q, d = _check_codes(query_codes, db_codes)
    return _hamming(_signed_bits(q), _signed_bits(d))


def _hamming(q_signed: np.ndarray, d_signed: np.ndarray) -> np.ndarray:
    n_bits = q_signed.shape[1]
    # exact: products of ±1 floats sum to integers far below 2**24
    return np.rint((n_bits - q_signed @ d_signed.T) * 0.5).astype(np.int32)


_CHUNK_ELEMENTS = 4_000_000


def _chunk(chunk_size: int | None, n_db: int) -> int:
    if chunk_size is None:
        return max(1, _CHUNK_ELEMENTS // max(n_db, 1))
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
    return int(chunk_size)


def _ks(ks: int | Sequence[int] | None) -> list[int]:
    if ks is None:
        return []
    ks = [ks] if isinstance(ks, int) else list(ks)
    if any(k < 1 for k in ks):
        raise ValueError(f"k must be >= 1, got {ks}")
    return ks


class _RankStats:
    """Accumulates AP@k and precision@k from rank-sorted relevance, chunk by chunk."""

    def __init__(self, map_ks: list[int], precision_ks: list[int], n_db: int) -> None:
        self.n_db = n_db
        self.map_ks = map_ks
        self.precision_ks = precision_ks
        self.ap: dict[int, list[np.ndarray]] = {k: [] for k in [*map_ks, n_db]}
        self.prec: dict[int, list[np.ndarray]] = {k: [] for k in precision_ks}

    def add(self, rel_sorted: np.ndarray) -> None:
        hits = np.cumsum(rel_sorted, axis=1, dtype=np.int64)  # relevant in top i
        ranks = np.arange(1, self.n_db + 1, dtype=np.float64)
        ap_terms = np.cumsum(np.where(rel_sorted, hits / ranks, 0.0), axis=1)
        for k in self.ap:
            kk = min(k, self.n_db) - 1
            r_k = hits[:, kk]
            self.ap[k].append(np.where(r_k > 0, ap_terms[:, kk] / np.maximum(r_k, 1), 0.0))
        for k in self.prec:
            kk = min(k, self.n_db)
            self.prec[k].append(hits[:, kk - 1] / kk)

    def means(self) -> tuple[float, dict[int, float], dict[int, float]]:
        def mean(parts: list[np.ndarray]) -> float:
            return float(np.concatenate(parts).mean()) if parts else math.nan

        map_all = mean(self.ap[self.n_db])
        map_at = {k: mean(self.ap[k]) for k in self.map_ks}
        prec_at = {k: mean(self.prec[k]) for k in self.precision_ks}
        return map_all, map_at, prec_at


def evaluate_codes(
    query_codes: ArrayLike,
    db_codes: ArrayLike,
    query_labels: ArrayLike,
    db_labels: ArrayLike,
    *,
    map_k: int | Sequence[int] | None = None,
    precision_k: int | Sequence[int] | None = (100, 1000),
    radius: int = 2,
    chunk_size: int | None = None,
    on_progress: ProgressFn | None = None,
) -> EvalResult:
    """All Hamming-ranking metrics of packed codes in one vectorised pass.

    Args:
        query_codes: ``[Nq, n_bytes]`` packed uint8 codes (``core.hash_head.pack_codes``).
        db_codes: ``[Nd, n_bytes]`` packed uint8 codes.
        query_labels: ``[Nq]`` int classes or ``[Nq, C]`` one-/multi-hot.
        db_labels: ``[Nd]`` or ``[Nd, C]``, same form as ``query_labels``.
        map_k: cut-off(s) for mAP@k (e.g. 5000 for NUS-WIDE); mAP@all is always computed.
        precision_k: cut-off(s) for precision@k.
        radius: Hamming radius of ``precision_radius``.
        chunk_size: queries per vectorised block; default keeps each ``[chunk, N_db]`` array
            near 4 M elements (about 32 MB in float64).
        on_progress: called as ``on_progress(done_queries, n_queries)`` after each block.

    Returns:
        An :class:`EvalResult`.

    Raises:
        ValueError: on inconsistent shapes or dtypes.
    """
    q, d = _check_codes(query_codes, db_codes)
    ql, dl = _check_labels(query_labels, db_labels, len(q), len(d))
    n_q, n_db, n_bits = len(q), len(d), 8 * q.shape[1]
    chunk_size = _chunk(chunk_size, n_db)
    if not 0 <= radius <= n_bits:
        raise ValueError(f"radius must be in [0, {n_bits}], got {radius}")
    stats = _RankStats(_ks(map_k), _ks(precision_k), n_db)
    d_signed = _signed_bits(d)
    n_r = n_bits + 1
    retrieved = np.zeros((n_q, n_r), dtype=np.int64)  # items within radius r
    rel_within = np.zeros((n_q, n_r), dtype=np.int64)  # relevant items within radius r
    n_relevant = np.zeros(n_q, dtype=np.int64)

    for start in range(0, n_q, chunk_size):
        stop = min(start + chunk_size, n_q)
        dist = _hamming(_signed_bits(q[start:stop]), d_signed)
        rel = _relevance(ql[start:stop], dl)
        order = np.argsort(dist, axis=1, kind="stable")  # ties -> database index
        stats.add(np.take_along_axis(rel, order, axis=1))

        rows = np.arange(stop - start)[:, None] * n_r
        flat = (rows + dist).ravel()
        size = (stop - start) * n_r
        hist_all = np.bincount(flat, minlength=size).reshape(-1, n_r)
        hist_rel = np.bincount(flat, weights=rel.ravel(), minlength=size).reshape(-1, n_r)
        retrieved[start:stop] = np.cumsum(hist_all, axis=1)
        rel_within[start:stop] = np.cumsum(np.rint(hist_rel).astype(np.int64), axis=1)
        n_relevant[start:stop] = rel.sum(axis=1)
        if on_progress is not None:
            on_progress(stop, n_q)

    map_all, map_at, prec_at = stats.means()
    with np.errstate(invalid="ignore", divide="ignore"):
        prec_r = np.where(retrieved > 0, rel_within / np.maximum(retrieved, 1), np.nan)
        recall_r = rel_within / np.maximum(n_relevant, 1)[:, None]
    has_rel = n_relevant > 0
    pr_precision = tuple(
        float(np.nanmean(col)) if np.isfinite(col).any() else math.nan for col in prec_r.T
    )
    pr_recall = tuple(
        float(x) for x in (recall_r[has_rel].mean(axis=0) if has_rel.any() else np.zeros(n_r))
    )
    p_radius = float(np.nan_to_num(prec_r[:, radius], nan=0.0).mean()) if n_q else math.nan
    return EvalResult(
        map=map_all,
        map_at=map_at,
        precision_at=prec_at,
        precision_radius=p_radius,
        radius=radius,
        pr_precision=pr_precision,
        pr_recall=pr_recall,
        n_queries=n_q,
        n_database=n_db,
        n_bits=n_bits,
    )


def mean_average_precision(
    query_codes: ArrayLike,
    db_codes: ArrayLike,
    query_labels: ArrayLike,
    db_labels: ArrayLike,
    k: int | None = None,
    chunk_size: int | None = None,
) -> float:
    """mAP@k (``k=None``: mAP@all) over Hamming ranking of packed codes.

    See :func:`evaluate_codes` for arguments and conventions.
    """
    q, d = _check_codes(query_codes, db_codes)
    ql, dl = _check_labels(query_labels, db_labels, len(q), len(d))
    stats = _RankStats(_ks(k), [], len(d))
    chunk_size = _chunk(chunk_size, len(d))
    d_signed = _signed_bits(d)
    for start in range(0, len(q), chunk_size):
        stop = min(start + chunk_size, len(q))
        dist = _hamming(_signed_bits(q[start:stop]), d_signed)
        order = np.argsort(dist, axis=1, kind="stable")
        stats.add(np.take_along_axis(_relevance(ql[start:stop], dl), order, axis=1))
    map_all, map_at, _ = stats.means()
    return map_all if k is None else map_at[k]


def map_float(
    query_feats: ArrayLike,
    db_feats: ArrayLike,
    query_labels: ArrayLike,
    db_labels: ArrayLike,
    k: int | None = None,
    chunk_size: int | None = None,
) -> float:
    """mAP@k (``k=None``: mAP@all) of float features ranked by cosine similarity.

    Ties in similarity are broken by database index.

    Args:
        query_feats: ``[Nq, D]`` features.
        db_feats: ``[Nd, D]`` features.
        query_labels: ``[Nq]`` or ``[Nq, C]``.
        db_labels: ``[Nd]`` or ``[Nd, C]``.
        k: cut-off, or ``None`` for the whole database.
        chunk_size: queries per vectorised block; default keeps each ``[chunk, N_db]`` array
            near 4 M elements (about 32 MB in float64).

    Returns:
        The mean average precision.
    """
    qf = _to_numpy(query_feats).astype(np.float32)
    df = _to_numpy(db_feats).astype(np.float32)
    if qf.ndim != 2 or df.ndim != 2 or qf.shape[1] != df.shape[1] or len(df) == 0:
        raise ValueError(f"features must be [Nq, D] and [Nd>0, D], got {qf.shape}, {df.shape}")
    ql, dl = _check_labels(query_labels, db_labels, len(qf), len(df))
    qf = qf / np.maximum(np.linalg.norm(qf, axis=1, keepdims=True), 1e-12)
    df = df / np.maximum(np.linalg.norm(df, axis=1, keepdims=True), 1e-12)
    stats = _RankStats(_ks(k), [], len(df))
    chunk_size = _chunk(chunk_size, len(df))
    for start in range(0, len(qf), chunk_size):
        stop = min(start + chunk_size, len(qf))
        order = np.argsort(-(qf[start:stop] @ df.T), axis=1, kind="stable")
        stats.add(np.take_along_axis(_relevance(ql[start:stop], dl), order, axis=1))
    map_all, map_at, _ = stats.means()
    return map_all if k is None else map_at[k]


def count_params(model: nn.Module, trainable_only: bool = False) -> int:
    """Number of (shared parameters counted once) parameters of ``model``."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


def save_pr_curve(
    results: Mapping[str, EvalResult], path: str | Path, title: str = "Precision-recall"
) -> bool:
    """Plots the Hamming-radius PR curves of several results into one PNG.

    Uses matplotlib when it is installed (object API, Agg canvas, no global pyplot state).

    Args:
        results: ``{label: EvalResult}``.
        path: output image path.
        title: figure title.

    Returns:
        ``True`` if the file was written, ``False`` if matplotlib is not installed.
    """
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError:
        logger.warning("matplotlib is not installed; PR curve %s not written", path)
        return False
    fig = Figure(figsize=(5.0, 4.0), dpi=120)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    for label, res in results.items():
        ax.plot(res.pr_recall, res.pr_precision, marker=".", label=label)
    ax.set_xlabel("recall")
    ax.set_ylabel("precision")
    ax.set_xlim(0.0, 1.0)
    ax.set_ylim(0.0, 1.0)
    ax.set_title(title)
    ax.grid(True, alpha=0.3)
    if results:
        ax.legend(fontsize="small")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    return True
