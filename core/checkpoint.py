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
"""

from __future__ import annotations

import os
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

from core.models.students import Student
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
]

FORMAT = "cukd-model"
FORMAT_VERSION = 1


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
    }


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
        raise CheckpointError(f"{path} is not a readable model file: {exc}") from exc
    if not isinstance(d, dict) or d.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not a CUKD model file")
    version = d.get("format_version")
    if not isinstance(version, int) or version > FORMAT_VERSION:
        raise CheckpointError(f"{path} has format version {version}; this program reads up to "
                              f"{FORMAT_VERSION} — update the program")
    for key in ("arch", "preprocess", "state_dict", "feature_dim"):
        if key not in d:
            raise CheckpointError(f"{path} lacks the {key!r} entry")
    return d


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
