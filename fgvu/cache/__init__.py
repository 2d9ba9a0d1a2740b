"""The feature cache: the one owner of the contract between stage 1 (extract) and stage 2 (fit).

- `layout`: schema version, paths, row tables, the spec of every array (from the modality registry);
- `spec`: `CacheSpec`, what cache.json records, its stamp, and who may append (the partition);
- `commit`: commit.json of a part, `iter_committed_parts`;
- `record`: `VideoRecord`, one whole video ready to append;
- `writer`: `PartWriter`, the single, buffered writer of one part;
- `checksums`: the crc32c of every committed video's rows in every array;
- `integrity`: the checks every reader makes (stamps, partition, shards, checksums, duplicates);
- `reader`: `open_cache` and the `CacheView`, captions, committed videos, the fingerprint;
- `extend`: `CacheExtension`, a modality added to the committed videos of a cache;
- `shared`: one read-only copy of the arrays for several processes (`share_cache`, `open_shared`);
- `verify`: `verify_cache`; `repair`: `drop_duplicates`;
- `tools`: `cache_info`; `export`: the HDF5 export;
- `storage`: every file operation, and OS errors as one line (`StorageError`).
- `location`: where a cache lives, a local `Path` or a `StorePath` on an fsspec store (s3://, gs://);
- `ownership`: who may write a part (an flock locally, a lease on an object store).

Only this package imports zarr.
"""

from fgvu.cache.commit import iter_committed_parts
from fgvu.cache.layout import SCHEMA_VERSION, CacheError, part_dirs, part_path
from fgvu.cache.reader import CacheView, VideoTable, cache_fingerprint, committed_videos, open_cache, read_captions
from fgvu.cache.record import VideoRecord
from fgvu.cache.spec import CacheSpec, read_spec
from fgvu.cache.storage import StorageError
from fgvu.cache.writer import PartWriter

__all__ = [
    "SCHEMA_VERSION", "CacheError", "CacheSpec", "CacheView", "PartWriter", "StorageError", "VideoRecord",
    "VideoTable", "cache_fingerprint", "committed_videos", "iter_committed_parts", "open_cache", "part_dirs",
    "part_path", "read_captions", "read_spec",
]
