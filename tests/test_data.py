"""Image lists from folder trees and list files."""

from __future__ import annotations

import pytest

from core.data import ImageList, list_images, read_list_file
from tests.models_helpers import write_images


def test_folder_tree_with_classes(tmp_path) -> None:
    write_images(tmp_path / "ctx", 9, classes=3)
    (tmp_path / "ctx" / ".hidden").mkdir()
    write_images(tmp_path / "ctx" / ".hidden", 2)
    (tmp_path / "ctx" / "class0" / "notes.txt").write_text("not an image")
    il = list_images(tmp_path / "ctx")
    assert il.classes == ("class0", "class1", "class2")
    assert len(il) == 9 and sorted(il.labels) == [0, 0, 0, 1, 1, 1, 2, 2, 2]
    assert all(p.parent.name == il.classes[lab] for p, lab in zip(il.paths, il.labels,
                                                                   strict=True))


def test_flat_folder_is_unlabelled(tmp_path) -> None:
    write_images(tmp_path, 4)
    il = list_images(tmp_path)
    assert len(il) == 4 and set(il.labels) == {-1} and il.classes == ()


def test_list_file_single_and_multi_label(tmp_path) -> None:
    f = tmp_path / "split.txt"
    f.write_text("a/1.jpg 3\nb/2.jpg 0 1 1\n\nc/3.jpg\n")
    il = read_list_file(f, root=tmp_path / "root")
    rel = [p.relative_to(tmp_path / "root").as_posix() for p in il.paths]
    assert rel == ["a/1.jpg", "b/2.jpg", "c/3.jpg"]
    assert il.labels == (3, 1, -1)
    bad = tmp_path / "bad.txt"
    bad.write_text("x.jpg cat\n")
    with pytest.raises(ValueError, match=r"bad\.txt:1"):
        read_list_file(bad)


def test_missing_source(tmp_path) -> None:
    with pytest.raises(FileNotFoundError):
        list_images(tmp_path / "nope")


def test_per_class_takes_a_seeded_stratified_subset(tmp_path):
    paths = tuple(tmp_path / f"{i}.jpg" for i in range(30))
    labels = tuple([0] * 12 + [1] * 3 + [2] * 10 + [-1] * 5)
    images = ImageList(paths, labels, ("a", "b", "c"))
    sub = images.per_class(4, seed=1)
    assert sorted(sub.labels) == [0] * 4 + [1] * 3 + [2] * 4  # small classes kept whole
    assert list(sub.paths) == sorted(sub.paths, key=paths.index)  # original order
    assert sub == images.per_class(4, seed=1) and sub.classes == images.classes
