"""core.evaluate against brute-force per-query reference computations."""

from __future__ import annotations

import importlib.util
import json
import math

import numpy as np
import pytest
import torch

from core.evaluate import (
    EvalResult,
    count_params,
    evaluate_codes,
    hamming_distance,
    map_float,
    mean_average_precision,
    save_pr_curve,
)


def _label_sets(labels: np.ndarray) -> list[set[int]]:
    if labels.ndim == 1:
        return [{int(c)} for c in labels]
    return [set(np.flatnonzero(row > 0).tolist()) for row in labels]


def _ap(rel_ranked: list[bool], k: int) -> float:
    hits, total = 0, 0.0
    for i, r in enumerate(rel_ranked[:k], start=1):
        if r:
            hits += 1
            total += hits / i
    return total / hits if hits else 0.0


def reference(q, d, ql, dl, ks, pks, radius):
    """Per-query loops: ranking by (distance, index), metrics by their definitions."""
    qb, db = np.unpackbits(q, axis=1), np.unpackbits(d, axis=1)
    n_bits = qb.shape[1]
    qs, ds = _label_sets(ql), _label_sets(dl)
    out = {"map": [], "map_at": {k: [] for k in ks}, "p_at": {k: [] for k in pks}, "p_r": []}
    pr_p = [[] for _ in range(n_bits + 1)]
    pr_r = [[] for _ in range(n_bits + 1)]
    for i in range(len(qb)):
        dist = [
            int(sum(int(a) != int(b) for a, b in zip(qb[i], db[j], strict=True)))
            for j in range(len(db))
        ]
        order = sorted(range(len(db)), key=lambda j: (dist[j], j))
        rel = [bool(qs[i] & ds[j]) for j in order]
        out["map"].append(_ap(rel, len(db)))
        for k in ks:
            out["map_at"][k].append(_ap(rel, k))
        for k in pks:
            kk = min(k, len(db))
            out["p_at"][k].append(sum(rel[:kk]) / kk)
        n_rel = sum(rel)
        for r in range(n_bits + 1):
            within = [j for j in range(len(db)) if dist[j] <= r]
            good = sum(1 for j in within if qs[i] & ds[j])
            if within:
                pr_p[r].append(good / len(within))
            if n_rel:
                pr_r[r].append(good / n_rel)
            if r == radius:
                out["p_r"].append(good / len(within) if within else 0.0)
    return {
        "map": float(np.mean(out["map"])),
        "map_at": {k: float(np.mean(v)) for k, v in out["map_at"].items()},
        "p_at": {k: float(np.mean(v)) for k, v in out["p_at"].items()},
        "p_r": float(np.mean(out["p_r"])),
        "pr_p": [float(np.mean(v)) if v else math.nan for v in pr_p],
        "pr_r": [float(np.mean(v)) if v else 0.0 for v in pr_r],
    }


def _data(multi: bool, seed: int, n_q: int = 23, n_db: int = 150, n_bits: int = 16):
    rng = np.random.default_rng(seed)
    n_classes = 5
    if multi:
        ql = (rng.random((n_q, n_classes)) < 0.3).astype(np.int64)
        dl = (rng.random((n_db, n_classes)) < 0.3).astype(np.int64)
        ql[0] = 0  # a query with no relevant item at all
        centre_of = ql.argmax(1), dl.argmax(1)
    else:
        ql, dl = rng.integers(0, n_classes, n_q), rng.integers(0, n_classes, n_db)
        centre_of = ql, dl
    centres = rng.random((n_classes, n_bits)) < 0.5
    # few distinct codes -> many exact distance ties
    q = np.packbits(centres[centre_of[0]] ^ (rng.random((n_q, n_bits)) < 0.15), axis=1)
    d = np.packbits(centres[centre_of[1]] ^ (rng.random((n_db, n_bits)) < 0.15), axis=1)
    d[10:20] = d[0]
    return q, d, ql, dl


@pytest.mark.parametrize("multi", [False, True])
@pytest.mark.parametrize("seed", [0, 1])
def test_matches_brute_force(multi: bool, seed: int) -> None:
    q, d, ql, dl = _data(multi, seed)
    ks, pks = [1, 10, 60, 1000], [5, 50, 1000]
    ref = reference(q, d, ql, dl, ks, pks, radius=2)
    res = evaluate_codes(q, d, ql, dl, map_k=ks, precision_k=pks, radius=2, chunk_size=7)
    assert res.map == pytest.approx(ref["map"], abs=1e-9)
    for k in ks:
        assert res.map_at[k] == pytest.approx(ref["map_at"][k], abs=1e-9)
    for k in pks:
        assert res.precision_at[k] == pytest.approx(ref["p_at"][k], abs=1e-9)
    assert res.precision_radius == pytest.approx(ref["p_r"], abs=1e-9)
    np.testing.assert_allclose(res.pr_precision, ref["pr_p"], atol=1e-9, equal_nan=True)
    np.testing.assert_allclose(res.pr_recall, ref["pr_r"], atol=1e-9)
    assert (res.n_queries, res.n_database, res.n_bits) == (23, 150, 16)
    assert mean_average_precision(q, d, ql, dl) == pytest.approx(ref["map"], abs=1e-9)
    assert mean_average_precision(q, d, ql, dl, k=60) == pytest.approx(ref["map_at"][60], abs=1e-9)


def test_one_hot_equals_integer_labels_and_chunking_is_invisible() -> None:
    q, d, ql, dl = _data(False, 3)
    eye = np.eye(5)
    a = evaluate_codes(q, d, ql, dl, map_k=20, chunk_size=1000)
    b = evaluate_codes(q, d, eye[ql], eye[dl], map_k=20, chunk_size=1)
    c = evaluate_codes(
        torch.from_numpy(q),
        torch.from_numpy(d),
        torch.from_numpy(ql),
        torch.from_numpy(dl),
        map_k=20,
        chunk_size=5,
    )
    assert a.to_dict() == b.to_dict() == c.to_dict()


def test_ties_break_by_database_index() -> None:
    q = np.zeros((1, 1), dtype=np.uint8)
    d = np.zeros((2, 1), dtype=np.uint8)  # both at distance 0
    assert mean_average_precision(q, d, np.array([1]), np.array([0, 1])) == pytest.approx(0.5)
    assert mean_average_precision(q, d, np.array([1]), np.array([1, 0])) == pytest.approx(1.0)


def test_hamming_distance() -> None:
    q = np.array([[0b11110000, 0]], dtype=np.uint8)
    d = np.array([[0, 0], [0b11110000, 0], [0b00001111, 255]], dtype=np.uint8)
    assert hamming_distance(q, d).tolist() == [[4, 0, 16]]


def test_radius_precision_counts_empty_queries_as_zero() -> None:
    q = np.array([[0], [255]], dtype=np.uint8)
    d = np.array([[0], [1]], dtype=np.uint8)  # query 2 is 7-8 bits away from everything
    res = evaluate_codes(q, d, np.array([0, 0]), np.array([0, 1]), precision_k=None)
    assert res.precision_radius == pytest.approx(0.25)  # (1/2 + 0) / 2
    assert res.pr_precision[0] == pytest.approx(1.0)  # only query 1 retrieves at radius 0
    assert math.isnan(evaluate_codes(q[1:], d[:1], [0], [0]).pr_precision[0])


def test_map_float_matches_brute_force() -> None:
    rng = np.random.default_rng(0)
    qf, df = rng.standard_normal((9, 6)), rng.standard_normal((40, 6))
    df[5] = df[3]  # same cosine: tie broken by index
    ql, dl = rng.integers(0, 3, 9), rng.integers(0, 3, 40)
    expected, expected_k = [], []
    for i in range(9):
        cos = [
            float(qf[i] @ df[j] / np.linalg.norm(qf[i]) / np.linalg.norm(df[j])) for j in range(40)
        ]
        order = sorted(range(40), key=lambda j: (-round(cos[j], 6), j))
        rel = [ql[i] == dl[j] for j in order]
        expected.append(_ap(rel, 40))
        expected_k.append(_ap(rel, 10))
    assert map_float(qf, df, ql, dl) == pytest.approx(np.mean(expected), abs=1e-9)
    assert map_float(qf, df, ql, dl, k=10, chunk_size=2) == pytest.approx(
        np.mean(expected_k), abs=1e-9
    )


def test_result_to_dict_is_json() -> None:
    q, d, ql, dl = _data(True, 0)
    res = evaluate_codes(q, d, ql, dl, map_k=[10])
    text = json.dumps(res.to_dict(), allow_nan=False)
    assert json.loads(text)["map_at"]["10"] == pytest.approx(res.map_at[10])
    assert isinstance(res, EvalResult)


def test_progress_callback() -> None:
    q, d, ql, dl = _data(False, 0)
    seen: list[tuple[int, int]] = []
    evaluate_codes(q, d, ql, dl, chunk_size=10, on_progress=lambda a, b: seen.append((a, b)))
    assert seen == [(10, 23), (20, 23), (23, 23)]


def test_count_params() -> None:
    lin = torch.nn.Linear(3, 4)
    model = torch.nn.Sequential(lin, torch.nn.ReLU(), lin)  # shared weights count once
    assert count_params(model) == 16
    lin.bias.requires_grad_(False)
    assert count_params(model, trainable_only=True) == 12


def test_save_pr_curve(tmp_path) -> None:
    q, d, ql, dl = _data(False, 0)
    res = evaluate_codes(q, d, ql, dl)
    path = tmp_path / "plots" / "pr.png"
    written = save_pr_curve({"a": res, "b": res}, path)
    assert written == (importlib.util.find_spec("matplotlib") is not None)
    assert path.exists() == written


def test_bad_inputs_raise() -> None:
    q, d, ql, dl = _data(False, 0)
    with pytest.raises(ValueError, match="uint8"):
        evaluate_codes(q.astype(np.int32), d, ql, dl)
    with pytest.raises(ValueError, match="bytes"):
        evaluate_codes(q[:, :1], d, ql, dl)
    with pytest.raises(ValueError, match="both"):
        evaluate_codes(q, d, ql, np.eye(5)[dl])
    with pytest.raises(ValueError, match="labels"):
        evaluate_codes(q, d, ql[:-1], dl)
    with pytest.raises(ValueError, match="radius"):
        evaluate_codes(q, d, ql, dl, radius=17)
    with pytest.raises(ValueError, match="empty"):
        evaluate_codes(q, d[:0], ql, dl[:0])
    with pytest.raises(ValueError, match="features"):
        map_float(np.zeros((2, 3)), np.zeros((4, 5)), [0, 1], [0, 1, 0, 1])
