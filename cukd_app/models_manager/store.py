"""The user's models: the shipped default plus models trained or imported (Qt-free).

User models live in one folder (``<platformdirs user data>/models``): ``<slug>.pt`` model
files plus ``models.json`` holding display names and a cached summary of each file's
provenance (so listing does not load every model). Model files are never rewritten after they
are added — a model's id is the hash of its file, so renaming only changes ``models.json``.
Files are read with :func:`core.checkpoint.load_model_file` (``weights_only=True``, format
and version checked) and must have a hash head, so an imported file is validated before it is
copied in and never unpickled unsafely.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = ["DEFAULT_NAME", "ModelEntry", "ModelStore", "ModelStoreError", "summarize"]

logger = logging.getLogger(__name__)

INDEX_FILE = "models.json"
DEFAULT_NAME = "Default model"


class ModelStoreError(ValueError):
    """A model cannot be imported, renamed or deleted (the message says why)."""


@dataclass(frozen=True)
class ModelEntry:
    """One model as the manager lists it.

    Attributes:
        path: the model file.
        name: display name.
        is_default: the shipped default model, or a model file in use outside the models
            folder (neither can be deleted or renamed here).
        summary: provenance summary (see :func:`summarize`); empty if unreadable.
        error: why the file could not be read (``""`` when fine).
    """

    path: Path
    name: str
    is_default: bool
    summary: dict[str, Any]
    error: str = ""

    def describe(self) -> str:
        """One line: method, bits, preset."""
        s = self.summary
        parts = [str(s.get("method") or "?").upper(), f"{s.get('bits', '?')} bits"]
        if s.get("preset"):
            parts.append(str(s["preset"]))
        return ", ".join(parts)


def _fmt_metric(v: Any) -> float | None:
    try:
        return None if v is None else float(v)
    except (TypeError, ValueError):
        return None


def summarize(model: dict) -> dict[str, Any]:
    """JSON-ready provenance summary of a loaded model file dict."""
    prov = model.get("provenance") or {}
    hh = model.get("hash_head") or {}
    metrics = prov.get("metrics") or {}
    return {
        "step": prov.get("step"),
        "method": prov.get("method") or hh.get("loss") or hh.get("kind"),
        "bits": prov.get("bits") or hh.get("n_bits"),
        "preset": prov.get("preset"),
        "data": prov.get("data"),
        "classes": [str(c) for c in prov.get("classes") or []],
        "created": prov.get("created"),
        "val_map": _fmt_metric(prov.get("val_map", metrics.get("map"))),
        "n_train": prov.get("n_train") or prov.get("n_images"),
        "n_val": prov.get("n_val"),
        "arch": (model.get("arch") or {}).get("name"),
        "input_size": (model.get("preprocess") or {}).get("input_size"),
        "has_hash_head": bool(hh),
    }


def read_summary(path: Path) -> dict[str, Any]:
    """Load (safely) and summarise a model file.

    Raises:
        ModelStoreError: not a readable CUKD model file, or it has no hash head.
    """
    from core.checkpoint import CheckpointError, load_model_file

    try:
        d = load_model_file(path)
    except FileNotFoundError as exc:
        raise ModelStoreError(f"{path} does not exist") from exc
    except CheckpointError as exc:
        raise ModelStoreError(str(exc)) from exc
    if not d.get("hash_head"):
        raise ModelStoreError(f"{path.name} has no hash head, so it cannot encode photos "
                              "(train one with the retrain wizard or `cukd finetune`)")
    return summarize(d)


def _slug(name: str) -> str:
    s = re.sub(r"[^A-Za-z0-9._-]+", "-", name).strip("-.")[:48]
    return s or "model"


class ModelStore:
    """The models folder.

    Args:
        directory: the user models folder (created on first write).
        default_path: the shipped default model (may be missing).
    """

    def __init__(self, directory: str | os.PathLike[str], default_path: str | os.PathLike[str]
                 ) -> None:
        self.directory = Path(directory)
        self.default_path = Path(default_path)

    # ------------------------------------------------------------------ index file
    def _index(self) -> dict[str, dict[str, Any]]:
        try:
            data = json.loads((self.directory / INDEX_FILE).read_text(encoding="utf-8"))
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as exc:
            logger.warning("cannot read %s (%s); rebuilding", INDEX_FILE, exc)
            return {}
        return data if isinstance(data, dict) else {}

    def _save_index(self, data: dict[str, dict[str, Any]]) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".models-", dir=self.directory)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                json.dump(data, f, indent=2, sort_keys=True)
            os.replace(tmp, self.directory / INDEX_FILE)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    @staticmethod
    def _stamp(path: Path) -> list[int]:
        st = path.stat()
        return [st.st_size, st.st_mtime_ns]

    def _summary(self, path: Path, meta: dict[str, Any]) -> tuple[dict[str, Any], str, bool]:
        """(summary, error, whether ``meta`` was updated)."""
        try:
            stamp = self._stamp(path)
        except OSError as exc:
            return {}, str(exc), False
        if meta.get("stamp") == stamp and isinstance(meta.get("summary"), dict):
            return meta["summary"], "", False
        try:
            summary = read_summary(path)
        except ModelStoreError as exc:
            return {}, str(exc), False
        meta["stamp"], meta["summary"] = stamp, summary
        return summary, "", True

    # ------------------------------------------------------------------ queries
    def list(self, external: str | os.PathLike[str] | None = None) -> list[ModelEntry]:
        """The default model (when installed), ``external`` (a model file in use that is
        neither the default nor in the store), then user models, newest first."""
        index = self._index()
        changed = False
        out: list[ModelEntry] = []
        ext = Path(external) if external is not None else None
        if ext is not None and ext.is_file() and not self.is_user_model(ext) and not _same(
                ext, self.default_path):
            meta: dict[str, Any] = {}
            summary, err, _ = self._summary(ext, meta)
            out.append(ModelEntry(ext, _file_name(ext), True, summary, err))
        if self.default_path.is_file():
            meta = index.setdefault("__default__", {})
            summary, err, upd = self._summary(self.default_path, meta)
            changed |= upd
            out.append(ModelEntry(self.default_path, DEFAULT_NAME, True, summary, err))
        users: list[ModelEntry] = []
        files = sorted(self.directory.glob("*.pt")) if self.directory.is_dir() else []
        for f in files:
            meta = index.setdefault(f.name, {})
            summary, err, upd = self._summary(f, meta)
            changed |= upd
            if "name" not in meta:
                meta["name"], changed = f.stem, True
            users.append(ModelEntry(f, _user_name(f, meta), False, summary, err))
        for key in [k for k in index if k != "__default__" and not (self.directory / k).exists()]:
            index.pop(key)
            changed = True
        users.sort(key=lambda e: str(e.summary.get("created") or ""), reverse=True)
        if changed:
            try:
                self._save_index(index)
            except OSError as exc:
                logger.warning("cannot save %s: %s", INDEX_FILE, exc)
        return out + users

    def entry(self, path: str | os.PathLike[str]) -> ModelEntry | None:
        """The entry of a model file (``None`` if it is not in the store)."""
        p = Path(path)
        return next((e for e in self.list() if _same(e.path, p)), None)

    def display_name(self, path: str | os.PathLike[str]) -> str:
        """The one name a model file is shown under: in this manager's list, the status bar
        and messages ("Default model", a user model's chosen name, else the file's name)."""
        p = Path(path)
        if _same(p, self.default_path):
            return DEFAULT_NAME
        if self.is_user_model(p):
            return _user_name(p, self._index().get(p.name) or {})
        return _file_name(p)

    def is_default(self, path: str | os.PathLike[str]) -> bool:
        """Whether ``path`` is the shipped default model."""
        return _same(Path(path), self.default_path)

    def is_user_model(self, path: str | os.PathLike[str]) -> bool:
        """Whether ``path`` is a file of the models folder."""
        return _same(Path(path).parent, self.directory)

    # ------------------------------------------------------------------ changes
    def add(self, source: str | os.PathLike[str], name: str, *, move: bool = False) -> Path:
        """Validate and copy (or move) a model file into the store under display ``name``.

        Raises:
            ModelStoreError: the file is not a usable model (nothing is copied).
        """
        src = Path(source)
        summary = read_summary(src)
        self.directory.mkdir(parents=True, exist_ok=True)
        base = _slug(name)
        dest = self.directory / f"{base}.pt"
        n = 2
        while dest.exists():
            dest = self.directory / f"{base}-{n}.pt"
            n += 1
        fd, tmp = tempfile.mkstemp(prefix=".import-", suffix=".pt", dir=self.directory)
        os.close(fd)
        try:
            (shutil.move if move else shutil.copyfile)(src, tmp)
            os.replace(tmp, dest)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        index = self._index()
        index[dest.name] = {"name": name.strip() or dest.stem, "added": time.time(),
                            "stamp": self._stamp(dest), "summary": summary}
        self._save_index(index)
        return dest

    def import_file(self, source: str | os.PathLike[str]) -> Path:
        """Import a model file chosen by the user (validated; see :meth:`add`)."""
        src = Path(source)
        return self.add(src, src.stem)

    def export(self, path: str | os.PathLike[str], dest: str | os.PathLike[str]) -> Path:
        """Copy a model file to ``dest`` (a file path, or a folder to put it in)."""
        src, out = Path(path), Path(dest)
        if out.is_dir():
            out = out / src.name
        shutil.copyfile(src, out)
        return out

    def rename(self, path: str | os.PathLike[str], name: str) -> None:
        """Change a user model's display name."""
        p = Path(path)
        if not self.is_user_model(p):
            raise ModelStoreError("the default model cannot be renamed")
        if not name.strip():
            raise ModelStoreError("a model needs a name")
        index = self._index()
        index.setdefault(p.name, {})["name"] = name.strip()
        self._save_index(index)

    def delete(self, path: str | os.PathLike[str], *, active: str | os.PathLike[str] | None
               = None) -> None:
        """Delete a user model (never the default, never the active one)."""
        p = Path(path)
        if not self.is_user_model(p):
            raise ModelStoreError("the default model cannot be deleted")
        if active is not None and _same(p, Path(active)):
            raise ModelStoreError("the model in use cannot be deleted; switch to another "
                                  "model first")
        p.unlink(missing_ok=True)
        index = self._index()
        index.pop(p.name, None)
        self._save_index(index)


def _user_name(path: Path, meta: dict[str, Any]) -> str:
    """A user model's display name (``models.json``; the file name until one is given)."""
    return str(meta.get("name") or path.stem)


def _file_name(path: Path) -> str:
    """The display name of a model file outside the models folder (the list's details and
    note say where it is)."""
    return path.stem


def _same(a: Path, b: Path) -> bool:
    try:
        return os.path.realpath(a) == os.path.realpath(b)
    except OSError:
        return False
