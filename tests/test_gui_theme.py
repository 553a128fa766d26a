"""Themes: in the dark theme a disabled button looks disabled (issue 17, item 3)."""

from __future__ import annotations

from pathlib import Path

import pytest
from PySide6.QtGui import QColor, QImage, QPalette
from PySide6.QtWidgets import QApplication, QPushButton

from cukd_app.testing import make_test_context, show_window
from cukd_app.theme import apply_theme

Group, Role = QPalette.ColorGroup, QPalette.ColorRole


def luminance(c: QColor) -> float:
    """WCAG relative luminance, 0 (black) to 1 (white)."""
    def lin(v: float) -> float:
        return v / 12.92 if v <= 0.03928 else ((v + 0.055) / 1.055) ** 2.4
    return 0.2126 * lin(c.redF()) + 0.7152 * lin(c.greenF()) + 0.0722 * lin(c.blueF())


def brightest(image: QImage) -> float:
    """Luminance of the brightest pixel (the label text, on a dark button)."""
    return max(luminance(image.pixelColor(x, y)) for x in range(image.width())
               for y in range(image.height()))


@pytest.fixture
def dark(qapp):
    style, palette, sheet = qapp.style().name(), qapp.palette(), qapp.styleSheet()
    assert apply_theme(qapp, "dark") == "dark"
    yield qapp
    qapp.setStyle(style)
    qapp.setPalette(palette)
    qapp.setStyleSheet(sheet)


def test_disabled_buttons_look_disabled_in_the_dark_theme(qtbot, dark, tmp_path: Path) -> None:
    ctx = make_test_context(tmp_path)
    try:
        win = show_window(qtbot, ctx)
        qtbot.waitExposed(win)
        panel = win.library_panel
        pause, add = panel.pause_btn, panel.add_btn
        assert not pause.isEnabled() and not panel.stop_btn.isEnabled()  # nothing to index
        assert add.isEnabled()
        pal = pause.palette()
        for role in (Role.ButtonText, Role.WindowText, Role.Text):
            active, disabled = pal.color(Group.Active, role), pal.color(Group.Disabled, role)
            assert luminance(active) - luminance(disabled) > 0.3, role
        assert pal.color(Group.Disabled, Role.Button) != pal.color(Group.Active, Role.Button)
        # Drawn: the disabled button's label is clearly dimmer than an enabled one's.
        off, on = pause.grab().toImage(), add.grab().toImage()
        assert brightest(on) - brightest(off) > 0.3
        # The same for a button made disabled anywhere in the app (the wizard's Next).
        other = QPushButton("Next >")
        qtbot.addWidget(other)
        other.show()
        enabled_look = brightest(other.grab().toImage())
        other.setEnabled(False)
        assert enabled_look - brightest(other.grab().toImage()) > 0.3
        assert QApplication.palette().color(Group.Disabled, Role.ButtonText) == pal.color(
            Group.Disabled, Role.ButtonText)
    finally:
        ctx.close()
