"""Dataset adapters: `build_adapter("aff-wild2" | "dvd" | "folder", root, **options)`.

Importing this package imports every adapter module, which registers its class in ADAPTERS.
"""

from .affwild2 import AffWild2Adapter
from .base import ADAPTERS, DatasetAdapter, DatasetError, Targets, VideoItem, build_adapter
from .dvd import DVDAdapter
from .folder import FolderAdapter

__all__ = ["ADAPTERS", "AffWild2Adapter", "DVDAdapter", "DatasetAdapter", "DatasetError", "FolderAdapter",
           "Targets", "VideoItem", "build_adapter"]
