"""What an extraction run tells: each failure once on stderr and once in the summary, known-broken
files do not fail a complete cache, left-out videos, turned and variable-rate videos are listed,
and a full disk is one line naming the file, after which the run resumes."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest

from fakes import FakeAdapter, fake_encoders, write_affwild2, write_video
from fgvu.cache import open_cache
from fgvu.extract.config import ExtractConfig
from fgvu.extract.pipeline import run_extract
from helpers import assert_same_cache as _assert_same_cache

REPO = Path(__file__).resolve().parents[1]
TESTS = Path(__file__).resolve().parent

# `fgvu extract` as users run it (fgvu.cli.main), with the fake encoders
CLI = textwrap.dedent("""
    import sys
    sys.path.insert(0, {tests!r})
    from fakes import fake_encoders
    import fgvu.extract.pipeline
    fgvu.extract.pipeline.build_encoders = lambda cfg, with_captioner=True: fake_encoders()
    from fgvu.cli import main
    sys.argv = ["fgvu", *sys.argv[1:]]
    main()
""").format(tests=str(TESTS))


def _fgvu(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", CLI, *map(str, args)], cwd=REPO, capture_output=True, text=True,
                          timeout=300)


def test_each_failure_once_on_stderr_once_in_the_summary_and_known_ones_keep_exit_0(tmp_path):
    root = write_affwild2(tmp_path / "data", {"good": 90, "bad": 70, "pair": 80}, left_right=("pair",))
    (root / "batch1" / "bad.mp4").write_bytes(b"not a video at all " * 40)
    (root / "batch1" / "pair.mp4").write_bytes(b"")  # one source, two failing items
    shutil.copy(root / "batch1" / "good.mp4", root / "batch1" / "expr_only.mp4")  # no annotation
    args = ["extract", "--dataset", "aff-wild2", "--root", root, "--out", tmp_path / "c", "--quiet"]
    failing = ("bad", "pair_left", "pair_right")
    notice = "aff-wild2: 1 videos have no annotations and are not extracted: expr_only"
    for run in ("first", "again"):
        proc = _fgvu(*args)
        # the first run extracted a video; the second tried only the known-broken ones: both exit 0
        assert proc.returncode == 0, (run, proc.stdout, proc.stderr)
        for name in failing:
            assert proc.stderr.count(f"video {name} failed: ") == 1, (run, proc.stderr)
            assert proc.stdout.count(f"  failed: {name}: ") == 1, (run, proc.stdout)
        assert proc.stderr.count(notice) == 1 and proc.stdout.count(notice) == 1, (run, proc.stderr)
        assert "UserWarning" not in proc.stderr and "warnings.warn" not in proc.stderr  # one line, not Python's two
    assert "0 videos extracted, 3 failed (3 known from earlier runs), 1 skipped" in proc.stdout
    assert proc.stdout.count("(failed before too)") == 3
    # a new broken video is not known: a run where nothing succeeds still fails
    (root / "batch1" / "good.mp4").write_bytes(b"")
    proc = _fgvu("extract", "--dataset", "aff-wild2", "--root", root, "--out", tmp_path / "other", "--quiet")
    assert proc.returncode == 1 and "0 videos extracted, 4 failed, 0 skipped" in proc.stdout, proc.stdout


def test_a_video_failing_twice_in_one_source_is_recorded_once(tmp_path, monkeypatch):
    """An encoder refuses a video, then its decoding breaks too: one failure, not two."""
    from fgvu.errors import FgvuError

    adapter = FakeAdapter({"v": ("v.mp4", 300)})
    real_open = adapter.open_video

    def open_video(path):
        source = real_open(path)
        source.fail_at = 200
        return source

    monkeypatch.setattr("fgvu.extract.video_source.open_video", open_video)
    encoders = fake_encoders()

    def refuse(images):
        raise FgvuError("the encoder refused this video")

    encoders.image_text.encode_images = refuse
    s = run_extract(ExtractConfig(dataset="aff-wild2", out=str(tmp_path / "c"), progress=False, image_batch=4),
                    encoders=encoders, adapter=adapter)
    assert s.failed == 1 and s.failures == [("v", "the encoder refused this video")]


def _rotated_video(path: Path, n: int = 80) -> Path:
    """A 48x64 (portrait) picture stored as 64x48 with a display matrix turning it back."""
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=25)
        stream.height, stream.width, stream.pix_fmt = 48, 64, "yuv420p"
        stream.set_display_rotation(-90)
        for k in range(n):
            img = np.full((48, 64, 3), k % 200, np.uint8)
            container.mux(stream.encode(av.VideoFrame.from_ndarray(img, format="rgb24")))
        container.mux(stream.encode())
    return path


def _vfr_video(path: Path, n: int = 80) -> Path:
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=30)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        stream.codec_context.time_base = stream.time_base = Fraction(1, 1000)
        for k in range(n):
            frame = av.VideoFrame.from_ndarray(np.full((48, 64, 3), k % 200, np.uint8))
            frame.pts, frame.time_base = sum((20, 50)[j % 2] for j in range(k)), Fraction(1, 1000)
            container.mux(stream.encode(frame))
        container.mux(stream.encode())
    return path


def test_summary_lists_turned_variable_rate_and_unlabelled_videos(tmp_path):
    root = tmp_path / "data"
    root.mkdir()
    _rotated_video(root / "rot.mp4")
    _vfr_video(root / "vfr.mp4")
    write_video(root / "plain.mp4", 80)
    write_video(root / "nolabel.mp4", 80)
    (root / "labels.csv").write_text("video,label\nrot,1\nvfr,0\nplain,1\n")
    with pytest.warns(UserWarning, match="1 videos have no labels"):
        s = run_extract(ExtractConfig(dataset="folder", root=str(root), out=str(tmp_path / "c"), progress=False),
                        encoders=fake_encoders())
    assert s.succeeded == 3
    lines = s.lines()
    assert "folder: 1 videos have no labels and are skipped: nolabel" in lines
    assert "1 videos turned upright from their display matrix: rot.mp4 (rotated -90 degrees)" in lines
    vfr = [line for line in lines if line.startswith("1 videos with a variable frame rate: vfr.mp4 (variable")]
    span = sum((20, 50)[j % 2] for j in range(79)) / 1000  # 80 frames, 79 gaps
    assert len(vfr) == 1 and f"measured {79 / span:.2f} fps, frame gaps 20-50 ms" in vfr[0]
    view = open_cache(tmp_path / "c")
    row = list(view.videos.name).index("rot")
    assert (view.videos.width[row], view.videos.height[row]) == (48, 64)  # the upright size is recorded


# ---- a full disk -----------------------------------------------------------------------------

FULL_DISK = textwrap.dedent("""
    import contextlib, io, json, os, shutil, sys
    sys.path.insert(0, {tests!r})
    from fakes import fake_encoders
    from fgvu.cache import CacheSpec
    from fgvu.extract.config import ExtractConfig
    from fgvu.extract.pipeline import run_extract
    import fgvu.extract.pipeline
    fgvu.extract.pipeline.build_encoders = lambda cfg, with_captioner=True: fake_encoders()
    from fgvu.cli import main

    mount, root, copy = sys.argv[1:4]
    out = os.path.join(mount, "cache")

    def fill(leave):
        with open(os.path.join(mount, "filler"), "wb", buffering=0) as f:
            try:
                while f.write(b"x" * 4096):
                    pass
            except OSError:
                pass
        os.truncate(os.path.join(mount, "filler"), os.path.getsize(os.path.join(mount, "filler")) - leave)

    def extract():
        err = io.StringIO()
        sys.argv = ["fgvu", "extract", "--dataset", "aff-wild2", "--root", root, "--out", out, "--quiet"]
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
            try:
                main()
                code = 0
            except SystemExit as e:
                code = e.code
        return code, err.getvalue()

    def files():
        return sorted(os.path.relpath(os.path.join(d, f), mount) for d, _, fs in os.walk(mount) for f in fs)

    result = {{}}
    fill(0)  # no room even for cache.json
    result["full"] = extract() + (files(),)
    fill(48 * 1024)  # room for the first videos only
    result["partly"] = extract() + (files(),)
    os.remove(os.path.join(mount, "filler"))
    result["resumed"] = extract() + (files(),)
    shutil.copytree(out, copy)
    print(json.dumps(result))
""")


def _can_mount_tmpfs() -> bool:
    if not shutil.which("unshare") or not Path("/proc/self/ns/mnt").exists():
        return False
    probe = subprocess.run(["unshare", "-rm", "sh", "-c", "mount -t tmpfs -o size=64k tmpfs /mnt"],
                           capture_output=True)
    return probe.returncode == 0


@pytest.mark.skipif(not _can_mount_tmpfs(), reason="cannot mount a tmpfs here (needs unshare and user namespaces)")
def test_a_full_disk_is_one_line_naming_the_file_and_the_run_resumes(tmp_path):
    videos = {f"v{i}": 90 + 20 * i for i in range(6)}
    root = write_affwild2(tmp_path / "data", videos)
    clean = tmp_path / "clean"
    run_extract(ExtractConfig(dataset="aff-wild2", root=str(root), out=str(clean), progress=False),
                encoders=fake_encoders())
    mount = tmp_path / "mnt"
    mount.mkdir()
    script = tmp_path / "full_disk.py"
    script.write_text(FULL_DISK.format(tests=str(TESTS)))
    proc = subprocess.run(
        ["unshare", "-rm", "sh", "-c", 'mount -t tmpfs -o size=1m tmpfs "$1" && exec "$2" "$3" "$1" "$4" "$5"', "sh",
         str(mount), sys.executable, str(script), str(root), str(tmp_path / "copy")],
        cwd=REPO, capture_output=True, text=True, timeout=300, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout.splitlines()[-1])
    for stage in ("full", "partly"):
        code, err, files = result[stage]
        assert code == 2, (stage, err)
        lines = err.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in err, (stage, err)
        lower = lines[0].lower()  # the writer's line or the pipeline's: both name the space left
        assert "no space left on device" in lower and " free" in lower and "resume" in lower
        assert str(mount / "cache") in lines[0]
        assert not [f for f in files if f.endswith(".tmp")], (stage, files)  # no temporary file left behind
    code, err, files = result["resumed"]
    assert code == 0, err
    _assert_same_cache(tmp_path / "copy", clean)


def test_storage_errors_outside_the_pipeline_are_one_line_too(tmp_path, monkeypatch, capsys):
    import errno

    from fgvu import cli

    def full_disk():
        raise OSError(errno.ENOSPC, "No space left on device", str(tmp_path / "runs" / "x" / "metrics.jsonl"))

    monkeypatch.setattr(cli, "app", full_disk)
    with pytest.raises(SystemExit) as exit_:
        cli.main()
    assert exit_.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"error: {tmp_path / 'runs' / 'x' / 'metrics.jsonl'}: No space left on device (")
    assert "free on its file system); free some space and run the command again" in err and "\n" not in err

    def bug():
        raise FileNotFoundError(errno.ENOENT, "No such file or directory", "x")

    monkeypatch.setattr(cli, "app", bug)
    with pytest.raises(FileNotFoundError):  # not a storage problem: its traceback stays
        cli.main()
