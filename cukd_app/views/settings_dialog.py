"""The settings dialog (edits a copy of :class:`cukd_app.settings.AppSettings`)."""

from __future__ import annotations

from PySide6.QtWidgets import (
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QFormLayout,
    QLabel,
    QPlainTextEdit,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from cukd_app.settings import THEMES, WATCH_MODES, AppSettings

__all__ = ["SettingsDialog"]


class SettingsDialog(QDialog):
    """Thumbnail size, worker threads, exclusions, watching mode and theme."""

    def __init__(self, settings: AppSettings, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("Settings")
        self._base = settings
        self.thumb = QSpinBox()
        self.thumb.setRange(48, 512)
        self.thumb.setSingleStep(16)
        self.thumb.setSuffix(" px")
        self.thumb.setValue(settings.thumbnail_size)
        self.threads = QSpinBox()
        self.threads.setRange(1, 32)
        self.threads.setValue(settings.worker_threads)
        self.exclusions = QPlainTextEdit("\n".join(settings.exclusions))
        self.exclusions.setPlaceholderText("One pattern per line, e.g. *.tmp or Private/*")
        self.exclusions.setFixedHeight(90)
        self.watch = QComboBox()
        for m in WATCH_MODES:
            self.watch.addItem({"native": "Native file events (local disks)",
                                "polling": "Polling (network drives)"}[m], m)
        self.watch.setCurrentIndex(WATCH_MODES.index(settings.watch_mode))
        self.theme = QComboBox()
        for t in THEMES:
            self.theme.addItem({"system": "Follow the system", "light": "Light",
                                "dark": "Dark"}[t], t)
        self.theme.setCurrentIndex(THEMES.index(settings.theme))
        form = QFormLayout()
        form.addRow("Thumbnail size", self.thumb)
        form.addRow("Worker threads", self.threads)
        form.addRow("Excluded files", self.exclusions)
        form.addRow("Watch folders with", self.watch)
        form.addRow("Theme", self.theme)
        note = QLabel("<small>Exclusions and watching apply from the next start.</small>")
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Ok
                                   | QDialogButtonBox.StandardButton.Cancel)
        buttons.accepted.connect(self.accept)
        buttons.rejected.connect(self.reject)
        lay = QVBoxLayout(self)
        lay.addLayout(form)
        lay.addWidget(note)
        lay.addWidget(buttons)

    def result_settings(self) -> AppSettings:
        """The edited settings."""
        excl = tuple(s.strip() for s in self.exclusions.toPlainText().splitlines() if s.strip())
        return self._base.replace(thumbnail_size=self.thumb.value(),
                                  worker_threads=self.threads.value(), exclusions=excl,
                                  watch_mode=self.watch.currentData(),
                                  theme=self.theme.currentData())
