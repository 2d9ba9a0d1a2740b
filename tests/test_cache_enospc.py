"""A full disk, for real: a tmpfs mounted by the test. Skipped where the test cannot mount one.

Extraction stops with one line naming the path and the space needed, leaves no temporary
file and no uncommitted row behind, and a re-run on a bigger disk resumes to the same cache
as a clean run. The HDF5 export refuses up front, or reports its child's failure in one
line, and leaves no partial file.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import numpy as np
import pytest
import zarr

from fakes import FakeAdapter, FakeCaptioner, FakeImageText, FakeVideo, frame_number
from fgvu.cache import StorageError, open_cache, part_path
from fgvu.cache.export import _write_in_child, export_h5, export_size
from fgvu.cache.verify import verify_cache
from fgvu.extract.config import ExtractConfig
from fgvu.extract.encoding import EncoderSet
from fgvu.extract.pipeline import run_extract

DIM = 64
VIDEOS = {f"v{i}": (f"v{i}.mp4", 500 + 37 * i) for i in range(10)}


def noise(numbers: np.ndarray) -> np.ndarray:
    """Incompressible features that depend only on the frame number (so runs agree)."""
    flat = np.asarray(numbers).ravel()
    out = np.stack([np.random.default_rng(int(n)).standard_normal(DIM) for n in flat]).astype(np.float32)
    return out.reshape(*np.shape(numbers), DIM)


class NoisyImageText(FakeImageText):
    dim = DIM

    def encode_images(self, images):
        return noise(frame_number(images))

    def encode_texts(self, texts):
        return noise(np.array([int(t.split()[-1]) for t in texts]) + 100_000)


class NoisyVideo(FakeVideo):
    dim = DIM

    def encode_clips(self, clips):
        return noise(frame_number(clips))


def encoders() -> EncoderSet:
    return EncoderSet(video=NoisyVideo(), image_text=NoisyImageText(), captioner=FakeCaptioner())


def _mount(path: Path, size_kib: int, remount: bool = False) -> None:
    options = f"remount,size={size_kib}k" if remount else f"size={size_kib}k"
    cmd = ["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(path)] if not remount else \
        ["mount", "-o", options, str(path)]
    subprocess.run(cmd, check=True, capture_output=True, text=True)


@pytest.fixture
def disk(tmp_path):
    """mount(size_kib) -> a tmpfs of that size (remount to resize); unmounted afterwards."""
    where = tmp_path / "disk"
    where.mkdir()
    mounted = []

    def mount(size_kib: int) -> Path:
        try:
            _mount(where, size_kib, remount=bool(mounted))
        except (OSError, subprocess.CalledProcessError) as e:
            pytest.skip(f"cannot mount a tmpfs here: {getattr(e, 'stderr', '') or e}")
        mounted.append(size_kib)
        return where

    yield mount
    if mounted:
        subprocess.run(["umount", "-l", str(where)], check=False, capture_output=True)


def _extract(monkeypatch, out: Path):
    adapter = FakeAdapter(VIDEOS)
    monkeypatch.setattr("fgvu.extract.video_source.open_video", adapter.open_video)
    return run_extract(ExtractConfig(dataset="aff-wild2", out=str(out), progress=False), encoders=encoders(),
                       adapter=adapter)


@pytest.fixture
def extract(monkeypatch):
    return lambda out: _extract(monkeypatch, out)


@pytest.fixture(scope="module")
def clean(tmp_path_factory) -> Path:
    """The cache of an extraction on a roomy disk, shared by the tests (they only read it)."""
    out = tmp_path_factory.mktemp("clean") / "cache"
    with pytest.MonkeyPatch.context() as monkeypatch:
        _extract(monkeypatch, out)
    return out


def _used_kib(root: Path) -> int:
    return sum(p.stat().st_blocks * 512 for p in root.rglob("*") if p.is_file()) // 1024


def _leftovers(root: Path) -> list[Path]:
    return [p for pattern in ("*.partial", ".*.tmp", "*.tmp") for p in root.rglob(pattern)]


def test_a_full_disk_stops_extraction_in_one_line_and_a_rerun_resumes(extract, clean, disk):
    # writes need room beyond the files they leave (shards rewritten, per-file blocks): at 95 % of
    # a clean cache's size the disk fills after a few videos
    mount = disk(int(_used_kib(clean) * 0.95))
    cache = mount / "cache"
    with pytest.raises(StorageError) as caught:
        extract(cache)
    message = str(caught.value)
    assert "\n" not in message and "no space left on device" in message and str(mount) in message
    assert "needs about" in message and "free" in message and "re-run to resume" in message
    assert _leftovers(mount) == []
    committed = json.loads((part_path(cache, 0) / "commit.json").read_text())["rows"]["videos"]
    assert 0 < committed < len(VIDEOS)
    # what was committed is sound, and nothing past it is left: the part is only unfinished
    assert verify_cache(cache) == [f"{part_path(cache, 0)}: part 0 of 1 has not finished its video list "
                                   f"({committed} videos committed); re-run `fgvu extract ... --parts 1 --part 0`"]
    assert zarr.open_group(part_path(cache, 0), mode="r")["frames/image"].shape[0] == \
        json.loads((part_path(cache, 0) / "commit.json").read_text())["rows"]["image"]
    disk(64 * 1024)  # a bigger disk, same files
    s = extract(cache)
    assert s.failed == 0 and s.succeeded + s.skipped == len(VIDEOS)
    assert verify_cache(cache) == []
    a, b = open_cache(clean, load_captions=True), open_cache(cache, load_captions=True)
    assert a.videos.name.tolist() == b.videos.name.tolist()
    for key in ("window_start", "valid", "targets", "target_mask", "image", "text", "image_index", "caption_index"):
        np.testing.assert_array_equal(getattr(a, key), getattr(b, key), err_msg=key)
    np.testing.assert_array_equal(a.video[16], b.video[16])
    assert a.captions == b.captions


def test_export_to_a_full_disk_is_one_line_and_leaves_nothing(clean, disk):
    cache = clean
    mount = disk(max(64, export_size(cache) // 1024 // 4))
    out = mount / "features.h5"
    with pytest.raises(StorageError, match="not enough free space for the export: needs about") as caught:
        export_h5(cache, out)
    assert str(out) in str(caught.value) and "\n" not in str(caught.value)
    # past the up-front check (as if the disk filled up meanwhile): the child fails, this process does not
    with pytest.raises(StorageError) as caught:
        _write_in_child(cache, out.with_name(out.name + ".partial"), export_size(cache))
    assert "\n" not in str(caught.value) and ("no space left" in str(caught.value) or "crashed" in str(caught.value))
    assert list(mount.iterdir()) == []
    disk(64 * 1024)
    assert export_h5(cache, out) == out and out.stat().st_size > 0 and list(mount.iterdir()) == [out]
