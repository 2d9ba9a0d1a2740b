"""cache info / verify / export on caches made by the pipeline with fake encoders."""

from __future__ import annotations

import json

import h5py
import numpy as np
import pytest
import typer
import zarr
from typer.testing import CliRunner

from fakes import FakeAdapter, fake_encoders
from fgvu.cache import open_cache, part_path, read_captions
from fgvu.cache.export import export_h5
from fgvu.cache.tools import cache_info, info_lines
from fgvu.cache.verify import verify_cache
from fgvu.commands import cache as cache_command
from fgvu.extract.config import ExtractConfig
from fgvu.extract.pipeline import run_extract


@pytest.fixture
def cache(tmp_path, monkeypatch):
    adapter = FakeAdapter({"a": ("a.mp4", 300), "b": ("b.mp4", 40), "c_left": ("c.mp4", 150),
                           "c_right": ("c.mp4", 150), "d": ("d.mp4", 90)}, missing=("d",))
    monkeypatch.setattr("fgvu.extract.video_source.open_video", adapter.open_video)
    out = tmp_path / "cache"
    for part in (0, 1):
        run_extract(ExtractConfig(dataset="aff-wild2", out=str(out), parts=2, part=part, progress=False,
                                  video_frames=(8, 16)), encoders=fake_encoders(), adapter=adapter)
    return out


def _app() -> typer.Typer:
    app = typer.Typer()
    cache_command.register(app)
    app.command("noop")(lambda: None)  # a second command keeps `cache` a sub-command
    return app


def test_info_counts(cache):
    info = cache_info(cache)
    view = open_cache(cache)
    assert info["videos"] == 4 == len(view.videos)
    assert info["videos_per_split"] == {s: int((view.videos.split == s).sum()) for s in set(view.videos.split)}
    assert info["windows"] == view.n_windows and info["frames"] == int(view.videos.n_frames.sum())
    assert info["image_rows"] == len(view.image) and info["caption_rows"] == len(view.text)
    assert info["dims"] == {"video": 8, "image": 8, "text": 8} and info["video_frames"] == [8, 16]
    assert [f["video"] for f in info["failures"]] == ["d"] and info["parts"] == 2
    assert info["bytes"] > 0 and info["encoders"]["text"]["role"] == "text"
    text = "\n".join(info_lines(info))
    assert "videos: 4" in text and "failures: 1" in text and "d (part-" in text
    result = CliRunner().invoke(_app(), ["cache", "info", str(cache)])
    assert result.exit_code == 0 and "windows:" in result.output


def test_verify_passes_a_sound_cache(cache):
    assert verify_cache(cache) == []
    result = CliRunner().invoke(_app(), ["cache", "verify", str(cache)])
    assert result.exit_code == 0 and "ok" in result.output


def _part_with_windows(cache):
    for k in (0, 1):
        commit = json.loads((part_path(cache, k) / "commit.json").read_text())
        if commit["rows"]["windows"] > 1 and commit["rows"]["videos"] > 1:
            return part_path(cache, k), commit["rows"]
    raise AssertionError("no part with two videos")


@pytest.mark.parametrize("damage,expected", [
    ("index_out_of_range", "windows/image_index out of range"),
    ("index_other_video", "windows/caption_index points outside its window's video"),
    ("index_wrong_frame", "do not show the frames of the sampling plan"),
    ("nan_feature", "frames/image: 1 rows with NaN/Inf"),
    ("bad_offset", "videos/frame_offset"),
    ("bad_caption_line", "captions.jsonl line"),
    ("missing_array", "array clips/video_f8 is missing"),
])
def test_verify_catches_damage(cache, damage, expected):
    part, rows = _part_with_windows(cache)
    group = zarr.open_group(part, mode="r+", zarr_format=3)
    if damage == "index_out_of_range":
        group["windows/image_index"][1, 3] = rows["image"] + 5
    elif damage == "index_other_video":
        last = int(group["windows/caption_index"][rows["windows"] - 1, 0])
        group["windows/caption_index"][0, 0] = last
    elif damage == "index_wrong_frame":
        group["windows/image_index"][0, 2] = int(group["windows/image_index"][0, 3])
    elif damage == "nan_feature":
        group["frames/image"][2, 1] = np.nan
    elif damage == "bad_offset":
        group["videos/frame_offset"][1] = int(group["videos/frame_offset"][1]) + 1
    elif damage == "bad_caption_line":
        lines = (part / "captions.jsonl").read_text().splitlines()
        lines[1] = json.dumps({"video": "nobody", "frame": 0, "text": "x"})
        (part / "captions.jsonl").write_text("\n".join(lines) + "\n")
    elif damage == "missing_array":
        import shutil

        shutil.rmtree(part / "clips" / "video_f8")
    problems = verify_cache(cache)
    assert any(expected in p for p in problems), problems
    result = CliRunner().invoke(_app(), ["cache", "verify", str(cache)])
    assert result.exit_code == 1 and expected in result.output


def test_verify_catches_a_video_committed_twice(cache, tmp_path):
    import shutil

    shutil.copytree(part_path(cache, 0), part_path(cache, 2))
    assert any("committed in both" in p for p in verify_cache(cache))


def test_export_round_trip(cache, tmp_path):
    out = tmp_path / "export" / "features.h5"
    result = CliRunner().invoke(_app(), ["cache", "export", str(cache), "--format", "h5", str(out)])
    assert result.exit_code == 0, result.output
    view = open_cache(cache, load_captions=True)
    with h5py.File(out, "r") as f:
        assert np.array_equal(f["frames/image"][:], view.image) and f["frames/image"].dtype == np.float16
        assert np.array_equal(f["frames/text"][:], view.text)
        for t in (8, 16):
            assert np.array_equal(f[f"clips/video_f{t}"][:], view.video[t])
        for name, value in (("windows/video_id", view.window_video), ("windows/start", view.window_start),
                            ("windows/image_index", view.image_index), ("windows/caption_index", view.caption_index),
                            ("windows/valid", view.valid), ("targets/values", view.targets),
                            ("targets/mask", view.target_mask), ("frames/image_frame", view.image_frame),
                            ("frames/caption_frame", view.caption_frame),
                            ("videos/frame_offset", view.videos.frame_offset),
                            ("videos/image_offset", view.videos.image_offset)):
            assert np.array_equal(f[name][:], value), name
        assert [s.decode() for s in f["videos/name"][:]] == list(view.videos.name)
        captions = list(zip([s.decode() for s in f["captions/video"][:]], f["captions/frame"][:].tolist(),
                            [s.decode() for s in f["captions/text"][:]]))
        assert captions == [(c["video"], c["frame"], c["text"]) for c in view.captions]
        assert json.loads(f.attrs["cache.json"]) == view.spec.to_dict()
        assert [x["video"] for x in json.loads(f.attrs["failures"])] == ["d"]
        # cache-global indices: every window's image rows belong to its own video
        vid = f["windows/video_id"][:]
        off = f["videos/image_offset"][:]
        assert np.all(f["windows/image_index"][:] >= off[vid][:, None])
    result = CliRunner().invoke(_app(), ["cache", "export", str(cache), "--format", "npz", str(out)])
    assert result.exit_code != 0


def test_read_captions_ignores_uncommitted_lines(cache):
    part, rows = _part_with_windows(cache)
    with open(part / "captions.jsonl", "a") as f:
        f.write(json.dumps({"video": "ghost", "frame": 0, "text": "uncommitted"}) + "\n")
    table = read_captions(cache)
    assert ("ghost", 0) not in table and len(table) == len(open_cache(cache).text)


def test_info_verify_and_export_say_whether_a_cache_has_audio(cache, tmp_path):
    from fgvu.synth.features import write_feature_cache

    plain = "\n".join(info_lines(cache_info(cache)))
    assert "streams: video, image, text   not in this cache: audio" in plain
    sound = write_feature_cache(tmp_path / "sound", videos=5, frames=120, dims=8, audio=True)
    info = cache_info(sound)
    view = open_cache(sound)
    assert info["modalities"] == ["video", "image", "text", "audio"] and info["missing_modalities"] == []
    assert info["valid_rows"] == {"audio": [int(view.audio_mask.sum()), len(view.audio_mask)]}
    text = "\n".join(info_lines(info))
    share = view.audio_mask.mean()
    assert 0 < share < 1 and f"audio: {int(view.audio_mask.sum())} of {len(view.audio)} rows hold real input" in text
    assert verify_cache(sound) == []
    out = export_h5(sound, tmp_path / "sound.h5")
    with h5py.File(out, "r") as f:
        assert np.array_equal(f["frames/audio"][:], view.audio) and np.array_equal(f["frames/audio_mask"][:],
                                                                                    view.audio_mask)
    arr = zarr.open_group(part_path(sound, 0), mode="a")["frames/audio"]
    row = np.asarray(arr[3])
    row[0] = np.nan
    arr[3] = row
    assert any("frames/audio: 1 rows with NaN/Inf (first row 3)" in p for p in verify_cache(sound))
