"""``cukd-app --self-test``: check that this installation (source or packaged build) works.

Runs, in order, and stops at nothing (every step is reported):

1. imports: numpy, Pillow (+ HEIF), faiss, torch, watchdog, platformdirs, PySide6 and the app;
2. resources: the ``resources/`` folder, style sheet and icon are found;
3. model: loads the model (``--model PATH``, else ``$CUKD_MODEL``, else the shipped default);
4. encode: encodes a generated image and checks the code and embedding shapes;
5. library: a real :class:`core.library.Library` in a temporary folder indexes three generated
   photos (catalog, faiss index) and finds each one as its own nearest neighbour;
6. train: one optimiser step on a small layer (autograd and ``torch.optim``, which the
   retrain wizard needs; ``optimizer.step()`` imports parts of torch a packaged build must
   keep);
7. window: opens the main window (offscreen when there is no display), opens its library
   and closes it again.

Prints one line per step and exits 0 when all passed, 1 otherwise (with the reasons). Nothing
outside a temporary folder is read or written apart from the model file.
"""

from __future__ import annotations

import os
import platform
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

__all__ = ["MODEL_ENV", "StepResult", "resolve_model_path", "run_self_test"]

#: Environment variable naming a model file (same name as the ``cukd`` command line uses).
MODEL_ENV = "CUKD_MODEL"


@dataclass(frozen=True)
class StepResult:
    """Outcome of one self-test step."""

    name: str
    ok: bool
    detail: str
    seconds: float


def resolve_model_path(model: str | os.PathLike[str] | None = None) -> Path:
    """``model`` → ``$CUKD_MODEL`` → ``resources/models/default.pt``."""
    if model:
        return Path(model).expanduser()
    env = os.environ.get(MODEL_ENV)
    if env:
        return Path(env).expanduser()
    from cukd_app.paths import default_model_path

    return default_model_path()


def _needs_offscreen() -> bool:
    """No display to open a window on (Linux/BSD without X11 or Wayland)."""
    if sys.platform in ("win32", "darwin") or os.environ.get("QT_QPA_PLATFORM"):
        return False
    return not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))


def _test_image(seed: int, size: int = 96) -> Any:
    """A smooth random colour image (different for every ``seed``)."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(seed)
    base = rng.integers(0, 256, (4, 4, 3), dtype=np.uint8)
    return Image.fromarray(base).resize((size, size), Image.Resampling.BILINEAR)


class _SelfTest:
    """The steps; each returns a detail string or raises."""

    def __init__(self, model: Path, work: Path) -> None:
        self.model_path = model
        self.work = work
        self.encoder: Any = None

    def imports(self) -> str:
        import faiss
        import numpy
        import pillow_heif
        import platformdirs  # noqa: F401
        import PySide6
        import torch
        import watchdog.observers  # noqa: F401
        from PIL import Image

        import core.encoder
        import core.library  # noqa: F401
        import cukd_app.app  # noqa: F401

        pillow_heif.register_heif_opener()
        return (f"python {platform.python_version()}, torch {torch.__version__}, "
                f"faiss {faiss.__version__}, numpy {numpy.__version__}, "
                f"Pillow {Image.__version__}, PySide6 {PySide6.__version__}")

    def resources(self) -> str:
        from cukd_app.paths import app_icon_path, resources_dir

        root = resources_dir()
        missing = [str(p) for p in (root / "style" / "app.qss", app_icon_path())
                   if not p.is_file()]
        if missing:
            raise FileNotFoundError(f"missing resources: {', '.join(missing)}")
        return str(root)

    def model(self) -> str:
        from core.encoder import Encoder

        if not self.model_path.is_file():
            raise FileNotFoundError(f"no model file at {self.model_path} (pass --model PATH "
                                    f"or set {MODEL_ENV})")
        self.encoder = Encoder.from_file(self.model_path)
        e = self.encoder
        return (f"{self.model_path.name}: {e.n_bits} bits, {e.embed_dim}-d embedding, "
                f"input {e.input_size} px, id {e.model_id}")

    def encode(self) -> str:
        import numpy as np

        e = self._encoder()
        codes, emb = e.encode([_test_image(0)])
        if codes.shape != (1, e.n_bits // 8) or codes.dtype != np.uint8:
            raise ValueError(f"codes have shape {codes.shape} {codes.dtype}")
        if emb.shape != (1, e.embed_dim) or not np.isfinite(emb).all():
            raise ValueError(f"embedding has shape {emb.shape} or is not finite")
        return f"code {codes[0, :4].tobytes().hex()}…"

    def library(self) -> str:
        from core.library import Library

        photos = self.work / "photos"
        photos.mkdir()
        paths = []
        for i in range(3):
            p = photos / f"photo{i}.jpg"
            _test_image(i + 1).save(p, quality=92)
            paths.append(p)
        with Library.open(self.work / "library", self._encoder()) as lib:
            lib.add_root(photos)
            result = lib.scan()
            status = lib.status()
            if status.indexed != len(paths) or result.errors:
                raise AssertionError(f"indexed {status.indexed} of {len(paths)} photos "
                                     f"({len(result.errors)} errors)")
            for i, p in enumerate(paths):
                hits = lib.search(_test_image(i + 1), k=3)
                if not hits or Path(hits[0].path).name != p.name:
                    got = [Path(h.path).name for h in hits]
                    raise AssertionError(f"searching a copy of {p.name} returned {got}")
        return f"{status.indexed} photos indexed; a copy of each finds it first"

    def train(self) -> str:
        import torch

        torch.manual_seed(0)
        layer = torch.nn.Linear(16, 8)
        before = layer.weight.detach().clone()
        opt = torch.optim.AdamW(layer.parameters(), lr=0.01)
        loss = layer(torch.randn(4, 16)).pow(2).mean()
        loss.backward()
        opt.step()
        opt.zero_grad()
        if torch.equal(before, layer.weight.detach()):
            raise AssertionError("the optimiser step changed nothing")
        return f"AdamW step, loss {loss.item():.3f}"

    def window(self) -> str:
        if _needs_offscreen():
            os.environ["QT_QPA_PLATFORM"] = "offscreen"
        from PySide6.QtCore import QEventLoop, QTimer
        from PySide6.QtWidgets import QApplication

        from cukd_app.app import APP_NAME, MainWindow
        from cukd_app.context import build_context
        from cukd_app.paths import AppPaths
        from cukd_app.services.model_loader import ModelInfo

        app = QApplication.instance() or QApplication([sys.argv[0]])
        encoder = self.encoder

        def factory() -> ModelInfo:
            return ModelInfo(encoder, "self-test")

        ctx = build_context(paths=AppPaths(self.work / "profile"), encoder_factory=factory,
                            library_dir=self.work / "window-library", watch=False)
        win = MainWindow(ctx)
        try:
            win.show()
            loop = QEventLoop()
            opened: list[Any] = []
            ctx.library.opened.connect(lambda info: (opened.append(info), loop.quit()))
            QTimer.singleShot(30000, loop.quit)
            ctx.library.open()
            if not opened:
                loop.exec()
            app.processEvents()
            if not win.isVisible() or win.windowTitle() != APP_NAME:
                raise AssertionError("the main window did not show")
            if not opened:
                raise TimeoutError("the library did not open within 30 s")
            platform_name = app.platformName()
        finally:
            win.close()
            ctx.close()
            win.deleteLater()
            app.processEvents()
        return f"main window shown and closed (Qt platform {platform_name})"

    def _encoder(self) -> Any:
        if self.encoder is None:
            raise RuntimeError("no model loaded (see the model step)")
        return self.encoder


def _output() -> TextIO:
    """stdout, or a file in the temp folder for windowed builds that have none (Windows)."""
    if sys.stdout is not None:
        return sys.stdout
    return open(Path(tempfile.gettempdir()) / "cukd-app-self-test.txt", "w",
                encoding="utf-8")


def run_self_test(model: str | os.PathLike[str] | None = None,
                  out: TextIO | None = None) -> int:
    """Run every step, print a report to ``out`` (default stdout); returns the exit code."""
    out = out or _output()
    model_path = resolve_model_path(model)
    results: list[StepResult] = []
    t_all = time.perf_counter()
    print(f"cukd-app self-test ({'packaged build' if getattr(sys, 'frozen', False) else 'source'}"
          f", {platform.system()} {platform.machine()})", file=out, flush=True)
    with tempfile.TemporaryDirectory(prefix="cukd-selftest-") as tmp:
        test = _SelfTest(model_path, Path(tmp))
        steps: list[tuple[str, Callable[[], str]]] = [
            ("imports", test.imports), ("resources", test.resources), ("model", test.model),
            ("encode", test.encode), ("library", test.library), ("train", test.train),
            ("window", test.window),
        ]
        for name, fn in steps:
            t0 = time.perf_counter()
            try:
                detail, ok = fn(), True
            except Exception as exc:  # every failure is reported, the next step still runs
                detail, ok = f"{type(exc).__name__}: {exc}", False
                tb = traceback.format_exc()
            r = StepResult(name, ok, detail, time.perf_counter() - t0)
            results.append(r)
            print(f"{'ok  ' if ok else 'FAIL'} {name:<9} {r.seconds * 1e3:7.0f} ms  {detail}",
                  file=out, flush=True)
            if not ok:
                print("     " + tb.rstrip().replace("\n", "\n     "), file=out, flush=True)
    failed = [r.name for r in results if not r.ok]
    total = time.perf_counter() - t_all
    if failed:
        print(f"self-test FAILED ({', '.join(failed)}) in {total:.1f} s", file=out, flush=True)
        return 1
    print(f"self-test passed in {total:.1f} s", file=out, flush=True)
    return 0
