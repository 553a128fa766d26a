"""CUKD Image Search desktop application (PySide6)."""

import time

__all__ = ["STARTED", "__version__"]

#: ``perf_counter`` when the package was first imported (start-up timing in the log).
STARTED = time.perf_counter()
__version__ = "0.1.0"
