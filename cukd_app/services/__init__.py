"""Services: the app's state and background work, no widgets (views observe their signals)."""

from cukd_app.services.library_service import (
    IndexState,
    LibraryService,
    LibrarySnapshot,
    RootError,
)
from cukd_app.services.model_loader import EncoderFactory, ModelInfo, resolve_encoder
from cukd_app.services.search_service import SearchOutcome, SearchRequest, SearchService
from cukd_app.services.thumbnails import ThumbnailCache, ThumbnailLoader

__all__ = [
    "EncoderFactory",
    "IndexState",
    "LibraryService",
    "LibrarySnapshot",
    "ModelInfo",
    "RootError",
    "SearchOutcome",
    "SearchRequest",
    "SearchService",
    "ThumbnailCache",
    "ThumbnailLoader",
    "resolve_encoder",
]
