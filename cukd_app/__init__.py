"""CUKD Image Search desktop application (PySide6)."""

__all__ = ["__version__"]
__version__ = "0.1.0"
