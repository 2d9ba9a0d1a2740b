"""Nothing silently wrong: every kind of damage is found by `verify` and refused by `fit`, naming the file.

The base cache has two finished parts of a declared partition (K = 2) with random float16
features, so a flipped low bit reads back as a finite, plausible value: only the checksums see it.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import zarr
from typer.testing import CliRunner

from cache_helpers import make_spec, record, write_cache
from fgvu.cache import CacheError, PartWriter, open_cache, part_path
from fgvu.cache.layout import layout_of
from fgvu.cache.repair import drop_duplicates
from fgvu.cache.verify import verify_cache
from fgvu.cli import app
from fgvu.sampling import SamplingPlan

TINY = ["--d-model", "16", "--mlp-hidden", "16", "--heads", "2", "--epochs", "1", "--quiet"]
runner = CliRunner()


@pytest.fixture(scope="module")
def base(tmp_path_factory) -> Path:
    return write_cache(tmp_path_factory.mktemp("base") / "cache")


@pytest.fixture
def cache(base, tmp_path) -> Path:
    return Path(shutil.copytree(base, tmp_path / "cache"))


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def refused_by_fit(cache: Path, out: Path, *extra: str) -> str:
    """`fgvu fit` on the cache must fail with a user error; returns its message."""
    result = runner.invoke(app, ["fit", str(cache), "--out", str(out), *TINY, *extra])
    assert isinstance(result.exception, CacheError), (result.output, result.exception)
    return str(result.exception)


def assert_detected(cache: Path, tmp_path: Path, names: str) -> None:
    """verify lists a problem naming `names`; fit refuses with a message naming it too."""
    problems = verify_cache(cache)
    assert any(names in p for p in problems), problems
    message = refused_by_fit(cache, tmp_path / "run")
    assert names in message and "\n" not in message, message


def test_a_sound_cache_verifies_opens_and_trains(base, tmp_path):
    assert verify_cache(base) == [] and verify_cache(base, fast=True) == []
    view = open_cache(base)
    assert sorted(view.videos.name) == ["a", "b", "c", "d", "e"]
    result = runner.invoke(app, ["fit", str(base), "--out", str(tmp_path / "run"), *TINY])
    assert result.exit_code == 0, result.output


@pytest.mark.parametrize("array", layout_of(make_spec()).names())
def test_a_deleted_shard_of_any_array_is_detected_and_refused(cache, tmp_path, array):
    part = part_path(cache, 0)
    arr = zarr.open_group(part, mode="r")[array]
    key = arr.metadata.chunk_key_encoding.encode_chunk_key((0,) * arr.ndim)
    (part / array / key).unlink()
    # it would read as fill values without a word
    assert not np.asarray(zarr.open_group(part, mode="r")[array][:1]).any() or arr.dtype.kind == "T"
    assert_detected(cache, tmp_path, str(Path(array) / key))


def _flip(path: Path, positions: list[int], mask: int) -> None:
    data = bytearray(path.read_bytes())
    for pos in positions:
        data[pos] ^= mask
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("array", ["frames/image", "frames/text", "clips/video_f16"])
def test_a_low_bit_flip_in_features_is_detected_and_refused(cache, tmp_path, array):
    part = part_path(cache, 0)
    before = np.asarray(zarr.open_group(part, mode="r")[array][:])
    shard = part / array / "c" / "/".join("0" * before.ndim)
    _flip(shard, [len(shard.read_bytes()) // 3], 0x01)
    after = np.asarray(zarr.open_group(part, mode="r")[array][:])
    # the damage is silent to zarr: finite values, a few of them slightly different
    assert np.isfinite(after).all() and 0 < int((after != before).sum()) <= 4
    assert_detected(cache, tmp_path, f"{part.name}/{array}")
    assert any("differ from their checksum" in p and str(shard) in p for p in verify_cache(cache))
    assert verify_cache(cache, fast=True) == []  # --fast does not read features: that is its point


def test_flipped_bytes_in_targets_are_detected_and_refused(cache, tmp_path):
    part = part_path(cache, 1)
    shard = part / "targets" / "values" / "c" / "0" / "0"
    size = len(shard.read_bytes())
    _flip(shard, [size // 2, size // 2 + 1], 0x7F)
    assert_detected(cache, tmp_path, f"{part}/targets/values")


def test_targets_out_of_range_are_found_even_without_checksums(cache, tmp_path):
    """A valid target of 6.9e22 is refused by its task's range, whatever the checksums say."""
    part = part_path(cache, 0)
    group = zarr.open_group(part, mode="r+")
    values, mask = group["targets/values"], group["targets/mask"]
    row = int(np.flatnonzero(np.asarray(mask[:]).all(axis=1))[3])
    values[row, 0] = 6.9e22
    (part / "checksums.jsonl").write_text("")  # as if the damage came with rewritten checksums
    commit = json.loads((part / "commit.json").read_text())
    commit["checksums"]["legacy_videos"] = commit["rows"]["videos"]
    commit["checksums"]["lines"] = 0
    (part / "commit.json").write_text(json.dumps(commit))
    problems = verify_cache(cache)
    assert any("outside the va range" in p and "6.9e+22" in p for p in problems), problems
    assert "outside the va range" in refused_by_fit(cache, tmp_path / "run")


def test_a_deleted_commit_json_is_detected_and_refused(cache, tmp_path):
    (part_path(cache, 1) / "commit.json").unlink()
    assert_detected(cache, tmp_path, str(part_path(cache, 1) / "commit.json"))


@pytest.mark.parametrize("other", [make_spec(caption_prompt="Another prompt."),
                                   make_spec(sampling=SamplingPlan(stride=32))], ids=["prompt", "stride"])
def test_a_foreign_part_is_detected_and_refused_naming_what_differs(cache, tmp_path, other):
    foreign = write_cache(tmp_path / "foreign", other, plan=other.sampling)
    shutil.rmtree(part_path(cache, 1))
    shutil.copytree(part_path(foreign, 1), part_path(cache, 1))
    what = "caption_prompt" if other.caption_prompt != make_spec().caption_prompt else "sampling plan"
    assert_detected(cache, tmp_path, f"{part_path(cache, 1)} was written under another cache.json")
    assert what in refused_by_fit(cache, tmp_path / "run2")
    with pytest.raises(CacheError, match=what):  # and the writer will not append to it
        PartWriter(cache, make_spec(), 1, parts=2)


def test_a_part_copied_under_another_number_is_refused(cache, tmp_path):
    shutil.rmtree(part_path(cache, 1))
    shutil.copytree(part_path(cache, 0), part_path(cache, 1))
    assert_detected(cache, tmp_path, "says it is part 0")


def test_duplicate_videos_are_refused_by_fit_evaluate_predict_then_repaired(tmp_path):
    from fgvu.fusion.evaluate import evaluate, predict

    spec, cache = make_spec(), tmp_path / "dup"
    splits = {"a": "train", "b": "val", "c": "train", "d": "test"}
    recs = {name: record(name, 150 + 20 * i, i, splits[name]) for i, name in enumerate("abcd")}
    with PartWriter(cache, spec, 0) as w:  # no partition declared: nothing stops a second run from adding b, c
        for name in "abc":
            w.append_video(recs[name])
    with PartWriter(cache, spec, 1) as w:
        w.append_video(recs["d"])
    run = tmp_path / "run"
    assert runner.invoke(app, ["fit", str(cache), "--out", str(run), *TINY]).exit_code == 0
    with PartWriter(cache, spec, 1) as w:
        w.append_video(recs["b"])
        w.append_video(recs["c"])
    problems = verify_cache(cache)
    assert sum("is committed in both part-00000.zarr and part-00001.zarr" in p for p in problems) == 2
    message = refused_by_fit(cache, tmp_path / "run2")
    assert "part-00000.zarr and part-00001.zarr" in message and "fgvu cache repair --drop-duplicates" in message
    with pytest.raises(CacheError, match="committed in both"):
        evaluate(run)
    with pytest.raises(CacheError, match="committed in both"):
        predict(run, tmp_path / "pred", split="test")
    result = runner.invoke(app, ["cache", "repair", str(cache), "--drop-duplicates", "--quiet"])
    assert result.exit_code == 0, result.output
    assert "removed 'b' from part-00001.zarr (kept in part-00000.zarr)" in result.output
    assert verify_cache(cache) == []
    view = open_cache(cache, load_captions=True)
    assert view.videos.name.tolist() == ["a", "b", "c", "d"]
    rows = view.windows_of([3])  # d survived the rewrite of part 1 with its own rows
    d = recs["d"]
    np.testing.assert_array_equal(view.video[16][rows], d.video[16].astype(np.float16))
    np.testing.assert_array_equal(view.image[view.image_index[rows]], d.image[d.image_index].astype(np.float16))
    np.testing.assert_array_equal(view.targets[view.videos.frame_offset[3]:], d.targets.astype(np.float32))
    assert [c["text"] for c in view.captions if c["video"] == "d"] == d.captions
    assert evaluate(run)["n_videos"] == 1  # the run's validation video b, once
    assert drop_duplicates(cache) == []  # repairing again changes nothing


@pytest.mark.parametrize("damage", ["group zarr.json", "array zarr.json", "commit.json", "checksums.jsonl"])
def test_corrupt_metadata_is_one_line_naming_the_file(cache, tmp_path, damage):
    part = part_path(cache, 0)
    target = {"group zarr.json": part / "zarr.json", "array zarr.json": part / "frames" / "image" / "zarr.json",
              "commit.json": part / "commit.json", "checksums.jsonl": part / "checksums.jsonl"}[damage]
    target.write_text("{garbage" if damage != "checksums.jsonl" else "not json\n" * 3)
    assert_detected(cache, tmp_path, str(target))


def test_a_corrupt_cache_json_is_one_line(cache, tmp_path):
    (cache / "cache.json").write_text("{garbage")
    with pytest.raises(CacheError, match="cache.json is corrupt"):
        verify_cache(cache)
    assert "cache.json is corrupt" in refused_by_fit(cache, tmp_path / "run")
