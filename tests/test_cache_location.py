"""Cache locations without a server: URLs kept whole, a cache on fsspec's memory:// store, part leases.

The object-store behaviour against a real S3 protocol (moto) is in test_cache_objstore.py; these
run everywhere, in a second or two.
"""

from __future__ import annotations

import json
import time
import uuid
from pathlib import Path

import numpy as np
import pytest

from cache_helpers import make_spec, record, write_cache
from helpers import assert_same_cache
from fgvu.cache import CacheError, PartWriter, cache_fingerprint, open_cache
from fgvu.cache.location import StorePath, absolute, cache_path, is_store
from fgvu.cache.ownership import FileLock, Lease, acquire_part
from fgvu.cache.verify import verify_cache
from fgvu.extract.config import ExtractConfig


def _memory(name: str) -> str:
    return f"memory://fgvu-tests/{name}-{uuid.uuid4().hex[:8]}"


def test_urls_stay_whole_and_local_paths_stay_paths(tmp_path):
    url = cache_path("s3://bucket/cache")
    assert is_store(url) and str(url) == "s3://bucket/cache" and url.key == "bucket/cache"
    assert str(url / "parts" / "part-00000.zarr") == "s3://bucket/cache/parts/part-00000.zarr"
    assert url / "parts" == cache_path("s3://bucket/cache/parts/")
    assert cache_path("file:///tmp/x") == Path("/tmp/x") and cache_path("rel/dir") == Path("rel/dir")
    assert absolute("s3://bucket/cache") == "s3://bucket/cache" and absolute("rel") == str(Path("rel").resolve())
    cfg = ExtractConfig(dataset="aff-wild2", out="s3://bucket/c", into=None)
    assert cfg.with_absolute_paths().out == "s3://bucket/c" and str(cfg.out_path) == "s3://bucket/c"


def test_a_cache_on_a_store_equals_the_same_cache_on_disk(tmp_path):
    local, url = write_cache(tmp_path / "local"), write_cache(_memory("cache"))
    assert_same_cache(url, local)
    a, b = open_cache(local), open_cache(url)
    assert len(b.videos) == 5 and np.array_equal(a.image, b.image) and np.array_equal(a.video[16], b.video[16])
    assert verify_cache(url) == [] and cache_fingerprint(url) == cache_fingerprint(local)
    keys = StorePath(url).files()
    assert not any(k.endswith((".tmp", ".partial")) for k in keys)  # one PUT per object
    assert not any(k.endswith("writer.lock") for k in keys)  # leases instead of flocks
    leases = [k for k in keys if "/leases/lease-" in k]
    assert len(leases) == 2 and all(json.loads(StorePath("memory://" + k.lstrip("/")).read_text())["expires"] == 0
                                    for k in leases)  # released on close


def test_a_part_is_leased_to_one_writer_at_a_time():
    url = cache_path(_memory("lease"))
    part = url / "parts" / "part-00000.zarr"
    first = acquire_part(url, part, lease_seconds=30)
    assert isinstance(first, Lease) and first.number == 1
    with pytest.raises(CacheError, match=r"part-00000.zarr is being written by another process .*expires in"):
        acquire_part(url, part)
    first.check()  # still held
    first.release()
    second = acquire_part(url, part)
    assert second.number == 2  # numbers only grow: a writer that listed long ago cannot retake lease 1
    assert not (part / "leases" / "lease-00000001.json").create(b"{}")
    second.release()


def test_an_expired_lease_is_taken_over_and_its_holder_told():
    url = cache_path(_memory("expired"))
    part = url / "parts" / "part-00000.zarr"
    stalled = Lease(url, part, seconds=0.3)
    stalled._stop.set()  # stop renewing, as a frozen process would
    stalled._thread.join()
    time.sleep(0.4)
    successor = acquire_part(url, part, lease_seconds=30)
    assert successor.number == 2
    with pytest.raises(CacheError, match="lost the lease on part-00000.zarr"):
        stalled.check()
    successor.check()
    successor.release()


def test_a_renewed_lease_outlives_its_length():
    url = cache_path(_memory("renewed"))
    part = url / "parts" / "part-00000.zarr"
    lease = Lease(url, part, seconds=0.3)
    time.sleep(0.7)  # more than twice its length: only the renewals keep it
    lease.check()
    with pytest.raises(CacheError, match="being written by another process"):
        acquire_part(url, part)
    lease.release()


def test_writers_on_a_store_refuse_the_same_part_and_commit_nothing_once_the_lease_is_lost():
    url, spec = _memory("writers"), make_spec()
    with PartWriter(url, spec, 0) as w:
        w.append_video(record("a", 200, 0))
        with pytest.raises(CacheError, match="being written by another process"):
            PartWriter(url, spec, 0)
    stalled = PartWriter(url, spec, 0, lease_seconds=1)
    stalled._lock._stop.set()
    stalled._lock._thread.join()
    stalled._lock._expires = time.time() - 1  # as if frozen past its lease
    with pytest.raises(CacheError, match="lost the lease"):
        stalled.append_video(record("b", 150, 1))
    stalled.close()
    assert open_cache(url).videos.name.tolist() == ["a"]


def test_local_parts_keep_their_flock(tmp_path):
    part = tmp_path / "parts" / "part-00000.zarr"
    lock = acquire_part(tmp_path, part)
    assert isinstance(lock, FileLock) and (part / "writer.lock").read_text().strip().isdigit()
    with pytest.raises(CacheError, match="being written by another process"):
        acquire_part(tmp_path, part)
    lock.release()
    acquire_part(tmp_path, part).release()
