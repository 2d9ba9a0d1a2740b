"""`fgvu extract --only audio --into CACHE`: audio added to committed videos exactly once, every other
array byte-identical, invisible until complete, resumable after a crash, equal to extracting with audio."""

from __future__ import annotations

import hashlib
import json
import shutil

import numpy as np
import pytest

from fakes import FakeAudio, Sound, fake_encoders, write_affwild2
from fgvu.cache import CacheError, PartWriter, open_cache, read_spec
from fgvu.cache.extend import CacheExtension, PartExtension
from fgvu.cache.verify import verify_cache
from fgvu.extract.config import ExtractConfig, ExtractConfigError
from fgvu.extract.pipeline import run_extract

VIDEOS = {"a": 130, "b": 90, "c": 160, "d": 70, "pair": 110}
SOUNDS = {"a": Sound(), "c": Sound(start=0.4), "d": Sound(seconds=1.5), "pair": Sound()}


@pytest.fixture(scope="module")
def made(tmp_path_factory):
    """The dataset, a cache without audio (2 parts) and one extracted with audio from the start."""
    base = tmp_path_factory.mktemp("extend")
    root = write_affwild2(base / "data", VIDEOS, left_right=("pair",), audio=SOUNDS)
    plain, direct = base / "plain", base / "direct"
    for part in (0, 1):
        run_extract(_cfg(root, out=plain, parts=2, part=part), encoders=fake_encoders())
        run_extract(_cfg(root, out=direct, parts=2, part=part), encoders=fake_encoders(audio=FakeAudio()))
    return root, plain, direct


def _cfg(root, **kw) -> ExtractConfig:
    kw = {k: str(v) if k in ("out", "into") else v for k, v in kw.items()}
    return ExtractConfig(dataset="aff-wild2", root=str(root), progress=False, **kw)


def _add_audio(root, cache, audio=None):
    return run_extract(_cfg(root, only="audio", into=cache), encoders=fake_encoders(audio=audio or FakeAudio()))


def _files(cache) -> dict[str, str]:
    return {str(p.relative_to(cache)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(cache.rglob("*")) if p.is_file() and p.name != "writer.lock"}


def _copy(cache, to):
    shutil.copytree(cache, to)
    return to


def _assert_audio_equal(a, b):
    va, vb = open_cache(a), open_cache(b)
    assert list(va.videos.name) == list(vb.videos.name)
    np.testing.assert_array_equal(va.audio_mask, vb.audio_mask)
    np.testing.assert_array_equal(va.audio, vb.audio)


def test_appending_audio_leaves_every_other_array_byte_identical(made, tmp_path):
    root, plain, direct = made
    cache = _copy(plain, tmp_path / "c")
    before, spec_before = _files(cache), json.loads((cache / "cache.json").read_text())
    summary = _add_audio(root, cache)
    assert summary.added == 6 and summary.skipped == 0
    assert "audio added to 6 videos" in summary.lines()[0]
    assert summary.audio.with_sound == 4 and summary.audio.tracks == 5  # pair_left/_right share one decode
    after = _files(cache)
    changed = {f for f in before if before[f] != after.get(f)}
    # besides cache.json only the integrity records: commit.json's stamp and line count, and
    # checksum lines of the new arrays appended after the old ones
    assert {f for f in changed if not f.endswith(("/commit.json", "/checksums.jsonl"))} == {"cache.json"}, changed
    for f in changed:
        if f.endswith("/checksums.jsonl"):
            assert (cache / f).read_text().startswith((plain / f).read_text())
    new = set(after) - set(before)
    assert new and all("/frames/audio" in f for f in new), new  # only the audio arrays were added
    spec = json.loads((cache / "cache.json").read_text())
    assert spec["dims"] == {**spec_before["dims"], "audio": 4}
    assert spec["encoders"] == {**spec_before["encoders"], "audio": FakeAudio().fingerprint}
    assert {k: v for k, v in spec.items() if k not in ("dims", "encoders")} == \
        {k: v for k, v in spec_before.items() if k not in ("dims", "encoders")}
    assert verify_cache(cache) == []
    _assert_audio_equal(cache, direct)  # the same rows as extracting with audio from the start
    again = _add_audio(root, cache)
    assert again.already and again.lines() == [f"cache {cache} already has audio; nothing to do"]
    other = FakeAudio()
    other.fingerprint = {**other.fingerprint, "variant": "other"}
    with pytest.raises(CacheError, match="already has audio features from fake"):
        _add_audio(root, cache, other)


def test_a_crash_mid_way_resumes_to_the_same_cache(made, tmp_path, monkeypatch):
    root, plain, direct = made
    cache = _copy(plain, tmp_path / "c")
    import fgvu.cache.extend as extend

    real_write = extend.write_json
    calls = []

    def crash_on_third_record(path, obj):
        calls.append(path)
        if len(calls) == 3:  # the rows of the third video are written, its record is not
            raise KeyboardInterrupt("killed")
        real_write(path, obj)

    monkeypatch.setattr(extend, "write_json", crash_on_third_record)
    with pytest.raises(KeyboardInterrupt):
        _add_audio(root, cache)
    monkeypatch.setattr(extend, "write_json", real_write)
    assert "audio" not in read_spec(cache).dims and open_cache(cache).audio is None  # not visible yet
    assert verify_cache(cache) == []
    part = next(p for p in sorted((cache / "parts").iterdir()) if (p / "extend-audio.json").exists())
    record = json.loads((part / "extend-audio.json").read_text())
    import zarr

    rows = zarr.open_group(part, mode="r")["frames/audio"].shape[0]
    assert rows > record["rows"]  # the crash left rows past the record ...
    summary = _add_audio(root, cache)
    assert summary.skipped == 2 and summary.added == 4  # ... which the next run dropped and redid
    assert not any((cache / "parts").glob("*/extend-audio.json"))
    assert verify_cache(cache) == []
    _assert_audio_equal(cache, direct)


def test_videos_committed_meanwhile_are_included(made, tmp_path, monkeypatch):
    root, plain, direct = made
    cache = _copy(plain, tmp_path / "c")
    grown = write_affwild2(tmp_path / "grown", {**VIDEOS, "e": 80}, left_right=("pair",),
                           audio={**SOUNDS, "e": Sound()})
    real_finish, rounds = CacheExtension.finish, []

    def finish_after_a_new_video(self):
        if not rounds:  # an extraction commits video e while the audio is being added
            for part in (0, 1):
                run_extract(_cfg(grown, out=cache, parts=2, part=part), encoders=fake_encoders())
        rounds.append(1)
        return real_finish(self)

    monkeypatch.setattr(CacheExtension, "finish", finish_after_a_new_video)
    summary = _add_audio(grown, cache)
    assert len(rounds) == 2 and summary.added == 7
    view = open_cache(cache)
    assert verify_cache(cache) == [] and len(view.audio) == len(view.image)
    e = int(np.flatnonzero(view.videos.name == "e")[0])
    assert view.audio_mask[view.image_index[view.windows_of([e])]].all()  # e has sound, and its rows


def test_refusals(made, tmp_path):
    root, plain, _ = made
    cache = _copy(plain, tmp_path / "c")
    with pytest.raises(ExtractConfigError, match="--only and --into go together"):
        ExtractConfig(dataset="aff-wild2", only="audio")
    with pytest.raises(ExtractConfigError, match="drop --out"):
        ExtractConfig(dataset="aff-wild2", only="audio", into=str(cache), out="x")
    with pytest.raises(ExtractConfigError, match="is a aff-wild2 cache"):
        run_extract(ExtractConfig(dataset="dvd", root=str(root), only="audio", into=str(cache), progress=False),
                    encoders=fake_encoders(audio=FakeAudio()))
    spec = read_spec(cache)
    with PartWriter(cache, spec, 1):  # an extraction holds part 1
        with pytest.raises(CacheError, match="part-00001.zarr is being written by another process"):
            _add_audio(root, cache)
    with pytest.raises(CacheError, match="only grid modalities"):
        CacheExtension(cache, "v", 4, {})
    ext = CacheExtension(cache, "a", 4, FakeAudio().fingerprint)
    with ext.open_part(ext.part_paths()[0]) as part:
        assert part.complete and not part.pending()  # part 0 was done before part 1's lock stopped the run
    with ext.open_part(ext.part_paths()[1]) as part:
        video = part.pending()[0]
        with pytest.raises(CacheError, match="audio shape"):
            part.append(video, {"audio": np.zeros((1, 4)), "audio_mask": np.ones(1, bool)})
        with pytest.raises(CacheError, match="NaN"):
            n = len(video.grid_frames)
            part.append(video, {"audio": np.full((n, 4), np.nan), "audio_mask": np.ones(n, bool)})
    assert isinstance(part, PartExtension) and part.progress["videos"] == 0


def test_the_command_line(made, tmp_path, monkeypatch):
    import typer
    from typer.testing import CliRunner

    from fgvu.commands import extract as extract_command

    root, plain, direct = made
    cache = _copy(plain, tmp_path / "c")
    built = []
    monkeypatch.setattr("fgvu.extract.encoders.registry.build_audio_encoder",
                        lambda name, **kw: built.append(name) or FakeAudio())
    app = typer.Typer()
    extract_command.register(app)
    app.command("noop")(lambda: None)
    args = ["extract", "--dataset", "aff-wild2", "--root", str(root), "--only", "audio", "--into", str(cache),
            "--quiet"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, (result.output, result.exception)
    assert "audio added to 6 videos" in result.output and "audio: 4 of 5 soundtracks with sound" in result.output
    assert built == ["audio:wavlm-base-plus"]  # the paper set has none: the default audio encoder
    _assert_audio_equal(cache, direct)
    result = CliRunner().invoke(app, args[:7] + ["--quiet"])  # --only without --into
    assert result.exit_code != 0 and "--only and --into go together" in str(result.exception)
