"""Soundtracks: 16 kHz mono on the video's clock, and every bad soundtrack masked and counted, never a crash.

The test files carry a 1 kHz tone whose amplitude rises 0.02 per second (`fakes.Sound`), so the
loudness at any sample tells which second of the video it came from."""

from __future__ import annotations

import av
import numpy as np
import pytest

from fakes import Sound, ramp_amplitude, write_audio_only, write_video
from fgvu.extract.audio_source import RATE, AudioReport, AudioTrack, read_audio
from fgvu.extract.video_source import open_video

FPS = 25
N_FRAMES = 75  # 3 s


def _level(track: AudioTrack, t: float, width: float = 0.05) -> float:
    """The tone's amplitude around t seconds (RMS * sqrt 2 over `width` seconds)."""
    seg = track.samples[int((t - width / 2) * RATE): int((t + width / 2) * RATE)]
    return float(np.sqrt(2 * np.mean(seg.astype(np.float64) ** 2)))


def _file(tmp_path, name: str, sound: Sound | None, **kw):
    return write_video(tmp_path / name, N_FRAMES, fps=FPS, audio=sound, **kw)


def _kinds(track: AudioTrack) -> list[str]:
    return [i.kind for i in track.issues]


def test_a_clean_track_is_16k_mono_on_the_video_clock(tmp_path):
    track = read_audio(_file(tmp_path, "ok.mp4", Sound()), N_FRAMES, FPS)
    assert track.samples.dtype == np.float32 and len(track.samples) == N_FRAMES / FPS * RATE
    assert track.valid.all() and track.issues == [] and (track.source_rate, track.channels) == (48000, 2)
    for t in (0.3, 1.0, 1.7, 2.6):  # the loudness says when: within 1% of the planted amplitude
        assert _level(track, t) == pytest.approx(float(ramp_amplitude(t)), rel=0.02), t
    # placed by timestamps: a track starting 0.6 s late still reads the planted time, the start masked
    late = read_audio(_file(tmp_path, "late.mp4", Sound(start=0.6)), N_FRAMES, FPS)
    assert not late.valid[: int(0.55 * RATE)].any() and late.valid[int(0.65 * RATE):].all()
    assert _level(late, 1.5) == pytest.approx(float(ramp_amplitude(1.5)), rel=0.02)
    assert _kinds(late) == ["starts after the video"]


def test_mono_stereo_and_5_1_give_the_same_signal(tmp_path):
    # losslessly coded (FLAC), so the channel layout is the only difference between the files
    tracks = {layout: read_audio(_file(tmp_path, f"{layout}.mkv", Sound(layout=layout, codec="flac"),
                                       container_format="matroska"), N_FRAMES, FPS)
              for layout in ("mono", "stereo", "5.1")}
    assert tracks["mono"].valid.all()
    for layout in ("stereo", "5.1"):
        np.testing.assert_allclose(tracks[layout].samples, tracks["mono"].samples, atol=1e-6)
    assert _kinds(tracks["5.1"]) == ["multichannel"] and tracks["5.1"].channels == 6
    assert _kinds(tracks["stereo"]) == [] == _kinds(tracks["mono"])


@pytest.mark.parametrize("case,sound,kinds,valid_share", [
    ("no audio stream", None, ["no audio stream"], 0.0),
    ("8 kHz", Sound(rate=8000, layout="mono"), ["low sample rate"], 1.0),
    ("a mono track of zeros", Sound(layout="mono", zeros=True), ["silent"], 0.0),
    ("shorter than the video", Sound(seconds=1.8), ["shorter than the video"], 0.6),
    ("longer than the video", Sound(seconds=4.5), ["longer than the video"], 1.0),
    ("gap", Sound(gap=(1.0, 1.5)), ["gaps"], 0.83),
])
def test_bad_soundtracks_are_masked_and_counted(tmp_path, case, sound, kinds, valid_share):
    path = _file(tmp_path, "v.mp4", sound)
    track = read_audio(path, N_FRAMES, FPS)
    assert _kinds(track) == kinds, track.issues
    assert track.valid.mean() == pytest.approx(valid_share, abs=0.03)
    assert all(str(path) in i.detail for i in track.issues)
    assert not track.samples[~track.valid].any()  # masked samples are zeros
    if track.valid.any() and case != "8 kHz":
        t = 0.5
        assert _level(track, t) == pytest.approx(float(ramp_amplitude(t)), rel=0.03)
    assert open_video(path).info.n_frames == N_FRAMES  # the pictures are untouched
    report = AudioReport()
    report.add(track)
    assert report.issues == {k: 1 for k in kinds} and report.with_sound == int(valid_share > 0)


def test_gaps_in_matroska_and_opus(tmp_path):
    track = read_audio(_file(tmp_path, "gap.mkv", Sound(codec="libopus", gap=(1.0, 1.6)),
                             container_format="matroska"), N_FRAMES, FPS)
    assert _kinds(track) == ["gaps"]
    hole = ~track.valid
    assert hole[int(1.1 * RATE): int(1.5 * RATE)].all() and not hole[: int(0.9 * RATE)].any()
    assert _level(track, 2.2) == pytest.approx(float(ramp_amplitude(2.2)), rel=0.03)


def test_a_corrupt_audio_packet_masks_its_time_and_keeps_the_video(tmp_path):
    path = _file(tmp_path, "corrupt.mp4", Sound())
    with av.open(str(path)) as container:
        packets = [(p.pos, p.size) for p in container.demux(container.streams.audio[0]) if p.size]
    data = bytearray(path.read_bytes())
    rng = np.random.default_rng(0)
    for pos, size in packets[40:44]:  # about 0.85-0.94 s
        data[pos:pos + size] = rng.integers(0, 256, size, dtype=np.uint8).tobytes()
    path.write_bytes(bytes(data))
    track = read_audio(path, N_FRAMES, FPS)
    assert "corrupt audio" in _kinds(track)
    assert 0.9 < track.valid.mean() < 0.99
    assert track.valid[: int(0.8 * RATE)].all() and track.valid[int(1.0 * RATE):].all()
    source = open_video(path)
    assert sum(1 for _ in source.frames(np.arange(N_FRAMES))) == N_FRAMES


def test_silent_stretches_and_frame_folders(tmp_path):
    muted = read_audio(_file(tmp_path, "muted.mp4", Sound(mute=(1.0, 2.0))), N_FRAMES, FPS)
    assert _kinds(muted) == ["silent stretches"]
    assert not muted.valid[int(1.1 * RATE): int(1.9 * RATE)].any()
    assert muted.valid[: int(0.9 * RATE)].all() and muted.valid[int(2.1 * RATE):].all()
    track = read_audio(_file(tmp_path, "half.mp4", Sound(only="FL", layout="stereo")), N_FRAMES, FPS)
    assert track.valid.all()  # one channel silent is still sound
    folder = tmp_path / "frames"
    folder.mkdir()
    empty = read_audio(folder, 30, 30.0)
    assert not empty.has_sound and _kinds(empty) == ["no soundtrack"] and len(empty.samples) == RATE
    unreadable = read_audio(write_audio_only(tmp_path / "audio.mp4", seconds=1.0), 10, 10.0)
    assert unreadable.has_sound  # an audio-only file still has sound (the video source rejects the file)


def test_an_unexpected_decoder_error_masks_the_rest_and_keeps_what_was_read(tmp_path, monkeypatch):
    from fgvu.extract import audio_source

    path = _file(tmp_path, "ok.mp4", Sound())
    real_add, seen = audio_source._Segment.add, []

    def add(self, frame):
        seen.append(1)
        if len(seen) == 60:  # about 1.3 s in
            raise RuntimeError("resampler broke")
        real_add(self, frame)

    monkeypatch.setattr(audio_source._Segment, "add", add)
    track = read_audio(path, N_FRAMES, FPS)
    assert "undecodable audio" in _kinds(track) and "resampler broke" in track.issues[0].detail
    assert track.valid[: int(1.2 * RATE)].all() and not track.valid[int(1.4 * RATE):].any()
