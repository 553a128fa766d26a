"""Wizard page 2: method (CSQ/DCH), code length, speed preset with time estimates, step 1.

The choices carry plain labels; the technical names are in their tooltips."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from PySide6.QtCore import QThreadPool
from PySide6.QtWidgets import (
    QButtonGroup,
    QCheckBox,
    QComboBox,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QRadioButton,
    QVBoxLayout,
    QWizardPage,
)

from cukd_app.wizard.estimate import (
    MachineSpeed,
    estimate_range,
    format_range,
    measure_speed,
)
from cukd_app.wizard.job import DISTILL_EPOCHS
from cukd_app.workers import Worker

__all__ = ["BITS", "PRESET_TEXT", "PRESET_TIPS", "MethodPage"]

BITS = (16, 32, 48, 64)
PRESET_TEXT = {
    "fast": ("Fast", "adapts only the final step that turns a photo into its code"),
    "balanced": ("Balanced", "also adapts the last part of the network"),
    "thorough": ("Thorough", "adapts the whole network"),
}
#: The technical description of each preset (its tooltip).
PRESET_TIPS = {
    "fast": "Trains only the hash layer, on the network's features computed once",
    "balanced": "Trains the hash layer and the last stages of the network",
    "thorough": "Trains every layer of the network (the backbone and the hash layer)",
}


class MethodPage(QWizardPage):
    """Choose how to train; the estimates are measured on this machine when shown.

    Args:
        pool: thread pool for the speed measurement and the teacher check.
        counts: returns ``(n_train, n_val)`` of the chosen context.
        base_model: model file the run starts from.
        teacher_check: ``None`` when step 1 is possible, else the install hint.
        library_count: readable images of the library (step 1 would use them); called on
            a worker thread.
        samples: a few photos of the chosen context (timed for the estimates).
        compare: whether the run will also evaluate a current model.
        overrides: the run's fine-tuning overrides (the estimate follows them).
    """

    def __init__(self, pool: QThreadPool, counts: Callable[[], tuple[int, int]],
                 base_model: Path | None, teacher_check: Callable[[], str | None],
                 library_count: Callable[[], int], *,
                 samples: Callable[[], Sequence[Path]] = list,
                 compare: Callable[[], bool] = lambda: True,
                 overrides: Sequence[tuple[str, Any]] = ()) -> None:
        super().__init__()
        self.setTitle("How to train")
        self.setSubTitle("The defaults suit most photo collections. The new model is compared "
                         "with the current one before you decide to use it.")
        self._pool, self._counts, self._base = pool, counts, base_model
        self._teacher_check = teacher_check
        self._library_count = library_count
        self._samples, self._compare, self._overrides = samples, compare, tuple(overrides)
        self.n_library = 0
        #: The latest estimates in seconds, per preset: the longest time.
        self.seconds: dict[str, float] = {}
        #: The latest estimates as ``(shortest, longest)`` seconds, per preset.
        self.ranges: dict[str, tuple[float, float]] = {}
        self._speed: MachineSpeed | None = None
        self._speed_for: tuple[Path, ...] | None = None
        self._workers: set[Worker] = set()

        self.csq = QRadioButton("Keep each kind of photo far from the others (recommended)")
        self.csq.setToolTip("CSQ — central similarity quantization: every class gets its own "
                            "target code, far from the codes of the other classes")
        self.dch = QRadioButton("Alternative: pull photos of the same kind very close together")
        self.dch.setToolTip("DCH — deep Cauchy hashing: strongly rewards near-identical codes "
                            "for the same class; try it when the recommended method gives "
                            "poor results")
        self.csq.setChecked(True)
        self.loss_group = QButtonGroup(self)
        self.loss_group.addButton(self.csq)
        self.loss_group.addButton(self.dch)
        self.bits = QComboBox()
        for b in BITS:
            self.bits.addItem(f"{b} bits", b)
        self.bits.setCurrentIndex(BITS.index(64))
        self.bits.setToolTip("Longer codes separate more kinds of photos; 64 is the default")

        self.presets: dict[str, QRadioButton] = {}
        self.estimates: dict[str, QLabel] = {}
        self.preset_group = QButtonGroup(self)
        pbox = QGroupBox("Speed")
        pl = QFormLayout(pbox)
        for key, (title, text) in PRESET_TEXT.items():
            rb = QRadioButton(f"{title}: {text}")
            rb.setToolTip(PRESET_TIPS[key])
            est = QLabel("estimating…")
            est.setMinimumWidth(110)
            self.preset_group.addButton(rb)
            self.presets[key], self.estimates[key] = rb, est
            pl.addRow(rb, est)
        self.presets["fast"].setChecked(True)

        self.distill = QCheckBox("Step 1 first: let a large reference model teach a new small "
                                 "model on all photos of your library (no labels needed; much "
                                 "slower)")
        self.distill.setToolTip("Knowledge distillation: a new student network learns to "
                                "imitate the teacher network on your library's photos; step 2 "
                                "then adapts it to your classes")
        self.distill.setEnabled(False)
        self.distill.toggled.connect(self._update_estimates)
        self.teacher_note = QLabel("Checking whether the large reference model is installed…")
        self.teacher_note.setWordWrap(True)

        mbox = QGroupBox("Training method")
        ml = QVBoxLayout(mbox)
        ml.addWidget(self.csq)
        ml.addWidget(self.dch)
        brow = QHBoxLayout()
        brow.addWidget(QLabel("Code length:"))
        brow.addWidget(self.bits)
        brow.addStretch(1)
        ml.addLayout(brow)
        sbox = QGroupBox("Optional step 1")
        sl = QVBoxLayout(sbox)
        sl.addWidget(self.distill)
        sl.addWidget(self.teacher_note)
        lay = QVBoxLayout(self)
        lay.addWidget(mbox)
        lay.addWidget(pbox)
        lay.addWidget(sbox)
        lay.addStretch(1)
        self._checked_teacher = False

    # ------------------------------------------------------------------ values
    @property
    def loss(self) -> str:
        """``csq`` or ``dch``."""
        return "dch" if self.dch.isChecked() else "csq"

    @property
    def n_bits(self) -> int:
        """Code length."""
        return int(self.bits.currentData())

    @property
    def preset(self) -> str:
        """``fast`` | ``balanced`` | ``thorough``."""
        return next(k for k, rb in self.presets.items() if rb.isChecked())

    @property
    def use_distill(self) -> bool:
        """Whether step 1 runs first."""
        return self.distill.isEnabled() and self.distill.isChecked()

    # ------------------------------------------------------------------ background checks
    def _run(self, task: str, fn: Callable, on_result: Callable) -> None:
        w = Worker(task, fn)
        self._workers.add(w)
        w.signals.result.connect(on_result)
        w.signals.error.connect(lambda err: self._estimate_failed(str(err.exception)))
        w.signals.finished.connect(lambda: self._workers.discard(w))
        self._pool.start(w)

    def initializePage(self) -> None:
        """Measure this machine's speed on the chosen photos (again when they changed) and
        check for the teacher (once)."""
        samples = tuple(self._samples())
        if self._base is not None and (self._speed is None or samples != self._speed_for):
            base = self._base
            self._speed_for = samples
            if self._speed is None:
                for lbl in self.estimates.values():
                    lbl.setText("estimating…")
            self._run("Measuring the speed of this computer",
                      lambda: measure_speed(base, samples=samples), self._measured)
        elif self._speed is not None:
            self._update_estimates()
        elif self._base is None:
            self._estimate_failed("no base model installed")
        if not self._checked_teacher:
            self._checked_teacher = True
            check, count = self._teacher_check, self._library_count
            self._run("Checking the teacher model", lambda: (check(), count()),
                      self._teacher_checked)

    def _measured(self, speed: MachineSpeed) -> None:
        self._speed = speed
        self._update_estimates()

    def _estimate_failed(self, why: str) -> None:
        for lbl in self.estimates.values():
            lbl.setText("no estimate")
            lbl.setToolTip(why)

    def _update_estimates(self) -> None:
        if self._speed is None:
            return
        n_train, n_val = self._counts()
        n_lib = self.n_library
        compare = self._compare()
        for key, lbl in self.estimates.items():
            lo, hi = estimate_range(self._speed, n_train, n_val, key,
                                    distill_images=n_lib if self.use_distill else 0,
                                    distill_epochs=DISTILL_EPOCHS[key], compare=compare,
                                    overrides=self._overrides)
            self.seconds[key], self.ranges[key] = hi, (lo, hi)
            lbl.setText(format_range(lo, hi))
            lbl.setToolTip("Measured on this computer with a few of your photos, including "
                           "loading, saving and comparing the models. The shorter time applies "
                           "when training stops early because the test score stopped "
                           "improving.")

    def _teacher_checked(self, out: tuple[str | None, int]) -> None:
        hint, n_lib = out
        self.n_library = n_lib
        if hint is None and n_lib > 0:
            self.distill.setEnabled(True)
            self.teacher_note.setText(f"The large reference model is installed; step 1 "
                                      f"would use the {n_lib} photos of your library.")
        elif hint is None:
            self.teacher_note.setText("The large reference model is installed, but the "
                                      "library has no indexed photos for step 1 yet.")
        else:
            self.teacher_note.setText(
                "Step 1 needs the large reference model (the “teacher”), which is not "
                "installed. " + hint + " Restart the app after installing it.")
