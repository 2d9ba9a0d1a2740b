"""The extraction pipeline: grids encoded once, windows pointing at the planned frames, parts,
failures and the summary. Fake encoders read back the frame numbers that fake frames spell."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from fakes import (
    FakeAdapter, decode_features, fake_encoders, write_affwild2, write_audio_only, write_video,
)
from fgvu.cache import CacheError, open_cache
from fgvu.extract.config import ExtractConfig, ExtractConfigError
from fgvu.extract.encoding import SourceEncoder, conversion_size
from fgvu.extract.parts import group_by_source, part_of, split_parts
from fgvu.extract.pipeline import run_extract
from fgvu.sampling import SamplingPlan

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def fake_dataset(monkeypatch):
    """A FakeAdapter whose sources replace open_video."""

    def make(videos, missing=()):
        adapter = FakeAdapter(videos, missing)
        monkeypatch.setattr("fgvu.extract.video_source.open_video", adapter.open_video)
        return adapter

    return make


def _cfg(out, **kw) -> ExtractConfig:
    return ExtractConfig(dataset="aff-wild2", out=str(out), progress=False, **kw)


def _planned(starts, n_frames, every, steps):
    last = np.broadcast_to(np.asarray(n_frames) - 1, np.shape(starts))[:, None]
    return np.minimum(np.asarray(starts)[:, None] + every * np.arange(steps)[None, :], last)


@pytest.mark.parametrize("n_frames,stride,windows", [(250, 16, 13), (10, 16, 1), (64, 16, 1), (65, 16, 2),
                                                    (250, 32, 7), (1000, 16, 60)])
def test_window_and_grid_counts_in_the_cache(tmp_path, fake_dataset, n_frames, stride, windows):
    adapter = fake_dataset({"v": ("v.mp4", n_frames)})
    run_extract(_cfg(tmp_path / "c", stride=stride), encoders=fake_encoders(), adapter=adapter)
    view = open_cache(tmp_path / "c")
    assert view.n_windows == windows
    starts = view.window_start
    assert np.all(starts % stride == 0) and starts[0] == 0
    # every frame covered by a valid window position, and nothing past the end marked valid
    covered = np.zeros(n_frames, bool)
    for s, valid in zip(starts, view.valid):
        pos = s + np.arange(64)
        assert np.array_equal(valid, pos < n_frames)
        covered[pos[valid]] = True
    assert covered.all()
    # grid tables hold each distinct planned frame once
    img = _planned(starts, n_frames, 4, 16)
    cap = _planned(starts, n_frames, 16, 4)
    assert len(view.image) == len(np.unique(img)) and len(view.text) == len(np.unique(cap))
    if n_frames == 250 and stride == 16:
        assert len(view.image) == 64  # 0, 4, ..., 248 and the padded window's last frame 249
        assert len(view.text) == 16  # 0, 16, ..., 240


def test_every_grid_frame_encoded_once_and_batched(tmp_path, fake_dataset):
    adapter = fake_dataset({"a": ("a.mp4", 1000), "b": ("b.mp4", 250)})
    enc = fake_encoders()
    summary = run_extract(_cfg(tmp_path / "c", video_frames=(8, 16), image_batch=32, caption_batch=5),
                          encoders=enc, adapter=adapter)
    plan = SamplingPlan(video_frames=(8, 16))
    image_seen, caption_seen = [], []
    # calls never mix videos; per video, concatenated calls are exactly the grid, in order
    img_calls, cap_calls = enc.image_text.images.calls, enc.captioner.log.calls
    for n in (1000, 250):  # processing order is by name: a (1000) then b (250)
        lay = plan.layout(n)
        k = -(-len(lay.image_frames) // 32)
        image_seen.append(sum(img_calls[:k], []))
        assert all(len(c) <= 32 for c in img_calls[:k])
        img_calls = img_calls[k:]
        assert image_seen[-1] == lay.image_frames.tolist()
        k = -(-len(lay.caption_frames) // 5)
        caption_seen.append(sum(cap_calls[:k], []))
        cap_calls = cap_calls[k:]
        assert caption_seen[-1] == lay.caption_frames.tolist()
    assert not img_calls and not cap_calls
    # window by window would encode 16 images and 4 captions per window: 4x more at stride 16
    windows = plan.layout(1000).n_windows + plan.layout(250).n_windows
    assert summary.windows == windows
    n_img = sum(len(s) for s in image_seen)
    assert summary.counts.image_frames == n_img and 16 * windows / n_img > 3.7
    assert 4 * windows / sum(len(s) for s in caption_seen) > 3.5
    # the text tower embedded each caption once; every window's clip built once per T
    assert sorted(enc.image_text.texts.frames) == sorted(sum(caption_seen, []))
    assert all(len(call) == 8 for call in enc.video.clips.calls)  # short last batches are padded ...
    clips = Counter()
    for call in enc.video.clips.calls:
        while len(call) > 1 and call[-1] == call[-2]:  # ... with copies of their last clip
            call = call[:-1]
        clips.update(call)
    expected = Counter(tuple(c) for n in (1000, 250) for t in (8, 16) for c in plan.layout(n).clip_frames[t].tolist())
    assert clips == expected
    # each fake source was decoded once, converting only needed frames
    for name, n in (("a.mp4", 1000), ("b.mp4", 250)):
        (source,) = adapter.sources[name]
        assert source.decoded == len(plan.layout(n).needed_frames())


def test_windows_index_the_planned_frames_and_targets_align(tmp_path, fake_dataset):
    adapter = fake_dataset({"a": ("a.mp4", 300), "b": ("b.mp4", 37), "c": ("c.mp4", 130)})
    run_extract(_cfg(tmp_path / "c", video_frames=(8, 16, 32)), encoders=fake_encoders(), adapter=adapter)
    view = open_cache(tmp_path / "c", load_captions=True)
    assert list(view.videos.name) == ["a", "b", "c"]
    n = view.videos.n_frames[view.window_video].astype(np.int64)
    starts = view.window_start
    assert np.array_equal(decode_features(view.image[view.image_index]), _planned(starts, n, 4, 16))
    assert np.array_equal(decode_features(view.text[view.caption_index]), _planned(starts, n, 16, 4))
    assert np.allclose(view.text[:, 3], 0.5)  # rows of `text` come from the text tower
    for t in (8, 16, 32):
        assert np.array_equal(decode_features(view.video[t]), _planned(starts, n, 64 // t, t))
    for cap, frame in zip(view.captions, view.caption_frame):
        assert cap["frame"] == frame and cap["text"] == f"a frame numbered {frame}"
    for r in range(len(view.videos)):
        f = np.arange(view.videos.n_frames[r])
        rows = view.videos.frame_offset[r] + f
        assert np.allclose(view.targets[rows, 0], (f % 200) / 200 - 0.5, atol=1e-6)


def test_left_right_decoded_once_and_share_features(tmp_path, fake_dataset):
    adapter = fake_dataset({"x_left": ("x.mp4", 200), "x_right": ("x.mp4", 200), "y": ("y.mp4", 90)})
    enc = fake_encoders()
    summary = run_extract(_cfg(tmp_path / "c"), encoders=enc, adapter=adapter)
    assert summary.succeeded == 3 and len(adapter.sources["x.mp4"]) == 1
    view = open_cache(tmp_path / "c")
    left, right = (list(view.videos.name).index(n) for n in ("x_left", "x_right"))
    wl = view.window_video == left
    wr = view.window_video == right
    assert np.array_equal(view.image[view.image_index[wl]], view.image[view.image_index[wr]])
    assert np.array_equal(view.video[16][wl], view.video[16][wr])
    lay = SamplingPlan().layout(200)
    assert len(enc.image_text.images.frames) == len(lay.image_frames) + len(SamplingPlan().layout(90).image_frames)


def test_source_encoder_holds_about_one_window_of_frames():
    lay = SamplingPlan(video_frames=(8, 16, 32)).layout(5000)
    enc = SourceEncoder(fake_encoders(), lay, "p")
    from fakes import frame_image

    peak = 0
    for f in lay.needed_frames().tolist():
        enc.add(f, frame_image(f))
        peak = max(peak, len(enc._held))
    features = enc.finish()
    assert features.video[32].shape == (lay.n_windows, 32, 8)
    assert peak <= 33  # one window's clip frames, never the whole video


def test_conversion_size_keeps_aspect_and_only_shrinks():
    assert conversion_size(720, 1280, 288) == (288, 512)
    assert conversion_size(1080, 1440, 224) == (224, 299)
    assert conversion_size(120, 160, 288) == (120, 160)
    assert conversion_size(720, 1280, None) == (720, 1280)


def test_parts_cover_every_video_once_and_keep_left_right_together():
    from fgvu.extract.datasets import VideoItem

    items = [VideoItem(f"v{i:03d}", Path(f"/d/v{i:03d}.mp4"), "train", None) for i in range(60)]
    items += [VideoItem(f"p{i}_{side}", Path(f"/d/p{i}.mp4"), "train", None) for i in range(15) for side in ("left", "right")]
    for k in (1, 2, 3, 7):
        parts = split_parts(items, k)
        names = [it.name for groups in parts for g in groups for it in g.items]
        assert sorted(names) == sorted(it.name for it in items)
        for groups in parts:
            for g in groups:
                assert len({it.source for it in g.items}) == 1
        where = {it.name: p for p, groups in enumerate(parts) for g in groups for it in g.items}
        assert all(where[f"p{i}_left"] == where[f"p{i}_right"] for i in range(15))
        if k == 3:
            assert all(len(groups) > 10 for groups in parts)  # balanced enough
    # a video's part depends only on its name: adding videos moves none
    before = {g.name: part_of(g.name, 4) for g in group_by_source(items)}
    after = {g.name: p for p, groups in enumerate(split_parts(items + items[:0], 4)) for g in groups}
    assert before == after


def test_parts_run_separately_equal_one_run(tmp_path, fake_dataset):
    videos = {f"v{i}": (f"v{i}.mp4", 70 + 13 * i) for i in range(6)} | {"w_left": ("w.mp4", 99), "w_right": ("w.mp4", 99)}
    adapter = fake_dataset(videos)
    run_extract(_cfg(tmp_path / "one"), encoders=fake_encoders(), adapter=adapter)
    total = 0
    for k in range(3):
        s = run_extract(_cfg(tmp_path / "three", parts=3, part=k), encoders=fake_encoders(), adapter=adapter)
        total += s.succeeded
    assert total == len(videos)
    one, three = open_cache(tmp_path / "one"), open_cache(tmp_path / "three")
    assert sorted(three.videos.name) == sorted(one.videos.name)
    for name in one.videos.name:
        r1, r3 = list(one.videos.name).index(name), list(three.videos.name).index(name)
        w1, w3 = one.window_video == r1, three.window_video == r3
        assert np.array_equal(one.image[one.image_index[w1]], three.image[three.image_index[w3]])
        assert np.array_equal(one.video[16][w1], three.video[16][w3])
    # running all parts again skips everything
    s = run_extract(_cfg(tmp_path / "three", parts=3), encoders=fake_encoders(), adapter=adapter)
    assert (s.succeeded, s.skipped) == (0, len(videos))


def test_resume_skips_committed_videos_and_equals_a_clean_run(tmp_path, fake_dataset):
    adapter = fake_dataset({f"v{i}": (f"v{i}.mp4", 50 + 40 * i) for i in range(5)})
    first = run_extract(_cfg(tmp_path / "r", limit=2), encoders=fake_encoders(), adapter=adapter)
    assert first.succeeded == 2
    second = run_extract(_cfg(tmp_path / "r"), encoders=fake_encoders(), adapter=adapter)
    assert (second.succeeded, second.skipped, second.failed) == (3, 2, 0)
    run_extract(_cfg(tmp_path / "clean"), encoders=fake_encoders(), adapter=adapter)
    a, b = open_cache(tmp_path / "r"), open_cache(tmp_path / "clean")
    for field in ("window_video", "window_start", "image_index", "caption_index", "valid", "targets", "image", "text"):
        assert np.array_equal(getattr(a, field), getattr(b, field)), field


def test_refuses_a_different_plan_or_encoder(tmp_path, fake_dataset):
    adapter = fake_dataset({"v": ("v.mp4", 100)})
    run_extract(_cfg(tmp_path / "c"), encoders=fake_encoders(), adapter=adapter)
    with pytest.raises(CacheError, match="sampling plan"):
        run_extract(_cfg(tmp_path / "c", stride=32), encoders=fake_encoders(), adapter=adapter)
    other = fake_encoders()
    other.video.fingerprint = {**other.video.fingerprint, "checkpoint": "random-init:1"}
    with pytest.raises(CacheError, match="encoder 'video'"):
        run_extract(_cfg(tmp_path / "c"), encoders=other, adapter=adapter)
    with pytest.raises(CacheError, match="caption_prompt"):
        run_extract(_cfg(tmp_path / "c", caption_prompt="something else"), encoders=fake_encoders(), adapter=adapter)


def test_failures_are_recorded_and_the_run_goes_on(tmp_path, fake_dataset, monkeypatch):
    adapter = fake_dataset({"good": ("good.mp4", 120), "noann": ("noann.mp4", 120), "trunc": ("trunc.mp4", 300)},
                           missing=("noann",))
    real_open = adapter.open_video

    def open_video(path):
        source = real_open(path)
        if Path(path).name == "trunc.mp4":
            source.fail_at = 150
        return source

    monkeypatch.setattr("fgvu.extract.video_source.open_video", open_video)
    s = run_extract(_cfg(tmp_path / "c"), encoders=fake_encoders(), adapter=adapter)
    assert (s.succeeded, s.failed, s.skipped) == (1, 2, 0) and not s.all_failed
    reasons = dict(s.failures)
    assert "annotation file missing" in reasons["noann"] and "truncated" in reasons["trunc"]
    view = open_cache(tmp_path / "c")
    assert list(view.videos.name) == ["good"]
    assert {f["video"] for f in view.failures} == {"noann", "trunc"}
    text = "\n".join(s.lines())
    assert "1 videos extracted, 2 failed, 0 skipped" in text and "trunc" in text


def test_bad_files_with_real_decoding(tmp_path):
    """Zero-byte, truncated, text-as-mp4 and audio-only files fail with reasons; a 10-frame video pads."""
    root = tmp_path / "data"
    write_video(root / "good.mp4", 80)
    write_video(root / "short.mp4", 10)
    (root / "empty.mp4").write_bytes(b"")
    (root / "text.mp4").write_text("this is not a video\n" * 20)
    write_audio_only(root / "audio.mp4")
    full = write_video(tmp_path / "full.mp4", 120).read_bytes()
    (root / "trunc.mp4").write_bytes(full[: len(full) // 2])
    names = ["audio", "empty", "good", "short", "text", "trunc"]
    (root / "labels.csv").write_text("video,label\n" + "".join(f"{n},{i % 2}\n" for i, n in enumerate(names)))
    cfg = ExtractConfig(dataset="folder", root=str(root), out=str(tmp_path / "c"), progress=False)
    s = run_extract(cfg, encoders=fake_encoders())
    assert (s.succeeded, s.failed) == (2, 4)
    reasons = dict(s.failures)
    assert set(reasons) == {"audio", "empty", "text", "trunc"}
    assert "empty file" in reasons["empty"] and "no video stream" in reasons["audio"]
    assert "text file" in reasons["text"] and "truncated" in reasons["trunc"]
    assert all(str(root / f"{name}.mp4") in reason for name, reason in reasons.items())
    view = open_cache(tmp_path / "c")
    short = list(view.videos.name).index("short")
    w = np.flatnonzero(view.window_video == short)
    assert len(w) == 1 and view.valid[w[0]].sum() == 10 and view.videos.n_frames[short] == 10
    assert len(view.failures) == 4


def test_every_video_failing_is_reported(tmp_path, fake_dataset):
    adapter = fake_dataset({"a": ("a.mp4", 50)}, missing=("a",))
    s = run_extract(_cfg(tmp_path / "c"), encoders=fake_encoders(), adapter=adapter)
    assert s.all_failed and s.failed == 1


def test_lock_refuses_a_second_writer(tmp_path, fake_dataset):
    adapter = fake_dataset({"v": ("v.mp4", 100)})
    run_extract(_cfg(tmp_path / "c"), encoders=fake_encoders(), adapter=adapter)
    holder = textwrap.dedent(f"""
        import sys, time
        from fgvu.cache import PartWriter, read_spec
        w = PartWriter({str(tmp_path / 'c')!r}, read_spec({str(tmp_path / 'c')!r}), 0)
        print("locked", flush=True)
        time.sleep(60)
    """)
    proc = subprocess.Popen([sys.executable, "-c", holder], cwd=REPO, stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "locked"
        with pytest.raises(CacheError, match="another process"):
            run_extract(_cfg(tmp_path / "c"), encoders=fake_encoders(), adapter=adapter)
    finally:
        proc.kill()
        proc.wait()
    assert run_extract(_cfg(tmp_path / "c"), encoders=fake_encoders(), adapter=adapter).skipped == 1


def test_reuse_captions_skips_the_captioner(tmp_path, fake_dataset):
    adapter = fake_dataset({"a": ("a.mp4", 200), "b": ("b.mp4", 64)})
    run_extract(_cfg(tmp_path / "first"), encoders=fake_encoders(), adapter=adapter)
    enc = fake_encoders()
    enc.captioner = None
    enc.image_text.fingerprint = {**enc.image_text.fingerprint, "name": "another-text-encoder"}
    s = run_extract(_cfg(tmp_path / "second", reuse_captions=str(tmp_path / "first")), encoders=enc, adapter=adapter)
    assert s.succeeded == 2 and s.counts.captioned_frames == 0
    a, b = open_cache(tmp_path / "first", load_captions=True), open_cache(tmp_path / "second", load_captions=True)
    assert a.captions == b.captions and np.array_equal(a.text, b.text)
    assert b.spec.encoders["captioner"] == a.spec.encoders["captioner"]
    assert b.spec.caption_prompt == a.spec.caption_prompt
    # a finer caption grid needs captions the first cache does not have: refused before any work
    with pytest.raises(ExtractConfigError, match="captioned every 16 frames at stride 16"):
        run_extract(_cfg(tmp_path / "third", caption_every=8, reuse_captions=str(tmp_path / "first")),
                    encoders=enc, adapter=adapter)
    # a coarser grid is a subset of the first cache's captions: fine
    s = run_extract(_cfg(tmp_path / "fourth", caption_every=32, stride=32, reuse_captions=str(tmp_path / "first")),
                    encoders=enc, adapter=adapter)
    assert s.succeeded == 2
    # a caption missing from the reused cache fails only that video, naming the frame
    (tmp_path / "first" / "parts" / "part-00000.zarr" / "captions.jsonl").write_text("")
    s = run_extract(_cfg(tmp_path / "fifth", reuse_captions=str(tmp_path / "first")), encoders=enc, adapter=adapter)
    assert s.failed == 2 and "frame 0" in dict(s.failures)["a"]
    with pytest.raises(ExtractConfigError, match="output cache"):
        run_extract(_cfg(tmp_path / "first", reuse_captions=str(tmp_path / "first")), encoders=enc, adapter=adapter)


def test_config_rejects_bad_options():
    with pytest.raises(ExtractConfigError, match="--part"):
        ExtractConfig(dataset="dvd", parts=2, part=2)
    with pytest.raises(ExtractConfigError, match="unknown dataset"):
        ExtractConfig(dataset="kinetics")
    with pytest.raises(Exception, match="video frames 24"):
        ExtractConfig(dataset="dvd", video_frames=(24,))


def test_ray_engine_without_ray_says_how_to_install(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)
    with pytest.raises(ExtractConfigError, match=r"pip install 'fgvu\[ray\]'"):
        run_extract(_cfg(tmp_path / "c", engine="ray"))


def _extract_app():
    import typer

    from fgvu.commands import extract as extract_command

    app = typer.Typer()
    extract_command.register(app)
    app.command("noop")(lambda: None)
    return app


def test_cli_defaults_options_and_exit_codes(tmp_path, monkeypatch):
    """--root defaults to $FGVU_DATA/<dataset>, --out to caches/<dataset>; exit 1 only when every video fails."""
    from typer.testing import CliRunner

    write_affwild2(tmp_path / "store" / "aff-wild2", {"a": 100, "b": 70})
    monkeypatch.setenv("FGVU_DATA", str(tmp_path / "store"))
    monkeypatch.chdir(tmp_path)
    (tmp_path / "fgvu.toml").write_text("[extract]\nstride = 64\ncaption_every = 8\n")  # the CLI overrides stride
    monkeypatch.setattr("fgvu.extract.pipeline.build_encoders", lambda cfg, with_captioner=True: fake_encoders())
    runner = CliRunner()
    result = runner.invoke(_extract_app(), ["extract", "--dataset", "aff-wild2", "--video-frames", "8,16",
                                            "--stride", "32", "--no-progress"])
    assert result.exit_code == 0, result.output
    assert "2 videos extracted, 0 failed, 0 skipped" in result.output
    view = open_cache(tmp_path / "caches" / "aff-wild2")
    assert view.spec.sampling == SamplingPlan(stride=32, caption_every=8, video_frames=(8, 16))
    result = runner.invoke(_extract_app(), ["extract", "--dataset", "aff-wild2", "--video-frames", "8,16",
                                            "--stride", "32", "--no-progress"])
    assert result.exit_code == 0 and "0 videos extracted, 0 failed, 2 skipped" in result.output
    for video in (tmp_path / "store" / "aff-wild2" / "batch1").iterdir():
        video.write_bytes(b"")
    result = runner.invoke(_extract_app(), ["extract", "--dataset", "aff-wild2", "--out", "other", "--no-progress"])
    assert result.exit_code == 1 and "2 failed" in result.output
    result = runner.invoke(_extract_app(), ["extract", "--dataset", "dvd", "--no-progress"])
    assert result.exit_code != 0 and "not found" in str(result.exception)


def test_cli_with_the_tiny_encoders(tmp_path):
    """The real tiny VideoPrism, CLIP and captioner through the command: a sound cache with captions."""
    from typer.testing import CliRunner

    from fgvu.cache.verify import verify_cache

    root = write_affwild2(tmp_path / "data", {"a": 140, "p": 80}, left_right=("p",))
    args = ["extract", "--dataset", "aff-wild2", "--root", str(root), "--out", str(tmp_path / "c"),
            "--encoders", "tiny", "--device", "cpu", "--caption-prompt", "Describe the face.", "--no-progress"]
    result = CliRunner().invoke(_extract_app(), args)
    assert result.exit_code == 0, (result.output, result.exception)
    view = open_cache(tmp_path / "c", load_captions=True)
    assert list(view.videos.name) == ["a", "p_left", "p_right"]
    assert view.n_windows == 6 + 2 * 2 and view.image.shape[1] == view.spec.dims["image"]
    assert np.isfinite(view.video[16].astype(np.float32)).all() and view.video[16].std() > 0
    assert len(view.captions) == len(view.text) and all(isinstance(c["text"], str) for c in view.captions)
    # issue 11: the tiny set includes audio-tiny; these files have no audio stream, so it is all masked
    assert {r: fp["variant"] for r, fp in view.spec.encoders.items()} == {
        "video": "videoprism-tiny", "image": "clip-tiny", "text": "clip-tiny", "captioner": "captioner-tiny",
        "audio": "audio-tiny"}
    assert view.audio.shape == (len(view.image), 32) and not view.audio_mask.any()
    assert "audio: 0 of 2 soundtracks with sound; warnings: no audio stream 2" in result.output
    assert view.spec.encoders["text"]["role"] == "text"
    assert verify_cache(tmp_path / "c") == []
