"""Finding and loading the encoder (model file) the library uses."""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from core.library import ImageEncoder
from cukd_app.paths import default_model_path

__all__ = ["TINY_MODEL", "EncoderFactory", "ModelInfo", "resolve_encoder"]

logger = logging.getLogger(__name__)

#: ``--model tiny``: the engine's cheap test encoder (demos, benchmarks; no real similarity).
TINY_MODEL = "tiny"


@dataclass(frozen=True)
class ModelInfo:
    """What the status bar shows about the model; ``encoder`` is None when none is installed."""

    encoder: ImageEncoder | None
    name: str
    message: str = ""


EncoderFactory = Callable[[], ModelInfo]


def resolve_encoder(model: str | os.PathLike[str] | None) -> ModelInfo:
    """Load the encoder named by ``model`` (a file, ``"tiny"``) or the shipped default.

    Never raises for a missing file: returns ``ModelInfo(None, ...)`` with a message for the
    user. A broken model file raises (the caller reports it through the error path).
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
    return ModelInfo(enc, f"{path.stem} ({enc.n_bits} bits)")
