"""How well a model's frozen student features separate labelled classes (the ceiling of the
retrain wizard's fast preset, which trains only a hash head on them).

Probes, trained on ``--data``/train and scored on ``--data``/val (class-per-folder trees):
logistic regression (L2-normalised, standardised features; full-batch Adam, 300 steps, a few
weight decays), a 512-unit MLP probe, and a k-NN vote (cosine). Usage::

    OMP_NUM_THREADS=2 python benchmarks/feature_probe.py --data /tmp/data/imagenette

Writes ``docs/benchmarks/feature_probe.json`` (``--out`` overrides). About 2 minutes on 2 cores.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from core.data import list_images
from core.encoder import Encoder, iter_image_batches

ROOT = Path(__file__).resolve().parent.parent


def features(enc: Encoder, paths: list) -> np.ndarray:
    return np.concatenate([enc.features(px) for _, px, _ in iter_image_batches(
        paths, enc.input_size, 64, 2) if px is not None])


def fit_probe(model: nn.Module, x: torch.Tensor, y: torch.Tensor, wd: float,
              steps: int = 300) -> nn.Module:
    opt = torch.optim.Adam(model.parameters(), 1e-3, weight_decay=wd)
    model.train()
    for _ in range(steps):
        loss = F.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return model.eval()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", type=Path, required=True, help="train/ and val/ class folders")
    ap.add_argument("--model", type=Path, default=ROOT / "resources" / "models" / "default.pt")
    ap.add_argument("--k", type=int, default=20, help="neighbours of the k-NN vote")
    ap.add_argument("--out", type=Path, default=ROOT / "docs" / "benchmarks" /
                    "feature_probe.json")
    a = ap.parse_args(argv)
    torch.manual_seed(0)
    t0 = time.perf_counter()
    enc = Encoder.from_file(a.model)
    train = list_images(a.data / "train", labelled=True)
    val = list_images(a.data / "val", labelled=True)
    ft, fv = features(enc, train.paths), features(enc, val.paths)
    yt, yv = torch.as_tensor(train.labels).long(), torch.as_tensor(val.labels).long()
    n_classes = int(yt.max()) + 1

    def prep(f: np.ndarray) -> torch.Tensor:
        return F.normalize(torch.from_numpy(f).float(), dim=1)

    nt, nv = prep(ft), prep(fv)
    mu, sd = nt.mean(0), nt.std(0) + 1e-3
    xt, xv = (nt - mu) / sd, (nv - mu) / sd
    res: dict = {"model": a.model.name, "model_id": enc.model_id, "n_train": len(yt),
                 "n_val": len(yv), "classes": n_classes, "logistic": {}}
    @torch.no_grad()
    def acc(m: nn.Module) -> float:
        return round(float((m(xv).argmax(1) == yv).float().mean()), 4)

    for wd in (1e-4, 1e-3, 1e-2):
        res["logistic"][str(wd)] = acc(fit_probe(nn.Linear(xt.shape[1], n_classes), xt, yt, wd))
    torch.manual_seed(0)
    mlp = fit_probe(nn.Sequential(nn.Linear(xt.shape[1], 512), nn.BatchNorm1d(512), nn.ReLU(),
                                  nn.Dropout(0.3), nn.Linear(512, n_classes)), xt, yt, 1e-4)
    res["mlp_512"] = acc(mlp)
    with torch.no_grad():
        idx = (nv @ nt.T).topk(a.k, dim=1).indices
        res[f"knn{a.k}"] = round(float((torch.mode(yt[idx], dim=1).values == yv).float()
                                       .mean()), 4)
    res["best_val_accuracy"] = max([*res["logistic"].values(), res["mlp_512"],
                                    res[f"knn{a.k}"]])
    res["seconds"] = round(time.perf_counter() - t0, 1)
    res["command"] = "python benchmarks/feature_probe.py --data <imagenette>"
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps(res, indent=2) + "\n", encoding="utf-8")
    print(json.dumps(res, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
