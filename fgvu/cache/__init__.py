"""The feature cache: the one owner of the contract between stage 1 (extract) and stage 2 (fit).

- `layout`: schema version, paths, row tables, the spec of every array (from the modality
  registry), and `iter_committed_parts`;
- `spec`: `CacheSpec`, what cache.json records;
- `record`: `VideoRecord`, one whole video ready to append;
- `writer`: `PartWriter`, the single writer of one part;
- `reader`: `open_cache` and the `CacheView`, captions, committed videos, the fingerprint;
- `shared`: one read-only copy of the arrays for several processes (`share_cache`, `open_shared`);
- `verify`: `verify_cache`;
- `tools`: `cache_info` and the HDF5 export.

Only this package imports zarr.
"""

from fgvu.cache.layout import SCHEMA_VERSION, CacheError, iter_committed_parts, part_dirs, part_path
from fgvu.cache.reader import CacheView, VideoTable, cache_fingerprint, committed_videos, open_cache, read_captions
from fgvu.cache.record import VideoRecord
from fgvu.cache.spec import CacheSpec, read_spec
from fgvu.cache.writer import PartWriter

__all__ = [
    "SCHEMA_VERSION", "CacheError", "CacheSpec", "CacheView", "PartWriter", "VideoRecord", "VideoTable",
    "cache_fingerprint", "committed_videos", "iter_committed_parts", "open_cache", "part_dirs", "part_path",
    "read_captions", "read_spec",
]
