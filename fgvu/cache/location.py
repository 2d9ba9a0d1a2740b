"""Where a cache lives: a local folder (`pathlib.Path`) or an fsspec URL (`StorePath`).

`cache_path(x)` is the one place that decides. A URL with a scheme (`s3://bucket/cache`,
`gs://…`, `memory://…`, any fsspec protocol) becomes a `StorePath`; everything else, and
`file://` URLs, stay a `Path`, so the local disk keeps its flock, fsync and rename semantics
unchanged. `StorePath` offers the small part of the `Path` API the cache package uses (`/`,
`name`, `exists`, `read_text`, `glob`, ...) over the fsspec filesystem, and keeps
the URL whole: `Path("s3://bucket")` would collapse it to `s3:/bucket`.

On an object store there are no folders, no appends and no renames; what replaces them:

- `write_bytes` is one PUT: readers see the old object or the new one, never half (the
  atomic commit of commit.json);
- `create` is a conditional PUT (`If-None-Match: *` on S3, `ifGenerationMatch=0` on GCS),
  through fsspec's `pipe_file(mode="create")`: exactly one of two writers creates an object
  (cache.json, a part's lease). A store whose fsspec driver cannot do that is refused.

Credentials and endpoints come from the store's usual configuration (for S3: the `AWS_*`
environment variables such as `AWS_ENDPOINT_URL`, or `~/.aws`), as fsspec reads them.
"""

from __future__ import annotations

import re
from pathlib import Path
from types import SimpleNamespace

from fgvu.errors import StorageError

URL = re.compile(r"^([A-Za-z][A-Za-z0-9+.\-]*)://")


def is_url(text) -> bool:
    """Whether `text` is a URL for an fsspec store (a `file://` URL is a local path)."""
    if isinstance(text, StorePath):
        return True
    m = URL.match(str(text)) if isinstance(text, str) else None
    return m is not None and m.group(1).lower() not in ("file", "local")


def cache_path(where) -> "Path | StorePath":
    """A cache location: a `StorePath` for a store URL, else a `Path` (`file://` URLs included)."""
    if isinstance(where, StorePath):
        return where
    if isinstance(where, str):
        if is_url(where):
            return StorePath(where)
        if where.startswith("file://"):
            return Path(where[len("file://"):])
    return Path(where)


def absolute(where) -> str:
    """A cache location as recorded in run folders: the absolute local path, or the URL as given."""
    where = cache_path(where)
    return str(where) if is_store(where) else str(where.resolve())


def is_store(path) -> bool:
    """Whether a cache location is on an fsspec store (not a local path)."""
    return isinstance(path, StorePath)


class StorePath:
    """A file or folder on an fsspec store, addressed by its URL; immutable, compares by store and key."""

    def __init__(self, url: str, fs=None, key: str | None = None):
        import fsspec

        self.url = url.rstrip("/")
        if fs is None:
            try:
                fs, key = fsspec.url_to_fs(self.url)
            except (ImportError, ValueError) as e:  # an unknown protocol, or its driver not installed
                raise StorageError(f"{self.url}: cannot open this store ({e}); install its fsspec driver "
                                   "(s3fs for s3://, gcsfs for gs://)") from None
        self.fs = fs
        self.key = key.rstrip("/")  # the path the filesystem takes ("bucket/cache/...")

    # ---- the Path API the cache package uses -------------------------------------------------

    def __truediv__(self, name) -> "StorePath":
        name = str(name).strip("/")
        return StorePath(f"{self.url}/{name}", self.fs, f"{self.key}/{name}")

    @property
    def name(self) -> str:
        return self.url.rsplit("/", 1)[-1]

    def __str__(self) -> str:
        return self.url

    def __repr__(self) -> str:
        return f"StorePath({self.url!r})"

    def _identity(self) -> tuple:
        return type(self.fs).__name__, self.key

    def __eq__(self, other) -> bool:
        return isinstance(other, StorePath) and other._identity() == self._identity()

    def __hash__(self) -> int:
        return hash(self._identity())

    def __lt__(self, other: "StorePath") -> bool:
        return self.key < other.key

    def exists(self) -> bool:
        self.fs.invalidate_cache(self.key)  # another process may have written it since we looked
        return bool(self.fs.exists(self.key))

    def stat(self) -> SimpleNamespace:
        """The object's size, as `st_size` (the only field the cache package reads)."""
        return SimpleNamespace(st_size=int(self.fs.size(self.key)))

    def read_bytes(self) -> bytes:
        return self.fs.cat_file(self.key)

    def read_text(self, encoding: str = "utf-8") -> str:
        return self.read_bytes().decode(encoding)

    def write_bytes(self, data: bytes) -> None:
        """One PUT of the whole object: readers see the old one or the new one."""
        self.fs.pipe_file(self.key, bytes(data))

    def create(self, data: bytes) -> bool:
        """Create the object only if it does not exist (a conditional PUT); False when it existed."""
        try:
            self.fs.pipe_file(self.key, bytes(data), mode="create")
        except FileExistsError:
            return False
        except (TypeError, NotImplementedError, ValueError) as e:
            raise StorageError(f"{self.url}: this store cannot create an object only if it is absent ({e}); "
                               "fgvu needs that to give each part one writer") from None
        return True

    def unlink(self, missing_ok: bool = False) -> None:
        try:
            self.fs.rm_file(self.key)
        except FileNotFoundError:
            if not missing_ok:
                raise

    def glob(self, pattern: str) -> list["StorePath"]:
        self.fs.invalidate_cache(self.key)
        # children keep this URL's spelling (the store's own may differ, e.g. memory:/// for memory://)
        return [StorePath(self.url + k[len(self.key):], self.fs, k) for k in self.fs.glob(f"{self.key}/{pattern}")
                if k.startswith(self.key + "/")]

    def files(self) -> dict[str, int]:
        """Every object under this prefix and its size in bytes."""
        self.fs.invalidate_cache(self.key)
        return {k: int(info.get("size") or 0) for k, info in self.fs.find(self.key, detail=True).items()}

    def zarr_store(self, read_only: bool):
        """A Zarr store over this prefix (zarr opens its own async instance of the filesystem)."""
        from zarr.storage import FsspecStore

        return FsspecStore.from_url(self.url, read_only=read_only)
