"""Versioned model files.

A model file is a plain dict (tensors, numbers, strings, lists, dicts only) so it loads with
``torch.load(..., weights_only=True)`` — never unpickled arbitrarily:

``format``            ``"cukd-model"``
``format_version``    :data:`FORMAT_VERSION`
``arch``              ``{"name": str, "args": dict}`` (student registry entry)
``preprocess``        :class:`~core.preprocess.Preprocess` as a dict
``feature_dim``       int
``state_dict``        student weights
``hash_head``         ``None`` or ``{"kind": str, "n_bits": int, "state": dict, ...}``
``teacher``           teacher name (or ``None`` for a student trained from scratch)
``provenance``        data, epochs, seed, git commit, creation time, metrics …
``weights_sha256``    digest of ``state_dict`` (files written since it was added): a file whose
                      weights were damaged after writing is refused instead of silently used
"""

from __future__ import annotations

import hashlib
import inspect
import logging
import math
import os
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

from core.models.students import STUDENTS, Student
from core.preprocess import Preprocess

__all__ = [
    "FORMAT_VERSION",
    "CheckpointError",
    "atomic_torch_save",
    "git_commit",
    "load_model_file",
    "load_student",
    "save_student",
    "student_from_dict",
    "student_to_dict",
    "validate_model_dict",
    "weights_digest",
]

logger = logging.getLogger(__name__)

FORMAT = "cukd-model"
FORMAT_VERSION = 1

#: Bounds a model file must respect before anything is built from it.
INPUT_SIZE_RANGE = (32, 1024)
MAX_PARAMETERS = 100_000_000
MAX_FEATURE_DIM = 16_384


class CheckpointError(ValueError):
    """A model file is unreadable, of another format or of an unsupported version."""


def git_commit(cwd: str | os.PathLike[str] | None = None) -> str | None:
    """The current git commit of the source tree, or ``None`` outside a checkout."""
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True,
                             cwd=cwd or Path(__file__).parent, timeout=5, check=True)
        return out.stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


def atomic_torch_save(obj: Any, path: str | os.PathLike[str]) -> None:
    """``torch.save`` to a temp file in the same folder, then ``os.replace``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        torch.save(obj, tmp)
        os.chmod(tmp, 0o644)  # mkstemp makes it owner-only; model files are shareable data
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def student_to_dict(student: Student, *, teacher: str | None = None,
                    hash_head: dict | None = None, provenance: dict | None = None) -> dict:
    return {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "arch": {"name": student.arch, "args": dict(student.arch_args)},
        "preprocess": student.preprocess.to_dict(),
        "feature_dim": student.feature_dim,
        "state_dict": {k: v.detach().cpu() for k, v in student.state_dict().items()},
        "hash_head": hash_head,
        "teacher": teacher,
        "provenance": {"created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                       "git_commit": git_commit(), **(provenance or {})},
        "weights_sha256": weights_digest(student.state_dict()),
    }


def weights_digest(state_dict: dict) -> str:
    """sha256 over the names, shapes, dtypes and bytes of a state dict, in key order."""
    h = hashlib.sha256()
    for k in sorted(state_dict):
        v = state_dict[k]
        t = v.detach().cpu().contiguous()
        h.update(f"{k}|{tuple(t.shape)}|{t.dtype}|".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


def save_student(path: str | os.PathLike[str], student: Student, **kwargs: Any) -> None:
    """Write a versioned model file atomically (see module docstring for the keys)."""
    atomic_torch_save(student_to_dict(student, **kwargs), path)


def load_model_file(path: str | os.PathLike[str]) -> dict:
    """Read and validate a model file (safe: ``weights_only=True``)."""
    try:
        d = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise
    except Exception as exc:
        # PyTorch's own text (an essay on weights_only for a JPEG) is for the log only.
        logger.info("torch.load(%s) failed: %s", path, exc)
        raise CheckpointError(f"{path} is not a CUKD model file (it cannot be read as "
                              "one)") from exc
    if not isinstance(d, dict) or d.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not a CUKD model file")
    version = d.get("format_version")
    if not isinstance(version, int) or version > FORMAT_VERSION:
        raise CheckpointError(f"{path} has format version {version}; this program reads up to "
                              f"{FORMAT_VERSION} — update the program")
    for key in ("arch", "preprocess", "state_dict", "feature_dim"):
        if key not in d:
            raise CheckpointError(f"{path} lacks the {key!r} entry")
    validate_model_dict(d, path)
    return d


def validate_model_dict(d: dict, path: str | os.PathLike[str] = "model") -> None:
    """Check a model dict before anything is built from it.

    The architecture must be known, its arguments those its builder takes and the network
    small enough (checked on PyTorch's ``meta`` device, which allocates nothing); the input
    size sane; the weights finite, of the architecture's shapes, and equal to the recorded
    digest when the file has one.

    Raises:
        CheckpointError: naming what is wrong.
    """
    arch = d.get("arch")
    if not isinstance(arch, dict) or not isinstance(arch.get("args"), dict):
        raise CheckpointError(f"{path} has no valid architecture entry")
    name, args = arch.get("name"), arch["args"]
    if name not in STUDENTS:
        raise CheckpointError(f"{path} uses an unknown architecture {name!r}")
    params = inspect.signature(STUDENTS[name]).parameters
    if not any(p.kind is p.VAR_KEYWORD for p in params.values()):
        unknown = sorted(set(args) - set(params))
        if unknown:
            raise CheckpointError(f"{path}: architecture {name} takes no argument "
                                  f"{', '.join(unknown)}")
    def in_range(v: object) -> bool:
        return (isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)
                and 0 <= v <= 4096)

    for k, v in args.items():
        if isinstance(v, bool) or v is None or isinstance(v, str):
            continue
        if isinstance(v, list | tuple):  # per-block widths
            if len(v) <= 256 and all(in_range(e) for e in v):
                continue
            raise CheckpointError(f"{path}: architecture argument {k} is out of range")
        if not in_range(v):
            raise CheckpointError(f"{path}: architecture argument {k}={v!r} is out of range")
    pre = d.get("preprocess")
    size = pre.get("input_size") if isinstance(pre, dict) else None
    lo, hi = INPUT_SIZE_RANGE
    if not isinstance(size, int) or not lo <= size <= hi:
        raise CheckpointError(f"{path}: input size {size!r} is outside {lo}-{hi} pixels")
    fdim = d.get("feature_dim")
    if not isinstance(fdim, int) or not 0 < fdim <= MAX_FEATURE_DIM:
        raise CheckpointError(f"{path}: feature size {fdim!r} is out of range")
    try:
        with torch.device("meta"):
            shapes = {k: tuple(v.shape) for k, v in STUDENTS[name](**args).state_dict().items()}
    except Exception as exc:
        raise CheckpointError(f"{path}: architecture {name} cannot be built with {args}: "
                              f"{exc}") from exc
    n_params = sum(math.prod(s) for s in shapes.values())
    if n_params > MAX_PARAMETERS:
        raise CheckpointError(f"{path}: {n_params:,} parameters is far more than a model "
                              "of this program has")
    sd = d["state_dict"]
    if not isinstance(sd, dict) or not all(isinstance(v, torch.Tensor) for v in sd.values()):
        raise CheckpointError(f"{path}: the weights are not a dict of tensors")
    got = {k.removeprefix("backbone."): tuple(v.shape) for k, v in sd.items()}
    if got != shapes:
        diff = sorted(set(got.items()) ^ set(shapes.items()))[:3]
        raise CheckpointError(f"{path}: weights do not fit architecture {name} ({diff})")
    if any(v.is_floating_point() and not bool(torch.isfinite(v).all()) for v in sd.values()):
        raise CheckpointError(f"{path}: the weights hold non-finite numbers (damaged file)")
    digest = d.get("weights_sha256")
    if digest is not None and digest != weights_digest(sd):
        raise CheckpointError(f"{path}: the weights do not match their recorded checksum "
                              "(damaged file)")


def student_from_dict(d: dict) -> Student:
    arch = d["arch"]
    student = Student(arch["name"], Preprocess.from_dict(d["preprocess"]), **arch["args"])
    try:
        student.load_state_dict(d["state_dict"], strict=True)
    except RuntimeError as exc:
        raise CheckpointError(f"weights do not fit architecture {arch['name']}: {exc}") from exc
    return student.eval()


def load_student(path: str | os.PathLike[str]) -> tuple[Student, dict]:
    """Load a student and the whole model dict from a model file."""
    d = load_model_file(path)
    return student_from_dict(d), d
