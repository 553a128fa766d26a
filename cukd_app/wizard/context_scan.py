"""The retrain context: which images belong to which class, which can be read, and checks.

Qt-free (runs on a worker thread). A context is either one folder whose first-level
sub-folders are the classes (the layout ``cukd finetune --from-folder DIR`` reads, with the
same class and file order, so both produce the same training lists) or a list of folders the
user named as classes. Images in deeper sub-folders count for their class folder; images
lying directly in the chosen folder belong to no class and are listed as ignored. Every image
is decoded once (reduced JPEG draft): unreadable files are listed and left out; byte-identical
copies (and the same file reached twice) are kept once.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from PIL import Image

from core.data import ImageList, list_images
from core.finetune import split_train_val
from core.imageio import ImageLoadError, is_image_path, load_image

__all__ = [
    "MIN_CLASSES",
    "MIN_IMAGES_PER_CLASS",
    "ClassSummary",
    "ContextReport",
    "ContextSource",
    "scan_context",
]

#: At least this many classes.
MIN_CLASSES = 2
#: Default minimum number of readable images per class.
MIN_IMAGES_PER_CLASS = 5
#: Thumbnails kept per class (for the context page).
THUMBS_PER_CLASS = 4
_THUMB_EDGE = 96


@dataclass(frozen=True)
class ContextSource:
    """Where the classes come from.

    Attributes:
        folder: a folder whose sub-folders are the classes (``None`` with ``classes``).
        classes: ``(name, folder)`` pairs the user added (used when ``folder`` is ``None``).
    """

    folder: Path | None = None
    classes: tuple[tuple[str, Path], ...] = ()

    @property
    def description(self) -> str:
        """Provenance text (the CLI records the folder it was given)."""
        if self.folder is not None:
            return str(self.folder)
        return "; ".join(f"{n}={p}" for n, p in self.classes)


@dataclass(frozen=True)
class ClassSummary:
    """One class: readable image count, files found and a few thumbnails (PIL, small)."""

    name: str
    readable: int
    found: int
    nested: int
    thumbnails: tuple[Image.Image, ...] = field(default=(), compare=False, repr=False)


@dataclass(frozen=True)
class ContextReport:
    """What :func:`scan_context` found.

    Attributes:
        source: the context source.
        images: readable, de-duplicated labelled images (class order = ``classes``).
        classes: per-class summary, in label order.
        unreadable: ``(path, reason)`` of files that could not be decoded.
        duplicates: ``(path, kept path)`` of copies left out.
        ignored: images outside every class folder.
        errors: problems that block training (empty = valid).
        min_per_class: the minimum that was checked.
    """

    source: ContextSource
    images: ImageList
    classes: tuple[ClassSummary, ...]
    unreadable: tuple[tuple[Path, str], ...]
    duplicates: tuple[tuple[Path, Path], ...]
    ignored: tuple[Path, ...]
    errors: tuple[str, ...]
    min_per_class: int

    @property
    def valid(self) -> bool:
        """Whether training can start."""
        return not self.errors

    def split(self, val_share: float, seed: int = 0) -> tuple[ImageList, ImageList]:
        """Stratified, seeded train/validation split (the split ``finetune`` makes itself)."""
        return split_train_val(self.images, val_share, seed)


def _gather(source: ContextSource) -> tuple[ImageList, list[int], list[Path]]:
    """(labelled list in CLI order, nested flag per path, ignored loose images)."""
    if source.folder is not None:
        root = Path(source.folder)
        if not root.is_dir():
            raise FileNotFoundError(f"no such folder: {root}")
        labelled = list_images(root, labelled=True)
        everything = list_images(root, labelled=False)
        ignored = [p for p in everything.paths if p.parent == root]
        nested = [int(len(p.relative_to(root).parts) > 2) for p in labelled.paths]
        return labelled, nested, ignored
    names = [n for n, _ in source.classes]
    if len(set(names)) != len(names):
        raise ValueError("two classes have the same name")
    paths: list[Path] = []
    labels: list[int] = []
    nested: list[int] = []
    for label, (_name, folder) in enumerate(source.classes):
        folder = Path(folder)
        if not folder.is_dir():
            raise FileNotFoundError(f"no such folder: {folder}")
        found = list_images(folder, labelled=False).paths
        paths += found
        labels += [label] * len(found)
        nested += [int(p.parent != folder) for p in found]
    return ImageList(tuple(paths), tuple(labels), tuple(names)), nested, []


def _probe(path: Path) -> tuple[str | None, str, Image.Image | None]:
    """(error or None, content digest, small thumbnail) of one file."""
    try:
        digest = hashlib.blake2b(path.read_bytes(), digest_size=16).hexdigest()
    except OSError as exc:
        return f"unreadable ({exc.strerror or exc})", "", None
    try:
        im = load_image(path, draft_size=_THUMB_EDGE)
    except ImageLoadError as exc:
        return exc.reason.replace("_", " ") + (f" ({exc.detail})" if exc.detail else ""), "", None
    im.thumbnail((_THUMB_EDGE, _THUMB_EDGE))
    return None, digest, im


def scan_context(
    source: ContextSource, *, min_per_class: int = MIN_IMAGES_PER_CLASS, threads: int = 2,
    on_progress: Callable[[int, int], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> ContextReport | None:
    """Find, decode and check the images of a context (``None`` when stopped).

    Raises:
        FileNotFoundError: a folder does not exist. ValueError: two classes share a name.
    """
    listed, nested, ignored = _gather(source)
    n = len(listed)
    keep: list[int] = []
    unreadable: list[tuple[Path, str]] = []
    duplicates: list[tuple[Path, Path]] = []
    seen_digest: dict[str, Path] = {}
    seen_real: dict[str, Path] = {}
    thumbs: dict[int, list[Image.Image]] = {}
    readable = [0] * len(listed.classes)
    found = [0] * len(listed.classes)
    nested_count = [0] * len(listed.classes)
    with ThreadPoolExecutor(max(1, threads)) as pool:
        chunk = 64
        for start in range(0, n, chunk):
            idx = range(start, min(n, start + chunk))
            probes = list(pool.map(lambda i: _probe(Path(listed.paths[i])), idx))
            for i, (err, digest, thumb) in zip(idx, probes, strict=True):
                path, label = Path(listed.paths[i]), listed.labels[i]
                found[label] += 1
                nested_count[label] += nested[i]
                real = os.path.realpath(path)
                if real in seen_real:
                    duplicates.append((path, seen_real[real]))
                    continue
                seen_real[real] = path
                if err is not None:
                    unreadable.append((path, err))
                    continue
                if digest in seen_digest:
                    duplicates.append((path, seen_digest[digest]))
                    continue
                seen_digest[digest] = path
                keep.append(i)
                readable[label] += 1
                t = thumbs.setdefault(label, [])
                if len(t) < THUMBS_PER_CLASS and thumb is not None:
                    t.append(thumb)
            if on_progress:
                on_progress(min(n, start + chunk), n)
            if should_stop and should_stop():
                return None
    images = listed.subset(keep)
    classes = tuple(ClassSummary(name, readable[c], found[c], nested_count[c],
                                 tuple(thumbs.get(c, ())))
                    for c, name in enumerate(listed.classes))
    return ContextReport(source, images, classes, tuple(unreadable), tuple(duplicates),
                         tuple(ignored), tuple(_check(classes, min_per_class, source)),
                         min_per_class)


def _check(classes: Sequence[ClassSummary], min_per_class: int,
           source: ContextSource) -> list[str]:
    errors: list[str] = []
    usable = [c for c in classes if c.readable > 0]
    if len(usable) < MIN_CLASSES:
        where = (f"{source.folder} has" if source.folder is not None else "The context has")
        errors.append(f"{where} {len(usable)} class(es) with readable images; at least "
                      f"{MIN_CLASSES} are needed (one sub-folder per class).")
    few = [c for c in classes if c.readable < min_per_class]
    if few:
        errors.append(f"Each class needs at least {min_per_class} readable images: "
                      + ", ".join(f"{c.name} has {c.readable}" for c in few) + ".")
    return errors


def class_counts(images: ImageList) -> Mapping[str, int]:
    """``{class name: images}`` of a labelled list."""
    out = {name: 0 for name in images.classes}
    for lab in images.labels:
        if lab >= 0:
            out[images.classes[lab]] += 1
    return out


def is_candidate(path: str | os.PathLike[str]) -> bool:
    """Whether a dropped file could be part of a context."""
    return is_image_path(path)
