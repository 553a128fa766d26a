"""Finding and loading the encoder (model file) the library uses."""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from core.library import ImageEncoder
from cukd_app.paths import default_model_path

__all__ = ["TINY_MODEL", "EncoderFactory", "ModelInfo", "model_tooltip", "resolve_encoder"]

logger = logging.getLogger(__name__)

#: ``--model tiny``: the engine's cheap test encoder (demos, benchmarks; no real similarity).
TINY_MODEL = "tiny"


@dataclass(frozen=True)
class ModelInfo:
    """What the status bar shows about the model; ``encoder`` is None when none is installed.

    ``name`` is the model's display name: the one the model manager lists it under
    (:meth:`cukd_app.models_manager.ModelStore.display_name`), used by the status bar and
    messages alike.
    """

    encoder: ImageEncoder | None
    name: str
    message: str = ""


EncoderFactory = Callable[[], ModelInfo]


def model_tooltip(info: ModelInfo) -> str:
    """The details behind a model's display name: its file and code length."""
    enc = info.encoder
    if enc is None:
        return info.message
    path = getattr(enc, "path", None)
    return (f"{path}\n" if path else "") + f"{enc.n_bits}-bit codes"


def resolve_encoder(model: str | os.PathLike[str] | None,
                    name_of: Callable[[Path], str] | None = None) -> ModelInfo:
    """Load the encoder named by ``model`` (a file, ``"tiny"``) or the shipped default.

    Never raises for a missing file: returns ``ModelInfo(None, ...)`` with a message for the
    user. A broken model file raises (the caller reports it through the error path).

    Args:
        model: a model file, ``"tiny"``, or ``None`` for the shipped default.
        name_of: the display name of a model file (the model manager's,
            ``ModelStore.display_name``); default: the file's name.
    """
    if model is not None and str(model) == TINY_MODEL:
        from core.library.testing import TinyEncoder

        enc = TinyEncoder()
        return ModelInfo(enc, "test encoder (tiny)",
                         "Using the built-in test encoder: results are only rough colour "
                         "matches.")
    path = Path(model) if model is not None else default_model_path()
    if not path.is_file():
        where = "the configured model file" if model is not None else "the default model"
        return ModelInfo(None, "no model",
                         f"No model installed: {where} ({path.name}) was not found. Folders "
                         "can be added, but indexing and search need a model file "
                         "(Library ▸ Choose model file…).")
    from core.encoder import Encoder  # torch: imported lazily, off the GUI thread

    enc = Encoder.from_file(path)
    logger.info("loaded model %s from %s", enc.model_id, path)
    return ModelInfo(enc, name_of(path) if name_of is not None else path.stem)
