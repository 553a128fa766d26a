"""Step-1 distillation: teacher cache, resume, stop, bad files, torchrun DDP."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from core.checkpoint import CheckpointError, load_student
from core.data import list_images
from core.distill import DistillConfig, distill, distill_within
from tests.models_helpers import CountingTeacher, write_images

torch.set_num_threads(1)

CFG = DistillConfig(student="cukd_mnv2_035", input_size=64, epochs=2, batch_size=8, views=2,
                    decode_threads=1, lr=1e-3)


@pytest.fixture
def images(tmp_path) -> list[Path]:
    return write_images(tmp_path / "imgs", 20)


def test_cache_means_later_epochs_do_not_call_the_teacher(tmp_path, images) -> None:
    teacher = CountingTeacher()
    r1 = distill(CFG.__class__(**{**CFG.__dict__, "epochs": 1}), images, tmp_path / "run",
                 teacher=teacher)
    first = teacher.calls
    assert first == r1.teacher_batches > 0
    assert first == -(-len(images) * CFG.views // CFG.batch_size)  # every view exactly once
    # Resume for a second epoch: only student passes.
    r2 = distill(CFG, images, tmp_path / "run", teacher=teacher)
    assert teacher.calls == first
    assert r2.teacher_batches == 0
    assert [h["epoch"] for h in r2.history] == [1, 2]
    assert r2.model_path is not None and r2.model_path.exists()
    # A new run sharing the cache folder does not call the teacher either.
    distill(CFG, images, tmp_path / "other", teacher=teacher,
            cache_dir=tmp_path / "run" / "cache")
    assert teacher.calls == first


def test_cache_keeps_rows_of_unchanged_images(tmp_path, images) -> None:
    teacher = CountingTeacher()
    cfg = CFG.__class__(**{**CFG.__dict__, "epochs": 1})
    distill(cfg, images[:16], tmp_path / "a", teacher=teacher, cache_dir=tmp_path / "c")
    before = teacher.calls
    distill(cfg, images, tmp_path / "b", teacher=teacher, cache_dir=tmp_path / "c")
    assert teacher.calls - before == -(-4 * CFG.views // CFG.batch_size)  # only the 4 new ones


def test_stop_then_resume_equals_uninterrupted_run(tmp_path, images) -> None:
    full = distill(CFG, images, tmp_path / "full", teacher=CountingTeacher())
    ticks = iter(range(1000))
    stopped = distill(CFG, images, tmp_path / "part", teacher=CountingTeacher(),
                      should_stop=lambda: next(ticks) == 3)
    assert stopped.stopped and stopped.model_path is None
    assert (tmp_path / "part" / "last.pt").exists()
    resumed = distill(CFG, images, tmp_path / "part", teacher=CountingTeacher())
    assert not resumed.stopped and resumed.epochs_done == 2
    a, _ = load_student(full.model_path)
    b, _ = load_student(resumed.model_path)
    for (k, va), vb in zip(a.state_dict().items(), b.state_dict().values(), strict=True):
        torch.testing.assert_close(va, vb, msg=k)


def test_progress_reports_both_phases_and_eta(tmp_path, images) -> None:
    seen = []
    distill(CFG, images, tmp_path / "run", teacher=CountingTeacher(), on_progress=seen.append)
    phases = {p.phase for p in seen}
    assert phases == {"cache", "train"}
    last = [p for p in seen if p.phase == "train"][-1]
    assert last.epoch == 2 and last.done == last.total and last.eta_seconds == 0


def test_budget_picks_the_epochs_that_fit_and_runs_the_teacher_once(tmp_path, images) -> None:
    teacher = CountingTeacher()
    cfg = CFG.__class__(**{**CFG.__dict__, "epochs": 50})
    # A budget far above the run's cost: the epoch cap decides and the teacher runs once.
    res = distill_within(cfg, images, tmp_path / "run", 3600, teacher=teacher)
    assert res.epochs_done == 50 and res.model_path == tmp_path / "run" / "student.pt"
    assert teacher.calls == -(-len(images) * CFG.views // CFG.batch_size)
    _, meta = load_student(res.model_path)
    assert meta["provenance"]["config"]["epochs"] == 50
    # A budget already spent by the teacher pass and the probe: one epoch, still a model.
    small = distill_within(cfg, images, tmp_path / "small", 0.0, teacher=CountingTeacher())
    assert small.epochs_done == 1 and small.model_path.exists()


def test_unreadable_images_are_skipped_and_reported(tmp_path, images) -> None:
    bad = tmp_path / "imgs" / "broken.jpg"
    bad.write_bytes(b"\xff\xd8\xff garbage")
    empty = tmp_path / "imgs" / "empty.png"
    empty.touch()
    res = distill(CFG, [*images, bad, empty], tmp_path / "run", teacher=CountingTeacher())
    assert len(res.failed_images) == 2
    assert any("broken.jpg" in m for m in res.failed_images)
    assert res.model_path.exists()


def test_distillation_reduces_the_loss_and_records_provenance(tmp_path, images) -> None:
    cfg = CFG.__class__(**{**CFG.__dict__, "epochs": 6, "lr": 3e-3})
    res = distill(cfg, list_images(tmp_path / "imgs"), tmp_path / "run",
                  teacher=CountingTeacher(), val_images=images[:6], data_description="gen")
    losses = [h["loss"] for h in res.history]
    assert losses[-1] < losses[0]
    assert all("val_cosine" in h for h in res.history)
    _, d = load_student(res.model_path)
    prov = d["provenance"]
    assert prov["data"] == "gen" and prov["epochs"] == 6 and prov["seed"] == 0
    assert prov["config"]["views"] == 2 and d["teacher"] == "tiny"


class SizeRecordingTeacher(CountingTeacher):
    """Records the pixel sizes of the batches it is given."""

    def __init__(self) -> None:
        super().__init__()
        self.sizes: set[int] = set()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.sizes.add(int(x.shape[-1]))
        return super().forward(x)


def test_teacher_sees_views_at_its_own_size(tmp_path, images) -> None:
    cfg = replace(CFG, epochs=1, teacher_size=96)
    teacher = SizeRecordingTeacher()
    res = distill(cfg, images, tmp_path / "run", teacher=teacher, val_images=images[:4])
    assert teacher.sizes == {96}  # cache fill and validation cosine
    assert "val_cosine" in res.history[0]
    cache = next((tmp_path / "run" / "cache").rglob("*.json"), None)
    assert cache is not None and '"teacher_size": 96' in cache.read_text()
    student, d = load_student(res.model_path)
    assert student.preprocess.input_size == 64  # the student keeps its own size
    assert d["provenance"]["config"]["teacher_size"] == 96
    # The same views at one size are another cache (not mixed with the 96 px features).
    same = SizeRecordingTeacher()
    distill(replace(CFG, epochs=1), images, tmp_path / "plain", teacher=same,
            cache_dir=tmp_path / "run" / "cache")
    assert same.sizes == {64} and same.calls > 0


def test_init_starts_from_a_model_files_student(tmp_path, images) -> None:
    first = distill(replace(CFG, epochs=1), images, tmp_path / "a", teacher=CountingTeacher())
    start, _ = load_student(first.model_path)
    # lr 0: the weights stay where init put them (BatchNorm statistics still move).
    res = distill(replace(CFG, epochs=1, lr=0.0, init=str(first.model_path)), images,
                  tmp_path / "b", teacher=CountingTeacher())
    after, d = load_student(res.model_path)
    weights = [k for k, v in start.state_dict().items() if v.is_floating_point()
               and "running" not in k]
    assert all(torch.equal(start.state_dict()[k], after.state_dict()[k]) for k in weights)
    assert d["provenance"]["config"]["init"] == str(first.model_path)
    fresh = distill(replace(CFG, epochs=1, lr=0.0, seed=1), images, tmp_path / "c",
                    teacher=CountingTeacher())
    other, _ = load_student(fresh.model_path)
    assert not all(torch.equal(start.state_dict()[k], other.state_dict()[k]) for k in weights)
    with pytest.raises(CheckpointError, match="not cukd_mnv2_035t"):
        distill(replace(CFG, student="cukd_mnv2_035t", init=str(first.model_path)), images,
                tmp_path / "d", teacher=CountingTeacher())


def test_light_views_keep_most_of_the_frame_in_colour() -> None:
    from PIL import Image, ImageStat

    from core.preprocess import Augment, augment_view

    im = Image.new("RGB", (200, 100), (200, 40, 40))
    im.paste((40, 40, 200), (100, 0, 200, 100))  # left red, right blue
    for v in range(1, 40):
        view = augment_view(im, 64, Augment.light(), seed=3, view=v)
        r, g, b = ImageStat.Stat(view).mean
        assert abs(r - g) > 20 or abs(b - g) > 20  # never grey
        # a crop of >= 60 % of the area cannot lose either half
        assert min(r, b) > 45, (v, r, b)


def test_no_images_is_an_error(tmp_path) -> None:
    with pytest.raises(ValueError, match="no training images"):
        distill(CFG, [], tmp_path / "run", teacher=CountingTeacher())


SCRIPT = textwrap.dedent("""
    import json, sys, torch
    import torch.distributed as dist
    sys.path.insert(0, {root!r})
    from tests.models_helpers import CountingTeacher
    from core.distill import DistillConfig, distill, distill_within
    torch.set_num_threads(1)
    from pathlib import Path
    imgs = sorted(Path({imgs!r}).glob("*.jpg"))
    cfg = DistillConfig(student="cukd_mnv2_035", input_size=64, epochs=2, batch_size=4,
                        views=2, decode_threads=1)
    t = CountingTeacher()
    res = distill(cfg, imgs, {out!r}, teacher=t)
    import os
    Path({out!r}, "rank%s.json" % os.environ["RANK"]).write_text(json.dumps(
        {{"calls": t.calls, "epochs": res.epochs_done, "world": os.environ["WORLD_SIZE"]}}))
""")


def test_torchrun_two_process_gloo(tmp_path, images) -> None:
    out = tmp_path / "ddp"
    script = tmp_path / "run_ddp.py"
    root = str(Path(__file__).resolve().parents[1])
    script.write_text(SCRIPT.format(root=root, imgs=str(tmp_path / "imgs"), out=str(out)))
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2",
         "--master_port=0", "--rdzv_backend=c10d", "--rdzv_endpoint=localhost:0",
         str(script)], capture_output=True, text=True, timeout=240, env=env, cwd=root)
    assert proc.returncode == 0, proc.stderr[-3000:]
    import json

    ranks = [json.loads((out / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert all(r["world"] == "2" and r["epochs"] == 2 for r in ranks)
    # The teacher pass was split between the two processes.
    assert all(r["calls"] > 0 for r in ranks)
    assert sum(r["calls"] for r in ranks) <= -(-len(images) * 2 // 4) + 1
    assert (out / "student.pt").exists()


def test_distill_loss_reference_and_shape_check() -> None:
    from core.distill import distill_loss

    g = torch.Generator().manual_seed(0)
    p, t = torch.randn(5, 7, generator=g), torch.randn(5, 7, generator=g)
    mse = ((p - t) ** 2).mean()
    torch.testing.assert_close(distill_loss(p, t), mse)
    cos = torch.stack([torch.dot(a, b) / (a.norm() * b.norm()) for a, b in zip(p, t,
                                                                               strict=True)])
    torch.testing.assert_close(distill_loss(p, t, 2.0), mse + 2.0 * (1 - cos).mean())
    with pytest.raises(ValueError, match="does not match"):
        distill_loss(p, t[:, :3])


def test_config_validation() -> None:
    with pytest.raises(ValueError, match="cosine_weight"):
        DistillConfig(cosine_weight=-1)
    with pytest.raises(ValueError, match="epochs"):
        DistillConfig(epochs=0)
    with pytest.raises(ValueError, match="teacher_size"):
        DistillConfig(teacher_size=8)
