"""The retrain wizard: context → method → training → result (CUKDFIR step 2, optional step 1).

Non-modal, so the app stays usable while it trains. Nothing of the library changes until
the user picks "Use this model" on the last page: then the new model is added to the model
store and handed to ``services.adopt`` (the library re-encodes in the background and swaps
when done).

Closing the window (or Cancel, or Escape) while training runs asks first: keep training in
the background (the window hides, a notification says how to reopen it — Library ▸ Adapt
the model to my photos… shows it again — and when training ends the window comes back on
its result page), stop training and close, or stay. ``backgroundStatus`` carries the
progress while the window is hidden. Cancel with no training running closes as before.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

from PySide6.QtCore import Qt, QThreadPool, Signal, Slot
from PySide6.QtGui import QShowEvent
from PySide6.QtWidgets import QAbstractButton, QMessageBox, QWidget, QWizard

from cukd_app.models_manager.store import ModelStoreError
from cukd_app.wizard.context_page import ContextPage
from cukd_app.wizard.job import RetrainEvent, RetrainPlan
from cukd_app.wizard.method_page import MethodPage
from cukd_app.wizard.result_page import ResultPage
from cukd_app.wizard.services import (
    RetrainRun,
    WizardServices,
    library_images,
    remove_work_dir,
)
from cukd_app.wizard.training_page import TrainingPage

__all__ = ["RetrainWizard"]

logger = logging.getLogger(__name__)


class RetrainWizard(QWizard):
    """Guided, cancellable retraining on the user's own labelled folders.

    Signals:
        modelSaved(Path): the new model was added to the model store.
        backgroundStatus(str): while training runs with the window hidden, a sentence on
            its progress (for a status bar); ``""`` when the window shows again or training
            ended.
    """

    CONTEXT, METHOD, TRAINING, RESULT = range(4)
    modelSaved = Signal(object)
    backgroundStatus = Signal(str)
    #: Where the wizard is reopened from (the main window's menu).
    REOPEN_HINT = "Library ▸ Adapt the model to my photos…"

    def __init__(self, services: WizardServices, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("Adapt the model to your photos")
        self.setWizardStyle(QWizard.WizardStyle.ClassicStyle)
        self.setOption(QWizard.WizardOption.NoBackButtonOnLastPage, True)
        self.setWindowModality(Qt.WindowModality.NonModal)
        self.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose, False)
        self.resize(1000, 800)
        self.services = services
        self.pool = QThreadPool(self)
        self.pool.setMaxThreadCount(2)
        self.run = RetrainRun(services.notifier, self)
        self.work_dir: Path | None = None
        self.plan: RetrainPlan | None = None
        lib = services.library
        self.context_page = ContextPage(services.min_per_class, self.pool)
        self.method_page = MethodPage(self.pool, self._counts, services.base_model,
                                      services.teacher_check,
                                      lambda: len(library_images(lib)),
                                      samples=self._sample_photos,
                                      compare=lambda: lib.has_model,
                                      overrides=services.overrides)
        self.training_page = TrainingPage(self.run, self._start_training)
        self.result_page = ResultPage(self.pool, lib.has_model)
        self.setPage(self.CONTEXT, self.context_page)
        self.setPage(self.METHOD, self.method_page)
        self.setPage(self.TRAINING, self.training_page)
        self.setPage(self.RESULT, self.result_page)
        self.training_page.ended.connect(self._training_ended)
        self.currentIdChanged.connect(self._page_changed)
        self.run.event.connect(self._background_progress)
        #: The open "Training is running" question, and its buttons by answer.
        self.close_question: QMessageBox | None = None
        self.close_answers: dict[str, QAbstractButton] = {}
        self.in_background = False
        if services.base_model is None:
            self.context_page.errors.setText(
                "No model is installed to start from; install the default model first.")

    # ------------------------------------------------------------------ plan
    def _counts(self) -> tuple[int, int]:
        rep = self.context_page.report
        if rep is None:
            return 0, 0
        train, val = rep.split(self.context_page.val_share.value() / 100,
                               self.context_page.seed.value())
        return len(train), len(val)

    def _sample_photos(self, n: int = 4) -> list[Path]:
        """A few photos spread over the chosen context (the estimates time them)."""
        rep = self.context_page.report
        if rep is None or not len(rep.images):
            return []
        paths = list(rep.images.paths)
        step = max(1, len(paths) // n)
        return [Path(p) for p in paths[::step][:n]]

    def build_plan(self) -> RetrainPlan:
        """The plan from the first two pages."""
        rep = self.context_page.report
        assert rep is not None and rep.valid and self.services.base_model is not None
        share = self.context_page.val_share.value() / 100
        seed = self.context_page.seed.value()
        train, val = rep.split(share, seed)
        stamp = time.strftime("%Y%m%d-%H%M%S")
        self.work_dir = self.services.work_root / f"run-{stamp}"
        mp = self.method_page
        distill = tuple(library_images(self.services.library)) if mp.use_distill else ()
        return RetrainPlan(train, val, mp.preset, mp.loss, mp.n_bits, self.services.base_model,
                           self.work_dir, rep.source.description, share, seed, distill,
                           self.services.overrides)

    def _start_training(self) -> None:
        self.plan = self.build_plan()
        lib = self.services.library
        current = lib.library.encoder if lib.library is not None else None
        logger.info("retraining: %s, %s %d bits, %d train / %d val images", self.plan.preset,
                    self.plan.loss, self.plan.n_bits, len(self.plan.train), len(self.plan.val))
        self.run.start(self.plan, current)
        self._update_buttons()

    # ------------------------------------------------------------------ navigation
    @Slot(int)
    def _page_changed(self, page_id: int) -> None:
        self._update_buttons()
        if page_id == self.RESULT and self.training_page.outcome is not None:
            self.result_page.show_outcome(self.training_page.outcome, self._default_name(),
                                          self.method_page.n_library)

    def _update_buttons(self) -> None:
        training = self.currentId() == self.TRAINING and self.training_page.state == "running"
        first = self.currentId() == self.startId()
        self.button(QWizard.WizardButton.BackButton).setEnabled(not training and not first)

    @Slot(str)
    def _training_ended(self, state: str) -> None:
        self._drop_close_question()
        self._update_buttons()
        if state != "done" and self.work_dir is not None:
            remove_work_dir(self.work_dir)
        hidden = self.in_background
        self.in_background = False
        if hidden:
            self.backgroundStatus.emit("")
        if state == "done":
            self.next()
            if hidden:
                self.services.notifier.info("Training finished: the new model is ready to "
                                            "compare with the current one and to be used, "
                                            "kept or discarded.")
                self.setAttribute(Qt.WidgetAttribute.WA_ShowWithoutActivating, True)
                self.show()
                self.setAttribute(Qt.WidgetAttribute.WA_ShowWithoutActivating, False)
        elif hidden and state == "cancelled":
            self.services.notifier.info("Training in the background was stopped; your "
                                        "current model and index are unchanged.")

    @Slot(object)
    def _background_progress(self, ev: RetrainEvent) -> None:
        if not self.in_background or ev.phase == "log":
            return
        tp = self.training_page
        eta = tp.eta.text()
        self.backgroundStatus.emit(f"Training in the background: {tp.phase.text()}"
                                   + (f", {eta}" if eta else "") + ".")

    def _default_name(self) -> str:
        rep = self.context_page.report
        src = rep.source if rep is not None else None
        base = (src.folder.name if src is not None and src.folder is not None
                else "my classes")
        mp = self.method_page
        return f"{base} {mp.loss.upper()} {mp.n_bits} bits ({mp.preset})"

    def validateCurrentPage(self) -> bool:
        """On Finish: use, keep or discard the new model."""
        if self.currentId() == self.RESULT:
            return self._apply_choice()
        return super().validateCurrentPage()

    def _apply_choice(self) -> bool:
        out = self.training_page.outcome
        if out is None or out.model_path is None:
            return True
        choice = self.result_page.choice
        if choice is None:
            return False
        try:
            if choice == "discard":
                self.services.notifier.info("The new model was discarded; nothing changed.")
            else:
                name = self.result_page.name.text().strip() or self._default_name()
                dest = self.services.store.add(out.model_path, name, move=True)
                self.modelSaved.emit(dest)
                if choice == "use":
                    self.services.adopt(dest)
                else:
                    self.services.notifier.info(f"Saved model “{name}” for later (Library ▸ "
                                                "Manage models).")
        except (ModelStoreError, OSError) as exc:
            self.services.notifier.error(exc)
            return False
        if self.work_dir is not None:
            remove_work_dir(self.work_dir)
        return True

    # ------------------------------------------------------------------ closing
    @property
    def training(self) -> bool:
        """Training runs and was not asked to stop (its result has not arrived yet)."""
        tp = self.training_page
        return self.run.running and tp.state == "running" and not tp.cancelling

    def reject(self) -> None:
        """Cancel, Escape or closing the window: while training runs, ask first (keep it in
        the background, stop it and close, or stay); otherwise clean up and close."""
        if self.training:
            self.ask_about_training()
            return  # still visible: QDialog ignores the close event
        if self.work_dir is not None and self.training_page.state != "running":
            remove_work_dir(self.work_dir)
        super().reject()

    def ask_about_training(self) -> QMessageBox:
        """The "Training is running" question (non-blocking; answered by a button)."""
        if self.close_question is not None:
            self.close_question.raise_()
            return self.close_question
        box = QMessageBox(QMessageBox.Icon.Question, "Training is running",
                          "Training is running. Keep it running in the background, or stop "
                          "it and close?", QMessageBox.StandardButton.NoButton, self)
        box.setInformativeText(
            "In the background you can keep searching; reopen this window with "
            f"{self.REOPEN_HINT} to follow it, and it comes back by itself when training "
            "ends. Stopping leaves your current model and index as they are.")
        keep = box.addButton("Keep training in background", QMessageBox.ButtonRole.AcceptRole)
        stop = box.addButton("Stop training and close", QMessageBox.ButtonRole.DestructiveRole)
        stay = box.addButton("Don’t close", QMessageBox.ButtonRole.RejectRole)
        box.setDefaultButton(keep)
        box.setEscapeButton(stay)
        self.close_answers = {"keep": keep, "stop": stop, "stay": stay}
        box.buttonClicked.connect(self._close_answered)
        box.setWindowModality(Qt.WindowModality.WindowModal)
        self.close_question = box
        box.open()
        return box

    @Slot(QAbstractButton)
    def _close_answered(self, button: QAbstractButton) -> None:
        answer = next((k for k, b in self.close_answers.items() if b is button), "stay")
        self._drop_close_question()
        if not self.training:  # training ended meanwhile: nothing left to decide
            return
        if answer == "keep":
            self.in_background = True
            self.hide()
            self.services.notifier.info(
                f"Training continues in the background. Open {self.REOPEN_HINT} to follow "
                "it; the result appears when it is done.")
            self.backgroundStatus.emit("Training in the background.")
        elif answer == "stop":
            self.training_page.cancel()
            super().reject()

    def _drop_close_question(self) -> None:
        box, self.close_question = self.close_question, None
        self.close_answers = {}
        if box is not None:
            box.buttonClicked.disconnect(self._close_answered)
            box.close()
            box.deleteLater()

    def showEvent(self, event: QShowEvent) -> None:
        """Shown again (reopened from the menu): training is no longer in the background."""
        if self.in_background:
            self.in_background = False
            self.backgroundStatus.emit("")
        super().showEvent(event)

    def shutdown(self, timeout_ms: int = 30000) -> None:
        """Stop and wait for background work (app shutdown, tests)."""
        self.run.cancel()
        self.run.wait(timeout_ms)
        self.pool.waitForDone(timeout_ms)
