"""Per-person inputs: each Aff-Wild2 track reads its own face crops, or its half of a shared video;
frames without a crop are masked and counted; a crop folder's length is its annotation's."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from fakes import decode_features, fake_encoders, frame_image
from fgvu.cache import PartWriter, VideoRecord, open_cache, read_spec
from fgvu.cache.tools import cache_info, info_lines
from fgvu.cache.verify import verify_cache
from fgvu.extract.config import ExtractConfig
from fgvu.extract.encoding import conversion_size
from fgvu.extract.pipeline import run_extract
from fgvu.extract.video_source import MISSING_FRAME_VALUE, crop_half, open_video
from fgvu.synth.videos import numbered_frame, write_video

FIXTURES = Path(__file__).parent / "fixtures"
ANNOTATED = 100  # lines of each annotation
LEFT_CROPS = [f for f in range(95) if f != 39]  # no crop for frame 39 (file 00040) nor for frames 95-99
RIGHT_OFFSET = 1000  # the right person's crops spell frame + 1000


def annotate(root: Path, name: str, n: int = ANNOTATED) -> None:
    ann = root / "VA_Estimation_Challenge" / "Train_Set" / f"{name}.txt"
    ann.parent.mkdir(parents=True, exist_ok=True)
    ann.write_text("valence,arousal\n" + "".join(f"{(f % 20) / 20:.2f},{-(f % 20) / 20:.2f}\n" for f in range(n)))


def crops(folder: Path, frames, offset: int = 0) -> None:
    """Lossless 8x8 crops that spell `frame + offset` for the fake encoders, named 1-based."""
    folder.mkdir(parents=True)
    for f in frames:
        Image.fromarray(frame_image(f + offset)).save(folder / f"{f + 1:05d}.png")


def extract(root: Path, out: Path, **options):
    encoders = fake_encoders()
    cfg = ExtractConfig(dataset="aff-wild2", root=str(root), out=str(out), progress=False, **options)
    return run_extract(cfg, encoders=encoders), open_cache(out), encoders


def rows(view, name: str, table: str) -> np.ndarray:
    """The rows of video `name` in a table ("frame", "image", "window")."""
    v = list(view.videos.name).index(name)
    offsets = getattr(view.videos, f"{table}_offset").astype(np.int64)
    end = offsets[v + 1] if v + 1 < len(offsets) else {"frame": len(view.targets), "image": len(view.image),
                                                        "window": view.n_windows}[table]
    return np.arange(offsets[v], end)


@pytest.fixture(scope="module")
def cropped(tmp_path_factory):
    """x_left and x_right with their own crop folders; x_left lacks a crop inside and its last five."""
    root = tmp_path_factory.mktemp("aw") / "aw"
    for name in ("x_left", "x_right"):
        annotate(root, name)
    crops(root / "cropped_aligned" / "x_left", LEFT_CROPS)
    crops(root / "cropped_aligned" / "x_right", range(ANNOTATED), RIGHT_OFFSET)
    summary, view, _ = extract(root, tmp_path_factory.mktemp("c") / "cache")
    return root, summary, view


def test_left_and_right_crops_get_their_own_features(cropped):
    _, summary, view = cropped
    assert summary.succeeded == 2 and summary.inputs == {"frame folder": 2}
    for name, offset, missing in (("x_left", 0, set(range(ANNOTATED)) - set(LEFT_CROPS)),
                                  ("x_right", RIGHT_OFFSET, set())):
        image_rows = rows(view, name, "image")
        frames = view.image_frame[image_rows]
        seen = decode_features(view.image[image_rows])
        expected = [MISSING_FRAME_VALUE * 257 if f in missing else f + offset for f in frames.tolist()]
        assert seen.tolist() == expected, name  # a missing crop is grey, never a neighbouring face
    left, right = (view.image[rows(view, n, "image")] for n in ("x_left", "x_right"))
    assert left.shape == right.shape and not np.array_equal(left, right)


def test_frames_without_crops_are_masked_and_the_annotation_gives_the_length(cropped):
    root, summary, view = cropped
    left, right = (list(view.videos.name).index(n) for n in ("x_left", "x_right"))
    assert view.videos.n_frames[left] == view.videos.n_frames[right] == ANNOTATED  # crops stop at 95
    missing = sorted(set(range(ANNOTATED)) - set(LEFT_CROPS))
    assert missing == [39, 95, 96, 97, 98, 99]
    mask = view.target_mask[rows(view, "x_left", "frame")]
    assert np.flatnonzero(~mask.all(axis=1)).tolist() == missing and not mask[missing].any()
    assert not view.targets[rows(view, "x_left", "frame")][missing].any()
    assert view.target_mask[rows(view, "x_right", "frame")].all()
    assert (view.videos.missing_frames[left], view.videos.missing_frames[right]) == (6, 0)
    assert (summary.missing_frames, summary.missing_videos) == (6, 1)
    assert "6 frames of 1 videos have no image" in "\n".join(summary.lines())
    info = cache_info(view.path)
    assert (info["missing_frames"], info["videos_with_missing_frames"]) == (6, 1)
    assert "frames without an image (no face crop; masked): 6 in 1 videos" in info_lines(info)
    assert verify_cache(view.path) == []


@pytest.fixture(scope="module")
def shared_video(tmp_path_factory):
    """x.mp4 shows two people, x_left and x_right, and has no crops; y.mp4 shows one person."""
    root = tmp_path_factory.mktemp("aw") / "aw"
    write_video(root / "batch1" / "x.mp4", np.stack([numbered_frame(k, (64, 96)) for k in range(90)]))
    write_video(root / "batch1" / "y.mp4", np.stack([numbered_frame(k, (64, 96)) for k in range(70)]))
    for name in ("x_left", "x_right", "y"):
        annotate(root, name, 90 if name.startswith("x") else 70)
    summary, view, encoders = extract(root, tmp_path_factory.mktemp("c") / "cache")
    return root, summary, view, encoders


def test_left_and_right_without_crops_see_their_half_of_the_video(shared_video):
    root, summary, view, encoders = shared_video
    assert summary.succeeded == 3 and summary.inputs == {"half frame": 2, "whole frame": 1}
    assert "2 from their half of a shared video" in "\n".join(summary.lines())
    # what each track should see, decoded and cut independently of the pipeline
    source = open_video(root / "batch1" / "x.mp4")
    frames = view.image_frame[rows(view, "x_left", "image")]
    size = conversion_size(64, 96, encoders.input_side(), halves=True)
    decoded = dict(source.frames(frames, size=size))
    for name, half in (("x_left", "left"), ("x_right", "right")):
        expected = np.stack([crop_half(decoded[f], half) for f in frames.tolist()])
        np.testing.assert_array_equal(view.image[rows(view, name, "image")],
                                      encoders.image_text.encode_images(expected).astype(np.float16))
        v = list(view.videos.name).index(name)
        assert (view.videos.width[v], view.videos.height[v]) == (48, 64)
    left, right = (decode_features(view.image[rows(view, n, "image")]) for n in ("x_left", "x_right"))
    assert (left != right).mean() > 0.8
    # the clips and captions are per half as well
    wl, wr = rows(view, "x_left", "window"), rows(view, "x_right", "window")
    assert not np.array_equal(view.video[16][wl], view.video[16][wr])
    # the single-person video sees the whole frame
    y_frames = view.image_frame[rows(view, "y", "image")]
    whole = dict(open_video(root / "batch1" / "y.mp4").frames(y_frames, size=conversion_size(64, 96, 8)))
    np.testing.assert_array_equal(view.image[rows(view, "y", "image")], encoders.image_text.encode_images(
        np.stack([whole[f] for f in y_frames.tolist()])).astype(np.float16))


def test_frames_video_ignores_crops_and_frames_cropped_aligned_needs_them(tmp_path):
    root = tmp_path / "aw"
    write_video(root / "batch1" / "x.mp4", np.stack([numbered_frame(k, (64, 96)) for k in range(70)]))
    for name in ("x_left", "x_right"):
        annotate(root, name, 70)
    crops(root / "cropped_aligned" / "x_left", range(72))  # two crops past the annotation's 70 frames
    auto, view, _ = extract(root, tmp_path / "auto")
    assert auto.inputs == {"frame folder": 1, "half frame": 1}  # each track: its crops if it has them
    assert view.videos.n_frames.tolist() == [70, 70] and auto.warnings == 1  # the unused crops are reported
    video, _, _ = extract(root, tmp_path / "video", frames="video")
    assert video.inputs == {"half frame": 2}
    with pytest.warns(UserWarning, match=r"x_right \(no cropped_aligned/x_right/\)"):
        only_crops, _, _ = extract(root, tmp_path / "crops", frames="cropped_aligned")
    assert only_crops.inputs == {"frame folder": 1}


def test_a_cache_of_fgvu_0_1_reads_no_missing_frames_and_resumes_with_counts(tmp_path):
    cache = shutil.copytree(FIXTURES / "cache-v1", tmp_path / "cache")
    before = open_cache(cache)
    assert len(before.videos) and not before.videos.missing_frames.any()
    assert cache_info(cache)["missing_frames"] == 0
    spec = read_spec(cache)
    plan = spec.sampling
    lay = plan.layout(80)
    mask = np.ones((80, 2), bool)
    mask[-3:] = False
    dims = spec.dims
    record = VideoRecord(
        name="new", split="train", n_frames=80, fps=30.0, width=8, height=8, missing_frames=3,
        window_start=lay.starts, valid=lay.valid, targets=np.zeros((80, 2), np.float32), target_mask=mask,
        image_index=lay.image_index, image_frame=lay.image_frames, caption_index=lay.caption_index,
        caption_frame=lay.caption_frames, captions=["a caption"] * len(lay.caption_frames),
        image=np.zeros((len(lay.image_frames), dims["image"])), text=np.zeros((len(lay.caption_frames), dims["text"])),
        video={t: np.zeros((lay.n_windows, t, dims["video"])) for t in plan.video_frames},
    )
    with PartWriter(cache, spec, 0) as writer:  # the old part, which has no missing_frames column yet
        writer.append_video(record)
    after = open_cache(cache)
    assert after.videos.missing_frames.tolist() == [0] * len(before.videos) + [3]
    assert cache_info(cache)["missing_frames"] == 3 and verify_cache(cache) == []


def test_conversion_size_keeps_each_half_at_the_encoders_side():
    assert conversion_size(720, 1280, 288) == (288, 512)  # the whole frame: its short side
    assert conversion_size(720, 1280, 288, halves=True) == (324, 576)  # each 640-wide half -> 288 wide
    assert conversion_size(96, 128, 64, halves=True) == (96, 128)  # never enlarged
