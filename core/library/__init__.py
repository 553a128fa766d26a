"""Qt-free photo library engine: catalog, binary index, scanner, watcher and search.

See ../shared/DESIGN.md, "The library engine". Entry point: :class:`Library`.
"""

from .catalog import SCHEMA_VERSION, Catalog, FileRecord, RootInfo, default_library_dir
from .encoder import ImageEncoder, pack_signs
from .errors import LibraryBusyError, LibraryError
from .index import BinaryIndex, IndexLoadError, load_or_rebuild
from .library import Library, LibraryConfig, LibraryStatus, ModelChange
from .repair import RepairReport, repair_library
from .scanner import (
    BatchChange,
    ScanConfig,
    ScanError,
    Scanner,
    ScanProgress,
    ScanResult,
    decode_for_index,
)
from .search import (
    TIERS,
    DuplicateGroup,
    SearchConfig,
    SearchHit,
    TierThresholds,
    find_duplicates,
    prepare_query,
    run_search,
)
from .watcher import LibraryWatcher, WatchConfig

__all__ = [
    "SCHEMA_VERSION",
    "TIERS",
    "BatchChange",
    "BinaryIndex",
    "Catalog",
    "DuplicateGroup",
    "FileRecord",
    "ImageEncoder",
    "IndexLoadError",
    "Library",
    "LibraryBusyError",
    "LibraryConfig",
    "LibraryError",
    "LibraryStatus",
    "LibraryWatcher",
    "ModelChange",
    "RepairReport",
    "RootInfo",
    "ScanConfig",
    "ScanError",
    "ScanProgress",
    "ScanResult",
    "Scanner",
    "SearchConfig",
    "SearchHit",
    "TierThresholds",
    "WatchConfig",
    "decode_for_index",
    "default_library_dir",
    "find_duplicates",
    "load_or_rebuild",
    "pack_signs",
    "prepare_query",
    "repair_library",
    "run_search",
]
