"""Application start-up: QApplication, main window, event loop."""

from __future__ import annotations

import argparse

from PySide6.QtCore import QTimer
from PySide6.QtWidgets import QApplication, QLabel, QMainWindow

from cukd_app import __version__

APP_NAME = "CUKD Image Search"


class MainWindow(QMainWindow):
    """Top-level window (placeholder until the library and search views land)."""

    def __init__(self) -> None:
        super().__init__()
        self.setWindowTitle(APP_NAME)
        self.resize(1100, 720)
        label = QLabel("Drop a photo here to find similar ones.\n\n"
                       "(Library and search views are being built.)")
        label.setObjectName("placeholder")
        label.setMargin(40)
        self.setCentralWidget(label)
        self.statusBar().showMessage(f"{APP_NAME} {__version__}")


def run(args: argparse.Namespace) -> int:
    app = QApplication.instance() or QApplication([])
    app.setApplicationName(APP_NAME)
    app.setApplicationVersion(__version__)
    win = MainWindow()
    win.show()
    if args.quit_after is not None:
        QTimer.singleShot(int(args.quit_after * 1000), app.quit)
    return app.exec()
