"""The encoding API: model file → codes and embeddings, as the library engine calls it."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from core.checkpoint import CheckpointError, load_model_file, save_student
from core.encoder import Encoder, build_hash_head, file_model_id
from core.finetune import fit_itq_head
from core.hash_head import unpack_codes
from core.library.encoder import ImageEncoder, check_encoder_output
from core.models import create_student


def _image(seed: int, size: tuple[int, int] = (80, 60)) -> Image.Image:
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, (4, 4, 3), dtype=np.uint8)
    return Image.fromarray(small).resize(size, Image.BILINEAR)


@pytest.fixture(scope="module")
def images() -> list[Image.Image]:
    return [_image(i) for i in range(10)]


@pytest.fixture(scope="module")
def model_file(tmp_path_factory: pytest.TempPathFactory, images: list[Image.Image]) -> Path:
    d = tmp_path_factory.mktemp("enc")
    paths = []
    for i, im in enumerate(images):
        paths.append(d / f"{i}.png")
        im.save(paths[-1])
    torch.manual_seed(0)
    student = create_student("cukd_mnv2_035", 64)
    out = d / "model.pt"
    fit_itq_head(student, paths, out, n_bits=32, embed_dim=6, threads=1)
    return out


def test_satisfies_library_protocol(model_file: Path) -> None:
    enc = Encoder.from_file(model_file)
    assert isinstance(enc, ImageEncoder)
    assert enc.n_bits == 32 and enc.embed_dim == 6 and enc.input_size == 64
    digest = hashlib.sha256(model_file.read_bytes()).hexdigest()[:16]
    assert enc.model_id == digest == file_model_id(model_file)
    assert Encoder.from_file(model_file).model_id == enc.model_id


def test_codes_shape_dtype_determinism(model_file: Path, images: list[Image.Image]) -> None:
    enc = Encoder.from_file(model_file)
    codes, emb = enc.encode(images)
    assert codes.dtype == np.uint8 and codes.shape == (10, 4)
    assert emb.dtype == np.float32 and emb.shape == (10, 6)
    np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1.0, rtol=1e-5)
    check_encoder_output(enc, 10, codes, emb)
    codes2, emb2 = Encoder.from_file(model_file, batch_size=3).encode(images)
    np.testing.assert_array_equal(codes, codes2)
    np.testing.assert_allclose(emb, emb2, atol=1e-5)
    assert len(np.unique(codes, axis=0)) > 1
    empty_c, empty_e = enc.encode([])
    assert empty_c.shape == (0, 4) and empty_e.shape == (0, 6)


def test_codes_are_signs_of_the_hash_layer(model_file: Path, images: list[Image.Image]) -> None:
    enc = Encoder.from_file(model_file)
    x = torch.stack([torch.from_numpy(np.array(im.resize((64, 64), Image.BILINEAR,
                                                           reducing_gap=3.0))).permute(2, 0, 1)
                     for im in images])
    f = torch.from_numpy(enc.features(x))
    head = build_hash_head(load_model_file(model_file)["hash_head"])
    with torch.no_grad():
        u = head(torch.nn.functional.normalize(f, dim=1))
    bits = unpack_codes(enc.encode(images)[0])
    np.testing.assert_array_equal(bits, (u >= 0).numpy().astype(np.uint8))


def test_whole_frame_no_crop(model_file: Path) -> None:
    """A wide image's sides matter: changing only its left edge changes the embedding."""
    enc = Encoder.from_file(model_file)
    wide = np.full((60, 240, 3), 128, np.uint8)
    edited = wide.copy()
    edited[:, :40] = (255, 0, 0)
    _, e = enc.encode([Image.fromarray(wide), Image.fromarray(edited)])
    assert float(e[0] @ e[1]) < 0.99999


def test_encode_paths_reports_bad_files(model_file: Path, images: list[Image.Image],
                                        tmp_path: Path) -> None:
    enc = Encoder.from_file(model_file)
    good = [tmp_path / "a.jpg", tmp_path / "b.png"]
    images[0].save(good[0])
    images[1].save(good[1])
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"not an image")
    missing = tmp_path / "missing.jpg"
    out = enc.encode_paths([good[0], bad, good[1], missing])
    assert out.paths == good and out.codes.shape == (2, 4) and out.embeddings.shape == (2, 6)
    assert [p for p, _ in out.failed] == [bad, missing]
    direct, _ = enc.encode([Image.open(p).convert("RGB") for p in good])
    np.testing.assert_array_equal(out.codes, direct)


def test_from_dict_matches_from_file(model_file: Path, images: list[Image.Image]) -> None:
    d = load_model_file(model_file)
    a = Encoder.from_dict(d).encode(images)[0]
    b = Encoder.from_file(model_file).encode(images)[0]
    np.testing.assert_array_equal(a, b)


def test_model_without_hash_head_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "plain.pt"
    save_student(path, create_student("cukd_mnv2_035", 64))
    with pytest.raises(CheckpointError, match="no hash head"):
        Encoder.from_file(path)
    d = load_model_file(path)
    d["hash_head"] = {"kind": "mystery", "n_bits": 8, "state": {}}
    with pytest.raises(CheckpointError, match="unknown hash head"):
        Encoder.from_dict(d)


def test_library_engine_indexes_and_searches_with_it(model_file: Path, images: list[Image.Image],
                                                     tmp_path: Path) -> None:
    from tests.library_helpers import open_library

    photos = tmp_path / "photos"
    photos.mkdir()
    for i, im in enumerate(images):
        im.save(photos / f"p{i}.jpg", quality=95)
    enc = Encoder.from_file(model_file)
    lib = open_library(tmp_path / "lib", enc)  # type: ignore[arg-type]
    try:
        lib.add_root(photos)
        lib.scan()
        with Image.open(photos / "p3.jpg") as im:
            hits = lib.search(im.convert("RGB"), k=3)  # in memory: the file is not excluded
        assert hits and Path(hits[0].path).name == "p3.jpg" and hits[0].hamming == 0
    finally:
        lib.close()
