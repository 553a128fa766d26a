"""Light/dark palettes (Fusion) and the app style sheet; "system" follows the desktop."""

from __future__ import annotations

import logging

from PySide6.QtCore import Qt
from PySide6.QtGui import QColor, QGuiApplication, QPalette
from PySide6.QtWidgets import QApplication

from cukd_app.paths import resources_dir

__all__ = ["apply_theme", "effective_scheme"]

logger = logging.getLogger(__name__)
_connected = False


def effective_scheme(theme: str) -> str:
    """``"light"`` or ``"dark"`` for a theme setting (``"system"`` asks Qt)."""
    if theme in ("light", "dark"):
        return theme
    hints = QGuiApplication.styleHints()
    scheme = getattr(hints, "colorScheme", lambda: Qt.ColorScheme.Unknown)()
    return "dark" if scheme == Qt.ColorScheme.Dark else "light"


def _dark_palette() -> QPalette:
    p = QPalette()
    c = {
        QPalette.ColorRole.Window: "#2b2d30", QPalette.ColorRole.WindowText: "#e6e6e6",
        QPalette.ColorRole.Base: "#1f2023", QPalette.ColorRole.AlternateBase: "#33363a",
        QPalette.ColorRole.Text: "#e6e6e6", QPalette.ColorRole.Button: "#3a3d41",
        QPalette.ColorRole.ButtonText: "#e6e6e6", QPalette.ColorRole.Highlight: "#3d6fb4",
        QPalette.ColorRole.HighlightedText: "#ffffff", QPalette.ColorRole.ToolTipBase: "#3a3d41",
        QPalette.ColorRole.ToolTipText: "#e6e6e6", QPalette.ColorRole.PlaceholderText: "#9a9a9a",
        QPalette.ColorRole.Midlight: "#3a3d41", QPalette.ColorRole.Link: "#8ab4f8",
    }
    for role, color in c.items():
        p.setColor(role, QColor(color))
    # Disabled controls must read as disabled: dimmed text on a flatter button (without
    # this group, a disabled Pause/Stop or the wizard's Next looked exactly like an enabled one).
    disabled = {
        QPalette.ColorRole.WindowText: "#7c7f84", QPalette.ColorRole.Text: "#7c7f84",
        QPalette.ColorRole.ButtonText: "#7c7f84", QPalette.ColorRole.Button: "#313336",
        QPalette.ColorRole.Base: "#26272a", QPalette.ColorRole.Highlight: "#45484d",
        QPalette.ColorRole.HighlightedText: "#a0a0a0",
        QPalette.ColorRole.PlaceholderText: "#6a6d72",
    }
    for role, color in disabled.items():
        p.setColor(QPalette.ColorGroup.Disabled, role, QColor(color))
    return p


def apply_theme(app: QApplication, theme: str) -> str:
    """Apply the palette and style sheet; returns the scheme used."""
    global _connected
    app.setStyle("Fusion")
    scheme = effective_scheme(theme)
    app.setPalette(_dark_palette() if scheme == "dark" else app.style().standardPalette())
    qss = resources_dir() / "style" / "app.qss"
    try:
        app.setStyleSheet(qss.read_text(encoding="utf-8"))
    except OSError:
        logger.debug("no style sheet at %s", qss)
    hints = QGuiApplication.styleHints()
    if theme == "system" and not _connected and hasattr(hints, "colorSchemeChanged"):
        hints.colorSchemeChanged.connect(lambda _s: apply_theme(app, "system"))
        _connected = True
    return scheme
