"""The main window: composes the panels, menus and shortcuts (no behaviour of its own)."""

from __future__ import annotations

from PySide6.QtCore import QMimeData, Qt, Signal
from PySide6.QtGui import QAction, QCloseEvent, QDragEnterEvent, QDropEvent, QKeySequence
from PySide6.QtWidgets import QMainWindow, QSplitter, QTabWidget, QVBoxLayout, QWidget

from cukd_app.mime import read_mime
from cukd_app.views.duplicates_view import DuplicatesView
from cukd_app.views.filter_notice import FilteredOutNotice
from cukd_app.views.library_panel import LibraryPanel
from cukd_app.views.notification_area import NotificationArea
from cukd_app.views.query_panel import QueryPanel
from cukd_app.views.results_view import ResultsView
from cukd_app.views.status_bar import StatusBar

__all__ = ["MainWindowView"]


class MainWindowView(QMainWindow):
    """Layout: [library | query] on the left, [results | duplicates] tabs on the right, the
    notification area floating over their bottom edge (it never moves them), the status bar
    below.

    Signals:
        dropped(QMimeData): something was dropped onto the window.
        closing(): the window is about to close (save state, stop work).
    """

    dropped = Signal(QMimeData)
    closing = Signal()

    def __init__(self, library: LibraryPanel, query: QueryPanel, results: ResultsView,
                 duplicates: DuplicatesView, title: str) -> None:
        super().__init__()
        self.setWindowTitle(title)
        self.setAcceptDrops(True)
        self.library_panel, self.query_panel = library, query
        self.results_view, self.duplicates_view = results, duplicates
        self.notifications = NotificationArea()
        self.filtered_out = FilteredOutNotice(results)
        self.tabs = QTabWidget()
        self.tabs.addTab(results, "Similar photos")
        self.tabs.addTab(duplicates, "Duplicates")
        self.left = QSplitter(Qt.Orientation.Vertical)
        self.left.addWidget(library)
        self.left.addWidget(query)
        self.left.setSizes([380, 320])
        right = QWidget()
        rl = QVBoxLayout(right)
        rl.setContentsMargins(0, 0, 0, 0)
        rl.addWidget(self.tabs, 1)
        self.notifications.attach(right)
        self.splitter = QSplitter(Qt.Orientation.Horizontal)
        self.splitter.setObjectName("mainSplitter")
        self.splitter.addWidget(self.left)
        self.splitter.addWidget(right)
        self.splitter.setStretchFactor(1, 1)
        self.splitter.setSizes([340, 860])
        self.setCentralWidget(self.splitter)
        self.status = StatusBar()
        self.setStatusBar(self.status)
        self.actions_: dict[str, QAction] = {}
        self._build_menus()
        self.resize(1240, 800)

    def _act(self, key: str, text: str, shortcut: QKeySequence | str | None = None,
             tip: str = "") -> QAction:
        a = QAction(text, self)
        if shortcut is not None:
            a.setShortcut(QKeySequence(shortcut))
        if tip:
            a.setStatusTip(tip)
        self.addAction(a)
        self.actions_[key] = a
        return a

    def _build_menus(self) -> None:
        mb = self.menuBar()
        f = mb.addMenu("&File")
        f.addAction(self._act("open", "&Open image…", QKeySequence.StandardKey.Open,
                              "Search with an image file"))
        f.addAction(self._act("paste", "&Paste image or path", QKeySequence.StandardKey.Paste,
                              "Search with the image or file path on the clipboard"))
        f.addSeparator()
        f.addAction(self._act("quit", "&Quit", QKeySequence.StandardKey.Quit))
        lib = mb.addMenu("&Library")
        lib.addAction(self._act("add_folder", "&Add folder…"))
        lib.addAction(self._act("rescan", "&Rescan all folders"))
        lib.addAction(self._act("pause", "&Pause / resume indexing"))
        lib.addSeparator()
        lib.addAction(self._act("duplicates", "Find &duplicates"))
        lib.addAction(self._act("choose_model", "Choose &model file…"))
        lib.addAction(self._act("retrain", "Adapt the model to &my photos…",
                                tip="Train the model on your own labelled folders"))
        lib.addAction(self._act("models", "Manage m&odels…",
                                tip="Trained and imported models: switch, rename, export"))
        lib.addSeparator()
        lib.addAction(self._act("settings", "&Settings…", QKeySequence.StandardKey.Preferences))
        view = mb.addMenu("&View")
        view.addAction(self._act("find", "&Filter results", QKeySequence.StandardKey.Find))
        view.addAction(self._act("escape", "Cancel search / clear filter", Qt.Key.Key_Escape))
        help_ = mb.addMenu("&Help")
        help_.addAction(self._act("log", "Open &log folder"))
        help_.addAction(self._act("about", "&About"))

    def bring_to_front(self) -> None:
        """Show, raise and activate the window (another start asked for this library)."""
        if self.isMinimized():
            self.showNormal()
        self.show()
        self.raise_()
        self.activateWindow()

    # ----------------------------------------------------------------- drag and drop
    def dragEnterEvent(self, event: QDragEnterEvent) -> None:
        """Accept image files, folders and images."""
        if not read_mime(event.mimeData()).empty:
            event.acceptProposedAction()
        else:
            event.ignore()

    def dragMoveEvent(self, event: QDragEnterEvent) -> None:  # type: ignore[override]
        """Keep accepting while moving."""
        event.acceptProposedAction()

    def dropEvent(self, event: QDropEvent) -> None:
        """Hand the drop to the controller."""
        self.dropped.emit(event.mimeData())
        event.acceptProposedAction()

    def closeEvent(self, event: QCloseEvent) -> None:
        """Let the controller save state and stop work."""
        self.closing.emit()
        super().closeEvent(event)
