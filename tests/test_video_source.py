"""Video sources: exact counts, the wanted frames with the right pixels, resizing, bad files."""

from __future__ import annotations

import warnings
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
from PIL import Image

from fgvu.extract.video_source import (
    MISSING_FRAME_VALUE, FrameFolderSource, PyAVSource, VideoDecodeError, crop_half, open_video,
)
from fgvu.sampling import SamplingPlan
from fgvu.synth.videos import numbered_frame as synth_numbered_frame
from fgvu.synth.videos import read_frame_number as read_number
from fgvu.synth.videos import write_video

H, W = 64, 96


def numbered_frame(k: int, height: int = H, width: int = W) -> np.ndarray:
    return synth_numbered_frame(k, (height, width))


def numbered_video(path: Path, n: int, height: int = H, width: int = W) -> Path:
    write_video(path, np.stack([numbered_frame(k, height, width) for k in range(n)]))
    return path


@pytest.fixture(scope="module")
def video100(tmp_path_factory) -> Path:
    return numbered_video(tmp_path_factory.mktemp("v") / "v100.mp4", 100)


def test_exact_frame_count_and_info(video100):
    source = open_video(video100)
    assert isinstance(source, PyAVSource)
    assert (source.info.n_frames, source.info.width, source.info.height) == (100, W, H)
    assert source.info.fps == pytest.approx(30.0)


def _container_video(path: Path, codec: str, n: int) -> Path:
    with av.open(str(path), "w") as container:
        stream = container.add_stream(codec, rate=30)
        stream.width, stream.height, stream.pix_fmt = W, H, "yuv420p"
        for k in range(n):
            container.mux(stream.encode(av.VideoFrame.from_ndarray(numbered_frame(k))))
        container.mux(stream.encode())
    return path


@pytest.mark.parametrize("suffix,codec", [("mkv", "libx264"), ("ts", "libx264"), ("avi", "mpeg4")])
def test_other_containers_count_and_read_every_frame(tmp_path, suffix, codec):
    source = open_video(_container_video(tmp_path / f"v.{suffix}", codec, 40))
    assert source.info.n_frames == 40
    assert [read_number(f) for _, f in source.frames(np.arange(40))] == list(range(40))


def test_wanted_frames_in_order_with_their_content(video100):
    wanted = np.array([0, 3, 4, 17, 50, 63, 99])
    got = list(open_video(video100).frames(wanted))
    assert [k for k, _ in got] == wanted.tolist()
    assert [read_number(f) for _, f in got] == wanted.tolist()
    assert all(f.shape == (H, W, 3) and f.dtype == np.uint8 for _, f in got)


def test_every_frame_decodes_to_its_number(video100):
    got = list(open_video(video100).frames(np.arange(100)))
    assert [read_number(f) for _, f in got] == list(range(100))


def test_sampling_plan_frames_at_encoder_size(video100):
    wanted = SamplingPlan().layout(100).needed_frames()
    got = list(open_video(video100).frames(wanted, size=(32, 40)))
    assert [k for k, _ in got] == wanted.tolist()
    assert {f.shape for _, f in got} == {(32, 40, 3)}
    assert [read_number(f) for _, f in got] == wanted.tolist()


def test_no_wanted_frames_yields_nothing(video100):
    assert list(open_video(video100).frames(np.array([], dtype=np.int64))) == []


@pytest.mark.parametrize("wanted", [[3, 2], [1, 1], [-1], [100]])
def test_bad_wanted_lists_are_refused(video100, wanted):
    with pytest.raises(ValueError, match="sorted, unique"):
        list(open_video(video100).frames(np.array(wanted)))


def test_ten_frame_video(tmp_path):
    source = open_video(numbered_video(tmp_path / "ten.mp4", 10))
    assert source.info.n_frames == 10
    layout = SamplingPlan().layout(10)
    got = list(source.frames(layout.needed_frames()))
    assert [read_number(f) for _, f in got] == layout.needed_frames().tolist()


def test_odd_frame_size(tmp_path):
    path = tmp_path / "odd.mp4"
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=30)
        stream.width, stream.height, stream.pix_fmt = 97, 63, "yuv444p"  # 4:2:0 cannot be odd
        for k in range(20):
            container.mux(stream.encode(av.VideoFrame.from_ndarray(numbered_frame(k, 63, 97))))
        container.mux(stream.encode())
    source = open_video(path)
    assert (source.info.width, source.info.height, source.info.n_frames) == (97, 63, 20)
    frames = dict(source.frames(np.array([0, 19])))
    assert frames[19].shape == (63, 97, 3) and read_number(frames[19]) == 19
    assert dict(source.frames(np.array([7]), size=(33, 45)))[7].shape == (33, 45, 3)


def write_variable_rate(path, n_frames: int, gaps_ms) -> None:
    """An H.264 file of numbered frames whose timestamps step by `gaps_ms` in turn."""
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=30)
        stream.width, stream.height, stream.pix_fmt = W, H, "yuv420p"
        stream.codec_context.time_base = stream.time_base = Fraction(1, 1000)
        pts = 0
        for k in range(n_frames):
            frame = av.VideoFrame.from_ndarray(numbered_frame(k))
            frame.pts, frame.time_base = pts, Fraction(1, 1000)
            pts += gaps_ms[k % len(gaps_ms)]
            container.mux(stream.encode(frame))
        container.mux(stream.encode())


def test_variable_frame_rate_is_read_frame_by_frame(tmp_path):
    path = tmp_path / "vfr.mp4"
    gaps_ms = [20, 50, 33]  # irregular timestamps
    write_variable_rate(path, 60, gaps_ms)
    source = open_video(path)
    assert source.info.n_frames == 60
    assert source.info.fps == pytest.approx(1000 / np.mean(gaps_ms), rel=0.05)  # the average rate
    assert [read_number(f) for _, f in source.frames(np.arange(60))] == list(range(60))


def test_regular_timestamps_are_not_variable_rate(video100):
    assert open_video(video100).info.variable_rate is None


def test_variable_frame_rate_is_reported_with_its_measured_rate(tmp_path):
    path = tmp_path / "vfr.mp4"
    gaps_ms = [20, 50, 33]
    write_variable_rate(path, 30, gaps_ms)
    rate = open_video(path).info.variable_rate
    span = sum(gaps_ms[k % 3] for k in range(29)) / 1000
    assert rate.fps == pytest.approx(29 / span) and (rate.min_gap, rate.max_gap) == pytest.approx((0.020, 0.050))
    assert rate.describe() == f"variable frame rate: measured {29 / span:.2f} fps, frame gaps 20-50 ms; read frame by frame"


# ---- rotation metadata ------------------------------------------------------------------------


def upright_frame(k: int) -> np.ndarray:
    """A portrait frame that is not symmetric under any turn or mirror: its number, and two corner marks."""
    img = numbered_frame(k, height=W, width=H).copy()
    img[:8, :8] = (255, 0, 0)
    img[-8:, -16:] = (0, 0, 255)
    return img


def rotated_video(path: Path, degrees: int, hflip: bool = False, n: int = 12) -> Path:
    """Frames stored so that a player applying the display matrix shows `upright_frame`."""
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=25)
        first = _stored(upright_frame(0), degrees, hflip)
        stream.height, stream.width, stream.pix_fmt = first.shape[0], first.shape[1], "yuv420p"
        stream.set_display_rotation(degrees, hflip=hflip)
        for k in range(n):
            frame = av.VideoFrame.from_ndarray(_stored(upright_frame(k), degrees, hflip), format="rgb24")
            container.mux(stream.encode(frame))
        container.mux(stream.encode())
    return path


def _stored(upright: np.ndarray, degrees: int, hflip: bool) -> np.ndarray:
    """The inverse of showing: undo the mirror, then turn back (degrees are counter-clockwise on screen)."""
    img = upright[:, ::-1] if hflip else upright
    return np.ascontiguousarray(np.rot90(img, -degrees // 90))


@pytest.mark.parametrize("degrees, hflip", [(-90, False), (90, False), (180, False), (90, True)])
def test_rotated_clip_is_decoded_upright(tmp_path, degrees, hflip):
    source = open_video(rotated_video(tmp_path / "rotated.mp4", degrees, hflip))
    info = source.info
    assert (info.height, info.width) == (W, H)  # the upright, portrait size
    assert info.orientation.degrees % 360 == degrees % 360 and info.orientation.mirrored == hflip
    frames = dict(source.frames(np.arange(12)))
    for k, image in frames.items():
        assert image.shape == (W, H, 3)
        assert np.abs(image.astype(int) - upright_frame(k)).mean() < 4, k
        assert read_number(image) == k
    small = dict(source.frames(np.array([3]), size=(48, 32)))[3]  # resized in the upright frame's shape
    assert small.shape == (48, 32, 3) and small[:4, :4, 0].mean() > 200 and small[-4:, -4:, 2].mean() > 200


def test_video_without_rotation_has_an_upright_orientation(video100):
    orientation = open_video(video100).info.orientation
    assert orientation.upright and orientation.degrees == 0 and not orientation.mirrored


# ---- bad files ------------------------------------------------------------------------------


def _audio_only(path: Path) -> Path:
    with av.open(str(path), "w") as container:
        stream = container.add_stream("aac", rate=16000)
        for _ in range(10):
            frame = av.AudioFrame.from_ndarray(np.zeros((1, 1024), np.float32), format="fltp", layout="mono")
            frame.sample_rate = 16000
            container.mux(stream.encode(frame))
        container.mux(stream.encode())
    return path


def _faststart_video(path: Path, n: int = 60) -> bytes:
    """A video with its index first, noisy so that every packet carries data; returns its bytes."""
    rng = np.random.default_rng(0)
    with av.open(str(path), "w", options={"movflags": "faststart"}) as container:
        stream = container.add_stream("libx264", rate=30, options={"threads": "1"})
        stream.width, stream.height, stream.pix_fmt = W, H, "yuv420p"
        for k in range(n):
            noisy = numbered_frame(k).astype(np.int16) + rng.integers(-20, 20, (H, W, 1))
            container.mux(stream.encode(av.VideoFrame.from_ndarray(np.clip(noisy, 0, 255).astype(np.uint8))))
        container.mux(stream.encode())
    return path.read_bytes()


def test_bad_files_name_file_and_reason(tmp_path, video100):
    cases = {}
    (tmp_path / "empty.mp4").write_bytes(b"")
    cases["empty.mp4"] = "empty file"
    (tmp_path / "text.mp4").write_text("this is a text file, not a video\n" * 10)
    cases["text.mp4"] = "text file"
    _audio_only(tmp_path / "audio.mp4")
    cases["audio.mp4"] = "no video stream"
    data = video100.read_bytes()  # index (moov) at the end: cutting the file loses it
    (tmp_path / "cut.mp4").write_bytes(data[: len(data) // 2])
    cases["cut.mp4"] = "truncated or corrupt"
    fast = _faststart_video(tmp_path / "fast.mp4")
    (tmp_path / "fast_cut.mp4").write_bytes(fast[: len(fast) * 2 // 3])
    cases["fast_cut.mp4"] = "truncated: the index lists 60 frames"
    avi = _container_video(tmp_path / "full.avi", "mpeg4", 60).read_bytes()  # AVI header counts frames
    (tmp_path / "cut.avi").write_bytes(avi[: len(avi) // 2])
    cases["cut.avi"] = "truncated: the index lists 60 frames"
    cases["missing.mp4"] = "no such file"
    (tmp_path / "loop_a.mp4").symlink_to("loop_b.mp4")
    (tmp_path / "loop_b.mp4").symlink_to("loop_a.mp4")
    cases["loop_a.mp4"] = r"a symbolic link loop \(.*loop_a.mp4 -> loop_b.mp4 -> loop_a.mp4\)"
    (tmp_path / "dangling.mp4").symlink_to("gone.mp4")
    cases["dangling.mp4"] = r"a broken symbolic link \(to gone.mp4, which does not exist\)"
    for name, reason in cases.items():
        with pytest.raises(VideoDecodeError, match=reason) as err:
            open_video(tmp_path / name)
        assert name in str(err.value)


def test_corrupt_data_raises_while_decoding(tmp_path):
    fast = _faststart_video(tmp_path / "fast.mp4")
    third = len(fast) // 3
    (tmp_path / "corrupt.mp4").write_bytes(fast[:third] + bytes(third) + fast[2 * third:])
    source = open_video(tmp_path / "corrupt.mp4")  # the index is intact
    with pytest.raises(VideoDecodeError, match=r"corrupt\.mp4: corrupt data at frame \d+"):
        list(source.frames(np.arange(source.info.n_frames)))


# ---- frame folders ------------------------------------------------------------------------


def _frame_folder(folder: Path, numbers, first: int = 1) -> Path:
    folder.mkdir(parents=True)
    for k in numbers:
        Image.fromarray(numbered_frame(k)).save(folder / f"{k + first:05d}.jpg", quality=95)
    return folder


def test_frame_folder_reads_numbered_images(tmp_path):
    folder = _frame_folder(tmp_path / "clip", range(30))
    source = open_video(folder, fps=25)
    assert isinstance(source, FrameFolderSource)
    assert (source.info.n_frames, source.info.fps, source.info.width, source.info.height) == (30, 25.0, W, H)
    wanted = np.array([0, 1, 9, 20, 29])
    got = list(source.frames(wanted))
    assert [k for k, _ in got] == wanted.tolist() and [read_number(f) for _, f in got] == wanted.tolist()
    resized = list(source.frames(wanted, size=(32, 48)))
    assert {f.shape for _, f in resized} == {(32, 48, 3)}
    assert [read_number(f) for _, f in resized] == wanted.tolist()


def test_frame_folder_gaps_are_grey_frames_listed_as_missing(tmp_path):
    """A frame without an image (no face crop) is a uniform grey frame listed in `missing`, never a
    neighbouring image; with the caller's frame count, trailing frames without images are missing too."""
    folder = _frame_folder(tmp_path / "gappy", [k for k in range(12) if k not in (0, 5, 6)])
    source = open_video(folder)
    assert source.missing == [0, 5, 6] and source.info.n_frames == 12
    for f, image in source.frames(np.arange(12)):
        if f in (0, 5, 6):
            assert image.shape == (H, W, 3) and (image == MISSING_FRAME_VALUE).all()
        else:
            assert read_number(image) == f
    assert all((image == MISSING_FRAME_VALUE).all() and image.shape == (32, 48, 3)
               for _, image in source.frames(np.array([0, 5]), size=(32, 48)))
    longer = open_video(folder, n_frames=15)  # e.g. a 15-line annotation
    assert longer.info.n_frames == 15 and longer.missing == [0, 5, 6, 12, 13, 14]
    assert [f for f, image in longer.frames(np.arange(10, 15)) if (image == MISSING_FRAME_VALUE).all()] == [12, 13, 14]
    shorter = FrameFolderSource(folder, n_frames=10)
    assert shorter.info.n_frames == 10 and shorter.unused == 2 and shorter.missing == [0, 5, 6]
    assert shorter.notes == [f"{folder}: 2 images past the video's 10 frames are not read"] and not source.notes
    with pytest.raises(VideoDecodeError, match="none of its images"):
        FrameFolderSource(_frame_folder(tmp_path / "late", [20, 21]), n_frames=5)


def test_frame_folder_zero_based_numbering(tmp_path):
    folder = _frame_folder(tmp_path / "zero", range(5), first=0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        source = open_video(folder)
    assert source.info.n_frames == 5
    assert [read_number(f) for _, f in source.frames(np.arange(5))] == list(range(5))


def test_frame_folder_errors(tmp_path):
    (tmp_path / "none").mkdir()
    with pytest.raises(VideoDecodeError, match="no numbered images"):
        open_video(tmp_path / "none")
    folder = _frame_folder(tmp_path / "broken", range(4))
    (folder / "00003.jpg").write_bytes(b"not a jpeg")
    with pytest.raises(VideoDecodeError, match=r"00003\.jpg: unreadable image for frame 2"):
        list(open_video(folder).frames(np.arange(4)))


def test_crop_half_splits_a_frame_between_two_people():
    frame = np.arange(5 * 7 * 3, dtype=np.uint8).reshape(5, 7, 3)
    left, right = crop_half(frame, "left"), crop_half(frame, "right")
    assert left.shape == (5, 3, 3) and right.shape == (5, 4, 3)
    np.testing.assert_array_equal(np.concatenate([left, right], axis=1), frame)
    assert crop_half(frame, None) is frame
    with pytest.raises(ValueError, match="half"):
        crop_half(frame, "top")
