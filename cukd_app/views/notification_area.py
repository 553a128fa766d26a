"""The non-blocking notification area: the newest message on top, the earlier ones behind a
"+N more" button, "Details…" and a dismiss button.

The area floats over the bottom of the window's results side (:meth:`attach`) instead of
taking a place in a layout: a message arriving never moves the controls under the mouse.
"""

from __future__ import annotations

import time

from PySide6.QtCore import QEvent, QObject, Qt, QTimer, Slot
from PySide6.QtWidgets import (
    QDialog,
    QDialogButtonBox,
    QFrame,
    QHBoxLayout,
    QLabel,
    QPlainTextEdit,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from cukd_app.notifications import Notification

__all__ = ["NotificationArea"]

_ICONS = {"info": "ℹ", "warning": "⚠", "error": "✖"}


class NotificationArea(QFrame):
    """A slim banner showing the newest message; info messages hide after a few seconds,
    warnings and errors stay until dismissed. Earlier warnings and errors wait behind it:
    "+N more" lists them (each can be brought to the top), dismissing the newest shows the
    one before. "Details…" shows the detail text (e.g. a traceback) without blocking.

    Attributes:
        current: the message shown on top (None when hidden).
        unseen: earlier warnings and errors still to be seen, oldest first.
    """

    INFO_MS = 6000
    MARGIN = 6  # from the host's edges when attached
    KEEP = 50  # earlier messages kept (all are in the log)
    LISTED = 6  # earlier messages listed under "+N more"

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("notificationArea")
        self.setAutoFillBackground(True)  # opaque over the results (also without the qss)
        self.setFrameShape(QFrame.Shape.StyledPanel)
        self.icon = QLabel()
        self.text = QLabel()
        self.text.setWordWrap(True)
        self.text.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.more = QPushButton()
        self.more.setObjectName("notificationMore")
        self.more.setFlat(True)
        self.more.setCursor(Qt.CursorShape.PointingHandCursor)
        self.more.setToolTip("Show the earlier messages")
        self.more.clicked.connect(self.toggle_earlier)
        self.details_btn = QPushButton("Details…")
        self.details_btn.setFlat(True)
        self.details_btn.clicked.connect(self.show_details)
        self.close_btn = QPushButton("✕")
        self.close_btn.setFlat(True)
        self.close_btn.setToolTip("Dismiss")
        self.close_btn.setFixedWidth(28)
        self.close_btn.clicked.connect(self.dismiss)
        row = QHBoxLayout()
        row.setContentsMargins(0, 0, 0, 0)
        row.addWidget(self.icon)
        row.addWidget(self.text, 1)
        row.addWidget(self.more)
        row.addWidget(self.details_btn)
        row.addWidget(self.close_btn)
        self.earlier = QWidget()
        self.earlier.setObjectName("notificationEarlier")
        self._earlier_lay = QVBoxLayout(self.earlier)
        self._earlier_lay.setContentsMargins(0, 2, 0, 0)
        self._earlier_lay.setSpacing(0)
        self.earlier.hide()
        lay = QVBoxLayout(self)
        lay.setContentsMargins(10, 4, 4, 4)
        lay.setSpacing(2)
        lay.addLayout(row)
        lay.addWidget(self.earlier)
        self._timer = QTimer(self)
        self._timer.setSingleShot(True)
        self._timer.timeout.connect(self.dismiss)
        self.current: Notification | None = None
        self.unseen: list[Notification] = []
        self._dialog: QDialog | None = None
        self._host: QWidget | None = None
        self._expanded = False  # the earlier messages are listed
        self.hide()

    # ----------------------------------------------------------------- placement
    def attach(self, host: QWidget) -> None:
        """Float over the bottom of ``host`` (kept in place when it resizes)."""
        self._host = host
        self.setParent(host)
        host.installEventFilter(self)
        self._place()

    def eventFilter(self, obj: QObject, event: QEvent) -> bool:
        """Follow the host's size."""
        if obj is self._host and event.type() in (QEvent.Type.Resize, QEvent.Type.Show):
            self._place()
        return False

    def _place(self) -> None:
        host = self._host
        if host is None:
            return
        w = max(host.width() - 2 * self.MARGIN, 100)
        self.layout().activate()
        h = self.heightForWidth(w) if self.hasHeightForWidth() else self.sizeHint().height()
        h = min(max(h, self.minimumSizeHint().height()), max(host.height() * 2 // 3, 40))
        self.setGeometry(self.MARGIN, host.height() - h - self.MARGIN, w, h)
        self.raise_()

    # ----------------------------------------------------------------- messages
    @Slot(object)
    def post(self, n: Notification) -> None:
        """Show a notification on top; a warning or error it covers waits behind "+N more"
        (an info it covers is dropped: it was transient, and it is in the log)."""
        if self.current is not None and self.isVisible() and self.current.level != "info":
            self.unseen.append(self.current)
            del self.unseen[:-self.KEEP]
        self._show(n)

    def _show(self, n: Notification) -> None:
        self.current = n
        self.icon.setText(_ICONS.get(n.level, ""))
        self.text.setText(n.text)
        self.setProperty("level", n.level)
        self.style().unpolish(self)
        self.style().polish(self)
        self.details_btn.setVisible(bool(n.detail))
        self._update_more()
        self.show()
        if n.level == "info" and not self._expanded:
            self._timer.start(self.INFO_MS)
        else:
            self._timer.stop()
        self._place()

    def _update_more(self) -> None:
        k = len(self.unseen)
        self._expanded = self._expanded and bool(k)
        self.more.setVisible(bool(k))
        self.more.setText("Hide earlier" if self._expanded else f"+{k} more")
        if self._expanded:
            self._fill_earlier()
        self.earlier.setVisible(self._expanded)

    def _fill_earlier(self) -> None:
        while (item := self._earlier_lay.takeAt(0)) is not None:
            if (w := item.widget()) is not None:
                w.deleteLater()
        for n in self.unseen[:-self.LISTED - 1:-1]:  # newest first, under the newest on top
            row = QWidget()
            rl = QHBoxLayout(row)
            rl.setContentsMargins(0, 0, 0, 0)
            when = time.strftime("%H:%M", time.localtime(n.when))
            label = QLabel(f"{_ICONS.get(n.level, '')}  {when}  {n.text}")
            label.setWordWrap(True)
            label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
            show = QPushButton("Show")
            show.setFlat(True)
            show.setToolTip("Show this message on top (with its details)")
            show.clicked.connect(lambda _=False, m=n: self.bring_to_top(m))
            rl.addWidget(label, 1)
            rl.addWidget(show)
            self._earlier_lay.addWidget(row)
        if len(self.unseen) > self.LISTED:
            older = QLabel(f"{len(self.unseen) - self.LISTED} older messages: dismiss these "
                           "to see them, or open the log (Help ▸ Open log folder).")
            older.setWordWrap(True)
            self._earlier_lay.addWidget(older)

    @Slot()
    def toggle_earlier(self) -> None:
        """"+N more": list the earlier messages below the newest (again: hide the list)."""
        if not self.unseen:
            return
        self._expanded = not self._expanded
        if self._expanded:
            self._timer.stop()  # do not vanish while the user reads
        self._update_more()
        self._place()

    def earlier_texts(self) -> list[str]:
        """Texts of the earlier messages, newest first (what "+N more" lists)."""
        return [n.text for n in reversed(self.unseen)]

    def bring_to_top(self, n: Notification) -> None:
        """Show an earlier message on top; the one shown so far joins the earlier ones."""
        if n not in self.unseen:
            return
        self.unseen.remove(n)
        if self.current is not None and self.current.level != "info":
            self.unseen.append(self.current)
        self._show(n)

    @Slot()
    def dismiss(self) -> None:
        """Hide the current message; show the previous unseen warning/error, if any."""
        self._timer.stop()
        self.current = None
        if self.unseen:
            self._show(self.unseen.pop())
            return
        self._expanded = False
        self.earlier.hide()
        self.hide()

    @Slot()
    def show_details(self) -> None:
        """A non-modal window with the detail text."""
        n = self.current
        if n is None:
            return
        dlg = QDialog(self.window())
        dlg.setWindowTitle("Details")
        dlg.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        text = QPlainTextEdit(f"{time.strftime('%H:%M:%S', time.localtime(n.when))}  "
                              f"{n.text}\n\n{n.detail}")
        text.setReadOnly(True)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close)
        buttons.rejected.connect(dlg.close)
        lay = QVBoxLayout(dlg)
        lay.addWidget(text)
        lay.addWidget(buttons)
        dlg.resize(700, 400)
        dlg.show()
        self._dialog = dlg
