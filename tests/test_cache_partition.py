"""The cache records its partition: K in cache.json, each part finished or not; readers refuse a partial cache.

Also: a cache written by fgvu 0.1 (no K, no stamps, no checksums) stays readable and says so.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import zarr
from typer.testing import CliRunner

from cache_helpers import record
from fakes import FakeAdapter, fake_encoders
from fgvu.cache import CacheError, PartWriter, open_cache, part_path, read_spec
from fgvu.cache.layout import layout_of
from fgvu.cache.tools import cache_info, info_lines
from fgvu.cache.verify import verify_cache, verify_report
from fgvu.cli import app
from fgvu.extract.config import ExtractConfig
from fgvu.extract.pipeline import run_extract

FIXTURES = Path(__file__).parent / "fixtures"
TINY = ["--d-model", "16", "--mlp-hidden", "16", "--heads", "2", "--epochs", "1", "--quiet"]
runner = CliRunner()
VIDEOS = {f"v{i}": (f"v{i}.mp4", 90 + 23 * i) for i in range(6)}


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture
def extract(monkeypatch):
    adapter = FakeAdapter(VIDEOS)
    monkeypatch.setattr("fgvu.extract.video_source.open_video", adapter.open_video)

    def run(out: Path, parts: int, part: int | None):
        cfg = ExtractConfig(dataset="aff-wild2", out=str(out), parts=parts, part=part, progress=False)
        return run_extract(cfg, encoders=fake_encoders(), adapter=adapter)

    return run


def test_a_partial_cache_is_shown_and_refused_until_every_part_has_finished(extract, tmp_path):
    cache = tmp_path / "cache"
    extract(cache, 3, 0)
    extract(cache, 3, 2)
    assert read_spec(cache).parts == 3
    info = cache_info(cache)
    assert info["partition"] == 3 and info["part_status"][1] == "part 1: missing, -"
    assert info["part_status"][0].startswith("part 0: finished")
    text = "\n".join(info_lines(info))
    assert "split into 3 part(s)" in text and "incomplete: 1 part(s)" in text
    problems = verify_cache(cache)
    assert problems == [f"{part_path(cache, 1)}: part 1 of 3 is missing; run `fgvu extract ... --parts 3 --part 1`"]
    result = runner.invoke(app, ["cache", "verify", str(cache)])
    assert result.exit_code == 1 and "part 1: missing" in result.output
    result = runner.invoke(app, ["fit", str(cache), "--out", str(tmp_path / "run"), *TINY])
    assert isinstance(result.exception, CacheError) and "part 1 of 3 is missing" in str(result.exception)
    assert "--allow-partial" in str(result.exception)
    result = runner.invoke(app, ["fit", str(cache), "--out", str(tmp_path / "run"), "--allow-partial", *TINY])
    assert result.exit_code == 0, result.output
    partial = open_cache(cache, allow_partial=True)
    extract(cache, 3, 1)
    assert verify_cache(cache) == []
    full = open_cache(cache)
    assert len(full.videos) == len(VIDEOS) > len(partial.videos)


def test_an_unfinished_part_is_refused_and_a_new_video_unfinishes_it(extract, tmp_path):
    cache = tmp_path / "cache"
    extract(cache, 1, None)
    spec = read_spec(cache)
    with PartWriter(cache, spec, 0, parts=1) as w:  # a later run, killed before its list was done
        w.append_video(record("late", 120, 9))
    with pytest.raises(CacheError, match="part 0 of 1 has not finished its video list"):
        open_cache(cache)
    assert "unfinished" in cache_info(cache)["part_status"][0]
    assert len(open_cache(cache, allow_partial=True).videos) == len(VIDEOS) + 1
    with PartWriter(cache, spec, 0, parts=1) as w:
        w.mark_finished()
    assert verify_cache(cache) == []


def test_another_partition_is_refused_before_anything_is_written(extract, tmp_path):
    cache = tmp_path / "cache"
    extract(cache, 2, 0)
    before = (cache / "cache.json").read_bytes()
    with pytest.raises(CacheError, match=r"split into 2 part\(s\).*--parts 3. Re-run with --parts 2"):
        extract(cache, 3, 2)
    assert not part_path(cache, 2).exists() and (cache / "cache.json").read_bytes() == before
    with pytest.raises(CacheError, match="there is no part 5"):
        PartWriter(cache, read_spec(cache), 5)
    extract(cache, 2, 1)  # the recorded partition goes on as before
    assert verify_cache(cache) == []


def test_a_cache_of_fgvu_0_1_is_read_as_legacy(tmp_path):
    cache = Path(shutil.copytree(FIXTURES / "cache-v1", tmp_path / "cache"))
    info = cache_info(cache)
    assert info["partition"] is None and info["problems"] == [] and info["incomplete"] == []
    assert "partition not recorded" in "\n".join(info_lines(info))
    report = verify_report(cache)
    assert report.problems == [] and any("written by fgvu 0.1" in n for n in report.notes)
    assert any("partition is not recorded" in n for n in report.notes)
    n_videos = len(open_cache(cache).videos)

    # resuming the old part stamps it; the new video has checksums, the old ones are noted
    spec = read_spec(cache)
    with PartWriter(cache, spec, 0) as w:
        w.append_video(record("new", 150, 4, plan=spec.sampling, dim=4))
    report = verify_report(cache)
    assert report.problems == [] and any(f"first {n_videos} video(s) were written by fgvu 0.1" in n
                                         for n in report.notes)
    view = open_cache(cache)
    assert view.videos.name.tolist()[-1] == "new" and len(view.videos) == n_videos + 1
    part = part_path(cache, 0)
    group = zarr.open_group(part, mode="r+")
    row = int(view.image_index[view.windows_of([n_videos])][0, 0])
    group["frames/image"][row] = np.asarray(group["frames/image"][row]) + np.float16(0.5)
    assert any("video 'new'" in p and "differ from their checksum" in p for p in verify_cache(cache))
    with pytest.raises(CacheError, match="video 'new'"):
        open_cache(cache)


def test_commit_json_records_stamp_partition_and_checksums(extract, tmp_path):
    cache = tmp_path / "cache"
    extract(cache, 2, 1)
    commit = json.loads((part_path(cache, 1) / "commit.json").read_text())
    spec = read_spec(cache)
    assert commit["stamp"] == spec.stamp() and commit["part"] == 1 and commit["parts"] == 2
    assert commit["finished"] is True and commit["checksums"]["algorithm"] == "crc32c"
    lines = (part_path(cache, 1) / "checksums.jsonl").read_text().splitlines()
    assert commit["checksums"]["lines"] == len(lines) == commit["rows"]["videos"] > 0
    entry = json.loads(lines[0])
    assert set(entry["sums"]) == set(layout_of(spec).names())  # every array of the layout, per video
